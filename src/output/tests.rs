use super::*;

#[test]
fn writes_0600_and_never_clobbers_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    write_atomic(&path, b"one", false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"one");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let err = write_atomic(&path, b"two", false).unwrap_err();
    assert_eq!(err.code(), "HK1501");
    assert_eq!(std::fs::read(&path).unwrap(), b"one");
    write_atomic(&path, b"two", true).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    // Nothing but the output is left in the folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn an_abandoned_file_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    {
        let mut f = AtomicFile::create(&path, false).unwrap();
        f.file().write_all(b"partial").unwrap();
    }
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
