//! Backup, restore and verify (docs/FORMAT.md): many keys with all their
//! versions into one bundle that only the intended token or password holder
//! can open, wrapped in the token, checked end to end by a MAC made in the
//! token, restored all-or-nothing. This file owns what the use-cases share:
//! the options and reports, the bundle input, the opened bundle, and the
//! small readers of entries; each use-case lives in its own file.

mod choose;
mod conflict;
mod entries;
mod mac;
mod protection;
mod restore;
mod select;
mod verify;
mod write;

use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use secrecy::SecretString;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::bundle::{
    self, unb64, BundleReader, Entry, Header, Line, PublicPart, SourceToken,
};
use crate::formats::spki;
use crate::hsm::keys::{KeyInfo, KeySelector};
use crate::hsm::wrap::{OaepHash, PublicValues, WrapSupport};
use crate::hsm::Handle;

pub use entries::Entries;
pub(crate) use protection::resolve_kek;
pub use protection::{check_header, ARGON2_M_KIB, ARGON2_P, ARGON2_T};
pub use restore::restore;
pub use verify::verify;
pub use write::backup;

/// How a new bundle is protected.
pub enum Protect {
    /// An AES KEK present on both tokens.
    Kek(Box<KeySelector>),
    /// A password that must meet the policy (docs/SECURITY.md), stretched
    /// with Argon2id.
    Password(SecretString, crate::formats::password::Policy),
    /// The recipient token's RSA public key.
    Recipient {
        public: spki::RsaPublic,
        hash: OaepHash,
    },
}

/// What opens a bundle on restore or verify.
pub enum Unprotect {
    Kek(Box<KeySelector>),
    Password(SecretString),
    /// The recipient's RSA private key, in this token.
    RecipientKey(Box<KeySelector>),
}

/// Which keys to back up.
pub enum Selection {
    /// Every key whose policy allows it; the others are listed as skipped.
    All,
    /// These keys (every version of a bare name); one that may not be backed
    /// up is an error.
    Named(Vec<KeySelector>),
}

/// One key in a report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct EntrySummary {
    pub label: String,
    pub class: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub size: Option<u64>,
    pub kcv: Option<String>,
    pub wrap: String,
    /// The label in the bundle, when `restore --rename` gave the key a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// The CKA_ID in the bundle (hex), when restore gave a version made by
    /// an earlier hsmkey a version id (docs/KEYS.md, "Versions").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_from: Option<String>,
}

/// A key left out, and why.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Skipped {
    pub label: String,
    /// CKA_ID in hex ("" when the key has none): with the label, which
    /// object this is, even when labels are shared or missing.
    pub id: String,
    pub class: String,
    /// Stable reason code (docs/FORMAT.md, "What backup takes"):
    /// `policy-none`, `policy-trusted`, `bundle-kek` and `public-key-only`
    /// ([`POLICY_SKIPS`]) are the key's own policy or no loss; any other
    /// makes a backup fail unless skips are allowed.
    pub code: &'static str,
    pub reason: String,
}

/// Skip codes that follow from the key's own policy: a complete backup may
/// leave these out.
/// A public key alone is not a loss either: it holds nothing secret, and
/// `hsmkey key public` exports it.
pub const POLICY_SKIPS: [&str; 4] = [
    "policy-none",
    "policy-trusted",
    "bundle-kek",
    "public-key-only",
];

impl Skipped {
    fn new(info: &KeyInfo, code: &'static str, reason: String) -> Skipped {
        Skipped {
            label: shown_label(info),
            id: info.id.clone(),
            class: info.class.clone(),
            code,
            reason,
        }
    }

    /// "label, id HEX" (the label alone when it already names the id, for a
    /// key without one).
    pub fn shown(&self) -> String {
        if self.label.starts_with("(no label") {
            self.label.clone()
        } else if self.id.is_empty() {
            format!("{}, no id", self.label)
        } else {
            format!("{}, id {}", self.label, self.id)
        }
    }

    /// Whether this skip is the key's own policy (not a loss).
    pub fn is_policy(&self) -> bool {
        POLICY_SKIPS.contains(&self.code)
    }
}

/// How a key is named in reports: its label, or for keys other tools made
/// without one, its id.
fn shown_label(info: &KeyInfo) -> String {
    if info.label.is_empty() {
        format!(
            "(no label, id {})",
            if info.id.is_empty() { "none" } else { &info.id }
        )
    } else {
        info.label.clone()
    }
}

/// How `backup` runs besides what and where.
pub struct BackupOptions<'a> {
    /// Write the bundle even when keys are left out for reasons other than
    /// their own policy (`--allow-skips`).
    pub allow_skips: bool,
    /// Re-read the written bundle in the token before reporting success.
    pub verify: bool,
    pub cancel: &'a AtomicBool,
    /// Called once the token's keys are listed (`--all`: every object, in
    /// one pass) and before anything else is done with them: the audit
    /// trail takes its key from that listing here.
    pub listed: Option<&'a dyn Fn() -> Result<()>>,
}

/// Where a bundle is written, and how it is read back for `--verify`.
pub trait BundleSink: Write {
    /// Everything written so far, flushed, as an input to read again.
    fn reread(&mut self) -> Result<Input>;
}

impl BundleSink for Vec<u8> {
    fn reread(&mut self) -> Result<Input> {
        Ok(Input::Bytes(self.clone()))
    }
}

/// A buffered file sink that can be read back by path.
pub struct FileSink<'f> {
    pub writer: std::io::BufWriter<&'f mut std::fs::File>,
    pub path: PathBuf,
}

impl Write for FileSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl BundleSink for FileSink<'_> {
    /// Read back through the same open file (a temporary file in the
    /// output's folder, or the spool of `--out -`), never by path.
    fn reread(&mut self) -> Result<Input> {
        let io = |e| Error::Io {
            path: self.path.display().to_string(),
            source: e,
        };
        self.writer.flush().map_err(io)?;
        let file = self.writer.get_ref().try_clone().map_err(io)?;
        Ok(Input::Spooled(file))
    }
}

/// What `backup` did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BackupReport {
    pub scheme: String,
    pub entries: Entries,
    pub skipped: Vec<Skipped>,
    /// Keys backed up with something to know (code `not-sensitive`: the key
    /// is CKA_SENSITIVE=false on its token). A backup with warnings is
    /// complete; it still exits 0.
    pub warnings: Vec<Warning>,
}

/// Something about a key a complete backup carries that its operator
/// should know.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Warning {
    pub label: String,
    pub class: String,
    /// Stable code: `not-sensitive`.
    pub code: &'static str,
    pub message: String,
}

/// What `restore` or `verify` did (or, with --dry-run, would do).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RestoreReport {
    pub scheme: String,
    pub source: SourceToken,
    pub created_at: String,
    pub tool: String,
    pub dry_run: bool,
    pub entries: Entries,
    pub skipped: Vec<Skipped>,
    /// Entries read and authenticated but not created: not selected by
    /// `restore --only` (code `not-selected`).
    pub left_out: Vec<Skipped>,
    pub notes: Vec<String>,
}

/// Progress callback: (done, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Where a bundle is read from: a file (read twice), blob bytes, or an open
/// file read at offsets (a bundle from standard input, held in an anonymous
/// temporary file; a bundle being written, read back for `backup --verify`).
pub enum Input {
    File(PathBuf),
    Bytes(Vec<u8>),
    Spooled(std::fs::File),
}

impl Input {
    /// Open `path`, telling a blob from a bundle by its first bytes. A blob
    /// is read once, bounded while reading (a FIFO has no size to check
    /// first); a bundle is read twice, so it must be a regular file.
    /// `-` is standard input (see [`Input::from_stdin`]).
    pub fn open(path: &Path) -> Result<Input> {
        if crate::input::is_stdio(path) {
            return Input::from_stdin();
        }
        let io = |e| crate::input::input_error("bundle", path, e);
        let mut file = std::fs::File::open(path).map_err(io)?;
        // Up to 64 bytes even from a pipe, which may return fewer per read.
        let mut start = Vec::with_capacity(64);
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 64), &mut start)
            .map_err(io)?;
        if bundle::is_blob(&start) {
            crate::input::read_limited(file, &mut start, crate::input::limits::BLOB, "blob", path)?;
            let text = String::from_utf8(start).map_err(|_| Error::BundleCorrupt {
                reason: "a blob is ASCII text; this file is not".into(),
            })?;
            return Ok(Input::Bytes(bundle::decode_blob(&text)?));
        }
        if !file.metadata().map_err(io)?.file_type().is_file() {
            return Err(Error::BadInput {
                what: format!("bundle {}", path.display()),
                reason: "a bundle is read twice (checked whole, then restored), so it must be \
                         a regular file, not a pipe or FIFO; copy it to a file first, or give \
                         it on standard input as `-`"
                    .into(),
            });
        }
        Ok(Input::File(path.to_path_buf()))
    }

    /// A bundle or blob from standard input. A blob is read as from a file;
    /// a bundle is copied into an anonymous temporary file (nothing is left
    /// behind, even if the process is killed), at most
    /// [`limits::BUNDLE_STDIN`](crate::input::limits::BUNDLE_STDIN) bytes.
    /// A line longer than a bundle allows stops the copy there: reading the
    /// copy then fails on that line exactly as reading the file would.
    pub fn from_stdin() -> Result<Input> {
        use crate::input::{claim_stdin, input_error, limits, read_limited, too_large};
        let path = Path::new("-");
        claim_stdin("bundle")?;
        let mut stdin = std::io::stdin().lock();
        let io = |e| input_error("bundle", path, e);
        let mut start = Vec::with_capacity(64);
        (&mut stdin).take(64).read_to_end(&mut start).map_err(io)?;
        if bundle::is_blob(&start) {
            read_limited(stdin, &mut start, limits::BLOB, "blob", path)?;
            let text = String::from_utf8(start).map_err(|_| Error::BundleCorrupt {
                reason: "a blob is ASCII text; this input is not".into(),
            })?;
            return Ok(Input::Bytes(bundle::decode_blob(&text)?));
        }
        let spool_error = |e| Error::Io {
            path: std::env::temp_dir().display().to_string(),
            source: e,
        };
        let mut spool = tempfile::tempfile().map_err(spool_error)?;
        let mut line = 0usize;
        let mut total = 0u64;
        let mut chunk = start;
        loop {
            if chunk.is_empty() {
                chunk.resize(64 * 1024, 0);
                let n = stdin.read(&mut chunk).map_err(io)?;
                if n == 0 {
                    break;
                }
                chunk.truncate(n);
            }
            total += chunk.len() as u64;
            if total > limits::BUNDLE_STDIN {
                return Err(too_large("bundle", path, limits::BUNDLE_STDIN));
            }
            spool.write_all(&chunk).map_err(spool_error)?;
            let mut too_long = false;
            for b in &chunk {
                line = if *b == b'\n' { 0 } else { line + 1 };
                too_long |= line > bundle::MAX_LINE;
            }
            chunk.clear();
            if too_long {
                break;
            }
        }
        Ok(Input::Spooled(spool))
    }

    /// Another handle on the same input (the audit line reads the bundle
    /// again when it is written): a file by its path, a spooled one by a
    /// duplicated descriptor, bytes by a copy.
    pub fn try_clone(&self) -> Result<Input> {
        Ok(match self {
            Input::File(p) => Input::File(p.clone()),
            Input::Bytes(b) => Input::Bytes(b.clone()),
            Input::Spooled(f) => Input::Spooled(f.try_clone().map_err(|e| Error::Io {
                path: "-".into(),
                source: e,
            })?),
        })
    }

    /// A fresh reader from the first byte (restore and verify read twice).
    pub(crate) fn reader(&self) -> Result<Box<dyn BufRead + '_>> {
        match self {
            Input::File(p) => {
                let f = std::fs::File::open(p)
                    .map_err(|e| crate::input::input_error("bundle", p, e))?;
                Ok(Box::new(BufReader::with_capacity(64 * 1024, f)))
            }
            Input::Bytes(b) => Ok(Box::new(Cursor::new(&b[..]))),
            Input::Spooled(f) => Ok(Box::new(BufReader::with_capacity(
                64 * 1024,
                ReadAt { file: f, pos: 0 },
            ))),
        }
    }
}

/// Reads an open file from the start at explicit offsets, so that several
/// readers of one file never move each other.
struct ReadAt<'f> {
    file: &'f std::fs::File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The bundle opened on this token: the unwrapping key and the MAC key.
struct Opened {
    header: Header,
    unwrapping: Handle,
    mac_key: Handle,
    trusted_kek: bool,
}

/// Conflict handling on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    Fail,
    /// Skip an entry whose key is already there (same label, id and KCV).
    Skip,
}

/// Restore options.
pub struct RestoreOptions<'a> {
    pub dry_run: bool,
    pub on_conflict: OnConflict,
    pub cancel: &'a AtomicBool,
    /// Where this token's restore journal lives: the keys a restore is
    /// creating, removed when it ends. One left by a killed run tells the
    /// next `--on-conflict skip` which keys may be half-written.
    pub journal: Option<PathBuf>,
    /// `--only`: key names (every version) or `NAME@vK`; empty for all.
    pub only: Vec<String>,
    /// `--rename OLD=NEW`, as given.
    pub rename: Vec<String>,
}

fn read_header(input: &Input) -> Result<Header> {
    let mut reader = BundleReader::new(input.reader()?);
    match reader.next_line()? {
        Some(bundle::ReadLine {
            line: Line::Header(h),
            ..
        }) => Ok(h),
        _ => Err(Error::BundleCorrupt {
            reason: "no header".into(),
        }),
    }
}

fn entry_summary(e: &Entry) -> EntrySummary {
    EntrySummary {
        label: e.label.clone(),
        class: e.class.clone(),
        key_type: e.key_type.clone(),
        size: e.size,
        kcv: e.kcv.as_ref().map(|k| k.value.clone()),
        wrap: e.wrap.clone(),
        renamed_from: None,
        id_from: None,
    }
}

fn public_values_of(part: &PublicPart) -> Result<PublicValues> {
    let bad = |reason: String| Error::BundleCorrupt { reason };
    Ok(match part {
        PublicPart::Rsa {
            modulus,
            public_exponent,
            ..
        } => PublicValues::Rsa {
            modulus: unb64("modulus", modulus).map_err(bad)?,
            exponent: unb64("public_exponent", public_exponent).map_err(bad)?,
        },
        PublicPart::Ec { params, point, .. } => PublicValues::Ec {
            params: unb64("params", params).map_err(bad)?,
            point: unb64("point", point).map_err(bad)?,
        },
    })
}

fn check_entry_capability(support: &WrapSupport, entry: &Entry) -> Result<u64> {
    support
        .unwrap_mechanism(&entry.wrap)
        .ok_or_else(|| Error::NotCapable {
            capability: format!("{} key wrap", entry.wrap),
            detail: format!(
                "{} was wrapped with {}; known-answer tests on this token found {}",
                entry.label,
                entry.wrap,
                support.describe()
            ),
            alternatives: "Restore on a token with this algorithm (`hsmkey token mechanisms`)."
                .into(),
        })
}

/// Read just the header (for messages and `--dry-run` summaries).
pub fn header_of(input: &Input) -> Result<Header> {
    read_header(input)
}

#[cfg(test)]
mod tests;
