//! Output files (docs/SECURITY.md, invariant 4): written to a temporary file in the
//! destination's folder, mode 0600, flushed and fsynced, then renamed into
//! place; an existing file is never replaced without `force`. If anything
//! fails before [`AtomicFile::commit`], the temporary file is removed and the
//! destination is untouched.
//!
//! An `--out -` is standard output ([`AtomicFile::for_out`]): the bytes are
//! held in an anonymous temporary file (0600, gone when the process ends) and
//! copied to stdout by `commit`, so stdout receives the whole output or, when
//! the command fails first, nothing. A failure while copying (a closed pipe,
//! a full disk behind a redirection) is an error, never a success.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file being written atomically, or the spool of standard output.
pub struct AtomicFile {
    tmp: Staged,
    dest: PathBuf,
    force: bool,
}

enum Staged {
    Temp(tempfile::NamedTempFile),
    Stdout(File),
}

/// How standard output is named in errors.
const STDOUT: &str = "(standard output)";

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl AtomicFile {
    /// Start writing `dest`. Refuses at once when it exists and `force` is off,
    /// so no work is wasted.
    pub fn create(dest: &Path, force: bool) -> Result<AtomicFile> {
        if dest.exists() && !force {
            return Err(Error::AlreadyExists {
                what: format!("the output file {}", dest.display()),
            });
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".hsmkey-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| io(&dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io(tmp.path(), e))?;
        }
        Ok(AtomicFile {
            tmp: Staged::Temp(tmp),
            dest: dest.to_path_buf(),
            force,
        })
    }

    /// The output an `--out` option names: `-` is standard output (see the
    /// module comment), anything else a file as [`AtomicFile::create`].
    pub fn for_out(dest: &Path, force: bool) -> Result<AtomicFile> {
        if !crate::input::is_stdio(dest) {
            return AtomicFile::create(dest, force);
        }
        let spool = tempfile::tempfile().map_err(|e| io(&std::env::temp_dir(), e))?;
        Ok(AtomicFile {
            tmp: Staged::Stdout(spool),
            dest: dest.to_path_buf(),
            force,
        })
    }

    /// Whether this output goes to standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(self.tmp, Staged::Stdout(_))
    }

    /// Where the bytes go until commit.
    pub fn file(&mut self) -> &mut File {
        match &mut self.tmp {
            Staged::Temp(t) => t.as_file_mut(),
            Staged::Stdout(f) => f,
        }
    }

    /// The temporary file's path, or `-` for standard output.
    pub fn path(&self) -> &Path {
        match &self.tmp {
            Staged::Temp(t) => t.path(),
            Staged::Stdout(_) => Path::new("-"),
        }
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flush, fsync, rename into place, fsync the folder. For standard
    /// output: copy everything written to stdout and flush it.
    pub fn commit(self) -> Result<()> {
        let dest = self.dest.clone();
        let mut tmp = match self.tmp {
            Staged::Temp(t) => t,
            Staged::Stdout(mut spool) => {
                let stdout_error = |e| io(Path::new(STDOUT), e);
                spool.flush().map_err(stdout_error)?;
                spool
                    .seek(std::io::SeekFrom::Start(0))
                    .map_err(stdout_error)?;
                let mut stdout = std::io::stdout().lock();
                std::io::copy(&mut spool, &mut stdout).map_err(stdout_error)?;
                return stdout.flush().map_err(stdout_error);
            }
        };
        tmp.as_file_mut().flush().map_err(|e| io(&dest, e))?;
        tmp.as_file().sync_all().map_err(|e| io(&dest, e))?;
        let persisted = if self.force {
            tmp.persist(&dest).map(|_| ())
        } else {
            tmp.persist_noclobber(&dest).map(|_| ())
        };
        persisted.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists {
                    what: format!("the output file {}", dest.display()),
                }
            } else {
                io(&dest, e.error)
            }
        })?;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// Write `bytes` to `dest` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8], force: bool) -> Result<()> {
    let mut f = AtomicFile::create(dest, force)?;
    f.file().write_all(bytes).map_err(|e| io(dest, e))?;
    f.commit()
}

#[cfg(test)]
mod tests;
