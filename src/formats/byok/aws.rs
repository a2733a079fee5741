//! AWS KMS: GetParametersForImport / ImportKeyMaterial. EncryptedKeyMaterial
//! is the raw wrapped bytes (`fileb://`); the ImportToken is passed back
//! verbatim. RSAES_PKCS1_V1_5 is no longer accepted by AWS (since 2023-10-10).

use base64::Engine;
use serde::Deserialize;

use super::next_step::{NextStep, Piece, Word};
use super::{Hash, KeyFacts, Plan, Target, Wrapping};

pub const ALGORITHMS: [&str; 4] = [
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
];

const BITS: &[u32] = &[2048, 3072, 4096];

pub fn plan(algorithm: &str) -> Option<Plan> {
    let wrapping = match algorithm {
        "RSAES_OAEP_SHA_1" => Wrapping::Oaep(Hash::Sha1),
        "RSAES_OAEP_SHA_256" => Wrapping::Oaep(Hash::Sha256),
        "RSA_AES_KEY_WRAP_SHA_1" => Wrapping::RsaAes(Hash::Sha1),
        "RSA_AES_KEY_WRAP_SHA_256" => Wrapping::RsaAes(Hash::Sha256),
        _ => return None,
    };
    Some(Plan {
        target: Target::Aws,
        algorithm: algorithm.into(),
        wrapping,
        wrapping_bits: BITS,
    })
}

pub fn accepts(key: &KeyFacts, _plan: &Plan) -> Result<(), String> {
    match (key.key_type.as_str(), key.size) {
        ("aes", Some(256)) => Ok(()),
        ("aes", _) => Err("symmetric key material for AWS KMS must be 256-bit AES".into()),
        ("generic", _) => Ok(()),
        ("rsa", Some(2048 | 3072 | 4096)) | ("ec", Some(256 | 384)) => Ok(()),
        (t, s) => Err(format!("unsupported key {t} {s:?}")),
    }
}

/// The parts of `aws kms get-parameters-for-import --output json` we use.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportParameters {
    pub key_id: Option<String>,
    pub import_token: String,
    pub public_key: String,
    pub parameters_valid_to: Option<serde_json::Value>,
}

impl ImportParameters {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not GetParametersForImport JSON: {e}"))
    }

    pub fn import_token(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(self.import_token.trim())
            .map_err(|e| format!("ImportToken is not base64: {e}"))
    }

    pub fn public_key_der(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(self.public_key.trim())
            .map_err(|e| format!("PublicKey is not base64: {e}"))
    }

    /// ParametersValidTo as epoch seconds (the CLI prints a number or an
    /// ISO 8601 string, depending on its version and settings).
    pub fn valid_to(&self) -> Option<i64> {
        match self.parameters_valid_to.as_ref()? {
            serde_json::Value::Number(n) => n.as_f64().map(|f| f as i64),
            serde_json::Value::String(s) => parse_iso8601(s),
            _ => None,
        }
    }
}

/// Seconds since the epoch of an RFC 3339 / ISO 8601 time
/// ("2026-11-22T08:00:00.123+00:00", "...Z", "...+0100"); a time without an
/// offset is UTC, as AWS writes it.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(at) = s.parse::<jiff::Timestamp>() {
        return Some(at.as_second());
    }
    let civil: jiff::civil::DateTime = s.parse().ok()?;
    let at = jiff::tz::Offset::UTC.to_timestamp(civil).ok()?;
    Some(at.as_second())
}

/// The command that imports the file: `aws kms import-key-material`
/// (https://docs.aws.amazon.com/cli/latest/reference/kms/import-key-material.html).
/// `token_file_written`: the import token sits next to the output as
/// OUT.import-token.
pub fn next_step(key_id: Option<&str>, token_file_written: bool) -> NextStep {
    let step = NextStep::new(&["aws", "kms", "import-key-material"]);
    let step = match key_id {
        Some(id) => step.flag("--key-id", Word::lit(id)),
        None => step.flag("--key-id", Word::var("KEY_ID")).needs(
            "KEY_ID",
            "the KMS key's id or ARN (a key made with --origin EXTERNAL)",
        ),
    };
    let step = step.flag(
        "--encrypted-key-material",
        Word(vec![Piece::Lit("fileb://".into()), Piece::Out]),
    );
    let step = if token_file_written {
        step.flag(
            "--import-token",
            Word(vec![
                Piece::Lit("fileb://".into()),
                Piece::Out,
                Piece::Lit(".import-token".into()),
            ]),
        )
    } else {
        step.flag(
            "--import-token",
            Word(vec![Piece::Lit("fileb://".into()), Piece::Var("IMPORT_TOKEN_FILE")]),
        )
        .needs(
            "IMPORT_TOKEN_FILE",
            "a file holding the ImportToken of the same get-parameters-for-import call, base64-decoded",
        )
    };
    step.flag(
        "--expiration-model",
        Word::lit("KEY_MATERIAL_DOES_NOT_EXPIRE"),
    )
}

#[cfg(test)]
mod tests;
