//! The errors of `hsmkey serve` (docs/SERVER.md): its configuration file
//! and the refusals it gives API clients. Codes follow their groups in
//! docs/ERRORS.md: HK101x configuration and what it serves, HK111x client
//! credentials, HK1309 a body too large, HK1310 a body too slow, HK1905 a request out of time.

use std::collections::BTreeMap;

use thiserror::Error;

use super::ExitClass;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServeError {
    /// HK1010: a key of the server configuration is wrong (unknown, missing,
    /// of the wrong type, or out of range).
    #[error("The server configuration {path} is not valid: {key}: {reason}")]
    Config {
        path: String,
        line: Option<usize>,
        key: String,
        reason: String,
    },
    /// HK1011: a PIN or secret key written into the configuration.
    #[error("The server configuration {path} holds a secret itself at {key}: only its source (env:VAR or file:PATH) may be written there.")]
    InlineSecret {
        path: String,
        line: Option<usize>,
        key: String,
    },
    /// HK1012: plain HTTP on an address other machines can reach.
    #[error("The server would listen on {listen} without TLS: plain HTTP is for loopback addresses only.")]
    PlainListen { listen: String },
    /// HK1109: no credentials, or credentials no client has (HTTP 401).
    #[error("The request's credentials are missing or belong to no client: {reason}")]
    Unauthenticated { reason: String },
    /// HK1110: a known client without the capability the route needs (HTTP 403).
    #[error("The client '{client}' does not have the capability {capability}.")]
    Forbidden { client: String, capability: String },
    /// HK1111: too many failed authentications from one address (HTTP 429).
    #[error("Too many failed authentications from {source_addr}: retry after {retry_after} s.")]
    Throttled {
        source_addr: String,
        retry_after: u64,
    },
    /// HK1309: a request body over `body_limit` (HTTP 413).
    #[error("The request body is too large: {reason}")]
    BodyTooLarge { reason: String },
    /// HK1013: a route whose configuration section is absent, or a vault
    /// the server does not serve (HTTP 404).
    #[error("Not served here: {what}")]
    NotServed { what: String },
    /// HK1905: the request ran past `request_timeout` (HTTP 503).
    #[error("The request did not finish within {seconds} s.")]
    TimedOut { seconds: u64 },
    /// HK1310: the request's body did not arrive within `body_timeout`
    /// (HTTP 408).
    #[error("The request's body did not arrive within {seconds} s.")]
    SlowBody { seconds: u64 },
}

impl ServeError {
    pub fn code(&self) -> &'static str {
        match self {
            ServeError::Config { .. } => "HK1010",
            ServeError::InlineSecret { .. } => "HK1011",
            ServeError::PlainListen { .. } => "HK1012",
            ServeError::Unauthenticated { .. } => "HK1109",
            ServeError::Forbidden { .. } => "HK1110",
            ServeError::Throttled { .. } => "HK1111",
            ServeError::TimedOut { .. } => "HK1905",
            ServeError::BodyTooLarge { .. } => "HK1309",
            ServeError::NotServed { .. } => "HK1013",
            ServeError::SlowBody { .. } => "HK1310",
        }
    }

    pub fn exit_class(&self) -> ExitClass {
        match self {
            ServeError::Config { .. }
            | ServeError::InlineSecret { .. }
            | ServeError::PlainListen { .. } => ExitClass::Usage,
            ServeError::Unauthenticated { .. }
            | ServeError::Forbidden { .. }
            | ServeError::Throttled { .. } => ExitClass::Auth,
            ServeError::TimedOut { .. } => ExitClass::Internal,
            ServeError::BodyTooLarge { .. } | ServeError::SlowBody { .. } => ExitClass::BadInput,
            ServeError::NotServed { .. } => ExitClass::NotFound,
        }
    }

    pub fn context(&self, ctx: &mut BTreeMap<&'static str, String>) {
        match self {
            ServeError::Config {
                path, line, key, ..
            }
            | ServeError::InlineSecret { path, line, key } => {
                ctx.insert("path", path.clone());
                ctx.insert("key", key.clone());
                if let Some(line) = line {
                    ctx.insert("line", line.to_string());
                }
            }
            ServeError::PlainListen { listen } => {
                ctx.insert("listen", listen.clone());
            }
            ServeError::Unauthenticated { .. } => {}
            ServeError::Forbidden { client, capability } => {
                ctx.insert("client", client.clone());
                ctx.insert("capability", capability.clone());
            }
            ServeError::Throttled {
                source_addr,
                retry_after,
            } => {
                ctx.insert("source", source_addr.clone());
                ctx.insert("retry_after", retry_after.to_string());
            }
            ServeError::TimedOut { seconds } | ServeError::SlowBody { seconds } => {
                ctx.insert("seconds", seconds.to_string());
            }
            ServeError::BodyTooLarge { .. } | ServeError::NotServed { .. } => {}
        }
    }

    pub fn hint(&self) -> String {
        match self {
            ServeError::Config { .. } => {
                "Fix the key on the line named above (docs/SERVER.md lists every key of the server configuration).".into()
            }
            ServeError::InlineSecret { .. } => {
                "Write where the secret comes from: env:VAR (a variable of the server's environment) or file:PATH (a 0600 file); then change the secret that was written in the file.".into()
            }
            ServeError::PlainListen { .. } => {
                "Give tls_cert and tls_key (PEM files), or listen on 127.0.0.1 / ::1 behind a TLS proxy.".into()
            }
            ServeError::Unauthenticated { .. } => {
                "Send the client's API key in the header its route family uses (docs/SERVER.md).".into()
            }
            ServeError::Forbidden { .. } => {
                "Add the capability to the client's capabilities in the server configuration, or use a client that has it.".into()
            }
            ServeError::Throttled { .. } => {
                "Wait the time given in Retry-After, then send correct credentials.".into()
            }
            ServeError::BodyTooLarge { .. } => {
                "Send a smaller body, or raise body_limit in the server configuration.".into()
            }
            ServeError::NotServed { .. } => {
                "Check the path against docs/SERVER.md and the sections of the server configuration.".into()
            }
            ServeError::TimedOut { .. } => {
                "The token was slow or busy: retry, or raise request_timeout or sessions in the server configuration.".into()
            }
            ServeError::SlowBody { .. } => {
                "Send the whole body at once, from a faster link, or raise body_timeout in the server configuration.".into()
            }
        }
    }
}
