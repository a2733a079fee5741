//! Issue #12, item 6, the Unix conventions (README.md, "Unix conventions"):
//! `-` is stdout for every `--out` and stdin for every input file, with the
//! same limits; the human report moves to stderr when stdout carries the
//! output, and `--out -` with `--json` is refused; a missing or unreadable
//! input is HK1307 with exit 10; `NO_COLOR` and the password prompt (on a
//! terminal only, never in CI; strength by zxcvbn, or the VSP rule).
//!
//! Terminal tests run hsmkey under `script(1)` (util-linux), which gives it a
//! pseudo-terminal; they are skipped, saying so, where `script` is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{code, path_str, TestToken, KEK_VALUE};
use serde_json::Value;

const PASSWORD: &str = "Correct-Horse#42";
const PASSPHRASE: &str = "violet tractor sings under granite";

fn file(t: &TestToken, name: &str) -> PathBuf {
    t.dir.path().join(name)
}

fn password_file(t: &TestToken, pw: &str) -> PathBuf {
    let p = file(t, "password.txt");
    std::fs::write(&p, format!("{pw}\n")).unwrap();
    p
}

/// Run in the token's folder (a stray file named `-` would show there).
fn run(t: &TestToken, args: &[&str], stdin: &[u8]) -> Output {
    t.cmd()
        .current_dir(t.dir.path())
        .args(args)
        .write_stdin(stdin.to_vec())
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "JSON on stdout, got: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// (exit, error JSON) of a failed `--json` run.
fn failed(out: &Output) -> (i32, Value) {
    assert!(!out.status.success(), "expected a failure");
    (out.status.code().unwrap(), json_of(out))
}

fn no_dash_file(t: &TestToken) {
    assert!(
        !t.dir.path().join("-").exists(),
        "a file named - was written"
    );
}

#[test]
fn a_bundle_travels_through_stdout_and_stdin() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.generate("k", "aes-256", "any");
    let pw = password_file(&src, PASSWORD);
    let out = ok(
        run(
            &src,
            &[
                "backup",
                "--password-file",
                path_str(&pw),
                "k",
                "--out",
                "-",
            ],
            b"",
        ),
        "backup --out -",
    );
    let bundle = out.stdout;
    assert!(
        bundle.starts_with(b"{\"type\":\"header\""),
        "the bundle alone is on stdout"
    );
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains("1 key(s) backed up to standard output"),
        "{report}"
    );
    no_dash_file(&src);
    // -q: the report is not printed at all.
    let quiet = ok(
        run(
            &src,
            &[
                "backup",
                "--password-file",
                path_str(&pw),
                "k",
                "--out",
                "-",
                "-q",
            ],
            b"",
        ),
        "backup --out - -q",
    );
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    assert!(quiet.stdout.starts_with(b"{\"type\":\"header\""));

    let verified = json_of(&ok(
        run(
            &src,
            &["verify", "-", "--password-file", path_str(&pw), "--json"],
            &bundle,
        ),
        "verify -",
    ));
    assert_eq!(verified["entries"].as_array().unwrap().len(), 1);
    let inspected = json_of(&ok(
        run(&src, &["bundle", "inspect", "-", "--json"], &bundle),
        "bundle inspect -",
    ));
    assert_eq!(inspected["entries"][0]["label"], "k");
    let human = ok(run(&src, &["bundle", "inspect", "-"], &bundle), "inspect");
    assert!(String::from_utf8_lossy(&human.stdout).starts_with("bundle (standard input)"));

    let pw_dst = password_file(&dst, PASSWORD);
    let before = dst.object_count();
    let restored = json_of(&ok(
        run(
            &dst,
            &[
                "restore",
                "-",
                "--password-file",
                path_str(&pw_dst),
                "--json",
            ],
            &bundle,
        ),
        "restore -",
    ));
    assert_eq!(restored["entries"][0]["label"], "k");
    assert_eq!(dst.object_count(), before + 1);

    // A blob on stdout and back.
    let blob = ok(
        run(
            &src,
            &[
                "backup",
                "--password-file",
                path_str(&pw),
                "k",
                "--format",
                "blob",
                "--out",
                "-",
            ],
            b"",
        ),
        "backup --format blob --out -",
    )
    .stdout;
    assert!(blob.starts_with(b"hsmkey-blob-v1:"));
    ok(
        run(
            &src,
            &["verify", "-", "--password-file", path_str(&pw)],
            &blob,
        ),
        "verify a blob from stdin",
    );
}

#[test]
fn public_keys_and_import_documents_through_pipes() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.generate("k", "aes-256", "any");
    dst.json(&[
        "key", "generate", "--label", "rcpt", "--type", "rsa-2048", "--usage", "unwrap",
    ]);
    let pem = ok(
        run(&dst, &["key", "public", "rcpt", "--out", "-"], b""),
        "key public",
    )
    .stdout;
    assert!(pem.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    let bundle = ok(
        run(
            &src,
            &["backup", "--recipient", "-", "k", "--out", "-"],
            &pem,
        ),
        "backup --recipient -",
    )
    .stdout;
    let before = dst.object_count();
    ok(
        run(&dst, &["restore", "-", "--recipient-key", "rcpt"], &bundle),
        "restore a recipient bundle from stdin",
    );
    assert_eq!(dst.object_count(), before + 1);

    // import-params | byok | import, every document through a pipe.
    let params = ok(
        run(
            &dst,
            &[
                "import-params",
                "--key-spec",
                "RSA_2048",
                "--algorithm",
                "RSAES_OAEP_SHA_1",
                "--out",
                "-",
            ],
            b"",
        ),
        "import-params --out -",
    );
    let p: Value = serde_json::from_slice(&params.stdout).unwrap();
    assert!(p["key_id"].is_string());
    assert!(String::from_utf8_lossy(&params.stderr).contains("written to standard output"));
    let byok = ok(
        run(
            &src,
            &[
                "byok",
                "--key",
                "k",
                "--target",
                "huawei",
                "--algorithm",
                "RSAES_OAEP_SHA_1",
                "--import-params",
                "-",
                "--out",
                "-",
            ],
            &params.stdout,
        ),
        "byok --import-params - --out -",
    );
    let report = String::from_utf8_lossy(&byok.stderr);
    assert!(report.contains("written: standard output"), "{report}");
    let imported = json_of(&ok(
        run(
            &dst,
            &[
                "import",
                "--material",
                "-",
                "--label",
                "travel",
                "--type",
                "aes-256",
                "--json",
            ],
            &byok.stdout,
        ),
        "import --material -",
    ));
    let kcv = src.json(&["key", "show", "k"])["keys"][0]["kcv"].clone();
    assert_eq!(imported["keys"][0]["kcv"], kcv);
    no_dash_file(&src);
    no_dash_file(&dst);
}

#[test]
fn out_dash_with_json_is_refused_before_any_work() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    t.put_kek("kek", &KEK_VALUE);
    t.json(&["key", "generate", "--label", "rsa", "--type", "rsa-2048"]);
    let pw = password_file(&t, PASSWORD);
    let pem = file(&t, "rsa.pem");
    t.json(&["key", "public", "rsa", "--out", path_str(&pem)]);
    let before = t.object_count();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "backup",
            "--password-file",
            path_str(&pw),
            "k",
            "--out",
            "-",
        ],
        vec!["key", "public", "rsa", "--out", "-"],
        vec![
            "import-params",
            "--key-spec",
            "RSA_2048",
            "--algorithm",
            "RSAES_OAEP_SHA_1",
            "--out",
            "-",
        ],
        vec![
            "byok",
            "--key",
            "k",
            "--target",
            "vault",
            "--algorithm",
            "SHA256",
            "--wrapping-key",
            path_str(&pem),
            "--out",
            "-",
        ],
    ];
    for args in cases {
        let (exit, e) = failed(&run(&t, &[&args[..], &["--json"]].concat(), b""));
        assert_eq!((exit, code(&e)), (2, "HK1007"), "{args:?}: {e}");
        assert!(e["message"].as_str().unwrap().contains("--out -"), "{e}");
    }
    assert_eq!(t.object_count(), before);
    // export-key's output is its JSON: --out - prints it once, with or
    // without --json, and writes no file.
    let doc = json_of(&ok(
        run(
            &t,
            &[
                "export-key",
                "--key",
                "k",
                "--kek",
                "kek",
                "--out",
                "-",
                "--json",
            ],
            b"",
        ),
        "export-key --out -",
    ));
    assert!(doc["export_key"].is_string(), "{doc}");
    no_dash_file(&t);
}

#[test]
fn a_failed_copy_to_stdout_is_an_error() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    t.json(&["key", "generate", "--label", "rsa", "--type", "rsa-2048"]);
    let pw = password_file(&t, PASSWORD);
    // stdout is /dev/full: every write fails (ENOSPC), as on a full disk
    // behind a redirection. Exit 0 must mean the output is complete.
    for args in [
        vec!["key", "public", "rsa", "--out", "-"],
        vec![
            "backup",
            "--password-file",
            path_str(&pw),
            "k",
            "--out",
            "-",
        ],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = std_cmd(&t).args(&args).stdout(full).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("error[HK1901]") && text.contains("(standard output)"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn only_one_input_reads_stdin() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    let pw = password_file(&t, PASSWORD);
    let bundle = file(&t, "b.bundle");
    t.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "k",
        "--out",
        path_str(&bundle),
    ]);
    let bytes = std::fs::read(&bundle).unwrap();
    let before = t.object_count();
    let (exit, e) = failed(&run(
        &t,
        &["restore", "-", "--password-file", "-", "--json"],
        &bytes,
    ));
    assert_eq!((exit, code(&e)), (2, "HK1007"), "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("bundle") && message.contains("password file"),
        "{e}"
    );
    // The PIN from `file:-` too, found at login, before anything is made.
    let (exit, e) = failed(
        &t.cmd()
            .current_dir(t.dir.path())
            .env_remove("HSMKEY_PIN")
            .args(["restore", "-", "--password-file", path_str(&pw)])
            .args(["--pin-source", "file:-", "--json"])
            .write_stdin(bytes.clone())
            .output()
            .unwrap(),
    );
    assert_eq!((exit, code(&e)), (2, "HK1007"), "{e}");
    assert_eq!(t.object_count(), before);
    // Alone, a PIN from stdin works.
    let listed = t
        .cmd()
        .env_remove("HSMKEY_PIN")
        .args(["key", "list", "--pin-source", "file:-", "--json"])
        .write_stdin(format!("{}\n", common::USER_PIN))
        .output()
        .unwrap();
    ok(listed, "key list --pin-source file:-");
}

#[test]
fn missing_or_unreadable_inputs_exit_10_naming_the_path() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    t.put_kek("kek", &KEK_VALUE);
    let pw = password_file(&t, PASSWORD);
    let missing = file(&t, "no-such-file");
    let m = path_str(&missing);
    let folder = path_str(t.dir.path());
    let out = file(&t, "out");
    let before = t.object_count();
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["restore", m, "--password-file", path_str(&pw)],
            "bundle",
            m,
        ),
        (vec!["verify", m, "--kek", "kek"], "bundle", m),
        (vec!["restore", folder, "--kek", "kek"], "bundle", folder),
        (vec!["bundle", "inspect", m], "bundle", m),
        (
            vec!["backup", "--password-file", m, "k", "--out", path_str(&out)],
            "password file",
            m,
        ),
        (
            vec!["backup", "--recipient", m, "k", "--out", path_str(&out)],
            "recipient public key",
            m,
        ),
        (
            vec![
                "byok",
                "--key",
                "k",
                "--target",
                "vault",
                "--algorithm",
                "SHA256",
                "--wrapping-key",
                m,
                "--out",
                path_str(&out),
            ],
            "wrapping key",
            m,
        ),
        (
            vec![
                "import",
                "--material",
                m,
                "--label",
                "x",
                "--type",
                "aes-256",
            ],
            "key material",
            m,
        ),
        (
            vec!["import-export-key", m, "--kek", "kek", "--label", "x"],
            "export key",
            m,
        ),
    ];
    for (args, what, path) in cases {
        let (exit, e) = failed(&run(&t, &[&args[..], &["--json"]].concat(), b""));
        assert_eq!((exit, code(&e)), (10, "HK1307"), "{args:?}: {e}");
        assert_eq!(e["context"]["input"], what, "{e}");
        assert_eq!(e["context"]["path"], path, "{e}");
    }
    assert!(!out.exists());
    assert_eq!(t.object_count(), before);
    // The human form names the path too.
    let human = run(&t, &["bundle", "inspect", m], b"");
    assert_eq!(human.status.code(), Some(10));
    let text = String::from_utf8_lossy(&human.stderr);
    assert!(
        text.starts_with("error[HK1307]") && text.contains(&format!("path: {m}")),
        "{text}"
    );
    // A PIN file stays a PIN problem (HK1103, exit 4).
    let (exit, e) = failed(&run(
        &t,
        &[
            "key",
            "list",
            "--pin-source",
            &format!("file:{m}"),
            "--json",
        ],
        b"",
    ));
    assert_eq!((exit, code(&e)), (4, "HK1103"), "{e}");
}

/// `hsmkey` as a std Command, with this token's environment, for a stdin
/// that is not a buffer (`/dev/zero`).
fn std_cmd(t: &TestToken) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("hsmkey"));
    let template = t.cmd();
    c.env_clear();
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.current_dir(t.dir.path());
    c
}

#[test]
fn stdin_inputs_keep_their_limits() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    let pw = password_file(&t, PASSWORD);
    let before = t.object_count();
    let zero = || Stdio::from(std::fs::File::open("/dev/zero").unwrap());
    // An endless bundle line stops at the line limit, as from a file.
    let out = std_cmd(&t)
        .args(["verify", "-", "--password-file", path_str(&pw), "--json"])
        .stdin(zero())
        .output()
        .unwrap();
    let (exit, e) = failed(&out);
    assert_eq!((exit, code(&e)), (6, "HK1302"), "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("longer than"),
        "{e}"
    );
    // A password from an endless stdin: the password file limit.
    let out = std_cmd(&t)
        .args([
            "backup",
            "--password-file",
            "-",
            "k",
            "--out",
            "x",
            "--json",
        ])
        .stdin(zero())
        .output()
        .unwrap();
    let (exit, e) = failed(&out);
    assert_eq!((exit, code(&e)), (6, "HK1301"), "{e}");
    assert_eq!(e["context"]["input"], "password file (standard input)");
    assert!(!t.dir.path().join("x").exists());
    // A blob over 16 MiB.
    let mut blob = b"hsmkey-blob-v1:".to_vec();
    blob.resize(16 * 1024 * 1024 + 100, b'A');
    let (exit, e) = failed(&run(
        &t,
        &["verify", "-", "--password-file", path_str(&pw), "--json"],
        &blob,
    ));
    assert_eq!((exit, code(&e)), (6, "HK1301"), "{e}");
    assert_eq!(e["context"]["input"], "blob (standard input)");
    assert_eq!(t.object_count(), before);
}

#[test]
fn the_password_policy_is_strength_by_default_vsp_on_request() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    t.put_kek("kek", &KEK_VALUE);
    let out = path_str(&file(&t, "b.bundle")).to_string();
    let backup = |pw: &str, extra: &[&str]| {
        let p = password_file(&t, pw);
        t.cmd()
            .args([
                "backup",
                "--password-file",
                path_str(&p),
                "k",
                "--out",
                &out,
                "--force",
            ])
            .args(extra)
            .arg("--json")
            .output()
            .unwrap()
    };
    // Passes the VSP rule, too easy to guess: refused by default with
    // zxcvbn's feedback, accepted under vsp.
    let (exit, e) = failed(&backup("abc123", &[]));
    assert_eq!((exit, code(&e)), (6, "HK1304"), "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("too easy to guess") && message.contains("--password-policy vsp"),
        "{e}"
    );
    assert!(!message.contains("abc123"));
    ok(
        backup("abc123", &["--password-policy", "vsp"]),
        "vsp accepts abc123",
    );
    // A passphrase with spaces: the default takes it, vsp does not.
    let (exit, e) = failed(&backup(PASSPHRASE, &["--password-policy", "vsp"]));
    assert_eq!((exit, code(&e)), (6, "HK1304"), "{e}");
    ok(backup(PASSPHRASE, &[]), "a passphrase with spaces");
    let p = password_file(&t, PASSPHRASE);
    ok(
        t.cmd()
            .args(["verify", &out, "--password-file", path_str(&p)])
            .output()
            .unwrap(),
        "verify with the passphrase",
    );
    // The policy is for password backups only.
    let (exit, e) = failed(
        &t.cmd()
            .args(["backup", "--kek", "kek", "k", "--out", &out, "--force"])
            .args(["--password-policy", "vsp", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!((exit, code(&e)), (2, "HK1007"), "{e}");
}

#[test]
fn the_password_prompt_never_runs_in_ci_or_without_a_terminal() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    let out = file(&t, "b.bundle");
    for ci in [true, false] {
        let mut cmd = t.cmd();
        if !ci {
            cmd.env_remove("CI");
        }
        let (exit, e) = failed(
            &cmd.args([
                "backup",
                "--password-prompt",
                "k",
                "--out",
                path_str(&out),
                "--json",
            ])
            .output()
            .unwrap(),
        );
        assert_eq!((exit, code(&e)), (4, "HK1108"), "{e}");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(if ci {
                "never prompts in CI"
            } else {
                "needs a terminal"
            }),
            "{e}"
        );
        assert!(!out.exists());
    }
    let pw = password_file(&t, PASSWORD);
    t.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "k",
        "--out",
        path_str(&out),
    ]);
    let mut cmd = t.cmd();
    let (exit, e) = failed(
        &cmd.env_remove("CI")
            .args(["verify", path_str(&out), "--password-prompt", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!((exit, code(&e)), (4, "HK1108"), "{e}");
}

/// `script(1)` from util-linux, or None (the test then says it is skipped).
fn script() -> Option<PathBuf> {
    ["/usr/bin/script", "/bin/script"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Run `hsmkey ARGS` on a pseudo-terminal with `env` (and nothing else but
/// PATH and TERM), typing `input`; returns the exit code and everything the
/// terminal showed.
fn on_terminal(script: &Path, env: &[(String, String)], args: &str, input: &str) -> (i32, String) {
    let bin = assert_cmd::cargo::cargo_bin("hsmkey");
    let mut c = std::process::Command::new(script);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The token's environment for [`on_terminal`], without CI.
fn terminal_env(t: &TestToken) -> Vec<(String, String)> {
    t.cmd()
        .get_envs()
        .filter(|(k, _)| *k != "CI")
        .filter_map(|(k, v)| {
            Some((
                k.to_string_lossy().into_owned(),
                v?.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

#[test]
fn the_password_prompt_on_a_terminal() {
    let Some(script) = script() else {
        eprintln!("skipped: script(1) from util-linux is not installed");
        return;
    };
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    let env = terminal_env(&t);
    let out = file(&t, "b.bundle");
    let backup = format!("backup --password-prompt k --out {}", path_str(&out));
    // Too easy to guess: refused after the first entry, with the feedback.
    let (exit, shown) = on_terminal(&script, &env, &backup, "abc123\n");
    assert_eq!(exit, 6, "{shown}");
    assert!(
        shown.contains("error[HK1304]") && shown.contains("too easy to guess"),
        "{shown}"
    );
    // Two entries that differ.
    let (exit, shown) = on_terminal(
        &script,
        &env,
        &backup,
        &format!("{PASSPHRASE}\n{PASSPHRASE}x\n"),
    );
    assert_eq!(exit, 4, "{shown}");
    assert!(
        shown.contains("error[HK1108]") && shown.contains("differ"),
        "{shown}"
    );
    assert!(!out.exists());
    // A passphrase with spaces, typed twice.
    let (exit, shown) = on_terminal(
        &script,
        &env,
        &backup,
        &format!("{PASSPHRASE}\n{PASSPHRASE}\n"),
    );
    assert_eq!(exit, 0, "{shown}");
    assert!(shown.contains("the same password again"), "{shown}");
    assert!(out.exists());
    // Read once to verify; a wrong one is HK1107.
    let verify = format!("verify {} --password-prompt", path_str(&out));
    let (exit, shown) = on_terminal(&script, &env, &verify, &format!("{PASSPHRASE}\n"));
    assert_eq!(exit, 0, "{shown}");
    assert!(shown.contains("1 key(s) verified"), "{shown}");
    let (exit, shown) = on_terminal(&script, &env, &verify, "violet tractor sings\n");
    assert_eq!(exit, 4, "{shown}");
    assert!(shown.contains("error[HK1107]"), "{shown}");
}

#[test]
fn no_color_means_no_escape_sequences() {
    let Some(script) = script() else {
        eprintln!("skipped: script(1) from util-linux is not installed");
        return;
    };
    let t = TestToken::new();
    // A profile whose module HSMKEY_MODULE overrides: a warning in the log,
    // coloured on a terminal unless NO_COLOR is set.
    let config = t.dir.path().join("xdg/hsmkey");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        "[profiles.p]\nmodule = \"/nowhere.so\"\n",
    )
    .unwrap();
    let mut env = terminal_env(&t);
    env.push((
        "XDG_CONFIG_HOME".into(),
        path_str(&t.dir.path().join("xdg")).into(),
    ));
    let with = |no_color: Option<&str>, args: &str| {
        let mut env = env.clone();
        if let Some(v) = no_color {
            env.push(("NO_COLOR".into(), v.into()));
        }
        on_terminal(&script, &env, args, "").1
    };
    for args in ["--profile p key list", "--help"] {
        let coloured = with(None, args);
        assert!(
            coloured.contains('\u{1b}'),
            "{args}: a terminal gets colour: {coloured:?}"
        );
        assert!(
            with(Some(""), args).contains('\u{1b}'),
            "{args}: an empty NO_COLOR is unset"
        );
        let plain = with(Some("1"), args);
        assert!(!plain.contains('\u{1b}'), "{args}: {plain:?}");
    }
    assert!(with(Some("1"), "--profile p key list").contains("HSMKEY_MODULE overrides module"));
}
