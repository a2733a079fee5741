//! The server's configuration file (docs/SERVER.md, "Configuration"): TOML,
//! every key checked, every error naming its key and line (HK1010). A PIN
//! or a client's secret key is never written in it, only where it comes
//! from (HK1011); plain HTTP is for loopback addresses only (HK1012).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use super::access::Capability;
use crate::error::{Error, Result, ServeError};
use crate::hsm::keys::BackupPolicy;
use crate::hsm::pin::PinSource;

/// The server's settings, checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub path: PathBuf,
    pub listen: SocketAddr,
    pub module: Option<String>,
    pub module_args: Option<String>,
    pub token: Option<String>,
    /// Where the user PIN comes from: env:VAR, file:PATH or empty.
    pub pin_source: String,
    /// The Huawei-style `{project_id}` in paths.
    pub project_id: Option<String>,
    /// The audit log; the default log when absent (docs/AUDIT.md).
    pub audit_log: Option<PathBuf>,
    /// Logged-in sessions the token work runs on (1 to 64).
    pub sessions: usize,
    pub tls: Option<Tls>,
    /// How long a request may wait for a session (and its line for one).
    pub request_timeout: Duration,
    /// How long a client may take to send a request's head (hyper's
    /// header read timeout; also how long a kept-alive connection may idle).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from when it
    /// is first read.
    pub body_timeout: Duration,
    /// How long refusals without a client are gathered before their lines
    /// are written.
    pub refusal_window: Duration,
    /// Sources whose refusals get a line of their own per window; the
    /// rest share one.
    pub refusal_sources_per_window: usize,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Requests with a body handled at once; the others wait for a slot.
    pub max_bodies: usize,
    /// Failed authentications one source address may make per minute
    /// before it is refused with 429.
    pub auth_failures_per_minute: u32,
    /// Load balancers or proxies whose `X-Forwarded-For` names the client's
    /// address (for throttling and the audit line); empty: none is trusted.
    pub proxies: Vec<IpAddr>,
    pub piiano: Option<Piiano>,
    pub storedsafe: Option<StoredSafe>,
    pub huawei: Option<Huawei>,
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[piiano]`: GET export_key returns `export_key` wrapped under `export_kek`.
#[derive(Debug, Clone)]
pub struct Piiano {
    pub export_key: String,
    pub export_kek: String,
}

/// `[storedsafe]`: the vault ids served, and the KEK backups are made under.
#[derive(Debug, Clone)]
pub struct StoredSafe {
    pub vaults: Vec<String>,
    pub kek: String,
}

/// `[huawei]`: the KEK CSMS blobs are made under, and how KMS import
/// parameters and imported keys are made.
#[derive(Debug, Clone)]
pub struct Huawei {
    /// Absent: the CSMS routes answer 404.
    pub csms_kek: Option<String>,
    /// The RSA wrapping key of get-parameters-for-import (`wrapping_key_spec`).
    pub wrapping_key_bits: u64,
    /// Seconds import parameters stay valid (`params_valid_for`).
    pub params_valid_for: i64,
    /// The backup policy imported keys get (`import_backup_policy`).
    pub import_backup_policy: BackupPolicy,
}

impl Default for Huawei {
    /// Huawei's own: RSA 2048, 24 hours; imported keys not extractable.
    fn default() -> Huawei {
        Huawei {
            csms_kek: None,
            wrapping_key_bits: 2048,
            params_valid_for: 86_400,
            import_backup_policy: BackupPolicy::None,
        }
    }
}

/// One `[[clients]]` entry.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub name: String,
    pub api_key_sha256: [u8; 32],
    pub access_key: Option<String>,
    /// The secret key of Huawei AK/SK signing, read at start.
    pub secret_key: Option<SecretString>,
    pub capabilities: BTreeSet<Capability>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    listen: Spanned<String>,
    module: Option<Spanned<String>>,
    module_args: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    pin_source: Spanned<String>,
    /// Never accepted: present only to refuse it with HK1011.
    pin: Option<Spanned<toml::Value>>,
    project_id: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    sessions: Option<Spanned<i64>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    request_timeout: Option<Spanned<i64>>,
    header_timeout: Option<Spanned<i64>>,
    body_timeout: Option<Spanned<i64>>,
    refusal_window: Option<Spanned<i64>>,
    refusal_sources_per_window: Option<Spanned<i64>>,
    body_limit: Option<Spanned<i64>>,
    max_bodies: Option<Spanned<i64>>,
    auth_failures_per_minute: Option<Spanned<i64>>,
    proxies: Option<Spanned<Vec<Spanned<String>>>>,
    piiano: Option<RawPiiano>,
    storedsafe: Option<RawStoredSafe>,
    huawei: Option<RawHuawei>,
    #[serde(default)]
    clients: Vec<RawClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPiiano {
    export_key: Spanned<String>,
    export_kek: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStoredSafe {
    vaults: Spanned<Vec<Spanned<String>>>,
    kek: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHuawei {
    csms_kek: Option<Spanned<String>>,
    wrapping_key_spec: Option<Spanned<String>>,
    params_valid_for: Option<Spanned<String>>,
    import_backup_policy: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Spanned<String>,
    api_key_sha256: Spanned<String>,
    access_key: Option<Spanned<String>>,
    secret_key_source: Option<Spanned<String>>,
    /// Never accepted: present only to refuse them with HK1011.
    secret_key: Option<Spanned<toml::Value>>,
    api_key: Option<Spanned<toml::Value>>,
    capabilities: Option<Spanned<Vec<Spanned<String>>>>,
}

pub const DEFAULT_SESSIONS: usize = 4;
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
pub const DEFAULT_AUTH_FAILURES: u32 = 10;
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_REFUSAL_WINDOW_SECS: u64 = 60;
pub const DEFAULT_REFUSAL_SOURCES: usize = 100;
pub const DEFAULT_MAX_BODIES: usize = 64;

/// Read and check the configuration file at `path`.
pub fn load(path: &Path) -> Result<ServeConfig> {
    let bytes =
        crate::input::read_bounded(path, crate::input::limits::CONFIG, "server configuration")?;
    let text = String::from_utf8(bytes).map_err(|_| ServeError::Config {
        path: path.display().to_string(),
        line: None,
        key: "(file)".into(),
        reason: "it is not UTF-8 text".into(),
    })?;
    parse(&text, path)
}

/// Names the file, the line and the key in every error.
struct Checker<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Checker<'_> {
    fn error(&self, span: Option<Range<usize>>, key: &str, reason: impl Into<String>) -> Error {
        ServeError::Config {
            path: self.path.display().to_string(),
            line: span.map(|s| line_of(self.text, s.start)),
            key: key.to_string(),
            reason: reason.into(),
        }
        .into()
    }

    fn inline(&self, span: Range<usize>, key: &str) -> Error {
        ServeError::InlineSecret {
            path: self.path.display().to_string(),
            line: Some(line_of(self.text, span.start)),
            key: key.to_string(),
        }
        .into()
    }

    fn string(&self, v: Option<Spanned<String>>, key: &str) -> Result<Option<String>> {
        match v {
            Some(s) if s.get_ref().trim().is_empty() => {
                Err(self.error(Some(s.span()), key, "is empty"))
            }
            Some(s) => Ok(Some(s.into_inner())),
            None => Ok(None),
        }
    }

    fn number(&self, v: Option<Spanned<i64>>, key: &str, range: Range<i64>) -> Result<Option<i64>> {
        match v {
            Some(n) if !range.contains(n.get_ref()) => Err(self.error(
                Some(n.span()),
                key,
                format!("must be from {} to {}", range.start, range.end - 1),
            )),
            Some(n) => Ok(Some(*n.get_ref())),
            None => Ok(None),
        }
    }

    /// A source of a secret: env:VAR or file:PATH (and `empty` for a PIN).
    /// Anything else is taken to be the secret itself.
    fn source(&self, v: &Spanned<String>, key: &str, empty_ok: bool) -> Result<PinSource> {
        match v.get_ref().parse::<PinSource>() {
            Ok(s @ (PinSource::Env(_) | PinSource::File(_))) => Ok(s),
            Ok(PinSource::Empty) if empty_ok => Ok(PinSource::Empty),
            Ok(PinSource::Prompt) => Err(self.error(
                Some(v.span()),
                key,
                "is prompt, and a server has no terminal: use env:VAR or file:PATH",
            )),
            _ => Err(self.inline(v.span(), key)),
        }
    }
}

/// Check the text of a server configuration; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<ServeConfig> {
    let c = Checker { text, path };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let message = crate::config::without_value(e.message());
        let key = key_of(&message, text, e.span());
        c.error(e.span(), &key, message)
    })?;
    if let Some(pin) = &raw.pin {
        return Err(c.inline(pin.span(), "pin"));
    }
    let pin_source = c.source(&raw.pin_source, "pin_source", true)?;
    let listen_text = raw.listen.get_ref().clone();
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        c.error(
            Some(raw.listen.span()),
            "listen",
            "is not an address and port (127.0.0.1:8443, [::1]:8443, 0.0.0.0:8443)",
        )
    })?;
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(cert), Some(key)) => Some(Tls {
            cert: PathBuf::from(c.string(Some(cert), "tls_cert")?.unwrap_or_default()),
            key: PathBuf::from(c.string(Some(key), "tls_key")?.unwrap_or_default()),
        }),
        (Some(cert), None) => {
            return Err(c.error(
                Some(cert.span()),
                "tls_key",
                "tls_cert is given without tls_key",
            ))
        }
        (None, Some(key)) => {
            return Err(c.error(
                Some(key.span()),
                "tls_cert",
                "tls_key is given without tls_cert",
            ))
        }
        (None, None) => None,
    };
    if tls.is_none() && !listen.ip().is_loopback() {
        return Err(ServeError::PlainListen {
            listen: listen_text,
        }
        .into());
    }
    let sessions = c
        .number(raw.sessions, "sessions", 1..65)?
        .map_or(DEFAULT_SESSIONS, |n| n as usize);
    let request_timeout = c
        .number(raw.request_timeout, "request_timeout", 1..3601)?
        .map_or(DEFAULT_TIMEOUT_SECS, |n| n as u64);
    let seconds = |v: Option<Spanned<i64>>, key: &str, default: u64| -> Result<Duration> {
        Ok(Duration::from_secs(
            c.number(v, key, 1..3601)?.map_or(default, |n| n as u64),
        ))
    };
    let header_timeout = seconds(
        raw.header_timeout,
        "header_timeout",
        DEFAULT_HEADER_TIMEOUT_SECS,
    )?;
    let body_timeout = seconds(raw.body_timeout, "body_timeout", DEFAULT_BODY_TIMEOUT_SECS)?;
    let refusal_window = seconds(
        raw.refusal_window,
        "refusal_window",
        DEFAULT_REFUSAL_WINDOW_SECS,
    )?;
    let refusal_sources_per_window = c
        .number(
            raw.refusal_sources_per_window,
            "refusal_sources_per_window",
            1..10_001,
        )?
        .map_or(DEFAULT_REFUSAL_SOURCES, |n| n as usize);
    let body_limit = c
        .number(raw.body_limit, "body_limit", 1024..(64 * 1024 * 1024 + 1))?
        .map_or(DEFAULT_BODY_LIMIT, |n| n as usize);
    let max_bodies = c
        .number(raw.max_bodies, "max_bodies", 1..10_001)?
        .map_or(DEFAULT_MAX_BODIES, |n| n as usize);
    let auth_failures_per_minute = c
        .number(
            raw.auth_failures_per_minute,
            "auth_failures_per_minute",
            1..100_001,
        )?
        .map_or(DEFAULT_AUTH_FAILURES, |n| n as u32);
    let mut proxies = Vec::new();
    for p in raw.proxies.map(Spanned::into_inner).unwrap_or_default() {
        let ip = p.get_ref().trim().parse::<IpAddr>().map_err(|_| {
            c.error(
                Some(p.span()),
                "proxies",
                "is not an IP address (10.0.0.5, fd00::5)",
            )
        })?;
        proxies.push(ip);
    }
    let piiano = match raw.piiano {
        Some(p) => Some(Piiano {
            export_key: c
                .string(Some(p.export_key), "piiano.export_key")?
                .unwrap_or_default(),
            export_kek: c
                .string(Some(p.export_kek), "piiano.export_kek")?
                .unwrap_or_default(),
        }),
        None => None,
    };
    let storedsafe = match raw.storedsafe {
        Some(s) => {
            let span = s.vaults.span();
            let mut vaults = Vec::new();
            for v in s.vaults.into_inner() {
                let id = c.string(Some(v), "storedsafe.vaults")?.unwrap_or_default();
                vaults.push(id);
            }
            if vaults.is_empty() {
                return Err(c.error(Some(span), "storedsafe.vaults", "names no vault"));
            }
            Some(StoredSafe {
                vaults,
                kek: c.string(Some(s.kek), "storedsafe.kek")?.unwrap_or_default(),
            })
        }
        None => None,
    };
    let huawei = raw.huawei.map(|h| huawei(&c, h)).transpose()?;
    let clients = clients(&c, raw.clients)?;
    Ok(ServeConfig {
        path: path.to_path_buf(),
        listen,
        module: c.string(raw.module, "module")?,
        module_args: c.string(raw.module_args, "module_args")?,
        token: c.string(raw.token, "token")?,
        pin_source: match pin_source {
            PinSource::Env(v) => format!("env:{v}"),
            PinSource::File(p) => format!("file:{}", p.display()),
            _ => "empty".into(),
        },
        project_id: c.string(raw.project_id, "project_id")?,
        audit_log: c.string(raw.audit_log, "audit_log")?.map(PathBuf::from),
        sessions,
        tls,
        request_timeout: Duration::from_secs(request_timeout),
        header_timeout,
        body_timeout,
        refusal_window,
        refusal_sources_per_window,
        body_limit,
        max_bodies,
        auth_failures_per_minute,
        proxies,
        piiano,
        storedsafe,
        huawei,
        clients,
    })
}

fn huawei(c: &Checker<'_>, raw: RawHuawei) -> Result<Huawei> {
    let mut h = Huawei {
        csms_kek: c.string(raw.csms_kek, "huawei.csms_kek")?,
        ..Huawei::default()
    };
    if let Some(spec) = raw.wrapping_key_spec {
        h.wrapping_key_bits = crate::formats::import_params::key_spec_bits(spec.get_ref())
            .ok_or_else(|| {
                c.error(
                    Some(spec.span()),
                    "huawei.wrapping_key_spec",
                    "is not RSA_2048, RSA_3072 or RSA_4096",
                )
            })?;
    }
    if let Some(valid) = raw.params_valid_for {
        h.params_valid_for = crate::formats::import_params::parse_duration(valid.get_ref())
            .map_err(|reason| c.error(Some(valid.span()), "huawei.params_valid_for", reason))?;
    }
    if let Some(policy) = raw.import_backup_policy {
        h.import_backup_policy = policy.get_ref().parse().map_err(|_| {
            c.error(
                Some(policy.span()),
                "huawei.import_backup_policy",
                "is not none, trusted or any",
            )
        })?;
    }
    Ok(h)
}

fn clients(c: &Checker<'_>, raw: Vec<RawClient>) -> Result<Vec<ClientConfig>> {
    let mut out: Vec<ClientConfig> = Vec::new();
    let mut names = BTreeMap::new();
    let mut hashes = BTreeSet::new();
    let mut access_keys = BTreeSet::new();
    for r in raw {
        if let Some(v) = r.secret_key.as_ref().or(r.api_key.as_ref()) {
            let key = if r.secret_key.is_some() {
                "clients.secret_key"
            } else {
                "clients.api_key"
            };
            return Err(c.inline(v.span(), key));
        }
        let name_span = r.name.span();
        let name = c.string(Some(r.name), "clients.name")?.unwrap_or_default();
        if names.insert(name.clone(), ()).is_some() {
            return Err(c.error(
                Some(name_span),
                "clients.name",
                format!("'{name}' names two clients"),
            ));
        }
        let hash_span = r.api_key_sha256.span();
        let hash = parse_sha256(r.api_key_sha256.get_ref()).ok_or_else(|| {
            c.error(
                Some(hash_span.clone()),
                "clients.api_key_sha256",
                "is not a SHA-256 in hex (64 digits): write `printf %s \"$KEY\" | sha256sum`, never the key",
            )
        })?;
        if !hashes.insert(hash) {
            return Err(c.error(
                Some(hash_span),
                "clients.api_key_sha256",
                "two clients have the same API key",
            ));
        }
        let access_key = match r.access_key {
            Some(ak) => {
                let span = ak.span();
                let ak = c
                    .string(Some(ak), "clients.access_key")?
                    .unwrap_or_default();
                if !access_keys.insert(ak.clone()) {
                    return Err(c.error(
                        Some(span),
                        "clients.access_key",
                        "two clients have the same access key",
                    ));
                }
                Some(ak)
            }
            None => None,
        };
        let secret_key = match &r.secret_key_source {
            Some(src) => {
                let source = c.source(src, "clients.secret_key_source", false)?;
                Some(read_secret(&source).map_err(|reason| {
                    c.error(Some(src.span()), "clients.secret_key_source", reason)
                })?)
            }
            None => None,
        };
        if secret_key.is_some() != access_key.is_some() {
            return Err(c.error(
                Some(name_span),
                "clients.access_key",
                format!("client '{name}': access_key and secret_key_source go together"),
            ));
        }
        let mut capabilities = BTreeSet::new();
        for cap in r.capabilities.map(Spanned::into_inner).unwrap_or_default() {
            let parsed = cap
                .get_ref()
                .parse::<Capability>()
                .map_err(|reason| c.error(Some(cap.span()), "clients.capabilities", reason))?;
            capabilities.insert(parsed);
        }
        out.push(ClientConfig {
            name,
            api_key_sha256: hash,
            access_key,
            secret_key,
            capabilities,
        });
    }
    Ok(out)
}

/// The secret behind env:VAR or file:PATH (its first line), read at start.
fn read_secret(source: &PinSource) -> std::result::Result<SecretString, String> {
    match source {
        PinSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
            _ => Err(format!("the environment variable {var} is not set")),
        },
        PinSource::File(path) => {
            let bytes =
                crate::input::read_bounded(path, crate::input::limits::DOCUMENT, "secret key file")
                    .map_err(|e| e.to_string())?;
            let text =
                String::from_utf8(bytes).map_err(|_| format!("{} is not text", path.display()))?;
            let line = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_end_matches('\r')
                .to_string();
            if line.is_empty() {
                return Err(format!("{} is empty", path.display()));
            }
            Ok(SecretString::from(line))
        }
        _ => Err("not a secret source".into()),
    }
}

fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The key a TOML reader's message is about: `unknown field `x`` or
/// `missing field `x``, else the key written on the line it points at,
/// else "(file)".
fn key_of(message: &str, text: &str, span: Option<Range<usize>>) -> String {
    if message.contains("field `") {
        if let Some(key) = message.split('`').nth(1) {
            return key.to_string();
        }
    }
    let Some(span) = span else {
        return "(file)".into();
    };
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => key.trim().to_string(),
        _ => "(file)".into(),
    }
}

#[cfg(test)]
mod tests;
