//! Reading files that come from outside (PIN and password files, public keys,
//! import parameters, key material, blobs) with a byte limit that is enforced
//! while reading, not looked up beforehand: a pipe, a FIFO or `/dev/zero`
//! reports a size of 0, so only the read itself can stop at the limit.
//!
//! Going over a limit is [`Error::BadInput`] naming the input and the limit;
//! the content is never quoted.

use std::io::Read;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The limit of each kind of input, in bytes. Each is far above what a valid
/// input of that kind holds, and small enough that reading it is harmless.
pub mod limits {
    /// A PIN file (`--pin-source file:PATH`): PKCS#11 PINs are at most a few
    /// dozen bytes.
    pub const PIN_FILE: u64 = 4 * 1024;
    /// A backup password file (`--password-file`): the password rule allows
    /// 255 characters.
    pub const PASSWORD_FILE: u64 = 4 * 1024;
    /// An RSA public key, PEM or DER (`--recipient`, `--wrapping-key`): an
    /// RSA-4096 PEM is under 1 KiB.
    pub const PUBLIC_KEY: u64 = 1024 * 1024;
    /// Import parameters, an import token, an import-key-material request or
    /// an export-key document (JSON, a few KiB at most).
    pub const DOCUMENT: u64 = 1024 * 1024;
    /// A single-string backup (`backup --format blob`): one key with all its
    /// versions.
    pub const BLOB: u64 = 16 * 1024 * 1024;
}

/// Read the whole file at `path`, refusing it once more than `limit` bytes
/// have been read. `what` names the input in the error ("password file").
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut buf = Vec::new();
    read_limited(file, &mut buf, limit, what, path)?;
    Ok(buf)
}

/// [`read_bounded`] for a secret (PIN, password): the buffer is allocated once
/// at its final size, so no copy is left behind by a reallocation, and it is
/// zeroized when dropped.
pub fn read_secret(path: &Path, limit: u64, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let capacity = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    read_limited(file, &mut buf, limit, what, path)?;
    Ok(buf)
}

/// Append everything from `reader` to `buf`, which may already hold bytes read
/// earlier from the same input, refusing more than `limit` bytes in all.
/// `path` names the input in errors.
pub fn read_limited<R: Read>(
    reader: R,
    buf: &mut Vec<u8>,
    limit: u64,
    what: &str,
    path: &Path,
) -> Result<()> {
    let have = buf.len() as u64;
    if have > limit {
        return Err(too_large(what, path, limit));
    }
    // One byte past the limit tells "exactly at the limit" from "over it".
    let mut limited = reader.take(limit - have + 1);
    limited.read_to_end(buf).map_err(|e| io_error(path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_large(what, path, limit));
    }
    Ok(())
}

/// The error of an input over its limit: names the input and the limit only.
pub fn too_large(what: &str, path: &Path, limit: u64) -> Error {
    Error::BadInput {
        what: format!("{what} {}", path.display()),
        reason: format!(
            "it is larger than {}, the limit for this input; nothing of it was used",
            human_size(limit)
        ),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `4096` → "4 KiB (4096 bytes)".
fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB ({bytes} bytes)", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB ({bytes} bytes)", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests;
