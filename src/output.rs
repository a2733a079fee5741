//! Output files (docs/SECURITY.md, invariant 4): written to a temporary file in the
//! destination's folder, mode 0600, flushed and fsynced, then renamed into
//! place; an existing file is never replaced without `force`. If anything
//! fails before [`AtomicFile::commit`], the temporary file is removed and the
//! destination is untouched.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file being written atomically.
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    force: bool,
}

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
            tmp,
            dest: dest.to_path_buf(),
            force,
        })
    }

    /// Where the bytes go until commit.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The temporary file's path (to read back what was written).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flush, fsync, rename into place, fsync the folder.
    pub fn commit(mut self) -> Result<()> {
        let dest = self.dest.clone();
        self.tmp.as_file_mut().flush().map_err(|e| io(&dest, e))?;
        self.tmp.as_file().sync_all().map_err(|e| io(&dest, e))?;
        let persisted = if self.force {
            self.tmp.persist(&dest).map(|_| ())
        } else {
            self.tmp.persist_noclobber(&dest).map(|_| ())
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
