//! A run asked to stop: SIGINT (Ctrl-C), SIGTERM and SIGHUP, each sent to a
//! restore and to a backup while they work (each PKCS#11 call slowed by the
//! pass-through, tools/p11shim). The run stops cleanly: exit 130 with
//! HK1903 (docs/ERRORS.md), the token holds exactly what it held before (a
//! restore destroys what it made), and a backup leaves no file behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{code, TestToken, KEK_VALUE};
use serde_json::Value;

const KEYS: usize = 40;
const SLOW: &[(&str, &str)] = &[("HSMKEY_SHIM_DELAY_US", "20000")];
const SIGNALS: [&str; 3] = ["INT", "TERM", "HUP"];

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A token with a KEK and KEYS AES keys, and their bundle.
fn source() -> (TestToken, PathBuf) {
    let src = TestToken::new();
    src.put_kek("kek", &KEK_VALUE);
    let count = KEYS.to_string();
    src.json(&[
        "key",
        "generate",
        "--label",
        "k",
        "--type",
        "aes-256",
        "--backup-policy",
        "any",
        "--count",
        &count,
    ]);
    let bundle = src.dir.path().join("keys.bundle");
    src.json(&["backup", "--kek", "kek", "--all", "--out", &s(&bundle)]);
    (src, bundle)
}

fn target() -> TestToken {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t
}

/// How long the slowed-down command takes when left alone.
fn full_run(t: &TestToken, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = t.process(Some(SLOW), args).output().unwrap();
    assert!(
        out.status.success(),
        "the slowed {args:?} must succeed when left alone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Run the command and send `signal` after `after`.
fn signalled(t: &TestToken, args: &[&str], signal: &str, after: Duration) -> Output {
    let child = t.process(Some(SLOW), args).spawn().unwrap();
    std::thread::sleep(after);
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");
    child.wait_with_output().unwrap()
}

fn interrupted(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(130),
        "{what}: exit 130 (interrupted); stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{what}: a JSON error document on stdout"));
    assert_eq!(code(&v), "HK1903", "{what}: {v}");
}

#[test]
fn a_signalled_restore_stops_and_leaves_the_token_as_it_was() {
    let (_src, bundle) = source();
    let b = s(&bundle);
    let args = ["restore", b.as_str(), "--kek", "kek"];
    let full = full_run(&target(), &args);
    for signal in SIGNALS {
        let dst = target();
        let before = dst.object_set();
        let out = signalled(&dst, &args, signal, full.mul_f64(0.6));
        interrupted(&out, &format!("restore, SIG{signal}"));
        assert_eq!(
            dst.object_set(),
            before,
            "restore, SIG{signal}: the keys it had made are destroyed"
        );
    }
}

#[test]
fn a_signalled_backup_stops_and_writes_nothing() {
    let (src, _bundle) = source();
    let folder = tempfile::tempdir().unwrap();
    let out_path = folder.path().join("stopped.bundle");
    let o = s(&out_path);
    let args = ["backup", "--kek", "kek", "--all", "--out", o.as_str()];
    let full = full_run(&src, &args);
    std::fs::remove_file(&out_path).unwrap();
    let before = src.object_set();
    for signal in SIGNALS {
        let out = signalled(&src, &args, signal, full.mul_f64(0.6));
        interrupted(&out, &format!("backup, SIG{signal}"));
        let left: Vec<_> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "backup, SIG{signal}: no output and no temporary file: {left:?}"
        );
        assert_eq!(src.object_set(), before, "backup, SIG{signal}");
    }
}
