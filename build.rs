//! Build script: records the git commit hsmkey was built from for `--version`.
//! Outside a git checkout (`cargo install` from a crate tarball) the commit is
//! "unknown"; the build never fails for want of git.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = commit(&manifest_dir).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HSMKEY_GIT_COMMIT={commit}");
}

/// Run git in the crate's folder; None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The short commit, only when the crate's own folder is the top of a git
/// checkout: a crate unpacked inside some other repository (a vendored copy)
/// must not report that repository's commit.
fn commit(dir: &Path) -> Option<String> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it
    // points to (a commit), wherever this checkout or worktree keeps them.
    let mut watched = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])?];
    watched.extend(git(dir, &["rev-parse", "--git-path", "packed-refs"]));
    for path in watched {
        // A path that does not exist would make cargo rerun on every build.
        let path = dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        // A branch kept only in packed-refs gets its loose file on its next
        // commit: then the nearest folder under refs/ that exists is watched.
        let path = dir.join(git(dir, &["rev-parse", "--git-path", &branch])?);
        let nearest = path
            .ancestors()
            .take_while(|p| p.file_name().is_some_and(|n| n != "refs"))
            .find(|p| p.exists());
        if let Some(nearest) = nearest {
            println!("cargo:rerun-if-changed={}", nearest.display());
        }
    }
    git(dir, &["rev-parse", "--short", "HEAD"])
}
