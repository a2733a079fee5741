//! The audit trail takes its MAC key and chain head from the listing a
//! command makes anyway (`backup --all`; restore's index) instead of
//! searching the token again (docs/PERFORMANCE.md). A handle so primed that
//! is stale when it is used (the object gone, or another object now) sends
//! the audit session back to its own search, and every audit guarantee
//! holds: the line is signed, the head moves, one head per log.
//!
//! The token is changed between the listing and the use of a handle by the
//! test itself, while the pass-through module holds hsmkey's call
//! (HSMKEY_SHIM_PAUSE): no timing is involved.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;

use common::{path_str, Kind, TestToken, KEK_VALUE};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use serde_json::Value;

const MAC_LABEL: &str = "hsmkey-audit-mac";
const HEAD_LABEL: &str = "hsmkey-audit-head";

fn lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Calls per function, from HSMKEY_SHIM_COUNTS.
fn calls(path: &Path, function: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{function} ")))
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

/// Objects labelled `label`, with their class.
fn labelled(s: &Session, label: &str) -> Vec<(ObjectHandle, ObjectClass)> {
    s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .unwrap()
        .into_iter()
        .map(|h| {
            let class = s
                .get_attributes(h, &[AttributeType::Class])
                .unwrap()
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Class(c) => Some(c),
                    _ => None,
                })
                .unwrap();
            (h, class)
        })
        .collect()
}

/// The value a head object carries (CKA_VALUE of a data object, CKA_ID of
/// NSS's key carrier).
fn head_value(s: &Session, h: ObjectHandle, class: ObjectClass) -> Vec<u8> {
    let holder = if class == ObjectClass::DATA {
        AttributeType::Value
    } else {
        AttributeType::Id
    };
    s.get_attributes(h, &[holder])
        .unwrap()
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) | Attribute::Id(v) => Some(v),
            _ => None,
        })
        .unwrap()
}

/// A new head object carrying `value`, made as hsmkey makes one.
fn put_head(s: &Session, class: ObjectClass, value: Vec<u8>) {
    let label = Attribute::Label(HEAD_LABEL.as_bytes().to_vec());
    if class == ObjectClass::DATA {
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Modifiable(true),
            label,
            Attribute::Application(b"hsmkey".to_vec()),
            Attribute::Value(value),
        ])
        .unwrap();
    } else {
        s.generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Modifiable(true),
                label,
                Attribute::Id(value),
                Attribute::ValueLen(16u64.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
            ],
        )
        .unwrap();
    }
}

/// `hsmkey ARGS --json` through the pass-through, held at the `after`-th
/// (from 0) C_GetAttributeValue of its audit session (the second session
/// it opens), with the call counts written to `counts`; `log`: another
/// audit log than the token's.
fn held(
    t: &TestToken,
    args: &[&str],
    after: u64,
    counts: &Path,
    log: Option<&Path>,
) -> (Child, PathBuf) {
    let gate = t.dir.path().join("gate");
    let pause = format!(
        "C_GetAttributeValue:session=1:after={after}:{}",
        gate.display()
    );
    let mut cmd = t.process(
        Some(&[
            ("HSMKEY_SHIM_PAUSE", pause.as_str()),
            ("HSMKEY_SHIM_COUNTS", path_str(counts)),
        ]),
        args,
    );
    if let Some(log) = log {
        cmd.env("HSMKEY_AUDIT_LOG", log);
    }
    (cmd.spawn().unwrap(), gate)
}

/// Wait until the held call is reached, change the token, let it go on;
/// the run must then succeed.
fn while_held(child: Child, gate: &Path, change: impl FnOnce()) -> Value {
    let paused = gate.with_extension("paused");
    let start = std::time::Instant::now();
    while !paused.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the pass-through never held the call"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    change();
    std::fs::write(gate.with_extension("go"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn token_with_keys() -> TestToken {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t.generate("a", "aes-256", "any");
    t.generate("b", "aes-256", "any");
    t
}

#[test]
fn a_backup_of_every_key_searches_the_token_once() {
    let t = token_with_keys();
    let counts = t.dir.path().join("counts");
    let out = t.dir.path().join("all.bundle");
    t.json_ok(
        t.shim_cmd(&[("HSMKEY_SHIM_COUNTS", path_str(&counts))])
            .args(["backup", "--kek", "kek", "--all", "--out", path_str(&out)]),
    );
    // The listing finds the keys, the KEK, the audit key and the head.
    assert_eq!(calls(&counts, "C_FindObjectsInit"), 1);
    let v = t.json(&["audit", "verify"]);
    assert_eq!(v["mac_verified"], 3, "{v}");
    assert_eq!(v["head"]["count"], 3, "{v}");
}

#[test]
fn a_head_gone_since_the_listing_is_searched_for() {
    let t = token_with_keys();
    let counts = t.dir.path().join("counts");
    let out = t.dir.path().join("all.bundle");
    // The audit session's reads: the audit key (0), then the head (1).
    let (child, gate) = held(
        &t,
        &["backup", "--kek", "kek", "--all", "--out", path_str(&out)],
        1,
        &counts,
        None,
    );
    while_held(child, &gate, || {
        t.with_session(|s| {
            // The head is replaced by a copy: the handle hsmkey holds is gone.
            let heads = labelled(s, HEAD_LABEL);
            assert_eq!(heads.len(), 1);
            let (h, class) = heads[0];
            let value = head_value(s, h, class);
            s.destroy_object(h).unwrap();
            put_head(s, class, value);
        })
    });
    let v = t.json(&["audit", "verify"]);
    t.with_session(|s| assert_eq!(labelled(s, HEAD_LABEL).len(), 1, "one head per log"));
    // The listing's search, and the audit session's own for the heads.
    assert_eq!(calls(&counts, "C_FindObjectsInit"), 2);
    assert_eq!(
        (v["mac_verified"].clone(), v["head"]["count"].clone()),
        (3.into(), 3.into()),
        "{v}"
    );
}

#[test]
fn a_head_relabelled_since_the_listing_is_left_alone() {
    let t = token_with_keys();
    if t.kind == Kind::Nss {
        // NSS keeps a key's label as it was made (the head rides on a key there).
        return;
    }
    let counts = t.dir.path().join("counts");
    let out = t.dir.path().join("all.bundle");
    let moved = b"not-an-audit-head".to_vec();
    let (child, gate) = held(
        &t,
        &["backup", "--kek", "kek", "--all", "--out", path_str(&out)],
        1,
        &counts,
        None,
    );
    let mut kept = None;
    while_held(child, &gate, || {
        t.with_session(|s| {
            // The handle hsmkey holds is another object now: relabelled,
            // and a copy carries the head.
            let (h, class) = labelled(s, HEAD_LABEL)[0];
            let value = head_value(s, h, class);
            s.update_attributes(h, &[Attribute::Label(moved.clone())])
                .unwrap();
            put_head(s, class, value.clone());
            kept = Some(value);
        })
    });
    assert_eq!(calls(&counts, "C_FindObjectsInit"), 2);
    let v = t.json(&["audit", "verify"]);
    assert_eq!(
        (v["mac_verified"].clone(), v["head"]["count"].clone()),
        (3.into(), 3.into()),
        "{v}"
    );
    t.with_session(|s| {
        assert_eq!(labelled(s, HEAD_LABEL).len(), 1);
        // The relabelled object is not the head any more, and not touched.
        let (h, class) = labelled(s, std::str::from_utf8(&moved).unwrap())[0];
        assert_eq!(Some(head_value(s, h, class)), kept);
    });
}

#[test]
fn an_audit_key_gone_since_the_listing_is_searched_for_and_made_again() {
    let t = token_with_keys();
    let counts = t.dir.path().join("counts");
    let out = t.dir.path().join("all.bundle");
    // A log of its own: lines of the old key cannot verify once it is gone.
    let log = t.dir.path().join("new.jsonl");
    let (child, gate) = held(
        &t,
        &["backup", "--kek", "kek", "--all", "--out", path_str(&out)],
        0,
        &counts,
        Some(&log),
    );
    let mut old_id = Vec::new();
    while_held(child, &gate, || {
        t.with_session(|s| {
            let keys = labelled(s, MAC_LABEL);
            assert_eq!(keys.len(), 1);
            old_id = s
                .get_attributes(keys[0].0, &[AttributeType::Id])
                .unwrap()
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Id(v) => Some(v),
                    _ => None,
                })
                .unwrap();
            s.destroy_object(keys[0].0).unwrap();
        })
    });
    assert!(calls(&counts, "C_FindObjectsInit") >= 2);
    let line = lines(&log).pop().unwrap();
    assert_eq!(line["result"]["ok"], true);
    assert_ne!(line["signer"]["key_id"], hex::encode(&old_id));
    t.with_session(|s| {
        let keys: Vec<_> = labelled(s, MAC_LABEL);
        assert_eq!(keys.len(), 1, "the audit key made again, once");
    });
    let v = t.json(&["audit", "verify", path_str(&log)]);
    assert_eq!(
        (v["mac_verified"].clone(), v["head"]["count"].clone()),
        (1.into(), 1.into()),
        "{v}"
    );
}

#[test]
fn a_restore_takes_the_head_from_its_index() {
    let t = token_with_keys();
    let out = t.dir.path().join("all.bundle");
    t.json(&["backup", "--kek", "kek", "--all", "--out", path_str(&out)]);
    t.json(&["key", "destroy", "a", "--yes"]);
    t.json(&["key", "destroy", "b", "--yes"]);
    let counts = t.dir.path().join("counts");
    t.json_ok(
        t.shim_cmd(&[("HSMKEY_SHIM_COUNTS", path_str(&counts))])
            .args(["restore", path_str(&out), "--kek", "kek"]),
    );
    // The KEK, the audit key (looked up as the command logs in), the index
    // of the token's keys, the check for keys made meanwhile: the head is
    // the one the index saw.
    assert_eq!(calls(&counts, "C_FindObjectsInit"), 4);
    let v = t.json(&["audit", "verify"]);
    assert_eq!(
        (v["mac_verified"].clone(), v["head"]["count"].clone()),
        (6.into(), 6.into()),
        "{v}"
    );
    t.with_session(|s| assert_eq!(labelled(s, HEAD_LABEL).len(), 1, "one head per log"));
}

#[test]
fn a_head_moves_in_place_once_it_can() {
    // SoftHSM will not change a data object's value: its first head is
    // replaced by a key whose CKA_ID it changes in place from then on
    // (a destroyed token object costs SoftHSM a pass over its files).
    let t = token_with_keys();
    let counts = t.dir.path().join("counts");
    t.json_ok(
        t.shim_cmd(&[("HSMKEY_SHIM_COUNTS", path_str(&counts))])
            .args(["key", "generate", "--label", "c", "--type", "aes-256"]),
    );
    assert_eq!(calls(&counts, "C_DestroyObject"), 0, "nothing destroyed");
    assert!(calls(&counts, "C_SetAttributeValue") >= 1);
    t.with_session(|s| assert_eq!(labelled(s, HEAD_LABEL).len(), 1));
    let v = t.json(&["audit", "verify"]);
    assert_eq!(
        (v["mac_verified"].clone(), v["head"]["count"].clone()),
        (3.into(), 3.into()),
        "{v}"
    );
}
