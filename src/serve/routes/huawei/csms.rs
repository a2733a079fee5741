//! Huawei CSMS secret backup and restore, path for path:
//!
//! - `POST /v1/{project_id}/secrets/{secret_name}/backup` (CapKeyBackup):
//!   `{"secret_blob": "..."}`, the key labelled `secret_name` with all its
//!   versions as one blob string (`hsmkey backup --format blob`: a bundle
//!   under `[huawei] csms_kek`, wrapped and MACed in the token), only if the
//!   key's backup policy allows it.
//! - `POST /v1/{project_id}/secrets/restore` with `{"secret_blob"}`
//!   (CapKeyRestore): restored all-or-nothing under the same KEK, KCVs
//!   checked; answers `{"secret": {...}}` as CSMS does.
//!
//! Authentication as for KMS (`auth.rs`). Errors: `{"error_code",
//! "error_msg"}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::Path;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::{self, Family, Received};
use crate::error::{Error, ServeError};
use crate::formats::bundle;
use crate::hsm::keys::KeySelector;
use crate::ops::backup::{Input, Protect, Selection, Unprotect};
use crate::serve::{json_body, status_of, AppState, Call, Capability};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(backup_secret))
        .routes(routes!(restore_secret))
}

/// Huawei CSMS's error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorAnswer {
    /// Huawei's code (`CSMS.0005`, `APIGW.0301`, ...) or hsmkey's (`HK1202`).
    pub error_code: String,
    pub error_msg: String,
}

pub fn shape(status: StatusCode, e: &Error) -> Response {
    let body = ErrorAnswer {
        error_code: auth::code(e, Family::Csms),
        error_msg: auth::message(e),
    };
    (status, Json(body)).into_response()
}

fn refuse(call: &Call, e: Error) -> Response {
    call.failed(&e);
    shape(status_of(&e), &e)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct BlobBody {
    /// `hsmkey-blob-v1:` and base64url of a bundle (docs/FORMAT.md, "The blob").
    pub secret_blob: String,
}

/// The restored secret, in CSMS's shape.
#[derive(Serialize, ToSchema)]
pub struct Secret {
    /// The key's name (its label).
    pub id: String,
    pub name: String,
    /// Always `ENABLED`.
    pub state: &'static str,
    /// The label of the KEK the blob was protected with.
    pub kms_key_id: String,
    pub description: String,
    pub create_time: i64,
    pub update_time: i64,
    pub scheduled_delete_time: Option<i64>,
    /// Always `COMMON`.
    pub secret_type: &'static str,
    pub auto_rotation: bool,
}

/// One key object restored (hsmkey's addition; Huawei clients ignore it).
#[derive(Serialize, ToSchema)]
pub struct RestoredKey {
    pub label: String,
    pub kcv: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RestoreAnswer {
    pub secret: Secret,
    pub keys: Vec<RestoredKey>,
}

/// Authenticate for `capability` and check the project; the body's bytes
/// are signed, so they are read first (a body that cannot be read is
/// refused before).
fn admit(
    call: &Call,
    received: (&Method, &Uri, &HeaderMap),
    project_id: &str,
    body: Result<Bytes, BytesRejection>,
    capability: Capability,
) -> Result<Bytes, Error> {
    let bytes = match body {
        Ok(b) => b,
        Err(rejection) => {
            return Err(json_body::<serde::de::IgnoredAny>(Err(rejection))
                .err()
                .unwrap_or_else(|| Error::Internal("a rejected body was read".into())))
        }
    };
    let (method, uri, headers) = received;
    auth::authenticate(
        call,
        &Received {
            method,
            uri,
            headers,
            body: &bytes,
        },
        capability,
    )?;
    auth::served_project(call, project_id)?;
    Ok(bytes)
}

/// The KEK CSMS blobs are made under.
fn csms_kek(call: &Call) -> Result<KeySelector, Error> {
    match call
        .state
        .config()
        .huawei
        .as_ref()
        .and_then(|h| h.csms_kek.clone())
    {
        Some(kek) => KeySelector::parse(&kek),
        None => Err(ServeError::NotServed {
            what: "CSMS backups ([huawei] csms_kek is not in the server configuration)".into(),
        }
        .into()),
    }
}

/// The secret (key) and all its versions, as a blob under the CSMS KEK.
#[utoipa::path(post, path = "/v1/{project_id}/secrets/{secret_name}/backup", tag = "huawei-csms",
    security(("x_auth_token" = []), ("huawei_aksk" = [])),
    params(("project_id" = String, Path), ("secret_name" = String, Path, description = "Key name (label)")),
    responses((status = 200, body = BlobBody), (status = 401, body = ErrorAnswer), (status = 403, body = ErrorAnswer),
        (status = 404, body = ErrorAnswer), (status = 409, body = ErrorAnswer), (status = 503, body = ErrorAnswer)))]
async fn backup_secret(
    call: Call,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((project_id, secret_name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call.op("serve huawei csms backup");
    let admitted = admit(
        &call,
        (&method, &uri, &headers),
        &project_id,
        body,
        Capability::KeyBackup,
    )
    .and_then(|_| Ok((KeySelector::parse(&secret_name)?, csms_kek(&call)?)));
    let (key, kek) = match admitted {
        Ok(k) => k,
        Err(e) => return refuse(&call, e),
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
    match made {
        Ok((blob, facts)) => {
            let answer = BlobBody { secret_blob: blob };
            let printed = serde_json::to_vec(&answer).unwrap_or_default();
            call.note(|f| {
                f.keys = crate::audit::Keys::Listed(facts.keys);
                f.protection = Some(facts.protection);
                f.output_bytes("response", &printed);
            });
            Json(answer).into_response()
        }
        Err(e) => refuse(&call, e),
    }
}

/// Restore a secret blob: every key in it, all-or-nothing, under the CSMS KEK.
#[utoipa::path(post, path = "/v1/{project_id}/secrets/restore", tag = "huawei-csms",
    security(("x_auth_token" = []), ("huawei_aksk" = [])),
    params(("project_id" = String, Path)),
    request_body = BlobBody,
    responses((status = 200, body = RestoreAnswer), (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer), (status = 409, body = ErrorAnswer),
        (status = 413, body = ErrorAnswer), (status = 503, body = ErrorAnswer)))]
async fn restore_secret(
    call: Call,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(project_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call.op("serve huawei csms restore");
    let admitted = admit(
        &call,
        (&method, &uri, &headers),
        &project_id,
        body,
        Capability::KeyRestore,
    )
    .and_then(|bytes| {
        let ask: BlobBody = serde_json::from_slice(&bytes).map_err(|e| Error::BadInput {
            what: "request body".into(),
            reason: crate::serve::body_error(&e),
        })?;
        let blob = bundle::decode_blob(&ask.secret_blob)?;
        Ok((bytes, blob, csms_kek(&call)?))
    });
    let (request_bytes, blob, kek) = match admitted {
        Ok(a) => a,
        Err(e) => return refuse(&call, e),
    };
    let input = Input::Bytes(blob);
    let facts = crate::audit::bundle::read(&input).ok();
    let kek_label = kek.shown.clone();
    call.note(|f| {
        f.output_bytes("request", &request_bytes);
        f.inputs = std::mem::take(&mut f.outputs);
        if let Some(b) = &facts {
            f.protection = Some(b.protection.clone());
            f.keys = crate::audit::Keys::Listed(b.keys.clone());
        }
    });
    let restored = call
        .restore(
            "serve huawei csms restore",
            input,
            Unprotect::Kek(Box::new(kek)),
            Vec::new(),
        )
        .await;
    let report = match restored {
        Ok(r) => r,
        Err(e) => return refuse(&call, e),
    };
    if facts.is_some() {
        call.note(|f| f.keys = crate::audit::Keys::Reported(report.entries.clone()));
    }
    let name = report
        .entries
        .first(1)
        .unwrap_or_default()
        .first()
        .map(|e| e.label.clone())
        .unwrap_or_default();
    let now = jiff::Timestamp::now().as_second();
    Json(RestoreAnswer {
        secret: Secret {
            id: name.clone(),
            name,
            state: "ENABLED",
            kms_key_id: kek_label,
            description: format!("restored by {}", crate::TOOL),
            create_time: now,
            update_time: now,
            scheduled_delete_time: None,
            secret_type: "COMMON",
            auto_rotation: false,
        },
        keys: report
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
