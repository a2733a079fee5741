//! Which entries of a bundle a restore creates, and under which label
//! (`restore --only NAME`, `--rename OLD=NEW`, docs/FORMAT.md, "Restore and
//! verify"). Pure: the options and the entries' labels and ids in, one
//! decision per entry out, and the checks that need the whole bundle at the
//! end. The MAC still covers every line; this only decides what is created.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::formats::bundle::Entry;
use crate::formats::id::{is_version_id, version_id_from_seed};
use crate::hsm::keys::{split_version, validate_name, versioned_label};

/// A key name, or one version of it (`NAME@vK`, K from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pick {
    text: String,
    name: String,
    version: Option<u32>,
}

impl Pick {
    fn parse(text: &str, what: &str) -> Result<Pick> {
        if text.is_empty() {
            return Err(Error::Usage {
                message: format!("{what} needs a key name, got an empty one"),
            });
        }
        let version = text.rsplit_once("@v").and_then(|(name, v)| {
            let number = !name.is_empty()
                && !v.is_empty()
                && v.bytes().all(|b| b.is_ascii_digit())
                && !v.starts_with('0');
            number
                .then(|| v.parse::<u32>().ok().map(|n| (name, n)))
                .flatten()
        });
        Ok(match version {
            Some((name, n)) => Pick {
                text: text.into(),
                name: name.into(),
                version: Some(n),
            },
            None => Pick {
                text: text.into(),
                name: text.into(),
                version: None,
            },
        })
    }

    fn matches(&self, name: &str, version: u32) -> bool {
        self.name == name && self.version.is_none_or(|v| v == version)
    }
}

/// `--rename OLD=NEW`.
#[derive(Debug, Clone)]
struct Rename {
    old: Pick,
    new: String,
}

/// What a restore does with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Not selected by `--only`: read and authenticated, not created.
    LeaveOut,
    /// Created as the bundle records it.
    Keep,
    /// Created under a new label, with a new CKA_ID (hex).
    Rename { label: String, id: String },
    /// A version made by an hsmkey from before version ids: created under
    /// its label with a version id (hex), so that the token takes it for
    /// the version the bundle records (docs/KEYS.md, "Versions").
    VersionId { id: String },
}

/// The key name and version an entry records, when its label agrees with
/// them (`NAME@vk`, or the bare name for version 1); otherwise the entry is
/// version 1 of its whole label. Bundles record the version, so versions
/// made before version ids were introduced are still versions.
pub(super) fn recorded_version(entry: &Entry) -> (String, u32) {
    if entry.version >= 2 && versioned_label(&entry.name, entry.version) == entry.label {
        (entry.name.clone(), entry.version)
    } else {
        (entry.label.clone(), 1)
    }
}

/// The parsed `--only` and `--rename` options, and what they matched.
#[derive(Debug, Clone, Default)]
pub(super) struct Choice {
    only: Vec<Pick>,
    renames: Vec<Rename>,
    only_used: BTreeSet<usize>,
    renames_used: BTreeSet<usize>,
    /// Final key name -> the sources that end up under it (an original name,
    /// or one renamed version's label).
    outputs: BTreeMap<String, BTreeSet<String>>,
}

impl Choice {
    /// Check the options on their own: the rename syntax, every NEW a valid
    /// key name, no NEW given twice, no OLD renamed twice.
    pub(super) fn new(only: &[String], renames: &[String]) -> Result<Choice> {
        let only = only
            .iter()
            .map(|o| Pick::parse(o, "--only"))
            .collect::<Result<Vec<_>>>()?;
        let mut parsed: Vec<Rename> = Vec::new();
        for text in renames {
            let (old, new) = text
                .split_once('=')
                .filter(|(o, n)| !o.is_empty() && !n.is_empty())
                .ok_or_else(|| Error::Usage {
                    message: format!("--rename takes OLD=NEW (a key name or NAME@vK, then the new name), not '{text}'"),
                })?;
            validate_name(new)?;
            let old = Pick::parse(old, "--rename")?;
            if let Some(other) = parsed.iter().find(|r| r.new == new) {
                return Err(Error::Usage {
                    message: format!(
                        "--rename gives the name '{new}' twice ({}={new} and {text})",
                        other.old.text
                    ),
                });
            }
            if let Some(other) = parsed.iter().find(|r| {
                r.old.name == old.name
                    && (r.old.version.is_none()
                        || old.version.is_none()
                        || r.old.version == old.version)
            }) {
                return Err(Error::Usage {
                    message: format!(
                        "--rename renames '{}' twice ({}={} and {text})",
                        old.text, other.old.text, other.new
                    ),
                });
            }
            parsed.push(Rename {
                old,
                new: new.into(),
            });
        }
        Ok(Choice {
            only,
            renames: parsed,
            ..Choice::default()
        })
    }

    /// The decision for one entry, by its recorded name and version
    /// ([`recorded_version`]), label and id (hex).
    pub(super) fn decide(&mut self, entry: &Entry) -> Decision {
        let (name, version) = recorded_version(entry);
        let (label, id) = (entry.label.as_str(), entry.id.as_str());
        let picked = |p: &Pick| p.matches(&name, version) || (version == 1 && p.text == name);
        if !self.only.is_empty() {
            let hits: Vec<usize> = (0..self.only.len())
                .filter(|&i| picked(&self.only[i]))
                .collect();
            if hits.is_empty() {
                return Decision::LeaveOut;
            }
            self.only_used.extend(hits);
        }
        let hit = (0..self.renames.len()).find(|&i| picked(&self.renames[i].old));
        let (source, decision) = match hit {
            None => ((name.clone(), name.clone()), keep(&name, version, id)),
            Some(i) => {
                self.renames_used.insert(i);
                let rename = &self.renames[i];
                let whole = rename.old.version.is_none() && rename.old.text == rename.old.name;
                let (source, new_version) = if whole || (version == 1 && rename.old.text == name) {
                    (name.clone(), version)
                } else {
                    // One version becomes version 1 of a new name.
                    (label.to_string(), 1)
                };
                let new_label = versioned_label(&rename.new, new_version);
                let id = renamed_id(id, &new_label);
                let id = if new_version >= 2 {
                    hex::encode(version_id_from_seed(
                        &rename.new,
                        new_version,
                        id.as_bytes(),
                    ))
                } else {
                    id
                };
                (
                    (source, rename.new.clone()),
                    Decision::Rename {
                        label: new_label,
                        id,
                    },
                )
            }
        };
        let (source, final_name) = source;
        // Without --rename every key keeps its own name: two sources can
        // meet under one name only through a rename, and a map of every
        // entry's name would be memory that grows with the bundle.
        if !self.renames.is_empty() {
            self.outputs.entry(final_name).or_default().insert(source);
        }
        decision
    }

    /// Once every entry was seen: every `--only` and `--rename` matched a
    /// (selected) entry, and no two keys end up under one name.
    pub(super) fn finish(&self) -> Result<()> {
        let missing = |picks: Vec<&Pick>, used: &BTreeSet<usize>| -> Vec<String> {
            picks
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !used.contains(i))
                .map(|(_, p)| p.text.clone())
                .collect()
        };
        let only = missing(self.only.iter().collect(), &self.only_used);
        if !only.is_empty() {
            return Err(Error::KeyNotFound {
                key: format!("{} (--only; not in the bundle)", only.join(", ")),
            });
        }
        let renamed = missing(
            self.renames.iter().map(|r| &r.old).collect(),
            &self.renames_used,
        );
        if !renamed.is_empty() {
            return Err(Error::KeyNotFound {
                key: format!(
                    "{} (--rename; not in the bundle{})",
                    renamed.join(", "),
                    if self.only.is_empty() {
                        ""
                    } else {
                        " or not selected by --only"
                    }
                ),
            });
        }
        if let Some((name, sources)) = self.outputs.iter().find(|(_, s)| s.len() > 1) {
            let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
            return Err(Error::Usage {
                message: format!(
                    "after --rename, two keys would be restored under the name '{name}' (from {})",
                    sources.join(" and ")
                ),
            });
        }
        Ok(())
    }
}

/// An entry kept under its own label: a recorded version whose id is not a
/// version id (made before they were) gets one, derived from its old id so
/// that every run gives the same.
fn keep(name: &str, version: u32, id: &str) -> Decision {
    let bytes = hex::decode(id).unwrap_or_default();
    if version >= 2 && !is_version_id(name, version, &bytes) {
        Decision::VersionId {
            id: hex::encode(version_id_from_seed(name, version, id.as_bytes())),
        }
    } else {
        Decision::Keep
    }
}

impl Decision {
    /// Make the entry what this decision creates: false when it is left
    /// out (the entry is then unchanged).
    pub(super) fn apply(&self, entry: &mut Entry) -> bool {
        match self {
            Decision::LeaveOut => false,
            Decision::Keep => true,
            Decision::VersionId { id } => {
                entry.id = id.clone();
                true
            }
            Decision::Rename { label, id } => {
                let (name, version) = split_version(label);
                entry.name = name.to_string();
                entry.version = version;
                entry.label = label.clone();
                entry.id = id.clone();
                true
            }
        }
    }
}

/// The CKA_ID of a renamed key: derived from its old id and new label, so it
/// differs from the original's (a renamed copy can sit beside it) and is the
/// same on every run (a re-run with `--on-conflict skip` finds it).
pub(super) fn renamed_id(old_id: &str, new_label: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"hsmkey restore --rename\0");
    h.update(old_id.as_bytes());
    h.update([0]);
    h.update(new_label.as_bytes());
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(only: &[&str], renames: &[&str]) -> Result<Choice> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Choice::new(&s(only), &s(renames))
    }

    /// An entry as a bundle records it: a label `NAME@vk` is version k.
    fn e(label: &str, id: &str) -> Entry {
        let (name, version) = split_version(label);
        Entry {
            label: label.into(),
            name: name.into(),
            version,
            id: id.into(),
            class: "secret-key".into(),
            key_type: "aes".into(),
            size: Some(256),
            usage: vec!["encrypt".into()],
            backup_policy: "any".into(),
            kcv: None,
            public: None,
            wrap: "rfc3394".into(),
            wrapped: String::new(),
        }
    }

    /// What a legacy version 2 ("02") becomes when kept.
    fn legacy(name: &str, version: u32, id: &str) -> Decision {
        Decision::VersionId {
            id: hex::encode(version_id_from_seed(name, version, id.as_bytes())),
        }
    }

    fn code<T>(r: Result<T>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn nothing_given_keeps_everything() {
        let mut c = choice(&[], &[]).unwrap();
        assert_eq!(c.decide(&e("a", "01")), Decision::Keep);
        // A version 2 recorded with a legacy id gets a version id.
        assert_eq!(c.decide(&e("a@v2", "02")), legacy("a", 2, "02"));
        assert!(c.finish().is_ok());
    }

    #[test]
    fn only_a_name_takes_every_version() {
        let mut c = choice(&["pay"], &[]).unwrap();
        assert_eq!(c.decide(&e("pay", "01")), Decision::Keep);
        assert_eq!(c.decide(&e("pay@v2", "02")), legacy("pay", 2, "02"));
        assert_eq!(c.decide(&e("payroll", "03")), Decision::LeaveOut);
        assert_eq!(c.decide(&e("other@v2", "04")), Decision::LeaveOut);
        assert!(c.finish().is_ok());
    }

    #[test]
    fn only_a_version_takes_that_version() {
        let mut c = choice(&["pay@v1", "x@v3"], &[]).unwrap();
        assert_eq!(c.decide(&e("pay", "01")), Decision::Keep);
        assert_eq!(c.decide(&e("pay@v2", "02")), Decision::LeaveOut);
        assert_eq!(c.decide(&e("x@v3", "03")), legacy("x", 3, "03"));
        assert!(c.finish().is_ok());
    }

    #[test]
    fn an_unmatched_only_is_not_found_and_named() {
        let mut c = choice(&["pay", "nosuch", "pay@v7"], &[]).unwrap();
        c.decide(&e("pay", "01"));
        let err = c.finish().unwrap_err();
        assert_eq!(err.code(), "HK1004");
        let text = err.to_string() + &format!("{err:?}");
        assert!(text.contains("nosuch") && text.contains("pay@v7"), "{text}");
    }

    #[test]
    fn a_name_rename_keeps_the_versions() {
        let mut c = choice(&[], &["pay=old-pay"]).unwrap();
        let d1 = c.decide(&e("pay", "01"));
        let d2 = c.decide(&e("pay@v2", "02"));
        assert_eq!(
            d1,
            Decision::Rename {
                label: "old-pay".into(),
                id: renamed_id("01", "old-pay")
            }
        );
        assert_eq!(
            d2,
            Decision::Rename {
                label: "old-pay@v2".into(),
                id: hex::encode(version_id_from_seed(
                    "old-pay",
                    2,
                    renamed_id("02", "old-pay@v2").as_bytes()
                ))
            }
        );
        assert_eq!(c.decide(&e("other", "03")), Decision::Keep);
        assert!(c.finish().is_ok());
    }

    #[test]
    fn a_version_rename_makes_version_one_of_a_new_name() {
        let mut c = choice(&["pay@v1"], &["pay@v1=pay-2025"]).unwrap();
        match c.decide(&e("pay", "01")) {
            Decision::Rename { label, id } => {
                assert_eq!(label, "pay-2025");
                assert_ne!(id, "01");
                assert_eq!(id.len(), 32);
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(c.decide(&e("pay@v2", "02")), Decision::LeaveOut);
        assert!(c.finish().is_ok());
    }

    #[test]
    fn versions_follow_the_recorded_version_and_their_id() {
        let mut c = choice(&[], &[]).unwrap();
        // A version id already: kept as it is.
        let id = hex::encode(crate::formats::id::version_id("k", 2, &[1; 8]));
        assert_eq!(c.decide(&e("k@v2", &id)), Decision::Keep);
        // A standalone key whose label looks like a version (recorded as
        // version 1 of its whole label): kept, selected by its label only.
        let mut standalone = e("db@v2", "05");
        standalone.name = "db@v2".into();
        standalone.version = 1;
        assert_eq!(c.decide(&standalone), Decision::Keep);
        let mut c = choice(&["db"], &[]).unwrap();
        assert_eq!(c.decide(&standalone), Decision::LeaveOut);
        let mut c = choice(&["db@v2"], &["db@v2=db-old"]).unwrap();
        assert_eq!(
            c.decide(&standalone),
            Decision::Rename {
                label: "db-old".into(),
                id: renamed_id("05", "db-old")
            }
        );
        assert!(c.finish().is_ok());
    }

    #[test]
    fn renamed_ids_are_stable_and_new() {
        assert_eq!(renamed_id("01", "a"), renamed_id("01", "a"));
        assert_ne!(renamed_id("01", "a"), renamed_id("01", "b"));
        assert_ne!(renamed_id("01", "a"), renamed_id("02", "a"));
    }

    #[test]
    fn bad_renames_are_refused_up_front() {
        assert_eq!(code(choice(&[], &["pay"])), "HK1007");
        assert_eq!(code(choice(&[], &["=x"])), "HK1007");
        assert_eq!(code(choice(&[], &["pay="])), "HK1007");
        assert_eq!(code(choice(&[], &["pay=x@v2"])), "HK1301");
        assert_eq!(code(choice(&[], &["a=x", "b=x"])), "HK1007");
        assert_eq!(code(choice(&[], &["a=x", "a=y"])), "HK1007");
        assert_eq!(code(choice(&[], &["a=x", "a@v2=y"])), "HK1007");
        assert_eq!(code(choice(&[], &["a@v1=x", "a@v2=y"])), "ok");
        assert_eq!(code(choice(&[""], &[])), "HK1007");
    }

    #[test]
    fn a_rename_of_nothing_selected_is_not_found() {
        let mut c = choice(&["a"], &["b=c"]).unwrap();
        c.decide(&e("a", "01"));
        c.decide(&e("b", "02"));
        assert_eq!(code(c.finish()), "HK1004");
        let mut c = choice(&[], &["zz=c"]).unwrap();
        c.decide(&e("a", "01"));
        assert_eq!(code(c.finish()), "HK1004");
    }

    #[test]
    fn a_new_name_taken_by_another_restored_key_is_refused() {
        let mut c = choice(&[], &["a=b"]).unwrap();
        c.decide(&e("a", "01"));
        c.decide(&e("b@v2", "02"));
        assert_eq!(code(c.finish()), "HK1007");
        // The same name, left out, is no clash.
        let mut c = choice(&["a"], &["a=b"]).unwrap();
        c.decide(&e("a", "01"));
        assert_eq!(c.decide(&e("b", "02")), Decision::LeaveOut);
        assert!(c.finish().is_ok());
        // Swapping two names is fine.
        let mut c = choice(&[], &["a=b", "b=a"]).unwrap();
        c.decide(&e("a", "01"));
        c.decide(&e("b", "02"));
        assert!(c.finish().is_ok());
    }
}
