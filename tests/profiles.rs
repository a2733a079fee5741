//! Issue #12, item 8, profiles (README.md, "Profiles"):
//! `$XDG_CONFIG_HOME/hsmkey/config.toml` holds `[profiles.NAME]`; `--profile
//! NAME` or `HSMKEY_PROFILE` applies one; flags beat environment variables,
//! which beat the profile, which beats the defaults. Unknown keys, bad values
//! and PINs in the file are HK1008 with the line; an unknown profile is
//! HK1009 naming the file and the profiles it has.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{code, path_str, TestToken, USER_PIN};
use serde_json::Value;

/// A TOML basic string.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// `[profiles.NAME]` reaching `t`, with the PIN in a file, plus `extra` lines.
fn profile_for(t: &TestToken, name: &str, extra: &str) -> String {
    let pin = t.dir.path().join("user.pin");
    std::fs::write(&pin, format!("{USER_PIN}\n")).unwrap();
    let mut text = format!(
        "[profiles.{name}]\nmodule = {}\ntoken = {}\npin_source = {}\n",
        quoted(&t.module),
        quoted(&t.label),
        quoted(&format!("file:{}", pin.display()))
    );
    if let Some(args) = &t.module_args {
        text.push_str(&format!("module_args = {}\n", quoted(args)));
    }
    text.push_str(extra);
    text
}

/// Write the configuration under `t`'s own XDG_CONFIG_HOME; return that folder.
fn write_config(t: &TestToken, text: &str) -> PathBuf {
    let xdg = t.dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("hsmkey")).unwrap();
    std::fs::write(xdg.join("hsmkey/config.toml"), text).unwrap();
    xdg
}

/// hsmkey with only the soft token's own environment (SOFTHSM2_CONF, ...):
/// no HSMKEY_MODULE, HSMKEY_TOKEN or HSMKEY_PIN, so what reaches the token
/// comes from the profile.
fn bare(t: &TestToken, xdg: &Path) -> Command {
    let mut c = Command::cargo_bin("hsmkey").unwrap();
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CI", "true")
        .env("HOME", t.dir.path())
        .env("XDG_CONFIG_HOME", xdg)
        .current_dir(t.dir.path());
    for (k, v) in &t.env {
        c.env(k, v);
    }
    c
}

fn ok_json(cmd: &mut Command) -> Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn err_json(cmd: &mut Command) -> (i32, Value) {
    let out = cmd.arg("--json").output().unwrap();
    assert!(!out.status.success(), "expected a failure");
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("error JSON, got {}", String::from_utf8_lossy(&out.stderr))),
    )
}

#[test]
fn hsmkey_profile_dr_verify_weekly_bundle() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    let pw = t.dir.path().join("pw");
    std::fs::write(&pw, "Correct-Horse#42\n").unwrap();
    let bundle = t.dir.path().join("weekly.bundle");
    t.json(&[
        "backup",
        "--password-file",
        path_str(&pw),
        "k",
        "--out",
        path_str(&bundle),
    ]);
    let xdg = write_config(&t, &profile_for(&t, "dr", "sessions = 2\nwait = 5\n"));
    // Without the profile, there is no PIN.
    let (exit, e) = err_json(bare(&t, &xdg).args(["key", "list"]));
    assert_ne!(exit, 0);
    assert_ne!(code(&e), "");
    // The issue's own line.
    let v = ok_json(bare(&t, &xdg).args([
        "--profile",
        "dr",
        "verify",
        "weekly.bundle",
        "--password-file",
        path_str(&pw),
    ]));
    assert_eq!(v["entries"][0]["label"], "k");
    // HSMKEY_PROFILE, and --profile after the command name.
    ok_json(
        bare(&t, &xdg)
            .env("HSMKEY_PROFILE", "dr")
            .args(["key", "list"]),
    );
    ok_json(bare(&t, &xdg).args(["key", "list", "--profile", "dr"]));
}

#[test]
fn flags_and_environment_override_the_profile() {
    let t = TestToken::new();
    t.generate("k", "aes-256", "any");
    let good = profile_for(&t, "good", "");
    let text = format!(
        "{good}\n[profiles.badmodule]\nmodule = \"/nonexistent/libnothing.so\"\n\
         [profiles.badtoken]\ntoken = \"no-such-token\"\n\
         [profiles.badpin]\npin_source = \"file:/nonexistent/pin\"\n"
    );
    let xdg = write_config(&t, &text);
    let real = t.label.clone();
    let pin_file = format!("file:{}", t.dir.path().join("user.pin").display());
    let args = t.module_args.clone();
    // The rest comes from the flags, so each bad value alone decides.
    let with = |profile: &str| {
        let mut c = bare(&t, &xdg);
        c.args(["--profile", profile, "key", "list"]);
        if profile != "badmodule" {
            c.args(["--module", &t.module]);
            if let Some(a) = &args {
                c.args(["--module-args", a]);
            }
        }
        if profile != "badtoken" {
            c.args(["--token", &real]);
        }
        if profile != "badpin" {
            c.args(["--pin-source", &pin_file]);
        }
        c
    };
    // Each profile value is used ...
    let (exit, e) = err_json(&mut with("badmodule"));
    assert_eq!((exit, code(&e)), (3, "HK1001"), "{e}");
    assert_eq!(e["context"]["module"], "/nonexistent/libnothing.so");
    let (exit, e) = err_json(&mut with("badtoken"));
    assert_eq!((exit, code(&e)), (3, "HK1003"), "{e}");
    assert_eq!(e["context"]["token"], "no-such-token");
    let (exit, e) = err_json(&mut with("badpin"));
    assert_eq!((exit, code(&e)), (4, "HK1103"), "{e}");
    // ... and loses to a flag ...
    let mut m = with("badmodule");
    m.args(["--module", &t.module]);
    if let Some(a) = &args {
        m.args(["--module-args", a]);
    }
    ok_json(&mut m);
    ok_json(with("badtoken").args(["--token", &real]));
    ok_json(with("badpin").args(["--pin-source", &pin_file]));
    // ... and to an environment variable.
    let mut m = with("badmodule");
    m.env("HSMKEY_MODULE", &t.module);
    if let Some(a) = &args {
        m.env("HSMKEY_MODULE_ARGS", a);
    }
    ok_json(&mut m);
    ok_json(with("badtoken").env("HSMKEY_TOKEN", &real));
    ok_json(with("badpin").env("HSMKEY_PIN", USER_PIN));
    // The environment's override is said on stderr.
    let out = with("badtoken")
        .env("HSMKEY_TOKEN", &real)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("HSMKEY_TOKEN overrides token of profile 'badtoken'"));
}

#[test]
fn bad_configuration_files_name_the_line() {
    let t = TestToken::new();
    let good = profile_for(&t, "dr", "");
    let cases = [
        ("[profiles.dr]\ntoken = \"x\"\npin = \"1234\"\n", "3", "pin"),
        ("[profiles.dr]\nsessions = 0\n", "2", "sessions"),
        ("[profile.dr]\ntoken = \"x\"\n", "1", "profile"),
        (
            "[profiles.dr]\ntoken = \"x\"\npin_source = \"pin:1234\"\n",
            "3",
            "pin:VALUE",
        ),
    ];
    for (text, line, named) in cases {
        let xdg = write_config(&t, text);
        for extra in [&[][..], &["--insecure-pin-in-argv"][..]] {
            let (exit, e) = err_json(
                bare(&t, &xdg)
                    .args(["--profile", "dr", "key", "list"])
                    .args(extra),
            );
            assert_eq!((exit, code(&e)), (2, "HK1008"), "{text}: {e}");
            assert_eq!(e["context"]["line"], line, "{text}: {e}");
            assert!(e["context"]["path"]
                .as_str()
                .unwrap()
                .ends_with("hsmkey/config.toml"));
            let message = e["message"].as_str().unwrap();
            assert!(message.contains(named), "{e}");
            assert!(
                !e.to_string().contains("\"1234\"") && !message.contains(":1234"),
                "{e}"
            );
        }
        // Without --profile the file is not read.
        let out = bare(&t, &xdg)
            .args(["bundle", "inspect", "nothing", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(10),
            "the inspect's own error, not the file's"
        );
    }
    // profile list checks the file.
    let xdg = write_config(&t, &format!("{good}colour = \"blue\"\n"));
    let (exit, e) = err_json(bare(&t, &xdg).args(["profile", "list"]));
    assert_eq!((exit, code(&e)), (2, "HK1008"), "{e}");
}

#[test]
fn an_unknown_profile_names_the_file_and_the_profiles() {
    let t = TestToken::new();
    let xdg = t.dir.path().join("empty-xdg");
    let (exit, e) = err_json(bare(&t, &xdg).args(["--profile", "dr", "key", "list"]));
    assert_eq!((exit, code(&e)), (3, "HK1009"), "{e}");
    assert!(
        e["context"]["path"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{e}"
    );
    let text = format!(
        "{}\n[profiles.lab]\ntoken = \"lab\"\n",
        profile_for(&t, "dr", "")
    );
    let xdg = write_config(&t, &text);
    let (exit, e) = err_json(
        bare(&t, &xdg)
            .env("HSMKEY_PROFILE", "prod")
            .args(["key", "list"]),
    );
    assert_eq!((exit, code(&e)), (3, "HK1009"), "{e}");
    assert_eq!(e["context"]["profiles"], "dr, lab");
    assert_eq!(e["context"]["profile"], "prod");
    let file = xdg.join("hsmkey/config.toml");
    assert_eq!(e["context"]["path"], path_str(&file));
    // Human form.
    let out = bare(&t, &xdg)
        .args(["--profile", "prod", "key", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("error[HK1009]") && text.contains("profiles: dr, lab"),
        "{text}"
    );
}

#[test]
fn hsmkey_config_and_the_profile_commands() {
    let t = TestToken::new();
    let xdg = t.dir.path().join("none");
    // No file: list says so and succeeds.
    let v = ok_json(bare(&t, &xdg).args(["profile", "list"]));
    assert_eq!(v["exists"], false);
    assert_eq!(v["schema"], "hsmkey.profile-list.v1");
    assert!(
        v["path"]
            .as_str()
            .unwrap()
            .ends_with("none/hsmkey/config.toml"),
        "{v}"
    );
    // HOME/.config without XDG_CONFIG_HOME.
    let v = ok_json(
        bare(&t, &xdg)
            .env_remove("XDG_CONFIG_HOME")
            .args(["profile", "list"]),
    );
    assert_eq!(
        v["path"],
        path_str(&t.dir.path().join(".config/hsmkey/config.toml"))
    );
    // HSMKEY_CONFIG names another file.
    let other = t.dir.path().join("other.toml");
    std::fs::write(&other, profile_for(&t, "dr", "sessions = 3\n")).unwrap();
    let v = ok_json(
        bare(&t, &xdg)
            .env("HSMKEY_CONFIG", &other)
            .args(["profile", "list"]),
    );
    assert_eq!(v["exists"], true);
    assert_eq!(v["profiles"][0]["name"], "dr");
    assert_eq!(v["profiles"][0]["sessions"], 3);
    let v = ok_json(
        bare(&t, &xdg)
            .env("HSMKEY_CONFIG", &other)
            .args(["profile", "show", "dr"]),
    );
    assert_eq!(v["token"], t.label.as_str());
    ok_json(
        bare(&t, &xdg)
            .env("HSMKEY_CONFIG", &other)
            .args(["--profile", "dr", "key", "list"]),
    );
    let out = bare(&t, &xdg)
        .env("HSMKEY_CONFIG", &other)
        .args(["profile", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NAME") && text.contains("dr"), "{text}");
}
