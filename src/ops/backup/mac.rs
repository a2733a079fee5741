//! The bundle's integrity when it is read: the whole-file pass restore and
//! verify start with (structure, the MAC made again in the token, a digest
//! of every line), and the second pass that proves it reads the same bytes.

use std::io::BufRead;

use sha2::{Digest, Sha256};

use super::{Input, Opened};
use crate::error::{Error, Result};
use crate::formats::bundle::{unb64, BundleReader, Entry, Line};
use crate::hsm::mac::{MacFeed, MacPurpose};
use crate::hsm::Token;

/// The whole-file check both restore and verify start with: structure, the
/// MAC in the token, and a digest of every byte so a second pass can prove it
/// read the same file. `per_entry` sees each entry after its bytes are MACed.
pub(super) fn integrity_pass(
    token: &Token<'_>,
    input: &Input,
    opened: &Opened,
    mut per_entry: impl FnMut(u64, &Entry) -> Result<()>,
) -> Result<(u64, [u8; 32], Vec<LineDigest>)> {
    let mut in_token = MacFeed::start(token, opened.mac_key, MacPurpose::Check)?;
    let mut reader = BundleReader::new(input.reader()?);
    let mut digest = Sha256::new();
    let mut count = 0u64;
    let mut problem = None;
    // One digest per entry line, so the second pass acts only on lines that
    // are byte for byte the ones authenticated here (16 bytes a key).
    let mut line_digests = Vec::new();
    loop {
        let line = reader.next_line()?.ok_or_else(|| Error::BundleCorrupt {
            reason: "the bundle ends without its trailer".into(),
        })?;
        match line.line {
            Line::Header(_) => {}
            Line::Key(entry) => {
                if problem.is_none() {
                    if let Err(e) = per_entry(count, &entry) {
                        problem = Some(e);
                    }
                }
                line_digests.push(line_digest(&line.bytes));
                count += 1;
            }
            Line::Trailer(trailer) => {
                let mac =
                    unb64("mac", &trailer.mac).map_err(|reason| Error::BundleCorrupt { reason })?;
                // The token computes the MAC and the two MACs are compared
                // here: C_VerifyFinal cannot tell "does not match" from a
                // token failure on every token (NSS answers a wrong HMAC
                // with CKR_DEVICE_ERROR), and a MAC is not key material.
                let computed = in_token.finish()?;
                if !crate::formats::same_bytes(&computed, &mac) {
                    return Err(Error::BundleCorrupt {
                        reason: "the MAC does not match: lines were changed, removed, added or reordered".into(),
                    });
                }
                digest.update(&line.bytes);
                break;
            }
        }
        // In batches, as when the MAC was made.
        in_token.feed(&line.bytes)?;
        digest.update(&line.bytes);
    }
    if reader.next_line()?.is_some() {
        return Err(Error::BundleCorrupt {
            reason: "data after the trailer".into(),
        });
    }
    // Problems found in entries are reported only once the whole file is
    // known to be authentic, so a forged entry cannot steer the message.
    if let Some(e) = problem {
        return Err(e);
    }
    Ok((count, digest.finalize().into(), line_digests))
}

/// In a second pass: refuse a line that is not the one the first pass
/// authenticated (the file was changed in between).
/// Restore's and verify's second reading of the bundle: every line hashed
/// again, every entry's line matched to the digest pass 1 recorded for it.
/// Yields the entries with their index.
pub(super) struct SecondPass<'a> {
    reader: BundleReader<Box<dyn BufRead + 'a>>,
    digests: &'a [LineDigest],
    hash: Sha256,
    index: u64,
}

impl<'a> SecondPass<'a> {
    pub(super) fn new(input: &'a Input, digests: &'a [LineDigest]) -> Result<Self> {
        Ok(SecondPass {
            reader: BundleReader::new(input.reader()?),
            digests,
            hash: Sha256::new(),
            index: 0,
        })
    }

    /// Whether the file read twice was the same: its whole digest and its
    /// count of entries.
    pub(super) fn finish(self, digest: [u8; 32], total: u64, what: &str) -> Result<()> {
        let second: [u8; 32] = self.hash.finalize().into();
        if second != digest || self.index != total {
            return Err(Error::BundleCorrupt {
                reason: format!("the file changed while it was being {what}"),
            });
        }
        Ok(())
    }
}

impl Iterator for SecondPass<'_> {
    type Item = Result<(u64, Entry)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.reader.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return None,
                Err(e) => return Some(Err(Error::from(e))),
            };
            self.hash.update(&line.bytes);
            let Line::Key(entry) = line.line else {
                continue;
            };
            if let Err(e) = same_line(self.digests, self.index, &line.bytes) {
                return Some(Err(e));
            }
            let index = self.index;
            self.index += 1;
            return Some(Ok((index, entry)));
        }
    }
}

/// What pass 1 keeps of an entry's line: the first 16 bytes of its
/// SHA-256. A changed line with the same 16 bytes is a second preimage of
/// a 128-bit hash; the line it must match was authenticated by the MAC, so
/// whoever could choose both could make the whole bundle anyway.
pub(super) type LineDigest = [u8; 16];

fn line_digest(bytes: &[u8]) -> LineDigest {
    let full = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

pub(super) fn same_line(digests: &[LineDigest], index: u64, bytes: &[u8]) -> Result<()> {
    let now = line_digest(bytes);
    match digests.get(index as usize) {
        Some(d) if *d == now => Ok(()),
        _ => Err(Error::BundleCorrupt {
            reason: "the file changed after it was checked".into(),
        }),
    }
}
