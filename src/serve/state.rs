//! What every route shares ([`AppState`]: the configuration, the clients,
//! the sessions, the metrics) and what each request carries ([`Call`]: who
//! sent it, its audit note, its deadline). Route families use these and
//! nothing else of the server (docs/SERVER.md, "Adding a route family").

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::access::{Access, Capability, Client, KeyHeader};
use super::config::ServeConfig;
use super::metrics::Metrics;
use super::pool::SessionPool;
use super::refusals::Refusals;
use crate::audit::{Facts, Outcome};
use crate::error::{Error, Result, ServeError};
use crate::hsm::Token;

/// The server's shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: ServeConfig,
    pub access: Access,
    pub pool: Arc<SessionPool>,
    pub metrics: Metrics,
    /// The audit log every request's line goes to.
    pub audit_log: std::path::PathBuf,
    /// Requests refused without a client, counted for their lines.
    pub refusals: Refusals,
    /// The requests' tasks still running.
    pub in_flight: InFlight,
    /// Slots for requests with a body (`max_bodies`).
    pub bodies: Arc<tokio::sync::Semaphore>,
}

/// The requests' tasks still running, counted so that the server waits for
/// every one of them (its line, its refusal count) before its last lines,
/// even those whose connection was closed at the end of the grace period.
#[derive(Default)]
pub struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One request's task, counted until it is dropped.
pub struct Running(AppState);

impl Drop for Running {
    fn drop(&mut self) {
        let left = self
            .0
             .0
            .in_flight
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if left == 1 {
            self.0 .0.in_flight.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Resolves once no request task is left.
    pub async fn idle(&self) {
        loop {
            // Registered before the count is read: a task that ends in
            // between still wakes this.
            let woken = self.idle.notified();
            if self.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            woken.await;
        }
    }
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }

    pub fn config(&self) -> &ServeConfig {
        &self.0.config
    }

    pub fn access(&self) -> &Access {
        &self.0.access
    }

    pub fn pool(&self) -> &Arc<SessionPool> {
        &self.0.pool
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn audit_log(&self) -> &std::path::Path {
        &self.0.audit_log
    }

    pub fn refusals(&self) -> &Refusals {
        &self.0.refusals
    }

    /// Count a request's task until the value returned is dropped.
    pub fn running(&self) -> Running {
        self.0
            .in_flight
            .count
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(self.clone())
    }

    pub fn in_flight(&self) -> &InFlight {
        &self.0.in_flight
    }

    pub fn bodies(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.0.bodies
    }
}

/// What a request's audit line will say, filled in as the request goes.
#[derive(Default)]
pub struct Note {
    /// The operation (`serve piiano export-key`); by default the method
    /// and route.
    pub op: Option<String>,
    /// The route's pattern, once routed (`/api/v1/keys/{name}`).
    pub route: Option<String>,
    /// The client, once known.
    pub client: Option<String>,
    pub facts: Facts,
    /// How it ended, when the route says so (else the status decides).
    pub outcome: Option<Outcome>,
    pub custom_audit: Option<String>,
    /// Seconds a throttled address must wait (the `Retry-After` header).
    pub retry_after: Option<u64>,
    /// The body did not arrive within `body_timeout` (its seconds).
    pub slow_body: Option<u64>,
    /// When the whole body had arrived.
    pub body_read: Option<Instant>,
    /// Token work of the request started: it may have changed the token,
    /// so its line waits for a session however long that takes.
    pub token_work: bool,
}

/// The audit note of one request, shared by the handler and the layer
/// that writes the line.
#[derive(Clone, Default)]
pub struct RequestNote(pub Arc<Mutex<Note>>);

impl RequestNote {
    /// Work on the note. A handler that panicked while holding it leaves
    /// it as it was: the note is still read, so that the request's line
    /// is written.
    pub fn with<R>(&self, f: impl FnOnce(&mut Note) -> R) -> Option<R> {
        let mut n = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Some(f(&mut n))
    }
}

/// One request, as a handler sees it: take it as an argument
/// (`call: Call`) and go through it for access, audit and token work.
pub struct Call {
    pub state: AppState,
    pub source: IpAddr,
    pub headers: HeaderMap,
    note: RequestNote,
    started: Instant,
}

impl FromRequestParts<AppState> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Call, Self::Rejection> {
        let source = match parts.extensions.get::<Source>() {
            Some(s) => s.0,
            None => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        };
        let note = parts
            .extensions
            .get::<RequestNote>()
            .cloned()
            .unwrap_or_default();
        // The request's clock starts here, when its handler is being
        // called, not when it arrived: the head's and the body's own
        // limits (header_timeout, body_timeout) cover the upload.
        let started = Instant::now();
        Ok(Call {
            state: state.clone(),
            source,
            headers: parts.headers.clone(),
            note,
            started,
        })
    }
}

/// The client's address, as the observing layer found it.
#[derive(Clone, Copy)]
pub struct Source(pub IpAddr);

/// The client's address: the peer's, or, when the peer is one of the
/// configured `proxies`, the right-most address of `X-Forwarded-For` that
/// is not a proxy (the one the nearest trusted proxy saw). A header that
/// does not parse is ignored.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, proxies: &[IpAddr]) -> IpAddr {
    if !proxies.contains(&peer) {
        return peer;
    }
    // Every X-Forwarded-For line, in order, as one list: a proxy may add a
    // line of its own rather than extend the client's.
    let mut lines = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(v) => lines.push(v),
            Err(_) => return peer,
        }
    }
    if lines.is_empty() {
        return peer;
    }
    let chain = lines.join(",");
    for hop in chain.rsplit(',') {
        match parse_hop(hop.trim()) {
            Some(ip) if proxies.contains(&ip) => continue,
            Some(ip) => return ip,
            None => return peer,
        }
    }
    peer
}

/// One `X-Forwarded-For` entry: an address, or an address with a port
/// (`192.0.2.7:5123`, `[2001:db8::7]:5123`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()
}

impl Call {
    /// Name the operation in the audit line (`serve storedsafe backup`).
    pub fn op(&self, op: &str) {
        self.note.with(|n| n.op = Some(op.to_string()));
    }

    /// Check the API key in `header` and the capability. The audit line
    /// names the client, or the refusal. Errors are HK1109 (401), HK1110
    /// (403), HK1111 (429).
    pub fn authorize(&self, header: KeyHeader, capability: Capability) -> Result<Arc<Client>> {
        let r = self
            .state
            .access()
            .authorize(self.source, &self.headers, header, capability);
        self.admitted(r)
    }

    /// For a family with its own way of finding the client (AK/SK
    /// signing): `found` is the client or why there is none; throttling,
    /// the failure count and the capability are checked here.
    pub fn admit(
        &self,
        found: std::result::Result<Arc<Client>, &str>,
        capability: Capability,
    ) -> Result<Arc<Client>> {
        let r = self
            .state
            .access()
            .check_throttle(self.source, found.is_ok())
            .and_then(|_| self.state.access().admit(self.source, found, capability));
        self.admitted(r)
    }

    fn admitted(&self, r: std::result::Result<Arc<Client>, ServeError>) -> Result<Arc<Client>> {
        match r {
            Ok(client) => {
                self.note.with(|n| n.client = Some(client.name.clone()));
                Ok(client)
            }
            Err(e) => {
                match &e {
                    ServeError::Forbidden { client, .. } => {
                        let client = client.clone();
                        self.note.with(|n| n.client = Some(client));
                    }
                    ServeError::Throttled { retry_after, .. } => {
                        let secs = *retry_after;
                        self.note.with(|n| n.retry_after = Some(secs));
                    }
                    _ => {}
                }
                let e = Error::from(e);
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// Add to what the audit line says (keys, protection, inputs, outputs).
    pub fn note(&self, f: impl FnOnce(&mut Facts)) {
        self.note.with(|n| f(&mut n.facts));
    }

    /// Text the client asked to have recorded (Piiano's `custom_audit`).
    pub fn custom_audit(&self, text: &str) {
        self.note.with(|n| n.custom_audit = Some(text.to_string()));
    }

    /// The request failed with `e`: the audit line records its code and
    /// message (call it where the error becomes a response).
    pub fn failed(&self, e: &Error) {
        self.note
            .with(|n| n.outcome = Some(Outcome::error(e.code(), e.to_string())));
    }

    /// Run token work on a pooled session (spawn_blocking). Waiting for a
    /// session is bounded by what is left of `request_timeout` (HK1905);
    /// work that has started always runs to its end, as a PKCS#11 call
    /// cannot be cancelled half-way.
    pub async fn run_token<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Token<'static>) -> Result<T> + Send + 'static,
    {
        let limit = self.state.config().request_timeout;
        let note = self.note.clone();
        self.state
            .pool()
            .run_within(self.time_left(), limit.as_secs(), move |token| {
                note.with(|n| n.token_work = true);
                work(token)
            })
            .await
    }

    /// What is left of `request_timeout` for this request, counted from
    /// when its handler started: from the end of its body, if it had one
    /// (read after this `Call` was made), else from the `Call`.
    fn time_left(&self) -> std::time::Duration {
        let started = self
            .note
            .with(|n| n.body_read)
            .flatten()
            .map_or(self.started, |read| read.max(self.started));
        self.state
            .config()
            .request_timeout
            .saturating_sub(started.elapsed())
    }

    /// The token's lock (src/hsm/lock.rs), waited for up to what is left
    /// of the request's time, without holding a session meanwhile: a
    /// request waiting for a command line restore (or another replica on
    /// this host) to finish leaves the sessions to the requests that can
    /// run.
    async fn lock_token(&self, command: &'static str) -> Result<crate::hsm::lock::TokenLock> {
        let summary = self.state.pool().summary().clone();
        let args = self.state.pool().module_args().map(str::to_string);
        let wait = self.time_left();
        tokio::task::spawn_blocking(move || {
            crate::hsm::lock::lock(&summary, args.as_deref(), wait, command)
        })
        .await
        .map_err(|e| Error::Internal(format!("the wait for the token's lock stopped: {e}")))?
    }

    /// [`Call::run_token`] holding the token's lock, for work that checks
    /// and then creates keys: no other hsmkey run or replica on this host
    /// interleaves. The lock is taken first, then a session; both waits
    /// together are bounded by the request's time.
    pub async fn run_locked<T, F>(&self, command: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Token<'static>) -> Result<T> + Send + 'static,
    {
        let lock = self.lock_token(command).await?;
        self.run_token(move |token| {
            let _lock = lock;
            work(token)
        })
        .await
    }

    /// Back up `selection` under `protect`, as `hsmkey backup` does, on a
    /// pooled session (a password's Argon2id included): the bundle's bytes,
    /// and what the audit line records of it.
    pub async fn backup(
        &self,
        protect: crate::ops::backup::Protect,
        selection: crate::ops::backup::Selection,
    ) -> Result<(Vec<u8>, crate::audit::bundle::BundleFacts)> {
        use crate::ops::backup::{BackupOptions, Input};
        self.run_token(move |token| {
            let mut out: Vec<u8> = Vec::new();
            let cancel = std::sync::atomic::AtomicBool::new(false);
            let options = BackupOptions {
                allow_skips: false,
                verify: false,
                cancel: &cancel,
                listed: None,
            };
            crate::ops::backup::backup(
                token,
                &protect,
                &selection,
                &mut out,
                &options,
                &mut |_, _| {},
            )?;
            let facts = crate::audit::bundle::read(&Input::Bytes(out.clone()))?;
            Ok((out, facts))
        })
        .await
    }

    /// Restore `input` all-or-nothing, as `hsmkey restore` does: under
    /// the token's lock (the command line's lock file, named by the token
    /// and the module's arguments; taken before a session, as
    /// [`Call::run_locked`] does) with its journal, on a pooled session,
    /// every key checked before the first is made. `only` limits
    /// it to those names (empty: every key).
    pub async fn restore(
        &self,
        command: &'static str,
        input: crate::ops::backup::Input,
        unprotect: crate::ops::backup::Unprotect,
        only: Vec<String>,
    ) -> Result<crate::ops::backup::RestoreReport> {
        use crate::ops::backup::{OnConflict, RestoreOptions};
        let lock = self.lock_token(command).await?;
        self.run_token(move |token| {
            let cancel = std::sync::atomic::AtomicBool::new(false);
            let options = RestoreOptions {
                dry_run: false,
                on_conflict: OnConflict::Fail,
                cancel: &cancel,
                journal: Some(lock.journal_path()),
                only,
                rename: Vec::new(),
            };
            crate::ops::backup::restore(token, &input, &unprotect, &options, &mut |_, _| {})
        })
        .await
    }
}
