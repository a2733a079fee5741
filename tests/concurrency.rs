//! Runs that overlap, and a run that dies.
//!
//! Two hsmkey processes started at the same moment on one token, each call
//! slowed by 1 ms through the pass-through (tools/p11shim) so that their
//! check-and-create steps overlap: they never make the same key or version
//! twice; the loser fails with a conflict (exit 8), or with `--wait` waits
//! for the token lock and then succeeds.
//!
//! A restore killed with SIGKILL at several moments (nothing can clean up
//! then), followed by `restore --on-conflict skip`: the token ends with
//! exactly the bundle's keys, each once and usable.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::{code, ObjectRow, TestToken, KEK_VALUE};
use serde_json::Value;

const ROUNDS: usize = 3;
const CONFLICTS: &[&str] = &["HK1501", "HK1503", "HK1504"];

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// hsmkey as a plain process (to start two at once, or kill one).
fn process(t: &TestToken, shim: Option<&[(&str, &str)]>, args: &[&str]) -> Command {
    t.process(shim, args)
}

const SLOW: &[(&str, &str)] = &[("HSMKEY_SHIM_DELAY_US", "1000")];

/// Start both, then wait for both.
fn both(t: &TestToken, args: &[&str]) -> [Output; 2] {
    let a = process(t, Some(SLOW), args).spawn().unwrap();
    let b = process(t, Some(SLOW), args).spawn().unwrap();
    [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()]
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

fn describe(o: &Output) -> String {
    format!(
        "exit {:?}: {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// No two key objects share (class, label); at least one run succeeded;
/// every other run failed with a conflict, exit 8.
fn check_pair(t: &TestToken, runs: &[Output; 2], what: &str) {
    let set = t.object_set();
    let mut seen: BTreeMap<(String, Option<String>), usize> = BTreeMap::new();
    for (class, _, label, _, _) in &set {
        *seen.entry((class.clone(), label.clone())).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "{what}: duplicates {dups:?} in {set:?}");
    assert!(
        runs.iter().any(|o| o.status.success()),
        "{what}: neither run succeeded:\n{}\n{}",
        describe(&runs[0]),
        describe(&runs[1])
    );
    for o in runs.iter().filter(|o| !o.status.success()) {
        let e = json_of(o);
        assert!(
            o.status.code() == Some(8) && CONFLICTS.contains(&code(&e)),
            "{what}: the losing run must fail with a conflict (exit 8, one of {CONFLICTS:?}): {}",
            describe(o)
        );
    }
}

fn labels(set: &[ObjectRow], class: &str) -> Vec<String> {
    set.iter()
        .filter(|r| r.0 == class)
        .filter_map(|r| r.2.clone())
        .collect()
}

#[test]
fn two_generates_of_one_label_make_one_key() {
    let t = TestToken::new();
    for round in 0..ROUNDS {
        let label = format!("x{round}");
        let runs = both(
            &t,
            &["key", "generate", "--label", &label, "--type", "aes-256"],
        );
        check_pair(&t, &runs, &format!("generate round {round}"));
        let set = t.object_set();
        let n = labels(&set, "CKO_SECRET_KEY")
            .iter()
            .filter(|l| **l == label)
            .count();
        assert_eq!(n, 1, "round {round}: one key {label}");
    }
}

#[test]
fn two_rotations_make_one_version() {
    let t = TestToken::new();
    for round in 0..ROUNDS {
        let label = format!("rot{round}");
        t.json(&["key", "generate", "--label", &label, "--type", "aes-256"]);
        let runs = both(&t, &["key", "rotate", &label]);
        check_pair(&t, &runs, &format!("rotate round {round}"));
        let set = t.object_set();
        let secret = labels(&set, "CKO_SECRET_KEY");
        let v2 = format!("{label}@v2");
        let v3 = format!("{label}@v3");
        assert_eq!(
            secret.iter().filter(|l| **l == v2).count(),
            1,
            "round {round}: {secret:?}"
        );
        let successes = runs.iter().filter(|o| o.status.success()).count();
        assert_eq!(
            secret.iter().filter(|l| **l == v3).count(),
            successes - 1,
            "round {round}: a second version only for a second success: {secret:?}"
        );
    }
}

#[test]
fn two_rotations_with_wait_both_succeed() {
    let t = TestToken::new();
    for round in 0..ROUNDS {
        let label = format!("rot{round}");
        t.json(&["key", "generate", "--label", &label, "--type", "aes-256"]);
        let runs = both(&t, &["--wait", "10", "key", "rotate", &label]);
        for o in &runs {
            assert!(
                o.status.success(),
                "round {round}: with --wait both succeed: {}",
                describe(o)
            );
        }
        check_pair(&t, &runs, &format!("rotate --wait round {round}"));
        let secret = labels(&t.object_set(), "CKO_SECRET_KEY");
        for v in [format!("{label}@v2"), format!("{label}@v3")] {
            assert_eq!(
                secret.iter().filter(|l| **l == v).count(),
                1,
                "round {round}: {v} once in {secret:?}"
            );
        }
    }
}

/// A source token with a KEK and `keys` (label, type, extra options), and
/// a KEK bundle of them all.
fn bundle_of(keys: &[(&str, &str, &[&str])]) -> (TestToken, PathBuf) {
    let src = TestToken::new();
    src.put_kek("kek", &KEK_VALUE);
    for (label, ty, extra) in keys {
        let mut args = vec![
            "key",
            "generate",
            "--label",
            label,
            "--type",
            ty,
            "--backup-policy",
            "any",
        ];
        args.extend_from_slice(extra);
        src.json(&args);
    }
    let bundle = src.dir.path().join("keys.bundle");
    let mut args = vec!["backup", "--kek", "kek", "--out"];
    let b = s(&bundle);
    args.push(&b);
    args.extend(keys.iter().map(|k| k.0));
    src.json(&args);
    (src, bundle)
}

fn target() -> TestToken {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    t
}

#[test]
fn two_restores_of_one_bundle_make_each_key_once() {
    let keys: &[(&str, &str, &[&str])] = &[
        ("r1", "aes-256", &[]),
        ("r2", "aes-128", &[]),
        ("r3", "generic-256", &[]),
        ("r4", "ec-p256", &[]),
    ];
    let (_src, bundle) = bundle_of(keys);
    for round in 0..ROUNDS {
        let dst = target();
        let runs = both(&dst, &["restore", &s(&bundle), "--kek", "kek"]);
        check_pair(&dst, &runs, &format!("restore round {round}"));
        let set = dst.object_set();
        for (label, ty, _) in keys {
            let classes: &[&str] = if ty.starts_with("ec") || ty.starts_with("rsa") {
                &["CKO_PRIVATE_KEY", "CKO_PUBLIC_KEY"]
            } else {
                &["CKO_SECRET_KEY"]
            };
            for class in classes {
                let n = labels(&set, class).iter().filter(|l| l == label).count();
                assert_eq!(n, 1, "round {round}: {class} {label} once: {set:?}");
            }
        }
        assert!(
            set.iter().all(|r| r.2.is_some()),
            "round {round}: no label-less objects: {set:?}"
        );
    }
}

/// The crash bundle: mixed types and usages.
const CRASH_KEYS: &[(&str, &str, &[&str])] = &[
    ("c-aes", "aes-256", &[]),
    ("c-gen", "generic-256", &["--usage", "derive"]),
    ("c-dec", "aes-128", &["--usage", "decrypt"]),
    ("c-aes192", "aes-192", &[]),
    ("c-ec", "ec-p256", &[]),
    ("c-rsa", "rsa-2048", &[]),
];

/// The bundle's objects as (class, label), sorted.
fn expected_objects() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (label, ty, _) in CRASH_KEYS {
        if ty.starts_with("ec") || ty.starts_with("rsa") {
            v.push(("CKO_PRIVATE_KEY".to_string(), label.to_string()));
            v.push(("CKO_PUBLIC_KEY".to_string(), label.to_string()));
        } else {
            v.push(("CKO_SECRET_KEY".to_string(), label.to_string()));
        }
    }
    v.push(("CKO_SECRET_KEY".to_string(), "kek".to_string()));
    v.sort();
    v
}

/// (label, class) -> KCV from `key list --json`.
fn kcvs(t: &TestToken) -> BTreeMap<(String, String), String> {
    let list = t.json(&["key", "list"]);
    let keys = list["keys"].as_array().cloned().unwrap_or_default();
    keys.iter()
        .filter_map(|k| {
            Some((
                (
                    k["label"].as_str()?.to_string(),
                    k["class"].as_str()?.to_string(),
                ),
                // null when the token gives none
                k["kcv"].as_str().unwrap_or("unavailable").to_string(),
            ))
        })
        .collect()
}

#[test]
fn a_killed_restore_is_completed_by_a_rerun_with_skip() {
    let (src, bundle) = bundle_of(CRASH_KEYS);
    let source_kcvs = kcvs(&src);
    let b = s(&bundle);
    let args = ["restore", b.as_str(), "--kek", "kek"];
    let delay: &[(&str, &str)] = &[("HSMKEY_SHIM_DELAY_US", "5000")];
    // How long a whole restore takes at this pace, to kill it at fractions of that.
    let probe = target();
    let started = Instant::now();
    let out = process(&probe, Some(delay), &args).output().unwrap();
    let full = started.elapsed();
    assert!(out.status.success(), "slow restore: {}", describe(&out));
    drop(probe);
    let mut report = Vec::new();
    let mut kcv_notes = Vec::new();
    let mut partial = 0;
    for fraction in [0.5, 0.65, 0.8, 0.9, 0.97] {
        let dst = target();
        let at = full.mul_f64(fraction);
        let mut child = process(&dst, Some(delay), &args).spawn().unwrap();
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let left = dst.object_set();
        let made = left
            .iter()
            .filter(|r| r.2.as_deref() != Some("kek"))
            .count();
        if made > 0 && made < expected_objects().len() - 1 {
            partial += 1;
        }
        report.push(format!(
            "killed at {:?} ({:.0}%): {made} objects there, exit {:?}",
            at,
            fraction * 100.0,
            status.code()
        ));
        // The re-run, without the shim.
        let out = process(
            &dst,
            None,
            &["restore", &b, "--kek", "kek", "--on-conflict", "skip"],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "killed at {at:?} with {made} objects made ({left:?}); the re-run with skip fails: {}",
            describe(&out)
        );
        let set = dst.object_set();
        assert!(
            set.iter().all(|r| r.2.is_some()),
            "killed at {at:?}: label-less objects remain: {set:?}"
        );
        let mut got: Vec<(String, String)> = set
            .iter()
            .map(|r| (r.0.clone(), r.2.clone().unwrap_or_default()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            expected_objects(),
            "killed at {at:?}: exactly the bundle's keys, each once"
        );
        // Each key usable: listed with the source's KCV, shown, public halves readable.
        let restored = kcvs(&dst);
        for (label, ty, _) in CRASH_KEYS {
            let shown = dst
                .cmd()
                .args(["key", "show", label, "--json"])
                .output()
                .unwrap();
            assert!(
                shown.status.success(),
                "key show {label}: {}",
                describe(&shown)
            );
            for ((l, class), kcv) in source_kcvs.iter().filter(|((l, _), _)| l == label) {
                let got = restored.get(&(l.clone(), class.clone()));
                assert!(got.is_some(), "killed at {at:?}: {label} ({class}) listed");
                if kcv != "unavailable" && got.map(String::as_str) != Some("unavailable") {
                    assert_eq!(got, Some(kcv), "killed at {at:?}: KCV of {label} ({class})");
                } else if got != Some(kcv) {
                    kcv_notes.push(format!(
                        "{label} ({class}): KCV {kcv} on the source, {got:?} restored"
                    ));
                }
            }
            if ty.starts_with("ec") || ty.starts_with("rsa") {
                let pem = dst.dir.path().join(format!("{label}.pem"));
                let out = dst
                    .cmd()
                    .args(["key", "public", label, "--out", &s(&pem), "--json"])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "key public {label}: {}",
                    describe(&out)
                );
            }
        }
    }
    kcv_notes.sort();
    kcv_notes.dedup();
    println!(
        "CRASH full slow restore {full:?}; {}; KCV notes: {kcv_notes:?}",
        report.join("; ")
    );
    assert!(
        partial > 0,
        "no kill left a partial restore (some keys made, not all): {report:?}"
    );
}

fn shim_counts(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, n) = l.split_once(' ')?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

/// SoftHSM reads its token files once, in C_Initialize, and skips a token
/// whose files another process is rewriting at that moment: the named
/// token then looks absent. The pass-through stands in for that moment
/// (HSMKEY_SHIM_HIDE_TOKENS: C_GetSlotList answers "no token"). A token missing on the first look
/// is looked for again after the module is initialized afresh; one missing
/// on every look is HK1003 after three more looks, never a hang.
#[test]
fn a_token_missing_for_a_moment_is_looked_for_again() {
    let t = TestToken::new();
    t.generate("present", "aes-256", "any");
    let counts = t.dir.path().join("missing-counts");
    // The size query and the listing of one look come back empty.
    let listed = t.json_ok(
        t.shim_cmd(&[
            ("HSMKEY_SHIM_HIDE_TOKENS", "2"),
            ("HSMKEY_SHIM_COUNTS", &s(&counts)),
        ])
        .args(["key", "list"]),
    );
    let labels: Vec<&str> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["label"].as_str())
        .collect();
    assert!(labels.contains(&"present"), "{listed}");
    let n = shim_counts(&counts);
    assert_eq!(n.get("C_Initialize"), Some(&2), "{n:?}");

    // Missing on every look: HK1003, after the first look and three more.
    std::fs::remove_file(&counts).ok();
    let (exit, e) = t.json_err(
        t.shim_cmd(&[
            ("HSMKEY_SHIM_HIDE_TOKENS", "1000"),
            ("HSMKEY_SHIM_COUNTS", &s(&counts)),
        ])
        .args(["key", "list"]),
    );
    assert_eq!((exit, code(&e)), (3, "HK1003"), "{e}");
    // The counts are written at each C_Finalize: three re-initializations
    // had happened by the last one (the process may exit without another).
    let n = shim_counts(&counts);
    assert!(n.get("C_Finalize").copied().unwrap_or(0) >= 3, "{n:?}");
    assert!(n.get("C_GetSlotList").copied().unwrap_or(0) >= 6, "{n:?}");
}
