//! The audit trail on real tokens (docs/AUDIT.md): a line per operation
//! with the right fields, every kind of tampering found by `audit verify`,
//! a log that cannot be written stopping the command before a key leaves,
//! and concurrent runs keeping one chain.

mod common;

use common::{code, TestToken};
use serde_json::Value;

/// The lines of the token's audit log.
fn lines(t: &TestToken) -> Vec<Value> {
    std::fs::read_to_string(t.audit_log())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn key_generate_leaves_a_signed_line_that_verifies() {
    let t = TestToken::new();
    t.generate("k1", "aes-256", "any");
    let l = lines(&t);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["op"], "key generate");
    assert_eq!(l[0]["keys"][0]["label"], "k1");
    let v = t.json(&["audit", "verify"]);
    assert_eq!(v["mac_verified"], 1);
    let (_, e) = t.json_err(
        t.cmd()
            .args(["key", "destroy", "hsmkey-audit-mac", "--yes"]),
    );
    assert_eq!(code(&e), "HK1004");
}
