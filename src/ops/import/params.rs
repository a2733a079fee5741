//! `import-params`: an unwrap-only RSA key pair made in the token, proved
//! to unwrap what its algorithm will bring, and an import token the token's
//! own MAC key authenticates.

use super::{hash_of, pair_label, rsa_public_of, token_mac_key_or_create};
use crate::error::{Error, Result};
use crate::formats::import_params::{self, Parameters, TokenPayload};
use crate::hsm::receive;
use crate::hsm::undo::{self, Undo};
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
    let key_id = match &req.key_id {
        Some(id) if import_params::valid_key_id(id) => id.clone(),
        Some(id) => {
            return Err(Error::BadInput {
                what: "--key-id".into(),
                reason: format!("'{id}' is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (lowercase letters and digits)"),
            })
        }
        None => import_params::key_id_from(&receive::random_key_id_bytes(token)?),
    };
    let label = pair_label(&key_id);
    if receive::label_taken(token, &label)? {
        return Err(Error::AlreadyExists {
            what: format!("import parameters for key id {key_id}"),
        });
    }
    let (pubh, privh) = receive::generate_import_pair(token, &label, key_id.as_bytes(), req.bits)?;
    let mut created = Undo::for_token(token);
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
        receive::prove_unwrap(
            token,
            &public.modulus,
            &public.public_exponent,
            privh,
            hash,
            rsa_aes,
        )?;
        let payload = TokenPayload {
            v: 1,
            key_id: key_id.clone(),
            algorithm: req.algorithm.clone(),
            spki_sha256: public.fingerprint(),
            expires: req.now + req.valid_for,
        };
        let mac_key = token_mac_key_or_create(token, &mut created)?;
        let mac = receive::token_mac(
            token,
            mac_key,
            &payload.encode()?,
            "authenticate the import token",
        )?;
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
