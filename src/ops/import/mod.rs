//! The token as the receiving KMS: import parameters (an RSA key pair made in
//! the token, with an import token the token authenticates), wrapped import,
//! and Piiano-style export keys. All unwrapping happens in the token. This
//! file holds what the three share: the import-token key, check and measuring
//! copies, the new key's template and the refusals.

mod export_key;
mod material;
mod params;

pub use export_key::{export_key, import_export_key};
pub use material::{import, ImportReport, ImportRequest, MaterialInput};
pub use params::{import_params, ParamsRequest};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

use crate::error::{ckr_name, Error, Result};
use crate::formats::spki;
use crate::hsm::keys::{self, BackupPolicy, KeySpec, Usage};
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
