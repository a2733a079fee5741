use super::*;

#[test]
fn variant_vectors_match_an_independent_implementation() {
    use aes_kw::KekAes192;
    let kek = KekAes192::new(&KAT_5649_KEK.into());
    let mut out = [0u8; 32];
    kek.wrap_with_padding(&KAT_5649_DATA, &mut out).unwrap();
    assert_eq!(out, KAT_5649_OUT);
    let mut zero = KAT_5649_DATA.to_vec();
    zero.extend([0u8; 4]);
    kek.wrap_with_padding(&zero, &mut out).unwrap();
    assert_eq!(out, KAT_ZERO_5649_OUT);
    let mut pkcs7 = KAT_5649_DATA.to_vec();
    pkcs7.extend([4u8; 4]);
    kek.wrap(&pkcs7, &mut out).unwrap();
    assert_eq!(out, KAT_PKCS7_8_OUT);
    let mut pkcs7_16 = KAT_5649_DATA.to_vec();
    pkcs7_16.extend([12u8; 12]);
    let mut out40 = [0u8; 40];
    kek.wrap(&pkcs7_16, &mut out40).unwrap();
    assert_eq!(out40, KAT_PKCS7_16_OUT);
    let kek128 = aes_kw::KekAes128::new(&KAT_3394_KEK.into());
    let mut out24 = [0u8; 24];
    kek128.wrap(&KAT_3394_DATA, &mut out24).unwrap();
    assert_eq!(out24, KAT_3394_OUT);
}

#[test]
fn hex_literals_decode() {
    assert_eq!(KAT_3394_KEK[0], 0x00);
    assert_eq!(KAT_3394_KEK[15], 0x0F);
    assert_eq!(KAT_5649_OUT[31], 0x6a);
}
