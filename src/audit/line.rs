//! One line of the audit log (docs/AUDIT.md, "The line"): its fields, its
//! exact bytes, the part the MAC covers, and the hash that chains it to the
//! next line. Pure: no file, no token, no clock.
//!
//! A line is one JSON object on one line, members in the order of [`Line`],
//! `mac` last. The MAC covers the line's bytes without that last member:
//! everything up to `,"mac":`, then `}`. The next line's `prev` is the
//! SHA-256 of the whole line (without its newline).
//!
//! A line naming many keys is written as it is serialized ([`write`]) and
//! the last line of a log is read as a stream ([`parse_last`]): neither is
//! held whole in memory.

use std::io::{Read, Write};

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
// `K` holds the keys: a list when a line is read, any source that
// serializes as one when it is written (`super::Keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hsmkey audit line, version 1", rename = "Line")]
pub struct Line<K = Vec<KeyRef>> {
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
    pub keys: K,
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

impl<K: Serialize> Line<K> {
    /// The bytes the MAC covers: this line without its `mac` member.
    pub fn mac_input(&self) -> Result<Vec<u8>, String> {
        let mut bytes = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        let end = bytes.len().saturating_sub(MAC_END);
        let at = bytes[end..]
            .windows(MAC_MEMBER.len())
            .rposition(|w| w == MAC_MEMBER)
            .ok_or("a line does not end with its mac member")?;
        bytes.truncate(end + at);
        bytes.push(b'}');
        Ok(bytes)
    }
}

impl Line {
    /// The line as written, without its newline: the MAC input with the
    /// `mac` member put back (null when unsigned).
    pub fn with_mac(mac_input: &[u8], mac: Option<&[u8]>) -> Vec<u8> {
        let mut out = mac_input[..mac_input.len().saturating_sub(1)].to_vec();
        out.extend_from_slice(&mac_member(mac));
        out
    }
}

/// `,"mac":VALUE}`: the end of every line.
fn mac_member(mac: Option<&[u8]>) -> Vec<u8> {
    let mut out = MAC_MEMBER.to_vec();
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

/// The longest end of a line from its `mac` member on: `,"mac":"` + 64
/// hex digits + `"}`.
const MAC_END: usize = 7 + 67;

/// The token side of a line signed as it is written: the MAC input in
/// pieces, then the MAC (None: the token could not sign it).
pub trait MacStream {
    fn update(&mut self, bytes: &[u8]);
    fn finish(&mut self) -> Option<Vec<u8>>;
}

/// A line as [`write`] wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// SHA-256 (hex) of its bytes: the next line's `prev`, the head's `last`.
    pub sha256: String,
    /// Whether it carries a MAC.
    pub signed: bool,
}

/// Bytes passed on at a time while a line is written.
const WRITE_BATCH: usize = 64 * 1024;

/// Where the bytes of a line go while it is serialized: to `out`, the
/// SHA-256 and the MAC, all but the last `keep` bytes (the `signer` and
/// `mac` members, which depend on whether the MAC is made).
struct Holdback<'o, 'm> {
    keep: usize,
    buf: Vec<u8>,
    out: &'o mut dyn Write,
    sha: Sha256,
    mac: Option<&'m mut dyn MacStream>,
}

impl Holdback<'_, '_> {
    fn pass(&mut self, upto: usize) -> std::io::Result<()> {
        let bytes = &self.buf[..upto];
        self.out.write_all(bytes)?;
        self.sha.update(bytes);
        if let Some(m) = self.mac.as_deref_mut() {
            m.update(bytes);
        }
        self.buf.drain(..upto);
        Ok(())
    }
}

impl Write for Holdback<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_BATCH + self.keep {
            self.pass(self.buf.len() - self.keep)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Write `line` (with `mac` null, and `signer` the token that will sign it,
/// or null) to `out` as it is serialized, feeding the MAC input to `mac`
/// as it comes, and put the MAC at its end. When the token cannot sign
/// (`mac` absent, or it fails), the line is written unsigned: `signer` and
/// `mac` null. The bytes are those of [`Line::with_mac`] over
/// [`Line::mac_input`]; no copy of the whole line is made.
pub fn write<K: Serialize>(
    line: &Line<K>,
    out: &mut dyn Write,
    mac: Option<&mut dyn MacStream>,
) -> Result<Written, String> {
    if line.mac.is_some() {
        return Err("a line is written before its MAC is known".into());
    }
    let mut signer = b",\"signer\":".to_vec();
    serde_json::to_writer(&mut signer, &line.signer).map_err(|e| e.to_string())?;
    let mut end = signer.clone();
    end.extend_from_slice(&mac_member(None));
    let signing = line.signer.is_some() && mac.is_some();
    let mut sink = Holdback {
        keep: end.len(),
        buf: Vec::with_capacity(WRITE_BATCH + end.len()),
        out,
        sha: Sha256::new(),
        mac: if signing { mac } else { None },
    };
    serde_json::to_writer(&mut sink, line).map_err(|e| e.to_string())?;
    let body = sink.buf.len().saturating_sub(sink.keep);
    sink.pass(body).map_err(|e| e.to_string())?;
    if sink.buf != end {
        return Err("a line does not end with its signer and mac members".into());
    }
    sink.buf.clear();
    let made = match sink.mac.as_deref_mut() {
        Some(m) => {
            m.update(&signer);
            m.update(b"}");
            m.finish()
        }
        None => None,
    };
    let tail = match &made {
        Some(mac) => {
            let mut t = signer;
            t.extend_from_slice(&mac_member(Some(mac)));
            t
        }
        None => {
            let mut t = b",\"signer\":null".to_vec();
            t.extend_from_slice(&mac_member(None));
            t
        }
    };
    sink.out.write_all(&tail).map_err(|e| e.to_string())?;
    sink.sha.update(&tail);
    Ok(Written {
        sha256: hex::encode(sink.sha.finalize()),
        signed: made.is_some(),
    })
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
    let (at, mac) = mac_at_end(raw, line.mac.as_deref(), line.signer.is_some())?;
    let mut mac_input = raw[..at].to_vec();
    mac_input.push(b'}');
    Ok(Parsed {
        line,
        mac_input,
        mac,
    })
}

/// Where the `mac` member of `raw` (a line, or its last bytes) begins, and
/// the MAC, checked against the line's parsed `mac` and `signer`.
fn mac_at_end(
    raw: &[u8],
    parsed_mac: Option<&str>,
    signed: bool,
) -> Result<(usize, Option<Vec<u8>>), String> {
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
    if mac.as_ref().map(hex::encode).as_deref() != parsed_mac {
        return Err("the mac member is not the line's last member".into());
    }
    if mac.is_some() != signed {
        return Err("a mac without a signer, or a signer without a mac".into());
    }
    Ok((at, mac))
}

/// The keys of a line read as a stream: each checked, only counted.
struct Counted;

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Counted, D::Error> {
        struct Each;
        impl<'de> serde::de::Visitor<'de> for Each {
            type Value = Counted;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of keys")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Counted, A::Error> {
                while seq.next_element::<KeyRef>()?.is_some() {}
                Ok(Counted)
            }
        }
        d.deserialize_seq(Each)
    }
}

/// What the next line needs of a log's last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Last {
    pub seq: u64,
    pub log: String,
}

/// Read a log's last line from `reader` (its bytes, without the newline),
/// checked as [`parse`] checks a line, without holding it: `end` is its
/// last bytes (at least [`LAST_END`] of them, or all), where the `mac`
/// member is. Returns what the next line needs and the line's SHA-256.
pub fn parse_last(reader: impl Read, end: &[u8]) -> Result<(Last, String), String> {
    let mut buffered = std::io::BufReader::with_capacity(
        64 * 1024,
        Hashed {
            inner: reader,
            sha: Sha256::new(),
        },
    );
    let line: Line<Counted> = {
        let mut de = serde_json::Deserializer::from_reader(&mut buffered);
        let line =
            Line::<Counted>::deserialize(&mut de).map_err(|e| format!("not an audit line: {e}"))?;
        de.end().map_err(|e| format!("not an audit line: {e}"))?;
        line
    };
    if line.schema != SCHEMA {
        return Err(format!(
            "schema {} (this hsmkey reads {SCHEMA})",
            line.schema
        ));
    }
    mac_at_end(end, line.mac.as_deref(), line.signer.is_some())?;
    std::io::copy(&mut buffered, &mut std::io::sink()).map_err(|e| e.to_string())?;
    let sha = buffered.into_inner().sha;
    Ok((
        Last {
            seq: line.seq,
            log: line.log,
        },
        hex::encode(sha.finalize()),
    ))
}

/// The bytes [`parse_last`] needs from the end of a line.
pub const LAST_END: usize = MAC_END;

/// A reader that hashes what it reads.
struct Hashed<R> {
    inner: R,
    sha: Sha256,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

/// The JSON Schema of a line (docs/schemas/hsmkey.audit-line.v1.json).
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Line);
    serde_json::to_value(schema).unwrap_or_default()
}
