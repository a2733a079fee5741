//! The floor hsmkey is measured against (scripts/bench.sh): the tightest
//! loop over cryptoki on the same token, doing the same token work as
//! `hsmkey backup --all --kek`, `restore`, and `key list --json`, with none
//! of hsmkey's checks, formats or safety.
//!
//!   baseline MODULE TOKEN_LABEL backup KEK_LABEL OUT
//!   baseline MODULE TOKEN_LABEL restore KEK_LABEL IN
//!   baseline MODULE TOKEN_LABEL list
//!
//! The user PIN comes from HSMKEY_PIN.

use std::io::{BufRead, BufWriter, Write};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use secrecy::SecretString;

const RECORDED: [AttributeType; 14] = [
    AttributeType::Label,
    AttributeType::Id,
    AttributeType::KeyType,
    AttributeType::ValueLen,
    AttributeType::Encrypt,
    AttributeType::Decrypt,
    AttributeType::Sign,
    AttributeType::Verify,
    AttributeType::Wrap,
    AttributeType::Unwrap,
    AttributeType::Sensitive,
    AttributeType::Extractable,
    AttributeType::WrapWithTrusted,
    AttributeType::CheckValue,
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: baseline MODULE TOKEN_LABEL backup|restore|list [KEK FILE]");
        std::process::exit(2);
    }
    let pkcs11 = Pkcs11::new(&args[1]).expect("module loads");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim_end() == args[2])
        .expect("the token");
    let session = pkcs11.open_rw_session(slot).unwrap();
    let pin = SecretString::from(std::env::var("HSMKEY_PIN").expect("HSMKEY_PIN"));
    session.login(UserType::User, Some(&pin)).unwrap();
    let find_kek = |label: &str| {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap()[0]
    };
    match args[3].as_str() {
        "backup" => {
            let kek = find_kek(&args[4]);
            let mut out = BufWriter::new(std::fs::File::create(&args[5]).unwrap());
            let keys = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Token(true),
                ])
                .unwrap();
            let mut n = 0;
            for key in keys {
                let attrs = session.get_attributes(key, &RECORDED).unwrap();
                let label = attrs.iter().find_map(|a| match a {
                    Attribute::Label(l) => Some(l.clone()),
                    _ => None,
                });
                let extractable = attrs
                    .iter()
                    .any(|a| matches!(a, Attribute::Extractable(true)));
                if !extractable || key == kek {
                    continue;
                }
                let blob = session.wrap_key(&Mechanism::AesKeyWrap, kek, key).unwrap();
                writeln!(
                    out,
                    "{} {}",
                    hex::encode(label.unwrap_or_default()),
                    hex::encode(blob)
                )
                .unwrap();
                n += 1;
            }
            out.flush().unwrap();
            eprintln!("baseline: wrapped {n} keys");
        }
        "restore" => {
            let kek = find_kek(&args[4]);
            let input = std::io::BufReader::new(std::fs::File::open(&args[5]).unwrap());
            let mut n = 0;
            for line in input.lines() {
                let line = line.unwrap();
                let (label, blob) = line.split_once(' ').unwrap();
                let template = [
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Label(hex::decode(label).unwrap()),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ];
                session
                    .unwrap_key(
                        &Mechanism::AesKeyWrap,
                        kek,
                        &hex::decode(blob).unwrap(),
                        &template,
                    )
                    .unwrap();
                n += 1;
            }
            eprintln!("baseline: unwrapped {n} keys");
        }
        "list" => {
            let mut n = 0;
            let mut out = BufWriter::new(std::io::stdout().lock());
            for class in [
                ObjectClass::SECRET_KEY,
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
            ] {
                for key in session
                    .find_objects(&[Attribute::Class(class), Attribute::Token(true)])
                    .unwrap()
                {
                    let attrs = session.get_attributes(key, &RECORDED).unwrap();
                    writeln!(out, "{}", attrs.len()).unwrap();
                    n += 1;
                }
            }
            out.flush().unwrap();
            eprintln!("baseline: listed {n} keys");
        }
        other => panic!("unknown mode {other}"),
    }
}
