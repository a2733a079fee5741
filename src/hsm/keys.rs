//! Key templates, lookup, description, check values and versions.
//!
//! Versions (docs/KEYS.md): version 1 of a key named `N` has CKA_LABEL `N`;
//! version k >= 2 has CKA_LABEL `N@vk`. Each version has its own CKA_ID (NSS
//! softokn replaces a key whose CKA_ID and class match a new one). A bare name
//! selects every version; `N@vk` selects one.

use std::fmt;
use std::str::FromStr;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use serde::Serialize;

use super::uri::{ObjectType, Pkcs11Uri};
use super::Token;
use crate::error::{Error, Result};

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
    fn allowed_usage(self) -> Usage {
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
    const NAMES: [&'static str; 7] = [
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

    fn is_subset_of(&self, other: &Usage) -> bool {
        self.flags()
            .iter()
            .zip(other.flags())
            .all(|(mine, theirs)| !mine || theirs)
    }

    fn union(&self, other: &Usage) -> Usage {
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
    Ok(())
}

fn common_private(spec: &GenerateSpec, label: &str) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Token(true),
        // A trusted key is made in an SO session, which cannot create private objects.
        Attribute::Private(!spec.trusted),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(spec.id.clone()),
        Attribute::Sensitive(true),
        Attribute::Extractable(spec.policy != BackupPolicy::None),
    ];
    if spec.policy == BackupPolicy::Trusted {
        t.push(Attribute::WrapWithTrusted(true));
    }
    if spec.trusted {
        t.push(Attribute::Trusted(true));
    }
    t
}

/// Handles of what `generate` created.
#[derive(Debug, Clone)]
pub struct Generated {
    pub label: String,
    pub handles: Vec<ObjectHandle>,
}

/// Resolve the effective usage of a request, refusing nonsense.
pub fn effective_usage(spec: &GenerateSpec) -> Result<Usage> {
    if spec.kek && spec.spec != KeySpec::Aes256 {
        return Err(Error::Usage {
            message: format!(
                "--kek makes an AES-256 key; --type {} does not fit",
                spec.spec.name()
            ),
        });
    }
    let usage = match (spec.usage, spec.kek) {
        (Some(u), true) => u.union(&Usage {
            wrap: true,
            unwrap: true,
            ..Usage::default()
        }),
        (Some(u), false) => u,
        (None, true) => Usage {
            wrap: true,
            unwrap: true,
            ..Usage::default()
        },
        (None, false) => spec.spec.default_usage(),
    };
    if !usage.is_subset_of(&spec.spec.allowed_usage()) {
        return Err(Error::BadInput {
            what: "usage".into(),
            reason: format!(
                "{} keys can be used for {} only",
                spec.spec.name(),
                spec.spec.allowed_usage()
            ),
        });
    }
    if spec.trusted && !spec.kek {
        return Err(Error::Usage {
            message: "--trusted marks a key-encryption key: use it with --kek".into(),
        });
    }
    if spec.trusted && spec.policy != BackupPolicy::None {
        // A trusted KEK that can leave the token would let anyone holding its
        // copy unwrap every trusted key.
        return Err(Error::Usage {
            message: "a trusted KEK never leaves the token: --trusted takes no --backup-policy other than none".into(),
        });
    }
    Ok(usage)
}

/// Create a key (or key pair) in the token.
pub fn generate(token: &Token<'_>, spec: &GenerateSpec) -> Result<Generated> {
    // SoftHSM 2.6.1 can leave an empty, label-less object behind when a
    // generation fails; note which exist now so a failure can remove its own.
    let unlabelled_before = unlabelled(token);
    let made = generate_inner(token, spec);
    if made.is_err() {
        if let Ok(before) = unlabelled_before {
            for h in unlabelled(token).unwrap_or_default() {
                if !before.contains(&h) {
                    let _ = token.session().destroy_object(h);
                }
            }
        }
    }
    made
}

/// Whether a key object other than `ours` carries exactly `label`: after a
/// create, a sign that another run (another host, which the per-token lock
/// cannot see) made the same key at the same time.
pub fn others_with_label(token: &Token<'_>, label: &str, ours: &[ObjectHandle]) -> Result<bool> {
    let found = super::find_objects(
        token.session(),
        &[
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ],
    )
    .map_err(|e| Error::pkcs11("look for a key made at the same time", e))?;
    for h in found.into_iter().filter(|h| !ours.contains(h)) {
        let class = token
            .session()
            .get_attributes(h, &[AttributeType::Class])
            .map_err(|e| Error::pkcs11("read an object's class", e))?;
        let is_key = class.iter().any(|a| {
            matches!(a, Attribute::Class(c) if [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY].contains(c))
        });
        if is_key {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Remove the shells a process killed while the token wrote an object can
/// leave (SoftHSM: an object file with its class and type but no label, no
/// id, and CKA_TOKEN not yet true). Only objects with CKA_TOKEN=false and no
/// label are taken, and only when this process has made no session object
/// yet: a real session object is visible only to the application that made
/// it, so any such object seen now is no one's. Returns how many went.
pub fn remove_crash_shells(token: &Token<'_>) -> Result<usize> {
    let session = token.session();
    let found = super::find_objects(session, &[Attribute::Token(false)])
        .map_err(|e| Error::pkcs11("look for objects a crashed run left", e))?;
    let mut removed = 0;
    for h in found {
        let attrs = session
            .get_attributes(h, &[AttributeType::Label, AttributeType::Class])
            .map_err(|e| Error::pkcs11("read an object a crashed run left", e))?;
        let labelled = attrs
            .iter()
            .any(|a| matches!(a, Attribute::Label(l) if !l.is_empty()));
        let is_key = attrs.iter().any(|a| {
            matches!(a, Attribute::Class(c) if [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY].contains(c))
        });
        if !labelled && is_key {
            session
                .destroy_object(h)
                .map_err(|e| Error::pkcs11("remove an object a crashed run left", e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Label-less key objects now on the token (see [`generate`]).
pub fn unlabelled(token: &Token<'_>) -> Result<Vec<ObjectHandle>> {
    token
        .session()
        .find_objects(&[Attribute::Label(Vec::new())])
        .map_err(|e| Error::pkcs11("find objects", e))
}

/// [`generate`] without the SoftHSM clean-up snapshot (bulk callers take
/// one snapshot for the whole batch).
pub fn generate_inner(token: &Token<'_>, spec: &GenerateSpec) -> Result<Generated> {
    let usage = effective_usage(spec)?;
    let label = versioned_label(&spec.name, spec.version);
    let session = token.session();
    let map = |e| match Error::pkcs11("generate the key", e) {
        err @ Error::Pkcs11 { .. }
            if spec.trusted
                && [
                    "CKR_ATTRIBUTE_READ_ONLY",
                    "CKR_USER_NOT_LOGGED_IN",
                    "CKR_TEMPLATE_INCONSISTENT",
                    "CKR_ATTRIBUTE_VALUE_INVALID",
                ]
                .iter()
                .any(|rv| rv_is(&err, rv)) =>
        {
            Error::SoLoginRequired {
                what: "setting CKA_TRUSTED on a key".into(),
            }
        }
        other => other,
    };
    let handles = match spec.spec {
        KeySpec::Aes128 | KeySpec::Aes192 | KeySpec::Aes256 | KeySpec::Generic256 => {
            let (mech, kt, len) = match spec.spec {
                KeySpec::Aes128 => (Mechanism::AesKeyGen, CkKeyType::AES, 16u64),
                KeySpec::Aes192 => (Mechanism::AesKeyGen, CkKeyType::AES, 24),
                KeySpec::Aes256 => (Mechanism::AesKeyGen, CkKeyType::AES, 32),
                _ => (
                    Mechanism::GenericSecretKeyGen,
                    CkKeyType::GENERIC_SECRET,
                    32,
                ),
            };
            let mut t = common_private(spec, &label);
            t.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(kt),
                Attribute::ValueLen(len.into()),
                Attribute::Encrypt(usage.encrypt),
                Attribute::Decrypt(usage.decrypt),
                Attribute::Sign(usage.sign),
                Attribute::Verify(usage.verify),
                Attribute::Wrap(usage.wrap),
                Attribute::Unwrap(usage.unwrap),
                Attribute::Derive(usage.derive),
            ]);
            if usage.unwrap {
                // Whatever is unwrapped under this key must stay sensitive, and
                // under a trusted key must stay wrappable only by trusted keys:
                // otherwise the user PIN alone could wrap a `trusted` key and
                // unwrap it again as a readable one (docs/KEYS.md).
                // And the key itself cannot be modified afterwards, so its
                // unwrap template cannot be replaced (kryoptic would allow it).
                t.push(Attribute::Modifiable(false));
                let mut unwrap_template = vec![Attribute::Sensitive(true)];
                if spec.trusted {
                    unwrap_template.push(Attribute::WrapWithTrusted(true));
                }
                let number = if kt == CkKeyType::AES { 0x1080 } else { 0x0350 };
                let raw = token.module().raw();
                let handle = raw
                    .generate_key_with_unwrap_template(
                        session.handle(),
                        &super::raw::RawMechanism::Number(number),
                        &t,
                        &unwrap_template,
                    )
                    .map_err(|rv| {
                        map(cryptoki::error::Error::Pkcs11(
                            rv,
                            cryptoki::context::Function::GenerateKey,
                        ))
                    })?;
                vec![super::raw::object_handle(handle)]
            } else {
                vec![session.generate_key(&mech, &t).map_err(map)?]
            }
        }
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
            let bits: u64 = match spec.spec {
                KeySpec::Rsa2048 => 2048,
                KeySpec::Rsa3072 => 3072,
                _ => 4096,
            };
            let public = vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(spec.id.clone()),
                Attribute::ModulusBits(bits.into()),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            ];
            let (public, private) = pair_usage(public, common_private(spec, &label), &usage);
            let (pubh, privh) = session
                .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
                .map_err(map)?;
            vec![privh, pubh]
        }
        KeySpec::EcP256 | KeySpec::EcP384 => {
            let oid: &[u8] = match spec.spec {
                KeySpec::EcP256 => &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07],
                _ => &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22],
            };
            let public = vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(spec.id.clone()),
                Attribute::EcParams(oid.to_vec()),
            ];
            let (public, private) = pair_usage(public, common_private(spec, &label), &usage);
            let (pubh, privh) = session
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .map_err(map)?;
            vec![privh, pubh]
        }
    };
    Ok(Generated { label, handles })
}

/// Every usage flag is set explicitly on both halves: tokens default the
/// missing ones differently (SoftHSM turns on decrypt and unwrap).
fn pair_usage(
    mut public: Vec<Attribute>,
    mut private: Vec<Attribute>,
    usage: &Usage,
) -> (Vec<Attribute>, Vec<Attribute>) {
    public.extend([
        Attribute::Encrypt(usage.encrypt),
        Attribute::Verify(usage.verify),
        Attribute::Wrap(usage.wrap),
        Attribute::Derive(false),
    ]);
    // SoftHSM turns the recover variants on when they are left out.
    public.push(Attribute::VerifyRecover(false));
    private.push(Attribute::SignRecover(false));
    private.extend([
        Attribute::Decrypt(usage.decrypt),
        Attribute::Sign(usage.sign),
        Attribute::Unwrap(usage.unwrap),
        Attribute::Derive(usage.derive),
    ]);
    (public, private)
}

fn rv_is(err: &Error, name: &str) -> bool {
    matches!(err, Error::Pkcs11 { rv, .. } if rv == name)
}

/// Which objects a KEY argument names.
#[derive(Debug, Clone, Default)]
pub struct KeySelector {
    /// The label as given (may carry @vN).
    pub label: Option<String>,
    pub id: Option<Vec<u8>>,
    pub object_type: Option<ObjectType>,
    /// The text the operator typed, for messages (redacted).
    pub shown: String,
    /// Token attributes of a key URI (`pkcs11:token=...;object=...`).
    pub token: Option<Pkcs11Uri>,
    /// Match the label exactly (NAME@v1), not the later versions too.
    pub exact: bool,
}

impl KeySelector {
    /// Parse a KEY argument: a pkcs11: URI or a bare label.
    pub fn parse(s: &str) -> Result<KeySelector> {
        if Pkcs11Uri::looks_like_uri(s) {
            let uri = super::parse_uri(s)?;
            Ok(KeySelector {
                label: uri.object.clone(),
                id: uri.id.clone(),
                object_type: uri.object_type,
                token: uri.has_token_attributes().then_some(uri),
                // A URI's object= selects like a bare name: every version.
                exact: false,
                shown: super::redact(s),
            })
        } else if s.is_empty() {
            Err(Error::Usage {
                message: "an empty key name was given".into(),
            })
        } else if let Some(base) = s.strip_suffix("@v1").filter(|b| !b.is_empty()) {
            // Version 1 carries the bare name as its label: NAME@v1 is that
            // label exactly, without the later versions.
            Ok(KeySelector {
                label: Some(base.to_string()),
                exact: true,
                shown: s.to_string(),
                ..KeySelector::default()
            })
        } else {
            Ok(KeySelector {
                label: Some(s.to_string()),
                shown: s.to_string(),
                ..KeySelector::default()
            })
        }
    }

    /// Everything on the token.
    pub fn all() -> KeySelector {
        KeySelector {
            shown: "pkcs11:".into(),
            ..KeySelector::default()
        }
    }

    fn matches_label(&self, label: &str) -> bool {
        match &self.label {
            None => true,
            Some(want) => {
                if label == want {
                    return true;
                }
                if self.exact {
                    return false;
                }
                // A bare name (no @vN) also selects the later versions.
                let (name, version) = split_version(label);
                version > 1 && name == want && split_version(want).1 == 1
            }
        }
    }
}

/// Everything hsmkey shows about one object.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    #[serde(skip)]
    pub handle: ObjectHandle,
    pub label: String,
    /// The token's CKA_LABEL was not UTF-8: `label` is a lossy rendering,
    /// not the label itself.
    #[serde(skip)]
    pub label_lossy: bool,
    /// The key's name (label without @vN).
    pub name: String,
    pub id: String,
    pub class: String,
    #[serde(rename = "type")]
    pub key_type: String,
    /// Key size in bits, when known.
    pub size: Option<u64>,
    pub version: u32,
    pub usage: Vec<&'static str>,
    pub backup_policy: String,
    /// Hex KCV, or "unavailable".
    pub kcv: String,
    pub kcv_method: String,
    pub sensitive: Option<bool>,
    pub extractable: Option<bool>,
    pub always_sensitive: Option<bool>,
    pub never_extractable: Option<bool>,
    pub wrap_with_trusted: Option<bool>,
    pub trusted: Option<bool>,
    pub private: Option<bool>,
    pub local: Option<bool>,
    pub modifiable: Option<bool>,
    /// Empty in bulk reads (`describe_with(.., false)`).
    pub uri: String,
}

const CKO_SECRET: &str = "secret-key";

fn class_name(c: ObjectClass) -> &'static str {
    if c == ObjectClass::SECRET_KEY {
        CKO_SECRET
    } else if c == ObjectClass::PRIVATE_KEY {
        "private-key"
    } else if c == ObjectClass::PUBLIC_KEY {
        "public-key"
    } else if c == ObjectClass::CERTIFICATE {
        "cert"
    } else {
        "data"
    }
}

fn key_type_name(k: CkKeyType) -> String {
    if k == CkKeyType::AES {
        "aes".into()
    } else if k == CkKeyType::GENERIC_SECRET {
        "generic".into()
    } else if k == CkKeyType::RSA {
        "rsa".into()
    } else if k == CkKeyType::EC {
        "ec".into()
    } else {
        format!("0x{:x}", *k)
    }
}

/// Find every key object (secret, private, public) the selector names, in a
/// stable order: by name, then version, then class.
pub fn find(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<ObjectHandle>> {
    if let Some(uri) = &selector.token {
        if !super::token_matches(uri, token.slot(), token.summary()) {
            return Err(Error::Usage {
                message: format!(
                    "the key URI names another token than the one selected ({}); drop --token or make them agree",
                    token.summary().uri
                ),
            });
        }
    }
    let session = token.session();
    let classes: Vec<ObjectClass> = match selector.object_type {
        Some(ObjectType::SecretKey) => vec![ObjectClass::SECRET_KEY],
        Some(ObjectType::PrivateKey) => vec![ObjectClass::PRIVATE_KEY],
        Some(ObjectType::PublicKey) => vec![ObjectClass::PUBLIC_KEY],
        Some(_) => vec![],
        None => vec![
            ObjectClass::SECRET_KEY,
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
        ],
    };
    let mut found = Vec::new();
    for class in classes {
        // Token objects only: session objects (probes, transfer keys) are
        // this process's own scaffolding.
        let mut template = vec![Attribute::Class(class), Attribute::Token(true)];
        if let Some(id) = &selector.id {
            template.push(Attribute::Id(id.clone()));
        }
        // A bare name must also catch `name@vN`, which no PKCS#11 template
        // can express, so labels are filtered here.
        let handles = super::find_objects(session, &template)
            .map_err(|e| Error::pkcs11("find objects", e))?;
        for h in handles {
            let label = read_label(token, h)?;
            if selector.matches_label(&label) {
                let (name, version) = split_version(&label);
                found.push((name.to_string(), version, class_rank(class), h));
            }
        }
    }
    found.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    Ok(found.into_iter().map(|f| f.3).collect())
}

/// Describe every key object the selector names, sorted by name, version,
/// then class. With no label filter, one attribute read per object (no
/// separate label pass): what `key list` and `backup --all` cost per key.
pub fn describe_all(
    token: &Token<'_>,
    selector: &KeySelector,
    with_kcv: bool,
) -> Result<Vec<KeyInfo>> {
    if selector.label.is_some() || selector.token.is_some() {
        return describe_handles(token, find(token, selector)?, with_kcv);
    }
    let session = token.session();
    let mut handles = Vec::new();
    for class in [
        ObjectClass::SECRET_KEY,
        ObjectClass::PRIVATE_KEY,
        ObjectClass::PUBLIC_KEY,
    ] {
        let wanted = match selector.object_type {
            None => true,
            Some(ObjectType::SecretKey) => class == ObjectClass::SECRET_KEY,
            Some(ObjectType::PrivateKey) => class == ObjectClass::PRIVATE_KEY,
            Some(ObjectType::PublicKey) => class == ObjectClass::PUBLIC_KEY,
            Some(_) => false,
        };
        if !wanted {
            continue;
        }
        let mut template = vec![Attribute::Class(class), Attribute::Token(true)];
        if let Some(id) = &selector.id {
            template.push(Attribute::Id(id.clone()));
        }
        handles.extend(
            super::find_objects(session, &template)
                .map_err(|e| Error::pkcs11("find objects", e))?,
        );
    }
    let mut out = describe_handles(token, handles, with_kcv)?;
    let rank = |c: &str| match c {
        "secret-key" => 0u8,
        "private-key" => 1,
        _ => 2,
    };
    out.sort_by(|a, b| {
        (&a.name, a.version, rank(&a.class)).cmp(&(&b.name, b.version, rank(&b.class)))
    });
    Ok(out)
}

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

/// Describe these objects, in this order, on as many sessions as the token
/// may use (the attribute reads are most of the calls of bulk work).
pub fn describe_handles(
    token: &Token<'_>,
    handles: Vec<ObjectHandle>,
    with_kcv: bool,
) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::with_capacity(handles.len());
    super::pool::run_ordered(
        token,
        handles.into_iter().map(Ok),
        |t, h| describe_with(t, h, with_kcv),
        |info| {
            out.push(info);
            Ok(())
        },
        drop,
    )?;
    Ok(out)
}

fn class_rank(c: ObjectClass) -> u8 {
    if c == ObjectClass::SECRET_KEY {
        0
    } else if c == ObjectClass::PRIVATE_KEY {
        1
    } else {
        2
    }
}

fn read_label(token: &Token<'_>, h: ObjectHandle) -> Result<String> {
    let attrs = token
        .session()
        .get_attributes(h, &[AttributeType::Label])
        .map_err(|e| Error::pkcs11("read a label", e))?;
    Ok(attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::Label(l) => Some(String::from_utf8_lossy(&l).into_owned()),
            _ => None,
        })
        .unwrap_or_default())
}

/// The single object among those `selector` names that `keep` accepts:
/// `Ok(None)` when there is none (callers say what was missing), an
/// ambiguity error naming the candidates when there are several.
pub fn resolve_one(
    token: &Token<'_>,
    selector: &KeySelector,
    what: &'static str,
    with_kcv: bool,
    keep: impl Fn(&KeyInfo) -> bool,
) -> Result<Option<KeyInfo>> {
    let mut found = Vec::new();
    for h in find_required(token, selector)? {
        let info = describe_with(token, h, with_kcv)?;
        if keep(&info) {
            found.push(info);
        }
    }
    if found.len() > 1 {
        return Err(Error::Ambiguous {
            what,
            selector: selector.shown.clone(),
            candidates: found.into_iter().map(|k| k.label).collect(),
        });
    }
    Ok(found.pop())
}

/// Like [`find`], but an empty result is an error.
pub fn find_required(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<ObjectHandle>> {
    let found = find(token, selector)?;
    if found.is_empty() {
        return Err(Error::KeyNotFound {
            key: selector.shown.clone(),
        });
    }
    Ok(found)
}

/// Read what matters of one object. Never asks for CKA_VALUE.
pub fn describe(token: &Token<'_>, handle: ObjectHandle) -> Result<KeyInfo> {
    describe_with(token, handle, true)
}

/// [`describe`], optionally without computing the KCV (bulk selection).
pub fn describe_with(token: &Token<'_>, handle: ObjectHandle, with_kcv: bool) -> Result<KeyInfo> {
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
    let mut label = String::new();
    let mut label_lossy = false;
    let mut id = Vec::new();
    let mut value_len = None;
    let mut modulus_bits = None;
    let mut ec_params = None;
    let mut usage = Usage::default();
    let mut check_value = None;
    let mut flags: std::collections::HashMap<&'static str, bool> = Default::default();
    for a in attrs {
        match a {
            Attribute::Class(c) => class = c,
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::Label(l) => {
                label_lossy = std::str::from_utf8(&l).is_err();
                label = String::from_utf8_lossy(&l).into_owned();
            }
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
                flags.insert("sensitive", b);
            }
            Attribute::Extractable(b) => {
                flags.insert("extractable", b);
            }
            Attribute::AlwaysSensitive(b) => {
                flags.insert("always_sensitive", b);
            }
            Attribute::NeverExtractable(b) => {
                flags.insert("never_extractable", b);
            }
            Attribute::WrapWithTrusted(b) => {
                flags.insert("wrap_with_trusted", b);
            }
            Attribute::Trusted(b) => {
                flags.insert("trusted", b);
            }
            Attribute::Private(b) => {
                flags.insert("private", b);
            }
            Attribute::Local(b) => {
                flags.insert("local", b);
            }
            Attribute::Modifiable(b) => {
                flags.insert("modifiable", b);
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
    let backup_policy = if class == ObjectClass::PUBLIC_KEY {
        "public".to_string()
    } else {
        match (flags.get("extractable"), flags.get("wrap_with_trusted")) {
            (Some(false), _) => BackupPolicy::None.name().into(),
            (Some(true), Some(true)) => BackupPolicy::Trusted.name().into(),
            (Some(true), _) => BackupPolicy::Any.name().into(),
            (None, _) => "unknown".into(),
        }
    };
    let (kcv, kcv_method) = if !with_kcv {
        // Free when the token keeps it: no operation, just the attribute.
        match (&check_value, key_type) {
            (Some(cv), Some(k)) if cv.len() >= 3 && k == CkKeyType::AES => {
                (hex::encode(&cv[..3]), "CKA_CHECK_VALUE".to_string())
            }
            _ => ("not computed".to_string(), String::new()),
        }
    } else if class == ObjectClass::SECRET_KEY {
        kcv(
            token,
            handle,
            key_type,
            check_value.as_deref(),
            usage.encrypt,
            usage.sign,
        )?
    } else {
        (
            "unavailable".to_string(),
            "not defined for asymmetric keys".to_string(),
        )
    };
    let (name, version) = split_version(&label);
    let summary = token.summary();
    let mut uri = Pkcs11Uri::for_token(
        &summary.label,
        &summary.manufacturer,
        &summary.model,
        &summary.serial,
    );
    uri.object = Some(label.clone());
    uri.id = Some(id.clone());
    uri.object_type = Some(match class_name(class) {
        "secret-key" => ObjectType::SecretKey,
        "private-key" => ObjectType::PrivateKey,
        _ => ObjectType::PublicKey,
    });
    Ok(KeyInfo {
        label_lossy,
        handle,
        name: name.to_string(),
        version,
        label,
        id: hex::encode(&id),
        class: class_name(class).into(),
        key_type: key_type
            .map(key_type_name)
            .unwrap_or_else(|| "unknown".into()),
        size,
        usage: usage.names(),
        backup_policy,
        kcv,
        kcv_method,
        sensitive: flags.get("sensitive").copied(),
        extractable: flags.get("extractable").copied(),
        always_sensitive: flags.get("always_sensitive").copied(),
        never_extractable: flags.get("never_extractable").copied(),
        wrap_with_trusted: flags.get("wrap_with_trusted").copied(),
        trusted: flags.get("trusted").copied(),
        private: flags.get("private").copied(),
        local: flags.get("local").copied(),
        modifiable: flags.get("modifiable").copied(),
        // Bulk reads (backup selection, restore's index) keep no URI: it is
        // the largest field and only displays need it.
        uri: if with_kcv {
            uri.to_string()
        } else {
            String::new()
        },
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

/// The 3-byte key check value, computed in the token. CKA_CHECK_VALUE when the
/// token keeps it; for AES keys allowed to encrypt, AES-ECB of a zero block in
/// the token; otherwise "unavailable" (never a guess, never host crypto).
pub fn kcv(
    token: &Token<'_>,
    handle: ObjectHandle,
    key_type: Option<CkKeyType>,
    check_value: Option<&[u8]>,
    can_encrypt: bool,
    can_sign: bool,
) -> Result<(String, String)> {
    // A refusal of the check operation means "no KCV here"; a failing
    // token is an error, not a key without a KCV.
    let refused = |e: Error| -> Result<()> {
        match e {
            Error::NotCapable { .. } => Ok(()),
            Error::Pkcs11 { ref rv, .. }
                if [
                    "CKR_KEY_FUNCTION_NOT_PERMITTED",
                    "CKR_KEY_TYPE_INCONSISTENT",
                    "CKR_FUNCTION_NOT_SUPPORTED",
                ]
                .contains(&rv.as_str()) =>
            {
                tracing::debug!("KCV refused: {e}");
                Ok(())
            }
            other => Err(other),
        }
    };
    // Generic secrets: HMAC-SHA256 of the empty message, the method bundles
    // use, so `key list` and a backup show the same KCV. A token's own
    // CKA_CHECK_VALUE for them is token-defined (SHA-1 on SoftHSM).
    if key_type == Some(CkKeyType::GENERIC_SECRET) && can_sign {
        match super::wrap::kcv_of(token, handle, CkKeyType::GENERIC_SECRET) {
            Ok((value, _)) => return Ok((value, "HMAC-SHA256(key, empty) in the token".into())),
            Err(e) => refused(e)?,
        }
    }
    if let Some(cv) = check_value {
        if cv.len() >= 3 {
            let method = if key_type == Some(CkKeyType::AES) {
                "CKA_CHECK_VALUE"
            } else {
                "CKA_CHECK_VALUE (token-defined method)"
            };
            return Ok((hex::encode(&cv[..3]), method.into()));
        }
    }
    if key_type == Some(CkKeyType::AES) && can_encrypt {
        match super::wrap::kcv_of(token, handle, CkKeyType::AES) {
            Ok((value, _)) => return Ok((value, "AES-ECB(key, 0^128) in the token".into())),
            Err(e) => refused(e)?,
        }
    }
    Ok((
        "unavailable".into(),
        if key_type == Some(CkKeyType::AES) && can_encrypt {
            "the token keeps no CKA_CHECK_VALUE and refused AES-ECB with this key".into()
        } else {
            "the token keeps no CKA_CHECK_VALUE and the key may not do the check operation".into()
        },
    ))
}

/// Destroy objects (the caller has confirmed).
pub fn destroy(token: &Token<'_>, handles: &[ObjectHandle]) -> Result<()> {
    for h in handles {
        token
            .session()
            .destroy_object(*h)
            .map_err(|e| Error::pkcs11("destroy the key", e))?;
    }
    Ok(())
}

/// Rebuild the generation request that made `info` (type, usage, policy), so
/// `key rotate` can make the next version alike.
pub fn spec_of(info: &KeyInfo) -> Result<KeySpec> {
    let spec = match (info.key_type.as_str(), info.size) {
        ("aes", Some(128)) => KeySpec::Aes128,
        ("aes", Some(192)) => KeySpec::Aes192,
        ("aes", Some(256)) => KeySpec::Aes256,
        ("generic", Some(256)) => KeySpec::Generic256,
        ("rsa", Some(2048)) => KeySpec::Rsa2048,
        ("rsa", Some(3072)) => KeySpec::Rsa3072,
        ("rsa", Some(4096)) => KeySpec::Rsa4096,
        ("ec", Some(256)) => KeySpec::EcP256,
        ("ec", Some(384)) => KeySpec::EcP384,
        (t, s) => {
            return Err(Error::NotCapable {
                capability: "rotating this key".into(),
                detail: format!(
                    "hsmkey cannot create a key of type {t} and size {}",
                    s.map(|b| b.to_string()).unwrap_or_else(|| "unknown".into())
                ),
                alternatives:
                    "Create the new version with your HSM vendor's tools, labelled NAME@vN.".into(),
            })
        }
    };
    Ok(spec)
}

#[cfg(test)]
mod tests;
