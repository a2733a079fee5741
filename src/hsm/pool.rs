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

use super::Token;
use crate::error::{Error, Result};

/// The most sessions `--sessions` accepts.
pub const MAX_SESSIONS: usize = 64;

/// Items handed out per session before the first result must come back.
const WINDOW_PER_SESSION: usize = 4;

enum Msg<T> {
    /// A worker has its session and waits for items.
    Ready,
    /// A worker could not open its session.
    NoSession(Error),
    Done(u64, Result<T>),
    /// A worker gave back an item unprocessed (the run was stopping).
    Dropped,
}

/// The error a run ends with: the one of the earliest item, so the same
/// bundle and token give the same error whatever the timing of the sessions.
struct Failure(Option<(u64, Error)>);

impl Failure {
    fn note(&mut self, index: u64, e: Error) {
        if self.0.as_ref().is_none_or(|(first, _)| index < *first) {
            self.0 = Some((index, e));
        }
    }

    fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

/// Run `work` on every item, on `token.sessions()` sessions, and hand each
/// result to `sink` in the items' order.
///
/// Every worker opens its session before the first item is handed out; one
/// that cannot fails the run before anything is done. On the first error
/// (from `items`, `work` or `sink`) no further item is started; the results
/// of items already under way are handed to `salvage` (in no particular
/// order) so the caller can undo what they did, and the error of the
/// earliest failing item is returned. `work` must itself undo what it did
/// for an item it fails. A panic on the calling thread (in `items`, `sink`
/// or `salvage`) still lets the items under way finish and reach `salvage`
/// before it goes on. With one session everything runs on the calling
/// thread and the token's own session.
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
    let summary = token.summary();
    let stop = AtomicBool::new(false);
    let (work_tx, work_rx) = mpsc::channel::<(u64, I)>();
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<Msg<T>>();

    std::thread::scope(|scope| {
        for _ in 0..sessions {
            let done_tx = done_tx.clone();
            let (work_rx, stop, work) = (&work_rx, &stop, &work);
            scope.spawn(move || {
                let opened = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    module.open_worker(slot, summary)
                }))
                .unwrap_or_else(|_| {
                    Err(Error::Internal(
                        "a session worker panicked opening its session".into(),
                    ))
                });
                let worker = match opened {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = done_tx.send(Msg::NoSession(e));
                        return;
                    }
                };
                if done_tx.send(Msg::Ready).is_err() {
                    return;
                }
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

        let mut failure = Failure(None);
        let mut pending: BTreeMap<u64, T> = BTreeMap::new();
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            dispatch(
                sessions,
                items,
                &work_tx,
                &done_rx,
                &stop,
                &mut failure,
                &mut pending,
                &mut sink,
                &mut salvage,
            )
        }));
        // No more work: the workers finish their current item and return.
        stop.store(true, Ordering::SeqCst);
        drop(work_tx);
        // Items still under way when the run stopped.
        for msg in done_rx.iter() {
            match msg {
                Msg::Done(_, Ok(value)) => salvage(value),
                Msg::Done(index, Err(e)) => failure.note(index, e),
                _ => {}
            }
        }
        for (_, value) in std::mem::take(&mut pending) {
            salvage(value);
        }
        if let Err(panic) = run {
            std::panic::resume_unwind(panic);
        }
        match failure.0 {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    })
}

/// The calling thread's side of [`run_ordered`]: wait for every worker's
/// session, hand out items within the window, pass results on in order.
#[allow(clippy::too_many_arguments)]
fn dispatch<I, T, S, V>(
    sessions: usize,
    items: impl Iterator<Item = Result<I>>,
    work_tx: &mpsc::Sender<(u64, I)>,
    done_rx: &mpsc::Receiver<Msg<T>>,
    stop: &AtomicBool,
    failure: &mut Failure,
    pending: &mut BTreeMap<u64, T>,
    sink: &mut S,
    salvage: &mut V,
) where
    S: FnMut(T) -> Result<()>,
    V: FnMut(T),
{
    // Every session first, so that a token short of sessions fails the run
    // the same way every time, before any work.
    let mut ready = 0;
    while ready < sessions {
        match done_rx.recv() {
            Ok(Msg::Ready) => ready += 1,
            Ok(Msg::NoSession(e)) => {
                failure.note(0, e);
                return;
            }
            Ok(_) | Err(_) => {
                failure.note(
                    0,
                    Error::Internal("the session workers stopped unexpectedly".into()),
                );
                return;
            }
        }
    }

    let window = (sessions * WINDOW_PER_SESSION) as u64;
    let mut items = items.fuse();
    let mut sent = 0u64; // items handed out
    let mut settled = 0u64; // items whose result came back (or was dropped)
    let mut next_out = 0u64; // the next index to give to `sink`
    let mut exhausted = false;
    loop {
        // Hand out work up to the window, unless stopping.
        while !failure.is_some() && !exhausted && sent - next_out < window {
            match items.next() {
                Some(Ok(item)) => {
                    if work_tx.send((sent, item)).is_err() {
                        failure.note(
                            sent,
                            Error::Internal("the session workers stopped unexpectedly".into()),
                        );
                        break;
                    }
                    sent += 1;
                }
                Some(Err(e)) => failure.note(sent, e),
                None => exhausted = true,
            }
        }
        if failure.is_some() {
            stop.store(true, Ordering::SeqCst);
        }
        if settled == sent && (exhausted || failure.is_some()) {
            return;
        }
        let Ok(msg) = done_rx.recv() else {
            failure.note(
                sent,
                Error::Internal("the session workers stopped unexpectedly".into()),
            );
            return;
        };
        match msg {
            Msg::Ready | Msg::NoSession(_) => {}
            Msg::Dropped => settled += 1,
            Msg::Done(index, result) => {
                settled += 1;
                match result {
                    Ok(value) if !failure.is_some() => {
                        pending.insert(index, value);
                        while let Some(value) = pending.remove(&next_out) {
                            let at = next_out;
                            next_out += 1;
                            if let Err(e) = sink(value) {
                                failure.note(at, e);
                                break;
                            }
                        }
                    }
                    Ok(value) => salvage(value),
                    Err(e) => failure.note(index, e),
                }
            }
        }
    }
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
