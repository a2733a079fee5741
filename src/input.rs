//! Reading files that come from outside (PIN and password files, public keys,
//! import parameters, key material, blobs) with a byte limit that is enforced
//! while reading, not looked up beforehand: a pipe, a FIFO or `/dev/zero`
//! reports a size of 0, so only the read itself can stop at the limit.
//!
//! Going over a limit is [`Error::BadInput`] naming the input and the limit;
//! the content is never quoted. A file that is missing or cannot be read is
//! [`Error::InputFile`] (exit 10), naming the input and its path.
//!
//! The path `-` is standard input, read with the same limit. Only one input
//! of a run may be `-` ([`claim_stdin`]); a secret (PIN, password) is never
//! read from a terminal this way, where it would echo.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::Mutex;

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
    /// A bundle read from standard input (`restore -`): it is held in an
    /// anonymous temporary file to be read twice. A bundle given as a file
    /// has no limit but its line length.
    pub const BUNDLE_STDIN: u64 = 1024 * 1024 * 1024;
    /// The configuration file (`config.toml`, profiles).
    pub const CONFIG: u64 = 1024 * 1024;
}

/// Whether `path` is `-`: standard input for an input, standard output for
/// an `--out`. (A file named `-` is reached as `./-`.)
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// How a path is named in messages: `-` is "standard input".
pub fn shown(path: &Path) -> String {
    if is_stdio(path) {
        "(standard input)".into()
    } else {
        path.display().to_string()
    }
}

static STDIN_TAKEN: Mutex<Option<String>> = Mutex::new(None);

/// Standard input is read once: the first input given as `-` claims it, a
/// second one is a usage error (HK1007) naming both.
pub fn claim_stdin(what: &str) -> Result<()> {
    let mut taken = STDIN_TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(first) = taken.as_ref() {
        return Err(Error::Usage {
            message: format!(
                "only one input can be `-` (standard input): the {first} is read from it, so the {what} cannot be"
            ),
        });
    }
    *taken = Some(what.to_string());
    Ok(())
}

/// Read the whole file at `path`, refusing it once more than `limit` bytes
/// have been read. `what` names the input in the error ("password file").
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if is_stdio(path) {
        claim_stdin(what)?;
        read_limited(std::io::stdin().lock(), &mut buf, limit, what, path)?;
        return Ok(buf);
    }
    let file = std::fs::File::open(path).map_err(|e| input_error(what, path, e))?;
    read_limited(file, &mut buf, limit, what, path)?;
    Ok(buf)
}

/// [`read_bounded`] for a secret (PIN, password): the buffer is allocated once
/// at its final size, so no copy is left behind by a reallocation, and it is
/// zeroized when dropped.
pub fn read_secret(path: &Path, limit: u64, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let capacity = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    if is_stdio(path) {
        if std::io::stdin().is_terminal() {
            return Err(Error::Usage {
                message: format!(
                    "the {what} `-` would be read from a terminal, where it echoes: pipe it in, or use a prompt"
                ),
            });
        }
        claim_stdin(what)?;
        read_limited(std::io::stdin().lock(), &mut buf, limit, what, path)?;
        return Ok(buf);
    }
    let file = std::fs::File::open(path).map_err(|e| input_error(what, path, e))?;
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
    limited
        .read_to_end(buf)
        .map_err(|e| input_error(what, path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_large(what, path, limit));
    }
    Ok(())
}

/// The error of an input over its limit: names the input and the limit only.
pub fn too_large(what: &str, path: &Path, limit: u64) -> Error {
    Error::BadInput {
        what: format!("{what} {}", shown(path)),
        reason: format!(
            "it is larger than {}, the limit for this input; nothing of it was used",
            human_size(limit)
        ),
    }
}

/// The error of an input that cannot be opened or read (exit 10): names the
/// input and its path.
pub fn input_error(what: &str, path: &Path, source: std::io::Error) -> Error {
    Error::InputFile {
        what: what.to_string(),
        path: shown(path),
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
