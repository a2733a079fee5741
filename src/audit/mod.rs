//! The audit trail (docs/AUDIT.md): one JSON line per operation that makes,
//! moves or destroys a key, chained by SHA-256 and signed in the token.
//!
//! A command asks for a [`Recorder`] before it starts ([`Recorder::begin`]
//! checks that the log can take a line, so a command whose line could not
//! be written fails before any key leaves); the token session it opens is
//! attached ([`Recorder::attach`], which makes the MAC key on first use);
//! it notes what it did in [`Facts`]; [`Recorder::finish`] appends the line,
//! failures and refusals included. Secrets never reach a line: keys appear
//! by label, id and KCV, protections by KEK label, public-key fingerprint or
//! the word "password".

pub mod bundle;
pub mod keys;
pub mod line;
pub mod log;
pub mod show;
pub mod verify;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::hsm::audit::{AuditToken, Head};
use crate::hsm::keys::KeyInfo;
use crate::hsm::{Token, TokenSummary};
pub use keys::Keys;
pub use line::{
    FileRef, KeyRef, Line, Outcome, Protection, Refused, RefusedRequests, RequestRef, Signer,
    TokenRef,
};
use log::{AuditLog, Tail};

use crate::spool::Spool;

/// The hsmkey version and commit every line names.
pub const WRITER: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HSMKEY_GIT_COMMIT"),
    ")"
);

/// What the operation did, as the command notes it.
#[derive(Debug, Default)]
pub struct Facts {
    pub keys: Keys,
    pub protection: Option<Protection>,
    pub inputs: Vec<FileRef>,
    pub outputs: Vec<FileRef>,
    pub dry_run: bool,
    /// The HTTP request, when the server ran the operation.
    pub request: Option<RequestRef>,
    /// Refused requests counted together (the server's `serve refused`).
    pub refused: Option<Refused>,
}

impl Facts {
    /// The keys the operation touched (replaces any noted before).
    pub fn keys<'a>(&mut self, keys: impl IntoIterator<Item = &'a KeyInfo>) {
        self.keys = Keys::Listed(keys.into_iter().map(KeyRef::from).collect());
    }

    /// Keys only named so far (the command has not found them yet).
    pub fn asked(&mut self, names: impl IntoIterator<Item = impl Into<String>>) {
        self.keys = Keys::Listed(names.into_iter().map(|n| KeyRef::named(n.into())).collect());
    }

    /// A file the operation read, hashed now.
    pub fn input(&mut self, path: &Path) {
        self.inputs.push(FileRef::of(path));
    }

    /// A file the operation wrote, hashed now (after its commit).
    pub fn output(&mut self, path: &Path) {
        self.outputs.push(FileRef::of(path));
    }

    /// An input as it was read (`-`: standard input): the SHA-256 of the
    /// bytes the command used.
    pub fn input_bytes(&mut self, path: &Path, bytes: &[u8]) {
        self.inputs.push(FileRef {
            path: path.display().to_string(),
            sha256: line::sha256_hex(bytes),
        });
    }

    /// Bytes written somewhere that is not a file (`-`: stdout).
    pub fn output_bytes(&mut self, path: &str, bytes: &[u8]) {
        self.outputs.push(FileRef {
            path: path.to_string(),
            sha256: line::sha256_hex(bytes),
        });
    }
}

impl KeyRef {
    pub fn named(label: String) -> KeyRef {
        KeyRef {
            label,
            id: None,
            class: None,
            kcv: None,
            version: None,
        }
    }
}

impl From<&KeyInfo> for KeyRef {
    fn from(k: &KeyInfo) -> KeyRef {
        KeyRef {
            label: k.label.clone(),
            id: Some(k.id.clone()),
            class: Some(k.class.clone()),
            kcv: k.kcv.clone(),
            version: Some(k.version),
        }
    }
}

impl From<&TokenSummary> for TokenRef {
    fn from(t: &TokenSummary) -> TokenRef {
        TokenRef {
            label: t.label.clone(),
            serial: t.serial.clone(),
            model: t.model.clone(),
            manufacturer: t.manufacturer.clone(),
        }
    }
}

impl FileRef {
    /// A file and the SHA-256 of its bytes as they are now ("unreadable:
    /// REASON" in place of the hash when it cannot be read).
    pub fn of(path: &Path) -> FileRef {
        FileRef {
            path: path.display().to_string(),
            sha256: file_sha256(path).unwrap_or_else(|e| format!("unreadable: {e}")),
        }
    }
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    Ok(hex::encode(digest.finalize()))
}

/// Who runs hsmkey, and where: (user name, uid, host name).
pub fn os_identity() -> (String, Option<u32>, String) {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    (user, Some(uid.as_raw()), host)
}

/// The time a line is written: UTC, milliseconds.
fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// A new log's id: 16 random bytes from the system.
fn new_log_id() -> Result<String> {
    let mut id = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(|e| Error::Internal(format!("draw a log id: {e}")))?;
    Ok(hex::encode(id))
}

/// The audit of one command: the log (none with `--no-audit`), the token
/// once chosen, and the session that signs the line.
pub struct Recorder {
    op: String,
    log: Option<AuditLog>,
    token: Option<TokenRef>,
    signer: Option<Signing>,
    client: Option<String>,
    facts: Facts,
}

impl Recorder {
    /// Start the audit of `op`: the log at `path` is opened (created 0600)
    /// and must be able to take a line; otherwise the command fails here,
    /// before it does anything (HK1904).
    pub fn begin(path: &Path, op: &str) -> Result<Recorder> {
        let mut log = AuditLog::open(path)?;
        let tail = log.preflight()?;
        check_tail(log.path(), &tail)?;
        Ok(Recorder {
            op: op.to_string(),
            log: Some(log),
            token: None,
            signer: None,
            client: None,
            facts: Facts::default(),
        })
    }

    /// A recorder that writes nothing (`--no-audit`).
    pub fn disabled(op: &str) -> Recorder {
        Recorder {
            op: op.to_string(),
            log: None,
            token: None,
            signer: None,
            client: None,
            facts: Facts::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.log.is_some()
    }

    pub fn path(&self) -> Option<&Path> {
        self.log.as_ref().map(|l| l.path())
    }

    /// The API client the server acts for.
    pub fn set_client(&mut self, name: &str) {
        self.client = Some(name.to_string());
    }

    pub fn facts(&mut self) -> &mut Facts {
        &mut self.facts
    }

    /// The token was chosen (before the login).
    pub fn saw_token(&mut self, summary: &TokenSummary) {
        self.token = Some(TokenRef::from(summary));
    }

    /// The command logged in: open the audit session on the token and make
    /// sure its MAC key is there (made on first use), before the command
    /// does anything with keys.
    pub fn attach(&mut self, token: &Token<'_>) -> Result<()> {
        self.attach_later(token)?;
        self.ready()
    }

    /// [`Recorder::attach`] for a command whose first token work is a pass
    /// over every object (`backup --all`): the audit session is opened now,
    /// and the MAC key is taken from that pass by [`Recorder::ready`],
    /// which the command calls before it does anything with keys. A command
    /// that fails before then has its line signed all the same (the key is
    /// then found by a search of its own).
    pub fn attach_later(&mut self, token: &Token<'_>) -> Result<()> {
        self.saw_token(token.summary());
        if self.log.is_none() {
            return Ok(());
        }
        self.signer = Some(Signing::new(AuditToken::open(token)?));
        Ok(())
    }

    /// Make sure of the MAC key (made on first use) before the command
    /// moves any key.
    pub fn ready(&mut self) -> Result<()> {
        match &mut self.signer {
            Some(s) => s.token.ensure_key().map(|_| ()),
            None => Ok(()),
        }
    }

    /// A Security Officer login is coming: the audit session lets go of the
    /// user login; [`Recorder::finish`] needs a user login again
    /// ([`Recorder::needs_login`]).
    pub fn suspend(&mut self) {
        if let Some(s) = &mut self.signer {
            s.token.suspend();
        }
    }

    /// Whether the line can only be signed after a new user login.
    pub fn needs_login(&mut self) -> bool {
        match &mut self.signer {
            Some(s) => s.token.needs_login().unwrap_or(false),
            None => false,
        }
    }

    /// Log the user in again to sign the line.
    pub fn login(&mut self, pin: &SecretString) -> Result<()> {
        match &mut self.signer {
            Some(s) => s.token.login(pin),
            None => Ok(()),
        }
    }

    /// Append the line for this operation: `error` is how it failed (None:
    /// it succeeded). The line is signed in the token when a session was
    /// attached, and the token's chain head moves to it.
    pub fn finish(self, error: Option<&Error>) -> Result<()> {
        let result = match error {
            None => Outcome::ok(),
            Some(e) => Outcome::error(e.code(), e.to_string()),
        };
        self.finish_as(result)
    }

    /// [`Recorder::finish`] with the outcome as the caller states it (the
    /// server records a refusal it answered, not an error it holds).
    pub fn finish_as(mut self, result: Outcome) -> Result<()> {
        let Some(mut log) = self.log.take() else {
            return Ok(());
        };
        let path = log.path().to_path_buf();
        let mut locked = log.lock()?;
        let tail = locked.tail()?;
        let (seq, prev, log_id) = match tail.last {
            None => (1, line::GENESIS.to_string(), new_log_id()?),
            Some(last) => {
                let (last, sha256) = last.map_err(|r| damaged(&path, &r))?;
                (last.seq + 1, sha256, last.log)
            }
        };
        let (user, uid, host) = os_identity();
        let facts = std::mem::take(&mut self.facts);
        // The key that signs, made sure of before the line is written.
        let signer = match &mut self.signer {
            Some(s) => match s.token.ensure_key() {
                Ok(key_id) => {
                    let t = s.token.summary();
                    Some(Signer {
                        label: t.label.clone(),
                        serial: t.serial.clone(),
                        model: t.model.clone(),
                        key_id: hex::encode(&key_id),
                    })
                }
                Err(e) => {
                    s.failure = Some(e);
                    None
                }
            },
            None => None,
        };
        let mut entry = Line {
            schema: line::SCHEMA.to_string(),
            seq,
            log: log_id.clone(),
            time: now(),
            op: self.op.clone(),
            hsmkey: WRITER.to_string(),
            user,
            uid,
            host,
            client: self.client.clone(),
            request: facts.request,
            refused: facts.refused,
            token: self.token.clone(),
            keys: facts.keys,
            protection: facts.protection,
            inputs: facts.inputs,
            outputs: facts.outputs,
            dry_run: facts.dry_run,
            result,
            prev,
            signer,
            mac: None,
        };
        // A run that failed already exits non-zero with its own error.
        let succeeded = entry.result.ok;
        let mut incomplete = None;
        let (mut bytes, written) = match write_line(&entry, self.signer.as_mut()) {
            Ok(w) => w,
            Err(reason) => {
                // The keys could not be read again (a bundle gone meanwhile,
                // no room for the spool): the line is written without them
                // rather than not at all, and the run fails (HK1904 below),
                // so that exit 0 never stands for a line that names nothing.
                tracing::warn!(
                    "audit line {seq} of {} names no keys: they could not be read again ({reason})",
                    path.display()
                );
                if let Some(s) = self.signer.as_mut() {
                    if s.begun {
                        // A signing operation may be open in the token: a
                        // fresh session for the line written again.
                        s.token.suspend();
                    }
                }
                entry.keys = Keys::default();
                incomplete = Some(reason);
                write_line(&entry, self.signer.as_mut()).map_err(Error::Internal)?
            }
        };
        locked.append(&mut bytes)?;
        // The operation is done and its line is in the log: a token that
        // fails now can undo neither, so the run is not failed for it. The
        // next signed line covers an unsigned one; the next head move covers
        // this line (docs/AUDIT.md, "When the token fails").
        match &mut self.signer {
            Some(s) if written.signed => {
                let head = Head {
                    log: log_id,
                    count: seq,
                    last: written.sha256,
                };
                if let Err(e) = s.token.write_head(&head) {
                    tracing::warn!(
                        "the token's audit chain head was not moved to line {seq} of {} ({e})",
                        path.display()
                    );
                }
            }
            Some(s) => {
                let why = s
                    .failure
                    .take()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                tracing::warn!(
                    "audit line {seq} of {} was written without a MAC: the token could not sign it{why}",
                    path.display()
                );
            }
            None => {}
        }
        drop(locked);
        match incomplete {
            Some(reason) if succeeded => Err(Error::AuditUnavailable {
                path: path.display().to_string(),
                reason: format!(
                    "line {seq} was written without the keys it should name: they could not be read again ({reason})"
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// Bytes of a line kept in memory before it is spooled to a file.
const LINE_IN_MEMORY: usize = 256 * 1024;

/// The line, signed as it is written (when the signer's key is known),
/// spooled with its newline.
fn write_line<K: serde::Serialize>(
    entry: &Line<K>,
    signer: Option<&mut Signing>,
) -> std::result::Result<(Spool, line::Written), String> {
    let mut spool = Spool::new(LINE_IN_MEMORY);
    let written = match signer {
        Some(s) if entry.signer.is_some() => {
            s.restart();
            line::write(entry, &mut spool, Some(s))?
        }
        _ => line::write(entry, &mut spool, None)?,
    };
    spool.push(b"\n").map_err(|e| e.to_string())?;
    Ok((spool, written))
}

/// The audit session, and the line it signs as it is written: the MAC
/// input is gathered up to [`SIGN_AT_ONCE`] bytes and signed in one C_Sign,
/// a longer one in parts. The first failure is kept; the line then goes
/// unsigned.
struct Signing {
    token: AuditToken,
    pending: Vec<u8>,
    begun: bool,
    failure: Option<Error>,
}

/// MAC input signed in one call (most lines): two calls to the token.
const SIGN_AT_ONCE: usize = 256 * 1024;

impl Signing {
    fn new(token: AuditToken) -> Signing {
        Signing {
            token,
            pending: Vec::new(),
            begun: false,
            failure: None,
        }
    }

    fn restart(&mut self) {
        self.pending.clear();
        self.begun = false;
        self.failure = None;
    }

    fn step(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.failure.get_or_insert(e);
        }
    }
}

impl line::MacStream for Signing {
    fn update(&mut self, bytes: &[u8]) {
        if self.failure.is_some() {
            return;
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= SIGN_AT_ONCE {
            if !self.begun {
                let r = self.token.sign_begin();
                self.step(r);
                self.begun = true;
            }
            let part = std::mem::take(&mut self.pending);
            if self.failure.is_none() {
                let r = self.token.sign_part(&part);
                self.step(r);
            }
        }
    }

    fn finish(&mut self) -> Option<Vec<u8>> {
        if self.failure.is_some() {
            return None;
        }
        let part = std::mem::take(&mut self.pending);
        let made = if self.begun {
            self.token
                .sign_part(&part)
                .and_then(|()| self.token.sign_end())
        } else {
            self.token.sign(&part).map(|(mac, _)| mac)
        };
        match made {
            Ok(mac) => Some(mac),
            Err(e) => {
                self.failure = Some(e);
                None
            }
        }
    }
}

fn damaged(path: &Path, reason: &str) -> Error {
    Error::AuditUnavailable {
        path: path.display().to_string(),
        reason: format!("its last line is damaged ({reason}): run `hsmkey audit verify`, then move the log aside to start a new one"),
    }
}

fn check_tail(path: &Path, tail: &Tail) -> Result<()> {
    if let Some(Err(reason)) = &tail.last {
        return Err(damaged(path, reason));
    }
    Ok(())
}

/// Where the log is: the path given, else the default.
pub fn resolve_path(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => log::default_path(),
    }
}
