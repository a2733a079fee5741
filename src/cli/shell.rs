//! The shell around hsmkey: `--version` text, `hsmkey completions SHELL` and
//! `hsmkey man`. Neither command loads a PKCS#11 module nor asks for a PIN.

use std::sync::OnceLock;

use clap::{Args, CommandFactory};
use hsmkey::{Error, Result};

use super::{out, Cli};

/// `hsmkey 0.1.0 (commit 74ee67e, cryptoki 0.12.1)`: the commit comes from
/// build.rs ("unknown" outside a git checkout), the cryptoki version from
/// `hsmkey::hsm::PKCS11_BINDING`, which a unit test compares with Cargo.lock.
pub(crate) fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (commit {}, {})",
            env!("CARGO_PKG_VERSION"),
            env!("HSMKEY_GIT_COMMIT"),
            hsmkey::hsm::PKCS11_BINDING
        )
    })
}

#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub(crate) struct ManArgs {}

/// Print the completion script for one shell on stdout.
pub(crate) fn run_completions(args: CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "hsmkey", &mut script);
    out(&text(script)?);
    Ok(())
}

/// Print the man page, section 1, on stdout: the top-level page, then one
/// subsection per command with its synopsis, description and options.
pub(crate) fn run_man(_args: ManArgs) -> Result<()> {
    out(&man_page()?);
    Ok(())
}

fn man_page() -> Result<String> {
    let mut cmd = Cli::command();
    // Built once: subcommands get their full names ("hsmkey token list") and
    // the global options, which the per-command parts then leave out.
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).title("HSMKEY");
    let mut page = Vec::new();
    // clap_mangen's own SUBCOMMANDS section points to one page per command
    // (hsmkey-token(1)); this page holds them all, under COMMANDS.
    man.render_title(&mut page).map_err(render_error)?;
    man.render_name_section(&mut page).map_err(render_error)?;
    man.render_synopsis_section(&mut page)
        .map_err(render_error)?;
    man.render_description_section(&mut page)
        .map_err(render_error)?;
    man.render_options_section(&mut page)
        .map_err(render_error)?;
    page.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands() {
        command_section(sub, &mut page)?;
    }
    man.render_version_section(&mut page)
        .map_err(render_error)?;
    Ok(breakable(&text(page)?))
}

/// The rendered parts put together: each part repeats the page preamble
/// that defines the `Aq` string, kept once here. Long `a|b|c` lists (key
/// types, algorithms) may break after each bar: `\:` is a break point that
/// prints nothing. Control lines are left alone.
fn breakable(roff: &str) -> String {
    let preamble = |l: &str| l.starts_with(".ie \\n(.g .ds Aq") || l.starts_with(".el .ds Aq");
    let mut out = String::with_capacity(roff.len() + roff.len() / 16);
    for (i, line) in roff.lines().enumerate() {
        if i >= 2 && preamble(line) {
            continue;
        }
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str(line);
        } else {
            out.push_str(&line.replace('|', "|\\:"));
        }
        out.push('\n');
    }
    out
}

/// One `.SS` per command that runs (groups such as `token` are walked into).
fn command_section(cmd: &clap::Command, page: &mut Vec<u8>) -> Result<()> {
    if cmd.get_name() == "help" {
        return Ok(());
    }
    if cmd.has_subcommands() {
        for sub in cmd.get_subcommands() {
            command_section(sub, page)?;
        }
        return Ok(());
    }
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    page.extend_from_slice(format!(".SS \"{name}\"\n").as_bytes());
    let own = cmd
        .clone()
        .mut_args(|a| {
            let shared = a.is_global_set() || a.get_id() == "help";
            if shared {
                a.hide(true)
            } else {
                a
            }
        })
        .bin_name(name);
    let man = clap_mangen::Man::new(own);
    let mut parts = Vec::new();
    man.render_synopsis_section(&mut parts)
        .map_err(render_error)?;
    parts.extend_from_slice(b".PP\n");
    man.render_description_section(&mut parts)
        .map_err(render_error)?;
    man.render_options_section(&mut parts)
        .map_err(render_error)?;
    // Each part comes with its own `.SH` heading; here they sit under this
    // command's `.SS`.
    for line in text(parts)?.lines().filter(|l| !l.starts_with(".SH")) {
        page.extend_from_slice(line.as_bytes());
        page.push(b'\n');
    }
    Ok(())
}

fn text(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| Error::Internal(format!("the generated text is not UTF-8: {e}")))
}

fn render_error(e: std::io::Error) -> Error {
    Error::Internal(format!("cannot render the man page: {e}"))
}
