use super::*;

fn parse_text(text: &str) -> Result<Config> {
    parse(text, Path::new("/etc/hsmkey.toml"))
}

fn config_error(text: &str) -> (Option<String>, String) {
    let e = parse_text(text).unwrap_err();
    assert_eq!(e.code(), "HK1008", "{e}");
    assert_eq!(e.exit_class().exit_code(), 2);
    let ctx = e.context();
    assert_eq!(ctx["path"], "/etc/hsmkey.toml");
    (ctx.get("line").cloned(), e.to_string())
}

#[test]
fn profiles_are_read() {
    let c = parse_text(
        "# three HSMs\n[profiles.dr]\nmodule = \"/opt/hsm/lib.so\"\ntoken = \"dr\"\n\
         pin_source = \"file:/etc/hsmkey/dr.pin\"\nsessions = 4\nwait = 30\n\n\
         [profiles.lab]\nmodule_args = \"x\"\nso_pin_source = \"env:SO\"\n",
    )
    .unwrap();
    assert_eq!(c.profiles.len(), 2);
    let dr = c.profile("dr").unwrap();
    assert_eq!(dr.module.as_deref(), Some("/opt/hsm/lib.so"));
    assert_eq!(dr.sessions, Some(4));
    assert_eq!(dr.wait, Some(30));
    assert_eq!(
        c.profile("lab").unwrap().so_pin_source.as_deref(),
        Some("env:SO")
    );
    // An empty file has no profiles.
    assert!(parse_text("").unwrap().profiles.is_empty());
}

#[test]
fn a_missing_profile_names_the_file_and_the_others() {
    let c = parse_text("[profiles.dr]\n[profiles.lab]\n").unwrap();
    let e = c.profile("prod").unwrap_err();
    assert_eq!(e.code(), "HK1009");
    assert_eq!(e.exit_class().exit_code(), 3);
    assert_eq!(e.context()["profiles"], "dr, lab");
    assert!(e.to_string().contains("/etc/hsmkey.toml"), "{e}");
}

#[test]
fn unknown_keys_and_bad_values_name_the_line() {
    let (line, msg) = config_error("[profiles.dr]\nmodule = \"/x\"\npin = \"1234\"\n");
    assert_eq!(line.as_deref(), Some("3"));
    assert!(msg.contains("unknown field `pin`"), "{msg}");
    let (line, msg) = config_error("[profiles.dr]\n\n[defaults]\nx = 1\n");
    assert_eq!(line.as_deref(), Some("3"));
    assert!(msg.contains("`defaults`"), "{msg}");
    let (line, _) = config_error("[profiles.dr]\nsessions = 65\n");
    assert_eq!(line.as_deref(), Some("2"));
    let (line, _) = config_error("[profiles.dr]\nwait = -1\n");
    assert_eq!(line.as_deref(), Some("2"));
    let (line, _) = config_error("[profiles.dr]\ntoken = \"\"\n");
    assert_eq!(line.as_deref(), Some("2"));
    config_error("[profiles.dr\n");
}

#[test]
fn a_profile_never_holds_a_pin() {
    let (line, msg) = config_error("[profiles.dr]\ntoken = \"dr\"\npin_source = \"pin:1234\"\n");
    assert_eq!(line.as_deref(), Some("3"));
    assert!(msg.contains("pin:VALUE"), "{msg}");
    assert!(!msg.contains("1234"), "{msg}");
    // A value of the wrong type is not repeated either: it may be a PIN.
    let (_, msg) = config_error("[profiles.dr]\nso_pin_source = 987654\n");
    assert!(!msg.contains("987654"), "{msg}");
    let (_, msg) = config_error("[profiles.dr]\nsessions = \"987654\"\n");
    assert!(!msg.contains("987654"), "{msg}");
    let (line, msg) = config_error("[profiles.dr]\npin_source = \"PIN:4321\"\n");
    assert_eq!(line.as_deref(), Some("2"));
    assert!(!msg.contains("4321"), "{msg}");
}
