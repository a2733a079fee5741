//! Requests refused without a client (docs/SERVER.md, "Refusals"): no or
//! unknown credentials (401), a throttled source (429), a path no route
//! has, a body sent too slowly. Each is counted here by source (an IPv4
//! address, an IPv6 /64) and the counts become one signed `serve refused`
//! line per source per `refusal_window`, carrying the count, the first and
//! last time and the requests by path, status and code.
//!
//! One task writes them, one line at a time, so at most one pooled session
//! ever signs refusals; at most `refusal_sources_per_window` sources get a
//! line of their own per window and the others share one more (source
//! `*`). A flood of bad credentials therefore costs the token a bounded
//! number of lines per window whatever its size, and the clients that
//! authenticate keep the sessions. What is counted when the server stops is
//! written before its `serve stop` line, once every request's task has
//! ended; a line that cannot be written yet is kept for the next window
//! (at the stop, the `serve stop` line counts what is left).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use jiff::Timestamp;

use super::access::SourceBucket;
use super::state::AppState;
use crate::audit::{Facts, Outcome, Recorder, Refused, RefusedRequests};
use crate::error::Result;

/// Kinds of request (method, path, status, code) listed per line.
pub const MAX_KINDS: usize = 16;

/// A path longer than this is cut (at a character boundary), `...`
/// included.
pub const MAX_PATH: usize = 256;

/// Methods listed as they are; any other is `OTHER`, so that clients
/// cannot grow the kinds with made-up methods (as the metrics do).
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// The `op` of the lines.
pub const OP: &str = "serve refused";

/// The refusals counted since the last lines were written.
pub struct Refusals {
    counted: Mutex<Counted>,
    max_sources: usize,
    /// Held while lines are written: one writer, so one session, at most.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Counted {
    by_source: HashMap<SourceBucket, Tally>,
    /// Sources past `max_sources`, together.
    others: Option<Tally>,
}

/// Whose refusals a line counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    Source(SourceBucket),
    /// The sources past `refusal_sources_per_window`.
    Others,
}

impl std::fmt::Display for Whose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Whose::Source(b) => write!(f, "{b}"),
            Whose::Others => f.write_str("*"),
        }
    }
}

/// The refusals of one source (or of the others) in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub first: Timestamp,
    pub last: Timestamp,
    pub requests: Vec<RefusedRequests>,
    pub unlisted: u64,
}

impl Tally {
    fn new(at: Timestamp) -> Tally {
        Tally {
            count: 0,
            first: at,
            last: at,
            requests: Vec::new(),
            unlisted: 0,
        }
    }

    fn add(&mut self, at: Timestamp, kind: RefusedRequests) {
        self.count = self.count.saturating_add(kind.count);
        self.first = self.first.min(at);
        self.last = self.last.max(at);
        let same = self.requests.iter().position(|r| {
            (r.status, &r.method, &r.path, &r.code)
                == (kind.status, &kind.method, &kind.path, &kind.code)
        });
        match same {
            Some(i) => self.requests[i].count = self.requests[i].count.saturating_add(kind.count),
            None if self.requests.len() < MAX_KINDS => self.requests.push(kind),
            None => self.unlisted = self.unlisted.saturating_add(kind.count),
        }
    }

    fn merge(&mut self, other: Tally) {
        let (first, last) = (other.first, other.last);
        for kind in other.requests {
            self.add(first, kind);
        }
        self.first = self.first.min(first);
        self.last = self.last.max(last);
        self.count = self.count.saturating_add(other.unlisted);
        self.unlisted = self.unlisted.saturating_add(other.unlisted);
    }

    /// What the line says: its `refused` member and its result (the code
    /// most requests were answered with).
    pub fn line(&self, whose: Whose) -> (Refused, Outcome) {
        let mut statuses: Vec<(u16, u64)> = Vec::new();
        let mut codes: Vec<(&str, u64)> = Vec::new();
        for r in &self.requests {
            match statuses.iter_mut().find(|(s, _)| *s == r.status) {
                Some((_, n)) => *n += r.count,
                None => statuses.push((r.status, r.count)),
            }
            if let Some(code) = r.code.as_deref() {
                match codes.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, n)) => *n += r.count,
                    None => codes.push((code, r.count)),
                }
            }
        }
        statuses.sort();
        let mut by_status: Vec<String> =
            statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        if self.unlisted > 0 {
            by_status.push(format!("{} unlisted", self.unlisted));
        }
        // The most frequent code; the first seen of equals.
        let code = codes
            .iter()
            .fold(None::<(&str, u64)>, |best, &(c, n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((c, n)),
            })
            .map(|(c, _)| c.to_string());
        let outcome = Outcome {
            ok: false,
            code,
            message: Some(format!(
                "{} requests from {whose} refused without a client ({})",
                self.count,
                by_status.join(", ")
            )),
        };
        let refused = Refused {
            source: whose.to_string(),
            count: self.count,
            first: format!("{:.3}", self.first),
            last: format!("{:.3}", self.last),
            requests: self.requests.clone(),
            unlisted: self.unlisted,
        };
        (refused, outcome)
    }
}

/// `path` cut to [`MAX_PATH`] bytes, the `...` that ends it included.
fn cut(path: &str) -> String {
    if path.len() <= MAX_PATH {
        return path.to_string();
    }
    let mut end = MAX_PATH - 3;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &path[..end])
}

impl Refusals {
    pub fn new(max_sources: usize) -> Refusals {
        Refusals {
            counted: Mutex::new(Counted::default()),
            max_sources: max_sources.max(1),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// Count a refused request from `source`.
    pub fn record(
        &self,
        source: IpAddr,
        method: &str,
        path: &str,
        status: u16,
        code: Option<&str>,
    ) {
        self.record_at(
            Whose::Source(SourceBucket::of(source)),
            Timestamp::now(),
            RefusedRequests {
                method: METHODS
                    .into_iter()
                    .find(|m| *m == method)
                    .unwrap_or("OTHER")
                    .to_string(),
                path: cut(path),
                status,
                code: code.map(str::to_string),
                count: 1,
            },
        );
    }

    fn record_at(&self, whose: Whose, at: Timestamp, kind: RefusedRequests) {
        let mut t = Tally::new(at);
        t.add(at, kind);
        self.put_back(whose, t);
    }

    /// Add `tally` to what is counted now (refusals counted, or lines that
    /// could not be written and wait for the next window).
    pub fn put_back(&self, whose: Whose, tally: Tally) {
        // Counts are plain numbers: a panic elsewhere leaves them usable.
        let mut c = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = match whose {
            Whose::Source(b) if c.by_source.contains_key(&b) => Some(b),
            Whose::Source(b) if c.by_source.len() < self.max_sources => Some(b),
            _ => None,
        };
        match bucket {
            Some(b) => match c.by_source.get_mut(&b) {
                Some(t) => t.merge(tally),
                None => {
                    c.by_source.insert(b, tally);
                }
            },
            None => match &mut c.others {
                Some(t) => t.merge(tally),
                None => c.others = Some(tally),
            },
        }
    }

    /// Everything counted, in the order of each source's first refusal,
    /// the others last; the counts start again from nothing.
    pub fn take(&self) -> Vec<(Whose, Tally)> {
        let counted = {
            let mut c = self.counted.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *c)
        };
        let mut lines: Vec<(Whose, Tally)> = counted
            .by_source
            .into_iter()
            .map(|(b, t)| (Whose::Source(b), t))
            .collect();
        lines.sort_by_key(|(w, t)| (t.first, format!("{w}")));
        lines.extend(counted.others.map(|t| (Whose::Others, t)));
        lines
    }
}

/// Write a line for each source counted, one after the other; returns how
/// many. A line that cannot be written (the log or the token failing; no
/// session within `request_timeout`, when `bounded`) is kept, with those
/// after it, for the next time.
pub async fn write_lines(state: &AppState, bounded: bool) -> Result<usize> {
    let refusals = state.refusals();
    let _one_writer = refusals.writing.lock().await;
    let mut lines = refusals.take().into_iter();
    let mut written = 0;
    while let Some((whose, tally)) = lines.next() {
        if let Err(e) = write_line(state, whose, &tally, bounded).await {
            refusals.put_back(whose, tally);
            for (w, t) in lines {
                refusals.put_back(w, t);
            }
            return Err(e);
        }
        written += 1;
    }
    Ok(written)
}

async fn write_line(state: &AppState, whose: Whose, tally: &Tally, bounded: bool) -> Result<()> {
    let (refused, outcome) = tally.line(whose);
    let facts = Facts {
        refused: Some(refused),
        ..Facts::default()
    };
    let path = state.audit_log().to_path_buf();
    let sign = move |token: &crate::hsm::Token<'static>| {
        let mut recorder = Recorder::begin(&path, OP)?;
        recorder.set_client("unauthenticated");
        recorder.attach(token)?;
        *recorder.facts() = facts;
        recorder.finish_as(outcome)
    };
    if !bounded {
        return state.pool().run(sign).await;
    }
    let limit = state.config().request_timeout;
    state.pool().run_within(limit, limit.as_secs(), sign).await
}

/// The writer: every `refusal_window`, the lines of what was counted;
/// when `stop` fires (no request is left), the last ones, each waiting for
/// a session as long as it takes; their failure is the server's.
pub async fn writer(state: AppState, mut stop: tokio::sync::oneshot::Receiver<()>) -> Result<()> {
    let window = state.config().refusal_window;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(window) => {
                if let Err(e) = write_lines(&state, true).await {
                    tracing::error!("refused requests are not recorded yet (kept for the next window): {e}");
                }
            }
            _ = &mut stop => return write_lines(&state, false).await.map(drop),
        }
    }
}

#[cfg(test)]
mod tests;
