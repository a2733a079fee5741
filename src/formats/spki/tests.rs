use super::*;

#[test]
fn rsa_round_trips_through_pem_der_and_base64() {
    let mut modulus = vec![0xC5u8; 256];
    modulus[255] = 0x01;
    let key = rsa_from_parts(&modulus, &[1, 0, 1]).unwrap();
    assert_eq!(key.bits, 2048);
    let pem = spki_pem(&key.spki_der).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let from_pem = parse_rsa_public(pem.as_bytes()).unwrap();
    assert_eq!(from_pem.modulus, modulus);
    assert_eq!(from_pem.public_exponent, vec![1, 0, 1]);
    let from_der = parse_rsa_public(&key.spki_der).unwrap();
    assert_eq!(from_der.fingerprint(), key.fingerprint());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key.spki_der);
    assert_eq!(parse_rsa_public(b64.as_bytes()).unwrap().modulus, modulus);
    assert!(
        parse_rsa_public(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err()
    );
    assert!(parse_rsa_public(b"hello world").is_err());
}

#[test]
fn ec_spki_wraps_the_point() {
    let params = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    let mut point = vec![0x04];
    point.extend([7u8; 64]);
    let mut der_point = vec![0x04, 65];
    der_point.extend(&point);
    let a = ec_spki_der(&params, &der_point).unwrap();
    let b = ec_spki_der(&params, &point).unwrap();
    assert_eq!(a, b);
    let parsed = SubjectPublicKeyInfoOwned::from_der(&a).unwrap();
    assert_eq!(parsed.algorithm.oid, ID_EC_PUBLIC_KEY);
    assert_eq!(parsed.subject_public_key.raw_bytes(), &point[..]);
}
