//! hsmkey's own routes: key metadata (`GET /api/v1/keys`, `GET
//! /api/v1/keys/{name}`, CapKeyReader) and key making (`POST /api/v1/keys`,
//! `POST /api/v1/keys/{name}/rotate`, CapKeyAdmin). `Authorization: Bearer
//! <api key>`. Keys are described as `hsmkey key show --json` does: labels,
//! ids, types, usages, policies and KCVs, never a value. Errors are
//! `{"error_code", "message", "context"}` as the command line's `--json`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::Error;
use crate::hsm::keys::{BackupPolicy, GenerateSpec, KeyInfo, KeySelector, KeySpec, Usage};
use crate::ops;
use crate::serve::{json_body, status_of, AppState, Call, Capability, KeyHeader};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(show_key))
        .routes(routes!(rotate_key))
}

/// The error body of hsmkey's own routes (and of paths no family owns).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error code (docs/ERRORS.md).
    pub error_code: String,
    pub message: String,
    pub context: BTreeMap<String, String>,
}

pub fn shape(status: StatusCode, e: &Error) -> Response {
    let body = ErrorBody {
        error_code: e.code().to_string(),
        message: e.to_string(),
        context: e
            .context()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    };
    (status, Json(body)).into_response()
}

fn refuse(call: &Call, e: Error) -> Response {
    call.failed(&e);
    shape(status_of(&e), &e)
}

/// Keys as `hsmkey key show --json` lists them.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<KeyInfo>,
}

/// A key to make, as `hsmkey key generate` takes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The key's name (label of version 1).
    pub name: String,
    /// aes-128, aes-256, generic-256, rsa-2048, ec-p256, ... (docs/KEYS.md).
    #[serde(rename = "type")]
    pub key_type: String,
    /// Usage flags, comma-separated (default by type).
    pub usage: Option<String>,
    /// none (default), trusted or any.
    pub backup_policy: Option<String>,
    /// An AES-256 KEK (wrap/unwrap only).
    #[serde(default)]
    pub kek: bool,
}

async fn describe(call: &Call, selector: KeySelector) -> Result<Vec<KeyInfo>, Error> {
    call.note(|f| f.asked([selector.shown.clone()]));
    let keys = call
        .run_token(move |token| ops::keys::show(token, &selector))
        .await?;
    call.note(|f| f.keys(&keys));
    Ok(keys)
}

/// Every key on the token (metadata only).
#[utoipa::path(get, path = "/api/v1/keys", tag = "hsmkey",
    security(("bearer" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_keys(call: Call) -> Response {
    call.op("serve key list");
    if let Err(e) = call.authorize(KeyHeader::Bearer, Capability::KeyReader) {
        return refuse(&call, e);
    }
    match call
        .run_token(|token| ops::keys::list(token, &KeySelector::all()))
        .await
    {
        Ok(keys) => Json(KeyList { keys }).into_response(),
        Err(e) => refuse(&call, e),
    }
}

/// One key, every version (metadata only).
#[utoipa::path(get, path = "/api/v1/keys/{name}", tag = "hsmkey",
    params(("name" = String, Path, description = "Key name, NAME@vN, or a pkcs11: URI")),
    security(("bearer" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_key(call: Call, Path(name): Path<String>) -> Response {
    call.op("serve key show");
    if let Err(e) = call.authorize(KeyHeader::Bearer, Capability::KeyReader) {
        return refuse(&call, e);
    }
    let result = match KeySelector::parse(&name) {
        Ok(selector) => describe(&call, selector).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(keys) => Json(KeyList { keys }).into_response(),
        Err(e) => refuse(&call, e),
    }
}

/// Make a key (version 1) in the token.
#[utoipa::path(post, path = "/api/v1/keys", tag = "hsmkey",
    request_body = NewKey,
    security(("bearer" = [])),
    responses((status = 201, body = KeyList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_key(call: Call, body: Result<Bytes, BytesRejection>) -> Response {
    call.op("serve key generate");
    if let Err(e) = call.authorize(KeyHeader::Bearer, Capability::KeyAdmin) {
        return refuse(&call, e);
    }
    let spec = match json_body::<NewKey>(body).and_then(generate_spec) {
        Ok(s) => s,
        Err(e) => return refuse(&call, e),
    };
    call.note(|f| f.asked([spec.name.clone()]));
    let made = call
        .run_locked("serve key generate", move |token| {
            let mut spec = spec;
            if spec.id.is_empty() {
                spec.id = ops::keys::random_id(token)?;
            }
            ops::keys::generate(token, &spec)
        })
        .await;
    match made {
        Ok(keys) => {
            call.note(|f| f.keys(&keys));
            (StatusCode::CREATED, Json(KeyList { keys })).into_response()
        }
        Err(e) => refuse(&call, e),
    }
}

fn generate_spec(k: NewKey) -> crate::Result<GenerateSpec> {
    let spec: KeySpec = k.key_type.parse()?;
    let policy: BackupPolicy = k.backup_policy.as_deref().unwrap_or("none").parse()?;
    let usage = k.usage.as_deref().map(str::parse::<Usage>).transpose()?;
    let request = GenerateSpec {
        name: k.name,
        id: Vec::new(),
        spec,
        usage,
        policy,
        kek: k.kek,
        trusted: false,
        version: 1,
    };
    crate::hsm::keys::effective_usage(&request)?;
    Ok(request)
}

/// Make the next version of a key (same type, usage and policy).
#[utoipa::path(post, path = "/api/v1/keys/{name}/rotate", tag = "hsmkey",
    params(("name" = String, Path, description = "Key name")),
    security(("bearer" = [])),
    responses((status = 201, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rotate_key(call: Call, Path(name): Path<String>) -> Response {
    call.op("serve key rotate");
    if let Err(e) = call.authorize(KeyHeader::Bearer, Capability::KeyAdmin) {
        return refuse(&call, e);
    }
    let selector = match KeySelector::parse(&name) {
        Ok(s) => s,
        Err(e) => return refuse(&call, e),
    };
    call.note(|f| f.asked([selector.shown.clone()]));
    match call
        .run_locked("serve key rotate", move |token| {
            ops::keys::rotate(token, &selector)
        })
        .await
    {
        Ok(keys) => {
            call.note(|f| f.keys(&keys));
            (StatusCode::CREATED, Json(KeyList { keys })).into_response()
        }
        Err(e) => refuse(&call, e),
    }
}
