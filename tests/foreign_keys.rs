//! Keys other tools made (docs/KEYS.md, "Keys made by other tools"): `key
//! list` shows whether each key is sensitive and extractable, a backup of a
//! key that is not sensitive warns, labels are escaped in tables, a label
//! that only looks like `NAME@v2` is not a version of NAME, a URI's
//! `object=` is the label exactly, and a key without label or id is found
//! again by the URI hsmkey prints for it. Keys are made with cryptoki here,
//! as another tool would.

mod common;

use common::{code, path_str, TestToken, KEK_VALUE};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use serde_json::Value;

/// The keys of a `key list --json` (a bare array, or an object's `keys`).
fn keys_of(v: &Value) -> Vec<Value> {
    v.as_array()
        .or_else(|| v["keys"].as_array())
        .unwrap_or_else(|| panic!("a key listing: {v}"))
        .clone()
}

/// An AES-128 key as another tool makes it; `label` and `id` are left out
/// when `None`. Returns the token's answer (a token may refuse a label).
fn put_foreign(
    t: &TestToken,
    label: Option<&[u8]>,
    id: Option<&[u8]>,
    sensitive: bool,
    value: u8,
) -> Result<(), String> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(sensitive),
        Attribute::Extractable(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Value(vec![value; 16]),
    ];
    template.extend(label.map(|l| Attribute::Label(l.to_vec())));
    template.extend(id.map(|i| Attribute::Id(i.to_vec())));
    t.with_session(|s| {
        s.create_object(&template)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn text(t: &TestToken, args: &[&str]) -> String {
    let out = t.cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tables are UTF-8")
}

fn find<'a>(keys: &'a [Value], label: &str) -> &'a Value {
    keys.iter()
        .find(|k| k["label"] == label)
        .unwrap_or_else(|| panic!("{label} in {keys:?}"))
}

#[test]
fn list_shows_sensitivity_and_extractability() {
    let t = TestToken::new();
    put_foreign(&t, Some(b"plain"), Some(b"p1"), false, 0x11).unwrap();
    t.generate("kept", "aes-256", "none");
    let keys = keys_of(&t.json(&["key", "list"]));
    let plain = find(&keys, "plain");
    assert_eq!(
        (&plain["sensitive"], &plain["extractable"]),
        (&Value::Bool(false), &Value::Bool(true))
    );
    let kept = find(&keys, "kept");
    assert_eq!(
        (&kept["sensitive"], &kept["extractable"]),
        (&Value::Bool(true), &Value::Bool(false))
    );

    let table = text(&t, &["key", "list"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (sens, extr) = (col("SENSITIVE"), col("EXTRACTABLE"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let row = |label: &str| rows.iter().find(|r| r[0] == label).unwrap().clone();
    assert_eq!(
        (row("plain")[sens], row("plain")[extr]),
        ("no", "yes"),
        "{table}"
    );
    assert_eq!(
        (row("kept")[sens], row("kept")[extr]),
        ("yes", "no"),
        "{table}"
    );
}

#[test]
fn backing_up_a_key_that_is_not_sensitive_warns_and_completes() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    put_foreign(&t, Some(b"plain"), Some(b"p1"), false, 0x11).unwrap();
    t.generate("safe", "aes-256", "any");
    let out = t.dir.path().join("b.bundle");
    let run = t
        .cmd()
        .args([
            "backup",
            "--kek",
            "kek",
            "--all",
            "--json",
            "--out",
            path_str(&out),
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report}");
    assert_eq!(
        (&warnings[0]["label"], &warnings[0]["code"]),
        (&Value::from("plain"), &Value::from("not-sensitive"))
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("warning: plain") && stderr.contains("not-sensitive"),
        "{stderr}"
    );
    let entries: Vec<&str> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["plain", "safe"]);
    // Restored, it is sensitive like every key hsmkey makes.
    let dst = TestToken::new();
    dst.put_kek("kek", &KEK_VALUE);
    dst.json(&["restore", path_str(&out), "--kek", "kek"]);
    let keys = keys_of(&dst.json(&["key", "list", "plain"]));
    assert_eq!(keys[0]["sensitive"], true);

    // A backup of sensitive keys only has no warnings.
    let quiet = t.json(&[
        "backup",
        "--kek",
        "kek",
        "safe",
        "--out",
        path_str(&t.dir.path().join("c.bundle")),
    ]);
    assert_eq!(quiet["warnings"], serde_json::json!([]));
}

#[test]
fn labels_with_control_characters_are_escaped_in_tables() {
    let t = TestToken::new();
    let labels: [(&[u8], &str); 4] = [
        (b"red\x1b[31mtext", "red\\x1b[31mtext"),
        (b"two\nlines", "two\\nlines"),
        (b"del\x7fchar", "del\\x7fchar"),
        (b"bad\xffutf8", "bad\\xffutf8"),
    ];
    let mut made = Vec::new();
    for (i, (label, shown)) in labels.iter().enumerate() {
        match put_foreign(&t, Some(label), Some(&[0xe0, i as u8]), true, i as u8) {
            Ok(()) => made.push((*label, *shown)),
            // A token may refuse a label that is not UTF-8.
            Err(e) => eprintln!("{:?} refused {label:?}: {e}", t.kind),
        }
    }
    assert!(made.len() >= 3, "{made:?}");
    for args in [
        &["key", "list"][..],
        &["key", "show", "pkcs11:id=%E0%00"][..],
    ] {
        let out = t.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let raw = out.stdout;
        for bad in [0x1b, 0x7f, 0xff] {
            assert!(!raw.contains(&bad), "{args:?}: byte {bad:#x} written raw");
        }
        let shown = String::from_utf8(raw).unwrap();
        if args[1] == "list" {
            assert_eq!(shown.lines().count(), made.len() + 1, "{shown}");
            for (_, escaped) in &made {
                assert!(shown.contains(escaped), "{escaped} in {shown}");
            }
        } else {
            assert!(
                shown.contains("label:             red\\x1b[31mtext\n"),
                "{shown}"
            );
        }
    }
    // JSON keeps the exact label (a label that is not UTF-8 also in hex).
    let keys = keys_of(&t.json(&["key", "list"]));
    for (label, _) in &made {
        match std::str::from_utf8(label) {
            Ok(text) => {
                find(&keys, text);
            }
            Err(_) => {
                let k = keys
                    .iter()
                    .find(|k| k["label_hex"] == hex::encode(label))
                    .unwrap_or_else(|| panic!("label_hex in {keys:?}"));
                assert_eq!(k["label"], String::from_utf8_lossy(label).as_ref());
            }
        }
    }
    assert!(keys.iter().filter(|k| k.get("label_hex").is_some()).count() <= 1);
}

#[test]
fn a_label_that_looks_like_a_version_is_a_key_of_its_own() {
    let t = TestToken::new();
    t.generate("db", "aes-256", "any");
    put_foreign(&t, Some(b"db@v2"), Some(&[0xf0; 16]), true, 0x42).unwrap();
    let keys = keys_of(&t.json(&["key", "list"]));
    let foreign = find(&keys, "db@v2");
    assert_eq!(
        (&foreign["name"], &foreign["version"]),
        (&Value::from("db@v2"), &Value::from(1))
    );
    // The bare name is db alone; the foreign key is found by its label.
    let db: Vec<Value> = keys_of(&t.json(&["key", "list", "db"]));
    assert_eq!(db.len(), 1, "{db:?}");
    let shown = keys_of(&t.json(&["key", "show", "db@v2"]));
    assert_eq!(shown[0]["id"], hex::encode([0xf0; 16]));

    // A rotation of db never takes the foreign key's label.
    let made = keys_of(&t.json(&["key", "rotate", "db"]));
    assert_eq!(
        (made[0]["label"].as_str(), made[0]["version"].as_u64()),
        (Some("db@v3"), Some(3))
    );
    let db: Vec<String> = keys_of(&t.json(&["key", "list", "db"]))
        .iter()
        .map(|k| k["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(db, ["db", "db@v3"]);

    // hsmkey makes no versions of a name it would not generate.
    let before = t.object_set();
    let (exit, e) = t.json_err(t.cmd().args(["key", "rotate", "db@v2"]));
    assert_eq!((exit, code(&e)), (6, "HK1301"), "{e}");
    assert_eq!(t.object_set(), before);

    // A backup of db takes db and its version, not the foreign key; the
    // foreign key travels under its own name.
    t.put_kek("kek", &KEK_VALUE);
    let out = t.dir.path().join("db.bundle");
    let v = t.json(&["backup", "--kek", "kek", "db", "--out", path_str(&out)]);
    let entries: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["db", "db@v3"]);
    let all = t.dir.path().join("all.bundle");
    t.json(&["backup", "--kek", "kek", "--all", "--out", path_str(&all)]);
    let dst = TestToken::new();
    dst.put_kek("kek", &KEK_VALUE);
    dst.json(&["restore", path_str(&all), "--kek", "kek"]);
    let restored = keys_of(&dst.json(&["key", "list"]));
    assert_eq!(find(&restored, "db@v2")["version"], 1);
    assert_eq!(find(&restored, "db@v2")["name"], "db@v2");
    assert_eq!(find(&restored, "db@v3")["version"], 3);
    // --only by the foreign key's label takes it alone.
    let fresh = TestToken::new();
    fresh.put_kek("kek", &KEK_VALUE);
    let one = fresh.json(&["restore", path_str(&all), "--kek", "kek", "--only", "db@v2"]);
    assert_eq!(common::labels(&one, "entries"), ["db@v2"]);

    // Destroying db leaves the foreign key.
    t.json(&["key", "destroy", "db", "--yes"]);
    let left: Vec<String> = keys_of(&t.json(&["key", "list"]))
        .iter()
        .map(|k| k["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["db@v2", "kek"]);
}

#[test]
fn a_uri_object_is_the_label_exactly() {
    let t = TestToken::new();
    t.generate("k", "aes-128", "none");
    t.json(&["key", "rotate", "k"]);
    let exact = keys_of(&t.json(&["key", "list", "pkcs11:object=k"]));
    assert_eq!(exact.len(), 1, "{exact:?}");
    assert_eq!(exact[0]["label"], "k");
    assert_eq!(keys_of(&t.json(&["key", "list", "k"])).len(), 2);
    let v2 = keys_of(&t.json(&["key", "show", "pkcs11:object=k@v2"]));
    assert_eq!(v2[0]["version"], 2);
    // Every printed URI selects its own object and nothing else.
    for k in keys_of(&t.json(&["key", "list"])) {
        let again = keys_of(&t.json(&["key", "show", k["uri"].as_str().unwrap()]));
        assert_eq!(again.len(), 1, "{}", k["uri"]);
        assert_eq!(again[0]["id"], k["id"]);
    }
}

#[test]
fn a_key_without_label_or_id_is_found_by_its_uri() {
    let t = TestToken::new();
    put_foreign(&t, None, None, true, 0x21).unwrap();
    // Others that share one of the two empties.
    put_foreign(&t, None, Some(&[0x05]), true, 0x22).unwrap();
    put_foreign(&t, Some(b"named"), None, true, 0x23).unwrap();
    let keys = keys_of(&t.json(&["key", "list"]));
    assert_eq!(keys.len(), 3, "{keys:?}");
    let bare = keys
        .iter()
        .find(|k| k["label"] == "" && k["id"] == "")
        .unwrap_or_else(|| panic!("the bare key in {keys:?}"));
    let uri = bare["uri"].as_str().unwrap();
    assert!(uri.contains(";object=;id=;type=secret-key"), "{uri}");
    let found = keys_of(&t.json(&["key", "show", uri]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (&found[0]["label"], &found[0]["id"]),
        (&Value::from(""), &Value::from(""))
    );
    assert_eq!(found[0]["kcv"], bare["kcv"]);
    // object= alone and id= alone select by that attribute only.
    assert_eq!(
        keys_of(&t.json(&["key", "list", "pkcs11:object="])).len(),
        2
    );
    assert_eq!(keys_of(&t.json(&["key", "list", "pkcs11:id="])).len(), 2);

    // A URI that names nothing is HK1004, and nothing changes.
    let before = t.object_set();
    let (exit, e) = t.json_err(t.cmd().args(["key", "show", "pkcs11:object=;id=%05%06"]));
    assert_eq!((exit, code(&e)), (3, "HK1004"), "{e}");
    assert_eq!(t.object_set(), before);
}
