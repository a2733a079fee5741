use super::*;

fn facts(t: &str, size: u64) -> KeyFacts {
    KeyFacts {
        key_type: t.into(),
        size: Some(size),
    }
}

#[test]
fn unknown_algorithms_name_the_valid_ones() {
    let e = plan(Target::Aws, "RSAES_PKCS1_V1_5").unwrap_err();
    assert!(e.0.contains("RSAES_OAEP_SHA_256"), "{e}");
    assert!(plan(Target::Gcp, "RSA_OAEP_2048_SHA256").is_err());
}

#[test]
fn wrapping_key_size_is_checked_against_the_method() {
    let p = plan(Target::Gcp, "RSA_OAEP_3072_SHA256_AES_256").unwrap();
    assert!(check(&p, &facts("aes", 256), 3072).is_ok());
    let e = check(&p, &facts("aes", 256), 4096).unwrap_err();
    assert!(e.0.contains("3072 bits"), "{e}");
    let v = plan(Target::Vault, "SHA256").unwrap();
    assert!(
        check(&v, &facts("aes", 256), 2048).is_err(),
        "vault's wrapping key is RSA-4096"
    );
}

#[test]
fn private_keys_need_rsa_aes() {
    let p = plan(Target::Aws, "RSAES_OAEP_SHA_256").unwrap();
    assert!(check(&p, &facts("rsa", 2048), 2048)
        .unwrap_err()
        .0
        .contains("RSA-AES"));
    let p = plan(Target::Aws, "RSA_AES_KEY_WRAP_SHA_256").unwrap();
    assert!(check(&p, &facts("rsa", 2048), 2048).is_ok());
    let p = plan(Target::Gcp, "RSA_OAEP_4096_SHA256").unwrap();
    assert!(check(&p, &facts("rsa", 2048), 4096).is_err());
}

#[test]
fn per_target_key_types() {
    let aws = plan(Target::Aws, "RSAES_OAEP_SHA_1").unwrap();
    assert!(check(&aws, &facts("aes", 128), 2048)
        .unwrap_err()
        .0
        .contains("256-bit"));
    let azure = plan(Target::Azure, "CKM_RSA_AES_KEY_WRAP").unwrap();
    assert!(check(&azure, &facts("generic", 256), 2048).is_err());
    assert!(check(&azure, &facts("ec", 384), 3072).is_ok());
    let huawei = plan(Target::Huawei, "RSAES_OAEP_SHA_256").unwrap();
    assert!(check(&huawei, &facts("aes", 128), 2048).is_err());
    assert!(
        check(&huawei, &facts("rsa", 2048), 2048).is_ok(),
        "huawei: OAEP of a temporary key + KWP"
    );
    let vault = plan(Target::Vault, "SHA512").unwrap();
    assert!(check(&vault, &facts("aes", 192), 4096).is_err());
    assert!(check(&vault, &facts("generic", 256), 4096).is_ok());
}
