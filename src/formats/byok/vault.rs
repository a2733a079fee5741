//! HashiCorp Vault transit import: `ciphertext` = base64 of the RSA-AES blob
//! (RSA part exactly 512 bytes: the wrapping key is RSA-4096), with
//! `hash_function` naming the OAEP hash and `type` the transit key type.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::next_step::{NextStep, Piece, Word};
use super::{Hash, KeyFacts, Plan, Target, Wrapping};

pub const ALGORITHMS: [&str; 5] = ["SHA1", "SHA224", "SHA256", "SHA384", "SHA512"];

pub fn plan(algorithm: &str) -> Option<Plan> {
    let hash = match algorithm {
        "SHA1" => Hash::Sha1,
        "SHA224" => Hash::Sha224,
        "SHA256" => Hash::Sha256,
        "SHA384" => Hash::Sha384,
        "SHA512" => Hash::Sha512,
        _ => return None,
    };
    Some(Plan {
        target: Target::Vault,
        algorithm: algorithm.into(),
        wrapping: Wrapping::RsaAes(hash),
        wrapping_bits: &[4096],
    })
}

/// The transit key type for this key.
pub fn key_type_name(key: &KeyFacts) -> Result<&'static str, String> {
    match (key.key_type.as_str(), key.size) {
        ("aes", Some(128)) => Ok("aes128-gcm96"),
        ("aes", Some(256)) => Ok("aes256-gcm96"),
        ("aes", _) => Err("transit has 128- and 256-bit AES keys only".into()),
        ("generic", _) => Ok("hmac"),
        ("rsa", Some(2048)) => Ok("rsa-2048"),
        ("rsa", Some(3072)) => Ok("rsa-3072"),
        ("rsa", Some(4096)) => Ok("rsa-4096"),
        ("ec", Some(256)) => Ok("ecdsa-p256"),
        ("ec", Some(384)) => Ok("ecdsa-p384"),
        (t, s) => Err(format!("unsupported key {t} {s:?}")),
    }
}

/// The body of `POST transit/keys/:name/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportBody {
    pub ciphertext: String,
    pub hash_function: String,
    #[serde(rename = "type")]
    pub key_type: String,
}

pub fn body(blob: &[u8], algorithm: &str, key_type: &str) -> ImportBody {
    ImportBody {
        ciphertext: base64::engine::general_purpose::STANDARD.encode(blob),
        hash_function: algorithm.into(),
        key_type: key_type.into(),
    }
}

/// `vault write transit/keys/NAME/import @OUT`: `@FILE` as a whole argument
/// is read as the JSON body (https://developer.hashicorp.com/vault/docs/commands/write).
pub fn next_step() -> NextStep {
    NextStep::new(&["vault", "write"])
        .arg(Word(vec![
            Piece::Lit("transit/keys/".into()),
            Piece::Var("KEY_NAME"),
            Piece::Lit("/import".into()),
        ]))
        .arg(Word(vec![Piece::Lit("@".into()), Piece::Out]))
        .needs(
            "KEY_NAME",
            "the name of the new transit key (the mount is transit/; change the path for another)",
        )
}
