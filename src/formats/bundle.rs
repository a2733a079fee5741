//! The native backup bundle (docs/FORMAT.md): JSON Lines, one header line,
//! one line per key version, one trailer line. Pure data: this module never
//! touches a token; the MAC over the lines is computed in the token by the
//! caller, which gets each line's exact bytes from here.
//!
//! Streamable both ways: [`encode_line`] writes one line at a time and
//! [`BundleReader`] yields one line at a time with a bounded line length, so
//! memory does not grow with the number of keys.

use std::io::BufRead;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The `format` field of every header.
pub const FORMAT: &str = "hsmkey-bundle";
/// The bundle version this code writes and reads.
pub const VERSION: u32 = 1;
/// Prefix of the single-string encoding (`backup --format blob`).
pub const BLOB_PREFIX: &str = "hsmkey-blob-v1:";
/// No line of a valid bundle comes near this (an RSA-4096 entry is ~5 KiB);
/// it bounds what random input can make us allocate.
pub const MAX_LINE: usize = 256 * 1024;

/// Why bytes are not a valid bundle.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the file is empty")]
    Empty,
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("the bundle is format version {found}; this hsmkey reads version {VERSION}")]
    UnsupportedVersion { found: u32 },
    #[error("the bundle ends without its trailer (truncated after line {line})")]
    Truncated { line: u64 },
    #[error("the trailer counts {claimed} entries but the bundle holds {found}")]
    CountMismatch { claimed: u64, found: u64 },
    #[error("the text is not a hsmkey blob: {reason}")]
    BadBlob { reason: String },
}

/// The token the keys came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SourceToken {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
}

/// Which key a bundle was made for: what restore must be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    pub label: String,
    /// CKA_ID, hex.
    pub id: String,
    /// 3-byte KCV, hex, when the token could compute one.
    pub kcv: Option<String>,
}

/// Argon2id parameters of a password-protected bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Always "argon2id".
    pub algorithm: String,
    /// Argon2 version number (0x13 = 19).
    pub version: u32,
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism.
    pub p: u32,
    /// Salt, base64.
    pub salt: String,
}

/// The recipient of a transfer bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientInfo {
    /// SHA-256 of the recipient public key's SubjectPublicKeyInfo DER, hex.
    pub spki_sha256: String,
    /// RSA modulus size in bits.
    pub bits: u32,
    /// "sha1" or "sha256": the OAEP hash (MGF1 with the same hash, empty label).
    pub oaep_hash: String,
    /// The AES-256 transfer key, RSA-OAEP-wrapped to the recipient, base64.
    pub wrapped_transfer_key: String,
}

/// How the keys in the bundle are protected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum Protection {
    /// Wrapped under an AES KEK present in both tokens.
    Kek { kek: KeyRef },
    /// Wrapped under an AES-256 key derived from a password with Argon2id.
    Password { kdf: KdfParams },
    /// Wrapped under a fresh AES-256 transfer key, itself RSA-OAEP-wrapped to a recipient.
    Recipient { recipient: RecipientInfo },
}

impl Protection {
    pub fn scheme(&self) -> &'static str {
        match self {
            Protection::Kek { .. } => "kek",
            Protection::Password { .. } => "password",
            Protection::Recipient { .. } => "recipient",
        }
    }
}

/// The integrity key: a fresh HMAC key made in the token, wrapped under the
/// same key that protects the entries, so only its holder can check or forge
/// the MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacInfo {
    /// "hmac-sha256".
    pub algorithm: String,
    /// The wrap algorithm of `wrapped_key` ("rfc3394" ...).
    pub wrap: String,
    /// base64.
    pub wrapped_key: String,
}

/// First line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub tool: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub source: SourceToken,
    pub protection: Protection,
    pub mac: MacInfo,
}

/// A key check value and how it was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kcv {
    /// "aes-ecb-zero": AES-ECB(key, 0^128); "hmac-sha256-empty": HMAC-SHA256(key, "").
    pub method: String,
    /// First 3 bytes, hex.
    pub value: String,
}

/// The public half of an asymmetric key, in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PublicPart {
    Rsa {
        /// Big-endian, base64.
        modulus: String,
        public_exponent: String,
        usage: Vec<String>,
    },
    Ec {
        /// DER of the curve OID (CKA_EC_PARAMS), base64.
        params: String,
        /// CKA_EC_POINT as the token gives it (DER OCTET STRING), base64.
        point: String,
        usage: Vec<String>,
    },
}

/// One key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub label: String,
    pub name: String,
    pub version: u32,
    /// CKA_ID, hex.
    pub id: String,
    /// "secret-key" or "private-key".
    pub class: String,
    /// "aes", "generic", "rsa" or "ec".
    pub key_type: String,
    pub size: Option<u64>,
    pub usage: Vec<String>,
    /// "none", "trusted" or "any"; restore recreates it.
    pub backup_policy: String,
    pub kcv: Option<Kcv>,
    pub public: Option<PublicPart>,
    /// "rfc3394", "rfc5649" or "rfc5649-zero-padded".
    pub wrap: String,
    /// base64.
    pub wrapped: String,
}

/// Last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    pub entries: u64,
    /// HMAC-SHA256 over every byte before this line, base64.
    pub mac: String,
}

/// One line of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    Header(Header),
    Key(Entry),
    Trailer(Trailer),
}

/// The exact bytes of one line, newline included: what the MAC covers.
pub fn encode_line(line: &Line) -> crate::Result<Vec<u8>> {
    // These plain structs (no maps with non-string keys) do not fail to
    // serialize; if one ever did, that is a bug, reported rather than a panic.
    let mut bytes = serde_json::to_vec(line)
        .map_err(|e| crate::Error::Internal(format!("cannot serialize a bundle line: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// base64 (standard, padded) as used inside bundles.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decode a base64 field, naming it on failure.
pub fn unb64(field: &str, text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("{field} is not base64: {e}"))
}

/// Single-string form of a whole bundle.
pub fn encode_blob(bundle: &[u8]) -> String {
    format!("{BLOB_PREFIX}{}", URL_SAFE_NO_PAD.encode(bundle))
}

/// Inverse of [`encode_blob`]; surrounding whitespace is ignored.
pub fn decode_blob(text: &str) -> Result<Vec<u8>, BundleError> {
    let text = text.trim();
    let body = text
        .strip_prefix(BLOB_PREFIX)
        .ok_or_else(|| BundleError::BadBlob {
            reason: format!("it does not start with {BLOB_PREFIX}"),
        })?;
    URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| BundleError::BadBlob {
            reason: e.to_string(),
        })
}

/// Whether the start of a file looks like a blob rather than a bundle.
pub fn is_blob(start: &[u8]) -> bool {
    let trimmed = start
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(start.len());
    start[trimmed..].starts_with(BLOB_PREFIX.as_bytes())
}

/// Reads a bundle line by line, checking the structure (header first, keys,
/// trailer last, nothing after, counts) but not the MAC, which needs a token.
pub struct BundleReader<R> {
    inner: R,
    line_no: u64,
    entries: u64,
    seen_header: bool,
    done: bool,
}

/// A parsed line and its exact bytes.
pub struct ReadLine {
    pub line: Line,
    pub bytes: Vec<u8>,
    pub number: u64,
}

impl<R: BufRead> BundleReader<R> {
    pub fn new(inner: R) -> Self {
        BundleReader {
            inner,
            line_no: 0,
            entries: 0,
            seen_header: false,
            done: false,
        }
    }

    fn read_raw(&mut self) -> Result<Option<Vec<u8>>, BundleError> {
        let mut buf = Vec::new();
        let mut limited = std::io::Read::take(&mut self.inner, MAX_LINE as u64 + 1);
        let n = limited
            .read_until(b'\n', &mut buf)
            .map_err(|e| BundleError::Malformed {
                line: self.line_no + 1,
                reason: format!("cannot read: {e}"),
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        if buf.len() > MAX_LINE {
            return Err(BundleError::Malformed {
                line: self.line_no,
                reason: format!("longer than {MAX_LINE} bytes"),
            });
        }
        if buf.last() != Some(&b'\n') {
            return Err(BundleError::Truncated {
                line: self.line_no - 1,
            });
        }
        Ok(Some(buf))
    }

    /// The next line, or `None` after the trailer has been read and nothing follows.
    pub fn next_line(&mut self) -> Result<Option<ReadLine>, BundleError> {
        if self.done {
            return match self.read_raw()? {
                None => Ok(None),
                Some(_) => Err(BundleError::Malformed {
                    line: self.line_no,
                    reason: "data after the trailer".into(),
                }),
            };
        }
        let bytes = match self.read_raw()? {
            Some(b) => b,
            None if self.line_no == 0 => return Err(BundleError::Empty),
            None => return Err(BundleError::Truncated { line: self.line_no }),
        };
        let number = self.line_no;
        let malformed = |reason: String| BundleError::Malformed {
            line: number,
            reason,
        };
        let text = std::str::from_utf8(&bytes[..bytes.len() - 1])
            .map_err(|_| malformed("not UTF-8".into()))?;
        if !self.seen_header {
            // Check the version before the rest, so a future bundle is named as
            // such rather than as a parse error.
            let loose: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| malformed(format!("not a JSON object: {e}")))?;
            if loose.get("type").and_then(|t| t.as_str()) != Some("header")
                || loose.get("format").and_then(|f| f.as_str()) != Some(FORMAT)
            {
                return Err(malformed(format!(
                    "the first line is not a {FORMAT} header"
                )));
            }
            match loose.get("version").and_then(|v| v.as_u64()) {
                Some(v) if v == u64::from(VERSION) => {}
                Some(v) => {
                    return Err(BundleError::UnsupportedVersion {
                        found: u32::try_from(v).unwrap_or(u32::MAX),
                    })
                }
                None => return Err(malformed("the header has no version".into())),
            }
        }
        let line: Line =
            serde_json::from_str(text).map_err(|e| malformed(format!("invalid line: {e}")))?;
        match (&line, self.seen_header) {
            (Line::Header(_), false) => self.seen_header = true,
            (Line::Header(_), true) => return Err(malformed("a second header".into())),
            (_, false) => unreachable!("checked above: the first line is a header"),
            (Line::Key(entry), true) => {
                validate_entry(entry).map_err(malformed)?;
                self.entries += 1;
            }
            (Line::Trailer(t), true) => {
                if t.entries != self.entries {
                    return Err(BundleError::CountMismatch {
                        claimed: t.entries,
                        found: self.entries,
                    });
                }
                self.done = true;
            }
        }
        Ok(Some(ReadLine {
            line,
            bytes,
            number,
        }))
    }
}

fn validate_entry(e: &Entry) -> Result<(), String> {
    if e.label.is_empty() {
        return Err("an entry has an empty label".into());
    }
    hex::decode(&e.id).map_err(|_| format!("{}: id is not hex", e.label))?;
    match (e.class.as_str(), e.key_type.as_str()) {
        ("secret-key", "aes" | "generic") | ("private-key", "rsa" | "ec") => {}
        (c, t) => return Err(format!("{}: unsupported class/type {c}/{t}", e.label)),
    }
    if e.class == "private-key" && e.public.is_none() {
        return Err(format!(
            "{}: a private key without its public part",
            e.label
        ));
    }
    if !matches!(e.backup_policy.as_str(), "none" | "trusted" | "any") {
        return Err(format!(
            "{}: unknown backup policy {}",
            e.label, e.backup_policy
        ));
    }
    if e.class == "secret-key" {
        let method = if e.key_type == "aes" {
            "aes-ecb-zero"
        } else {
            "hmac-sha256-empty"
        };
        match &e.kcv {
            Some(k)
                if k.method == method && k.value.len() == 6 && hex::decode(&k.value).is_ok() => {}
            _ => {
                return Err(format!(
                    "{}: a secret key needs a {method} KCV of 3 bytes",
                    e.label
                ))
            }
        }
    }
    if !matches!(
        e.wrap.as_str(),
        "rfc3394" | "rfc5649" | "rfc5649-zero-padded"
    ) {
        return Err(format!("{}: unknown wrap algorithm {}", e.label, e.wrap));
    }
    unb64("wrapped", &e.wrapped).map_err(|r| format!("{}: {r}", e.label))?;
    Ok(())
}

#[cfg(test)]
mod tests;
