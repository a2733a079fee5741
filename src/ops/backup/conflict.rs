//! What restore finds already on the token for an entry: the index of the
//! token's keys, and the proofs (KCV, public half, or both wrapped under a
//! fresh session key) that a key there is the entry's key.

use std::collections::{HashMap, HashSet};

use super::{public_values_of, Entries, OnConflict, Opened};
use crate::error::{Error, Result};
use crate::formats::bundle::{unb64, Entry};
use crate::hsm::check;
use crate::hsm::keys;
use crate::hsm::probe::Ephemeral;
use crate::hsm::template::KeyKind;
use crate::hsm::wrap::{self, PublicValues, WrapSupport};
use crate::hsm::{Handle, Token};

/// The token's keys by (class, label) and by id, read once: restore checks
/// every entry against it instead of searching the token per entry.
pub(super) struct TokenIndex {
    pub(super) by_label: HashMap<(String, String), Vec<Handle>>,
    pub(super) by_id: HashMap<String, Vec<Handle>>,
    /// Every token object's handle when the index was read, sorted: the
    /// objects the duplicate check after the restore need not look at.
    handles: Vec<u64>,
}

impl TokenIndex {
    /// One search of the token, and the class, label and id of each key.
    pub(super) fn read(token: &Token<'_>) -> Result<TokenIndex> {
        let mut index = TokenIndex {
            by_label: HashMap::new(),
            by_id: HashMap::new(),
            handles: Vec::new(),
        };
        let (handles, found) = keys::identities(token)?;
        index.handles = handles;
        for key in found {
            index
                .by_label
                .entry((key.class.to_string(), key.label))
                .or_default()
                .push(key.handle);
            index.by_id.entry(key.id).or_default().push(key.handle);
        }
        Ok(index)
    }

    /// After a restore: whether a key object that was not on the token when
    /// the index was read, and that this run did not make (`ours`, sorted),
    /// carries the class and label of a key this run made (`made`). The
    /// per-token lock serialises runs on this host only: a run on another
    /// host may have restored the same keys meanwhile. One search; only the
    /// objects neither run nor index knows are read.
    pub(super) fn made_meanwhile(
        &self,
        token: &Token<'_>,
        ours: &[u64],
        made: &Entries,
    ) -> Result<Option<String>> {
        // The others are few (none, unless another host restored meanwhile):
        // they are indexed, and the run's entries read once against them.
        let others: HashSet<(String, String)> =
            keys::identities_except(token, &self.handles, ours)?
                .into_iter()
                .map(|key| (key.class.to_string(), key.label))
                .collect();
        let mut found = None;
        if !others.is_empty() {
            made.each(|(e, _, _)| {
                if others.contains(&(e.class.clone(), e.label.clone())) {
                    found = Some(e.label);
                }
                Ok(found.is_none())
            })?;
        }
        Ok(found)
    }
}

/// What pass 1 found on the token for an entry.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Present {
    /// Nothing in the way: create it.
    No,
    /// The same key is there (skip).
    Same,
    /// The same private key is there without its public half (a restore
    /// that was killed between the two): make the public half only.
    PublicMissing,
    /// A key the journal of a killed restore names, not proved the same
    /// (half-written): these objects go, and the entry is restored.
    Stale(Vec<Handle>),
}

pub(super) fn existing(
    token: &Token<'_>,
    index: &TokenIndex,
    entry: &Entry,
    on_conflict: OnConflict,
    opened: &Opened,
    support: &WrapSupport,
    suspect: bool,
) -> Result<Present> {
    let by_label = index
        .by_label
        .get(&(entry.class.clone(), entry.label.clone()))
        .cloned()
        .unwrap_or_default();
    let by_id = index.by_id.get(&entry.id).cloned().unwrap_or_default();
    if by_label.is_empty() && by_id.is_empty() {
        return Ok(Present::No);
    }
    let conflict = |why: String| Error::AlreadyExists {
        what: format!("{} ({why})", entry.label),
    };
    if on_conflict == OnConflict::Fail {
        return Err(conflict(if by_label.is_empty() {
            format!("id {} is used by another key", entry.id)
        } else {
            "a key with this label exists; --on-conflict skip restores around identical keys".into()
        }));
    }
    let same = by_label.len() == 1 && by_id.contains(&by_label[0]);
    if !same {
        // The public half alone, under this label and id, is not the key.
        return Err(conflict("a different key has this label or id".into()));
    }
    // A key a killed restore may have left half-written: not proved the
    // same (or not even readable) means it goes and the entry is restored.
    let stale = || {
        let mut handles = vec![by_label[0]];
        if let Some(public) = index
            .by_label
            .get(&("public-key".to_string(), entry.label.clone()))
        {
            handles.extend(public.iter().filter(|h| by_id.contains(h)).copied());
        }
        Present::Stale(handles)
    };
    let proof = prove_same(token, index, entry, opened, support, &by_label, &by_id);
    match proof {
        Ok(present) => Ok(present),
        Err(_) if suspect => Ok(stale()),
        Err(e) => Err(e),
    }
}

/// The proofs of [`existing`]: `Err(AlreadyExists)` when not proved.
pub(super) fn prove_same(
    token: &Token<'_>,
    index: &TokenIndex,
    entry: &Entry,
    opened: &Opened,
    support: &WrapSupport,
    by_label: &[Handle],
    by_id: &[Handle],
) -> Result<Present> {
    let conflict = |why: String| Error::AlreadyExists {
        what: format!("{} ({why})", entry.label),
    };
    let info = keys::describe(token, by_label[0])?;
    if entry.class == "secret-key" {
        let proved = match &entry.kcv {
            Some(k) if k.method == wrap::KCV_AES && info.kcv.is_some() => {
                info.kcv.as_deref() == Some(k.value.as_str())
            }
            Some(k) if k.method == wrap::KCV_GENERIC && info.usage.contains(&"sign") => {
                check::kcv(token, by_label[0], KeyKind::Generic)?.0 == k.value
            }
            // No KCV here (a decrypt-only AES key on SoftHSM, a generic key
            // that may not sign): prove it by wrapping.
            _ => wraps_to_entry(token, opened, support, entry, by_label[0])?,
        };
        return if proved {
            Ok(Present::Same)
        } else {
            Err(conflict(format!(
                "a key with this label and id exists but is not proved the same (KCV {}, and wrapped under the bundle's key it does not give the bundle's bytes)",
                info.kcv.as_deref().unwrap_or("unknown")
            )))
        };
    }
    let part = entry.public.as_ref().ok_or_else(|| Error::BundleCorrupt {
        reason: format!("{}: a private key without its public part", entry.label),
    })?;
    let values = public_values_of(part)?;
    let public_here = index
        .by_label
        .get(&("public-key".to_string(), entry.label.clone()))
        .map(|found| {
            found
                .iter()
                .filter(|h| by_id.contains(h))
                .copied()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut eph = Ephemeral::for_token(token);
    let proved = match &values {
        PublicValues::Rsa { .. } => wrap::private_matches(token, &mut eph, by_label[0], &values)?,
        PublicValues::Ec { .. } if info.usage.contains(&"sign") => {
            wrap::private_matches(token, &mut eph, by_label[0], &values)?
        }
        // A private key that may not sign: its public half on the token
        // (same label and id) must carry the same point.
        PublicValues::Ec { point, .. } => {
            let mut any = false;
            for h in &public_here {
                if let Some(PublicValues::Ec { point: p, .. }) =
                    check::public_of(token, *h, KeyKind::Ec)?
                {
                    any |= p == *point;
                }
            }
            any
        }
    };
    if !proved {
        return Err(conflict(
            "a private key with this label and id exists and is not proved the same".into(),
        ));
    }
    Ok(if public_here.is_empty() {
        Present::PublicMissing
    } else {
        Present::Same
    })
}

/// Whether the key on the token is the entry's key, proved in the token,
/// for keys whose KCV the token cannot compute ([`check::wraps_same`]): the
/// entry's blob against the key, compared wrapped under a fresh session key
/// that never leaves the token. An entry whose algorithm this token lacks
/// is not proved.
pub(super) fn wraps_to_entry(
    token: &Token<'_>,
    opened: &Opened,
    support: &WrapSupport,
    entry: &Entry,
    key: Handle,
) -> Result<bool> {
    let (Some(mech), Some((_, compare_mech))) =
        (support.unwrap_mechanism(&entry.wrap), support.for_secret())
    else {
        return Ok(false);
    };
    let blob =
        unb64("wrapped", &entry.wrapped).map_err(|reason| Error::BundleCorrupt { reason })?;
    check::wraps_same(
        token,
        mech,
        opened.unwrapping,
        &blob,
        KeyKind::from_name(&entry.key_type),
        compare_mech,
        key,
        &entry.label,
    )
}
