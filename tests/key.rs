//! `hsmkey key ...` against real tokens, checked by an independent
//! tool (pkcs11-tool) and by software KCVs of values the test put in.

mod common;

use aes::cipher::{BlockEncrypt, KeyInit};
use common::{code, Kind, TestToken, USER_PIN};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use serde_json::Value;

/// The one key of a `{"keys": [...]}` document.
fn only(v: &Value) -> &Value {
    let arr = v["keys"].as_array().expect("keys");
    assert_eq!(arr.len(), 1, "{v}");
    &arr[0]
}

/// What `pkcs11-tool -O` says about the object with this label: the block of
/// lines from its header to the next header. `None` where pkcs11-tool cannot
/// reach the token (NSS needs an init string it cannot pass).
fn pkcs11_tool_block(t: &TestToken, label: &str) -> Option<String> {
    if !t.pkcs11_tool_works() {
        return None;
    }
    let out = t
        .pkcs11_tool()
        .args(["--login", "--pin", USER_PIN, "-O"])
        .output()
        .expect("pkcs11-tool (package opensc) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut blocks = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let wanted = format!("  label:      {label}\n");
    let found: Vec<_> = blocks.into_iter().filter(|b| b.contains(&wanted)).collect();
    assert_eq!(found.len(), 1, "one object labelled {label} in:\n{text}");
    found.into_iter().next()
}

/// CKA_SENSITIVE and CKA_EXTRACTABLE as the token reports them to the test
/// process, by label: the independent check that works on every token.
fn token_flags(t: &TestToken, label: &str) -> (bool, bool) {
    t.with_session(|s| {
        let found = s
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .unwrap();
        assert_eq!(found.len(), 1, "one object labelled {label}");
        let attrs = s
            .get_attributes(
                found[0],
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .unwrap();
        let mut flags = (false, true);
        for a in attrs {
            match a {
                Attribute::Sensitive(b) => flags.0 = b,
                Attribute::Extractable(b) => flags.1 = b,
                _ => {}
            }
        }
        flags
    })
}

#[test]
fn generated_keys_have_the_attributes_hsmkey_claims_as_seen_by_pkcs11_tool() {
    let t = TestToken::new();
    let v = t.json(&[
        "key", "generate", "--label", "data", "--type", "aes-256", "--id", "0102",
    ]);
    let k = only(&v);
    assert_eq!(k["label"], "data");
    assert_eq!(k["id"], "0102");
    assert_eq!(k["type"], "aes");
    assert_eq!(k["size"], 256);
    assert_eq!(k["sensitive"], true);
    assert_eq!(k["extractable"], false, "default policy is none");
    assert_eq!(k["backup_policy"], "none");
    assert_eq!(k["usage"], serde_json::json!(["encrypt", "decrypt"]));
    assert_eq!(token_flags(&t, "data"), (true, false));
    if let Some(block) = pkcs11_tool_block(&t, "data") {
        assert!(
            block.starts_with("Secret Key Object; AES length 32"),
            "{block}"
        );
        assert!(block.contains("  ID:         0102\n"), "{block}");
        assert!(block.contains("Usage:      encrypt, decrypt\n"), "{block}");
        assert!(
            block.contains("Access:     sensitive, always sensitive, never extractable"),
            "{block}"
        );
    }

    t.generate("exp", "aes-128", "any");
    assert_eq!(token_flags(&t, "exp"), (true, true));
    if let Some(block) = pkcs11_tool_block(&t, "exp") {
        assert!(
            block.contains("Access:     sensitive, always sensitive, extractable"),
            "{block}"
        );
    }

    let kek = only(&t.json(&["key", "generate", "--label", "kek", "--kek"])).clone();
    assert_eq!(kek["usage"], serde_json::json!(["wrap", "unwrap"]));
    assert_eq!(kek["extractable"], false);
    assert_eq!(token_flags(&t, "kek"), (true, false));
    if let Some(block) = pkcs11_tool_block(&t, "kek") {
        assert!(block.contains("Usage:      wrap, unwrap\n"), "{block}");
    }
}

#[test]
fn every_key_type_generates_with_explicit_usage_on_both_halves() {
    let t = TestToken::new();
    for (ty, class, size) in [
        ("aes-128", "secret-key", 128),
        ("aes-192", "secret-key", 192),
        ("generic-256", "secret-key", 256),
        ("rsa-2048", "private-key", 2048),
        ("ec-p256", "private-key", 256),
        ("ec-p384", "private-key", 384),
    ] {
        let v = t.generate(ty, ty, "trusted");
        let objs = v["keys"].as_array().unwrap();
        assert_eq!(objs[0]["class"], class, "{ty}");
        assert_eq!(objs[0]["size"], size, "{ty}");
        assert_eq!(objs[0]["backup_policy"], "trusted", "{ty}");
        assert_eq!(objs[0]["wrap_with_trusted"], true, "{ty}");
        assert_eq!(objs[0]["sensitive"], true, "{ty}");
        if class == "private-key" {
            assert_eq!(objs.len(), 2);
            // SoftHSM would turn on decrypt/unwrap if hsmkey left them out.
            assert_eq!(objs[0]["usage"], serde_json::json!(["sign"]), "{ty}");
            assert_eq!(objs[1]["class"], "public-key");
            assert_eq!(objs[1]["usage"], serde_json::json!(["verify"]), "{ty}");
            assert_eq!(objs[0]["id"], objs[1]["id"]);
        }
    }
    let rsa = t.json(&[
        "key",
        "generate",
        "--label",
        "transport",
        "--type",
        "rsa-3072",
        "--usage",
        "wrap,unwrap",
    ]);
    assert_eq!(rsa["keys"][0]["usage"], serde_json::json!(["unwrap"]));
    assert_eq!(rsa["keys"][1]["usage"], serde_json::json!(["wrap"]));
    assert_eq!(rsa["keys"][1]["size"], 3072);
}

#[test]
fn kcv_equals_the_software_kcv_of_a_known_value() {
    let t = TestToken::new();
    let value: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(3));
    t.put_secret(vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(b"known".to_vec()),
        Attribute::Id(vec![0x42]),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Encrypt(true),
        Attribute::Value(value.to_vec()),
    ]);
    let cipher = aes::Aes256::new(&value.into());
    let mut block = aes::Block::default();
    cipher.encrypt_block(&mut block);
    let expected = hex::encode(&block[..3]);
    let shown = t.json(&["key", "show", "known"]);
    assert_eq!(only(&shown)["kcv"], expected.as_str());
    // The human form prints the same KCV.
    let out = t
        .cmd()
        .args(["key", "show", "pkcs11:object=known;type=secret-key"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("KCV:               {expected}"))
    );
}

#[test]
fn kcv_is_null_rather_than_guessed() {
    let t = TestToken::new();
    // A generic secret with no check value and no encrypt usage: nothing in the
    // token can give a KCV, so none is shown.
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(true),
        Attribute::Label(b"opaque".to_vec()),
        Attribute::Sensitive(true),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Value(vec![9u8; 32]),
    ];
    // SoftHSM computes a check value unless told there is none.
    if t.kind == Kind::SoftHsm {
        template.push(Attribute::CheckValue(vec![]));
    }
    t.put_secret(template);
    let shown = t.json(&["key", "show", "opaque"]);
    assert_eq!(only(&shown)["kcv"], Value::Null, "{shown}");
    assert!(
        only(&shown)["kcv_method"]
            .as_str()
            .unwrap()
            .contains("no CKA_CHECK_VALUE"),
        "{shown}"
    );
    // The table says so in words.
    let out = t.cmd().args(["key", "list", "opaque"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("unavailable"));
}

#[test]
fn rotate_makes_the_next_version_with_the_same_policy() {
    let t = TestToken::new();
    let v1 = only(&t.json(&[
        "key",
        "generate",
        "--label",
        "db",
        "--type",
        "aes-256",
        "--backup-policy",
        "any",
        "--usage",
        "encrypt",
    ]))
    .clone();
    let v2 = only(&t.json(&["key", "rotate", "db"])).clone();
    assert_eq!(v2["label"], "db@v2");
    assert_eq!(v2["name"], "db");
    assert_eq!(v2["version"], 2);
    // Each version has its own id: NSS replaces a key whose id a new one reuses.
    assert_ne!(v2["id"], v1["id"]);
    assert_eq!(v2["usage"], v1["usage"]);
    assert_eq!(v2["backup_policy"], "any");
    assert_ne!(v2["kcv"], v1["kcv"], "a new version is a new key");
    let v3 = only(&t.json(&["key", "rotate", "db@v2"])).clone();
    assert_eq!(v3["label"], "db@v3");
    let listed = t.json(&["key", "list", "db"]);
    let versions: Vec<_> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(only(&t.json(&["key", "show", "db@v2"]))["version"], 2);
    // A name with the reserved suffix cannot be generated directly.
    let (exit, e) = t.json_err(
        t.cmd()
            .args(["key", "generate", "--label", "x@v2", "--type", "aes-128"]),
    );
    assert_eq!((exit, code(&e)), (6, "HK1301"));
}

#[test]
fn destroy_needs_yes_and_removes_every_version() {
    let t = TestToken::new();
    t.json(&["key", "generate", "--label", "gone", "--type", "ec-p256"]);
    t.json(&["key", "rotate", "gone"]);
    t.json(&["key", "generate", "--label", "stays", "--type", "aes-128"]);
    let before = t.object_count();
    let (exit, e) = t.json_err(t.cmd().args(["key", "destroy", "gone"]));
    assert_eq!((exit, code(&e)), (2, "HK1007"));
    assert_eq!(t.object_count(), before);
    let gone = t.json(&["key", "destroy", "gone", "--yes"]);
    assert_eq!(gone["keys"].as_array().unwrap().len(), 4);
    assert_eq!(t.object_count(), before - 4);
    let (exit, e) = t.json_err(t.cmd().args(["key", "show", "gone"]));
    assert_eq!((exit, code(&e)), (3, "HK1004"));
    assert_eq!(only(&t.json(&["key", "list"]))["label"], "stays");
}

#[test]
fn unknown_key_is_not_found_with_and_without_json() {
    let t = TestToken::new();
    let (exit, e) = t.json_err(t.cmd().args(["key", "show", "missing"]));
    assert_eq!(exit, 3);
    assert_eq!(code(&e), "HK1004");
    assert_eq!(e["message"], "The key is not found.");
    assert_eq!(e["context"]["key"], "missing");
    let out = t.cmd().args(["key", "show", "missing"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error[HK1004]: The key is not found."),
        "{stderr}"
    );
    assert!(stderr.contains("what to do:"), "{stderr}");
}

#[test]
fn wrong_pin_is_an_auth_error_tried_once() {
    let t = TestToken::new();
    let (exit, e) = t.json_err(t.cmd().env("HSMKEY_PIN", "9999").args(["key", "list"]));
    assert_eq!(exit, 4);
    assert_eq!(code(&e), "HK1101");
    // One attempt only: the right PIN still works afterwards (SoftHSM locks after many).
    t.json(&["key", "list"]);
    let out = t
        .cmd()
        .env("HSMKEY_PIN", "9999")
        .args(["key", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[HK1101]"));
}

#[test]
fn pin_sources_file_env_and_argv() {
    let t = TestToken::new();
    let pin_file = t.dir.path().join("pin.txt");
    std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
    let src = format!("file:{}", pin_file.display());
    let out = t
        .cmd()
        .env_remove("HSMKEY_PIN")
        .args(["key", "list", "--pin-source", &src, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = t
        .cmd()
        .env_remove("HSMKEY_PIN")
        .env("MYPIN", USER_PIN)
        .args(["--pin-source", "env:MYPIN", "key", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // No PIN anywhere and no terminal: an error, never a hang.
    let (exit, e) = t.json_err(t.cmd().env_remove("HSMKEY_PIN").args(["key", "list"]));
    assert_eq!((exit, code(&e)), (4, "HK1103"));
    // A PIN in argv is refused unless the operator accepts the risk explicitly.
    let argv_pin = format!("pin:{USER_PIN}");
    let (exit, e) = t.json_err(t.cmd().env_remove("HSMKEY_PIN").args([
        "key",
        "list",
        "--pin-source",
        &argv_pin,
    ]));
    assert_eq!((exit, code(&e)), (2, "HK1104"));
    assert!(!e.to_string().contains(USER_PIN));
    let out = t
        .cmd()
        .env_remove("HSMKEY_PIN")
        .args([
            "key",
            "list",
            "--pin-source",
            &argv_pin,
            "--insecure-pin-in-argv",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn malformed_uri_is_a_usage_error() {
    let t = TestToken::new();
    for bad in [
        "pkcs11:object=a;object=b",
        "pkcs11:id=%zz",
        "pkcs11:color=blue",
    ] {
        let (exit, e) = t.json_err(t.cmd().args(["key", "show", bad]));
        assert_eq!((exit, code(&e)), (2, "HK1006"), "{bad}");
    }
    // A pin-value in a malformed URI is never echoed back.
    let (_, e) = t.json_err(
        t.cmd()
            .args(["key", "show", "pkcs11:bogus=1?pin-value=s3cr3t"]),
    );
    assert_eq!(code(&e), "HK1006");
    assert!(!e.to_string().contains("s3cr3t"));
    let (exit, e) = t.json_err(t.cmd().args(["--token", "pkcs11:serial=%4", "key", "list"]));
    assert_eq!((exit, code(&e)), (2, "HK1006"));
}

#[test]
fn bad_arguments_give_their_codes() {
    let t = TestToken::new();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["key", "generate", "--label", "a", "--type", "des"],
            6,
            "HK1301",
        ),
        (
            &[
                "key",
                "generate",
                "--label",
                "a",
                "--type",
                "aes-128",
                "--backup-policy",
                "maybe",
            ],
            6,
            "HK1301",
        ),
        (
            &[
                "key", "generate", "--label", "a", "--type", "ec-p256", "--usage", "encrypt",
            ],
            6,
            "HK1301",
        ),
        (
            &[
                "key", "generate", "--label", "a", "--type", "aes-128", "--id", "zz",
            ],
            6,
            "HK1301",
        ),
        (
            &[
                "key", "generate", "--label", "a", "--kek", "--type", "aes-128",
            ],
            2,
            "HK1007",
        ),
        (&["key", "generate", "--label", "a"], 2, "HK1007"),
        (&["key", "frobnicate"], 2, "HK1007"),
    ];
    let before = t.object_count();
    for (args, exit, want) in cases {
        let (got_exit, e) = t.json_err(t.cmd().args(*args));
        assert_eq!((got_exit, code(&e)), (*exit, *want), "{args:?}");
    }
    assert_eq!(t.object_count(), before, "refusals create nothing");
    t.json(&["key", "generate", "--label", "dup", "--type", "aes-128"]);
    let (exit, e) = t.json_err(
        t.cmd()
            .args(["key", "generate", "--label", "dup", "--type", "aes-128"]),
    );
    assert_eq!((exit, code(&e)), (8, "HK1501"));
    // A reused id is refused too: NSS would silently replace the first key.
    t.json(&[
        "key", "generate", "--label", "first", "--type", "aes-128", "--id", "77",
    ]);
    let before = t.object_count();
    let (exit, e) = t.json_err(t.cmd().args([
        "key", "generate", "--label", "second", "--type", "ec-p256", "--id", "77",
    ]));
    assert_eq!((exit, code(&e)), (8, "HK1501"));
    assert_eq!(e["context"]["object"], "a key with id 77");
    assert_eq!(t.object_count(), before);
}

#[test]
fn trusted_kek_needs_the_so_pin() {
    let t = TestToken::new();
    let args = ["key", "generate", "--label", "tk", "--kek", "--trusted"];
    let (exit, e) = t.json_err(t.cmd().args(args));
    assert_eq!((exit, code(&e)), (4, "HK1103"));
    if t.kind == Kind::Nss {
        // NSS softokn refuses SO sessions once the user PIN is set.
        let (exit, e) = t.json_err(t.cmd().env("HSMKEY_SO_PIN", "0000").args(args));
        assert_eq!((exit, code(&e)), (5, "HK1201"));
        assert_eq!(e["context"]["capability"], "a Security Officer login");
        return;
    }
    let (exit, e) = t.json_err(t.cmd().env("HSMKEY_SO_PIN", "0000").args(args));
    assert_eq!((exit, code(&e)), (4, "HK1101"));
    assert_eq!(e["context"]["user"], "SO");
    let v = t.json_with_so(&args);
    let k = only(&v);
    assert_eq!(k["trusted"], true);
    assert_eq!(k["private"], false);
    assert_eq!(k["extractable"], false);
    // The user sees it.
    assert_eq!(only(&t.json(&["key", "show", "tk"]))["trusted"], true);
}

/// The known-KEK attack on `trusted` keys through the KEK's own unwrap: wrap a
/// trusted key under the trusted KEK, unwrap it again as a readable or
/// untrusted copy. The KEK's CKA_UNWRAP_TEMPLATE must make the token refuse.
#[test]
fn trusted_kek_cannot_unwrap_a_key_into_a_weaker_copy() {
    use cryptoki::mechanism::Mechanism;
    let t = TestToken::new();
    if t.kind == Kind::Nss {
        // No SO sessions on NSS, so no trusted KEK: refused with HK1201 (tested above).
        let (exit, e) = t.json_err(t.cmd().args([
            "--so-pin-source",
            "empty",
            "key",
            "generate",
            "--label",
            "tk",
            "--kek",
            "--trusted",
        ]));
        assert_eq!((exit, code(&e)), (5, "HK1201"));
        return;
    }
    t.json_with_so(&["key", "generate", "--label", "tk", "--kek", "--trusted"]);
    t.json(&["key", "generate", "--label", "plain-kek", "--kek"]);
    t.generate("crown", "aes-256", "trusted");
    t.with_session(|s| {
        let find = |label: &str| {
            s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                .unwrap()[0]
        };
        let (tk, plain, crown) = (find("tk"), find("plain-kek"), find("crown"));
        // The trusted key wraps only under the trusted KEK.
        assert!(s.wrap_key(&Mechanism::AesKeyWrap, plain, crown).is_err());
        let blob = s.wrap_key(&Mechanism::AesKeyWrap, tk, crown).unwrap();
        let base = |sensitive: bool, wwt: bool| {
            vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Sensitive(sensitive),
                Attribute::Extractable(true),
                Attribute::WrapWithTrusted(wwt),
            ]
        };
        assert!(
            s.unwrap_key(&Mechanism::AesKeyWrap, tk, &blob, &base(false, true))
                .is_err(),
            "a non-sensitive copy must be refused"
        );
        assert!(
            s.unwrap_key(&Mechanism::AesKeyWrap, tk, &blob, &base(true, false))
                .is_err(),
            "a copy wrappable by untrusted keys must be refused"
        );
        let copy = s
            .unwrap_key(&Mechanism::AesKeyWrap, tk, &blob, &base(true, true))
            .expect("a copy as strong as the original is allowed");
        s.destroy_object(copy).unwrap();
        // An ordinary KEK also refuses to unwrap into a non-sensitive key.
        let value = vec![5u8; 16];
        let known = s
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Extractable(true),
                Attribute::Value(value),
            ])
            .unwrap();
        let blob = s.wrap_key(&Mechanism::AesKeyWrap, plain, known).unwrap();
        assert!(s
            .unwrap_key(&Mechanism::AesKeyWrap, plain, &blob, &base(false, false))
            .is_err());
    });
}

#[test]
fn rsa_pairs_have_no_recover_usages() {
    let t = TestToken::new();
    t.json(&["key", "generate", "--label", "r", "--type", "rsa-2048"]);
    t.with_session(|s| {
        for h in s.find_objects(&[Attribute::Label(b"r".to_vec())]).unwrap() {
            let attrs = s
                .get_attributes(
                    h,
                    &[AttributeType::SignRecover, AttributeType::VerifyRecover],
                )
                .unwrap();
            for a in attrs {
                match a {
                    Attribute::SignRecover(b) | Attribute::VerifyRecover(b) => assert!(!b),
                    _ => {}
                }
            }
        }
    });
}

#[test]
fn rotating_a_trusted_kek_uses_the_so_session() {
    let t = TestToken::new();
    if t.kind == Kind::Nss {
        return; // no trusted keys on NSS (see trusted_kek_needs_the_so_pin)
    }
    t.json_with_so(&["key", "generate", "--label", "tk", "--kek", "--trusted"]);
    let v2 = t.json_with_so(&["key", "rotate", "tk"]);
    assert_eq!(only(&v2)["label"], "tk@v2");
    assert_eq!(only(&v2)["trusted"], true);
    // Without the SO PIN the rotation is refused with the SO PIN error.
    let (exit, e) = t.json_err(t.cmd().args(["key", "rotate", "tk"]));
    assert_eq!((exit, code(&e)), (4, "HK1103"));
    assert_eq!(e["context"]["user"], "SO");
}

#[test]
fn key_uri_selects_its_token_and_refuses_another() {
    let t = TestToken::new();
    t.json(&["key", "generate", "--label", "k", "--type", "aes-128"]);
    let uri = only(&t.json(&["key", "show", "k"]))["uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(only(&t.json(&["key", "show", &uri]))["label"], "k");
    let other = uri.replace("serial=", "serial=ff");
    let (exit, e) = t.json_err(t.cmd().args(["key", "show", &other]));
    assert!(
        matches!((exit, code(&e)), (3, "HK1003") | (2, "HK1007")),
        "{e}"
    );
}

#[test]
fn pins_in_uris_are_never_echoed() {
    let t = TestToken::new();
    let (exit, e) =
        t.json_err(
            t.cmd()
                .args(["key", "show", "pkcs11:object=nope?pin-value=s3cr3t"]),
        );
    assert_eq!((exit, code(&e)), (3, "HK1004"));
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    let (_, e) = t.json_err(
        t.cmd()
            .args(["key", "show", "pkcs11:pin-value=s3cr3t;object=x"]),
    );
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    let (_, e) =
        t.json_err(
            t.cmd()
                .args(["--token", "pkcs11:token=zz?pin-value=s3cr3t", "key", "list"]),
        );
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

#[test]
fn usage_errors_in_json_name_the_missing_argument() {
    let t = TestToken::new();
    let (exit, e) = t.json_err(t.cmd().args(["key", "generate", "--type", "aes-128"]));
    assert_eq!((exit, code(&e)), (2, "HK1007"));
    assert!(e["message"].as_str().unwrap().contains("--label"), "{e}");
}

#[test]
fn keks_cannot_be_modified_and_trusted_keks_never_leave() {
    let t = TestToken::new();
    t.json(&["key", "generate", "--label", "kek", "--kek"]);
    let kek = only(&t.json(&["key", "show", "kek"])).clone();
    assert_eq!(kek["modifiable"], false);
    if t.kind != Kind::Nss {
        // Its unwrap template cannot be replaced, nor anything else changed.
        t.with_session(|s| {
            let h = s
                .find_objects(&[Attribute::Label(b"kek".to_vec())])
                .unwrap()[0];
            assert!(s
                .update_attributes(h, &[Attribute::Label(b"renamed".to_vec())])
                .is_err());
        });
    }
    let (exit, e) = t.json_err(t.cmd().args([
        "key",
        "generate",
        "--label",
        "tk",
        "--kek",
        "--trusted",
        "--backup-policy",
        "any",
    ]));
    assert_eq!((exit, code(&e)), (2, "HK1007"));
    // EC pairs too get no recover usages.
    t.json(&["key", "generate", "--label", "ec", "--type", "ec-p256"]);
    t.with_session(|s| {
        for h in s.find_objects(&[Attribute::Label(b"ec".to_vec())]).unwrap() {
            for a in s
                .get_attributes(
                    h,
                    &[AttributeType::SignRecover, AttributeType::VerifyRecover],
                )
                .unwrap()
            {
                if let Attribute::SignRecover(b) | Attribute::VerifyRecover(b) = a {
                    assert!(!b);
                }
            }
        }
    });
}

#[test]
fn count_makes_numbered_keys_on_any_number_of_sessions() {
    let t = TestToken::new();
    for (name, sessions) in [("one", "1"), ("four", "4")] {
        let made = t.json(&[
            "--sessions",
            sessions,
            "key",
            "generate",
            "--label",
            name,
            "--type",
            "aes-128",
            "--count",
            "12",
        ]);
        assert_eq!(made["created"], 12);
        assert_eq!(made["first"], format!("{name}-00001"));
        assert_eq!(made["last"], format!("{name}-00012"));
    }
    let listed = t.json(&["key", "list", "--sessions", "4"]);
    let keys = listed["keys"].as_array().unwrap();
    let labels: Vec<&str> = keys.iter().map(|k| k["label"].as_str().unwrap()).collect();
    let mut want: Vec<String> = Vec::new();
    for name in ["four", "one"] {
        want.extend((1..=12).map(|i| format!("{name}-{i:05}")));
    }
    assert_eq!(labels, want, "every key once, listed in order");
    let ids: std::collections::HashSet<&str> =
        keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 24, "each key its own CKA_ID");
    let kcvs: std::collections::HashSet<&str> =
        keys.iter().map(|k| k["kcv"].as_str().unwrap()).collect();
    assert!(kcvs.len() > 20, "distinct keys: {kcvs:?}");
    // A second run with a name already used creates nothing.
    let before = t.object_count();
    let (exit, e) = t.json_err(t.cmd().args([
        "--sessions",
        "4",
        "key",
        "generate",
        "--label",
        "four",
        "--type",
        "aes-128",
        "--count",
        "3",
    ]));
    assert_eq!((exit, code(&e)), (8, "HK1501"));
    assert_eq!(t.object_count(), before);
    // The token fails the sixth generation: the keys made on the other
    // sessions, before and after it, are destroyed again.
    for sessions in ["1", "4"] {
        let (exit, e) = t.json_err(
            t.shim_cmd(&[
                (
                    "HSMKEY_SHIM_FAULT",
                    "C_GenerateKey:CKR_DEVICE_MEMORY:after=5",
                ),
                ("HSMKEY_SHIM_DELAY_US", "1000"),
            ])
            .args([
                "--sessions",
                sessions,
                "key",
                "generate",
                "--label",
                "fails",
                "--type",
                "aes-128",
                "--count",
                "12",
            ]),
        );
        assert_eq!((exit, code(&e)), (7, "HK1401"), "{e}");
        assert_eq!(e["context"]["rv"], "CKR_DEVICE_MEMORY", "{e}");
        assert_eq!(
            t.object_count(),
            before,
            "{sessions} sessions: nothing left"
        );
    }
}

/// Calls per function, from the pass-through's HSMKEY_SHIM_COUNTS file.
fn calls(path: &std::path::Path, function: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{function} ")))
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn a_key_named_by_one_label_is_found_by_that_label() {
    let t = TestToken::new();
    t.json(&["key", "generate", "--label", "db", "--type", "aes-128"]);
    t.json(&["key", "rotate", "db"]);
    t.json(&["key", "rotate", "db"]);
    t.json(&[
        "key", "generate", "--label", "other", "--type", "aes-128", "--count", "20",
    ]);
    // A gap: version 2 goes, version 3 stays a version of db.
    t.json(&["key", "destroy", "db@v2", "--yes"]);
    let counts = t.dir.path().join("counts");
    let show = |key: &str| {
        let v = t.json_ok(
            t.shim_cmd(&[("HSMKEY_SHIM_COUNTS", counts.to_str().unwrap())])
                .args(["key", "show", key]),
        );
        let versions: Vec<u64> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["version"].as_u64().unwrap())
            .collect();
        (
            versions,
            calls(&counts, "C_FindObjectsInit"),
            calls(&counts, "C_GetAttributeValue"),
        )
    };
    // One label: one search with it in the template, and no read of the
    // other 22 keys.
    for key in ["db@v3", "db@v1", "pkcs11:object=db@v3"] {
        let (versions, searches, reads) = show(key);
        assert_eq!(versions.len(), 1, "{key}");
        assert_eq!(searches, 1, "{key}");
        assert!(reads < 10, "{key}: {reads} attribute reads");
    }
    // A bare name takes every version, past the gap: one search of every
    // key, each read once (not three searches, two reads each).
    let (versions, searches, reads) = show("db");
    assert_eq!(versions, vec![1, 3]);
    assert_eq!(searches, 1);
    assert!(reads < 2 * 22, "{reads} attribute reads");
}
