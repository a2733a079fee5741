//! The token side of receiving keys (`import-params`, `import`, `export-key`
//! and `import-export-key`): the import key pair and the key that
//! authenticates import tokens, the template of an imported key, unwrapping
//! incoming material and what a failed unwrap means, check and measuring
//! copies. `ops::import` decides; this file speaks PKCS#11.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

use super::keys::{BackupPolicy, KeySpec, StoredKey, Usage};
use super::probe::Ephemeral;
use super::template::KeyKind;
use super::wrap::{self, OaepHash, PublicValues, WrapSupport};
use super::Token;
use crate::error::{ckr_name, Error, Result};

/// Label of the token key that authenticates import tokens.
pub const TOKEN_MAC_LABEL: &str = "hsmkey-import-token-key";

/// What an import key pair's label begins with (`hsmkey-import-<key id>`),
/// and the token-MAC key's: reserved, so that no key of a user's is taken
/// for part of a pair (and destroyed with it).
pub const IMPORT_PAIR_PREFIX: &str = "hsmkey-import-";

fn find_one(token: &Token<'_>, template: &[Attribute]) -> Result<Option<ObjectHandle>> {
    Ok(token
        .session()
        .find_objects(template)
        .map_err(|e| Error::pkcs11("find a key", e))?
        .into_iter()
        .next())
}

/// The token key labelled [`TOKEN_MAC_LABEL`], if there is one (the caller
/// checks it is the key hsmkey made, not a planted one).
pub fn find_token_mac_key(token: &Token<'_>) -> Result<Option<ObjectHandle>> {
    find_one(
        token,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Label(TOKEN_MAC_LABEL.as_bytes().to_vec()),
        ],
    )
}

/// Never extractable, never modifiable: it only signs and checks import tokens.
pub fn create_token_mac_key(token: &Token<'_>) -> Result<ObjectHandle> {
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

/// HMAC-SHA256 of `data` in the token under the import-token key; `action`
/// names the step in a token error.
pub fn token_mac(
    token: &Token<'_>,
    key: ObjectHandle,
    data: &[u8],
    action: &str,
) -> Result<Vec<u8>> {
    token
        .session()
        .sign(&Mechanism::Sha256Hmac, key, data)
        .map_err(|e| Error::pkcs11(action, e))
}

/// 16 bytes from the token's random generator, for a new import key id.
pub fn random_key_id_bytes(token: &Token<'_>) -> Result<[u8; 16]> {
    let mut random = [0u8; 16];
    token
        .session()
        .generate_random_slice(&mut random)
        .map_err(|e| Error::pkcs11("draw a key id", e))?;
    Ok(random)
}

/// Whether any object carries exactly `label`.
pub fn label_taken(token: &Token<'_>, label: &str) -> Result<bool> {
    Ok(find_one(token, &[Attribute::Label(label.as_bytes().to_vec())])?.is_some())
}

/// The private key of the import key pair labelled `label`.
pub fn find_pair_private(token: &Token<'_>, label: &str) -> Result<Option<ObjectHandle>> {
    find_one(
        token,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ],
    )
}

/// Make the import key pair: RSA of `bits`, labelled `label`, CKA_ID the key
/// id. It only ever unwraps, never leaves the token, and whatever it unwraps
/// is sensitive. Returns (public, private).
pub fn generate_import_pair(
    token: &Token<'_>,
    label: &str,
    key_id: &[u8],
    bits: u64,
) -> Result<(ObjectHandle, ObjectHandle)> {
    // The pair only ever unwraps: never extractable, never anything else.
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(key_id.to_vec()),
        Attribute::ModulusBits(bits.into()),
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
        Attribute::Id(key_id.to_vec()),
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
    token
        .module()
        .raw()
        .generate_key_pair_with_unwrap_template(
            token.session().handle(),
            &super::raw::RawMechanism::Number(0x0000),
            &public,
            &private,
            &[Attribute::Sensitive(true)],
        )
        .map(|(p, q)| (super::raw::object_handle(p), super::raw::object_handle(q)))
        .map_err(|rv| {
            Error::pkcs11(
                "generate the import key pair",
                cryptoki::error::Error::Pkcs11(rv, cryptoki::context::Function::GenerateKeyPair),
            )
        })
}

/// Before publishing a wrapping key, prove this token can unwrap with it
/// what the algorithm will bring: OAEP with the hash, and RFC 5649 for RSA-AES.
pub fn prove_unwrap(
    token: &Token<'_>,
    modulus: &[u8],
    public_exponent: &[u8],
    private: ObjectHandle,
    hash: OaepHash,
    rsa_aes: bool,
) -> Result<()> {
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let pubh = wrap::session_rsa_public(token, &mut eph, modulus, public_exponent)?;
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

/// Find the import key pair labelled `label` and destroy its private key
/// (what makes the parameters usable); returns the rest, destroyed once the
/// key is kept.
pub fn use_up_pair(token: &Token<'_>, label: &str) -> Result<Vec<ObjectHandle>> {
    let session = token.session();
    let pair: Vec<ObjectHandle> = session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .map_err(|e| Error::pkcs11("find the import key pair", e))?;
    // Every read first, then the one destroy: a failure before it changes
    // nothing.
    let key_id = label.strip_prefix(IMPORT_PAIR_PREFIX).unwrap_or(label);
    let used = || Error::ImportTokenUsed {
        key_id: key_id.to_string(),
    };
    let (mut private, mut rest) = (Vec::new(), Vec::new());
    for h in pair {
        let class = match session.get_attributes(h, &[AttributeType::Class]) {
            Ok(class) => class,
            // Destroyed since the search: another run used the parameters.
            Err(e) if handle_gone(&e) => return Err(used()),
            Err(e) => return Err(Error::pkcs11("read the import key pair", e)),
        };
        if class
            .iter()
            .any(|a| matches!(a, Attribute::Class(c) if *c == ObjectClass::PRIVATE_KEY))
        {
            private.push(h);
        } else {
            rest.push(h);
        }
    }
    // Gone since this run found it: another run (another server replica on
    // the same token) used the parameters meanwhile. This run's key must
    // not stay: the parameters are single-use wherever they are presented.
    if private.is_empty() {
        return Err(used());
    }
    for h in private {
        match session.destroy_object(h) {
            Ok(()) => {}
            // Another run destroyed it between this run's read and its
            // destroy: that run used the parameters, this one did not.
            Err(e) if handle_gone(&e) => return Err(used()),
            Err(e) => return Err(Error::pkcs11("destroy the used import key", e)),
        }
    }
    Ok(rest)
}

/// The token no longer knows the object (CKR_OBJECT_HANDLE_INVALID).
fn handle_gone(e: &cryptoki::error::Error) -> bool {
    matches!(
        e,
        cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::ObjectHandleInvalid, _)
    )
}

/// Destroy what is left of a used import key pair; what will not go is
/// described (`what`, its handle and the token's answer) and returned.
pub fn destroy_pair_rest(token: &Token<'_>, what: &str, rest: Vec<ObjectHandle>) -> Vec<String> {
    let mut left_behind = Vec::new();
    for h in rest {
        if let Err(e) = token.session().destroy_object(h) {
            tracing::warn!("the used import key pair's public half could not be destroyed: {e}");
            left_behind.push(format!("{what}, handle {}: {e}", h.handle()));
        }
    }
    left_behind
}

/// The key an import makes: always sensitive, extractable and
/// wrappable-only-by-trusted-keys as the policy says, every usage flag
/// explicit.
pub struct NewKey<'a> {
    pub label: &'a str,
    pub id: &'a [u8],
    pub spec: KeySpec,
    pub policy: BackupPolicy,
    pub usage: Usage,
}

impl NewKey<'_> {
    fn template(&self) -> Vec<Attribute> {
        let private = !self.spec.is_secret();
        let mut template = StoredKey {
            private,
            key_type: self.spec.key_type(),
            label: self.label,
            id: self.id,
            extractable: self.policy != BackupPolicy::None,
            wrap_with_trusted: self.policy == BackupPolicy::Trusted,
            usage: self.usage,
        }
        .template();
        if private {
            template.retain(|a| !matches!(a, Attribute::Id(_)));
            template.push(Attribute::Id(self.id.to_vec()));
        }
        template
    }
}

/// What opens incoming material in the token.
#[derive(Debug, Clone, Copy)]
pub enum Opener {
    /// RSA-OAEP with the import key pair's private key.
    Oaep {
        hash: OaepHash,
        private: ObjectHandle,
    },
    /// A key-wrap mechanism (by number) with a secret key.
    Mechanism { mechanism: u64, key: ObjectHandle },
}

impl Opener {
    fn unwrap(
        self,
        token: &Token<'_>,
        blob: &[u8],
        template: &[Attribute],
    ) -> std::result::Result<ObjectHandle, cryptoki::error::RvError> {
        match self {
            Opener::Oaep { hash, private } => {
                wrap::unwrap_oaep(token, hash, private, blob, template)
            }
            Opener::Mechanism { mechanism, key } => {
                wrap::unwrap(token, mechanism, key, blob, template)
            }
        }
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

/// Unwrap the temporary AES key of RSA-AES (or Huawei's private-key) import
/// material with the import key pair: a session key that may only unwrap.
pub fn unwrap_temporary_aes(
    token: &Token<'_>,
    hash: OaepHash,
    private: ObjectHandle,
    blob: &[u8],
) -> Result<ObjectHandle> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
    ];
    wrap::unwrap_oaep(token, hash, private, blob, &template)
        .map_err(|rv| material_error("the temporary AES key", rv))
}

/// Unwrap import material into the new token key.
pub fn unwrap_material(
    token: &Token<'_>,
    opener: Opener,
    blob: &[u8],
    key: &NewKey<'_>,
) -> Result<ObjectHandle> {
    opener
        .unwrap(token, blob, &key.template())
        .map_err(|rv| material_error("the key", rv))
}

/// Template of a session copy made only to measure a secret key: wrappable
/// by the session measuring key, and only for that.
fn measuring_template(kind: KeyKind) -> Vec<Attribute> {
    let mut t = wrap::check_copy_template(ObjectClass::SECRET_KEY, kind.ck());
    t.retain(|a| !matches!(a, Attribute::Extractable(_) | Attribute::WrapWithTrusted(_)));
    t.push(Attribute::Extractable(true));
    t.push(Attribute::WrapWithTrusted(false));
    t
}

/// A session copy of import material, for [`secret_bits`].
pub fn material_measuring_copy(
    token: &Token<'_>,
    opener: Opener,
    blob: &[u8],
    kind: KeyKind,
) -> Result<ObjectHandle> {
    opener
        .unwrap(token, blob, &measuring_template(kind))
        .map_err(|rv| material_error("a measuring copy", rv))
}

/// Unwrap an export key under its KEK into the new token key; a KEK the SO
/// trusts makes a key only trusted keys may wrap.
pub fn unwrap_export_key(
    token: &Token<'_>,
    mechanism: u64,
    kek: ObjectHandle,
    blob: &[u8],
    key: &NewKey<'_>,
    kek_trusted: bool,
) -> Result<ObjectHandle> {
    let mut template = key.template();
    if kek_trusted {
        template.retain(|a| !matches!(a, Attribute::WrapWithTrusted(_)));
        template.push(Attribute::WrapWithTrusted(true));
    }
    wrap::unwrap(token, mechanism, kek, blob, &template).map_err(|rv| Error::WrongUnwrapKey {
        what: "KEK".into(),
        reason: format!(
            "the export key did not unwrap ({}): wrong KEK or altered export key",
            ckr_name(rv)
        ),
    })
}

/// A session copy of an export key, for [`secret_bits`].
pub fn export_measuring_copy(
    token: &Token<'_>,
    mechanism: u64,
    kek: ObjectHandle,
    blob: &[u8],
    kind: KeyKind,
) -> Result<ObjectHandle> {
    wrap::unwrap(token, mechanism, kek, blob, &measuring_template(kind)).map_err(|rv| {
        Error::Pkcs11 {
            function: "C_UnwrapKey".into(),
            rv: ckr_name(rv),
            action: "make a measuring copy".into(),
        }
    })
}

/// A session check copy of a wrapped secret key, unwrapped in the token
/// (sensitive, non-extractable, for the KCV operation only).
pub fn check_copy(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    mechanism: u64,
    kek: ObjectHandle,
    blob: &[u8],
    kind: KeyKind,
) -> Result<ObjectHandle> {
    let copy = wrap::unwrap(
        token,
        mechanism,
        kek,
        blob,
        &wrap::check_copy_template(ObjectClass::SECRET_KEY, kind.ck()),
    )
    .map_err(|rv| Error::Pkcs11 {
        function: "C_UnwrapKey".into(),
        rv: ckr_name(rv),
        action: "make a check copy".into(),
    })?;
    Ok(eph.keep(copy))
}

/// The length of a secret key, measured in the token without reading it:
/// CKA_VALUE_LEN when the token reports it (SoftHSM says 0 after unwrap),
/// else the length of an RFC 3394 wrap of a session copy, minus 8.
pub fn secret_bits(
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

/// Make the public half of an imported RSA private key, from the public
/// values the private key carries; `None` when it carries none.
pub fn make_rsa_public_half(
    token: &Token<'_>,
    private: ObjectHandle,
    label: &str,
    id: &[u8],
    usage: &Usage,
) -> Result<Option<ObjectHandle>> {
    let session = token.session();
    let Some(PublicValues::Rsa { modulus, exponent }) =
        super::check::public_of(token, private, KeyKind::Rsa)?
    else {
        return Ok(None);
    };
    let public = session
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
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
    Ok(Some(public))
}
