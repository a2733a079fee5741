//! `hsmkey bundle inspect`: bundles made on a real token with each scheme
//! are described exactly as `key list` and `backup` reported them, with no
//! module loaded; broken vectors give the codes restore gives, and vectors
//! whose damage only the MAC shows are described with `mac_checked: false`.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{code, path_str, TestToken, KEK_VALUE};
use serde_json::Value;

const PASSWORD: &str = "Inspect-Pass#1";

/// hsmkey with nothing that could reach a token: a module path that does not
/// exist, no PIN, no token, CI set so nothing prompts.
fn tokenless() -> Command {
    let mut c = Command::cargo_bin("hsmkey").unwrap();
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CI", "true")
        .env("HSMKEY_MODULE", "/nonexistent/libpkcs11.so");
    c
}

fn inspect_json(file: &Path) -> Value {
    let out = tokenless()
        .args(["bundle", "inspect", path_str(file), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect {} failed: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    common::documented(&out.stdout)
}

fn inspect_err(file: &Path) -> (i32, Value) {
    let out = tokenless()
        .args(["bundle", "inspect", path_str(file), "--json"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}: expected failure",
        file.display()
    );
    let v = common::documented(&out.stdout);
    assert_eq!(v["schema"], "hsmkey.error.v1");
    (out.status.code().unwrap(), v)
}

/// Keys of every kind, one of them rotated; returns their labels.
fn populate(t: &TestToken) -> Vec<&'static str> {
    for (label, ty) in [
        ("a128", "aes-128"),
        ("gen", "generic-256"),
        ("rsa", "rsa-2048"),
    ] {
        t.generate(label, ty, "any");
    }
    t.json(&["key", "rotate", "a128"]);
    vec!["a128", "a128@v2", "gen", "rsa"]
}

/// The bundle's entries against `key list --json` and `backup --json`.
fn assert_entries_match(inspected: &Value, listed: &Value, made: &Value, labels: &[&str]) {
    let entries = inspected["entries"].as_array().unwrap();
    let shown: Vec<&str> = entries
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    let backed_up: Vec<&str> = made["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert_eq!(shown, backed_up, "in the order backup wrote them");
    let mut sorted = shown.clone();
    sorted.sort();
    assert_eq!(sorted, labels);
    for (e, b) in entries.iter().zip(made["entries"].as_array().unwrap()) {
        let label = e["label"].as_str().unwrap();
        for field in ["class", "type", "size", "kcv", "wrap"] {
            assert_eq!(e[field], b[field], "{label}: {field} as backup reported");
        }
        let k = listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["label"] == label && k["class"] == e["class"])
            .unwrap_or_else(|| panic!("{label} in key list"));
        for field in [
            "name",
            "version",
            "id",
            "class",
            "type",
            "usage",
            "backup_policy",
        ] {
            assert_eq!(e[field], k[field], "{label}: {field} as key list shows it");
        }
        if e["class"] == "secret-key" {
            assert_eq!(e["kcv"], k["kcv"], "{label}: KCV");
            // key list names where its KCV came from (CKA_CHECK_VALUE or an
            // operation); the bundle names the algorithm.
            let method = if e["type"] == "aes" {
                "aes-ecb-zero"
            } else {
                "hmac-sha256-empty"
            };
            assert_eq!(e["kcv_method"], method, "{label}: KCV method");
            assert_eq!(e["public"], Value::Null);
        } else {
            assert_eq!(e["kcv"], Value::Null, "{label}");
            assert_eq!(e["public"], "rsa", "{label}");
        }
        assert!(e["wrapped_bytes"].as_u64().unwrap() > 0);
    }
    let a2 = entries.iter().find(|e| e["label"] == "a128@v2").unwrap();
    assert_eq!(
        (a2["name"].as_str(), a2["version"].as_u64()),
        (Some("a128"), Some(2))
    );
}

fn assert_common(inspected: &Value, t: &TestToken, made: &Value, container: &str) {
    assert_eq!(inspected["schema"], "hsmkey.bundle-inspect.v1");
    assert_eq!(inspected["container"], container);
    assert_eq!(inspected["format"], "hsmkey-bundle");
    assert_eq!(inspected["format_version"], 1);
    assert_eq!(inspected["protection"]["scheme"], made["scheme"]);
    assert_eq!(inspected["source"]["label"], t.label.as_str());
    assert!(inspected["tool"].as_str().unwrap().starts_with("hsmkey "));
    assert!(inspected["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(inspected["mac"]["algorithm"], "hmac-sha256");
    assert_eq!(inspected["mac"]["trailer_mac_bytes"], 32);
    assert_eq!(inspected["mac_checked"], false);
    let notes = inspected["notes"].as_array().unwrap();
    assert!(
        notes[0].as_str().unwrap().contains("hsmkey verify"),
        "{notes:?}"
    );
    let n = made["entries"].as_array().unwrap().len() as u64;
    let st = &inspected["structure"];
    assert_eq!(st["intact"], true);
    assert_eq!(
        (st["entries"].as_u64(), st["trailer_entries"].as_u64()),
        (Some(n), Some(n))
    );
    assert_eq!(st["lines"].as_u64(), Some(n + 2));
    assert_eq!(st["max_line_bytes"], 262_144);
    assert!(st["longest_line_bytes"].as_u64().unwrap() <= 262_144);
}

#[test]
fn each_scheme_is_described_as_key_list_and_backup_reported_it() {
    let t = TestToken::new();
    t.put_kek("shared-kek", &KEK_VALUE);
    let labels = populate(&t);
    t.json(&[
        "key",
        "generate",
        "--label",
        "transport",
        "--type",
        "rsa-2048",
        "--usage",
        "unwrap",
    ]);
    let pem = t.dir.path().join("transport.pem");
    let public = t.json(&["key", "public", "transport", "--out", path_str(&pem)]);
    let pw = t.dir.path().join("pw.txt");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let listed = t.json(&["key", "list"]);
    let kek = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "shared-kek")
        .unwrap()
        .clone();
    let keys = ["a128", "gen", "rsa"];

    // KEK.
    let file = t.dir.path().join("kek.bundle");
    let mut args = vec!["backup", "--kek", "shared-kek", "--out", path_str(&file)];
    args.extend(keys);
    let made = t.json(&args);
    let v = inspect_json(&file);
    assert_common(&v, &t, &made, "bundle");
    assert_entries_match(&v, &listed, &made, &labels);
    let p = &v["protection"]["kek"];
    assert_eq!(p["label"], "shared-kek");
    assert_eq!(p["id"], kek["id"]);
    assert_eq!(p["kcv"], kek["kcv"]);
    assert!(v["notes"][0]
        .as_str()
        .unwrap()
        .contains("--kek 'shared-kek'"));

    // Password.
    let file = t.dir.path().join("pw.bundle");
    let mut args = vec![
        "backup",
        "--password-file",
        path_str(&pw),
        "--out",
        path_str(&file),
    ];
    args.extend(keys);
    let made = t.json(&args);
    let v = inspect_json(&file);
    assert_common(&v, &t, &made, "bundle");
    assert_entries_match(&v, &listed, &made, &labels);
    assert_eq!(
        v["protection"]["kdf"],
        serde_json::json!({
            "algorithm": "argon2id", "version": 19, "m_kib": 65536, "t": 3, "p": 1, "salt_bytes": 16
        })
    );
    let raw = std::fs::read_to_string(&file).unwrap();
    let header: Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    let salt = header["protection"]["kdf"]["salt"].as_str().unwrap();
    let stdout = tokenless()
        .args(["bundle", "inspect", path_str(&file), "--json"])
        .output()
        .unwrap()
        .stdout;
    let text = String::from_utf8(stdout).unwrap();
    assert!(!text.contains(salt), "the salt is not shown");
    assert!(!text.contains(header["mac"]["wrapped_key"].as_str().unwrap()));

    // Recipient.
    let file = t.dir.path().join("to.bundle");
    let mut args = vec![
        "backup",
        "--recipient",
        path_str(&pem),
        "--out",
        path_str(&file),
    ];
    args.extend(keys);
    let made = t.json(&args);
    let v = inspect_json(&file);
    assert_common(&v, &t, &made, "bundle");
    assert_entries_match(&v, &listed, &made, &labels);
    let r = &v["protection"]["recipient"];
    assert_eq!(r["spki_sha256"], public["spki_sha256"]);
    assert_eq!(r["bits"], 2048);
    assert_eq!(r["oaep_hash"], "sha1");
    assert_eq!(r["wrapped_transfer_key_bytes"], 256);

    // The text form says the same, and says what it did not check.
    let out = tokenless()
        .args(["bundle", "inspect", path_str(&file)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for label in &labels {
        assert!(text.contains(label), "{label} in {text}");
    }
    assert!(
        text.contains(public["spki_sha256"].as_str().unwrap()),
        "{text}"
    );
    assert!(text.contains("structure: intact"), "{text}");
    assert!(
        text.contains("MAC (integrity against tampering) was not checked"),
        "{text}"
    );

    // A blob of one key and its versions.
    let blob = t.dir.path().join("a128.blob");
    let made = t.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "--format",
        "blob",
        "a128",
        "--out",
        path_str(&blob),
    ]);
    let v = inspect_json(&blob);
    assert_common(&v, &t, &made, "blob");
    let shown: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["a128", "a128@v2"]);
}

#[test]
fn no_module_is_loaded_and_no_pin_asked() {
    let good = vectors().join("good_password.bundle");
    // The same environment cannot reach a token at all ...
    let out = tokenless()
        .args(["token", "list", "--json"])
        .output()
        .unwrap();
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code(&e), "HK1001", "no module at /nonexistent: {e}");
    // ... and inspect does not need one.
    let v = inspect_json(&good);
    assert_eq!(v["protection"]["scheme"], "password");
    assert_eq!(v["entries"].as_array().unwrap().len(), 3);
    // Without --json too, and with a PIN source that would fail if read.
    let out = tokenless()
        .args(["bundle", "inspect", path_str(&good)])
        .args(["--pin-source", "file:/nonexistent/pin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bundle")
}

/// Vectors whose damage only the MAC or the derived key shows: intact in
/// structure, so inspect describes them; `verify` refuses them.
const NEEDS_THE_TOKEN: [&str; 6] = [
    "fail_entries_reordered.bundle",
    "fail_entry_removed.bundle",
    "fail_flipped_wrapped_key.bundle",
    "fail_header_changed.bundle",
    "fail_label_changed.bundle",
    "fail_salt_changed.bundle",
];

#[test]
fn vectors_give_the_codes_restore_gives_for_their_structure() {
    let mut refused = 0;
    for entry in std::fs::read_dir(vectors()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".expect") {
            continue;
        }
        if name.starts_with("good_") || NEEDS_THE_TOKEN.contains(&name.as_str()) {
            let v = inspect_json(&path);
            assert_eq!(v["structure"]["intact"], true, "{name}");
            assert_eq!(v["mac_checked"], false, "{name}");
            continue;
        }
        let expect = std::fs::read_to_string(format!("{}.expect", path.display())).unwrap();
        let want = expect
            .lines()
            .find_map(|l| l.strip_prefix("expect: "))
            .unwrap()
            .trim();
        let (exit, e) = inspect_err(&path);
        assert_eq!(code(&e), want, "{name}: {e}");
        assert_eq!(exit, 6, "{name}");
        refused += 1;
    }
    assert!(refused >= 8, "the structural fail_ vectors: {refused}");
}
