//! `hsmkey token ...` against real SoftHSM2 tokens.

mod common;

use common::{code, SoftToken, LABEL, SO_PIN, USER_PIN};

#[test]
fn token_list_shows_the_fixture_token() {
    let t = SoftToken::new();
    let v = t.json(&["token", "list"]);
    let tokens = v.as_array().unwrap();
    let ours: Vec<_> = tokens.iter().filter(|x| x["initialized"] == true).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["label"], LABEL);
    assert_eq!(ours[0]["manufacturer"], "SoftHSM project");
    let uri = ours[0]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("pkcs11:token=hsmkey-test;manufacturer=SoftHSM%20project;serial="),
        "{uri}"
    );
}

#[test]
fn token_info_by_label_and_by_uri() {
    let t = SoftToken::new();
    let by_label = t.json(&["token", "info", "--token", LABEL]);
    assert_eq!(by_label["label"], LABEL);
    assert_eq!(by_label["user_pin_initialized"], true);
    assert_eq!(by_label["module"], t.module.as_str());
    let serial = by_label["serial"].as_str().unwrap().to_string();
    let uri = format!("pkcs11:model=SoftHSM%20v2;serial={serial}");
    let by_uri = t.json(&["token", "info", "--token", &uri]);
    assert_eq!(by_uri["serial"], serial.as_str());
}

#[test]
fn unknown_token_is_not_found() {
    let t = SoftToken::new();
    let (exit, v) = t.json_err(t.cmd().args(["token", "info", "--token", "nope"]));
    assert_eq!(exit, 3);
    assert_eq!(code(&v), "HK1003");
    assert_eq!(v["context"]["token"], "nope");
}

#[test]
fn token_init_sets_label_and_both_pins() {
    let t = SoftToken::empty();
    let out = t
        .cmd()
        .env("SOPIN", SO_PIN)
        .args([
            "token",
            "init",
            "--label",
            "fresh",
            "--so-pin-source",
            "env:SOPIN",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["label"], "fresh");
    assert_eq!(v["initialized"], true);
    assert_eq!(v["user_pin_initialized"], true);
    // The user PIN works: a key can be made and listed.
    t.json(&["key", "generate", "--label", "k", "--type", "aes-128"]);
    assert_eq!(t.json(&["key", "list"]).as_array().unwrap().len(), 1);
    // The SO PIN works: an SO-only operation succeeds with it.
    let trusted = t
        .cmd()
        .env("HSMKEY_SO_PIN", SO_PIN)
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
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stdout)
    );
}

#[test]
fn token_init_without_so_pin_in_ci_fails_instead_of_prompting() {
    let t = SoftToken::empty();
    let (exit, v) = t.json_err(t.cmd().args(["token", "init", "--label", "x"]));
    assert_eq!(exit, 4);
    assert_eq!(code(&v), "HK1103");
    assert_eq!(v["context"]["user"], "SO");
}

#[test]
fn mechanisms_report_what_softhsm_really_does() {
    let t = SoftToken::new();
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
    // SoftHSM 2.6.1 zero-pads before RFC 5649 (REFERENCE.md §4).
    assert_eq!(mech("0x210A")["kat"], "rfc5649-zero-padded");
    assert_eq!(mech("0x210B")["available"], false);
    assert_eq!(mech("0x210C")["available"], false);
    assert_eq!(mech("0x1054")["available"], false);
    assert_eq!(v["rfc3394_mechanism"], "CKM_AES_KEY_WRAP");
    assert!(v["rfc5649_mechanism"].is_null());
    assert_eq!(v["aes_key_wrap_pad_is"], "rfc5649-zero-padded");
    assert_eq!(v["oaep_sha1"], true);
    assert_eq!(v["oaep_sha256"], false);
    // The probe leaves nothing behind.
    assert_eq!(t.object_count(), 0);
}

#[test]
fn require_names_the_missing_capability() {
    let t = SoftToken::new();
    t.json(&["token", "mechanisms", "--require", "rfc3394,oaep-sha1"]);
    let (exit, v) =
        t.json_err(
            t.cmd()
                .args(["token", "mechanisms", "--require", "rfc3394,oaep-sha256"]),
        );
    assert_eq!(exit, 5);
    assert_eq!(code(&v), "HK1201");
    assert_eq!(v["context"]["capability"], "oaep-sha256");
    let out = t
        .cmd()
        .args(["token", "mechanisms", "--require", "rfc5649"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[HK1201]"), "{stderr}");
    assert!(stderr.contains("what to do:"), "{stderr}");
}

#[test]
fn missing_module_is_reported() {
    let t = SoftToken::new();
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
