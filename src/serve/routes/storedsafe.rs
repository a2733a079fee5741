//! StoredSafe's transparent key backup and restore, header `X-Http-Token`:
//!
//! - `GET /api/1.0/transparent/backup/{vaultid}/{name}` (CapKeyBackup): the
//!   key `name` with all its versions, as one blob string (`hsmkey backup
//!   --format blob`: a bundle protected by `[storedsafe] kek`, wrapped in
//!   the token, MACed in the token), only if the key's backup policy allows
//!   it (else 409).
//! - `POST /api/1.0/transparent/restore/{vaultid}/{name}` with `{"backup":
//!   "<that string>"}` (CapKeyRestore): restored all-or-nothing under the
//!   same KEK, KCVs checked; the bundle must hold `name`.
//!
//! `vaultid` must be one of `[storedsafe] vaults` (else 404); keys are found
//! by label. Answers carry StoredSafe's `CALLINFO`; a failure has `status
//! "FAIL"`, `ERRORS` and `ERRORCODES`, and a 4xx/5xx status.
//! `CALLINFO.token` is always empty: StoredSafe puts a rotated session
//! token there, hsmkey has only the client's API key, and an answer (a
//! backup, kept as a file) must not carry that secret.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{Error, ServeError};
use crate::formats::bundle;
use crate::hsm::keys::KeySelector;
use crate::ops::backup::{Input, Protect, Selection, Unprotect};
use crate::serve::config::StoredSafe;
use crate::serve::{json_body, status_of, AppState, Call, Capability, KeyHeader};

const HEADER: KeyHeader = KeyHeader::Header("x-http-token");

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(backup_key))
        .routes(routes!(restore_key))
}

/// StoredSafe's call information, on every answer.
#[derive(Serialize, ToSchema)]
pub struct CallInfo {
    pub errorcodes: u32,
    pub errors: u32,
    pub general: Vec<String>,
    pub handler: &'static str,
    /// "SUCCESS" or "FAIL".
    pub status: &'static str,
    /// Always empty. StoredSafe answers a rotated session token here;
    /// hsmkey has no sessions, and does not echo the API key
    /// (docs/SERVER.md): the client keeps using its key.
    pub token: String,
    pub version: &'static str,
    /// The key name asked for.
    pub objectid: String,
}

#[derive(Serialize, ToSchema)]
pub struct BackupEntry {
    /// The key with all its versions, as a blob string restore takes back.
    pub backup: String,
}

#[derive(Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct BackupAnswer {
    pub CALLINFO: CallInfo,
    pub KEYS: Vec<BackupEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct RestoredKey {
    pub label: String,
    pub kcv: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct RestoreAnswer {
    pub CALLINFO: CallInfo,
    pub KEYS: Vec<RestoredKey>,
}

#[derive(Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct FailAnswer {
    pub CALLINFO: CallInfo,
    /// What went wrong.
    pub ERRORS: Vec<String>,
    /// hsmkey's error codes (docs/ERRORS.md).
    pub ERRORCODES: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct RestoreBody {
    /// A string from the backup route.
    pub backup: String,
}

fn call_info(status: &'static str, objectid: String, failed: bool) -> CallInfo {
    CallInfo {
        errorcodes: u32::from(failed),
        errors: u32::from(failed),
        general: Vec::new(),
        handler: "transparent",
        status,
        token: String::new(),
        version: "1.0",
        objectid,
    }
}

pub fn shape(status: StatusCode, e: &Error) -> Response {
    fail(status, e, String::new())
}

fn fail(status: StatusCode, e: &Error, objectid: String) -> Response {
    let body = FailAnswer {
        CALLINFO: call_info("FAIL", objectid, true),
        ERRORS: vec![e.to_string()],
        ERRORCODES: vec![e.code().to_string()],
    };
    (status, Json(body)).into_response()
}

/// The request's key name, for the answer's CALLINFO.
struct Ask {
    name: String,
}

impl Ask {
    fn new(name: &str) -> Ask {
        Ask {
            name: name.to_string(),
        }
    }

    fn refuse(&self, call: &Call, e: Error) -> Response {
        call.failed(&e);
        fail(status_of(&e), &e, self.name.clone())
    }
}

/// The configuration, if it serves `vaultid`.
fn served(call: &Call, vaultid: &str) -> Result<StoredSafe, Error> {
    match &call.state.config().storedsafe {
        Some(s) if s.vaults.iter().any(|v| v == vaultid) => Ok(s.clone()),
        Some(_) => Err(ServeError::NotServed {
            what: format!("vault {vaultid}"),
        }
        .into()),
        None => Err(ServeError::NotServed {
            what: "transparent backup ([storedsafe] is not in the server configuration)".into(),
        }
        .into()),
    }
}

/// The key and all its versions, as a blob under the configured KEK.
#[utoipa::path(get, path = "/api/1.0/transparent/backup/{vaultid}/{name}", tag = "storedsafe",
    params(("vaultid" = String, Path), ("name" = String, Path, description = "Key name (label)")),
    security(("x_http_token" = [])),
    responses((status = 200, body = BackupAnswer), (status = 401, body = FailAnswer), (status = 403, body = FailAnswer),
        (status = 404, body = FailAnswer), (status = 409, body = FailAnswer), (status = 503, body = FailAnswer)))]
async fn backup_key(call: Call, Path((vaultid, name)): Path<(String, String)>) -> Response {
    call.op("serve storedsafe backup");
    let ask = Ask::new(&name);
    if let Err(e) = call.authorize(HEADER, Capability::KeyBackup) {
        return ask.refuse(&call, e);
    }
    let cfg = match served(&call, &vaultid) {
        Ok(c) => c,
        Err(e) => return ask.refuse(&call, e),
    };
    let selectors =
        KeySelector::parse(&name).and_then(|k| KeySelector::parse(&cfg.kek).map(|kek| (k, kek)));
    let (key, kek) = match selectors {
        Ok(s) => s,
        Err(e) => return ask.refuse(&call, e),
    };
    call.note(|f| {
        f.asked([key.shown.clone()]);
        f.protection = Some(crate::audit::Protection::Kek {
            label: kek.shown.clone(),
            kcv: None,
        });
    });
    let made = call
        .backup(Protect::Kek(Box::new(kek)), Selection::Named(vec![key]))
        .await
        .map(|(out, facts)| (bundle::encode_blob(&out), facts));
    let (blob, facts) = match made {
        Ok(m) => m,
        Err(e) => return ask.refuse(&call, e),
    };
    call.note(|f| {
        f.keys = crate::audit::Keys::Listed(facts.keys);
        f.protection = Some(facts.protection);
        f.output_bytes("response", blob.as_bytes());
    });
    Json(BackupAnswer {
        CALLINFO: call_info("SUCCESS", name, false),
        KEYS: vec![BackupEntry { backup: blob }],
    })
    .into_response()
}

/// Restore a backup string: all-or-nothing, under the configured KEK.
#[utoipa::path(post, path = "/api/1.0/transparent/restore/{vaultid}/{name}", tag = "storedsafe",
    params(("vaultid" = String, Path), ("name" = String, Path, description = "Key name the backup holds")),
    request_body = RestoreBody,
    security(("x_http_token" = [])),
    responses((status = 200, body = RestoreAnswer), (status = 400, body = FailAnswer), (status = 401, body = FailAnswer),
        (status = 403, body = FailAnswer), (status = 404, body = FailAnswer), (status = 409, body = FailAnswer),
        (status = 413, body = FailAnswer), (status = 503, body = FailAnswer)))]
async fn restore_key(
    call: Call,
    Path((vaultid, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call.op("serve storedsafe restore");
    let ask = Ask::new(&name);
    if let Err(e) = call.authorize(HEADER, Capability::KeyRestore) {
        return ask.refuse(&call, e);
    }
    let cfg = match served(&call, &vaultid) {
        Ok(c) => c,
        Err(e) => return ask.refuse(&call, e),
    };
    let parsed = json_body::<RestoreBody>(body).and_then(|b| {
        let bytes = bundle::decode_blob(&b.backup)?;
        Ok((b.backup, bytes))
    });
    let opened = parsed.and_then(|p| KeySelector::parse(&cfg.kek).map(|k| (p, k)));
    let ((sent, bundle_bytes), kek) = match opened {
        Ok(o) => o,
        Err(e) => return ask.refuse(&call, e),
    };
    let input = Input::Bytes(bundle_bytes);
    let facts = crate::audit::bundle::read(&input).ok();
    call.note(|f| {
        f.inputs.push(crate::audit::FileRef {
            path: "request".into(),
            sha256: crate::audit::line::sha256_hex(sent.as_bytes()),
        });
        if let Some(b) = &facts {
            f.protection = Some(b.protection.clone());
            f.keys = crate::audit::Keys::Listed(b.keys.clone());
        }
    });
    let only = vec![name.clone()];
    let restored = call
        .restore(
            "serve storedsafe restore",
            input,
            Unprotect::Kek(Box::new(kek)),
            only,
        )
        .await;
    let report = match restored {
        Ok(r) => r,
        Err(e) => return ask.refuse(&call, e),
    };
    if facts.is_some() {
        call.note(|f| f.keys = crate::audit::Keys::Reported(report.entries.clone()));
    }
    Json(RestoreAnswer {
        CALLINFO: call_info("SUCCESS", name, false),
        KEYS: report
            .entries
            .to_vec()
            .unwrap_or_default()
            .iter()
            .map(|e| RestoredKey {
                label: e.label.clone(),
                kcv: e.kcv.clone(),
            })
            .collect(),
    })
    .into_response()
}
