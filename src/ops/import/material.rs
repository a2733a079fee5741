//! `import`: check the import token, its key id, expiry and algorithm, unwrap
//! the material in the token, check the new key is what --type says, and use
//! the parameters up.

use super::{
    expected_bits, hash_of, invalid, pair_label, refuse_kek_usage, rsa_public_of, token_mac_key,
};
use crate::error::{Error, Result};
use crate::formats::import_params::{self, Material, TokenPayload};
use crate::hsm::keys::{self, BackupPolicy, GenerateSpec, KeyInfo, KeySpec, Usage};
use crate::hsm::probe::Ephemeral;
use crate::hsm::receive::{self, NewKey, Opener};
use crate::hsm::template::KeyKind;
use crate::hsm::undo::{self, Undo};
use crate::hsm::wrap::{self, OaepHash, WrapSupport};
use crate::hsm::{Handle, Token};

/// How the import material arrives.
pub enum MaterialInput {
    /// Huawei-shaped JSON body.
    Json(Material),
    /// AWS-style raw EncryptedKeyMaterial plus the import token text.
    Raw {
        material: Vec<u8>,
        import_token: String,
    },
}

/// `import`.
pub struct ImportRequest {
    pub input: MaterialInput,
    pub label: String,
    pub spec: KeySpec,
    pub policy: BackupPolicy,
    pub usage: Option<Usage>,
    pub now: i64,
}

/// What `import` did.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ImportReport {
    pub key_id: String,
    pub algorithm: String,
    pub keys: Vec<KeyInfo>,
    /// The import key pair was destroyed: the parameters cannot be used again.
    pub parameters_consumed: bool,
    /// Objects of the used import key pair that could not be destroyed
    /// (harmless: without its private key the pair imports nothing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<String>,
}

/// `import`: check the import token, expiry and algorithm, then unwrap in
/// the token; the parameters are single-use.
pub fn import(token: &Token<'_>, req: &ImportRequest) -> Result<ImportReport> {
    let (material_key_id, token_text, key_material, private_key) = match &req.input {
        MaterialInput::Json(m) => (
            Some(m.key_id.clone()),
            m.import_token.clone(),
            m.key_material().map_err(|reason| Error::BadInput {
                what: "material".into(),
                reason,
            })?,
            m.private_key().map_err(|reason| Error::BadInput {
                what: "material".into(),
                reason,
            })?,
        ),
        MaterialInput::Raw {
            material,
            import_token,
        } => (None, import_token.clone(), material.clone(), None),
    };
    // 1. The import token: made by this token, for this key id, not expired.
    let (payload, payload_bytes, mac) = import_params::decode_token(&token_text)
        .map_err(|r| invalid(format!("the import token: {r}")))?;
    let mac_key = token_mac_key(token)?
        .ok_or_else(|| invalid("this token never issued import parameters"))?;
    // Computed in the token, compared here: a failing token is a token
    // error, not a forged import token (NSS answers a wrong HMAC in C_Verify
    // with CKR_DEVICE_ERROR).
    let expected = receive::token_mac(token, mac_key, &payload_bytes, "check the import token")?;
    if !crate::formats::same_bytes(&expected, &mac) {
        return Err(invalid(
            "the import token was not issued by this token, or was altered",
        ));
    }
    if let Some(id) = &material_key_id {
        if *id != payload.key_id {
            return Err(invalid(format!(
                "the material is for key id {id}, the import token for {}",
                payload.key_id
            )));
        }
    }
    if payload.expires <= req.now {
        return Err(Error::Expired {
            what: format!(
                "the import parameters for {} expired {} s ago; ask for new ones (`hsmkey import-params`)",
                payload.key_id,
                req.now - payload.expires
            ),
        });
    }
    let (hash, rsa_aes) = hash_of(&payload.algorithm)
        .ok_or_else(|| invalid("unknown algorithm in the import token"))?;
    let label = pair_label(&payload.key_id);
    let key_id = payload.key_id.clone();
    // Everything from here reads or uses the import key pair, which another
    // run (another replica on the token) may use up at any moment.
    let mut using_up = false;
    let outcome = (|| -> Result<ImportReport> {
        let private_pair =
            receive::find_pair_private(token, &label)?.ok_or_else(|| Error::ImportTokenUsed {
                key_id: payload.key_id.clone(),
            })?;
        // Found by label: it must be the unwrap-only pair import-params made.
        let pair_info = keys::describe_with(token, private_pair, false)?;
        if pair_info.sensitive != Some(true) || pair_info.extractable != Some(false) {
            return Err(invalid(
                "the key pair under this key id is not the protected one import-params makes",
            ));
        }
        let public = rsa_public_of(token, private_pair)?;
        if public.fingerprint() != payload.spki_sha256 {
            return Err(invalid("the import token names another wrapping key"));
        }

        // 2. The material fits the key size and the algorithm.
        let k = public.modulus.len();
        let is_private = !req.spec.is_secret();
        let huawei_private = private_key.is_some();
        if huawei_private || !rsa_aes {
            if key_material.len() != k {
                return Err(Error::BadInput {
                    what: "encrypted_key_material".into(),
                    reason: format!(
                        "{} bytes; an RSA-{} OAEP ciphertext is exactly {k}",
                        key_material.len(),
                        public.bits
                    ),
                });
            }
        } else if key_material.len() < k + 24 || (key_material.len() - k) % 8 != 0 {
            return Err(Error::BadInput {
                what: "encrypted key material".into(),
                reason: format!(
                    "{} bytes cannot be an RSA-{} part of {k} bytes followed by an RFC 5649 part",
                    key_material.len(),
                    public.bits
                ),
            });
        }
        if is_private && !rsa_aes && !huawei_private {
            return Err(Error::BadInput {
            what: "material".into(),
            reason: "a private key comes as RSA_AES_KEY_WRAP_*, or with encrypted_privatekey; RSAES_OAEP alone carries secret keys only".into(),
        });
        }
        if !is_private && huawei_private {
            return Err(Error::BadInput {
                what: "material".into(),
                reason: format!(
                    "encrypted_privatekey is for private keys, but --type is {}",
                    req.spec.name()
                ),
            });
        }

        // 3. The new key's name, id and usage, checked before anything is made.
        let spec = GenerateSpec {
            name: req.label.clone(),
            id: Vec::new(),
            spec: req.spec,
            usage: req.usage,
            policy: req.policy,
            kek: false,
            trusted: false,
            version: 1,
        };
        let usage = keys::effective_usage(&spec)?;
        refuse_kek_usage(&usage)?;
        let id = crate::ops::keys::random_id(token)?;
        crate::ops::keys::check_available(token, &req.label, &id)?;
        let new = NewKey {
            label: &req.label,
            id: &id,
            spec: req.spec,
            policy: req.policy,
            usage,
        };

        // 4. Unwrap in the token.
        let mut eph = Ephemeral::for_token(token);
        let mut created = Undo::for_token(token);
        let (kw_blob, temporary) = if huawei_private || rsa_aes {
            let (rsa_part, kw_part) = if huawei_private {
                (
                    key_material.as_slice(),
                    private_key.clone().unwrap_or_default(),
                )
            } else {
                (&key_material[..k], key_material[k..].to_vec())
            };
            let temp = receive::unwrap_temporary_aes(token, hash, private_pair, rsa_part)?;
            (Some(kw_part), Some(eph.keep(temp)))
        } else {
            (None, None)
        };
        let support = WrapSupport::probe(token)?;
        let kwp = support.unwrap_mechanism("rfc5649");
        if is_private {
            // NSS needs the public point for an EC key, which the material does not carry.
            if req.spec.name().starts_with("ec") && wrap::is_nss(token) {
                return Err(Error::NotCapable {
                capability: "importing an EC private key on NSS softokn".into(),
                detail: "NSS needs the public point (CKA_NSS_DB) in the unwrap template, and the material does not carry it".into(),
                alternatives: "Import EC keys into another token, or bring the key as a backup bundle (which carries the public half).".into(),
            });
            }
        }
        let new_key = match (&kw_blob, temporary) {
            (Some(kw), Some(temp)) => {
                let mech = kwp.ok_or_else(|| Error::NotCapable {
                    capability: "RFC 5649 key unwrap".into(),
                    detail: support.describe(),
                    alternatives: String::new(),
                })?;
                let opener = Opener::Mechanism {
                    mechanism: mech,
                    key: temp,
                };
                receive::unwrap_material(token, opener, kw, &new)?
            }
            _ => {
                let opener = Opener::Oaep {
                    hash,
                    private: private_pair,
                };
                receive::unwrap_material(token, opener, &key_material, &new)?
            }
        };
        created.add(
            new_key,
            undo::describe(
                &req.label,
                if is_private {
                    "private-key"
                } else {
                    "secret-key"
                },
                &id,
            ),
        );
        match check_imported(
            token,
            req,
            &support,
            &mut created,
            Imported {
                new_key,
                id: &id,
                usage: &usage,
                kw_blob: kw_blob.as_deref(),
                temporary,
                kwp,
                hash,
                private_pair,
                key_material: &key_material,
            },
        ) {
            Ok(keys_made) => {
                drop(eph);
                // A replica on another host is not held off by this host's
                // lock and may have unwrapped the same material. Each run
                // made its key before it looks, so of two runs at most one
                // sees no other: a run that sees one takes its own key
                // away and leaves the parameters to the other (both may
                // step back; the parameters then stay usable).
                let ours: Vec<Handle> = created.handles().collect();
                match keys::others_with_label(token, &req.label, &ours) {
                    Ok(false) => {}
                    Ok(true) => {
                        return Err(created.fail(Error::ConcurrentCreate {
                            what: format!("a key labelled '{}'", req.label),
                        }))
                    }
                    Err(e) => return Err(created.fail(e)),
                }
                // Single use: the import key pair's private key goes before the
                // key is kept; if it will not go, the import is undone.
                using_up = true;
                let pair = match receive::use_up_pair(token, &label) {
                    Ok(pair) => pair,
                    Err(e) => return Err(created.fail(e)),
                };
                created.commit();
                Ok(finish_import(token, &label, payload, keys_made, pair))
            }
            Err(e) => Err(created.fail(e)),
        }
    })();
    if using_up {
        // This run went on to use the parameters itself and its destroy
        // failed. Only when the pair is gone and another run's key is there
        // did that run win (SoftHSM shows one process's new object to
        // another late, so both may have looked before the other made its
        // key, and refuses the second destroy with CKR_FUNCTION_FAILED);
        // otherwise the token's error stands.
        return outcome.map_err(|e| match e {
            Error::Pkcs11 { .. }
                if matches!(receive::find_pair_private(token, &label), Ok(None))
                    && matches!(keys::others_with_label(token, &req.label, &[]), Ok(true)) =>
            {
                Error::ImportTokenUsed { key_id }
            }
            e => e,
        });
    }
    outcome.map_err(|e| used_meanwhile(token, &label, &key_id, e))
}

/// An import that failed before it used the parameters, while the import
/// key pair went from the token: another run (a server replica on another
/// host, which this host's lock does not reach) used them meanwhile, or
/// they were withdrawn. Whatever the token answered this run when the pair
/// vanished under it (a handle no longer valid, or on some soft tokens a
/// general error, an unwrap that fails), the parameters are used: HK1502,
/// as a later attempt would hear. Looked up again to be sure; a clean-up
/// that left objects behind is always reported as it is.
fn used_meanwhile(token: &Token<'_>, label: &str, key_id: &str, e: Error) -> Error {
    let may_be_the_pair = matches!(
        e,
        Error::Pkcs11 { .. }
            | Error::BadInput { .. }
            | Error::WrongUnwrapKey { .. }
            | Error::AlreadyExists { .. }
            | Error::ConcurrentCreate { .. }
    );
    if may_be_the_pair && matches!(receive::find_pair_private(token, label), Ok(None)) {
        Error::ImportTokenUsed {
            key_id: key_id.to_string(),
        }
    } else {
        e
    }
}

/// What [`check_imported`] needs of the unwrap it checks.
struct Imported<'a> {
    new_key: Handle,
    id: &'a [u8],
    usage: &'a Usage,
    kw_blob: Option<&'a [u8]>,
    temporary: Option<Handle>,
    kwp: Option<u64>,
    hash: OaepHash,
    private_pair: Handle,
    key_material: &'a [u8],
}

/// The imported key is what --type says; its public half is made; all is
/// described. Anything made is recorded in `created`.
fn check_imported(
    token: &Token<'_>,
    req: &ImportRequest,
    support: &WrapSupport,
    created: &mut Undo<'_>,
    imported: Imported<'_>,
) -> Result<Vec<KeyInfo>> {
    let Imported {
        new_key,
        id,
        usage,
        kw_blob,
        temporary,
        kwp,
        hash,
        private_pair,
        key_material,
    } = imported;

    // 5. The key is what --type says.
    let want = expected_bits(req.spec);
    if req.spec.is_secret() {
        let kind = if req.spec == KeySpec::Generic256 {
            KeyKind::Generic
        } else {
            KeyKind::Aes
        };
        let bits = receive::secret_bits(token, support, new_key, || match (kw_blob, temporary) {
            (Some(kw), Some(temp)) => {
                let mech = kwp.ok_or_else(|| {
                    Error::Internal("RFC 5649 vanished between two unwraps".into())
                })?;
                let opener = Opener::Mechanism {
                    mechanism: mech,
                    key: temp,
                };
                receive::material_measuring_copy(token, opener, kw, kind)
            }
            _ => {
                let opener = Opener::Oaep {
                    hash,
                    private: private_pair,
                };
                receive::material_measuring_copy(token, opener, key_material, kind)
            }
        })?;
        if let Some(bits) = bits {
            if bits != want {
                return Err(Error::BadInput {
                    what: "key material".into(),
                    reason: format!("it is {bits} bits; --type {} needs {want}", req.spec.name()),
                });
            }
        }
    } else {
        let info = keys::describe_with(token, new_key, false)?;
        if info.size != Some(want) {
            return Err(Error::BadInput {
                what: "key material".into(),
                reason: format!(
                    "it is a {} key of {} bits; --type {} was asked",
                    info.key_type,
                    info.size
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    req.spec.name()
                ),
            });
        }
        // The public half, from the public values the private key carries.
        if let Some(public) = receive::make_rsa_public_half(token, new_key, &req.label, id, usage)?
        {
            created.add(public, undo::describe(&req.label, "public-key", id));
        }
    }
    created
        .handles()
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| keys::describe(token, h))
        .collect()
}

/// Step 6: the rest of the used import key pair goes. The key is imported and
/// the parameters are used up (their private key is gone), so a public half
/// that will not go is reported in `left_behind`, not an error.
fn finish_import(
    token: &Token<'_>,
    label: &str,
    payload: TokenPayload,
    keys_made: Vec<KeyInfo>,
    rest: Vec<Handle>,
) -> ImportReport {
    let left_behind = receive::destroy_pair_rest(
        token,
        &undo::describe(label, "public-key", payload.key_id.as_bytes()),
        rest,
    );
    ImportReport {
        key_id: payload.key_id,
        algorithm: payload.algorithm,
        keys: keys_made,
        parameters_consumed: true,
        left_behind,
    }
}
