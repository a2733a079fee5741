//! Public keys as SubjectPublicKeyInfo (DER and PEM): what `key public` writes
//! and what `backup --recipient` and BYOK read. Public data only.

use der::asn1::{BitString, Null, ObjectIdentifier, OctetString, UintRef};
use der::pem::LineEnding;
use der::{Any, Decode, Encode};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// rsaEncryption (RFC 8017, A.1).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// The largest RSA modulus accepted from a file, in bits.
const RSA_MAX_BITS: usize = 4096;
/// Bounds of an acceptable public exponent: at least 3 in practice (it must
/// be odd), at most 2^33 - 1.
const RSA_MIN_EXPONENT: u64 = 2;
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

/// An RSA public key read from a file.
#[derive(Debug, Clone)]
pub struct RsaPublic {
    /// Big-endian, no leading zeros.
    pub modulus: Vec<u8>,
    pub public_exponent: Vec<u8>,
    pub bits: u32,
    /// The SubjectPublicKeyInfo DER, re-encoded canonically.
    pub spki_der: Vec<u8>,
}

impl RsaPublic {
    /// SHA-256 of the SPKI DER, hex: how bundles name their recipient.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn bit_length(b: &[u8]) -> usize {
    match b.first() {
        Some(&top) => (b.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    }
}

/// Build the SPKI of an RSA key from its modulus and exponent, after the
/// sanity checks every RSA implementation makes of a public key: an odd
/// modulus of at most 4096 bits, an odd exponent from 3 to 2^33 - 1, smaller
/// than the modulus.
pub fn rsa_from_parts(modulus: &[u8], public_exponent: &[u8]) -> Result<RsaPublic, String> {
    let n = strip_zeros(modulus);
    let e = strip_zeros(public_exponent);
    let invalid = |what: &str| format!("not a valid RSA public key: {what}");
    if bit_length(n) > RSA_MAX_BITS {
        return Err(invalid("modulus too large"));
    }
    if e.len() > 8 {
        return Err(invalid("public exponent too large"));
    }
    let e_value = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let e_below_n = e.len() < n.len() || (e.len() == n.len() && e < n);
    if !e_below_n || n.last().is_none_or(|b| b & 1 == 0) {
        return Err(invalid("invalid modulus"));
    }
    if e_value & 1 == 0 {
        return Err(invalid("invalid exponent"));
    }
    if e_value < RSA_MIN_EXPONENT {
        return Err(invalid("public exponent too small"));
    }
    if e_value > RSA_MAX_EXPONENT {
        return Err(invalid("public exponent too large"));
    }
    let pkcs1 = pkcs1::RsaPublicKey {
        modulus: UintRef::new(n).map_err(|e| invalid(&e.to_string()))?,
        public_exponent: UintRef::new(e).map_err(|e| invalid(&e.to_string()))?,
    };
    let key_der = pkcs1
        .to_der()
        .map_err(|e| format!("cannot encode the public key: {e}"))?;
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters: Some(Any::from(Null)),
        },
        subject_public_key: BitString::from_bytes(&key_der)
            .map_err(|e| format!("cannot encode the public key: {e}"))?,
    };
    let spki_der = spki
        .to_der()
        .map_err(|e| format!("cannot encode the public key: {e}"))?;
    Ok(RsaPublic {
        modulus: n.to_vec(),
        public_exponent: e.to_vec(),
        bits: u32::try_from(bit_length(n)).unwrap_or(u32::MAX),
        spki_der,
    })
}

/// The modulus and exponent of a PKCS#1 RSAPublicKey (DER).
fn rsa_from_pkcs1_der(der: &[u8]) -> Result<RsaPublic, String> {
    let key = pkcs1::RsaPublicKey::from_der(der).map_err(|e| e.to_string())?;
    rsa_from_parts(key.modulus.as_bytes(), key.public_exponent.as_bytes())
}

/// Read an RSA public key: PEM ("PUBLIC KEY" or "RSA PUBLIC KEY"), DER SPKI,
/// or base64 of DER SPKI (as the AWS CLI prints PublicKey).
pub fn parse_rsa_public(bytes: &[u8]) -> Result<RsaPublic, String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(t) = text.filter(|t| t.starts_with("-----BEGIN RSA PUBLIC KEY-----")) {
        let (label, der) =
            der::pem::decode_vec(t.as_bytes()).map_err(|e| format!("invalid PKCS#1 PEM: {e}"))?;
        if label != "RSA PUBLIC KEY" {
            return Err(format!("invalid PKCS#1 PEM: a '{label}' block"));
        }
        return rsa_from_pkcs1_der(&der).map_err(|e| format!("invalid PKCS#1 PEM: {e}"));
    }
    let der = if let Some(t) = text.filter(|t| t.starts_with("-----BEGIN")) {
        let (label, der) =
            der::pem::decode_vec(t.as_bytes()).map_err(|e| format!("invalid PEM: {e}"))?;
        if label != "PUBLIC KEY" {
            return Err(format!(
                "a PEM '{label}' block; a PUBLIC KEY (SubjectPublicKeyInfo) is needed"
            ));
        }
        der
    } else if bytes.first() == Some(&0x30) {
        bytes.to_vec()
    } else if let Some(t) = text {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(t.split_whitespace().collect::<String>())
            .map_err(|_| "neither PEM, DER nor base64 DER".to_string())?
    } else {
        return Err("neither PEM, DER nor base64 DER".into());
    };
    let spki = spki::SubjectPublicKeyInfoRef::try_from(der.as_slice())
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    if spki.algorithm.oid != RSA_ENCRYPTION {
        let what = if spki.algorithm.oid == ID_EC_PUBLIC_KEY {
            "an EC key"
        } else {
            "not RSA"
        };
        return Err(format!(
            "this is {what} (algorithm {}); an RSA public key is needed",
            spki.algorithm.oid
        ));
    }
    // rsaEncryption takes NULL parameters (RFC 8017, A.1).
    if spki.algorithm.parameters.as_ref().map(|p| p.is_null()) != Some(true) {
        return Err("invalid RSA public key: the algorithm parameters are not NULL".into());
    }
    let key_der = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| "invalid RSA public key: the key bits are not whole bytes".to_string())?;
    rsa_from_pkcs1_der(key_der).map_err(|e| format!("invalid RSA public key: {e}"))
}

/// The SPKI DER of an EC key from CKA_EC_PARAMS (curve OID, DER) and
/// CKA_EC_POINT (DER OCTET STRING around the point, or the raw point).
pub fn ec_spki_der(ec_params: &[u8], ec_point: &[u8]) -> Result<Vec<u8>, String> {
    let point = match OctetString::from_der(ec_point) {
        Ok(os) => os.as_bytes().to_vec(),
        Err(_) => ec_point.to_vec(),
    };
    let parameters = Any::from_der(ec_params).map_err(|e| format!("bad EC parameters: {e}"))?;
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(parameters),
        },
        subject_public_key: BitString::from_bytes(&point).map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// PEM ("PUBLIC KEY") of an SPKI DER.
pub fn spki_pem(der: &[u8]) -> Result<String, String> {
    der::pem::encode_string("PUBLIC KEY", LineEnding::LF, der).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
