//! The server's sessions: N sessions on the token, logged in once with the
//! configured PIN (PKCS#11 login state belongs to the application, so every
//! session of the process shares it), lent one at a time to token work on
//! tokio's blocking pool. A request waits for a free session; the work, once
//! started, always finishes and gives its session back, even when the
//! request that asked for it has timed out or its client has gone.
//!
//! A session the token has dropped (an HSM restarted, a network HSM's
//! connection lost) is replaced after the work that found it fails: a new
//! session, logged in again with the PIN the pool keeps for that, so the
//! next request on it works again.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{Error, Result, ServeError};
use crate::hsm::{Login, Module, Token, TokenSummary};

/// The sessions, and counts for /metrics.
pub struct SessionPool {
    module: &'static Module,
    idle: Mutex<Vec<Token<'static>>>,
    permits: Arc<Semaphore>,
    size: usize,
    summary: TokenSummary,
    module_args: Option<String>,
    /// The token selector and PIN, to replace a lost session.
    selector: Option<String>,
    pin: secrecy::SecretString,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    /// Sessions replaced after the token dropped them.
    pub reopened: AtomicU64,
}

/// The phases of work given to [`SessionPool::run_within`]: waiting for a
/// session, started, or given up (it never starts).
const WAITING: u8 = 0;
const STARTED: u8 = 1;
const GAVE_UP: u8 = 2;

/// Return values that mean the session (or the login on it) is gone.
const LOST: [&str; 7] = [
    "CKR_SESSION_HANDLE_INVALID",
    "CKR_SESSION_CLOSED",
    "CKR_USER_NOT_LOGGED_IN",
    "CKR_DEVICE_REMOVED",
    "CKR_TOKEN_NOT_PRESENT",
    "CKR_DEVICE_ERROR",
    "CKR_CRYPTOKI_NOT_INITIALIZED",
];

fn session_lost(e: &Error) -> bool {
    matches!(e, Error::Pkcs11 { rv, .. } if LOST.contains(&rv.as_str()))
}

impl SessionPool {
    /// Log in on the first session, then open the others. The module lives
    /// as long as the process: sessions borrow it.
    pub fn open(
        module: Module,
        selector: Option<&str>,
        pin: &secrecy::SecretString,
        size: usize,
        module_args: Option<String>,
    ) -> Result<SessionPool> {
        let module: &'static Module = Box::leak(Box::new(module));
        let slot = module.select_token(selector)?;
        let first = module.open(slot, Login::User(pin))?;
        let summary = first.summary().clone();
        let mut idle = Vec::with_capacity(size);
        for _ in 1..size {
            idle.push(module.open(first.slot(), Login::None)?);
        }
        idle.push(first);
        Ok(SessionPool {
            module,
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
            size,
            summary,
            module_args,
            selector: selector.map(str::to_string),
            pin: pin.clone(),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            reopened: AtomicU64::new(0),
        })
    }

    pub fn summary(&self) -> &TokenSummary {
        &self.summary
    }

    pub fn module(&self) -> &'static Module {
        self.module
    }

    pub fn module_args(&self) -> Option<&str> {
        self.module_args.as_deref()
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Sessions lent out now.
    pub fn busy(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// Run `work` on a free session, on the blocking pool.
    pub async fn run<T, F>(self: &Arc<Self>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Token<'static>) -> Result<T> + Send + 'static,
    {
        let permit =
            self.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::Interrupted {
                    what: "the server is shutting down".into(),
                })?;
        let pool = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let token = pool.take()?;
            pool.calls.fetch_add(1, Ordering::Relaxed);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&token)))
                .unwrap_or_else(|_| Err(Error::Internal("token work panicked".into())));
            let token = match &result {
                Err(e) => {
                    pool.failures.fetch_add(1, Ordering::Relaxed);
                    if session_lost(e) {
                        pool.reopen().unwrap_or(token)
                    } else {
                        token
                    }
                }
                Ok(_) => token,
            };
            pool.give_back(token);
            drop(permit);
            result
        })
        .await;
        joined.map_err(|e| Error::Internal(format!("token work did not finish: {e}")))?
    }

    /// [`SessionPool::run`], waiting at most `wait` for a session
    /// (HK1905, `seconds` in its message). Work that was given up never
    /// starts, and what it holds (a token lock) is let go at once; work
    /// that started is waited for, as a PKCS#11 call cannot be cancelled
    /// half-way.
    pub async fn run_within<T, F>(
        self: &Arc<Self>,
        wait: Duration,
        seconds: u64,
        work: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Token<'static>) -> Result<T> + Send + 'static,
    {
        let pool = self.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let phase = Arc::new(AtomicU8::new(WAITING));
        let flag = phase.clone();
        let task = tokio::spawn(async move {
            let result = pool
                .run(move |token| {
                    if flag
                        .compare_exchange(WAITING, STARTED, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        return Err(ServeError::TimedOut { seconds }.into());
                    }
                    work(token)
                })
                .await;
            let _ = tx.send(result);
        });
        let lost = |_| Error::Internal("token work was lost".into());
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(r) => r.map_err(lost)?,
            Err(_) => {
                let gave_up = phase
                    .compare_exchange(WAITING, GAVE_UP, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                if gave_up {
                    // Still waiting for a permit: the work (and what it
                    // owns) is dropped now, not when a session frees up.
                    task.abort();
                    Err(ServeError::TimedOut { seconds }.into())
                } else {
                    rx.await.map_err(lost)?
                }
            }
        }
    }

    /// A new logged-in session in place of one the token dropped; `None`
    /// (the old one is kept, and tried again next time) if the token does
    /// not answer yet.
    fn reopen(&self) -> Option<Token<'static>> {
        let fresh = self
            .module
            .find_token(self.selector.as_deref())
            .and_then(|slot| self.module.open(slot, Login::User(&self.pin)));
        match fresh {
            Ok(t) => {
                self.reopened.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("a session on the token was lost; a new one replaces it");
                Some(t)
            }
            Err(e) => {
                tracing::warn!("a session on the token was lost and cannot be replaced yet: {e}");
                None
            }
        }
    }

    fn take(&self) -> Result<Token<'static>> {
        self.idle
            .lock()
            .map_err(|_| Error::Internal("the session pool is poisoned".into()))?
            .pop()
            .ok_or_else(|| Error::Internal("no idle session under a permit".into()))
    }

    fn give_back(&self, token: Token<'static>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(token);
        }
    }

    /// Wait for the work under way, then close every session (the login
    /// ends with the last one). No work starts afterwards.
    pub async fn close(&self) {
        if let Ok(all) = self.permits.acquire_many(self.size as u32).await {
            all.forget();
        }
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
