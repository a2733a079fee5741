//! The token as the receiving KMS: import parameters (an RSA key pair made in
//! the token, with an import token the token authenticates), wrapped import,
//! and Piiano-style export keys. All unwrapping happens in the token.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

use crate::error::{ckr_name, Error, Result};
use crate::formats::export_key::ExportKey;
use crate::formats::import_params::{self, Material, Parameters, TokenPayload};
use crate::formats::spki;
use crate::hsm::keys::{self, BackupPolicy, GenerateSpec, KeyInfo, KeySelector, KeySpec, Usage};
use crate::hsm::probe::Ephemeral;
use crate::hsm::undo::{self, Undo};
use crate::hsm::wrap::{self, OaepHash, PublicValues, WrapSupport};
use crate::hsm::Token;

/// Label of the token key that authenticates import tokens.
pub const TOKEN_MAC_LABEL: &str = "hsmkey-import-token-key";
/// Label prefix of import key pairs.
pub const PAIR_PREFIX: &str = "hsmkey-import-";

fn hash_of(algorithm: &str) -> Option<(OaepHash, bool)> {
    match algorithm {
        "RSAES_OAEP_SHA_1" => Some((OaepHash::Sha1, false)),
        "RSAES_OAEP_SHA_256" => Some((OaepHash::Sha256, false)),
        "RSA_AES_KEY_WRAP_SHA_1" => Some((OaepHash::Sha1, true)),
        "RSA_AES_KEY_WRAP_SHA_256" => Some((OaepHash::Sha256, true)),
        _ => None,
    }
}

fn find_one(token: &Token<'_>, template: &[Attribute]) -> Result<Option<ObjectHandle>> {
    Ok(token
        .session()
        .find_objects(template)
        .map_err(|e| Error::pkcs11("find a key", e))?
        .into_iter()
        .next())
}

/// The token key that MACs import tokens, made on first use (then recorded
/// in `created`, so a failed first run leaves no key behind).
fn token_mac_key_or_create(token: &Token<'_>, created: &mut Undo<'_>) -> Result<ObjectHandle> {
    match token_mac_key(token)? {
        Some(h) => Ok(h),
        None => {
            let h = create_token_mac_key(token)?;
            created.add(
                h,
                undo::describe(TOKEN_MAC_LABEL, "secret-key", TOKEN_MAC_LABEL.as_bytes()),
            );
            Ok(h)
        }
    }
}

/// The token key that MACs import tokens, if this token ever made one.
fn token_mac_key(token: &Token<'_>) -> Result<Option<ObjectHandle>> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Token(true),
        Attribute::Label(TOKEN_MAC_LABEL.as_bytes().to_vec()),
    ];
    if let Some(h) = find_one(token, &template)? {
        // Found by label: it must be the key hsmkey made, not a planted one.
        let info = keys::describe_with(token, h, false)?;
        if info.sensitive != Some(true)
            || info.extractable != Some(false)
            || info.key_type != "generic"
        {
            return Err(Error::PolicyRefused {
                key: info.label,
                reason: "the import-token key must be a sensitive, non-extractable generic secret; this one is not".into(),
            });
        }
        return Ok(Some(h));
    }
    Ok(None)
}

/// Never extractable, never modifiable: it only signs and checks import tokens.
fn create_token_mac_key(token: &Token<'_>) -> Result<ObjectHandle> {
    token
        .session()
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(TOKEN_MAC_LABEL.as_bytes().to_vec()),
                Attribute::Id(TOKEN_MAC_LABEL.as_bytes().to_vec()),
                Attribute::ValueLen(32u64.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Modifiable(false),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
            ],
        )
        .map_err(|e| Error::pkcs11("create the import-token key", e))
}

/// A session check copy of a wrapped secret key, unwrapped in the token
/// (sensitive, non-extractable, for the KCV operation only).
fn check_copy(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    mech: u64,
    kek: ObjectHandle,
    blob: &[u8],
    key_type: KeyType,
) -> Result<ObjectHandle> {
    let copy = wrap::unwrap(
        token,
        mech,
        kek,
        blob,
        &wrap::check_copy_template(ObjectClass::SECRET_KEY, key_type),
    )
    .map_err(|rv| Error::Pkcs11 {
        function: "C_UnwrapKey".into(),
        rv: ckr_name(rv),
        action: "make a check copy".into(),
    })?;
    Ok(eph.keep(copy))
}

fn pair_label(key_id: &str) -> String {
    format!("{PAIR_PREFIX}{key_id}")
}

/// `import-params`.
pub struct ParamsRequest {
    pub bits: u64,
    pub algorithm: String,
    pub key_id: Option<String>,
    pub valid_for: i64,
    pub now: i64,
}

fn rsa_public_of(token: &Token<'_>, handle: ObjectHandle) -> Result<spki::RsaPublic> {
    match wrap::public_values(token.session(), handle, KeyType::RSA)? {
        Some(PublicValues::Rsa { modulus, exponent }) => {
            spki::rsa_from_parts(&modulus, &exponent).map_err(Error::Internal)
        }
        _ => Err(Error::Internal(
            "the token returned no RSA public values".into(),
        )),
    }
}

/// Make an import key pair and its parameters, and hand them to `publish`
/// (which writes them out). If anything fails, `publish` included, what this
/// run made is destroyed again.
pub fn import_params(
    token: &Token<'_>,
    req: &ParamsRequest,
    publish: &mut dyn FnMut(&Parameters) -> Result<()>,
) -> Result<Parameters> {
    let (hash, rsa_aes) = hash_of(&req.algorithm).ok_or_else(|| Error::BadInput {
        what: "--algorithm".into(),
        reason: format!("use one of {}", import_params::ALGORITHMS.join(", ")),
    })?;
    let session = token.session();
    let key_id = match &req.key_id {
        Some(id) if import_params::valid_key_id(id) => id.clone(),
        Some(id) => {
            return Err(Error::BadInput {
                what: "--key-id".into(),
                reason: format!("'{id}' is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (lowercase letters and digits)"),
            })
        }
        None => {
            let mut random = [0u8; 16];
            session
                .generate_random_slice(&mut random)
                .map_err(|e| Error::pkcs11("draw a key id", e))?;
            import_params::key_id_from(&random)
        }
    };
    let label = pair_label(&key_id);
    if find_one(token, &[Attribute::Label(label.as_bytes().to_vec())])?.is_some() {
        return Err(Error::AlreadyExists {
            what: format!("import parameters for key id {key_id}"),
        });
    }
    // The pair only ever unwraps: never extractable, never anything else.
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(key_id.as_bytes().to_vec()),
        Attribute::ModulusBits(req.bits.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Encrypt(false),
        Attribute::Verify(false),
        Attribute::VerifyRecover(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(key_id.as_bytes().to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Modifiable(false),
        Attribute::Unwrap(true),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::SignRecover(false),
        Attribute::Derive(false),
    ];
    // Whatever arrives is unwrapped sensitive: the user PIN alone cannot turn
    // incoming material into a readable key.
    let (pubh, privh) = token
        .module()
        .raw()
        .generate_key_pair_with_unwrap_template(
            session.handle(),
            &crate::hsm::raw::RawMechanism::Number(0x0000),
            &public,
            &private,
            &[Attribute::Sensitive(true)],
        )
        .map(|(p, q)| {
            (
                crate::hsm::raw::object_handle(p),
                crate::hsm::raw::object_handle(q),
            )
        })
        .map_err(|rv| {
            Error::pkcs11(
                "generate the import key pair",
                cryptoki::error::Error::Pkcs11(rv, cryptoki::context::Function::GenerateKeyPair),
            )
        })?;
    let mut created = Undo::new(session);
    created.add(
        privh,
        undo::describe(&label, "private-key", key_id.as_bytes()),
    );
    created.add(
        pubh,
        undo::describe(&label, "public-key", key_id.as_bytes()),
    );
    let made = (|| -> Result<Parameters> {
        let public = rsa_public_of(token, pubh)?;
        prove_unwrap(token, &public, privh, hash, rsa_aes)?;
        let payload = TokenPayload {
            v: 1,
            key_id: key_id.clone(),
            algorithm: req.algorithm.clone(),
            spki_sha256: public.fingerprint(),
            expires: req.now + req.valid_for,
        };
        let mac_key = token_mac_key_or_create(token, &mut created)?;
        let mac = session
            .sign(&Mechanism::Sha256Hmac, mac_key, &payload.encode()?)
            .map_err(|e| Error::pkcs11("authenticate the import token", e))?;
        use base64::Engine;
        let params = Parameters {
            key_id: key_id.clone(),
            import_token: import_params::encode_token(&payload, &mac)?,
            expiration_time: payload.expires,
            public_key: base64::engine::general_purpose::STANDARD.encode(&public.spki_der),
        };
        publish(&params)?;
        Ok(params)
    })();
    match made {
        Ok(params) => {
            created.commit();
            Ok(params)
        }
        Err(e) => Err(created.fail(e)),
    }
}

/// Before publishing a wrapping key, prove this token can unwrap with it
/// what the algorithm will bring: OAEP with the hash, and RFC 5649 for RSA-AES.
fn prove_unwrap(
    token: &Token<'_>,
    public: &spki::RsaPublic,
    private: ObjectHandle,
    hash: OaepHash,
    rsa_aes: bool,
) -> Result<()> {
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let pubh = wrap::session_rsa_public(token, &mut eph, &public.modulus, &public.public_exponent)?;
    let probe = wrap::generate_session_key(token, &mut eph, wrap::SessionKey::Transfer)?;
    let wrapped = wrap::wrap_oaep(token, hash, pubh, probe)?;
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ];
    let back = wrap::unwrap_oaep(token, hash, private, &wrapped, &template).map_err(|rv| {
        if crate::error::rv_is_unsupported(rv) || rv == cryptoki::error::RvError::ArgumentsBad {
            Error::NotCapable {
                capability: format!("RSA-OAEP with {} (unwrap)", hash.name().to_uppercase()),
                detail: format!("the token answered {}", ckr_name(rv)),
                alternatives:
                    "Choose a SHA-1 algorithm, or a token with this hash (`hsmkey token mechanisms`)."
                        .into(),
            }
        } else {
            crate::error::token_failure("C_UnwrapKey", rv, "prove the import key pair unwraps")
        }
    })?;
    eph.keep(back);
    if rsa_aes
        && WrapSupport::probe(token)?
            .unwrap_mechanism("rfc5649")
            .is_none()
    {
        return Err(Error::NotCapable {
            capability: "RFC 5649 key unwrap (for RSA_AES_KEY_WRAP)".into(),
            detail: "no AES key-wrap-with-padding mechanism passed its known-answer test".into(),
            alternatives: "Choose an RSAES_OAEP algorithm, or a token with CKM_AES_KEY_WRAP_KWP."
                .into(),
        });
    }
    Ok(())
}

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
#[derive(Debug, Clone, serde::Serialize)]
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

fn invalid(reason: impl Into<String>) -> Error {
    Error::ImportTokenInvalid {
        reason: reason.into(),
    }
}

/// What a failed unwrap of incoming material means: a blob that does not
/// open or does not fit is bad input; anything else is the token failing.
fn material_error(what: &str, rv: cryptoki::error::RvError) -> Error {
    use cryptoki::error::RvError;
    let misfit = matches!(
        rv,
        RvError::TemplateInconsistent
            | RvError::KeySizeRange
            | RvError::DataLenRange
            | RvError::DataInvalid
            | RvError::AttributeValueInvalid
    );
    if crate::error::rv_is_bad_ciphertext(rv) || misfit {
        Error::BadInput {
            what: "key material".into(),
            reason: format!(
                "{what} did not unwrap ({}): wrong wrapping key, algorithm or key type",
                ckr_name(rv)
            ),
        }
    } else {
        crate::error::token_failure("C_UnwrapKey", rv, &format!("unwrap {what}"))
    }
}

fn target_template(req: &ImportRequest, usage: &Usage, id: &[u8]) -> Vec<Attribute> {
    let private = !req.spec.is_secret();
    let key_type = match req.spec {
        KeySpec::Aes128 | KeySpec::Aes192 | KeySpec::Aes256 => KeyType::AES,
        KeySpec::Generic256 => KeyType::GENERIC_SECRET,
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => KeyType::RSA,
        KeySpec::EcP256 | KeySpec::EcP384 => KeyType::EC,
    };
    keys::StoredKey {
        private,
        key_type,
        label: &req.label,
        id,
        extractable: req.policy != BackupPolicy::None,
        wrap_with_trusted: req.policy == BackupPolicy::Trusted,
        usage: *usage,
    }
    .template()
}

fn expected_bits(spec: KeySpec) -> u64 {
    match spec {
        KeySpec::Aes128 => 128,
        KeySpec::Aes192 => 192,
        KeySpec::Aes256 | KeySpec::Generic256 | KeySpec::EcP256 => 256,
        KeySpec::Rsa2048 => 2048,
        KeySpec::Rsa3072 => 3072,
        KeySpec::Rsa4096 => 4096,
        KeySpec::EcP384 => 384,
    }
}

/// The length of a secret key, measured in the token without reading it:
/// CKA_VALUE_LEN when the token reports it (SoftHSM says 0 after unwrap),
/// else the length of an RFC 3394 wrap of a session copy, minus 8.
fn secret_bits(
    token: &Token<'_>,
    support: &WrapSupport,
    key: ObjectHandle,
    copy: impl FnOnce() -> Result<ObjectHandle>,
) -> Result<Option<u64>> {
    let attrs = token
        .session()
        .get_attributes(key, &[AttributeType::ValueLen])
        .map_err(|e| Error::pkcs11("read the key length", e))?;
    for a in attrs {
        if let Attribute::ValueLen(l) = a {
            let l = u64::from(l);
            if l > 0 {
                return Ok(Some(l * 8));
            }
        }
    }
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let copy = eph.keep(copy()?);
    let measure = wrap::generate_session_key(token, &mut eph, wrap::SessionKey::Transfer)?;
    let Some(mech) = support.rfc3394 else {
        return Ok(None);
    };
    match wrap::wrap(token, mech, measure, copy) {
        Ok(blob) => Ok(Some((blob.len() as u64).saturating_sub(8) * 8)),
        // RFC 3394 takes whole 8-byte blocks only: not an AES or 256-bit key.
        Err(Error::Pkcs11 { rv, .. })
            if matches!(
                rv.as_str(),
                "CKR_DATA_LEN_RANGE" | "CKR_KEY_SIZE_RANGE" | "CKR_WRAPPED_KEY_LEN_RANGE"
            ) =>
        {
            Ok(Some(0))
        }
        Err(e) => Err(e),
    }
}

/// Keys that may unwrap are KEKs, which hsmkey makes with an unwrap template
/// and CKA_MODIFIABLE=false; the import paths cannot give them that yet, so
/// they refuse rather than make a weaker KEK.
fn refuse_kek_usage(usage: &Usage) -> Result<()> {
    if usage.unwrap {
        return Err(Error::NotCapable {
            capability: "importing a key-encryption key (unwrap usage)".into(),
            detail: "an imported KEK would lack the unwrap template and the no-modify flag generated KEKs carry".into(),
            alternatives: "Generate the KEK in the token (`key generate --kek`) or bring it in a backup bundle, which keeps both.".into(),
        });
    }
    Ok(())
}

/// `import`: check the import token, expiry and algorithm, then unwrap in
/// the token; the parameters are single-use.
pub fn import(token: &Token<'_>, req: &ImportRequest) -> Result<ImportReport> {
    let session = token.session();
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
    let expected = session
        .sign(&Mechanism::Sha256Hmac, mac_key, &payload_bytes)
        .map_err(|e| Error::pkcs11("check the import token", e))?;
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
    let private_pair = find_one(
        token,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ],
    )?
    .ok_or_else(|| Error::ImportTokenUsed {
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
    let mut template = target_template(req, &usage, &id);

    // 4. Unwrap in the token.
    let mut eph = Ephemeral::new(session);
    let mut created = Undo::new(session);
    let unwrap_err = |what: &str| {
        let what = what.to_string();
        move |rv: cryptoki::error::RvError| material_error(&what, rv)
    };
    let temp_template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
    ];
    let (kw_blob, temporary) = if huawei_private || rsa_aes {
        let (rsa_part, kw_part) = if huawei_private {
            (
                key_material.as_slice(),
                private_key.clone().unwrap_or_default(),
            )
        } else {
            (&key_material[..k], key_material[k..].to_vec())
        };
        let temp = wrap::unwrap_oaep(token, hash, private_pair, rsa_part, &temp_template)
            .map_err(unwrap_err("the temporary AES key"))?;
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
        template.retain(|a| !matches!(a, Attribute::Id(_)));
        template.push(Attribute::Id(id.clone()));
    }
    let new_key = match (&kw_blob, temporary) {
        (Some(kw), Some(temp)) => {
            let mech = kwp.ok_or_else(|| Error::NotCapable {
                capability: "RFC 5649 key unwrap".into(),
                detail: support.describe(),
                alternatives: String::new(),
            })?;
            wrap::unwrap(token, mech, temp, kw, &template).map_err(unwrap_err("the key"))?
        }
        _ => wrap::unwrap_oaep(token, hash, private_pair, &key_material, &template)
            .map_err(unwrap_err("the key"))?,
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
            // Single use: the import key pair's private key goes before the
            // key is kept; if it will not go, the import is undone.
            let pair = match use_up_parameters(token, &label) {
                Ok(pair) => pair,
                Err(e) => return Err(created.fail(e)),
            };
            created.commit();
            Ok(finish_import(token, &label, payload, keys_made, pair))
        }
        Err(e) => Err(created.fail(e)),
    }
}

/// Find the import key pair and destroy its private key (what makes the
/// parameters usable); returns the public half, destroyed once the key is
/// kept.
fn use_up_parameters(token: &Token<'_>, label: &str) -> Result<Vec<ObjectHandle>> {
    let session = token.session();
    let pair: Vec<ObjectHandle> = session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .map_err(|e| Error::pkcs11("find the import key pair", e))?;
    // Every read first, then the one destroy: a failure before it changes
    // nothing.
    let (mut private, mut rest) = (Vec::new(), Vec::new());
    for h in pair {
        let class = session
            .get_attributes(h, &[AttributeType::Class])
            .map_err(|e| Error::pkcs11("read the import key pair", e))?;
        if class
            .iter()
            .any(|a| matches!(a, Attribute::Class(c) if *c == ObjectClass::PRIVATE_KEY))
        {
            private.push(h);
        } else {
            rest.push(h);
        }
    }
    for h in private {
        session
            .destroy_object(h)
            .map_err(|e| Error::pkcs11("destroy the used import key", e))?;
    }
    Ok(rest)
}

/// What [`check_imported`] needs of the unwrap it checks.
struct Imported<'a> {
    new_key: ObjectHandle,
    id: &'a [u8],
    usage: &'a Usage,
    kw_blob: Option<&'a [u8]>,
    temporary: Option<ObjectHandle>,
    kwp: Option<u64>,
    hash: OaepHash,
    private_pair: ObjectHandle,
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
    let session = token.session();
    let unwrap_err = |what: &str| {
        let what = what.to_string();
        move |rv: cryptoki::error::RvError| material_error(&what, rv)
    };

    // 5. The key is what --type says.
    let want = expected_bits(req.spec);
    if req.spec.is_secret() {
        let copy_template = {
            let mut t = wrap::check_copy_template(
                ObjectClass::SECRET_KEY,
                if req.spec == KeySpec::Generic256 {
                    KeyType::GENERIC_SECRET
                } else {
                    KeyType::AES
                },
            );
            // Wrappable by the session measuring key, and only for that.
            t.retain(|a| !matches!(a, Attribute::Extractable(_) | Attribute::WrapWithTrusted(_)));
            t.push(Attribute::Extractable(true));
            t.push(Attribute::WrapWithTrusted(false));
            t
        };
        let bits = secret_bits(token, support, new_key, || match (kw_blob, temporary) {
            (Some(kw), Some(temp)) => {
                let mech = kwp.ok_or_else(|| {
                    Error::Internal("RFC 5649 vanished between two unwraps".into())
                })?;
                wrap::unwrap(token, mech, temp, kw, &copy_template)
                    .map_err(unwrap_err("a measuring copy"))
            }
            _ => wrap::unwrap_oaep(token, hash, private_pair, key_material, &copy_template)
                .map_err(unwrap_err("a measuring copy")),
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
        if let Some(PublicValues::Rsa { modulus, exponent }) =
            wrap::public_values(session, new_key, KeyType::RSA)?
        {
            // The public half, from the public values the private key carries.
            let public = session
                .create_object(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(KeyType::RSA),
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Label(req.label.as_bytes().to_vec()),
                    Attribute::Id(id.to_vec()),
                    Attribute::Modulus(modulus),
                    Attribute::PublicExponent(exponent),
                    Attribute::Encrypt(usage.encrypt),
                    Attribute::Verify(usage.verify),
                    Attribute::Wrap(usage.wrap),
                    Attribute::VerifyRecover(false),
                    Attribute::Derive(false),
                ])
                .map_err(|e| Error::pkcs11("create the public half", e))?;
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
    rest: Vec<ObjectHandle>,
) -> ImportReport {
    let mut left_behind = Vec::new();
    for h in rest {
        if let Err(e) = token.session().destroy_object(h) {
            tracing::warn!("the used import key pair's public half could not be destroyed: {e}");
            left_behind.push(format!(
                "{}, handle {}: {e}",
                undo::describe(label, "public-key", payload.key_id.as_bytes()),
                h.handle()
            ));
        }
    }
    ImportReport {
        key_id: payload.key_id,
        algorithm: payload.algorithm,
        keys: keys_made,
        parameters_consumed: true,
        left_behind,
    }
}

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
        KeyType::AES
    } else {
        KeyType::GENERIC_SECRET
    };
    let kcv = if kek.usage.contains(&"unwrap") {
        let mut eph = Ephemeral::new(token.session());
        let copy = check_copy(token, &mut eph, mech, kek.handle, &blob, key_type)?;
        Some(wrap::kcv_of(token, copy, key_type)?)
    } else if dek.kcv_method == "CKA_CHECK_VALUE" && key_type == KeyType::AES {
        Some((dek.kcv.clone(), wrap::KCV_AES))
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
        kek_kcv: (kek.kcv != "unavailable").then(|| kek.kcv.clone()),
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
    if let (Some(want), true) = (&doc.kek_kcv, kek_info.kcv != "unavailable") {
        if *want != kek_info.kcv {
            return Err(Error::WrongUnwrapKey {
                what: "KEK".into(),
                reason: format!(
                    "the export key was made under KEK '{}' (KCV {want}); '{}' has KCV {}",
                    doc.kek_label, kek_info.label, kek_info.kcv
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
    let req = ImportRequest {
        input: MaterialInput::Raw {
            material: Vec::new(),
            import_token: String::new(),
        },
        label: label.into(),
        spec,
        policy,
        usage: Some(usage),
        now: 0,
    };
    let mut template = target_template(&req, &usage, &id);
    if kek_info.trusted == Some(true) {
        template.retain(|a| !matches!(a, Attribute::WrapWithTrusted(_)));
        template.push(Attribute::WrapWithTrusted(true));
    }
    let session = token.session();
    let key = wrap::unwrap(token, mech, kek_info.handle, &blob, &template).map_err(|rv| {
        Error::WrongUnwrapKey {
            what: "KEK".into(),
            reason: format!(
                "the export key did not unwrap ({}): wrong KEK or altered export key",
                ckr_name(rv)
            ),
        }
    })?;
    let mut created = Undo::new(session);
    created.add(key, undo::describe(&req.label, "secret-key", &id));
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
    kek: ObjectHandle,
    blob: &[u8],
    key: ObjectHandle,
) -> Result<()> {
    let session = token.session();
    if let (Some(want), Some(method)) = (&doc.kcv, &doc.kcv_method) {
        let key_type = if spec == KeySpec::Generic256 {
            KeyType::GENERIC_SECRET
        } else {
            KeyType::AES
        };
        let expected_method = if key_type == KeyType::AES {
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
        let mut eph = Ephemeral::new(session);
        let direct = if key_type == KeyType::AES {
            usage.encrypt
        } else {
            usage.sign
        };
        let subject = if direct {
            key
        } else {
            check_copy(token, &mut eph, mech, kek, blob, key_type)?
        };
        let (got, _) = wrap::kcv_of(token, subject, key_type)?;
        if got != *want {
            return Err(Error::BadInput {
                what: "export key".into(),
                reason: format!("KCV after unwrap is {got}; the export key says {want}: altered, or another key"),
            });
        }
    }
    // The size the document claims is the size the key has.
    if let Some(bits) = secret_bits(token, support, key, || {
        let mut t = wrap::check_copy_template(
            ObjectClass::SECRET_KEY,
            if spec == KeySpec::Generic256 {
                KeyType::GENERIC_SECRET
            } else {
                KeyType::AES
            },
        );
        t.retain(|a| !matches!(a, Attribute::Extractable(_) | Attribute::WrapWithTrusted(_)));
        t.push(Attribute::Extractable(true));
        t.push(Attribute::WrapWithTrusted(false));
        wrap::unwrap(token, mech, kek, blob, &t).map_err(|rv| Error::Pkcs11 {
            function: "C_UnwrapKey".into(),
            rv: ckr_name(rv),
            action: "make a measuring copy".into(),
        })
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
