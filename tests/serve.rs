//! `hsmkey serve` driven over HTTP (docs/SERVER.md): each route's answers
//! byte-checked against what the test put in the token, every error status
//! with its family's body, each capability enforced, the audit line of
//! every request, concurrency, SIGTERM, and configuration errors.

mod common;

use aes_kw::KekAes128;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use common::serve::{
    api_key, audit_lines, bearer, clients_toml, refused_count, refused_lines, Server,
};
use common::{code, TestToken, KEK_VALUE};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use serde_json::Value;

const EXPORT_KEK: [u8; 16] = [0x0f; 16];

fn dek_value() -> Vec<u8> {
    (100u8..132).collect()
}

/// A token with the Piiano export key and KEK (known values) and a
/// StoredSafe KEK.
fn token() -> TestToken {
    let t = TestToken::new();
    let put = |label: &str, value: &[u8], extractable: bool, kek: bool| {
        t.put_secret(vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(label.as_bytes().to_vec()),
            Attribute::Sensitive(true),
            Attribute::Extractable(extractable),
            Attribute::Encrypt(true),
            Attribute::Wrap(kek),
            Attribute::Unwrap(kek),
            Attribute::Value(value.to_vec()),
        ]);
    };
    put("export-kek", &EXPORT_KEK, false, true);
    put("export-dek", &dek_value(), true, false);
    t.put_kek("storedsafe-kek", &KEK_VALUE);
    t
}

fn full_config(t: &TestToken, extra_top: &str) -> String {
    format!(
        "{}[piiano]\nexport_key = \"export-dek\"\nexport_kek = \"export-kek\"\n[storedsafe]\nvaults = [\"179\"]\nkek = \"storedsafe-kek\"\n{}",
        t.serve_toml(extra_top),
        clients_toml()
    )
}

fn start(t: &TestToken) -> Server {
    t.serve(&full_config(t, "sessions = 4\n"))
}

const EXPORT: &str = "/api/pvlt/1.0/system/admin/export_key";

/// Piiano's error body: Piiano's code (`pv`; hsmkey's where Piiano
/// documents none for the status), hsmkey's in `context.hsmkey_code`, and
/// a context of strings only, as Piiano's client types it.
fn piiano_error(v: &Value, pv: &str, hk: &str) {
    assert_eq!(v["error_code"], pv, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let context = v["context"].as_object().expect("context");
    assert_eq!(context["hsmkey_code"], hk, "{v}");
    assert!(context.values().all(Value::is_string), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
}

#[test]
fn piiano_export_key_unwraps_to_the_key_the_test_put_in() {
    let t = token();
    let s = start(&t);
    let a = s.get(
        &format!("{EXPORT}?custom_audit=q3-rotation"),
        &[(bearer("exporter").0, &bearer("exporter").1)],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v.as_object().unwrap().len(), 1, "only export_key: {v}");
    let wrapped = B64.decode(v["export_key"].as_str().unwrap()).unwrap();
    let mut unwrapped = vec![0u8; wrapped.len() - 8];
    KekAes128::new(&EXPORT_KEK.into())
        .unwrap(&wrapped, &mut unwrapped)
        .unwrap();
    assert_eq!(unwrapped, dek_value());
    let lines = audit_lines(&t);
    let line = lines
        .iter()
        .rfind(|l| l["op"] == "serve piiano export-key")
        .expect("the request's line");
    assert_eq!(line["client"], "exporter");
    assert_eq!(line["request"]["custom_audit"], "q3-rotation");
    assert_eq!(line["request"]["status"], 200);
    assert_eq!(line["keys"][0]["label"], "export-dek");
    assert!(line["result"]["ok"].as_bool().unwrap());
}

#[test]
fn piiano_errors_have_piiano_shape_and_status() {
    let t = token();
    let s = start(&t);
    let a = s.get(EXPORT, &[]);
    assert_eq!(a.status, 401);
    piiano_error(&a.json(), "PV1005", "HK1109");
    let a = s.get(EXPORT, &[("authorization", "Bearer not-a-key")]);
    assert_eq!(a.status, 401);
    piiano_error(&a.json(), "PV1005", "HK1109");
    let a = s.get(
        EXPORT,
        &[("authorization", &format!("Basic {}", api_key("exporter")))],
    );
    assert_eq!(a.status, 401, "the key must come as Bearer");
    let a = s.get(EXPORT, &[(bearer("reader").0, &bearer("reader").1)]);
    assert_eq!(a.status, 403);
    let v = a.json();
    piiano_error(&v, "PV1007", "HK1110");
    assert_eq!(v["context"]["username"], "reader");
    let a = s.post(
        EXPORT,
        &[(bearer("exporter").0, &bearer("exporter").1)],
        b"{}",
    );
    assert_eq!(a.status, 405);
    piiano_error(&a.json(), "HK1007", "HK1007");
    let a = s.get("/api/pvlt/1.0/system/admin/nothing", &[]);
    assert_eq!(a.status, 404);
    piiano_error(&a.json(), "PV1004", "HK1013");

    // Without [piiano]: 404; a KEK that may not wrap: 409.
    let plain = t.serve(&format!("{}{}", t.serve_toml(""), clients_toml()));
    let a = plain.get(EXPORT, &[(bearer("exporter").0, &bearer("exporter").1)]);
    assert_eq!(a.status, 404);
    piiano_error(&a.json(), "PV1004", "HK1013");
    let before = t.object_count();
    let wrong = t.serve(&format!(
        "{}[piiano]\nexport_key = \"export-dek\"\nexport_kek = \"no-such-kek\"\n{}",
        t.serve_toml(""),
        clients_toml()
    ));
    let a = wrong.get(EXPORT, &[(bearer("exporter").0, &bearer("exporter").1)]);
    assert_eq!(a.status, 404);
    piiano_error(&a.json(), "PV1004", "HK1004");
    // A key that may not leave: 409; a key under itself: 400.
    for (key, kek, status, pv, hk) in [
        ("storedsafe-kek", "export-kek", 409, "HK1202", "HK1202"),
        ("export-kek", "export-kek", 400, "PV1012", "HK1007"),
    ] {
        let s = t.serve(&format!(
            "{}[piiano]\nexport_key = \"{key}\"\nexport_kek = \"{kek}\"\n{}",
            t.serve_toml(""),
            clients_toml()
        ));
        let a = s.get(EXPORT, &[(bearer("exporter").0, &bearer("exporter").1)]);
        assert_eq!(a.status, status, "{}", a.body);
        piiano_error(&a.json(), pv, hk);
    }
    assert_eq!(t.object_count(), before, "a failed export changes nothing");
}

/// Every route, and a client that lacks its capability.
#[test]
fn each_capability_is_enforced() {
    let t = token();
    let s = start(&t);
    let routes: &[(&str, &str, &str, &str)] = &[
        ("GET", "/api/v1/keys", "authorization", "exporter"),
        ("GET", "/api/v1/keys/export-kek", "authorization", "vault"),
        ("POST", "/api/v1/keys", "authorization", "reader"),
        (
            "POST",
            "/api/v1/keys/export-kek/rotate",
            "authorization",
            "reader",
        ),
        ("GET", EXPORT, "authorization", "admin-without"),
        (
            "GET",
            "/api/1.0/transparent/backup/179/export-dek",
            "x-http-token",
            "reader",
        ),
        (
            "POST",
            "/api/1.0/transparent/restore/179/export-dek",
            "x-http-token",
            "exporter",
        ),
    ];
    for (method, path, header, client) in routes {
        let client = if *client == "admin-without" {
            "vault"
        } else {
            client
        };
        let value = if *header == "authorization" {
            format!("Bearer {}", api_key(client))
        } else {
            api_key(client).to_string()
        };
        let a = match *method {
            "GET" => s.get(path, &[(header, &value)]),
            _ => s.post(
                path,
                &[(header, &value)],
                b"{\"name\":\"x\",\"type\":\"aes-256\"}",
            ),
        };
        assert_eq!(a.status, 403, "{method} {path} as {client}: {}", a.body);
        let v = a.json();
        if path.starts_with("/api/1.0/") {
            assert_eq!(v["CALLINFO"]["status"], "FAIL");
            assert_eq!(v["ERRORCODES"][0], "HK1110");
        } else if path.starts_with("/api/pvlt/") {
            piiano_error(&v, "PV1007", "HK1110");
        } else {
            assert_eq!(v["error_code"], "HK1110", "{v}");
        }
        // And nobody at all is 401 on every route.
        let a = match *method {
            "GET" => s.get(path, &[]),
            _ => s.post(path, &[], b"{}"),
        };
        assert_eq!(a.status, 401, "{method} {path} without a key");
    }
    // Each refusal of a client has its audit line, naming the client;
    // the refusals without one are counted in one line for the source,
    // written by the time the server stops.
    let (status, _) = s.stop();
    assert!(status.success());
    let lines = audit_lines(&t);
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l["result"]["code"] == "HK1110")
        .collect();
    assert_eq!(refused.len(), routes.len());
    assert!(refused.iter().all(|l| l["client"] != "unauthenticated"));
    let anonymous = refused_lines(&t);
    assert_eq!(anonymous.len(), 1, "one source, one window: {anonymous:?}");
    assert_eq!(anonymous[0]["client"], "unauthenticated");
    assert_eq!(anonymous[0]["refused"]["source"], "127.0.0.1");
    assert_eq!(anonymous[0]["result"]["code"], "HK1109");
    assert_eq!(refused_count(&t, 401, "HK1109"), routes.len() as u64);
    assert_eq!(
        anonymous[0]["refused"]["count"].as_u64(),
        Some(routes.len() as u64)
    );
}

#[test]
fn a_log_that_cannot_take_a_line_refuses_before_any_token_work() {
    let t = token();
    let s = t.serve(&full_config(&t, ""));
    let admin = bearer("admin");
    let h = [(admin.0, admin.1.as_str())];
    let before = t.object_count();
    // A last line cut in the middle: the log can take no line after it.
    let whole = std::fs::metadata(t.audit_log()).unwrap().len();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(t.audit_log())
        .unwrap();
    std::io::Write::write_all(&mut log, b"{\"cut\":").unwrap();
    let a = s.post(
        "/api/v1/keys",
        &h,
        br#"{"name": "refused", "type": "aes-256", "backup_policy": "any"}"#,
    );
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.json()["error_code"], "HK1904", "{}", a.body);
    assert_eq!(t.object_count(), before, "nothing was made");
    // Once the log is whole again, the refusal (no client was named) is
    // recorded in the source's line when the server stops.
    log.set_len(whole).unwrap();
    let (status, _) = s.stop();
    assert!(status.success());
    assert_eq!(refused_count(&t, 503, "HK1904"), 1);
    t.json(&["audit", "verify"]);
}

#[test]
fn own_routes_describe_make_and_rotate_keys() {
    let t = token();
    let s = t.serve(&full_config(&t, "body_limit = 1024\n"));
    let admin = bearer("admin");
    let h = [(admin.0, admin.1.as_str())];
    let a = s.post(
        "/api/v1/keys",
        &h,
        br#"{"name": "payments", "type": "aes-256", "backup_policy": "any"}"#,
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let made = a.json();
    assert_eq!(made["keys"][0]["label"], "payments");
    let a = s.post("/api/v1/keys/payments/rotate", &h, b"");
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["keys"][0]["label"], "payments@v2");
    let reader = bearer("reader");
    let r = [(reader.0, reader.1.as_str())];
    let shown = s.get("/api/v1/keys/payments", &r).json();
    let labels: Vec<&str> = shown["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["payments", "payments@v2"]);
    // The same description as the command line's.
    let cli = t.json(&["key", "show", "payments"]);
    assert_eq!(shown["keys"], cli["keys"]);
    assert!(!s.get("/api/v1/keys", &r).body.contains("\"value\""));
    let listed = s.get("/api/v1/keys", &r).json();
    assert!(listed["keys"].as_array().unwrap().len() >= 5);

    // Errors: hsmkey's own shape, exact codes; nothing changes.
    let before = t.object_count();
    let a = s.get("/api/v1/keys/absent", &r);
    assert_eq!((a.status, code(&a.json())), (404, "HK1004"));
    let a = s.post(
        "/api/v1/keys",
        &h,
        br#"{"name": "payments", "type": "aes-256"}"#,
    );
    assert_eq!((a.status, code(&a.json())), (409, "HK1501"));
    let a = s.post("/api/v1/keys", &h, br#"{"name": "x", "type": "aes-999"}"#);
    assert_eq!((a.status, code(&a.json())), (400, "HK1301"), "{}", a.body);
    let a = s.post("/api/v1/keys", &h, b"not json");
    assert_eq!((a.status, code(&a.json())), (400, "HK1301"));
    let big = format!(r#"{{"name": "{}", "type": "aes-256"}}"#, "n".repeat(2048));
    let a = s.post("/api/v1/keys", &h, big.as_bytes());
    assert_eq!((a.status, code(&a.json())), (413, "HK1309"));
    let a = s.post("/api/v1/keys/absent/rotate", &h, b"");
    assert_eq!((a.status, code(&a.json())), (404, "HK1004"));
    let a = s.get("/api/v1/nothing", &r);
    assert_eq!((a.status, code(&a.json())), (404, "HK1013"));
    assert_eq!(t.object_count(), before);
}

#[test]
fn storedsafe_backup_restores_on_a_second_server() {
    let (a_tok, b_tok) = (token(), token());
    a_tok.generate("payments", "aes-256", "any");
    a_tok.json(&["key", "rotate", "payments"]);
    a_tok.generate("locked", "aes-256", "none");
    let (a, b) = (start(&a_tok), start(&b_tok));
    let vault = ("x-http-token", api_key("vault"));
    let got = a.get("/api/1.0/transparent/backup/179/payments", &[vault]);
    assert_eq!(got.status, 200, "{}", got.body);
    let v = got.json();
    let info = &v["CALLINFO"];
    assert_eq!(info["status"], "SUCCESS");
    assert_eq!(info["objectid"], "payments");
    assert_eq!(info["handler"], "transparent");
    assert_eq!(
        (info["errors"].as_u64(), info["errorcodes"].as_u64()),
        (Some(0), Some(0))
    );
    // StoredSafe echoes a rotated session token; hsmkey has only the API
    // key, which no answer carries (a backup answer is kept as a file).
    assert_eq!(info["token"], "", "{v}");
    assert!(!got.body.contains(vault.1), "the API key is not echoed");
    let blob = v["KEYS"][0]["backup"].as_str().unwrap().to_string();
    let body = serde_json::json!({ "backup": blob }).to_string();
    let put = b.post(
        "/api/1.0/transparent/restore/179/payments",
        &[vault],
        body.as_bytes(),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let restored = put.json();
    assert_eq!(restored["CALLINFO"]["status"], "SUCCESS");
    assert_eq!(restored["CALLINFO"]["token"], "");
    assert!(!put.body.contains(vault.1));
    let kcvs = |t: &TestToken| -> Vec<(String, String)> {
        t.json(&["key", "show", "payments"])["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["label"].as_str().unwrap().into(),
                    k["kcv"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(kcvs(&a_tok), kcvs(&b_tok));
    assert_eq!(kcvs(&b_tok).len(), 2, "both versions");

    // Failures: StoredSafe's FAIL shape, exact codes, nothing created.
    let before = b_tok.object_count();
    let fail = |a: &common::serve::Answer, status: u16, code_: &str| {
        assert_eq!(a.status, status, "{}", a.body);
        let v = a.json();
        assert_eq!(v["CALLINFO"]["status"], "FAIL", "{v}");
        assert_eq!(v["CALLINFO"]["token"], "", "{v}");
        assert!(!a.body.contains(api_key("vault")), "{v}");
        assert_eq!(v["ERRORCODES"][0], code_, "{v}");
        assert_eq!(v["ERRORS"].as_array().unwrap().len(), 1);
    };
    fail(
        &b.post(
            "/api/1.0/transparent/restore/179/payments",
            &[vault],
            body.as_bytes(),
        ),
        409,
        "HK1501",
    );
    fail(
        &b.post(
            "/api/1.0/transparent/restore/999/payments",
            &[vault],
            body.as_bytes(),
        ),
        404,
        "HK1013",
    );
    fail(
        &b.post(
            "/api/1.0/transparent/restore/179/payments",
            &[vault],
            b"{\"backup\": \"hsmkey-blob-v1:AAAA\"}",
        ),
        400,
        "HK1302",
    );
    fail(
        &b.post("/api/1.0/transparent/restore/179/payments", &[vault], b"[]"),
        400,
        "HK1301",
    );
    fail(
        &b.post(
            "/api/1.0/transparent/restore/179/other",
            &[vault],
            body.as_bytes(),
        ),
        404,
        "HK1004",
    );
    assert_eq!(b_tok.object_count(), before);
    fail(
        &a.get("/api/1.0/transparent/backup/179/locked", &[vault]),
        409,
        "HK1202",
    );
    fail(
        &a.get("/api/1.0/transparent/backup/179/absent", &[vault]),
        404,
        "HK1004",
    );
    fail(
        &a.get(
            "/api/1.0/transparent/backup/179/payments",
            &[("x-http-token", "wrong")],
        ),
        401,
        "HK1109",
    );
}

#[test]
fn many_concurrent_requests_get_their_own_answers() {
    let t = token();
    for i in 0..8 {
        t.generate(&format!("k{i}"), "aes-128", "none");
    }
    let s = start(&t);
    let exported = s
        .get(EXPORT, &[(bearer("exporter").0, &bearer("exporter").1)])
        .json();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let s = &s;
                let exported = &exported;
                scope.spawn(move || {
                    if i % 2 == 0 {
                        let a = s.get(EXPORT, &[(bearer("exporter").0, &bearer("exporter").1)]);
                        assert_eq!(a.status, 200, "{}", a.body);
                        assert_eq!(&a.json(), exported);
                    } else {
                        let name = format!("k{}", i % 8);
                        let a = s.get(
                            &format!("/api/v1/keys/{name}"),
                            &[(bearer("reader").0, &bearer("reader").1)],
                        );
                        assert_eq!(a.status, 200, "{}", a.body);
                        assert_eq!(a.json()["keys"][0]["label"], name.as_str());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("no request failed");
        }
    });
    let lines = audit_lines(&t);
    let served = lines
        .iter()
        .filter(|l| l["request"]["status"] == 200)
        .count();
    assert_eq!(served, 65, "one line per request");
    let (status, _) = s.stop();
    assert!(status.success());
    t.json(&["audit", "verify"]);
}

#[test]
fn failed_logins_are_throttled_per_address() {
    let t = token();
    let s = t.serve(&full_config(&t, "auth_failures_per_minute = 3\n"));
    for _ in 0..3 {
        assert_eq!(
            s.get(EXPORT, &[("authorization", "Bearer wrong")]).status,
            401
        );
    }
    let a = s.get(EXPORT, &[(bearer("exporter").0, &bearer("exporter").1)]);
    assert_eq!(
        a.status, 429,
        "even the right key, until the minute is over"
    );
    piiano_error(&a.json(), "HK1111", "HK1111");
    let secs: u64 = a.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs));
    // Without `proxies`, X-Forwarded-For is the client's word: ignored.
    let spoofed = s.get(
        EXPORT,
        &[
            (bearer("exporter").0, &bearer("exporter").1),
            ("x-forwarded-for", "192.0.2.9"),
        ],
    );
    assert_eq!(spoofed.status, 429);
}

/// Behind a trusted proxy, the address X-Forwarded-For names is the one
/// throttled and recorded.
#[test]
fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let t = token();
    let s = t.serve(&full_config(
        &t,
        "auth_failures_per_minute = 2\nproxies = [\"127.0.0.1\"]\n",
    ));
    let from = |ip: &'static str| ("x-forwarded-for", ip);
    for _ in 0..2 {
        let a = s.get(
            EXPORT,
            &[("authorization", "Bearer wrong"), from("192.0.2.1")],
        );
        assert_eq!(a.status, 401);
    }
    let exporter = bearer("exporter");
    let a = s.get(EXPORT, &[(exporter.0, &exporter.1), from("192.0.2.1")]);
    assert_eq!(a.status, 429, "{}", a.body);
    let a = s.get(
        EXPORT,
        &[(exporter.0, &exporter.1), from("10.9.9.9, 192.0.2.2")],
    );
    assert_eq!(a.status, 200, "another client behind the same proxy");
    let line = audit_lines(&t)
        .into_iter()
        .rfind(|l| l["op"] == "serve piiano export-key")
        .unwrap();
    assert_eq!(line["request"]["source"], "192.0.2.2");
    // A bad proxies entry is named.
    let path = t.dir.path().join("bad-proxy.toml");
    std::fs::write(
        &path,
        format!("{}proxies = [\"lb.example\"]\n", t.serve_toml("")),
    )
    .unwrap();
    let (exit, e) = t.json_err(t.cmd().args(["serve", "--config"]).arg(&path));
    assert_eq!((exit, code(&e)), (2, "HK1010"));
    assert_eq!(e["context"]["key"], "proxies");
}

#[test]
fn public_routes_answer_without_credentials() {
    let t = token();
    let s = start(&t);
    let before = audit_lines(&t).len();
    let h = s.get("/healthz", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    s.get(EXPORT, &[(bearer("exporter").0, &bearer("exporter").1)]);
    let m = s.get("/metrics", &[]);
    assert_eq!(
        m.content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let has = |line: &str| m.body.lines().any(|l| l == line);
    assert!(
        has(&format!(
            "hsmkey_http_requests_total{{route=\"{EXPORT}\",method=\"GET\",status=\"200\"}} 1"
        )),
        "{}",
        m.body
    );
    assert!(
        has("hsmkey_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"),
        "{}",
        m.body
    );
    assert!(
        has(&format!(
            "hsmkey_http_request_duration_seconds_count{{route=\"{EXPORT}\"}} 1"
        )),
        "{}",
        m.body
    );
    // A scrape sees its own sessions: 4 open (sessions = 4), none busy.
    for line in [
        "# TYPE hsmkey_http_requests counter",
        "# TYPE hsmkey_http_request_duration_seconds histogram",
        "# TYPE hsmkey_token_calls counter",
        "# TYPE hsmkey_token_call_failures counter",
        "hsmkey_token_call_failures_total 0",
        "hsmkey_sessions_reopened_total 0",
        "hsmkey_sessions{state=\"open\"} 4",
        "hsmkey_sessions{state=\"busy\"} 0",
    ] {
        assert!(has(line), "{line}\n{}", m.body);
    }
    // healthz and export_key each ran token work.
    let calls: u64 = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("hsmkey_token_calls_total "))
        .expect("hsmkey_token_calls_total")
        .parse()
        .unwrap();
    assert!(calls >= 2, "{}", m.body);
    assert!(m.body.ends_with("# EOF\n"));
    let api = s.get("/openapi.json", &[]).json();
    let mut paths: Vec<&str> = api["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/ConfigurationManager/v1/objects/encryption-keys/file/actions/backup/invoke",
            "/ConfigurationManager/v1/objects/encryption-keys/file/actions/restore/invoke",
            "/api/1.0/transparent/backup/{vaultid}/{name}",
            "/api/1.0/transparent/restore/{vaultid}/{name}",
            EXPORT,
            "/api/v1/keys",
            "/api/v1/keys/{name}",
            "/api/v1/keys/{name}/rotate",
            "/healthz",
            "/metrics",
            "/v1.0/{project_id}/kms/get-parameters-for-import",
            "/v1.0/{project_id}/kms/import-key-material",
            "/v1/{project_id}/secrets/restore",
            "/v1/{project_id}/secrets/{secret_name}/backup",
        ]
    );
    assert_eq!(
        audit_lines(&t).len(),
        before + 1,
        "public routes write no line"
    );
}

#[test]
fn sigterm_lets_requests_under_way_finish() {
    let t = token();
    let s = t.serve(&full_config(&t, "sessions = 1\n"));
    let base = s.base.trim_start_matches("http://").to_string();
    let sent = std::sync::Barrier::new(17);
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (base, sent) = (&base, &sent);
                scope.spawn(move || {
                    use std::io::{Read, Write};
                    let mut c = std::net::TcpStream::connect(base).unwrap();
                    let req = format!(
                        "GET {EXPORT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                        api_key("exporter")
                    );
                    c.write_all(req.as_bytes()).unwrap();
                    sent.wait();
                    let mut answer = String::new();
                    let _ = c.read_to_string(&mut answer);
                    answer
                })
            })
            .collect();
        sent.wait();
        // Wait until the token is at work, then stop the server.
        loop {
            let m = s.get("/metrics", &[]).body;
            if m.contains("hsmkey_token_calls_total") && !m.contains("hsmkey_token_calls_total 1\n")
            {
                break;
            }
            std::thread::yield_now();
        }
        common::serve::terminate(&s.child);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (status, _) = s.stop();
    assert!(status.success(), "a stopped server exits 0");
    let ok = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    for a in &answers {
        assert!(
            a.is_empty() || a.starts_with("HTTP/1.1 200"),
            "an accepted request is answered in full: {a}"
        );
    }
    assert!(ok >= 1);
    let lines = audit_lines(&t);
    let logged = lines
        .iter()
        .filter(|l| l["op"] == "serve piiano export-key")
        .count();
    assert_eq!(
        logged, ok,
        "every answer has its line, and no line lacks its answer"
    );
    assert_eq!(lines.last().unwrap()["op"], "serve stop");
}

#[test]
fn configuration_errors_have_exact_codes() {
    let t = token();
    let run = |toml: &str| -> (i32, Value) {
        let path = t.dir.path().join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        t.json_err(t.cmd().args(["serve", "--config"]).arg(&path))
    };
    let (exit, e) = run(&format!("{}sessions = 100\n", t.serve_toml("")));
    assert_eq!((exit, code(&e)), (2, "HK1010"));
    assert_eq!(e["context"]["key"], "sessions");
    assert!(e["context"]["line"].as_str().is_some());
    let (exit, e) = run("listen = \"127.0.0.1:0\"\npin_source = \"1234\"\n");
    assert_eq!((exit, code(&e)), (2, "HK1011"));
    assert_eq!(
        (e["context"]["key"].as_str(), e["context"]["line"].as_str()),
        (Some("pin_source"), Some("2"))
    );
    assert!(!e.to_string().contains("1234"), "the PIN is not repeated");
    let (exit, e) = run("listen = \"0.0.0.0:8443\"\npin_source = \"env:HSMKEY_PIN\"\n");
    assert_eq!((exit, code(&e)), (2, "HK1012"));
    let (exit, e) = run(&format!(
        "{}[[clients]]\nname = \"a\"\napi_key_sha256 = \"00\"\n",
        t.serve_toml("")
    ));
    assert_eq!((exit, code(&e)), (2, "HK1010"));
    assert_eq!(e["context"]["key"], "clients.api_key_sha256");
}

/// Piiano's generated TypeScript client, unchanged, against the server.
/// Run by scripts/piiano-client.sh, which installs it from npm and sets
/// HSMKEY_TEST_PIIANO_CLIENT to its folder; skipped (passing) without it.
#[test]
fn piiano_typescript_client() {
    let Ok(dir) = std::env::var("HSMKEY_TEST_PIIANO_CLIENT") else {
        eprintln!(
            "skipped: HSMKEY_TEST_PIIANO_CLIENT is not set (scripts/piiano-client.sh sets it)"
        );
        return;
    };
    let t = token();
    let s = start(&t);
    let call = |key: &str| -> Value {
        let out = std::process::Command::new("node")
            .current_dir(&dir)
            .args(["export-key.js", &s.base, key, "from-the-piiano-client"])
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON line")
    };
    let ok = call(api_key("exporter"));
    assert_eq!(ok["status"], 200, "{ok}");
    let wrapped = B64
        .decode(ok["body"]["export_key"].as_str().unwrap())
        .unwrap();
    let mut unwrapped = vec![0u8; wrapped.len() - 8];
    KekAes128::new(&EXPORT_KEK.into())
        .unwrap(&wrapped, &mut unwrapped)
        .unwrap();
    assert_eq!(unwrapped, dek_value());
    let refused = call(api_key("reader"));
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["body"]["context"]["username"], "reader");
    piiano_error(&refused["body"], "PV1007", "HK1110");
    let line = audit_lines(&t)
        .into_iter()
        .rfind(|l| l["client"] == "exporter")
        .unwrap();
    assert_eq!(line["request"]["custom_audit"], "from-the-piiano-client");
}

/// TLS through rustls with the configured PEM files; checked with curl
/// trusting only that certificate (skipped where openssl or curl is missing).
#[test]
fn tls_serves_the_configured_certificate() {
    let have = |tool: &str, arg: &str| {
        std::process::Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("openssl", "version") || !have("curl", "--version") {
        eprintln!("skipped: openssl or curl is not installed");
        return;
    }
    let t = token();
    let (cert, key) = (t.dir.path().join("cert.pem"), t.dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let s = t.serve(&full_config(
        &t,
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    ));
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&cert)
        .arg(s.url("/healthz"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    // Plain HTTP to the TLS port gets no answer.
    let plain = s.base.replace("https://", "http://");
    let out = std::process::Command::new("curl")
        .args(["-sS", &format!("{plain}/healthz")])
        .output()
        .unwrap();
    assert!(!out.stdout.starts_with(b"{\"status\""));
}

/// A session the token drops is replaced: the request that met it fails
/// (503), the next one on the same (only) session succeeds. The drop is
/// injected by the PKCS#11 pass-through (tools/p11shim).
#[test]
fn a_lost_session_is_replaced() {
    let t = token();
    let shim = common::shim_module();
    let toml = full_config(&t, "sessions = 1\n").replacen(
        &format!("module = \"{}\"", t.module),
        &format!("module = \"{}\"", shim.display()),
        1,
    );
    let s = t.serve_env(
        &toml,
        &[
            ("HSMKEY_SHIM_MODULE", t.module.as_str()),
            (
                "HSMKEY_SHIM_FAULT",
                "C_WrapKey:CKR_SESSION_HANDLE_INVALID:after=0:times=1",
            ),
        ],
    );
    let exporter = bearer("exporter");
    let a = s.get(EXPORT, &[(exporter.0, &exporter.1)]);
    assert_eq!(a.status, 503, "{}", a.body);
    piiano_error(&a.json(), "PV1010", "HK1401");
    let a = s.get(EXPORT, &[(exporter.0, &exporter.1)]);
    assert_eq!(a.status, 200, "{}", a.body);
    let m = s.get("/metrics", &[]).body;
    assert!(m.contains("hsmkey_sessions_reopened_total 1\n"), "{m}");
}
