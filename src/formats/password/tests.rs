use super::*;

#[test]
fn vsp_rule() {
    let vsp = |p: &str| check(p, Policy::Vsp);
    assert!(vsp("abc123").is_ok());
    assert!(vsp(&format!("a{SYMBOLS}")).is_ok());
    assert!(vsp(&"x".repeat(255)).is_ok());
    assert!(vsp("abc12").unwrap_err().contains("5 characters"));
    assert!(vsp(&"x".repeat(256)).is_err());
    assert!(vsp("abc 123").unwrap_err().contains("character 4"));
    assert!(vsp("pässwort").is_err());
    assert!(vsp("tab\there").is_err());
}

#[test]
fn strength_is_the_default_and_takes_passphrases() {
    assert_eq!(Policy::default(), Policy::Strength);
    let strong = |p: &str| check(p, Policy::Strength);
    // Spaces and non-ASCII letters are fine when the whole is hard to guess.
    assert!(strong("correct horse battery staple").is_ok());
    assert!(strong("grüne Äpfel über dem Fluss").is_ok());
    // Passes the VSP rule, fails the strength rule, and the reverse.
    assert!(check_vsp("abc123").is_ok());
    let weak = strong("abc123").unwrap_err();
    assert!(weak.contains("strength 0 of 4"), "{weak}");
    assert!(weak.contains("--password-policy vsp"), "{weak}");
    assert!(!weak.contains("abc123"));
    assert!(check_vsp("a long passphrase with spaces").is_err());
    // zxcvbn's feedback is passed on.
    assert!(strong("password").unwrap_err().contains("common password"));
    assert!(strong("tab\there and more words")
        .unwrap_err()
        .contains("character 4 is a control character"));
    assert!(strong(&"x".repeat(MAX_CHARS + 1))
        .unwrap_err()
        .contains("at most"));
    assert!(strong("").is_err());
}
