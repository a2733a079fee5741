//! `hsmkey serve`'s Huawei routes over HTTP (docs/SERVER.md): KMS import
//! parameters and import of key material the test wrapped (the imported
//! key's KCV is the material's), CSMS backup restored on a second server,
//! AK/SK signatures (bad, stale, wrong SK, unknown AK) and API keys,
//! capabilities, and every error with Huawei's body and code. Huawei's own
//! Python SDK runs against the server in scripts/huawei-sdk-test.sh.

mod common;

use aes::cipher::{BlockEncrypt, KeyInit};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use common::serve::{api_key, audit_lines, clients_toml, Answer, Server};
use common::{TestToken, KEK_VALUE};
use hsmkey::serve::routes::huawei::sign;
use rsa::pkcs8::DecodePublicKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const PARAMS: &str = "/v1.0/0123456789abcdef0123456789abcdef/kms/get-parameters-for-import";
const IMPORT: &str = "/v1.0/0123456789abcdef0123456789abcdef/kms/import-key-material";
const RESTORE: &str = "/v1/0123456789abcdef0123456789abcdef/secrets/restore";
const SDK_AK: &str = "HSMKEYTESTSDK0000001";
const SDK_SK: &str = "sdk-secret-key-for-tests-only-0001";
const WEAK_AK: &str = "HSMKEYTESTSDK0000002";
const WEAK_SK: &str = "sdk-secret-key-for-tests-only-0002";
const MATERIAL: [u8; 32] = [0x5a; 32];

fn backup_path(name: &str) -> String {
    format!("/v1/{PROJECT}/secrets/{name}/backup")
}

/// A token with the CSMS KEK, and a server configuration with the test
/// clients plus two AK/SK clients (their SKs in files).
fn token() -> TestToken {
    let t = TestToken::new();
    t.put_kek("csms-kek", &KEK_VALUE);
    t
}

fn config(t: &TestToken, huawei: &str) -> String {
    let dir = t.dir.path();
    std::fs::write(dir.join("sdk.sk"), format!("{SDK_SK}\n")).unwrap();
    std::fs::write(dir.join("weak.sk"), format!("{WEAK_SK}\n")).unwrap();
    let sha = |k: &str| hex::encode(Sha256::digest(k.as_bytes()));
    format!(
        "{}{huawei}{}[[clients]]\nname = \"sdk\"\napi_key_sha256 = \"{}\"\naccess_key = \"{SDK_AK}\"\nsecret_key_source = \"file:{}\"\ncapabilities = [\"CapImport\", \"CapKeyBackup\", \"CapKeyRestore\"]\n[[clients]]\nname = \"weak\"\napi_key_sha256 = \"{}\"\naccess_key = \"{WEAK_AK}\"\nsecret_key_source = \"file:{}\"\ncapabilities = [\"CapKeyReader\"]\n",
        t.serve_toml(&format!("project_id = \"{PROJECT}\"\n")),
        clients_toml(),
        sha("sdk-api-key-0009"),
        dir.join("sdk.sk").display(),
        sha("weak-api-key-0010"),
        dir.join("weak.sk").display(),
    )
}

fn start(t: &TestToken) -> Server {
    t.serve(&config(t, "[huawei]\ncsms_kek = \"csms-kek\"\n"))
}

/// Sign a POST as the Python SDK does, dated `date` (seconds since 1970).
fn signed(
    s: &Server,
    path: &str,
    body: &[u8],
    ak: &str,
    sk: &str,
    date: i64,
) -> Vec<(String, String)> {
    let host = s.base.trim_start_matches("http://").to_string();
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("host".to_string(), host),
        ("x-project-id".to_string(), PROJECT.to_string()),
        ("x-sdk-date".to_string(), sign::format_date(date)),
    ];
    let refs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let (p, q) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let req = sign::Request {
        method: "POST",
        path: p,
        query: q,
        headers: &refs,
        body,
    };
    let names: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
    let auth = sign::authorization(&req, ak, sk.as_bytes(), &names).unwrap();
    // ureq sends the host and content type itself.
    headers.retain(|(n, _)| n != "host" && n != "content-type");
    headers.push(("authorization".into(), auth));
    headers
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn post_signed(s: &Server, path: &str, body: &[u8]) -> Answer {
    let h = signed(s, path, body, SDK_AK, SDK_SK, now());
    let refs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    s.post(path, &refs, body)
}

fn post_with(s: &Server, path: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    s.post(path, &refs, body)
}

/// KMS's error body, exactly: `{"error": {"error_code", "error_msg"}}`.
fn kms_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    let v = a.json();
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    let e = v["error"].as_object().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(e.len(), 2, "{v}");
    assert_eq!(e["error_code"], code, "{v}");
    assert!(
        e["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

/// CSMS's error body, exactly: `{"error_code", "error_msg"}`.
fn csms_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    let v = a.json();
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert_eq!(v["error_code"], code, "{v}");
    assert!(
        v["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

fn kcv_of(value: &[u8]) -> String {
    let cipher = aes::Aes256::new_from_slice(value).unwrap();
    let mut block = aes::Block::default();
    cipher.encrypt_block(&mut block);
    hex::encode(&block[..3])
}

/// RSA-OAEP SHA-1 of `material` to the parameters' public key: the sender's side.
fn wrap_to(params: &Value, material: &[u8]) -> String {
    let der = B64.decode(params["public_key"].as_str().unwrap()).unwrap();
    let public = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
    let mut rng = rand_core::OsRng;
    let wrapped = public
        .encrypt(&mut rng, rsa::Oaep::new::<sha1::Sha1>(), material)
        .unwrap();
    B64.encode(wrapped)
}

fn params_body(key_id: &str) -> Vec<u8> {
    json!({"key_id": key_id, "wrapping_algorithm": "RSAES_OAEP_SHA_1"})
        .to_string()
        .into_bytes()
}

fn token_kcv(t: &TestToken, label: &str) -> String {
    let keys = t.json(&["key", "show", label]);
    keys["keys"][0]["kcv"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

#[test]
fn kms_import_by_signature_gives_the_material_the_sender_wrapped() {
    let t = token();
    let s = start(&t);
    let key_id = "0d0466b0-e727-4d9c-b35d-f84bb474a37f";
    let got = post_signed(&s, PARAMS, &params_body(key_id));
    assert_eq!(got.status, 200, "{}", got.body);
    let params = got.json();
    let members: Vec<&String> = params.as_object().unwrap().keys().collect();
    assert_eq!(
        members,
        ["expiration_time", "import_token", "key_id", "public_key"]
    );
    assert_eq!(params["key_id"], key_id);
    assert!(params["expiration_time"].as_i64().unwrap() > now());

    let body = json!({
        "key_id": key_id,
        "import_token": params["import_token"],
        "encrypted_key_material": wrap_to(&params, &MATERIAL),
    })
    .to_string();
    let done = post_signed(&s, IMPORT, body.as_bytes());
    assert_eq!(done.status, 200, "{}", done.body);
    let v = done.json();
    assert_eq!(v["key_id"], key_id);
    let want = kcv_of(&MATERIAL);
    assert_eq!(
        v["kcv"],
        want.as_str(),
        "the answer carries the token's KCV"
    );
    // The key's label is the key id; the token computes the material's KCV.
    assert_eq!(token_kcv(&t, key_id), want);

    // Single use, and an imported key id takes no new parameters.
    let before = t.object_count();
    kms_error(&post_signed(&s, IMPORT, body.as_bytes()), 409, "KMS.0310");
    kms_error(
        &post_signed(&s, PARAMS, &params_body(key_id)),
        409,
        "KMS.0310",
    );
    assert_eq!(t.object_count(), before);

    let lines = audit_lines(&t);
    let mine: Vec<&Value> = lines
        .iter()
        .filter(|l| l.to_string().contains("serve huawei kms"))
        .collect();
    assert_eq!(mine.len(), 4, "one line per request");
    assert!(
        mine.iter().all(|l| l.to_string().contains("\"sdk\"")),
        "{mine:?}"
    );
}

#[test]
fn kms_import_by_api_key_in_x_auth_token() {
    let t = token();
    let s = start(&t);
    let key_id = "11111111-2222-3333-4444-555555555555";
    let token_header = [("x-auth-token", api_key("admin"))];
    let got = s.post(PARAMS, &token_header, &params_body(key_id));
    assert_eq!(got.status, 200, "{}", got.body);
    let params = got.json();
    let material = [0x33u8; 32];
    let body = json!({
        "key_id": key_id,
        "import_token": params["import_token"],
        "encrypted_key_material": wrap_to(&params, &material),
        "sequence": "919c82d4-8046-4722-9094-35c3c6524cff",
    })
    .to_string();
    let done = s.post(IMPORT, &token_header, body.as_bytes());
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(token_kcv(&t, key_id), kcv_of(&material));
    // A client without CapImport.
    let reader = [("x-auth-token", api_key("reader"))];
    kms_error(
        &s.post(
            PARAMS,
            &reader,
            &params_body("11111111-2222-3333-4444-666666666666"),
        ),
        403,
        "APIGW.0302",
    );
}

#[test]
fn kms_refuses_bad_stale_and_foreign_signatures_with_401() {
    let t = token();
    let s = start(&t);
    let before = t.object_count();
    let body = params_body("22222222-2222-3333-4444-555555555555");
    // Signed, then the body changed.
    let h = signed(&s, PARAMS, &body, SDK_AK, SDK_SK, now());
    let mut other = body.clone();
    other[10] ^= 1;
    kms_error(&post_with(&s, PARAMS, &h, &other), 401, "APIGW.0301");
    // Signed for another path.
    let h = signed(&s, IMPORT, &body, SDK_AK, SDK_SK, now());
    kms_error(&post_with(&s, PARAMS, &h, &body), 401, "APIGW.0301");
    // Signed twenty minutes ago, or twenty minutes ahead.
    for skew in [-1200, 1200] {
        let h = signed(&s, PARAMS, &body, SDK_AK, SDK_SK, now() + skew);
        let a = post_with(&s, PARAMS, &h, &body);
        kms_error(&a, 401, "APIGW.0301");
        assert!(a.body.contains("X-Sdk-Date"), "{}", a.body);
    }
    // The wrong SK; an unknown AK.
    let h = signed(&s, PARAMS, &body, SDK_AK, WEAK_SK, now());
    kms_error(&post_with(&s, PARAMS, &h, &body), 401, "APIGW.0301");
    let h = signed(&s, PARAMS, &body, "AKUNKNOWN", SDK_SK, now());
    kms_error(&post_with(&s, PARAMS, &h, &body), 401, "APIGW.0301");
    // Nothing at all, an unknown API key, another scheme.
    kms_error(&s.post(PARAMS, &[], &body), 401, "APIGW.0301");
    kms_error(
        &s.post(PARAMS, &[("x-auth-token", "not-a-key")], &body),
        401,
        "APIGW.0301",
    );
    kms_error(
        &s.post(PARAMS, &[("authorization", "Bearer x")], &body),
        401,
        "APIGW.0301",
    );
    // A good signature of a client without CapImport.
    let h = signed(&s, PARAMS, &body, WEAK_AK, WEAK_SK, now());
    kms_error(&post_with(&s, PARAMS, &h, &body), 403, "APIGW.0302");
    assert_eq!(t.object_count(), before);
    let lines = audit_lines(&t);
    assert!(
        lines.iter().any(|l| l.to_string().contains("\"weak\"")),
        "the 403 names its client"
    );
}

#[test]
fn kms_errors_have_huaweis_codes_and_change_nothing() {
    let t = token();
    let s = start(&t);
    let before = t.object_count();
    let p = |body: &[u8]| post_signed(&s, PARAMS, body);
    kms_error(&p(b"not json"), 400, "KMS.0202");
    kms_error(
        &p(br#"{"key_id": "22222222-2222-3333-4444-555555555555"}"#),
        400,
        "KMS.0204",
    );
    kms_error(&p(&params_body("not-a-key-id")), 400, "KMS.0205");
    kms_error(
        &p(br#"{"key_id": "22222222-2222-3333-4444-555555555555", "wrapping_algorithm": "RSAES_OAEP_SHA_1", "sequence": "1"}"#),
        400,
        "KMS.0206",
    );
    kms_error(
        &p(br#"{"key_id": "22222222-2222-3333-4444-555555555555", "wrapping_algorithm": "SM2_ENCRYPT"}"#),
        400,
        "KMS.0308",
    );
    let other_project = PARAMS.replace(PROJECT, "ffffffffffffffffffffffffffffffff");
    kms_error(
        &post_signed(
            &s,
            &other_project,
            &params_body("22222222-2222-3333-4444-555555555555"),
        ),
        404,
        "KMS.0201",
    );
    assert_eq!(t.object_count(), before);

    // Import requests that cannot succeed; the parameters stay usable.
    let key_id = "33333333-2222-3333-4444-555555555555";
    let params = post_signed(&s, PARAMS, &params_body(key_id)).json();
    let after_params = t.object_count();
    let good = json!({"key_id": key_id, "import_token": params["import_token"], "encrypted_key_material": wrap_to(&params, &MATERIAL)});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        post_signed(&s, IMPORT, b.to_string().as_bytes())
    };
    kms_error(
        &with("import_token", json!("hk1.e30.AAAA")),
        400,
        "KMS.0308",
    );
    kms_error(
        &with("key_id", json!("44444444-2222-3333-4444-555555555555")),
        400,
        "KMS.0308",
    );
    kms_error(
        &with("expiration_time", json!(1_900_000_000)),
        400,
        "KMS.0308",
    );
    kms_error(
        &with("encrypted_key_material", json!("not base64!")),
        400,
        "KMS.0308",
    );
    // kryoptic answers an OAEP ciphertext that does not decrypt with
    // CKR_DEVICE_ERROR, which hsmkey reports as the token failing (HK1401)
    // rather than guess (docs/TOKENS.md, "Tokens compared").
    let (status, code) = match common::kind() {
        common::Kind::Kryoptic => (503, "HK1401"),
        _ => (400, "KMS.0311"),
    };
    kms_error(
        &with("encrypted_key_material", json!(B64.encode([7u8; 256]))),
        status,
        code,
    );
    kms_error(&with("key_spec", json!("DES")), 400, "KMS.0308");
    assert_eq!(t.object_count(), after_params);
    let done = post_signed(&s, IMPORT, good.to_string().as_bytes());
    assert_eq!(done.status, 200, "{}", done.body);
}

#[test]
fn csms_backup_restores_on_a_second_server_with_the_same_kcvs() {
    let (a_tok, b_tok) = (token(), token());
    a_tok.generate("payments", "aes-256", "any");
    a_tok.json(&["key", "rotate", "payments"]);
    a_tok.generate("locked", "aes-256", "none");
    let (a, b) = (start(&a_tok), start(&b_tok));
    let got = post_signed(&a, &backup_path("payments"), b"");
    assert_eq!(got.status, 200, "{}", got.body);
    let v = got.json();
    assert_eq!(v.as_object().unwrap().len(), 1, "only secret_blob: {v}");
    let blob = v["secret_blob"].as_str().unwrap();
    assert!(blob.starts_with("hsmkey-blob-v1:"), "{blob}");

    let body = json!({ "secret_blob": blob }).to_string();
    let put = post_signed(&b, RESTORE, body.as_bytes());
    assert_eq!(put.status, 200, "{}", put.body);
    let restored = put.json();
    assert_eq!(restored["secret"]["name"], "payments");
    assert_eq!(restored["secret"]["state"], "ENABLED");
    assert_eq!(restored["secret"]["kms_key_id"], "csms-kek");
    let kcvs = |t: &TestToken| -> Vec<(String, String)> {
        t.json(&["key", "show", "payments"])["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["label"].as_str().unwrap().into(),
                    k["kcv"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(kcvs(&a_tok), kcvs(&b_tok));
    assert_eq!(kcvs(&b_tok).len(), 2, "both versions");

    // Failures: CSMS's shape, exact codes, nothing created.
    let before = b_tok.object_count();
    csms_error(&post_signed(&b, RESTORE, body.as_bytes()), 409, "HK1501");
    csms_error(
        &post_signed(&b, RESTORE, br#"{"secret_blob": "hsmkey-blob-v1:AAAA"}"#),
        400,
        "CSMS.0002",
    );
    csms_error(&post_signed(&b, RESTORE, b"[]"), 400, "CSMS.0004");
    csms_error(
        &post_signed(
            &b,
            &RESTORE.replace(PROJECT, "ffffffffffffffffffffffffffffffff"),
            body.as_bytes(),
        ),
        404,
        "CSMS.0003",
    );
    let reader = [("x-auth-token", api_key("reader"))];
    csms_error(
        &b.post(RESTORE, &reader, body.as_bytes()),
        403,
        "APIGW.0302",
    );
    csms_error(&b.post(RESTORE, &[], body.as_bytes()), 401, "APIGW.0301");
    assert_eq!(b_tok.object_count(), before);
    csms_error(&post_signed(&a, &backup_path("locked"), b""), 409, "HK1202");
    csms_error(
        &post_signed(&a, &backup_path("absent"), b""),
        404,
        "CSMS.0005",
    );
    let vault = [("x-auth-token", api_key("vault"))];
    assert_eq!(a.post(&backup_path("payments"), &vault, b"").status, 200);
    csms_error(
        &a.post(
            &backup_path("payments"),
            &[("x-auth-token", api_key("exporter"))],
            b"",
        ),
        403,
        "APIGW.0302",
    );
}

#[test]
fn csms_without_a_kek_in_the_configuration_is_not_served() {
    let t = token();
    t.generate("payments", "aes-256", "any");
    let s = t.serve(&config(&t, ""));
    csms_error(
        &post_signed(&s, &backup_path("payments"), b""),
        404,
        "CSMS.0003",
    );
}

#[test]
fn huawei_configuration_errors_name_the_key_and_line() {
    let t = token();
    let run = |table: &str| -> (i32, Value) {
        let path = t.dir.path().join("bad.toml");
        std::fs::write(&path, format!("{}[huawei]\n{table}", t.serve_toml(""))).unwrap();
        t.json_err(t.cmd().args(["serve", "--config"]).arg(&path))
    };
    for (table, key) in [
        (
            "wrapping_key_spec = \"RSA_1024\"\n",
            "huawei.wrapping_key_spec",
        ),
        ("params_valid_for = \"90d\"\n", "huawei.params_valid_for"),
        (
            "import_backup_policy = \"always\"\n",
            "huawei.import_backup_policy",
        ),
        ("csms_kek = \"\"\n", "huawei.csms_kek"),
        ("kek = \"x\"\n", "kek"),
    ] {
        let (exit, e) = run(table);
        assert_eq!((exit, common::code(&e)), (2, "HK1010"), "{table}: {e}");
        assert_eq!(e["context"]["key"], key, "{e}");
        assert!(e["context"]["line"].as_str().is_some(), "{e}");
    }
}

#[test]
fn import_parameters_are_single_use_across_two_replicas_on_one_token() {
    let t = token();
    let (a, b) = (start(&t), start(&t));
    let key_id = "55555555-2222-3333-4444-555555555555";
    let params = post_signed(&a, PARAMS, &params_body(key_id)).json();
    let body = json!({
        "key_id": key_id,
        "import_token": params["import_token"],
        "encrypted_key_material": wrap_to(&params, &MATERIAL),
    })
    .to_string();
    // Issued by one replica, used on the other: the state is in the token.
    let done = post_signed(&b, IMPORT, body.as_bytes());
    assert_eq!(done.status, 200, "{}", done.body);
    let before = t.object_count();
    kms_error(&post_signed(&a, IMPORT, body.as_bytes()), 409, "KMS.0310");
    kms_error(&post_signed(&b, IMPORT, body.as_bytes()), 409, "KMS.0310");
    assert_eq!(t.object_count(), before);
    assert_eq!(token_kcv(&t, key_id), kcv_of(&MATERIAL));
}
