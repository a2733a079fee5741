//! `hsmkey bundle inspect`: a bundle or blob described without a token. No
//! module is loaded and no PIN asked: this file never calls `ctx.module()`.
//! Every value shown comes from an unauthenticated file, so the text output
//! escapes control characters.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hsmkey::ops::backup::Input;
use hsmkey::ops::inspect::{self, Inspection, ProtectionSummary};

use super::{json, out, table, Context};

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Describe a bundle or blob without a token: header, protection, every
    /// entry, and whether its structure is intact. The MAC is not checked
    /// (that needs the token: `hsmkey verify`).
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The bundle or blob file (`-`: standard input).
    file: PathBuf,
}

pub fn run(ctx: &Context, cmd: BundleCommand) -> hsmkey::Result<()> {
    match cmd {
        BundleCommand::Inspect(args) => run_inspect(ctx, args),
    }
}

fn run_inspect(ctx: &Context, args: InspectArgs) -> hsmkey::Result<()> {
    let input = Input::open(&args.file)?;
    let report = inspect::inspect(&input)?;
    let file = args.file.display().to_string();
    if ctx.json() {
        json::print(&json::BundleInspect {
            file,
            report: &report,
        });
    } else {
        out(&render(&hsmkey::input::shown(&args.file), &report));
    }
    Ok(())
}

/// Untrusted text for a terminal: control characters, quotes and
/// backslashes escaped.
fn shown(text: &str) -> String {
    text.escape_debug().to_string()
}

fn render(file: &str, r: &Inspection) -> String {
    let s = &r.source;
    let mut text = format!(
        "{} {} ({} version {})\n",
        r.container,
        shown(file),
        shown(&r.format),
        r.format_version
    );
    let field = |name: &str, value: String| format!("  {name:<13} {value}\n");
    text.push_str(&field(
        "source token",
        format!(
            "'{}' (manufacturer '{}', model '{}', serial '{}')",
            shown(&s.label),
            shown(&s.manufacturer),
            shown(&s.model),
            shown(&s.serial)
        ),
    ));
    text.push_str(&field(
        "created",
        format!("{} by {}", shown(&r.created), shown(&r.tool)),
    ));
    text.push_str(&field("protection", protection_text(&r.protection)));
    text.push_str(&field(
        "integrity",
        format!(
            "{}, its key wrapped with {} ({} bytes); trailer MAC {} bytes",
            shown(&r.mac.algorithm),
            shown(&r.mac.wrap),
            r.mac.wrapped_key_bytes,
            r.mac.trailer_mac_bytes
        ),
    ));
    // Cells as they are: `table` escapes every one.
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.label.clone(),
                e.version.to_string(),
                e.id.clone(),
                e.class.clone(),
                e.key_type.clone(),
                e.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                e.usage.join(","),
                e.backup_policy.clone(),
                e.kcv.clone().unwrap_or_else(|| "-".into()),
                e.kcv_method.clone().unwrap_or_else(|| "-".into()),
                e.wrap.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        text.push_str(&table(
            &[
                "LABEL",
                "VERSION",
                "ID",
                "CLASS",
                "TYPE",
                "SIZE",
                "USAGE",
                "POLICY",
                "KCV",
                "KCV METHOD",
                "WRAP",
            ],
            &rows,
        ));
    }
    let st = &r.structure;
    text.push_str(&format!(
        "structure: intact ({} lines: header, {} {}, trailer counting {}; longest line {} bytes, limit {})\n",
        st.lines,
        st.entries,
        if st.entries == 1 { "entry" } else { "entries" },
        st.trailer_entries,
        st.longest_line_bytes,
        st.max_line_bytes
    ));
    for n in &r.notes {
        text.push_str(&format!("note: {}\n", shown(n)));
    }
    text
}

fn protection_text(p: &ProtectionSummary) -> String {
    match p {
        ProtectionSummary::Kek { kek } => format!(
            "kek: KEK '{}' (id {}, KCV {})",
            shown(&kek.label),
            shown(&kek.id),
            kek.kcv
                .as_deref()
                .map(shown)
                .unwrap_or_else(|| "not recorded".into())
        ),
        ProtectionSummary::Password { kdf } => format!(
            "password: {} version {}, m={} KiB, t={}, p={} (salt {} bytes)",
            shown(&kdf.algorithm),
            kdf.version,
            kdf.m_kib,
            kdf.t,
            kdf.p,
            kdf.salt_bytes
        ),
        ProtectionSummary::Recipient { recipient } => format!(
            "recipient: RSA-{} public key with SPKI SHA-256 {}, OAEP {} (transfer key {} bytes)",
            recipient.bits,
            shown(&recipient.spki_sha256),
            shown(&recipient.oaep_hash),
            recipient.wrapped_transfer_key_bytes
        ),
    }
}
