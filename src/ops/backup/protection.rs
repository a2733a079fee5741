//! How a bundle is protected and opened again: the KEK (found and checked),
//! the password (Argon2id), the recipient's RSA key (the transfer key), and
//! the bundle's integrity key unwrapped from the header.

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{Opened, Unprotect};
use crate::error::{Error, Result};
use crate::formats::bundle::{unb64, Header, KdfParams, Protection, RecipientInfo};
use crate::formats::{password, spki};
use crate::hsm::check;
use crate::hsm::keys::{self, KeyInfo, KeySelector, Listing};
use crate::hsm::probe::Ephemeral;
use crate::hsm::template::{KeyKind, KeyTemplate};
use crate::hsm::unwrap::{unwrap_into, unwrap_oaep_into};
use crate::hsm::wrap::{self, OaepHash, PublicValues, WrapSupport};
use crate::hsm::{Handle, Token};

/// Argon2id cost for new password-protected bundles: 64 MiB, 3 passes.
pub const ARGON2_M_KIB: u32 = 64 * 1024;
pub const ARGON2_T: u32 = 3;
pub const ARGON2_P: u32 = 1;
/// Upper bounds accepted from a bundle header, which is not authenticated
/// until the key it describes has been derived.
pub(super) const ARGON2_MAX_M_KIB: u32 = 1024 * 1024;
pub(super) const ARGON2_MAX_T: u32 = 16;
pub(super) const ARGON2_MAX_P: u32 = 16;

/// The single key a KEK selector names.
/// A KEK must itself be protected: a non-sensitive one would let anyone with
/// the PIN read everything wrapped under it. An extractable one is allowed
/// (a KEK can be moved between tokens on purpose) but said out loud.
pub(crate) fn resolve_kek(token: &Token<'_>, selector: &KeySelector) -> Result<KeyInfo> {
    resolve_kek_listed(token, selector, None)
}

/// [`resolve_kek`], finding a KEK named by its label in `listing` (the
/// token's keys, read for the backup's selection) when there is one: a
/// search is a pass over every object on some tokens, and the listing has
/// already made it.
pub(crate) fn resolve_kek_listed(
    token: &Token<'_>,
    selector: &KeySelector,
    listing: Option<&Listing>,
) -> Result<KeyInfo> {
    let kek = resolve_kek_unchecked(token, selector, listing)?;
    if kek.sensitive != Some(true) {
        return Err(Error::PolicyRefused {
            key: kek.label,
            reason: "this KEK is not CKA_SENSITIVE: its value could be read, and with it everything it wraps".into(),
        });
    }
    if kek.extractable == Some(true) {
        tracing::warn!(
            "KEK '{}' is extractable: whoever can export it can open what it wraps",
            kek.label
        );
    }
    Ok(kek)
}

pub(super) fn resolve_kek_unchecked(
    token: &Token<'_>,
    selector: &KeySelector,
    listing: Option<&Listing>,
) -> Result<KeyInfo> {
    // A KEK named by label is the secret key with exactly that label: the
    // token finds it without a scan of every object (a later version is
    // named NAME@vN).
    let typed_secret = matches!(
        selector.object_type,
        None | Some(crate::hsm::uri::ObjectType::SecretKey)
    );
    if let (Some(label), None, None, true) =
        (&selector.label, &selector.id, &selector.token, typed_secret)
    {
        let exact = match listing {
            Some(keys) => (0..keys.len())
                .filter(|&i| keys.class_and_label(i) == ("secret-key", label.as_str()))
                .map(|i| keys.handle(i))
                .filter(|(_, utf8)| *utf8)
                .map(|(h, _)| h)
                .collect(),
            None => KeyTemplate::token_secret_labelled(label).find(token, "find the KEK")?,
        };
        match exact.len() {
            1 => return keys::describe(token, exact[0]),
            0 => {}
            _ => {
                return Err(Error::Ambiguous {
                    what: "KEK",
                    selector: selector.shown.clone(),
                    candidates: vec![label.clone(); exact.len()],
                })
            }
        }
    }
    keys::resolve_one(token, selector, "KEK", true, |k| k.class == "secret-key")?.ok_or_else(|| {
        Error::KeyNotFound {
            key: selector.shown.clone(),
        }
    })
}

/// The checks of a header that need no token, each with the code restore
/// gives: the key derivation (HK1303 unknown, HK1302 out of bounds or
/// refused by Argon2), the OAEP hash (HK1303), and every base64 value
/// (HK1302). `bundle inspect` (`src/ops/inspect.rs`) makes the same checks.
pub fn check_header(header: &Header) -> Result<()> {
    match &header.protection {
        Protection::Kek { .. } => {}
        Protection::Password { kdf } => {
            argon2_params(kdf)?;
        }
        Protection::Recipient { recipient } => {
            recipient_hash(recipient)?;
            transfer_key_bytes(recipient)?;
        }
    }
    mac_key_bytes(header)?;
    Ok(())
}

/// The Argon2id parameters and salt of a password header, checked.
fn argon2_params(params: &KdfParams) -> Result<(argon2::Params, Vec<u8>)> {
    if params.algorithm != "argon2id" || params.version != 0x13 {
        return Err(Error::UnsupportedFormat {
            reason: format!(
                "key derivation {} version {}",
                params.algorithm, params.version
            ),
        });
    }
    if params.m_kib > ARGON2_MAX_M_KIB || params.t > ARGON2_MAX_T || params.p > ARGON2_MAX_P {
        return Err(Error::BundleCorrupt {
            reason: format!(
                "Argon2 parameters m={} KiB t={} p={} exceed what hsmkey accepts",
                params.m_kib, params.t, params.p
            ),
        });
    }
    let salt = unb64("salt", &params.salt).map_err(|reason| Error::BundleCorrupt { reason })?;
    let checked = argon2::Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|e| {
        Error::BundleCorrupt {
            reason: format!("Argon2 parameters: {e}"),
        }
    })?;
    Ok((checked, salt))
}

/// The OAEP hash of a recipient header: backups are written with SHA-1 or
/// SHA-256 only.
fn recipient_hash(recipient: &RecipientInfo) -> Result<OaepHash> {
    OaepHash::parse(&recipient.oaep_hash)
        .filter(|h| matches!(h, OaepHash::Sha1 | OaepHash::Sha256))
        .ok_or_else(|| Error::UnsupportedFormat {
            reason: format!("OAEP hash {}", recipient.oaep_hash),
        })
}

fn transfer_key_bytes(recipient: &RecipientInfo) -> Result<Vec<u8>> {
    unb64("wrapped_transfer_key", &recipient.wrapped_transfer_key)
        .map_err(|reason| Error::BundleCorrupt { reason })
}

fn mac_key_bytes(header: &Header) -> Result<Vec<u8>> {
    unb64("mac.wrapped_key", &header.mac.wrapped_key)
        .map_err(|reason| Error::BundleCorrupt { reason })
}

pub(super) fn argon2_key(
    password: &SecretString,
    params: &KdfParams,
) -> Result<Zeroizing<Vec<u8>>> {
    let (checked, salt) = argon2_params(params)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, checked);
    let mut out = Zeroizing::new(vec![0u8; 32]);
    argon
        .hash_password_into(password.expose_secret().as_bytes(), &salt, &mut out)
        .map_err(|e| Error::BundleCorrupt {
            reason: format!("Argon2: {e}"),
        })?;
    Ok(out)
}

pub(super) fn check_password(password: &SecretString, policy: password::Policy) -> Result<()> {
    password::check(password.expose_secret(), policy)
        .map_err(|reason| Error::BadPassword { reason })
}

pub(super) fn wrong_key(what: &str, reason: String) -> Error {
    Error::WrongUnwrapKey {
        what: what.to_string(),
        reason,
    }
}

pub(super) fn open_protection(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    header: Header,
    unprotect: &Unprotect,
    support: &WrapSupport,
) -> Result<Opened> {
    let (unwrapping, trusted_kek, what) = match (&header.protection, unprotect) {
        (Protection::Kek { kek: expected }, Unprotect::Kek(selector)) => {
            let kek = resolve_kek(token, selector)?;
            if let (Some(want), Some(have)) = (&expected.kcv, &kek.kcv) {
                if want != have {
                    return Err(wrong_key(
                        "KEK",
                        format!(
                            "the bundle was made with KEK '{}' (id {}, KCV {want}); '{}' has KCV {}",
                            expected.label, expected.id, kek.label, have
                        ),
                    ));
                }
            }
            if !kek.usage.contains(&"unwrap") {
                return Err(Error::PolicyRefused {
                    key: kek.label,
                    reason: "this key may not unwrap (CKA_UNWRAP=false)".into(),
                });
            }
            (kek.handle, kek.trusted == Some(true), "KEK")
        }
        (Protection::Password { kdf }, Unprotect::Password(pw)) => {
            let value = argon2_key(pw, kdf)?;
            (
                wrap::session_kek_from_value(token, eph, value)?,
                false,
                "password",
            )
        }
        (Protection::Recipient { recipient }, Unprotect::RecipientKey(selector)) => {
            let hash = recipient_hash(recipient)?;
            let private = keys::find_required(token, selector)?
                .into_iter()
                .map(|h| keys::describe_with(token, h, false))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .find(|k| k.class == "private-key" && k.key_type == "rsa")
                .ok_or_else(|| Error::KeyNotFound {
                    key: format!("{} (an RSA private key)", selector.shown),
                })?;
            if let Some(PublicValues::Rsa { modulus, exponent }) =
                check::public_of(token, private.handle, KeyKind::Rsa)?
            {
                let mine = spki::rsa_from_parts(&modulus, &exponent).map_err(Error::Internal)?;
                if mine.fingerprint() != recipient.spki_sha256 {
                    return Err(wrong_key(
                        "recipient key",
                        format!(
                            "the bundle is for the public key with SHA-256 {}; '{}' is {}",
                            recipient.spki_sha256,
                            private.label,
                            mine.fingerprint()
                        ),
                    ));
                }
            }
            let wrapped = transfer_key_bytes(recipient)?;
            let template = KeyTemplate::transfer_key();
            if !private.usage.contains(&"unwrap") {
                return Err(Error::PolicyRefused {
                    key: private.label,
                    reason: "this key may not unwrap (CKA_UNWRAP=false); a recipient key is made with --usage unwrap".into(),
                });
            }
            let transfer = unwrap_oaep_into(token, hash, private.handle, &wrapped, &template)
                .map_err(|rv| {
                    match rv {
                        rv if rv.is_oaep_refused() => {
                            Error::NotCapable {
                                capability: format!("RSA-OAEP with {}", hash.name().to_uppercase()),
                                detail: format!("the token answered {}", rv.name()),
                                alternatives: "Restore on a token with this OAEP hash, or have the sender use --oaep-hash sha1.".into(),
                            }
                        }
                        rv if rv.is_bad_ciphertext() => wrong_key(
                            "recipient key",
                            format!(
                                "the transfer key did not unwrap ({}): wrong key or altered header",
                                rv.name()
                            ),
                        ),
                        rv => rv.failure("unwrap the bundle's transfer key"),
                    }
                })?;
            (eph.keep(transfer), false, "recipient key")
        }
        (p, _) => {
            return Err(Error::Usage {
                message: format!(
                    "this bundle is protected by {}: give {}",
                    p.scheme(),
                    match p {
                        Protection::Kek { kek } =>
                            format!("--kek (it was made with KEK '{}')", kek.label),
                        Protection::Password { .. } => "--password-file".into(),
                        Protection::Recipient { .. } => "--recipient-key".into(),
                    }
                ),
            })
        }
    };
    open_mac_key(token, eph, header, unwrapping, trusted_kek, what, support)
}

/// Unwrap the bundle's MAC key from its header under `unwrapping`.
pub(super) fn open_mac_key(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    header: Header,
    unwrapping: Handle,
    trusted_kek: bool,
    what: &str,
    support: &WrapSupport,
) -> Result<Opened> {
    let mech = support
        .mechanism(&header.mac.wrap)
        .ok_or_else(|| Error::NotCapable {
            capability: format!("{} key wrap", header.mac.wrap),
            detail: format!("known-answer tests found {}", support.describe()),
            alternatives: "Restore on a token that has it (`hsmkey token mechanisms`).".into(),
        })?;
    let wrapped_mac = mac_key_bytes(&header)?;
    let template = KeyTemplate::mac_key();
    let mac_key = unwrap_into(token, mech, unwrapping, &wrapped_mac, &template).map_err(|rv| {
        if rv.means_bad_blob(token, mech) {
            wrong_key(
                what,
                format!(
                    "the bundle's integrity key did not unwrap ({}): wrong {what}, or the header was altered",
                    rv.name()
                ),
            )
        } else {
            rv.failure("unwrap the bundle's integrity key")
        }
    })?;
    let mac_key = eph.keep(mac_key);
    Ok(Opened {
        header,
        unwrapping,
        mac_key,
        trusted_kek,
    })
}
