//! Public keys as SubjectPublicKeyInfo (DER and PEM): what `key public` writes
//! and what `backup --recipient` and BYOK read. Public data only.

use der::asn1::{BitString, ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use sha2::{Digest, Sha256};
#[allow(unused_imports)]
use spki::DecodePublicKey as _;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

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

/// Build the SPKI of an RSA key from its modulus and exponent.
pub fn rsa_from_parts(modulus: &[u8], public_exponent: &[u8]) -> Result<RsaPublic, String> {
    let key = RsaPublicKey::new(
        BigUint::from_bytes_be(modulus),
        BigUint::from_bytes_be(public_exponent),
    )
    .map_err(|e| format!("not a valid RSA public key: {e}"))?;
    rsa_public(&key)
}

fn rsa_public(key: &RsaPublicKey) -> Result<RsaPublic, String> {
    let spki_der = key
        .to_public_key_der()
        .map_err(|e| format!("cannot encode the public key: {e}"))?
        .as_bytes()
        .to_vec();
    Ok(RsaPublic {
        modulus: key.n().to_bytes_be(),
        public_exponent: key.e().to_bytes_be(),
        bits: u32::try_from(key.n().bits()).unwrap_or(u32::MAX),
        spki_der,
    })
}

/// Read an RSA public key: PEM ("PUBLIC KEY" or "RSA PUBLIC KEY"), DER SPKI,
/// or base64 of DER SPKI (as the AWS CLI prints PublicKey).
pub fn parse_rsa_public(bytes: &[u8]) -> Result<RsaPublic, String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(t) = text.filter(|t| t.starts_with("-----BEGIN RSA PUBLIC KEY-----")) {
        use rsa::pkcs1::DecodeRsaPublicKey;
        let key =
            RsaPublicKey::from_pkcs1_pem(t).map_err(|e| format!("invalid PKCS#1 PEM: {e}"))?;
        return rsa_public(&key);
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
    if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
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
    let key = RsaPublicKey::from_public_key_der(&der)
        .map_err(|e| format!("invalid RSA public key: {e}"))?;
    rsa_public(&key)
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
