//! The token as the receiving KMS (Huawei "get parameters for import" shape):
//! the parameters hsmkey hands out, the import token that binds them, and the
//! import-key-material request it accepts.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Prefix of hsmkey import tokens.
pub const TOKEN_PREFIX: &str = "hk1.";

/// The algorithms the token accepts key material under.
pub const ALGORITHMS: [&str; 4] = [
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
];

/// Key specs for the wrapping key pair.
pub fn key_spec_bits(spec: &str) -> Option<u64> {
    match spec {
        "RSA_2048" => Some(2048),
        "RSA_3072" => Some(3072),
        "RSA_4096" => Some(4096),
        _ => None,
    }
}

/// The response of `import-params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Parameters {
    pub key_id: String,
    pub import_token: String,
    pub expiration_time: i64,
    /// base64 of the DER SubjectPublicKeyInfo.
    pub public_key: String,
}

/// What an import token binds. The MAC over these bytes is made in the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPayload {
    pub v: u32,
    pub key_id: String,
    pub algorithm: String,
    /// SHA-256 of the wrapping key's SPKI DER, hex.
    pub spki_sha256: String,
    pub expires: i64,
}

impl TokenPayload {
    /// The bytes the MAC covers.
    pub fn encode(&self) -> crate::Result<Vec<u8>> {
        // Strings and integers do not fail to serialize; if they ever did,
        // that is a bug, reported rather than a panic.
        serde_json::to_vec(self)
            .map_err(|e| crate::Error::Internal(format!("cannot serialize an import token: {e}")))
    }
}

/// `hk1.<base64url(payload)>.<base64url(mac)>`
pub fn encode_token(payload: &TokenPayload, mac: &[u8]) -> crate::Result<String> {
    Ok(format!(
        "{TOKEN_PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(payload.encode()?),
        URL_SAFE_NO_PAD.encode(mac)
    ))
}

/// Split a token into its payload (parsed), the exact payload bytes and the MAC.
pub fn decode_token(token: &str) -> Result<(TokenPayload, Vec<u8>, Vec<u8>), String> {
    let body = token
        .trim()
        .strip_prefix(TOKEN_PREFIX)
        .ok_or("it is not an hsmkey import token")?;
    let (payload, mac) = body.split_once('.').ok_or("it has no MAC part")?;
    let payload_bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "its payload is not base64url")?;
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .map_err(|_| "its MAC is not base64url")?;
    let parsed: TokenPayload = serde_json::from_slice(&payload_bytes)
        .map_err(|_| "its payload is not what hsmkey writes")?;
    if parsed.v != 1 {
        return Err(format!("token version {} is not supported", parsed.v));
    }
    Ok((parsed, payload_bytes, mac))
}

/// The import-key-material request (Huawei shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    pub key_id: String,
    pub import_token: String,
    /// base64.
    pub encrypted_key_material: String,
    /// base64; present for private keys (RFC 5649 of the PKCS#8 under the
    /// temporary key that `encrypted_key_material` carries).
    #[serde(default)]
    pub encrypted_privatekey: Option<String>,
}

impl Material {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes)
            .map_err(|e| format!("not an import-key-material request: {e}"))
    }

    pub fn key_material(&self) -> Result<Vec<u8>, String> {
        STANDARD
            .decode(self.encrypted_key_material.trim())
            .map_err(|_| "encrypted_key_material is not base64".to_string())
    }

    pub fn private_key(&self) -> Result<Option<Vec<u8>>, String> {
        self.encrypted_privatekey
            .as_deref()
            .map(|p| {
                STANDARD
                    .decode(p.trim())
                    .map_err(|_| "encrypted_privatekey is not base64".to_string())
            })
            .transpose()
    }
}

/// Huawei's key id pattern.
pub fn valid_key_id(id: &str) -> bool {
    crate::formats::byok::huawei::valid_key_id(id)
}

/// A key id from 16 random bytes: a version-4 UUID (RFC 9562), lowercase
/// 8-4-4-4-12, the shape Huawei's key ids take.
pub fn key_id_from(random: &[u8; 16]) -> String {
    uuid::Builder::from_random_bytes(*random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// `--valid-for`: `90s`, `30m`, `24h`, `7d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 24h"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit '{other}': use s, m, h or d")),
    };
    // Checked: "9999999999999999d" overflows i64.
    let secs = n.checked_mul(unit_secs).unwrap_or(i64::MAX);
    if secs <= 0 || secs > 30 * 86_400 {
        return Err("the validity must be between 1 second and 30 days".into());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests;
