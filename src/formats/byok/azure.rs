//! Azure Key Vault / Managed HSM BYOK: the `.byok` JSON file. The ciphertext
//! is CKM_RSA_AES_KEY_WRAP with OAEP SHA-1 under the KEK (an RSA-HSM key with
//! key_ops [import]), base64url without padding.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::next_step::{NextStep, Word};
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

/// The host of a KEK id (`contoso.vault.azure.net`), when it is one.
fn host(kid: &str) -> Option<&str> {
    let host = kid.strip_prefix("https://")?.split('/').next()?;
    let ok = !host.is_empty()
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then_some(host)
}

/// A KEK id must be a versioned Key Vault or Managed HSM key URL.
pub fn check_kid(kid: &str) -> Result<(), String> {
    let ok = host(kid).is_some()
        && kid.contains("/keys/")
        && kid.trim_end_matches('/').split('/').count() >= 6;
    if ok {
        Ok(())
    } else {
        Err("--kid must be the versioned KEK id: https://VAULT.vault.azure.net/keys/NAME/VERSION or https://HSM.managedhsm.azure.net/keys/NAME/VERSION".into())
    }
}

/// Where the key goes: the vault or Managed HSM that holds the KEK (Azure
/// imports a BYOK file only where its KEK lives), and whether it is a
/// Managed HSM.
pub fn destination(kid: &str) -> Option<(&str, bool)> {
    let host = host(kid)?;
    let name = host.split('.').next()?;
    Some((name, host.contains(".managedhsm.")))
}

/// The rule only the KEK's home can tell: AES keys go to a Managed HSM.
pub fn accepts_at(kid: &str, key: &KeyFacts) -> Result<(), String> {
    match destination(kid) {
        Some((vault, false)) if key.key_type == "aes" => Err(format!(
            "Key Vault imports no AES keys, only a Managed HSM does, and --kid names a KEK in the Key Vault '{vault}'; make the KEK in the Managed HSM and pass its id (https://HSM.managedhsm.azure.net/keys/NAME/VERSION)"
        )),
        _ => Ok(()),
    }
}

/// `az keyvault key import` with the key type the BYOK file holds: the CLI
/// takes `--kty RSA|EC|oct` and itself adds `-HSM`
/// (https://learn.microsoft.com/cli/azure/keyvault/key#az-keyvault-key-import).
pub fn next_step(kid: &str, key: &KeyFacts) -> NextStep {
    let step = NextStep::new(&["az", "keyvault", "key", "import"]);
    let step = match destination(kid) {
        Some((name, true)) => step.flag("--hsm-name", Word::lit(name)),
        Some((name, false)) => step.flag("--vault-name", Word::lit(name)),
        None => step
            .flag("--vault-name", Word::var("VAULT_NAME"))
            .needs("VAULT_NAME", "the Key Vault that holds the KEK"),
    };
    let step = step
        .flag("--name", Word::var("KEY_NAME"))
        .needs(
            "KEY_NAME",
            "the imported key's name in Azure (letters, digits and dashes)",
        )
        .flag("--byok-file", Word::out());
    match (key.key_type.as_str(), key.size) {
        ("ec", size) => step.flag("--kty", Word::lit("EC")).flag(
            "--curve",
            Word::lit(if size == Some(384) { "P-384" } else { "P-256" }),
        ),
        ("aes", _) => step.flag("--kty", Word::lit("oct")),
        _ => step.flag("--kty", Word::lit("RSA")),
    }
}

#[cfg(test)]
mod tests;
