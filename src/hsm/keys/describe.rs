//! What hsmkey shows about a key (`KeyInfo`): reading its attributes (one
//! round trip where the token allows), its key check value computed in the
//! token, and the generation request that would make it again (`spec_of`).

use cryptoki::object::{Attribute, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use serde::Serialize;

use super::attrs::{read, Attrs, Flags};
use super::{find, name_and_version, BackupPolicy, KeySelector, KeySpec};
use crate::error::{Error, Result};
use crate::hsm::uri::{ObjectType, Pkcs11Uri};
use crate::hsm::Token;

/// Everything hsmkey shows about one object.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct KeyInfo {
    #[serde(skip)]
    pub handle: ObjectHandle,
    pub label: String,
    /// The token's CKA_LABEL was not UTF-8: `label` is a lossy rendering,
    /// not the label itself.
    #[serde(skip)]
    pub label_lossy: bool,
    /// The label's bytes in hex, only when they are not UTF-8 (`label` then
    /// shows them with U+FFFD in place of what is not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_hex: Option<String>,
    /// The key's name (label without @vN).
    pub name: String,
    pub id: String,
    pub class: String,
    #[serde(rename = "type")]
    pub key_type: String,
    /// Key size in bits, when known.
    pub size: Option<u64>,
    pub version: u32,
    pub usage: Vec<&'static str>,
    pub backup_policy: String,
    /// Hex KCV; null when unknown (`kcv_method` says why).
    pub kcv: Option<String>,
    pub kcv_method: String,
    pub sensitive: Option<bool>,
    pub extractable: Option<bool>,
    pub always_sensitive: Option<bool>,
    pub never_extractable: Option<bool>,
    pub wrap_with_trusted: Option<bool>,
    pub trusted: Option<bool>,
    pub private: Option<bool>,
    pub local: Option<bool>,
    pub modifiable: Option<bool>,
    /// The object's RFC 7512 `pkcs11:` URI.
    // Empty in bulk reads (`describe_with(.., false)`), which are never printed.
    pub uri: String,
}

const CKO_SECRET: &str = "secret-key";

pub(super) fn class_name(c: ObjectClass) -> &'static str {
    if c == ObjectClass::SECRET_KEY {
        CKO_SECRET
    } else if c == ObjectClass::PRIVATE_KEY {
        "private-key"
    } else if c == ObjectClass::PUBLIC_KEY {
        "public-key"
    } else if c == ObjectClass::CERTIFICATE {
        "cert"
    } else {
        "data"
    }
}

pub(super) fn key_type_name(k: CkKeyType) -> String {
    if k == CkKeyType::AES {
        "aes".into()
    } else if k == CkKeyType::GENERIC_SECRET {
        "generic".into()
    } else if k == CkKeyType::RSA {
        "rsa".into()
    } else if k == CkKeyType::EC {
        "ec".into()
    } else {
        format!("0x{:x}", *k)
    }
}

/// Describe every key object the selector names, sorted by name, version,
/// then class. With no label filter, one attribute read per object (no
/// separate label pass): what `key list` and `backup --all` cost per key.
pub fn describe_all(
    token: &Token<'_>,
    selector: &KeySelector,
    with_kcv: bool,
) -> Result<Vec<KeyInfo>> {
    let empty_id = selector.id.as_ref().is_some_and(|id| id.is_empty());
    if selector.label.is_some() || selector.token.is_some() || empty_id {
        return describe_handles(token, find(token, selector)?, with_kcv);
    }
    // One search for every key class: SoftHSM (and other tokens) walk the
    // whole token for each search, so three class searches cost three
    // passes. The class comes back with the other attributes.
    let class = match selector.object_type {
        None => None,
        Some(ObjectType::SecretKey) => Some(ObjectClass::SECRET_KEY),
        Some(ObjectType::PrivateKey) => Some(ObjectClass::PRIVATE_KEY),
        Some(ObjectType::PublicKey) => Some(ObjectClass::PUBLIC_KEY),
        Some(_) => return Ok(Vec::new()),
    };
    let mut template = vec![Attribute::Token(true)];
    template.extend(class.map(Attribute::Class));
    if let Some(id) = &selector.id {
        template.push(Attribute::Id(id.clone()));
    }
    let handles = crate::hsm::find_objects(token.session(), &template)
        .map_err(|e| Error::pkcs11("find objects", e))?;
    let mut out = describe_handles(token, handles, with_kcv)?;
    if class.is_none() && selector.id.is_none() {
        // Every object was read: the audit session needs no search of its own.
        let mut sighting = crate::hsm::audit::Sighting::default();
        for k in &out {
            sighting.see(k.handle, &k.class, &k.label);
        }
        token.saw_audit_objects(sighting);
    }
    // Certificates and data objects are not keys; the audit trail's key is
    // not one of the user's keys (docs/AUDIT.md).
    out.retain(|k| k.class != "data" && k.class != "cert");
    out.retain(|k| !crate::hsm::audit::is_reserved_label(&k.label));
    let rank = |c: &str| match c {
        "secret-key" => 0u8,
        "private-key" => 1,
        _ => 2,
    };
    out.sort_by(|a, b| {
        (&a.name, a.version, rank(&a.class)).cmp(&(&b.name, b.version, rank(&b.class)))
    });
    Ok(out)
}

/// Describe these objects, in this order, on as many sessions as the token
/// may use (the attribute reads are most of the calls of bulk work).
pub fn describe_handles(
    token: &Token<'_>,
    handles: Vec<ObjectHandle>,
    with_kcv: bool,
) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::with_capacity(handles.len());
    crate::hsm::pool::run_ordered(
        token,
        handles.into_iter().map(Ok),
        |t, h| describe_with(t, h, with_kcv),
        |info| {
            out.push(info);
            Ok(())
        },
        drop,
    )?;
    Ok(out)
}

/// Read what matters of one object. Never asks for CKA_VALUE.
pub fn describe(token: &Token<'_>, handle: ObjectHandle) -> Result<KeyInfo> {
    describe_with(token, handle, true)
}

/// [`describe`], optionally without computing the KCV (bulk selection).
pub fn describe_with(token: &Token<'_>, handle: ObjectHandle, with_kcv: bool) -> Result<KeyInfo> {
    let attrs = read(token, handle, with_kcv)?;
    if !with_kcv {
        // The bulk form, made as a listing makes it.
        let mut one = super::Listing::default();
        one.push(handle, attrs);
        return Ok(one.info(0));
    }
    let Attrs {
        class,
        key_type,
        label: raw_label,
        id,
        size,
        usage,
        check_value,
        flags,
    } = attrs;
    let mut size = size;
    let label_lossy = std::str::from_utf8(&raw_label).is_err();
    let label_hex = label_lossy.then(|| hex::encode(&raw_label));
    let label = String::from_utf8_lossy(&raw_label).into_owned();
    let backup_policy = if class == ObjectClass::PUBLIC_KEY {
        "public".to_string()
    } else {
        match (flags.extractable, flags.wrap_with_trusted) {
            (Some(false), _) => BackupPolicy::None.name().into(),
            (Some(true), Some(true)) => BackupPolicy::Trusted.name().into(),
            (Some(true), _) => BackupPolicy::Any.name().into(),
            (None, _) => "unknown".into(),
        }
    };
    let (kcv, kcv_method) = if class == ObjectClass::SECRET_KEY {
        let found = kcv(
            token,
            handle,
            key_type,
            check_value.as_deref(),
            usage.encrypt,
            usage.sign,
        )?;
        measured(
            token,
            handle,
            &flags,
            key_type == Some(CkKeyType::AES),
            &mut size,
            found,
        )?
    } else {
        (None, "not defined for asymmetric keys".to_string())
    };
    let (name, version) = name_and_version(&label, &id);
    let summary = token.summary();
    let mut uri = Pkcs11Uri::for_token(
        &summary.label,
        &summary.manufacturer,
        &summary.model,
        &summary.serial,
    );
    uri.object = Some(label.clone());
    uri.id = Some(id.clone());
    uri.object_type = Some(match class_name(class) {
        "secret-key" => ObjectType::SecretKey,
        "private-key" => ObjectType::PrivateKey,
        _ => ObjectType::PublicKey,
    });
    let uri = uri.to_string();
    Ok(KeyInfo {
        label_lossy,
        label_hex,
        handle,
        name: name.to_string(),
        version,
        label,
        id: hex::encode(&id),
        class: class_name(class).into(),
        key_type: key_type
            .map(key_type_name)
            .unwrap_or_else(|| "unknown".into()),
        size,
        usage: usage.names(),
        backup_policy,
        kcv,
        kcv_method,
        sensitive: flags.sensitive,
        extractable: flags.extractable,
        always_sensitive: flags.always_sensitive,
        never_extractable: flags.never_extractable,
        wrap_with_trusted: flags.wrap_with_trusted,
        trusted: flags.trusted,
        private: flags.private,
        local: flags.local,
        modifiable: flags.modifiable,
        uri,
    })
}

/// What a display shows of a secret key the token does not fully report:
/// its size (`size` is filled in) and, for an AES key that gives no KCV, a
/// KCV from a session copy, both measured in the token where the key may
/// be wrapped ([`check::measure_secret`]). SoftHSM forgets both for keys it
/// unwrapped (docs/TOKENS.md), so a restored key shows what the original did.
fn measured(
    token: &Token<'_>,
    handle: ObjectHandle,
    flags: &Flags,
    aes: bool,
    size: &mut Option<u64>,
    (kcv, method): (Option<String>, String),
) -> Result<(Option<String>, String)> {
    let wrappable = flags.extractable == Some(true);
    let trusted_only = flags.wrap_with_trusted == Some(true);
    let want_kcv = aes && kcv.is_none() && !trusted_only;
    if !wrappable || (size.is_some() && !want_kcv) {
        return Ok((kcv, method));
    }
    let found = crate::hsm::check::measure_secret(token, handle, trusted_only, want_kcv)?;
    if size.is_none() {
        *size = found.bits;
    }
    Ok(match found.kcv {
        Some(value) if want_kcv => (
            Some(value),
            "AES-ECB(key, 0^128) in the token, on a session copy".into(),
        ),
        _ => (kcv, method),
    })
}

/// The 3-byte key check value, computed in the token. CKA_CHECK_VALUE when the
/// token keeps it; for AES keys allowed to encrypt, AES-ECB of a zero block in
/// the token; otherwise none, with the reason in place of the method (never
/// a guess, never host crypto).
pub fn kcv(
    token: &Token<'_>,
    handle: ObjectHandle,
    key_type: Option<CkKeyType>,
    check_value: Option<&[u8]>,
    can_encrypt: bool,
    can_sign: bool,
) -> Result<(Option<String>, String)> {
    // A refusal of the check operation means "no KCV here"; a failing
    // token is an error, not a key without a KCV.
    let refused = |e: Error| -> Result<()> {
        match e {
            Error::NotCapable { .. } => Ok(()),
            Error::Pkcs11 { ref rv, .. }
                if [
                    "CKR_KEY_FUNCTION_NOT_PERMITTED",
                    "CKR_KEY_TYPE_INCONSISTENT",
                    "CKR_FUNCTION_NOT_SUPPORTED",
                ]
                .contains(&rv.as_str()) =>
            {
                tracing::debug!("KCV refused: {e}");
                Ok(())
            }
            other => Err(other),
        }
    };
    // Generic secrets: HMAC-SHA256 of the empty message, the method bundles
    // use, so `key list` and a backup show the same KCV. A token's own
    // CKA_CHECK_VALUE for them is token-defined (SHA-1 on SoftHSM).
    if key_type == Some(CkKeyType::GENERIC_SECRET) && can_sign {
        match crate::hsm::wrap::kcv_of(token, handle, CkKeyType::GENERIC_SECRET) {
            Ok((value, _)) => {
                return Ok((Some(value), "HMAC-SHA256(key, empty) in the token".into()))
            }
            Err(e) => refused(e)?,
        }
    }
    if let Some(cv) = check_value {
        if cv.len() >= 3 {
            let method = if key_type == Some(CkKeyType::AES) {
                "CKA_CHECK_VALUE"
            } else {
                "CKA_CHECK_VALUE (token-defined method)"
            };
            return Ok((Some(hex::encode(&cv[..3])), method.into()));
        }
    }
    if key_type == Some(CkKeyType::AES) && can_encrypt {
        match crate::hsm::wrap::kcv_of(token, handle, CkKeyType::AES) {
            Ok((value, _)) => return Ok((Some(value), "AES-ECB(key, 0^128) in the token".into())),
            Err(e) => refused(e)?,
        }
    }
    Ok((
        None,
        if key_type == Some(CkKeyType::AES) && can_encrypt {
            "the token keeps no CKA_CHECK_VALUE and refused AES-ECB with this key".into()
        } else {
            "the token keeps no CKA_CHECK_VALUE and the key may not do the check operation".into()
        },
    ))
}

/// Rebuild the generation request that made `info` (type, usage, policy), so
/// `key rotate` can make the next version alike.
pub fn spec_of(info: &KeyInfo) -> Result<KeySpec> {
    let spec = match (info.key_type.as_str(), info.size) {
        ("aes", Some(128)) => KeySpec::Aes128,
        ("aes", Some(192)) => KeySpec::Aes192,
        ("aes", Some(256)) => KeySpec::Aes256,
        ("generic", Some(256)) => KeySpec::Generic256,
        ("rsa", Some(2048)) => KeySpec::Rsa2048,
        ("rsa", Some(3072)) => KeySpec::Rsa3072,
        ("rsa", Some(4096)) => KeySpec::Rsa4096,
        ("ec", Some(256)) => KeySpec::EcP256,
        ("ec", Some(384)) => KeySpec::EcP384,
        (t, s) => {
            return Err(Error::NotCapable {
                capability: "rotating this key".into(),
                detail: format!(
                    "hsmkey cannot create a key of type {t} and size {}",
                    s.map(|b| b.to_string()).unwrap_or_else(|| "unknown".into())
                ),
                alternatives:
                    "Create the new version with your HSM vendor's tools, labelled NAME@vN.".into(),
            })
        }
    };
    Ok(spec)
}
