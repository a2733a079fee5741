//! `--json` output you can build on: every command prints one object whose
//! `schema` member names its JSON Schema, and the output matches the
//! published file (docs/schemas/). tests/common checks every document it
//! parses against the schema it names, strictly (no member the schema does
//! not list); this file runs every command, errors included, and checks that
//! each published schema is printed by the command docs/schemas/README.md
//! names.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine;
use common::{code, path_str, TestToken};
use rsa::pkcs8::DecodePublicKey;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The schemas the runs printed.
#[derive(Default)]
struct Seen(BTreeSet<String>);

impl Seen {
    /// Run `args` with --json; it must succeed and print `schema`.
    fn ok(&mut self, t: &TestToken, args: &[&str], schema: &str) -> Value {
        let v = t.json(args);
        assert_eq!(v["schema"], schema, "hsmkey {args:?}");
        self.0.insert(schema.to_string());
        v
    }

    /// Run `args` with --json; it must fail with `error_code` and exit `exit`.
    fn err(
        &mut self,
        t: &TestToken,
        cmd: &mut assert_cmd::Command,
        exit: i32,
        error_code: &str,
    ) -> Value {
        let (got, e) = t.json_err(cmd);
        assert_eq!((got, code(&e)), (exit, error_code), "{e}");
        self.0.insert("hsmkey.error.v1".to_string());
        e
    }
}

fn published() -> BTreeSet<String> {
    std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect()
}

/// The keys of a `{"keys": [...]}` document.
fn keys(v: &Value) -> &Vec<Value> {
    v["keys"].as_array().expect("a keys array")
}

#[test]
fn every_command_prints_one_object_that_matches_its_published_schema() {
    let t = TestToken::new();
    let mut seen = Seen::default();
    let dir = t.dir.path();
    let file = |name: &str| dir.join(name).display().to_string();

    // Tokens.
    let v = seen.ok(&t, &["token", "list"], "hsmkey.token-list.v1");
    assert!(v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["label"] == t.label.as_str()));
    seen.ok(&t, &["token", "info"], "hsmkey.token-info.v1");
    seen.ok(&t, &["token", "mechanisms"], "hsmkey.token-mechanisms.v1");
    let empty = TestToken::empty();
    let made = empty.json_ok(
        empty
            .cmd()
            .env("SOPIN", common::SO_PIN)
            .args(["--so-pin-source", empty.so_pin_source()])
            .args(["token", "init", "--label", "fresh"]),
    );
    assert_eq!(made["schema"], "hsmkey.token-init.v1");
    assert_eq!(made["initialized"], true);
    seen.0.insert("hsmkey.token-init.v1".into());

    // Keys.
    let kek = seen.ok(
        &t,
        &["key", "generate", "--label", "kek", "--kek"],
        "hsmkey.key-generate.v1",
    );
    assert_eq!(keys(&kek).len(), 1);
    let pair = seen.ok(
        &t,
        &[
            "key",
            "generate",
            "--label",
            "sig",
            "--type",
            "ec-p256",
            "--backup-policy",
            "any",
        ],
        "hsmkey.key-generate.v1",
    );
    assert_eq!(keys(&pair).len(), 2, "a key pair is two objects");
    for k in keys(&pair) {
        assert_eq!(k["kcv"], Value::Null, "no KCV for {}", k["class"]);
    }
    t.generate("data", "aes-256", "any");
    let many = seen.ok(
        &t,
        &[
            "key", "generate", "--label", "bulk", "--type", "aes-128", "--count", "3",
        ],
        "hsmkey.key-generate-many.v1",
    );
    assert_eq!(
        (&many["created"], &many["first"], &many["last"]),
        (&json!(3), &json!("bulk-00001"), &json!("bulk-00003"))
    );
    let listed = seen.ok(&t, &["key", "list"], "hsmkey.key-list.v1");
    assert_eq!(keys(&listed).len(), 1 + 2 + 1 + 3);
    let shown = seen.ok(&t, &["key", "show", "data"], "hsmkey.key-show.v1");
    assert!(keys(&shown)[0]["kcv"].is_string(), "{shown}");
    let public = seen.ok(
        &t,
        &["key", "public", "sig", "--out", &file("sig.pem")],
        "hsmkey.key-public.v1",
    );
    assert_eq!(public["type"], "ec");
    let rotated = seen.ok(&t, &["key", "rotate", "data"], "hsmkey.key-rotate.v1");
    assert_eq!(keys(&rotated)[0]["label"], "data@v2");

    // Backup, verify, inspect, restore.
    let backup = seen.ok(
        &t,
        &[
            "backup",
            "--kek",
            "kek",
            "data",
            "sig",
            "--out",
            &file("keys.bundle"),
        ],
        "hsmkey.backup.v1",
    );
    assert_eq!(backup["entries"].as_array().unwrap().len(), 3);
    let blob = seen.ok(
        &t,
        &[
            "backup",
            "--kek",
            "kek",
            "--format",
            "blob",
            "data",
            "--out",
            &file("data.blob"),
        ],
        "hsmkey.backup.v1",
    );
    assert!(blob["secret_blob"]
        .as_str()
        .unwrap()
        .starts_with("hsmkey-blob-v1:"));
    let verified = seen.ok(
        &t,
        &["verify", &file("keys.bundle"), "--kek", "kek"],
        "hsmkey.verify.v1",
    );
    assert_eq!(verified["verified"], true);
    let inspected = seen.ok(
        &t,
        &["bundle", "inspect", &file("keys.bundle")],
        "hsmkey.bundle-inspect.v1",
    );
    assert_eq!(inspected["mac_checked"], false);
    let relabelled = seen.ok(
        &t,
        &["key", "label", "sig", "sig-old"],
        "hsmkey.key-label.v1",
    );
    assert_eq!(keys(&relabelled)[0]["label"], "sig-old");
    seen.ok(
        &t,
        &["key", "destroy", "sig-old", "--yes"],
        "hsmkey.key-destroy.v1",
    );
    let restored = seen.ok(
        &t,
        &[
            "restore",
            &file("keys.bundle"),
            "--kek",
            "kek",
            "--only",
            "sig",
        ],
        "hsmkey.restore.v1",
    );
    assert_eq!(restored["entries"].as_array().unwrap().len(), 1);
    assert_eq!(restored["left_out"].as_array().unwrap().len(), 2);

    // BYOK.
    let cloud =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/byok/cloud-rsa-2048.pub.pem");
    let byok = seen.ok(
        &t,
        &[
            "byok",
            "--key",
            "data@v1",
            "--target",
            "aws",
            "--algorithm",
            "RSAES_OAEP_SHA_1",
            "--wrapping-key",
            path_str(&cloud),
            "--out",
            &file("data.aws.bin"),
        ],
        "hsmkey.byok.v1",
    );
    assert_eq!(byok["files"], json!([file("data.aws.bin")]));

    // The token as the receiving KMS.
    let params = seen.ok(
        &t,
        &[
            "import-params",
            "--key-spec",
            "RSA_2048",
            "--algorithm",
            "RSAES_OAEP_SHA_1",
            "--out",
            &file("params.json"),
        ],
        "hsmkey.import-params.v1",
    );
    let der = B64.decode(params["public_key"].as_str().unwrap()).unwrap();
    let wrapping = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
    let sent = wrapping
        .encrypt(
            &mut rand_core::OsRng,
            rsa::Oaep::new::<sha1::Sha1>(),
            &[0x42u8; 32],
        )
        .unwrap();
    std::fs::write(
        file("material.json"),
        json!({
            "key_id": params["key_id"],
            "import_token": params["import_token"],
            "encrypted_key_material": B64.encode(sent),
        })
        .to_string(),
    )
    .unwrap();
    let imported = seen.ok(
        &t,
        &[
            "import",
            "--material",
            &file("material.json"),
            "--label",
            "arrived",
            "--type",
            "aes-256",
        ],
        "hsmkey.import.v1",
    );
    assert_eq!(keys(&imported)[0]["label"], "arrived");
    let exported = seen.ok(
        &t,
        &["export-key", "--key", "data@v1", "--kek", "kek"],
        "hsmkey.export-key.v1",
    );
    // The document as printed, schema member and all, imports again.
    std::fs::write(file("export.json"), exported.to_string()).unwrap();
    let copy = seen.ok(
        &t,
        &[
            "import-export-key",
            &file("export.json"),
            "--kek",
            "kek",
            "--label",
            "copy",
        ],
        "hsmkey.import-export-key.v1",
    );
    assert_eq!(keys(&copy)[0]["kcv"], exported["kcv"]);

    // Profiles: the configuration file, read without a token.
    let config = dir.join("config.toml");
    std::fs::write(&config, "[profiles.dr]\ntoken = \"dr\"\nsessions = 4\n").unwrap();
    for (args, schema) in [
        (vec!["profile", "list"], "hsmkey.profile-list.v1"),
        (vec!["profile", "show", "dr"], "hsmkey.profile-show.v1"),
    ] {
        let v = t.json_ok(t.cmd().env("HSMKEY_CONFIG", &config).args(&args));
        assert_eq!(v["schema"], schema, "{v}");
        seen.0.insert(schema.to_string());
    }
    let v = t.json_ok(
        t.cmd()
            .env("HSMKEY_CONFIG", &config)
            .args(["profile", "show", "dr"]),
    );
    assert_eq!(
        (v["name"].as_str(), v["sessions"].as_u64()),
        (Some("dr"), Some(4)),
        "{v}"
    );

    // The audit trail: `audit verify` and `audit show` print their
    // documents; the log itself holds one hsmkey.audit-line.v1 per line.
    let v = seen.ok(&t, &["audit", "verify"], "hsmkey.audit-verify.v1");
    assert!(v["lines"].as_u64().unwrap() > 0, "{v}");
    let v = seen.ok(&t, &["audit", "show"], "hsmkey.audit-show.v1");
    assert_eq!(Some(v["lines"].as_array().unwrap().len() as u64), {
        let log = std::fs::read_to_string(t.audit_log()).unwrap();
        for line in log.lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            assert_eq!(line["schema"], "hsmkey.audit-line.v1");
            common::check_schema(&line);
        }
        seen.0.insert("hsmkey.audit-line.v1".to_string());
        Some(log.lines().count() as u64)
    });

    // Errors: a key not found, a bad input, a token refusal, a usage error.
    seen.err(&t, t.cmd().args(["key", "show", "missing"]), 3, "HK1004");
    seen.err(
        &t,
        t.cmd()
            .args(["key", "generate", "--label", "a", "--type", "des"]),
        6,
        "HK1301",
    );
    seen.err(
        &t,
        t.cmd().env("HSMKEY_PIN", "9999").args(["key", "list"]),
        4,
        "HK1101",
    );
    seen.err(&t, t.cmd().args(["key", "list", "--bogus"]), 2, "HK1007");

    assert_eq!(
        seen.0,
        published(),
        "every schema in docs/schemas/ is printed by a command run here, and nothing else is"
    );
}

#[test]
fn an_error_document_carries_the_hint_the_text_error_gives() {
    let t = TestToken::new();
    let (exit, e) = t.json_err(t.cmd().args(["key", "show", "missing"]));
    assert_eq!((exit, code(&e)), (3, "HK1004"));
    assert_eq!(e["message"], "The key is not found.");
    assert_eq!(e["context"]["key"], "missing");
    let hint = e["hint"].as_str().unwrap();
    assert!(!hint.is_empty());
    let text = t.cmd().args(["key", "show", "missing"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&text.stderr).contains(&format!("what to do: {hint}")),
        "the same hint on stderr without --json"
    );
}

#[test]
fn usage_errors_are_error_documents_in_json_mode() {
    let t = TestToken::new();
    for (args, needle) in [
        (&["key", "list", "--bogus"][..], "--bogus"),
        (&["key", "generate", "--type", "aes-128"][..], "--label"),
        (&["frobnicate"][..], "frobnicate"),
        // clap would print the help here: in JSON mode the missing command is named.
        (&["key"][..], "hsmkey key"),
        (&[][..], "hsmkey"),
    ] {
        let (exit, e) = t.json_err(t.cmd().args(args));
        assert_eq!((exit, code(&e)), (2, "HK1007"), "{args:?}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{args:?}: {e}"
        );
        assert!(!e["hint"].as_str().unwrap().is_empty(), "{args:?}");
    }
    // --help is not an error: text, exit 0, even with --json.
    let help = t.cmd().args(["key", "--help", "--json"]).output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
}

#[test]
fn a_verify_that_fails_prints_the_error_document_never_verified_false() {
    let t = TestToken::new();
    t.json(&["key", "generate", "--label", "kek", "--kek"]);
    t.json(&["key", "generate", "--label", "other", "--kek"]);
    t.generate("data", "aes-256", "any");
    let bundle = t.dir.path().join("keys.bundle");
    t.json(&["backup", "--kek", "kek", "data", "--out", path_str(&bundle)]);
    let out = t
        .cmd()
        .args(["verify", path_str(&bundle), "--kek", "other", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "the wrong KEK is HK1107, exit 4"
    );
    let e = common::documented(&out.stdout);
    assert_eq!(
        (e["schema"].as_str(), code(&e)),
        (Some("hsmkey.error.v1"), "HK1107")
    );
    assert!(e.get("verified").is_none(), "{e}");
    // A changed byte: HK1302, still no "verified".
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.iter().position(|b| *b == b'\n').unwrap() + 20;
    bytes[at] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    let (exit, e) = t.json_err(t.cmd().args(["verify", path_str(&bundle), "--kek", "kek"]));
    assert_eq!((exit, code(&e)), (6, "HK1302"), "{e}");
    assert!(e.get("verified").is_none());
}

#[test]
fn kcv_is_null_when_unknown_in_every_output() {
    let t = TestToken::new();
    t.json(&["key", "generate", "--label", "kek", "--kek"]);
    let made = t.generate("sig", "ec-p256", "any");
    let listed = t.json(&["key", "list", "sig"]);
    let shown = t.json(&["key", "show", "sig"]);
    for (what, v) in [("generate", &made), ("list", &listed), ("show", &shown)] {
        for k in keys(v) {
            assert_eq!(k["kcv"], Value::Null, "key {what}: {k}");
            assert!(!k["kcv_method"].as_str().unwrap().is_empty(), "says why");
        }
    }
    let bundle = t.dir.path().join("sig.bundle");
    let backup = t.json(&["backup", "--kek", "kek", "sig", "--out", path_str(&bundle)]);
    let verified = t.json(&["verify", path_str(&bundle), "--kek", "kek"]);
    let inspected = t.json(&["bundle", "inspect", path_str(&bundle)]);
    for (what, v) in [
        ("backup", &backup),
        ("verify", &verified),
        ("inspect", &inspected),
    ] {
        for e in v["entries"].as_array().unwrap() {
            assert_eq!(e["kcv"], Value::Null, "{what}: {e}");
        }
    }
    // The text table still says so in a word.
    let text = t.cmd().args(["key", "list", "sig"]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("unavailable"));
}

#[test]
fn the_schema_check_catches_a_missing_extra_or_mistyped_member() {
    let t = TestToken::new();
    t.generate("data", "aes-256", "any");
    let good = t.json(&["key", "list"]);
    let fails = |v: Value| std::panic::catch_unwind(|| common::check_schema(&v)).is_err();
    let mut extra = good.clone();
    extra["keys"][0]["colour"] = json!("blue");
    assert!(fails(extra), "a member the schema does not list");
    let mut mistyped = good.clone();
    mistyped["keys"][0]["kcv"] = json!(5);
    assert!(fails(mistyped), "a KCV that is a number");
    let mut missing = good.clone();
    missing["keys"][0].as_object_mut().unwrap().remove("kcv");
    assert!(fails(missing), "kcv left out instead of null");
    let mut renamed = good.clone();
    renamed["schema"] = json!("hsmkey.key-show.v1");
    assert!(!fails(renamed), "key show has the same members");
    let mut wrong = good;
    wrong["schema"] = json!("hsmkey.token-info.v1");
    assert!(
        fails(wrong),
        "a document checked against another command's schema"
    );
}
