//! The keys a line names (docs/AUDIT.md, `keys`): listed one by one as the
//! command found them, or, for bulk work, read when the line is written
//! from the report's entries or from the bundle itself, so that a command
//! moving many keys holds no list of them for its line.

use serde::ser::{Error as _, SerializeSeq};
use serde::Serialize;

use super::line::KeyRef;
use crate::formats::bundle::{BundleReader, Line};
use crate::ops::backup::{Entries, Input};

/// Where a line's keys come from.
pub enum Keys {
    /// These, as noted.
    Listed(Vec<KeyRef>),
    /// The entries of a backup, restore or verify report, with the ids the
    /// bundle gives them (a key restored under a new name: none).
    Reported(Entries),
    /// Every entry of a bundle (a restore or verify that failed: the keys
    /// the bundle holds).
    Bundle(Input),
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::Listed(Vec::new())
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keys::Listed(keys) => f.debug_tuple("Listed").field(keys).finish(),
            Keys::Reported(entries) => f.debug_tuple("Reported").field(entries).finish(),
            Keys::Bundle(_) => f.write_str("Bundle"),
        }
    }
}

impl Keys {
    /// The first key, when they are listed here.
    pub fn first_mut(&mut self) -> Option<&mut KeyRef> {
        match self {
            Keys::Listed(keys) => keys.first_mut(),
            _ => None,
        }
    }

    /// Each key in order, until `f` says stop (false).
    pub fn each(&self, mut f: impl FnMut(KeyRef) -> bool) -> crate::Result<()> {
        match self {
            Keys::Listed(keys) => {
                for k in keys {
                    if !f(k.clone()) {
                        break;
                    }
                }
                Ok(())
            }
            Keys::Reported(entries) => entries.each(|(e, id, version)| {
                Ok(f(KeyRef {
                    label: e.label,
                    id,
                    class: Some(e.class),
                    kcv: e.kcv,
                    version: Some(version),
                }))
            }),
            Keys::Bundle(input) => {
                let mut reader = BundleReader::new(input.reader()?);
                while let Some(l) = reader.next_line()? {
                    if let Line::Key(e) = l.line {
                        let key = KeyRef {
                            label: e.label,
                            id: Some(e.id),
                            class: Some(e.class),
                            kcv: e.kcv.map(|k| k.value),
                            version: Some(e.version),
                        };
                        if !f(key) {
                            break;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Keys {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        if let Keys::Listed(keys) = self {
            return keys.serialize(serializer);
        }
        let mut seq = serializer.serialize_seq(None)?;
        let mut failed = None;
        let read = self.each(|k| match seq.serialize_element(&k) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        read.map_err(S::Error::custom)?;
        seq.end()
    }
}
