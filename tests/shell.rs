//! `hsmkey completions`, `hsmkey man`, `--version` and the help layout: the
//! shell around hsmkey. No token is needed, and none is touched: every run
//! here has HSMKEY_MODULE=/nonexistent and no PIN.

use std::path::Path;
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;

const SHELLS: [&str; 5] = ["bash", "zsh", "fish", "powershell", "elvish"];

/// hsmkey with no token to reach: a module that does not exist, no PIN, no
/// terminal.
fn hsmkey() -> Command {
    let mut c = Command::cargo_bin("hsmkey").unwrap();
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HSMKEY_MODULE", "/nonexistent")
        .env("CI", "true");
    c
}

fn stdout_of(args: &[&str]) -> String {
    let out = hsmkey().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "hsmkey {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The top-level commands, read from `hsmkey --help` so that a new command is
/// covered without changing this file.
fn top_level_commands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    for expected in ["token", "key", "backup", "restore", "completions", "man"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    names
}

fn installed(tool: &str) -> bool {
    StdCommand::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn every_completion_script_names_every_command() {
    let commands = top_level_commands();
    for shell in SHELLS {
        let script = stdout_of(&["completions", shell]);
        assert!(script.len() > 200, "{shell}: {script}");
        for name in &commands {
            assert!(
                script.contains(name.as_str()),
                "{shell} script lacks {name}"
            );
        }
    }
}

#[test]
fn the_bash_script_parses() {
    if !installed("bash") {
        eprintln!("bash is not installed: syntax not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hsmkey.bash");
    std::fs::write(&path, stdout_of(&["completions", "bash"])).unwrap();
    let out = StdCommand::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = hsmkey().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// What troff says about the page, past the notes on how well it justified a
/// line (which depend on the width and the words, not on the page's roff).
fn troff_warnings(page: &Path) -> Option<Vec<String>> {
    let out = if installed("man") {
        StdCommand::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "")
            .stdout(Stdio::null())
            .output()
            .unwrap()
    } else if installed("groff") {
        StdCommand::new("groff")
            .args(["-man", "-z", "-ww"])
            .arg(page)
            .output()
            .unwrap()
    } else {
        return None;
    };
    assert!(out.status.success(), "{out:?}");
    Some(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("cannot adjust line"))
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn the_man_page_renders_cleanly_and_covers_every_command() {
    let page = stdout_of(&["man"]);
    assert!(
        page.lines().any(|l| l.starts_with(".TH HSMKEY 1 ")),
        "no .TH line:\n{page}"
    );
    for heading in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH \"GLOBAL OPTIONS\"",
        ".SH COMMANDS",
    ] {
        assert!(page.contains(heading), "no {heading}");
    }
    for name in top_level_commands() {
        assert!(
            page.contains(&format!(".SS \"hsmkey {name}")),
            "the man page has no section for {name}"
        );
    }
    // Commands inside groups have their own section, with their options.
    assert!(page.contains(".SS \"hsmkey token init\""));
    assert!(page.contains(".SS \"hsmkey key generate\""));
    // Global options are described once, not under every command.
    assert_eq!(page.matches("\\fB\\-\\-pin\\-source\\fR \\fI").count(), 1);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hsmkey.1");
    std::fs::write(&path, &page).unwrap();
    match troff_warnings(&path) {
        Some(warnings) => assert!(warnings.is_empty(), "{}", warnings.join("\n")),
        None => eprintln!("neither man nor groff is installed: page not rendered"),
    }
}

/// The commit build.rs records: `git rev-parse --short HEAD` when the crate
/// is the top of a git checkout, else "unknown".
fn expected_commit() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| -> Option<String> {
        let out = StdCommand::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let top = git(&["rev-parse", "--show-toplevel"]).map(|t| Path::new(&t).canonicalize());
    match top {
        Some(Ok(top)) if top == root.canonicalize().unwrap() => {
            git(&["rev-parse", "--short", "HEAD"]).unwrap()
        }
        _ => "unknown".to_string(),
    }
}

#[test]
fn version_names_the_commit_and_cryptoki() {
    let version = stdout_of(&["--version"]);
    let commit = expected_commit();
    let expected = format!(
        "hsmkey {} (commit {commit}, cryptoki 0.12.",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        version.starts_with(&expected),
        "{version} (expected {expected}…)"
    );
    assert!(version.trim_end().ends_with(')'), "{version}");
}

#[test]
fn global_options_stand_apart_in_help() {
    for args in [
        &["--help"][..],
        &["backup", "--help"],
        &["key", "generate", "-h"],
    ] {
        let help = stdout_of(args);
        let (own, global) = help
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("{args:?}: no Global options heading:\n{help}"));
        for option in [
            "--module",
            "--token",
            "--pin-source",
            "--json",
            "--sessions",
        ] {
            assert!(global.contains(option), "{args:?}: {option} not global");
            assert!(
                !own.contains(option),
                "{args:?}: {option} among own options"
            );
        }
    }
    let backup = stdout_of(&["backup", "--help"]);
    let own = backup.split_once("Global options:").unwrap().0;
    assert!(
        own.contains("Options:") && own.contains("--kek"),
        "{backup}"
    );
}

#[test]
fn completions_and_man_need_no_module_and_no_pin() {
    // /nonexistent cannot be loaded and no PIN is in the environment: a
    // command that touched the token would fail (HK1001, HK1103).
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["completions", "zsh", "--json"],
    ] {
        let out = hsmkey().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
}
