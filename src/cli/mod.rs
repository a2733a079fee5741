//! The command line: clap definitions, the terminal, human and `--json` output.
//! The only place that prints.

mod audit;
mod backup;
mod bundle;
mod byok;
mod import;
mod json;
mod key;
mod profile;
mod progress;
mod serve;
mod shell;
mod terminal;
mod token;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use hsmkey::hsm::keys::KeySelector;
use hsmkey::hsm::lock::TokenLock;
use hsmkey::hsm::pin::{PinRequest, PinRole, PinSource};
use hsmkey::hsm::{Login, Module, Token};
use hsmkey::{Error, Result};
use secrecy::SecretString;
use serde::Serialize;

/// hsmkey: back up, export and import keys as ciphertext, wrapped inside a
/// PKCS#11 token (HSM or SoftHSM2). Key material never crosses the PKCS#11
/// boundary in the clear.
#[derive(Parser, Debug)]
#[command(name = "hsmkey", version = shell::version(), about, long_about = None)]
pub struct Cli {
    #[command(flatten, next_help_heading = "Global options")]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes, before or after the command name. Each may
/// come from a profile too (`--profile`): a value given here or by its
/// environment variable wins (src/cli/profile.rs).
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Take the global options below from [profiles.NAME] of the configuration
    /// file ($HSMKEY_CONFIG, else $XDG_CONFIG_HOME/hsmkey/config.toml, else
    /// ~/.config/hsmkey/config.toml); flags and environment variables override it.
    #[arg(long, global = true, env = "HSMKEY_PROFILE", value_name = "NAME")]
    profile: Option<String>,
    /// PKCS#11 module (shared library). Default: $HSMKEY_MODULE, then the usual SoftHSM2 paths.
    #[arg(long, global = true, env = "HSMKEY_MODULE", value_name = "PATH")]
    module: Option<String>,
    /// Initialization string passed to C_Initialize's pReserved (NSS softokn needs one:
    /// "configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=").
    #[arg(long, global = true, env = "HSMKEY_MODULE_ARGS", value_name = "STRING")]
    module_args: Option<String>,
    /// Token by label or RFC 7512 URI (pkcs11:token=...;serial=...). Default: the only initialized token.
    #[arg(long, global = true, env = "HSMKEY_TOKEN", value_name = "LABEL|URI")]
    token: Option<String>,
    /// Where the user PIN comes from: env:VAR, file:PATH, prompt or empty. Default: $HSMKEY_PIN if set, else a prompt on a terminal.
    #[arg(long, global = true, value_name = "SRC")]
    pin_source: Option<String>,
    /// Where the Security Officer PIN comes from (token init, --trusted): env:VAR, file:PATH, prompt or
    /// empty (NSS softokn's SO). Default: $HSMKEY_SO_PIN, else a prompt.
    #[arg(long, global = true, value_name = "SRC")]
    so_pin_source: Option<String>,
    /// Accept a PIN written in argv as pin:VALUE. Other users can read argv through ps: avoid.
    #[arg(long, global = true)]
    insecure_pin_in_argv: bool,
    /// Print results and errors as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Sessions for bulk work (backup, restore, verify, key list, key generate --count),
    /// each in its own thread: a network HSM answers calls on several sessions at
    /// once. Output order does not change. 1 to 64.
    #[arg(
        long,
        global = true,
        env = "HSMKEY_SESSIONS",
        value_name = "N",
        default_value_t = 1
    )]
    sessions: usize,
    /// Seconds to wait when another hsmkey run is changing the same token
    /// (commands that create keys hold a per-token lock). 0: fail at once
    /// with HK1503.
    #[arg(
        long,
        global = true,
        env = "HSMKEY_WAIT",
        value_name = "SECS",
        default_value_t = 0
    )]
    wait: u64,
    /// The audit log every command that makes, moves or destroys a key
    /// appends to (docs/AUDIT.md). Default: $XDG_STATE_HOME/hsmkey/audit.jsonl
    /// (~/.local/state/hsmkey/audit.jsonl).
    #[arg(long, global = true, env = "HSMKEY_AUDIT_LOG", value_name = "PATH")]
    audit_log: Option<std::path::PathBuf>,
    /// Run without writing an audit line (said on stderr every time).
    #[arg(long, global = true)]
    no_audit: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Tokens: list, info, init, mechanisms.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Keys: generate, list, show, public, rotate, destroy, label.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Back up keys (every version) into a bundle only the KEK, password or
    /// recipient token can open. Wrapping happens in the token.
    Backup(backup::BackupArgs),
    /// Restore a bundle: checked whole before the first object is created,
    /// all-or-nothing, KCVs compared after unwrap.
    Restore(backup::RestoreArgs),
    /// Check a bundle without creating anything: integrity, then every key
    /// unwrapped into a session object, checked and destroyed.
    Verify(backup::VerifyArgs),
    /// Bundles without a token: inspect.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Wrap a token key for import into a cloud KMS (AWS, Google Cloud, Azure,
    /// Huawei Cloud, HashiCorp Vault) in the layout it reads. The wrapping
    /// happens in the token; the target's rules are checked first.
    Byok(byok::ByokArgs),
    /// Make this token a KMS that receives keys: an RSA wrapping key pair made
    /// in the token (unwrap-only) and an import token it authenticates, in
    /// Huawei's get-parameters-for-import shape.
    ImportParams(import::ParamsArgs),
    /// Import key material wrapped to import parameters: checks the import
    /// token, expiry and algorithm, unwraps in the token; single-use.
    Import(import::ImportArgs),
    /// Piiano-style export key: a secret key wrapped under a KEK, as
    /// {"export_key": ...} with the algorithm and KCVs the importer checks.
    ExportKey(import::ExportKeyArgs),
    /// Unwrap an export key under the same KEK into this token (KCV checked).
    ImportExportKey(import::ImportExportArgs),
    /// Serve the reference systems' REST APIs (Piiano, StoredSafe, ...) from
    /// the token, for their own clients (docs/SERVER.md).
    Serve(serve::ServeArgs),
    /// The audit trail: verify a log (chain, MACs and head in the token), show its lines.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print the completion script for a shell on stdout (no token, no PIN).
    Completions(shell::CompletionsArgs),
    /// Print the man page (roff, section 1, every command) on stdout.
    Man(shell::ManArgs),
    /// Profiles of the configuration file: list, show (no module, no PIN).
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
}

/// Run the program; the exit code follows docs/ERRORS.md.
pub fn run() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let json_requested = argv.iter().any(|a| a == "--json");
    // Parsed in two steps: the matches tell a value given on the command line
    // or by its environment variable from a default, which a profile replaces.
    let parsed = Cli::command()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (mut cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return clap_failure(e, json_requested),
    };
    init_logging(&cli.global);
    // The shell helpers and `profile` itself never apply a profile.
    let profiled = match cli.command {
        Command::Completions(_) | Command::Man(_) | Command::Profile(_) => Ok(()),
        _ => profile::apply(&mut cli.global, &matches),
    };
    let ctx = Context {
        global: cli.global.clone(),
        audit: Default::default(),
    };
    // A malformed PIN source is refused before any command runs, even one
    // that needs no PIN: it is likely a PIN typed in the wrong place.
    let checked = profiled
        .and_then(|_| hsmkey::hsm::pool::check_sessions(ctx.global.sessions))
        .and_then(|_| ctx.check_pin_sources());
    let outcome = match checked {
        Err(e) => Err(e),
        Ok(_) => match cli.command {
            Command::Token(cmd) => token::run(&ctx, cmd),
            Command::Key(cmd) => key::run(&ctx, cmd),
            Command::Backup(args) => backup::run_backup(&ctx, args),
            Command::Restore(args) => backup::run_restore(&ctx, args),
            Command::Verify(args) => backup::run_verify(&ctx, args),
            Command::Bundle(cmd) => bundle::run(&ctx, cmd),
            Command::Byok(args) => byok::run(&ctx, args),
            Command::ImportParams(args) => import::run_params(&ctx, args),
            Command::Import(args) => import::run_import(&ctx, args),
            Command::ExportKey(args) => import::run_export(&ctx, args),
            Command::ImportExportKey(args) => import::run_import_export(&ctx, args),
            Command::Audit(cmd) => audit::run(&ctx, cmd),
            Command::Serve(args) => serve::run(&ctx, args),
            Command::Completions(args) => shell::run_completions(args),
            Command::Man(args) => shell::run_man(args),
            Command::Profile(cmd) => profile::run(&ctx, cmd),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e, ctx.global.json);
            ExitCode::from(e.exit_class().exit_code() as u8)
        }
    }
}

/// A command line clap refused (or `--help`, `--version`). With `--json`, a
/// refusal is an HK1007 error document on stdout, like any other error.
fn clap_failure(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ if json => {
            let err = Error::Usage {
                message: clap_message(&e),
            };
            report_error(&err, true);
            ExitCode::from(2)
        }
        _ => {
            let _ = e.print();
            ExitCode::from(2)
        }
    }
}

/// clap's error as one line, without its usage and help pointers.
fn clap_message(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap renders the whole help here: name the missing command instead.
        let usage = rendered
            .lines()
            .find_map(|l| l.trim().strip_prefix("Usage: "))
            .unwrap_or("hsmkey <COMMAND>");
        return format!("a command is missing: {usage}");
    }
    let message = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    message.trim_start_matches("error: ").to_string()
}

fn init_logging(g: &Global) {
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HSMKEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("hsmkey={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal::ansi_on_stderr())
        .with_target(false)
        .try_init();
}

fn report_error(e: &Error, json: bool) {
    if json {
        json::print(&json::ErrorDoc {
            error_code: e.code(),
            message: e.to_string(),
            context: e.context(),
            hint: e.hint(),
        });
    } else {
        // Messages and context may hold paths and labels from outside:
        // control characters are escaped for the terminal.
        let plain = terminal::escape_controls;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "error[{}]: {}", e.code(), plain(&e.to_string()));
        for (k, v) in e.context() {
            let _ = writeln!(err, "  {k}: {}", plain(&v));
        }
        let _ = writeln!(err, "  what to do: {}", e.hint());
    }
}

/// Write to stdout; a closed pipe (`hsmkey key list | head`) ends quietly.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Print a value as pretty JSON, written straight to stdout: a listing of
/// 10,000 keys is never held as one string.
pub(crate) fn print_json<T: Serialize>(value: &T) {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut stdout, value)
        .map_err(std::io::Error::from)
        .and_then(|_| stdout.write_all(b"\n"))
        .and_then(|_| stdout.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        tracing::error!("cannot write the output: {e}");
    }
}

/// What every command needs to reach a token.
pub(crate) struct Context {
    pub(crate) global: Global,
    /// The audit of the command under way (`Context::audited`).
    audit: audit::AuditSlot,
}

impl Context {
    pub(crate) fn json(&self) -> bool {
        self.global.json
    }

    pub(crate) fn module(&self) -> Result<Module> {
        Module::load(
            self.global.module.as_deref(),
            self.global.module_args.as_deref(),
        )
    }

    fn pin_source(&self, role: PinRole) -> Result<Option<PinSource>> {
        let text = match role {
            PinRole::User => &self.global.pin_source,
            PinRole::SecurityOfficer => &self.global.so_pin_source,
        };
        text.as_deref().map(str::parse::<PinSource>).transpose()
    }

    fn check_pin_sources(&self) -> Result<()> {
        self.pin_source(PinRole::User)?;
        self.pin_source(PinRole::SecurityOfficer)?;
        Ok(())
    }

    fn pin(&self, role: PinRole) -> Result<SecretString> {
        let source = self.pin_source(role)?;
        let prompter = |prompt: &str| terminal::prompt_secret(prompt);
        // A prompt needs a person: never in CI, never without a terminal.
        let interactive = terminal::prompt_allowed();
        PinRequest {
            role,
            source,
            allow_argv: self.global.insecure_pin_in_argv,
            prompter: if interactive { Some(&prompter) } else { None },
        }
        .resolve()
    }

    pub(crate) fn user_pin(&self) -> Result<SecretString> {
        self.pin(PinRole::User)
    }

    pub(crate) fn so_pin(&self) -> Result<SecretString> {
        self.pin(PinRole::SecurityOfficer)
    }

    /// Select the token and log in as the user.
    pub(crate) fn open_user<'m>(&self, module: &'m Module) -> Result<Token<'m>> {
        self.open_user_for(module, None)
    }

    /// [`Context::open_user`] for a command whose first token work lists
    /// every object: it calls [`Context::audit_ready`] once it has, before
    /// it moves a key, and the audit trail takes its key from the listing.
    pub(crate) fn open_user_listing<'m>(&self, module: &'m Module) -> Result<Token<'m>> {
        self.open_user_with(module, None, true)
    }

    /// Like [`Context::open_user`]; without --token, a key URI's token
    /// attributes (`pkcs11:token=prod;object=k`) choose the token.
    pub(crate) fn open_user_for<'m>(
        &self,
        module: &'m Module,
        key: Option<&KeySelector>,
    ) -> Result<Token<'m>> {
        self.open_user_with(module, key, false)
    }

    fn open_user_with<'m>(
        &self,
        module: &'m Module,
        key: Option<&KeySelector>,
        listing: bool,
    ) -> Result<Token<'m>> {
        let slot = module.select_token(self.selector_for(key).as_deref())?;
        self.audit_saw(|| module.summary(slot))?;
        let pin = self.user_pin()?;
        let mut token = module.open(slot, Login::User(&pin))?;
        token.set_sessions(self.global.sessions)?;
        self.audit_attach(&token, listing)?;
        Ok(token)
    }

    /// Select the token and log in as the Security Officer.
    pub(crate) fn open_so_for<'m>(
        &self,
        module: &'m Module,
        key: Option<&KeySelector>,
    ) -> Result<Token<'m>> {
        let slot = module.select_token(self.selector_for(key).as_deref())?;
        self.audit_suspend();
        let pin = self.so_pin()?;
        let mut token = module.open(slot, Login::SecurityOfficer(&pin))?;
        token.set_sessions(self.global.sessions)?;
        Ok(token)
    }

    fn selector_for(&self, key: Option<&KeySelector>) -> Option<String> {
        match (&self.global.token, key.and_then(|k| k.token.as_ref())) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(uri)) => {
                let mut token_only = uri.clone();
                token_only.object = None;
                token_only.id = None;
                token_only.object_type = None;
                Some(token_only.to_string())
            }
            (None, None) => None,
        }
    }

    /// Take the token's lock for a command that checks and creates keys
    /// (runs do not collide; `--wait`). Taken before the login: a soft
    /// token may fail a login while another process writes its objects.
    pub(crate) fn lock(
        &self,
        module: &Module,
        key: Option<&KeySelector>,
        command: &str,
    ) -> Result<TokenLock> {
        let slot = module.select_token(self.selector_for(key).as_deref())?;
        hsmkey::hsm::lock::lock(
            &module.summary(slot)?,
            self.global.module_args.as_deref(),
            std::time::Duration::from_secs(self.global.wait),
            command,
        )
    }

    pub(crate) fn token_selector(&self) -> Option<&str> {
        self.global.token.as_deref()
    }
}

/// Text from a token or a file, made safe for a terminal: every character
/// that is not printable is escaped, as are bytes that are not UTF-8, so
/// that a label can neither move the cursor, recolour or clear the screen,
/// nor hide what it is. Control characters become `\n`, `\r`, `\t`,
/// `\xNN` (C0 and DEL) or `\u{NN}` (C1); bidirectional and other invisible
/// format characters `\u{NNNN}`; a byte that is not UTF-8 `\xNN`; a
/// backslash `\\`, so that every escape reads back one way. Every table goes
/// through it (`table`); `--json` keeps the exact text (serde escapes it).
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0'..='\x1f' | '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() || invisible(c) => {
                    out.push_str(&format!("\\u{{{:x}}}", c as u32))
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Format characters that change how the text around them reads without
/// showing themselves: bidirectional controls, zero-width characters, the
/// byte-order mark, line and paragraph separators.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// Left-aligned text table with a header row. Every cell is escaped
/// ([`escape`]): cells may be text or raw bytes (a label that is not UTF-8).
pub(crate) fn table<C: AsRef<[u8]>>(header: &[&str], rows: &[Vec<C>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| escape(cell.as_ref())).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests;
