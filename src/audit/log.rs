//! The audit log file: where it lives, opening it (created 0600 in a 0700
//! folder), the checks made before a command starts (appendable, last line
//! whole, space left), and the locked append: read the last line (as a
//! stream: a bulk line can be megabytes), write one whole line with
//! O_APPEND in a single call (in pieces when it was spooled to a file),
//! fsync.
//!
//! Every hsmkey process appending to one log takes an exclusive `flock` on
//! it from reading the last line to the end of the append (and the update of
//! the chain head in the token), so the chain stays one line after another
//! whatever the number of processes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::line::{self, Last};
use crate::error::{Error, Result};
use crate::spool::Spool;

/// Free space the log's file system must have before a command starts.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// Bytes read at a time when looking for the last line from the end.
const TAIL_CHUNK: u64 = 64 * 1024;

/// The default log: `$XDG_STATE_HOME/hsmkey/audit.jsonl`, else
/// `~/.local/state/hsmkey/audit.jsonl`.
pub fn default_path() -> Result<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .ok_or_else(|| Error::AuditUnavailable {
            path: "(none)".into(),
            reason:
                "neither XDG_STATE_HOME nor HOME is set: give --audit-log PATH or HSMKEY_AUDIT_LOG"
                    .into(),
        })?;
    Ok(state.join("hsmkey").join("audit.jsonl"))
}

fn unavailable(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::AuditUnavailable {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// An open audit log.
pub struct AuditLog {
    path: PathBuf,
    file: File,
}

/// The log's last line, as the next line needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// `None` for an empty log; else the last line's seq and log id with its
    /// SHA-256, or why it is not an audit line.
    pub last: Option<std::result::Result<(Last, String), String>>,
}

impl AuditLog {
    /// Open (or create) the log for appending and reading. Its folder is
    /// made (0700) when missing; a new log is 0600.
    pub fn open(path: &Path) -> Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                let mut b = std::fs::DirBuilder::new();
                b.recursive(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::DirBuilderExt;
                    b.mode(0o700);
                }
                b.create(dir).map_err(|e| unavailable(path, e))?;
            }
        }
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|e| unavailable(path, e))?;
        let meta = file.metadata().map_err(|e| unavailable(path, e))?;
        if !meta.is_file() {
            return Err(unavailable(path, "not a regular file"));
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Open a log only to read it (`audit verify`, `audit show`).
    pub fn open_read(path: &Path) -> Result<File> {
        let file = File::open(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What a command checks before it starts: the log can be appended to
    /// (it was opened so), its last line is whole, and its file system has
    /// [`MIN_FREE_BYTES`] free. Returns the tail as it is now.
    pub fn preflight(&mut self) -> Result<Tail> {
        // The field types differ between platforms (u32 on some): widened.
        #[allow(clippy::useless_conversion)]
        let free = nix::sys::statvfs::fstatvfs(&self.file)
            .map(|s| u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())));
        match free {
            Ok(bytes) if bytes < MIN_FREE_BYTES => {
                return Err(unavailable(
                    &self.path,
                    format!("its file system has {bytes} bytes free; {MIN_FREE_BYTES} are needed"),
                ))
            }
            _ => {}
        }
        self.file
            .lock_shared()
            .map_err(|e| unavailable(&self.path, e))?;
        let tail = self.tail();
        let _ = self.file.unlock();
        tail
    }

    /// Take the exclusive lock for an append; released when the guard goes.
    pub fn lock(&mut self) -> Result<Locked<'_>> {
        self.file.lock().map_err(|e| unavailable(&self.path, e))?;
        Ok(Locked { log: self })
    }

    /// The last line. A log that does not end with a newline was cut in the
    /// middle of a line: nothing is appended to it.
    fn tail(&mut self) -> Result<Tail> {
        let len = self
            .file
            .seek(SeekFrom::End(0))
            .map_err(|e| unavailable(&self.path, e))?;
        if len == 0 {
            return Ok(Tail { last: None });
        }
        let mut end = [0u8; 1];
        self.read_at(len - 1, &mut end)?;
        if end[0] != b'\n' {
            return Err(unavailable(
                &self.path,
                "its last line is incomplete (no newline at the end): run `hsmkey audit verify`, then move the log aside to start a new one",
            ));
        }
        // Look back from the final newline for the one before it; the line
        // itself is then read as a stream (a line naming every key of a
        // bulk backup can be many megabytes).
        let body_end = len - 1;
        let mut start = 0;
        let mut upto = body_end;
        let mut chunk = vec![0u8; TAIL_CHUNK as usize];
        while upto > 0 {
            let from = upto.saturating_sub(TAIL_CHUNK);
            let part = &mut chunk[..(upto - from) as usize];
            self.read_at(from, part)?;
            if let Some(pos) = part.iter().rposition(|b| *b == b'\n') {
                start = from + pos as u64 + 1;
                break;
            }
            upto = from;
        }
        let size = body_end - start;
        let mut end = vec![0u8; size.min(line::LAST_END as u64) as usize];
        self.read_at(body_end - end.len() as u64, &mut end)?;
        let body = std::io::Read::take(
            ReadAt {
                file: &self.file,
                pos: start,
            },
            size,
        );
        Ok(Tail {
            last: Some(line::parse_last(body, &end)),
        })
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(buf))
            .map_err(|e| unavailable(&self.path, e))
    }
}

/// Reads the log at explicit offsets.
struct ReadAt<'f> {
    file: &'f File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The log under its exclusive lock.
pub struct Locked<'a> {
    log: &'a mut AuditLog,
}

impl Locked<'_> {
    /// The last line as it is now, under the lock.
    pub fn tail(&mut self) -> Result<Tail> {
        self.log.tail()
    }

    /// Append one line, spooled with its newline: a single write when it
    /// is in memory (every line but those naming thousands of keys), else
    /// in pieces (the lock keeps other hsmkey processes out), then fsync.
    pub fn append(&mut self, line: &mut Spool) -> Result<()> {
        let path = self.log.path.clone();
        let total = line.len();
        let mut written = 0u64;
        let mut failure = None;
        if let Some(bytes) = line.in_memory() {
            match self.log.file.write(bytes) {
                Ok(n) => written = n as u64,
                Err(e) => failure = Some(e.to_string()),
            }
        } else {
            let mut reader = line.reader()?;
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let n = reader.read(&mut buf).map_err(|e| unavailable(&path, e))?;
                if n == 0 {
                    break;
                }
                if let Err(e) = self.log.file.write_all(&buf[..n]) {
                    failure = Some(e.to_string());
                    break;
                }
                written += n as u64;
            }
        }
        if written != total {
            let why = failure.map(|e| format!(": {e}")).unwrap_or_default();
            return Err(unavailable(
                &path,
                format!(
                    "only {written} of {total} bytes were written (disk full?){why}; the log's last line is now incomplete"
                ),
            ));
        }
        self.log.file.sync_data().map_err(|e| unavailable(&path, e))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.log.file.unlock();
    }
}
