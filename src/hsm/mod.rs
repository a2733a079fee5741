//! The only code that calls cryptoki: module loading, token selection,
//! sessions and login, key templates, KCVs, capability probes.

pub mod audit;
pub mod check;
pub mod keys;
pub mod lock;
pub mod mac;
pub mod pin;
pub mod pool;
pub mod probe;
pub mod raw;
pub mod receive;
pub mod template;
pub mod undo;
pub mod unwrap;
pub mod uri;
pub mod wrap;

#[cfg(test)]
mod tests;

/// A token object, as hsmkey hands it around: an opaque handle.
pub use cryptoki::object::ObjectHandle as Handle;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cryptoki::context::Pkcs11;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use serde::Serialize;

use crate::error::{Error, Result};
use uri::Pkcs11Uri;

/// The PKCS#11 binding hsmkey is built with, as `--version` shows it. The
/// version must be the one Cargo.lock holds (checked by a unit test in
/// `src/hsm/tests.rs`): a `cargo update` that moves cryptoki fails that test
/// until this is changed too.
pub const PKCS11_BINDING: &str = "cryptoki 0.12.1";

/// Where SoftHSM2 lives on the usual systems, tried in order when neither
/// `--module` nor HSMKEY_MODULE names a module.
pub const DEFAULT_MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// A loaded and initialized PKCS#11 module.
pub struct Module {
    pkcs11: Pkcs11,
    raw: raw::RawModule,
    path: String,
    module_args: Option<String>,
    /// Set once a token has been found (or made): from then on sessions
    /// may be open, and the module is never initialized again.
    found: AtomicBool,
}

/// How often a token that is missing is looked for again, after
/// the module is initialized afresh, before HK1003 (see `select_token`).
const MISSING_TOKEN_RETRIES: u32 = 3;

/// What `token list` shows for one slot.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TokenSummary {
    pub slot_id: u64,
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub initialized: bool,
    pub user_pin_initialized: bool,
    pub uri: String,
}

/// What `token info` shows.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TokenDetails {
    #[serde(flatten)]
    pub summary: TokenSummary,
    pub firmware_version: String,
    pub hardware_version: String,
    pub library_description: String,
    pub library_manufacturer: String,
    pub library_version: String,
    pub module: String,
    pub min_pin_length: usize,
    pub max_pin_length: usize,
    pub login_required: bool,
    pub user_pin_locked: bool,
    pub user_pin_count_low: bool,
    pub so_pin_locked: bool,
    pub session_count: Option<u64>,
    pub free_private_memory: Option<usize>,
}

impl Module {
    /// Load a module: the explicit path, else the first default path that exists.
    /// `module_args` is handed to C_Initialize's pReserved (NSS softokn).
    pub fn load(path: Option<&str>, module_args: Option<&str>) -> Result<Module> {
        let path = match path {
            Some(p) => p.to_string(),
            None => DEFAULT_MODULE_PATHS
                .iter()
                .find(|p| Path::new(p).exists())
                .map(|p| p.to_string())
                .ok_or_else(|| Error::NoModule {
                    tried: DEFAULT_MODULE_PATHS.iter().map(|s| s.to_string()).collect(),
                })?,
        };
        // A bare file name is left to the dynamic loader's search path.
        if path.contains('/') && !Path::new(&path).exists() {
            return Err(Error::ModuleLoad {
                path,
                reason: "no such file".into(),
            });
        }
        tracing::debug!(module = %path, "loading PKCS#11 module");
        let pkcs11 = Pkcs11::new(&path).map_err(|e| Error::ModuleLoad {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        raw::initialize(&pkcs11, module_args)
            .map_err(|e| Error::pkcs11("initialize the module", e))?;
        let raw = raw::RawModule::open(&path).map_err(|reason| Error::ModuleLoad {
            path: path.clone(),
            reason,
        })?;
        Ok(Module {
            pkcs11,
            raw,
            path,
            module_args: module_args.map(str::to_string),
            found: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub(in crate::hsm) fn raw(&self) -> &raw::RawModule {
        &self.raw
    }

    pub(in crate::hsm) fn pkcs11(&self) -> &Pkcs11 {
        &self.pkcs11
    }

    pub fn summary(&self, slot: Slot) -> Result<TokenSummary> {
        let info = self
            .pkcs11
            .get_token_info(slot)
            .map_err(|e| Error::pkcs11("read token information", e))?;
        let label = info.label().trim_end().to_string();
        let manufacturer = info.manufacturer_id().trim_end().to_string();
        let model = info.model().trim_end().to_string();
        let serial = info.serial_number().trim_end().to_string();
        let uri = Pkcs11Uri::for_token(&label, &manufacturer, &model, &serial).to_string();
        Ok(TokenSummary {
            slot_id: slot.id(),
            label,
            manufacturer,
            model,
            serial,
            initialized: info.token_initialized(),
            user_pin_initialized: info.user_pin_initialized(),
            uri,
        })
    }

    /// Every slot that holds a token, initialized or not.
    pub fn tokens(&self) -> Result<Vec<TokenSummary>> {
        let slots = self
            .pkcs11
            .get_slots_with_token()
            .map_err(|e| Error::pkcs11("list slots", e))?;
        slots.into_iter().map(|s| self.summary(s)).collect()
    }

    /// Details of one token.
    pub fn details(&self, slot: Slot) -> Result<TokenDetails> {
        let info = self
            .pkcs11
            .get_token_info(slot)
            .map_err(|e| Error::pkcs11("read token information", e))?;
        let lib = self
            .pkcs11
            .get_library_info()
            .map_err(|e| Error::pkcs11("read library information", e))?;
        Ok(TokenDetails {
            summary: self.summary(slot)?,
            firmware_version: info.firmware_version().to_string(),
            hardware_version: info.hardware_version().to_string(),
            library_description: lib.library_description().trim_end().to_string(),
            library_manufacturer: lib.manufacturer_id().trim_end().to_string(),
            library_version: lib.library_version().to_string(),
            module: self.path.clone(),
            min_pin_length: info.min_pin_length(),
            max_pin_length: info.max_pin_length(),
            login_required: info.login_required(),
            user_pin_locked: info.user_pin_locked(),
            user_pin_count_low: info.user_pin_count_low(),
            so_pin_locked: info.so_pin_locked(),
            session_count: info.session_count(),
            free_private_memory: info.free_private_memory(),
        })
    }

    /// Find the slot of the token named by `selector` (a label or a pkcs11:
    /// URI). Without a selector, the only initialized token is taken; with
    /// several, the operator must choose.
    ///
    /// A token that is not found (the one named, or without a selector any
    /// initialized one) is looked for again, up to three times (0.35 s in all), after C_Finalize and a fresh C_Initialize: SoftHSM reads
    /// its token files once, at C_Initialize, and a process that does so
    /// while another process rewrites them skips that token ("Failed to open
    /// token"), so it would wrongly answer HK1003. The module is initialized
    /// again only until a token has been found or made through it (the
    /// finalize would close every session); after that, and in
    /// [`Module::find_token`], a missing token is HK1003 at the first look.
    pub fn select_token(&self, selector: Option<&str>) -> Result<Slot> {
        let mut attempt = 0;
        loop {
            match self.find_token(selector) {
                Err(Error::TokenNotFound { .. })
                    if attempt < MISSING_TOKEN_RETRIES && !self.found.load(Ordering::SeqCst) =>
                {
                    attempt += 1;
                    tracing::debug!(
                        attempt,
                        "the token was not found; initializing the module again"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(25 << attempt));
                    self.raw.finalize().map_err(|rv| {
                        Error::pkcs11(
                            "finalize the module",
                            cryptoki::error::Error::Pkcs11(
                                rv,
                                cryptoki::context::Function::Finalize,
                            ),
                        )
                    })?;
                    raw::initialize(&self.pkcs11, self.module_args.as_deref())
                        .map_err(|e| Error::pkcs11("initialize the module", e))?;
                }
                other => return other,
            }
        }
    }

    /// [`Module::select_token`] without looking again: for a process that
    /// may have sessions open (the server replacing a lost session).
    pub fn find_token(&self, selector: Option<&str>) -> Result<Slot> {
        let slots = self
            .pkcs11
            .get_slots_with_token()
            .map_err(|e| Error::pkcs11("list slots", e))?;
        let mut matches = Vec::new();
        let uri = match selector {
            Some(s) if Pkcs11Uri::looks_like_uri(s) => Some(parse_uri(s)?),
            _ => None,
        };
        for slot in slots {
            let summary = self.summary(slot)?;
            let hit = match (selector, &uri) {
                (_, Some(u)) => token_matches(u, slot, &summary),
                (Some(label), None) => summary.label == label,
                (None, None) => summary.initialized,
            };
            if hit {
                matches.push((slot, summary));
            }
        }
        let shown = selector
            .map(redact)
            .unwrap_or_else(|| "(no --token given)".to_string());
        match matches.len() {
            0 => Err(Error::TokenNotFound { selector: shown }),
            1 => {
                self.found.store(true, Ordering::SeqCst);
                Ok(matches.remove(0).0)
            }
            _ => Err(Error::Ambiguous {
                what: "token",
                selector: shown,
                candidates: matches.into_iter().map(|(_, s)| s.uri).collect(),
            }),
        }
    }

    /// Slots whose token is not initialized yet (fresh SoftHSM slot, new HSM partition).
    pub fn uninitialized_slots(&self) -> Result<Vec<Slot>> {
        let slots = self
            .pkcs11
            .get_slots_with_token()
            .map_err(|e| Error::pkcs11("list slots", e))?;
        let mut out = Vec::new();
        for slot in slots {
            if !self.summary(slot)?.initialized {
                out.push(slot);
            }
        }
        Ok(out)
    }

    /// Refuse a user PIN outside the token's length limits before anything is
    /// changed: a failed C_InitPIN after C_InitToken would leave a token
    /// without a user PIN.
    pub fn check_pin_length(&self, slot: Slot, pin: &SecretString) -> Result<()> {
        use secrecy::ExposeSecret;
        let info = self
            .pkcs11
            .get_token_info(slot)
            .map_err(|e| Error::pkcs11("read token information", e))?;
        let len = pin.expose_secret().len();
        let (min, max) = (info.min_pin_length(), info.max_pin_length());
        // Some tokens report nonsense before initialization (kryoptic: 8..0);
        // only limits that make sense are enforced.
        if max == 0 || min > max {
            return Ok(());
        }
        if len < min || len > max {
            return Err(Error::BadInput {
                what: "user PIN".into(),
                reason: format!("it has {len} bytes; this token takes {min} to {max}"),
            });
        }
        Ok(())
    }

    /// C_InitToken then C_InitPIN: a usable token with both PINs set.
    pub fn init_token(
        &self,
        slot: Slot,
        label: &str,
        so_pin: &SecretString,
        user_pin: &SecretString,
    ) -> Result<()> {
        if label.is_empty() || label.len() > 32 || label.trim() != label {
            return Err(Error::BadInput {
                what: "token label".into(),
                reason: "must be 1 to 32 bytes without leading or trailing spaces (PKCS#11 pads labels with spaces)".into(),
            });
        }
        self.pkcs11
            .init_token(slot, so_pin, label)
            .map_err(|e| so_error("initialize the token", e))?;
        self.found.store(true, Ordering::SeqCst);
        let session = self
            .pkcs11
            .open_rw_session(slot)
            .map_err(|e| Error::pkcs11("open a session", e))?;
        session
            .login(UserType::So, Some(so_pin))
            .map_err(|e| so_error("log in as SO", e))?;
        session
            .init_pin(user_pin)
            .map_err(|e| Error::pkcs11("set the user PIN", e))?;
        let _ = session.logout();
        Ok(())
    }

    /// Open a read-write session on the token and log in.
    pub fn open(&self, slot: Slot, login: Login<'_>) -> Result<Token<'_>> {
        let session = self
            .pkcs11
            .open_rw_session(slot)
            .map_err(|e| Error::pkcs11("open a session", e))?;
        let summary = self.summary(slot)?;
        match login {
            Login::None => {}
            Login::User(pin) => {
                if !summary.user_pin_initialized {
                    return Err(Error::UserPinNotInitialized {
                        token: summary.label.clone(),
                    });
                }
                login_once(&session, UserType::User, pin)?;
            }
            Login::SecurityOfficer(pin) => {
                login_once(&session, UserType::So, pin).map_err(|e| match e {
                    Error::PinIncorrect { .. } => Error::PinIncorrect { user: "SO" },
                    Error::PinLocked { .. } => Error::PinLocked { user: "SO" },
                    Error::Pkcs11 { ref rv, .. } if rv == "CKR_USER_TYPE_INVALID" => {
                        Error::NotCapable {
                            capability: "a Security Officer login".into(),
                            detail: "the token refuses SO sessions (NSS softokn allows one only before the user PIN is set)".into(),
                            alternatives: "Operations that need the SO (CKA_TRUSTED keys) are not possible on this token; use `--backup-policy any` keys and an ordinary KEK, or a token with SO sessions.".into(),
                        }
                    }
                    other => other,
                })?;
            }
        }
        Ok(Token {
            module: self,
            session,
            slot,
            summary,
            sessions: 1,
            audit_seen: audit::Seen::default(),
        })
    }
}

impl Module {
    /// A session of a worker of bulk work on a token already opened (and
    /// logged in: login state belongs to the application): its summary is
    /// the opener's, not read again (a round trip per worker on a network
    /// HSM).
    pub(in crate::hsm) fn open_worker(
        &self,
        slot: Slot,
        summary: &TokenSummary,
    ) -> Result<Token<'_>> {
        let session = self
            .pkcs11
            .open_rw_session(slot)
            .map_err(|e| Error::pkcs11("open a session", e))?;
        Ok(Token {
            module: self,
            session,
            slot,
            summary: summary.clone(),
            sessions: 1,
            audit_seen: audit::Seen::default(),
        })
    }
}

/// How to log in when opening a token.
pub enum Login<'a> {
    None,
    User(&'a SecretString),
    SecurityOfficer(&'a SecretString),
}

fn login_once(session: &Session, user: UserType, pin: &SecretString) -> Result<()> {
    // One attempt only: a retry loop would burn the token's PIN counter.
    match session.login(user, Some(pin)) {
        Ok(()) => Ok(()),
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
            Ok(())
        }
        Err(e) => Err(Error::pkcs11("log in", e)),
    }
}

fn so_error(action: &str, e: cryptoki::error::Error) -> Error {
    match Error::pkcs11(action, e) {
        Error::PinIncorrect { .. } => Error::PinIncorrect { user: "SO" },
        Error::PinLocked { .. } => Error::PinLocked { user: "SO" },
        other => other,
    }
}

/// Handles asked for per C_FindObjects call: cryptoki's default of 10 costs
/// a round trip per ten objects, a thousand calls on a token of 10,000 keys.
// A const item is evaluated by the compiler: this panic can only ever be a
// build error, never a runtime one.
#[allow(clippy::panic)]
const FIND_BATCH: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(1024) {
    Some(n) => n,
    None => panic!("FIND_BATCH is not zero"),
};

/// Every object matching `template`, found in batches of [`FIND_BATCH`].
pub fn find_objects(
    session: &Session,
    template: &[cryptoki::object::Attribute],
) -> cryptoki::error::Result<Vec<cryptoki::object::ObjectHandle>> {
    session
        .iter_objects_with_cache_size(template, FIND_BATCH)?
        .collect()
}

/// Parse a URI, turning its error into the crate's error.
pub fn parse_uri(s: &str) -> Result<Pkcs11Uri> {
    Pkcs11Uri::parse(s).map_err(|e| Error::MalformedUri {
        uri: redact(s),
        reason: e.to_string(),
    })
}

/// What may be echoed of a token or key argument in messages: a URI loses its
/// query (where PINs live), and one that mentions pin-value anywhere is withheld.
pub fn redact(s: &str) -> String {
    if !Pkcs11Uri::looks_like_uri(s) {
        return s.to_string();
    }
    if s.to_ascii_lowercase().contains("pin-value") {
        return "(URI withheld: it contains a pin-value)".to_string();
    }
    s.split('?').next().unwrap_or_default().to_string()
}

pub(crate) fn token_matches(uri: &Pkcs11Uri, slot: Slot, t: &TokenSummary) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    eq(&uri.token, &t.label)
        && eq(&uri.manufacturer, &t.manufacturer)
        && eq(&uri.model, &t.model)
        && eq(&uri.serial, &t.serial)
        && uri.slot_id.is_none_or(|id| id == slot.id())
}

/// An open, logged-in session on one token. Everything that touches keys
/// goes through it.
pub struct Token<'m> {
    module: &'m Module,
    session: Session,
    slot: Slot,
    summary: TokenSummary,
    sessions: usize,
    /// The audit trail's objects, as the last pass over every object saw
    /// them; shared with the audit session opened on this token.
    audit_seen: audit::Seen,
}

impl<'m> Token<'m> {
    pub(in crate::hsm) fn session(&self) -> &Session {
        &self.session
    }

    pub fn module(&self) -> &'m Module {
        self.module
    }

    pub fn slot(&self) -> Slot {
        self.slot
    }

    pub fn summary(&self) -> &TokenSummary {
        &self.summary
    }

    /// How many sessions bulk work may use (`--sessions`; see [`pool`]).
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Let bulk work on this token use `n` sessions, one per worker thread.
    pub fn set_sessions(&mut self, n: usize) -> Result<()> {
        self.sessions = pool::check_sessions(n)?;
        Ok(())
    }

    /// A pass over every token object saw the audit trail's objects (or
    /// none): the audit session on this token uses their handles instead of
    /// a search of its own.
    pub(in crate::hsm) fn saw_audit_objects(&self, sighting: audit::Sighting) {
        audit::note(&self.audit_seen, sighting);
    }

    pub(in crate::hsm) fn audit_seen(&self) -> audit::Seen {
        self.audit_seen.clone()
    }

    /// Whether this session is logged in as the Security Officer.
    pub fn is_so(&self) -> Result<bool> {
        let info = self
            .session
            .get_session_info()
            .map_err(|e| Error::pkcs11("read session information", e))?;
        Ok(matches!(
            info.session_state(),
            cryptoki::session::SessionState::RwSecurityOfficer
        ))
    }
}
