//! `hsmkey token ...` against real tokens (SoftHSM2, kryoptic, NSS softokn).

mod common;

use common::{code, kind, Kind, TestToken, USER_PIN};
use serde_json::Value;

fn manufacturer() -> &'static str {
    match kind() {
        Kind::SoftHsm => "SoftHSM project",
        Kind::Kryoptic => "Kryoptic Project",
        Kind::Nss => "Mozilla Foundation",
    }
}

#[test]
fn token_list_shows_the_fixture_token() {
    let t = TestToken::new();
    let v = t.json(&["token", "list"]);
    let tokens = v["tokens"].as_array().unwrap();
    let ours: Vec<_> = tokens
        .iter()
        .filter(|x| x["label"] == t.label.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{v}");
    assert_eq!(ours[0]["initialized"], true);
    assert_eq!(ours[0]["user_pin_initialized"], true);
    assert_eq!(ours[0]["manufacturer"], manufacturer());
    let uri = ours[0]["uri"].as_str().unwrap();
    let label_enc = t.label.replace(' ', "%20");
    assert!(
        uri.starts_with(&format!("pkcs11:token={label_enc};manufacturer=")),
        "{uri}"
    );
    assert!(uri.contains(";serial="), "{uri}");
}

#[test]
fn token_info_by_label_and_by_uri() {
    let t = TestToken::new();
    let by_label = t.json(&["token", "info", "--token", &t.label]);
    assert_eq!(by_label["label"], t.label.as_str());
    assert_eq!(by_label["user_pin_initialized"], true);
    assert_eq!(by_label["module"], t.module.as_str());
    let uri = by_label["uri"].as_str().unwrap().to_string();
    let by_uri = t.json(&["token", "info", "--token", &uri]);
    assert_eq!(by_uri["serial"], by_label["serial"]);
    assert_eq!(by_uri["slot_id"], by_label["slot_id"]);
}

#[test]
fn unknown_token_is_not_found() {
    let t = TestToken::new();
    let (exit, v) = t.json_err(t.cmd().args(["token", "info", "--token", "nope"]));
    assert_eq!(exit, 3);
    assert_eq!(code(&v), "HK1003");
    assert_eq!(v["context"]["token"], "nope");
}

#[test]
fn token_init_sets_label_and_both_pins() {
    let t = TestToken::empty();
    let so_source = t.so_pin_source();
    let out = t
        .cmd()
        .env("SOPIN", common::SO_PIN)
        .args([
            "token",
            "init",
            "--label",
            "fresh",
            "--so-pin-source",
            so_source,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = common::documented(&out.stdout);
    assert_eq!(v["schema"], "hsmkey.token-init.v1");
    let expected_label = if t.kind == Kind::Nss {
        common::NSS_LABEL
    } else {
        "fresh"
    };
    assert_eq!(v["label"], expected_label);
    assert_eq!(v["initialized"], true);
    assert_eq!(v["user_pin_initialized"], true);
    // The user PIN works: a key can be made and listed.
    let mut cmd = t.cmd();
    cmd.env("HSMKEY_TOKEN", expected_label);
    let made = cmd
        .args([
            "key", "generate", "--label", "k", "--type", "aes-128", "--json",
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stdout)
    );
    // The SO PIN works (where the token allows SO sessions after init).
    let trusted = t
        .cmd()
        .env("HSMKEY_TOKEN", expected_label)
        .env("SOPIN", common::SO_PIN)
        .args(["--so-pin-source", so_source])
        .args([
            "key",
            "generate",
            "--label",
            "tk",
            "--kek",
            "--trusted",
            "--json",
        ])
        .output()
        .unwrap();
    if t.kind == Kind::Nss {
        assert_eq!(trusted.status.code(), Some(5));
        let e: Value = serde_json::from_slice(&trusted.stdout).unwrap();
        assert_eq!(code(&e), "HK1201");
    } else {
        assert!(
            trusted.status.success(),
            "{}",
            String::from_utf8_lossy(&trusted.stdout)
        );
    }
}

#[test]
fn token_init_without_so_pin_in_ci_fails_instead_of_prompting() {
    let t = TestToken::empty();
    let (exit, v) = t.json_err(t.cmd().args(["token", "init", "--label", "x"]));
    assert_eq!(exit, 4);
    assert_eq!(code(&v), "HK1103");
    assert_eq!(v["context"]["user"], "SO");
}

/// What each token's probe must find (docs/TOKENS.md, checked here).
struct Expected {
    kwp_0x210a: &'static str,
    kwp_0x210b: Option<&'static str>,
    pkcs7_0x210c: Option<&'static str>,
    rfc5649: Option<&'static str>,
    oaep_sha256: bool,
    missing: &'static str,
}

fn expected() -> Expected {
    match kind() {
        Kind::SoftHsm => Expected {
            kwp_0x210a: "rfc5649-zero-padded",
            kwp_0x210b: None,
            pkcs7_0x210c: None,
            rfc5649: None,
            oaep_sha256: false,
            missing: "oaep-sha256",
        },
        Kind::Kryoptic => Expected {
            kwp_0x210a: "not offered",
            kwp_0x210b: Some("rfc5649"),
            pkcs7_0x210c: Some("pkcs7-rfc3394"),
            rfc5649: Some("CKM_AES_KEY_WRAP_KWP"),
            oaep_sha256: true,
            missing: "rsa-aes-key-wrap",
        },
        Kind::Nss => Expected {
            kwp_0x210a: "pkcs7-rfc3394",
            kwp_0x210b: Some("rfc5649"),
            pkcs7_0x210c: None,
            rfc5649: Some("CKM_AES_KEY_WRAP_KWP"),
            oaep_sha256: true,
            missing: "rsa-aes-key-wrap",
        },
    }
}

#[test]
fn mechanisms_report_what_the_token_really_does() {
    let t = TestToken::new();
    let want = expected();
    let v = t.json(&["token", "mechanisms"]);
    let mech = |n: &str| {
        v["mechanisms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["number"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .clone()
    };
    assert_eq!(mech("0x2109")["available"], true);
    assert_eq!(mech("0x2109")["kat"], "rfc3394");
    assert_eq!(v["aes_key_wrap_pad_is"], want.kwp_0x210a);
    if want.kwp_0x210a != "not offered" {
        assert_eq!(mech("0x210A")["kat"], want.kwp_0x210a);
    } else {
        assert_eq!(mech("0x210A")["available"], false);
    }
    match want.kwp_0x210b {
        Some(alg) => assert_eq!(mech("0x210B")["kat"], alg),
        None => assert_eq!(mech("0x210B")["available"], false),
    }
    match want.pkcs7_0x210c {
        Some(alg) => assert_eq!(mech("0x210C")["kat"], alg),
        None => assert_eq!(mech("0x210C")["available"], false),
    }
    assert_eq!(mech("0x1054")["available"], false);
    assert_eq!(v["rfc3394_mechanism"], "CKM_AES_KEY_WRAP");
    match want.rfc5649 {
        Some(m) => assert_eq!(v["rfc5649_mechanism"], m),
        None => assert!(v["rfc5649_mechanism"].is_null()),
    }
    assert_eq!(v["oaep_sha1"], true);
    assert_eq!(v["oaep_sha256"], want.oaep_sha256);
    // The probe leaves nothing behind.
    assert_eq!(t.object_count(), 0);
}

#[test]
fn require_names_the_missing_capability() {
    let t = TestToken::new();
    let want = expected();
    t.json(&["token", "mechanisms", "--require", "rfc3394,oaep-sha1"]);
    let list = format!("rfc3394,{}", want.missing);
    let (exit, v) = t.json_err(t.cmd().args(["token", "mechanisms", "--require", &list]));
    assert_eq!(exit, 5);
    assert_eq!(code(&v), "HK1201");
    assert_eq!(v["context"]["capability"], want.missing);
    let out = t
        .cmd()
        .args(["token", "mechanisms", "--require", want.missing])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[HK1201]"), "{stderr}");
    assert!(stderr.contains("what to do:"), "{stderr}");
    let (exit, v) = t.json_err(
        t.cmd()
            .args(["token", "mechanisms", "--require", "telepathy"]),
    );
    assert_eq!((exit, code(&v)), (2, "HK1007"));
}

#[test]
fn missing_module_is_reported() {
    let t = TestToken::new();
    let mut cmd = assert_cmd::Command::cargo_bin("hsmkey").unwrap();
    cmd.env_clear().env("HSMKEY_PIN", USER_PIN).args([
        "--module",
        "/nonexistent/libnothing.so",
        "token",
        "list",
    ]);
    let (exit, v) = t.json_err(&mut cmd);
    assert_eq!(exit, 3);
    assert_eq!(code(&v), "HK1001");
    assert_eq!(v["context"]["module"], "/nonexistent/libnothing.so");
    // Without --json: human message on stderr, same exit code.
    let out = assert_cmd::Command::cargo_bin("hsmkey")
        .unwrap()
        .env_clear()
        .args(["--module", "/nonexistent/libnothing.so", "token", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[HK1001]"));
}

#[test]
fn token_init_refuses_a_taken_label_and_a_bad_pin_before_changing_anything() {
    let t = TestToken::new();
    if t.kind == Kind::Nss {
        return; // NSS has a single database token with a fixed label
    }
    let (exit, e) = t.json_err(t.cmd().env("SOPIN", common::SO_PIN).args([
        "token",
        "init",
        "--label",
        &t.label,
        "--so-pin-source",
        "env:SOPIN",
    ]));
    assert_eq!((exit, code(&e)), (8, "HK1501"));
    if t.kind == Kind::Kryoptic {
        // kryoptic reports no usable PIN length limits (8..0) before
        // initialization, so hsmkey cannot refuse a short PIN up front there.
        return;
    }
    let empty = TestToken::empty();
    let (exit, e) = empty.json_err(
        empty
            .cmd()
            .env("SOPIN", common::SO_PIN)
            .env("HSMKEY_PIN", "1")
            .args([
                "token",
                "init",
                "--label",
                "x",
                "--so-pin-source",
                "env:SOPIN",
            ]),
    );
    assert_eq!((exit, code(&e)), (6, "HK1301"));
    let listed = empty.json(&["token", "list"]);
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["initialized"] == false),
        "{listed}"
    );
}
