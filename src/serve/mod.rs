//! `hsmkey serve` (docs/SERVER.md): the reference systems' REST APIs served
//! from the token, each client limited to its capabilities, every request
//! in the audit log. tokio + axum; TLS through rustls; token work on the
//! blocking pool over a pool of logged-in sessions.
//!
//! | File | Owns |
//! |---|---|
//! | `config.rs` | The configuration file, checked key by key. |
//! | `access.rs` | Clients, API keys, capabilities, the failed-login limit. |
//! | `pool.rs` | The logged-in sessions token work runs on. |
//! | `refusals.rs` | Requests refused without a client, one line per source per window. |
//! | `deadline.rs` | The deadline of a request's body (`body_timeout`). |
//! | `state.rs` | `AppState` and `Call`: what route families build on. |
//! | `server.rs` | The router, the layers (audit, metrics, limits), TLS, shutdown. |
//! | `metrics.rs` | `/metrics`: OpenMetrics text through `prometheus-client`. |
//! | `routes/` | One file per route family (`routes()` each). |
//!
//! Like `ops`, this layer never names cryptoki: token work goes through
//! `ops` and `hsm` on a [`crate::hsm::Token`].

pub mod access;
pub mod config;
pub mod deadline;
pub mod metrics;
pub mod pool;
pub mod refusals;
pub mod routes;
pub mod server;
pub mod state;

use axum::http::StatusCode;

use crate::error::{Error, ServeError};

pub use access::{Capability, Client, KeyHeader};
pub use state::{AppState, Call};

/// The HTTP status an error is answered with, whatever the family's body
/// shape: credentials 401, capability 403, throttling 429; a body sent too
/// slowly 408; keys not found
/// 404; conflicts 409; expired 410; bad input 400 (413 for a body over
/// `body_limit`); what the token or a key's policy cannot do 409 / 501;
/// the token failing or the server stopping 503; anything else 500.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Serve(s) => match **s {
            ServeError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ServeError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ServeError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServeError::TimedOut { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::SlowBody { .. } => StatusCode::REQUEST_TIMEOUT,
            ServeError::NotServed { .. } => StatusCode::NOT_FOUND,
            ServeError::Config { .. }
            | ServeError::InlineSecret { .. }
            | ServeError::PlainListen { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        },
        Error::KeyNotFound { .. } => StatusCode::NOT_FOUND,
        Error::Ambiguous { .. }
        | Error::MalformedUri { .. }
        | Error::Usage { .. }
        | Error::BadInput { .. }
        | Error::BundleCorrupt { .. }
        | Error::UnsupportedFormat { .. }
        | Error::BadPassword { .. }
        | Error::ImportTokenInvalid { .. }
        | Error::WrongUnwrapKey { .. } => StatusCode::BAD_REQUEST,
        Error::Expired { .. } => StatusCode::GONE,
        Error::AlreadyExists { .. }
        | Error::ImportTokenUsed { .. }
        | Error::Busy { .. }
        | Error::ConcurrentCreate { .. }
        | Error::PolicyRefused { .. }
        | Error::Incomplete { .. }
        | Error::TargetRule { .. }
        | Error::SoLoginRequired { .. } => StatusCode::CONFLICT,
        Error::NotCapable { .. } => StatusCode::NOT_IMPLEMENTED,
        Error::TokenNotFound { .. }
        | Error::PinIncorrect { .. }
        | Error::PinLocked { .. }
        | Error::PinUnavailable { .. }
        | Error::UserPinNotInitialized { .. }
        | Error::Pkcs11 { .. }
        | Error::Interrupted { .. }
        | Error::AuditUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a route family answers for errors no handler of its own saw (an
/// unknown path under its prefix, a method it does not take), in its shape.
pub type Shape = fn(StatusCode, &Error) -> axum::response::Response;

/// The body of a request as JSON of type `T`: a body over `body_limit` is
/// HK1309 (413), anything unreadable HK1301 (400).
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> crate::Result<T> {
    let bytes = body.map_err(|e| -> Error {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServeError::BodyTooLarge {
                reason: e.body_text(),
            }
            .into()
        } else {
            Error::BadInput {
                what: "request body".into(),
                reason: e.body_text(),
            }
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::BadInput {
        what: "request body".into(),
        reason: body_error(&e),
    })
}

/// What was wrong with a JSON body, without the values it held: serde's
/// "invalid type: string \"...\"" quotes the value, which may be a
/// password, and the message goes to the client and into the audit line.
pub fn body_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let kept = crate::config::without_value(&message);
    if kept == message.trim() || kept.contains(" at line ") {
        kept
    } else {
        format!("{kept} at line {} column {}", e.line(), e.column())
    }
}

#[cfg(test)]
mod tests;
