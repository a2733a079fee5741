use super::*;

fn request(source: &str, allow_argv: bool) -> PinRequest<'static> {
    PinRequest {
        role: PinRole::User,
        source: Some(source.parse().unwrap()),
        allow_argv,
        prompter: None,
    }
}

#[test]
fn parses_sources() {
    assert!(matches!("env:X".parse::<PinSource>().unwrap(), PinSource::Env(v) if v == "X"));
    assert!(
        matches!("file:/a/b".parse::<PinSource>().unwrap(), PinSource::File(p) if p == std::path::Path::new("/a/b"))
    );
    assert!(matches!(
        "prompt".parse::<PinSource>().unwrap(),
        PinSource::Prompt
    ));
    assert_eq!("env:".parse::<PinSource>().unwrap_err().code(), "HK1007");
    assert_eq!("1234".parse::<PinSource>().unwrap_err().code(), "HK1007");
}

#[test]
fn bad_source_message_never_shows_the_pin() {
    let err = "pin".parse::<PinSource>().unwrap_err();
    assert!(!err.to_string().contains("secret"));
    let err = request("pin:secret-pin", false).resolve().unwrap_err();
    assert_eq!(err.code(), "HK1104");
    assert!(!err.to_string().contains("secret-pin"));
}

#[test]
fn argv_pin_only_with_the_flag() {
    let pin = request("pin:1234", true).resolve().unwrap();
    assert_eq!(pin.expose_secret(), "1234");
}

#[test]
fn file_pin_takes_the_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pin");
    std::fs::write(&path, "98765\r\n").unwrap();
    let pin = request(&format!("file:{}", path.display()), false)
        .resolve()
        .unwrap();
    assert_eq!(pin.expose_secret(), "98765");
    std::fs::write(&path, "\n").unwrap();
    let err = request(&format!("file:{}", path.display()), false)
        .resolve()
        .unwrap_err();
    assert_eq!(err.code(), "HK1103");
}

#[test]
fn missing_env_and_no_terminal_is_an_error_not_a_hang() {
    let err = request("env:HSMKEY_TEST_SURELY_UNSET_VAR", false)
        .resolve()
        .unwrap_err();
    assert_eq!(err.code(), "HK1103");
    let no_tty = PinRequest {
        role: PinRole::User,
        source: Some(PinSource::Prompt),
        allow_argv: false,
        prompter: None,
    };
    assert_eq!(no_tty.resolve().unwrap_err().code(), "HK1103");
}

/// Issue #11: a mistyped source is most likely the PIN itself.
#[test]
fn unknown_schemes_are_never_echoed() {
    for source in [
        "PIN:1234",
        "pin=1234",
        "bogus:1234",
        "1234",
        "Env:1234",
        "file1234",
        " env:1234",
        "prompt1234",
    ] {
        let err = source.parse::<PinSource>().unwrap_err();
        assert_eq!(err.code(), "HK1007", "{source}");
        let shown = format!("{err} {:?} {}", err.context(), err.hint());
        assert!(!shown.contains("1234"), "{source} echoed: {shown}");
        assert!(
            shown.contains("env:VAR"),
            "names the accepted schemes: {shown}"
        );
    }
}

#[test]
fn a_pin_file_is_read_with_a_limit() {
    let err = request("file:/dev/zero", false).resolve().unwrap_err();
    assert_eq!(err.code(), "HK1301", "{err}");
    let err = request("file:/nonexistent/pin", false)
        .resolve()
        .unwrap_err();
    assert_eq!(err.code(), "HK1103", "{err}");
}
