//! The token as the receiving KMS: an independent sender (software `rsa` and
//! `aes-kw`) wraps key values the test knows to the token's import
//! parameters; `hsmkey import` must create keys with exactly those values
//! (checked by KCV and by encryption), once, and refuse everything forged,
//! expired, replayed or malformed without changing the token.

mod common;

use std::path::{Path, PathBuf};

use aes::cipher::{BlockEncrypt, KeyInit};
use aes_kw::{KekAes128, KekAes256};
use base64::Engine;
use common::{code, Kind, TestToken};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use rsa::{Oaep, RsaPublicKey};
use serde_json::{json, Value};

const AES_VALUE: [u8; 32] = [0x5c; 32];
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn params(t: &TestToken, spec: &str, alg: &str, extra: &[&str]) -> Result<Value, (i32, Value)> {
    let out = t.dir.path().join(format!("params-{}.json", next()));
    let mut cmd = t.cmd();
    cmd.args([
        "import-params",
        "--key-spec",
        spec,
        "--algorithm",
        alg,
        "--out",
        out.to_str().unwrap(),
    ])
    .args(extra);
    let result = cmd.arg("--json").output().unwrap();
    let v: Value = common::documented(&result.stdout);
    if result.status.success() {
        let written: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let mut printed = v.clone();
        let schema = printed.as_object_mut().unwrap().remove("schema");
        assert_eq!(schema, Some(Value::from("hsmkey.import-params.v1")));
        assert_eq!(written, printed, "the file holds what was printed");
        Ok(v)
    } else {
        Err((result.status.code().unwrap(), v))
    }
}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn public_of(p: &Value) -> RsaPublicKey {
    let der = B64.decode(p["public_key"].as_str().unwrap()).unwrap();
    RsaPublicKey::from_public_key_der(&der).unwrap()
}

fn oaep(hash: &str) -> Oaep {
    if hash == "sha1" {
        Oaep::new::<sha1::Sha1>()
    } else {
        Oaep::new::<rsa::sha2::Sha256>()
    }
}

/// What a sender does: wrap `value` to the parameters with `alg`.
fn wrap_for(p: &Value, alg: &str, value: &[u8]) -> Vec<u8> {
    let public = public_of(p);
    let mut rng = rand_core::OsRng;
    let hash = if alg.ends_with("SHA_1") {
        "sha1"
    } else {
        "sha256"
    };
    if alg.starts_with("RSAES_OAEP") {
        public.encrypt(&mut rng, oaep(hash), value).unwrap()
    } else {
        let ephemeral = [0x3au8; 32];
        let mut blob = public.encrypt(&mut rng, oaep(hash), &ephemeral).unwrap();
        let kek = KekAes256::new(&ephemeral.into());
        let mut kw = vec![0u8; value.len().div_ceil(8) * 8 + 8];
        kek.wrap_with_padding(value, &mut kw).unwrap();
        blob.extend(kw);
        blob
    }
}

fn material_file(t: &TestToken, body: &Value) -> PathBuf {
    let path = t.dir.path().join(format!("material-{}.json", next()));
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

fn import(t: &TestToken, material: &Path, label: &str, ty: &str) -> Result<Value, (i32, Value)> {
    let out = t
        .cmd()
        .args([
            "import",
            "--material",
            material.to_str().unwrap(),
            "--label",
            label,
            "--type",
            ty,
            "--json",
        ])
        .output()
        .unwrap();
    let v: Value = common::documented(&out.stdout);
    if out.status.success() {
        Ok(v)
    } else {
        Err((out.status.code().unwrap(), v))
    }
}

fn software_kcv(value: &[u8]) -> String {
    let mut block = aes::Block::default();
    aes::Aes256::new_from_slice(value)
        .unwrap()
        .encrypt_block(&mut block);
    hex::encode(&block[..3])
}

fn sha256_ok(t: &TestToken) -> bool {
    t.kind != Kind::SoftHsm
}

#[test]
fn an_independent_sender_delivers_an_aes_key_with_every_algorithm() {
    let t = TestToken::new();
    for alg in [
        "RSAES_OAEP_SHA_1",
        "RSAES_OAEP_SHA_256",
        "RSA_AES_KEY_WRAP_SHA_1",
        "RSA_AES_KEY_WRAP_SHA_256",
    ] {
        let before = t.object_count();
        let p = match params(&t, "RSA_2048", alg, &[]) {
            Ok(p) => p,
            Err((exit, e)) => {
                assert!(alg.ends_with("SHA_256") && !sha256_ok(&t), "{alg}: {e}");
                assert_eq!((exit, code(&e)), (5, "HK1201"), "{alg}");
                assert_eq!(
                    t.object_count(),
                    before,
                    "{alg}: no key pair left after the refusal"
                );
                continue;
            }
        };
        let key_id = p["key_id"].as_str().unwrap();
        assert!(
            key_id.len() == 36 && key_id.split('-').map(str::len).eq([8, 4, 4, 4, 12]),
            "{key_id}"
        );
        let expires = p["expiration_time"].as_i64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((expires - now - 86_400).abs() < 120, "24 hours by default");
        let material = material_file(
            &t,
            &json!({
                "key_id": key_id,
                "import_token": p["import_token"],
                "encrypted_key_material": B64.encode(wrap_for(&p, alg, &AES_VALUE)),
            }),
        );
        let label = format!("k-{}", alg.to_lowercase());
        let report =
            import(&t, &material, &label, "aes-256").unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(report["parameters_consumed"], true);
        assert_eq!(
            report["keys"][0]["kcv"],
            software_kcv(&AES_VALUE).as_str(),
            "{alg}"
        );
        assert_eq!(report["keys"][0]["sensitive"], true);
        assert_eq!(
            report["keys"][0]["extractable"], false,
            "default policy none"
        );
        // It encrypts as the known value does.
        let mut block = aes::Block::from([0x11u8; 16]);
        let plain = block;
        aes::Aes256::new_from_slice(&AES_VALUE)
            .unwrap()
            .encrypt_block(&mut block);
        let in_token = t.with_session(|s| {
            let h = s
                .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                .unwrap()[0];
            s.encrypt(&Mechanism::AesEcb, h, &plain).unwrap()
        });
        assert_eq!(in_token, block.to_vec(), "{alg}");
        // Single use: the import key pair is gone, the same material is refused.
        let before = t.object_count();
        let (exit, e) = import(&t, &material, "again", "aes-256").unwrap_err();
        assert_eq!((exit, code(&e)), (8, "HK1502"), "{alg}");
        assert_eq!(t.object_count(), before);
    }
}

#[test]
fn private_keys_arrive_as_pkcs8_under_rsa_aes() {
    let t = TestToken::new();
    let software = rsa::RsaPrivateKey::from_pkcs8_pem(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/byok/cloud-rsa-2048.pem"),
        )
        .unwrap(),
    )
    .unwrap();
    let pkcs8 = software.to_pkcs8_der().unwrap();
    let p = params(&t, "RSA_3072", "RSA_AES_KEY_WRAP_SHA_1", &[]).unwrap();
    // AWS style: raw EncryptedKeyMaterial plus the import token in a file.
    let raw = t.dir.path().join("material.bin");
    std::fs::write(
        &raw,
        wrap_for(&p, "RSA_AES_KEY_WRAP_SHA_1", pkcs8.as_bytes()),
    )
    .unwrap();
    let token_file = t.dir.path().join("token.txt");
    std::fs::write(&token_file, p["import_token"].as_str().unwrap()).unwrap();
    let out = t
        .cmd()
        .args([
            "import",
            "--material",
            raw.to_str().unwrap(),
            "--import-token",
            token_file.to_str().unwrap(),
        ])
        .args([
            "--label",
            "imported-rsa",
            "--type",
            "rsa-2048",
            "--usage",
            "sign",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pem_path = t.dir.path().join("imported.pem");
    t.json(&[
        "key",
        "public",
        "imported-rsa",
        "--out",
        pem_path.to_str().unwrap(),
    ]);
    let imported =
        RsaPublicKey::from_public_key_pem(&std::fs::read_to_string(&pem_path).unwrap()).unwrap();
    assert_eq!(
        imported,
        software.to_public_key(),
        "the token holds the sender's key"
    );

    // An EC key in Huawei's shape: OAEP of a temporary key + RFC 5649 of the PKCS#8.
    let secret = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
    let ec_pkcs8 = secret.to_pkcs8_der().unwrap();
    let p = params(&t, "RSA_2048", "RSAES_OAEP_SHA_1", &[]).unwrap();
    let public = public_of(&p);
    let temporary = [0x77u8; 32];
    let material = material_file(
        &t,
        &json!({
            "key_id": p["key_id"],
            "import_token": p["import_token"],
            "encrypted_key_material": B64.encode(public.encrypt(&mut rand_core::OsRng, oaep("sha1"), &temporary).unwrap()),
            "encrypted_privatekey": B64.encode({
                let mut kw = vec![0u8; ec_pkcs8.as_bytes().len().div_ceil(8) * 8 + 8];
                KekAes256::new(&temporary.into()).wrap_with_padding(ec_pkcs8.as_bytes(), &mut kw).unwrap();
                kw
            }),
        }),
    );
    let before = t.object_count();
    match import(&t, &material, "imported-ec", "ec-p256") {
        Ok(r) => {
            assert_ne!(t.kind, Kind::Nss);
            assert_eq!(r["keys"][0]["type"], "ec");
            assert_eq!(r["keys"][0]["size"], 256);
        }
        Err((exit, e)) => {
            // NSS needs the public point, which the material does not carry.
            assert_eq!(t.kind, Kind::Nss, "{e}");
            assert_eq!((exit, code(&e)), (5, "HK1201"));
            assert_eq!(t.object_count(), before);
        }
    }
}

#[test]
fn hsmkey_to_hsmkey_through_huawei_shapes() {
    let (a, b) = (TestToken::new(), TestToken::new());
    a.generate("travel", "aes-256", "any");
    let p = params(&b, "RSA_2048", "RSAES_OAEP_SHA_1", &[]).unwrap();
    let p_file = a.dir.path().join("huawei-params.json");
    std::fs::write(&p_file, p.to_string()).unwrap();
    let material = a.dir.path().join("material.json");
    a.json(&[
        "byok",
        "--key",
        "travel",
        "--target",
        "huawei",
        "--algorithm",
        "RSAES_OAEP_SHA_1",
        "--import-params",
        p_file.to_str().unwrap(),
        "--out",
        material.to_str().unwrap(),
    ]);
    let report = import(&b, &material, "travel", "aes-256").unwrap();
    let source_kcv = a.json(&["key", "show", "travel"])["keys"][0]["kcv"].clone();
    assert_eq!(report["keys"][0]["kcv"], source_kcv);
}

#[test]
fn forged_expired_replayed_and_malformed_requests_change_nothing() {
    let t = TestToken::new();
    let p = params(&t, "RSA_2048", "RSAES_OAEP_SHA_1", &[]).unwrap();
    let good = json!({
        "key_id": p["key_id"],
        "import_token": p["import_token"],
        "encrypted_key_material": B64.encode(wrap_for(&p, "RSAES_OAEP_SHA_1", &AES_VALUE)),
    });
    let refused = |body: Value, ty: &str, want: (i32, &str), what: &str| {
        let before = t.object_count();
        let (exit, e) = import(&t, &material_file(&t, &body), "x", ty).unwrap_err();
        assert_eq!((exit, code(&e)), want, "{what}: {e}");
        assert_eq!(t.object_count(), before, "{what}: token unchanged");
    };
    // An altered import token: one character of its payload changed.
    let token = p["import_token"].as_str().unwrap();
    let mut chars: Vec<char> = token.chars().collect();
    let i = 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let mut forged = good.clone();
    forged["import_token"] = json!(chars.into_iter().collect::<String>());
    refused(forged, "aes-256", (6, "HK1306"), "altered token");
    // A token that is not one at all.
    let mut junk = good.clone();
    junk["import_token"] = json!("AAAAAnRva2Vu");
    refused(junk, "aes-256", (6, "HK1306"), "foreign token");
    // Material for another key id.
    let mut other = good.clone();
    other["key_id"] = json!("00000000-0000-0000-0000-000000000000");
    refused(other, "aes-256", (6, "HK1306"), "unknown key id");
    // A ciphertext of the wrong length for RSA-2048.
    let mut short = good.clone();
    short["encrypted_key_material"] = json!(B64.encode([1u8; 255]));
    refused(short, "aes-256", (6, "HK1301"), "wrong ciphertext length");
    // Key material of the wrong size for the type (16 bytes as aes-256).
    let mut small = good.clone();
    small["encrypted_key_material"] =
        json!(B64.encode(wrap_for(&p, "RSAES_OAEP_SHA_1", &[0x11; 16])));
    refused(small, "aes-256", (6, "HK1301"), "wrong key size");
    // Malformed JSON.
    let bad = t.dir.path().join("bad.json");
    std::fs::write(&bad, "{\"key_id\":").unwrap();
    let (exit, e) = import(&t, &bad, "x", "aes-256").unwrap_err();
    assert_eq!((exit, code(&e)), (6, "HK1301"));
    // The untouched request still imports: the refusals consumed nothing.
    import(&t, &material_file(&t, &good), "finally", "aes-256").unwrap();

    // Expired parameters.
    let short_lived = params(&t, "RSA_2048", "RSAES_OAEP_SHA_1", &["--valid-for", "1s"]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let body = json!({
        "key_id": short_lived["key_id"],
        "import_token": short_lived["import_token"],
        "encrypted_key_material": B64.encode(wrap_for(&short_lived, "RSAES_OAEP_SHA_1", &AES_VALUE)),
    });
    refused(body, "aes-256", (6, "HK1305"), "expired");
    // Bad parameters requests.
    let (exit, e) = params(
        &t,
        "RSA_2048",
        "RSAES_OAEP_SHA_1",
        &["--key-id", "NOT-A-UUID"],
    )
    .unwrap_err();
    assert_eq!((exit, code(&e)), (6, "HK1301"));
    let (exit, e) = params(&t, "RSA_2048", "RSAES_OAEP_SHA_1", &["--valid-for", "1y"]).unwrap_err();
    assert_eq!((exit, code(&e)), (6, "HK1301"));
}

#[test]
fn export_key_unwraps_to_the_known_value() {
    let (a, b, c) = (TestToken::new(), TestToken::new(), TestToken::new());
    let kek_value = [0x0fu8; 16];
    let dek_value: Vec<u8> = (100u8..132).collect();
    let put = |t: &TestToken, label: &str, value: &[u8], extractable: bool, kek: bool| {
        t.put_secret(vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(label.as_bytes().to_vec()),
            Attribute::Sensitive(true),
            Attribute::Extractable(extractable),
            Attribute::Encrypt(true),
            Attribute::Wrap(kek),
            Attribute::Unwrap(kek),
            Attribute::Value(value.to_vec()),
        ]);
    };
    put(&a, "kek", &kek_value, false, true);
    put(&a, "dek", &dek_value, true, false);
    put(&b, "kek", &kek_value, false, true);
    put(&c, "kek", &[0xf0; 16], false, true);
    let doc = a.json(&["export-key", "--key", "dek", "--kek", "kek"]);
    assert_eq!(doc["algorithm"], "rfc3394");
    let wrapped = B64.decode(doc["export_key"].as_str().unwrap()).unwrap();
    let mut unwrapped = vec![0u8; wrapped.len() - 8];
    KekAes128::new(&kek_value.into())
        .unwrap(&wrapped, &mut unwrapped)
        .unwrap();
    assert_eq!(
        unwrapped, dek_value,
        "the export key is the DEK under the KEK"
    );
    let file = b.dir.path().join("export.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let made = b.json(&[
        "import-export-key",
        file.to_str().unwrap(),
        "--kek",
        "kek",
        "--label",
        "dek",
        "--usage",
        "encrypt,decrypt",
    ]);
    assert_eq!(made["keys"][0]["kcv"], doc["kcv"]);
    let file_c = c.dir.path().join("export.json");
    std::fs::write(&file_c, doc.to_string()).unwrap();
    let before = c.object_count();
    let (exit, e) = c.json_err(c.cmd().args([
        "import-export-key",
        file_c.to_str().unwrap(),
        "--kek",
        "kek",
        "--label",
        "dek",
    ]));
    assert_eq!((exit, code(&e)), (4, "HK1107"));
    assert_eq!(c.object_count(), before);
    // A key cannot go under itself, and a non-extractable key cannot be exported.
    let (exit, e) = a.json_err(a.cmd().args(["export-key", "--key", "kek", "--kek", "kek"]));
    assert_eq!((exit, code(&e)), (2, "HK1007"));
    put(&a, "locked", &[0x44; 16], false, false);
    let (exit, e) = a.json_err(
        a.cmd()
            .args(["export-key", "--key", "locked", "--kek", "kek"]),
    );
    assert_eq!((exit, code(&e)), (5, "HK1202"));
    // An edited size or KCV is caught after unwrap, and nothing is kept.
    let mut edited = doc.clone();
    edited["kcv"] = json!("000000");
    std::fs::write(&file, edited.to_string()).unwrap();
    let before = b.object_count();
    let (exit, e) = b.json_err(b.cmd().args([
        "import-export-key",
        file.to_str().unwrap(),
        "--kek",
        "kek",
        "--label",
        "dek2",
        "--usage",
        "encrypt",
    ]));
    assert_eq!((exit, code(&e)), (6, "HK1301"));
    let mut resized = doc.clone();
    resized["size"] = json!(128);
    resized["kcv"] = doc["kcv"].clone();
    std::fs::write(&file, resized.to_string()).unwrap();
    let (exit, e) = b.json_err(b.cmd().args([
        "import-export-key",
        file.to_str().unwrap(),
        "--kek",
        "kek",
        "--label",
        "dek3",
        "--usage",
        "encrypt",
    ]));
    assert_eq!((exit, code(&e)), (6, "HK1301"));
    assert_eq!(b.object_count(), before);
}

#[test]
fn incoming_material_cannot_be_unwrapped_readable_and_keks_are_not_imported() {
    let t = TestToken::new();
    let p = params(&t, "RSA_2048", "RSAES_OAEP_SHA_1", &[]).unwrap();
    let wrapped = wrap_for(&p, "RSAES_OAEP_SHA_1", &AES_VALUE);
    if t.kind != Kind::Nss {
        // With the user PIN alone, the import key will not unwrap a readable copy.
        let label = format!("hsmkey-import-{}", p["key_id"].as_str().unwrap());
        t.with_session(|s| {
            let private = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
                .unwrap()[0];
            let mech = Mechanism::RsaPkcsOaep(cryptoki::mechanism::rsa::PkcsOaepParams::new(
                cryptoki::mechanism::MechanismType::SHA1,
                cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA1,
                cryptoki::mechanism::rsa::PkcsOaepSource::empty(),
            ));
            let readable = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ];
            assert!(s.unwrap_key(&mech, private, &wrapped, &readable).is_err());
        });
    }
    // A key that may unwrap (a KEK) is refused: it would lack a KEK's protections.
    let material = material_file(
        &t,
        &json!({"key_id": p["key_id"], "import_token": p["import_token"], "encrypted_key_material": B64.encode(&wrapped)}),
    );
    let before = t.object_count();
    let out = t
        .cmd()
        .args([
            "import",
            "--material",
            material.to_str().unwrap(),
            "--label",
            "kek",
            "--type",
            "aes-256",
            "--usage",
            "wrap,unwrap",
            "--json",
        ])
        .output()
        .unwrap();
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((out.status.code(), code(&e)), (Some(5), "HK1201"));
    assert_eq!(t.object_count(), before);
    // The parameters were not used up by the refusal.
    import(&t, &material, "plain", "aes-256").unwrap();
}
