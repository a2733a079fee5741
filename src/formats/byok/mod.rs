//! Bring-your-own-key targets: what each cloud KMS accepts (algorithms,
//! wrapping key sizes, key types) and the exact layout it reads. Pure: the
//! wrapping itself happens in the token (ops/byok.rs). docs/BYOK.md has the
//! per-cloud walk-through and the sources.

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod huawei;
pub mod next_step;
pub mod vault;

use std::fmt;

/// The receiving KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Aws,
    Gcp,
    Azure,
    Huawei,
    Vault,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Aws => "aws",
            Target::Gcp => "gcp",
            Target::Azure => "azure",
            Target::Huawei => "huawei",
            Target::Vault => "vault",
        }
    }
}

/// The OAEP hash (MGF1 uses the same hash; the label is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "sha1",
            Hash::Sha224 => "sha224",
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }
}

/// How the key material is wrapped for the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapping {
    /// RSAES-OAEP of the key bytes directly (secret keys only).
    Oaep(Hash),
    /// RSAES-OAEP of a fresh AES-256 key, then RFC 5649 of the key under it;
    /// RSA part first (= CKM_RSA_AES_KEY_WRAP).
    RsaAes(Hash),
}

impl Wrapping {
    pub fn hash(self) -> Hash {
        match self {
            Wrapping::Oaep(h) | Wrapping::RsaAes(h) => h,
        }
    }
}

/// What a target needs to know about the key to be exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// "aes", "generic", "rsa" or "ec".
    pub key_type: String,
    /// Bits: AES/generic key length, RSA modulus, EC curve size.
    pub size: Option<u64>,
}

impl KeyFacts {
    pub fn is_private(&self) -> bool {
        matches!(self.key_type.as_str(), "rsa" | "ec")
    }

    /// "aes-256", or "aes of unknown size".
    pub fn describe(&self) -> String {
        match self.size {
            Some(s) => format!("{}-{s}", self.key_type),
            None => format!("{} of unknown size", self.key_type),
        }
    }
}

/// A target's rule that the request breaks, said in the target's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A target and algorithm, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub target: Target,
    /// The algorithm as the target spells it.
    pub algorithm: String,
    pub wrapping: Wrapping,
    /// Wrapping key sizes the target hands out for this algorithm.
    pub wrapping_bits: &'static [u32],
}

/// The algorithms each target accepts, as the target spells them.
pub fn algorithms(target: Target) -> &'static [&'static str] {
    match target {
        Target::Aws => &aws::ALGORITHMS,
        Target::Gcp => &gcp::ALGORITHMS,
        Target::Azure => &azure::ALGORITHMS,
        Target::Huawei => &huawei::ALGORITHMS,
        Target::Vault => &vault::ALGORITHMS,
    }
}

/// Resolve `--algorithm` for a target.
pub fn plan(target: Target, algorithm: &str) -> Result<Plan, RuleError> {
    let found = match target {
        Target::Aws => aws::plan(algorithm),
        Target::Gcp => gcp::plan(algorithm),
        Target::Azure => azure::plan(algorithm),
        Target::Huawei => huawei::plan(algorithm),
        Target::Vault => vault::plan(algorithm),
    };
    found.ok_or_else(|| {
        RuleError(format!(
            "{} does not take algorithm {algorithm}; it takes {}",
            target.name(),
            algorithms(target).join(", ")
        ))
    })
}

/// Check the target's rules for this key and wrapping key, before the token
/// is asked for anything.
pub fn check(plan: &Plan, key: &KeyFacts, wrapping_bits: u32) -> Result<(), RuleError> {
    if !plan.wrapping_bits.contains(&wrapping_bits) {
        return Err(RuleError(format!(
            "{} {} needs an RSA wrapping key of {} bits; this one has {wrapping_bits}",
            plan.target.name(),
            plan.algorithm,
            plan.wrapping_bits
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    if key.is_private()
        && matches!(plan.wrapping, Wrapping::Oaep(_))
        && plan.target != Target::Huawei
    {
        return Err(RuleError(format!(
            "{} {} wraps the key bytes directly with RSA-OAEP, and PKCS#11 tokens wrap only secret keys that way; an {} private key needs an RSA-AES algorithm",
            plan.target.name(),
            plan.algorithm,
            key.key_type.to_uppercase()
        )));
    }
    let accepted = match plan.target {
        Target::Aws => aws::accepts(key, plan),
        Target::Gcp => gcp::accepts(key),
        Target::Azure => azure::accepts(key),
        Target::Huawei => huawei::accepts(key),
        Target::Vault => vault::key_type_name(key).map(|_| ()),
    };
    accepted.map_err(|why| {
        RuleError(format!(
            "{} does not import {}: {why}",
            plan.target.name(),
            key.describe()
        ))
    })
}

#[cfg(test)]
mod tests;
