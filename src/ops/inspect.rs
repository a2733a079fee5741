//! `bundle inspect`: what a bundle or blob says about itself, read without a
//! token. The file is read once with the reader restore and verify use
//! (`BundleReader`, docs/FORMAT.md "Reader rules") and the header checks that
//! need no token (`check_header`), so a structure they refuse is refused here
//! with the same code. The MAC is not checked: that needs the integrity key,
//! which only the token can unwrap (`hsmkey verify`). No module is loaded,
//! no PIN asked; salts and wrapped keys are shown as lengths only.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::bundle::{
    unb64, BundleReader, Entry, Header, KdfParams, Line, Protection, PublicPart, RecipientInfo,
    SourceToken, MAX_LINE,
};
use crate::hsm::keys::split_version;
use crate::ops::backup::{check_header, Input};

/// Everything `bundle inspect` reports.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Inspection {
    /// "bundle" (JSON Lines) or "blob" (`hsmkey-blob-v1:`).
    pub container: &'static str,
    /// The header's `format` ("hsmkey-bundle").
    pub format: String,
    /// The header's `version`.
    pub format_version: u32,
    pub tool: String,
    pub created: String,
    pub source: SourceToken,
    pub protection: ProtectionSummary,
    pub mac: MacSummary,
    pub entries: Vec<EntryInfo>,
    pub structure: Structure,
    /// Always false: the MAC needs the token (`hsmkey verify`).
    pub mac_checked: bool,
    pub notes: Vec<String>,
}

/// The protection scheme and its parameters, without salts or wrapped keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum ProtectionSummary {
    /// The KEK as recorded by the writing token.
    Kek {
        kek: KekSummary,
    },
    Password {
        kdf: KdfSummary,
    },
    Recipient {
        recipient: RecipientSummary,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KekSummary {
    pub label: String,
    /// CKA_ID, hex.
    pub id: String,
    /// Hex KCV when the writing token could compute one.
    pub kcv: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KdfSummary {
    pub algorithm: String,
    pub version: u32,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    /// Length of the decoded salt; its value means nothing to a reader.
    pub salt_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RecipientSummary {
    /// SHA-256 of the recipient public key's SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    pub bits: u32,
    pub oaep_hash: String,
    pub wrapped_transfer_key_bytes: usize,
}

/// The integrity key and the trailer's MAC, as lengths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MacSummary {
    pub algorithm: String,
    /// Wrap algorithm of the integrity key.
    pub wrap: String,
    pub wrapped_key_bytes: usize,
    /// Length of the trailer's MAC (32 for HMAC-SHA256).
    pub trailer_mac_bytes: usize,
}

/// One key version as its entry describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct EntryInfo {
    pub label: String,
    pub name: String,
    pub version: u32,
    /// CKA_ID, hex.
    pub id: String,
    pub class: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub size: Option<u64>,
    pub usage: Vec<String>,
    pub backup_policy: String,
    pub kcv: Option<String>,
    pub kcv_method: Option<String>,
    /// "rsa" or "ec": the public half carried in the clear.
    pub public: Option<&'static str>,
    pub wrap: String,
    pub wrapped_bytes: usize,
}

/// What the reader checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Structure {
    /// True whenever a report is made: a broken structure is an error.
    pub intact: bool,
    /// Lines read: header, entries, trailer.
    pub lines: u64,
    pub entries: u64,
    /// The trailer's count (equal to `entries`, or the read fails).
    pub trailer_entries: u64,
    /// Longest line, line feed included.
    pub longest_line_bytes: usize,
    /// The reader's limit per line.
    pub max_line_bytes: usize,
}

/// Read `input` (from [`Input::open`]: a bundle file or a decoded blob) and
/// describe it. Any structure restore and verify would refuse is the same
/// error here (HK1302, HK1303).
pub fn inspect(input: &Input) -> Result<Inspection> {
    let container = match input {
        Input::File(_) | Input::Spooled(_) => "bundle",
        Input::Bytes(_) => "blob",
    };
    let mut reader = BundleReader::new(input.reader()?);
    let corrupt = |reason: &str| Error::BundleCorrupt {
        reason: reason.to_string(),
    };
    let first = reader.next_line()?.ok_or_else(|| corrupt("no header"))?;
    let mut longest = first.bytes.len();
    let Line::Header(header) = first.line else {
        return Err(corrupt("no header"));
    };
    // As restore does once it has the header, before the rest of the file.
    check_header(&header)?;
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    let mut lines = 1u64;
    let trailer = loop {
        let line = reader
            .next_line()?
            .ok_or_else(|| corrupt("the bundle ends without its trailer"))?;
        lines += 1;
        longest = longest.max(line.bytes.len());
        match line.line {
            Line::Header(_) => return Err(corrupt("a second header")),
            Line::Key(entry) => {
                if let Some(note) = version_note(&entry) {
                    notes.push(note);
                }
                entries.push(entry_info(&entry)?);
            }
            Line::Trailer(t) => break t,
        }
    };
    // The reader refuses anything after the trailer.
    if reader.next_line()?.is_some() {
        return Err(corrupt("data after the trailer"));
    }
    let trailer_mac =
        unb64("mac", &trailer.mac).map_err(|reason| Error::BundleCorrupt { reason })?;
    notes.insert(0, mac_note(&header));
    Ok(Inspection {
        container,
        format: header.format.clone(),
        format_version: header.version,
        tool: header.tool.clone(),
        created: header.created.clone(),
        source: header.source.clone(),
        protection: protection_summary(&header)?,
        mac: MacSummary {
            algorithm: header.mac.algorithm.clone(),
            wrap: header.mac.wrap.clone(),
            wrapped_key_bytes: decoded_len("mac.wrapped_key", &header.mac.wrapped_key)?,
            trailer_mac_bytes: trailer_mac.len(),
        },
        structure: Structure {
            intact: true,
            lines,
            entries: entries.len() as u64,
            trailer_entries: trailer.entries,
            longest_line_bytes: longest,
            max_line_bytes: MAX_LINE,
        },
        entries,
        mac_checked: false,
        notes,
    })
}

/// The note every report carries: what was not checked, and how to check it.
fn mac_note(header: &Header) -> String {
    let option = match &header.protection {
        Protection::Kek { kek } => format!("--kek '{}'", kek.label),
        Protection::Password { .. } => "--password-file FILE".into(),
        Protection::Recipient { .. } => "--recipient-key KEY".into(),
    };
    format!(
        "the MAC (integrity against tampering) was not checked: it can only be checked with \
         the token, by `hsmkey verify FILE {option}`; until then every value shown here is \
         what the file claims"
    )
}

/// A label whose `@vN` suffix disagrees with the entry's name or version.
/// An entry recorded as version 1 of its whole label (a key of another tool
/// whose label only looks like a version, docs/KEYS.md) agrees.
fn version_note(entry: &Entry) -> Option<String> {
    let (name, version) = split_version(&entry.label);
    let standalone = entry.name == entry.label && entry.version == 1;
    (!standalone && (name != entry.name || version != entry.version)).then(|| {
        format!(
            "entry {:?}: its label names {name} version {version}, its fields {} version {}",
            entry.label, entry.name, entry.version
        )
    })
}

fn decoded_len(field: &str, text: &str) -> Result<usize> {
    unb64(field, text)
        .map(|b| b.len())
        .map_err(|reason| Error::BundleCorrupt { reason })
}

fn protection_summary(header: &Header) -> Result<ProtectionSummary> {
    Ok(match &header.protection {
        Protection::Kek { kek } => ProtectionSummary::Kek {
            kek: KekSummary {
                label: kek.label.clone(),
                id: kek.id.clone(),
                kcv: kek.kcv.clone(),
            },
        },
        Protection::Password { kdf } => ProtectionSummary::Password {
            kdf: kdf_summary(kdf)?,
        },
        Protection::Recipient { recipient } => ProtectionSummary::Recipient {
            recipient: recipient_summary(recipient)?,
        },
    })
}

fn kdf_summary(kdf: &KdfParams) -> Result<KdfSummary> {
    Ok(KdfSummary {
        algorithm: kdf.algorithm.clone(),
        version: kdf.version,
        m_kib: kdf.m_kib,
        t: kdf.t,
        p: kdf.p,
        salt_bytes: decoded_len("salt", &kdf.salt)?,
    })
}

fn recipient_summary(r: &RecipientInfo) -> Result<RecipientSummary> {
    Ok(RecipientSummary {
        spki_sha256: r.spki_sha256.clone(),
        bits: r.bits,
        oaep_hash: r.oaep_hash.clone(),
        wrapped_transfer_key_bytes: decoded_len("wrapped_transfer_key", &r.wrapped_transfer_key)?,
    })
}

fn entry_info(e: &Entry) -> Result<EntryInfo> {
    Ok(EntryInfo {
        label: e.label.clone(),
        name: e.name.clone(),
        version: e.version,
        id: e.id.clone(),
        class: e.class.clone(),
        key_type: e.key_type.clone(),
        size: e.size,
        usage: e.usage.clone(),
        backup_policy: e.backup_policy.clone(),
        kcv: e.kcv.as_ref().map(|k| k.value.clone()),
        kcv_method: e.kcv.as_ref().map(|k| k.method.clone()),
        public: e.public.as_ref().map(|p| match p {
            PublicPart::Rsa { .. } => "rsa",
            PublicPart::Ec { .. } => "ec",
        }),
        wrap: e.wrap.clone(),
        // The reader has checked that it is base64.
        wrapped_bytes: decoded_len("wrapped", &e.wrapped)?,
    })
}

#[cfg(test)]
mod tests;
