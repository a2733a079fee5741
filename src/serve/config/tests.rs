//! Unit tests of the server configuration: every refusal names its key and
//! line, with its code.

use std::path::Path;

use super::parse;

const HASH: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

fn ok(text: &str) -> super::ServeConfig {
    parse(text, Path::new("serve.toml")).expect("valid configuration")
}

/// (code, key, line) of the refusal.
fn refused(text: &str) -> (String, String, Option<String>) {
    let e = parse(text, Path::new("serve.toml")).expect_err("refused");
    let ctx = e.context();
    (
        e.code().to_string(),
        ctx.get("key").cloned().unwrap_or_default(),
        ctx.get("line").cloned(),
    )
}

fn base() -> String {
    "listen = \"127.0.0.1:8443\"\npin_source = \"env:HSMKEY_PIN\"\n".to_string()
}

#[test]
fn a_minimal_file_takes_the_defaults() {
    let c = ok(&base());
    assert_eq!(c.sessions, super::DEFAULT_SESSIONS);
    assert_eq!(c.body_limit, super::DEFAULT_BODY_LIMIT);
    assert!(c.tls.is_none() && c.clients.is_empty());
}

#[test]
fn clients_and_sections_are_read() {
    let text = format!(
        "{}[piiano]\nexport_key = \"dek\"\nexport_kek = \"kek\"\n[storedsafe]\nvaults = [\"179\"]\nkek = \"ss-kek\"\n[[clients]]\nname = \"web\"\napi_key_sha256 = \"{HASH}\"\ncapabilities = [\"CapExportKeyReader\", \"CapKeyReader\"]\n",
        base()
    );
    let c = ok(&text);
    assert_eq!(c.clients.len(), 1);
    assert_eq!(c.clients[0].capabilities.len(), 2);
    assert_eq!(c.storedsafe.expect("storedsafe").vaults, vec!["179"]);
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let (code, key, line) = refused(&format!("{}colour = \"blue\"\n", base()));
    assert_eq!((code.as_str(), key.as_str()), ("HK1010", "colour"));
    assert_eq!(line.as_deref(), Some("3"));
}

#[test]
fn a_wrong_type_is_named_by_the_key_on_its_line() {
    let (code, key, line) = refused(&format!("{}sessions = \"four\"\n", base()));
    assert_eq!((code.as_str(), key.as_str()), ("HK1010", "sessions"));
    assert_eq!(line.as_deref(), Some("3"));
}

#[test]
fn a_pin_written_in_the_file_is_refused() {
    let (code, key, line) = refused("listen = \"127.0.0.1:1\"\npin_source = \"1234\"\n");
    assert_eq!((code.as_str(), key.as_str()), ("HK1011", "pin_source"));
    assert_eq!(line.as_deref(), Some("2"));
    let (code, key, _) = refused(&format!("{}pin = \"1234\"\n", base()));
    assert_eq!((code.as_str(), key.as_str()), ("HK1011", "pin"));
    let (code, ..) = refused("listen = \"127.0.0.1:1\"\npin_source = \"pin:1234\"\n");
    assert_eq!(code, "HK1011");
}

#[test]
fn a_secret_key_written_in_the_file_is_refused() {
    let text = format!(
        "{}[[clients]]\nname = \"sdk\"\napi_key_sha256 = \"{HASH}\"\naccess_key = \"AK1\"\nsecret_key_source = \"abcdef\"\n",
        base()
    );
    let (code, key, line) = refused(&text);
    assert_eq!(
        (code.as_str(), key.as_str()),
        ("HK1011", "clients.secret_key_source")
    );
    assert_eq!(line.as_deref(), Some("7"));
    let text = format!(
        "{}[[clients]]\nname = \"sdk\"\napi_key_sha256 = \"{HASH}\"\nsecret_key = \"abcdef\"\n",
        base()
    );
    assert_eq!(refused(&text).0, "HK1011");
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let (code, ..) = refused("listen = \"0.0.0.0:8443\"\npin_source = \"env:P\"\n");
    assert_eq!(code, "HK1012");
    let c = ok("listen = \"0.0.0.0:8443\"\npin_source = \"env:P\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n");
    assert!(c.tls.is_some());
    let (code, key, _) =
        refused("listen = \"0.0.0.0:8443\"\npin_source = \"env:P\"\ntls_cert = \"c.pem\"\n");
    assert_eq!((code.as_str(), key.as_str()), ("HK1010", "tls_key"));
}

#[test]
fn bad_values_are_named() {
    let cases: [(&str, &str); 5] = [
        ("sessions = 0\n", "sessions"),
        ("listen2 = 1\n", "listen2"),
        ("[[clients]]\nname = \"a\"\napi_key_sha256 = \"abc\"\n", "clients.api_key_sha256"),
        (
            &format!("[[clients]]\nname = \"a\"\napi_key_sha256 = \"{HASH}\"\ncapabilities = [\"CapEverything\"]\n"),
            "clients.capabilities",
        ),
        (
            &format!("[[clients]]\nname = \"a\"\napi_key_sha256 = \"{HASH}\"\n[[clients]]\nname = \"a\"\napi_key_sha256 = \"{}\"\n", HASH.replace('2', "3")),
            "clients.name",
        ),
    ];
    for (extra, want) in cases {
        let (code, key, line) = refused(&format!("{}{extra}", base()));
        assert_eq!((code.as_str(), key.as_str()), ("HK1010", want), "{extra}");
        assert!(line.is_some(), "{extra}");
    }
    let (code, key, _) = refused("pin_source = \"env:P\"\n");
    assert_eq!((code.as_str(), key.as_str()), ("HK1010", "listen"));
}

#[test]
fn the_timeouts_and_the_refusal_window_are_checked() {
    let c = ok(&base());
    assert_eq!(
        c.header_timeout.as_secs(),
        super::DEFAULT_HEADER_TIMEOUT_SECS
    );
    assert_eq!(c.body_timeout.as_secs(), super::DEFAULT_BODY_TIMEOUT_SECS);
    assert_eq!(
        c.refusal_window.as_secs(),
        super::DEFAULT_REFUSAL_WINDOW_SECS
    );
    assert_eq!(c.refusal_sources_per_window, super::DEFAULT_REFUSAL_SOURCES);
    assert_eq!(c.max_bodies, super::DEFAULT_MAX_BODIES);
    assert_eq!(ok(&format!("{}max_bodies = 3\n", base())).max_bodies, 3);
    let c = ok(&format!(
        "{}header_timeout = 5\nbody_timeout = 120\nrefusal_window = 300\nrefusal_sources_per_window = 8\n",
        base()
    ));
    assert_eq!(
        (
            c.header_timeout.as_secs(),
            c.body_timeout.as_secs(),
            c.refusal_window.as_secs(),
            c.refusal_sources_per_window
        ),
        (5, 120, 300, 8)
    );
    for (text, key) in [
        ("header_timeout = 0\n", "header_timeout"),
        ("body_timeout = 3601\n", "body_timeout"),
        ("refusal_window = -1\n", "refusal_window"),
        (
            "refusal_sources_per_window = 0\n",
            "refusal_sources_per_window",
        ),
        ("body_timeout = \"1m\"\n", "body_timeout"),
        ("max_bodies = 0\n", "max_bodies"),
    ] {
        let (code, k, line) = refused(&format!("{}{text}", base()));
        assert_eq!((code.as_str(), k.as_str()), ("HK1010", key), "{text}");
        assert_eq!(line.as_deref(), Some("3"), "{text}");
    }
}
