use super::*;

#[test]
fn escape_keeps_printable_text() {
    assert_eq!(escape(b"payments@v2"), "payments@v2");
    assert_eq!(escape("clé 鍵 key".as_bytes()), "clé 鍵 key");
    assert_eq!(escape(b""), "");
}

#[test]
fn escape_shows_what_is_not_printable() {
    assert_eq!(escape(b"a\x1b[2Jb"), "a\\x1b[2Jb");
    assert_eq!(escape(b"line\nnext\r\t"), "line\\nnext\\r\\t");
    assert_eq!(escape(b"del\x7f nul\x00"), "del\\x7f nul\\x00");
    assert_eq!(escape("c1\u{9b}".as_bytes()), "c1\\u{9b}");
    assert_eq!(escape("rtl\u{202e}txt".as_bytes()), "rtl\\u{202e}txt");
    assert_eq!(escape("zw\u{200b}".as_bytes()), "zw\\u{200b}");
    assert_eq!(escape(b"bad\xff\xfeutf8"), "bad\\xff\\xfeutf8");
    // A backslash is doubled, so "\n" typed in a label is not a newline shown.
    assert_eq!(escape(b"a\\nb"), "a\\\\nb");
}

#[test]
fn every_table_cell_is_escaped() {
    let text = table(
        &["LABEL", "ID"],
        &[
            vec![b"evil\x1b]0;title\x07".to_vec(), b"01".to_vec()],
            vec![b"two\nlines".to_vec(), b"\xff".to_vec()],
        ],
    );
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("evil\\x1b]0;title\\x07"), "{text}");
    let row = text.lines().nth(2).unwrap();
    assert!(
        row.starts_with("two\\nlines ") && row.ends_with(" \\xff"),
        "{text}"
    );
    // Columns line up on the escaped text.
    let header = text.lines().next().unwrap();
    assert_eq!(header.find("ID"), text.lines().nth(1).unwrap().find("01"));
}
