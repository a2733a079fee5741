//! hsmkey as a plain child process on a test token: for tests that start
//! several runs at once, or signal or kill one while it works.

use std::process::Command as StdCommand;

use super::{shim_module, TestToken, USER_PIN};

impl TestToken {
    /// hsmkey as a plain process (to start several at once, signal or kill
    /// one) with `--json`, on this token, through the pass-through when
    /// `shim` has settings; stdout and stderr piped.
    pub fn process(&self, shim: Option<&[(&str, &str)]>, args: &[&str]) -> StdCommand {
        let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("hsmkey"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HSMKEY_PIN", USER_PIN)
            .env("CI", "true");
        c.env("HSMKEY_AUDIT_LOG", self.audit_log());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(args) = &self.module_args {
            c.env("HSMKEY_MODULE_ARGS", args);
        }
        if let Some(token) = self.token_env() {
            c.env("HSMKEY_TOKEN", token);
        }
        match shim {
            Some(settings) => {
                c.env("HSMKEY_MODULE", shim_module())
                    .env("HSMKEY_SHIM_MODULE", &self.module);
                for (k, v) in settings {
                    c.env(k, v);
                }
            }
            None => {
                c.env("HSMKEY_MODULE", &self.module);
            }
        }
        c.args(args)
            .arg("--json")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    }
}
