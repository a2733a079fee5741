//! Key templates in hsmkey's own words: the class and kind of a key, and a
//! [`KeyTemplate`] builder for the objects backup and restore make, find,
//! unwrap and check, so that code outside `hsm` never builds a PKCS#11
//! attribute list. Also the object calls made with a template: create, find,
//! destroy.

use cryptoki::object::{Attribute, KeyType, ObjectClass};

use super::keys::{StoredKey, Usage};
use super::wrap::{self, PublicValues};
use super::{Handle, Token};
use crate::error::{Error, Result};

/// Which kind of object a key is (CKA_CLASS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    Secret,
    Private,
    Public,
}

impl KeyClass {
    pub(crate) fn ck(self) -> ObjectClass {
        match self {
            KeyClass::Secret => ObjectClass::SECRET_KEY,
            KeyClass::Private => ObjectClass::PRIVATE_KEY,
            KeyClass::Public => ObjectClass::PUBLIC_KEY,
        }
    }
}

/// Which algorithm a key is for (CKA_KEY_TYPE), as far as backup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Aes,
    Generic,
    Rsa,
    Ec,
}

impl KeyKind {
    /// From the type names of reports and bundles: "aes", "generic", "rsa";
    /// anything else is taken as EC (the selection admits no other type).
    pub fn from_name(name: &str) -> KeyKind {
        match name {
            "aes" => KeyKind::Aes,
            "generic" => KeyKind::Generic,
            "rsa" => KeyKind::Rsa,
            _ => KeyKind::Ec,
        }
    }

    pub(crate) fn ck(self) -> KeyType {
        match self {
            KeyKind::Aes => KeyType::AES,
            KeyKind::Generic => KeyType::GENERIC_SECRET,
            KeyKind::Rsa => KeyType::RSA,
            KeyKind::Ec => KeyType::EC,
        }
    }
}

/// An attribute list for a token call, built from hsmkey's types.
#[derive(Debug, Clone)]
pub struct KeyTemplate {
    attrs: Vec<Attribute>,
}

impl KeyTemplate {
    pub(crate) fn attributes(&self) -> &[Attribute] {
        &self.attrs
    }

    /// A token key made by unwrap on restore: what the bundle records,
    /// always sensitive and private (see [`StoredKey`]).
    pub fn stored(
        class: KeyClass,
        kind: KeyKind,
        label: &str,
        id: &[u8],
        extractable: bool,
        wrap_with_trusted: bool,
        usage: &[String],
    ) -> KeyTemplate {
        KeyTemplate {
            attrs: StoredKey {
                private: class == KeyClass::Private,
                key_type: kind.ck(),
                label,
                id,
                extractable,
                wrap_with_trusted,
                usage: Usage::from_names(usage),
            }
            .template(),
        }
    }

    /// The key may not be changed after it is made (CKA_MODIFIABLE=false).
    pub fn not_modifiable(mut self) -> KeyTemplate {
        self.attrs.push(Attribute::Modifiable(false));
        self
    }

    /// What this token needs besides for a private key with these public
    /// values (see [`wrap::private_unwrap_quirks`]).
    pub fn with_private_quirks(mut self, token: &Token<'_>, public: &PublicValues) -> KeyTemplate {
        self.attrs
            .extend(wrap::private_unwrap_quirks(token, Some(public)));
        self
    }

    /// A session copy made only to check a key (see [`wrap::check_copy_template`]).
    pub fn check_copy(class: KeyClass, kind: KeyKind) -> KeyTemplate {
        KeyTemplate {
            attrs: wrap::check_copy_template(class.ck(), kind.ck()),
        }
    }

    /// A session copy of a secret key made only to be wrapped for a
    /// comparison: extractable, and able to do nothing else.
    pub fn compare_copy(kind: KeyKind) -> KeyTemplate {
        KeyTemplate {
            attrs: vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(kind.ck()),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
            ],
        }
    }

    /// A recipient bundle's transfer key, unwrapped: a session AES key that
    /// only unwraps and never leaves the token.
    pub fn transfer_key() -> KeyTemplate {
        KeyTemplate {
            attrs: vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(true),
            ],
        }
    }

    /// A bundle's integrity key, unwrapped: a session HMAC key that only
    /// signs, and satisfies the unwrap template of a trusted KEK.
    pub fn mac_key() -> KeyTemplate {
        KeyTemplate {
            attrs: vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::WrapWithTrusted(true),
                Attribute::Sign(true),
            ],
        }
    }

    /// A token public key made from recorded values, with the usages named
    /// (those a public key can have: encrypt, verify, wrap, derive; every
    /// flag written, so tokens' other defaults are said no to). EC public
    /// keys of other tools can have encrypt and wrap: they are kept.
    pub fn public_key(
        label: &str,
        id: &[u8],
        usage: &[String],
        values: &PublicValues,
    ) -> KeyTemplate {
        let has = |u: &str| usage.iter().any(|x| x == u);
        let mut t = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        match values {
            PublicValues::Rsa { modulus, exponent } => t.extend([
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(modulus.clone()),
                Attribute::PublicExponent(exponent.clone()),
            ]),
            PublicValues::Ec { params, point } => t.extend([
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(params.clone()),
                Attribute::EcPoint(point.clone()),
            ]),
        }
        t.extend([
            Attribute::Encrypt(has("encrypt")),
            Attribute::Verify(has("verify")),
            Attribute::Wrap(has("wrap")),
            Attribute::Derive(has("derive")),
            Attribute::VerifyRecover(false),
        ]);
        KeyTemplate { attrs: t }
    }

    /// What finds the public half of a key pair: public keys with this
    /// label and id.
    pub fn public_half(label: &str, id: &[u8]) -> KeyTemplate {
        KeyTemplate {
            attrs: vec![
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
            ],
        }
    }

    /// What finds the token's trusted wrapping keys (CKA_TRUSTED, CKA_WRAP).
    pub fn trusted_wrapping_keys() -> KeyTemplate {
        KeyTemplate {
            attrs: vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
                Attribute::Trusted(true),
                Attribute::Wrap(true),
            ],
        }
    }

    /// What finds a KEK by its label: token secret keys with exactly it.
    pub fn token_secret_labelled(label: &str) -> KeyTemplate {
        KeyTemplate {
            attrs: vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        }
    }

    /// C_CreateObject with this template; `action` names it in an error.
    pub fn create(&self, token: &Token<'_>, action: &str) -> Result<Handle> {
        token
            .session()
            .create_object(&self.attrs)
            .map_err(|e| Error::pkcs11(action, e))
    }

    /// Every object matching this template; `action` names it in an error.
    pub fn find(&self, token: &Token<'_>, action: &str) -> Result<Vec<Handle>> {
        token
            .session()
            .find_objects(&self.attrs)
            .map_err(|e| Error::pkcs11(action, e))
    }
}

/// C_DestroyObject; `action` names it in an error.
pub fn destroy(token: &Token<'_>, handle: Handle, action: &str) -> Result<()> {
    token
        .session()
        .destroy_object(handle)
        .map_err(|e| Error::pkcs11(action, e))
}

/// Random bytes drawn in the token (a salt); `action` names it in an error.
pub fn random(token: &Token<'_>, len: usize, action: &str) -> Result<Vec<u8>> {
    token
        .session()
        .generate_random_vec(len as u32)
        .map_err(|e| Error::pkcs11(action, e))
}
