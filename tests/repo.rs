//! The repository explains itself and keeps its shape (docs/ARCHITECTURE.md):
//! only `src/hsm/` and the error conversion name cryptoki, every source file
//! says what it owns and stays small enough to read, and every file the docs
//! name exists. No token is needed.

use std::fs;
use std::path::{Path, PathBuf};

/// Source files may grow past ~600 lines a little; past this, split them.
const MAX_SOURCE_LINES: usize = 700;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

fn rust_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_under(&root().join("src"), "rs", &mut files);
    files.sort();
    assert!(files.len() > 40, "found only {} source files", files.len());
    files
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root()).unwrap().display().to_string()
}

/// Unit-test files (`tests.rs`, `tests/…`) are not part of the door rule's
/// subject nor of the size rule: they hold vectors and cases, not logic.
fn is_test_file(rel: &str) -> bool {
    rel.ends_with("/tests.rs") || rel.contains("/tests/")
}

#[test]
fn only_the_hsm_layer_names_cryptoki() {
    let mut offenders = Vec::new();
    for file in rust_sources() {
        let rel = relative(&file);
        let allowed =
            rel.starts_with("src/hsm/") || rel == "src/hsm.rs" || rel.starts_with("src/error");
        if allowed {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let names_token_types = [
                "cryptoki",
                "Attribute::",
                "Mechanism::",
                "RvError",
                "ObjectClass::",
            ]
            .iter()
            .any(|name| line.contains(name));
            if names_token_types && !line.trim_start().starts_with("//") {
                offenders.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "cryptoki or a session named outside src/hsm and src/error:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_source_file_says_what_it_owns_and_stays_readable() {
    let mut problems = Vec::new();
    for file in rust_sources() {
        let rel = relative(&file);
        let text = fs::read_to_string(&file).unwrap();
        if is_test_file(&rel) {
            continue;
        }
        if !text.starts_with("//!") {
            problems.push(format!("{rel}: does not open with a //! comment"));
        }
        let lines = text.lines().count();
        if lines > MAX_SOURCE_LINES {
            problems.push(format!(
                "{rel}: {lines} lines (more than {MAX_SOURCE_LINES})"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn docs() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    files_under(&root().join("docs"), "md", &mut files);
    files.sort();
    files
}

/// Paths in backquotes that start with a folder of the repository.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in text.split('`').skip(1).step_by(2) {
        let candidate = piece.split_whitespace().next().unwrap_or("");
        let candidate = candidate.trim_end_matches([',', '.', ':', ')']);
        if ["src/", "tests/", "scripts/", "docs/", "tools/", ".ci/"]
            .iter()
            .any(|p| candidate.starts_with(p))
            && !candidate.contains(['*', '<', '{', '$'])
        {
            out.push(candidate.to_string());
        }
    }
    out
}

#[test]
fn every_file_the_docs_name_exists() {
    let mut missing = Vec::new();
    for doc in docs() {
        let text = fs::read_to_string(&doc).unwrap();
        for path in named_paths(&text) {
            // A path may name a file or a folder, with or without its slash.
            if !root().join(path.trim_end_matches('/')).exists() {
                missing.push(format!("{}: `{path}`", relative(&doc)));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but missing:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_docs_link_resolves() {
    let mut broken = Vec::new();
    for doc in docs() {
        let text = fs::read_to_string(&doc).unwrap();
        let dir = doc.parent().unwrap();
        for piece in text.split("](").skip(1) {
            let target = piece.split(')').next().unwrap_or("");
            let file = target.split('#').next().unwrap_or("");
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            if !dir.join(file).exists() {
                broken.push(format!("{}: ({target})", relative(&doc)));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn nothing_points_outside_the_repository() {
    let mut files = docs();
    files.extend(rust_sources());
    files_under(&root().join("tests"), "rs", &mut files);
    files_under(&root().join("scripts"), "sh", &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            // Built from pieces so that this file does not name them itself.
            let outside = ["../", "shared"].concat();
            let design = ["DESIGN", ".md"].concat();
            let reference = ["REFERENCE", ".md"].concat();
            if line.contains(&outside) || line.contains(&design) || line.contains(&reference) {
                found.push(format!("{}:{}", relative(&file), i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "points outside the repository:\n{}",
        found.join("\n")
    );
}
