use super::*;

#[test]
fn paths_are_escaped_for_a_terminal() {
    assert_eq!(escape_path(Path::new("weekly.bundle")), "weekly.bundle");
    assert_eq!(escape_path(Path::new("a b/ü.json")), "a b/ü.json");
    assert_eq!(
        escape_path(Path::new("evil\u{1b}[2J\n.bundle")),
        "evil\\u{1b}[2J\\n.bundle"
    );
    assert_eq!(escape_path(Path::new("back\\slash")), "back\\\\slash");
    assert_eq!(out_name(Path::new("-")), "standard output");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"bad\xff\x07");
        assert_eq!(escape_path(Path::new(raw)), "bad\u{fffd}\\u{7}");
    }
}
