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

/// The same keys accepted and the same bytes written as by the `rsa` crate,
/// which did this job before (kept as a dev-dependency): bundles name their
/// recipient by the SHA-256 of these bytes.
mod same_as_the_rsa_crate {
    use super::*;
    use proptest::prelude::*;
    use rsa::pkcs8::EncodePublicKey;

    fn theirs(n: &[u8], e: &[u8]) -> Option<Vec<u8>> {
        let key = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(n),
            rsa::BigUint::from_bytes_be(e),
        )
        .ok()?;
        Some(key.to_public_key_der().ok()?.as_bytes().to_vec())
    }

    fn check(n: &[u8], e: &[u8]) {
        let ours = rsa_from_parts(n, e).ok().map(|k| k.spki_der);
        assert_eq!(
            ours,
            theirs(n, e),
            "n={} e={}",
            hex::encode(n),
            hex::encode(e)
        );
        if let Some(der) = ours {
            let parsed = parse_rsa_public(&der).unwrap();
            assert_eq!(parsed.spki_der, der);
            let pem = spki_pem(&der).unwrap();
            assert_eq!(parse_rsa_public(pem.as_bytes()).unwrap().spki_der, der);
        }
    }

    #[test]
    fn edges() {
        let mut n2048 = vec![0xC5u8; 256];
        n2048[255] |= 1;
        let mut n4097 = vec![0u8; 514];
        n4097[1] = 1;
        n4097[513] = 1;
        let mut n4096 = vec![0xFFu8; 512];
        n4096[0] = 0x80;
        for e in [
            &[1, 0, 1][..],
            &[3],
            &[1],
            &[2],
            &[0],
            &[],
            &[0, 0, 1, 0, 1],
            &[1, 0xFF, 0xFF, 0xFF, 0xFF],
            &[2, 0, 0, 0, 1],
            &[1, 0, 0, 0, 0, 0, 0, 0, 1],
        ] {
            check(&n2048, e);
            check(&n4096, e);
            check(&n4097, e);
            check(&[0, 0, 0x0F], e);
            check(&[0x0F], e);
            check(&[], e);
        }
        let mut even = n2048.clone();
        even[255] &= 0xFE;
        check(&even, &[1, 0, 1]);
    }

    proptest! {
        #[test]
        fn any_parts(n in proptest::collection::vec(any::<u8>(), 0..520),
                     e in proptest::collection::vec(any::<u8>(), 0..10)) {
            check(&n, &e);
        }

        #[test]
        fn odd_moduli(mut n in proptest::collection::vec(any::<u8>(), 1..513),
                      e in prop_oneof![Just(vec![1u8, 0, 1]), Just(vec![3u8]),
                                       proptest::collection::vec(any::<u8>(), 1..6)]) {
            if let Some(last) = n.last_mut() { *last |= 1; }
            check(&n, &e);
        }
    }
}
