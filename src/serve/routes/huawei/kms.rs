//! Huawei KMS key import, path for path (CapImport):
//!
//! - `POST /v1.0/{project_id}/kms/get-parameters-for-import` with
//!   `{"key_id", "wrapping_algorithm", "sequence"?}`: an unwrap-only RSA
//!   pair made in the token and its import token (`hsmkey import-params`).
//! - `POST /v1.0/{project_id}/kms/import-key-material` with Huawei's body:
//!   the material unwrapped in the token (`hsmkey import`) into a key whose
//!   label is the key_id; the parameters are used up.
//!
//! Authentication: `X-Auth-Token: <API key>` or an AK/SK signature
//! (`auth.rs`). Errors: `{"error": {"error_code", "error_msg"}}`.

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
use crate::error::Error;
use crate::formats::import_params::{self, Material, Parameters};
use crate::hsm::keys::{self, KeySelector, KeySpec};
use crate::ops::import::{self as imp, ImportRequest, MaterialInput, ParamsRequest};
use crate::serve::{json_body, status_of, AppState, Call, Capability};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_parameters_for_import))
        .routes(routes!(import_key_material))
}

/// Huawei KMS's error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorAnswer {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Huawei's code (`KMS.0308`, `APIGW.0301`, ...) or hsmkey's (`HK1201`).
    pub error_code: String,
    pub error_msg: String,
}

pub fn shape(status: StatusCode, e: &Error) -> Response {
    let body = ErrorAnswer {
        error: ErrorDetail {
            error_code: auth::code(e, Family::Kms),
            error_msg: auth::message(e),
        },
    };
    (status, Json(body)).into_response()
}

fn refuse(call: &Call, e: Error) -> Response {
    call.failed(&e);
    shape(status_of(&e), &e)
}

/// The import parameters (Huawei's answer, and `hsmkey import-params`'s file).
#[derive(Serialize, ToSchema)]
pub struct ParamsAnswer {
    pub key_id: String,
    /// Pass it back with the material, as it is.
    pub import_token: String,
    /// Seconds since 1970.
    pub expiration_time: i64,
    /// base64 of the wrapping key's DER SubjectPublicKeyInfo.
    pub public_key: String,
}

impl From<Parameters> for ParamsAnswer {
    fn from(p: Parameters) -> ParamsAnswer {
        ParamsAnswer {
            key_id: p.key_id,
            import_token: p.import_token,
            expiration_time: p.expiration_time,
            public_key: p.public_key,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ParamsBody {
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower-case letters and digits;
    /// the imported key's label.
    pub key_id: String,
    /// `RSAES_OAEP_SHA_1`, `RSAES_OAEP_SHA_256`, `RSA_AES_KEY_WRAP_SHA_1` or
    /// `RSA_AES_KEY_WRAP_SHA_256`.
    pub wrapping_algorithm: String,
    /// A 36-character request serial number; checked, not used.
    pub sequence: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ImportBody {
    pub key_id: String,
    pub import_token: String,
    /// base64: RSA-OAEP of the key (or of the temporary key, with
    /// `encrypted_privatekey`).
    pub encrypted_key_material: String,
    /// base64: RFC 5649 wrap of the PKCS#8 private key under the temporary key.
    pub encrypted_privatekey: Option<String>,
    /// Refused when given: hsmkey does not delete key material on a date.
    pub expiration_time: Option<i64>,
    pub sequence: Option<String>,
    /// hsmkey's addition: what the material is (`AES_256` when absent;
    /// `AES_128`, `RSA_2048`, `RSA_3072`, `RSA_4096`, `EC_P256`, `EC_P384`).
    pub key_spec: Option<String>,
}

/// hsmkey's answer to a completed import (Huawei's is an empty object; a
/// Huawei client ignores these members).
#[derive(Serialize, ToSchema)]
pub struct ImportAnswer {
    pub key_id: String,
    /// The imported key's check value, computed in the token, to compare
    /// with the sender's.
    pub kcv: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadInput {
        what: "request body".into(),
        reason: crate::serve::body_error(&e),
    })
}

fn check_key_id(key_id: &str) -> Result<(), Error> {
    if import_params::valid_key_id(key_id) {
        return Ok(());
    }
    Err(Error::BadInput {
        what: "key_id".into(),
        reason: format!("'{key_id}' is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (lower-case letters and digits)"),
    })
}

fn check_sequence(sequence: &Option<String>) -> Result<(), Error> {
    match sequence {
        Some(s) if s.len() != 36 => Err(Error::BadInput {
            what: "sequence".into(),
            reason: format!("it is {} characters; a sequence number is 36", s.len()),
        }),
        _ => Ok(()),
    }
}

/// Authenticate, check the project, read the body: what both routes do
/// first. A body that cannot be read (too large, cut off) is refused before
/// authentication, which needs its bytes for a signature.
fn admit<T: serde::de::DeserializeOwned>(
    call: &Call,
    received: (&Method, &Uri, &HeaderMap),
    project_id: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<(T, Bytes), Error> {
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
        Capability::Import,
    )?;
    auth::served_project(call, project_id)?;
    Ok((parse(&bytes)?, bytes))
}

/// Import parameters for `key_id`: an RSA pair in the token, its public key
/// and an import token.
#[utoipa::path(post, path = "/v1.0/{project_id}/kms/get-parameters-for-import", tag = "huawei-kms",
    security(("x_auth_token" = []), ("huawei_aksk" = [])),
    params(("project_id" = String, Path, description = "The configuration's project_id")),
    request_body = ParamsBody,
    responses((status = 200, body = ParamsAnswer), (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer), (status = 409, body = ErrorAnswer),
        (status = 501, body = ErrorAnswer), (status = 503, body = ErrorAnswer)))]
async fn get_parameters_for_import(
    call: Call,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(project_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call.op("serve huawei kms get-parameters-for-import");
    let (ask, _) = match admit::<ParamsBody>(&call, (&method, &uri, &headers), &project_id, body) {
        Ok(a) => a,
        Err(e) => return refuse(&call, e),
    };
    let checked = check_key_id(&ask.key_id)
        .and_then(|_| check_sequence(&ask.sequence))
        .and_then(|_| {
            if import_params::ALGORITHMS.contains(&ask.wrapping_algorithm.as_str()) {
                Ok(())
            } else {
                Err(Error::BadInput {
                    what: "wrapping_algorithm".into(),
                    reason: format!(
                        "'{}' is not one of {}",
                        ask.wrapping_algorithm,
                        import_params::ALGORITHMS.join(", ")
                    ),
                })
            }
        });
    if let Err(e) = checked {
        return refuse(&call, e);
    }
    let settings = call.state.config().huawei.clone().unwrap_or_default();
    let key_id = ask.key_id.clone();
    call.note(|f| f.asked([format!("{}{key_id}", imp::PAIR_PREFIX)]));
    let request = ParamsRequest {
        bits: settings.wrapping_key_bits,
        algorithm: ask.wrapping_algorithm,
        key_id: Some(key_id.clone()),
        valid_for: settings.params_valid_for,
        now: jiff::Timestamp::now().as_second(),
    };
    let made = call
        .run_locked("serve huawei kms get-parameters-for-import", move |token| {
            // A key already imported under this key id: Huawei's "not in
            // Pending import state".
            if !keys::find(token, &KeySelector::parse(&key_id)?)?.is_empty() {
                return Err(Error::AlreadyExists {
                    what: format!("a key with key id {key_id} (already imported)"),
                });
            }
            imp::import_params(token, &request, &mut |_| Ok(()))
        })
        .await;
    match made {
        Ok(params) => {
            let answer = ParamsAnswer::from(params);
            let printed = serde_json::to_vec(&answer).unwrap_or_default();
            call.note(|f| f.output_bytes("response", &printed));
            Json(answer).into_response()
        }
        Err(e) => refuse(&call, e),
    }
}

/// Huawei's key specs, as `hsmkey import --type` names them.
fn key_spec(given: Option<&str>, private: bool) -> Result<KeySpec, Error> {
    let spec = match given {
        None if private => {
            return Err(Error::BadInput {
                what: "request body".into(),
                reason: "missing field `key_spec`: a private key needs its spec (RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P384)".into(),
            })
        }
        None | Some("AES_256") => KeySpec::Aes256,
        Some("AES_128") => KeySpec::Aes128,
        Some("RSA_2048") => KeySpec::Rsa2048,
        Some("RSA_3072") => KeySpec::Rsa3072,
        Some("RSA_4096") => KeySpec::Rsa4096,
        Some("EC_P256") => KeySpec::EcP256,
        Some("EC_P384") => KeySpec::EcP384,
        Some(other) => {
            return Err(Error::BadInput {
                what: "key_spec".into(),
                reason: format!("'{other}' is not one of AES_256, AES_128, RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P384"),
            })
        }
    };
    Ok(spec)
}

/// Import wrapped key material under the parameters of `key_id`.
#[utoipa::path(post, path = "/v1.0/{project_id}/kms/import-key-material", tag = "huawei-kms",
    security(("x_auth_token" = []), ("huawei_aksk" = [])),
    params(("project_id" = String, Path, description = "The configuration's project_id")),
    request_body = ImportBody,
    responses((status = 200, body = ImportAnswer), (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer), (status = 409, body = ErrorAnswer),
        (status = 501, body = ErrorAnswer), (status = 503, body = ErrorAnswer)))]
async fn import_key_material(
    call: Call,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(project_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    call.op("serve huawei kms import-key-material");
    let (ask, bytes) =
        match admit::<ImportBody>(&call, (&method, &uri, &headers), &project_id, body) {
            Ok(a) => a,
            Err(e) => return refuse(&call, e),
        };
    let settings = call.state.config().huawei.clone().unwrap_or_default();
    let checked = check_key_id(&ask.key_id)
        .and_then(|_| check_sequence(&ask.sequence))
        .and_then(|_| match ask.expiration_time {
            Some(_) => Err(Error::BadInput {
                what: "expiration_time".into(),
                reason:
                    "hsmkey does not delete key material on a date; send the request without it"
                        .into(),
            }),
            None => Ok(()),
        })
        .and_then(|_| key_spec(ask.key_spec.as_deref(), ask.encrypted_privatekey.is_some()));
    let spec = match checked {
        Ok(s) => s,
        Err(e) => return refuse(&call, e),
    };
    let key_id = ask.key_id.clone();
    call.note(|f| {
        f.asked([key_id.clone()]);
        f.output_bytes("request", &bytes);
        f.inputs = std::mem::take(&mut f.outputs);
        f.protection = Some(crate::audit::Protection::Recipient {
            fingerprint: None,
            label: Some(format!("{}{key_id}", imp::PAIR_PREFIX)),
        });
    });
    let request = ImportRequest {
        input: MaterialInput::Json(Material {
            key_id: ask.key_id.clone(),
            import_token: ask.import_token,
            encrypted_key_material: ask.encrypted_key_material,
            encrypted_privatekey: ask.encrypted_privatekey,
        }),
        label: ask.key_id.clone(),
        spec,
        policy: settings.import_backup_policy,
        usage: None,
        now: jiff::Timestamp::now().as_second(),
    };
    let imported = call
        .run_locked("serve huawei kms import-key-material", move |token| {
            imp::import(token, &request)
        })
        .await;
    match imported {
        Ok(report) => {
            call.note(|f| f.keys(&report.keys));
            Json(ImportAnswer {
                key_id: report.key_id,
                kcv: report.keys.first().and_then(|k| k.kcv.clone()),
            })
            .into_response()
        }
        Err(e) => refuse(&call, e),
    }
}
