//! `hsmkey serve` under abuse (docs/SERVER.md, "Refusals" and "Limits"):
//! a flood of bad API keys costs a bounded number of audit lines and
//! leaves the sessions to the clients that authenticate; a request waiting
//! for the token's lock holds no session; a request head or body sent too
//! slowly is cut off.

mod common;

use std::io::{Read, Write};

use common::serve::{
    api_key, audit_lines, bearer, clients_toml, refused_count, refused_lines, Server,
};
use common::TestToken;
use serde_json::Value;

const EXPORT: &str = "/api/pvlt/1.0/system/admin/export_key";

fn token() -> TestToken {
    let t = TestToken::new();
    t.generate("export-dek", "aes-256", "any");
    t.put_kek("export-kek", &common::KEK_VALUE);
    t
}

fn config(t: &TestToken, extra_top: &str) -> String {
    format!(
        "{}[piiano]\nexport_key = \"export-dek\"\nexport_kek = \"export-kek\"\n{}",
        t.serve_toml(extra_top),
        clients_toml()
    )
}

/// Wait until `ready`; fail (rather than hang) if `gone` says what it
/// waits for can no longer come, or after two minutes.
fn wait_until(what: &str, ready: impl Fn() -> bool, gone: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready() {
        assert!(!gone(), "{what}: it can no longer happen");
        assert!(std::time::Instant::now() < give_up, "{what}: still waiting");
        std::thread::yield_now();
    }
}

fn forwarded(from: &str) -> (&'static str, &str) {
    ("x-forwarded-for", from)
}

/// 300 bad keys from one source, fewer from four more, while a good client
/// asks: the good client is always served; the refusals make one line per
/// source up to `refusal_sources_per_window`, and one for the others, whose
/// counts add up to the requests refused; the log verifies.
#[test]
fn a_flood_of_bad_keys_is_counted_in_bounded_lines_and_good_clients_are_served() {
    let t = token();
    let s = t.serve(&config(
        &t,
        "sessions = 2\nauth_failures_per_minute = 3\nproxies = [\"127.0.0.1\"]\nrefusal_window = 3600\nrefusal_sources_per_window = 2\n",
    ));
    let before = t.object_count();
    let lines_before = audit_lines(&t).len();
    let bad = ("authorization", "Bearer not-a-key");
    // The flooding source is counted first, so it has a line of its own.
    assert_eq!(s.get(EXPORT, &[bad, forwarded("192.0.2.66")]).status, 401);
    let others = [
        "198.51.100.7",
        "2001:db8:5:6::1",
        "2001:db8:5:6:ffff::2",
        "203.0.113.9",
    ];
    let exporter = bearer("exporter");
    // The good client and the flood go in step, so that the good requests
    // are answered while refusals are still arriving: the good client's
    // request k waits for 10k + 1 flood answers, flood request i (of each
    // of the six threads) for 21i / 50 good answers, so the last flood
    // requests come after the last good one.
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let (flooded, good_done, floods_over) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let good_over = AtomicUsize::new(0);
    /// Counts a thread as over when it ends, panics included.
    struct Over<'a>(&'a AtomicUsize);
    impl Drop for Over<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let (flood, rest, good) = std::thread::scope(|scope| {
        let flood: Vec<_> = (0..6)
            .map(|_| {
                let (s, flooded, good_done) = (&s, &flooded, &good_done);
                let (floods_over, good_over) = (&floods_over, &good_over);
                scope.spawn(move || {
                    let _over = Over(floods_over);
                    (0..50)
                        .map(|i| {
                            wait_until(
                                "the good client's progress",
                                || good_done.load(SeqCst) >= i * 21 / 50,
                                || good_over.load(SeqCst) > 0,
                            );
                            let status = s.get(EXPORT, &[bad, forwarded("192.0.2.66")]).status;
                            flooded.fetch_add(1, SeqCst);
                            status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        let rest: Vec<_> = others
            .iter()
            .map(|from| {
                let s = &s;
                scope.spawn(move || {
                    (0..10)
                        .map(|_| s.get("/api/v1/keys", &[bad, forwarded(from)]).status)
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        let good = {
            let (s, exporter, flooded, good_done) = (&s, &exporter, &flooded, &good_done);
            let (floods_over, good_over) = (&floods_over, &good_over);
            scope.spawn(move || {
                let _over = Over(good_over);
                (0..20)
                    .map(|k| {
                        wait_until(
                            "the flood's progress",
                            || flooded.load(SeqCst) > 10 * k,
                            || floods_over.load(SeqCst) == 6,
                        );
                        let a = s.get(EXPORT, &[(exporter.0, &exporter.1), forwarded("192.0.2.1")]);
                        good_done.fetch_add(1, SeqCst);
                        (a.status, a.body, flooded.load(SeqCst))
                    })
                    .collect::<Vec<(u16, String, usize)>>()
            })
        };
        let join = |hs: Vec<std::thread::ScopedJoinHandle<'_, Vec<u16>>>| -> Vec<u16> {
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        };
        (join(flood), join(rest), good.join().unwrap())
    });
    for (status, body, _) in &good {
        assert_eq!(*status, 200, "a good client during the flood: {body}");
    }
    // The flood was under way before the first good request and went on
    // after the last.
    let flooded_then: Vec<usize> = good.iter().map(|g| g.2).collect();
    assert!(flooded_then[0] >= 1, "{flooded_then:?}");
    assert!(*flooded_then.last().unwrap() < 300, "{flooded_then:?}");
    let mut flood = flood;
    flood.push(401);
    assert_eq!(flood.len(), 301);
    assert!(flood.iter().all(|s| [401, 429].contains(s)), "{flood:?}");
    assert!(rest.iter().all(|s| [401, 429].contains(s)), "{rest:?}");
    let answered = |list: &[u16], status: u16| list.iter().filter(|s| **s == status).count() as u64;

    let (status, _) = s.stop();
    assert!(status.success());
    let lines = audit_lines(&t);
    let served = lines[lines_before..]
        .iter()
        .filter(|l| l["op"] == "serve piiano export-key" && l["client"] == "exporter")
        .count();
    assert_eq!(served, good.len(), "one line per request of a client");
    let refused = refused_lines(&t);
    assert_eq!(refused.len(), 3, "two sources and the others: {refused:?}");
    let sources: Vec<&str> = refused
        .iter()
        .map(|l| l["refused"]["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources[0], "192.0.2.66");
    assert_eq!(sources[2], "*");
    let count = |l: &Value| l["refused"]["count"].as_u64().unwrap();
    assert_eq!(count(&refused[0]), 301);
    assert_eq!(count(&refused[1]) + count(&refused[2]), 40);
    for l in &refused {
        assert_eq!(l["client"], "unauthenticated");
        let listed: u64 = l["refused"]["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            listed + l["refused"]["unlisted"].as_u64().unwrap(),
            count(l)
        );
        assert!(l["refused"]["first"].as_str() <= l["refused"]["last"].as_str());
        assert!(l["mac"].is_string(), "signed in the token: {l}");
    }
    // What the lines count is what was answered.
    let all: Vec<u16> = flood.iter().chain(rest.iter()).copied().collect();
    assert_eq!(refused_count(&t, 401, "HK1109"), answered(&all, 401));
    assert_eq!(refused_count(&t, 429, "HK1111"), answered(&all, 429));
    assert!(answered(&flood, 429) > 0, "the flood was throttled");
    assert_eq!(t.object_count(), before, "refusals change nothing");
    t.json(&["audit", "verify"]);
}

/// The lock file of this server's token, in the runtime folder it was
/// given, once a locked request has made it.
fn lock_file(run: &std::path::Path) -> std::path::PathBuf {
    let dir = run.join("hsmkey");
    let mut locks: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    locks.remove(0)
}

/// Whether process `pid` has `path` open.
fn has_open(pid: u32, path: &std::path::Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .any(|target| target == path)
        })
        .unwrap_or(false)
}

/// With one session, a key creation waiting for the token's lock (held
/// here as a command line restore would hold it) does not hold the
/// session: a reader is served meanwhile, and the creation completes once
/// the lock is let go.
#[test]
fn a_request_waiting_for_the_token_lock_holds_no_session() {
    let t = token();
    let run = t.dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let s = t.serve_env(
        &config(&t, "sessions = 1\nrequest_timeout = 30\n"),
        &[("XDG_RUNTIME_DIR", run.to_str().unwrap())],
    );
    let admin = bearer("admin");
    let made = s.post(
        "/api/v1/keys",
        &[(admin.0, &admin.1)],
        br#"{"name": "first", "type": "aes-256"}"#,
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let path = lock_file(&run);
    let held = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    held.lock().unwrap();
    let before = t.object_count();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            s.post(
                "/api/v1/keys",
                &[(admin.0, &admin.1)],
                br#"{"name": "second", "type": "aes-256"}"#,
            )
        });
        // The creation is waiting for the lock once the server has the
        // file open (a creation answered before that fails the test).
        wait_until(
            "the creation waits for the lock",
            || has_open(s.child.id(), &path),
            || writer.is_finished(),
        );
        let reader = bearer("reader");
        let a = s.get("/api/v1/keys/first", &[(reader.0, &reader.1)]);
        assert_eq!(
            a.status, 200,
            "a reader behind a waiting writer: {}",
            a.body
        );
        assert_eq!(a.json()["keys"][0]["label"], "first");
        assert_eq!(t.object_count(), before, "nothing made under the held lock");
        held.unlock().unwrap();
        let w = writer.join().unwrap();
        assert_eq!(w.status, 201, "{}", w.body);
        assert_eq!(w.json()["keys"][0]["label"], "second");
    });
    assert_eq!(t.object_count(), before + 1);
}

/// A raw request: `head` sent whole, then `body_start` of the body, then
/// nothing. The answer, read until the server closes the connection (a
/// minute at most, so that a server that never does fails the test rather
/// than hangs it).
fn stalled(s: &Server, head: &str, body_start: &[u8]) -> std::io::Result<String> {
    let mut c = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(body_start).unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn status_and_body(answer: &str) -> (u16, Value) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn a_slow_head_is_cut_off_and_a_slow_body_is_408() {
    let t = token();
    let s = t.serve(&config(
        &t,
        "header_timeout = 1\nbody_timeout = 1\nrefusal_window = 3600\n",
    ));
    let before = t.object_count();
    // A head that never ends: the connection is closed without an answer.
    let answer = stalled(&s, "GET /api/v1/keys HTTP/1.1\r\nHost: x\r\n", b"")
        .expect("the server closes the connection");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    // A body that never ends: with an API key, 408 in the family's shape;
    // signed with AK/SK (the signature covers the body, so it is read
    // first), 408 too; without credentials, 401 before it is read.
    let slow_post = |path: &str, authorization: &str| {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{authorization}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        );
        let answer = stalled(&s, &head, b"{\"name\": \"sl").expect("an answer, then the end");
        status_and_body(&answer)
    };
    let (status, v) = slow_post(
        "/api/v1/keys",
        &format!("Authorization: Bearer {}\r\n", api_key("admin")),
    );
    assert_eq!(status, 408, "{v}");
    assert_eq!(v["error_code"], "HK1310", "{v}");
    assert_eq!(v["context"]["seconds"], "1", "{v}");
    let (status, v) = slow_post(
        "/v1/0123/secrets/restore",
        "Authorization: SDK-HMAC-SHA256 Access=AK-none, SignedHeaders=host, Signature=00\r\n",
    );
    assert_eq!(status, 408, "{v}");
    let (status, v) = slow_post("/api/v1/keys", "");
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error_code"], "HK1109", "{v}");
    assert_eq!(t.object_count(), before, "nothing was made");
    let (status, _) = s.stop();
    assert!(status.success());
    // The client's request has its line; the anonymous one is counted.
    let line = audit_lines(&t)
        .into_iter()
        .rfind(|l| l["op"] == "serve key generate")
        .expect("the admin's line");
    assert_eq!(line["client"], "admin");
    assert_eq!(line["request"]["status"], 408);
    assert_eq!(line["result"]["code"], "HK1310");
    assert_eq!(refused_count(&t, 408, "HK1310"), 1);
    assert_eq!(refused_count(&t, 401, "HK1109"), 1);
    t.json(&["audit", "verify"]);
}

/// Whether process `pid` waits for an exclusive `flock` (a `->` line of
/// /proc/locks).
fn waits_for_flock(pid: u32) -> bool {
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"->")
                && f.get(2) == Some(&"FLOCK")
                && f.get(4) == Some(&"WRITE")
                && f.get(5) == Some(&pid.to_string().as_str())
        })
}

/// With one session, a key creation whose token work is done while
/// another request's line holds the session (held here on the audit log's
/// lock for longer than `request_timeout`) waits for its own line however
/// long that takes: it is answered 201 with its line, never 503 without one.
#[test]
fn a_request_that_changed_the_token_always_gets_its_line() {
    let t = token();
    let run = t.dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    // Every PKCS#11 call takes 30 ms (a creation makes about 40), so that the creation's work lasts
    // long enough for another request to queue for the session meanwhile.
    let shim = common::shim_module();
    // request_timeout leaves the creation's work (about 1.2 s) a margin of
    // five on a loaded machine before the waiting 403 would turn into 503.
    let toml = config(&t, "sessions = 1\nrequest_timeout = 6\n").replacen(
        &format!("module = \"{}\"", t.module),
        &format!("module = \"{}\"", shim.display()),
        1,
    );
    assert!(toml.contains(&*shim.to_string_lossy()), "{toml}");
    let s = t.serve_env(
        &toml,
        &[
            ("XDG_RUNTIME_DIR", run.to_str().unwrap()),
            ("HSMKEY_SHIM_MODULE", &t.module),
            ("HSMKEY_SHIM_DELAY_US", "30000"),
        ],
    );
    let admin = bearer("admin");
    let first = s.post(
        "/api/v1/keys",
        &[(admin.0, &admin.1)],
        br#"{"name": "first", "type": "aes-256"}"#,
    );
    assert_eq!(first.status, 201, "{}", first.body);
    let lock = lock_file(&run);
    let before = t.object_count();
    // A shared lock on the log: requests pass its check, but no line can
    // be appended until it is let go.
    let log = std::fs::File::open(t.audit_log()).unwrap();
    log.lock_shared().unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (made, refused) = std::thread::scope(|scope| {
        let creation = scope.spawn(|| {
            let a = s.post(
                "/api/v1/keys",
                &[(admin.0, &admin.1)],
                br#"{"name": "second", "type": "aes-256"}"#,
            );
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            a
        });
        // The creation holds the token's lock: its work is under way. A
        // client without the capability asks now; its line queues for the
        // session, gets it when the creation's work ends, and holds it
        // waiting for the log.
        wait_until(
            "the creation holds the lock",
            || has_open(s.child.id(), &lock),
            || creation.is_finished(),
        );
        let nobody = bearer("nobody");
        let s = &s;
        let holder = scope.spawn(move || {
            s.post(
                "/api/v1/keys",
                &[(nobody.0, &nobody.1)],
                br#"{"name": "third", "type": "aes-256"}"#,
            )
        });
        wait_until(
            "a line waits for the log",
            || waits_for_flock(s.child.id()),
            || holder.is_finished() && creation.is_finished(),
        );
        // Hold the log past request_timeout (8 s for 6), unless the creation is
        // answered first (what happened before its line waited unbounded).
        for _ in 0..80 {
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        log.unlock().unwrap();
        (creation.join().unwrap(), holder.join().unwrap())
    });
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.json()["keys"][0]["label"], "second");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(t.object_count(), before + 1);
    let (status, _) = s.stop();
    assert!(status.success());
    let lines = audit_lines(&t);
    let line = lines
        .iter()
        .rfind(|l| l["op"] == "serve key generate")
        .expect("the creation's line");
    assert_eq!(line["client"], "admin");
    assert_eq!(line["request"]["status"], 201);
    assert!(line["result"]["ok"].as_bool().unwrap(), "{line}");
    assert!(
        lines.iter().any(|l| l["client"] == "nobody"),
        "the holder's line"
    );
    t.json(&["audit", "verify"]);
}

/// The request's clock starts when its handler does: a body uploaded for
/// longer than `request_timeout` (but within `body_timeout`) leaves the
/// request all of its time to wait for the token's lock (held here until
/// the request waits for it).
#[test]
fn the_upload_does_not_eat_the_requests_time() {
    let t = token();
    let run = t.dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let s = t.serve_env(
        &config(
            &t,
            "request_timeout = 2
body_timeout = 60
",
        ),
        &[("XDG_RUNTIME_DIR", run.to_str().unwrap())],
    );
    let admin = bearer("admin");
    let made = s.post(
        "/api/v1/keys",
        &[(admin.0, &admin.1)],
        br#"{"name": "first", "type": "aes-256"}"#,
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let path = lock_file(&run);
    let held = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    held.lock().unwrap();
    let before = t.object_count();
    let body = br#"{"name": "uploaded", "type": "aes-256"}"#;
    let head = format!(
        "POST /api/v1/keys HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        api_key("admin"),
        body.len()
    );
    let mut c = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body[..10]).unwrap();
    // Longer than request_timeout: a clock started at the head would have
    // run out before the handler got its body.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    c.write_all(&body[10..]).unwrap();
    let answered = std::sync::atomic::AtomicBool::new(false);
    let answer = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut answer = Vec::new();
            c.read_to_end(&mut answer).unwrap();
            answered.store(true, std::sync::atomic::Ordering::SeqCst);
            String::from_utf8_lossy(&answer).into_owned()
        });
        // Let the lock go once the request waits for it (or has given up).
        while !has_open(s.child.id(), &path) && !answered.load(std::sync::atomic::Ordering::SeqCst)
        {
            std::thread::yield_now();
        }
        held.unlock().unwrap();
        reader.join().unwrap()
    });
    let (status, v) = status_and_body(&answer);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["keys"][0]["label"], "uploaded");
    assert_eq!(t.object_count(), before + 1);
}

/// SIGTERM while a refused request's task outlives the grace period (its
/// check of the audit log held here on the log's lock): its connection is
/// closed, but the server waits for the task, so its refusal is counted
/// and written before `serve stop`.
#[test]
fn sigterm_waits_for_every_requests_task() {
    let t = token();
    let s = t.serve(&config(
        &t,
        "request_timeout = 1\nbody_timeout = 1\nheader_timeout = 1\nrefusal_window = 3600\n",
    ));
    let log = std::fs::File::open(t.audit_log()).unwrap();
    log.lock().unwrap();
    let mut c = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    c.write_all(b"GET /api/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-key\r\n\r\n")
        .unwrap();
    // The request waits for the log; the server is told to stop, and
    // closes the connection once its grace period is over.
    wait_until(
        "the request waits for the log",
        || has_waiter(s.child.id()),
        || false,
    );
    common::serve::terminate(&s.child);
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    log.unlock().unwrap();
    let (status, _) = s.stop();
    assert!(status.success());
    let lines = audit_lines(&t);
    assert_eq!(
        refused_count(&t, 401, "HK1109"),
        1,
        "the refusal is recorded"
    );
    let refused = lines.iter().position(|l| l["op"] == "serve refused");
    let stop = lines.iter().position(|l| l["op"] == "serve stop");
    assert!(refused < stop, "{refused:?} before {stop:?}");
    assert_eq!(lines.last().unwrap()["op"], "serve stop");
    t.json(&["audit", "verify"]);
}

/// Whether process `pid` waits for any `flock` (a `->` line of
/// /proc/locks).
fn has_waiter(pid: u32) -> bool {
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"->")
                && f.get(2) == Some(&"FLOCK")
                && f.get(5) == Some(&pid.to_string().as_str())
        })
}

/// A request with a body but no valid key is refused before its body is
/// read: 401, then 429 once its source is throttled, each answered with
/// the body still unsent (a server that waited for the bytes declared
/// would answer 408 after body_timeout, an hour here, and the test's
/// read would give up first), for every family whose key is a header.
#[test]
fn a_body_without_a_valid_key_is_never_read() {
    let t = token();
    let s = t.serve(&config(
        &t,
        "body_timeout = 3600\nauth_failures_per_minute = 5\nrefusal_window = 3600\n",
    ));
    let before = t.object_count();
    let declared = |path: &str, credentials: &str| {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{credentials}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        );
        let answer = stalled(&s, &head, b"{").expect("an answer without the body");
        status_and_body(&answer)
    };
    let asked = [
        ("/api/v1/keys", "Authorization: Bearer not-a-key\r\n"),
        (
            "/api/1.0/transparent/restore/179/k",
            "X-Http-Token: not-a-key\r\n",
        ),
        (
            "/ConfigurationManager/v1/objects/encryption-keys/file/actions/restore/invoke",
            "",
        ),
        ("/v1/0123/secrets/restore", "X-Auth-Token: not-a-key\r\n"),
        ("/v1.0/0123/kms/import-key-material", ""),
    ];
    for (path, credentials) in asked {
        let (status, v) = declared(path, credentials);
        assert_eq!(status, 401, "{path}: {v}");
        assert!(v.to_string().contains("HK1109"), "{path}: {v}");
    }
    // The source is throttled now: 429, still without reading the body.
    let (status, v) = declared("/api/v1/keys", "Authorization: Bearer not-a-key\r\n");
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error_code"], "HK1111", "{v}");
    // A valid key from the throttled source is refused too.
    let admin = bearer("admin");
    let a = s.post(
        "/api/v1/keys",
        &[(admin.0, &admin.1)],
        br#"{"name": "read", "type": "aes-256"}"#,
    );
    assert_eq!(a.status, 429, "the source is throttled: {}", a.body);
    assert_eq!(t.object_count(), before);
    let (status, _) = s.stop();
    assert!(status.success());
    assert_eq!(refused_count(&t, 401, "HK1109"), 5);
    assert_eq!(refused_count(&t, 429, "HK1111"), 2);
    t.json(&["audit", "verify"]);
}
