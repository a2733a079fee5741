//! Parallel sessions for bulk work (`--sessions N`).
//!
//! A network HSM answers each call in about a millisecond, most of it spent
//! on the wire; one session leaves it idle. Here N worker threads each open
//! their own session on the token's slot (PKCS#11 login state belongs to the
//! application, so they share the main session's login) and take items one at
//! a time; the calling thread hands out the items, receives the results and
//! passes them on in the items' order, so output stays the same whatever the
//! number of sessions. At most [`WINDOW_PER_SESSION`] items per session are
//! out at once, so memory does not grow with the number of keys.
//!
//! The module was initialized with CKF_OS_LOCKING_OK ([`super::raw::initialize`]),
//! and cryptoki's `Session` is `Send` but not `Sync`: each session stays in the
//! thread that opened it.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;

use super::{Login, Token};
use crate::error::{Error, Result};

/// The most sessions `--sessions` accepts.
pub const MAX_SESSIONS: usize = 64;

/// Items handed out per session before the first result must come back.
const WINDOW_PER_SESSION: usize = 4;

enum Msg<T> {
    Done(u64, Result<T>),
    /// A worker gave back an item unprocessed (the run was stopping).
    Dropped,
    /// A worker could not open its session.
    NoSession(Error),
}

/// Run `work` on every item, on `token.sessions()` sessions, and hand each
/// result to `sink` in the items' order.
///
/// On the first error (from `items`, `work` or `sink`) no further item is
/// started; the results of items already under way are handed to `salvage`
/// (in no particular order) so the caller can undo what they did, and that
/// first error is returned. `work` must itself undo what it did for an item
/// it fails. With one session everything runs on the calling thread and the
/// token's own session.
pub fn run_ordered<I, T, W, S, V>(
    token: &Token<'_>,
    items: impl Iterator<Item = Result<I>>,
    work: W,
    mut sink: S,
    mut salvage: V,
) -> Result<()>
where
    I: Send,
    T: Send,
    W: Fn(&Token<'_>, I) -> Result<T> + Sync,
    S: FnMut(T) -> Result<()>,
    V: FnMut(T),
{
    let sessions = token.sessions();
    if sessions <= 1 {
        for item in items {
            let result = work(token, item?)?;
            sink(result)?;
        }
        return Ok(());
    }

    let module = token.module();
    let slot = token.slot();
    let stop = AtomicBool::new(false);
    let (work_tx, work_rx) = mpsc::channel::<(u64, I)>();
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<Msg<T>>();

    std::thread::scope(|scope| {
        for _ in 0..sessions {
            let done_tx = done_tx.clone();
            let (work_rx, stop, work) = (&work_rx, &stop, &work);
            scope.spawn(move || {
                let worker = match module.open(slot, Login::None) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = done_tx.send(Msg::NoSession(e));
                        return;
                    }
                };
                loop {
                    // The lock is held only to take the next item.
                    let next = match work_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, item)) = next else {
                        return; // the sender is gone: no more work
                    };
                    let msg = if stop.load(Ordering::SeqCst) {
                        Msg::Dropped
                    } else {
                        // A panic must still answer for its item, or the
                        // calling thread would wait for it forever.
                        let result =
                            std::panic::catch_unwind(AssertUnwindSafe(|| work(&worker, item)))
                                .unwrap_or_else(|_| {
                                    Err(Error::Internal(format!(
                                        "a session worker panicked on item {index}"
                                    )))
                                });
                        Msg::Done(index, result)
                    };
                    if done_tx.send(msg).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);

        let window = (sessions * WINDOW_PER_SESSION) as u64;
        let mut items = items.fuse();
        let mut sent = 0u64; // items handed out
        let mut settled = 0u64; // items whose result came back (or was dropped)
        let mut next_out = 0u64; // the next index to give to `sink`
        let mut pending: BTreeMap<u64, T> = BTreeMap::new();
        let mut workers = sessions;
        let mut failure: Option<Error> = None;
        let mut exhausted = false;

        loop {
            // Hand out work up to the window, unless stopping.
            while failure.is_none() && !exhausted && sent - next_out < window {
                match items.next() {
                    Some(Ok(item)) => {
                        if work_tx.send((sent, item)).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    Some(Err(e)) => failure = Some(e),
                    None => exhausted = true,
                }
            }
            if failure.is_some() {
                stop.store(true, Ordering::SeqCst);
            }
            if settled == sent && (exhausted || failure.is_some()) {
                break;
            }
            if workers == 0 {
                // Every worker failed to open its session.
                failure.get_or_insert_with(|| {
                    Error::Internal("no session could be opened for the workers".into())
                });
                break;
            }
            let Ok(msg) = done_rx.recv() else {
                failure.get_or_insert_with(|| {
                    Error::Internal("the session workers stopped unexpectedly".into())
                });
                break;
            };
            match msg {
                Msg::NoSession(e) => {
                    workers -= 1;
                    failure.get_or_insert(e);
                }
                Msg::Dropped => settled += 1,
                Msg::Done(index, result) => {
                    settled += 1;
                    match result {
                        Ok(value) if failure.is_none() => {
                            pending.insert(index, value);
                            while let Some(value) = pending.remove(&next_out) {
                                next_out += 1;
                                if let Err(e) = sink(value) {
                                    failure = Some(e);
                                    break;
                                }
                            }
                        }
                        Ok(value) => salvage(value),
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                }
            }
        }
        // No more work: the workers finish their current item and return.
        stop.store(true, Ordering::SeqCst);
        drop(work_tx);
        // Items still under way when the run failed.
        for msg in done_rx.iter() {
            if let Msg::Done(_, Ok(value)) = msg {
                salvage(value);
            }
        }
        for (_, value) in std::mem::take(&mut pending) {
            salvage(value);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

/// Check a `--sessions` value.
pub fn check_sessions(n: usize) -> Result<usize> {
    if (1..=MAX_SESSIONS).contains(&n) {
        Ok(n)
    } else {
        Err(Error::Usage {
            message: format!("--sessions must be between 1 and {MAX_SESSIONS}, not {n}"),
        })
    }
}
