//! `hsmkey backup`, `restore`, `verify`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use hsmkey::audit::Keys;
use hsmkey::formats::password::Policy;
use hsmkey::formats::{bundle, spki};
use hsmkey::hsm::keys::KeySelector;
use hsmkey::hsm::wrap::OaepHash;
use hsmkey::ops::backup::{
    self, Input, OnConflict, Protect, RestoreOptions, RestoreReport, Selection, Unprotect,
};
use hsmkey::output::AtomicFile;
use hsmkey::{input, Error};
use secrecy::SecretString;

pub(crate) use super::progress::Bar;
use super::terminal::{self, out_name};
use super::{json, out, table, Context};

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines bundle (docs/FORMAT.md), streamable for any number of keys.
    Bundle,
    /// One line of text (hsmkey-blob-v1:...), for one key and all its versions.
    Blob,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum HashArg {
    Sha1,
    Sha256,
}

/// The rule a new backup password must meet (docs/SECURITY.md).
#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum PolicyArg {
    /// Hard to guess by zxcvbn's estimate (score 3 of 4 or more); any
    /// characters, spaces included.
    Strength,
    /// Hitachi VSP's rule: 6 to 255 letters, digits and ASCII punctuation.
    Vsp,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ConflictArg {
    /// Refuse the restore if any key's label or id is already on the token.
    Fail,
    /// Leave out keys already there (same label, id and KCV); other clashes still fail.
    Skip,
}

/// How the backup is protected (exactly one).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ProtectArgs {
    /// AES KEK present in both tokens (label or pkcs11: URI).
    #[arg(long, value_name = "KEY")]
    kek: Option<String>,
    /// File whose first line is the password (`-`: standard input); it must
    /// meet --password-policy. The key is derived with Argon2id (64 MiB, 3 passes).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Ask for the password on the terminal, twice (never in CI or without a
    /// terminal: HK1108).
    #[arg(long)]
    password_prompt: bool,
    /// The receiving token's RSA public key (PEM or DER; `hsmkey key public`
    /// writes it; `-`: standard input).
    #[arg(long, value_name = "PUB.pem")]
    recipient: Option<PathBuf>,
}

/// How a backup is opened (exactly one).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct UnprotectArgs {
    /// The AES KEK the backup was made with.
    #[arg(long, value_name = "KEY")]
    kek: Option<String>,
    /// File whose first line is the backup password (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Ask for the backup password on the terminal (never in CI or without a
    /// terminal: HK1108).
    #[arg(long)]
    password_prompt: bool,
    /// The RSA private key in this token that the backup was made for.
    #[arg(long, value_name = "KEY")]
    recipient_key: Option<String>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    protect: ProtectArgs,
    /// Back up every key whose backup policy allows it; the others are listed as skipped.
    #[arg(long, conflicts_with = "keys")]
    all: bool,
    /// Keys to back up: a bare name takes every version. A key whose policy forbids it is an error.
    #[arg(value_name = "KEY", required_unless_present = "all")]
    keys: Vec<String>,
    /// Output file (written atomically, mode 0600); `-`: stdout, once the
    /// bundle is complete (the report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// The rule a new password must meet (--password-file, --password-prompt);
    /// default: strength.
    #[arg(long, value_enum, value_name = "POLICY")]
    password_policy: Option<PolicyArg>,
    /// bundle (default) or blob: a single string for one named key and its versions.
    #[arg(long, value_enum, default_value = "bundle")]
    format: Format,
    /// OAEP hash for --recipient (MGF1 with the same hash). SoftHSM 2.6.1 has SHA-1 only.
    #[arg(long, value_enum, default_value = "sha1")]
    oaep_hash: HashArg,
    /// Write the bundle even if keys are left out for a reason other than
    /// their own backup policy (no label, a shared label, a public key alone,
    /// a mechanism the token lacks). Without it such a backup fails, writes
    /// nothing and lists the keys.
    #[arg(long)]
    allow_skips: bool,
    /// Before reporting success, read the written bundle back in the token:
    /// MAC checked, every key unwrapped into a session object and checked
    /// (KCV or public half). Creates nothing on the token. For cron jobs.
    #[arg(long)]
    verify: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The bundle or blob file (`-`: standard input).
    file: PathBuf,
    #[command(flatten)]
    unprotect: UnprotectArgs,
    /// Check everything and say what would be created; create nothing.
    #[arg(long)]
    dry_run: bool,
    /// What to do when a key is already on the token.
    #[arg(long, value_enum, default_value = "fail")]
    on_conflict: ConflictArg,
    /// Restore only this key with all its versions, or one version (NAME@vK);
    /// repeatable. Every line is still read and checked; the others are
    /// listed as left out. A NAME not in the bundle is an error.
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Restore key OLD (all versions: OLD@vK becomes NEW@vK) or one version
    /// (OLD@vK=NEW: version 1 of NEW) under a new name, with a new id, so it
    /// can sit beside the original; repeatable.
    #[arg(long, value_name = "OLD=NEW")]
    rename: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The bundle or blob file (`-`: standard input).
    file: PathBuf,
    #[command(flatten)]
    unprotect: UnprotectArgs,
    /// Verify only this key with all its versions, or one version (NAME@vK);
    /// repeatable. The MAC still covers every line; the others are listed
    /// as left out. A NAME not in the bundle is an error.
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
}

fn read_password(path: &Path) -> hsmkey::Result<SecretString> {
    let raw = input::read_secret(path, input::limits::PASSWORD_FILE, "password file")?;
    let text = std::str::from_utf8(&raw).map_err(|_| Error::BadPassword {
        reason: format!("{} is not UTF-8 text", input::shown(path)),
    })?;
    Ok(SecretString::from(
        text.lines().next().unwrap_or("").to_string(),
    ))
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP ask the running operation to stop
/// cleanly (a restore destroys what it created; a backup leaves no output)
/// instead of killing the process. The handler only sets the flag: no
/// thread waits for signals, so the process stays single-threaded (glibc
/// keeps its single-thread fast paths) unless `--sessions` asks for more.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&flag)) {
            tracing::debug!("signal {signal}: no clean stop ({e})");
        }
    }
    flag
}

pub fn run_backup(ctx: &Context, args: BackupArgs) -> hsmkey::Result<()> {
    // First, so a Ctrl-C at any point ends cleanly (no temporary file left).
    let cancel = interrupt_flag();
    let selectors = args
        .keys
        .iter()
        .map(|k| KeySelector::parse(k))
        .collect::<hsmkey::Result<Vec<_>>>()?;
    if args.format == Format::Blob && (args.all || selectors.len() != 1) {
        return Err(Error::Usage {
            message:
                "--format blob holds one named key with all its versions: name exactly one KEY"
                    .into(),
        });
    }
    let to_stdout = terminal::check_out(ctx, &args.out)?;
    let password = args.protect.password_file.is_some() || args.protect.password_prompt;
    if args.password_policy.is_some() && !password {
        return Err(Error::Usage {
            message:
                "--password-policy is for a password backup (--password-file or --password-prompt)"
                    .into(),
        });
    }
    let policy = match args.password_policy {
        None | Some(PolicyArg::Strength) => Policy::Strength,
        Some(PolicyArg::Vsp) => Policy::Vsp,
    };
    // Fail before any token work (and before a password is typed) if the
    // output exists.
    let file = AtomicFile::for_out(&args.out, args.force)?;
    let protect = if let Some(kek) = &args.protect.kek {
        Protect::Kek(Box::new(KeySelector::parse(kek)?))
    } else if let Some(path) = &args.protect.password_file {
        Protect::Password(read_password(path)?, policy)
    } else if args.protect.password_prompt {
        Protect::Password(terminal::new_password(policy)?, policy)
    } else if let Some(path) = &args.protect.recipient {
        let bytes = input::read_bounded(path, input::limits::PUBLIC_KEY, "recipient public key")?;
        let public = spki::parse_rsa_public(&bytes).map_err(|reason| Error::BadInput {
            what: format!("recipient public key {}", input::shown(path)),
            reason,
        })?;
        if public.bits < 2048 {
            return Err(Error::BadInput {
                what: "recipient public key".into(),
                reason: format!("RSA-{} is too small; use 2048 bits or more", public.bits),
            });
        }
        let hash = match args.oaep_hash {
            HashArg::Sha1 => OaepHash::Sha1,
            HashArg::Sha256 => OaepHash::Sha256,
        };
        Protect::Recipient { public, hash }
    } else {
        unreachable!("clap requires one protection")
    };
    let selection = if args.all {
        Selection::All
    } else {
        Selection::Named(selectors)
    };
    let (report, blob) = ctx.audited("backup", || {
        ctx.audit_note(|f| {
            f.asked(if args.all {
                vec!["--all".into()]
            } else {
                args.keys.clone()
            });
            f.protection = Some(super::audit::protection_of(&protect));
        });
        let (report, blob, printed) =
            write_backup(ctx, &args, file, &protect, &selection, &cancel)?;
        // What left, as the file (or standard output) holds it.
        let written = match (&printed, &blob) {
            (None, _) => Input::open(&args.out)?,
            (Some(_), Some(text)) => Input::Bytes(bundle::decode_blob(text)?),
            (Some(bytes), None) => Input::Bytes(bytes.clone()),
        };
        let protection = hsmkey::audit::bundle::protection(&written)?;
        ctx.audit_note(|f| {
            f.keys = Keys::Reported(report.entries.clone());
            f.protection = Some(protection);
            match &printed {
                Some(bytes) => f.output_bytes("-", bytes),
                None => f.output(&args.out),
            }
        });
        Ok((report, blob))
    })?;
    // Complete all the same (exit 0); on stderr even with --json, whose
    // report carries them as `warnings`; -q leaves them to the report.
    for w in report.warnings.iter().filter(|_| !ctx.global.quiet) {
        eprintln!(
            "warning: {} ({}) [{}]: {}",
            super::escape(w.label.as_bytes()),
            w.class,
            w.code,
            w.message
        );
    }
    if ctx.json() {
        json::print(&json::Backup {
            out: args.out.display().to_string(),
            format: match args.format {
                Format::Bundle => "bundle",
                Format::Blob => "blob",
            },
            report: &report,
            secret_blob: blob,
        });
    } else {
        let mut text = entries_table(&report.entries)?;
        text.push_str(&skipped_text(&report.skipped));
        text.push_str(&format!(
            "{} key(s) backed up to {} ({} protection{})\n",
            report.entries.len(),
            out_name(&args.out),
            report.scheme,
            if args.verify {
                "; read back and verified in the token"
            } else {
                ""
            }
        ));
        terminal::report(ctx, to_stdout, &text);
    }
    Ok(())
}

/// Rows shown before the table is cut short (--json has them all).
const TABLE_ROWS: usize = 50;

fn entries_table(entries: &backup::Entries) -> hsmkey::Result<String> {
    if entries.is_empty() {
        return Ok(String::new());
    }
    let rows: Vec<Vec<String>> = entries
        .first(TABLE_ROWS)?
        .into_iter()
        .map(|e| {
            vec![
                match &e.renamed_from {
                    Some(old) => format!("{old} -> {}", e.label),
                    None => e.label.clone(),
                },
                e.class.clone(),
                e.key_type.clone(),
                e.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                e.kcv.clone().unwrap_or_else(|| "-".into()),
                e.wrap.clone(),
            ]
        })
        .collect();
    let mut text = table(&["LABEL", "CLASS", "TYPE", "SIZE", "KCV", "WRAP"], &rows);
    if entries.len() > TABLE_ROWS {
        text.push_str(&format!(
            "... and {} more (--json lists them all)\n",
            entries.len() - TABLE_ROWS
        ));
    }
    Ok(text)
}

fn skipped_text(skipped: &[backup::Skipped]) -> String {
    lines_of("skipped", skipped)
}

/// One line per key: "VERB LABEL, id HEX (CLASS) [CODE]: REASON".
fn lines_of(verb: &str, keys: &[backup::Skipped]) -> String {
    let mut text = String::new();
    for s in keys {
        text.push_str(&format!(
            "{verb} {} ({}) [{}]: {}\n",
            super::escape(s.shown().as_bytes()),
            s.class,
            s.code,
            s.reason
        ));
    }
    text
}

fn unprotect(args: &UnprotectArgs) -> hsmkey::Result<Unprotect> {
    if let Some(kek) = &args.kek {
        Ok(Unprotect::Kek(Box::new(KeySelector::parse(kek)?)))
    } else if let Some(path) = &args.password_file {
        Ok(Unprotect::Password(read_password(path)?))
    } else if args.password_prompt {
        Ok(Unprotect::Password(terminal::existing_password()?))
    } else if let Some(key) = &args.recipient_key {
        Ok(Unprotect::RecipientKey(Box::new(KeySelector::parse(key)?)))
    } else {
        unreachable!("clap requires one")
    }
}

fn render_restore(report: &RestoreReport, verb: &str) -> hsmkey::Result<()> {
    let mut text = format!(
        "bundle from token '{}' (serial {}), made {} by {}, {} protection\n",
        report.source.label, report.source.serial, report.created_at, report.tool, report.scheme
    );
    text.push_str(&entries_table(&report.entries)?);
    text.push_str(&skipped_text(&report.skipped));
    text.push_str(&lines_of("left out", &report.left_out));
    for n in &report.notes {
        text.push_str(&format!("note: {}\n", super::escape(n.as_bytes())));
    }
    text.push_str(&format!("{} key(s) {verb}\n", report.entries.len()));
    out(&text);
    Ok(())
}

pub fn run_restore(ctx: &Context, args: RestoreArgs) -> hsmkey::Result<()> {
    let input = Input::open(&args.file)?;
    let how = unprotect(&args.unprotect)?;
    let dry_run = args.dry_run;
    let report = ctx.audited("restore", || {
        let read = ctx.audit_bundle(&args.file, &input);
        ctx.audit_note(|f| f.dry_run = args.dry_run);
        let report = restore_in_token(ctx, args, &input, &how)?;
        if read {
            ctx.audit_note(|f| f.keys = Keys::Reported(report.entries.clone()));
        }
        Ok(report)
    })?;
    if ctx.json() {
        json::print(&json::Restore { report: &report });
        return Ok(());
    }
    render_restore(
        &report,
        if dry_run {
            "would be restored (dry run)"
        } else {
            "restored"
        },
    )
}

/// The token work of `restore`.
fn restore_in_token(
    ctx: &Context,
    args: RestoreArgs,
    input: &Input,
    how: &Unprotect,
) -> hsmkey::Result<RestoreReport> {
    let module = ctx.module()?;
    let lock = ctx.lock(&module, None, "restore")?;
    let token = ctx.open_user(&module)?;
    let cancel = interrupt_flag();
    let options = RestoreOptions {
        dry_run: args.dry_run,
        on_conflict: match args.on_conflict {
            ConflictArg::Fail => OnConflict::Fail,
            ConflictArg::Skip => OnConflict::Skip,
        },
        cancel: &cancel,
        journal: Some(lock.journal_path()),
        only: args.only,
        rename: args.rename,
    };
    let mut bar = Bar::new(ctx, "restore");
    let report = backup::restore(&token, input, how, &options, &mut |d, t| bar.update(d, t))?;
    drop(bar);
    Ok(report)
}

pub fn run_verify(ctx: &Context, args: VerifyArgs) -> hsmkey::Result<()> {
    let input = Input::open(&args.file)?;
    let how = unprotect(&args.unprotect)?;
    let report = ctx.audited("verify", || {
        let read = ctx.audit_bundle(&args.file, &input);
        let module = ctx.module()?;
        let token = ctx.open_user(&module)?;
        let mut bar = Bar::new(ctx, "verify");
        let report = backup::verify(&token, &input, &how, &args.only, &mut |d, t| {
            bar.update(d, t)
        })?;
        drop(bar);
        if read {
            ctx.audit_note(|f| f.keys = Keys::Reported(report.entries.clone()));
        }
        Ok(report)
    })?;
    if ctx.json() {
        // Reached only when every check passed: a failure is an error.
        json::print(&json::Verify {
            verified: true,
            report: &report,
        });
        return Ok(());
    }
    render_restore(
        &report,
        "verified (unwrapped in the token, KCVs and public halves match; nothing created)",
    )
}

/// The token work of `backup`: the keys wrapped and written to `file`;
/// with `--out -`, also the bytes printed (for the audit line).
fn write_backup(
    ctx: &Context,
    args: &BackupArgs,
    mut file: AtomicFile,
    protect: &Protect,
    selection: &Selection,
    cancel: &Arc<AtomicBool>,
) -> hsmkey::Result<(backup::BackupReport, Option<String>, Option<Vec<u8>>)> {
    let module = ctx.module()?;
    let token = ctx.open_user_listing(&module)?;
    let mut bar = Bar::new(ctx, "backup");
    let listed = || ctx.audit_ready();
    let options = backup::BackupOptions {
        allow_skips: args.allow_skips,
        verify: args.verify,
        cancel,
        listed: Some(&listed),
    };
    let (report, blob) = match args.format {
        Format::Bundle => {
            let path = file.path().to_path_buf();
            let mut sink = backup::FileSink {
                writer: std::io::BufWriter::with_capacity(256 * 1024, file.file()),
                path,
            };
            let report = backup::backup(
                &token,
                protect,
                selection,
                &mut sink,
                &options,
                &mut |d, t| bar.update(d, t),
            )?;
            sink.flush().map_err(|e| Error::Io {
                path: args.out.display().to_string(),
                source: e,
            })?;
            drop(sink);
            (report, None)
        }
        Format::Blob => {
            let mut bytes = Vec::new();
            let report = backup::backup(
                &token,
                protect,
                selection,
                &mut bytes,
                &options,
                &mut |d, t| bar.update(d, t),
            )?;
            // One key with its versions: refuse a selection that reached several names.
            let mut names: Vec<String> = Vec::new();
            report.entries.each(|(e, _, _)| {
                let name = hsmkey::hsm::keys::split_version(&e.label).0.to_string();
                if names.last() != Some(&name) {
                    names.push(name);
                }
                Ok(names.len() < 2)
            })?;
            if names.len() > 1 {
                return Err(Error::Usage {
                    message: format!(
                        "--format blob holds one key with its versions; the selection named {}",
                        names.join(", ")
                    ),
                });
            }
            let blob = bundle::encode_blob(&bytes);
            file.file()
                .write_all(format!("{blob}\n").as_bytes())
                .map_err(|e| Error::Io {
                    path: args.out.display().to_string(),
                    source: e,
                })?;
            (report, Some(blob))
        }
    };
    drop(bar);
    let spool = if file.is_stdout() {
        Some(file.file().try_clone().map_err(|e| Error::Io {
            path: "-".into(),
            source: e,
        })?)
    } else {
        None
    };
    file.commit()?;
    let printed = match spool {
        Some(mut spool) => {
            use std::io::{Read, Seek};
            let mut bytes = Vec::new();
            spool
                .seek(std::io::SeekFrom::Start(0))
                .and_then(|_| spool.read_to_end(&mut bytes))
                .map_err(|e| Error::Io {
                    path: "-".into(),
                    source: e,
                })?;
            Some(bytes)
        }
        None => None,
    };
    Ok((report, blob, printed))
}
