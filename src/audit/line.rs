//! One line of the audit log (docs/AUDIT.md, "The line"): its fields, its
//! exact bytes, the part the MAC covers, and the hash that chains it to the
//! next line. Pure: no file, no token, no clock.
//!
//! A line is one JSON object on one line, members in the order of [`Line`],
//! `mac` last. The MAC covers the line's bytes without that last member:
//! everything up to `,"mac":`, then `}`. The next line's `prev` is the
//! SHA-256 of the whole line (without its newline).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `schema` member of every line: its JSON Schema's name
/// (docs/schemas/hsmkey.audit-line.v1.json), and the format version.
pub const SCHEMA: &str = "hsmkey.audit-line.v1";

/// `prev` of the first line of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What comes before the MAC's value in every line.
const MAC_MEMBER: &[u8] = b",\"mac\":";

/// One operation, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hsmkey audit line, version 1")]
pub struct Line {
    /// `hsmkey.audit-line.v1`: the format and its version.
    #[schemars(extend("const" = "hsmkey.audit-line.v1"))]
    pub schema: String,
    /// Position in the log: 1 for the first line, then one more per line.
    pub seq: u64,
    /// The log's id (32 hex digits), drawn at random when its first line was
    /// written and repeated on every line: the token keeps one chain head
    /// per log id.
    pub log: String,
    /// When the line was written, UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// The command: `key generate`, `backup`, `token init`, ...
    pub op: String,
    /// The hsmkey version and commit that wrote the line.
    pub hsmkey: String,
    /// The operating-system user that ran hsmkey (name, else the uid).
    pub user: String,
    /// That user's numeric id, where the system has one.
    pub uid: Option<u32>,
    /// The host name.
    pub host: String,
    /// The API client on whose behalf the server ran the operation; null
    /// from the command line.
    pub client: Option<String>,
    /// The HTTP request the server answered (absent from the command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestRef>,
    /// Requests the server refused without naming a client, from one
    /// source over one window, counted in one line (`serve refused`
    /// lines only; absent from every other line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refused>,
    /// The token the operation used, once it was chosen.
    pub token: Option<TokenRef>,
    /// The keys made, moved, checked or destroyed (empty when the operation
    /// failed before it reached them).
    pub keys: Vec<KeyRef>,
    /// What protected the keys that left or entered the token.
    pub protection: Option<Protection>,
    /// Files read (bundles, key material), with their SHA-256.
    pub inputs: Vec<FileRef>,
    /// Files written (path `-` is stdout), with their SHA-256.
    pub outputs: Vec<FileRef>,
    /// The operation only checked and created nothing (`restore --dry-run`).
    pub dry_run: bool,
    /// How it ended.
    pub result: Outcome,
    /// SHA-256 (hex) of the previous line, without its newline; 64 zeros on
    /// the first line.
    pub prev: String,
    /// The token and key that computed `mac`; null when no token session
    /// was open (the operation failed before the login).
    pub signer: Option<Signer>,
    /// HMAC-SHA256 (hex) computed in the signer's token over the line
    /// without this member; null when `signer` is null.
    pub mac: Option<String>,
}

/// A token, as the line names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRef {
    pub label: String,
    pub serial: String,
    pub model: String,
    pub manufacturer: String,
}

/// A request to `hsmkey serve`, as its line records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestRef {
    /// GET, POST, ...
    pub method: String,
    /// The path asked for (without its query).
    pub path: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The address the request came from.
    pub source: String,
    /// What the client asked to be recorded with it (Piiano's
    /// `custom_audit` query parameter), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_audit: Option<String>,
}

/// Refusals of requests that named no client (no or unknown credentials,
/// a throttled source, a path no route has, a body sent too slowly), from
/// one source over one window of `hsmkey serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    /// The source: an IPv4 address, an IPv6 /64 (`2001:db8:1:2::/64`), or
    /// `*` for the sources past `refusal_sources_per_window`, together.
    pub source: String,
    /// The requests refused.
    pub count: u64,
    /// When the first of them was answered (UTC, RFC 3339, milliseconds).
    pub first: String,
    /// When the last of them was answered.
    pub last: String,
    /// The requests by method, path, status and code, in the order first
    /// seen; at most 16 such kinds.
    pub requests: Vec<RefusedRequests>,
    /// Requests of further kinds: in `count`, not in `requests`.
    pub unlisted: u64,
}

/// Refused requests of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefusedRequests {
    pub method: String,
    /// The path asked for (without its query; cut to 256 bytes).
    pub path: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The error code answered (docs/ERRORS.md), when there was one.
    pub code: Option<String>,
    pub count: u64,
}

/// The token and key that signed a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    pub label: String,
    pub serial: String,
    pub model: String,
    /// CKA_ID (hex) of the `hsmkey-audit-mac` key in that token.
    pub key_id: String,
}

/// One key the operation touched. Key material never appears: the KCV is
/// computed in the token and identifies the value without revealing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// CKA_LABEL (`NAME`, `NAME@v2`, ...), or the name as asked for.
    pub label: String,
    /// CKA_ID (hex), when known.
    pub id: Option<String>,
    /// `secret-key`, `private-key` or `public-key`, when known.
    pub class: Option<String>,
    /// Key check value (hex), when the token gives one.
    pub kcv: Option<String>,
    /// The version (1 for `NAME`, 2 for `NAME@v2`, ...), when known.
    pub version: Option<u32>,
}

/// What protected keys that left or entered the token. Never a secret:
/// a KEK by label and KCV, a public key by fingerprint, a password by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Protection {
    /// A key-encryption key in the token.
    Kek { label: String, kcv: Option<String> },
    /// A public key (a recipient token's, a cloud's wrapping key, or this
    /// token's import key pair): SHA-256 (hex) of its SubjectPublicKeyInfo.
    Recipient {
        fingerprint: Option<String>,
        label: Option<String>,
    },
    /// A password (Argon2id).
    Password,
}

/// A file and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub path: String,
    /// SHA-256 (hex) of the file as written or read.
    pub sha256: String,
}

/// How the operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub ok: bool,
    /// The error code (docs/ERRORS.md) when it failed or was refused.
    pub code: Option<String>,
    /// The error message (never a secret: messages name keys, not values).
    pub message: Option<String>,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome {
            ok: true,
            code: None,
            message: None,
        }
    }

    pub fn error(code: &str, message: String) -> Outcome {
        Outcome {
            ok: false,
            code: Some(code.to_string()),
            message: Some(message),
        }
    }
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Line {
    /// The bytes the MAC covers: this line (with `mac` null) without its
    /// `mac` member.
    pub fn mac_input(&self) -> Result<Vec<u8>, String> {
        let mut unsigned = self.clone();
        unsigned.mac = None;
        let mut bytes = serde_json::to_vec(&unsigned).map_err(|e| e.to_string())?;
        let tail = b",\"mac\":null}";
        if !bytes.ends_with(tail) {
            return Err("a line does not end with its mac member".into());
        }
        bytes.truncate(bytes.len() - tail.len());
        bytes.push(b'}');
        Ok(bytes)
    }

    /// The line as written, without its newline: the MAC input with the
    /// `mac` member put back (null when unsigned).
    pub fn with_mac(mac_input: &[u8], mac: Option<&[u8]>) -> Vec<u8> {
        let mut out = mac_input[..mac_input.len().saturating_sub(1)].to_vec();
        out.extend_from_slice(MAC_MEMBER);
        match mac {
            Some(m) => {
                out.push(b'"');
                out.extend_from_slice(hex::encode(m).as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        out
    }
}

/// A line read back: its fields, the bytes its MAC covers and the MAC.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub line: Line,
    pub mac_input: Vec<u8>,
    pub mac: Option<Vec<u8>>,
}

/// Read one line (without its newline). The error says what is wrong.
pub fn parse(raw: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8 text".to_string())?;
    let line: Line = serde_json::from_str(text).map_err(|e| format!("not an audit line: {e}"))?;
    if line.schema != SCHEMA {
        return Err(format!(
            "schema {} (this hsmkey reads {SCHEMA})",
            line.schema
        ));
    }
    let at = raw
        .windows(MAC_MEMBER.len())
        .rposition(|w| w == MAC_MEMBER)
        .ok_or("no mac member at the end")?;
    let value = &raw[at + MAC_MEMBER.len()..];
    let mac = match value {
        b"null}" => None,
        v if v.len() == 67 && v[0] == b'"' && v[65] == b'"' && v[66] == b'}' => {
            let hex_text = &v[1..65];
            if hex_text.iter().any(|c| c.is_ascii_uppercase()) {
                return Err("the mac is not lower-case hex".into());
            }
            Some(hex::decode(hex_text).map_err(|_| "the mac is not hex".to_string())?)
        }
        _ => return Err("the line does not end with its mac member".into()),
    };
    if mac.as_ref().map(hex::encode) != line.mac {
        return Err("the mac member is not the line's last member".into());
    }
    if mac.is_some() != line.signer.is_some() {
        return Err("a mac without a signer, or a signer without a mac".into());
    }
    let mut mac_input = raw[..at].to_vec();
    mac_input.push(b'}');
    Ok(Parsed {
        line,
        mac_input,
        mac,
    })
}

/// The JSON Schema of a line (docs/schemas/hsmkey.audit-line.v1.json).
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Line);
    serde_json::to_value(schema).unwrap_or_default()
}
