//! Google Cloud KMS import jobs. The wrapped key file is the raw bytes:
//! RSA-AES = OAEP(AES-256 key) || RFC 5649 of the key; direct = OAEP of the key.

use super::next_step::{NextStep, Word};
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

/// `gcloud kms keys versions import`
/// (https://cloud.google.com/sdk/gcloud/reference/kms/keys/versions/import).
pub fn next_step(key: &KeyFacts) -> NextStep {
    NextStep::new(&["gcloud", "kms", "keys", "versions", "import"])
        .flag("--location", Word::var("LOCATION"))
        .flag("--keyring", Word::var("KEYRING"))
        .flag("--key", Word::var("KEY"))
        .flag("--import-job", Word::var("IMPORT_JOB"))
        .flag("--algorithm", Word::lit(key_algorithm(key)))
        .flag("--wrapped-key-file", Word::out())
        .needs("LOCATION", "the key ring's location (europe-west1, global, ...)")
        .needs("KEYRING", "the key ring of the receiving key")
        .needs(
            "KEY",
            "the receiving key: import-only, protection level hsm, made with --skip-initial-version-creation",
        )
        .needs("IMPORT_JOB", "the import job whose public key wrapped the key")
}
