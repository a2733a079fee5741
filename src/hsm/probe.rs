//! What the token can really do: mechanism information plus known-answer
//! tests on session keys (docs/SECURITY.md, invariant 7). A mechanism number is not
//! trusted: 0x210A is RFC 5649 on some tokens, zero-padded RFC 5649 on SoftHSM
//! 2.6.1 and PKCS#7 + RFC 3394 on NSS.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use serde::Serialize;

use super::raw::RawMechanism;
use super::Token;
use crate::error::{Error, Result};

pub const CKM_AES_KEY_WRAP: u64 = 0x2109;
pub const CKM_AES_KEY_WRAP_PAD: u64 = 0x210A;
pub const CKM_AES_KEY_WRAP_KWP: u64 = 0x210B;
pub const CKM_AES_KEY_WRAP_PKCS7: u64 = 0x210C;
pub const CKM_RSA_AES_KEY_WRAP: u64 = 0x1054;
pub const CKM_RSA_PKCS_OAEP: u64 = 0x0009;

/// Mechanisms `token mechanisms` reports, with why hsmkey cares.
const PROBED: &[(u64, &str, &str)] = &[
    (CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP", "RFC 3394 key wrap"),
    (
        CKM_AES_KEY_WRAP_PAD,
        "CKM_AES_KEY_WRAP_PAD",
        "padded key wrap; meaning varies by token",
    ),
    (
        CKM_AES_KEY_WRAP_KWP,
        "CKM_AES_KEY_WRAP_KWP",
        "RFC 5649 key wrap (PKCS#11 3.0)",
    ),
    (
        CKM_AES_KEY_WRAP_PKCS7,
        "CKM_AES_KEY_WRAP_PKCS7",
        "PKCS#7 padding + RFC 3394 (PKCS#11 3.0)",
    ),
    (
        CKM_RSA_AES_KEY_WRAP,
        "CKM_RSA_AES_KEY_WRAP",
        "RSA-OAEP + RFC 5649 in one call (BYOK)",
    ),
    (
        CKM_RSA_PKCS_OAEP,
        "CKM_RSA_PKCS_OAEP",
        "RSA-OAEP wrap (BYOK, recipient backups)",
    ),
    (
        0x0001,
        "CKM_RSA_PKCS",
        "RSA PKCS#1 v1.5 (not used for wrapping by hsmkey)",
    ),
    (
        0x0000,
        "CKM_RSA_PKCS_KEY_PAIR_GEN",
        "key generate --type rsa-*",
    ),
    (0x1040, "CKM_EC_KEY_PAIR_GEN", "key generate --type ec-*"),
    (0x1080, "CKM_AES_KEY_GEN", "key generate --type aes-*"),
    (
        0x0350,
        "CKM_GENERIC_SECRET_KEY_GEN",
        "key generate --type generic-256",
    ),
    (0x1081, "CKM_AES_ECB", "KCV of AES keys"),
    (0x1087, "CKM_AES_GCM", "encryption checks after restore"),
    (0x108A, "CKM_AES_CMAC", "in-token MAC"),
    (0x0251, "CKM_SHA256_HMAC", "in-token MAC"),
];

const FLAG_NAMES: &[(u64, &str)] = &[
    (0x100, "encrypt"),
    (0x200, "decrypt"),
    (0x800, "sign"),
    (0x2000, "verify"),
    (0x8000, "generate"),
    (0x10000, "generate-key-pair"),
    (0x20000, "wrap"),
    (0x40000, "unwrap"),
    (0x80000, "derive"),
];

/// One line of the report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MechanismReport {
    pub name: &'static str,
    pub number: String,
    pub available: bool,
    pub flags: Vec<&'static str>,
    pub min_key_size: Option<u64>,
    pub max_key_size: Option<u64>,
    /// Result of the known-answer test, for key-wrap mechanisms.
    pub kat: Option<String>,
    pub purpose: &'static str,
}

/// The algorithm a key-wrap mechanism was proved to implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WrapAlgorithm {
    Rfc3394,
    Rfc5649,
    /// RFC 5649 run on the input zero-padded to a multiple of 8 (SoftHSM 2.6.1).
    Rfc5649ZeroPadded,
    /// PKCS#7 padding to 8 bytes, then RFC 3394 (NSS).
    Pkcs7Rfc3394,
    /// PKCS#7 padding to 16 bytes, then RFC 3394.
    Pkcs7Block16Rfc3394,
}

impl WrapAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            WrapAlgorithm::Rfc3394 => "rfc3394",
            WrapAlgorithm::Rfc5649 => "rfc5649",
            WrapAlgorithm::Rfc5649ZeroPadded => "rfc5649-zero-padded",
            WrapAlgorithm::Pkcs7Rfc3394 => "pkcs7-rfc3394",
            WrapAlgorithm::Pkcs7Block16Rfc3394 => "pkcs7-16-rfc3394",
        }
    }
}

/// The whole probe result.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Capabilities {
    pub mechanisms: Vec<MechanismReport>,
    /// Mechanism proved to give exact RFC 3394, if any.
    pub rfc3394_mechanism: Option<String>,
    /// Mechanism proved to give exact RFC 5649, if any.
    pub rfc5649_mechanism: Option<String>,
    pub oaep_sha1: bool,
    pub oaep_sha256: bool,
    /// What CKM_AES_KEY_WRAP_PAD (0x210A) really is on this token.
    pub aes_key_wrap_pad_is: String,
}

/// The names `--require` accepts.
pub const CAPABILITY_NAMES: [&str; 5] = [
    "rfc3394",
    "rfc5649",
    "oaep-sha1",
    "oaep-sha256",
    "rsa-aes-key-wrap",
];

/// Refuse an unknown capability name before any probing.
pub fn check_capability_name(name: &str) -> Result<()> {
    if CAPABILITY_NAMES.contains(&name) {
        Ok(())
    } else {
        Err(Error::Usage {
            message: format!(
                "unknown capability '{name}': use {}",
                CAPABILITY_NAMES.join(", ")
            ),
        })
    }
}

impl Capabilities {
    /// Succeed when the token has `capability`; otherwise the capability error
    /// that names it.
    pub fn require(&self, capability: &str) -> Result<()> {
        let available = |name: &str| {
            self.mechanisms
                .iter()
                .any(|m| m.name == name && m.available)
        };
        let has = match capability {
            "rfc3394" => self.rfc3394_mechanism.is_some(),
            "rfc5649" => self.rfc5649_mechanism.is_some(),
            "oaep-sha1" => self.oaep_sha1,
            "oaep-sha256" => self.oaep_sha256,
            "rsa-aes-key-wrap" => available("CKM_RSA_AES_KEY_WRAP"),
            other => {
                return Err(Error::Usage {
                    message: format!(
                        "unknown capability '{other}': use rfc3394, rfc5649, oaep-sha1, oaep-sha256 or rsa-aes-key-wrap"
                    ),
                })
            }
        };
        if has {
            return Ok(());
        }
        let detail = match capability {
            "rfc5649" => format!(
                "no mechanism passed the RFC 5649 known-answer test; 0x210A here is {}",
                self.aes_key_wrap_pad_is
            ),
            "rfc3394" => "CKM_AES_KEY_WRAP is missing or failed its known-answer test".into(),
            "oaep-sha1" | "oaep-sha256" => {
                "RSA-OAEP with this hash failed to wrap and unwrap a session key".into()
            }
            _ => "the mechanism is not offered".into(),
        };
        Err(Error::NotCapable {
            capability: capability.to_string(),
            detail,
            alternatives: "Run `hsmkey token mechanisms` to see what this token can do, or use a token that has it (docs/TOKENS.md).".into(),
        })
    }
}

// RFC 3394 §4.1: 128-bit KEK, 128-bit key data.
const KAT_3394_KEK: [u8; 16] = hex_lit(b"000102030405060708090A0B0C0D0E0F");
const KAT_3394_DATA: [u8; 16] = hex_lit(b"00112233445566778899AABBCCDDEEFF");
const KAT_3394_OUT: [u8; 24] = hex_lit(b"1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5");
// RFC 5649 §6: 192-bit KEK, 20 bytes of key data.
const KAT_5649_KEK: [u8; 24] = hex_lit(b"5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
const KAT_5649_DATA: [u8; 20] = hex_lit(b"c37b7e6492584340bed12207808941155068f738");
const KAT_5649_OUT: [u8; 32] =
    hex_lit(b"138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a");
// The same KEK and data under the padding variants tokens use instead, computed
// with the aes-kw crate; the unit test below recomputes them.
const KAT_ZERO_5649_OUT: [u8; 32] =
    hex_lit(b"cf1e485360e1a8126f524d01771677f9400edb4d074f14116988d71e1588e367");
const KAT_PKCS7_8_OUT: [u8; 32] =
    hex_lit(b"44bfbc91df7939f52728eb0c6287a43cb268367ead991a471290544c21f20477");
const KAT_PKCS7_16_OUT: [u8; 40] =
    hex_lit(b"f33ac46f59a7ca8eb2072600f2b8ae8d832e159d4ac22ef755d0a16f74a1937d8863851be11a0c0b");

// Only called in const items, which the compiler evaluates: a bad literal is
// a build error, never a runtime panic.
#[allow(clippy::panic)]
const fn hex_lit<const N: usize>(s: &[u8]) -> [u8; N] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not hex"),
        }
    }
    assert!(s.len() == 2 * N);
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// Session objects destroyed when this goes out of scope, on every path
/// (docs/SECURITY.md, invariant 2).
pub struct Ephemeral<'s> {
    session: &'s Session,
    handles: Vec<ObjectHandle>,
}

impl<'s> Ephemeral<'s> {
    pub fn new(session: &'s Session) -> Self {
        Ephemeral {
            session,
            handles: Vec::new(),
        }
    }

    /// Session objects made on `token`'s main session.
    pub fn for_token(token: &'s Token<'_>) -> Self {
        Ephemeral::new(token.session())
    }

    pub fn keep(&mut self, h: ObjectHandle) -> ObjectHandle {
        self.handles.push(h);
        h
    }
}

impl Drop for Ephemeral<'_> {
    fn drop(&mut self) {
        for h in self.handles.drain(..) {
            if let Err(e) = self.session.destroy_object(h) {
                tracing::warn!("could not destroy session object {h}: {e}");
            }
        }
    }
}

fn session_secret(
    session: &Session,
    eph: &mut Ephemeral<'_>,
    key_type: KeyType,
    value: &[u8],
    wrap: bool,
) -> Result<ObjectHandle> {
    // Known-answer vectors are public values: loading them is how the
    // algorithm behind a mechanism number is identified, not key material.
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Wrap(wrap),
        Attribute::Unwrap(wrap),
        Attribute::Value(value.to_vec()),
    ];
    let h = session
        .create_object(&template)
        .map_err(|e| Error::pkcs11("create a known-answer session key", e))?;
    Ok(eph.keep(h))
}

/// Run the known-answer test of one key-wrap mechanism.
pub fn kat(
    token: &Token<'_>,
    mechanism: u64,
) -> Result<std::result::Result<WrapAlgorithm, String>> {
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let raw = token.module().raw();
    let mech = RawMechanism::Number(mechanism);
    let (kek, target, expected): (_, _, Vec<(&[u8], WrapAlgorithm)>) =
        if mechanism == CKM_AES_KEY_WRAP {
            (
                session_secret(session, &mut eph, KeyType::AES, &KAT_3394_KEK, true)?,
                session_secret(session, &mut eph, KeyType::AES, &KAT_3394_DATA, false)?,
                vec![(&KAT_3394_OUT[..], WrapAlgorithm::Rfc3394)],
            )
        } else {
            (
                session_secret(session, &mut eph, KeyType::AES, &KAT_5649_KEK, true)?,
                session_secret(
                    session,
                    &mut eph,
                    KeyType::GENERIC_SECRET,
                    &KAT_5649_DATA,
                    false,
                )?,
                vec![
                    (&KAT_5649_OUT[..], WrapAlgorithm::Rfc5649),
                    (&KAT_ZERO_5649_OUT[..], WrapAlgorithm::Rfc5649ZeroPadded),
                    (&KAT_PKCS7_8_OUT[..], WrapAlgorithm::Pkcs7Rfc3394),
                    (&KAT_PKCS7_16_OUT[..], WrapAlgorithm::Pkcs7Block16Rfc3394),
                ],
            )
        };
    // Only a definitive answer means "absent": a device error during the
    // test must stop the command, not make backup skip every private key.
    let wrapped = match raw.wrap_key(session.handle(), &mech, kek.handle(), target.handle()) {
        Ok(w) => w,
        Err(rv) if crate::error::rv_is_unsupported(rv) => {
            return Ok(Err(format!("wrap failed: {}", crate::error::ckr_name(rv))))
        }
        Err(rv) => {
            return Err(crate::error::token_failure(
                "C_WrapKey",
                rv,
                &format!("known-answer test of mechanism 0x{mechanism:04X}"),
            ))
        }
    };
    Ok(expected
        .into_iter()
        .find(|(out, _)| *out == wrapped.as_slice())
        .map(|(_, alg)| alg)
        .ok_or_else(|| "output matches no known algorithm".to_string()))
}

/// How this token answers an AES key-wrap blob that fails its integrity
/// check under `mechanism`: a known-answer blob with one bit flipped is
/// unwrapped under the known-answer KEK. Tokens differ (SoftHSM answers
/// CKR_GENERAL_ERROR, kryoptic CKR_DEVICE_ERROR), so an unwrap that failed
/// with an unusual code is "wrong key or altered" only when the token gives
/// that same code for a blob known to be bad. `None`: it unwrapped anyway.
pub fn answer_to_bad_blob(
    token: &Token<'_>,
    mechanism: u64,
) -> Result<Option<cryptoki::error::RvError>> {
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let (kek, mut blob) = if mechanism == CKM_AES_KEY_WRAP {
        (
            session_secret(session, &mut eph, KeyType::AES, &KAT_3394_KEK, true)?,
            KAT_3394_OUT.to_vec(),
        )
    } else {
        (
            session_secret(session, &mut eph, KeyType::AES, &KAT_5649_KEK, true)?,
            KAT_5649_OUT.to_vec(),
        )
    };
    if let Some(last) = blob.last_mut() {
        *last ^= 0x01;
    }
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ];
    match token.module().raw().unwrap_key(
        session.handle(),
        &RawMechanism::Number(mechanism),
        kek.handle(),
        &blob,
        &template,
    ) {
        Ok(h) => {
            eph.keep(super::raw::object_handle(h));
            Ok(None)
        }
        Err(rv) => Ok(Some(rv)),
    }
}

/// Whether RSA-OAEP with this hash can wrap a session AES key and unwrap it again.
fn oaep_works(token: &Token<'_>, hash: MechanismType, mgf: PkcsMgfType) -> Result<bool> {
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let public = [
        Attribute::Token(false),
        Attribute::ModulusBits(2048u64.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Wrap(true),
        Attribute::Encrypt(true),
    ];
    let private = [
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
        Attribute::Decrypt(true),
    ];
    let (pubh, privh) = session
        .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
        .map_err(|e| Error::pkcs11("generate a session RSA key for the OAEP probe", e))?;
    eph.keep(pubh);
    eph.keep(privh);
    let aes = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(16u64.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
            ],
        )
        .map_err(|e| Error::pkcs11("generate a session AES key for the OAEP probe", e))?;
    eph.keep(aes);
    let params = PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty());
    let mech = Mechanism::RsaPkcsOaep(params);
    let wrapped = match session.wrap_key(&mech, pubh, aes) {
        Ok(w) => w,
        Err(e) if oaep_unsupported(&e) => {
            tracing::debug!("OAEP {hash} wrap refused: {e}");
            return Ok(false);
        }
        Err(e) => return Err(Error::pkcs11(&format!("probe RSA-OAEP with {hash}"), e)),
    };
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ];
    match session.unwrap_key(&mech, privh, &wrapped, &template) {
        Ok(h) => {
            eph.keep(h);
            Ok(true)
        }
        Err(e) if oaep_unsupported(&e) => {
            tracing::debug!("OAEP {hash} unwrap refused: {e}");
            Ok(false)
        }
        Err(e) => Err(Error::pkcs11(&format!("probe RSA-OAEP with {hash}"), e)),
    }
}

/// A definitive refusal of an OAEP hash. SoftHSM 2.6.1 answers a hash other
/// than SHA-1 with CKR_ARGUMENTS_BAD, so that counts too (docs/TOKENS.md).
fn oaep_unsupported(e: &cryptoki::error::Error) -> bool {
    match e {
        cryptoki::error::Error::Pkcs11(rv, _) => {
            crate::error::rv_is_unsupported(*rv) || *rv == cryptoki::error::RvError::ArgumentsBad
        }
        _ => false,
    }
}

/// Probe the token: mechanism information for every mechanism hsmkey uses,
/// a known-answer test of each AES key-wrap mechanism, and OAEP hashes.
pub fn probe(token: &Token<'_>) -> Result<Capabilities> {
    let raw = token.module().raw();
    let slot = token.slot().id();
    let mut mechanisms = Vec::new();
    let mut rfc3394 = None;
    let mut rfc5649_candidates = Vec::new();
    let mut pad_is = "not offered".to_string();
    for &(number, name, purpose) in PROBED {
        let info = raw
            .mechanism_info(slot, number)
            .map_err(|rv| Error::Pkcs11 {
                function: "C_GetMechanismInfo".into(),
                rv: crate::error::ckr_name(rv),
                action: format!("probe {name}"),
            })?;
        let mut report = MechanismReport {
            name,
            number: format!("0x{number:04X}"),
            available: info.is_some(),
            flags: info
                .map(|i| {
                    FLAG_NAMES
                        .iter()
                        .filter(|(bit, _)| i.flags & bit != 0)
                        .map(|(_, n)| *n)
                        .collect()
                })
                .unwrap_or_default(),
            min_key_size: info.map(|i| i.min_key_size),
            max_key_size: info.map(|i| i.max_key_size),
            kat: None,
            purpose,
        };
        let is_aes_kw = matches!(
            number,
            CKM_AES_KEY_WRAP | CKM_AES_KEY_WRAP_PAD | CKM_AES_KEY_WRAP_KWP | CKM_AES_KEY_WRAP_PKCS7
        );
        if is_aes_kw && info.is_some() {
            let outcome = kat(token, number)?;
            report.kat = Some(match &outcome {
                Ok(alg) => alg.name().to_string(),
                Err(why) => why.clone(),
            });
            match outcome {
                Ok(WrapAlgorithm::Rfc3394) => rfc3394 = Some(name),
                Ok(WrapAlgorithm::Rfc5649) => rfc5649_candidates.push((number, name)),
                _ => {}
            }
            if number == CKM_AES_KEY_WRAP_PAD {
                pad_is = report.kat.clone().unwrap_or_default();
            }
        }
        mechanisms.push(report);
    }
    // Prefer the mechanism whose number means RFC 5649 by the standard.
    rfc5649_candidates.sort_by_key(|(n, _)| *n != CKM_AES_KEY_WRAP_KWP);
    let has_oaep = mechanisms
        .iter()
        .any(|m| m.name == "CKM_RSA_PKCS_OAEP" && m.available);
    let (oaep_sha1, oaep_sha256) = if has_oaep {
        (
            oaep_works(token, MechanismType::SHA1, PkcsMgfType::MGF1_SHA1)?,
            oaep_works(token, MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)?,
        )
    } else {
        (false, false)
    };
    Ok(Capabilities {
        mechanisms,
        rfc3394_mechanism: rfc3394.map(str::to_string),
        rfc5649_mechanism: rfc5649_candidates.first().map(|(_, n)| n.to_string()),
        oaep_sha1,
        oaep_sha256,
        aes_key_wrap_pad_is: pad_is,
    })
}

#[cfg(test)]
mod tests;
