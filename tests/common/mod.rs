//! The token fixture: a fresh SoftHSM2 token per test, in its own directory
//! (on /dev/shm when there is one) with its own SOFTHSM2_CONF, so tests run in
//! parallel without sharing state.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::Mutex;

use assert_cmd::Command;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::{Session, UserType};
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

/// The SoftHSM2 module on this machine; tests cannot run without one.
pub fn softhsm_module() -> String {
    SOFTHSM_PATHS
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("SoftHSM2 is not installed: run scripts/test.sh, which installs it")
        .to_string()
}

/// One SoftHSM2 token in a private directory.
pub struct SoftToken {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub module: String,
}

impl SoftToken {
    /// A directory and config with no token in it yet (slot 0 is free).
    pub fn empty() -> SoftToken {
        let base = if Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("hsmkey-test-")
                .tempdir_in("/dev/shm")
        } else {
            tempfile::Builder::new().prefix("hsmkey-test-").tempdir()
        }
        .expect("temp dir");
        let tokens = base.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = base.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        SoftToken {
            dir: base,
            conf,
            module: softhsm_module(),
        }
    }

    /// A fresh initialized token, labelled [`LABEL`], with the test PINs. Made
    /// with softhsm2-util, not hsmkey, so the fixture does not depend on the
    /// code under test.
    pub fn new() -> SoftToken {
        let t = SoftToken::empty();
        let status = StdCommand::new("softhsm2-util")
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
            status.status.success(),
            "softhsm2-util failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        t
    }

    /// `hsmkey` with this token's environment and the user PIN in HSMKEY_PIN.
    /// CI=true so that nothing ever prompts.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("hsmkey").unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SOFTHSM2_CONF", &self.conf)
            .env("HSMKEY_PIN", USER_PIN)
            .env("CI", "true")
            .arg("--module")
            .arg(&self.module);
        c
    }

    /// Run hsmkey with `--json`, expect success, parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().args(args).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "hsmkey {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// Like [`json`], with the SO PIN in HSMKEY_SO_PIN.
    pub fn json_with_so(&self, args: &[&str]) -> Value {
        let out = self
            .cmd()
            .env("HSMKEY_SO_PIN", SO_PIN)
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hsmkey {args:?} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
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
        (out.status.code().unwrap(), v)
    }

    /// Work on the token from the test process, through cryptoki directly: for
    /// putting known key values in (C_CreateObject with CKA_VALUE), which hsmkey
    /// itself never does. SoftHSM reads SOFTHSM2_CONF at C_Initialize, so
    /// in-process use is serialized across tests.
    pub fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        std::env::set_var("SOFTHSM2_CONF", &self.conf);
        let pkcs11 = Pkcs11::new(&self.module).unwrap();
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = pkcs11
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .next()
            .expect("an initialized token");
        let result = {
            let session = pkcs11.open_rw_session(slot).unwrap();
            session
                .login(
                    UserType::User,
                    Some(&SecretString::from(USER_PIN.to_string())),
                )
                .unwrap();
            f(&session)
        };
        pkcs11.finalize().unwrap();
        result
    }

    /// Put a secret key with a known value into the token (test code only).
    pub fn put_secret(&self, template: Vec<Attribute>) -> ObjectHandle {
        self.with_session(|s| s.create_object(&template).unwrap())
    }

    /// How many objects the user can see: tests assert it is unchanged after refusals.
    pub fn object_count(&self) -> usize {
        self.with_session(|s| s.find_objects(&[]).unwrap().len())
    }
}

/// The JSON error's code.
pub fn code(v: &Value) -> &str {
    v["error_code"].as_str().unwrap_or("")
}
