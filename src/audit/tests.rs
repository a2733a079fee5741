//! Unit tests of the audit line, the chain and its verification, with an
//! HMAC on the host standing in for the token (the integration tests in
//! tests/audit.rs use real tokens).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::line::{self, sha256_hex, Line, Outcome, Signer, TokenRef, GENESIS, SCHEMA};
use super::show::{parse_since, Filter};
use super::verify::{verify, MacCheck, Reason, Report};
use crate::error::Result;
use crate::hsm::audit::Head;

const KEY: &[u8] = b"a test MAC key of thirty-two b..";
const KEY_ID: &str = "a1a2a3a4";
const LOG: &str = "00112233445566778899aabbccddeeff";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn me() -> TokenRef {
    TokenRef {
        label: "t".into(),
        serial: "s1".into(),
        model: "m".into(),
        manufacturer: "x".into(),
    }
}

/// A token that holds one MAC key and one head.
struct FakeToken {
    key: Vec<u8>,
    key_id: Vec<u8>,
    head: Option<Head>,
    serial: &'static str,
}

impl MacCheck for FakeToken {
    fn token(&self) -> TokenRef {
        TokenRef {
            serial: self.serial.into(),
            ..me()
        }
    }
    fn verify(&mut self, key_id: &[u8], data: &[u8], mac: &[u8]) -> Result<Option<bool>> {
        if key_id != self.key_id {
            return Ok(None);
        }
        Ok(Some(hmac(&self.key, data) == mac))
    }
    fn head(&mut self, log: &str) -> Result<Option<Head>> {
        Ok(self.head.clone().filter(|h| h.log == log))
    }
}

fn entry(seq: u64, prev: &str, op: &str) -> Line {
    Line {
        schema: SCHEMA.into(),
        seq,
        log: LOG.into(),
        time: "2025-06-01T12:00:00.000Z".into(),
        op: op.into(),
        hsmkey: "0.1.0 (commit test)".into(),
        user: "alice".into(),
        uid: Some(1000),
        host: "h".into(),
        client: None,
        request: None,
        refused: None,
        token: Some(me()),
        keys: vec![super::KeyRef::named(format!("key-{seq}"))],
        protection: Some(line::Protection::Password),
        inputs: vec![],
        outputs: vec![],
        dry_run: false,
        result: Outcome::ok(),
        prev: prev.into(),
        signer: None,
        mac: None,
    }
}

/// Sign `l` with `key` as the fake token would.
fn signed(mut l: Line, key: &[u8], key_id: &str) -> Vec<u8> {
    l.signer = Some(Signer {
        label: "t".into(),
        serial: "s1".into(),
        model: "m".into(),
        key_id: key_id.into(),
    });
    let input = l.mac_input().unwrap();
    let mac = hmac(key, &input);
    Line::with_mac(&input, Some(&mac))
}

/// A log of `n` signed lines and the head the token would hold.
fn log_of(n: u64) -> (Vec<Vec<u8>>, Head) {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut prev = GENESIS.to_string();
    for seq in 1..=n {
        let bytes = signed(entry(seq, &prev, "backup"), KEY, KEY_ID);
        prev = sha256_hex(&bytes);
        lines.push(bytes);
    }
    let head = Head {
        log: LOG.into(),
        count: n,
        last: prev,
    };
    (lines, head)
}

fn joined(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn check(lines: &[Vec<u8>], head: Option<Head>) -> Report {
    let mut t = FakeToken {
        key: KEY.to_vec(),
        key_id: hex::decode(KEY_ID).unwrap(),
        head,
        serial: "s1",
    };
    verify("log", &joined(lines)[..], Some(&mut t), false).unwrap()
}

fn reason(r: &Report) -> Option<(u64, Reason)> {
    r.problem.as_ref().map(|p| (p.line, p.reason))
}

#[test]
fn a_line_reads_back_as_written() {
    let (lines, _) = log_of(1);
    let p = line::parse(&lines[0]).unwrap();
    assert_eq!(p.line.seq, 1);
    assert_eq!(p.line.prev, GENESIS);
    assert!(lines[0].ends_with(b"\"}"));
    assert_eq!(hmac(KEY, &p.mac_input), p.mac.unwrap());
    // The MAC input is the line without its last member.
    let text = String::from_utf8(lines[0].clone()).unwrap();
    let cut = text.rfind(",\"mac\":").unwrap();
    assert_eq!(p.mac_input, format!("{}}}", &text[..cut]).into_bytes());
}

#[test]
fn an_unsigned_line_ends_with_a_null_mac() {
    let l = entry(1, GENESIS, "token init");
    let bytes = Line::with_mac(&l.mac_input().unwrap(), None);
    assert!(bytes.ends_with(b",\"mac\":null}"));
    let p = line::parse(&bytes).unwrap();
    assert!(p.mac.is_none() && p.line.signer.is_none());
}

/// Lines that are not audit lines, made from a good one.
fn bad_lines() -> Vec<String> {
    let (lines, _) = log_of(1);
    let text = String::from_utf8(lines[0].clone()).unwrap();
    let upper = text.replace(
        &text[text.len() - 66..text.len() - 2],
        &text[text.len() - 66..text.len() - 2].to_uppercase(),
    );
    vec![
        "{}".to_string(),
        "not json".to_string(),
        text.replace(SCHEMA, "hsmkey.audit-line.v9"),
        text.replace("\"dry_run\":false", "\"dry_run\":false,\"extra\":1"),
        upper,
        text.replace(",\"mac\":\"", ",\"mac\": \""),
        text.replace("\"label\":\"key-1\"", "\"label\":\"key-1\",\"size\":1"),
        text.replace(",\"signer\":{", ",\"signer\":null,\"x\":{"),
    ]
}

#[test]
fn lines_that_are_not_audit_lines_are_refused() {
    for bad in bad_lines() {
        assert!(line::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

/// An HMAC on the host standing in for the token, fed in pieces.
struct HostMac {
    input: Vec<u8>,
    fails: bool,
}

impl line::MacStream for HostMac {
    fn update(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }
    fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.fails).then(|| hmac(KEY, &self.input))
    }
}

/// A line naming more keys than the writer passes on at once.
fn bulk_line() -> Line {
    let mut l = entry(7, GENESIS, "backup");
    l.keys = (0..3000)
        .map(|i| super::KeyRef {
            label: format!("k-{i:05}"),
            id: Some(format!("{i:032x}")),
            class: Some("secret-key".into()),
            kcv: Some("a1b2c3".into()),
            version: Some(1),
        })
        .collect();
    l.signer = Some(Signer {
        label: "t".into(),
        serial: "s1".into(),
        model: "m".into(),
        key_id: KEY_ID.into(),
    });
    l
}

#[test]
fn a_line_written_as_it_is_serialized_is_the_line_signed_whole() {
    let l = bulk_line();
    let mut out = Vec::new();
    let mut mac = HostMac {
        input: Vec::new(),
        fails: false,
    };
    let written = line::write(&l, &mut out, Some(&mut mac)).unwrap();
    let input = l.mac_input().unwrap();
    assert!(input.len() > 200_000);
    assert_eq!(out, Line::with_mac(&input, Some(&hmac(KEY, &input))));
    assert_eq!(mac.input, input);
    assert_eq!(
        written,
        line::Written {
            sha256: sha256_hex(&out),
            signed: true
        }
    );
    assert_eq!(line::parse(&out).unwrap().line, l_with_mac(&l, &out));
    // A token that cannot sign: the same line, unsigned.
    let mut failing = HostMac {
        input: Vec::new(),
        fails: true,
    };
    let mut out = Vec::new();
    let written = line::write(&l, &mut out, Some(&mut failing)).unwrap();
    let mut unsigned = l.clone();
    unsigned.signer = None;
    assert_eq!(out, Line::with_mac(&unsigned.mac_input().unwrap(), None));
    assert!(!written.signed);
    // No token at all: unsigned too.
    let mut again = Vec::new();
    line::write(&l, &mut again, None).unwrap();
    assert_eq!(again, out);
}

/// `l` with the MAC `bytes` carry, as parsing them gives it back.
fn l_with_mac(l: &Line, bytes: &[u8]) -> Line {
    let mut l = l.clone();
    l.mac = Some(String::from_utf8(bytes[bytes.len() - 66..bytes.len() - 2].to_vec()).unwrap());
    l
}

#[test]
fn the_last_line_read_as_a_stream_is_checked_as_a_line_is() {
    let (lines, _) = log_of(2);
    let mut all = lines.clone();
    let mut bulk = Vec::new();
    let mut mac = HostMac {
        input: Vec::new(),
        fails: false,
    };
    line::write(&bulk_line(), &mut bulk, Some(&mut mac)).unwrap();
    all.push(bulk);
    for raw in &all {
        let end = &raw[raw.len().saturating_sub(line::LAST_END)..];
        let (last, sha) = line::parse_last(&raw[..], end).unwrap();
        let whole = line::parse(raw).unwrap().line;
        assert_eq!((last.seq, last.log), (whole.seq, whole.log));
        assert_eq!(sha, sha256_hex(raw));
    }
    for bad in bad_lines() {
        let b = bad.as_bytes();
        let end = &b[b.len().saturating_sub(line::LAST_END)..];
        assert!(line::parse_last(b, end).is_err(), "{bad}");
    }
}

#[test]
fn keys_read_from_a_report_are_named_as_listed_keys_are() {
    use crate::ops::backup::{Entries, EntrySummary};
    let mut entries = Entries::new();
    let mut listed = Vec::new();
    for (label, id, version) in [("a", Some("0a"), 1), ("b@v2", None, 2)] {
        let summary = EntrySummary {
            label: label.into(),
            class: "secret-key".into(),
            key_type: "aes".into(),
            size: Some(256),
            kcv: Some("a1b2c3".into()),
            wrap: "rfc3394".into(),
            renamed_from: None,
            id_from: None,
        };
        entries
            .push(summary, id.map(str::to_string), version)
            .unwrap();
        listed.push(super::KeyRef {
            label: label.into(),
            id: id.map(str::to_string),
            class: Some("secret-key".into()),
            kcv: Some("a1b2c3".into()),
            version: Some(version),
        });
    }
    assert_eq!(
        serde_json::to_string(&super::Keys::Reported(entries)).unwrap(),
        serde_json::to_string(&super::Keys::Listed(listed)).unwrap()
    );
}

#[test]
fn a_good_log_verifies_every_mac_and_the_head() {
    let (lines, head) = log_of(5);
    let r = check(&lines, Some(head));
    assert_eq!(reason(&r), None);
    assert_eq!((r.lines, r.mac_verified, r.unsigned), (5, 5, 0));
}

#[test]
fn an_edit_of_any_field_is_edited() {
    let (lines, head) = log_of(3);
    let text = String::from_utf8(lines[1].clone()).unwrap();
    let edits = [
        ("\"seq\":2", "\"seq\":7"),
        ("\"op\":\"backup\"", "\"op\":\"verify\""),
        ("\"user\":\"alice\"", "\"user\":\"mallory\""),
        ("\"label\":\"key-2\"", "\"label\":\"key-9\""),
        ("\"ok\":true", "\"ok\":false"),
        ("\"time\":\"2025-06-01T12", "\"time\":\"2024-06-01T12"),
        (
            "\"serial\":\"s1\",\"model\":\"m\",\"key_id\"",
            "\"serial\":\"s2\",\"model\":\"m\",\"key_id\"",
        ),
    ];
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        let mut tampered = lines.clone();
        tampered[1] = text.replacen(from, to, 1).into_bytes();
        assert_eq!(
            reason(&check(&tampered, Some(head.clone()))),
            Some((2, Reason::Edited)),
            "{from}"
        );
    }
    // The MAC itself.
    let mut tampered = lines.clone();
    let n = tampered[1].len();
    tampered[1][n - 3] = if tampered[1][n - 3] == b'0' {
        b'1'
    } else {
        b'0'
    };
    assert_eq!(
        reason(&check(&tampered, Some(head))),
        Some((2, Reason::Edited))
    );
}

#[test]
fn removed_swapped_and_repeated_lines_are_named() {
    let (lines, head) = log_of(4);
    let mut deleted = lines.clone();
    deleted.remove(1);
    assert_eq!(
        reason(&check(&deleted, Some(head.clone()))),
        Some((2, Reason::Missing))
    );
    let mut first = lines.clone();
    first.remove(0);
    assert_eq!(
        reason(&check(&first, Some(head.clone()))),
        Some((1, Reason::Missing))
    );
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    assert_eq!(
        reason(&check(&swapped, Some(head.clone()))),
        Some((2, Reason::Reordered))
    );
    let mut twice = lines.clone();
    twice.insert(2, lines[1].clone());
    assert_eq!(
        reason(&check(&twice, Some(head.clone()))),
        Some((3, Reason::Duplicated))
    );
    let mut last_twice = lines.clone();
    last_twice.push(lines[3].clone());
    assert_eq!(
        reason(&check(&last_twice, Some(head))),
        Some((5, Reason::Duplicated))
    );
}

#[test]
fn a_cut_end_is_truncated_and_a_forged_line_is_forged() {
    let (lines, head) = log_of(4);
    let mut cut = lines.clone();
    cut.pop();
    assert_eq!(
        reason(&check(&cut, Some(head.clone()))),
        Some((4, Reason::Truncated))
    );
    // A line added at the end with a MAC made by another key.
    let mut forged = lines.clone();
    let prev = sha256_hex(&lines[3]);
    forged.push(signed(entry(5, &prev, "restore"), b"guessed key", KEY_ID));
    assert_eq!(
        reason(&check(&forged, Some(head.clone()))),
        Some((5, Reason::Forged))
    );
    // One without a MAC: nothing vouches for it.
    let mut unsigned = lines.clone();
    let l = entry(5, &prev, "restore");
    unsigned.push(Line::with_mac(&l.mac_input().unwrap(), None));
    assert_eq!(
        reason(&check(&unsigned, Some(head))),
        Some((5, Reason::Unanchored))
    );
}

#[test]
fn a_log_of_another_token_is_foreign() {
    let (lines, _) = log_of(3);
    // This token holds another key and no head for the log; it may even
    // look the same (NSS tokens all have one label and serial).
    for serial in ["s1", "s2"] {
        let mut t = FakeToken {
            key: b"another".to_vec(),
            key_id: vec![9, 9],
            head: None,
            serial,
        };
        let r = verify("log", &joined(&lines)[..], Some(&mut t), false).unwrap();
        assert_eq!(reason(&r), Some((1, Reason::Foreign)), "{serial}");
    }
    let mut t = FakeToken {
        key: b"another".to_vec(),
        key_id: vec![9, 9],
        head: None,
        serial: "s2",
    };
    // With --partial the lines are counted, and the token holding no head
    // for a log it never signed is still foreign.
    let r = verify("log", &joined(&lines)[..], Some(&mut t), true).unwrap();
    assert_eq!(r.other_signers.len(), 1);
    assert_eq!(r.other_signers[0].lines, 3);
    assert_eq!(reason(&r), Some((1, Reason::Foreign)));
}

#[test]
fn an_unsigned_line_is_anchored_by_the_next_signed_one() {
    let mut lines = Vec::new();
    let l1 = entry(1, GENESIS, "backup");
    lines.push(Line::with_mac(&l1.mac_input().unwrap(), None));
    let l2 = signed(entry(2, &sha256_hex(&lines[0]), "backup"), KEY, KEY_ID);
    let head = Head {
        log: LOG.into(),
        count: 2,
        last: sha256_hex(&l2),
    };
    lines.push(l2);
    let r = check(&lines, Some(head.clone()));
    assert_eq!(reason(&r), None);
    assert_eq!((r.mac_verified, r.unsigned), (1, 1));
    // Editing the unsigned line breaks the chain at the signed one.
    let mut edited = lines.clone();
    edited[0] = String::from_utf8(lines[0].clone())
        .unwrap()
        .replace("alice", "bob")
        .into_bytes();
    assert_eq!(
        reason(&check(&edited, Some(head))),
        Some((2, Reason::Edited))
    );
}

#[test]
fn chain_only_sees_edits_before_the_last_line_but_not_a_cut() {
    let (lines, _) = log_of(3);
    let run = |l: &[Vec<u8>]| verify("log", &joined(l)[..], None, false).unwrap();
    let r = run(&lines);
    assert_eq!(reason(&r), None);
    assert_eq!(r.checked, vec!["json", "chain"]);
    let mut edited = lines.clone();
    edited[0] = String::from_utf8(lines[0].clone())
        .unwrap()
        .replace("alice", "bob")
        .into_bytes();
    assert_eq!(reason(&run(&edited)), Some((2, Reason::Edited)));
    let mut cut = lines.clone();
    cut.pop();
    assert_eq!(
        reason(&run(&cut)),
        None,
        "the chain alone cannot see a cut end"
    );
    let mut partial = joined(&lines);
    partial.pop();
    let r = verify("log", &partial[..], None, false).unwrap();
    assert_eq!(reason(&r), Some((3, Reason::Malformed)));
}

#[test]
fn show_filters_by_time_key_and_op() {
    let now: jiff::Timestamp = "2025-06-02T12:00:00Z".parse().unwrap();
    let l = entry(1, GENESIS, "backup");
    let at = |s: &str| Filter {
        since: Some(parse_since(s, now).unwrap()),
        ..Filter::default()
    };
    assert!(at("2025-06-01").accepts(&l));
    assert!(at("24h").accepts(&l));
    assert!(!at("23h").accepts(&l));
    assert!(!at("2025-06-01T12:00:01Z").accepts(&l));
    assert!(parse_since("yesterday", now).is_err());
    let key = |k: &str| Filter {
        key: Some(k.into()),
        ..Filter::default()
    };
    assert!(key("key-1").accepts(&l));
    assert!(!key("key").accepts(&l));
    let mut v2 = l.clone();
    v2.keys[0].label = "pay@v2".into();
    assert!(key("pay").accepts(&v2) && key("pay@v2").accepts(&v2));
    let op = |o: &str| Filter {
        op: Some(o.into()),
        ..Filter::default()
    };
    assert!(op("backup").accepts(&l) && !op("restore").accepts(&l));
}

#[test]
fn the_time_has_milliseconds_and_ends_in_z() {
    let t = super::now();
    assert_eq!(t.len(), "2025-06-01T12:00:00.000Z".len(), "{t}");
    assert!(t.ends_with('Z') && t.parse::<jiff::Timestamp>().is_ok());
}

/// docs/schemas/hsmkey.audit-line.v1.json is what the code generates;
/// `HSMKEY_WRITE_SCHEMAS=1 cargo test --lib audit` rewrites it.
#[test]
fn the_published_line_schema_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schemas")
        .join(format!("{SCHEMA}.json"));
    let mut want = serde_json::to_string_pretty(&line::schema()).unwrap();
    want.push('\n');
    if std::env::var_os("HSMKEY_WRITE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from the code: run HSMKEY_WRITE_SCHEMAS=1 cargo test --lib audit",
        path.display()
    );
    let schema = line::schema();
    assert_eq!(schema["properties"]["schema"]["const"], SCHEMA);
    assert_eq!(schema["required"][0], "schema");
}

#[test]
fn a_long_last_line_is_found_and_appended_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (lines, _) = log_of(1);
    let mut bulk = Vec::new();
    let mut mac = HostMac {
        input: Vec::new(),
        fails: false,
    };
    line::write(&bulk_line(), &mut bulk, Some(&mut mac)).unwrap();
    assert!(
        bulk.len() > 4 * 64 * 1024,
        "longer than a few chunks read back"
    );
    std::fs::write(&path, joined(&lines)).unwrap();
    let mut log = super::log::AuditLog::open(&path).unwrap();
    // Appended from a spool that went to a file (a tiny memory limit).
    let mut spool = crate::spool::Spool::new(16);
    spool.push(&bulk).unwrap();
    spool.push(b"\n").unwrap();
    assert!(!spool.is_in_memory());
    log.lock().unwrap().append(&mut spool).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        joined(&[lines[0].clone(), bulk.clone()])
    );
    let tail = log.preflight().unwrap();
    let (last, sha) = tail.last.unwrap().unwrap();
    assert_eq!((last.seq, sha), (7, sha256_hex(&bulk)));
}
