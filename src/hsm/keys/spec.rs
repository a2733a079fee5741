//! What a key is, before the token sees it: types (`KeySpec`), usage flags,
//! backup policy, the template of an unwrapped key (`StoredKey`), the
//! generation request, and key names and versions (`N`, `N@vk`).

use std::fmt;
use std::str::FromStr;

use cryptoki::object::{Attribute, KeyType as CkKeyType, ObjectClass};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::id::is_version_id;

/// Key types hsmkey can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySpec {
    Aes128,
    Aes192,
    Aes256,
    Generic256,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcP256,
    EcP384,
}

impl KeySpec {
    pub const ALL: [KeySpec; 9] = [
        KeySpec::Aes128,
        KeySpec::Aes192,
        KeySpec::Aes256,
        KeySpec::Generic256,
        KeySpec::Rsa2048,
        KeySpec::Rsa3072,
        KeySpec::Rsa4096,
        KeySpec::EcP256,
        KeySpec::EcP384,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KeySpec::Aes128 => "aes-128",
            KeySpec::Aes192 => "aes-192",
            KeySpec::Aes256 => "aes-256",
            KeySpec::Generic256 => "generic-256",
            KeySpec::Rsa2048 => "rsa-2048",
            KeySpec::Rsa3072 => "rsa-3072",
            KeySpec::Rsa4096 => "rsa-4096",
            KeySpec::EcP256 => "ec-p256",
            KeySpec::EcP384 => "ec-p384",
        }
    }

    pub fn is_secret(self) -> bool {
        matches!(
            self,
            KeySpec::Aes128 | KeySpec::Aes192 | KeySpec::Aes256 | KeySpec::Generic256
        )
    }

    /// The token's CKA_KEY_TYPE of keys of this type.
    pub(crate) fn key_type(self) -> CkKeyType {
        match self {
            KeySpec::Aes128 | KeySpec::Aes192 | KeySpec::Aes256 => CkKeyType::AES,
            KeySpec::Generic256 => CkKeyType::GENERIC_SECRET,
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => CkKeyType::RSA,
            KeySpec::EcP256 | KeySpec::EcP384 => CkKeyType::EC,
        }
    }

    pub fn default_usage(self) -> Usage {
        match self {
            KeySpec::Aes128 | KeySpec::Aes192 | KeySpec::Aes256 => Usage {
                encrypt: true,
                decrypt: true,
                ..Usage::default()
            },
            _ => Usage {
                sign: true,
                verify: true,
                ..Usage::default()
            },
        }
    }

    /// Which usages make sense for this type; the rest are refused.
    pub(super) fn allowed_usage(self) -> Usage {
        match self {
            KeySpec::Aes128 | KeySpec::Aes192 | KeySpec::Aes256 => Usage {
                encrypt: true,
                decrypt: true,
                sign: true,
                verify: true,
                wrap: true,
                unwrap: true,
                derive: true,
            },
            KeySpec::Generic256 => Usage {
                sign: true,
                verify: true,
                derive: true,
                ..Usage::default()
            },
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => Usage {
                encrypt: true,
                decrypt: true,
                sign: true,
                verify: true,
                wrap: true,
                unwrap: true,
                derive: false,
            },
            KeySpec::EcP256 | KeySpec::EcP384 => Usage {
                sign: true,
                verify: true,
                derive: true,
                ..Usage::default()
            },
        }
    }
}

impl FromStr for KeySpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        KeySpec::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::BadInput {
                what: "key type".into(),
                reason: format!(
                    "'{s}' is not one of {}",
                    KeySpec::ALL.map(|k| k.name()).join(", ")
                ),
            })
    }
}

/// What a key may be used for (CKA_ENCRYPT, CKA_DECRYPT, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub encrypt: bool,
    pub decrypt: bool,
    pub sign: bool,
    pub verify: bool,
    pub wrap: bool,
    pub unwrap: bool,
    pub derive: bool,
}

impl Usage {
    pub(super) const NAMES: [&'static str; 7] = [
        "encrypt", "decrypt", "sign", "verify", "wrap", "unwrap", "derive",
    ];

    fn flags(&self) -> [bool; 7] {
        [
            self.encrypt,
            self.decrypt,
            self.sign,
            self.verify,
            self.wrap,
            self.unwrap,
            self.derive,
        ]
    }

    pub fn names(&self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .zip(self.flags())
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }

    pub(super) fn is_subset_of(&self, other: &Usage) -> bool {
        self.flags()
            .iter()
            .zip(other.flags())
            .all(|(mine, theirs)| !mine || theirs)
    }

    pub(super) fn union(&self, other: &Usage) -> Usage {
        Usage {
            encrypt: self.encrypt || other.encrypt,
            decrypt: self.decrypt || other.decrypt,
            sign: self.sign || other.sign,
            verify: self.verify || other.verify,
            wrap: self.wrap || other.wrap,
            unwrap: self.unwrap || other.unwrap,
            derive: self.derive || other.derive,
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl FromStr for Usage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut u = Usage::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "encrypt" => u.encrypt = true,
                "decrypt" => u.decrypt = true,
                "sign" => u.sign = true,
                "verify" => u.verify = true,
                "wrap" => u.wrap = true,
                "unwrap" => u.unwrap = true,
                "derive" => u.derive = true,
                other => {
                    return Err(Error::BadInput {
                        what: "usage".into(),
                        reason: format!("'{other}' is not one of {}", Usage::NAMES.join(", ")),
                    })
                }
            }
        }
        if u == Usage::default() {
            return Err(Error::BadInput {
                what: "usage".into(),
                reason: "at least one usage is needed".into(),
            });
        }
        Ok(u)
    }
}

impl Usage {
    /// From usage names as recorded in bundles (unknown names are ignored).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Usage {
        let has = |u: &str| names.iter().any(|x| x.as_ref() == u);
        Usage {
            encrypt: has("encrypt"),
            decrypt: has("decrypt"),
            sign: has("sign"),
            verify: has("verify"),
            wrap: has("wrap"),
            unwrap: has("unwrap"),
            derive: has("derive"),
        }
    }

    /// Every usage flag, set explicitly, for a secret or a private key.
    pub fn attributes(&self, private: bool) -> Vec<Attribute> {
        if private {
            vec![
                Attribute::Decrypt(self.decrypt),
                Attribute::Sign(self.sign),
                Attribute::Unwrap(self.unwrap),
                Attribute::Derive(self.derive),
                Attribute::SignRecover(false),
            ]
        } else {
            vec![
                Attribute::Encrypt(self.encrypt),
                Attribute::Decrypt(self.decrypt),
                Attribute::Sign(self.sign),
                Attribute::Verify(self.verify),
                Attribute::Wrap(self.wrap),
                Attribute::Unwrap(self.unwrap),
                Attribute::Derive(self.derive),
            ]
        }
    }
}

/// The template of a token key made by unwrap (restore, import): always
/// sensitive, extractable and wrappable-only-by-trusted-keys as the policy
/// says, every usage flag explicit.
pub struct StoredKey<'a> {
    pub private: bool,
    pub key_type: CkKeyType,
    pub label: &'a str,
    pub id: &'a [u8],
    pub extractable: bool,
    pub wrap_with_trusted: bool,
    pub usage: Usage,
}

impl StoredKey<'_> {
    pub fn template(&self) -> Vec<Attribute> {
        let mut t = vec![
            Attribute::Class(if self.private {
                ObjectClass::PRIVATE_KEY
            } else {
                ObjectClass::SECRET_KEY
            }),
            Attribute::KeyType(self.key_type),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(self.label.as_bytes().to_vec()),
            Attribute::Id(self.id.to_vec()),
            Attribute::Sensitive(true),
            Attribute::Extractable(self.extractable),
            Attribute::WrapWithTrusted(self.wrap_with_trusted),
        ];
        t.extend(self.usage.attributes(self.private));
        t
    }
}

/// Whether a key may leave the token wrapped, and under which keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupPolicy {
    /// CKA_EXTRACTABLE=false: the key never leaves the token.
    #[default]
    None,
    /// Extractable, but only under keys the SO marked CKA_TRUSTED.
    Trusted,
    /// Extractable under any wrapping key.
    Any,
}

impl BackupPolicy {
    pub fn name(self) -> &'static str {
        match self {
            BackupPolicy::None => "none",
            BackupPolicy::Trusted => "trusted",
            BackupPolicy::Any => "any",
        }
    }
}

impl FromStr for BackupPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(BackupPolicy::None),
            "trusted" => Ok(BackupPolicy::Trusted),
            "any" => Ok(BackupPolicy::Any),
            other => Err(Error::BadInput {
                what: "backup policy".into(),
                reason: format!("'{other}' is not one of none, trusted, any"),
            }),
        }
    }
}

/// A request to create a key (or a key pair).
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    /// The key's name: the label of version 1.
    pub name: String,
    pub id: Vec<u8>,
    pub spec: KeySpec,
    pub usage: Option<Usage>,
    pub policy: BackupPolicy,
    /// An AES-256 wrap/unwrap key.
    pub kek: bool,
    /// CKA_TRUSTED: only an SO session may set it.
    pub trusted: bool,
    pub version: u32,
}

/// Split `N@vk` into (`N`, k); a label without the suffix is version 1.
pub fn split_version(label: &str) -> (&str, u32) {
    if let Some((name, v)) = label.rsplit_once("@v") {
        if !name.is_empty()
            && !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && !v.starts_with('0')
        {
            if let Ok(n) = v.parse::<u32>() {
                if n >= 2 {
                    return (name, n);
                }
            }
        }
    }
    (label, 1)
}

/// The name and version of a key object (docs/KEYS.md, "Versions"): a
/// label `N@vk` (k >= 2) is version k of `N` only when the object's CKA_ID
/// is a version id of (`N`, k), which `key rotate` and `restore` give it.
/// Any other object (another tool's key labelled `N@v2`, a version made by
/// an hsmkey from before the rule) is version 1 of a key named by its whole
/// label.
pub fn name_and_version<'a>(label: &'a str, id: &[u8]) -> (&'a str, u32) {
    match split_version(label) {
        (name, version) if version >= 2 && is_version_id(name, version, id) => (name, version),
        _ => (label, 1),
    }
}

/// The label of version `version` of key `name`.
pub fn versioned_label(name: &str, version: u32) -> String {
    if version <= 1 {
        name.to_string()
    } else {
        format!("{name}@v{version}")
    }
}

/// Check a key name given to `key generate`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::BadInput {
            what: "label".into(),
            reason: "must not be empty".into(),
        });
    }
    let reserved = name.rsplit_once("@v").is_some_and(|(base, v)| {
        !base.is_empty() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
    });
    if reserved {
        return Err(Error::BadInput {
            what: "label".into(),
            reason: format!("'{name}' ends in @vN, which hsmkey reserves for key versions; use `key rotate` to make a new version"),
        });
    }
    if name.starts_with(crate::hsm::receive::IMPORT_PAIR_PREFIX) {
        return Err(Error::BadInput {
            what: "label".into(),
            reason: format!(
                "labels beginning '{}' belong to import parameters (docs/IMPORT.md)",
                crate::hsm::receive::IMPORT_PAIR_PREFIX
            ),
        });
    }
    if crate::hsm::audit::is_reserved_label(name) {
        return Err(Error::BadInput {
            what: "label".into(),
            reason: format!(
                "labels beginning '{}' belong to the audit trail (docs/AUDIT.md)",
                crate::hsm::audit::RESERVED_PREFIX
            ),
        });
    }
    Ok(())
}
