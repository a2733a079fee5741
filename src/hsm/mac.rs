//! The in-token HMAC of a bundle: a second session of its own (the first
//! goes on wrapping), fed in batches, one C_SignUpdate per [`MAC_BATCH`]
//! bytes rather than one per line, since each call is a round trip on a
//! network HSM.

use cryptoki::mechanism::Mechanism;
use cryptoki::session::Session;

use super::{Handle, Token};
use crate::error::{Error, Result};

/// Bytes go to the MAC in batches of this size.
pub const MAC_BATCH: usize = 64 * 1024;

/// Whether a MAC is made (backup) or made again to be compared (restore,
/// verify): only the words of error messages differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacPurpose {
    Make,
    Check,
}

impl MacPurpose {
    fn start(self) -> &'static str {
        match self {
            MacPurpose::Make => "start the bundle MAC",
            MacPurpose::Check => "start checking the bundle MAC",
        }
    }

    fn update(self) -> &'static str {
        match self {
            MacPurpose::Make => "MAC bundle lines",
            MacPurpose::Check => "check the bundle MAC",
        }
    }

    fn finish(self) -> &'static str {
        match self {
            MacPurpose::Make => "finish the bundle MAC",
            MacPurpose::Check => "check the bundle MAC",
        }
    }
}

/// An HMAC-SHA256 under way on its own session, which stays open as long
/// as this value lives.
pub struct MacFeed {
    session: Session,
    purpose: MacPurpose,
    pending: Vec<u8>,
}

impl MacFeed {
    /// Open a second session and start an HMAC-SHA256 with `key` in it.
    pub fn start(token: &Token<'_>, key: Handle, purpose: MacPurpose) -> Result<MacFeed> {
        let session = token
            .module()
            .pkcs11()
            .open_rw_session(token.slot())
            .map_err(|e| Error::pkcs11("open a second session for the MAC", e))?;
        session
            .sign_init(&Mechanism::Sha256Hmac, key)
            .map_err(|e| Error::pkcs11(purpose.start(), e))?;
        Ok(MacFeed {
            session,
            purpose,
            pending: Vec::with_capacity(MAC_BATCH + 16 * 1024),
        })
    }

    /// Add bytes; they reach the token once a batch is full.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= MAC_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.session
            .sign_update(&self.pending)
            .map_err(|e| Error::pkcs11(self.purpose.update(), e))?;
        self.pending.clear();
        Ok(())
    }

    /// The rest of the bytes, then the MAC. The session stays open until
    /// this value is dropped.
    pub fn finish(&mut self) -> Result<Vec<u8>> {
        if !self.pending.is_empty() {
            self.flush()?;
        }
        self.session
            .sign_final()
            .map_err(|e| Error::pkcs11(self.purpose.finish(), e))
    }
}
