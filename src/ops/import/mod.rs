//! The token as the receiving KMS: import parameters (an RSA key pair made in
//! the token, with an import token the token authenticates), wrapped import,
//! and Piiano-style export keys. All unwrapping happens in the token
//! (`hsm::receive`). This file holds what the three share: the import-token
//! key's life, the import key pair's label and public key, the refusals.

mod export_key;
mod material;
mod params;

pub use crate::hsm::receive::TOKEN_MAC_LABEL;
pub use export_key::{export_key, import_export_key};
pub use material::{import, ImportReport, ImportRequest, MaterialInput};
pub use params::{import_params, ParamsRequest};

use crate::error::{Error, Result};
use crate::formats::spki;
use crate::hsm::check;
use crate::hsm::keys::{self, KeySpec, Usage};
use crate::hsm::receive;
use crate::hsm::template::KeyKind;
use crate::hsm::undo::{self, Undo};
use crate::hsm::wrap::{OaepHash, PublicValues};
use crate::hsm::{Handle, Token};

/// Label prefix of import key pairs.
pub const PAIR_PREFIX: &str = crate::hsm::receive::IMPORT_PAIR_PREFIX;

fn hash_of(algorithm: &str) -> Option<(OaepHash, bool)> {
    match algorithm {
        "RSAES_OAEP_SHA_1" => Some((OaepHash::Sha1, false)),
        "RSAES_OAEP_SHA_256" => Some((OaepHash::Sha256, false)),
        "RSA_AES_KEY_WRAP_SHA_1" => Some((OaepHash::Sha1, true)),
        "RSA_AES_KEY_WRAP_SHA_256" => Some((OaepHash::Sha256, true)),
        _ => None,
    }
}

/// The token key that MACs import tokens, made on first use (then recorded
/// in `created`, so a failed first run leaves no key behind).
fn token_mac_key_or_create(token: &Token<'_>, created: &mut Undo<'_>) -> Result<Handle> {
    match token_mac_key(token)? {
        Some(h) => Ok(h),
        None => {
            let h = receive::create_token_mac_key(token)?;
            created.add(
                h,
                undo::describe(TOKEN_MAC_LABEL, "secret-key", TOKEN_MAC_LABEL.as_bytes()),
            );
            Ok(h)
        }
    }
}

/// The token key that MACs import tokens, if this token ever made one.
fn token_mac_key(token: &Token<'_>) -> Result<Option<Handle>> {
    if let Some(h) = receive::find_token_mac_key(token)? {
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

fn pair_label(key_id: &str) -> String {
    format!("{PAIR_PREFIX}{key_id}")
}

fn rsa_public_of(token: &Token<'_>, handle: Handle) -> Result<spki::RsaPublic> {
    match check::public_of(token, handle, KeyKind::Rsa)? {
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
