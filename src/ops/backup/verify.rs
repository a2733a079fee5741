//! Verify: every entry unwrapped into a session check copy and checked
//! against its KCV or public half, nothing created; the same check proves
//! each key a restore creates.

use std::collections::HashSet;

use super::choose::{Choice, Decision};
use super::mac::{integrity_pass, SecondPass};
use super::protection::open_protection;
use super::{
    check_entry_capability, entry_summary, public_values_of, read_header, Entries, EntrySummary,
    Input, Opened, Progress, RestoreReport, Skipped, Unprotect,
};
use crate::error::{Error, Result};
use crate::formats::bundle::{unb64, Entry};
use crate::hsm::check;
use crate::hsm::probe::Ephemeral;
use crate::hsm::template::{KeyClass, KeyKind, KeyTemplate};
use crate::hsm::unwrap::unwrap_into;
use crate::hsm::wrap::{self, WrapSupport};
use crate::hsm::{Handle, Token};

/// A check-copy template for an entry, with the token's quirks.
pub(super) fn check_template(token: &Token<'_>, entry: &Entry) -> Result<KeyTemplate> {
    let key_type = KeyKind::from_name(&entry.key_type);
    if entry.class == "private-key" {
        let mut t = KeyTemplate::check_copy(KeyClass::Private, key_type);
        if let Some(part) = &entry.public {
            t = t.with_private_quirks(token, &public_values_of(part)?);
        }
        Ok(t)
    } else {
        Ok(KeyTemplate::check_copy(KeyClass::Secret, key_type))
    }
}

/// Check an unwrapped key against its entry: KCV for secret keys, the public
/// half for private keys. Uses the key itself when it can do the check
/// operation, else a session check copy unwrapped from the same blob.
pub(super) fn check_restored(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    opened: &Opened,
    mech: u64,
    entry: &Entry,
    blob: &[u8],
    key: Handle,
) -> Result<()> {
    let key_type = KeyKind::from_name(&entry.key_type);
    let private = entry.class == "private-key";
    let can_check_directly = if private {
        key_type == KeyKind::Rsa || entry.usage.iter().any(|u| u == "sign")
    } else if key_type == KeyKind::Aes {
        entry.usage.iter().any(|u| u == "encrypt")
    } else {
        entry.usage.iter().any(|u| u == "sign")
    };
    let subject = if can_check_directly {
        key
    } else {
        let copy = unwrap_into(
            token,
            mech,
            opened.unwrapping,
            blob,
            &check_template(token, entry)?,
        )
        .map_err(|rv| rv.failure(&format!("make a check copy of {}", entry.label)))?;
        eph.keep(copy)
    };
    if private {
        let part = entry.public.as_ref().ok_or_else(|| Error::BundleCorrupt {
            reason: format!("{}: a private key without its public part", entry.label),
        })?;
        let values = public_values_of(part)?;
        if !wrap::private_matches(token, eph, subject, &values)? {
            return Err(Error::BundleCorrupt {
                reason: format!(
                    "{}: the unwrapped private key does not match its public half",
                    entry.label
                ),
            });
        }
        return Ok(());
    }
    let expected = entry.kcv.as_ref().ok_or_else(|| Error::BundleCorrupt {
        reason: format!("{}: a secret key without a KCV", entry.label),
    })?;
    let (value, method) = check::kcv(token, subject, key_type)?;
    if method != expected.method || value != expected.value {
        return Err(Error::BundleCorrupt {
            reason: format!(
                "{}: KCV after unwrap is {value} ({method}); the bundle says {} ({})",
                entry.label, expected.value, expected.method
            ),
        });
    }
    Ok(())
}

/// Verify a bundle: authenticity, then every key unwrapped into a session
/// object and checked (KCV, public half), then destroyed. Creates nothing.
/// `only` (`verify --only`, as `restore --only`: key names with all their
/// versions, or `NAME@vK`; empty for all) limits the unwrapping to those
/// keys; the MAC still covers every line, and the others are reported as
/// left out.
pub fn verify(
    token: &Token<'_>,
    input: &Input,
    unprotect: &Unprotect,
    only: &[String],
    progress: Progress<'_>,
) -> Result<RestoreReport> {
    // The option on its own first, before any token work.
    let choice = Choice::new(only, &[])?;
    let mut eph = Ephemeral::for_token(token);
    let header = read_header(input)?;
    let support = WrapSupport::probe(token)?;
    let opened = open_protection(token, &mut eph, header, unprotect, &support)?;
    verify_opened(token, input, &opened, &support, choice, progress)
}

/// What the second pass did with one entry.
enum Checked {
    /// Its summary, and its id in the bundle.
    Verified((EntrySummary, String)),
    LeftOut(Skipped),
}

/// [`verify`] once the bundle's keys are open (also `backup --verify`, which
/// passes an empty choice: every key).
pub(super) fn verify_opened(
    token: &Token<'_>,
    input: &Input,
    opened: &Opened,
    support: &WrapSupport,
    mut choice: Choice,
    progress: Progress<'_>,
) -> Result<RestoreReport> {
    let mut left_out = HashSet::new();
    let (total, digest, line_digests) = integrity_pass(token, input, opened, |index, entry| {
        if choice.decide(entry) == Decision::LeaveOut {
            // Authenticated with the rest; not unwrapped, so the token need
            // not be able to.
            left_out.insert(index);
            return Ok(());
        }
        check_entry_capability(support, entry).map(|_| ())
    })?;
    // Every --only name matched a key of this (authentic) bundle.
    choice.finish()?;
    let mut report = RestoreReport {
        scheme: opened.header.protection.scheme().into(),
        source: opened.header.source.clone(),
        created_at: opened.header.created.clone(),
        tool: opened.header.tool.clone(),
        dry_run: true,
        entries: Entries::new(),
        skipped: Vec::new(),
        left_out: Vec::new(),
        notes: Vec::new(),
    };
    let mut second = SecondPass::new(input, &line_digests)?;
    let items = second
        .by_ref()
        .map(|read| read.map(|(index, entry)| (!left_out.contains(&index), entry)));
    let mut done = 0u64;
    crate::hsm::pool::run_ordered(
        token,
        items,
        |t, (selected, entry)| {
            if !selected {
                return Ok(Checked::LeftOut(Skipped {
                    label: entry.label.clone(),
                    id: entry.id.clone(),
                    class: entry.class.clone(),
                    code: "not-selected",
                    reason: "not selected by --only".into(),
                }));
            }
            let mech = check_entry_capability(support, &entry)?;
            let blob = unb64("wrapped", &entry.wrapped)
                .map_err(|reason| Error::BundleCorrupt { reason })?;
            let mut checks = Ephemeral::for_token(t);
            let copy = unwrap_into(
                t,
                mech,
                opened.unwrapping,
                &blob,
                &check_template(t, &entry)?,
            )
            .map_err(|rv| {
                if rv.means_bad_blob(t, mech) {
                    Error::BundleCorrupt {
                        reason: format!("{} did not unwrap ({})", entry.label, rv.name()),
                    }
                } else {
                    rv.failure(&format!("unwrap a check copy of {}", entry.label))
                }
            })?;
            let copy = checks.keep(copy);
            check_restored(t, &mut checks, opened, mech, &entry, &blob, copy)?;
            Ok(Checked::Verified((entry_summary(&entry), entry.id)))
        },
        |checked| {
            match checked {
                Checked::Verified((summary, id)) => {
                    let version = crate::hsm::keys::split_version(&summary.label).1;
                    report.entries.push(summary, Some(id), version)?
                }
                Checked::LeftOut(skipped) => report.left_out.push(skipped),
            }
            done += 1;
            progress(done, total);
            Ok(())
        },
        drop,
    )?;
    second.finish(digest, total, "verified")?;
    Ok(report)
}
