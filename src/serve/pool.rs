//! The server's sessions: N sessions on the token, logged in once with the
//! configured PIN (PKCS#11 login state belongs to the application, so every
//! session of the process shares it), lent one at a time to token work on
//! tokio's blocking pool. A request waits for a free session; the work, once
//! started, always finishes and gives its session back, even when the
//! request that asked for it has timed out or its client has gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::hsm::{Login, Module, Token, TokenSummary};

/// The sessions, and counts for /metrics.
pub struct SessionPool {
    module: &'static Module,
    idle: Mutex<Vec<Token<'static>>>,
    permits: Arc<Semaphore>,
    size: usize,
    summary: TokenSummary,
    module_args: Option<String>,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
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
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
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
            if result.is_err() {
                pool.failures.fetch_add(1, Ordering::Relaxed);
            }
            pool.give_back(token);
            drop(permit);
            result
        })
        .await;
        joined.map_err(|e| Error::Internal(format!("token work did not finish: {e}")))?
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
