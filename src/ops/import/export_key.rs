//! `export-key` and `import-export-key`: a secret key wrapped under a KEK,
//! with the KCV and size the importer checks after unwrapping it in the token.

use super::refuse_kek_usage;
use crate::error::{Error, Result};
use crate::formats::export_key::ExportKey;
use crate::hsm::check;
use crate::hsm::keys::{self, BackupPolicy, GenerateSpec, KeyInfo, KeySelector, KeySpec, Usage};
use crate::hsm::probe::Ephemeral;
use crate::hsm::receive::{self, NewKey};
use crate::hsm::template::KeyKind;
use crate::hsm::undo::{self, Undo};
use crate::hsm::wrap::{self, WrapSupport};
use crate::hsm::{Handle, Token};

/// `export-key`: the key wrapped under a KEK, with what the importer checks.
pub fn export_key(token: &Token<'_>, dek: &KeySelector, kek: &KeySelector) -> Result<ExportKey> {
    let one_secret = |sel: &KeySelector| -> Result<KeyInfo> {
        keys::resolve_one(token, sel, "key version", true, |k| k.class == "secret-key")?.ok_or_else(
            || Error::KeyNotFound {
                key: format!("{} (a secret key)", sel.shown),
            },
        )
    };
    let dek = one_secret(dek)?;
    let kek = crate::ops::backup::resolve_kek(token, kek)?;
    if dek.handle == kek.handle {
        return Err(Error::Usage {
            message: "a key cannot be exported under itself: name another KEK".into(),
        });
    }
    if !kek.usage.contains(&"wrap") {
        return Err(Error::PolicyRefused {
            key: kek.label,
            reason:
                "this key may not wrap (CKA_WRAP=false); use a KEK made with `key generate --kek`"
                    .into(),
        });
    }
    if dek.extractable != Some(true) {
        return Err(Error::PolicyRefused {
            key: dek.label,
            reason: "backup policy none (CKA_EXTRACTABLE=false): it never leaves the token".into(),
        });
    }
    if dek.wrap_with_trusted == Some(true) && kek.trusted != Some(true) {
        return Err(Error::PolicyRefused {
            key: dek.label,
            reason: "backup policy trusted: only a KEK the SO marked CKA_TRUSTED may wrap it"
                .into(),
        });
    }
    let support = WrapSupport::probe(token)?;
    let (algorithm, mech) = support.for_secret().ok_or_else(|| Error::NotCapable {
        capability: "AES key wrap".into(),
        detail: support.describe(),
        alternatives: String::new(),
    })?;
    let blob = wrap::wrap(token, mech, kek.handle, dek.handle)?;
    // The KCV of what the blob holds, from a check copy unwrapped in the
    // token: it also proves the export key opens under this KEK.
    let key_type = if dek.key_type == "aes" {
        KeyKind::Aes
    } else {
        KeyKind::Generic
    };
    let kcv = if kek.usage.contains(&"unwrap") {
        let mut eph = Ephemeral::for_token(token);
        let copy = receive::check_copy(token, &mut eph, mech, kek.handle, &blob, key_type)?;
        Some(check::kcv(token, copy, key_type)?)
    } else if dek.kcv_method == "CKA_CHECK_VALUE" && key_type == KeyKind::Aes {
        dek.kcv.clone().map(|v| (v, wrap::KCV_AES))
    } else {
        None
    };
    use base64::Engine;
    Ok(ExportKey {
        export_key: base64::engine::general_purpose::STANDARD.encode(&blob),
        algorithm: algorithm.into(),
        key_type: dek.key_type.clone(),
        size: dek.size,
        kcv: kcv.as_ref().map(|k| k.0.clone()),
        kcv_method: kcv.as_ref().map(|k| k.1.to_string()),
        kek_label: kek.label.clone(),
        kek_kcv: kek.kcv.clone(),
    })
}

/// `import-export-key`: unwrap an export key under the same KEK; its KCV
/// (when recorded) must match after unwrap.
pub fn import_export_key(
    token: &Token<'_>,
    doc: &ExportKey,
    kek: &KeySelector,
    label: &str,
    policy: BackupPolicy,
    usage: Option<Usage>,
) -> Result<Vec<KeyInfo>> {
    let kek_info = crate::ops::backup::resolve_kek(token, kek)?;
    if let (Some(want), Some(have)) = (&doc.kek_kcv, &kek_info.kcv) {
        if want != have {
            return Err(Error::WrongUnwrapKey {
                what: "KEK".into(),
                reason: format!(
                    "the export key was made under KEK '{}' (KCV {want}); '{}' has KCV {}",
                    doc.kek_label, kek_info.label, have
                ),
            });
        }
    }
    let spec = match (doc.key_type.as_str(), doc.size) {
        ("aes", Some(128)) => KeySpec::Aes128,
        ("aes", Some(192)) => KeySpec::Aes192,
        ("aes", Some(256)) => KeySpec::Aes256,
        ("generic", Some(256)) => KeySpec::Generic256,
        (t, s) => {
            return Err(Error::BadInput {
                what: "export key".into(),
                reason: format!("key type {t} of size {s:?} is not one hsmkey imports"),
            })
        }
    };
    let support = WrapSupport::probe(token)?;
    let mech = support
        .unwrap_mechanism(&doc.algorithm)
        .ok_or_else(|| Error::NotCapable {
            capability: format!("{} key unwrap", doc.algorithm),
            detail: support.describe(),
            alternatives: String::new(),
        })?;
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(doc.export_key.trim())
        .map_err(|_| Error::BadInput {
            what: "export_key".into(),
            reason: "not base64".into(),
        })?;
    let gen = GenerateSpec {
        name: label.into(),
        id: Vec::new(),
        spec,
        usage,
        policy,
        kek: false,
        trusted: false,
        version: 1,
    };
    let usage = keys::effective_usage(&gen)?;
    refuse_kek_usage(&usage)?;
    let id = crate::ops::keys::random_id(token)?;
    crate::ops::keys::check_available(token, label, &id)?;
    let new = NewKey {
        label,
        id: &id,
        spec,
        policy,
        usage,
    };
    let key = receive::unwrap_export_key(
        token,
        mech,
        kek_info.handle,
        &blob,
        &new,
        kek_info.trusted == Some(true),
    )?;
    let mut created = Undo::for_token(token);
    created.add(key, undo::describe(label, "secret-key", &id));
    match check_export_key(
        token,
        doc,
        &usage,
        spec,
        &support,
        mech,
        kek_info.handle,
        &blob,
        key,
    ) {
        Ok(()) => {}
        Err(e) => return Err(created.fail(e)),
    }
    match keys::describe(token, key) {
        Ok(info) => {
            created.commit();
            Ok(vec![info])
        }
        Err(e) => Err(created.fail(e)),
    }
}

/// The unwrapped export key has the KCV and size its document claims.
#[allow(clippy::too_many_arguments)]
fn check_export_key(
    token: &Token<'_>,
    doc: &ExportKey,
    usage: &Usage,
    spec: KeySpec,
    support: &WrapSupport,
    mech: u64,
    kek: Handle,
    blob: &[u8],
    key: Handle,
) -> Result<()> {
    if let (Some(want), Some(method)) = (&doc.kcv, &doc.kcv_method) {
        let key_type = if spec == KeySpec::Generic256 {
            KeyKind::Generic
        } else {
            KeyKind::Aes
        };
        let expected_method = if key_type == KeyKind::Aes {
            wrap::KCV_AES
        } else {
            wrap::KCV_GENERIC
        };
        if method != expected_method {
            return Err(Error::BadInput {
                what: "export key".into(),
                reason: format!("KCV method {method} does not fit a {} key", doc.key_type),
            });
        }
        let mut eph = Ephemeral::for_token(token);
        let direct = if key_type == KeyKind::Aes {
            usage.encrypt
        } else {
            usage.sign
        };
        let subject = if direct {
            key
        } else {
            receive::check_copy(token, &mut eph, mech, kek, blob, key_type)?
        };
        let (got, _) = check::kcv(token, subject, key_type)?;
        if got != *want {
            return Err(Error::BadInput {
                what: "export key".into(),
                reason: format!("KCV after unwrap is {got}; the export key says {want}: altered, or another key"),
            });
        }
    }
    // The size the document claims is the size the key has.
    if let Some(bits) = receive::secret_bits(token, support, key, || {
        let kind = if spec == KeySpec::Generic256 {
            KeyKind::Generic
        } else {
            KeyKind::Aes
        };
        receive::export_measuring_copy(token, mech, kek, blob, kind)
    })? {
        if Some(bits) != doc.size {
            return Err(Error::BadInput {
                what: "export key".into(),
                reason: format!("the key is {bits} bits; the document says {:?}", doc.size),
            });
        }
    }
    Ok(())
}
