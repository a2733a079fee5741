//! The exposition as `prometheus-client` writes it: the documented names,
//! labels and histogram, the pool's counts, one label for made-up methods.

use std::time::Duration;

use super::{Metrics, PoolCounts};

fn counts() -> PoolCounts {
    PoolCounts {
        calls: 7,
        failures: 2,
        reopened: 1,
        open: 4,
        busy: 3,
    }
}

#[test]
fn the_documented_names_and_labels() {
    let m = Metrics::default();
    m.record("/healthz", "GET", 200, Duration::from_millis(3));
    let text = m.exposition(&counts());
    for line in [
        "# TYPE hsmkey_http_requests counter",
        "hsmkey_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1",
        "# TYPE hsmkey_http_request_duration_seconds histogram",
        "# UNIT hsmkey_http_request_duration_seconds seconds",
        "hsmkey_http_request_duration_seconds_bucket{le=\"0.0025\",route=\"/healthz\"} 0",
        "hsmkey_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/healthz\"} 1",
        "hsmkey_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/healthz\"} 1",
        "hsmkey_http_request_duration_seconds_count{route=\"/healthz\"} 1",
        "hsmkey_token_calls_total 7",
        "hsmkey_token_call_failures_total 2",
        "hsmkey_sessions_reopened_total 1",
        "hsmkey_sessions{state=\"open\"} 4",
        "hsmkey_sessions{state=\"busy\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
}

#[test]
fn made_up_methods_are_one_label_and_routes_are_escaped() {
    let m = Metrics::default();
    m.record("/a\"b", "BREW", 405, Duration::ZERO);
    m.record("/a\"b", "WHEN", 405, Duration::ZERO);
    let text = m.exposition(&counts());
    assert!(
        text.lines().any(|l| l
            == "hsmkey_http_requests_total{route=\"/a\\\"b\",method=\"OTHER\",status=\"405\"} 2"),
        "{text}"
    );
    assert!(!text.contains("BREW") && !text.contains("WHEN"), "{text}");
}
