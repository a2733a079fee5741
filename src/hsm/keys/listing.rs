//! Every key of a token as one pass reads them (`backup --all`, the name
//! check of `key generate --count`), held compactly: 64 bytes a key plus
//! its label and id, where a [`KeyInfo`] takes about 700. A key's
//! [`KeyInfo`] is made again from its record when it is needed, one at a
//! time, and is the one [`super::describe_with`] gives without KCVs.

use cryptoki::object::{Attribute, KeyType as CkKeyType, ObjectClass, ObjectHandle};

use super::attrs::{read, Attrs, Flags};
use super::describe::{class_name, key_type_name};
use super::{name_and_version, BackupPolicy, KeyInfo, Usage};
use crate::error::{Error, Result};
use crate::hsm::Token;

/// One object, compactly.
#[derive(Clone, Copy)]
struct Brief {
    handle: ObjectHandle,
    key_type: Option<CkKeyType>,
    /// Bits; 0: unknown.
    size: u32,
    class: u8,
    usage: u8,
    /// Two bits per flag of [`Flags`]: reported, and its value.
    flags: u32,
    /// The first bytes of CKA_CHECK_VALUE of an AES key (its KCV).
    kcv: Option<[u8; 3]>,
    /// In the arena: the label as shown (UTF-8), the id, and the label's
    /// own bytes when they are not UTF-8.
    at: u32,
    label_len: u32,
    id_len: u32,
    raw_len: u32,
    /// The key's name is the first `name_len` bytes of its label.
    name_len: u32,
    version: u32,
}

const CLASSES: [ObjectClass; 5] = [
    ObjectClass::SECRET_KEY,
    ObjectClass::PRIVATE_KEY,
    ObjectClass::PUBLIC_KEY,
    ObjectClass::CERTIFICATE,
    ObjectClass::DATA,
];

/// Every key object of a token, as one pass read them.
#[derive(Default)]
pub struct Listing {
    briefs: Vec<Brief>,
    arena: Vec<u8>,
}

fn flag_bits(flags: &Flags) -> u32 {
    let all = flags.all();
    let mut bits = 0u32;
    for (i, f) in all.iter().enumerate() {
        if let Some(v) = f {
            bits |= 1 << (2 * i);
            bits |= u32::from(*v) << (2 * i + 1);
        }
    }
    bits
}

fn flags_of(bits: u32) -> Flags {
    let mut all = [None; 9];
    for (i, f) in all.iter_mut().enumerate() {
        if bits & (1 << (2 * i)) != 0 {
            *f = Some(bits & (1 << (2 * i + 1)) != 0);
        }
    }
    Flags::from_all(all)
}

fn usage_bits(u: &Usage) -> u8 {
    let names = u.names();
    Usage::NAMES
        .iter()
        .enumerate()
        .filter(|(_, n)| names.contains(*n))
        .fold(0, |bits, (i, _)| bits | (1 << i))
}

fn usage_of(bits: u8) -> Vec<&'static str> {
    Usage::NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Listing {
    /// Add one object as read.
    pub(super) fn push(&mut self, handle: ObjectHandle, a: Attrs) {
        let label = String::from_utf8_lossy(&a.label);
        let lossy = std::str::from_utf8(&a.label).is_err();
        let (name, version) = name_and_version(&label, &a.id);
        let kcv = match (&a.check_value, a.key_type) {
            (Some(cv), Some(k)) if cv.len() >= 3 && k == CkKeyType::AES => {
                Some([cv[0], cv[1], cv[2]])
            }
            _ => None,
        };
        let at = offset(self.arena.len());
        let (label_len, name_len) = (offset(label.len()), offset(name.len()));
        self.arena.extend_from_slice(label.as_bytes());
        self.arena.extend_from_slice(&a.id);
        let raw_len = if lossy {
            self.arena.extend_from_slice(&a.label);
            offset(a.label.len())
        } else {
            0
        };
        let class = CLASSES
            .iter()
            .position(|c| *c == a.class)
            .unwrap_or(CLASSES.len()) as u8;
        self.briefs.push(Brief {
            handle,
            key_type: a.key_type,
            size: a.size.and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
            class,
            usage: usage_bits(&a.usage),
            flags: flag_bits(&a.flags),
            kcv,
            at,
            label_len,
            id_len: offset(a.id.len()),
            raw_len,
            name_len,
            version,
        });
    }

    pub fn len(&self) -> usize {
        self.briefs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.briefs.is_empty()
    }

    fn bytes(&self, b: &Brief) -> (&str, &[u8], Option<&[u8]>) {
        let at = b.at as usize;
        let label_end = at + b.label_len as usize;
        let id_end = label_end + b.id_len as usize;
        let label = std::str::from_utf8(&self.arena[at..label_end]).unwrap_or_default();
        let raw = (b.raw_len > 0).then(|| &self.arena[id_end..id_end + b.raw_len as usize]);
        (label, &self.arena[label_end..id_end], raw)
    }

    fn class_of(b: &Brief) -> ObjectClass {
        CLASSES
            .get(b.class as usize)
            .copied()
            .unwrap_or(ObjectClass::DATA)
    }

    /// The key at `i`, as [`super::describe_with`] describes it without KCVs.
    pub fn info(&self, i: usize) -> KeyInfo {
        let b = &self.briefs[i];
        let (label, id, raw) = self.bytes(b);
        let class = Self::class_of(b);
        let flags = flags_of(b.flags);
        let backup_policy = if class == ObjectClass::PUBLIC_KEY {
            "public".to_string()
        } else {
            match (flags.extractable, flags.wrap_with_trusted) {
                (Some(false), _) => BackupPolicy::None.name().into(),
                (Some(true), Some(true)) => BackupPolicy::Trusted.name().into(),
                (Some(true), _) => BackupPolicy::Any.name().into(),
                (None, _) => "unknown".into(),
            }
        };
        let (kcv, kcv_method) = match b.kcv {
            Some(v) => (Some(hex::encode(v)), "CKA_CHECK_VALUE".to_string()),
            None => (None, "not computed".to_string()),
        };
        KeyInfo {
            handle: b.handle,
            label: label.to_string(),
            label_lossy: raw.is_some(),
            label_hex: raw.map(hex::encode),
            name: label[..b.name_len as usize].to_string(),
            id: hex::encode(id),
            class: class_name(class).into(),
            key_type: b
                .key_type
                .map(key_type_name)
                .unwrap_or_else(|| "unknown".into()),
            size: (b.size > 0).then_some(u64::from(b.size)),
            version: b.version,
            usage: usage_of(b.usage),
            backup_policy,
            kcv,
            kcv_method,
            sensitive: flags.sensitive,
            extractable: flags.extractable,
            always_sensitive: flags.always_sensitive,
            never_extractable: flags.never_extractable,
            wrap_with_trusted: flags.wrap_with_trusted,
            trusted: flags.trusted,
            private: flags.private,
            local: flags.local,
            modifiable: flags.modifiable,
            uri: String::new(),
        }
    }

    /// Every key in order, made one at a time.
    pub fn infos(&self) -> impl Iterator<Item = KeyInfo> + '_ {
        (0..self.len()).map(|i| self.info(i))
    }

    /// Keep the keys `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&KeyInfo) -> bool) {
        let mut kept = Vec::with_capacity(self.briefs.len());
        for i in 0..self.briefs.len() {
            if keep(&self.info(i)) {
                kept.push(self.briefs[i]);
            }
        }
        self.briefs = kept;
    }

    /// Leave out objects that are not keys, and those whose label says they
    /// belong to the audit trail.
    pub(super) fn keys_only(&mut self) {
        let arena = &self.arena;
        self.briefs.retain(|b| {
            let class = Self::class_of(b);
            let at = b.at as usize;
            let label = &arena[at..at + b.label_len as usize];
            class != ObjectClass::DATA
                && class != ObjectClass::CERTIFICATE
                && !crate::hsm::audit::is_reserved_label(&String::from_utf8_lossy(label))
        });
    }

    /// In order of name, version, then class (secret, private, public).
    pub(super) fn sort(&mut self) {
        let rank = |b: &Brief| match Self::class_of(b) {
            c if c == ObjectClass::SECRET_KEY => 0u8,
            c if c == ObjectClass::PRIVATE_KEY => 1,
            _ => 2,
        };
        let arena = &self.arena;
        let name = |b: &Brief| &arena[b.at as usize..(b.at + b.name_len) as usize];
        self.briefs
            .sort_by(|a, b| (name(a), a.version, rank(a)).cmp(&(name(b), b.version, rank(b))));
    }

    /// The (class, label) of the key at `i`, for checks across the
    /// listing; the label as shown (lossy when it is not UTF-8).
    pub fn class_and_label(&self, i: usize) -> (&'static str, &str) {
        let b = &self.briefs[i];
        (class_name(Self::class_of(b)), self.bytes(b).0)
    }

    /// The key at `i`: its handle, and whether its label is UTF-8.
    pub fn handle(&self, i: usize) -> (ObjectHandle, bool) {
        let b = &self.briefs[i];
        (b.handle, b.raw_len == 0)
    }

    /// The listing of these objects, in this order (keys named one by one).
    pub fn of_handles(token: &Token<'_>, handles: Vec<ObjectHandle>) -> Result<Listing> {
        let mut listing = Listing::default();
        crate::hsm::pool::run_ordered(
            token,
            handles.into_iter().map(Ok),
            |t, h| read(t, h, false).map(|a| (h, a)),
            |(h, a)| {
                listing.push(h, a);
                Ok(())
            },
            drop,
        )?;
        Ok(listing)
    }
}

/// Every key object of the token, compactly (bulk work on many keys:
/// `backup --all`), sorted as [`super::describe_all`] sorts them: one search and
/// one attribute read per object, as [`super::describe_all`] without KCVs.
pub fn list_keys(token: &Token<'_>) -> Result<Listing> {
    let handles = crate::hsm::find_objects(token.session(), &[Attribute::Token(true)])
        .map_err(|e| Error::pkcs11("find objects", e))?;
    let mut listing = Listing::default();
    // Every object is read: the audit session needs no search of its own.
    let mut sighting = crate::hsm::audit::Sighting::default();
    crate::hsm::pool::run_ordered(
        token,
        handles.into_iter().map(Ok),
        |t, h| read(t, h, false).map(|a| (h, a)),
        |(h, a)| {
            sighting.see(h, class_name(a.class), &String::from_utf8_lossy(&a.label));
            listing.push(h, a);
            Ok(())
        },
        drop,
    )?;
    token.saw_audit_objects(sighting);
    listing.keys_only();
    listing.sort();
    Ok(listing)
}
