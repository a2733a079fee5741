use super::*;

#[test]
fn ids_parse_as_hex() {
    assert_eq!(parse_id("01ab").unwrap(), vec![0x01, 0xab]);
    assert_eq!(parse_id("0x0102").unwrap(), vec![1, 2]);
    assert!(parse_id("xyz").is_err());
    assert!(parse_id("abc").is_err());
    assert!(parse_id("").is_err());
}

#[test]
fn version_ids_bind_name_and_version() {
    let nonce = [7u8; VERSION_NONCE_LEN];
    let id = version_id("payments", 2, &nonce);
    assert_eq!(id.len(), VERSION_ID_LEN);
    assert_eq!(&id[..8], &nonce);
    assert!(is_version_id("payments", 2, &id));
    assert!(!is_version_id("payments", 3, &id));
    assert!(!is_version_id("payment", 2, &id));
    assert!(!is_version_id("payments@v2", 1, &id));
    let mut altered = id.clone();
    altered[0] ^= 1;
    assert!(!is_version_id("payments", 2, &altered));
    assert!(!is_version_id("payments", 2, &id[..15]));
    assert!(!is_version_id("payments", 2, &[]));
    // The name's length is bound too: ("ab", ..) and ("a", ..) differ.
    assert_ne!(version_id("ab", 2, &nonce), version_id("a", 2, &nonce));
}

#[test]
fn seeded_version_ids_are_stable() {
    let a = version_id_from_seed("k", 2, b"01");
    assert_eq!(a, version_id_from_seed("k", 2, b"01"));
    assert_ne!(a, version_id_from_seed("k", 2, b"02"));
    assert!(is_version_id("k", 2, &a));
}

/// A fixed vector, so the rule documented in docs/KEYS.md cannot drift.
#[test]
fn version_id_vector() {
    let id = version_id("payments", 2, &[0, 1, 2, 3, 4, 5, 6, 7]);
    // SHA-256("hsmkey key version id\0" || 00000008 || "payments" ||
    // 00000002 || 0001020304050607), first 8 bytes (computed with Python's hashlib).
    assert_eq!(hex::encode(&id), "0001020304050607ef55f9991f618c7f");
    assert!(is_version_id("payments", 2, &id));
}
