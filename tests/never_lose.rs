//! Regression tests for "never lose a key": each test is named after a way
//! hsmkey once lost a key, left one behind, or told the wrong story, and
//! fails on the code that did so.

mod common;

use std::path::{Path, PathBuf};

use common::{code, Kind, TestToken, KEK_VALUE};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use serde_json::Value;

/// An extractable AES key as another tool makes it: `label` may be absent.
fn put_foreign_key(t: &TestToken, label: Option<&[u8]>, id: &[u8], value: u8) {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Id(id.to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Value(vec![value; 32]),
    ];
    if let Some(label) = label {
        template.push(Attribute::Label(label.to_vec()));
    }
    t.put_secret(template);
}

fn generate(t: &TestToken, label: &str, ty: &str, extra: &[&str]) {
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
    t.json(&args);
}

fn file(t: &TestToken, name: &str) -> PathBuf {
    t.dir.path().join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Files in a folder, to prove that no temporary file was left.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn skip_codes(v: &Value) -> Vec<(String, String)> {
    v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["label"].as_str().unwrap().to_string(),
                s["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Found: one transient CKR_DEVICE_ERROR in the known-answer test of a
/// key-wrap mechanism was taken as "mechanism absent", and `backup --all`
/// skipped every private key and exited 0.
#[test]
fn a_device_error_in_the_probe_stops_the_backup() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    generate(&t, "aes", "aes-256", &[]);
    generate(&t, "rsa", "rsa-2048", &[]);
    let out = file(&t, "b.bundle");
    let before = listing(t.dir.path());
    // The probe's known-answer wraps come before any key is wrapped: fail
    // each of the first three in turn.
    for n in 0..3 {
        let fault = format!("C_WrapKey:CKR_DEVICE_ERROR:after={n}:times=1");
        let (exit, e) = t.json_err(t.shim_cmd(&[("HSMKEY_SHIM_FAULT", &fault)]).args([
            "backup",
            "--all",
            "--kek",
            "kek",
            "--out",
            s(&out),
        ]));
        assert_eq!((exit, code(&e)), (7, "HK1401"), "wrap #{n}: {e}");
        assert_eq!(e["context"]["rv"], "CKR_DEVICE_ERROR", "{e}");
        assert_eq!(listing(t.dir.path()), before, "no output, no temp file");
    }
    // Without the fault, nothing is skipped.
    let v = t.json(&["backup", "--all", "--kek", "kek", "--out", s(&out)]);
    assert_eq!(skip_codes(&v), vec![("kek".into(), "bundle-kek".into())]);
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
}

/// Found: a key without CKA_LABEL (pkcs11-tool --keygen without --label) was
/// written with an empty label, and restore then refused the whole bundle.
/// Now such keys, and keys sharing a label, are refused by name; the backup
/// fails (nothing written) unless --allow-skips, and the bundle it then
/// writes passes verify.
#[test]
fn keys_other_tools_made_are_refused_by_name_and_never_break_the_bundle() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    generate(&t, "mine", "aes-256", &[]);
    put_foreign_key(&t, None, &[0xa1], 0x11);
    if t.kind != Kind::Nss {
        // NSS replaces a key whose id and class match: ids differ here, but
        // NSS also keeps one object per label and class.
        put_foreign_key(&t, Some(b"dup"), &[0xb1], 0x22);
        put_foreign_key(&t, Some(b"dup"), &[0xb2], 0x33);
    }
    put_foreign_key(&t, Some(b"other@v2"), &[0xc1], 0x44);
    let out = file(&t, "b.bundle");
    let before = listing(t.dir.path());
    let (exit, e) = t.json_err(
        t.cmd()
            .args(["backup", "--all", "--kek", "kek", "--out", s(&out)]),
    );
    assert_eq!((exit, code(&e)), (5, "HK1204"), "{e}");
    let skipped = e["context"]["skipped"].as_str().unwrap();
    assert!(skipped.contains("(no label, id a1) (no-label"), "{skipped}");
    if t.kind != Kind::Nss {
        assert!(skipped.contains("dup, id b1 (duplicate-label"), "{skipped}");
        assert!(skipped.contains("dup, id b2 (duplicate-label"), "{skipped}");
    }
    assert_eq!(listing(t.dir.path()), before, "nothing written");

    let v = t.json(&[
        "backup",
        "--all",
        "--kek",
        "kek",
        "--allow-skips",
        "--verify",
        "--out",
        s(&out),
    ]);
    let codes = skip_codes(&v);
    assert!(
        codes.contains(&("(no label, id a1)".into(), "no-label".into())),
        "{codes:?}"
    );
    let labels: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    // A label shaped like a version is carried as it is.
    assert_eq!(labels, ["mine", "other@v2"]);
    let checked = t.json(&["verify", s(&out), "--kek", "kek"]);
    assert_eq!(checked["entries"].as_array().unwrap().len(), 2);
    // Named, such a key is an error naming it.
    let (exit, e) = t.json_err(t.cmd().args([
        "backup",
        "pkcs11:id=%a1",
        "--kek",
        "kek",
        "--out",
        s(&file(&t, "x")),
    ]));
    assert_eq!((exit, code(&e)), (5, "HK1202"), "{e}");
}

/// The `no-label` refusal once told users to relabel with a pkcs11-tool option
/// that cannot change a label; `key label` does it, all or none, and the
/// key is then backed up like any other.
#[test]
fn a_key_without_a_label_gets_one_from_key_label_and_then_backs_up() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    generate(&t, "mine", "aes-256", &[]);
    t.json(&["key", "rotate", "mine"]);
    put_foreign_key(&t, None, &[0xa1], 0x11);
    let out = file(&t, "b.bundle");
    let (exit, e) = t.json_err(
        t.cmd()
            .args(["backup", "--all", "--kek", "kek", "--out", s(&out)]),
    );
    assert_eq!((exit, code(&e)), (5, "HK1204"), "{e}");
    let skipped = e["context"]["skipped"].as_str().unwrap();
    assert!(
        skipped.contains("hsmkey key label 'pkcs11:id=%a1' NAME"),
        "{skipped}"
    );

    // Refusals change nothing: a taken name, a version-shaped name, a
    // selection covering two versions.
    let before = t.object_set();
    for (args, exit_code, hk) in [
        (["key", "label", "pkcs11:id=%a1", "mine"], 8, "HK1501"),
        (["key", "label", "pkcs11:id=%a1", "x@v2"], 6, "HK1301"),
        (["key", "label", "mine", "other"], 2, "HK1005"),
    ] {
        let (exit, e) = t.json_err(t.cmd().args(args));
        assert_eq!((exit, code(&e)), (exit_code, hk), "{args:?}: {e}");
    }
    assert_eq!(t.object_set(), before, "a refused relabel changes nothing");

    let v = t.json(&["key", "label", "pkcs11:id=%a1", "legacy"]);
    assert_eq!(v["keys"][0]["label"], "legacy", "{v}");
    assert_eq!(v["keys"][0]["id"], "a1", "{v}");
    let v = t.json(&["backup", "--all", "--kek", "kek", "--out", s(&out)]);
    let labels: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["legacy", "mine", "mine@v2"], "{v}");
}

/// `backup --verify` reads the written bundle back in the token; a failure
/// there leaves no file.
#[test]
fn backup_verify_reads_the_bundle_back_and_a_failure_there_leaves_no_file() {
    let t = TestToken::new();
    t.put_kek("kek", &KEK_VALUE);
    generate(&t, "a", "aes-256", &[]);
    generate(&t, "e", "ec-p256", &[]);
    let out = file(&t, "b.bundle");
    let before = listing(t.dir.path());
    // backup makes one C_SignFinal (the MAC); --verify makes one C_VerifyFinal.
    let (exit, e) = t.json_err(
        t.shim_cmd(&[(
            "HSMKEY_SHIM_FAULT",
            // The MAC is computed in the token and compared by hsmkey.
            "C_SignFinal:CKR_DEVICE_ERROR:after=0",
        )])
        .args([
            "backup",
            "--all",
            "--kek",
            "kek",
            "--verify",
            "--out",
            s(&out),
        ]),
    );
    assert_eq!((exit, code(&e)), (7, "HK1401"), "{e}");
    assert_eq!(e["context"]["function"], "C_SignFinal", "{e}");
    assert_eq!(listing(t.dir.path()), before);
    let v = t.json(&[
        "backup",
        "--all",
        "--kek",
        "kek",
        "--verify",
        "--out",
        s(&out),
    ]);
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
}

/// Found: a device error in C_VerifyFinal was reported as HK1302 "altered"
/// (and NSS answers a wrong HMAC with CKR_DEVICE_ERROR, so the MAC is now
/// computed with C_Sign* and compared by hsmkey),
/// and one in C_UnwrapKey as HK1107 "wrong key". A wrong KEK is still HK1107.
#[test]
fn device_errors_while_reading_a_bundle_are_token_errors() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.put_kek("kek", &KEK_VALUE);
    dst.put_kek("kek", &KEK_VALUE);
    generate(&src, "a", "aes-256", &[]);
    let out = file(&src, "b.bundle");
    src.json(&["backup", "a", "--kek", "kek", "--out", s(&out)]);
    for fault in [
        // The MAC is computed in the token and compared by hsmkey.
        "C_SignFinal:CKR_DEVICE_ERROR:after=0",
        // The first unwrap is the bundle's MAC key, the second the key. A
        // transient failure: a token that fails every unwrap with the code
        // it gives a bad blob cannot be told from a wrong key.
        "C_UnwrapKey:CKR_DEVICE_ERROR:after=0:times=1",
        "C_UnwrapKey:CKR_DEVICE_ERROR:after=1:times=1",
    ] {
        for command in ["verify", "restore"] {
            let before = dst.object_count();
            let (exit, e) = dst.json_err(dst.shim_cmd(&[("HSMKEY_SHIM_FAULT", fault)]).args([
                command,
                s(&out),
                "--kek",
                "kek",
            ]));
            assert_eq!(dst.object_count(), before, "{command} {fault}");
            if dst.kind == Kind::Kryoptic && fault.starts_with("C_UnwrapKey") {
                // kryoptic answers a blob that fails its integrity check
                // with CKR_DEVICE_ERROR too: the documented limit.
                assert!(["HK1107", "HK1302", "HK1401"].contains(&code(&e)), "{e}");
                continue;
            }
            assert_eq!((exit, code(&e)), (7, "HK1401"), "{command} {fault}: {e}");
            assert_eq!(
                e["context"]["function"],
                fault.split(':').next().unwrap(),
                "{e}"
            );
            assert_eq!(e["context"]["rv"], "CKR_DEVICE_ERROR", "{e}");
        }
    }
    // A KEK of another value is what "wrong key" means.
    let other = TestToken::new();
    other.put_kek("kek", &[0x77; 32]);
    let (exit, e) = other.json_err(other.cmd().args(["verify", s(&out), "--kek", "kek"]));
    assert_eq!((exit, code(&e)), (4, "HK1107"), "{e}");
}

/// How many times a command calls `function`, counted by the pass-through.
fn calls(t: &TestToken, args: &[&str], function: &str) -> u64 {
    let counts = file(t, &format!("counts-{}", std::process::id()));
    t.json_ok(t.shim_cmd(&[("HSMKEY_SHIM_COUNTS", s(&counts))]).args(args));
    let text = std::fs::read_to_string(&counts).unwrap();
    text.lines()
        .find_map(|l| {
            let (name, n) = l.split_once(' ')?;
            (name == function).then(|| n.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no count for {function} in {text}"))
}

/// Found: `key generate` and `key rotate` failed (HK1401) when the read-back
/// after the create failed, but the new key stayed.
#[test]
fn a_failed_read_back_after_generate_or_rotate_leaves_nothing() {
    let t = TestToken::new();
    for ty in ["aes-256", "rsa-2048"] {
        // Learn how many attribute reads a clean run makes; fail the last
        // (the read-back of what was made).
        let probe_label = format!("count-{ty}");
        let n = calls(
            &t,
            &["key", "generate", "--label", &probe_label, "--type", ty],
            "C_GetAttributeValue",
        );
        let before = t.object_count();
        let fault = format!("C_GetAttributeValue:CKR_DEVICE_ERROR:after={}", n - 1);
        let label = format!("new-{ty}");
        let (exit, e) = t.json_err(
            t.shim_cmd(&[("HSMKEY_SHIM_FAULT", &fault)])
                .args(["key", "generate", "--label", &label, "--type", ty]),
        );
        assert_eq!((exit, code(&e)), (7, "HK1401"), "{ty}: {e}");
        assert_eq!(t.object_count(), before, "{ty}: the new key was destroyed");

        let n = calls(&t, &["key", "rotate", &probe_label], "C_GetAttributeValue");
        let before = t.object_count();
        let fault = format!("C_GetAttributeValue:CKR_DEVICE_ERROR:after={}", n - 1);
        let (exit, e) = t.json_err(t.shim_cmd(&[("HSMKEY_SHIM_FAULT", &fault)]).args([
            "key",
            "rotate",
            &probe_label,
        ]));
        assert_eq!((exit, code(&e)), (7, "HK1401"), "rotate {ty}: {e}");
        assert_eq!(
            t.object_count(),
            before,
            "rotate {ty}: the new version was destroyed"
        );
    }
}

/// Found: `import-params` into a folder it could not write failed after
/// making its key pair and MAC key (+3 objects).
#[test]
fn import_params_into_an_unwritable_place_creates_nothing() {
    let t = TestToken::new();
    let before = t.object_count();
    let out = t.dir.path().join("no-such-folder/params.json");
    let (exit, e) = t.json_err(t.cmd().args([
        "import-params",
        "--key-spec",
        "RSA_2048",
        "--algorithm",
        "RSAES_OAEP_SHA_1",
        "--out",
        s(&out),
    ]));
    assert_eq!((exit, code(&e)), (1, "HK1901"), "{e}");
    assert_eq!(t.object_count(), before);
}

/// Found: restore's rollback, when C_DestroyObject itself failed, left
/// objects and reported only the first error. Now the error says so, with
/// its own exit code, and lists each object left.
#[test]
fn a_rollback_that_cannot_destroy_names_what_it_left() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.put_kek("kek", &KEK_VALUE);
    dst.put_kek("kek", &KEK_VALUE);
    for label in ["k1", "k2", "k3"] {
        generate(&src, label, "aes-256", &[]);
    }
    let out = file(&src, "b.bundle");
    src.json(&["backup", "--all", "--kek", "kek", "--out", s(&out)]);
    let before = dst.object_count();
    // Unwraps: the MAC key, k1, k2, then k3 fails; every destroy fails.
    let (exit, e) = dst.json_err(
        dst.shim_cmd(&[(
            "HSMKEY_SHIM_FAULT",
            "C_UnwrapKey:CKR_DEVICE_ERROR:after=3;C_DestroyObject:CKR_DEVICE_ERROR:after=0",
        )])
        .args(["restore", s(&out), "--kek", "kek"]),
    );
    assert_eq!((exit, code(&e)), (9, "HK1403"), "{e}");
    assert_eq!(e["context"]["cause_code"], "HK1401", "{e}");
    assert_eq!(e["context"]["function"], "C_UnwrapKey", "{e}");
    let left = e["context"]["left"].as_str().unwrap();
    assert!(
        left.contains("'k1' (secret-key") && left.contains("'k2' (secret-key"),
        "{left}"
    );
    assert_eq!(
        dst.object_count(),
        before + 2,
        "exactly what the error lists"
    );
}

/// Found: a re-run with `--on-conflict skip` after an interrupted restore
/// refused keys whose KCV the token cannot compute (a decrypt-only AES key
/// on SoftHSM), and took an EC key whose public half was missing as there.
#[test]
fn on_conflict_skip_finishes_an_interrupted_restore() {
    let (src, dst) = (TestToken::new(), TestToken::new());
    src.put_kek("kek", &KEK_VALUE);
    dst.put_kek("kek", &KEK_VALUE);
    generate(&src, "dec", "aes-256", &["--usage", "decrypt"]);
    generate(&src, "ec", "ec-p256", &[]);
    generate(&src, "full", "aes-256", &[]);
    let out = file(&src, "b.bundle");
    src.json(&["backup", "--all", "--kek", "kek", "--out", s(&out)]);
    dst.json(&["restore", s(&out), "--kek", "kek"]);
    // As a crash between the private key and its public half leaves it.
    dst.with_session(|session| {
        let public = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(b"ec".to_vec()),
            ])
            .unwrap();
        assert_eq!(public.len(), 1);
        session.destroy_object(public[0]).unwrap();
    });
    let v = dst.json(&["restore", s(&out), "--kek", "kek", "--on-conflict", "skip"]);
    let mut skipped = skip_codes(&v);
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            ("dec".into(), "already-on-token".into()),
            ("full".into(), "already-on-token".into())
        ]
    );
    let made: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert_eq!(made, ["ec"], "the public half is made again");
    let pem = file(&dst, "ec.pem");
    dst.json(&["key", "public", "ec", "--out", s(&pem)]);
    // A third run finds everything in place.
    let v = dst.json(&["restore", s(&out), "--kek", "kek", "--on-conflict", "skip"]);
    assert_eq!(v["entries"].as_array().unwrap().len(), 0);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 3);
}

/// hsmkey on this token as a process to start and wait for later.
fn background(t: &TestToken) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hsmkey"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HSMKEY_PIN", common::USER_PIN)
        .env("CI", "true")
        .env("HSMKEY_MODULE", &t.module);
    c.env("HSMKEY_AUDIT_LOG", t.audit_log());
    for (k, v) in &t.env {
        c.env(k, v);
    }
    if let Some(args) = &t.module_args {
        c.env("HSMKEY_MODULE_ARGS", args);
    }
    if let Some(token) = t.token_env() {
        c.env("HSMKEY_TOKEN", token);
    }
    c
}

/// Two runs on one token never interleave check and create: the second
/// fails at once (HK1503) or, with --wait, waits its turn.
#[test]
fn a_second_run_on_the_same_token_waits_or_says_busy() {
    let t = TestToken::new();
    let runtime = tempfile::tempdir().unwrap();
    let mut slow = background(&t)
        .env("HSMKEY_MODULE", common::shim_module())
        .env("HSMKEY_SHIM_MODULE", &t.module)
        .env("HSMKEY_SHIM_DELAY_US", "20000")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .args(["key", "generate", "--label", "slow", "--type", "aes-256"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the slow run holds the lock (its pid is in the lock file).
    let pid = slow.id().to_string();
    let held = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::read_dir(runtime.path().join("hsmkey"))
            .map(|d| {
                d.flatten()
                    .any(|f| std::fs::read_to_string(f.path()).is_ok_and(|c| c.contains(&pid)))
            })
            .unwrap_or(false)
    });
    assert!(held, "the slow run took the lock");
    let (exit, e) = t.json_err(
        t.cmd()
            .env("XDG_RUNTIME_DIR", runtime.path())
            .args(["key", "generate", "--label", "fast", "--type", "aes-256"]),
    );
    assert_eq!((exit, code(&e)), (8, "HK1503"), "{e}");
    assert!(
        e["context"]["holder"].as_str().unwrap().contains(&pid),
        "{e}"
    );
    let waited = t.json_ok(t.cmd().env("XDG_RUNTIME_DIR", runtime.path()).args([
        "--wait", "120", "key", "generate", "--label", "fast", "--type", "aes-256",
    ]));
    assert_eq!(waited["keys"][0]["label"], "fast");
    assert!(slow.wait().unwrap().success());
}
