//! Unit tests of the observing layer's parts that need no token: a handler
//! that panics is answered in its family's shape, and the request's note
//! records the failure for its audit line.

use std::io::{Read, Write};

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::get;
use axum::Router;

use super::guarded;
use crate::serve::state::RequestNote;

/// GET `path` on `addr` with a plain socket: the status and the body.
fn get_raw(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_panicking_handler_is_answered_in_its_familys_shape() {
    let note = RequestNote::default();
    let seen = note.clone();
    let app = Router::new()
        .route(
            "/api/v1/boom",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("a handler with a bug");
                }
                "never"
            }),
        )
        .route("/api/v1/fine", get(|| async { "fine" }))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let note = seen.clone();
            async move {
                let path = req.uri().path().to_string();
                guarded(&path, &note, next, req).await
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, body) = tokio::task::spawn_blocking(move || get_raw(addr, "/api/v1/boom"))
        .await
        .expect("the client ran");
    assert_eq!(status, 500, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(v["error_code"], "HK1902", "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("panicked")),
        "{v}"
    );
    let outcome = note
        .with(|n| n.outcome.clone())
        .flatten()
        .expect("the note has the failure");
    assert!(!outcome.ok);
    assert_eq!(outcome.code.as_deref(), Some("HK1902"));

    // A handler that does not panic is answered as it answers.
    let (status, body) = tokio::task::spawn_blocking(move || get_raw(addr, "/api/v1/fine"))
        .await
        .expect("the client ran");
    assert_eq!((status, body.as_str()), (200, "fine"));
}
