//! The terminal conventions (README.md, "Unix conventions"): when colours
//! and other escape sequences may be written, when a prompt may be shown,
//! where the human report goes when stdout carries an output file, and how
//! paths are shown in human messages.

use std::io::IsTerminal;
use std::path::Path;

use hsmkey::formats::password::{self, Policy};
use hsmkey::{Error, Result};
use secrecy::{ExposeSecret, SecretString};

use super::Context;

/// Whether `NO_COLOR` asks for no colour: set to anything but the empty
/// string (no-color.org).
pub(crate) fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether stderr may carry escape sequences (coloured log levels, progress
/// bars redrawn in place): it is a terminal and `NO_COLOR` is not set.
pub(crate) fn ansi_on_stderr() -> bool {
    std::io::stderr().is_terminal() && !no_color()
}

/// Whether a prompt may be shown: never in CI (`CI` set), and only when a
/// person is there: stdin or stderr is a terminal and the process has a
/// controlling terminal (the prompt reads it without echo). cron, a pipe
/// without a terminal, or a container without `-t` get an error instead,
/// never a hang.
pub(crate) fn prompt_allowed() -> bool {
    if std::env::var_os("CI").is_some() {
        return false;
    }
    if !(std::io::stdin().is_terminal() || std::io::stderr().is_terminal()) {
        return false;
    }
    controlling_terminal()
}

#[cfg(unix)]
fn controlling_terminal() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

#[cfg(not(unix))]
fn controlling_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Ask for a secret on the terminal, without echo. The whole line is the
/// answer: spaces are kept.
pub(crate) fn prompt_secret(prompt: &str) -> std::io::Result<SecretString> {
    rpassword::prompt_password(format!("hsmkey: {prompt}")).map(SecretString::from)
}

fn unavailable(reason: String) -> Error {
    Error::PasswordUnavailable { reason }
}

/// A new backup password from the terminal: asked twice and compared; the
/// first answer is checked against `policy` before the second is asked.
pub(crate) fn new_password(policy: Policy) -> Result<SecretString> {
    if !prompt_allowed() {
        return Err(unavailable(no_prompt_reason()));
    }
    let read = |prompt: &str| {
        prompt_secret(prompt)
            .map_err(|e| unavailable(format!("cannot read from the terminal: {e}")))
    };
    let first = read(&format!("new backup password ({} policy): ", policy.name()))?;
    password::check(first.expose_secret(), policy)
        .map_err(|reason| Error::BadPassword { reason })?;
    let second = read("the same password again: ")?;
    if first.expose_secret() != second.expose_secret() {
        return Err(unavailable(
            "the two entries differ; nothing was written".into(),
        ));
    }
    Ok(first)
}

/// The password of an existing backup, asked once (no policy: the backup
/// decides whether it is right).
pub(crate) fn existing_password() -> Result<SecretString> {
    if !prompt_allowed() {
        return Err(unavailable(no_prompt_reason()));
    }
    let pw = prompt_secret("backup password: ")
        .map_err(|e| unavailable(format!("cannot read from the terminal: {e}")))?;
    if pw.expose_secret().is_empty() {
        return Err(unavailable("an empty password was entered".into()));
    }
    Ok(pw)
}

fn no_prompt_reason() -> String {
    if std::env::var_os("CI").is_some() {
        "--password-prompt never prompts in CI (the CI variable is set); use --password-file".into()
    } else {
        "--password-prompt needs a terminal, and there is none; use --password-file".into()
    }
}

/// A path for a human message: control characters and backslashes escaped
/// (a file name may hold any byte but `/` and NUL), `-` named as standard
/// output or input by the caller.
pub(crate) fn escape_path(path: &Path) -> String {
    escape(&path.to_string_lossy(), true)
}

/// A message for the terminal: control characters escaped (`\n`,
/// `\u{1b}`), so that no text from outside can move the cursor or recolour.
pub(crate) fn escape_controls(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, backslash: bool) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || (backslash && c == '\\') {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// How an `--out` path is named in the human report.
pub(crate) fn out_name(path: &Path) -> String {
    if hsmkey::input::is_stdio(path) {
        "standard output".into()
    } else {
        escape_path(path)
    }
}

/// Check an `--out` before any work: `-` (standard output) with `--json`
/// would put two documents on stdout, so it is refused. Returns whether the
/// output goes to stdout (the human report then goes to stderr).
pub(crate) fn check_out(ctx: &Context, path: &Path) -> Result<bool> {
    let stdout = hsmkey::input::is_stdio(path);
    if stdout && ctx.json() {
        return Err(Error::Usage {
            message: "--out - writes the output to stdout, where --json would write the report too: drop --json, or write the output to a file".into(),
        });
    }
    Ok(stdout)
}

/// Print the human report: on stdout, or on stderr when stdout carries the
/// output itself (`--out -`); nothing on stderr with `-q`.
pub(crate) fn report(ctx: &Context, to_stderr: bool, text: &str) {
    if !to_stderr {
        super::out(text);
    } else if !ctx.global.quiet {
        eprint!("{text}");
    }
}

#[cfg(test)]
mod tests;
