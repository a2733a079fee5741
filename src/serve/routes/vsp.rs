//! Hitachi VSP's encryption-key backup to a file and restore from it
//! (Configuration Manager REST API), header `Authorization: Session <key>`:
//!
//! - `POST` (or `PUT`) `/ConfigurationManager/v1/objects/encryption-keys/file/actions/backup/invoke`
//!   with `{"parameters": {"password": "..."}}` (CapKeyBackup): every key
//!   whose backup policy allows it, as one password-protected bundle
//!   (`hsmkey backup --all --password-file`, Argon2id), sent as
//!   `application/octet-stream` with `Content-Disposition: attachment`. The
//!   password must meet VSP's rule (`--password-policy vsp`).
//! - `POST .../encryption-keys/file/actions/restore/invoke`, multipart: the
//!   bundle in a `file` part and `{"password": "..."}` in a `parameters`
//!   part (CapKeyRestore): every key restored, all-or-nothing.
//!
//! Errors are VSP's error object (`errorSource`, `messageId`, `message`,
//! `cause`, `solution`); what the token cannot do is 412, as VSP answers
//! for a storage system that cannot.

use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::extract::rejection::BytesRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{Error, ExitClass, ServeError};
use crate::formats::password::Policy;
use crate::ops::backup::{Input, Protect, Selection, Unprotect};
use crate::serve::{json_body, status_of, AppState, Call, Capability, KeyHeader};

const HEADER: KeyHeader = KeyHeader::Scheme("Session");

const BACKUP_PATH: &str =
    "/ConfigurationManager/v1/objects/encryption-keys/file/actions/backup/invoke";
const RESTORE_PATH: &str =
    "/ConfigurationManager/v1/objects/encryption-keys/file/actions/restore/invoke";

/// The largest multipart upload the restore route reads, unless
/// `body_limit` is larger: a bundle of many keys (a few KiB each at most)
/// fits many times over.
pub const UPLOAD_LIMIT: usize = crate::input::limits::BLOB as usize;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(backup_keys)).merge(
        OpenApiRouter::new()
            .routes(routes!(restore_keys))
            // The upload is counted against its own limit in the handler.
            .layer(axum::extract::DefaultBodyLimit::disable()),
    )
}

/// VSP's error object.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VspError {
    /// The path the error occurred at.
    pub error_source: String,
    /// hsmkey's error code (docs/ERRORS.md).
    pub message_id: String,
    pub message: String,
    /// The details of the error (the error's context), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What to do next.
    pub solution: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupBody {
    pub parameters: Password,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Password {
    /// 6 to 255 letters, digits and ASCII punctuation (backup); restore
    /// takes the password the file was made with.
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct RestoredKey {
    pub label: String,
    pub kcv: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RestoreAnswer {
    /// Every key version the file held, now on the token.
    pub keys: Vec<RestoredKey>,
}

/// The status of an error under VSP: what the token cannot do (the exit
/// class of `hsmkey backup`'s "not capable", 5) is 412 Precondition Failed,
/// as VSP answers for a storage system that does not support the operation.
pub fn status(e: &Error) -> StatusCode {
    if e.exit_class() == ExitClass::NotCapable {
        StatusCode::PRECONDITION_FAILED
    } else {
        status_of(e)
    }
}

pub fn shape(status: StatusCode, e: &Error) -> Response {
    body(
        status,
        e,
        "/ConfigurationManager/v1/objects/encryption-keys",
    )
}

fn body(status: StatusCode, e: &Error, source: &str) -> Response {
    let context = e.context();
    let cause = (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let error = VspError {
        error_source: source.to_string(),
        message_id: e.code().to_string(),
        message: e.to_string(),
        cause,
        solution: e.hint(),
    };
    (status, Json(error)).into_response()
}

fn refuse(call: &Call, e: Error, source: &str) -> Response {
    call.failed(&e);
    body(status(&e), &e, source)
}

/// VSP's backup answers `application/octet-stream` only: a client that
/// accepts neither it nor everything is told so (406).
fn accepts_octets(headers: &axum::http::HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return true;
    };
    let Ok(accept) = accept.to_str() else {
        return false;
    };
    accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        ["application/octet-stream", "application/*", "*/*"]
            .iter()
            .any(|m| media.eq_ignore_ascii_case(m))
    })
}

/// Every backup-enabled key in one password-protected bundle.
#[utoipa::path(method(post, put), path = BACKUP_PATH, tag = "vsp", security(("vsp_session" = [])),
    request_body = BackupBody,
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>,
            description = "The bundle (docs/FORMAT.md), as `hsmkey backup --all --password-file` writes it"),
        (status = 400, body = VspError), (status = 401, body = VspError), (status = 403, body = VspError),
        (status = 406, body = VspError), (status = 409, body = VspError), (status = 412, body = VspError),
        (status = 413, body = VspError), (status = 503, body = VspError)))]
async fn backup_keys(call: Call, body: Result<Bytes, BytesRejection>) -> Response {
    call.op("serve vsp backup");
    let refuse = |e: Error| refuse(&call, e, BACKUP_PATH);
    if let Err(e) = call.authorize(HEADER, Capability::KeyBackup) {
        return refuse(e);
    }
    if !accepts_octets(&call.headers) {
        let e = Error::Usage {
            message:
                "the backup is application/octet-stream: send Accept: application/octet-stream"
                    .into(),
        };
        call.failed(&e);
        return self::body(StatusCode::NOT_ACCEPTABLE, &e, BACKUP_PATH);
    }
    // The password's rule is checked before any token work.
    let password = json_body::<BackupBody>(body).and_then(|b| {
        crate::formats::password::check(&b.parameters.password, Policy::Vsp)
            .map_err(|reason| Error::BadPassword { reason })?;
        Ok(SecretString::from(b.parameters.password))
    });
    let password = match password {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    call.note(|f| {
        f.asked(["--all".to_string()]);
        f.protection = Some(crate::audit::Protection::Password);
    });
    // Argon2id (64 MiB) and the wrapping run on the blocking pool.
    let made = call
        .backup(Protect::Password(password, Policy::Vsp), Selection::All)
        .await;
    let (bundle, facts) = match made {
        Ok(m) => m,
        Err(e) => return refuse(e),
    };
    call.note(|f| {
        f.keys = crate::audit::Keys::Listed(facts.keys);
        f.protection = Some(facts.protection);
        f.output_bytes("response", &bundle);
    });
    let filename = format!(
        "hsmkey-encryption-keys-{}.bundle",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
    );
    let length = bundle.len();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename={filename}"),
        )
        .body(Body::from(bundle))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The `file` and `parameters` parts of a restore request.
struct Upload {
    file: Vec<u8>,
    password: SecretString,
}

fn bad_upload(reason: impl Into<String>) -> Error {
    Error::BadInput {
        what: "multipart request".into(),
        reason: reason.into(),
    }
}

/// Read a part whole, counting it against what is left of `limit`.
async fn read_part(
    field: &mut Field<'_>,
    left: &mut usize,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if chunk.len() > *left {
                    return Err(ServeError::BodyTooLarge {
                        reason: format!("the upload is over {limit} bytes"),
                    }
                    .into());
                }
                *left -= chunk.len();
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => return Err(bad_upload(e.body_text())),
        }
    }
}

async fn read_upload(
    multipart: Result<Multipart, MultipartRejection>,
    limit: usize,
) -> Result<Upload, Error> {
    let mut multipart = multipart.map_err(|e| bad_upload(e.body_text()))?;
    let mut left = limit;
    let (mut file, mut parameters) = (None, None);
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(bad_upload(e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        let bytes = read_part(&mut field, &mut left, limit).await?;
        let slot = match name.as_str() {
            "file" => &mut file,
            "parameters" => &mut parameters,
            other => {
                return Err(bad_upload(format!(
                    "unexpected part '{other}': send 'file' and 'parameters'"
                )))
            }
        };
        if slot.replace(bytes).is_some() {
            return Err(bad_upload(format!("the part '{name}' is sent twice")));
        }
    }
    let file = file.ok_or_else(|| bad_upload("no 'file' part: send the backup file as 'file'"))?;
    let parameters = parameters.ok_or_else(|| {
        bad_upload("no 'parameters' part: send {\"password\": \"...\"} as 'parameters'")
    })?;
    // `{"password": ...}`, or the backup body's `{"parameters": {...}}`.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Parameters {
        Bare(Password),
        Wrapped(BackupBody),
    }
    // The part held the password: wiped once read.
    let parameters = zeroize::Zeroizing::new(parameters);
    let password = match serde_json::from_slice::<Parameters>(&parameters) {
        Ok(Parameters::Bare(p)) => p.password,
        Ok(Parameters::Wrapped(b)) => b.parameters.password,
        Err(_) => {
            return Err(bad_upload(
                "the 'parameters' part is not {\"password\": \"...\"}",
            ))
        }
    };
    Ok(Upload {
        file,
        password: SecretString::from(password),
    })
}

/// Restore every key of a backup file, all-or-nothing.
#[utoipa::path(post, path = RESTORE_PATH, tag = "vsp", security(("vsp_session" = [])),
    request_body(content_type = "multipart/form-data",
        description = "`file`: the backup file; `parameters`: {\"password\": \"...\"}"),
    responses((status = 200, body = RestoreAnswer), (status = 400, body = VspError), (status = 401, body = VspError),
        (status = 403, body = VspError), (status = 409, body = VspError), (status = 412, body = VspError),
        (status = 413, body = VspError), (status = 503, body = VspError)))]
async fn restore_keys(call: Call, multipart: Result<Multipart, MultipartRejection>) -> Response {
    call.op("serve vsp restore");
    let refuse = |e: Error| refuse(&call, e, RESTORE_PATH);
    if let Err(e) = call.authorize(HEADER, Capability::KeyRestore) {
        return refuse(e);
    }
    let limit = call.state.config().body_limit.max(UPLOAD_LIMIT);
    let upload = match read_upload(multipart, limit).await {
        Ok(u) => u,
        Err(e) => return refuse(e),
    };
    let sent = crate::audit::line::sha256_hex(&upload.file);
    let input = Input::Bytes(upload.file);
    let facts = crate::audit::bundle::read(&input).ok();
    call.note(|f| {
        f.inputs.push(crate::audit::FileRef {
            path: "request".into(),
            sha256: sent,
        });
        f.protection = Some(crate::audit::Protection::Password);
        if let Some(b) = &facts {
            f.keys = crate::audit::Keys::Listed(b.keys.clone());
        }
    });
    let password = upload.password;
    let restored = call
        .restore(
            "serve vsp restore",
            input,
            Unprotect::Password(password),
            Vec::new(),
        )
        .await;
    let report = match restored {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    if facts.is_some() {
        call.note(|f| f.keys = crate::audit::Keys::Reported(report.entries.clone()));
    }
    Json(RestoreAnswer {
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

#[cfg(test)]
mod tests;
