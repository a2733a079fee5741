//! Piiano Vault's "Get export key": `GET
//! /api/pvlt/1.0/system/admin/export_key`, `Authorization: Bearer <api
//! key>`, capability CapExportKeyReader. Answers `200 {"export_key":
//! "<base64>"}`: `[piiano] export_key` wrapped in the token under `[piiano]
//! export_kek` (AES key wrap, RFC 3394 or 5649, as `hsmkey export-key`).
//! Errors are Piiano's `{"error_code", "message", "context"}` with
//! Piiano's own `PV` codes where its reference documents one for the
//! status ([`piiano_code`]), hsmkey's code in `context.hsmkey_code`; a
//! 403's context names the client as `username`. The `custom_audit` query
//! parameter goes into the request's audit line.

use std::collections::{BTreeMap, HashMap};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::audit::Protection;
use crate::error::{Error, ServeError};
use crate::hsm::keys::KeySelector;
use crate::ops::import as imp;
use crate::serve::{status_of, AppState, Call, Capability, KeyHeader};

pub const PATH: &str = "/api/pvlt/1.0/system/admin/export_key";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_key))
}

#[derive(Serialize, ToSchema)]
pub struct ExportKeyBody {
    /// base64 of the export key wrapped under the export KEK.
    pub export_key: String,
}

/// Piiano's error body.
#[derive(Serialize, ToSchema)]
pub struct PiianoError {
    /// Piiano's code for the status (PV1005, PV1007, ...; docs/SERVER.md),
    /// or hsmkey's where Piiano documents none.
    pub error_code: String,
    pub message: String,
    /// Strings only, as Piiano's clients type it; `hsmkey_code` is always
    /// hsmkey's error code (docs/ERRORS.md).
    pub context: BTreeMap<String, String>,
}

/// The context member that carries hsmkey's own code.
pub const HSMKEY_CODE: &str = "hsmkey_code";

/// Piiano Vault's error code for an answer, from Piiano's reference: the
/// examples of "Get export key" (400 PV1001 is the access reason, which
/// this route never asks for), the shared responses of its OpenAPI
/// document, and its "REST API error codes" table. `None` where Piiano
/// documents no code for the status (405, 409, 410, 413, 429).
pub fn piiano_code(status: StatusCode, e: &Error) -> Option<&'static str> {
    let code = match status.as_u16() {
        // "The request could be invalid if it does not comply with the
        // OpenAPI specification."
        400 => "PV1012",
        401 => "PV1005",
        403 => "PV1007",
        404 => "PV1004",
        500 => "PV1000",
        501 => "PV2001",
        // PV1009 is the timeout; PV1010 "Vault can't connect to its
        // database": here the token, hsmkey's store.
        503 => match e {
            Error::Serve(s) if matches!(**s, ServeError::TimedOut { .. }) => "PV1009",
            Error::Interrupted { .. } => "PV1009",
            _ => "PV1010",
        },
        _ => return None,
    };
    Some(code)
}

pub fn shape(status: StatusCode, e: &Error) -> Response {
    let mut context: BTreeMap<String, String> = e
        .context()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if let Error::Serve(s) = e {
        if let ServeError::Forbidden { client, .. } = &**s {
            context.insert("username".into(), client.clone());
        }
    }
    context.insert(HSMKEY_CODE.into(), e.code().to_string());
    let body = PiianoError {
        error_code: piiano_code(status, e)
            .map(str::to_string)
            .unwrap_or_else(|| e.code().to_string()),
        message: e.to_string(),
        context,
    };
    (status, Json(body)).into_response()
}

fn refuse(call: &Call, e: Error) -> Response {
    call.failed(&e);
    shape(status_of(&e), &e)
}

/// The export key, wrapped in the token under the export KEK.
#[utoipa::path(get, path = "/api/pvlt/1.0/system/admin/export_key", tag = "piiano",
    params(
        ("custom_audit" = Option<String>, Query, description = "Recorded in the request's audit line"),
        ("reason" = Option<String>, Query, description = "Accepted as Piiano does; recorded with custom_audit"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ExportKeyBody),
        (status = 400, body = PiianoError), (status = 401, body = PiianoError),
        (status = 403, body = PiianoError), (status = 404, body = PiianoError),
        (status = 405, body = PiianoError), (status = 409, body = PiianoError),
        (status = 410, body = PiianoError), (status = 500, body = PiianoError),
        (status = 503, body = PiianoError),
    ))]
async fn export_key(call: Call, Query(query): Query<HashMap<String, String>>) -> Response {
    call.op("serve piiano export-key");
    let recorded: Vec<String> = ["custom_audit", "reason"]
        .iter()
        .filter_map(|k| query.get(*k).map(|v| format!("{k}={v}")))
        .collect();
    if let Some(v) = query.get("custom_audit") {
        call.custom_audit(v);
    } else if !recorded.is_empty() {
        call.custom_audit(&recorded.join("; "));
    }
    if let Err(e) = call.authorize(KeyHeader::Bearer, Capability::ExportKeyReader) {
        return refuse(&call, e);
    }
    let Some(cfg) = call.state.config().piiano.clone() else {
        return refuse(
            &call,
            ServeError::NotServed {
                what: "export_key ([piiano] is not in the server configuration)".into(),
            }
            .into(),
        );
    };
    let selectors = KeySelector::parse(&cfg.export_key)
        .and_then(|d| KeySelector::parse(&cfg.export_kek).map(|k| (d, k)));
    let (dek, kek) = match selectors {
        Ok(s) => s,
        Err(e) => return refuse(&call, e),
    };
    call.note(|f| {
        f.asked([dek.shown.clone()]);
        f.protection = Some(Protection::Kek {
            label: kek.shown.clone(),
            kcv: None,
        });
    });
    let doc = match call
        .run_token(move |token| imp::export_key(token, &dek, &kek))
        .await
    {
        Ok(doc) => doc,
        Err(e) => return refuse(&call, e),
    };
    let body = ExportKeyBody {
        export_key: doc.export_key.clone(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    call.note(|f| {
        if let Some(k) = f.keys.first_mut() {
            k.kcv = doc.kcv.clone();
        }
        f.protection = Some(Protection::Kek {
            label: doc.kek_label.clone(),
            kcv: doc.kek_kcv.clone(),
        });
        f.output_bytes("response", &bytes);
    });
    ([("content-type", "application/json")], bytes).into_response()
}
