//! BYOK export: wrap a token key for import into a cloud KMS, in the
//! target's own layout, with all the wrapping done in the token.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::byok::{
    self, aws, azure, gcp, huawei, vault, Hash, KeyFacts, Target, Wrapping,
};
use crate::formats::spki::{self, RsaPublic};
use crate::hsm::keys::{self, KeyInfo, KeySelector};
use crate::hsm::probe::Ephemeral;
use crate::hsm::wrap::{self, OaepHash, SessionKey, WrapSupport};
use crate::hsm::Token;

/// Where the wrapping key (and, for some targets, the import token) comes from.
pub enum WrappingSource {
    /// A public key file: PEM, DER, or base64 DER.
    PublicKey(Vec<u8>),
    /// Huawei get-parameters-for-import response.
    Huawei(huawei::ImportParameters),
    /// AWS GetParametersForImport output.
    Aws(aws::ImportParameters),
}

/// A BYOK request.
pub struct ByokRequest {
    pub key: KeySelector,
    pub target: Target,
    pub algorithm: String,
    pub wrapping: WrappingSource,
    /// Azure: the versioned KEK id. AWS: the KMS key id for the printed command.
    pub kid: Option<String>,
    /// AWS: an ImportToken given on its own (binary or base64).
    pub import_token: Option<Vec<u8>>,
    /// Now, in epoch seconds (passed in so the library stays deterministic).
    pub now: i64,
    /// The output path as the printed import command names it.
    pub out: String,
}

/// A file to write, named by its role.
#[derive(Debug, Clone)]
pub struct OutputFile {
    /// "" for the main output, else a suffix appended to the output path.
    pub suffix: &'static str,
    pub bytes: Vec<u8>,
}

/// What `byok` produced.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ByokResult {
    pub target: String,
    pub algorithm: String,
    pub key: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub size: Option<u64>,
    pub wrapping_key_bits: u32,
    pub wrapping_key_sha256: String,
    /// How the token did it: "rsa-oaep-<hash>" or "rsa-oaep-<hash> + rfc5649 via <mechanism>".
    pub method: String,
    #[serde(skip)]
    pub files: Vec<OutputFile>,
    /// The import command for the target, ready for a POSIX shell: what
    /// hsmkey knows filled in and quoted, the rest shell variables.
    pub command: String,
    /// The variables `command` uses, each with what to set it to.
    pub variables: BTreeMap<String, String>,
    /// What the target may still refuse, or what to check in the command.
    pub notes: Vec<String>,
}

fn hash_of(h: Hash) -> OaepHash {
    match h {
        Hash::Sha1 => OaepHash::Sha1,
        Hash::Sha224 => OaepHash::Sha224,
        Hash::Sha256 => OaepHash::Sha256,
        Hash::Sha384 => OaepHash::Sha384,
        Hash::Sha512 => OaepHash::Sha512,
    }
}

fn rule(e: byok::RuleError) -> Error {
    Error::TargetRule { rule: e.0 }
}

/// The one object to export: a secret key or the private half of a pair, one version.
fn resolve_key(token: &Token<'_>, selector: &KeySelector) -> Result<KeyInfo> {
    keys::resolve_one(token, selector, "key version", false, |k| {
        k.class != "public-key"
    })?
    .ok_or_else(|| Error::TargetRule {
        rule: format!(
            "{} is a public key only: there is no key material to export",
            selector.shown
        ),
    })
}

/// Wrap one token key for a cloud KMS.
pub fn byok(token: &Token<'_>, req: &ByokRequest) -> Result<ByokResult> {
    let plan = byok::plan(req.target, &req.algorithm).map_err(rule)?;

    // The wrapping key, and what the target handed out with it.
    let (public_bytes, mut import_token, key_id, expires) =
        match &req.wrapping {
            WrappingSource::PublicKey(b) => {
                (b.clone(), req.import_token.clone(), req.kid.clone(), None)
            }
            WrappingSource::Huawei(p) => {
                if req.target != Target::Huawei {
                    return Err(Error::Usage {
                        message: "these are Huawei import parameters: use --target huawei".into(),
                    });
                }
                let der = p.public_key_der().map_err(|reason| Error::BadInput {
                    what: "import parameters".into(),
                    reason,
                })?;
                (
                    der,
                    Some(p.import_token.clone().into_bytes()),
                    Some(p.key_id.clone()),
                    Some(p.expiration_time),
                )
            }
            WrappingSource::Aws(p) => {
                if req.target != Target::Aws {
                    return Err(Error::Usage {
                        message: "these are AWS import parameters: use --target aws".into(),
                    });
                }
                let bad = |reason| Error::BadInput {
                    what: "import parameters".into(),
                    reason,
                };
                (
                    p.public_key_der().map_err(bad)?,
                    Some(p.import_token().map_err(bad)?),
                    req.kid.clone().or_else(|| p.key_id.clone()),
                    match &p.parameters_valid_to {
                        None => None,
                        Some(_) => Some(p.valid_to().ok_or_else(|| {
                            Error::BadInput {
                            what: "import parameters".into(),
                            reason:
                                "ParametersValidTo is neither epoch seconds nor an ISO 8601 time"
                                    .into(),
                        }
                        })?),
                    },
                )
            }
        };
    if let Some(t) = expires {
        if t <= req.now {
            return Err(Error::Expired {
                what: format!(
                    "the import parameters expired {} seconds ago; ask the KMS for new ones",
                    req.now - t
                ),
            });
        }
    }
    if req.target == Target::Huawei && !matches!(req.wrapping, WrappingSource::Huawei(_)) {
        return Err(Error::Usage {
            message: "--target huawei needs --import-params (the get-parameters-for-import response: it carries key_id and import_token)".into(),
        });
    }
    let kid = match req.target {
        Target::Azure => {
            let kid = req.kid.clone().ok_or_else(|| Error::Usage {
                message: "--target azure needs --kid, the versioned id of the KEK in Key Vault"
                    .into(),
            })?;
            azure::check_kid(&kid).map_err(|reason| Error::BadInput {
                what: "--kid".into(),
                reason,
            })?;
            Some(kid)
        }
        _ => key_id,
    };
    let public: RsaPublic =
        spki::parse_rsa_public(&public_bytes).map_err(|reason| Error::BadInput {
            what: "wrapping key".into(),
            reason,
        })?;

    // The key and the target's rules, before any cryptography.
    let info = resolve_key(token, &req.key)?;
    if info.extractable != Some(true) {
        return Err(Error::PolicyRefused {
            key: info.label,
            reason: "backup policy none (CKA_EXTRACTABLE=false): it never leaves the token".into(),
        });
    }
    if info.wrap_with_trusted == Some(true) {
        return Err(Error::PolicyRefused {
            key: info.label,
            reason: "backup policy trusted: it may be wrapped only under keys the SO marked CKA_TRUSTED, and a cloud's wrapping key is not one"
                .into(),
        });
    }
    // Which key-wrap mechanisms are real here, probed once for this command.
    let support = WrapSupport::probe(token)?;
    // Some tokens forget a secret key's length after unwrap (SoftHSM reports
    // CKA_VALUE_LEN = 0): measure it by wrapping the key, which may leave
    // anyway, under a session key; only the length is learnt.
    let size = match (info.size, info.class.as_str()) {
        (None, "secret-key") => measure_secret(token, &support, info.handle)?,
        (s, _) => s,
    };
    let facts = KeyFacts {
        key_type: info.key_type.clone(),
        size,
    };
    byok::check(&plan, &facts, public.bits).map_err(rule)?;
    if let (Target::Azure, Some(kid)) = (req.target, &kid) {
        azure::accepts_at(kid, &facts).map_err(|why| {
            rule(byok::RuleError(format!(
                "azure does not import {}: {why}",
                facts.describe()
            )))
        })?;
    }

    let hash = hash_of(plan.wrapping.hash());
    let mut eph = Ephemeral::for_token(token);
    let pubh = wrap::session_rsa_public(token, &mut eph, &public.modulus, &public.public_exponent)?;
    let oaep_alternative = |e: Error| {
        match e {
        Error::NotCapable { capability, detail, .. } => Error::NotCapable {
            capability,
            detail,
            alternatives: format!(
                "Pick a SHA-1 algorithm ({}), or use a token with this OAEP hash (SoftHSM 2.6.1 has SHA-1 only; kryoptic and NSS have SHA-256).",
                byok::algorithms(req.target)
                    .iter()
                    .filter(|a| a.contains("SHA1") || a.contains("SHA_1"))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        other => other,
    }
    };
    // Huawei's asymmetric import is OAEP of a temporary key + KWP, like RSA-AES.
    let split_private = req.target == Target::Huawei && facts.is_private();
    let (method, rsa_part, kw_part) = match plan.wrapping {
        Wrapping::Oaep(_) if !split_private => {
            let blob = wrap::wrap_oaep(token, hash, pubh, info.handle).map_err(oaep_alternative)?;
            (format!("rsa-oaep-{}", hash.name()), blob, None)
        }
        _ => {
            let (mech, mech_name) = kwp_mechanism(&support, &facts)?;
            let temporary = wrap::generate_session_key(token, &mut eph, SessionKey::Transfer)?;
            let rsa_part =
                wrap::wrap_oaep(token, hash, pubh, temporary).map_err(oaep_alternative)?;
            let kw_part = wrap::wrap(token, mech, temporary, info.handle)
                .map_err(|e| wrap::refused_by_policy(&info.label, e))?;
            (
                format!("rsa-oaep-{} + rfc5649 via {mech_name}", hash.name()),
                rsa_part,
                Some(kw_part),
            )
        }
    };
    drop(eph);

    let generator = format!(
        "{}; source HSM: {} {} (firmware {})",
        crate::TOOL,
        token.summary().manufacturer,
        token.summary().model,
        token
            .module()
            .details(token.slot())
            .map(|d| d.firmware_version)
            .unwrap_or_else(|_| "unknown".into())
    );
    let joined = || {
        let mut b = rsa_part.clone();
        if let Some(k) = &kw_part {
            b.extend_from_slice(k);
        }
        b
    };
    let mut notes = Vec::new();
    let (files, next) = match req.target {
        Target::Aws => {
            let mut files = vec![OutputFile {
                suffix: "",
                bytes: joined(),
            }];
            if let Some(t) = import_token.take() {
                files.push(OutputFile {
                    suffix: ".import-token",
                    bytes: t,
                });
            }
            let token_written = files.len() > 1;
            (files, aws::next_step(kid.as_deref(), token_written))
        }
        Target::Gcp => {
            if facts.key_type == "rsa" {
                notes.push(format!(
                    "--algorithm {} assumes a PKCS#1 signing key: for a PSS or decryption key, use the algorithm of the Cloud KMS key you import into",
                    gcp::key_algorithm(&facts)
                ));
            }
            (
                vec![OutputFile {
                    suffix: "",
                    bytes: joined(),
                }],
                gcp::next_step(&facts),
            )
        }
        Target::Azure => {
            let kid = kid.as_deref().unwrap_or_default();
            let file = azure::byok_file(kid, &joined(), &generator);
            (vec![json_file(&file)?], azure::next_step(kid, &facts))
        }
        Target::Huawei => {
            let WrappingSource::Huawei(params) = &req.wrapping else {
                unreachable!("checked above")
            };
            let body = huawei::material(params, &rsa_part, kw_part.as_deref());
            notes.extend(huawei::outside_documented_limits(&body));
            (vec![json_file(&body)?], huawei::next_step())
        }
        Target::Vault => {
            let key_type =
                vault::key_type_name(&facts).map_err(|rule| Error::TargetRule { rule })?;
            let body = vault::body(&joined(), &plan.algorithm, key_type);
            (vec![json_file(&body)?], vault::next_step())
        }
    };
    Ok(ByokResult {
        target: req.target.name().into(),
        algorithm: plan.algorithm.clone(),
        key: info.label.clone(),
        key_type: info.key_type.clone(),
        size,
        wrapping_key_bits: public.bits,
        wrapping_key_sha256: public.fingerprint(),
        method,
        files,
        command: next.render(&req.out),
        variables: next.variables,
        notes,
    })
}

fn measure_secret(
    token: &Token<'_>,
    support: &WrapSupport,
    key: crate::hsm::Handle,
) -> Result<Option<u64>> {
    let Some(mech) = support.rfc3394 else {
        return Ok(None);
    };
    let mut eph = Ephemeral::for_token(token);
    let measure = wrap::generate_session_key(token, &mut eph, SessionKey::Transfer)?;
    Ok(wrap::wrap(token, mech, measure, key)
        .ok()
        .map(|blob| (blob.len() as u64).saturating_sub(8) * 8))
}

fn json_file<T: Serialize>(value: &T) -> Result<OutputFile> {
    // Plain structs do not fail to serialize; if one ever did, that is a bug,
    // reported rather than a panic.
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Internal(format!("cannot serialize the output: {e}")))?;
    bytes.push(b'\n');
    Ok(OutputFile { suffix: "", bytes })
}

/// The mechanism that gives exact RFC 5649 for this key on this token.
fn kwp_mechanism(support: &WrapSupport, key: &KeyFacts) -> Result<(u64, String)> {
    if let Some(m) = support.rfc5649 {
        return Ok((m, format!("0x{m:04X}")));
    }
    // Zero padding changes nothing when the key is a whole number of 8-byte
    // blocks: then SoftHSM's 0x210A is exact RFC 5649.
    let whole_blocks = !key.is_private() && key.size.is_some_and(|bits| bits % 64 == 0);
    if let (Some(m), true) = (support.rfc5649_zero_padded, whole_blocks) {
        return Ok((
            m,
            format!("0x{m:04X} (zero padding is a no-op for this key)"),
        ));
    }
    Err(Error::NotCapable {
        capability: "exact RFC 5649 key wrap (for RSA-AES)".into(),
        detail: format!(
            "{}; this token has {}",
            if key.is_private() {
                "a private key travels as PKCS#8, whose length is not a multiple of 8"
            } else {
                "the key's length is unknown or not a multiple of 8 bytes"
            },
            support.describe()
        ),
        alternatives: "Use a token with CKM_AES_KEY_WRAP_KWP (kryoptic, NSS, most HSMs); SoftHSM 2.6.1's 0x210A zero-pads PKCS#8 and the cloud would reject it.".into(),
    })
}
