//! Huawei Cloud KMS: get-parameters-for-import (input) and
//! import-key-material (output). Symmetric keys: OAEP of the 32 raw bytes.
//! Asymmetric keys: OAEP of a temporary AES-256 key in
//! `encrypted_key_material`, RFC 5649 of the PKCS#8 key under it in
//! `encrypted_privatekey`.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::next_step::{NextStep, Piece, Word};
use super::{Hash, KeyFacts, Plan, Target, Wrapping};

pub const ALGORITHMS: [&str; 2] = ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1"];

pub fn plan(algorithm: &str) -> Option<Plan> {
    let hash = match algorithm {
        "RSAES_OAEP_SHA_256" => Hash::Sha256,
        "RSAES_OAEP_SHA_1" => Hash::Sha1,
        _ => return None,
    };
    Some(Plan {
        target: Target::Huawei,
        algorithm: algorithm.into(),
        wrapping: Wrapping::Oaep(hash),
        wrapping_bits: &[2048, 3072, 4096],
    })
}

pub fn accepts(key: &KeyFacts) -> Result<(), String> {
    match (key.key_type.as_str(), key.size) {
        ("aes", Some(256)) => Ok(()),
        ("aes", _) => Err("symmetric key material must be AES-256".into()),
        ("rsa", Some(2048 | 3072 | 4096)) | ("ec", Some(256 | 384)) => Ok(()),
        (t, s) => Err(format!("unsupported key {t} {s:?}")),
    }
}

/// The pattern of a Huawei key id.
pub fn valid_key_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5
        && parts.iter().zip(lens).all(|(p, n)| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        })
}

/// The response of get-parameters-for-import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportParameters {
    pub key_id: String,
    pub import_token: String,
    /// Epoch seconds; the API documents a number, some clients print a string.
    #[serde(deserialize_with = "number_or_string")]
    pub expiration_time: i64,
    /// base64 of the DER SubjectPublicKeyInfo.
    pub public_key: String,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| D::Error::custom("expiration_time is not an integer")),
        serde_json::Value::String(s) => s.trim().parse().map_err(D::Error::custom),
        _ => Err(D::Error::custom(
            "expiration_time is neither a number nor a string",
        )),
    }
}

impl ImportParameters {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let p: ImportParameters = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a get-parameters-for-import response: {e}"))?;
        if !valid_key_id(&p.key_id) {
            return Err(format!(
                "key_id '{}' does not match the Huawei key id pattern",
                p.key_id
            ));
        }
        if p.import_token.is_empty() {
            return Err("import_token is empty".into());
        }
        Ok(p)
    }

    pub fn public_key_der(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(self.public_key.trim())
            .map_err(|e| format!("public_key is not base64: {e}"))
    }
}

/// The import-key-material request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportMaterial {
    pub key_id: String,
    pub import_token: String,
    pub encrypted_key_material: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encrypted_privatekey: Option<String>,
}

pub fn material(
    params: &ImportParameters,
    key_material: &[u8],
    private_key: Option<&[u8]>,
) -> ImportMaterial {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    ImportMaterial {
        key_id: params.key_id.clone(),
        import_token: params.import_token.clone(),
        encrypted_key_material: b64(key_material),
        encrypted_privatekey: private_key.map(b64),
    }
}

/// The ImportKeyMaterial API call, with curl
/// (https://support.huaweicloud.com/intl/en-us/api-dew/ImportKeyMaterial.html).
pub fn next_step() -> NextStep {
    NextStep::new(&["curl", "--fail-with-body", "-X", "POST"])
        .arg(Word(vec![
            Piece::Lit("https://kms.".into()),
            Piece::Var("REGION"),
            Piece::Lit(".myhuaweicloud.com/v1.0/".into()),
            Piece::Var("PROJECT_ID"),
            Piece::Lit("/kms/import-key-material".into()),
        ]))
        .flag(
            "-H",
            Word(vec![
                Piece::Lit("X-Auth-Token: ".into()),
                Piece::Var("X_AUTH_TOKEN"),
            ]),
        )
        .flag("-H", Word::lit("Content-Type: application/json"))
        .flag(
            "--data-binary",
            Word(vec![Piece::Lit("@".into()), Piece::Out]),
        )
        .needs(
            "REGION",
            "the KMS region (ap-southeast-1, eu-west-101, ...)",
        )
        .needs(
            "PROJECT_ID",
            "the project id in that region (32 characters)",
        )
        .needs(
            "X_AUTH_TOKEN",
            "an IAM user token (the X-Subject-Token header of the IAM token call)",
        )
}

/// Base64 lengths the ImportKeyMaterial API documents: encrypted_key_material
/// 344 to 360 characters (one RSA-2048 block), encrypted_privatekey 200 to 6144.
pub const KEY_MATERIAL_CHARS: (usize, usize) = (344, 360);
pub const PRIVATE_KEY_CHARS: (usize, usize) = (200, 6144);

/// What in a body Huawei Cloud documents it would refuse; hsmkey's own
/// `import` takes it all the same, so these are notes, not errors.
pub fn outside_documented_limits(body: &ImportMaterial) -> Vec<String> {
    let mut notes = Vec::new();
    let (lo, hi) = KEY_MATERIAL_CHARS;
    let n = body.encrypted_key_material.len();
    if !(lo..=hi).contains(&n) {
        notes.push(format!(
            "encrypted_key_material is {n} base64 characters; Huawei Cloud documents {lo} to {hi} (one RSA-2048 block): ask for parameters with an RSA_2048 wrapping key"
        ));
    }
    if let Some(p) = &body.encrypted_privatekey {
        let (lo, hi) = PRIVATE_KEY_CHARS;
        let n = p.len();
        if !(lo..=hi).contains(&n) {
            notes.push(format!(
                "encrypted_privatekey is {n} base64 characters; Huawei Cloud documents {lo} to {hi}: the token's PKCS#8 is short, likely because it leaves out the optional public key (docs/BYOK.md, \"EC private keys and the public key in PKCS#8\")"
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests;
