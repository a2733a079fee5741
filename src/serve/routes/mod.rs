//! The route families, one file each, put together (docs/SERVER.md,
//! "Adding a route family"). A family file exposes
//! `pub fn routes() -> OpenApiRouter<AppState>` (handlers annotated with
//! `#[utoipa::path]`, so `/openapi.json` lists exactly what is routed) and
//! `pub fn shape(StatusCode, &Error) -> Response`, its error body; it is
//! added to [`all`] and, with its path prefix, to [`FAMILIES`].

pub mod own;
pub mod piiano;
pub mod storedsafe;
pub mod system;
pub mod vsp;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::{AppState, Shape};

#[derive(OpenApi)]
#[openapi(info(
    title = "hsmkey serve",
    description = "The reference systems' key APIs, served from a PKCS#11 token (docs/SERVER.md)."
))]
struct ApiDoc;

/// Every route of the server, with its OpenAPI description.
pub fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(system::routes())
        .merge(own::routes())
        .merge(piiano::routes())
        .merge(storedsafe::routes())
        .merge(vsp::routes())
}

/// Path prefixes and the error shape of the family that owns them, for
/// answers no handler gives (404 under the prefix, 405, a failed audit
/// line). Longest prefixes first; anything else gets hsmkey's own shape.
pub const FAMILIES: &[(&str, Shape)] = &[
    ("/api/pvlt/", piiano::shape),
    ("/api/1.0/", storedsafe::shape),
    ("/api/v1/", own::shape),
    ("/ConfigurationManager/", vsp::shape),
];
