//! BYOK export, byte-verified: the test puts a key value it knows into the
//! token (or generates a key pair there), plays the cloud with a software RSA
//! key, runs `hsmkey byok`, and unwraps the output in software (`rsa` for
//! OAEP, `aes-kw` for RFC 5649) to compare with what the token holds.

mod common;
mod next_steps;

use std::path::{Path, PathBuf};

use aes_kw::KekAes256;
use common::{code, Kind, TestToken};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde_json::Value;

const AES_VALUE: [u8; 32] = [
    0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
    0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
];
const AES128_VALUE: [u8; 16] = [0x2b; 16];
const HMAC_VALUE: [u8; 32] = [0x0b; 32];

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/byok")
}

fn cloud_private(bits: u32) -> RsaPrivateKey {
    let pem = std::fs::read_to_string(vectors().join(format!("cloud-rsa-{bits}.pem"))).unwrap();
    RsaPrivateKey::from_pkcs8_pem(&pem).unwrap()
}

fn cloud_public(bits: u32) -> String {
    vectors()
        .join(format!("cloud-rsa-{bits}.pub.pem"))
        .display()
        .to_string()
}

fn put_known(t: &TestToken, label: &str, key_type: KeyType, value: &[u8], extractable: bool) {
    t.put_secret(vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(label.as_bytes().to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(extractable),
        Attribute::Value(value.to_vec()),
    ]);
}

/// A token with the keys every BYOK test uses.
fn token() -> TestToken {
    let t = TestToken::new();
    put_known(&t, "aes", KeyType::AES, &AES_VALUE, true);
    put_known(&t, "aes128", KeyType::AES, &AES128_VALUE, true);
    put_known(&t, "hmac", KeyType::GENERIC_SECRET, &HMAC_VALUE, true);
    put_known(&t, "locked", KeyType::AES, &AES_VALUE, false);
    t.generate("rsa", "rsa-2048", "any");
    t.generate("ec", "ec-p256", "any");
    t
}

fn oaep_decrypt(private: &RsaPrivateKey, hash: &str, data: &[u8]) -> Vec<u8> {
    let padding = match hash {
        "sha1" => Oaep::new::<sha1::Sha1>(),
        "sha224" => Oaep::new::<rsa::sha2::Sha224>(),
        "sha256" => Oaep::new::<rsa::sha2::Sha256>(),
        "sha384" => Oaep::new::<rsa::sha2::Sha384>(),
        _ => Oaep::new::<rsa::sha2::Sha512>(),
    };
    private
        .decrypt(padding, data)
        .expect("OAEP decrypts with the cloud's private key")
}

/// Unwrap an RSA-AES blob: OAEP(ephemeral AES-256) || RFC 5649(key).
fn rsa_aes_unwrap(private: &RsaPrivateKey, hash: &str, blob: &[u8]) -> Vec<u8> {
    let k = private.size();
    assert!(
        blob.len() > k,
        "the RSA part comes first and is exactly the modulus size"
    );
    let ephemeral = oaep_decrypt(private, hash, &blob[..k]);
    assert_eq!(ephemeral.len(), 32, "AES-256 ephemeral key");
    let kek = KekAes256::new(ephemeral.as_slice().into());
    let kw = &blob[k..];
    let mut out = vec![0u8; kw.len() - 8];
    let n = kek
        .unwrap_with_padding(kw, &mut out)
        .expect("RFC 5649 unwraps")
        .len();
    out.truncate(n);
    out
}

/// The token's public key for a pair, through `hsmkey key public`.
fn token_public_pem(t: &TestToken, label: &str) -> String {
    let path = t.dir.path().join(format!("{label}.pub.pem"));
    let _ = std::fs::remove_file(&path);
    t.json(&["key", "public", label, "--out", path.to_str().unwrap()]);
    std::fs::read_to_string(path).unwrap()
}

/// What a decrypted payload must equal, for each key.
fn check_payload(t: &TestToken, label: &str, payload: &[u8]) {
    match label {
        "aes" => assert_eq!(payload, AES_VALUE),
        "aes128" => assert_eq!(payload, AES128_VALUE),
        "hmac" => assert_eq!(payload, HMAC_VALUE),
        "rsa" => {
            let private = RsaPrivateKey::from_pkcs8_der(payload).expect("PKCS#8 RSA private key");
            let public = RsaPublicKey::from_public_key_pem(&token_public_pem(t, "rsa")).unwrap();
            assert_eq!(
                private.to_public_key(),
                public,
                "matches the token's public key"
            );
        }
        "ec" => {
            let private =
                p256::SecretKey::from_pkcs8_der(payload).expect("PKCS#8 P-256 private key");
            let public = p256::PublicKey::from_public_key_pem(&token_public_pem(t, "ec")).unwrap();
            assert_eq!(
                private.public_key(),
                public,
                "matches the token's public key"
            );
        }
        other => panic!("no expectation for {other}"),
    }
}

enum Outcome {
    Output(Value, Vec<u8>),
    Refused(i32, Value),
}

fn run_byok(
    t: &TestToken,
    label: &str,
    target: &str,
    alg: &str,
    source: (&str, String),
    extra: &[&str],
) -> Outcome {
    let out = t.dir.path().join(format!("{target}-{alg}-{label}.out"));
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(format!("{}.import-token", out.display()));
    let mut cmd = t.cmd();
    cmd.args([
        "byok",
        "--key",
        label,
        "--target",
        target,
        "--algorithm",
        alg,
        source.0,
        &source.1,
    ])
    .args(["--out", out.to_str().unwrap()])
    .args(extra)
    .arg("--json");
    let result = cmd.output().unwrap();
    if result.stdout.is_empty() {
        panic!(
            "JSON on stdout: {}",
            String::from_utf8_lossy(&result.stderr)
        )
    }
    let v: Value = common::documented(&result.stdout);
    if result.status.success() {
        // The printed import command is one the target's CLI takes.
        next_steps::check_result(&v, &next_steps::table());
        Outcome::Output(v, std::fs::read(&out).unwrap())
    } else {
        assert!(!out.exists(), "no output file on refusal");
        Outcome::Refused(result.status.code().unwrap(), v)
    }
}

fn sha256_supported(t: &TestToken) -> bool {
    t.kind != Kind::SoftHsm
}

fn exact_kwp(t: &TestToken) -> bool {
    t.kind != Kind::SoftHsm
}

/// Whether this token can do the pair; when it cannot, the refusal must be
/// the capability error.
fn expect_refusal(t: &TestToken, hash: &str, private_with_kwp: bool) -> bool {
    (hash != "sha1" && !sha256_supported(t)) || (private_with_kwp && !exact_kwp(t))
}

fn verify_or_refused(
    t: &TestToken,
    outcome: Outcome,
    label: &str,
    refuse: bool,
    decode: impl Fn(&Value, &[u8]) -> Vec<u8>,
) {
    match (outcome, refuse) {
        (Outcome::Output(v, bytes), false) => {
            let payload = decode(&v, &bytes);
            check_payload(t, label, &payload);
        }
        (Outcome::Refused(exit, e), true) => {
            assert_eq!((exit, code(&e)), (5, "HK1201"), "{label}: {e}");
        }
        (Outcome::Output(v, _), true) => panic!("{label}: expected the capability error, got {v}"),
        (Outcome::Refused(_, e), false) => panic!("{label}: refused: {e}"),
    }
}

#[test]
fn aws_every_algorithm() {
    let t = token();
    for (alg, hash, rsa_aes) in [
        ("RSAES_OAEP_SHA_1", "sha1", false),
        ("RSAES_OAEP_SHA_256", "sha256", false),
        ("RSA_AES_KEY_WRAP_SHA_1", "sha1", true),
        ("RSA_AES_KEY_WRAP_SHA_256", "sha256", true),
    ] {
        let private = cloud_private(2048);
        let labels: &[&str] = if rsa_aes {
            &["aes", "hmac", "rsa", "ec"]
        } else {
            &["aes", "hmac"]
        };
        for label in labels {
            let private_key = matches!(*label, "rsa" | "ec");
            let outcome = run_byok(
                &t,
                label,
                "aws",
                alg,
                ("--wrapping-key", cloud_public(2048)),
                &[],
            );
            let refuse = expect_refusal(&t, hash, private_key);
            verify_or_refused(&t, outcome, label, refuse, |v, bytes| {
                assert!(v["command"]
                    .as_str()
                    .unwrap()
                    .starts_with("aws kms import-key-material --key-id"));
                if rsa_aes {
                    rsa_aes_unwrap(&private, hash, bytes)
                } else {
                    assert_eq!(
                        bytes.len(),
                        256,
                        "EncryptedKeyMaterial is exactly one RSA block"
                    );
                    oaep_decrypt(&private, hash, bytes)
                }
            });
        }
    }
    // An RSA private key with direct OAEP breaks AWS's rule: refused before the token works.
    match run_byok(
        &t,
        "rsa",
        "aws",
        "RSAES_OAEP_SHA_1",
        ("--wrapping-key", cloud_public(2048)),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1203")),
        Outcome::Output(..) => panic!("accepted"),
    }
    // AES-128 is not AWS key material.
    match run_byok(
        &t,
        "aes128",
        "aws",
        "RSAES_OAEP_SHA_1",
        ("--wrapping-key", cloud_public(2048)),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1203")),
        Outcome::Output(..) => panic!("accepted"),
    }
}

#[test]
fn aws_import_parameters_and_token() {
    let t = token();
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let spki = std::fs::read_to_string(cloud_public(2048)).unwrap();
    let der = RsaPublicKey::from_public_key_pem(&spki).unwrap();
    use rsa::pkcs8::EncodePublicKey;
    let der = der.to_public_key_der().unwrap();
    let params = serde_json::json!({
        "KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
        "ImportToken": b64(b"opaque import token"),
        "PublicKey": b64(der.as_bytes()),
        "ParametersValidTo": 4102444800u64,
    });
    let p = t.dir.path().join("aws-params.json");
    std::fs::write(&p, params.to_string()).unwrap();
    match run_byok(
        &t,
        "aes",
        "aws",
        "RSAES_OAEP_SHA_1",
        ("--import-params", p.display().to_string()),
        &[],
    ) {
        Outcome::Output(v, bytes) => {
            assert_eq!(
                oaep_decrypt(&cloud_private(2048), "sha1", &bytes),
                AES_VALUE
            );
            let token_file = format!("{}.import-token", v["files"][0].as_str().unwrap());
            assert_eq!(std::fs::read(&token_file).unwrap(), b"opaque import token");
            let cmd = v["command"].as_str().unwrap();
            assert!(
                cmd.contains("--key-id 1234abcd-12ab-34cd-56ef-1234567890ab"),
                "{cmd}"
            );
            assert!(
                cmd.contains(&format!("--import-token fileb://{token_file}")),
                "{cmd}"
            );
        }
        Outcome::Refused(_, e) => panic!("{e}"),
    }
    let expired = serde_json::json!({
        "KeyId": "k", "ImportToken": b64(b"t"), "PublicKey": b64(der.as_bytes()), "ParametersValidTo": "2020-01-01T00:00:00Z"
    });
    std::fs::write(&p, expired.to_string()).unwrap();
    match run_byok(
        &t,
        "aes",
        "aws",
        "RSAES_OAEP_SHA_1",
        ("--import-params", p.display().to_string()),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (6, "HK1305")),
        Outcome::Output(..) => panic!("expired parameters accepted"),
    }
}

#[test]
fn gcp_every_method_and_the_key_size_rule() {
    let t = token();
    for (alg, bits, hash, rsa_aes) in [
        ("RSA_OAEP_3072_SHA1_AES_256", 3072, "sha1", true),
        ("RSA_OAEP_4096_SHA1_AES_256", 4096, "sha1", true),
        ("RSA_OAEP_3072_SHA256_AES_256", 3072, "sha256", true),
        ("RSA_OAEP_4096_SHA256_AES_256", 4096, "sha256", true),
        ("RSA_OAEP_3072_SHA256", 3072, "sha256", false),
        ("RSA_OAEP_4096_SHA256", 4096, "sha256", false),
    ] {
        let private = cloud_private(bits);
        let labels: &[&str] = if rsa_aes {
            &["aes", "rsa"]
        } else {
            &["aes128"]
        };
        for label in labels {
            let outcome = run_byok(
                &t,
                label,
                "gcp",
                alg,
                ("--wrapping-key", cloud_public(bits)),
                &[],
            );
            let refuse = expect_refusal(&t, hash, *label == "rsa");
            verify_or_refused(&t, outcome, label, refuse, |v, bytes| {
                assert!(v["command"]
                    .as_str()
                    .unwrap()
                    .contains("--wrapped-key-file"));
                if rsa_aes {
                    rsa_aes_unwrap(&private, hash, bytes)
                } else {
                    oaep_decrypt(&private, hash, bytes)
                }
            });
        }
    }
    // The import job's key size must match the method.
    match run_byok(
        &t,
        "aes",
        "gcp",
        "RSA_OAEP_3072_SHA1_AES_256",
        ("--wrapping-key", cloud_public(2048)),
        &[],
    ) {
        Outcome::Refused(exit, e) => {
            assert_eq!((exit, code(&e)), (5, "HK1203"));
            assert!(e["message"].as_str().unwrap().contains("3072"), "{e}");
        }
        Outcome::Output(..) => panic!("accepted"),
    }
    // Direct OAEP cannot carry an RSA key.
    match run_byok(
        &t,
        "rsa",
        "gcp",
        "RSA_OAEP_3072_SHA256",
        ("--wrapping-key", cloud_public(3072)),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1203")),
        Outcome::Output(..) => panic!("accepted"),
    }
}

#[test]
fn azure_byok_file() {
    let t = token();
    let kid = "https://contoso.vault.azure.net/keys/kek/0123456789abcdef";
    // AES keys go to a Managed HSM only, and a BYOK file to where its KEK is.
    let hsm_kid = "https://myhsm.managedhsm.azure.net/keys/kek/0123456789abcdef";
    let private = cloud_private(3072);
    for (label, kid, kty) in [
        (
            "aes",
            hsm_kid,
            "--hsm-name myhsm --name \"$KEY_NAME\" --byok-file",
        ),
        (
            "rsa",
            kid,
            "--vault-name contoso --name \"$KEY_NAME\" --byok-file",
        ),
        (
            "ec",
            kid,
            "--vault-name contoso --name \"$KEY_NAME\" --byok-file",
        ),
    ] {
        let outcome = run_byok(
            &t,
            label,
            "azure",
            "CKM_RSA_AES_KEY_WRAP",
            ("--wrapping-key", cloud_public(3072)),
            &["--kid", kid],
        );
        let refuse = expect_refusal(&t, "sha1", label != "aes");
        verify_or_refused(&t, outcome, label, refuse, |v, bytes| {
            let command = v["command"].as_str().unwrap();
            assert!(command.contains(kty), "{command}");
            let key_type = match label {
                "aes" => "--kty oct",
                "rsa" => "--kty RSA",
                _ => "--kty EC --curve P-256",
            };
            assert!(command.ends_with(key_type), "{command}");
            let file: Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(file["schema_version"], "1.0.0");
            assert_eq!(file["header"]["kid"], kid);
            assert_eq!(file["header"]["alg"], "dir");
            assert_eq!(file["header"]["enc"], "CKM_RSA_AES_KEY_WRAP");
            let generator = file["generator"].as_str().unwrap();
            assert!(generator.starts_with("hsmkey "), "{generator}");
            assert!(generator.contains("firmware"), "{generator}");
            let ciphertext = file["ciphertext"].as_str().unwrap();
            assert!(
                !ciphertext.contains(['=', '+', '/']),
                "base64url without padding"
            );
            use base64::Engine;
            let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(ciphertext)
                .unwrap();
            rsa_aes_unwrap(&private, "sha1", &blob)
        });
    }
    match run_byok(
        &t,
        "aes",
        "azure",
        "CKM_RSA_AES_KEY_WRAP",
        ("--wrapping-key", cloud_public(3072)),
        &[],
    ) {
        Outcome::Refused(exit, e) => {
            assert_eq!((exit, code(&e)), (2, "HK1007"), "--kid is required")
        }
        Outcome::Output(..) => panic!("accepted without --kid"),
    }
    match run_byok(
        &t,
        "hmac",
        "azure",
        "CKM_RSA_AES_KEY_WRAP",
        ("--wrapping-key", cloud_public(3072)),
        &["--kid", kid],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1203")),
        Outcome::Output(..) => panic!("accepted"),
    }
    // An AES key for a KEK in a Key Vault: Azure would refuse it, so hsmkey does.
    let before = t.object_count();
    match run_byok(
        &t,
        "aes",
        "azure",
        "CKM_RSA_AES_KEY_WRAP",
        ("--wrapping-key", cloud_public(3072)),
        &["--kid", kid],
    ) {
        Outcome::Refused(exit, e) => {
            assert_eq!((exit, code(&e)), (5, "HK1203"));
            let message = e["message"].as_str().unwrap();
            assert!(message.contains("Managed HSM"), "{message}");
        }
        Outcome::Output(..) => panic!("AES accepted for a Key Vault"),
    }
    assert_eq!(t.object_count(), before);
}

/// The human output: the import command, quoted for the shell, and what to
/// set before running it; a path with spaces and shell characters arrives
/// whole.
#[test]
fn the_printed_next_step_runs_as_printed() {
    let t = token();
    let dir = t.dir.path().join("my keys");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("app <v1>; $x.byok");
    let result = t
        .cmd()
        .args(["byok", "--key", "aes", "--target", "azure"])
        .args(["--algorithm", "CKM_RSA_AES_KEY_WRAP"])
        .args(["--wrapping-key", &cloud_public(3072)])
        .args([
            "--kid",
            "https://myhsm.managedhsm.azure.net/keys/kek/0123456789abcdef",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let text = String::from_utf8(result.stdout).unwrap();
    let next = text
        .lines()
        .find_map(|l| l.strip_prefix("next: "))
        .unwrap_or_else(|| panic!("no next: line in {text}"));
    let parsed = next_steps::check(next, &next_steps::table()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed.value("--byok-file").unwrap().literal(),
        Some(out.to_str().unwrap())
    );
    assert_eq!(parsed.value("--kty").unwrap().literal(), Some("oct"));
    assert!(
        text.contains("\n  set KEY_NAME: "),
        "the variable is explained: {text}"
    );
}

fn huawei_params(t: &TestToken, expiration: i64) -> String {
    let spki = std::fs::read_to_string(cloud_public(2048)).unwrap();
    let der = RsaPublicKey::from_public_key_pem(&spki).unwrap();
    use base64::Engine;
    use rsa::pkcs8::EncodePublicKey;
    let params = serde_json::json!({
        "key_id": "0d0466b0-e727-4d9c-b35d-f84bb474a37f",
        "import_token": "AAAAAnRva2Vu",
        "expiration_time": expiration,
        "public_key": base64::engine::general_purpose::STANDARD.encode(der.to_public_key_der().unwrap().as_bytes()),
    });
    let p = t.dir.path().join(format!("huawei-{expiration}.json"));
    std::fs::write(&p, params.to_string()).unwrap();
    p.display().to_string()
}

#[test]
fn huawei_import_material() {
    let t = token();
    let private = cloud_private(2048);
    let params = huawei_params(&t, 4_102_444_800);
    for (alg, hash) in [
        ("RSAES_OAEP_SHA_1", "sha1"),
        ("RSAES_OAEP_SHA_256", "sha256"),
    ] {
        for label in ["aes", "rsa", "ec"] {
            let outcome = run_byok(
                &t,
                label,
                "huawei",
                alg,
                ("--import-params", params.clone()),
                &[],
            );
            let refuse = expect_refusal(&t, hash, label != "aes");
            verify_or_refused(&t, outcome, label, refuse, |v, bytes| {
                let body: Value = serde_json::from_slice(bytes).unwrap();
                assert_eq!(body["key_id"], "0d0466b0-e727-4d9c-b35d-f84bb474a37f");
                assert_eq!(body["import_token"], "AAAAAnRva2Vu");
                use base64::Engine;
                let std = base64::engine::general_purpose::STANDARD;
                let material = std
                    .decode(body["encrypted_key_material"].as_str().unwrap())
                    .unwrap();
                assert_eq!(material.len(), 256);
                let decrypted = oaep_decrypt(&private, hash, &material);
                if label == "aes" {
                    assert!(body.get("encrypted_privatekey").is_none());
                    decrypted
                } else {
                    // Huawei documents 200 to 6144 characters; a shorter one is
                    // said in a note (an EC PKCS#8 without its public key).
                    let chars = body["encrypted_privatekey"].as_str().unwrap().len();
                    let noted = v["notes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|n| n.as_str().unwrap().contains("encrypted_privatekey is"));
                    assert_eq!(
                        noted,
                        chars < 200,
                        "{label}: {chars} characters, notes {}",
                        v["notes"]
                    );
                    eprintln!(
                        "{:?} {label}: encrypted_privatekey {chars} characters",
                        t.kind
                    );
                    // OAEP of a temporary AES-256 key, RFC 5649 of the PKCS#8 under it.
                    let kw = std
                        .decode(body["encrypted_privatekey"].as_str().unwrap())
                        .unwrap();
                    let kek = KekAes256::new(decrypted.as_slice().into());
                    let mut out = vec![0u8; kw.len() - 8];
                    let n = kek.unwrap_with_padding(&kw, &mut out).unwrap().len();
                    out.truncate(n);
                    out
                }
            });
        }
    }
    // Expired parameters, and AES-128, are refused.
    let old = huawei_params(&t, 1_600_000_000);
    match run_byok(
        &t,
        "aes",
        "huawei",
        "RSAES_OAEP_SHA_1",
        ("--import-params", old),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (6, "HK1305")),
        Outcome::Output(..) => panic!("expired parameters accepted"),
    }
    match run_byok(
        &t,
        "aes128",
        "huawei",
        "RSAES_OAEP_SHA_1",
        ("--import-params", params.clone()),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1203")),
        Outcome::Output(..) => panic!("accepted"),
    }
    // Malformed parameters.
    let bad = t.dir.path().join("bad.json");
    std::fs::write(&bad, "{\"key_id\": 5}").unwrap();
    match run_byok(
        &t,
        "aes",
        "huawei",
        "RSAES_OAEP_SHA_1",
        ("--import-params", bad.display().to_string()),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (6, "HK1301")),
        Outcome::Output(..) => panic!("accepted"),
    }
}

#[test]
fn vault_transit_import() {
    let t = token();
    let private = cloud_private(4096);
    for (alg, hash) in [("SHA1", "sha1"), ("SHA256", "sha256"), ("SHA512", "sha512")] {
        for (label, ty) in [
            ("aes", "aes256-gcm96"),
            ("hmac", "hmac"),
            ("rsa", "rsa-2048"),
            ("ec", "ecdsa-p256"),
        ] {
            let outcome = run_byok(
                &t,
                label,
                "vault",
                alg,
                ("--wrapping-key", cloud_public(4096)),
                &[],
            );
            let refuse = expect_refusal(&t, hash, matches!(label, "rsa" | "ec"));
            verify_or_refused(&t, outcome, label, refuse, |_, bytes| {
                let body: Value = serde_json::from_slice(bytes).unwrap();
                assert_eq!(body["hash_function"], alg);
                assert_eq!(body["type"], ty);
                use base64::Engine;
                let blob = base64::engine::general_purpose::STANDARD
                    .decode(body["ciphertext"].as_str().unwrap())
                    .unwrap();
                rsa_aes_unwrap(&private, hash, &blob)
            });
        }
    }
    // Vault's wrapping key is RSA-4096.
    match run_byok(
        &t,
        "aes",
        "vault",
        "SHA1",
        ("--wrapping-key", cloud_public(2048)),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1203")),
        Outcome::Output(..) => panic!("accepted"),
    }
}

#[test]
fn refusals_before_any_wrapping() {
    let t = token();
    let before = t.object_count();
    // A key that may not leave the token.
    match run_byok(
        &t,
        "locked",
        "aws",
        "RSAES_OAEP_SHA_1",
        ("--wrapping-key", cloud_public(2048)),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1202")),
        Outcome::Output(..) => panic!("a non-extractable key was exported"),
    }
    // Malformed PEM.
    let bad = t.dir.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    match run_byok(
        &t,
        "aes",
        "aws",
        "RSAES_OAEP_SHA_1",
        ("--wrapping-key", bad.display().to_string()),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (6, "HK1301")),
        Outcome::Output(..) => panic!("accepted"),
    }
    // An algorithm the target does not know.
    match run_byok(
        &t,
        "aes",
        "aws",
        "RSAES_PKCS1_V1_5",
        ("--wrapping-key", cloud_public(2048)),
        &[],
    ) {
        Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1203")),
        Outcome::Output(..) => panic!("accepted"),
    }
    // No session object is left behind by any of the runs above.
    assert_eq!(t.object_count(), before);
    if t.kind != Kind::Nss {
        // A trusted key cannot go to a cloud: the composition needs an untrusted session key.
        t.json_with_so(&["key", "generate", "--label", "tkek", "--kek", "--trusted"]);
        t.generate("crown", "aes-256", "trusted");
        match run_byok(
            &t,
            "crown",
            "aws",
            "RSAES_OAEP_SHA_1",
            ("--wrapping-key", cloud_public(2048)),
            &[],
        ) {
            Outcome::Refused(exit, e) => assert_eq!((exit, code(&e)), (5, "HK1202")),
            Outcome::Output(..) => panic!("a trusted key was exported"),
        }
    }
}
