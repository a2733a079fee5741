use super::*;

#[test]
fn vsp_rule() {
    assert!(check("abc123").is_ok());
    assert!(check(&format!("a{SYMBOLS}")).is_ok());
    assert!(check(&"x".repeat(255)).is_ok());
    assert!(check("abc12").unwrap_err().contains("5 characters"));
    assert!(check(&"x".repeat(256)).is_err());
    assert!(check("abc 123").unwrap_err().contains("character 4"));
    assert!(check("pässwort").is_err());
    assert!(check("tab\there").is_err());
}
