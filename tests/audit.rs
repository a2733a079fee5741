//! The audit trail on real tokens (docs/AUDIT.md): a line per operation
//! with the right fields, every kind of tampering named by `audit verify`,
//! a log that cannot be written stopping the command before a key leaves,
//! and concurrent runs keeping one chain.

mod common;

use std::path::{Path, PathBuf};

use common::{code, path_str, Kind, TestToken, KEK_VALUE};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The raw lines of the token's audit log.
fn raw(t: &TestToken) -> Vec<String> {
    std::fs::read_to_string(t.audit_log())
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The lines of the token's audit log, parsed.
fn lines(t: &TestToken) -> Vec<Value> {
    raw(t)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn last(t: &TestToken) -> Value {
    lines(t).pop().expect("an audit line")
}

fn sha256_file(p: &Path) -> String {
    sha256_hex(&std::fs::read(p).unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn file(t: &TestToken, name: &str) -> PathBuf {
    t.dir.path().join(name)
}

/// Write `lines` as a log file of their own.
fn log_file(t: &TestToken, name: &str, lines: &[String]) -> PathBuf {
    let p = file(t, name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&p, text).unwrap();
    p
}

/// `audit verify PATH` on `t`, expected to fail: (reason, line).
fn tampered(t: &TestToken, log: &Path, extra: &[&str]) -> (String, u64) {
    let (exit, e) = t.json_err(t.cmd().args(["audit", "verify", path_str(log)]).args(extra));
    assert_eq!((exit, code(&e)), (6, "HK1308"), "{e}");
    (
        e["context"]["reason"].as_str().unwrap().to_string(),
        e["context"]["line"].as_str().unwrap().parse().unwrap(),
    )
}

fn labels_of(line: &Value) -> Vec<String> {
    line["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap().to_string())
        .collect()
}

/// The common fields every line carries, and its signature by `t`.
fn check_common(t: &TestToken, l: &Value, op: &str) {
    assert_eq!(l["schema"], "hsmkey.audit-line.v1");
    assert_eq!(l["op"], op, "{l}");
    assert!(l["hsmkey"].as_str().unwrap().starts_with("0."));
    assert!(!l["user"].as_str().unwrap().is_empty());
    assert!(!l["host"].as_str().unwrap().is_empty());
    assert!(l["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(l["client"], Value::Null);
    assert_eq!(l["token"]["label"], t.label);
    assert_eq!(l["signer"]["serial"], l["token"]["serial"]);
    assert_eq!(l["mac"].as_str().unwrap().len(), 64);
}

fn kcv_of(t: &TestToken, label: &str) -> Value {
    t.json(&["key", "show", label])["keys"][0]["kcv"].clone()
}

#[test]
fn every_operation_leaves_its_line_with_its_fields() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    let kek_kcv = kcv_of(&t, "kek");

    let made = t.generate("pay", "aes-256", "any");
    let l = last(&t);
    check_common(&t, &l, "key generate");
    assert_eq!(l["seq"], 1);
    assert_eq!(l["keys"][0]["label"], "pay");
    assert_eq!(l["keys"][0]["id"], made["keys"][0]["id"]);
    assert_eq!(l["keys"][0]["kcv"], made["keys"][0]["kcv"]);
    assert_eq!(l["keys"][0]["version"], 1);
    assert_eq!(l["result"]["ok"], true);
    assert_eq!(l["protection"], Value::Null);

    t.json(&["key", "rotate", "pay"]);
    let l = last(&t);
    check_common(&t, &l, "key rotate");
    assert_eq!(
        (
            l["keys"][0]["label"].clone(),
            l["keys"][0]["version"].clone()
        ),
        ("pay@v2".into(), 2.into())
    );

    let bundle = file(&t, "pay.bundle");
    t.json(&["backup", "--kek", "kek", "pay", "--out", path_str(&bundle)]);
    let l = last(&t);
    check_common(&t, &l, "backup");
    assert_eq!(labels_of(&l), ["pay", "pay@v2"]);
    assert_eq!(l["protection"]["kind"], "kek");
    assert_eq!(l["protection"]["label"], "kek");
    assert_eq!(l["protection"]["kcv"], kek_kcv);
    assert_eq!(l["outputs"][0]["path"], path_str(&bundle));
    assert_eq!(l["outputs"][0]["sha256"], sha256_file(&bundle));

    t.json(&["verify", path_str(&bundle), "--kek", "kek"]);
    let l = last(&t);
    check_common(&t, &l, "verify");
    assert_eq!(l["inputs"][0]["sha256"], sha256_file(&bundle));
    assert_eq!(labels_of(&l), ["pay", "pay@v2"]);
    assert!(l["keys"][0]["id"].is_string());

    t.json(&["key", "generate", "--label", "tmp", "--type", "aes-128"]);
    t.json(&["key", "label", "tmp", "tmp-renamed"]);
    let l = last(&t);
    check_common(&t, &l, "key label");
    assert_eq!(labels_of(&l), ["tmp-renamed"]);
    assert_eq!(l["result"]["ok"], true);

    t.json(&["key", "destroy", "pay", "--yes"]);
    let l = last(&t);
    check_common(&t, &l, "key destroy");
    assert_eq!(labels_of(&l), ["pay", "pay@v2"]);

    t.json(&["restore", path_str(&bundle), "--kek", "kek"]);
    let l = last(&t);
    check_common(&t, &l, "restore");
    assert_eq!(labels_of(&l), ["pay", "pay@v2"]);
    assert_eq!(l["keys"][0]["id"], made["keys"][0]["id"]);
    assert_eq!(l["protection"]["kcv"], kek_kcv);
    assert_eq!(l["inputs"][0]["sha256"], sha256_file(&bundle));
    assert_eq!(l["dry_run"], false);

    // (A key unwrapped by SoftHSM has no size to export: a fresh one.)
    t.generate("exp", "aes-256", "any");
    let export = file(&t, "pay.export.json");
    let printed = t.json(&[
        "export-key",
        "--key",
        "exp",
        "--kek",
        "kek",
        "--out",
        path_str(&export),
    ]);
    let l = last(&t);
    check_common(&t, &l, "export-key");
    assert_eq!(l["keys"][0]["kcv"], printed["kcv"]);
    assert_eq!(l["protection"]["label"], "kek");
    assert_eq!(l["outputs"][0]["sha256"], sha256_file(&export));
    assert_eq!(l["outputs"][1]["path"], "-");
    // What leaves on stdout is hashed as printed: the --json document (with
    // its schema member), or the export key alone with --out -.
    let again = file(&t, "pay.export2.json");
    let run = t
        .cmd()
        .args([
            "--json",
            "export-key",
            "--key",
            "exp",
            "--kek",
            "kek",
            "--out",
        ])
        .arg(&again)
        .output()
        .unwrap();
    assert!(run.status.success());
    let l = last(&t);
    assert_eq!(l["outputs"][0]["sha256"], sha256_file(&again));
    assert_eq!(l["outputs"][1]["sha256"], sha256_hex(&run.stdout));
    let run = t
        .cmd()
        .args(["export-key", "--key", "exp", "--kek", "kek", "--out", "-"])
        .output()
        .unwrap();
    assert!(run.status.success());
    let l = last(&t);
    assert_eq!(l["outputs"].as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l["outputs"][0]["path"], "-");
    assert_eq!(l["outputs"][0]["sha256"], sha256_hex(&run.stdout));

    t.json(&[
        "import-export-key",
        path_str(&export),
        "--kek",
        "kek",
        "--label",
        "pay2",
    ]);
    let l = last(&t);
    check_common(&t, &l, "import-export-key");
    assert_eq!(labels_of(&l), ["pay2"]);
    assert_eq!(l["inputs"][0]["sha256"], sha256_file(&export));

    // Keys travel to another token through import parameters and BYOK.
    let params = file(&t, "params.json");
    let p = t.json(&[
        "import-params",
        "--key-spec",
        "RSA_2048",
        "--algorithm",
        "RSAES_OAEP_SHA_1",
        "--out",
        path_str(&params),
    ]);
    let l = last(&t);
    check_common(&t, &l, "import-params");
    let pair = format!("hsmkey-import-{}", p["key_id"].as_str().unwrap());
    assert_eq!(labels_of(&l), [pair.clone(), pair.clone()]);
    assert_eq!(l["outputs"][0]["sha256"], sha256_file(&params));

    let u = TestToken::new();
    u.generate("travel", "aes-256", "any");
    let material = file(&u, "material.json");
    u.json(&[
        "byok",
        "--key",
        "travel",
        "--target",
        "huawei",
        "--algorithm",
        "RSAES_OAEP_SHA_1",
        "--import-params",
        path_str(&params),
        "--out",
        path_str(&material),
    ]);
    let l = last(&u);
    check_common(&u, &l, "byok");
    assert_eq!(labels_of(&l), ["travel"]);
    use base64::Engine;
    let spki = base64::engine::general_purpose::STANDARD
        .decode(p["public_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(l["protection"]["kind"], "recipient");
    assert_eq!(
        l["protection"]["fingerprint"],
        hex::encode(Sha256::digest(&spki))
    );
    assert_eq!(l["outputs"][0]["sha256"], sha256_file(&material));

    t.json(&[
        "import",
        "--material",
        path_str(&material),
        "--label",
        "travel",
        "--type",
        "aes-256",
    ]);
    let l = last(&t);
    check_common(&t, &l, "import");
    assert_eq!(labels_of(&l), ["travel"]);
    assert_eq!(l["keys"][0]["kcv"], kcv_of(&u, "travel"));
    assert_eq!(l["protection"]["label"], pair);
    assert_eq!(l["inputs"][0]["sha256"], sha256_file(&material));

    // A refusal is recorded with its code.
    t.json_err(t.cmd().args(["key", "destroy", "nothing", "--yes"]));
    let l = last(&t);
    check_common(&t, &l, "key destroy");
    assert_eq!(l["result"]["ok"], false);
    assert_eq!(l["result"]["code"], "HK1004");
    assert_eq!(labels_of(&l), ["nothing"]);

    // Read-only commands leave no line; the chain verifies in the token.
    let count = raw(&t).len();
    t.json(&["key", "list"]);
    assert_eq!(raw(&t).len(), count);
    let v = t.json(&["audit", "verify"]);
    assert_eq!(v["lines"], count);
    assert_eq!(v["mac_verified"], count);
    assert_eq!(v["head"]["count"], count);
    assert_eq!(
        v["checked"],
        serde_json::json!(["json", "chain", "mac", "head"])
    );
    assert_eq!(u.json(&["audit", "verify"])["mac_verified"], 2);
    let seqs: Vec<u64> = lines(&t)
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=count as u64).collect::<Vec<_>>());
}

#[test]
fn token_init_is_signed_by_the_new_token() {
    let t = TestToken::empty();
    t.json_with_so(&["token", "init", "--label", "fresh"]);
    let l = last(&t);
    assert_eq!(l["op"], "token init");
    assert_eq!(l["result"]["ok"], true);
    assert!(l["signer"]["key_id"].is_string(), "{l}");
    let label = if t.kind == Kind::Nss {
        common::NSS_LABEL
    } else {
        "fresh"
    };
    assert_eq!(l["token"]["label"], label);
    let v = t.json_ok(t.cmd().env("HSMKEY_TOKEN", label).args(["audit", "verify"]));
    assert_eq!(v["mac_verified"], 1);
}

#[test]
fn a_security_officer_key_is_signed_after_the_so_session() {
    let t = TestToken::new();
    if t.kind == Kind::Nss {
        return; // NSS softokn refuses SO sessions once the user PIN is set
    }
    t.json_with_so(&["key", "generate", "--label", "tk", "--kek", "--trusted"]);
    let l = last(&t);
    assert_eq!(l["keys"][0]["label"], "tk");
    assert!(l["signer"]["key_id"].is_string(), "{l}");
    assert_eq!(t.json(&["audit", "verify"])["mac_verified"], 1);
}

/// Four lines: a key made, backed up, another made, destroyed.
fn four_lines(t: &TestToken) -> Vec<String> {
    t.put_kek("kek", &KEK_VALUE);
    t.generate("a", "aes-256", "any");
    let out = file(t, "a.bundle");
    t.json(&["backup", "--kek", "kek", "a", "--out", path_str(&out)]);
    t.generate("b", "aes-128", "none");
    t.json(&["key", "destroy", "b", "--yes"]);
    let r = raw(t);
    assert_eq!(r.len(), 4);
    r
}

/// Line `text` with the value of its member `key` changed, still a line
/// of the same shape (so that only the MAC can tell).
fn edit_member(text: &str, key: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap();
    let change = |s: &str| -> String {
        let mut c: Vec<char> = s.chars().collect();
        let last = c.len() - 1;
        c[last] = if c[last] == '0' { '1' } else { '0' };
        c.into_iter().collect()
    };
    let (from, to) = match (key, &v[key]) {
        ("client", Value::Null) => (
            "\"client\":null".to_string(),
            "\"client\":\"x\"".to_string(),
        ),
        (_, Value::String(s)) => (
            format!("\"{key}\":\"{s}\""),
            format!("\"{key}\":\"{}\"", change(s)),
        ),
        (_, Value::Number(n)) => (
            format!("\"{key}\":{n}"),
            format!("\"{key}\":{}", n.as_u64().unwrap() + 1),
        ),
        (_, Value::Bool(b)) => (format!("\"{key}\":{b}"), format!("\"{key}\":{}", !b)),
        ("token" | "signer", o) => {
            let s = o["serial"].as_str().unwrap();
            (
                format!(
                    "\"{key}\":{{\"label\":\"{}\",\"serial\":\"{s}\"",
                    o["label"].as_str().unwrap()
                ),
                format!(
                    "\"{key}\":{{\"label\":\"{}\",\"serial\":\"{}\"",
                    o["label"].as_str().unwrap(),
                    change(s)
                ),
            )
        }
        ("keys", a) => {
            let l = a[0]["label"].as_str().unwrap();
            (
                format!("\"keys\":[{{\"label\":\"{l}\""),
                format!("\"keys\":[{{\"label\":\"{l}x\""),
            )
        }
        ("protection", o) => {
            let l = o["label"].as_str().unwrap();
            (
                format!("\"label\":\"{l}\",\"kcv\""),
                format!("\"label\":\"{l}x\",\"kcv\""),
            )
        }
        ("inputs", _) => (
            "\"inputs\":[]".to_string(),
            "\"inputs\":[{\"path\":\"x\",\"sha256\":\"00\"}]".to_string(),
        ),
        ("outputs", a) => {
            let s = a[0]["sha256"].as_str().unwrap();
            (
                format!("\"sha256\":\"{s}\""),
                format!("\"sha256\":\"{}\"", change(s)),
            )
        }
        ("result", _) => ("\"ok\":true".to_string(), "\"ok\":false".to_string()),
        (k, other) => panic!("no edit for member {k}: {other}"),
    };
    assert!(text.contains(&from), "{key}: {from}");
    let edited = text.replacen(&from, &to, 1);
    assert_ne!(edited, text);
    edited
}

#[test]
fn each_kind_of_tampering_is_named() {
    let t = TestToken::new();
    let good = four_lines(&t);
    let v = t.json(&["audit", "verify"]);
    assert_eq!(v["mac_verified"], 4);

    // Any member of a line, edited.
    let backup: Value = serde_json::from_str(&good[1]).unwrap();
    for key in backup.as_object().unwrap().keys() {
        let mut lines = good.clone();
        lines[1] = edit_member(&good[1], key);
        let log = log_file(&t, "edited.jsonl", &lines);
        let want = if key == "schema" {
            "malformed"
        } else {
            "edited"
        };
        assert_eq!(tampered(&t, &log, &[]), (want.to_string(), 2), "{key}");
    }
    // Removed, swapped, repeated lines; a cut end.
    let mut l = good.clone();
    l.remove(1);
    assert_eq!(
        tampered(&t, &log_file(&t, "deleted.jsonl", &l), &[]),
        ("missing".into(), 2)
    );
    let mut l = good.clone();
    l.swap(1, 2);
    assert_eq!(
        tampered(&t, &log_file(&t, "swapped.jsonl", &l), &[]),
        ("reordered".into(), 2)
    );
    let mut l = good.clone();
    l.insert(2, good[1].clone());
    assert_eq!(
        tampered(&t, &log_file(&t, "twice.jsonl", &l), &[]),
        ("duplicated".into(), 3)
    );
    let mut l = good.clone();
    l.pop();
    assert_eq!(
        tampered(&t, &log_file(&t, "cut.jsonl", &l), &[]),
        ("truncated".into(), 4)
    );
    // A line added by someone without the token: chain right, MAC not.
    let prev = hex::encode(Sha256::digest(good[3].as_bytes()));
    let old_prev = serde_json::from_str::<Value>(&good[3]).unwrap()["prev"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = good[3]
        .replacen("\"seq\":4", "\"seq\":5", 1)
        .replacen(&old_prev, &prev, 1)
        .replacen("\"op\":\"key destroy\"", "\"op\":\"restore\"", 1);
    let mut l = good.clone();
    l.push(forged);
    assert_eq!(
        tampered(&t, &log_file(&t, "forged.jsonl", &l), &[]),
        ("forged".into(), 5)
    );
    // The log of another token in its place.
    let u = TestToken::new();
    u.generate("x", "aes-256", "any");
    assert_eq!(tampered(&t, &u.audit_log(), &[]), ("foreign".into(), 1));

    // The chain alone: an edit before the last line shows at the next one;
    // a cut end does not show.
    let mut l = good.clone();
    l[1] = edit_member(&good[1], "user");
    let log = log_file(&t, "edited.jsonl", &l);
    assert_eq!(tampered(&t, &log, &["--no-token"]), ("edited".into(), 3));
    let mut l = good.clone();
    l.pop();
    let cut = log_file(&t, "cut.jsonl", &l);
    let v = t.json_ok(t.cmd().env_remove("HSMKEY_PIN").args([
        "audit",
        "verify",
        "--no-token",
        path_str(&cut),
    ]));
    assert_eq!(v["checked"], serde_json::json!(["json", "chain"]));
    assert_eq!(v["lines"], 3);
    // The real log was never touched.
    assert_eq!(raw(&t), good);
}

#[test]
fn a_failed_login_leaves_an_unsigned_line_the_next_signed_line_anchors() {
    let t = TestToken::new();
    t.generate("a", "aes-256", "any");
    let (_, e) = t.json_err(
        t.cmd()
            .env("HSMKEY_PIN", "999999")
            .args(["key", "destroy", "a", "--yes"]),
    );
    assert_eq!(code(&e), "HK1101");
    let l = last(&t);
    assert_eq!(l["result"]["code"], "HK1101");
    assert_eq!(
        (l["signer"].clone(), l["mac"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(l["token"]["label"], t.label);
    assert_eq!(tampered(&t, &t.audit_log(), &[]), ("unanchored".into(), 2));
    t.generate("b", "aes-256", "any");
    let v = t.json(&["audit", "verify"]);
    assert_eq!(
        (v["mac_verified"].clone(), v["unsigned"].clone()),
        (2.into(), 1.into())
    );
}

/// Audit objects in the token: (label, class) of each.
fn audit_objects(t: &TestToken) -> Vec<(String, String)> {
    t.with_session(|s| {
        let mut out = Vec::new();
        for class in [ObjectClass::SECRET_KEY, ObjectClass::DATA] {
            for h in s.find_objects(&[Attribute::Class(class)]).unwrap() {
                for a in s.get_attributes(h, &[AttributeType::Label]).unwrap() {
                    if let Attribute::Label(l) = a {
                        let l = String::from_utf8_lossy(&l).into_owned();
                        if l.starts_with(common::AUDIT_PREFIX) {
                            out.push((l, format!("{class}")));
                        }
                    }
                }
            }
        }
        out.sort();
        out
    })
}

#[test]
fn a_log_that_cannot_take_the_line_stops_the_command_before_the_key_leaves() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    // A path no one can create: its folder is a file.
    let blocker = file(&t, "not-a-folder");
    std::fs::write(&blocker, "x").unwrap();
    let unwritable = blocker.join("audit.jsonl");
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(t.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    // On a fresh token: nothing is made, the MAC key included.
    let (exit, e) = t.json_err(t.cmd().env("HSMKEY_AUDIT_LOG", &unwritable).args([
        "key",
        "generate",
        "--label",
        "a",
        "--type",
        "aes-256",
        "--backup-policy",
        "any",
    ]));
    assert_eq!((exit, code(&e)), (1, "HK1904"), "{e}");
    assert_eq!(e["context"]["path"], path_str(&unwritable));
    assert!(audit_objects(&t).is_empty());
    assert!(t.object_set().iter().all(|o| o.2.as_deref() != Some("a")));

    t.generate("a", "aes-256", "any");
    let objects = t.object_set();
    let audit = audit_objects(&t);
    let files = listing();
    let lines_before = raw(&t);
    let out = file(&t, "a.bundle");
    let export = file(&t, "a.export");
    let runs: Vec<Vec<&str>> = vec![
        vec!["backup", "--kek", "kek", "a", "--out", path_str(&out)],
        vec![
            "export-key",
            "--key",
            "a",
            "--kek",
            "kek",
            "--out",
            path_str(&export),
        ],
        vec!["key", "destroy", "a", "--yes"],
        vec!["key", "rotate", "a"],
    ];
    // A log whose last line was cut (a disk that filled up mid-line) is
    // refused the same way.
    let cut = file(&t, "cut.jsonl");
    std::fs::write(&cut, format!("{}\n{{\"schema\":\"hsm", lines_before[0])).unwrap();
    let mut logs = vec![
        unwritable.clone(),
        cut.clone(),
        PathBuf::from("/proc/hsmkey-audit.jsonl"),
    ];
    if !nix_is_root() {
        let ro = file(&t, "read-only.jsonl");
        std::fs::write(&ro, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o400)).unwrap();
        logs.push(ro);
    }
    // A nearly full file system, where one can be mounted (root): refused
    // by the free-space check before anything starts.
    let small = file(&t, "small-fs");
    std::fs::create_dir(&small).unwrap();
    let _mounted = SmallFs::mount(&small);
    if _mounted.is_some() {
        logs.push(small.join("audit.jsonl"));
    }
    for log in &logs {
        for args in &runs {
            let (exit, e) = t.json_err(t.cmd().env("HSMKEY_AUDIT_LOG", log).args(args));
            assert_eq!((exit, code(&e)), (1, "HK1904"), "{log:?} {args:?}: {e}");
            assert!(
                !out.exists() && !export.exists(),
                "{args:?}: a file was written"
            );
        }
    }
    assert_eq!(t.object_set(), objects);
    assert_eq!(audit_objects(&t), audit);
    let mut now = listing();
    now.retain(|n| n != "cut.jsonl" && n != "read-only.jsonl" && n != "small-fs");
    assert_eq!(now, files, "no file, temporary or not, was left");
    assert_eq!(raw(&t), lines_before);
}

/// A 256 KiB tmpfs, unmounted when dropped; `None` where mounting is not
/// allowed (not root, or no mount in this container).
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path) -> Option<SmallFs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs(dir.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[test]
fn concurrent_runs_keep_one_chain() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t.generate("a", "aes-256", "any");
    let out = file(&t, "a.bundle");
    t.json(&["backup", "--kek", "kek", "a", "--out", path_str(&out)]);
    // Two processes at a time, each appending to the same log; `verify`
    // takes no token lock, so their appends meet.
    const RUNS: usize = 6;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..RUNS {
                    t.json(&["verify", path_str(&out), "--kek", "kek"]);
                }
            });
        }
    });
    let all = lines(&t);
    assert_eq!(all.len(), 2 + 2 * RUNS);
    let v = t.json(&["audit", "verify"]);
    assert_eq!(v["mac_verified"], 2 + 2 * RUNS);
    assert_eq!(v["head"]["count"], 2 + 2 * RUNS);
}

#[test]
fn no_audit_is_said_and_records_nothing() {
    let t = TestToken::new();
    let out = t
        .cmd()
        .args([
            "--no-audit",
            "key",
            "generate",
            "--label",
            "a",
            "--type",
            "aes-256",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--no-audit: this key generate is not recorded"));
    assert!(!t.audit_log().exists());
    assert!(audit_objects(&t).is_empty(), "no MAC key without a log");
}

#[test]
fn the_audit_objects_stay_out_of_the_key_commands() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t.generate("a", "aes-256", "any");
    let objects = audit_objects(&t);
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert_eq!(objects[0].0, "hsmkey-audit-head");
    assert_eq!(
        objects[1],
        ("hsmkey-audit-mac".to_string(), "CKO_SECRET_KEY".to_string())
    );
    let head_class = if t.kind == Kind::Nss {
        "CKO_SECRET_KEY"
    } else {
        "CKO_DATA"
    };
    assert_eq!(objects[0].1, head_class);
    // The MAC key never leaves and cannot be read.
    let flags = t.with_session(|s| {
        let h = s
            .find_objects(&[Attribute::Label(b"hsmkey-audit-mac".to_vec())])
            .unwrap()[0];
        s.get_attributes(
            h,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Private,
                AttributeType::Token,
            ],
        )
        .unwrap()
    });
    assert!(flags.contains(&Attribute::Sensitive(true)));
    assert!(flags.contains(&Attribute::Extractable(false)));
    assert!(flags.contains(&Attribute::Private(true)));
    let listed: Vec<String> = t.json(&["key", "list"])["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["a", "kek"]);
    let out = file(&t, "all.bundle");
    let v = t.json(&["backup", "--kek", "kek", "--all", "--out", path_str(&out)]);
    assert_eq!(common::labels(&v, "entries"), ["a"]);
    assert!(
        common::labels(&v, "skipped")
            .iter()
            .all(|l| !l.starts_with("hsmkey-audit-")),
        "{v}"
    );
    for name in ["hsmkey-audit-mac", "hsmkey-audit-head"] {
        let (_, e) = t.json_err(t.cmd().args(["key", "destroy", name, "--yes"]));
        assert_eq!(code(&e), "HK1004");
        let (_, e) = t.json_err(
            t.cmd()
                .args(["key", "generate", "--label", name, "--type", "aes-128"]),
        );
        assert_eq!(code(&e), "HK1301");
    }
    assert_eq!(audit_objects(&t).len(), 2);
}

#[test]
fn the_default_log_is_in_the_users_state_folder() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestToken::new();
    let home = file(&t, "home");
    std::fs::create_dir(&home).unwrap();
    t.json_ok(
        t.cmd()
            .env_remove("HSMKEY_AUDIT_LOG")
            .env("HOME", &home)
            .args(["key", "generate", "--label", "a", "--type", "aes-256"]),
    );
    let log = home.join(".local/state/hsmkey/audit.jsonl");
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(log.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let state = file(&t, "state");
    t.json_ok(
        t.cmd()
            .env_remove("HSMKEY_AUDIT_LOG")
            .env("HOME", &home)
            .env("XDG_STATE_HOME", &state)
            .args(["key", "generate", "--label", "b", "--type", "aes-256"]),
    );
    assert!(state.join("hsmkey/audit.jsonl").exists());
    // --audit-log wins over the variable.
    let given = file(&t, "given.jsonl");
    t.json_ok(t.cmd().args([
        "--audit-log",
        path_str(&given),
        "key",
        "destroy",
        "a",
        "--yes",
    ]));
    assert_eq!(std::fs::read_to_string(&given).unwrap().lines().count(), 1);
    assert!(!t.audit_log().exists());
}

#[test]
fn audit_show_filters_by_operation_key_and_time() {
    let t = TestToken::new();
    t.generate("pay", "aes-256", "any");
    t.json(&["key", "rotate", "pay"]);
    t.generate("other", "aes-256", "any");
    let show = |args: &[&str]| -> Vec<u64> {
        let mut cmd = t.cmd();
        cmd.env_remove("HSMKEY_PIN")
            .args(["audit", "show"])
            .args(args);
        t.json_ok(&mut cmd)["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(show(&[]), [1, 2, 3]);
    assert_eq!(show(&["--op", "key rotate"]), [2]);
    assert_eq!(show(&["--key", "pay"]), [1, 2]);
    assert_eq!(show(&["--key", "pay@v2"]), [2]);
    assert_eq!(show(&["--since", "1h"]), [1, 2, 3]);
    assert_eq!(show(&["--since", "2999-01-01"]), Vec::<u64>::new());
    let (exit, e) = t.json_err(t.cmd().args(["audit", "show", "--since", "yesterday"]));
    assert_eq!((exit, code(&e)), (6, "HK1301"));
    // The human table names each line.
    let out = t
        .cmd()
        .args(["audit", "show", "--key", "other"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("key generate") && text.contains("other") && text.contains("1 line(s)"),
        "{text}"
    );
}

/// The log a profile names (`audit_log`) is used when neither
/// `--audit-log` nor `HSMKEY_AUDIT_LOG` is given: flag > variable >
/// profile > default.
#[test]
fn a_profile_names_the_audit_log_below_the_flag_and_the_variable() {
    let t = TestToken::new();
    let from_profile = file(&t, "profile.jsonl");
    let from_flag = file(&t, "flag.jsonl");
    let config = file(&t, "config.toml");
    std::fs::write(
        &config,
        format!("[profiles.p]\naudit_log = \"{}\"\n", from_profile.display()),
    )
    .unwrap();
    let generate = |label: &str, cmd: &mut assert_cmd::Command| {
        let out = cmd
            .env("HSMKEY_CONFIG", &config)
            .args(["--profile", "p", "key", "generate", "--label", label])
            .args(["--type", "aes-128"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let count = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    // HSMKEY_AUDIT_LOG (set for every test run) wins over the profile.
    generate("by-variable", &mut t.cmd());
    assert_eq!((count(&t.audit_log()), count(&from_profile)), (1, 0));
    // Without it, the profile's log.
    generate("by-profile", t.cmd().env_remove("HSMKEY_AUDIT_LOG"));
    assert_eq!((count(&t.audit_log()), count(&from_profile)), (1, 1));
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&from_profile).unwrap()).unwrap()
            ["keys"][0]["label"],
        "by-profile"
    );
    // --audit-log wins over both.
    generate("by-flag", t.cmd().arg("--audit-log").arg(&from_flag));
    assert_eq!(
        (
            count(&t.audit_log()),
            count(&from_profile),
            count(&from_flag)
        ),
        (1, 1, 1)
    );
    // profile show names it.
    let v = t.json_ok(
        t.cmd()
            .env("HSMKEY_CONFIG", &config)
            .args(["profile", "show", "p"]),
    );
    assert_eq!(v["audit_log"], path_str(&from_profile));
}

/// `--out -` and `-` for standard input: the line holds the SHA-256 of the
/// bytes printed and of the bytes read, with path `-`.
#[test]
fn standard_output_and_input_are_recorded_by_their_bytes() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t.generate("pay", "aes-256", "any");
    let run = t
        .cmd()
        .args(["backup", "--kek", "kek", "pay", "--out", "-"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let l = last(&t);
    check_common(&t, &l, "backup");
    assert_eq!(labels_of(&l), ["pay"]);
    assert_eq!(l["outputs"][0]["path"], "-");
    assert_eq!(l["outputs"][0]["sha256"], sha256_hex(&run.stdout));
    let bundle = run.stdout;
    let run = t
        .cmd()
        .args(["verify", "-", "--kek", "kek"])
        .write_stdin(bundle.clone())
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let l = last(&t);
    check_common(&t, &l, "verify");
    assert_eq!(l["inputs"][0]["path"], "-");
    assert_eq!(l["inputs"][0]["sha256"], sha256_hex(&bundle));
    assert_eq!(labels_of(&l), ["pay"]);
}
