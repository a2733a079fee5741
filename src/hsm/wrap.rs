//! Wrapping and unwrapping in the token, and the session keys that go with
//! it: the algorithm-to-mechanism map proved by known-answer tests, RSA-OAEP,
//! session KEKs, MAC keys, check copies for KCVs, public halves.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use zeroize::{Zeroize, Zeroizing};

use super::probe::{self, Ephemeral, WrapAlgorithm};
use super::raw::{self, RawMechanism};
use super::Token;
use crate::error::{ckr_name, Error, Result};

/// Which mechanism gives which wrap algorithm on this token, proved by the
/// known-answer tests of [`probe`].
#[derive(Debug, Clone, Default)]
pub struct WrapSupport {
    pub rfc3394: Option<u64>,
    pub rfc5649: Option<u64>,
    pub rfc5649_zero_padded: Option<u64>,
}

impl WrapSupport {
    /// Run the known-answer tests of the AES key-wrap mechanisms.
    pub fn probe(token: &Token<'_>) -> Result<WrapSupport> {
        let mut support = WrapSupport::default();
        let raw = token.module().raw();
        let slot = token.slot().id();
        // Exact RFC 5649 by its own number first, so it wins over 0x210A.
        for mech in [
            probe::CKM_AES_KEY_WRAP,
            probe::CKM_AES_KEY_WRAP_KWP,
            probe::CKM_AES_KEY_WRAP_PAD,
        ] {
            let offered = raw.mechanism_info(slot, mech).map_err(|rv| Error::Pkcs11 {
                function: "C_GetMechanismInfo".into(),
                rv: ckr_name(rv),
                action: "probe key-wrap mechanisms".into(),
            })?;
            if offered.is_none() {
                continue;
            }
            match probe::kat(token, mech)? {
                Ok(WrapAlgorithm::Rfc3394) => {
                    support.rfc3394.get_or_insert(mech);
                }
                Ok(WrapAlgorithm::Rfc5649) => {
                    support.rfc5649.get_or_insert(mech);
                }
                Ok(WrapAlgorithm::Rfc5649ZeroPadded) => {
                    support.rfc5649_zero_padded.get_or_insert(mech);
                }
                Ok(_) | Err(_) => {}
            }
        }
        Ok(support)
    }

    /// The mechanism that gives `algorithm` here, if any.
    pub fn mechanism(&self, algorithm: &str) -> Option<u64> {
        match algorithm {
            "rfc3394" => self.rfc3394,
            "rfc5649" => self.rfc5649,
            "rfc5649-zero-padded" => self.rfc5649_zero_padded,
            _ => None,
        }
    }

    /// The mechanism to unwrap a blob made with `algorithm`. Unwrapping is
    /// where the RFC 5649 variants meet: SoftHSM's 0x210A zero-pads only when
    /// it wraps, and unwraps exact RFC 5649 as written; an exact RFC 5649
    /// unwrap of a zero-padded blob gives the PKCS#8 with trailing zeros,
    /// which a token's DER parser may or may not accept. Either way the key
    /// is checked against its public half after unwrap.
    pub fn unwrap_mechanism(&self, algorithm: &str) -> Option<u64> {
        match algorithm {
            "rfc5649" => self.rfc5649.or(self.rfc5649_zero_padded),
            "rfc5649-zero-padded" => self.rfc5649_zero_padded.or(self.rfc5649),
            other => self.mechanism(other),
        }
    }

    /// For secret keys (lengths are multiples of 8): RFC 3394, exact everywhere.
    pub fn for_secret(&self) -> Option<(&'static str, u64)> {
        match (self.rfc3394, self.rfc5649) {
            (Some(m), _) => Some(("rfc3394", m)),
            (None, Some(m)) => Some(("rfc5649", m)),
            (None, None) => None,
        }
    }

    /// For PKCS#8 private keys: exact RFC 5649, else SoftHSM's zero-padded
    /// variant (each key is then proved to round-trip before it is written).
    pub fn for_private(&self) -> Option<(&'static str, u64)> {
        match (self.rfc5649, self.rfc5649_zero_padded) {
            (Some(m), _) => Some(("rfc5649", m)),
            (None, Some(m)) => Some(("rfc5649-zero-padded", m)),
            (None, None) => None,
        }
    }

    pub fn describe(&self) -> String {
        let name = |m: Option<u64>| {
            m.map(|n| format!("0x{n:04X}"))
                .unwrap_or_else(|| "none".into())
        };
        format!(
            "rfc3394: {}, rfc5649: {}, rfc5649-zero-padded: {}",
            name(self.rfc3394),
            name(self.rfc5649),
            name(self.rfc5649_zero_padded)
        )
    }
}

pub(super) fn token_error(
    action: &str,
    function: cryptoki::context::Function,
    rv: cryptoki::error::RvError,
) -> Error {
    Error::pkcs11(action, cryptoki::error::Error::Pkcs11(rv, function))
}

/// C_WrapKey with any mechanism number, returning exactly the bytes written.
pub fn wrap(
    token: &Token<'_>,
    mechanism: u64,
    wrapping: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>> {
    token
        .module()
        .raw()
        .wrap_key(
            token.session().handle(),
            &RawMechanism::Number(mechanism),
            wrapping.handle(),
            key.handle(),
        )
        .map_err(|rv| token_error("wrap a key", cryptoki::context::Function::WrapKey, rv))
}

/// C_UnwrapKey with any mechanism number.
/// A wrap the token refused because of the key's own policy
/// (CKR_KEY_NOT_WRAPPABLE, CKR_KEY_UNEXTRACTABLE) becomes a policy refusal
/// naming the key; any other failure stays what it was.
pub fn refused_by_policy(label: &str, e: Error) -> Error {
    match e {
        Error::Pkcs11 { ref rv, .. }
            if rv == "CKR_KEY_NOT_WRAPPABLE" || rv == "CKR_KEY_UNEXTRACTABLE" =>
        {
            Error::PolicyRefused {
                key: label.to_string(),
                reason: format!("the token refused to wrap it ({rv})"),
            }
        }
        other => other,
    }
}

pub fn unwrap(
    token: &Token<'_>,
    mechanism: u64,
    unwrapping: ObjectHandle,
    wrapped: &[u8],
    template: &[Attribute],
) -> std::result::Result<ObjectHandle, cryptoki::error::RvError> {
    token
        .module()
        .raw()
        .unwrap_key(
            token.session().handle(),
            &RawMechanism::Number(mechanism),
            unwrapping.handle(),
            wrapped,
            template,
        )
        .map(raw::object_handle)
}

/// C_UnwrapKey that also gives the new key a CKA_UNWRAP_TEMPLATE.
pub fn unwrap_with_unwrap_template(
    token: &Token<'_>,
    mechanism: u64,
    unwrapping: ObjectHandle,
    wrapped: &[u8],
    template: &[Attribute],
    unwrap_template: &[Attribute],
) -> std::result::Result<ObjectHandle, cryptoki::error::RvError> {
    token
        .module()
        .raw()
        .unwrap_key_with_unwrap_template(
            token.session().handle(),
            &RawMechanism::Number(mechanism),
            unwrapping.handle(),
            wrapped,
            template,
            Some(unwrap_template),
        )
        .map(raw::object_handle)
}

/// The OAEP hashes hsmkey offers (MGF1 with the same hash, empty label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl OaepHash {
    pub fn name(self) -> &'static str {
        match self {
            OaepHash::Sha1 => "sha1",
            OaepHash::Sha224 => "sha224",
            OaepHash::Sha256 => "sha256",
            OaepHash::Sha384 => "sha384",
            OaepHash::Sha512 => "sha512",
        }
    }

    pub fn parse(s: &str) -> Option<OaepHash> {
        match s {
            "sha1" => Some(OaepHash::Sha1),
            "sha224" => Some(OaepHash::Sha224),
            "sha256" => Some(OaepHash::Sha256),
            "sha384" => Some(OaepHash::Sha384),
            "sha512" => Some(OaepHash::Sha512),
            _ => None,
        }
    }

    fn params(self) -> PkcsOaepParams<'static> {
        let (hash, mgf) = match self {
            OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            OaepHash::Sha224 => (MechanismType::SHA224, PkcsMgfType::MGF1_SHA224),
            OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
            OaepHash::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
            OaepHash::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
        };
        PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty())
    }
}

fn oaep_refused(hash: OaepHash, rv: cryptoki::error::RvError) -> Error {
    Error::NotCapable {
        capability: format!("RSA-OAEP with {}", hash.name().to_uppercase()),
        detail: format!("the token answered {}", ckr_name(rv)),
        alternatives: "Use --oaep-hash sha1 (SoftHSM 2.6.1 has OAEP with SHA-1 only), or a token that has this hash (`hsmkey token mechanisms`).".into(),
    }
}

/// RSA-OAEP wrap (MGF1 with the same hash, empty label).
pub fn wrap_oaep(
    token: &Token<'_>,
    hash: OaepHash,
    public: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>> {
    let mech = Mechanism::RsaPkcsOaep(hash.params());
    token
        .module()
        .raw()
        .wrap_key(
            token.session().handle(),
            &RawMechanism::Cryptoki(&mech),
            public.handle(),
            key.handle(),
        )
        .map_err(|rv| match rv {
            cryptoki::error::RvError::MechanismInvalid
            | cryptoki::error::RvError::MechanismParamInvalid
            | cryptoki::error::RvError::ArgumentsBad => oaep_refused(hash, rv),
            other => token_error(
                "wrap a key with RSA-OAEP",
                cryptoki::context::Function::WrapKey,
                other,
            ),
        })
}

/// RSA-OAEP unwrap into a new object.
pub fn unwrap_oaep(
    token: &Token<'_>,
    hash: OaepHash,
    private: ObjectHandle,
    wrapped: &[u8],
    template: &[Attribute],
) -> std::result::Result<ObjectHandle, cryptoki::error::RvError> {
    let mech = Mechanism::RsaPkcsOaep(hash.params());
    token
        .module()
        .raw()
        .unwrap_key(
            token.session().handle(),
            &RawMechanism::Cryptoki(&mech),
            private.handle(),
            wrapped,
            template,
        )
        .map(raw::object_handle)
}

/// Load a password-derived AES-256 KEK as a session object (the documented
/// exception to "no key bytes on the host"). The bytes are wiped here, and
/// the copy inside the attribute too, since cryptoki does not zeroize it.
pub fn session_kek_from_value(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    value: Zeroizing<Vec<u8>>,
) -> Result<ObjectHandle> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Value(value.to_vec()),
    ];
    drop(value);
    let created = token.session().create_object(&template);
    for attr in template.iter_mut() {
        if let Attribute::Value(v) = attr {
            v.zeroize();
        }
    }
    let h = created.map_err(|e| Error::pkcs11("load the password-derived key", e))?;
    Ok(eph.keep(h))
}

/// What a fresh session key is for.
#[derive(Debug, Clone, Copy)]
pub enum SessionKey {
    /// AES-256 transfer key: wraps the entries, is itself wrapped by RSA-OAEP.
    Transfer,
    /// 32-byte HMAC key: the bundle's integrity key.
    Mac,
    /// AES-256 key that never leaves the token and only wraps: two keys
    /// wrapped under it compare equal exactly when their values are equal.
    Compare,
}

/// A session AES-256 key that wraps, neither encrypts nor decrypts, and,
/// when `transfer`, may itself be wrapped and may unwrap.
fn session_aes_template(transfer: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::ValueLen(32u64.into()),
        Attribute::Sensitive(true),
        Attribute::Extractable(transfer),
        Attribute::Wrap(true),
        Attribute::Unwrap(transfer),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
    ]
}

/// Generate a session key in the token (see [`SessionKey`]).
pub fn generate_session_key(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    kind: SessionKey,
) -> Result<ObjectHandle> {
    let (mech, template) = match kind {
        // The transfer key is wrapped to the recipient and unwraps entries;
        // the comparison key never leaves the token and only wraps.
        SessionKey::Transfer => (Mechanism::AesKeyGen, session_aes_template(true)),
        SessionKey::Compare => (Mechanism::AesKeyGen, session_aes_template(false)),
        SessionKey::Mac => (
            Mechanism::GenericSecretKeyGen,
            vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::ValueLen(32u64.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Sign(true),
                Attribute::Verify(true),
            ],
        ),
    };
    let h = token
        .session()
        .generate_key(&mech, &template)
        .map_err(|e| Error::pkcs11("generate a session key", e))?;
    Ok(eph.keep(h))
}

/// Template of a session copy made only to check a key: never extractable,
/// always sensitive, able to do the one operation the check needs.
pub fn check_copy_template(class: ObjectClass, key_type: KeyType) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(class),
        Attribute::KeyType(key_type),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        // Satisfies the unwrap template of a trusted KEK.
        Attribute::WrapWithTrusted(true),
    ];
    if key_type == KeyType::AES {
        t.push(Attribute::Encrypt(true));
    } else {
        t.push(Attribute::Sign(true));
    }
    t
}

/// The KCVs and public values of keys live with the other checks.
pub use super::check::{
    kcv_of, private_matches, public_values, PublicValues, KCV_AES, KCV_GENERIC,
};

/// Create a session RSA public key from its modulus and exponent (for wrapping
/// to a recipient, or checking a restored private key).
pub fn session_rsa_public(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    modulus: &[u8],
    exponent: &[u8],
) -> Result<ObjectHandle> {
    let h = token
        .session()
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Modulus(modulus.to_vec()),
            Attribute::PublicExponent(exponent.to_vec()),
            Attribute::Wrap(true),
            Attribute::Encrypt(true),
            Attribute::Verify(true),
        ])
        .map_err(|e| Error::pkcs11("load a public key as a session object", e))?;
    Ok(eph.keep(h))
}

/// Create a session EC public key (for checking a restored private key).
pub fn session_ec_public(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    params: &[u8],
    point: &[u8],
) -> Result<ObjectHandle> {
    let h = token
        .session()
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(false),
            Attribute::EcParams(params.to_vec()),
            Attribute::EcPoint(point.to_vec()),
            Attribute::Verify(true),
        ])
        .map_err(|e| Error::pkcs11("load a public key as a session object", e))?;
    Ok(eph.keep(h))
}

/// NSS softokn's vendor attribute CKA_NSS_DB: the public value under which it
/// stores a private key.
const CKA_NSS_DB: u64 = 0xD5A0_DB00;

/// Whether the token is NSS softokn (docs/TOKENS.md).
pub fn is_nss(token: &Token<'_>) -> bool {
    token.summary().manufacturer == "Mozilla Foundation"
}

/// Extra unwrap-template attributes a token needs for a private key. NSS
/// softokn refuses to unwrap an EC private key (CKR_TEMPLATE_INCOMPLETE)
/// unless the template carries its public point in CKA_NSS_DB; other tokens
/// need nothing.
pub fn private_unwrap_quirks(token: &Token<'_>, public: Option<&PublicValues>) -> Vec<Attribute> {
    use der::Decode;
    match public {
        Some(PublicValues::Ec { point, .. }) if is_nss(token) => {
            let raw = der::asn1::OctetString::from_der(point)
                .map(|os| os.as_bytes().to_vec())
                .unwrap_or_else(|_| point.clone());
            vec![Attribute::VendorDefined((
                AttributeType::VendorDefined(CKA_NSS_DB as _),
                raw,
            ))]
        }
        _ => Vec::new(),
    }
}
