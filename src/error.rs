//! One error type for the whole library, with a stable code per variant.
//!
//! Codes are part of the contract (docs/ERRORS.md lists them): scripts match on
//! `error_code`, never on the message. Codes are grouped by the exit class they
//! map to, so a new variant picks its number from its group.

use std::collections::BTreeMap;

use thiserror::Error;

mod serve;
pub use serve::ServeError;

/// Result alias used across the library.
pub type Result<T> = std::result::Result<T, Error>;

/// What kind of failure this is, which decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// A bug or an unexpected local failure (I/O on our own files included).
    Internal,
    /// The command line is wrong or incomplete.
    Usage,
    /// The module, token or key named does not exist.
    NotFound,
    /// Login failed, the PIN is locked, or a PIN could not be obtained.
    Auth,
    /// The token cannot do what was asked (mechanism, hash, policy).
    NotCapable,
    /// An input file or value is malformed or was tampered with.
    BadInput,
    /// The token reported a failure that fits no other class.
    Token,
    /// The operation would overwrite or duplicate something that exists.
    Conflict,
    /// The operator interrupted the operation (Ctrl-C); everything was rolled back.
    Interrupted,
    /// The command failed and its clean-up could not remove everything it
    /// had created: the error lists what is left on the token.
    LeftBehind,
    /// An input file named on the command line (or in the configuration)
    /// is missing or cannot be read.
    InputFile,
}

impl ExitClass {
    /// The process exit code for this class. Stable: documented in docs/ERRORS.md.
    pub fn exit_code(self) -> i32 {
        match self {
            ExitClass::Internal => 1,
            ExitClass::Usage => 2,
            ExitClass::NotFound => 3,
            ExitClass::Auth => 4,
            ExitClass::NotCapable => 5,
            ExitClass::BadInput => 6,
            ExitClass::Token => 7,
            ExitClass::Conflict => 8,
            ExitClass::LeftBehind => 9,
            ExitClass::InputFile => 10,
            ExitClass::Interrupted => 130,
        }
    }
}

/// Every failure hsmkey reports. `#[non_exhaustive]` so new codes can be added.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    // HK10xx: selection and usage
    #[error("The PKCS#11 module could not be loaded from {path}: {reason}")]
    ModuleLoad { path: String, reason: String },
    #[error("No PKCS#11 module was given and none was found at the usual SoftHSM2 paths.")]
    NoModule { tried: Vec<String> },
    #[error("The token was not found.")]
    TokenNotFound { selector: String },
    #[error("The key is not found.")]
    KeyNotFound { key: String },
    #[error("More than one {what} matches {selector}.")]
    Ambiguous {
        what: &'static str,
        selector: String,
        candidates: Vec<String>,
    },
    #[error("The PKCS#11 URI is malformed: {reason}")]
    MalformedUri { uri: String, reason: String },
    #[error("{message}")]
    Usage { message: String },
    #[error("The configuration file {path} is not valid: {reason}")]
    Config {
        path: String,
        line: Option<usize>,
        reason: String,
    },
    #[error("There is no profile '{name}' in {path}.")]
    ProfileNotFound {
        name: String,
        path: String,
        known: Vec<String>,
    },

    // HK11xx: authentication
    #[error("The PIN is incorrect.")]
    PinIncorrect { user: &'static str },
    #[error("The PIN is locked.")]
    PinLocked { user: &'static str },
    #[error("No {user} PIN is available: {reason}")]
    PinUnavailable { user: &'static str, reason: String },
    #[error("A PIN on the command line is refused: {what}")]
    PinInArgv { what: String },
    #[error("This operation needs a Security Officer login: {what}")]
    SoLoginRequired { what: String },
    #[error("The user PIN of this token is not initialized.")]
    UserPinNotInitialized { token: String },
    #[error("It cannot be opened with this {what}: {reason}")]
    WrongUnwrapKey { what: String, reason: String },
    #[error("No backup password is available: {reason}")]
    PasswordUnavailable { reason: String },

    // HK12xx: capability
    #[error("The token cannot do {capability}.")]
    NotCapable {
        capability: String,
        detail: String,
        alternatives: String,
    },
    #[error("The key's policy does not allow this: {reason}")]
    PolicyRefused { key: String, reason: String },
    #[error("The target refuses this: {rule}")]
    TargetRule { rule: String },
    #[error("{} key(s) would be left out of the backup: {}", skipped.len(), skipped.join("; "))]
    Incomplete { skipped: Vec<String> },

    // HK13xx: bad input
    #[error("Invalid {what}: {reason}")]
    BadInput { what: String, reason: String },

    #[error("The backup is damaged or was altered: {reason}")]
    BundleCorrupt { reason: String },
    #[error("The backup uses a format this hsmkey does not read: {reason}")]
    UnsupportedFormat { reason: String },
    #[error("The password does not meet the backup password rule: {reason}")]
    BadPassword { reason: String },
    #[error("Expired: {what}")]
    Expired { what: String },
    #[error("The import token is not valid: {reason}")]
    ImportTokenInvalid { reason: String },
    #[error("The {what} {path} cannot be read: {source}")]
    InputFile {
        what: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("The audit log fails verification at line {line}: {reason}: {detail}")]
    AuditTampered {
        path: String,
        line: u64,
        reason: &'static str,
        detail: String,
    },

    // HK14xx: token failures not otherwise classified
    #[error("{function} failed with {rv}.")]
    Pkcs11 {
        function: String,
        rv: String,
        action: String,
    },
    #[error("{cause} Clean-up failed too: {} object(s) it had created are still on the token.", left.len())]
    LeftBehind {
        cause: Box<Error>,
        left: Vec<String>,
    },

    // HK15xx: conflicts
    #[error("{what} already exists.")]
    AlreadyExists { what: String },
    #[error("The import parameters for key id {key_id} were already used (or withdrawn).")]
    ImportTokenUsed { key_id: String },
    #[error("Another hsmkey run is changing this token ({holder}).")]
    Busy { token: String, holder: String },
    #[error("Another run created {what} at the same time; this run's copy was removed.")]
    ConcurrentCreate { what: String },

    // HK19xx: internal
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Internal error: {0}")]
    Internal(String),
    #[error("Interrupted: {what}")]
    Interrupted { what: String },
    #[error("The audit log {path} cannot take this operation's line: {reason}")]
    AuditUnavailable { path: String, reason: String },

    /// `hsmkey serve`: its configuration and its clients (src/error/serve.rs).
    #[error(transparent)]
    Serve(Box<ServeError>),
}

impl Error {
    /// Stable error code, `HK` + 4 digits.
    pub fn code(&self) -> &'static str {
        match self {
            Error::ModuleLoad { .. } => "HK1001",
            Error::NoModule { .. } => "HK1002",
            Error::TokenNotFound { .. } => "HK1003",
            Error::KeyNotFound { .. } => "HK1004",
            Error::Ambiguous { .. } => "HK1005",
            Error::MalformedUri { .. } => "HK1006",
            Error::Usage { .. } => "HK1007",
            Error::Config { .. } => "HK1008",
            Error::ProfileNotFound { .. } => "HK1009",
            Error::PinIncorrect { .. } => "HK1101",
            Error::PinLocked { .. } => "HK1102",
            Error::PinUnavailable { .. } => "HK1103",
            Error::PinInArgv { .. } => "HK1104",
            Error::SoLoginRequired { .. } => "HK1105",
            Error::UserPinNotInitialized { .. } => "HK1106",
            Error::WrongUnwrapKey { .. } => "HK1107",
            Error::PasswordUnavailable { .. } => "HK1108",
            Error::NotCapable { .. } => "HK1201",
            Error::PolicyRefused { .. } => "HK1202",
            Error::TargetRule { .. } => "HK1203",
            Error::Incomplete { .. } => "HK1204",
            Error::BadInput { .. } => "HK1301",
            Error::BundleCorrupt { .. } => "HK1302",
            Error::UnsupportedFormat { .. } => "HK1303",
            Error::BadPassword { .. } => "HK1304",
            Error::Expired { .. } => "HK1305",
            Error::ImportTokenInvalid { .. } => "HK1306",
            Error::InputFile { .. } => "HK1307",
            Error::AuditTampered { .. } => "HK1308",
            Error::Pkcs11 { .. } => "HK1401",
            Error::LeftBehind { .. } => "HK1403",
            Error::AlreadyExists { .. } => "HK1501",
            Error::ImportTokenUsed { .. } => "HK1502",
            Error::Busy { .. } => "HK1503",
            Error::ConcurrentCreate { .. } => "HK1504",
            Error::Io { .. } => "HK1901",
            Error::Internal(_) => "HK1902",
            Error::Interrupted { .. } => "HK1903",
            Error::AuditUnavailable { .. } => "HK1904",
            Error::Serve(e) => e.code(),
        }
    }

    /// Which exit code the process ends with.
    pub fn exit_class(&self) -> ExitClass {
        match self {
            Error::ModuleLoad { .. }
            | Error::NoModule { .. }
            | Error::TokenNotFound { .. }
            | Error::KeyNotFound { .. }
            | Error::ProfileNotFound { .. } => ExitClass::NotFound,
            Error::Ambiguous { .. }
            | Error::MalformedUri { .. }
            | Error::Usage { .. }
            | Error::Config { .. }
            | Error::PinInArgv { .. } => ExitClass::Usage,
            Error::PinIncorrect { .. }
            | Error::PinLocked { .. }
            | Error::PinUnavailable { .. }
            | Error::SoLoginRequired { .. }
            | Error::UserPinNotInitialized { .. }
            | Error::WrongUnwrapKey { .. }
            | Error::PasswordUnavailable { .. } => ExitClass::Auth,
            Error::NotCapable { .. }
            | Error::PolicyRefused { .. }
            | Error::TargetRule { .. }
            | Error::Incomplete { .. } => ExitClass::NotCapable,
            Error::BadInput { .. }
            | Error::BundleCorrupt { .. }
            | Error::UnsupportedFormat { .. }
            | Error::BadPassword { .. }
            | Error::Expired { .. }
            | Error::ImportTokenInvalid { .. }
            | Error::AuditTampered { .. } => ExitClass::BadInput,
            Error::Pkcs11 { .. } => ExitClass::Token,
            Error::LeftBehind { .. } => ExitClass::LeftBehind,
            Error::AlreadyExists { .. }
            | Error::ImportTokenUsed { .. }
            | Error::Busy { .. }
            | Error::ConcurrentCreate { .. } => ExitClass::Conflict,
            Error::InputFile { .. } => ExitClass::InputFile,
            Error::Io { .. } | Error::Internal(_) | Error::AuditUnavailable { .. } => {
                ExitClass::Internal
            }
            Error::Interrupted { .. } => ExitClass::Interrupted,
            Error::Serve(e) => e.exit_class(),
        }
    }

    /// Machine-readable details, for `--json` and for the human hint.
    pub fn context(&self) -> BTreeMap<&'static str, String> {
        let mut ctx = BTreeMap::new();
        match self {
            Error::ModuleLoad { path, reason } => {
                ctx.insert("module", path.clone());
                ctx.insert("reason", reason.clone());
            }
            Error::NoModule { tried } => {
                ctx.insert("tried", tried.join(", "));
            }
            Error::TokenNotFound { selector } => {
                ctx.insert("token", selector.clone());
            }
            Error::KeyNotFound { key } => {
                ctx.insert("key", key.clone());
            }
            Error::Ambiguous {
                selector,
                candidates,
                ..
            } => {
                ctx.insert("selector", selector.clone());
                ctx.insert("candidates", candidates.join(", "));
            }
            Error::MalformedUri { uri, reason } => {
                ctx.insert("uri", uri.clone());
                ctx.insert("reason", reason.clone());
            }
            Error::Usage { .. } => {}
            Error::Config { path, line, .. } => {
                ctx.insert("path", path.clone());
                if let Some(line) = line {
                    ctx.insert("line", line.to_string());
                }
            }
            Error::ProfileNotFound { name, path, known } => {
                ctx.insert("profile", name.clone());
                ctx.insert("path", path.clone());
                ctx.insert("profiles", known.join(", "));
            }
            Error::PinIncorrect { user }
            | Error::PinLocked { user }
            | Error::PinUnavailable { user, .. } => {
                ctx.insert("user", (*user).to_string());
            }
            Error::PinInArgv { .. } => {}
            Error::SoLoginRequired { what } => {
                ctx.insert("operation", what.clone());
            }
            Error::UserPinNotInitialized { token } => {
                ctx.insert("token", token.clone());
            }
            Error::WrongUnwrapKey { what, .. } => {
                ctx.insert("key", what.clone());
            }
            Error::BundleCorrupt { .. }
            | Error::UnsupportedFormat { .. }
            | Error::BadPassword { .. }
            | Error::TargetRule { .. }
            | Error::Expired { .. }
            | Error::ImportTokenInvalid { .. }
            | Error::PasswordUnavailable { .. } => {}
            Error::InputFile { what, path, .. } => {
                ctx.insert("input", what.clone());
                ctx.insert("path", path.clone());
            }
            Error::ImportTokenUsed { key_id } => {
                ctx.insert("key_id", key_id.clone());
            }
            Error::Interrupted { .. } => {}
            Error::NotCapable {
                capability, detail, ..
            } => {
                ctx.insert("capability", capability.clone());
                if !detail.is_empty() {
                    ctx.insert("detail", detail.clone());
                }
            }
            Error::PolicyRefused { key, .. } => {
                ctx.insert("key", key.clone());
            }
            Error::BadInput { what, .. } => {
                ctx.insert("input", what.clone());
            }
            Error::Pkcs11 {
                function,
                rv,
                action,
            } => {
                ctx.insert("function", function.clone());
                ctx.insert("rv", rv.clone());
                ctx.insert("action", action.clone());
            }
            Error::AlreadyExists { what } | Error::ConcurrentCreate { what } => {
                ctx.insert("object", what.clone());
            }
            Error::Busy { token, holder } => {
                ctx.insert("token", token.clone());
                ctx.insert("holder", holder.clone());
            }
            Error::Incomplete { skipped } => {
                ctx.insert("skipped", skipped.join("; "));
            }
            Error::LeftBehind { cause, left } => {
                ctx = cause.context();
                ctx.insert("cause_code", cause.code().to_string());
                ctx.insert("left", left.join("; "));
            }
            Error::Io { path, .. } | Error::AuditUnavailable { path, .. } => {
                ctx.insert("path", path.clone());
            }
            Error::AuditTampered {
                path, line, reason, ..
            } => {
                ctx.insert("path", path.clone());
                ctx.insert("line", line.to_string());
                ctx.insert("reason", (*reason).to_string());
            }
            Error::Internal(_) => {}
            Error::Serve(e) => e.context(&mut ctx),
        }
        ctx
    }

    /// What the operator should do next, in one sentence.
    pub fn hint(&self) -> String {
        match self {
            Error::ModuleLoad { .. } => {
                "Check the path given with --module or HSMKEY_MODULE, and that the library matches this machine's architecture.".into()
            }
            Error::NoModule { .. } => {
                "Install SoftHSM2 (apt-get install softhsm2) or name your HSM's PKCS#11 library with --module PATH or HSMKEY_MODULE.".into()
            }
            Error::TokenNotFound { .. } => {
                "Run `hsmkey token list` to see the tokens, then pass --token LABEL or a pkcs11: URI.".into()
            }
            Error::KeyNotFound { .. } => {
                "Run `hsmkey key list` to see the keys on this token; name a key by label or pkcs11: URI.".into()
            }
            Error::Ambiguous { .. } => {
                "Be more specific: for tokens a pkcs11: URI with token= and serial= (or slot-id=), for keys NAME@vN or a URI with id= and type=.".into()
            }
            Error::MalformedUri { .. } => {
                "Write the URI as in RFC 7512, e.g. pkcs11:token=prod;object=kek;type=secret-key (percent-encode ; / ? % and spaces).".into()
            }
            Error::Usage { .. } => "Run the command with --help to see its options.".into(),
            Error::Config { .. } => {
                "Fix the line named above: a profile holds only module, module_args, token, pin_source, so_pin_source, sessions and wait (README.md, Profiles); `hsmkey profile list` checks the file.".into()
            }
            Error::ProfileNotFound { .. } => {
                "Pass one of the profiles listed above to --profile (or HSMKEY_PROFILE), or add a [profiles.NAME] table to the file.".into()
            }
            Error::PinIncorrect { .. } => {
                "Check the PIN source; hsmkey does not retry, so the token's retry counter went down by one only.".into()
            }
            Error::PinLocked { user } => {
                if *user == "SO" {
                    "The SO PIN is locked: only the HSM vendor's recovery procedure (or re-initializing a soft token) unlocks it.".into()
                } else {
                    "The Security Officer must unlock or reset the user PIN (C_InitPIN) with the HSM vendor's tools.".into()
                }
            }
            Error::PinUnavailable { user, .. } => {
                if *user == "SO" {
                    "Give the SO PIN with --so-pin-source env:VAR, file:PATH or empty (or set HSMKEY_SO_PIN); a prompt is only shown on a terminal.".into()
                } else {
                    "Give the PIN with --pin-source env:VAR or file:PATH (or set HSMKEY_PIN); a prompt is only shown on a terminal.".into()
                }
            }
            Error::PinInArgv { .. } => {
                "Use --pin-source env:VAR or file:PATH; a PIN in argv is visible to every user through ps. Pass --insecure-pin-in-argv to accept that risk.".into()
            }
            Error::SoLoginRequired { .. } => {
                "Give the Security Officer PIN with --so-pin-source env:VAR or file:PATH.".into()
            }
            Error::UserPinNotInitialized { .. } => {
                "The Security Officer must set the user PIN (C_InitPIN, e.g. pkcs11-tool --init-pin --login --login-type so); `hsmkey token init` does both PINs for a new token.".into()
            }
            Error::NotCapable { alternatives, .. } => {
                if alternatives.is_empty() {
                    "Run `hsmkey token mechanisms` to see what this token can do.".into()
                } else {
                    alternatives.clone()
                }
            }
            Error::PolicyRefused { .. } => {
                "The key's own policy decides: `none` keys never leave, `trusted` keys leave only under a KEK the SO marked CKA_TRUSTED (never to a password, recipient or cloud). A key's policy cannot be loosened; a new key can be made with another.".into()
            }
            Error::BadInput { .. } => "Check the value or file named above.".into(),
            Error::Pkcs11 { .. } => {
                "Run again with -v for a trace; if the token reports a device error, check the HSM's own logs.".into()
            }
            Error::AlreadyExists { .. } => {
                "Choose another label or id; for an output file pass --force; for a restore see --on-conflict skip.".into()
            }
            Error::Incomplete { .. } => {
                "Nothing was written. Name the keys to back up, fix what is listed (docs/FORMAT.md, skip reasons), or pass --allow-skips to accept a bundle without them.".into()
            }
            Error::LeftBehind { .. } => {
                "The objects in `left` (label, id, class, handle) were created by this run and could not be destroyed: once the token answers again, remove them with `hsmkey key destroy 'pkcs11:id=...' --yes`.".into()
            }
            Error::Busy { .. } => {
                "Wait for the other run to finish, or pass --wait SECS to wait for it (docs/SECURITY.md, runs do not collide).".into()
            }
            Error::ConcurrentCreate { .. } => {
                "Two runs on different hosts created the same key; this one removed its copy. Check `hsmkey key list`, then run again if the key is still wanted.".into()
            }
            Error::Io { .. } => "Check the path, its permissions and the free space.".into(),
            Error::AuditUnavailable { .. } => {
                "Nothing was done if this came before the operation (docs/AUDIT.md): make the log writable (its folder, its permissions, free space) or give another with --audit-log; --no-audit runs without a record.".into()
            }
            Error::AuditTampered { .. } => {
                "The log is not as hsmkey wrote it from `line` on (docs/AUDIT.md, what each reason means): keep this copy as evidence and compare it with forwarded copies (syslog, SIEM).".into()
            }
            Error::Internal(_) => "This is a bug in hsmkey; please report it with the output of -v.".into(),
            Error::Serve(e) => e.hint(),
            Error::Interrupted { .. } => "Nothing was kept: run the command again when ready.".into(),
            Error::TargetRule { .. } => {
                "Pick an algorithm, wrapping key or key the target accepts (docs/BYOK.md lists them per cloud).".into()
            }
            Error::Expired { .. } => "Request new import parameters from the KMS, then run the command again.".into(),
            Error::ImportTokenInvalid { .. } => {
                "Use the import token exactly as `hsmkey import-params` wrote it, on the token that wrote it, with the material made for that key id.".into()
            }
            Error::ImportTokenUsed { .. } => {
                "Import parameters are single-use: run `hsmkey import-params` for new ones and wrap the key again.".into()
            }
            Error::PasswordUnavailable { .. } => {
                "Give the password with --password-file FILE (`-` reads it from standard input); --password-prompt asks on a terminal only, never in CI.".into()
            }
            Error::InputFile { .. } => {
                "Check that the file exists and that this user may read it; `-` reads standard input instead.".into()
            }
            Error::WrongUnwrapKey { .. } => {
                "Use the KEK, password or recipient key the backup was made for (`hsmkey verify` shows the header); if it is the right one, the key fields of the file were altered.".into()
            }
            Error::BundleCorrupt { .. } => {
                "Nothing was created. Use another copy of the backup; a bundle is accepted only if every byte is as written.".into()
            }
            Error::UnsupportedFormat { .. } => {
                "Use the hsmkey version that wrote the backup (its header names it), or a newer one.".into()
            }
            Error::BadPassword { .. } => {
                "Choose a stronger password: by default (--password-policy strength) a passphrase of several uncommon words, spaces allowed; with --password-policy vsp, 6 to 255 letters, digits and !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ (no spaces).".into()
            }
        }
    }

    /// This error, or — when clean-up left objects behind — the error that
    /// says so and lists them (exit 9, HK1403).
    pub fn with_leftovers(self, mut left: Vec<String>) -> Error {
        match self {
            _ if left.is_empty() => self,
            // A step's own clean-up already left objects: one list.
            Error::LeftBehind {
                cause,
                left: mut earlier,
            } => {
                earlier.append(&mut left);
                Error::LeftBehind {
                    cause,
                    left: earlier,
                }
            }
            other => Error::LeftBehind {
                cause: Box::new(other),
                left,
            },
        }
    }

    /// A token failure from cryptoki, classified: PIN errors become auth errors,
    /// unsupported mechanisms become capability errors; the rest keeps the
    /// PKCS#11 function and CKR_ name as context.
    pub fn pkcs11(action: &str, err: cryptoki::error::Error) -> Error {
        use cryptoki::error::{Error as CkError, RvError};
        match err {
            CkError::Pkcs11(rv, function) => match rv {
                RvError::PinIncorrect => Error::PinIncorrect { user: "user" },
                RvError::PinLocked => Error::PinLocked { user: "user" },
                RvError::MechanismInvalid | RvError::MechanismParamInvalid => Error::NotCapable {
                    capability: action.to_string(),
                    detail: format!("{function:?} returned {}", ckr_name(rv)),
                    alternatives: String::new(),
                },
                _ => Error::Pkcs11 {
                    function: format!("C_{function:?}"),
                    rv: ckr_name(rv),
                    action: action.to_string(),
                },
            },
            other => Error::Internal(format!("{action}: {other}")),
        }
    }
}

/// A definitive "not supported" answer: the mechanism or its parameters are
/// not offered. Only these make the capability probe call something absent;
/// any other failure is a token error (docs/TOKENS.md).
pub fn rv_is_unsupported(rv: cryptoki::error::RvError) -> bool {
    use cryptoki::error::RvError;
    matches!(
        rv,
        RvError::MechanismInvalid | RvError::MechanismParamInvalid
    )
}

/// Answers by which a token says that a wrapped key or encrypted value does
/// not open under this key: a wrong key or altered bytes, not a failure of
/// the token. CKR_GENERAL_ERROR is among them because SoftHSM 2.6.1 answers a
/// failed RFC 3394 integrity check with it (docs/TOKENS.md).
pub fn rv_is_bad_ciphertext(rv: cryptoki::error::RvError) -> bool {
    use cryptoki::error::RvError;
    matches!(
        rv,
        RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::GeneralError
    )
}

/// The token error for a failed call, keeping function and CKR_ name.
pub fn token_failure(function: &str, rv: cryptoki::error::RvError, action: &str) -> Error {
    Error::Pkcs11 {
        function: function.to_string(),
        rv: ckr_name(rv),
        action: action.to_string(),
    }
}

/// The CKR_ name of a PKCS#11 return value, as the spec spells it
/// (`PinIncorrect` -> `CKR_PIN_INCORRECT`), so operators can search vendor docs.
pub fn ckr_name(rv: cryptoki::error::RvError) -> String {
    use cryptoki::error::RvError;
    match rv {
        RvError::UnknownErrorCode(code) | RvError::VendorDefined(code) => {
            format!("CKR_0x{code:08X}")
        }
        other => {
            let camel = format!("{other:?}");
            let mut name = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

impl From<ServeError> for Error {
    fn from(e: ServeError) -> Error {
        Error::Serve(Box::new(e))
    }
}

impl From<crate::formats::bundle::BundleError> for Error {
    fn from(e: crate::formats::bundle::BundleError) -> Error {
        use crate::formats::bundle::BundleError;
        match e {
            BundleError::UnsupportedVersion { .. } => Error::UnsupportedFormat {
                reason: e.to_string(),
            },
            other => Error::BundleCorrupt {
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests;
