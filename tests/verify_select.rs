//! `verify --only NAME[@vK]` (docs/FORMAT.md, "Verifying some keys"): only
//! the chosen keys are unwrapped and checked, the others are reported as
//! left out, the MAC still covers every line, and nothing is created.

mod common;

use std::path::{Path, PathBuf};

use common::{code, labels, path_str, TestToken, KEK_VALUE};
use serde_json::Value;

/// A source token with a KEK, `pay` (three versions), `other`, `sig` (EC)
/// and `gen`, all backed up under the KEK; and a second token with the KEK.
fn bundle_of_many() -> (TestToken, PathBuf, TestToken) {
    let src = TestToken::new();
    src.put_kek("kek", &KEK_VALUE);
    src.generate("pay", "aes-256", "any");
    src.json(&["key", "rotate", "pay"]);
    src.json(&["key", "rotate", "pay"]);
    src.generate("other", "aes-128", "any");
    src.generate("sig", "ec-p256", "any");
    src.generate("gen", "generic-256", "any");
    let bundle = src.dir.path().join("many.bundle");
    src.json(&[
        "backup",
        "--kek",
        "kek",
        "--all",
        "--out",
        path_str(&bundle),
    ]);
    let dst = TestToken::new();
    dst.put_kek("kek", &KEK_VALUE);
    (src, bundle, dst)
}

fn verify(t: &TestToken, bundle: &Path, only: &[&str]) -> Value {
    let before = t.object_set();
    let mut args = vec!["verify", path_str(bundle), "--kek", "kek"];
    for o in only {
        args.extend(["--only", o]);
    }
    let v = t.json(&args);
    assert_eq!(t.object_set(), before, "verify creates nothing");
    v
}

fn verify_err(t: &TestToken, bundle: &Path, only: &[&str]) -> (i32, Value) {
    let before = t.object_set();
    let mut cmd = t.cmd();
    cmd.args(["verify", path_str(bundle), "--kek", "kek"]);
    for o in only {
        cmd.args(["--only", o]);
    }
    let out = t.json_err(&mut cmd);
    assert_eq!(t.object_set(), before, "{only:?}: nothing created");
    out
}

#[test]
fn only_the_chosen_keys_are_verified() {
    let (_src, bundle, dst) = bundle_of_many();
    let all = verify(&dst, &bundle, &[]);
    assert_eq!(
        labels(&all, "entries"),
        ["gen", "other", "pay", "pay@v2", "pay@v3", "sig"]
    );
    assert!(all["left_out"].as_array().unwrap().is_empty());

    // A name takes every version; the others are left out, by label and id.
    let some = verify(&dst, &bundle, &["pay", "sig"]);
    assert_eq!(labels(&some, "entries"), ["pay", "pay@v2", "pay@v3", "sig"]);
    assert_eq!(labels(&some, "left_out"), ["gen", "other"]);
    for left in some["left_out"].as_array().unwrap() {
        assert_eq!(left["code"], "not-selected");
        let id = left["id"].as_str().unwrap();
        assert_eq!(id.len(), 32, "the bundle's id in hex: {left}");
    }
    // One version.
    let one = verify(&dst, &bundle, &["pay@v2"]);
    assert_eq!(labels(&one, "entries"), ["pay@v2"]);
    assert_eq!(
        labels(&one, "left_out"),
        ["gen", "other", "pay", "pay@v3", "sig"]
    );
    // The same entries are reported as a full verify reports them.
    let full_v2 = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"] == "pay@v2")
        .unwrap();
    assert_eq!(&one["entries"][0], full_v2);

    // The text report lists what was left out.
    let text = dst
        .cmd()
        .args(["verify", path_str(&bundle), "--kek", "kek", "--only", "gen"])
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("left out pay@v2, id "), "{text}");
    assert!(
        text.contains("[not-selected]: not selected by --only"),
        "{text}"
    );
    assert!(text.contains("1 key(s) verified"), "{text}");
}

#[test]
fn the_keys_left_out_are_not_unwrapped() {
    let (_src, bundle, dst) = bundle_of_many();
    let unwraps = |only: &[&str]| -> u64 {
        let counts = dst.dir.path().join(format!("counts-{}", only.len()));
        let mut cmd = dst.shim_cmd(&[("HSMKEY_SHIM_COUNTS", path_str(&counts))]);
        cmd.args(["verify", path_str(&bundle), "--kek", "kek"]);
        for o in only {
            cmd.args(["--only", o]);
        }
        dst.json_ok(&mut cmd);
        let text = std::fs::read_to_string(&counts).unwrap();
        text.lines()
            .find_map(|l| {
                let (name, n) = l.split_once(' ')?;
                (name == "C_UnwrapKey").then(|| n.trim().parse().ok())?
            })
            .unwrap_or(0)
    };
    let all = unwraps(&[]);
    let one = unwraps(&["pay@v2"]);
    // Five entries fewer, each at least one C_UnwrapKey.
    assert!(all >= one + 5, "all {all}, one {one}");
    assert!(one >= 1, "pay@v2 itself was unwrapped");
}

#[test]
fn names_not_in_the_bundle_are_refused() {
    let (_src, bundle, dst) = bundle_of_many();
    let (exit, e) = verify_err(&dst, &bundle, &["pay", "nosuch"]);
    assert_eq!((exit, code(&e)), (3, "HK1004"), "{e}");
    assert!(e.to_string().contains("nosuch"), "{e}");
    let (exit, e) = verify_err(&dst, &bundle, &["pay@v7"]);
    assert_eq!((exit, code(&e)), (3, "HK1004"), "{e}");
    let (exit, e) = verify_err(&dst, &bundle, &[""]);
    assert_eq!((exit, code(&e)), (2, "HK1007"), "{e}");
}

#[test]
fn the_mac_still_covers_the_keys_left_out() {
    let (_src, bundle, dst) = bundle_of_many();
    let good = std::fs::read(&bundle).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    // A byte of `gen`'s wrapped key, in the same alphabet.
    let line_start = text.find("\"label\":\"gen\",").expect("gen's line");
    let at = line_start + text[line_start..].find("\"wrapped\":\"").unwrap() + 11 + 4;
    let mut bad = good;
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    let path = dst.dir.path().join("tampered.bundle");
    std::fs::write(&path, &bad).unwrap();
    let (exit, whole) = verify_err(&dst, &path, &[]);
    assert_eq!((exit, code(&whole)), (6, "HK1302"), "{whole}");
    let (exit, e) = verify_err(&dst, &path, &["pay"]);
    assert_eq!((exit, code(&e)), (6, "HK1302"), "{e}");
    assert_eq!(e["message"], whole["message"]);
}
