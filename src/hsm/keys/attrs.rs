//! Reading one object's attributes (`Attrs`): every attribute hsmkey shows
//! of a key in one C_GetAttributeValue where the token allows, never
//! CKA_VALUE; the key's size worked out from them.

use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};

use super::Usage;
use crate::error::{Error, Result};
use crate::hsm::Token;

/// Read a key's attributes, in one C_GetAttributeValue where the values fit
/// the buffers offered (a round trip less per key on a network HSM), else in
/// cryptoki's two. A token may answer CKR_ATTRIBUTE_TYPE_INVALID when a value
/// also did not fit, and both leave the value out, so a read missing an
/// attribute every key of its kind has is made again the two-call way.
fn read_attributes(
    token: &Token<'_>,
    handle: ObjectHandle,
    wanted: &[AttributeType],
) -> Result<Vec<Attribute>> {
    let once = token
        .module()
        .raw()
        .get_attributes_once(token.session().handle(), handle.handle(), wanted)
        .map_err(|rv| {
            Error::pkcs11(
                "read key attributes",
                cryptoki::error::Error::Pkcs11(rv, cryptoki::context::Function::GetAttributeValue),
            )
        })?;
    if let Some(attrs) = once {
        let has = |t: AttributeType| attrs.iter().any(|a| a.attribute_type() == t);
        let key_type = attrs.iter().find_map(|a| match a {
            Attribute::KeyType(k) => Some(*k),
            _ => None,
        });
        let needs = match key_type {
            Some(CkKeyType::RSA) => Some(AttributeType::Modulus),
            Some(CkKeyType::EC) => Some(AttributeType::EcParams),
            _ => None,
        };
        let complete = [AttributeType::Label, AttributeType::Id]
            .into_iter()
            .chain(needs)
            .all(|t| !wanted.contains(&t) || has(t));
        if complete {
            return Ok(attrs);
        }
    }
    token
        .session()
        .get_attributes(handle, wanted)
        .map_err(|e| Error::pkcs11("read key attributes", e))
}

/// The boolean attributes of a key, `None` where the token did not report one.
#[derive(Default)]
pub(super) struct Flags {
    pub(super) sensitive: Option<bool>,
    pub(super) extractable: Option<bool>,
    pub(super) always_sensitive: Option<bool>,
    pub(super) never_extractable: Option<bool>,
    pub(super) wrap_with_trusted: Option<bool>,
    pub(super) trusted: Option<bool>,
    pub(super) private: Option<bool>,
    pub(super) local: Option<bool>,
    pub(super) modifiable: Option<bool>,
}

impl Flags {
    pub(super) fn all(&self) -> [Option<bool>; 9] {
        [
            self.sensitive,
            self.extractable,
            self.always_sensitive,
            self.never_extractable,
            self.wrap_with_trusted,
            self.trusted,
            self.private,
            self.local,
            self.modifiable,
        ]
    }

    pub(super) fn from_all(f: [Option<bool>; 9]) -> Flags {
        Flags {
            sensitive: f[0],
            extractable: f[1],
            always_sensitive: f[2],
            never_extractable: f[3],
            wrap_with_trusted: f[4],
            trusted: f[5],
            private: f[6],
            local: f[7],
            modifiable: f[8],
        }
    }
}

/// What one read of an object's attributes gave.
pub(super) struct Attrs {
    pub(super) class: ObjectClass,
    pub(super) key_type: Option<CkKeyType>,
    pub(super) label: Vec<u8>,
    pub(super) id: Vec<u8>,
    /// Bits, where the attributes tell (a secret key's value length, a
    /// modulus, an EC curve).
    pub(super) size: Option<u64>,
    pub(super) usage: Usage,
    pub(super) check_value: Option<Vec<u8>>,
    pub(super) flags: Flags,
}

/// Read what matters of one object, in one call where the token allows.
pub(super) fn read(token: &Token<'_>, handle: ObjectHandle, with_kcv: bool) -> Result<Attrs> {
    // Bulk reads (no KCV) skip the attributes only `key show` displays:
    // every attribute is work for the token, ten thousand times over.
    const DISPLAY_ONLY: [AttributeType; 4] = [
        AttributeType::AlwaysSensitive,
        AttributeType::NeverExtractable,
        AttributeType::Local,
        AttributeType::Modifiable,
    ];
    let all = [
        AttributeType::Class,
        AttributeType::KeyType,
        AttributeType::Label,
        AttributeType::Id,
        AttributeType::ValueLen,
        AttributeType::ModulusBits,
        AttributeType::Modulus,
        AttributeType::EcParams,
        AttributeType::Encrypt,
        AttributeType::Decrypt,
        AttributeType::Sign,
        AttributeType::Verify,
        AttributeType::Wrap,
        AttributeType::Unwrap,
        AttributeType::Derive,
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::AlwaysSensitive,
        AttributeType::NeverExtractable,
        AttributeType::WrapWithTrusted,
        AttributeType::Trusted,
        AttributeType::Private,
        AttributeType::Local,
        AttributeType::Modifiable,
        AttributeType::CheckValue,
    ];
    let wanted: Vec<AttributeType> = all
        .into_iter()
        .filter(|a| with_kcv || !DISPLAY_ONLY.contains(a))
        .collect();
    let attrs = read_attributes(token, handle, &wanted)?;
    let mut class = ObjectClass::DATA;
    let mut key_type = None;
    let mut label = Vec::new();
    let mut id = Vec::new();
    let mut value_len = None;
    let mut modulus_bits = None;
    let mut ec_params = None;
    let mut usage = Usage::default();
    let mut check_value = None;
    let mut flags = Flags::default();
    for a in attrs {
        match a {
            Attribute::Class(c) => class = c,
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::Label(l) => label = l,
            Attribute::Id(i) => id = i,
            Attribute::ValueLen(l) => value_len = Some(u64::from(l)),
            Attribute::ModulusBits(b) => modulus_bits = Some(u64::from(b)),
            // Private keys carry the modulus (public information) but not CKA_MODULUS_BITS.
            Attribute::Modulus(m) if modulus_bits.is_none() => {
                let significant = m.iter().skip_while(|b| **b == 0).count() as u64;
                modulus_bits = Some(significant * 8);
            }
            Attribute::EcParams(p) => ec_params = Some(p),
            Attribute::Encrypt(b) => usage.encrypt = b,
            Attribute::Decrypt(b) => usage.decrypt = b,
            Attribute::Sign(b) => usage.sign = b,
            Attribute::Verify(b) => usage.verify = b,
            Attribute::Wrap(b) => usage.wrap = b,
            Attribute::Unwrap(b) => usage.unwrap = b,
            Attribute::Derive(b) => usage.derive = b,
            Attribute::Sensitive(b) => {
                flags.sensitive = Some(b);
            }
            Attribute::Extractable(b) => {
                flags.extractable = Some(b);
            }
            Attribute::AlwaysSensitive(b) => {
                flags.always_sensitive = Some(b);
            }
            Attribute::NeverExtractable(b) => {
                flags.never_extractable = Some(b);
            }
            Attribute::WrapWithTrusted(b) => {
                flags.wrap_with_trusted = Some(b);
            }
            Attribute::Trusted(b) => {
                flags.trusted = Some(b);
            }
            Attribute::Private(b) => {
                flags.private = Some(b);
            }
            Attribute::Local(b) => {
                flags.local = Some(b);
            }
            Attribute::Modifiable(b) => {
                flags.modifiable = Some(b);
            }
            Attribute::CheckValue(v) => check_value = Some(v),
            _ => {}
        }
    }
    let size = match (key_type, modulus_bits, value_len, &ec_params) {
        (_, Some(bits), _, _) if bits > 0 => Some(bits),
        (Some(k), _, _, Some(p)) if k == CkKeyType::EC => ec_bits(p),
        // SoftHSM reports 0 for unwrapped secret keys (docs/TOKENS.md): unknown, not zero.
        (_, _, Some(len), _) if len > 0 => Some(len * 8),
        _ => None,
    };
    Ok(Attrs {
        class,
        key_type,
        label,
        id,
        size,
        usage,
        check_value,
        flags,
    })
}

fn ec_bits(params: &[u8]) -> Option<u64> {
    match params {
        [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07] => Some(256),
        [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22] => Some(384),
        [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23] => Some(521),
        _ => None,
    }
}
