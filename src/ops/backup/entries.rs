//! The entries of a backup, restore or verify report: one summary per key,
//! held in a [`Spool`] (in memory up to 256 KiB, then in an anonymous
//! temporary file), so that memory does not grow with the number of keys.
//! Read back in order for the table, the `--json` document (streamed) and
//! the audit line.

use std::io::BufRead;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::ser::{Error as _, SerializeSeq};
use serde::{Deserialize, Serialize};

use super::EntrySummary;
use crate::error::{Error, Result};
use crate::spool::Spool;

/// Bytes of entries kept in memory (about 1,800 keys).
const IN_MEMORY: usize = 256 * 1024;

/// One entry as spooled: the summary the report shows, and for the audit
/// line the key's CKA_ID (hex) as the bundle gives it (none for a key
/// restored under a new name, which has an id of its own) and its version.
#[derive(Serialize, Deserialize)]
struct Stored {
    summary: EntrySummary,
    id: Option<String>,
    version: u32,
}

/// An entry read back: the summary, its id in the bundle, its version.
pub type Entry = (EntrySummary, Option<String>, u32);

/// The entries of a report. Clones share one spool: a report and the audit
/// line read the same entries.
#[derive(Clone)]
pub struct Entries {
    spool: Arc<Mutex<Spool>>,
    len: usize,
}

impl Default for Entries {
    fn default() -> Entries {
        Entries::new()
    }
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entries({})", self.len)
    }
}

impl Entries {
    pub fn new() -> Entries {
        Entries {
            spool: Arc::new(Mutex::new(Spool::new(IN_MEMORY))),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn lock(&self) -> Result<MutexGuard<'_, Spool>> {
        self.spool
            .lock()
            .map_err(|_| Error::Internal("a report's entries were poisoned".into()))
    }

    /// Add an entry; `id`: the CKA_ID the bundle records for it.
    pub fn push(&mut self, summary: EntrySummary, id: Option<String>, version: u32) -> Result<()> {
        let mut line = serde_json::to_vec(&Stored {
            summary,
            id,
            version,
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        line.push(b'\n');
        self.lock()?.push(&line)?;
        self.len += 1;
        Ok(())
    }

    /// Every entry in order, until `f` says stop (false).
    pub fn each(&self, mut f: impl FnMut(Entry) -> Result<bool>) -> Result<()> {
        let mut spool = self.lock()?;
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, spool.reader()?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| Error::Io {
                path: std::env::temp_dir().display().to_string(),
                source: e,
            })?;
            if n == 0 {
                return Ok(());
            }
            let stored: Stored = serde_json::from_slice(&line)
                .map_err(|e| Error::Internal(format!("a spooled entry: {e}")))?;
            if !f((stored.summary, stored.id, stored.version))? {
                return Ok(());
            }
        }
    }

    /// Every entry, in memory (the server's answers, for a few keys).
    pub fn to_vec(&self) -> Result<Vec<EntrySummary>> {
        self.first(self.len)
    }

    /// The first `n` entries.
    pub fn first(&self, n: usize) -> Result<Vec<EntrySummary>> {
        let mut out = Vec::with_capacity(n.min(self.len));
        if n > 0 {
            self.each(|(e, _, _)| {
                out.push(e);
                Ok(out.len() < n)
            })?;
        }
        Ok(out)
    }
}

impl Serialize for Entries {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        let mut failed = None;
        let read = self.each(|(e, _, _)| match seq.serialize_element(&e) {
            Ok(()) => Ok(true),
            Err(e) => {
                failed = Some(e);
                Ok(false)
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        read.map_err(S::Error::custom)?;
        seq.end()
    }
}

impl schemars::JsonSchema for Entries {
    fn inline_schema() -> bool {
        <Vec<EntrySummary>>::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        <Vec<EntrySummary>>::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        <Vec<EntrySummary>>::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Vec<EntrySummary>>::json_schema(generator)
    }
}
