use super::*;

#[test]
fn ckr_names_follow_the_spec() {
    use cryptoki::error::RvError;
    assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
    assert_eq!(ckr_name(RvError::KeyNotWrappable), "CKR_KEY_NOT_WRAPPABLE");
    assert_eq!(ckr_name(RvError::GeneralError), "CKR_GENERAL_ERROR");
}

#[test]
fn codes_are_unique_and_well_formed() {
    let samples = [
        Error::ModuleLoad {
            path: "p".into(),
            reason: "r".into(),
        },
        Error::NoModule { tried: vec![] },
        Error::TokenNotFound {
            selector: "t".into(),
        },
        Error::KeyNotFound { key: "k".into() },
        Error::Ambiguous {
            what: "key",
            selector: "k".into(),
            candidates: vec![],
        },
        Error::MalformedUri {
            uri: "u".into(),
            reason: "r".into(),
        },
        Error::Usage {
            message: "m".into(),
        },
        Error::PinIncorrect { user: "user" },
        Error::PinLocked { user: "user" },
        Error::PinUnavailable {
            user: "user",
            reason: "r".into(),
        },
        Error::PinInArgv { what: "w".into() },
        Error::SoLoginRequired { what: "w".into() },
        Error::UserPinNotInitialized { token: "t".into() },
        Error::NotCapable {
            capability: "c".into(),
            detail: String::new(),
            alternatives: String::new(),
        },
        Error::PolicyRefused {
            key: "k".into(),
            reason: "r".into(),
        },
        Error::BadInput {
            what: "w".into(),
            reason: "r".into(),
        },
        Error::Pkcs11 {
            function: "f".into(),
            rv: "r".into(),
            action: "a".into(),
        },
        Error::AlreadyExists { what: "w".into() },
        Error::Io {
            path: "p".into(),
            source: std::io::Error::other("x"),
        },
        Error::Internal("x".into()),
        Error::WrongUnwrapKey {
            what: "w".into(),
            reason: "r".into(),
        },
        Error::BundleCorrupt { reason: "r".into() },
        Error::UnsupportedFormat { reason: "r".into() },
        Error::BadPassword { reason: "r".into() },
        Error::Interrupted { what: "w".into() },
        Error::TargetRule { rule: "r".into() },
        Error::Expired { what: "w".into() },
        Error::ImportTokenInvalid { reason: "r".into() },
        Error::ImportTokenUsed { key_id: "k".into() },
        Error::Config {
            path: "p".into(),
            line: Some(1),
            reason: "r".into(),
        },
        Error::ProfileNotFound {
            name: "n".into(),
            path: "p".into(),
            known: vec![],
        },
        Error::PasswordUnavailable { reason: "r".into() },
        Error::InputFile {
            what: "w".into(),
            path: "p".into(),
            source: std::io::Error::other("x"),
        },
        ServeError::Config {
            path: "p".into(),
            line: Some(1),
            key: "k".into(),
            reason: "r".into(),
        }
        .into(),
        ServeError::InlineSecret {
            path: "p".into(),
            line: Some(1),
            key: "k".into(),
        }
        .into(),
        ServeError::PlainListen { listen: "l".into() }.into(),
        ServeError::NotServed { what: "w".into() }.into(),
        ServeError::Unauthenticated { reason: "r".into() }.into(),
        ServeError::Forbidden {
            client: "c".into(),
            capability: "k".into(),
        }
        .into(),
        ServeError::Throttled {
            source_addr: "a".into(),
            retry_after: 1,
        }
        .into(),
        ServeError::BodyTooLarge { reason: "r".into() }.into(),
        ServeError::TimedOut { seconds: 1 }.into(),
    ];
    let mut seen = std::collections::HashSet::new();
    for e in &samples {
        let code = e.code();
        assert!(seen.insert(code), "duplicate code {code}");
        assert_eq!(code.len(), 6);
        assert!(code.starts_with("HK") && code[2..].chars().all(|c| c.is_ascii_digit()));
        assert!(!e.hint().is_empty());
        let documented = format!("### {code}:");
        assert!(
            include_str!("../../docs/ERRORS.md").contains(&documented),
            "{code} is not in docs/ERRORS.md"
        );
    }
}
