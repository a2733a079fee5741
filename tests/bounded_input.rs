//! Issue #11, bounded input: every file hsmkey reads from outside is read
//! with a byte limit enforced while reading. `/dev/zero` and a FIFO report a
//! size of 0, so these are the inputs that prove it: each command must stop
//! quickly with HK1301 (exit 6) and leave the token as it was.
//!
//! Also: a PIN source that is not a known scheme is refused (HK1007) without
//! echoing it, even by a command that needs no PIN.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{code, path_str, TestToken};

/// Far more than any of these reads should take; a regression (reading
/// `/dev/zero` without a bound) runs into it instead of exhausting memory.
const LIMIT: Duration = Duration::from_secs(30);

/// A token with one exportable AES key, and its object count.
fn token_with_key() -> (TestToken, usize) {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    let count = t.object_count();
    (t, count)
}

fn password_file(t: &TestToken) -> PathBuf {
    let p = t.dir.path().join("password");
    std::fs::write(&p, "Correct-Horse#42\n").unwrap();
    p
}

/// Run `args` and expect HK1301, exit 6, within [`LIMIT`]; the error names
/// `what` and the token is unchanged.
fn refused(t: &TestToken, before: usize, args: &[&str], what: &str) -> serde_json::Value {
    let started = Instant::now();
    let mut cmd = t.cmd();
    cmd.timeout(LIMIT).args(args);
    let (exit, e) = t.json_err(&mut cmd);
    assert_eq!((exit, code(&e)), (6, "HK1301"), "{args:?}: {e}");
    assert!(
        started.elapsed() < LIMIT,
        "{args:?} took {:?}",
        started.elapsed()
    );
    let input = e["context"]["input"].as_str().unwrap_or("");
    assert!(input.starts_with(what), "{args:?}: {e}");
    let message = e["message"].as_str().unwrap_or("");
    assert!(message.contains("limit"), "the error names the limit: {e}");
    assert!(!message.contains("\\u0000"), "never the content: {e}");
    assert_eq!(t.object_count(), before, "{args:?} changed the token");
    e
}

#[test]
fn dev_zero_as_a_password_file() {
    let (t, n) = token_with_key();
    let out = t.dir.path().join("b.bundle");
    refused(
        &t,
        n,
        &[
            "backup",
            "--password-file",
            "/dev/zero",
            "k",
            "--out",
            path_str(&out),
        ],
        "password file",
    );
    assert!(!out.exists());
    let pw = password_file(&t);
    t.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "k",
        "--out",
        path_str(&out),
    ]);
    let n = t.object_count();
    refused(
        &t,
        n,
        &["restore", "--password-file", "/dev/zero", path_str(&out)],
        "password file",
    );
}

#[test]
fn dev_zero_as_a_pin_file() {
    let (t, n) = token_with_key();
    let e = refused(
        &t,
        n,
        &["--pin-source", "file:/dev/zero", "key", "list"],
        "PIN file",
    );
    assert!(e["message"].as_str().unwrap().contains("4 KiB"), "{e}");
}

#[test]
fn dev_zero_as_a_recipient_key() {
    let (t, n) = token_with_key();
    let out = t.dir.path().join("b.bundle");
    refused(
        &t,
        n,
        &[
            "backup",
            "--recipient",
            "/dev/zero",
            "k",
            "--out",
            path_str(&out),
        ],
        "recipient public key",
    );
    assert!(!out.exists());
}

#[test]
fn dev_zero_as_byok_inputs() {
    let (t, n) = token_with_key();
    let out = t.dir.path().join("k.bin");
    let base = [
        "byok",
        "--key",
        "k",
        "--target",
        "aws",
        "--algorithm",
        "RSAES_OAEP_SHA_256",
        "--out",
        path_str(&out),
    ];
    let with = |extra: [&'static str; 2]| {
        let mut args = base.to_vec();
        args.extend(extra);
        args
    };
    refused(
        &t,
        n,
        &with(["--wrapping-key", "/dev/zero"]),
        "wrapping key",
    );
    refused(
        &t,
        n,
        &with(["--import-params", "/dev/zero"]),
        "import parameters",
    );
    assert!(!out.exists());
}

#[test]
fn dev_zero_as_import_material() {
    let (t, n) = token_with_key();
    refused(
        &t,
        n,
        &[
            "import",
            "--material",
            "/dev/zero",
            "--label",
            "imported",
            "--type",
            "aes-256",
        ],
        "key material",
    );
}

/// Make a FIFO at `path` and a thread that writes `head` then `total` bytes
/// of `fill` into it. The thread is left to end on its own: it gets EPIPE once
/// hsmkey closes the FIFO, or stays blocked in open() if hsmkey never opened it.
fn fifo_writer(path: &Path, head: &'static [u8], fill: u8, total: usize) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
            return;
        };
        if f.write_all(head).is_err() {
            return;
        }
        let chunk = vec![fill; 64 * 1024];
        let mut written = 0;
        while written < total {
            if f.write_all(&chunk).is_err() {
                return;
            }
            written += chunk.len();
        }
    });
}

/// A blob from a FIFO has no size to check first: 1.2 GB used to be read
/// into memory. Now the read stops at 16 MiB.
#[test]
fn a_fifo_blob_over_16_mib_is_refused_while_reading() {
    let (t, n) = token_with_key();
    let fifo = t.dir.path().join("in.fifo");
    fifo_writer(&fifo, b"hsmkey-blob-v1:", b'A', 17 * 1024 * 1024);
    let pw = password_file(&t);
    refused(
        &t,
        n,
        &["restore", "--password-file", path_str(&pw), path_str(&fifo)],
        "blob",
    );
    let _ = 16; // MiB: see input::limits::BLOB
}

/// A bundle is read twice (checked whole, then restored): a FIFO cannot be,
/// and says so instead of failing on the second pass.
#[test]
fn a_fifo_bundle_is_refused_clearly() {
    let (t, n) = token_with_key();
    let fifo = t.dir.path().join("bundle.fifo");
    fifo_writer(
        &fifo,
        b"{\"type\":\"header\",\"format\":\"hsmkey-bundle\"}\n",
        b' ',
        0,
    );
    let pw = password_file(&t);
    let mut cmd = t.cmd();
    cmd.timeout(LIMIT)
        .args(["restore", "--password-file", path_str(&pw), path_str(&fifo)]);
    let (exit, e) = t.json_err(&mut cmd);
    assert_eq!((exit, code(&e)), (6, "HK1301"), "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("regular file"),
        "{e}"
    );
    assert_eq!(t.object_count(), n);
}

/// Issue #11: `--pin-source PIN:1234` echoed the whole value in HK1007.
#[test]
fn an_unknown_pin_source_is_refused_and_never_echoed() {
    let t = TestToken::new();
    for source in ["bogus:1234", "PIN:1234", "pin=1234", "1234"] {
        for flag in ["--pin-source", "--so-pin-source"] {
            // token list needs no PIN: the source is checked all the same.
            let out = t
                .cmd()
                .timeout(LIMIT)
                .args([flag, source, "token", "list", "--json"])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{source}: {stdout} {stderr}");
            let e: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(code(&e), "HK1007", "{e}");
            assert!(
                !stdout.contains("1234") && !stderr.contains("1234"),
                "{source} echoed: {stdout} {stderr}"
            );
            // The human form too.
            let out = t
                .cmd()
                .timeout(LIMIT)
                .args([flag, source, "token", "list"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("HK1007"), "{stderr}");
            assert!(!stderr.contains("1234"), "{source} echoed: {stderr}");
            assert!(!String::from_utf8_lossy(&out.stdout).contains("1234"));
        }
    }
}
