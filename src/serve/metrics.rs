//! `GET /metrics`: Prometheus text format. Requests by route, method and
//! status; a latency histogram per route; token calls and their failures;
//! sessions busy. Counted in memory, per process: each replica has its own.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use super::pool::SessionPool;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counts {
    /// (route, method, status) → requests.
    requests: BTreeMap<(String, String, u16), u64>,
    /// route → latency.
    latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
}

impl Metrics {
    pub fn record(&self, route: &str, method: &str, status: u16, took: Duration) {
        // Methods are labels: anything but the standard ones is one label,
        // so that clients cannot grow the table with made-up methods.
        const STANDARD: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
        ];
        let method = if STANDARD.contains(&method) {
            method
        } else {
            "OTHER"
        };
        let Ok(mut c) = self.counts.lock() else {
            return;
        };
        *c.requests
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let h = c.latency.entry(route.to_string()).or_default();
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The exposition text.
    pub fn render(&self, pool: &SessionPool) -> String {
        let mut out = String::new();
        let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP hsmkey_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE hsmkey_http_requests_total counter\n");
        if let Ok(c) = self.counts.lock() {
            for ((route, method, status), n) in &c.requests {
                let _ = writeln!(
                    out,
                    "hsmkey_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    label(route),
                    label(method)
                );
            }
            out.push_str("# HELP hsmkey_http_request_duration_seconds Time from request to response, by route.\n");
            out.push_str("# TYPE hsmkey_http_request_duration_seconds histogram\n");
            for (route, h) in &c.latency {
                let route = label(route);
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "hsmkey_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "hsmkey_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "hsmkey_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "hsmkey_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP hsmkey_token_calls_total Units of token work run on a session.\n");
        out.push_str("# TYPE hsmkey_token_calls_total counter\n");
        let _ = writeln!(
            out,
            "hsmkey_token_calls_total {}",
            pool.calls.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP hsmkey_token_call_failures_total Units of token work that ended in an error.\n",
        );
        out.push_str("# TYPE hsmkey_token_call_failures_total counter\n");
        let _ = writeln!(
            out,
            "hsmkey_token_call_failures_total {}",
            pool.failures.load(Ordering::Relaxed)
        );
        out.push_str("# HELP hsmkey_sessions_reopened_total Sessions replaced after the token dropped them.\n");
        out.push_str("# TYPE hsmkey_sessions_reopened_total counter\n");
        let _ = writeln!(
            out,
            "hsmkey_sessions_reopened_total {}",
            pool.reopened.load(Ordering::Relaxed)
        );
        out.push_str("# HELP hsmkey_sessions Sessions on the token, and those lent out now.\n");
        out.push_str("# TYPE hsmkey_sessions gauge\n");
        let _ = writeln!(out, "hsmkey_sessions{{state=\"open\"}} {}", pool.size());
        let _ = writeln!(out, "hsmkey_sessions{{state=\"busy\"}} {}", pool.busy());
        out
    }
}
