//! Verify: every entry unwrapped into a session check copy and checked
//! against its KCV or public half, nothing created; the same check proves
//! each key a restore creates.

use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};

use super::mac::{integrity_pass, SecondPass};
use super::protection::open_protection;
use super::{
    check_entry_capability, ck_key_type, entry_summary, means_bad_blob, public_values_of,
    read_header, Input, Opened, Progress, RestoreReport, Unprotect,
};
use crate::error::{ckr_name, Error, Result};
use crate::formats::bundle::{unb64, Entry};
use crate::hsm::probe::Ephemeral;
use crate::hsm::wrap::{self, WrapSupport};
use crate::hsm::Token;

/// A check-copy template for an entry, with the token's quirks.
pub(super) fn check_template(token: &Token<'_>, entry: &Entry) -> Result<Vec<Attribute>> {
    let key_type = ck_key_type(&entry.key_type);
    if entry.class == "private-key" {
        let mut t = wrap::check_copy_template(ObjectClass::PRIVATE_KEY, key_type);
        if let Some(part) = &entry.public {
            t.extend(wrap::private_unwrap_quirks(
                token,
                Some(&public_values_of(part)?),
            ));
        }
        Ok(t)
    } else {
        Ok(wrap::check_copy_template(ObjectClass::SECRET_KEY, key_type))
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
    key: ObjectHandle,
) -> Result<()> {
    let key_type = ck_key_type(&entry.key_type);
    let private = entry.class == "private-key";
    let can_check_directly = if private {
        key_type == KeyType::RSA || entry.usage.iter().any(|u| u == "sign")
    } else if key_type == KeyType::AES {
        entry.usage.iter().any(|u| u == "encrypt")
    } else {
        entry.usage.iter().any(|u| u == "sign")
    };
    let subject = if can_check_directly {
        key
    } else {
        let copy = wrap::unwrap(
            token,
            mech,
            opened.unwrapping,
            blob,
            &check_template(token, entry)?,
        )
        .map_err(|rv| Error::Pkcs11 {
            function: "C_UnwrapKey".into(),
            rv: ckr_name(rv),
            action: format!("make a check copy of {}", entry.label),
        })?;
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
    let (value, method) = wrap::kcv_of(token, subject, key_type)?;
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
pub fn verify(
    token: &Token<'_>,
    input: &Input,
    unprotect: &Unprotect,
    progress: Progress<'_>,
) -> Result<RestoreReport> {
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let header = read_header(input)?;
    let support = WrapSupport::probe(token)?;
    let opened = open_protection(token, &mut eph, header, unprotect, &support)?;
    verify_opened(token, input, &opened, &support, progress)
}

/// [`verify`] once the bundle's keys are open (also `backup --verify`).
pub(super) fn verify_opened(
    token: &Token<'_>,
    input: &Input,
    opened: &Opened,
    support: &WrapSupport,
    progress: Progress<'_>,
) -> Result<RestoreReport> {
    let (total, digest, line_digests) = integrity_pass(token, input, opened, |_, entry| {
        check_entry_capability(support, entry).map(|_| ())
    })?;
    let mut report = RestoreReport {
        scheme: opened.header.protection.scheme().into(),
        source: opened.header.source.clone(),
        created_at: opened.header.created.clone(),
        tool: opened.header.tool.clone(),
        dry_run: true,
        entries: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    let mut second = SecondPass::new(input, &line_digests)?;
    let items = second.by_ref().map(|read| read.map(|(_, entry)| entry));
    let mut done = 0u64;
    crate::hsm::pool::run_ordered(
        token,
        items,
        |t, entry| {
            let mech = check_entry_capability(support, &entry)?;
            let blob = unb64("wrapped", &entry.wrapped)
                .map_err(|reason| Error::BundleCorrupt { reason })?;
            let mut checks = Ephemeral::new(t.session());
            let copy = wrap::unwrap(
                t,
                mech,
                opened.unwrapping,
                &blob,
                &check_template(t, &entry)?,
            )
            .map_err(|rv| {
                if means_bad_blob(t, mech, rv) {
                    Error::BundleCorrupt {
                        reason: format!("{} did not unwrap ({})", entry.label, ckr_name(rv)),
                    }
                } else {
                    crate::error::token_failure(
                        "C_UnwrapKey",
                        rv,
                        &format!("unwrap a check copy of {}", entry.label),
                    )
                }
            })?;
            let copy = checks.keep(copy);
            check_restored(t, &mut checks, opened, mech, &entry, &blob, copy)?;
            Ok(entry_summary(&entry))
        },
        |summary| {
            report.entries.push(summary);
            done += 1;
            progress(done, total);
            Ok(())
        },
        drop,
    )?;
    second.finish(digest, total, "verified")?;
    Ok(report)
}
