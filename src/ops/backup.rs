//! Backup, restore and verify (docs/FORMAT.md): many keys with all their
//! versions into one bundle that only the intended token or password holder
//! can open, wrapped in the token, checked end to end by a MAC made in the
//! token, restored all-or-nothing.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{ckr_name, Error, Result};
use crate::formats::bundle::{
    self, b64, unb64, BundleReader, Entry, Header, Kcv, KdfParams, KeyRef, Line, MacInfo,
    Protection, PublicPart, RecipientInfo, SourceToken, Trailer,
};
use crate::formats::{password, spki};
use crate::hsm::keys::{self, KeyInfo, KeySelector};
use crate::hsm::probe::Ephemeral;
use crate::hsm::undo::{self, Undo};
use crate::hsm::wrap::{self, OaepHash, PublicValues, SessionKey, WrapSupport};
use crate::hsm::Token;

/// How a new bundle is protected.
pub enum Protect {
    /// An AES KEK present on both tokens.
    Kek(Box<KeySelector>),
    /// A password (Hitachi VSP rule), stretched with Argon2id.
    Password(SecretString),
    /// The recipient token's RSA public key.
    Recipient {
        public: spki::RsaPublic,
        hash: OaepHash,
    },
}

/// What opens a bundle on restore or verify.
pub enum Unprotect {
    Kek(Box<KeySelector>),
    Password(SecretString),
    /// The recipient's RSA private key, in this token.
    RecipientKey(Box<KeySelector>),
}

/// Which keys to back up.
pub enum Selection {
    /// Every key whose policy allows it; the others are listed as skipped.
    All,
    /// These keys (every version of a bare name); one that may not be backed
    /// up is an error.
    Named(Vec<KeySelector>),
}

/// Argon2id cost for new password-protected bundles: 64 MiB, 3 passes.
pub const ARGON2_M_KIB: u32 = 64 * 1024;
pub const ARGON2_T: u32 = 3;
pub const ARGON2_P: u32 = 1;
/// Upper bounds accepted from a bundle header, which is not authenticated
/// until the key it describes has been derived.
const ARGON2_MAX_M_KIB: u32 = 1024 * 1024;
const ARGON2_MAX_T: u32 = 16;
const ARGON2_MAX_P: u32 = 16;

/// One key in a report.
#[derive(Debug, Clone, Serialize)]
pub struct EntrySummary {
    pub label: String,
    pub class: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub size: Option<u64>,
    pub kcv: Option<String>,
    pub wrap: String,
}

/// A key left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub label: String,
    pub class: String,
    /// Stable reason code (docs/FORMAT.md, "What backup takes"): those in
    /// [`POLICY_SKIPS`] are the key's own policy or no loss; any other makes
    /// a backup fail unless skips are allowed.
    pub code: &'static str,
    pub reason: String,
}

/// Skip codes that follow from the key's own policy: a complete backup may
/// leave these out.
/// A public key alone is not a loss either: it holds nothing secret, and
/// `hsmkey key public` exports it.
pub const POLICY_SKIPS: [&str; 4] = [
    "policy-none",
    "policy-trusted",
    "bundle-kek",
    "public-key-only",
];

impl Skipped {
    fn new(info: &KeyInfo, code: &'static str, reason: String) -> Skipped {
        Skipped {
            label: shown_label(info),
            class: info.class.clone(),
            code,
            reason,
        }
    }

    /// Whether this skip is the key's own policy (not a loss).
    pub fn is_policy(&self) -> bool {
        POLICY_SKIPS.contains(&self.code)
    }
}

/// How a key is named in reports: its label, or for keys other tools made
/// without one, its id.
fn shown_label(info: &KeyInfo) -> String {
    if info.label.is_empty() {
        format!(
            "(no label, id {})",
            if info.id.is_empty() { "none" } else { &info.id }
        )
    } else {
        info.label.clone()
    }
}

/// How `backup` runs besides what and where.
pub struct BackupOptions<'a> {
    /// Write the bundle even when keys are left out for reasons other than
    /// their own policy (`--allow-skips`).
    pub allow_skips: bool,
    /// Re-read the written bundle in the token before reporting success.
    pub verify: bool,
    pub cancel: &'a AtomicBool,
}

/// Where a bundle is written, and how it is read back for `--verify`.
pub trait BundleSink: Write {
    /// Everything written so far, flushed, as an input to read again.
    fn reread(&mut self) -> Result<Input>;
}

impl BundleSink for Vec<u8> {
    fn reread(&mut self) -> Result<Input> {
        Ok(Input::Bytes(self.clone()))
    }
}

/// A buffered file sink that can be read back by path.
pub struct FileSink<'f> {
    pub writer: std::io::BufWriter<&'f mut std::fs::File>,
    pub path: PathBuf,
}

impl Write for FileSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl BundleSink for FileSink<'_> {
    fn reread(&mut self) -> Result<Input> {
        self.writer.flush().map_err(|e| Error::Io {
            path: self.path.display().to_string(),
            source: e,
        })?;
        Ok(Input::File(self.path.clone()))
    }
}

/// What `backup` did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub scheme: String,
    pub entries: Vec<EntrySummary>,
    pub skipped: Vec<Skipped>,
}

/// What `restore` or `verify` did (or, with --dry-run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub scheme: String,
    pub source: SourceToken,
    pub created_at: String,
    pub tool: String,
    pub dry_run: bool,
    pub entries: Vec<EntrySummary>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}

/// Progress callback: (done, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

struct Candidate {
    info: KeyInfo,
    // Boxed: most candidates have none, and an unboxed None is as large as a KeyInfo.
    public: Option<Box<KeyInfo>>,
}

fn policy_refusal(
    info: &KeyInfo,
    trusted_kek: bool,
    kek_handle: Option<ObjectHandle>,
) -> Option<(&'static str, String)> {
    if Some(info.handle) == kek_handle {
        return Some(("bundle-kek", "it is the KEK of this backup".into()));
    }
    if !matches!(info.key_type.as_str(), "aes" | "generic" | "rsa" | "ec") {
        return Some((
            "unsupported-type",
            format!("hsmkey does not back up {} keys", info.key_type),
        ));
    }
    if info.extractable != Some(true) {
        return Some((
            "policy-none",
            "backup policy none (CKA_EXTRACTABLE=false): it never leaves the token".into(),
        ));
    }
    if info.wrap_with_trusted == Some(true) && !trusted_kek {
        return Some((
            "policy-trusted",
            "backup policy trusted: only a KEK the SO marked CKA_TRUSTED may wrap it (not a password, recipient or untrusted KEK)"
                .into(),
        ));
    }
    None
}

/// Keys made by other tools that a bundle cannot carry faithfully: restore
/// names keys by label, so a key without one, with a label that is not
/// UTF-8, or sharing its label with another key of its class is refused by
/// name rather than written into a bundle that restores something else.
fn identity_refusal(
    info: &KeyInfo,
    shared_labels: &HashSet<(String, String)>,
) -> Option<(&'static str, String)> {
    if info.label.is_empty() {
        return Some((
            "no-label",
            "the key has no CKA_LABEL; give it one (e.g. pkcs11-tool --set-id/--label) to back it up".into(),
        ));
    }
    if info.label_lossy {
        return Some((
            "label-not-utf8",
            "its CKA_LABEL is not UTF-8 text, so a restore could not give it the same label".into(),
        ));
    }
    if shared_labels.contains(&(info.class.clone(), info.label.clone())) {
        return Some((
            "duplicate-label",
            "another key of this class has the same label, so a restore could not tell them apart"
                .into(),
        ));
    }
    None
}

/// Find the public half of a private key: same class pair, label and id.
fn public_half(token: &Token<'_>, info: &KeyInfo) -> Result<Option<KeyInfo>> {
    let id = hex::decode(&info.id).map_err(|e| Error::Internal(e.to_string()))?;
    let found = token
        .session()
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(info.label.as_bytes().to_vec()),
            Attribute::Id(id),
        ])
        .map_err(|e| Error::pkcs11("find a public key", e))?;
    match found.first() {
        Some(h) => Ok(Some(keys::describe_with(token, *h, false)?)),
        None => Ok(None),
    }
}

/// A key that may not be backed up: an error when it was named, a line in
/// the skipped list under --all.
fn refuse_or_skip(
    named: bool,
    skipped: &mut Vec<Skipped>,
    info: &KeyInfo,
    (code, reason): (&'static str, String),
) -> Result<()> {
    if named {
        return Err(Error::PolicyRefused {
            key: shown_label(info),
            reason,
        });
    }
    skipped.push(Skipped::new(info, code, reason));
    Ok(())
}

fn select(
    token: &Token<'_>,
    selection: &Selection,
    trusted_kek: bool,
    kek_handle: Option<ObjectHandle>,
) -> Result<(Vec<Candidate>, Vec<Skipped>)> {
    let (infos, named) = match selection {
        Selection::All => (
            keys::describe_all(token, &KeySelector::all(), false)?,
            false,
        ),
        Selection::Named(list) => {
            let mut seen = HashSet::new();
            let mut handles = Vec::new();
            for sel in list {
                for h in keys::find_required(token, sel)? {
                    if seen.insert(h.handle()) {
                        handles.push(h);
                    }
                }
            }
            (keys::describe_handles(token, handles, false)?, true)
        }
    };
    let private_pairs: HashSet<(String, String)> = infos
        .iter()
        .filter(|i| i.class == "private-key")
        .map(|i| (i.label.clone(), i.id.clone()))
        .collect();
    let mut seen_labels = HashSet::new();
    let shared_labels: HashSet<(String, String)> = infos
        .iter()
        .map(|i| (i.class.clone(), i.label.clone()))
        .filter(|key| !seen_labels.insert(key.clone()))
        .collect();
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for info in infos {
        if info.class == "public-key" {
            if private_pairs.contains(&(info.label.clone(), info.id.clone())) {
                continue; // travels with its private half
            }
            let reason = "a public key alone holds nothing secret; `hsmkey key public` exports it";
            refuse_or_skip(
                named,
                &mut skipped,
                &info,
                ("public-key-only", reason.to_string()),
            )?;
            continue;
        }
        // The key's own policy first: a key that may not leave is reported
        // as such whatever its label.
        let refusal = policy_refusal(&info, trusted_kek, kek_handle)
            .filter(|(code, _)| POLICY_SKIPS.contains(code))
            .or_else(|| identity_refusal(&info, &shared_labels))
            .or_else(|| policy_refusal(&info, trusted_kek, kek_handle));
        if let Some(refusal) = refusal {
            refuse_or_skip(named, &mut skipped, &info, refusal)?;
            continue;
        }
        let public = if info.class == "private-key" {
            public_half(token, &info)?.map(Box::new)
        } else {
            None
        };
        candidates.push(Candidate { info, public });
    }
    Ok((candidates, skipped))
}

fn source_of(token: &Token<'_>) -> SourceToken {
    let s = token.summary();
    SourceToken {
        label: s.label.clone(),
        manufacturer: s.manufacturer.clone(),
        model: s.model.clone(),
        serial: s.serial.clone(),
    }
}

/// The single key a KEK selector names.
/// A KEK must itself be protected: a non-sensitive one would let anyone with
/// the PIN read everything wrapped under it. An extractable one is allowed
/// (a KEK can be moved between tokens on purpose) but said out loud.
pub(crate) fn resolve_kek(token: &Token<'_>, selector: &KeySelector) -> Result<KeyInfo> {
    let kek = resolve_kek_unchecked(token, selector)?;
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

fn resolve_kek_unchecked(token: &Token<'_>, selector: &KeySelector) -> Result<KeyInfo> {
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
        let exact = token
            .session()
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| Error::pkcs11("find the KEK", e))?;
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

fn argon2_key(password: &SecretString, params: &KdfParams) -> Result<Zeroizing<Vec<u8>>> {
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
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|e| {
            Error::BundleCorrupt {
                reason: format!("Argon2 parameters: {e}"),
            }
        })?,
    );
    let mut out = Zeroizing::new(vec![0u8; 32]);
    argon
        .hash_password_into(password.expose_secret().as_bytes(), &salt, &mut out)
        .map_err(|e| Error::BundleCorrupt {
            reason: format!("Argon2: {e}"),
        })?;
    Ok(out)
}

fn check_password(password: &SecretString) -> Result<()> {
    password::check(password.expose_secret()).map_err(|reason| Error::BadPassword { reason })
}

fn open_mac_session<'m>(token: &Token<'m>) -> Result<Session> {
    token
        .module()
        .pkcs11()
        .open_rw_session(token.slot())
        .map_err(|e| Error::pkcs11("open a second session for the MAC", e))
}

/// Back up keys into `out`, one line at a time; with `options.verify`,
/// read the written bundle back and check every key in the token.
pub fn backup(
    token: &Token<'_>,
    protect: &Protect,
    selection: &Selection,
    out: &mut dyn BundleSink,
    options: &BackupOptions<'_>,
    progress: Progress<'_>,
) -> Result<BackupReport> {
    let cancel = options.cancel;
    let session = token.session();
    let mut eph = Ephemeral::new(session);

    // Protection first: whether the KEK is trusted decides what may be selected.
    let (wrapping, protection, trusted_kek, kek_handle) = match protect {
        Protect::Kek(selector) => {
            let kek = resolve_kek(token, selector)?;
            if !kek.usage.contains(&"wrap") {
                return Err(Error::PolicyRefused {
                    key: kek.label,
                    reason: "this key may not wrap (CKA_WRAP=false); use a KEK made with `key generate --kek`".into(),
                });
            }
            if options.verify && !kek.usage.contains(&"unwrap") {
                return Err(Error::Usage {
                    message: format!(
                        "--verify reads the bundle back under the KEK, and '{}' may not unwrap (CKA_UNWRAP=false)",
                        kek.label
                    ),
                });
            }
            let protection = Protection::Kek {
                kek: KeyRef {
                    label: kek.label.clone(),
                    id: kek.id.clone(),
                    kcv: (kek.kcv != "unavailable").then(|| kek.kcv.clone()),
                },
            };
            (
                kek.handle,
                protection,
                kek.trusted == Some(true),
                Some(kek.handle),
            )
        }
        Protect::Password(pw) => {
            check_password(pw)?;
            let salt = session
                .generate_random_vec(16)
                .map_err(|e| Error::pkcs11("draw a salt", e))?;
            let params = KdfParams {
                algorithm: "argon2id".into(),
                version: 0x13,
                m_kib: ARGON2_M_KIB,
                t: ARGON2_T,
                p: ARGON2_P,
                salt: b64(&salt),
            };
            let value = argon2_key(pw, &params)?;
            let kek = wrap::session_kek_from_value(token, &mut eph, value)?;
            (kek, Protection::Password { kdf: params }, false, None)
        }
        Protect::Recipient { public, hash } => {
            let pubh = wrap::session_rsa_public(
                token,
                &mut eph,
                &public.modulus,
                &public.public_exponent,
            )?;
            let transfer = wrap::generate_session_key(token, &mut eph, SessionKey::Transfer)?;
            let wrapped = wrap::wrap_oaep(token, *hash, pubh, transfer)?;
            let protection = Protection::Recipient {
                recipient: RecipientInfo {
                    spki_sha256: public.fingerprint(),
                    bits: public.bits,
                    oaep_hash: hash.name().into(),
                    wrapped_transfer_key: b64(&wrapped),
                },
            };
            (transfer, protection, false, None)
        }
    };

    let (candidates, mut skipped) = select(token, selection, trusted_kek, kek_handle)?;
    let support = WrapSupport::probe(token)?;
    let secret_alg = support.for_secret().ok_or_else(|| Error::NotCapable {
        capability: "AES key wrap (RFC 3394 or RFC 5649)".into(),
        detail: format!("known-answer tests found {}", support.describe()),
        alternatives: "Use a token with CKM_AES_KEY_WRAP (`hsmkey token mechanisms`).".into(),
    })?;
    let private_alg = support.for_private();
    let named = matches!(selection, Selection::Named(_));
    let mut work = Vec::with_capacity(candidates.len());
    for c in candidates {
        if c.info.class == "private-key" && private_alg.is_none() {
            let reason = format!(
                "private keys travel as PKCS#8 under RFC 5649, which this token lacks ({})",
                support.describe()
            );
            if named {
                return Err(Error::NotCapable {
                    capability: "exact RFC 5649 key wrap".into(),
                    detail: reason,
                    alternatives:
                        "Back up secret keys only, or use a token with CKM_AES_KEY_WRAP_KWP.".into(),
                });
            }
            skipped.push(Skipped::new(&c.info, "token-lacks-rfc5649", reason));
            continue;
        }
        if c.info.key_type == "ec" && c.public.is_none() {
            let reason = "an EC private key without its public half on the token cannot be checked after restore".to_string();
            if named {
                return Err(Error::PolicyRefused {
                    key: c.info.label,
                    reason,
                });
            }
            skipped.push(Skipped::new(&c.info, "ec-without-public", reason));
            continue;
        }
        work.push(c);
    }
    // Exit 0 means complete: a key left out for any reason but its own
    // policy stops the backup before anything is wrapped or written.
    let lost: Vec<String> = skipped
        .iter()
        .filter(|s| !s.is_policy())
        .map(|s| format!("{} ({}: {})", s.label, s.code, s.reason))
        .collect();
    if !lost.is_empty() && !options.allow_skips {
        return Err(Error::Incomplete { skipped: lost });
    }

    // The integrity key, wrapped like the entries.
    let (secret_name, secret_mech) = secret_alg;
    let mac_key = wrap::generate_session_key(token, &mut eph, SessionKey::Mac)?;
    let wrapped_mac = wrap::wrap(token, secret_mech, wrapping, mac_key)?;
    let header = Header {
        format: bundle::FORMAT.into(),
        version: bundle::VERSION,
        tool: crate::TOOL.into(),
        created: now_rfc3339(),
        source: source_of(token),
        protection,
        mac: MacInfo {
            algorithm: "hmac-sha256".into(),
            wrap: secret_name.into(),
            wrapped_key: b64(&wrapped_mac),
        },
    };
    let mac_session = open_mac_session(token)?;
    mac_session
        .sign_init(&Mechanism::Sha256Hmac, mac_key)
        .map_err(|e| Error::pkcs11("start the bundle MAC", e))?;
    let mut mac = MacFeed::new(&mac_session);
    let emit = |line: &Line, out: &mut dyn Write, mac: &mut MacFeed<'_>| -> Result<()> {
        let bytes = bundle::encode_line(line)?;
        mac.feed(&bytes)?;
        out.write_all(&bytes).map_err(|e| Error::Io {
            path: "the output".into(),
            source: e,
        })
    };
    emit(&Line::Header(header), out, &mut mac)?;

    // Wrapping (and the check copies of keys without a token KCV) runs on
    // `--sessions` sessions; lines are written and MACed here, in order.
    let total = work.len() as u64;
    let mut entries = Vec::with_capacity(work.len());
    crate::hsm::pool::run_ordered(
        token,
        work.into_iter().map(Ok),
        |t, c| {
            let mut checks = Ephemeral::new(t.session());
            backup_entry(t, &mut checks, secret_alg, private_alg, wrapping, &c)
        },
        |entry| {
            let done = entries.len() as u64;
            if cancel.load(Ordering::SeqCst) {
                return Err(Error::Interrupted {
                    what: format!(
                        "backup stopped after {done} of {total} keys; no output was written"
                    ),
                });
            }
            entries.push(EntrySummary {
                label: entry.label.clone(),
                class: entry.class.clone(),
                key_type: entry.key_type.clone(),
                size: entry.size,
                kcv: entry.kcv.as_ref().map(|k| k.value.clone()),
                wrap: entry.wrap.clone(),
            });
            emit(&Line::Key(entry), out, &mut mac)?;
            progress(done + 1, total);
            Ok(())
        },
        drop,
    )?;
    let mac = mac.finish()?;
    let trailer = bundle::encode_line(&Line::Trailer(Trailer {
        entries: entries.len() as u64,
        mac: b64(&mac),
    }))?;
    out.write_all(&trailer).map_err(|e| Error::Io {
        path: "the output".into(),
        source: e,
    })?;
    if options.verify {
        // The bundle as written, read back like a restore would: the MAC
        // key unwrapped from the header, every key unwrapped into a session
        // object and checked. Nothing is created on the token.
        let input = out.reread()?;
        let header = read_header(&input)?;
        // KEK and password bundles are opened from the header, as a restore
        // would (the KEK found again and its KCV checked; the password key
        // derived again from the recorded salt and costs); a recipient bundle
        // with the transfer key still at hand, since the recipient's private
        // key is on another token.
        let opened = match protect {
            Protect::Kek(selector) => open_protection(
                token,
                &mut eph,
                header,
                &Unprotect::Kek(selector.clone()),
                &support,
            )?,
            Protect::Password(pw) => open_protection(
                token,
                &mut eph,
                header,
                &Unprotect::Password(SecretString::from(pw.expose_secret().to_string())),
                &support,
            )?,
            Protect::Recipient { .. } => open_mac_key(
                token,
                &mut eph,
                header,
                wrapping,
                false,
                "transfer key",
                &support,
            )?,
        };
        let checked = verify_opened(token, &input, &opened, &support, &mut |_, _| {})?;
        if checked.entries.len() != entries.len() {
            return Err(Error::Internal(format!(
                "--verify read {} keys back; {} were written",
                checked.entries.len(),
                entries.len()
            )));
        }
    }
    Ok(BackupReport {
        scheme: match protect {
            Protect::Kek(_) => "kek",
            Protect::Password(_) => "password",
            Protect::Recipient { .. } => "recipient",
        }
        .into(),
        entries,
        skipped,
    })
}

/// Bytes go to the MAC in batches: one C_SignUpdate per MAC_BATCH bytes
/// rather than one per key, since each call is a round trip on a network HSM.
const MAC_BATCH: usize = 64 * 1024;

struct MacFeed<'s> {
    session: &'s Session,
    pending: Vec<u8>,
}

impl<'s> MacFeed<'s> {
    fn new(session: &'s Session) -> Self {
        MacFeed {
            session,
            pending: Vec::with_capacity(MAC_BATCH + 16 * 1024),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= MAC_BATCH {
            self.session
                .sign_update(&self.pending)
                .map_err(|e| Error::pkcs11("MAC bundle lines", e))?;
            self.pending.clear();
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<u8>> {
        if !self.pending.is_empty() {
            self.session
                .sign_update(&self.pending)
                .map_err(|e| Error::pkcs11("MAC bundle lines", e))?;
            self.pending.clear();
        }
        self.session
            .sign_final()
            .map_err(|e| Error::pkcs11("finish the bundle MAC", e))
    }
}

fn ck_key_type(name: &str) -> KeyType {
    match name {
        "aes" => KeyType::AES,
        "generic" => KeyType::GENERIC_SECRET,
        "rsa" => KeyType::RSA,
        _ => KeyType::EC,
    }
}

fn map_wrap_error(label: &str, e: Error) -> Error {
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

fn backup_entry(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    secret_alg: (&'static str, u64),
    private_alg: Option<(&'static str, u64)>,
    wrapping: ObjectHandle,
    c: &Candidate,
) -> Result<Entry> {
    let info = &c.info;
    let is_private = info.class == "private-key";
    let (alg, mech) = if is_private {
        private_alg.ok_or_else(|| {
            Error::Internal(format!(
                "{}: a private key reached wrapping without RFC 5649",
                info.label
            ))
        })?
    } else {
        secret_alg
    };
    let blob = wrap::wrap(token, mech, wrapping, info.handle)
        .map_err(|e| map_wrap_error(&info.label, e))?;
    let key_type = ck_key_type(&info.key_type);
    let session = token.session();
    let mut kcv = None;
    let mut public = None;
    if !is_private {
        // The token's own KCV when it has one; otherwise a check copy made
        // from the blob itself, which also proves the blob unwraps.
        let known = if key_type != KeyType::AES {
            None
        } else if info.kcv_method == "CKA_CHECK_VALUE" {
            Some(info.kcv.clone())
        } else if info.usage.contains(&"encrypt") {
            wrap::kcv_of(token, info.handle, KeyType::AES)
                .ok()
                .map(|k| k.0)
        } else {
            None
        };
        let value = match known {
            Some(v) => (v, wrap::KCV_AES),
            None => {
                let copy = wrap::unwrap(
                    token,
                    mech,
                    wrapping,
                    &blob,
                    &wrap::check_copy_template(ObjectClass::SECRET_KEY, key_type),
                )
                .map_err(|rv| {
                    if crate::error::rv_is_unsupported(rv)
                        || rv == cryptoki::error::RvError::KeyFunctionNotPermitted
                    {
                        Error::NotCapable {
                            capability: format!("checking the wrapped copy of {}", info.label),
                            detail: format!(
                                "unwrapping it into a session key failed with {}",
                                ckr_name(rv)
                            ),
                            alternatives: "Use a KEK that may also unwrap (`key generate --kek`)."
                                .into(),
                        }
                    } else {
                        crate::error::token_failure(
                            "C_UnwrapKey",
                            rv,
                            &format!("check the wrapped copy of {}", info.label),
                        )
                    }
                })?;
                let copy = eph.keep(copy);
                wrap::kcv_of(token, copy, key_type)?
            }
        };
        kcv = Some(Kcv {
            method: value.1.into(),
            value: value.0,
        });
    } else {
        let values_from = if key_type == KeyType::RSA {
            info.handle
        } else {
            c.public.as_ref().map(|p| p.handle).ok_or_else(|| Error::PolicyRefused {
                key: info.label.clone(),
                reason: "an EC private key without its public half on the token cannot be checked after restore".into(),
            })?
        };
        let values = wrap::public_values(session, values_from, key_type)?.ok_or_else(|| {
            Error::NotCapable {
                capability: format!("reading the public half of {}", info.label),
                detail: "the token did not return the public values".into(),
                alternatives: String::new(),
            }
        })?;
        if alg == "rfc5649-zero-padded" {
            // Not RFC 5649 as written: prove that this token gives the same key back.
            let copy = wrap::unwrap(
                token,
                mech,
                wrapping,
                &blob,
                &wrap::check_copy_template(ObjectClass::PRIVATE_KEY, key_type),
            )
            .map_err(|rv| {
                if means_bad_blob(token, mech, rv) || crate::error::rv_is_unsupported(rv) {
                    Error::NotCapable {
                        capability: "exact RFC 5649 key wrap".into(),
                        detail: format!(
                            "{}: this token's 0x210A zero-pads PKCS#8 and the wrapped key did not unwrap ({})",
                            info.label,
                            ckr_name(rv)
                        ),
                        alternatives: "Back up secret keys only from this token, or use a token with CKM_AES_KEY_WRAP_KWP.".into(),
                    }
                } else {
                    crate::error::token_failure(
                        "C_UnwrapKey",
                        rv,
                        &format!("check the zero-padded wrap of {}", info.label),
                    )
                }
            })?;
            let copy = eph.keep(copy);
            if !wrap::private_matches(token, eph, copy, &values)? {
                return Err(Error::NotCapable {
                    capability: "exact RFC 5649 key wrap".into(),
                    detail: format!(
                        "{}: the zero-padded wrap did not give the same key back",
                        info.label
                    ),
                    alternatives: "Use a token with CKM_AES_KEY_WRAP_KWP.".into(),
                });
            }
        }
        let usage = c
            .public
            .as_ref()
            .map(|p| p.usage.iter().map(|u| u.to_string()).collect())
            .unwrap_or_else(|| vec!["verify".to_string()]);
        public = Some(match values {
            PublicValues::Rsa { modulus, exponent } => PublicPart::Rsa {
                modulus: b64(&modulus),
                public_exponent: b64(&exponent),
                usage,
            },
            PublicValues::Ec { params, point } => PublicPart::Ec {
                params: b64(&params),
                point: b64(&point),
                usage,
            },
        });
    }
    Ok(Entry {
        label: info.label.clone(),
        name: info.name.clone(),
        version: info.version,
        id: info.id.clone(),
        class: info.class.clone(),
        key_type: info.key_type.clone(),
        size: info.size,
        usage: info.usage.iter().map(|u| u.to_string()).collect(),
        backup_policy: info.backup_policy.clone(),
        kcv,
        public,
        wrap: alg.into(),
        wrapped: b64(&blob),
    })
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC).
fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    // Whole seconds: Timestamp's Display then prints no fraction.
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// Where a bundle is read from: a file (read twice) or blob bytes.
pub enum Input {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Input {
    /// Open `path`, telling a blob from a bundle by its first bytes. A blob
    /// is read once, bounded while reading (a FIFO has no size to check
    /// first); a bundle is read twice, so it must be a regular file.
    pub fn open(path: &Path) -> Result<Input> {
        let io = |e| Error::Io {
            path: path.display().to_string(),
            source: e,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        // Up to 64 bytes even from a pipe, which may return fewer per read.
        let mut start = Vec::with_capacity(64);
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 64), &mut start)
            .map_err(io)?;
        if bundle::is_blob(&start) {
            crate::input::read_limited(file, &mut start, crate::input::limits::BLOB, "blob", path)?;
            let text = String::from_utf8(start).map_err(|_| Error::BundleCorrupt {
                reason: "a blob is ASCII text; this file is not".into(),
            })?;
            return Ok(Input::Bytes(bundle::decode_blob(&text)?));
        }
        if !file.metadata().map_err(io)?.file_type().is_file() {
            return Err(Error::BadInput {
                what: format!("bundle {}", path.display()),
                reason: "a bundle is read twice (checked whole, then restored), so it must be \
                         a regular file, not a pipe or FIFO; copy it to a file first"
                    .into(),
            });
        }
        Ok(Input::File(path.to_path_buf()))
    }

    fn reader(&self) -> Result<Box<dyn BufRead + '_>> {
        match self {
            Input::File(p) => {
                let f = std::fs::File::open(p).map_err(|e| Error::Io {
                    path: p.display().to_string(),
                    source: e,
                })?;
                Ok(Box::new(BufReader::with_capacity(64 * 1024, f)))
            }
            Input::Bytes(b) => Ok(Box::new(Cursor::new(&b[..]))),
        }
    }
}

/// The bundle opened on this token: the unwrapping key and the MAC key.
struct Opened {
    header: Header,
    unwrapping: ObjectHandle,
    mac_key: ObjectHandle,
    trusted_kek: bool,
}

fn wrong_key(what: &str, reason: String) -> Error {
    Error::WrongUnwrapKey {
        what: what.to_string(),
        reason,
    }
}

fn open_protection(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    header: Header,
    unprotect: &Unprotect,
    support: &WrapSupport,
) -> Result<Opened> {
    let (unwrapping, trusted_kek, what) = match (&header.protection, unprotect) {
        (Protection::Kek { kek: expected }, Unprotect::Kek(selector)) => {
            let kek = resolve_kek(token, selector)?;
            if let (Some(want), true) = (&expected.kcv, kek.kcv != "unavailable") {
                if *want != kek.kcv {
                    return Err(wrong_key(
                        "KEK",
                        format!(
                            "the bundle was made with KEK '{}' (id {}, KCV {want}); '{}' has KCV {}",
                            expected.label, expected.id, kek.label, kek.kcv
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
            // Backups are written with SHA-1 or SHA-256 only.
            let hash = OaepHash::parse(&recipient.oaep_hash)
                .filter(|h| matches!(h, OaepHash::Sha1 | OaepHash::Sha256))
                .ok_or_else(|| Error::UnsupportedFormat {
                    reason: format!("OAEP hash {}", recipient.oaep_hash),
                })?;
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
                wrap::public_values(token.session(), private.handle, KeyType::RSA)?
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
            let wrapped = unb64("wrapped_transfer_key", &recipient.wrapped_transfer_key)
                .map_err(|reason| Error::BundleCorrupt { reason })?;
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(true),
            ];
            if !private.usage.contains(&"unwrap") {
                return Err(Error::PolicyRefused {
                    key: private.label,
                    reason: "this key may not unwrap (CKA_UNWRAP=false); a recipient key is made with --usage unwrap".into(),
                });
            }
            let transfer = wrap::unwrap_oaep(token, hash, private.handle, &wrapped, &template)
                .map_err(|rv| {
                    use cryptoki::error::RvError;
                    match rv {
                        RvError::ArgumentsBad | RvError::MechanismInvalid | RvError::MechanismParamInvalid => {
                            Error::NotCapable {
                                capability: format!("RSA-OAEP with {}", hash.name().to_uppercase()),
                                detail: format!("the token answered {}", ckr_name(rv)),
                                alternatives: "Restore on a token with this OAEP hash, or have the sender use --oaep-hash sha1.".into(),
                            }
                        }
                        rv if crate::error::rv_is_bad_ciphertext(rv) => wrong_key(
                            "recipient key",
                            format!(
                                "the transfer key did not unwrap ({}): wrong key or altered header",
                                ckr_name(rv)
                            ),
                        ),
                        rv => crate::error::token_failure(
                            "C_UnwrapKey",
                            rv,
                            "unwrap the bundle's transfer key",
                        ),
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
fn open_mac_key(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    header: Header,
    unwrapping: ObjectHandle,
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
    let wrapped_mac = unb64("mac.wrapped_key", &header.mac.wrapped_key)
        .map_err(|reason| Error::BundleCorrupt { reason })?;
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::WrapWithTrusted(true),
        Attribute::Sign(true),
    ];
    let mac_key = wrap::unwrap(token, mech, unwrapping, &wrapped_mac, &template).map_err(|rv| {
        if means_bad_blob(token, mech, rv) {
            wrong_key(
                what,
                format!(
                    "the bundle's integrity key did not unwrap ({}): wrong {what}, or the header was altered",
                    ckr_name(rv)
                ),
            )
        } else {
            crate::error::token_failure("C_UnwrapKey", rv, "unwrap the bundle's integrity key")
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

/// Conflict handling on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    Fail,
    /// Skip an entry whose key is already there (same label, id and KCV).
    Skip,
}

/// Restore options.
pub struct RestoreOptions<'a> {
    pub dry_run: bool,
    pub on_conflict: OnConflict,
    pub cancel: &'a AtomicBool,
    /// Where this token's restore journal lives: the keys a restore is
    /// creating, removed when it ends. One left by a killed run tells the
    /// next `--on-conflict skip` which keys may be half-written.
    pub journal: Option<PathBuf>,
}

/// The keys a journal names, as (class, label, id).
fn read_journal(path: Option<&Path>) -> HashSet<(String, String, String)> {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<(String, String, String)>(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn write_journal(path: &Path, keys: &[(String, String, String)]) -> Result<()> {
    let mut text = String::new();
    for k in keys {
        text.push_str(&serde_json::to_string(k).map_err(|e| Error::Internal(e.to_string()))?);
        text.push('\n');
    }
    crate::output::write_atomic(path, text.as_bytes(), true)
}

/// The whole-file check both restore and verify start with: structure, the
/// MAC in the token, and a digest of every byte so a second pass can prove it
/// read the same file. `per_entry` sees each entry after its bytes are MACed.
fn integrity_pass(
    token: &Token<'_>,
    input: &Input,
    opened: &Opened,
    mut per_entry: impl FnMut(u64, &Entry) -> Result<()>,
) -> Result<(u64, [u8; 32], Vec<[u8; 32]>)> {
    let mac_session = open_mac_session(token)?;
    mac_session
        .sign_init(&Mechanism::Sha256Hmac, opened.mac_key)
        .map_err(|e| Error::pkcs11("start checking the bundle MAC", e))?;
    let mut reader = BundleReader::new(input.reader()?);
    let mut digest = Sha256::new();
    let mut count = 0u64;
    let mut problem = None;
    // One digest per entry line, so the second pass acts only on lines that
    // are byte for byte the ones authenticated here (32 bytes a key).
    let mut line_digests = Vec::new();
    let mut pending: Vec<u8> = Vec::with_capacity(MAC_BATCH + 16 * 1024);
    loop {
        let line = reader.next_line()?.ok_or_else(|| Error::BundleCorrupt {
            reason: "the bundle ends without its trailer".into(),
        })?;
        match line.line {
            Line::Header(_) => {}
            Line::Key(entry) => {
                if problem.is_none() {
                    if let Err(e) = per_entry(count, &entry) {
                        problem = Some(e);
                    }
                }
                line_digests.push(Sha256::digest(&line.bytes).into());
                count += 1;
            }
            Line::Trailer(trailer) => {
                let mac =
                    unb64("mac", &trailer.mac).map_err(|reason| Error::BundleCorrupt { reason })?;
                if !pending.is_empty() {
                    mac_session
                        .sign_update(&pending)
                        .map_err(|e| Error::pkcs11("check the bundle MAC", e))?;
                }
                // The token computes the MAC and the two MACs are compared
                // here: C_VerifyFinal cannot tell "does not match" from a
                // token failure on every token (NSS answers a wrong HMAC
                // with CKR_DEVICE_ERROR), and a MAC is not key material.
                let computed = mac_session
                    .sign_final()
                    .map_err(|e| Error::pkcs11("check the bundle MAC", e))?;
                if !crate::formats::same_bytes(&computed, &mac) {
                    return Err(Error::BundleCorrupt {
                        reason: "the MAC does not match: lines were changed, removed, added or reordered".into(),
                    });
                }
                digest.update(&line.bytes);
                break;
            }
        }
        // In batches, as when the MAC was made (MacFeed).
        pending.extend_from_slice(&line.bytes);
        if pending.len() >= MAC_BATCH {
            mac_session
                .sign_update(&pending)
                .map_err(|e| Error::pkcs11("check the bundle MAC", e))?;
            pending.clear();
        }
        digest.update(&line.bytes);
    }
    if reader.next_line()?.is_some() {
        return Err(Error::BundleCorrupt {
            reason: "data after the trailer".into(),
        });
    }
    // Problems found in entries are reported only once the whole file is
    // known to be authentic, so a forged entry cannot steer the message.
    if let Some(e) = problem {
        return Err(e);
    }
    Ok((count, digest.finalize().into(), line_digests))
}

/// Whether a failed AES key-wrap unwrap means "this blob does not open under
/// this key" (wrong key or altered bytes) rather than a failing token: one
/// of the standard answers, or the answer this token gives a blob known to
/// be bad (docs/TOKENS.md).
fn means_bad_blob(token: &Token<'_>, mech: u64, rv: cryptoki::error::RvError) -> bool {
    crate::error::rv_is_bad_ciphertext(rv)
        || matches!(
            crate::hsm::probe::answer_to_bad_blob(token, mech),
            Ok(Some(answer)) if answer == rv
        )
}

/// In a second pass: refuse a line that is not the one the first pass
/// authenticated (the file was changed in between).
/// Restore's and verify's second reading of the bundle: every line hashed
/// again, every entry's line matched to the digest pass 1 recorded for it.
/// Yields the entries with their index.
struct SecondPass<'a> {
    reader: BundleReader<Box<dyn BufRead + 'a>>,
    digests: &'a [[u8; 32]],
    hash: Sha256,
    index: u64,
}

impl<'a> SecondPass<'a> {
    fn new(input: &'a Input, digests: &'a [[u8; 32]]) -> Result<Self> {
        Ok(SecondPass {
            reader: BundleReader::new(input.reader()?),
            digests,
            hash: Sha256::new(),
            index: 0,
        })
    }

    /// Whether the file read twice was the same: its whole digest and its
    /// count of entries.
    fn finish(self, digest: [u8; 32], total: u64, what: &str) -> Result<()> {
        let second: [u8; 32] = self.hash.finalize().into();
        if second != digest || self.index != total {
            return Err(Error::BundleCorrupt {
                reason: format!("the file changed while it was being {what}"),
            });
        }
        Ok(())
    }
}

impl Iterator for SecondPass<'_> {
    type Item = Result<(u64, Entry)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.reader.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return None,
                Err(e) => return Some(Err(Error::from(e))),
            };
            self.hash.update(&line.bytes);
            let Line::Key(entry) = line.line else {
                continue;
            };
            if let Err(e) = same_line(self.digests, self.index, &line.bytes) {
                return Some(Err(e));
            }
            let index = self.index;
            self.index += 1;
            return Some(Ok((index, entry)));
        }
    }
}

fn same_line(digests: &[[u8; 32]], index: u64, bytes: &[u8]) -> Result<()> {
    let now: [u8; 32] = Sha256::digest(bytes).into();
    match digests.get(index as usize) {
        Some(d) if *d == now => Ok(()),
        _ => Err(Error::BundleCorrupt {
            reason: "the file changed after it was checked".into(),
        }),
    }
}

fn read_header(input: &Input) -> Result<Header> {
    let mut reader = BundleReader::new(input.reader()?);
    match reader.next_line()? {
        Some(bundle::ReadLine {
            line: Line::Header(h),
            ..
        }) => Ok(h),
        _ => Err(Error::BundleCorrupt {
            reason: "no header".into(),
        }),
    }
}

fn entry_summary(e: &Entry) -> EntrySummary {
    EntrySummary {
        label: e.label.clone(),
        class: e.class.clone(),
        key_type: e.key_type.clone(),
        size: e.size,
        kcv: e.kcv.as_ref().map(|k| k.value.clone()),
        wrap: e.wrap.clone(),
    }
}

fn public_values_of(part: &PublicPart) -> Result<PublicValues> {
    let bad = |reason: String| Error::BundleCorrupt { reason };
    Ok(match part {
        PublicPart::Rsa {
            modulus,
            public_exponent,
            ..
        } => PublicValues::Rsa {
            modulus: unb64("modulus", modulus).map_err(bad)?,
            exponent: unb64("public_exponent", public_exponent).map_err(bad)?,
        },
        PublicPart::Ec { params, point, .. } => PublicValues::Ec {
            params: unb64("params", params).map_err(bad)?,
            point: unb64("point", point).map_err(bad)?,
        },
    })
}

/// The unwrap template of a restored key: what the entry records, always
/// sensitive, and wrappable only by trusted keys when restored under a
/// trusted KEK (whose unwrap template demands it).
fn restore_template(token: &Token<'_>, entry: &Entry, trusted_kek: bool) -> Result<Vec<Attribute>> {
    let id = hex::decode(&entry.id).map_err(|_| Error::BundleCorrupt {
        reason: format!("{}: id is not hex", entry.label),
    })?;
    let private = entry.class == "private-key";
    let mut t = keys::StoredKey {
        private,
        key_type: ck_key_type(&entry.key_type),
        label: &entry.label,
        id: &id,
        extractable: entry.backup_policy != "none",
        wrap_with_trusted: entry.backup_policy == "trusted" || trusted_kek,
        usage: keys::Usage::from_names(&entry.usage),
    }
    .template();
    // A restored KEK is as locked down as a generated one (docs/KEYS.md).
    if !private && entry.usage.iter().any(|u| u == "unwrap") {
        t.push(Attribute::Modifiable(false));
    }
    if let Some(part) = &entry.public {
        t.extend(wrap::private_unwrap_quirks(
            token,
            Some(&public_values_of(part)?),
        ));
    }
    Ok(t)
}

/// A check-copy template for an entry, with the token's quirks.
fn check_template(token: &Token<'_>, entry: &Entry) -> Result<Vec<Attribute>> {
    let key_type = ck_key_type(&entry.key_type);
    if entry.class == "private-key" {
        let mut t = wrap::check_copy_template(ObjectClass::PRIVATE_KEY, key_type);
        if let Some(part) = &entry.public {
            t.extend(wrap::private_unwrap_quirks(
                token,
                Some(&public_values_of(part)?),
            ));
        }
        Ok(t)
    } else {
        Ok(wrap::check_copy_template(ObjectClass::SECRET_KEY, key_type))
    }
}

fn public_template(
    entry: &Entry,
    part: &PublicPart,
    values: &PublicValues,
) -> Result<Vec<Attribute>> {
    let id = hex::decode(&entry.id).map_err(|_| Error::BundleCorrupt {
        reason: format!("{}: id is not hex", entry.label),
    })?;
    let usage = match part {
        PublicPart::Rsa { usage, .. } | PublicPart::Ec { usage, .. } => usage,
    };
    let has = |u: &str| usage.iter().any(|x| x == u);
    let mut t = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(entry.label.as_bytes().to_vec()),
        Attribute::Id(id),
        Attribute::Verify(has("verify")),
        Attribute::Derive(false),
    ];
    match values {
        PublicValues::Rsa { modulus, exponent } => t.extend([
            Attribute::KeyType(KeyType::RSA),
            Attribute::Modulus(modulus.clone()),
            Attribute::PublicExponent(exponent.clone()),
            Attribute::Encrypt(has("encrypt")),
            Attribute::Wrap(has("wrap")),
            Attribute::VerifyRecover(false),
        ]),
        PublicValues::Ec { params, point } => t.extend([
            Attribute::KeyType(KeyType::EC),
            Attribute::EcParams(params.clone()),
            Attribute::EcPoint(point.clone()),
            // Tokens default these differently for public keys: say no.
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::VerifyRecover(false),
        ]),
    }
    Ok(t)
}

/// Check an unwrapped key against its entry: KCV for secret keys, the public
/// half for private keys. Uses the key itself when it can do the check
/// operation, else a session check copy unwrapped from the same blob.
fn check_restored(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    opened: &Opened,
    mech: u64,
    entry: &Entry,
    blob: &[u8],
    key: ObjectHandle,
) -> Result<()> {
    let key_type = ck_key_type(&entry.key_type);
    let private = entry.class == "private-key";
    let can_check_directly = if private {
        key_type == KeyType::RSA || entry.usage.iter().any(|u| u == "sign")
    } else if key_type == KeyType::AES {
        entry.usage.iter().any(|u| u == "encrypt")
    } else {
        entry.usage.iter().any(|u| u == "sign")
    };
    let subject = if can_check_directly {
        key
    } else {
        let copy = wrap::unwrap(
            token,
            mech,
            opened.unwrapping,
            blob,
            &check_template(token, entry)?,
        )
        .map_err(|rv| Error::Pkcs11 {
            function: "C_UnwrapKey".into(),
            rv: ckr_name(rv),
            action: format!("make a check copy of {}", entry.label),
        })?;
        eph.keep(copy)
    };
    if private {
        let part = entry.public.as_ref().ok_or_else(|| Error::BundleCorrupt {
            reason: format!("{}: a private key without its public part", entry.label),
        })?;
        let values = public_values_of(part)?;
        if !wrap::private_matches(token, eph, subject, &values)? {
            return Err(Error::BundleCorrupt {
                reason: format!(
                    "{}: the unwrapped private key does not match its public half",
                    entry.label
                ),
            });
        }
        return Ok(());
    }
    let expected = entry.kcv.as_ref().ok_or_else(|| Error::BundleCorrupt {
        reason: format!("{}: a secret key without a KCV", entry.label),
    })?;
    let (value, method) = wrap::kcv_of(token, subject, key_type)?;
    if method != expected.method || value != expected.value {
        return Err(Error::BundleCorrupt {
            reason: format!(
                "{}: KCV after unwrap is {value} ({method}); the bundle says {} ({})",
                entry.label, expected.value, expected.method
            ),
        });
    }
    Ok(())
}

/// Some tokens (NSS) add usages the unwrap template said no to. Set them
/// back; if the token will not, the restore fails rather than widen a key.
fn enforce_usage(token: &Token<'_>, key: ObjectHandle, entry: &Entry) -> Result<()> {
    let wanted: Vec<&str> = entry.usage.iter().map(String::as_str).collect();
    let info = keys::describe_with(token, key, false)?;
    let extra: Vec<&str> = info
        .usage
        .iter()
        .copied()
        .filter(|u| !wanted.contains(u))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    let private = entry.class == "private-key";
    let fix: Vec<Attribute> = keys::Usage::from_names(&entry.usage)
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
    let after = keys::describe_with(token, key, false)?;
    let still: Vec<&str> = after
        .usage
        .iter()
        .copied()
        .filter(|u| !wanted.contains(u))
        .collect();
    if still.is_empty() {
        tracing::info!(
            "{}: the token added {}; set back to the bundle's usage",
            entry.label,
            extra.join(",")
        );
        Ok(())
    } else {
        Err(Error::NotCapable {
            capability: format!("restoring {} with only its recorded usage", entry.label),
            detail: format!(
                "the token gives it {} as well and will not take them away",
                still.join(",")
            ),
            alternatives: "Restore on a token that honours usage flags in unwrap templates.".into(),
        })
    }
}

/// What is already on the token for an entry: `Ok(true)` = the same key is
/// there (skip), `Ok(false)` = nothing in the way, `Err` = a conflict.
/// The token's keys by (class, label) and by id, read once: restore checks
/// every entry against it instead of searching the token per entry.
struct TokenIndex {
    by_label: HashMap<(String, String), Vec<ObjectHandle>>,
    by_id: HashMap<String, Vec<ObjectHandle>>,
}

impl TokenIndex {
    fn read(token: &Token<'_>) -> Result<TokenIndex> {
        let mut index = TokenIndex {
            by_label: HashMap::new(),
            by_id: HashMap::new(),
        };
        for info in keys::describe_all(token, &KeySelector::all(), false)? {
            index
                .by_label
                .entry((info.class.clone(), info.label.clone()))
                .or_default()
                .push(info.handle);
            index
                .by_id
                .entry(info.id.clone())
                .or_default()
                .push(info.handle);
        }
        Ok(index)
    }
}

/// What pass 1 found on the token for an entry.
#[derive(Clone, PartialEq, Eq)]
enum Present {
    /// Nothing in the way: create it.
    No,
    /// The same key is there (skip).
    Same,
    /// The same private key is there without its public half (a restore
    /// that was killed between the two): make the public half only.
    PublicMissing,
    /// A key the journal of a killed restore names, not proved the same
    /// (half-written): these objects go, and the entry is restored.
    Stale(Vec<ObjectHandle>),
}

fn existing(
    token: &Token<'_>,
    index: &TokenIndex,
    entry: &Entry,
    on_conflict: OnConflict,
    opened: &Opened,
    support: &WrapSupport,
    suspect: bool,
) -> Result<Present> {
    let by_label = index
        .by_label
        .get(&(entry.class.clone(), entry.label.clone()))
        .cloned()
        .unwrap_or_default();
    let by_id = index.by_id.get(&entry.id).cloned().unwrap_or_default();
    if by_label.is_empty() && by_id.is_empty() {
        return Ok(Present::No);
    }
    let conflict = |why: String| Error::AlreadyExists {
        what: format!("{} ({why})", entry.label),
    };
    if on_conflict == OnConflict::Fail {
        return Err(conflict(if by_label.is_empty() {
            format!("id {} is used by another key", entry.id)
        } else {
            "a key with this label exists; --on-conflict skip restores around identical keys".into()
        }));
    }
    let same = by_label.len() == 1 && by_id.contains(&by_label[0]);
    if !same {
        // The public half alone, under this label and id, is not the key.
        return Err(conflict("a different key has this label or id".into()));
    }
    // A key a killed restore may have left half-written: not proved the
    // same (or not even readable) means it goes and the entry is restored.
    let stale = || {
        let mut handles = vec![by_label[0]];
        if let Some(public) = index
            .by_label
            .get(&("public-key".to_string(), entry.label.clone()))
        {
            handles.extend(public.iter().filter(|h| by_id.contains(h)).copied());
        }
        Present::Stale(handles)
    };
    let proof = prove_same(token, index, entry, opened, support, &by_label, &by_id);
    match proof {
        Ok(present) => Ok(present),
        Err(_) if suspect => Ok(stale()),
        Err(e) => Err(e),
    }
}

/// The proofs of [`existing`]: `Err(AlreadyExists)` when not proved.
fn prove_same(
    token: &Token<'_>,
    index: &TokenIndex,
    entry: &Entry,
    opened: &Opened,
    support: &WrapSupport,
    by_label: &[ObjectHandle],
    by_id: &[ObjectHandle],
) -> Result<Present> {
    let conflict = |why: String| Error::AlreadyExists {
        what: format!("{} ({why})", entry.label),
    };
    let info = keys::describe(token, by_label[0])?;
    if entry.class == "secret-key" {
        let proved = match &entry.kcv {
            Some(k) if k.method == wrap::KCV_AES && info.kcv != "unavailable" => {
                info.kcv == k.value
            }
            Some(k) if k.method == wrap::KCV_GENERIC && info.usage.contains(&"sign") => {
                wrap::kcv_of(token, by_label[0], KeyType::GENERIC_SECRET)?.0 == k.value
            }
            // No KCV here (a decrypt-only AES key on SoftHSM, a generic key
            // that may not sign): prove it by wrapping.
            _ => wraps_to_entry(token, opened, support, entry, by_label[0])?,
        };
        return if proved {
            Ok(Present::Same)
        } else {
            Err(conflict(format!(
                "a key with this label and id exists but is not proved the same (KCV {}, and wrapped under the bundle's key it does not give the bundle's bytes)",
                info.kcv
            )))
        };
    }
    let part = entry.public.as_ref().ok_or_else(|| Error::BundleCorrupt {
        reason: format!("{}: a private key without its public part", entry.label),
    })?;
    let values = public_values_of(part)?;
    let public_here = index
        .by_label
        .get(&("public-key".to_string(), entry.label.clone()))
        .map(|found| {
            found
                .iter()
                .filter(|h| by_id.contains(h))
                .copied()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut eph = Ephemeral::new(token.session());
    let proved = match &values {
        PublicValues::Rsa { .. } => wrap::private_matches(token, &mut eph, by_label[0], &values)?,
        PublicValues::Ec { .. } if info.usage.contains(&"sign") => {
            wrap::private_matches(token, &mut eph, by_label[0], &values)?
        }
        // A private key that may not sign: its public half on the token
        // (same label and id) must carry the same point.
        PublicValues::Ec { point, .. } => {
            let mut any = false;
            for h in &public_here {
                if let Some(PublicValues::Ec { point: p, .. }) =
                    wrap::public_values(token.session(), *h, KeyType::EC)?
                {
                    any |= p == *point;
                }
            }
            any
        }
    };
    if !proved {
        return Err(conflict(
            "a private key with this label and id exists and is not proved the same".into(),
        ));
    }
    Ok(if public_here.is_empty() {
        Present::PublicMissing
    } else {
        Present::Same
    })
}

/// Whether the key on the token is the entry's key, proved in the token,
/// for keys whose KCV the token cannot compute: the entry is unwrapped into
/// a session copy, a fresh session key that never leaves the token wraps
/// both, and the two results are compared (AES key wrap is deterministic).
/// Neither result can be opened outside the token. A key the token will not
/// wrap, or an entry that does not unwrap into a copy, is not proved.
fn wraps_to_entry(
    token: &Token<'_>,
    opened: &Opened,
    support: &WrapSupport,
    entry: &Entry,
    key: ObjectHandle,
) -> Result<bool> {
    let (Some(mech), Some((_, compare_mech))) =
        (support.unwrap_mechanism(&entry.wrap), support.for_secret())
    else {
        return Ok(false);
    };
    let blob =
        unb64("wrapped", &entry.wrapped).map_err(|reason| Error::BundleCorrupt { reason })?;
    let mut eph = Ephemeral::new(token.session());
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(ck_key_type(&entry.key_type)),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    let copy = match wrap::unwrap(token, mech, opened.unwrapping, &blob, &template) {
        Ok(copy) => eph.keep(copy),
        Err(rv) if means_bad_blob(token, mech, rv) || not_proof(rv) => return Ok(false),
        Err(rv) => {
            return Err(crate::error::token_failure(
                "C_UnwrapKey",
                rv,
                &format!("unwrap a copy of {} to compare", entry.label),
            ))
        }
    };
    let compare = wrap::generate_session_key(token, &mut eph, SessionKey::Compare)?;
    let wrapped_copy = wrap::wrap(token, compare_mech, compare, copy)?;
    match wrap::wrap(token, compare_mech, compare, key) {
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

/// Answers by which an unwrap into a comparison copy is refused for what
/// was asked, not because the token failed: the proof is then not made.
fn not_proof(rv: cryptoki::error::RvError) -> bool {
    use cryptoki::error::RvError;
    matches!(
        rv,
        RvError::TemplateInconsistent
            | RvError::TemplateIncomplete
            | RvError::AttributeValueInvalid
            | RvError::KeyFunctionNotPermitted
            | RvError::KeySizeRange
    )
}

fn check_entry_capability(support: &WrapSupport, entry: &Entry) -> Result<u64> {
    support
        .unwrap_mechanism(&entry.wrap)
        .ok_or_else(|| Error::NotCapable {
            capability: format!("{} key wrap", entry.wrap),
            detail: format!(
                "{} was wrapped with {}; known-answer tests on this token found {}",
                entry.label,
                entry.wrap,
                support.describe()
            ),
            alternatives: "Restore on a token with this algorithm (`hsmkey token mechanisms`)."
                .into(),
        })
}

/// What pass 2 does with one entry.
#[derive(Clone, Copy)]
enum Step {
    /// The same key is already on the token.
    Skip,
    /// `--dry-run`: reported, not created.
    DryRun,
    Create,
    /// The private key is there; its public half is made again.
    PublicOnly,
    /// Half-written objects of a killed restore go; the entry is restored.
    Replace,
}

/// Create one entry's objects and check them; on any failure, what it
/// created is destroyed before the error is returned. The handles go to the
/// whole restore's rollback.
fn restore_entry(
    token: &Token<'_>,
    support: &WrapSupport,
    opened: &Opened,
    entry: &Entry,
) -> Result<Vec<(ObjectHandle, String)>> {
    let mut created = Undo::new(token.session());
    match create_entry(token, support, opened, entry, &mut created) {
        Ok(()) => Ok(created.into_objects()),
        Err(e) => Err(created.fail(e)),
    }
}

fn create_entry(
    token: &Token<'_>,
    support: &WrapSupport,
    opened: &Opened,
    entry: &Entry,
    created: &mut Undo<'_>,
) -> Result<()> {
    let session = token.session();
    let id = hex::decode(&entry.id).unwrap_or_default();
    let mech = check_entry_capability(support, entry)?;
    let blob =
        unb64("wrapped", &entry.wrapped).map_err(|reason| Error::BundleCorrupt { reason })?;
    let template = restore_template(token, entry, opened.trusted_kek)?;
    let is_kek = entry.class == "secret-key" && entry.usage.iter().any(|u| u == "unwrap");
    let unwrapped = if is_kek {
        wrap::unwrap_with_unwrap_template(
            token,
            mech,
            opened.unwrapping,
            &blob,
            &template,
            &[Attribute::Sensitive(true)],
        )
    } else {
        wrap::unwrap(token, mech, opened.unwrapping, &blob, &template)
    };
    let key = unwrapped.map_err(|rv| Error::Pkcs11 {
        function: "C_UnwrapKey".into(),
        rv: ckr_name(rv),
        action: format!("restore {}", entry.label),
    })?;
    created.add(key, undo::describe(&entry.label, &entry.class, &id));
    enforce_usage(token, key, entry)?;
    create_public(token, entry, created)?;
    let mut checks = Ephemeral::new(session);
    check_restored(token, &mut checks, opened, mech, entry, &blob, key)
}

/// An entry's public half, made from the values the bundle records.
fn create_public(token: &Token<'_>, entry: &Entry, created: &mut Undo<'_>) -> Result<()> {
    let Some(part) = &entry.public else {
        return Ok(());
    };
    let id = hex::decode(&entry.id).unwrap_or_default();
    let values = public_values_of(part)?;
    let public = token
        .session()
        .create_object(&public_template(entry, part, &values)?)
        .map_err(|e| Error::pkcs11(&format!("restore the public half of {}", entry.label), e))?;
    created.add(public, undo::describe(&entry.label, "public-key", &id));
    Ok(())
}

/// Only the public half of an entry whose private key is on the token.
fn restore_public(token: &Token<'_>, entry: &Entry) -> Result<Vec<(ObjectHandle, String)>> {
    let mut created = Undo::new(token.session());
    match create_public(token, entry, &mut created) {
        Ok(()) => Ok(created.into_objects()),
        Err(e) => Err(created.fail(e)),
    }
}

/// Restore a bundle: check everything first, then create all-or-nothing.
pub fn restore(
    token: &Token<'_>,
    input: &Input,
    unprotect: &Unprotect,
    options: &RestoreOptions<'_>,
    progress: Progress<'_>,
) -> Result<RestoreReport> {
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let header = read_header(input)?;
    // Finishing a crashed restore: its half-written objects go first, before
    // this process makes any session object of its own.
    let shells = if options.on_conflict == OnConflict::Skip && !options.dry_run {
        keys::remove_crash_shells(token)?
    } else {
        0
    };
    let support = WrapSupport::probe(token)?;
    let opened = open_protection(token, &mut eph, header, unprotect, &support)?;

    // Pass 1: authenticity, capabilities, conflicts. Nothing is created.
    let mut skip = HashMap::new();
    let mut stale_by_key: HashMap<(String, String), Vec<ObjectHandle>> = HashMap::new();
    let mut to_create = Vec::new();
    let journal = if options.on_conflict == OnConflict::Skip {
        read_journal(options.journal.as_deref())
    } else {
        HashSet::new()
    };
    let on_token = TokenIndex::read(token)?;
    let (total, digest, line_digests) = integrity_pass(token, input, &opened, |index, entry| {
        check_entry_capability(&support, entry)?;
        let key = (entry.class.clone(), entry.label.clone(), entry.id.clone());
        let suspect = journal.contains(&key);
        match existing(
            token,
            &on_token,
            entry,
            options.on_conflict,
            &opened,
            &support,
            suspect,
        )? {
            Present::No => to_create.push(key),
            Present::Same => {
                skip.insert(index, Present::Same);
            }
            present => {
                if let Present::Stale(handles) = &present {
                    stale_by_key.insert((key.0.clone(), key.1.clone()), handles.clone());
                }
                to_create.push(key);
                skip.insert(index, present);
            }
        }
        Ok(())
    })?;
    // Before the first object: what this run will create, for a run after a
    // crash. Removed when the restore ends either way.
    let journal_path = options
        .journal
        .as_deref()
        .filter(|_| !options.dry_run && !to_create.is_empty());
    if let Some(path) = journal_path {
        write_journal(path, &to_create)?;
    }
    let mut report = RestoreReport {
        scheme: opened.header.protection.scheme().into(),
        source: opened.header.source.clone(),
        created_at: opened.header.created.clone(),
        tool: opened.header.tool.clone(),
        dry_run: options.dry_run,
        entries: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    if shells > 0 {
        report.notes.push(format!(
            "removed {shells} label-less object(s) a crashed run had left half-written"
        ));
    }
    if opened.trusted_kek {
        report.notes.push(
            "restored under a trusted KEK: every restored key can be wrapped only by trusted keys (policy trusted or none)".into(),
        );
    }

    // Pass 2: create, check each key, and prove the file did not change.
    // Lines are read, hashed and matched to pass 1 here; the unwraps and
    // checks run on `--sessions` sessions; results come back in file order.
    // Shared by the in-order results and the salvage of those under way
    // when a run stops: every created object reaches it, even on a panic.
    let stale = stale_by_key;
    let rollback = std::cell::RefCell::new(Undo::new(session));
    let mut second = SecondPass::new(input, &line_digests)?;
    let items = second.by_ref().map(|read| {
        let (index, entry) = read?;
        if options.cancel.load(Ordering::SeqCst) {
            return Err(Error::Interrupted {
                what: format!("restore stopped after {index} of {total} keys; the keys it had created were destroyed"),
            });
        }
        let step = if skip.get(&index) == Some(&Present::Same) {
            Step::Skip
        } else if options.dry_run {
            Step::DryRun
        } else if skip.get(&index) == Some(&Present::PublicMissing) {
            Step::PublicOnly
        } else if matches!(skip.get(&index), Some(Present::Stale(_))) {
            Step::Replace
        } else {
            Step::Create
        };
        Ok((step, entry))
    });
    let mut done = 0u64;
    let run = crate::hsm::pool::run_ordered(
        token,
        items,
        |t, (step, entry)| match step {
            Step::Create => restore_entry(t, &support, &opened, &entry).map(|h| (step, entry, h)),
            Step::PublicOnly => restore_public(t, &entry).map(|h| (step, entry, h)),
            Step::Replace => {
                let key = (entry.class.clone(), entry.label.clone());
                for h in stale.get(&key).into_iter().flatten() {
                    t.session().destroy_object(*h).map_err(|e| {
                        Error::pkcs11(&format!("remove a half-written copy of {}", entry.label), e)
                    })?;
                }
                restore_entry(t, &support, &opened, &entry).map(|h| (step, entry, h))
            }
            _ => Ok((step, entry, Vec::new())),
        },
        |(step, entry, handles)| {
            rollback.borrow_mut().extend(handles);
            done += 1;
            if options.cancel.load(Ordering::SeqCst) {
                return Err(Error::Interrupted {
                    what: format!("restore stopped after {done} of {total} keys; the keys it had created were destroyed"),
                });
            }
            if matches!(step, Step::Skip) {
                report.skipped.push(Skipped {
                    label: entry.label.clone(),
                    class: entry.class.clone(),
                    code: "already-on-token",
                    reason: "the same key is already on the token".into(),
                });
            } else {
                report.entries.push(entry_summary(&entry));
            }
            progress(done, total);
            Ok(())
        },
        |(_, _, handles)| rollback.borrow_mut().extend(handles),
    )
    .and_then(|()| second.finish(digest, total, "restored"))
    .and_then(|()| {
        if options.dry_run || report.entries.is_empty() {
            return Ok(());
        }
        // The per-token lock serialises runs on this host only: a run on
        // another host may have restored the same keys meanwhile.
        let after = TokenIndex::read(token)?;
        match report.entries.iter().find(|e| {
            after
                .by_label
                .get(&(e.class.clone(), e.label.clone()))
                .is_some_and(|found| found.len() > 1)
        }) {
            Some(e) => Err(Error::ConcurrentCreate {
                what: format!("the key labelled '{}'", e.label),
            }),
            None => Ok(()),
        }
    });
    let rollback = rollback.into_inner();
    let outcome = match run {
        Ok(()) => {
            rollback.commit();
            Ok(report)
        }
        Err(e) => Err(rollback.fail(e)),
    };
    // The journal goes once nothing of this run can be half-written: kept
    // only when clean-up itself left objects.
    if let Some(path) = journal_path {
        if !matches!(outcome, Err(Error::LeftBehind { .. })) {
            let _ = std::fs::remove_file(path);
        }
    }
    outcome
}

/// Verify a bundle: authenticity, then every key unwrapped into a session
/// object and checked (KCV, public half), then destroyed. Creates nothing.
pub fn verify(
    token: &Token<'_>,
    input: &Input,
    unprotect: &Unprotect,
    progress: Progress<'_>,
) -> Result<RestoreReport> {
    let session = token.session();
    let mut eph = Ephemeral::new(session);
    let header = read_header(input)?;
    let support = WrapSupport::probe(token)?;
    let opened = open_protection(token, &mut eph, header, unprotect, &support)?;
    verify_opened(token, input, &opened, &support, progress)
}

/// [`verify`] once the bundle's keys are open (also `backup --verify`).
fn verify_opened(
    token: &Token<'_>,
    input: &Input,
    opened: &Opened,
    support: &WrapSupport,
    progress: Progress<'_>,
) -> Result<RestoreReport> {
    let (total, digest, line_digests) = integrity_pass(token, input, opened, |_, entry| {
        check_entry_capability(support, entry).map(|_| ())
    })?;
    let mut report = RestoreReport {
        scheme: opened.header.protection.scheme().into(),
        source: opened.header.source.clone(),
        created_at: opened.header.created.clone(),
        tool: opened.header.tool.clone(),
        dry_run: true,
        entries: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    let mut second = SecondPass::new(input, &line_digests)?;
    let items = second.by_ref().map(|read| read.map(|(_, entry)| entry));
    let mut done = 0u64;
    crate::hsm::pool::run_ordered(
        token,
        items,
        |t, entry| {
            let mech = check_entry_capability(support, &entry)?;
            let blob = unb64("wrapped", &entry.wrapped)
                .map_err(|reason| Error::BundleCorrupt { reason })?;
            let mut checks = Ephemeral::new(t.session());
            let copy = wrap::unwrap(
                t,
                mech,
                opened.unwrapping,
                &blob,
                &check_template(t, &entry)?,
            )
            .map_err(|rv| {
                if means_bad_blob(t, mech, rv) {
                    Error::BundleCorrupt {
                        reason: format!("{} did not unwrap ({})", entry.label, ckr_name(rv)),
                    }
                } else {
                    crate::error::token_failure(
                        "C_UnwrapKey",
                        rv,
                        &format!("unwrap a check copy of {}", entry.label),
                    )
                }
            })?;
            let copy = checks.keep(copy);
            check_restored(t, &mut checks, opened, mech, &entry, &blob, copy)?;
            Ok(entry_summary(&entry))
        },
        |summary| {
            report.entries.push(summary);
            done += 1;
            progress(done, total);
            Ok(())
        },
        drop,
    )?;
    second.finish(digest, total, "verified")?;
    Ok(report)
}

/// Read just the header (for messages and `--dry-run` summaries).
pub fn header_of(input: &Input) -> Result<Header> {
    read_header(input)
}

#[cfg(test)]
mod tests;
