//! Creating keys in the token (`generate`), and the clean-ups around a
//! create: SoftHSM's label-less shells, and another run's key of the same label.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};

use super::{versioned_label, BackupPolicy, GenerateSpec, KeySpec, Usage};
use crate::error::{Error, Result};
use crate::hsm::Token;

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
            remove_new_unlabelled(token, &before);
        }
    }
    made
}

/// Whether a key object other than `ours` carries exactly `label`: after a
/// create, a sign that another run (another host, which the per-token lock
/// cannot see) made the same key at the same time.
pub fn others_with_label(token: &Token<'_>, label: &str, ours: &[ObjectHandle]) -> Result<bool> {
    let found = crate::hsm::find_objects(
        token.session(),
        &[
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ],
    )
    .map_err(|e| Error::pkcs11("look for a key made at the same time", e))?;
    for h in found.into_iter().filter(|h| !ours.contains(h)) {
        let class = match token.session().get_attributes(h, &[AttributeType::Class]) {
            Ok(class) => class,
            // Gone since the search: the other run removed its copy.
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::ObjectHandleInvalid,
                _,
            )) => continue,
            Err(e) => return Err(Error::pkcs11("read an object's class", e)),
        };
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
    let found = crate::hsm::find_objects(session, &[Attribute::Token(false)])
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

/// Destroy, as far as the token lets, the label-less key objects that were
/// not there in `before` (what a failed generation can leave on SoftHSM).
pub fn remove_new_unlabelled(token: &Token<'_>, before: &[ObjectHandle]) {
    for h in unlabelled(token).unwrap_or_default() {
        if !before.contains(&h) {
            let _ = token.session().destroy_object(h);
        }
    }
}

/// A fresh CKA_ID drawn from the token's random generator.
pub fn random_id(token: &Token<'_>) -> Result<Vec<u8>> {
    token
        .session()
        .generate_random_vec(16)
        .map_err(|e| Error::pkcs11("draw a random key id", e))
}

/// The CKA_ID of a new version `version` of key `name`: 8 bytes from the
/// token's random generator, bound to the name and version
/// (`formats::id::version_id`).
pub fn random_version_id(token: &Token<'_>, name: &str, version: u32) -> Result<Vec<u8>> {
    use crate::formats::id::{version_id, VERSION_NONCE_LEN};
    let drawn = token
        .session()
        .generate_random_vec(VERSION_NONCE_LEN as u32)
        .map_err(|e| Error::pkcs11("draw a random key id", e))?;
    let mut nonce = [0u8; VERSION_NONCE_LEN];
    nonce.copy_from_slice(&drawn);
    Ok(version_id(name, version, &nonce))
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
            ]);
            t.extend(usage.attributes(false));
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
                        &crate::hsm::raw::RawMechanism::Number(number),
                        &t,
                        &unwrap_template,
                    )
                    .map_err(|rv| {
                        map(cryptoki::error::Error::Pkcs11(
                            rv,
                            cryptoki::context::Function::GenerateKey,
                        ))
                    })?;
                vec![crate::hsm::raw::object_handle(handle)]
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
