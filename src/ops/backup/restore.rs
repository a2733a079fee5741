//! Restore: pass 1 checks everything and writes the journal, pass 2 creates
//! each entry's objects from its template, checks them, and rolls the whole
//! run back on any failure.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::choose::{Choice, Decision};
use super::conflict::{existing, Present, TokenIndex};
use super::mac::{integrity_pass, SecondPass};
use super::protection::open_protection;
use super::verify::check_restored;
use super::{
    check_entry_capability, entry_summary, public_values_of, read_header, Entries, Input,
    OnConflict, Opened, Progress, RestoreOptions, RestoreReport, Skipped, Unprotect,
};
use crate::error::{Error, Result};
use crate::formats::bundle::{unb64, Entry, PublicPart};
use crate::hsm::check;
use crate::hsm::keys;
use crate::hsm::probe::Ephemeral;
use crate::hsm::template::{self, KeyClass, KeyKind, KeyTemplate};
use crate::hsm::undo::{self, Undo};
use crate::hsm::unwrap::{unwrap_into, unwrap_kek_into};
use crate::hsm::wrap::{PublicValues, WrapSupport};
use crate::hsm::{Handle, Token};
use crate::output::AtomicFile;

/// The keys a journal names, as (class, label, id).
pub(super) fn read_journal(path: Option<&Path>) -> HashSet<(String, String, String)> {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<(String, String, String)>(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The journal of the keys a restore is about to create, written as pass 1
/// finds them (a temporary file beside the journal, renamed into place at
/// the end of pass 1 when there is anything to create): memory does not
/// grow with the keys.
pub(super) struct Journal {
    file: Option<AtomicFile>,
    pending: Vec<u8>,
    count: u64,
}

impl Journal {
    /// A journal at `path`; `None`: only counted.
    pub(super) fn start(path: Option<&Path>) -> Result<Journal> {
        Ok(Journal {
            file: path.map(|p| AtomicFile::create(p, true)).transpose()?,
            pending: Vec::new(),
            count: 0,
        })
    }

    pub(super) fn push(&mut self, key: &(String, String, String)) -> Result<()> {
        self.count += 1;
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        serde_json::to_writer(&mut self.pending, key)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.pending.push(b'\n');
        if self.pending.len() >= 64 * 1024 {
            let dest = file.dest().display().to_string();
            file.file()
                .write_all(&self.pending)
                .map_err(|e| Error::Io {
                    path: dest,
                    source: e,
                })?;
            self.pending.clear();
        }
        Ok(())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Put the journal in place, when there is anything to create; else
    /// nothing is left behind.
    pub(super) fn commit(mut self) -> Result<()> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        if self.count == 0 {
            return Ok(());
        }
        let dest = file.dest().display().to_string();
        file.file()
            .write_all(&self.pending)
            .map_err(|e| Error::Io {
                path: dest,
                source: e,
            })?;
        file.commit()
    }
}

/// The unwrap template of a restored key: what the entry records, always
/// sensitive, and wrappable only by trusted keys when restored under a
/// trusted KEK (whose unwrap template demands it).
pub(super) fn restore_template(
    token: &Token<'_>,
    entry: &Entry,
    trusted_kek: bool,
) -> Result<KeyTemplate> {
    let id = hex::decode(&entry.id).map_err(|_| Error::BundleCorrupt {
        reason: format!("{}: id is not hex", entry.label),
    })?;
    let private = entry.class == "private-key";
    let mut t = KeyTemplate::stored(
        if private {
            KeyClass::Private
        } else {
            KeyClass::Secret
        },
        KeyKind::from_name(&entry.key_type),
        &entry.label,
        &id,
        entry.backup_policy != "none",
        entry.backup_policy == "trusted" || trusted_kek,
        &entry.usage,
    );
    // A restored KEK is as locked down as a generated one (docs/KEYS.md).
    if !private && entry.usage.iter().any(|u| u == "unwrap") {
        t = t.not_modifiable();
    }
    if let Some(part) = &entry.public {
        t = t.with_private_quirks(token, &public_values_of(part)?);
    }
    Ok(t)
}

/// The template of an entry's public half, from the values it records.
pub(super) fn public_template(
    entry: &Entry,
    part: &PublicPart,
    values: &PublicValues,
) -> Result<KeyTemplate> {
    let id = hex::decode(&entry.id).map_err(|_| Error::BundleCorrupt {
        reason: format!("{}: id is not hex", entry.label),
    })?;
    let usage = match part {
        PublicPart::Rsa { usage, .. } | PublicPart::Ec { usage, .. } => usage,
    };
    Ok(KeyTemplate::public_key(&entry.label, &id, usage, values))
}

/// What pass 2 does with one entry.
#[derive(Clone, Copy)]
pub(super) enum Step {
    /// Not selected by `--only`: authenticated, not created.
    LeaveOut,
    /// The same key is already on the token.
    Skip,
    /// `--dry-run`: reported, not created.
    DryRun,
    Create,
    /// The private key is there; its public half is made again.
    PublicOnly,
    /// Half-written objects of a killed restore go; the entry is restored.
    Replace,
}

/// Create one entry's objects and check them; on any failure, what it
/// created is destroyed before the error is returned. The handles go to the
/// whole restore's rollback.
pub(super) fn restore_entry(
    token: &Token<'_>,
    support: &WrapSupport,
    opened: &Opened,
    entry: &Entry,
) -> Result<Vec<(Handle, String)>> {
    let mut created = Undo::for_token(token);
    match create_entry(token, support, opened, entry, &mut created) {
        Ok(()) => Ok(created.into_objects()),
        Err(e) => Err(created.fail(e)),
    }
}

pub(super) fn create_entry(
    token: &Token<'_>,
    support: &WrapSupport,
    opened: &Opened,
    entry: &Entry,
    created: &mut Undo<'_>,
) -> Result<()> {
    let id = hex::decode(&entry.id).unwrap_or_default();
    let mech = check_entry_capability(support, entry)?;
    let blob =
        unb64("wrapped", &entry.wrapped).map_err(|reason| Error::BundleCorrupt { reason })?;
    let template = restore_template(token, entry, opened.trusted_kek)?;
    let is_kek = entry.class == "secret-key" && entry.usage.iter().any(|u| u == "unwrap");
    let unwrapped = if is_kek {
        unwrap_kek_into(token, mech, opened.unwrapping, &blob, &template)
    } else {
        unwrap_into(token, mech, opened.unwrapping, &blob, &template)
    };
    let key = unwrapped.map_err(|rv| rv.failure(&format!("restore {}", entry.label)))?;
    created.add(key, undo::describe(&entry.label, &entry.class, &id));
    check::enforce_usage(
        token,
        key,
        &entry.label,
        entry.class == "private-key",
        &entry.usage,
    )?;
    create_public(token, entry, created)?;
    let mut checks = Ephemeral::for_token(token);
    check_restored(token, &mut checks, opened, mech, entry, &blob, key)
}

/// An entry's public half, made from the values the bundle records.
pub(super) fn create_public(
    token: &Token<'_>,
    entry: &Entry,
    created: &mut Undo<'_>,
) -> Result<()> {
    let Some(part) = &entry.public else {
        return Ok(());
    };
    let id = hex::decode(&entry.id).unwrap_or_default();
    let values = public_values_of(part)?;
    let public = public_template(entry, part, &values)?.create(
        token,
        &format!("restore the public half of {}", entry.label),
    )?;
    created.add(public, undo::describe(&entry.label, "public-key", &id));
    Ok(())
}

/// Only the public half of an entry whose private key is on the token.
pub(super) fn restore_public(token: &Token<'_>, entry: &Entry) -> Result<Vec<(Handle, String)>> {
    let mut created = Undo::for_token(token);
    match create_public(token, entry, &mut created) {
        Ok(()) => Ok(created.into_objects()),
        Err(e) => Err(created.fail(e)),
    }
}

/// Restore a bundle: check everything first, then create all-or-nothing.
pub fn restore(
    token: &Token<'_>,
    input: &Input,
    unprotect: &Unprotect,
    options: &RestoreOptions<'_>,
    progress: Progress<'_>,
) -> Result<RestoreReport> {
    // The options on their own first: a bad --rename creates nothing.
    let mut choice = Choice::new(&options.only, &options.rename)?;
    let mut decisions: HashMap<u64, Decision> = HashMap::new();
    let mut eph = Ephemeral::for_token(token);
    let header = read_header(input)?;
    // Finishing a crashed restore: its half-written objects go first, before
    // this process makes any session object of its own.
    let shells = if options.on_conflict == OnConflict::Skip && !options.dry_run {
        keys::remove_crash_shells(token)?
    } else {
        0
    };
    let support = WrapSupport::probe(token)?;
    let opened = open_protection(token, &mut eph, header, unprotect, &support)?;

    // Pass 1: authenticity, capabilities, conflicts. Nothing is created.
    let mut skip = HashMap::new();
    let mut stale_by_key: HashMap<(String, String), Vec<Handle>> = HashMap::new();
    let journal = if options.on_conflict == OnConflict::Skip {
        read_journal(options.journal.as_deref())
    } else {
        HashSet::new()
    };
    let journal_path = options.journal.as_deref().filter(|_| !options.dry_run);
    let mut to_create = Journal::start(journal_path)?;
    let on_token = TokenIndex::read(token)?;
    let (total, digest, line_digests) = integrity_pass(token, input, &opened, |index, entry| {
        let decision = choice.decide(entry);
        let renamed = match &decision {
            // Left out: its line is MACed and its digest recorded all the same.
            Decision::LeaveOut => {
                decisions.insert(index, decision);
                return Ok(());
            }
            Decision::Keep => None,
            Decision::Rename { .. } | Decision::VersionId { .. } => {
                let mut copy = entry.clone();
                decision.apply(&mut copy);
                Some(copy)
            }
        };
        let new_id = matches!(decision, Decision::VersionId { .. });
        // Kept under its own name: the usual case, not recorded.
        if decision != Decision::Keep {
            decisions.insert(index, decision);
        }
        let original = entry;
        let entry = renamed.as_ref().unwrap_or(entry);
        check_entry_capability(&support, entry)?;
        let key = (entry.class.clone(), entry.label.clone(), entry.id.clone());
        let suspect = journal.contains(&key);
        let found = existing(
            token,
            &on_token,
            entry,
            options.on_conflict,
            &opened,
            &support,
            suspect,
        );
        // A version restored before with its old id (or the token it was
        // made on) holds the same key under the id the bundle records.
        let found = match found {
            Err(Error::AlreadyExists { .. })
                if new_id && options.on_conflict == OnConflict::Skip =>
            {
                match existing(
                    token,
                    &on_token,
                    original,
                    options.on_conflict,
                    &opened,
                    &support,
                    false,
                ) {
                    Ok(Present::Same) => Ok(Present::Same),
                    _ => found,
                }
            }
            other => other,
        };
        match found? {
            Present::No => to_create.push(&key)?,
            Present::Same => {
                skip.insert(index, Present::Same);
            }
            present => {
                if let Present::Stale(handles) = &present {
                    stale_by_key.insert((key.0.clone(), key.1.clone()), handles.clone());
                }
                to_create.push(&key)?;
                skip.insert(index, present);
            }
        }
        Ok(())
    })?;
    // Every --only and --rename matched, no two keys under one name: known
    // only now the whole (authentic) bundle was read. Nothing created yet.
    choice.finish()?;
    // Before the first object: what this run will create, for a run after a
    // crash. Removed when the restore ends either way.
    let journal_path = journal_path.filter(|_| !to_create.is_empty());
    to_create.commit()?;
    let mut report = RestoreReport {
        scheme: opened.header.protection.scheme().into(),
        source: opened.header.source.clone(),
        created_at: opened.header.created.clone(),
        tool: opened.header.tool.clone(),
        dry_run: options.dry_run,
        entries: Entries::new(),
        skipped: Vec::new(),
        left_out: Vec::new(),
        notes: Vec::new(),
    };
    if shells > 0 {
        report.notes.push(format!(
            "removed {shells} label-less object(s) a crashed run had left half-written"
        ));
    }
    if opened.trusted_kek {
        report.notes.push(
            "restored under a trusted KEK: every restored key can be wrapped only by trusted keys (policy trusted or none)".into(),
        );
    }

    // Pass 2: create, check each key, and prove the file did not change.
    // Lines are read, hashed and matched to pass 1 here; the unwraps and
    // checks run on `--sessions` sessions; results come back in file order.
    // Shared by the in-order results and the salvage of those under way
    // when a run stops: every created object reaches it, even on a panic.
    let stale = stale_by_key;
    let rollback = std::cell::RefCell::new(Undo::for_token(token));
    let mut second = SecondPass::new(input, &line_digests)?;
    let items = second.by_ref().map(|read| {
        let (index, entry) = read?;
        if options.cancel.load(Ordering::SeqCst) {
            return Err(Error::Interrupted {
                what: format!("restore stopped after {index} of {total} keys; the keys it had created were destroyed"),
            });
        }
        let mut entry = entry;
        let decision = decisions.get(&index).unwrap_or(&Decision::Keep);
        let from = matches!(decision, Decision::Rename { .. }).then(|| entry.label.clone());
        let old_id = matches!(decision, Decision::VersionId { .. }).then(|| entry.id.clone());
        if !decision.apply(&mut entry) {
            return Ok((Step::LeaveOut, entry, None, None));
        }
        let step = if skip.get(&index) == Some(&Present::Same) {
            Step::Skip
        } else if options.dry_run {
            Step::DryRun
        } else if skip.get(&index) == Some(&Present::PublicMissing) {
            Step::PublicOnly
        } else if matches!(skip.get(&index), Some(Present::Stale(_))) {
            Step::Replace
        } else {
            Step::Create
        };
        Ok((step, entry, from, old_id))
    });
    let mut done = 0u64;
    let run = crate::hsm::pool::run_ordered(
        token,
        items,
        |t, (step, entry, from, old_id)| match step {
            Step::Create => restore_entry(t, &support, &opened, &entry)
                .map(|h| (step, entry, (from, old_id), h)),
            Step::PublicOnly => {
                restore_public(t, &entry).map(|h| (step, entry, (from, old_id), h))
            }
            Step::Replace => {
                let key = (entry.class.clone(), entry.label.clone());
                for h in stale.get(&key).into_iter().flatten() {
                    template::destroy(
                        t,
                        *h,
                        &format!("remove a half-written copy of {}", entry.label),
                    )?;
                }
                restore_entry(t, &support, &opened, &entry)
                    .map(|h| (step, entry, (from, old_id), h))
            }
            _ => Ok((step, entry, (from, old_id), Vec::new())),
        },
        |(step, entry, (from, old_id), handles)| {
            rollback.borrow_mut().extend(handles);
            done += 1;
            if options.cancel.load(Ordering::SeqCst) {
                return Err(Error::Interrupted {
                    what: format!("restore stopped after {done} of {total} keys; the keys it had created were destroyed"),
                });
            }
            if matches!(step, Step::LeaveOut) {
                report.left_out.push(Skipped {
                    label: entry.label.clone(),
                    id: entry.id.clone(),
                    class: entry.class.clone(),
                    code: "not-selected",
                    reason: "not selected by --only".into(),
                });
            } else if matches!(step, Step::Skip) {
                report.skipped.push(Skipped {
                    label: entry.label.clone(),
                    id: entry.id.clone(),
                    class: entry.class.clone(),
                    code: "already-on-token",
                    reason: "the same key is already on the token".into(),
                });
            } else {
                let mut summary = entry_summary(&entry);
                // The id the bundle gives the key: none under a new name.
                let id = match (&from, &old_id) {
                    (Some(_), _) => None,
                    (None, Some(old)) => Some(old.clone()),
                    (None, None) => Some(entry.id.clone()),
                };
                let version = keys::split_version(&entry.label).1;
                summary.renamed_from = from;
                summary.id_from = old_id;
                report.entries.push(summary, id, version)?;
            }
            progress(done, total);
            Ok(())
        },
        |(_, _, _, handles)| rollback.borrow_mut().extend(handles),
    )
    .and_then(|()| second.finish(digest, total, "restored"))
    .and_then(|()| {
        if options.dry_run || report.entries.is_empty() {
            return Ok(());
        }
        // The per-token lock serialises runs on this host only: a run on
        // another host may have restored the same keys meanwhile.
        let mut ours: Vec<u64> = rollback.borrow().handles().map(|h| h.handle()).collect();
        ours.sort_unstable();
        match on_token.made_meanwhile(token, &ours, &report.entries)? {
            Some(label) => Err(Error::ConcurrentCreate {
                what: format!("the key labelled '{label}'"),
            }),
            None => Ok(()),
        }
    });
    let rollback = rollback.into_inner();
    let outcome = match run {
        Ok(()) => {
            rollback.commit();
            Ok(report)
        }
        Err(e) => Err(rollback.fail(e)),
    };
    // The journal goes once nothing of this run can be half-written: kept
    // only when clean-up itself left objects.
    if let Some(path) = journal_path {
        if !matches!(outcome, Err(Error::LeftBehind { .. })) {
            let _ = std::fs::remove_file(path);
        }
    }
    outcome
}
