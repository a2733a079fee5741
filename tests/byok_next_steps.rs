//! The import commands `hsmkey byok` prints, for every target and every key
//! type it accepts, checked against the target CLI's documented flags
//! (tests/vectors/byok/next-step-clis.json, with the URL each list comes
//! from): split as a POSIX shell splits them (no placeholder may be a
//! redirect), every flag documented, the required ones present, values
//! allowed; and the output path, however odd, arrives as one exact word.
//! tests/byok.rs checks the commands of real runs the same way.

mod next_steps;

use hsmkey::formats::byok::{self, aws, azure, gcp, huawei, next_step::NextStep, vault};
use hsmkey::formats::byok::{KeyFacts, Target};
use next_steps::{check, shell_words, table, Parsed};

fn facts(key_type: &str, size: u64) -> KeyFacts {
    KeyFacts {
        key_type: key_type.into(),
        size: Some(size),
    }
}

/// Every key hsmkey can export.
fn all_keys() -> Vec<KeyFacts> {
    vec![
        facts("aes", 128),
        facts("aes", 192),
        facts("aes", 256),
        facts("generic", 256),
        facts("rsa", 2048),
        facts("rsa", 3072),
        facts("rsa", 4096),
        facts("ec", 256),
        facts("ec", 384),
    ]
}

/// Whether some algorithm of the target takes this key.
fn accepted(target: Target, key: &KeyFacts) -> bool {
    byok::algorithms(target).iter().any(|alg| {
        let plan = byok::plan(target, alg).unwrap();
        byok::check(&plan, key, plan.wrapping_bits[0]).is_ok()
    })
}

/// Output paths a user may give, down to the hostile.
const PATHS: &[&str] = &[
    "app.byok",
    "out/app.bin",
    "my keys/app 1.bin",
    "it's.json",
    "a<version>b;c|d&e.bin",
    "$HOME/`id`/x!y.bin",
    "-dash.bin",
    "~/x*.bin",
    "#not-a-comment.bin",
];

/// The word the CLI must receive for the output file.
fn file_word(out: &str) -> String {
    if out.starts_with('-') {
        format!("./{out}")
    } else {
        out.to_string()
    }
}

fn checked(step: &NextStep, out: &str) -> Parsed {
    let line = step.render(out);
    let parsed = check(&line, &table()).unwrap_or_else(|e| panic!("{e}\n  in: {line}"));
    assert_eq!(
        parsed.vars.iter().cloned().collect::<Vec<_>>(),
        step.variables.keys().cloned().collect::<Vec<_>>(),
        "every variable used is explained, and only those: {line}"
    );
    if !out.contains(['<', '>']) {
        assert!(!line.contains(['<', '>']), "no <PLACEHOLDER>: {line}");
    }
    parsed
}

fn value<'a>(p: &'a Parsed, flag: &str) -> &'a str {
    &p.value(flag)
        .unwrap_or_else(|| panic!("{flag} missing"))
        .text
}

#[test]
fn the_table_names_its_sources() {
    let t = table();
    let names: Vec<String> = t.commands.iter().map(|c| c.argv.join(" ")).collect();
    assert_eq!(
        names,
        [
            "aws kms import-key-material",
            "gcloud kms keys versions import",
            "az keyvault key import",
            "curl",
            "vault write"
        ]
    );
    for c in &t.commands {
        assert!(c.source.starts_with("https://"), "{:?}", c.argv);
        assert!(!c.checked.is_empty(), "{:?}", c.argv);
        for (flag, kind) in &c.flags {
            assert!(
                ["required", "optional", "switch"].contains(&kind.as_str()),
                "{flag}: {kind}"
            );
        }
        for group in &c.one_of {
            assert!(group.iter().all(|f| c.flags.contains_key(f)), "{group:?}");
        }
    }
}

#[test]
fn aws_every_form() {
    for out in PATHS {
        for key_id in [
            Some("1234abcd-12ab-34cd-56ef-1234567890ab"),
            Some("arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            None,
        ] {
            for token in [true, false] {
                let p = checked(&aws::next_step(key_id, token), out);
                assert_eq!(
                    value(&p, "--encrypted-key-material"),
                    format!("fileb://{out}")
                );
                assert_eq!(
                    value(&p, "--key-id"),
                    key_id.map(str::to_string).unwrap_or("${KEY_ID}".into())
                );
                let token_word = value(&p, "--import-token");
                if token {
                    assert_eq!(token_word, format!("fileb://{out}.import-token"));
                } else {
                    assert_eq!(token_word, "fileb://${IMPORT_TOKEN_FILE}");
                }
                assert_eq!(
                    value(&p, "--expiration-model"),
                    "KEY_MATERIAL_DOES_NOT_EXPIRE"
                );
            }
        }
    }
}

#[test]
fn gcp_every_key_type() {
    for key in all_keys().iter().filter(|k| accepted(Target::Gcp, k)) {
        for out in PATHS {
            let p = checked(&gcp::next_step(key), out);
            assert_eq!(value(&p, "--wrapped-key-file"), file_word(out));
            assert_eq!(value(&p, "--algorithm"), gcp::key_algorithm(key));
        }
    }
}

#[test]
fn azure_names_the_key_type_and_the_vault() {
    let vault_kid = "https://contoso.vault.azure.net/keys/kek/0123456789abcdef";
    let hsm_kid = "https://myhsm.managedhsm.azure.net/keys/kek/0123456789abcdef";
    let mut seen = Vec::new();
    for key in all_keys().iter().filter(|k| accepted(Target::Azure, k)) {
        for kid in [vault_kid, hsm_kid] {
            if azure::accepts_at(kid, key).is_err() {
                assert_eq!((key.key_type.as_str(), kid), ("aes", vault_kid));
                continue;
            }
            for out in PATHS {
                let p = checked(&azure::next_step(kid, key), out);
                assert_eq!(value(&p, "--byok-file"), file_word(out));
                let (kty, curve) = match (key.key_type.as_str(), key.size) {
                    ("ec", Some(256)) => ("EC", Some("P-256")),
                    ("ec", Some(384)) => ("EC", Some("P-384")),
                    ("aes", _) => ("oct", None),
                    _ => ("RSA", None),
                };
                assert_eq!(value(&p, "--kty"), kty, "{key:?}");
                assert_eq!(p.value("--curve").map(|w| w.text.as_str()), curve);
                if kid == hsm_kid {
                    assert_eq!(value(&p, "--hsm-name"), "myhsm");
                } else {
                    assert_eq!(value(&p, "--vault-name"), "contoso");
                }
                assert_eq!(value(&p, "--name"), "${KEY_NAME}");
            }
            seen.push(key.describe());
        }
    }
    for k in ["aes-256", "rsa-2048", "ec-256", "ec-384"] {
        assert!(seen.iter().any(|s| s == k), "{k} not covered: {seen:?}");
    }
}

#[test]
fn huawei_and_vault() {
    for out in PATHS {
        let p = checked(&huawei::next_step(), out);
        assert_eq!(value(&p, "--data-binary"), format!("@{out}"));
        assert_eq!(
            p.bare[0].text,
            "https://kms.${REGION}.myhuaweicloud.com/v1.0/${PROJECT_ID}/kms/import-key-material"
        );
        let headers: Vec<&str> = p
            .flags
            .iter()
            .filter(|(f, _)| f == "-H")
            .map(|(_, v)| v.as_ref().unwrap().text.as_str())
            .collect();
        assert_eq!(
            headers,
            [
                "X-Auth-Token: ${X_AUTH_TOKEN}",
                "Content-Type: application/json"
            ]
        );
        let p = checked(&vault::next_step(), out);
        assert_eq!(p.bare[0].text, "transit/keys/${KEY_NAME}/import");
        assert_eq!(p.bare[1].text, format!("@{out}"));
    }
}

/// The checker itself: what it must refuse.
#[test]
fn the_checker_refuses_what_the_shell_would_not_pass() {
    let t = table();
    // The line of the issue: `<version>` in a command is a redirect.
    let e = check(
        "az keyvault key import --vault-name <VAULT> --name k --byok-file a.byok --kty RSA",
        &t,
    )
    .unwrap_err();
    assert!(e.contains("unquoted '<'"), "{e}");
    for (line, what) in [
        ("aws kms import-key-material --key-id k --encrypted-key-material fileb://a --import-token fileb://b --bogus x", "no flag --bogus"),
        ("aws kms import-key-material --encrypted-key-material fileb://a --import-token fileb://b", "required --key-id"),
        ("aws kms import-key-material --key-id k --encrypted-key-material a --import-token fileb://b", "must start with fileb://"),
        ("aws kms import-key-material --key-id k --encrypted-key-material fileb://a --import-token fileb://b --expiration-model NEVER", "documented values"),
        ("az keyvault key import --vault-name v --hsm-name h --name k --byok-file a --kty RSA", "exactly one of"),
        ("az keyvault key import --vault-name v --name k --byok-file a --kty oct-HSM", "documented values"),
        ("az keyvault key import --vault-name v --name k --byok-file a", "required --kty"),
        ("vault write transit/keys/k/import", "bare argument"),
        ("vault write a b; rm -rf x", "unquoted ';'"),
        ("gcloud kms keys versions import --location l --keyring r --key k --import-job j --algorithm x --wrapped-key-file f", "documented values"),
        ("curl -X POST u -H h --data-binary @f ~x", "home directory"),
        ("kubectl apply", "no CLI"),
    ] {
        let e = check(line, &t).unwrap_err();
        assert!(e.contains(what), "{line}: {e}");
    }
}

#[test]
fn shell_words_are_split_as_sh_splits_them() {
    let w = shell_words(r#"a 'b c' "d $E ${F}g" h\ i 'j'"k""#).unwrap();
    let texts: Vec<&str> = w.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(texts, ["a", "b c", "d ${E} ${F}g", "h i", "jk"]);
    assert_eq!(w[2].vars, ["E", "F"]);
    for bad in [
        "a > b",
        "a $(id)",
        "a `id`",
        "a \"$(id)\"",
        "a *",
        "a 'b",
        "a \"!x\"",
    ] {
        assert!(shell_words(bad).is_err(), "{bad}");
    }
}

/// The checker's reading of each command is the shell's: `sh` is given the
/// very line (with `printf` in front of it) and the variables set, and
/// prints the words it would pass.
#[test]
fn sh_passes_the_words_the_checker_sees() {
    let key = facts("ec", 384);
    let steps = [
        aws::next_step(None, false),
        aws::next_step(Some("k"), true),
        gcp::next_step(&key),
        azure::next_step("https://c.vault.azure.net/keys/k/1", &key),
        huawei::next_step(),
        vault::next_step(),
    ];
    for step in &steps {
        for out in PATHS {
            let line = step.render(out);
            let mut sh = std::process::Command::new("sh");
            sh.arg("-c").arg(format!("printf '%s\\0' {line}"));
            let mut expected = Vec::new();
            for w in shell_words(&line).unwrap() {
                let mut text = w.text.clone();
                for v in &w.vars {
                    text = text.replace(&format!("${{{v}}}"), &format!("[{v} value]"));
                }
                expected.push(text);
            }
            for v in step.variables.keys() {
                sh.env(v, format!("[{v} value]"));
            }
            let got = sh.output().unwrap();
            assert!(got.status.success(), "{line}");
            let words: Vec<String> = String::from_utf8(got.stdout)
                .unwrap()
                .split_terminator('\0')
                .map(str::to_string)
                .collect();
            assert_eq!(words, expected, "{line}");
        }
    }
}
