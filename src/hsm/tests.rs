//! Unit tests for `src/hsm/mod.rs`.

use super::PKCS11_BINDING;

/// The version a package has in Cargo.lock (None if it is not there, or there
/// more than once).
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let mut found = Vec::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{package}\"") {
            let version = lines.next()?.trim();
            let version = version.strip_prefix("version = \"")?.strip_suffix('"')?;
            found.push(version.to_string());
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

#[test]
fn the_cryptoki_version_shown_is_the_locked_one() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let shown = PKCS11_BINDING.strip_prefix("cryptoki ");
    assert_eq!(
        locked_version(&lock, "cryptoki").as_deref(),
        shown,
        "PKCS11_BINDING in src/hsm/mod.rs differs from Cargo.lock"
    );
}

#[test]
fn locked_version_reads_the_line_after_the_name() {
    let lock = "[[package]]\nname = \"cryptoki-sys\"\nversion = \"0.5.0\"\n\n[[package]]\nname = \"cryptoki\"\nversion = \"0.12.1\"\n";
    assert_eq!(locked_version(lock, "cryptoki").as_deref(), Some("0.12.1"));
    assert_eq!(
        locked_version(lock, "cryptoki-sys").as_deref(),
        Some("0.5.0")
    );
    assert_eq!(locked_version(lock, "nope"), None);
}
