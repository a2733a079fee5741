//! Which keys a backup takes: the selection, and the refusals by the key's
//! own policy (extractable, trusted) or identity (label missing, not UTF-8,
//! shared), with the public half that travels with a private key.

use std::collections::{HashMap, HashSet};

use super::{shown_label, Selection, Skipped, POLICY_SKIPS};
use crate::error::{Error, Result};
use crate::hsm::keys::{self, KeyInfo, Listing};
use crate::hsm::template::KeyTemplate;
use crate::hsm::{Handle, Token};

pub(super) struct Candidate {
    pub(super) info: KeyInfo,
    // Boxed: most candidates have none, and an unboxed None is as large as a KeyInfo.
    pub(super) public: Option<Box<KeyInfo>>,
}

/// The keys a backup takes, filtered in place from the token's listing (a
/// second list of every key would be memory that grows with the token), and
/// the public halves of the private keys among them, by private key handle.
pub(super) struct Selected {
    pub(super) keys: Listing,
    pub(super) publics: HashMap<u64, KeyInfo>,
}

impl Selected {
    /// Hand each key over with its public half, described one at a time.
    pub(super) fn into_candidates(self) -> impl Iterator<Item = Candidate> {
        let mut publics = self.publics;
        let keys = self.keys;
        (0..keys.len()).map(move |i| {
            let info = keys.info(i);
            let public = publics.remove(&info.handle.handle()).map(Box::new);
            Candidate { info, public }
        })
    }
}

pub(super) fn policy_refusal(
    info: &KeyInfo,
    trusted_kek: bool,
    kek_handle: Option<Handle>,
) -> Option<(&'static str, String)> {
    if Some(info.handle) == kek_handle {
        return Some(("bundle-kek", "it is the KEK of this backup".into()));
    }
    if !matches!(info.key_type.as_str(), "aes" | "generic" | "rsa" | "ec") {
        return Some((
            "unsupported-type",
            format!("hsmkey does not back up {} keys", info.key_type),
        ));
    }
    if info.extractable != Some(true) {
        return Some((
            "policy-none",
            "backup policy none (CKA_EXTRACTABLE=false): it never leaves the token".into(),
        ));
    }
    if info.wrap_with_trusted == Some(true) && !trusted_kek {
        return Some((
            "policy-trusted",
            "backup policy trusted: only a KEK the SO marked CKA_TRUSTED may wrap it (not a password, recipient or untrusted KEK)"
                .into(),
        ));
    }
    None
}

/// Keys made by other tools that a bundle cannot carry faithfully: restore
/// names keys by label, so a key without one, with a label that is not
/// UTF-8, or sharing its label with another key of its class is refused by
/// name rather than written into a bundle that restores something else.
pub(super) fn identity_refusal(
    info: &KeyInfo,
    shared_labels: &HashSet<(String, String)>,
) -> Option<(&'static str, String)> {
    if info.label.is_empty() {
        return Some((
            "no-label",
            format!(
                "the key has no CKA_LABEL; give it one with `hsmkey key label 'pkcs11:id={}' NAME` to back it up",
                pct(&info.id)
            ),
        ));
    }
    if info.label_lossy {
        return Some((
            "label-not-utf8",
            "its CKA_LABEL is not UTF-8 text, so a restore could not give it the same label".into(),
        ));
    }
    if shared_labels.contains(&(info.class.clone(), info.label.clone())) {
        return Some((
            "duplicate-label",
            "another key of this class has the same label, so a restore could not tell them apart"
                .into(),
        ));
    }
    None
}

/// Find the public half of a private key: same class pair, label and id.
pub(super) fn public_half(token: &Token<'_>, info: &KeyInfo) -> Result<Option<KeyInfo>> {
    let id = hex::decode(&info.id).map_err(|e| Error::Internal(e.to_string()))?;
    let found = KeyTemplate::public_half(&info.label, &id).find(token, "find a public key")?;
    match found.first() {
        Some(h) => Ok(Some(keys::describe_with(token, *h, false)?)),
        None => Ok(None),
    }
}

/// A key that may not be backed up: an error when it was named, a line in
/// the skipped list under --all.
pub(super) fn refuse_or_skip(
    named: bool,
    skipped: &mut Vec<Skipped>,
    info: &KeyInfo,
    (code, reason): (&'static str, String),
) -> Result<()> {
    if named {
        return Err(Error::PolicyRefused {
            key: shown_label(info),
            reason,
        });
    }
    skipped.push(Skipped::new(info, code, reason));
    Ok(())
}

/// `listing`: the token's keys as `--all` read them, when they were read.
pub(super) fn select(
    token: &Token<'_>,
    selection: &Selection,
    listing: Option<Listing>,
    trusted_kek: bool,
    kek_handle: Option<Handle>,
) -> Result<(Selected, Vec<Skipped>)> {
    let (mut listed, named) = match selection {
        Selection::All => (
            match listing {
                Some(listed) => listed,
                None => keys::list_keys(token)?,
            },
            false,
        ),
        Selection::Named(list) => {
            let mut handles = Vec::new();
            for sel in list {
                for h in keys::find_required(token, sel)? {
                    if !handles.contains(&h) {
                        handles.push(h);
                    }
                }
            }
            (Listing::of_handles(token, handles)?, true)
        }
    };
    // Private keys are few: their (label, id), to know which public keys
    // travel with them.
    let private_pairs: HashSet<(String, String)> = (0..listed.len())
        .filter(|&i| listed.class_and_label(i).0 == "private-key")
        .map(|i| {
            let info = listed.info(i);
            (info.label, info.id)
        })
        .collect();
    let shared_labels = shared_labels(&listed);
    let mut skipped = Vec::new();
    let mut publics = HashMap::new();
    let mut failure = None;
    listed.retain(|info| {
        if failure.is_some() {
            return false;
        }
        let mut decide = || -> Result<bool> {
            if info.class == "public-key" {
                if private_pairs.contains(&(info.label.clone(), info.id.clone())) {
                    return Ok(false); // travels with its private half
                }
                let reason =
                    "a public key alone holds nothing secret; `hsmkey key public` exports it";
                refuse_or_skip(
                    named,
                    &mut skipped,
                    info,
                    ("public-key-only", reason.to_string()),
                )?;
                return Ok(false);
            }
            // The key's own policy first: a key that may not leave is
            // reported as such whatever its label.
            let refusal = policy_refusal(info, trusted_kek, kek_handle)
                .filter(|(code, _)| POLICY_SKIPS.contains(code))
                .or_else(|| identity_refusal(info, &shared_labels))
                .or_else(|| policy_refusal(info, trusted_kek, kek_handle));
            if let Some(refusal) = refusal {
                refuse_or_skip(named, &mut skipped, info, refusal)?;
                return Ok(false);
            }
            if info.class == "private-key" {
                if let Some(public) = public_half(token, info)? {
                    publics.insert(info.handle.handle(), public);
                }
            }
            Ok(true)
        };
        match decide() {
            Ok(keep) => keep,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((
        Selected {
            keys: listed,
            publics,
        },
        skipped,
    ))
}

/// The (class, label) pairs more than one key of the listing carries: from
/// the keys' positions sorted by class and label, not a set of every label.
fn shared_labels(listed: &Listing) -> HashSet<(String, String)> {
    let mut order: Vec<u32> = (0..listed.len() as u32).collect();
    order.sort_unstable_by(|a, b| {
        listed
            .class_and_label(*a as usize)
            .cmp(&listed.class_and_label(*b as usize))
    });
    order
        .windows(2)
        .map(|w| {
            (
                listed.class_and_label(w[0] as usize),
                listed.class_and_label(w[1] as usize),
            )
        })
        .filter(|(a, b)| a == b)
        .map(|((c, l), _)| (c.to_string(), l.to_string()))
        .collect()
}

/// A hex CKA_ID as RFC 7512 percent-escapes (`0f0e` -> `%0f%0e`).
fn pct(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| format!("%{}", String::from_utf8_lossy(c)))
        .collect()
}
