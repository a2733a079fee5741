//! Bytes that grow with the number of keys (a report's entries, an audit
//! line naming every key): held in memory up to a limit, then in an
//! anonymous temporary file (unlinked from the start, mode 0600, in the
//! system's temporary folder), so that memory does not grow with the keys.
//! Written once, front to back; read back from the start as often as needed.

use std::fs::File;
use std::io::{Cursor, Read, Write};

use crate::error::{Error, Result};

/// Bytes written to the file at a time once the spool is on disk.
const FILE_BATCH: usize = 64 * 1024;

pub struct Spool {
    /// Everything, while in memory; then what is not yet in `file`.
    pending: Vec<u8>,
    file: Option<File>,
    /// Bytes kept in memory before moving to a file.
    limit: usize,
    len: u64,
}

fn spool_error(e: std::io::Error) -> Error {
    Error::Io {
        path: std::env::temp_dir().display().to_string(),
        source: e,
    }
}

impl Spool {
    /// A spool that keeps up to `limit` bytes in memory.
    pub fn new(limit: usize) -> Spool {
        Spool {
            pending: Vec::new(),
            file: None,
            limit,
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether everything is still in memory: [`Spool::in_memory`] holds it.
    pub fn is_in_memory(&self) -> bool {
        self.file.is_none()
    }

    /// The bytes, when they are all in memory.
    pub fn in_memory(&self) -> Option<&[u8]> {
        self.file.is_none().then_some(&self.pending[..])
    }

    /// Append bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.len += bytes.len() as u64;
        self.pending.extend_from_slice(bytes);
        match &mut self.file {
            None if self.pending.len() > self.limit => {
                let mut file = tempfile::tempfile().map_err(spool_error)?;
                file.write_all(&self.pending).map_err(spool_error)?;
                self.pending = Vec::new();
                self.file = Some(file);
            }
            Some(file) if self.pending.len() >= FILE_BATCH => {
                file.write_all(&self.pending).map_err(spool_error)?;
                self.pending.clear();
            }
            _ => {}
        }
        Ok(())
    }

    /// Everything written so far, from the first byte. Reading does not
    /// move the spool: it can be read again, and written after.
    pub fn reader(&mut self) -> Result<Box<dyn Read + '_>> {
        match &mut self.file {
            None => Ok(Box::new(Cursor::new(&self.pending[..]))),
            Some(file) => {
                file.write_all(&self.pending).map_err(spool_error)?;
                self.pending.clear();
                Ok(Box::new(ReadAt { file, pos: 0 }))
            }
        }
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads a file at explicit offsets, so that reading never moves the
/// position the spool writes at.
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

#[cfg(test)]
mod tests;
