//! `restore --only` and `--rename` (docs/FORMAT.md, "Restore and verify"):
//! only the selected keys are created, renamed keys get their new label and a
//! new id, every refusal comes before the first object, and the MAC still
//! covers the entries that are left out.

mod common;

use std::path::{Path, PathBuf};

use common::{code, labels, path_str, ObjectRow, TestToken, KEK_VALUE};
use serde_json::Value;

/// What `after` has that `before` has not (multisets, both sorted).
fn added(before: &[ObjectRow], after: &[ObjectRow]) -> Vec<ObjectRow> {
    let mut rest = before.to_vec();
    let mut new = Vec::new();
    for row in after {
        match rest.iter().position(|r| r == row) {
            Some(i) => {
                rest.remove(i);
            }
            None => new.push(row.clone()),
        }
    }
    assert!(rest.is_empty(), "objects disappeared: {rest:?}");
    new
}

/// The secret key `label`'s KCV and id as `key list --json` shows them.
fn listed(t: &TestToken, label: &str) -> (String, String) {
    let v = t.json(&["key", "list"]);
    let k = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == label && k["class"] == "secret-key")
        .unwrap_or_else(|| panic!("{label} not listed: {v}"));
    (
        k["kcv"].as_str().unwrap().to_string(),
        k["id"].as_str().unwrap().to_string(),
    )
}

/// A source token with a KEK, `pay` (three versions), `other` (AES-128),
/// `sig` (EC) and `gen` (generic), all backed up under the KEK.
fn bundle_of_many() -> (TestToken, PathBuf) {
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
    (src, bundle)
}

fn target() -> TestToken {
    let dst = TestToken::new();
    dst.put_kek("kek", &KEK_VALUE);
    dst
}

fn restore_err(dst: &TestToken, bundle: &Path, extra: &[&str]) -> (i32, Value) {
    let before = dst.object_set();
    let (exit, e) = dst.json_err(
        dst.cmd()
            .args(["restore", path_str(bundle), "--kek", "kek"])
            .args(extra),
    );
    assert_eq!(dst.object_set(), before, "{extra:?}: nothing created");
    (exit, e)
}

#[test]
fn only_one_key_out_of_many() {
    let (src, bundle) = bundle_of_many();
    let dst = target();

    // A dry run says what would come and what is left out, and creates nothing.
    let before = dst.object_set();
    let dry = dst.json(&[
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
        "--only",
        "pay",
        "--only",
        "sig",
        "--dry-run",
    ]);
    assert_eq!(labels(&dry, "entries"), ["pay", "pay@v2", "pay@v3", "sig"]);
    assert_eq!(labels(&dry, "left_out"), ["gen", "other"]);
    assert_eq!(dry["left_out"][0]["code"], "not-selected");
    assert_eq!(dst.object_set(), before);

    let restored = dst.json(&[
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
        "--only",
        "pay",
        "--only",
        "sig",
    ]);
    assert_eq!(
        labels(&restored, "entries"),
        ["pay", "pay@v2", "pay@v3", "sig"]
    );
    assert_eq!(labels(&restored, "left_out"), ["gen", "other"]);
    assert!(restored["entries"][0].get("renamed_from").is_none());
    // Exactly the selected keys, with the EC key's public half, as on the
    // source token (same labels, ids, classes and types).
    let chosen = ["pay", "pay@v2", "pay@v3", "sig"];
    let want: Vec<ObjectRow> = src
        .object_set()
        .into_iter()
        .filter(|r| r.2.as_deref().is_some_and(|l| chosen.contains(&l)))
        .collect();
    assert_eq!(want.len(), 5, "three AES versions, an EC pair");
    assert_eq!(added(&before, &dst.object_set()), want);
    for label in ["pay", "pay@v2", "pay@v3"] {
        assert_eq!(listed(&dst, label), listed(&src, label), "{label}");
    }

    // One version alone.
    let dst2 = target();
    let before = dst2.object_set();
    let one = dst2.json(&[
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
        "--only",
        "pay@v2",
    ]);
    assert_eq!(labels(&one, "entries"), ["pay@v2"]);
    let added_rows = added(&before, &dst2.object_set());
    assert_eq!(added_rows.len(), 1);
    assert_eq!(added_rows[0].2.as_deref(), Some("pay@v2"));
}

#[test]
fn an_older_version_restored_under_a_new_name_beside_the_current_key() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t.generate("pay", "aes-256", "any");
    t.json(&["key", "rotate", "pay"]);
    let bundle = t.dir.path().join("pay.bundle");
    t.json(&["backup", "--kek", "kek", "pay", "--out", path_str(&bundle)]);
    let (v1_kcv, v1_id) = listed(&t, "pay");
    let (v2_kcv, _) = listed(&t, "pay@v2");

    let args = [
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
        "--only",
        "pay@v1",
        "--rename",
        "pay@v1=pay-2025",
    ];
    let before = t.object_set();
    let restored = t.json(&args);
    assert_eq!(labels(&restored, "entries"), ["pay-2025"]);
    assert_eq!(restored["entries"][0]["renamed_from"], "pay");
    assert_eq!(labels(&restored, "left_out"), ["pay@v2"]);
    let new_rows = added(&before, &t.object_set());
    assert_eq!(new_rows.len(), 1);
    assert_eq!(new_rows[0].2.as_deref(), Some("pay-2025"));

    // Both usable, side by side: the token computes each KCV with the key.
    let (kcv, id) = listed(&t, "pay-2025");
    assert_eq!(kcv, v1_kcv);
    assert_ne!(kcv, v2_kcv);
    assert_ne!(id, v1_id, "a renamed key has an id of its own");
    assert_eq!(listed(&t, "pay").0, v1_kcv);
    assert_eq!(listed(&t, "pay@v2").0, v2_kcv);

    // The new id is the same on every run: a second run finds the key there.
    let again = t.json(&[&args[..], &["--on-conflict", "skip"]].concat());
    assert_eq!(labels(&again, "skipped"), ["pay-2025"]);
    assert_eq!(labels(&again, "entries"), Vec::<String>::new());

    // A whole name renamed keeps its versions.
    let copy = t.json(&[
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
        "--rename",
        "pay=pay-copy",
    ]);
    assert_eq!(labels(&copy, "entries"), ["pay-copy", "pay-copy@v2"]);
    assert_eq!(listed(&t, "pay-copy").0, v1_kcv);
    assert_eq!(listed(&t, "pay-copy@v2").0, v2_kcv);

    // The text report shows OLD -> NEW.
    let out = t
        .cmd()
        .args([
            "restore",
            path_str(&bundle),
            "--kek",
            "kek",
            "--rename",
            "pay=pay-text",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pay@v2 -> pay-text@v2"), "{text}");
}

#[test]
fn an_unknown_only_name_is_not_found_and_creates_nothing() {
    let (_src, bundle) = bundle_of_many();
    let dst = target();
    let (exit, e) = restore_err(&dst, &bundle, &["--only", "pay", "--only", "nosuch"]);
    assert_eq!((exit, code(&e)), (3, "HK1004"), "{e}");
    assert!(e.to_string().contains("nosuch"), "{e}");
    let (exit, e) = restore_err(&dst, &bundle, &["--only", "pay@v9", "--dry-run"]);
    assert_eq!((exit, code(&e)), (3, "HK1004"), "{e}");
}

#[test]
fn bad_renames_are_refused_before_anything_is_created() {
    let (_src, bundle) = bundle_of_many();
    let dst = target();
    let cases: [(&[&str], (i32, &str)); 7] = [
        // NEW is not a valid key name (key generate refuses it too).
        (&["--rename", "pay=x@v2"], (6, "HK1301")),
        (&["--rename", "pay"], (2, "HK1007")),
        // Two renames to one NEW.
        (&["--rename", "pay=x", "--rename", "gen=x"], (2, "HK1007")),
        // NEW is the name of another key restored.
        (&["--rename", "pay=gen"], (2, "HK1007")),
        (&["--rename", "pay@v2=other"], (2, "HK1007")),
        // OLD not in the bundle, or not selected.
        (&["--rename", "nosuch=x"], (3, "HK1004")),
        (&["--only", "gen", "--rename", "pay=x"], (3, "HK1004")),
    ];
    for (extra, want) in cases {
        let (exit, e) = restore_err(&dst, &bundle, extra);
        assert_eq!((exit, code(&e)), want, "{extra:?}: {e}");
    }
    // A NEW that is the name of a key left out is no clash.
    let ok = dst.json(&[
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
        "--only",
        "pay",
        "--rename",
        "pay=gen",
        "--dry-run",
    ]);
    assert_eq!(labels(&ok, "entries"), ["gen", "gen@v2", "gen@v3"]);
}

#[test]
fn a_tampered_entry_that_is_not_selected_still_fails_the_restore() {
    let (_src, bundle) = bundle_of_many();
    let dst = target();
    let good = std::fs::read(&bundle).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    // A byte of `gen`'s wrapped key, in the same alphabet.
    let line_start = text.find("\"label\":\"gen\",").expect("gen's line");
    let at = line_start + text[line_start..].find("\"wrapped\":\"").unwrap() + 11 + 4;
    let mut bad = good;
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    let path = dst.dir.path().join("tampered.bundle");
    std::fs::write(&path, &bad).unwrap();

    let (exit, whole) = restore_err(&dst, &path, &[]);
    assert_eq!((exit, code(&whole)), (6, "HK1302"), "{whole}");
    let (exit, e) = restore_err(&dst, &path, &["--only", "pay"]);
    assert_eq!((exit, code(&e)), (6, "HK1302"), "{e}");
    assert_eq!(e["message"], whole["message"]);
    let (exit, e) = restore_err(&dst, &path, &["--only", "pay", "--dry-run"]);
    assert_eq!((exit, code(&e)), (6, "HK1302"), "{e}");
    // The untouched bundle restores the same selection.
    let ok = dst.json(&[
        "restore",
        path_str(&bundle),
        "--kek",
        "kek",
        "--only",
        "pay",
    ]);
    assert_eq!(labels(&ok, "entries"), ["pay", "pay@v2", "pay@v3"]);
}
