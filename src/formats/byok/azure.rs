//! Azure Key Vault / Managed HSM BYOK: the `.byok` JSON file. The ciphertext
//! is CKM_RSA_AES_KEY_WRAP with OAEP SHA-1 under the KEK (an RSA-HSM key with
//! key_ops [import]), base64url without padding.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Hash, KeyFacts, Plan, Target, Wrapping};

pub const ALGORITHMS: [&str; 1] = ["CKM_RSA_AES_KEY_WRAP"];

pub fn plan(algorithm: &str) -> Option<Plan> {
    (algorithm == "CKM_RSA_AES_KEY_WRAP").then(|| Plan {
        target: Target::Azure,
        algorithm: algorithm.into(),
        wrapping: Wrapping::RsaAes(Hash::Sha1),
        wrapping_bits: &[2048, 3072, 4096],
    })
}

pub fn accepts(key: &KeyFacts) -> Result<(), String> {
    match (key.key_type.as_str(), key.size) {
        ("rsa", Some(2048 | 3072 | 4096))
        | ("ec", Some(256 | 384))
        | ("aes", Some(128 | 192 | 256)) => Ok(()),
        ("generic", _) => Err("Key Vault has no generic secret key type".into()),
        (t, s) => Err(format!("unsupported key {t} {s:?}")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub kid: String,
    pub alg: String,
    pub enc: String,
}

/// The `.byok` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByokFile {
    pub schema_version: String,
    pub header: Header,
    pub ciphertext: String,
    pub generator: String,
}

pub fn byok_file(kid: &str, blob: &[u8], generator: &str) -> ByokFile {
    ByokFile {
        schema_version: "1.0.0".into(),
        header: Header {
            kid: kid.into(),
            alg: "dir".into(),
            enc: "CKM_RSA_AES_KEY_WRAP".into(),
        },
        ciphertext: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob),
        generator: generator.into(),
    }
}

/// A KEK id must be a versioned Key Vault or Managed HSM key URL.
pub fn check_kid(kid: &str) -> Result<(), String> {
    let ok = kid.starts_with("https://")
        && kid.contains("/keys/")
        && kid.trim_end_matches('/').split('/').count() >= 6;
    if ok {
        Ok(())
    } else {
        Err("--kid must be the versioned KEK id: https://<vault>.vault.azure.net/keys/<name>/<version> or https://<hsm>.managedhsm.azure.net/keys/<name>/<version>".into())
    }
}

/// Key Vault takes `--vault-name`; Managed HSM (the only one that imports
/// AES keys) takes `--hsm-name`.
pub fn command(file: &str, kid: &str) -> String {
    let target = if kid.contains(".managedhsm.") {
        "--hsm-name <HSM>"
    } else {
        "--vault-name <VAULT>"
    };
    format!("az keyvault key import {target} --name <KEY_NAME> --byok-file {file}")
}

#[cfg(test)]
mod tests;
