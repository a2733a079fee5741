//! The route families, one file each, put together (docs/SERVER.md,
//! "Adding a route family"). A family file exposes
//! `pub fn routes() -> OpenApiRouter<AppState>` (handlers annotated with
//! `#[utoipa::path]`, so `/openapi.json` lists exactly what is routed) and
//! `pub fn shape(StatusCode, &Error) -> Response`, its error body; it is
//! added to [`all`] and, with its path prefix, to [`FAMILIES`].

pub mod huawei;
pub mod own;
pub mod piiano;
pub mod storedsafe;
pub mod system;
pub mod vsp;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::{AppState, Shape};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hsmkey serve",
        description = "The reference systems' key APIs, served from a PKCS#11 token (docs/SERVER.md)."
    ),
    modifiers(&Credentials)
)]
struct ApiDoc;

/// The security schemes the routes name: `bearer` (hsmkey, Piiano),
/// `x_http_token` (StoredSafe), `x_auth_token` and `huawei_aksk` (Huawei),
/// and `vsp_session` (Hitachi VSP's `Authorization: Session <key>`).
/// A family with another header adds its own.
struct Credentials;

impl utoipa::Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "x_http_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Http-Token"))),
        );
        // Huawei KMS and CSMS: an API key in X-Auth-Token, or Huawei's
        // SDK-HMAC-SHA256 signature (with X-Sdk-Date) in Authorization.
        components.add_security_scheme(
            "x_auth_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Auth-Token"))),
        );
        components.add_security_scheme(
            "huawei_aksk",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "SDK-HMAC-SHA256 Access=AK, SignedHeaders=..., Signature=... with X-Sdk-Date (docs/SERVER.md, \"Huawei AK/SK request signing\")",
            ))),
        );
        components.add_security_scheme(
            "vsp_session",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Session <api key>`, as Hitachi VSP's clients send their session token",
            ))),
        );
    }
}

/// Every route of the server, with its OpenAPI description.
pub fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(system::routes())
        .merge(own::routes())
        .merge(piiano::routes())
        .merge(storedsafe::routes())
        .merge(huawei::kms::routes())
        .merge(huawei::csms::routes())
        .merge(vsp::routes())
}

/// Path prefixes and the error shape of the family that owns them, for
/// answers no handler gives (404 under the prefix, 405, a failed audit
/// line). Longest prefixes first; anything else gets hsmkey's own shape.
pub const FAMILIES: &[(&str, Shape)] = &[
    ("/api/pvlt/", piiano::shape),
    ("/api/1.0/", storedsafe::shape),
    ("/api/v1/", own::shape),
    ("/v1.0/", huawei::kms::shape),
    ("/v1/", huawei::csms::shape),
    ("/ConfigurationManager/", vsp::shape),
];
