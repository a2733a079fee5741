use super::*;

#[test]
fn reads_up_to_the_limit_and_refuses_one_byte_more() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"0123456789").unwrap();
    assert_eq!(read_bounded(&path, 10, "test file").unwrap(), b"0123456789");
    let e = read_bounded(&path, 9, "test file").unwrap_err();
    assert_eq!(e.code(), "HK1301");
    let text = format!("{e} {:?}", e.context());
    assert!(text.contains("9 bytes"), "{text}");
    assert!(!text.contains("0123"), "never the content: {text}");
}

#[test]
fn dev_zero_is_bounded_while_reading() {
    let e = read_bounded(Path::new("/dev/zero"), 4096, "PIN file").unwrap_err();
    assert_eq!(e.code(), "HK1301");
    assert!(e.to_string().contains("4 KiB (4096 bytes)"), "{e}");
    let e = read_secret(Path::new("/dev/zero"), 64, "password file").unwrap_err();
    assert_eq!(e.code(), "HK1301");
}

#[test]
fn bytes_read_earlier_count_towards_the_limit() {
    let mut buf = b"abcd".to_vec();
    read_limited(&b"efgh"[..], &mut buf, 8, "x", Path::new("p")).unwrap();
    assert_eq!(buf, b"abcdefgh");
    let mut buf = b"abcd".to_vec();
    assert!(read_limited(&b"efghi"[..], &mut buf, 8, "x", Path::new("p")).is_err());
    let mut buf = b"abcdefghi".to_vec();
    assert!(read_limited(&b""[..], &mut buf, 8, "x", Path::new("p")).is_err());
}

#[test]
fn an_endless_reader_is_bounded() {
    let mut buf = Vec::new();
    let e = read_limited(
        std::io::repeat(b'x'),
        &mut buf,
        100_000,
        "blob",
        Path::new("pipe"),
    )
    .unwrap_err();
    assert_eq!(e.code(), "HK1301");
    assert_eq!(buf.len(), 100_001, "read stopped one byte past the limit");
}

#[test]
fn a_missing_file_is_an_input_file_error() {
    let e = read_bounded(Path::new("/nonexistent/x"), 10, "x").unwrap_err();
    assert_eq!(e.code(), "HK1307");
    assert_eq!(e.exit_class().exit_code(), 10);
    assert_eq!(e.context()["path"], "/nonexistent/x");
    // A folder opens, but does not read.
    let e = read_bounded(Path::new("/"), 10, "x").unwrap_err();
    assert_eq!(e.code(), "HK1307");
}
