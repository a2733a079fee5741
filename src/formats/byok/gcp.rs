//! Google Cloud KMS import jobs. The wrapped key file is the raw bytes:
//! RSA-AES = OAEP(AES-256 key) || RFC 5649 of the key; direct = OAEP of the key.

use super::{Hash, KeyFacts, Plan, Target, Wrapping};

pub const ALGORITHMS: [&str; 6] = [
    "RSA_OAEP_3072_SHA1_AES_256",
    "RSA_OAEP_4096_SHA1_AES_256",
    "RSA_OAEP_3072_SHA256_AES_256",
    "RSA_OAEP_4096_SHA256_AES_256",
    "RSA_OAEP_3072_SHA256",
    "RSA_OAEP_4096_SHA256",
];

pub fn plan(algorithm: &str) -> Option<Plan> {
    let (wrapping, bits): (Wrapping, &'static [u32]) = match algorithm {
        "RSA_OAEP_3072_SHA1_AES_256" => (Wrapping::RsaAes(Hash::Sha1), &[3072]),
        "RSA_OAEP_4096_SHA1_AES_256" => (Wrapping::RsaAes(Hash::Sha1), &[4096]),
        "RSA_OAEP_3072_SHA256_AES_256" => (Wrapping::RsaAes(Hash::Sha256), &[3072]),
        "RSA_OAEP_4096_SHA256_AES_256" => (Wrapping::RsaAes(Hash::Sha256), &[4096]),
        "RSA_OAEP_3072_SHA256" => (Wrapping::Oaep(Hash::Sha256), &[3072]),
        "RSA_OAEP_4096_SHA256" => (Wrapping::Oaep(Hash::Sha256), &[4096]),
        _ => return None,
    };
    Some(Plan {
        target: Target::Gcp,
        algorithm: algorithm.into(),
        wrapping,
        wrapping_bits: bits,
    })
}

pub fn accepts(key: &KeyFacts) -> Result<(), String> {
    match (key.key_type.as_str(), key.size) {
        ("aes", Some(128 | 256)) | ("generic", _) => Ok(()),
        ("aes", _) => Err("Cloud KMS imports 128- or 256-bit AES".into()),
        ("rsa", Some(2048 | 3072 | 4096)) | ("ec", Some(256 | 384)) => Ok(()),
        (t, s) => Err(format!("unsupported key {t} {s:?}")),
    }
}

/// The Cloud KMS key algorithm name for `gcloud ... --algorithm`.
pub fn key_algorithm(key: &KeyFacts) -> &'static str {
    match (key.key_type.as_str(), key.size) {
        ("aes", Some(128)) => "aes-128-gcm",
        ("aes", _) => "google-symmetric-encryption",
        ("generic", _) => "hmac-sha256",
        ("rsa", Some(3072)) => "rsa-sign-pkcs1-3072-sha256",
        ("rsa", Some(4096)) => "rsa-sign-pkcs1-4096-sha256",
        ("rsa", _) => "rsa-sign-pkcs1-2048-sha256",
        ("ec", Some(384)) => "ec-sign-p384-sha384",
        _ => "ec-sign-p256-sha256",
    }
}

pub fn command(key: &KeyFacts, file: &str) -> String {
    format!(
        "gcloud kms keys versions import --location <LOCATION> --keyring <KEYRING> --key <KEY> --import-job <IMPORT_JOB> --algorithm {} --wrapped-key-file {file}",
        key_algorithm(key)
    )
}
