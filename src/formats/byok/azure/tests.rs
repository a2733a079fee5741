use super::*;

#[test]
fn byok_file_layout() {
    let f = byok_file(
        "https://v.vault.azure.net/keys/kek/0123",
        &[0xfb, 0xff],
        "hsmkey",
    );
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["schema_version"], "1.0.0");
    assert_eq!(json["header"]["alg"], "dir");
    assert_eq!(json["header"]["enc"], "CKM_RSA_AES_KEY_WRAP");
    assert_eq!(json["ciphertext"], "-_8");
    assert!(check_kid("https://v.vault.azure.net/keys/kek/0123").is_ok());
    assert!(check_kid("https://v.vault.azure.net/keys/kek").is_err());
    assert!(check_kid("kek").is_err());
}
