use super::*;

#[test]
fn ids_parse_as_hex() {
    assert_eq!(parse_id("01ab").unwrap(), vec![0x01, 0xab]);
    assert_eq!(parse_id("0x0102").unwrap(), vec![1, 2]);
    assert!(parse_id("xyz").is_err());
    assert!(parse_id("abc").is_err());
    assert!(parse_id("").is_err());
}
