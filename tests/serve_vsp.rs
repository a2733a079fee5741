//! `hsmkey serve`'s Hitachi VSP routes (docs/SERVER.md, "Hitachi VSP"):
//! the password-protected backup file fetched over HTTP restores with
//! `hsmkey restore --password-file` and through the restore route of a
//! second server, KCVs equal; every refusal in VSP's error object with its
//! exact status, nothing changed on the token, and an audit line naming the
//! client.

mod common;

use common::serve::{
    agent, api_key, audit_lines, clients_toml, refused_count, refused_lines, Server,
};
use common::{shim_module, TestToken};
use serde_json::{json, Value};

const BACKUP: &str = "/ConfigurationManager/v1/objects/encryption-keys/file/actions/backup/invoke";
const RESTORE: &str =
    "/ConfigurationManager/v1/objects/encryption-keys/file/actions/restore/invoke";
const PASSWORD: &str = "Vsp#backup-2026";
const BOUNDARY: &str = "hsmkey-test-boundary-7d1f";

/// An answer with its body as bytes and the headers VSP's clients read.
struct Got {
    status: u16,
    body: Vec<u8>,
    content_type: Option<String>,
    disposition: Option<String>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "JSON body ({e}), got {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn post(s: &Server, path: &str, headers: &[(&str, String)], body: &[u8]) -> Got {
    send(s, "POST", path, headers, body)
}

fn send(s: &Server, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Got {
    let mut req = match method {
        "PUT" => agent().put(s.url(path)),
        _ => agent().post(s.url(path)),
    };
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let mut r = req.send(body).expect("the server answers");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (content_type, disposition) = (header("content-type"), header("content-disposition"));
    Got {
        status: r.status().as_u16(),
        body: r.body_mut().read_to_vec().unwrap(),
        content_type,
        disposition,
    }
}

fn session(client: &str) -> (&'static str, String) {
    ("authorization", format!("Session {}", api_key(client)))
}

/// The backup call as VSP's documentation makes it.
fn backup(s: &Server, auth: Option<(&'static str, String)>, password: &str) -> Got {
    backup_as(s, "POST", auth, password)
}

fn backup_as(
    s: &Server,
    method: &str,
    auth: Option<(&'static str, String)>,
    password: &str,
) -> Got {
    let mut headers = vec![
        ("accept", "application/octet-stream".to_string()),
        ("content-type", "application/json".to_string()),
    ];
    headers.extend(auth);
    let body = json!({"parameters": {"password": password}}).to_string();
    send(s, method, BACKUP, &headers, body.as_bytes())
}

/// A multipart/form-data body with these parts (name, filename, bytes).
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match filename {
            Some(f) => format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n"),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\nContent-Type: application/json\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn restore(s: &Server, auth: Option<(&'static str, String)>, file: &[u8], password: &str) -> Got {
    let parameters = json!({"password": password}).to_string();
    let body = multipart(&[
        ("file", Some("keys.bundle"), file),
        ("parameters", None, parameters.as_bytes()),
    ]);
    restore_raw(s, auth, &body)
}

fn restore_raw(s: &Server, auth: Option<(&'static str, String)>, body: &[u8]) -> Got {
    let mut headers = vec![(
        "content-type",
        format!("multipart/form-data; boundary={BOUNDARY}"),
    )];
    headers.extend(auth);
    post(s, RESTORE, &headers, body)
}

fn start(t: &TestToken) -> Server {
    t.serve(&format!(
        "{}{}",
        t.serve_toml("sessions = 2\n"),
        clients_toml()
    ))
}

/// Label and KCV of every version of these keys.
fn kcvs(t: &TestToken, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .flat_map(|n| {
            t.json(&["key", "show", n])["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    (
                        k["label"].as_str().unwrap().to_string(),
                        k["kcv"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A VSP error object with exactly these members, for this route.
fn vsp_error(g: &Got, status: u16, source: &str, code: &str) -> Value {
    assert_eq!(g.status, status, "{}", String::from_utf8_lossy(&g.body));
    let v = g.json();
    let o = v.as_object().unwrap();
    assert_eq!(v["errorSource"], source, "{v}");
    assert_eq!(v["messageId"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v["solution"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let allowed = ["errorSource", "messageId", "message", "cause", "solution"];
    assert!(o.keys().all(|k| allowed.contains(&k.as_str())), "{v}");
    v
}

/// The last audit line of `op`.
fn last_line(t: &TestToken, op: &str) -> Value {
    audit_lines(t)
        .into_iter()
        .rfind(|l| l["op"] == op)
        .unwrap_or_else(|| panic!("no audit line for {op}"))
}

#[test]
fn vsp_backup_restores_with_the_cli_and_through_a_second_server() {
    let a_tok = TestToken::new();
    a_tok.generate("disk-key-1", "aes-256", "any");
    a_tok.json(&["key", "rotate", "disk-key-1"]);
    a_tok.generate("disk-key-2", "aes-128", "any");
    a_tok.generate("not-for-backup", "aes-256", "none");
    let names = ["disk-key-1", "disk-key-2"];
    let originals = kcvs(&a_tok, &names);
    assert_eq!(originals.len(), 3, "two versions and one key");
    let a = start(&a_tok);

    let got = backup(&a, Some(session("vault")), PASSWORD);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(
        got.content_type.as_deref(),
        Some("application/octet-stream")
    );
    let disposition = got.disposition.clone().expect("Content-Disposition");
    assert!(
        disposition.starts_with("attachment; filename=hsmkey-encryption-keys-")
            && disposition.ends_with(".bundle"),
        "{disposition}"
    );
    let line = last_line(&a_tok, "serve vsp backup");
    assert_eq!(line["client"], "vault");
    assert_eq!(line["request"]["status"], 200);
    assert_eq!(line["protection"]["kind"], "password");
    assert_eq!(line["keys"].as_array().unwrap().len(), 3, "{line}");
    assert!(line["result"]["ok"].as_bool().unwrap());

    // The file restores with the command line on a second token.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.bundle");
    std::fs::write(&file, &got.body).unwrap();
    let pw_file = dir.path().join("password");
    std::fs::write(&pw_file, PASSWORD).unwrap();
    let b_tok = TestToken::new();
    b_tok.json(&[
        "restore",
        file.to_str().unwrap(),
        "--password-file",
        pw_file.to_str().unwrap(),
    ]);
    assert_eq!(kcvs(&b_tok, &names), originals);
    assert!(
        !b_tok
            .json(&["key", "list"])
            .to_string()
            .contains("not-for-backup"),
        "a key whose policy forbids backup is not in the file"
    );

    // Hitachi's Ops Center manual sends the same call as PUT: the same file.
    let put = backup_as(&a, "PUT", Some(session("vault")), PASSWORD);
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(
        put.content_type.as_deref(),
        Some("application/octet-stream")
    );
    std::fs::write(&file, &put.body).unwrap();
    let c_tok = TestToken::new();
    c_tok.json(&[
        "restore",
        file.to_str().unwrap(),
        "--password-file",
        pw_file.to_str().unwrap(),
    ]);
    assert_eq!(kcvs(&c_tok, &names), originals);

    // And through the restore route of a second server.
    let c_tok = TestToken::new();
    let c = start(&c_tok);
    let put = restore(&c, Some(session("vault")), &got.body, PASSWORD);
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let answer = put.json();
    let mut answered: Vec<(String, String)> = answer["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["label"].as_str().unwrap().to_string(),
                k["kcv"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    answered.sort();
    let mut expected = originals.clone();
    expected.sort();
    assert_eq!(answered, expected);
    assert_eq!(kcvs(&c_tok, &names), originals);
    let line = last_line(&c_tok, "serve vsp restore");
    assert_eq!(line["client"], "vault");
    assert_eq!(line["keys"].as_array().unwrap().len(), 3, "{line}");
    assert!(line["result"]["ok"].as_bool().unwrap());
    assert_eq!(line["inputs"][0]["path"], "request");
}

#[test]
fn vsp_refusals_have_vsp_shape_and_change_nothing() {
    let t = TestToken::new();
    t.generate("disk-key-1", "aes-256", "any");
    let s = start(&t);
    let good = backup(&s, Some(session("vault")), PASSWORD);
    assert_eq!(good.status, 200);
    let before = t.object_count();
    let lines_before = audit_lines(&t).len();
    let mut refusals = 0;
    let mut refused = |g: &Got, status: u16, source: &str, code: &str| -> Value {
        refusals += 1;
        let v = vsp_error(g, status, source, code);
        assert_eq!(t.object_count(), before, "{v}");
        v
    };

    // A password against VSP's rule: 400, before any token work.
    let v = refused(
        &backup(&s, Some(session("vault")), "abc12"),
        400,
        BACKUP,
        "HK1304",
    );
    assert_eq!(
        v,
        json!({
            "errorSource": BACKUP,
            "messageId": "HK1304",
            "message": "The password does not meet the backup password rule: it has 5 characters; 6 to 255 are required",
            "solution": "Choose a stronger password: by default (--password-policy strength) a passphrase of several uncommon words, spaces allowed; with --password-policy vsp, 6 to 255 letters, digits and !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ (no spaces).",
        })
    );
    refused(
        &backup(&s, Some(session("vault")), "with space"),
        400,
        BACKUP,
        "HK1304",
    );

    // Credentials: none, unknown, or not as a Session.
    for auth in [
        None,
        Some(("authorization", "Session not-a-key".to_string())),
        Some(("authorization", format!("Bearer {}", api_key("vault")))),
    ] {
        refused(&backup(&s, auth.clone(), PASSWORD), 401, BACKUP, "HK1109");
        refused(
            &restore(&s, auth, &good.body, PASSWORD),
            401,
            RESTORE,
            "HK1109",
        );
    }
    // A known client without the capability.
    refused(
        &backup(&s, Some(session("reader")), PASSWORD),
        403,
        BACKUP,
        "HK1110",
    );
    refused(
        &restore(&s, Some(session("exporter")), &good.body, PASSWORD),
        403,
        RESTORE,
        "HK1110",
    );

    // The backup is octet-stream only.
    let body = json!({"parameters": {"password": PASSWORD}}).to_string();
    refused(
        &post(
            &s,
            BACKUP,
            &[session("vault"), ("accept", "application/json".into())],
            body.as_bytes(),
        ),
        406,
        BACKUP,
        "HK1007",
    );
    refused(
        &post(
            &s,
            BACKUP,
            &[session("vault")],
            b"{\"password\": \"abcdef\"}",
        ),
        400,
        BACKUP,
        "HK1301",
    );

    // Restore: a wrong password, a file that is no bundle, missing parts,
    // keys already there.
    let v = refused(
        &restore(&s, Some(session("vault")), &good.body, "Wrong-password-1"),
        400,
        RESTORE,
        "HK1107",
    );
    // The token's own return code is in the message; the rest is exact.
    let message = v["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("It cannot be opened with this password: the bundle's integrity key did not unwrap (CKR_")
            && message.ends_with("): wrong password, or the header was altered"),
        "{v}"
    );
    assert_eq!(
        v,
        json!({
            "errorSource": RESTORE,
            "messageId": "HK1107",
            "message": message,
            "cause": "key: password",
            "solution": "Use the KEK, password or recipient key the backup was made for (`hsmkey verify` shows the header); if it is the right one, the key fields of the file were altered.",
        })
    );
    refused(
        &restore(&s, Some(session("vault")), b"not a bundle", PASSWORD),
        400,
        RESTORE,
        "HK1302",
    );
    refused(
        &restore_raw(
            &s,
            Some(session("vault")),
            &multipart(&[("file", Some("keys.bundle"), &good.body)]),
        ),
        400,
        RESTORE,
        "HK1301",
    );
    refused(
        &restore_raw(
            &s,
            Some(session("vault")),
            &multipart(&[("parameters", None, b"{\"password\": \"x\"}")]),
        ),
        400,
        RESTORE,
        "HK1301",
    );
    // The backup's {"parameters": {...}} is taken as the parameters part.
    let wrapped = json!({"parameters": {"password": PASSWORD}}).to_string();
    refused(
        &restore_raw(
            &s,
            Some(session("vault")),
            &multipart(&[
                ("file", Some("keys.bundle"), &good.body),
                ("parameters", None, wrapped.as_bytes()),
            ]),
        ),
        409,
        RESTORE,
        "HK1501",
    );
    refused(
        &post(&s, "/ConfigurationManager/v1/objects/nothing", &[], b"{}"),
        404,
        "/ConfigurationManager/v1/objects/encryption-keys",
        "HK1013",
    );

    // One audit line per request of a client, naming it; the requests
    // that named none (401, the unknown path) counted in the source's
    // line, written by the time the server stops.
    let (status, _) = s.stop();
    assert!(status.success());
    let lines = audit_lines(&t);
    let new: Vec<&Value> = lines[lines_before..]
        .iter()
        .filter(|l| l["request"].is_object())
        .collect();
    let anonymous = refused_lines(&t);
    assert_eq!(anonymous.len(), 1, "{anonymous:?}");
    assert_eq!(refused_count(&t, 401, "HK1109"), 6);
    assert_eq!(refused_count(&t, 404, "HK1013"), 1);
    assert_eq!(
        new.len() as u64 + anonymous[0]["refused"]["count"].as_u64().unwrap(),
        refusals as u64,
        "every refused request is in the log"
    );
    for line in new {
        assert!(!line["result"]["ok"].as_bool().unwrap(), "{line}");
        let client = line["client"].as_str().unwrap();
        let status = line["request"]["status"].as_u64().unwrap();
        let expected = match status {
            403 => line["client"].as_str().unwrap(),
            _ => "vault",
        };
        assert_eq!(client, expected, "{line}");
        assert!(["reader", "exporter", "vault"].contains(&client));
    }
}

#[test]
fn vsp_backup_is_412_where_the_token_cannot_wrap() {
    let t = TestToken::new();
    t.generate("disk-key-1", "aes-256", "any");
    let before = t.object_count();
    // Through the pass-through module, every C_WrapKey is refused as an
    // unknown mechanism: the token cannot make a password bundle.
    let shim = shim_module().display().to_string();
    let config = format!("{}{}", t.serve_toml("sessions = 2\n"), clients_toml()).replace(
        &format!("module = \"{}\"", t.module),
        &format!("module = \"{shim}\""),
    );
    let s = t.serve_env(
        &config,
        &[
            ("HSMKEY_SHIM_MODULE", &t.module),
            (
                "HSMKEY_SHIM_FAULT",
                "C_WrapKey:CKR_MECHANISM_INVALID:after=0",
            ),
        ],
    );
    let v = vsp_error(
        &backup(&s, Some(session("vault")), PASSWORD),
        412,
        BACKUP,
        "HK1201",
    );
    assert!(
        v["message"].as_str().unwrap().contains("AES key wrap"),
        "{v}"
    );
    assert_eq!(t.object_count(), before);
    let line = last_line(&t, "serve vsp backup");
    assert_eq!(line["client"], "vault");
    assert_eq!(line["request"]["status"], 412);
    assert_eq!(line["result"]["code"], "HK1201");
}

#[test]
fn vsp_restore_upload_is_bounded() {
    let t = TestToken::new();
    let s = start(&t);
    let before = t.object_count();
    // Over body_limit (1 MiB) but within the upload limit: read, and
    // refused as no bundle.
    let two = vec![b'x'; 2 * 1024 * 1024];
    let g = restore(&s, Some(session("vault")), &two, PASSWORD);
    vsp_error(&g, 400, RESTORE, "HK1302");
    // Past the 16 MiB upload limit (body_limit is the default 1 MiB).
    let big = vec![b'x'; 16 * 1024 * 1024 + 1];
    let g = restore(&s, Some(session("vault")), &big, PASSWORD);
    vsp_error(&g, 413, RESTORE, "HK1309");
    assert_eq!(t.object_count(), before);
    assert_eq!(last_line(&t, "serve vsp restore")["client"], "vault");
}
