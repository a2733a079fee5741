//! `import-params`: an unwrap-only RSA key pair made in the token, proved
//! to unwrap what its algorithm will bring, and an import token the token's
//! own MAC key authenticates.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};

use super::{find_one, hash_of, pair_label, rsa_public_of, token_mac_key_or_create};
use crate::error::{ckr_name, Error, Result};
use crate::formats::import_params::{self, Parameters, TokenPayload};
use crate::formats::spki;
use crate::hsm::probe::Ephemeral;
use crate::hsm::undo::{self, Undo};
use crate::hsm::wrap::{self, OaepHash, WrapSupport};
use crate::hsm::Token;

/// `import-params`.
pub struct ParamsRequest {
    pub bits: u64,
    pub algorithm: String,
    pub key_id: Option<String>,
    pub valid_for: i64,
    pub now: i64,
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
