//! Unit tests of the spool.

use super::*;

fn read_all(s: &mut Spool) -> Vec<u8> {
    let mut out = Vec::new();
    s.reader().unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn small_spools_stay_in_memory_large_ones_move_to_a_file() {
    let mut s = Spool::new(8);
    s.push(b"abc").unwrap();
    assert_eq!(s.in_memory(), Some(&b"abc"[..]));
    s.push(b"defghij").unwrap();
    assert!(!s.is_in_memory());
    assert_eq!(read_all(&mut s), b"abcdefghij");
    // Written after a read, read again from the start.
    for _ in 0..10_000 {
        s.push(b"0123456789").unwrap();
    }
    let all = read_all(&mut s);
    assert_eq!(all.len() as u64, s.len());
    assert_eq!(&all[..10], b"abcdefghij");
    assert_eq!(read_all(&mut s), all);
}
