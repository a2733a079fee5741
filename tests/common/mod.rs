//! The token fixture: a fresh token per test, in its own directory (on
//! /dev/shm when there is one), so tests run in parallel without sharing state.
//!
//! The kind of token comes from HSMKEY_TEST_TOKEN: `softhsm` (default),
//! `kryoptic` (module from HSMKEY_TEST_KRYOPTIC, default
//! target/kryoptic/libkryoptic_pkcs11.so, built by scripts/install-kryoptic.sh)
//! or `nss` (libsoftokn3.so from libnss3). Tokens are initialized by test code
//! (softhsm2-util, or cryptoki directly), never by hsmkey, so the fixture does
//! not depend on the code under test.
#![allow(dead_code)]

mod process;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::Mutex;

use assert_cmd::Command;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use serde_json::Value;

pub const USER_PIN: &str = "1234";
pub const SO_PIN: &str = "5678";
pub const LABEL: &str = "hsmkey-test";

const SOFTHSM_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];
const NSS_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libsoftokn3.so",
    "/usr/lib/aarch64-linux-gnu/libsoftokn3.so",
    "/usr/lib64/libsoftokn3.so",
];
/// NSS softokn ignores the label given to C_InitToken.
pub const NSS_LABEL: &str = "NSS Certificate DB";

/// Which soft token the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SoftHsm,
    Kryoptic,
    Nss,
}

/// The kind this run tests, from HSMKEY_TEST_TOKEN.
pub fn kind() -> Kind {
    match std::env::var("HSMKEY_TEST_TOKEN").as_deref() {
        Err(_) | Ok("") | Ok("softhsm") => Kind::SoftHsm,
        Ok("kryoptic") => Kind::Kryoptic,
        Ok("nss") => Kind::Nss,
        Ok(other) => panic!("HSMKEY_TEST_TOKEN={other}: expected softhsm, kryoptic or nss"),
    }
}

fn first_existing(paths: &[&str], what: &str) -> String {
    paths
        .iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("{what} is not installed: run scripts/test.sh, which installs it")
        })
        .to_string()
}

/// The SoftHSM2 module on this machine.
pub fn softhsm_module() -> String {
    first_existing(SOFTHSM_PATHS, "SoftHSM2")
}

fn kryoptic_module() -> String {
    let path = std::env::var("HSMKEY_TEST_KRYOPTIC").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/kryoptic/libkryoptic_pkcs11.so"
        )
        .to_string()
    });
    assert!(
        Path::new(&path).exists(),
        "kryoptic module {path} missing: run scripts/install-kryoptic.sh"
    );
    path
}

/// One token in a private directory.
pub struct TestToken {
    pub dir: tempfile::TempDir,
    pub kind: Kind,
    pub module: String,
    /// C_Initialize's pReserved (NSS).
    pub module_args: Option<String>,
    /// Environment the module reads (SOFTHSM2_CONF, KRYOPTIC_CONF).
    pub env: Vec<(String, String)>,
    /// The token's label once initialized.
    pub label: String,
    /// SoftHSM's config file (for pkcs11-tool).
    pub conf: PathBuf,
}

static IN_PROCESS: Mutex<()> = Mutex::new(());

impl TestToken {
    /// A directory and config with no initialized token yet.
    pub fn empty() -> TestToken {
        TestToken::empty_of(kind())
    }

    /// A fresh initialized token of the kind this run tests.
    pub fn new() -> TestToken {
        TestToken::new_of(kind())
    }

    /// [`TestToken::empty`] of a given kind (cross-token tests).
    pub fn empty_of(kind: Kind) -> TestToken {
        let base = if Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("hsmkey-test-")
                .tempdir_in("/dev/shm")
        } else {
            tempfile::Builder::new().prefix("hsmkey-test-").tempdir()
        }
        .expect("temp dir");
        let conf = base.path().join("softhsm2.conf");
        let (module, module_args, env, label) = match kind {
            Kind::SoftHsm => {
                let tokens = base.path().join("tokens");
                std::fs::create_dir(&tokens).unwrap();
                std::fs::write(
                    &conf,
                    format!(
                        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                        tokens.display()
                    ),
                )
                .unwrap();
                (
                    softhsm_module(),
                    None,
                    vec![("SOFTHSM2_CONF".to_string(), conf.display().to_string())],
                    LABEL.to_string(),
                )
            }
            Kind::Kryoptic => (
                kryoptic_module(),
                None,
                vec![(
                    "KRYOPTIC_CONF".to_string(),
                    base.path().join("token.sql").display().to_string(),
                )],
                LABEL.to_string(),
            ),
            Kind::Nss => (
                first_existing(NSS_PATHS, "NSS softokn (libnss3)"),
                Some(format!(
                    "configdir='sql:{}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=",
                    base.path().display()
                )),
                vec![],
                NSS_LABEL.to_string(),
            ),
        };
        TestToken {
            dir: base,
            kind,
            module,
            module_args,
            env,
            label,
            conf,
        }
    }

    /// A fresh initialized token of a given kind, with the test PINs.
    pub fn new_of(kind: Kind) -> TestToken {
        let t = TestToken::empty_of(kind);
        match t.kind {
            Kind::SoftHsm => {
                let out = StdCommand::new("softhsm2-util")
                    .env("SOFTHSM2_CONF", &t.conf)
                    .args([
                        "--init-token",
                        "--free",
                        "--label",
                        LABEL,
                        "--so-pin",
                        SO_PIN,
                        "--pin",
                        USER_PIN,
                    ])
                    .output()
                    .expect("softhsm2-util runs");
                assert!(
                    out.status.success(),
                    "softhsm2-util failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Kind::Kryoptic => t.with_module(|p| {
                let slot = p.get_slots_with_token().unwrap()[0];
                let so = SecretString::from(SO_PIN.to_string());
                p.init_token(slot, &so, LABEL).unwrap();
                let s = p.open_rw_session(slot).unwrap();
                s.login(UserType::So, Some(&so)).unwrap();
                s.init_pin(&SecretString::from(USER_PIN.to_string()))
                    .unwrap();
            }),
            Kind::Nss => t.with_module(|p| {
                // A new NSS database has an SO with an empty PIN (docs/TOKENS.md).
                let slot = nss_db_slot(p);
                let so = SecretString::from(String::new());
                p.init_token(slot, &so, LABEL).unwrap();
                let s = p.open_rw_session(slot).unwrap();
                s.login(UserType::So, Some(&so)).unwrap();
                s.init_pin(&SecretString::from(USER_PIN.to_string()))
                    .unwrap();
            }),
        }
        t
    }

    /// The token selector hsmkey needs: NSS has two initialized slots.
    pub fn token_env(&self) -> Option<&str> {
        match self.kind {
            Kind::Nss => Some(NSS_LABEL),
            _ => None,
        }
    }

    /// `hsmkey` with this token's environment and the user PIN in HSMKEY_PIN.
    /// CI=true so that nothing ever prompts.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("hsmkey").unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HSMKEY_PIN", USER_PIN)
            .env("CI", "true")
            .env("HSMKEY_MODULE", &self.module);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(args) = &self.module_args {
            c.env("HSMKEY_MODULE_ARGS", args);
        }
        if let Some(token) = self.token_env() {
            c.env("HSMKEY_TOKEN", token);
        }
        // Each test's audit log is its own, never ~/.local/state.
        c.env("HSMKEY_AUDIT_LOG", self.audit_log());
        c
    }

    /// The audit log every `hsmkey` run of this token writes to.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// The `--so-pin-source` that works on this kind (NSS: the empty PIN).
    pub fn so_pin_source(&self) -> &'static str {
        match self.kind {
            Kind::Nss => "empty",
            _ => "env:SOPIN",
        }
    }

    /// Run hsmkey with `--json`, expect success, parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        self.json_ok(self.cmd().args(args))
    }

    /// `key generate --label LABEL --type TYPE --backup-policy POLICY`,
    /// expected to succeed.
    pub fn generate(&self, label: &str, key_type: &str, policy: &str) -> Value {
        self.json(&[
            "key",
            "generate",
            "--label",
            label,
            "--type",
            key_type,
            "--backup-policy",
            policy,
        ])
    }

    /// Like [`json`], with the SO PIN given.
    pub fn json_with_so(&self, args: &[&str]) -> Value {
        let out = self
            .cmd()
            .env("SOPIN", SO_PIN)
            .args(["--so-pin-source", self.so_pin_source()])
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hsmkey {args:?} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        documented(&out.stdout)
    }

    /// Run hsmkey with `--json`, expect failure; return (exit code, error JSON).
    pub fn json_err(&self, cmd: &mut Command) -> (i32, Value) {
        let out = cmd.arg("--json").output().unwrap();
        assert!(!out.status.success(), "expected failure, got success");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "error JSON on stdout, got: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(v["schema"], "hsmkey.error.v1", "{v}");
        check_schema(&v);
        (out.status.code().unwrap(), v)
    }

    /// Load and initialize the module in the test process. Soft tokens read
    /// their configuration from the environment at C_Initialize, so in-process
    /// use is serialized across the tests of this binary.
    pub fn with_module<R>(&self, f: impl FnOnce(&Pkcs11) -> R) -> R {
        let _guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in &self.env {
            std::env::set_var(k, v);
        }
        let pkcs11 = Pkcs11::new(&self.module).unwrap();
        let flags = CInitializeFlags::OS_LOCKING_OK;
        match &self.module_args {
            None => pkcs11.initialize(CInitializeArgs::new(flags)).unwrap(),
            Some(args) => {
                let c_args = std::ffi::CString::new(args.as_str()).unwrap();
                let ptr = std::ptr::NonNull::new(c_args.as_ptr() as *mut std::ffi::c_void).unwrap();
                // SAFETY: the string outlives C_Initialize, which copies what it needs.
                let init = unsafe { CInitializeArgs::new_with_reserved(flags, ptr) };
                pkcs11.initialize(init).unwrap();
            }
        }
        let result = f(&pkcs11);
        pkcs11.finalize().unwrap();
        result
    }

    fn user_slot(&self, p: &Pkcs11) -> Slot {
        match self.kind {
            Kind::Nss => nss_db_slot(p),
            _ => p
                .get_slots_with_initialized_token()
                .unwrap()
                .into_iter()
                .next()
                .expect("an initialized token"),
        }
    }

    /// A logged-in user session in the test process: for putting known key
    /// values in (C_CreateObject with CKA_VALUE), which hsmkey never does.
    pub fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        self.with_module(|p| {
            let slot = self.user_slot(p);
            let session = p.open_rw_session(slot).unwrap();
            session
                .login(
                    UserType::User,
                    Some(&SecretString::from(USER_PIN.to_string())),
                )
                .unwrap();
            f(&session)
        })
    }

    /// Put a key with a known value into the token (test code only).
    pub fn put_secret(&self, template: Vec<Attribute>) -> ObjectHandle {
        self.with_session(|s| s.create_object(&template).unwrap())
    }

    /// How many objects the user can see: tests assert it is unchanged after refusals.
    /// Only keys, certificates and data objects count: kryoptic also lists its
    /// mechanism and profile objects.
    pub fn object_count(&self) -> usize {
        use cryptoki::object::ObjectClass;
        self.with_session(|s| {
            [
                ObjectClass::SECRET_KEY,
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::CERTIFICATE,
                ObjectClass::DATA,
            ]
            .into_iter()
            .map(|c| {
                s.find_objects(&[Attribute::Class(c)])
                    .unwrap()
                    .into_iter()
                    .filter(|h| !is_audit_object(s, *h))
                    .count()
            })
            .sum()
        })
    }

    /// Whether pkcs11-tool can reach this token (it cannot pass NSS's init string).
    pub fn pkcs11_tool_works(&self) -> bool {
        self.kind != Kind::Nss
    }

    /// `pkcs11-tool` pointed at this token.
    pub fn pkcs11_tool(&self) -> StdCommand {
        let mut c = StdCommand::new("pkcs11-tool");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(["--module", &self.module, "--token-label", &self.label]);
        c
    }
}

fn nss_db_slot(p: &Pkcs11) -> Slot {
    p.get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| p.get_token_info(*s).unwrap().label().trim_end() == NSS_LABEL)
        .expect("the NSS Certificate DB slot")
}

/// The JSON error's code.
pub fn code(v: &Value) -> &str {
    v["error_code"].as_str().unwrap_or("")
}

/// The PKCS#11 pass-through (tools/p11shim): HSMKEY_TEST_SHIM if set (what
/// scripts/test.sh builds), else built here once, in its own target directory.
pub fn shim_module() -> PathBuf {
    static SHIM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SHIM.get_or_init(|| {
        if let Ok(p) = std::env::var("HSMKEY_TEST_SHIM") {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "HSMKEY_TEST_SHIM={} does not exist",
                p.display()
            );
            return p;
        }
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/shim");
        let status = StdCommand::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "hsmkey-p11shim", "--target-dir"])
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo to build the PKCS#11 pass-through");
        assert!(status.success(), "building tools/p11shim failed");
        target.join("debug/libhsmkey_p11shim.so")
    })
    .clone()
}

impl TestToken {
    /// `hsmkey` on this token through the pass-through module, with its
    /// settings (HSMKEY_SHIM_DELAY_US, HSMKEY_SHIM_FAULT, ...).
    pub fn shim_cmd(&self, settings: &[(&str, &str)]) -> Command {
        let mut c = self.cmd();
        c.env("HSMKEY_MODULE", shim_module())
            .env("HSMKEY_SHIM_MODULE", &self.module);
        for (k, v) in settings {
            c.env(k, v);
        }
        c
    }
}

impl TestToken {
    /// Run a prepared hsmkey command with `--json`, expect success, parse stdout.
    pub fn json_ok(&self, cmd: &mut Command) -> Value {
        let out = cmd.arg("--json").output().unwrap();
        let args: Vec<_> = cmd.get_args().collect();
        assert!(
            out.status.success(),
            "hsmkey {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        documented(&out.stdout)
    }
}

/// Parse a `--json` document and check it against its published schema.
pub fn documented(stdout: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON document on stdout ({e}), got: {}",
            String::from_utf8_lossy(stdout)
        )
    });
    check_schema(&v);
    v
}

/// Check a `--json` document against the schema its `schema` member names,
/// docs/schemas/NAME.json, held strictly: every member printed must be in
/// the schema (the published files let readers ignore members they do not
/// know; hsmkey's own output must not have undocumented ones).
pub fn check_schema(v: &Value) {
    let name = v["schema"]
        .as_str()
        .unwrap_or_else(|| panic!("a --json document names its schema: {v}"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schemas")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("schema {name}: cannot read {}: {e}", path.display()));
    let mut schema: Value = serde_json::from_str(&text).expect("a schema is JSON");
    no_undocumented_members(&mut schema);
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{}: not a usable schema: {e}", path.display()));
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "output does not match docs/schemas/{name}.json:\n  {}\noutput: {v}",
        errors.join("\n  ")
    );
}

/// `additionalProperties: false` on every object schema that lists its
/// properties and says nothing about others.
fn no_undocumented_members(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for child in map.values_mut() {
                no_undocumented_members(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(no_undocumented_members),
        _ => {}
    }
}

/// One object as the fault and concurrency tests compare them: class, key
/// type, label, id (hex) and CKA_TOKEN. Label-less objects have label `None`.
pub type ObjectRow = (String, String, Option<String>, String, bool);

impl TestToken {
    /// Every key, certificate and data object a logged-in user session sees
    /// (a user session sees public and private objects alike), sorted: a
    /// multiset, so that a duplicate shows as two equal rows.
    pub fn object_set(&self) -> Vec<ObjectRow> {
        use cryptoki::object::{AttributeType, ObjectClass};
        let classes = [
            ObjectClass::SECRET_KEY,
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
            ObjectClass::CERTIFICATE,
            ObjectClass::DATA,
        ];
        let mut rows = self.with_session(|s| {
            let mut rows = Vec::new();
            for class in classes {
                for h in s.find_objects(&[Attribute::Class(class)]).unwrap() {
                    let attrs = s
                        .get_attributes(
                            h,
                            &[
                                AttributeType::KeyType,
                                AttributeType::Label,
                                AttributeType::Id,
                                AttributeType::Token,
                            ],
                        )
                        .unwrap();
                    let (mut kt, mut label, mut id, mut token) =
                        (String::new(), None, String::new(), false);
                    for a in attrs {
                        match a {
                            Attribute::KeyType(k) => kt = format!("{k}"),
                            Attribute::Label(l) if !l.is_empty() => {
                                label = Some(String::from_utf8_lossy(&l).into_owned())
                            }
                            Attribute::Id(i) => id = hex::encode(i),
                            Attribute::Token(t) => token = t,
                            _ => {}
                        }
                    }
                    // The audit trail's key and heads come with the first
                    // audited command; they are not the user's objects.
                    if label
                        .as_deref()
                        .is_some_and(|l| l.starts_with(AUDIT_PREFIX))
                    {
                        continue;
                    }
                    rows.push((format!("{class}"), kt, label, id, token));
                }
            }
            rows
        });
        rows.sort();
        rows
    }
}

/// The value of the KEK that both tokens of a KEK test hold (HSM cloning or
/// a key ceremony gives that; test code loads it directly).
pub const KEK_VALUE: [u8; 32] = [0x4b; 32];

impl TestToken {
    /// An AES KEK with a known value, labelled (and id'd) `label`:
    /// sensitive, not extractable, may wrap, unwrap and encrypt (for its KCV).
    pub fn put_kek(&self, label: &str, value: &[u8]) {
        self.put_secret(vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(label.as_bytes().to_vec()),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Encrypt(true),
            Attribute::Value(value.to_vec()),
        ]);
    }
}

/// Labels of the audit trail's objects (`hsmkey-audit-mac`, `hsmkey-audit-head`).
pub const AUDIT_PREFIX: &str = "hsmkey-audit-";

fn is_audit_object(s: &Session, h: ObjectHandle) -> bool {
    s.get_attributes(h, &[cryptoki::object::AttributeType::Label])
        .unwrap_or_default()
        .into_iter()
        .any(|a| matches!(a, Attribute::Label(l) if l.starts_with(AUDIT_PREFIX.as_bytes())))
}

/// A path as the &str argv takes (test paths are UTF-8).
pub fn path_str(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// The sorted labels of the objects in `v[field]` (a report's entries,
/// skipped or left_out).
pub fn labels(v: &Value, field: &str) -> Vec<String> {
    let mut l: Vec<String> = v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap().to_string())
        .collect();
    l.sort();
    l
}
