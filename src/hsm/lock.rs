//! Runs do not collide: an advisory lock per token, taken by every command
//! that checks whether a key exists and then creates it. Two hsmkey
//! processes of one user on one host cannot interleave check and create.
//!
//! The lock lives in the user's runtime folder (`$XDG_RUNTIME_DIR/hsmkey`,
//! else `hsmkey-UID` in the temporary folder), one file per token, named by a
//! digest of the token's manufacturer, model, serial and label (and the
//! module's initialization string, which tells NSS databases apart). It cannot
//! serialise two hosts (or two users) driving one network HSM: for that,
//! commands also look for a duplicate right after creating and remove their
//! own copy if they find one (docs/SECURITY.md).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::TokenSummary;
use crate::error::{Error, Result};

/// Held while a command may create objects; released when dropped (and by
/// the kernel if the process dies).
#[derive(Debug)]
pub struct TokenLock {
    _file: File,
    path: PathBuf,
}

impl TokenLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Beside the lock: the journal of a restore on this token (which keys
    /// it is creating), left behind only by a run that was killed.
    pub fn journal_path(&self) -> PathBuf {
        self.path.with_extension("restore-journal")
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The folder that holds this user's lock files, made 0700 if missing.
fn lock_dir() -> Result<PathBuf> {
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        let runtime = PathBuf::from(runtime);
        if runtime.is_dir() {
            return make_private_dir(runtime.join("hsmkey"));
        }
    }
    #[cfg(unix)]
    let user = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid().to_string())
            .unwrap_or_else(|_| "user".into())
    };
    #[cfg(not(unix))]
    let user = "user".to_string();
    make_private_dir(std::env::temp_dir().join(format!("hsmkey-{user}")))
}

fn make_private_dir(dir: PathBuf) -> Result<PathBuf> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(&dir).map_err(|e| io(&dir, e))?;
    // In a shared temporary folder, a folder someone else made is not ours
    // to trust with our locks.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| io(&dir, e))?;
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        let shared = meta.mode() & 0o077 != 0;
        if !meta.is_dir() || shared || me.is_none_or(|uid| uid != meta.uid()) {
            return Err(io(
                &dir,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the lock folder is not a folder of this user's alone (owner, mode 0700)",
                ),
            ));
        }
    }
    Ok(dir)
}

/// The lock file of a token. The module's initialization string is part of
/// the identity: NSS softokn gives every database the same label and serial,
/// and its `configdir` is what tells them apart.
fn lock_path(token: &TokenSummary, module_args: &str) -> Result<PathBuf> {
    let mut digest = Sha256::new();
    for part in [
        token.manufacturer.as_str(),
        &token.model,
        &token.serial,
        &token.label,
        module_args,
    ] {
        digest.update(part.as_bytes());
        digest.update([0u8]);
    }
    let name = format!("token-{}.lock", &hex::encode(digest.finalize())[..24]);
    Ok(lock_dir()?.join(name))
}

/// Take the token's lock, waiting up to `wait` for another run to finish.
pub fn lock(
    token: &TokenSummary,
    module_args: Option<&str>,
    wait: Duration,
    command: &str,
) -> Result<TokenLock> {
    let path = lock_path(token, module_args.unwrap_or(""))?;
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    // The folder is this user's alone (checked above), so no one else can
    // have planted a link here; a link is refused all the same.
    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
        return Err(io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the lock file is not a regular file",
            ),
        ));
    }
    let mut file = options.open(&path).map_err(|e| io(&path, e))?;
    // A wait too long to add to the clock is a wait without end.
    let deadline = Instant::now().checked_add(wait);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if deadline.is_none_or(|d| Instant::now() < d) => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = (&file).take(512).read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Busy {
                    token: format!("{} (serial {})", token.label, token.serial),
                    holder: if holder.is_empty() {
                        "another hsmkey process".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(&path, e)),
        }
    }
    // Who holds it, for the message another run shows.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "hsmkey process {} ({command})", std::process::id());
    let _ = file.flush();
    Ok(TokenLock { _file: file, path })
}
