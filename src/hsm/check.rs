//! Checks and proofs about a key in the token, for backup, restore and
//! verify: its KCV, its public values and whether a private key matches
//! them, the usages it really has, and whether two keys hold the same value
//! (both wrapped under a fresh session key).

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki_sys::{CKM_AES_ECB, CKM_SHA256_HMAC};

use super::keys::Usage;
use super::probe::Ephemeral;
use super::raw::{OneShot, RawMechanism};
use super::template::{KeyKind, KeyTemplate};
use super::unwrap::unwrap_into;
use super::wrap::{self, SessionKey};
use super::wrap::{session_ec_public, token_error};
use super::{Handle, Token};
use crate::error::{Error, Result};

/// The KCV of a secret key that can do the check operation, with its method
/// ([`KCV_AES`] for AES, [`KCV_GENERIC`] otherwise).
pub fn kcv(token: &Token<'_>, key: Handle, kind: KeyKind) -> Result<(String, &'static str)> {
    kcv_of(token, key, kind.ck())
}

/// The public values of a key: RSA from either half, EC from the public half.
pub fn public_of(token: &Token<'_>, key: Handle, kind: KeyKind) -> Result<Option<PublicValues>> {
    public_values(token.session(), key, kind.ck())
}

/// The seven usage flags of a key as the token reports them, in one read
/// (an absent flag is false).
pub fn usage_of(token: &Token<'_>, key: Handle) -> Result<Usage> {
    let wanted = [
        AttributeType::Encrypt,
        AttributeType::Decrypt,
        AttributeType::Sign,
        AttributeType::Verify,
        AttributeType::Wrap,
        AttributeType::Unwrap,
        AttributeType::Derive,
    ];
    let attrs = token
        .module()
        .raw()
        .get_attributes_once(token.session().handle(), key.handle(), &wanted)
        .map_err(|rv| {
            token_error(
                "read a key's usages",
                cryptoki::context::Function::GetAttributeValue,
                rv,
            )
        })?
        .ok_or_else(|| Error::Internal("a usage flag did not fit its buffer".into()))?;
    let mut usage = Usage::default();
    for a in attrs {
        match a {
            Attribute::Encrypt(b) => usage.encrypt = b,
            Attribute::Decrypt(b) => usage.decrypt = b,
            Attribute::Sign(b) => usage.sign = b,
            Attribute::Verify(b) => usage.verify = b,
            Attribute::Wrap(b) => usage.wrap = b,
            Attribute::Unwrap(b) => usage.unwrap = b,
            Attribute::Derive(b) => usage.derive = b,
            _ => {}
        }
    }
    Ok(usage)
}

/// Some tokens (NSS) add usages the unwrap template said no to. Set them
/// back; if the token will not, fail rather than widen a key. `usage` is
/// what the key should have, by name.
pub fn enforce_usage(
    token: &Token<'_>,
    key: Handle,
    label: &str,
    private: bool,
    usage: &[String],
) -> Result<()> {
    let wanted: Vec<&str> = usage.iter().map(String::as_str).collect();
    let extra: Vec<&str> = usage_of(token, key)?
        .names()
        .into_iter()
        .filter(|u| !wanted.contains(u))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    let fix: Vec<Attribute> = Usage::from_names(usage)
        .attributes(private)
        .into_iter()
        .filter(|a| match a {
            Attribute::Encrypt(v)
            | Attribute::Decrypt(v)
            | Attribute::Sign(v)
            | Attribute::Verify(v)
            | Attribute::Wrap(v)
            | Attribute::Unwrap(v)
            | Attribute::Derive(v) => !v,
            _ => false,
        })
        .collect();
    let _ = token.session().update_attributes(key, &fix);
    let still: Vec<&str> = usage_of(token, key)?
        .names()
        .into_iter()
        .filter(|u| !wanted.contains(u))
        .collect();
    if still.is_empty() {
        tracing::info!(
            "{}: the token added {}; set back to the bundle's usage",
            label,
            extra.join(",")
        );
        Ok(())
    } else {
        Err(Error::NotCapable {
            capability: format!("restoring {} with only its recorded usage", label),
            detail: format!(
                "the token gives it {} as well and will not take them away",
                still.join(",")
            ),
            alternatives: "Restore on a token that honours usage flags in unwrap templates.".into(),
        })
    }
}

/// Whether `key` on the token holds the value `blob` unwraps to, proved in
/// the token: the blob is unwrapped (with `mechanism` under `unwrapping`)
/// into a session copy, a fresh session key that never leaves the token
/// wraps both with `compare_mechanism`, and the two results are compared
/// (AES key wrap is deterministic). Neither result can be opened outside
/// the token. A key the token will not wrap, or a blob that does not
/// unwrap into a copy, is not proved. `label` names the key in errors.
#[allow(clippy::too_many_arguments)]
pub fn wraps_same(
    token: &Token<'_>,
    mechanism: u64,
    unwrapping: Handle,
    blob: &[u8],
    kind: KeyKind,
    compare_mechanism: u64,
    key: Handle,
    label: &str,
) -> Result<bool> {
    let mut eph = Ephemeral::new(token.session());
    let template = KeyTemplate::compare_copy(kind);
    let copy = match unwrap_into(token, mechanism, unwrapping, blob, &template) {
        Ok(copy) => eph.keep(copy),
        Err(r) if r.means_bad_blob(token, mechanism) || r.is_not_proof() => return Ok(false),
        Err(r) => return Err(r.failure(&format!("unwrap a copy of {label} to compare"))),
    };
    let compare = wrap::generate_session_key(token, &mut eph, SessionKey::Compare)?;
    let wrapped_copy = wrap::wrap(token, compare_mechanism, compare, copy)?;
    match wrap::wrap(token, compare_mechanism, compare, key) {
        Ok(wrapped_key) => Ok(crate::formats::same_bytes(&wrapped_key, &wrapped_copy)),
        Err(Error::Pkcs11 { rv, .. })
            if [
                "CKR_KEY_NOT_WRAPPABLE",
                "CKR_KEY_UNEXTRACTABLE",
                "CKR_KEY_FUNCTION_NOT_PERMITTED",
                "CKR_KEY_SIZE_RANGE",
                "CKR_DATA_LEN_RANGE",
                "CKR_KEY_TYPE_INCONSISTENT",
            ]
            .contains(&rv.as_str()) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The KCV methods of bundle entries.
pub const KCV_AES: &str = "aes-ecb-zero";
pub const KCV_GENERIC: &str = "hmac-sha256-empty";

/// Compute the KCV of a secret key that can do the check operation.
pub fn kcv_of(
    token: &Token<'_>,
    key: ObjectHandle,
    key_type: KeyType,
) -> Result<(String, &'static str)> {
    let raw = token.module().raw();
    let session = token.session().handle();
    let (op, mechanism, function, action, method, capacity) = if key_type == KeyType::AES {
        (
            OneShot::Encrypt,
            CKM_AES_ECB,
            cryptoki::context::Function::Encrypt,
            "compute a KCV (AES-ECB)",
            KCV_AES,
            16,
        )
    } else {
        (
            OneShot::Sign,
            CKM_SHA256_HMAC,
            cryptoki::context::Function::Sign,
            "compute a KCV (HMAC-SHA256)",
            KCV_GENERIC,
            32,
        )
    };
    let out = raw
        .one_shot(
            session,
            op,
            &RawMechanism::Number(mechanism),
            key.handle(),
            if key_type == KeyType::AES {
                &[0u8; 16]
            } else {
                &[]
            },
            capacity,
        )
        .map_err(|rv| token_error(action, function, rv))?;
    if out.len() < 3 {
        return Err(Error::Internal(format!(
            "{action}: the token returned {} bytes",
            out.len()
        )));
    }
    Ok((hex::encode(&out[..3]), method))
}

/// Public values of a key pair, read from the token (public data only).
#[derive(Debug, Clone)]
pub enum PublicValues {
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    Ec { params: Vec<u8>, point: Vec<u8> },
}

/// Read public values: RSA from any half, EC from the public half.
pub fn public_values(
    session: &Session,
    handle: ObjectHandle,
    key_type: KeyType,
) -> Result<Option<PublicValues>> {
    let wanted: &[AttributeType] = if key_type == KeyType::RSA {
        &[AttributeType::Modulus, AttributeType::PublicExponent]
    } else {
        &[AttributeType::EcParams, AttributeType::EcPoint]
    };
    let attrs = session
        .get_attributes(handle, wanted)
        .map_err(|e| Error::pkcs11("read public key values", e))?;
    let (mut a, mut b) = (None, None);
    for attr in attrs {
        match attr {
            Attribute::Modulus(v) | Attribute::EcParams(v) => a = Some(v),
            Attribute::PublicExponent(v) | Attribute::EcPoint(v) => b = Some(v),
            _ => {}
        }
    }
    Ok(match (a, b) {
        (Some(a), Some(b)) if key_type == KeyType::RSA => Some(PublicValues::Rsa {
            modulus: a,
            exponent: b,
        }),
        (Some(a), Some(b)) => Some(PublicValues::Ec {
            params: a,
            point: b,
        }),
        _ => None,
    })
}

/// Prove in the token that `private` belongs to `public` (values from a
/// bundle or the source token): RSA by comparing the modulus the token reports
/// for the private key; EC by signing a random challenge with the private key
/// and verifying with a session copy of the public key.
pub fn private_matches(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    private: ObjectHandle,
    public: &PublicValues,
) -> Result<bool> {
    let session = token.session();
    match public {
        PublicValues::Rsa { modulus, .. } => {
            let attrs = session
                .get_attributes(private, &[AttributeType::Modulus])
                .map_err(|e| Error::pkcs11("read the modulus of a private key", e))?;
            let strip = |v: &[u8]| {
                v.iter()
                    .skip_while(|b| **b == 0)
                    .copied()
                    .collect::<Vec<u8>>()
            };
            Ok(attrs
                .into_iter()
                .any(|a| matches!(a, Attribute::Modulus(m) if strip(&m) == strip(modulus))))
        }
        PublicValues::Ec { params, point } => {
            let pubh = session_ec_public(token, eph, params, point)?;
            let challenge = session
                .generate_random_vec(32)
                .map_err(|e| Error::pkcs11("draw a challenge", e))?;
            let signature = session
                .sign(&Mechanism::Ecdsa, private, &challenge)
                .map_err(|e| Error::pkcs11("sign a challenge with the private key", e))?;
            match session.verify(&Mechanism::Ecdsa, pubh, &challenge, &signature) {
                Ok(()) => Ok(true),
                Err(cryptoki::error::Error::Pkcs11(
                    cryptoki::error::RvError::SignatureInvalid
                    | cryptoki::error::RvError::SignatureLenRange,
                    _,
                )) => Ok(false),
                // A failing token is not a key that does not match.
                Err(e) => Err(Error::pkcs11("check a signature with the public half", e)),
            }
        }
    }
}

/// What [`measure_secret`] found out about a secret key.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// The key's length in bits, when a key here may wrap it.
    pub bits: Option<u64>,
    /// Its AES KCV, computed on a session copy, when asked for and the key
    /// may leave under a session key.
    pub kcv: Option<String>,
}

/// CKM_AES_KEY_WRAP: exact RFC 3394 on every token tested (docs/TOKENS.md).
const RFC3394: u64 = 0x2109;

/// Measure in the token what it does not report about a secret key (SoftHSM
/// forgets CKA_VALUE_LEN and CKA_CHECK_VALUE of unwrapped keys,
/// docs/TOKENS.md): the key is wrapped with RFC 3394, whose output is 8
/// bytes longer than the key, under a fresh session key, or, for a key only
/// trusted keys may wrap (`trusted_only`), under a trusted wrapping key of
/// the token. The ciphertext never leaves this function. With `aes_kcv`, the
/// session-wrapped key is unwrapped into a session copy that may only
/// encrypt, for its KCV. A key nothing here may wrap stays unmeasured; so
/// does one the token refuses to wrap.
pub fn measure_secret(
    token: &Token<'_>,
    key: Handle,
    trusted_only: bool,
    aes_kcv: bool,
) -> Result<Measured> {
    let mut eph = Ephemeral::for_token(token);
    let wrapping = if trusted_only {
        let trusted =
            KeyTemplate::trusted_wrapping_keys().find(token, "find a trusted wrapping key")?;
        match trusted.first() {
            Some(h) => *h,
            None => return Ok(Measured::default()),
        }
    } else {
        wrap::generate_session_key(token, &mut eph, SessionKey::Transfer)?
    };
    let blob = match wrap::wrap(token, RFC3394, wrapping, key) {
        Ok(blob) if blob.len() > 8 => blob,
        Ok(_) => return Ok(Measured::default()),
        Err(e) => {
            tracing::debug!("a secret key could not be measured: {e}");
            return Ok(Measured::default());
        }
    };
    let bits = Some((blob.len() as u64 - 8) * 8);
    if !aes_kcv || trusted_only {
        return Ok(Measured { bits, kcv: None });
    }
    let template = KeyTemplate::check_copy(super::template::KeyClass::Secret, KeyKind::Aes);
    let kcv = match unwrap_into(token, RFC3394, wrapping, &blob, &template) {
        Ok(copy) => {
            let copy = eph.keep(copy);
            kcv_of(token, copy, KeyType::AES).ok().map(|(v, _)| v)
        }
        Err(r) => {
            tracing::debug!("no session copy for a KCV: {}", r.name());
            None
        }
    };
    Ok(Measured { bits, kcv })
}
