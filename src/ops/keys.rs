//! Key management: generate, list, show, rotate, destroy.

use crate::error::{Error, Result};
use crate::hsm::check;
use crate::hsm::keys::{self, GenerateSpec, KeyInfo, KeySelector, Usage};
use crate::hsm::template::KeyKind;
use crate::hsm::undo::{self, Undo};
use crate::hsm::Token;

/// Create a key (or key pair) and describe what was created. Refuses a name
/// that already exists: a second version is made with `rotate`.
pub fn generate(token: &Token<'_>, spec: &GenerateSpec) -> Result<Vec<KeyInfo>> {
    keys::effective_usage(spec)?;
    check_available(token, &spec.name, &spec.id)?;
    if crate::hsm::wrap::is_nss(token) && spec.policy != keys::BackupPolicy::Any {
        tracing::warn!(
            "NSS softokn does not enforce CKA_EXTRACTABLE or CKA_WRAP_WITH_TRUSTED: on this token the backup policy is a label, not a protection (docs/TOKENS.md)"
        );
    }
    let made = keys::generate(token, spec)?;
    describe_made(token, &made, &spec.id)
}

/// Describe what was just made; if that fails, the new key is destroyed
/// again (a failure changes nothing).
fn describe_made(token: &Token<'_>, made: &keys::Generated, id: &[u8]) -> Result<Vec<KeyInfo>> {
    let mut undo = Undo::for_token(token);
    for h in &made.handles {
        undo.add(*h, undo::describe(&made.label, "new key", id));
    }
    let checked = match keys::others_with_label(token, &made.label, &made.handles) {
        Ok(true) => Err(Error::ConcurrentCreate {
            what: format!("a key labelled '{}'", made.label),
        }),
        Ok(false) => made
            .handles
            .iter()
            .map(|h| keys::describe(token, *h))
            .collect::<Result<Vec<_>>>(),
        Err(e) => Err(e),
    };
    match checked {
        Ok(described) => {
            undo.commit();
            Ok(described)
        }
        Err(e) => Err(undo.fail(e)),
    }
}

/// Refuse a name that is taken (any version) or an id in use, before anything
/// is created.
pub fn check_available(token: &Token<'_>, name: &str, id: &[u8]) -> Result<()> {
    keys::validate_name(name)?;
    if !keys::find(token, &KeySelector::parse(name)?)?.is_empty() {
        return Err(Error::AlreadyExists {
            what: format!("a key named '{name}'"),
        });
    }
    ensure_id_unused(token, id)
}

/// Refuse an id that any key on the token already has: NSS softokn silently
/// replaces an existing key with the same CKA_ID and class, so a duplicate id
/// could destroy a key without a word.
fn ensure_id_unused(token: &Token<'_>, id: &[u8]) -> Result<()> {
    let selector = KeySelector {
        id: Some(id.to_vec()),
        shown: format!("id {}", hex::encode(id)),
        ..KeySelector::default()
    };
    if !keys::find(token, &selector)?.is_empty() {
        return Err(Error::AlreadyExists {
            what: format!("a key with id {}", hex::encode(id)),
        });
    }
    Ok(())
}

/// A fresh CKA_ID drawn from the token's random generator.
pub fn random_id(token: &Token<'_>) -> Result<Vec<u8>> {
    keys::random_id(token)
}

/// Describe every key the selector names.
pub fn list(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<KeyInfo>> {
    keys::describe_all(token, selector, true)
}

/// Like [`list`], but the key must exist.
pub fn show(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<KeyInfo>> {
    keys::find_required(token, selector)?
        .into_iter()
        .map(|h| keys::describe(token, h))
        .collect()
}

/// Make the next version of a named key: same type, usage and policy, a new
/// version id (docs/KEYS.md, "Versions": the label `NAME@vk` and a CKA_ID
/// bound to NAME and k, never a shared CKA_ID).
pub fn rotate(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<KeyInfo>> {
    let all = show(token, selector)?;
    let mut names: Vec<&str> = all.iter().map(|k| k.name.as_str()).collect();
    names.dedup();
    if names.len() > 1 {
        return Err(Error::Ambiguous {
            what: "key",
            selector: selector.shown.clone(),
            candidates: names.iter().map(|s| s.to_string()).collect(),
        });
    }
    // The newest version's secret or private object carries the policy.
    let latest = all
        .iter()
        .filter(|k| k.class != "public-key")
        .max_by_key(|k| k.version)
        .ok_or_else(|| Error::NotCapable {
            capability: "rotating a public key alone".into(),
            detail: "only the public half of this key is on the token".into(),
            alternatives: String::new(),
        })?;
    // Another tool's key whose label merely looks like a version is a key of
    // its own; hsmkey makes no versions of a name it would not generate.
    keys::validate_name(&latest.name)?;
    if latest.trusted == Some(true) && !token.is_so()? {
        return Err(Error::SoLoginRequired {
            what: format!("making a new version of the trusted key '{}'", latest.name),
        });
    }
    // Rotation follows the whole family, so later versions are found by name.
    let family = show(token, &KeySelector::parse(&latest.name)?)?;
    // Above every label NAME@vk on the token, versions or not: a new version
    // never takes a label another key has.
    let next = family
        .iter()
        .map(|k| k.version)
        .max()
        .unwrap_or(1)
        .max(keys::highest_label_version(token, &latest.name)?)
        + 1;
    let usage_text = family
        .iter()
        .filter(|k| k.version == latest.version)
        .flat_map(|k| k.usage.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let usage: Usage = usage_text.parse()?;
    let policy = match latest.backup_policy.as_str() {
        "none" => keys::BackupPolicy::None,
        "trusted" => keys::BackupPolicy::Trusted,
        "any" => keys::BackupPolicy::Any,
        other => {
            return Err(Error::NotCapable {
                capability: "rotating this key".into(),
                detail: format!("its backup policy reads as '{other}'"),
                alternatives: String::new(),
            })
        }
    };
    let spec = GenerateSpec {
        name: latest.name.clone(),
        id: keys::random_version_id(token, &latest.name, next)?,
        spec: keys::spec_of(latest)?,
        usage: Some(usage),
        policy,
        kek: latest.trusted == Some(true),
        trusted: latest.trusted == Some(true),
        version: next,
    };
    ensure_id_unused(token, &spec.id)?;
    let made = keys::generate(token, &spec)?;
    describe_made(token, &made, &spec.id)
}

/// Destroy every object the selector names and say what was destroyed.
pub fn destroy(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<KeyInfo>> {
    let handles = keys::find_required(token, selector)?;
    let described = handles
        .iter()
        .map(|h| keys::describe(token, *h))
        .collect::<Result<Vec<_>>>()?;
    keys::destroy(token, &handles)?;
    Ok(described)
}

/// Give one key (one version; both halves of a key pair) a new label: for
/// keys another tool made without one, which backup refuses (`no-label`).
/// The selection must name objects sharing one CKA_ID and one label, and the
/// new name must be free on the token; otherwise nothing changes.
pub fn relabel(token: &Token<'_>, selector: &KeySelector, new: &str) -> Result<Vec<KeyInfo>> {
    keys::validate_name(new)?;
    let handles = keys::find_required(token, selector)?;
    let described = handles
        .iter()
        .map(|h| keys::describe_with(token, *h, false))
        .collect::<Result<Vec<_>>>()?;
    let first = &described[0];
    if described
        .iter()
        .any(|k| k.id != first.id || k.label != first.label)
    {
        return Err(Error::Ambiguous {
            what: "key to relabel (name one version: NAME@vK or a pkcs11: URI with id=)",
            selector: selector.shown.clone(),
            candidates: described.iter().map(|k| k.label.clone()).collect(),
        });
    }
    if !keys::find(token, &KeySelector::parse(new)?)?.is_empty() {
        return Err(Error::AlreadyExists {
            what: format!("a key named '{new}'"),
        });
    }
    let objects: Vec<_> = handles
        .iter()
        .zip(&described)
        .map(|(h, k)| (*h, k.label.clone()))
        .collect();
    keys::set_label(token, &objects, new)?;
    handles.iter().map(|h| keys::describe(token, *h)).collect()
}

/// The public key of a key pair, as SubjectPublicKeyInfo PEM.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublicKeyExport {
    pub label: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub pem: String,
    /// SHA-256 of the SPKI DER, hex: what recipient bundles record.
    pub spki_sha256: String,
}

/// Export the public half of one key pair (one version).
pub fn public_pem(token: &Token<'_>, selector: &KeySelector) -> Result<PublicKeyExport> {
    use crate::formats::spki;
    use crate::hsm::wrap::PublicValues;
    use sha2::Digest;
    let infos = show(token, selector)?;
    let mut versions: Vec<u32> = infos.iter().map(|k| k.version).collect();
    versions.dedup();
    if versions.len() > 1 {
        return Err(Error::Ambiguous {
            what: "key version",
            selector: selector.shown.clone(),
            candidates: infos.iter().map(|k| k.label.clone()).collect(),
        });
    }
    let pick = infos
        .iter()
        .find(|k| k.class == "public-key")
        .or_else(|| {
            infos
                .iter()
                .find(|k| k.class == "private-key" && k.key_type == "rsa")
        })
        .ok_or_else(|| Error::NotCapable {
            capability: "exporting a public key".into(),
            detail: format!("{} is not a key pair on this token", selector.shown),
            alternatives: String::new(),
        })?;
    let key_type = match pick.key_type.as_str() {
        "rsa" => KeyKind::Rsa,
        "ec" => KeyKind::Ec,
        other => {
            return Err(Error::NotCapable {
                capability: "exporting a public key".into(),
                detail: format!("{other} keys"),
                alternatives: String::new(),
            })
        }
    };
    let values =
        check::public_of(token, pick.handle, key_type)?.ok_or_else(|| Error::NotCapable {
            capability: "reading the public key".into(),
            detail: "the token returned no public values".into(),
            alternatives: String::new(),
        })?;
    let der = match values {
        PublicValues::Rsa { modulus, exponent } => {
            spki::rsa_from_parts(&modulus, &exponent)
                .map_err(Error::Internal)?
                .spki_der
        }
        PublicValues::Ec { params, point } => {
            spki::ec_spki_der(&params, &point).map_err(Error::Internal)?
        }
    };
    Ok(PublicKeyExport {
        label: pick.label.clone(),
        key_type: pick.key_type.clone(),
        pem: spki::spki_pem(&der).map_err(Error::Internal)?,
        spki_sha256: hex::encode(sha2::Sha256::digest(&der)),
    })
}

/// Make `count` keys named `NAME-00001`...: one scan of the token's labels
/// up front instead of a search per key.
pub fn generate_many(
    token: &Token<'_>,
    template: &GenerateSpec,
    count: u32,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<String>> {
    keys::effective_usage(template)?;
    let labels: Vec<String> = (1..=count)
        .map(|i| format!("{}-{i:05}", template.name))
        .collect();
    for l in &labels {
        keys::validate_name(l)?;
    }
    let wanted: std::collections::HashSet<&str> = labels.iter().map(String::as_str).collect();
    for info in keys::list_keys(token)?.infos() {
        if wanted.contains(info.name.as_str()) {
            return Err(Error::AlreadyExists {
                what: format!("a key named '{}'", info.name),
            });
        }
    }
    let unlabelled_before = keys::unlabelled(token)?;
    // On `--sessions` sessions, so keys are made in any order: a failure
    // destroys every key this run made, not an arbitrary subset.
    let made = std::cell::RefCell::new(Undo::for_token(token));
    let record = |generated: keys::Generated, undo: &mut Undo<'_>| {
        for h in generated.handles {
            undo.add(h, undo::describe(&generated.label, "new key", &[]));
        }
    };
    let mut done = 0u64;
    let run = crate::hsm::pool::run_ordered(
        token,
        labels.iter().map(Ok),
        |t, label| {
            let spec = GenerateSpec {
                name: label.clone(),
                id: random_id(t)?,
                ..template.clone()
            };
            keys::generate_inner(t, &spec)
        },
        |generated| {
            record(generated, &mut made.borrow_mut());
            done += 1;
            progress(done, u64::from(count));
            Ok(())
        },
        |generated| record(generated, &mut made.borrow_mut()),
    );
    let made = made.into_inner();
    if let Err(e) = run {
        let e = made.fail(e);
        // A failed generation can leave an object without its label (SoftHSM).
        keys::remove_new_unlabelled(token, &unlabelled_before);
        return Err(e);
    }
    made.commit();
    Ok(labels)
}
