//! The running server: the router with its layers, the listener (plain on
//! loopback, rustls otherwise), and the shutdown on SIGTERM or SIGINT:
//! no new connections, requests under way finish (their audit lines
//! included), then the sessions close.
//!
//! Every request except the three public ones (`/healthz`, `/metrics`,
//! `/openapi.json`) writes one audit line, whatever its outcome, before its
//! response leaves; it runs in a task of its own so that a client that
//! goes away cannot cut its token work or its line short. The log is
//! checked before the handler runs (as a command checks it before it
//! starts), so a log that cannot take a line refuses the request unchanged.
//! A request refused without naming a client is counted instead
//! (src/serve/refusals.rs: one line per source per window). A handler that
//! panics is answered with its family's 500 and has its line; a request
//! whose head or body comes too slowly is cut off (`header_timeout`,
//! `body_timeout`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::access::KeyHeader;
use super::deadline::Deadline;
use super::refusals;
use super::routes;
use super::state::{client_address, AppState, RequestNote, Source};
use crate::audit::{Outcome, Recorder, RequestRef};
use crate::error::{Error, Result, ServeError};

/// Paths answered without credentials and without an audit line.
pub const PUBLIC: [&str; 3] = ["/healthz", "/metrics", "/openapi.json"];

/// The whole application: every family's routes, the OpenAPI document,
/// the body limit and the observing layer.
pub fn app(state: AppState) -> Router {
    let limit = state.config().body_limit;
    let (router, api) = routes::all().split_for_parts();
    let api_json = serde_json::to_string_pretty(&api).unwrap_or_else(|_| "{}".into());
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                ([("content-type", "application/json")], api_json.clone())
            }),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), routed))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Note the route's pattern (`/api/v1/keys/{name}`) for the metrics and
/// the audit line; withhold the body of a request that will be refused
/// ([`refused_unread`]); give a body a slot (`max_bodies`).
async fn routed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if let (Some(m), Some(note)) = (
        req.extensions().get::<MatchedPath>(),
        req.extensions().get::<RequestNote>(),
    ) {
        let route = m.as_str().to_string();
        note.with(|n| n.route = Some(route));
    }
    let source = req.extensions().get::<Source>().map(|s| s.0);
    let pending = !req.body().is_end_stream();
    let withhold = pending
        && !PUBLIC.contains(&path.as_str())
        && source.is_some_and(|source| refused_unread(&state, source, &path, req.headers()));
    if withhold {
        // The handler sees an empty body and refuses the request as its
        // family does (it checks credentials before it reads a body); the
        // body is never read, and the connection ends with the answer.
        let (parts, _unread) = req.into_parts();
        let mut response = next
            .run(Request::from_parts(parts, axum::body::Body::empty()))
            .await;
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    }
    // At most `max_bodies` requests hold a body (up to `body_limit` bytes
    // each) at once; the others wait for a slot before theirs is read, at
    // most request_timeout (then 503, HK1905).
    let _slot = if pending {
        let limit = state.config().request_timeout;
        match tokio::time::timeout(limit, state.bodies().clone().acquire_owned()).await {
            Ok(Ok(slot)) => Some(slot),
            _ => {
                let e = Error::from(ServeError::TimedOut {
                    seconds: limit.as_secs(),
                });
                noted(&req, &e);
                return family_error(&path, super::status_of(&e), &e);
            }
        }
    } else {
        None
    };
    next.run(req).await
}

/// Where each family's clients put their API key, by path prefix. Huawei's
/// may sign instead (`SDK-HMAC-SHA256`), which needs the body.
const KEY_HEADERS: [(&str, KeyHeader); 6] = [
    ("/api/pvlt/", KeyHeader::Bearer),
    ("/api/1.0/", KeyHeader::Header("x-http-token")),
    ("/api/v1/", KeyHeader::Bearer),
    ("/ConfigurationManager/", KeyHeader::Scheme("Session")),
    ("/v1.0/", KeyHeader::Header("x-auth-token")),
    ("/v1/", KeyHeader::Header("x-auth-token")),
];

/// Whether a request with a body will be refused whatever its body holds,
/// so that it need not be read (an unauthenticated client must not make
/// the server take in up to `body_limit` bytes): its source is throttled
/// (429, HK1111) or, where the family's key is a header, it has no key or
/// one no client has (401, HK1109). A request signed with AK/SK is only
/// checked against the throttle here: its signature covers the body.
/// Nothing is counted here; the handler's own check does that.
fn refused_unread(
    state: &AppState,
    source: std::net::IpAddr,
    path: &str,
    headers: &axum::http::HeaderMap,
) -> bool {
    let Some((prefix, header)) = KEY_HEADERS.iter().find(|(p, _)| path.starts_with(p)) else {
        return false;
    };
    let access = state.access();
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with(routes::huawei::sign::ALGORITHM));
    if prefix.starts_with("/v1") && !headers.contains_key("x-auth-token") && signed {
        return access.check_throttle(source, true).is_err();
    }
    let found = access.find(headers, *header);
    found.is_err() || access.check_throttle(source, true).is_err()
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let e = Error::from(ServeError::NotServed {
        what: format!("no route {path}"),
    });
    noted(&req, &e);
    family_error(&path, StatusCode::NOT_FOUND, &e)
}

async fn method_not_allowed(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let e = Error::Usage {
        message: format!("{} is not a method of {path}", req.method()),
    };
    noted(&req, &e);
    family_error(&path, StatusCode::METHOD_NOT_ALLOWED, &e)
}

/// The request's line records `e` as its result.
fn noted(req: &Request, e: &Error) {
    if let Some(note) = req.extensions().get::<RequestNote>() {
        note.with(|n| n.outcome = Some(Outcome::error(e.code(), e.to_string())));
    }
}

/// An error in the shape of the family that owns `path`.
fn family_error(path: &str, status: StatusCode, e: &Error) -> Response {
    let shape = routes::FAMILIES
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, shape)| *shape)
        .unwrap_or(routes::own::shape);
    shape(status, e)
}

/// The outer layer: time, route and status into the metrics; the audit
/// line written before the response goes.
async fn observe(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let public = PUBLIC.contains(&path.as_str());
    let source = client_address(peer.ip(), req.headers(), &state.config().proxies);
    let note = RequestNote::default();
    let mut req = req.map(|body| Deadline::wrap(body, state.config().body_timeout, note.clone()));
    req.extensions_mut().insert(note.clone());
    req.extensions_mut().insert(Source(source));
    let task_state = state.clone();
    // Counted until the task ends, even when its connection is closed
    // first: the server waits for it before its last lines.
    let running = state.running();
    let task = tokio::spawn(async move {
        let _running = running;
        // The log must be able to take this request's line before the
        // request may change anything, as a command checks it before it
        // starts: a log that cannot (no space, a cut last line, no access)
        // refuses the request here, with nothing done and no token work.
        if !public {
            let log_path = task_state.audit_log().to_path_buf();
            let checked = tokio::task::spawn_blocking(move || {
                Recorder::begin(&log_path, "serve preflight").map(drop)
            })
            .await
            .map_err(|e| Error::Internal(format!("the audit log check stopped: {e}")))
            .and_then(|r| r);
            if let Err(e) = checked {
                tracing::error!("{method} {path} refused: the audit log cannot take its line: {e}");
                let response = family_error(&path, StatusCode::SERVICE_UNAVAILABLE, &e);
                // No client was named: counted, for a line once the log
                // takes lines again.
                task_state.refusals().record(
                    source,
                    &method,
                    &path,
                    response.status().as_u16(),
                    Some(e.code()),
                );
                task_state.metrics().record(
                    "(audit log unavailable)",
                    &method,
                    response.status().as_u16(),
                    started.elapsed(),
                );
                return response;
            }
        }
        let mut response = guarded(&path, &note, next, req).await;
        if let Some(seconds) = note.with(|n| n.slow_body).flatten() {
            let e = Error::from(ServeError::SlowBody { seconds });
            note.with(|n| n.outcome = Some(Outcome::error(e.code(), e.to_string())));
            response = family_error(&path, StatusCode::REQUEST_TIMEOUT, &e);
            // The rest of the body is not read: the connection ends here.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if let Some(secs) = note.with(|n| n.retry_after).flatten() {
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert("retry-after", v);
            }
        }
        let clientless = note.with(|n| n.client.is_none()).unwrap_or(true);
        if !public && clientless && response.status().as_u16() >= 400 {
            // Refused before any client was named: counted for the
            // source's line of this window, not signed one by one.
            let code = note
                .with(|n| n.outcome.as_ref().and_then(|o| o.code.clone()))
                .flatten();
            task_state.refusals().record(
                source,
                &method,
                &path,
                response.status().as_u16(),
                code.as_deref(),
            );
        } else if !public {
            let status = response.status();
            let request = RequestRef {
                method: method.clone(),
                path: path.clone(),
                status: status.as_u16(),
                source: source.to_string(),
                custom_audit: None,
            };
            if let Err(e) = write_line(&task_state, &note, request).await {
                tracing::error!("the audit line of {method} {path} was not written: {e}");
                response = family_error(&path, StatusCode::SERVICE_UNAVAILABLE, &e);
            }
        }
        let route = note
            .with(|n| n.route.clone())
            .flatten()
            .unwrap_or_else(|| "(unmatched)".into());
        task_state.metrics().record(
            &route,
            &method,
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    });
    match task.await {
        Ok(r) => r,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The handler, in a task of its own: one that panics is answered with
/// its family's 500 (HK1902), and its note says so for the audit line.
pub(crate) async fn guarded(path: &str, note: &RequestNote, next: Next, req: Request) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(e) => {
            let what = if e.is_panic() {
                "panicked"
            } else {
                "was cancelled"
            };
            tracing::error!("the handler of {path} {what}");
            let e = Error::Internal(format!("the request's handler {what}"));
            note.with(|n| n.outcome = Some(Outcome::error(e.code(), e.to_string())));
            family_error(path, StatusCode::INTERNAL_SERVER_ERROR, &e)
        }
    }
}

/// One request's audit line, signed on a pooled session. A request whose
/// token work started (it may have changed the token) waits for a session
/// as long as it takes: its line is never dropped for time. Any other
/// request waits at most `request_timeout` (then 503, HK1905).
async fn write_line(state: &AppState, note: &RequestNote, mut request: RequestRef) -> Result<()> {
    let taken = note
        .with(|n| {
            (
                n.op.take(),
                n.route.clone(),
                n.client.take(),
                std::mem::take(&mut n.facts),
                n.outcome.take(),
                n.custom_audit.take(),
                n.token_work,
            )
        })
        .ok_or_else(|| Error::Internal("the request's audit note is poisoned".into()))?;
    let (op, route, client, mut facts, outcome, custom_audit, token_work) = taken;
    let op = op.unwrap_or_else(|| {
        format!(
            "serve {} {}",
            request.method,
            route.as_deref().unwrap_or("(unmatched)")
        )
    });
    let status = request.status;
    let outcome = match outcome {
        Some(o) => o,
        None if status < 400 => Outcome::ok(),
        None => Outcome {
            ok: false,
            code: None,
            message: Some(format!(
                "HTTP {status} {}",
                StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
            )),
        },
    };
    request.custom_audit = custom_audit;
    facts.request = Some(request);
    let client = client.unwrap_or_else(|| "unauthenticated".into());
    let path = state.audit_log().to_path_buf();
    let sign = move |token: &crate::hsm::Token<'static>| {
        let mut recorder = Recorder::begin(&path, &op)?;
        recorder.set_client(&client);
        recorder.attach(token)?;
        *recorder.facts() = facts;
        recorder.finish_as(outcome)
    };
    if token_work {
        return state.pool().run(sign).await;
    }
    let limit = state.config().request_timeout;
    state.pool().run_within(limit, limit.as_secs(), sign).await
}

/// Serve until SIGTERM or SIGINT. `listening` is told the bound address
/// (port 0 in the configuration picks a free one).
pub async fn serve(state: AppState, listening: impl FnOnce(SocketAddr)) -> Result<()> {
    let config = state.config().clone();
    let io = |e: std::io::Error| Error::Io {
        path: config.listen.to_string(),
        source: e,
    };
    let listener = std::net::TcpListener::bind(config.listen).map_err(io)?;
    let bound = listener.local_addr().map_err(io)?;
    let handle = axum_server::Handle::<SocketAddr>::new();
    // Long enough for a request that has just arrived: its body, its wait
    // for the lock and a session, its line's wait; then connections still
    // open are closed (their requests' tasks still end, see below).
    let grace = config.body_timeout + 2 * config.request_timeout + Duration::from_secs(5);
    let stopper = handle.clone();
    // Registered before the address is announced: a signal sent as soon as
    // it is known stops the server gracefully, never kills it.
    let signals = Signals::register().map_err(io)?;
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("stopping: no new connections; requests under way finish");
        stopper.graceful_shutdown(Some(grace));
    });
    let make = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let rustls = match &config.tls {
        Some(tls) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| crate::error::ServeError::Config {
                    path: config.path.display().to_string(),
                    line: None,
                    key: "tls_cert".into(),
                    reason: format!("the certificate or key cannot be used: {e}"),
                })?,
        ),
        None => None,
    };
    listening(bound);
    // Refusals without a client are written by one task, every window and
    // once more when no request is left (below).
    let (stop_writer, stopped) = tokio::sync::oneshot::channel();
    let writer = tokio::spawn(refusals::writer(state.clone(), stopped));
    // A head must arrive within header_timeout (hyper closes the
    // connection otherwise; also how long a kept-alive connection idles),
    // from the first byte of a connection too.
    let head = config.header_timeout;
    let served = match rustls {
        Some(rustls) => match axum_server::from_tcp_rustls(listener, rustls) {
            Ok(mut server) => {
                server.http_builder().http1().header_read_timeout(head);
                server
                    .first_request_timeout(head)
                    .handle(handle)
                    .serve(make)
                    .await
            }
            Err(e) => Err(e),
        },
        None => match axum_server::from_tcp(listener) {
            Ok(mut server) => {
                server.http_builder().http1().header_read_timeout(head);
                server
                    .first_request_timeout(head)
                    .handle(handle)
                    .serve(make)
                    .await
            }
            Err(e) => Err(e),
        },
    };
    // Every request's task ends (its line written, its refusal counted)
    // before the last refusal lines and `serve stop`, however long that
    // takes: token work always ends, and so do the lines that follow it.
    state.in_flight().idle().await;
    let _ = stop_writer.send(());
    let recorded = match writer.await {
        Ok(r) => r,
        Err(e) => Err(Error::Internal(format!(
            "the writer of refusal lines stopped: {e}"
        ))),
    };
    if let Err(e) = &recorded {
        tracing::error!("refused requests of the last window are not recorded: {e}");
    }
    served.map_err(io)?;
    recorded
}

/// SIGTERM and SIGINT, caught from the moment they are registered.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests;
