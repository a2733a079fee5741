//! `hsmkey serve --config FILE` (docs/SERVER.md): reads and checks the
//! configuration, logs in to the token with the configured PIN source,
//! opens the sessions, writes the `serve start` audit line, prints the
//! address it listens on, and serves until SIGTERM or SIGINT; then writes
//! `serve stop` and closes the sessions.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use hsmkey::audit::{Outcome, Recorder};
use hsmkey::hsm::pin::{PinRequest, PinRole, PinSource};
use hsmkey::hsm::Module;
use hsmkey::serve::access::Access;
use hsmkey::serve::metrics::Metrics;
use hsmkey::serve::pool::SessionPool;
use hsmkey::serve::refusals::Refusals;
use hsmkey::serve::state::{AppState, Shared};
use hsmkey::serve::{config, server};
use hsmkey::{Error, Result};

use super::{out, Context};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The server configuration (TOML; docs/SERVER.md lists its keys).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

pub fn run(ctx: &Context, args: ServeArgs) -> Result<()> {
    if ctx.global.no_audit {
        return Err(Error::Usage {
            message: "serve records every request in the audit log: --no-audit is refused".into(),
        });
    }
    let config = config::load(&args.config)?;
    let source: PinSource = config.pin_source.parse()?;
    let pin = PinRequest {
        role: PinRole::User,
        source: Some(source),
        allow_argv: false,
        prompter: None,
    }
    .resolve()?;
    let audit_log = hsmkey::audit::resolve_path(
        config
            .audit_log
            .as_deref()
            .or(ctx.global.audit_log.as_deref()),
    )?;
    // The log must take lines before the server answers anything.
    drop(Recorder::begin(&audit_log, "serve start")?);
    let module = Module::load(config.module.as_deref(), config.module_args.as_deref())?;
    let pool = Arc::new(SessionPool::open(
        module,
        config.token.as_deref(),
        &pin,
        config.sessions,
        config.module_args.clone(),
    )?);
    drop(pin);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hsmkey-serve")
        .build()
        .map_err(|e| Error::Internal(format!("start the async runtime: {e}")))?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let state = AppState::new(Shared {
        access: Access::new(&config.clients, config.auth_failures_per_minute),
        refusals: Refusals::new(config.refusal_sources_per_window),
        pool: pool.clone(),
        metrics: Metrics::default(),
        audit_log: audit_log.clone(),
        in_flight: Default::default(),
        bodies: Arc::new(tokio::sync::Semaphore::new(config.max_bodies)),
        config,
    });
    runtime.block_on(async move {
        lifecycle_line(&pool, &audit_log, "serve start", Outcome::ok()).await?;
        let served = server::serve(state.clone(), |addr| {
            out(&format!("hsmkey serve: listening on {scheme}://{addr}\n"));
        })
        .await;
        // Refusals the last lines could not record are named in the
        // stop line (and the exit is not 0).
        let unrecorded = state.refusals().take();
        let outcome = match &served {
            Err(e) if !unrecorded.is_empty() => {
                let count: u64 = unrecorded.iter().map(|(_, t)| t.count).sum();
                Outcome {
                    ok: false,
                    code: Some(e.code().to_string()),
                    message: Some(format!(
                        "{count} requests refused without a client ({} sources) are not recorded: {e}",
                        unrecorded.len()
                    )),
                }
            }
            Err(e) => Outcome::error(e.code(), e.to_string()),
            Ok(()) => Outcome::ok(),
        };
        let stopped = lifecycle_line(&pool, &audit_log, "serve stop", outcome).await;
        pool.close().await;
        served.and(stopped)
    })
}

/// The server's own lines: when it started (which also makes the token's
/// audit key before any request could race to make it) and stopped.
async fn lifecycle_line(
    pool: &Arc<SessionPool>,
    path: &std::path::Path,
    op: &'static str,
    outcome: Outcome,
) -> Result<()> {
    let path = path.to_path_buf();
    pool.run(move |token| {
        let mut recorder = Recorder::begin(&path, op)?;
        recorder.attach(token)?;
        recorder.finish_as(outcome)
    })
    .await
}
