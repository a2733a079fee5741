//! Property tests over every parser of outside input (issue #11): random
//! bytes and strings, and random mutations (flipped, inserted and deleted
//! bytes) of valid samples. Each must return Ok or Err and never panic; where
//! there is a simple model of the right answer, the answer is checked too.
//!
//! The case count comes from PROPTEST_CASES (proptest reads it); unset, it is
//! 4096 per property, a few seconds in a debug build, for CI.
//! `scripts/fuzz.sh` runs many more cases in release mode.

use std::io::Cursor;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hsmkey::formats::bundle::{self, BundleReader, Line};
use hsmkey::formats::byok::{self, aws, azure, huawei, Target};
use hsmkey::formats::export_key::ExportKey;
use hsmkey::formats::import_params::{self, Material, TokenPayload};
use hsmkey::formats::{id, password, spki};
use hsmkey::hsm::keys::{self, KeySelector, KeySpec, Usage};
use hsmkey::hsm::pin::PinSource;
use hsmkey::hsm::uri::Pkcs11Uri;
use proptest::prelude::*;

const GOOD_BUNDLE: &[u8] = include_bytes!("vectors/bundle/good_password.bundle");
const GOOD_BLOB: &str = include_str!("vectors/bundle/good_password.blob");
const RSA_PEM: &str = include_str!("vectors/byok/cloud-rsa-2048.pub.pem");
const RSA_PEM_4096: &str = include_str!("vectors/byok/cloud-rsa-4096.pub.pem");

const URIS: &[&str] = &[
    "pkcs11:token=prod;object=k%20ey;id=%01%02;type=secret-key?pin-source=file:/run/pin&module-path=/usr/lib/softhsm/libsofthsm2.so",
    "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=4731ce94f5af760b;token=a;library-version=2.6;slot-id=3;x-vendor=1",
    "pkcs11:object=kek?pin-value=1234",
    "pkcs11:",
];

const TIMES: &[&str] = &[
    "2026-11-26T10:00:00+01:00",
    "2026-11-22T08:00:00.123000+00:00",
    "2026-11-22T08:00:00Z",
    "1970-01-01T00:00:00",
];

/// Bytes that matter to the parsers: JSON and URI structure, base64,
/// separators, and the start of multi-byte UTF-8 (the +0é00 panic).
const INTERESTING: &[u8] = b"\"{}[]:,;=&?%+-./0123456789Zz \n\r\t\\\x00\xc3\xa9\xff\xe2\x82";

fn rsa_der() -> Vec<u8> {
    let body: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![any::<u8>(), proptest::sample::select(INTERESTING)];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        match *e {
            Edit::Flip(i, b) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] = if bytes[i] == b { b ^ 0x01 } else { b };
            }
            Edit::Insert(i, b) => {
                let i = i % (bytes.len() + 1);
                bytes.insert(i, b);
            }
            Edit::Delete(i) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}

/// One to eight edits of `sample`.
fn mutated(sample: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(edit(), 1..8).prop_map(move |edits| apply(sample.clone(), &edits))
}

/// A mutation of one of `samples`, as text (invalid UTF-8 replaced).
fn mutated_text(samples: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(samples)
        .prop_flat_map(|s| mutated(s.as_bytes().to_vec()))
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Read a whole bundle; the structure rules hold on whatever is accepted.
fn read_bundle(bytes: &[u8]) -> Result<u64, bundle::BundleError> {
    let mut reader = BundleReader::new(Cursor::new(bytes));
    let mut keys = 0u64;
    let mut lines = 0u64;
    while let Some(line) = reader.next_line()? {
        lines += 1;
        assert_eq!(line.number, lines);
        assert!(line.bytes.len() <= bundle::MAX_LINE);
        assert_eq!(line.bytes.last(), Some(&b'\n'));
        match line.line {
            Line::Header(_) => assert_eq!(lines, 1, "a header only first"),
            Line::Key(_) => keys += 1,
            Line::Trailer(t) => assert_eq!(t.entries, keys, "the count was checked"),
        }
    }
    Ok(keys)
}

fn aws_params(valid_to: &str) -> Vec<u8> {
    format!(
        r#"{{"KeyId":"arn:aws:kms:eu-west-1:111122223333:key/0d0466b0-e727-4d9c-b35d-f84bb474a37f","ImportToken":"AAECAwQFBgcICQ==","PublicKey":"{}","ParametersValidTo":{valid_to}}}"#,
        STANDARD.encode(rsa_der())
    )
    .into_bytes()
}

fn huawei_params() -> Vec<u8> {
    format!(
        r#"{{"key_id":"0d0466b0-e727-4d9c-b35d-f84bb474a37f","import_token":"Z3Vlc3M=","expiration_time":1795334400,"public_key":"{}"}}"#,
        STANDARD.encode(rsa_der())
    )
    .into_bytes()
}

fn sample_payload() -> TokenPayload {
    TokenPayload {
        v: 1,
        key_id: "0d0466b0-e727-4d9c-b35d-f84bb474a37f".into(),
        algorithm: "RSAES_OAEP_SHA_256".into(),
        spki_sha256: "ab".repeat(32),
        expires: 1_795_334_400,
    }
}

fn material_json() -> Vec<u8> {
    let token = import_params::encode_token(&sample_payload(), &[7; 32]).unwrap();
    format!(
        r#"{{"key_id":"0d0466b0-e727-4d9c-b35d-f84bb474a37f","import_token":"{token}","encrypted_key_material":"AQIDBAUGBwg=","encrypted_privatekey":"CQoLDA=="}}"#
    )
    .into_bytes()
}

fn export_key_json() -> Vec<u8> {
    br#"{"export_key":"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY","algorithm":"rfc3394","key_type":"aes","size":128,"kcv":"a1b2c3","kcv_method":"aes-ecb-zero","kek_label":"kek","kek_kcv":null}"#.to_vec()
}

fn check_aws(bytes: &[u8]) {
    if let Ok(p) = aws::ImportParameters::parse(bytes) {
        let _ = p.import_token();
        let _ = p.public_key_der().map(|der| spki::parse_rsa_public(&der));
        let _ = p.valid_to();
    }
}

fn check_huawei(bytes: &[u8]) {
    if let Ok(p) = huawei::ImportParameters::parse(bytes) {
        assert!(huawei::valid_key_id(&p.key_id));
        assert!(!p.import_token.is_empty());
        let _ = p.public_key_der().map(|der| spki::parse_rsa_public(&der));
    }
}

fn check_material(bytes: &[u8]) {
    if let Ok(m) = Material::parse(bytes) {
        let _ = m.key_material();
        let _ = m.private_key();
        let _ = import_params::decode_token(&m.import_token);
    }
}

fn check_rsa(bytes: &[u8]) {
    if let Ok(k) = spki::parse_rsa_public(bytes) {
        assert!(k.bits > 0);
        assert_eq!(k.fingerprint().len(), 64);
        // What was accepted re-reads to the same key from its canonical DER.
        let again = spki::parse_rsa_public(&k.spki_der).unwrap();
        assert_eq!(again.modulus, k.modulus);
        assert_eq!(again.public_exponent, k.public_exponent);
    }
}

/// A parsed URI prints in canonical form, which parses to the same text.
fn check_uri(s: &str) {
    if let Ok(u) = Pkcs11Uri::parse(s) {
        let text = u.to_string();
        let again = Pkcs11Uri::parse(&text)
            .unwrap_or_else(|e| panic!("{s:?} printed as {text:?}, which fails: {e}"));
        assert_eq!(again.to_string(), text, "from {s:?}");
        if u.pin_value.is_some() {
            assert!(!text.contains("pin-value"), "never printed: {text}");
        }
    }
    let _ = KeySelector::parse(s);
}

fn check_pin_source(s: &str, secret: &str) {
    match s.parse::<PinSource>() {
        Ok(_) => {
            let known = s == "prompt"
                || s == "empty"
                || ["env:", "file:", "pin:"].iter().any(|p| s.starts_with(p));
            assert!(known, "{s:?} accepted");
        }
        Err(e) => {
            assert_eq!(e.code(), "HK1007");
            let shown = format!("{e} {:?} {}", e.context(), e.hint());
            assert!(!shown.contains(secret), "{s:?} echoed in {shown}");
        }
    }
}

/// The password rule as stated in docs: 6 to 255 characters, each an ASCII
/// letter, digit or punctuation.
fn password_model(p: &str) -> bool {
    (6..=255).contains(&p.chars().count())
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation())
}

#[test]
fn the_samples_are_valid() {
    assert_eq!(read_bundle(GOOD_BUNDLE).unwrap(), 3);
    let blob = bundle::decode_blob(GOOD_BLOB).unwrap();
    read_bundle(&blob).unwrap();
    for u in URIS {
        Pkcs11Uri::parse(u).unwrap();
    }
    for t in TIMES {
        assert!(aws::parse_iso8601(t).is_some(), "{t}");
    }
    let p = aws::ImportParameters::parse(&aws_params("\"2026-11-26T10:00:00+00:00\"")).unwrap();
    assert_eq!(p.valid_to(), Some(1_795_687_200));
    spki::parse_rsa_public(&p.public_key_der().unwrap()).unwrap();
    huawei::ImportParameters::parse(&huawei_params()).unwrap();
    let m = Material::parse(&material_json()).unwrap();
    assert_eq!(
        import_params::decode_token(&m.import_token).unwrap().0,
        sample_payload()
    );
    ExportKey::parse(&export_key_json()).unwrap();
    spki::parse_rsa_public(RSA_PEM.as_bytes()).unwrap();
    spki::parse_rsa_public(&rsa_der()).unwrap();
    azure::check_kid("https://v.vault.azure.net/keys/kek/0123456789abcdef").unwrap();
}

/// Issue #11: `2026-11-26T10:00:00+0é00` panicked (exit 101) in the
/// hand-written date parser.
#[test]
fn regression_a_non_ascii_offset() {
    assert_eq!(aws::parse_iso8601("2026-11-26T10:00:00+0é00"), None);
    let p = aws::ImportParameters::parse(&aws_params("\"2026-11-26T10:00:00+0é00\"")).unwrap();
    assert_eq!(p.valid_to(), None);
}

/// 4096 cases per property unless PROPTEST_CASES says otherwise.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 4096;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    // Bundles: the whole file, mutated, through the line reader.
    #[test]
    fn bundle_mutations(bytes in mutated(GOOD_BUNDLE.to_vec())) {
        let _ = read_bundle(&bytes);
        let _ = bundle::is_blob(&bytes);
    }

    #[test]
    fn bundle_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_bundle(&bytes);
    }

    #[test]
    fn bundle_random_lines(lines in proptest::collection::vec("[ -~]{0,200}", 0..6)) {
        let text = lines.join("\n");
        let _ = read_bundle(text.as_bytes());
    }

    // Blobs: mutated text, then the decoded bundle.
    #[test]
    fn blob_mutations(bytes in mutated(GOOD_BLOB.as_bytes().to_vec())) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(decoded) = bundle::decode_blob(&text) {
            let _ = read_bundle(&decoded);
        }
    }

    #[test]
    fn blob_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert_eq!(bundle::decode_blob(&bundle::encode_blob(&bytes)).unwrap(), bytes);
    }

    // PKCS#11 URIs and KEY arguments.
    #[test]
    fn uri_mutations(s in mutated_text(URIS)) {
        check_uri(&s);
    }

    #[test]
    fn uri_random(s in "(?i:pkcs11:)[a-z%0-9A-F;=?&:/._ é-]{0,60}") {
        check_uri(&s);
    }

    #[test]
    fn uri_any_string(s in any::<String>()) {
        check_uri(&s);
    }

    // Import material, import tokens, export-key documents.
    #[test]
    fn material_mutations(bytes in mutated(material_json())) {
        check_material(&bytes);
    }

    #[test]
    fn material_random(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_material(&bytes);
        let _ = ExportKey::parse(&bytes);
    }

    #[test]
    fn import_token_round_trip(
        key_id in any::<String>(),
        algorithm in any::<String>(),
        expires in any::<i64>(),
        mac in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let payload = TokenPayload { key_id, algorithm, expires, ..sample_payload() };
        let token = import_params::encode_token(&payload, &mac).unwrap();
        let (back, bytes, mac_back) = import_params::decode_token(&token).unwrap();
        prop_assert_eq!(back, payload.clone());
        prop_assert_eq!(bytes, payload.encode().unwrap());
        prop_assert_eq!(mac_back, mac);
    }

    #[test]
    fn import_token_text(s in mutated_text(&["hk1.eyJ2IjoxfQ.AAEC", "hk1..", "hk1.e30.e30"])) {
        let _ = import_params::decode_token(&s);
    }

    #[test]
    fn export_key_mutations(bytes in mutated(export_key_json())) {
        let _ = ExportKey::parse(&bytes);
    }

    // BYOK inputs: AWS and Huawei import parameters, the AWS date, Azure kid.
    #[test]
    fn aws_params_mutations(bytes in mutated(aws_params("\"2026-11-26T10:00:00.123000+01:00\""))) {
        check_aws(&bytes);
    }

    #[test]
    fn aws_params_numeric_time(bytes in mutated(aws_params("1795334400.5"))) {
        check_aws(&bytes);
    }

    #[test]
    fn aws_time_mutations(s in mutated_text(TIMES)) {
        let _ = aws::parse_iso8601(&s);
    }

    #[test]
    fn aws_time_any_string(s in any::<String>()) {
        let _ = aws::parse_iso8601(&s);
    }

    /// Every valid RFC 3339 time, whatever its offset, is read to the second.
    #[test]
    fn aws_time_model(
        secs in 0i64..4_102_444_800,
        offset_min in -(23 * 60 + 59)..=(23 * 60 + 59i64),
        fraction in proptest::option::of(0u32..1_000_000),
    ) {
        let local = secs + offset_min * 60;
        let civil = jiff::Timestamp::from_second(local).unwrap().strftime("%Y-%m-%dT%H:%M:%S").to_string();
        let frac = fraction.map(|f| format!(".{f:06}")).unwrap_or_default();
        let sign = if offset_min < 0 { '-' } else { '+' };
        let off = offset_min.abs();
        let text = format!("{civil}{frac}{sign}{:02}:{:02}", off / 60, off % 60);
        prop_assert_eq!(aws::parse_iso8601(&text), Some(secs), "{}", text);
    }

    #[test]
    fn huawei_params_mutations(bytes in mutated(huawei_params())) {
        check_huawei(&bytes);
    }

    #[test]
    fn json_random(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_aws(&bytes);
        check_huawei(&bytes);
    }

    #[test]
    fn azure_kid(s in mutated_text(&["https://v.vault.azure.net/keys/kek/0123456789abcdef", "https://h.managedhsm.azure.net/keys/k/1"])) {
        let _ = azure::check_kid(&s);
        let _ = azure::destination(&s);
        let _ = azure::next_step(&s, &hsmkey::formats::byok::KeyFacts { key_type: "ec".into(), size: Some(384) }).render("f");
    }

    #[test]
    fn byok_algorithm_names(s in any::<String>()) {
        for target in [Target::Aws, Target::Gcp, Target::Azure, Target::Huawei, Target::Vault] {
            if byok::plan(target, &s).is_ok() {
                prop_assert!(byok::algorithms(target).contains(&s.as_str()));
            }
        }
    }

    // Public keys: PEM, DER, base64 DER.
    #[test]
    fn pem_mutations(bytes in proptest::sample::select(&[RSA_PEM, RSA_PEM_4096][..]).prop_flat_map(|p| mutated(p.as_bytes().to_vec()))) {
        check_rsa(&bytes);
    }

    #[test]
    fn der_mutations(bytes in mutated(rsa_der())) {
        check_rsa(&bytes);
    }

    #[test]
    fn base64_der_mutations(bytes in mutated(STANDARD.encode(rsa_der()).into_bytes())) {
        check_rsa(&bytes);
    }

    #[test]
    fn public_key_random(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_rsa(&bytes);
        let mut der = vec![0x30];
        der.extend(&bytes);
        check_rsa(&der);
    }

    #[test]
    fn ec_parts(params in proptest::collection::vec(any::<u8>(), 0..40), point in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = spki::ec_spki_der(&params, &point);
    }

    // Command-line values: PIN sources, ids, durations, passwords, names.
    #[test]
    fn pin_source_never_echoes(
        scheme in "[A-Za-z]{0,8}",
        sep in proptest::sample::select(&[":", "=", "", " ", "::", ": "][..]),
        pin in "[0-9]{4,12}",
    ) {
        let s = format!("{scheme}{sep}{pin}");
        check_pin_source(&s, &pin);
    }

    #[test]
    fn pin_source_any_string(s in any::<String>()) {
        let _ = s.parse::<PinSource>();
    }

    #[test]
    fn ids(s in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 1..64)) {
        let _ = id::parse_id(&s);
        prop_assert_eq!(id::parse_id(&hex::encode(&bytes)).unwrap(), bytes.clone());
        prop_assert_eq!(id::parse_id(&format!("0x{}", hex::encode(&bytes))).unwrap(), bytes);
    }

    #[test]
    fn durations(s in "[0-9]{0,25}[smhdw é]?", n in 1i64..=30, unit in proptest::sample::select(&[("s", 1i64), ("m", 60), ("h", 3600), ("d", 86_400)][..])) {
        if let Ok(secs) = import_params::parse_duration(&s) {
            prop_assert!((1..=30 * 86_400).contains(&secs));
        }
        let text = format!("{}{}", n * 86_400 / unit.1, unit.0);
        prop_assert_eq!(import_params::parse_duration(&text).unwrap(), n * 86_400 / unit.1 * unit.1);
    }

    #[test]
    fn durations_any_string(s in any::<String>()) {
        let _ = import_params::parse_duration(&s);
    }

    #[test]
    fn passwords(p in any::<String>(), q in "[ -~é]{0,300}") {
        for pw in [&p, &q] {
            let verdict = password::check(pw, password::Policy::Vsp);
            prop_assert_eq!(verdict.is_ok(), password_model(pw), "{:?}", pw);
        }
    }

    #[test]
    fn password_errors_never_show_it(pw in "[a-z]{4,12} [a-z]{4,12}") {
        let reason = password::check(&pw, password::Policy::Vsp).unwrap_err();
        prop_assert!(!reason.contains(&pw));
        if let Err(reason) = password::check(&pw, password::Policy::Strength) {
            prop_assert!(!reason.contains(&pw));
        }
    }

    #[test]
    fn key_names_and_flags(s in any::<String>()) {
        let _ = keys::split_version(&s);
        let _ = keys::validate_name(&s);
        let _ = KeySelector::parse(&s);
        let _ = s.parse::<Usage>();
        let _ = s.parse::<KeySpec>();
        let _ = huawei::valid_key_id(&s);
    }
}
