//! `hsmkey serve` as tests run it: a configuration written beside a test
//! token, the server started on a free loopback port (read from its first
//! line of output), an HTTP client that returns every status as an answer,
//! and SIGTERM to stop it.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{TestToken, USER_PIN};

/// A client of the test configuration: its name, API key and capabilities.
pub struct TestClient {
    pub name: &'static str,
    pub key: &'static str,
    pub caps: &'static [&'static str],
}

/// The clients every test server knows.
pub const CLIENTS: &[TestClient] = &[
    TestClient {
        name: "admin",
        key: "admin-api-key-0001",
        caps: &[
            "CapExportKeyReader",
            "CapKeyBackup",
            "CapKeyRestore",
            "CapImport",
            "CapKeyReader",
            "CapKeyAdmin",
        ],
    },
    TestClient {
        name: "reader",
        key: "reader-api-key-0002",
        caps: &["CapKeyReader"],
    },
    TestClient {
        name: "exporter",
        key: "exporter-api-key-0003",
        caps: &["CapExportKeyReader"],
    },
    TestClient {
        name: "vault",
        key: "vault-api-key-0004",
        caps: &["CapKeyBackup", "CapKeyRestore"],
    },
    TestClient {
        name: "nobody",
        key: "nobody-api-key-0005",
        caps: &[],
    },
];

pub fn api_key(name: &str) -> &'static str {
    CLIENTS
        .iter()
        .find(|c| c.name == name)
        .expect("a test client")
        .key
}

/// The `[[clients]]` tables of [`CLIENTS`].
pub fn clients_toml() -> String {
    let mut s = String::new();
    for c in CLIENTS {
        let caps: Vec<String> = c.caps.iter().map(|c| format!("\"{c}\"")).collect();
        s.push_str(&format!(
            "[[clients]]\nname = \"{}\"\napi_key_sha256 = \"{}\"\ncapabilities = [{}]\n",
            c.name,
            hex::encode(Sha256::digest(c.key.as_bytes())),
            caps.join(", ")
        ));
    }
    s
}

/// A running server.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub config: PathBuf,
    stdout: Option<BufReader<ChildStdout>>,
}

impl TestToken {
    /// The configuration's top keys for this token (module, token, PIN
    /// source, audit log), listening on a free port.
    pub fn serve_toml(&self, extra_top: &str) -> String {
        let mut s = format!(
            "listen = \"127.0.0.1:0\"\nmodule = \"{}\"\npin_source = \"env:HSMKEY_PIN\"\naudit_log = \"{}\"\n",
            self.module,
            self.audit_log().display()
        );
        if let Some(args) = &self.module_args {
            s.push_str(&format!(
                "module_args = \"{}\"\n",
                args.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        if let Some(token) = self.token_env() {
            s.push_str(&format!("token = \"{token}\"\n"));
        }
        s.push_str(extra_top);
        s
    }

    /// `hsmkey serve --config FILE` with this token's environment (not
    /// started).
    pub fn serve_cmd(&self, config: &std::path::Path) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("hsmkey"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HSMKEY_PIN", USER_PIN)
            .env("CI", "true");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(["serve", "--config"]).arg(config);
        c
    }

    /// Start a server with `toml` as its configuration; wait for its
    /// address.
    pub fn serve(&self, toml: &str) -> Server {
        self.serve_env(toml, &[])
    }

    /// [`TestToken::serve`] with more environment (the pass-through's
    /// settings).
    pub fn serve_env(&self, toml: &str, env: &[(&str, &str)]) -> Server {
        let config = self.dir.path().join(format!(
            "serve-{}.toml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&config, toml).unwrap();
        let mut cmd = self.serve_cmd(&config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hsmkey serve starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("hsmkey serve: listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("no address from hsmkey serve: {line:?}")
            })
            .to_string();
        Server {
            child,
            base,
            config,
            stdout: Some(stdout),
        }
    }
}

/// An answer: status, headers we look at, body.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}), got {}: {}", self.status, self.body))
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.expect("the server answers");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (retry_after, content_type) = (header("retry-after"), header("content-type"));
    Answer {
        status: r.status().as_u16(),
        body: r.body_mut().read_to_string().unwrap(),
        retry_after,
        content_type,
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with these headers.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = agent().get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.call())
    }

    /// POST `body` with these headers.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut req = agent()
            .post(self.url(path))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.send(body))
    }

    /// Send SIGTERM and wait; the exit status and the rest of stdout.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        terminate(&self.child);
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut rest);
        }
        (status, rest)
    }
}

pub fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&self.child);
            let _ = self.child.wait();
        }
    }
}

pub fn bearer(name: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {}", api_key(name)))
}

/// The audit log's lines, parsed.
pub fn audit_lines(t: &TestToken) -> Vec<Value> {
    std::fs::read_to_string(t.audit_log())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `serve refused` lines: requests refused without a client, counted
/// per source and written every `refusal_window` and when the server
/// stops (stop it first to see them all).
pub fn refused_lines(t: &TestToken) -> Vec<Value> {
    audit_lines(t)
        .into_iter()
        .filter(|l| l["op"] == "serve refused")
        .collect()
}

/// How many refused requests of `status` with `code` those lines count.
pub fn refused_count(t: &TestToken, status: u64, code: &str) -> u64 {
    refused_lines(t)
        .iter()
        .flat_map(|l| {
            l["refused"]["requests"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|k| k["status"] == status && k["code"] == code)
        .map(|k| k["count"].as_u64().unwrap())
        .sum()
}
