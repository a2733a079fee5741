//! `GET /metrics`: the OpenMetrics text exposition, made by the
//! `prometheus-client` crate (the Prometheus project's Rust client).
//! Requests by route, method and status; a latency histogram per route;
//! token calls and their failures; sessions open and busy. Counted in
//! memory, per process: each replica has its own.

use std::time::Duration;

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::pool::SessionPool;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionState {
    state: &'static str,
}

type Latency = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// The server's own metrics; the pool's are read at each scrape.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Latency = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        let mut registry = Registry::default();
        // OpenMetrics names a counter without `_total` and adds it to the
        // sample: hsmkey_http_requests_total.
        registry.register(
            "hsmkey_http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "hsmkey_http_request_duration",
            "Time from request to response, by route",
            Unit::Seconds,
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
        }
    }
}

/// Methods are labels: anything but the standard ones is one label, so
/// that clients cannot grow the table with made-up methods.
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("OTHER")
}

impl Metrics {
    pub fn record(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method_label(method),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// The exposition text: the server's metrics, then the pool's counts
    /// as they are now, then `# EOF`.
    pub fn render(&self, pool: &SessionPool) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        self.exposition(&PoolCounts {
            calls: pool.calls.load(Relaxed),
            failures: pool.failures.load(Relaxed),
            reopened: pool.reopened.load(Relaxed),
            open: pool.size(),
            busy: pool.busy(),
        })
    }

    fn exposition(&self, pool: &PoolCounts) -> String {
        let mut now = Registry::default();
        now.register(
            "hsmkey_token_calls",
            "Units of token work run on a session",
            ConstCounter::new(pool.calls),
        );
        now.register(
            "hsmkey_token_call_failures",
            "Units of token work that ended in an error",
            ConstCounter::new(pool.failures),
        );
        now.register(
            "hsmkey_sessions_reopened",
            "Sessions replaced after the token dropped them",
            ConstCounter::new(pool.reopened),
        );
        let sessions = Family::<SessionState, Gauge>::default();
        for (state, n) in [("open", pool.open), ("busy", pool.busy)] {
            sessions
                .get_or_create(&SessionState { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        now.register(
            "hsmkey_sessions",
            "Sessions on the token, and those lent out now",
            sessions,
        );
        let mut out = String::new();
        // Writing to a String cannot fail; an encoding error would be a
        // label the crate refuses, and leaves what was written.
        let _ = text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode_registry(&mut out, &now))
            .and_then(|()| text::encode_eof(&mut out));
        out
    }
}

/// The pool's counts at a scrape.
struct PoolCounts {
    calls: u64,
    failures: u64,
    reopened: u64,
    open: usize,
    busy: usize,
}

#[cfg(test)]
mod tests;
