//! What Huawei's two families share: who sent the request (`X-Auth-Token`
//! with an API key, or an `SDK-HMAC-SHA256` signature made with the
//! client's AK/SK, `sign.rs`), the `{project_id}` of the path, and
//! Huawei's error codes for hsmkey's errors.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri};

use super::sign;
use crate::error::{Error, Result, ServeError};
use crate::serve::{Call, Capability, Client, KeyHeader};
use secrecy::ExposeSecret;

/// The header Huawei's token-authenticated clients send; here it carries
/// an API key of the configuration.
pub const TOKEN_HEADER: KeyHeader = KeyHeader::Header("x-auth-token");

/// The request as signed: method, URI, headers and the body's bytes.
pub struct Received<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The client of the request, if it may use `capability`: by its API key in
/// `X-Auth-Token` when that header is sent, else by an AK/SK signature.
/// Unknown credentials, a bad or stale signature: HK1109 (401); a client
/// without the capability: HK1110 (403).
pub fn authenticate(
    call: &Call,
    req: &Received<'_>,
    capability: Capability,
) -> Result<Arc<Client>> {
    if req.headers.contains_key("x-auth-token") {
        return call.authorize(TOKEN_HEADER, capability);
    }
    let found = match req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        Some(value) if value.trim_start().starts_with(sign::ALGORITHM) => {
            signed_by(call, req, value, now())
        }
        _ => Err(format!(
            "no X-Auth-Token and no {} signature was sent",
            sign::ALGORITHM
        )),
    };
    match &found {
        Ok(client) => call.admit(Ok(client.clone()), capability),
        Err(reason) => call.admit(Err(reason.as_str()), capability),
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The client whose SK signed the request, or why there is none.
fn signed_by(
    call: &Call,
    req: &Received<'_>,
    value: &str,
    now: i64,
) -> std::result::Result<Arc<Client>, String> {
    let auth = sign::parse_authorization(value).map_err(|r| r.to_string())?;
    let client = call
        .state
        .access()
        .by_access_key(&auth.access_key)
        .ok_or("the access key is not known")?;
    let sk = client
        .secret_key
        .as_ref()
        .ok_or("the access key's client has no secret key")?;
    // HTTP/2 carries the host in the URI, not in a Host header.
    let authority = req.uri.authority().map(|a| a.as_str().as_bytes());
    let mut headers: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    if !req.headers.contains_key("host") {
        if let Some(a) = authority {
            headers.push(("host", a));
        }
    }
    let signed = sign::Request {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &headers,
        body: req.body,
    };
    sign::verify(&signed, &auth, sk.expose_secret().as_bytes(), now)
        .map_err(|r| format!("the {} signature: {r}", sign::ALGORITHM))?;
    Ok(client)
}

/// The path's `{project_id}` must be the configuration's (else 404).
pub fn served_project(call: &Call, project_id: &str) -> Result<()> {
    match &call.state.config().project_id {
        Some(p) if p == project_id => Ok(()),
        Some(_) => Err(ServeError::NotServed {
            what: format!("project {project_id}"),
        }
        .into()),
        None => Err(ServeError::NotServed {
            what: "Huawei routes (project_id is not in the server configuration)".into(),
        }
        .into()),
    }
}

/// The two families whose codes differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Kms,
    Csms,
}

/// Huawei's error code for `e`, where Huawei documents one that means the
/// same; else hsmkey's own code (docs/ERRORS.md). docs/SERVER.md lists them.
pub fn code(e: &Error, family: Family) -> String {
    let kms = family == Family::Kms;
    let huawei = match e {
        Error::Serve(s) => match **s {
            ServeError::Unauthenticated { .. } => Some("APIGW.0301"),
            ServeError::Forbidden { .. } => Some("APIGW.0302"),
            ServeError::Throttled { .. } => Some("APIGW.0308"),
            ServeError::NotServed { .. } => Some(if kms { "KMS.0201" } else { "CSMS.0003" }),
            ServeError::BodyTooLarge { .. } => Some(if kms { "KMS.0203" } else { "CSMS.0004" }),
            _ => None,
        },
        Error::BadInput { what, reason } => Some(match (family, what.as_str()) {
            (Family::Kms, "request body") if reason.contains("missing field") => "KMS.0204",
            (Family::Kms, "request body") => "KMS.0202",
            (Family::Kms, "key_id") => "KMS.0205",
            (Family::Kms, "sequence") => "KMS.0206",
            (Family::Kms, "key material") if reason.contains("did not unwrap") => "KMS.0311",
            (Family::Kms, _) => "KMS.0308",
            (Family::Csms, "request body") => "CSMS.0004",
            (Family::Csms, _) => "CSMS.0002",
        }),
        Error::ImportTokenInvalid { .. } | Error::Expired { .. } if kms => Some("KMS.0308"),
        Error::ImportTokenUsed { .. } if kms => Some("KMS.0310"),
        Error::AlreadyExists { .. } if kms => Some("KMS.0310"),
        Error::ConcurrentCreate { .. } if kms => Some("KMS.0310"),
        Error::KeyNotFound { .. } if !kms => Some("CSMS.0005"),
        Error::BundleCorrupt { .. } | Error::UnsupportedFormat { .. } if !kms => Some("CSMS.0002"),
        _ => None,
    };
    huawei.map_or_else(|| e.code().to_string(), str::to_string)
}

/// The message of an error answer: hsmkey's message and its code.
pub fn message(e: &Error) -> String {
    format!("{e} ({})", e.code())
}
