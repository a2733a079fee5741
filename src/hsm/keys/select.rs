//! Which objects a KEY argument names (`KeySelector`), finding them in a
//! stable order, picking exactly one, and destroying them.

use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};

use super::{describe_with, name_and_version, split_version, KeyInfo};
use crate::error::{Error, Result};
use crate::hsm::uri::{ObjectType, Pkcs11Uri};
use crate::hsm::Token;

/// Which objects a KEY argument names.
#[derive(Debug, Clone, Default)]
pub struct KeySelector {
    /// The label as given (may carry @vN).
    pub label: Option<String>,
    pub id: Option<Vec<u8>>,
    pub object_type: Option<ObjectType>,
    /// The text the operator typed, for messages (redacted).
    pub shown: String,
    /// Token attributes of a key URI (`pkcs11:token=...;object=...`).
    pub token: Option<Pkcs11Uri>,
    /// Match the label exactly (NAME@v1, a URI's object=), not the later
    /// versions too.
    pub exact: bool,
}

impl KeySelector {
    /// Parse a KEY argument: a pkcs11: URI or a bare label.
    pub fn parse(s: &str) -> Result<KeySelector> {
        if Pkcs11Uri::looks_like_uri(s) {
            let uri = crate::hsm::parse_uri(s)?;
            Ok(KeySelector {
                label: uri.object.clone(),
                id: uri.id.clone(),
                object_type: uri.object_type,
                token: uri.has_token_attributes().then_some(uri),
                // A URI's object= is the label, exactly (RFC 7512): never
                // the later versions. An empty object= is an empty label.
                exact: true,
                shown: crate::hsm::redact(s),
            })
        } else if s.is_empty() {
            Err(Error::Usage {
                message: "an empty key name was given".into(),
            })
        } else if let Some(base) = s.strip_suffix("@v1").filter(|b| !b.is_empty()) {
            // Version 1 carries the bare name as its label: NAME@v1 is that
            // label exactly, without the later versions.
            Ok(KeySelector {
                label: Some(base.to_string()),
                exact: true,
                shown: s.to_string(),
                ..KeySelector::default()
            })
        } else {
            Ok(KeySelector {
                label: Some(s.to_string()),
                shown: s.to_string(),
                ..KeySelector::default()
            })
        }
    }

    /// Everything on the token.
    pub fn all() -> KeySelector {
        KeySelector {
            shown: "pkcs11:".into(),
            ..KeySelector::default()
        }
    }

    /// Whether an object with this label and CKA_ID is selected: the exact
    /// label, or for a bare name also its later versions (a label `NAME@vk`
    /// with a version id, [`name_and_version`]). An object without a label
    /// has the empty one; the id, when given, is matched by the caller.
    pub(super) fn matches(&self, label: &str, id: &[u8]) -> bool {
        match &self.label {
            None => true,
            Some(want) => {
                if label == want {
                    return true;
                }
                if self.exact || split_version(want).1 > 1 {
                    return false;
                }
                let (name, version) = name_and_version(label, id);
                version > 1 && name == want
            }
        }
    }
}

/// Find every key object (secret, private, public) the selector names, in a
/// stable order: by name, then version, then class.
///
/// A selector that names one label exactly (`NAME@v1`, `NAME@vk`, a URI's
/// `object=`) is one search with that label in the template. A bare name
/// also takes the versions `NAME@vk`, which no template can express (the
/// versions present can have gaps): then one search of every key object
/// and one read of its class, label and id, on `--sessions` sessions.
pub fn find(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<ObjectHandle>> {
    if let Some(uri) = &selector.token {
        if !crate::hsm::token_matches(uri, token.slot(), token.summary()) {
            return Err(Error::Usage {
                message: format!(
                    "the key URI names another token than the one selected ({}); drop --token or make them agree",
                    token.summary().uri
                ),
            });
        }
    }
    let class = match selector.object_type {
        None => None,
        Some(ObjectType::SecretKey) => Some(ObjectClass::SECRET_KEY),
        Some(ObjectType::PrivateKey) => Some(ObjectClass::PRIVATE_KEY),
        Some(ObjectType::PublicKey) => Some(ObjectClass::PUBLIC_KEY),
        Some(_) => return Ok(Vec::new()),
    };
    // Token objects only: session objects (probes, transfer keys) are
    // this process's own scaffolding.
    let mut template = vec![Attribute::Token(true)];
    template.extend(class.map(Attribute::Class));
    // An empty id (`id=`) also matches an object that has no CKA_ID at
    // all, which no template can say: compared below instead.
    if let Some(id) = selector.id.as_ref().filter(|id| !id.is_empty()) {
        template.push(Attribute::Id(id.clone()));
    }
    // An empty label (`object=`) also matches an object that has no
    // CKA_LABEL at all (kryoptic leaves it out): compared below instead.
    let exact = selector
        .label
        .as_ref()
        .filter(|want| !want.is_empty())
        .filter(|want| selector.exact || split_version(want).1 > 1);
    if let Some(label) = exact {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    let handles = crate::hsm::find_objects(token.session(), &template)
        .map_err(|e| Error::pkcs11("find objects", e))?;
    // Class, label and id of each, one read apiece; objects that are not
    // keys, and the audit trail's key, are left out.
    let mut found = Vec::new();
    for key in super::identities_of(token, handles)? {
        let id = hex::decode(&key.id).map_err(|e| Error::Internal(e.to_string()))?;
        if selector.id.as_ref().is_some_and(|want| *want != id) {
            continue;
        }
        if selector.matches(&key.label, &id) {
            let (name, version) = name_and_version(&key.label, &id);
            found.push((name.to_string(), version, class_rank(key.class), key.handle));
        }
    }
    found.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    Ok(found.into_iter().map(|f| f.3).collect())
}

/// The highest k of any key object labelled `name@vk`, a version or not
/// (1 when there is none): `key rotate` makes k + 1, so that a new version
/// never takes a label another key already has. One search of every key
/// object, one read of each.
pub fn highest_label_version(token: &Token<'_>, name: &str) -> Result<u32> {
    let handles = crate::hsm::find_objects(token.session(), &[Attribute::Token(true)])
        .map_err(|e| Error::pkcs11("find objects", e))?;
    let mut highest = 1;
    for key in super::identities_of(token, handles)? {
        match split_version(&key.label) {
            (n, k) if n == name => highest = highest.max(k),
            _ => {}
        }
    }
    Ok(highest)
}

fn class_rank(class: &str) -> u8 {
    match class {
        "secret-key" => 0,
        "private-key" => 1,
        _ => 2,
    }
}

/// The single object among those `selector` names that `keep` accepts:
/// `Ok(None)` when there is none (callers say what was missing), an
/// ambiguity error naming the candidates when there are several.
pub fn resolve_one(
    token: &Token<'_>,
    selector: &KeySelector,
    what: &'static str,
    with_kcv: bool,
    keep: impl Fn(&KeyInfo) -> bool,
) -> Result<Option<KeyInfo>> {
    let mut found = Vec::new();
    for h in find_required(token, selector)? {
        let info = describe_with(token, h, with_kcv)?;
        if keep(&info) {
            found.push(info);
        }
    }
    if found.len() > 1 {
        return Err(Error::Ambiguous {
            what,
            selector: selector.shown.clone(),
            candidates: found.into_iter().map(|k| k.label).collect(),
        });
    }
    Ok(found.pop())
}

/// Like [`find`], but an empty result is an error.
pub fn find_required(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<ObjectHandle>> {
    let found = find(token, selector)?;
    if found.is_empty() {
        return Err(Error::KeyNotFound {
            key: selector.shown.clone(),
        });
    }
    Ok(found)
}

/// Destroy objects (the caller has confirmed).
pub fn destroy(token: &Token<'_>, handles: &[ObjectHandle]) -> Result<()> {
    for h in handles {
        token
            .session()
            .destroy_object(*h)
            .map_err(|e| Error::pkcs11("destroy the key", e))?;
    }
    Ok(())
}

/// Give objects a new CKA_LABEL (C_SetAttributeValue), all or none: when
/// one refuses, those already changed get their old label back. `objects`
/// pairs each handle with its current label.
pub fn set_label(token: &Token<'_>, objects: &[(ObjectHandle, String)], label: &str) -> Result<()> {
    let session = token.session();
    for (done, (handle, _)) in objects.iter().enumerate() {
        let set =
            session.update_attributes(*handle, &[Attribute::Label(label.as_bytes().to_vec())]);
        if let Err(e) = set {
            for (back, old) in &objects[..done] {
                let _ =
                    session.update_attributes(*back, &[Attribute::Label(old.as_bytes().to_vec())]);
            }
            return Err(Error::pkcs11(
                "change the key's label (CKA_MODIFIABLE may be false)",
                e,
            ));
        }
    }
    Ok(())
}
