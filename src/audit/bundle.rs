//! What a backup bundle tells the audit line: its protection (KEK label and
//! KCV, recipient fingerprint, or password) and its keys (label, id, class,
//! KCV, version), read from the file as written or as given to restore.
//! The bundle's MAC is not checked here: restore and verify do that.

use std::io::BufRead;

use super::line::{KeyRef, Protection};
use crate::error::Result;
use crate::formats::bundle::{self, BundleReader, Line};
use crate::ops::backup::Input;

/// The protection of a bundle, as the audit line names it.
pub fn protection_of(p: &bundle::Protection) -> Protection {
    match p {
        bundle::Protection::Kek { kek } => Protection::Kek {
            label: kek.label.clone(),
            kcv: kek.kcv.clone(),
        },
        bundle::Protection::Password { .. } => Protection::Password,
        bundle::Protection::Recipient { recipient } => Protection::Recipient {
            fingerprint: Some(recipient.spki_sha256.clone()),
            label: None,
        },
    }
}

/// A bundle's protection and keys.
#[derive(Debug, Clone)]
pub struct BundleFacts {
    pub protection: Protection,
    pub keys: Vec<KeyRef>,
}

/// A bundle's protection, from its header alone.
pub fn protection(input: &Input) -> Result<Protection> {
    let mut reader = BundleReader::new(input.reader()?);
    match reader.next_line()? {
        Some(bundle::ReadLine {
            line: Line::Header(h),
            ..
        }) => Ok(protection_of(&h.protection)),
        _ => Err(crate::error::Error::BundleCorrupt {
            reason: "no header".into(),
        }),
    }
}

/// Read the header and the entries of a bundle (or blob).
pub fn read(input: &Input) -> Result<BundleFacts> {
    let mut reader = BundleReader::new(input.reader()?);
    let mut protection = Protection::Password;
    let mut keys = Vec::new();
    while let Some(l) = reader.next_line()? {
        match l.line {
            Line::Header(h) => protection = protection_of(&h.protection),
            Line::Key(e) => keys.push(KeyRef {
                label: e.label,
                id: Some(e.id),
                class: Some(e.class),
                kcv: e.kcv.map(|k| k.value),
                version: Some(e.version),
            }),
            Line::Trailer(_) => {}
        }
    }
    Ok(BundleFacts { protection, keys })
}

/// The SHA-256 (hex) of a bundle as read (a blob: the bundle it holds).
pub fn sha256(input: &Input) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut reader = input.reader()?;
    let mut digest = Sha256::new();
    loop {
        let buf = reader.fill_buf().map_err(|e| crate::error::Error::Io {
            path: "-".into(),
            source: e,
        })?;
        if buf.is_empty() {
            break;
        }
        digest.update(buf);
        let n = buf.len();
        reader.consume(n);
    }
    Ok(hex::encode(digest.finalize()))
}
