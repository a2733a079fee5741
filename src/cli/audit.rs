//! The audit trail on the command line: `hsmkey audit verify` and `audit
//! show`, and what every audited command goes through (`Context::audited`:
//! the log checked before the command starts, its line written after it
//! ends, failures included; `--no-audit` said on stderr).

use std::cell::RefCell;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use hsmkey::audit::log::AuditLog;
use hsmkey::audit::show::{self, Filter};
use hsmkey::audit::{self, verify, Facts, Keys, Line, Recorder};
use hsmkey::hsm::audit::AuditToken;
use hsmkey::hsm::{Token, TokenSummary};
use hsmkey::ops::backup::{Input, Protect};
use hsmkey::{Error, Result};

use super::{json, out, table, Context};

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check a log: every line is an audit line, the chain holds (seq and
    /// prev), each MAC verifies in the token, and the token's chain head
    /// matches the end. Reports the first bad line and why; exit 6 (HK1308).
    Verify {
        /// The log. Default: --audit-log, HSMKEY_AUDIT_LOG, else the default log.
        path: Option<PathBuf>,
        /// Check the JSON and the chain only: no token, no PIN. The last
        /// lines could then be removed or changed unnoticed.
        #[arg(long)]
        no_token: bool,
        /// Count lines signed by other tokens instead of refusing them
        /// (verify those with their own tokens).
        #[arg(long, conflicts_with = "no_token")]
        partial: bool,
    },
    /// Print the lines of a log (no token, nothing checked: see verify).
    Show {
        /// The log. Default: --audit-log, HSMKEY_AUDIT_LOG, else the default log.
        path: Option<PathBuf>,
        /// Lines written since: 2025-06-01T12:00:00Z, 2025-06-01 (UTC), or an age (90m, 24h, 7d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Lines naming this key: a label (NAME@v2) or a name (every version).
        #[arg(long, value_name = "NAME")]
        key: Option<String>,
        /// Lines of one operation ("backup", "key generate", ...).
        #[arg(long, value_name = "OP")]
        op: Option<String>,
    },
}

/// The recorder of the command under way, if it is audited.
#[derive(Default)]
pub(crate) struct AuditSlot(RefCell<Option<Recorder>>);

impl Context {
    /// The log this run writes to, or reads by default.
    fn audit_path(&self) -> Result<PathBuf> {
        audit::resolve_path(self.global.audit_log.as_deref())
    }

    /// Run `body` as the audited operation `op`: the log must be able to
    /// take a line before it starts (else HK1904 and nothing is done), and
    /// its line is written when it ends, whatever the outcome.
    pub(crate) fn audited<T>(&self, op: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
        let recorder = if self.global.no_audit {
            eprintln!("hsmkey: --no-audit: this {op} is not recorded in the audit log");
            Recorder::disabled(op)
        } else {
            Recorder::begin(&self.audit_path()?, op)?
        };
        *self.audit.0.borrow_mut() = Some(recorder);
        let result = body();
        let Some(mut recorder) = self.audit.0.borrow_mut().take() else {
            return result;
        };
        if recorder.needs_login() {
            // The line is signed by the user: a Security Officer session
            // (key generate --trusted) ended the user's login.
            if let Ok(pin) = self.user_pin() {
                let _ = recorder.login(&pin);
            }
        }
        let written = recorder.finish(result.as_ref().err());
        match (result, written) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(Error::AuditUnavailable { path, reason })) => {
                Err(Error::AuditUnavailable {
                    path,
                    reason: format!("the {op} itself was done; {reason}"),
                })
            }
            (Ok(_), Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(audit_error)) => {
                tracing::error!(
                    "the audit line of this failed {op} was not written: {audit_error}"
                );
                Err(e)
            }
        }
    }

    /// Note what the audited operation did (keys, protection, files).
    /// (Nothing is noted with `--no-audit`: nothing is recorded.)
    pub(crate) fn audit_note(&self, note: impl FnOnce(&mut Facts)) {
        if let Some(r) = self.audit.0.borrow_mut().as_mut().filter(|r| r.enabled()) {
            note(r.facts());
        }
    }

    /// The token was chosen: the line names it even if the login fails.
    /// (`summary` is only read when the command is audited.)
    pub(crate) fn audit_saw(&self, summary: impl FnOnce() -> Result<TokenSummary>) -> Result<()> {
        if let Some(r) = self.audit.0.borrow_mut().as_mut() {
            r.saw_token(&summary()?);
        }
        Ok(())
    }

    /// A user session is open: the line will be signed in this token.
    /// `later`: the command lists the token first, and calls
    /// [`Context::audit_ready`] before it moves a key.
    pub(crate) fn audit_attach(&self, token: &Token<'_>, later: bool) -> Result<()> {
        match self.audit.0.borrow_mut().as_mut() {
            Some(r) if later => r.attach_later(token),
            Some(r) => r.attach(token),
            None => Ok(()),
        }
    }

    /// The command listed the token: the audit key is taken from the
    /// listing (or searched for, or made), before any key moves.
    pub(crate) fn audit_ready(&self) -> Result<()> {
        match self.audit.0.borrow_mut().as_mut() {
            Some(r) => r.ready(),
            None => Ok(()),
        }
    }

    /// What the audit line of a restore or verify says before the token work:
    /// the file, its protection and (should the command fail) its keys,
    /// read from the bundle when the line is written. Whether the bundle's
    /// header could be read (false also when nothing is recorded).
    pub(crate) fn audit_bundle(&self, file: &Path, input: &Input) -> bool {
        let mut read = false;
        self.audit_note(|f| {
            if hsmkey::input::is_stdio(file) {
                // Standard input cannot be read again: the bundle as read.
                f.inputs.push(hsmkey::audit::FileRef {
                    path: "-".into(),
                    sha256: hsmkey::audit::bundle::sha256(input)
                        .unwrap_or_else(|e| format!("unreadable: {e}")),
                });
            } else {
                f.input(file);
            }
            if let (Ok(p), Ok(again)) =
                (hsmkey::audit::bundle::protection(input), input.try_clone())
            {
                f.protection = Some(p);
                f.keys = Keys::Bundle(again);
                read = true;
            }
        });
        read
    }

    /// A Security Officer login comes next: the audit session steps aside.
    pub(crate) fn audit_suspend(&self) {
        if let Some(r) = self.audit.0.borrow_mut().as_mut() {
            r.suspend();
        }
    }
}

/// The protection as the audit line names it before the bundle exists.
pub(crate) fn protection_of(protect: &Protect) -> hsmkey::audit::Protection {
    match protect {
        Protect::Kek(sel) => hsmkey::audit::Protection::Kek {
            label: sel.shown.clone(),
            kcv: None,
        },
        Protect::Password(..) => hsmkey::audit::Protection::Password,
        Protect::Recipient { public, .. } => hsmkey::audit::Protection::Recipient {
            fingerprint: Some(public.fingerprint()),
            label: None,
        },
    }
}

pub fn run(ctx: &Context, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify {
            path,
            no_token,
            partial,
        } => run_verify(ctx, path, no_token, partial),
        AuditCommand::Show {
            path,
            since,
            key,
            op,
        } => {
            let path = match path {
                Some(p) => p,
                None => ctx.audit_path()?,
            };
            let filter = Filter {
                since: since
                    .map(|s| show::parse_since(&s, jiff::Timestamp::now()))
                    .transpose()?,
                key,
                op,
            };
            let file = AuditLog::open_read(&path)?;
            let mut lines = Vec::new();
            let shown = path.display().to_string();
            let unreadable = show::read(&shown, BufReader::new(file), &filter, &mut |l| {
                lines.push(l)
            })?;
            if unreadable > 0 {
                tracing::warn!(
                    "{unreadable} line(s) of {shown} are not audit lines and are not shown (run `hsmkey audit verify`)"
                );
            }
            if ctx.json() {
                json::print(&json::AuditShow {
                    path: shown,
                    lines: &lines,
                    unreadable,
                });
            } else {
                out(&show_table(&lines));
            }
            Ok(())
        }
    }
}

fn run_verify(ctx: &Context, path: Option<PathBuf>, no_token: bool, partial: bool) -> Result<()> {
    let path = match path {
        Some(p) => p,
        None => ctx.audit_path()?,
    };
    let shown = path.display().to_string();
    let report = if no_token {
        verify::verify(&shown, reader(&path)?, None, partial)?
    } else {
        let module = ctx.module()?;
        let token = ctx.open_user(&module)?;
        let mut macs = AuditToken::open(&token)?;
        verify::verify(&shown, reader(&path)?, Some(&mut macs), partial)?
    };
    let report = report.into_result()?;
    if ctx.json() {
        json::print(&json::AuditVerify { report: &report });
        return Ok(());
    }
    let mut text = format!(
        "audit log {}: {} line(s){}; checked: {}\n",
        report.path,
        report.lines,
        report
            .log
            .as_ref()
            .map(|l| format!(" (log id {l})"))
            .unwrap_or_default(),
        report.checked.join(", ")
    );
    if let Some(t) = &report.token {
        text.push_str(&format!(
            "token '{}' (serial {}): {} MAC(s) verified, {} line(s) without a MAC\n",
            t.label, t.serial, report.mac_verified, report.unsigned
        ));
    }
    if let Some(h) = &report.head {
        text.push_str(&format!(
            "chain head in the token: line {} (SHA-256 {})\n",
            h.count, h.last
        ));
    }
    for o in &report.other_signers {
        text.push_str(&format!(
            "{} line(s) signed by token '{}' (serial {}, audit key {}): not checked here\n",
            o.lines, o.label, o.serial, o.key_id
        ));
    }
    for n in &report.notes {
        text.push_str(&format!("note: {n}\n"));
    }
    text.push_str("ok: every line is as hsmkey wrote it\n");
    out(&text);
    Ok(())
}

fn reader(path: &Path) -> Result<BufReader<std::fs::File>> {
    Ok(BufReader::with_capacity(
        256 * 1024,
        AuditLog::open_read(path)?,
    ))
}

fn show_table(lines: &[Line]) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let keys: Vec<&str> = l.keys.iter().map(|k| k.label.as_str()).collect();
            vec![
                l.seq.to_string(),
                l.time.clone(),
                l.op.clone(),
                l.token
                    .as_ref()
                    .map(|t| format!("{} ({})", t.label, t.serial))
                    .unwrap_or_else(|| "-".into()),
                if keys.is_empty() {
                    "-".into()
                } else {
                    keys.join(",")
                },
                match (&l.result.ok, &l.result.code) {
                    (true, _) => "ok".into(),
                    (false, Some(c)) => c.clone(),
                    (false, None) => "failed".into(),
                },
                format!("{}@{}", l.user, l.host),
            ]
        })
        .collect();
    let mut text = table(
        &["SEQ", "TIME", "OP", "TOKEN", "KEYS", "RESULT", "USER"],
        &rows,
    );
    text.push_str(&format!("{} line(s)\n", lines.len()));
    text
}
