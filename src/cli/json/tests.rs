//! The published schemas (docs/schemas/) are exactly what the code generates,
//! and docs/schemas/README.md lists each with its command.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{all, Published};

/// The one command that rewrites docs/schemas/ from the code.
const REGENERATE: &str = "HSMKEY_WRITE_SCHEMAS=1 cargo test --bin hsmkey schemas";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas")
}

fn rendered(p: &Published) -> String {
    let mut text = serde_json::to_string_pretty(&(p.schema)()).expect("a schema serializes");
    text.push('\n');
    text
}

#[test]
fn published_schemas_match_the_code() {
    let write = std::env::var_os("HSMKEY_WRITE_SCHEMAS").is_some();
    let mut differ = Vec::new();
    let mut names = BTreeSet::new();
    for p in all() {
        names.insert(format!("{}.json", p.name));
        let path = dir().join(format!("{}.json", p.name));
        let want = rendered(&p);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(want.as_str()) {
            continue;
        }
        if write {
            std::fs::create_dir_all(dir()).expect("create docs/schemas");
            std::fs::write(&path, want).expect("write a schema");
        } else {
            differ.push(format!("docs/schemas/{}.json", p.name));
        }
    }
    for entry in std::fs::read_dir(dir()).expect("docs/schemas exists") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".json") && !names.contains(name.as_ref()) {
            if write {
                std::fs::remove_file(dir().join(name.as_ref())).expect("remove a stale schema");
            } else {
                differ.push(format!("docs/schemas/{name} (no command prints it)"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "the published JSON Schemas differ from the code:\n  {}\nRegenerate them with\n  {REGENERATE}\nthen review and commit docs/schemas/ (and list any new one in docs/schemas/README.md).",
        differ.join("\n  ")
    );
}

#[test]
fn schemas_have_unique_versioned_names() {
    let mut seen = BTreeSet::new();
    for p in all() {
        let (what, version) = p
            .name
            .strip_prefix("hsmkey.")
            .and_then(|rest| rest.rsplit_once(".v"))
            .unwrap_or_else(|| panic!("{}: not hsmkey.<what>.v<N>", p.name));
        assert!(
            !what.is_empty() && what.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{}: <what> is lowercase words joined by '-'",
            p.name
        );
        assert!(
            version.parse::<u32>().is_ok_and(|v| v >= 1),
            "{}: the version is a number from 1",
            p.name
        );
        assert!(seen.insert(p.name), "{} published twice", p.name);
    }
}

#[test]
fn schemas_are_valid_draft_2020_12() {
    for p in all() {
        let schema = (p.schema)();
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{}",
            p.name
        );
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{} is not a valid JSON Schema: {e}", p.name);
        }
        assert_eq!(schema["properties"]["schema"]["const"], p.name);
        assert_eq!(schema["required"][0], "schema", "{}", p.name);
        assert_eq!(
            schema["type"], "object",
            "{}: a document is one object",
            p.name
        );
    }
}

#[test]
fn the_schema_readme_lists_each_schema_with_its_command() {
    let readme = std::fs::read_to_string(dir().join("README.md")).expect("docs/schemas/README.md");
    for p in all() {
        let link = format!("[`{0}`]({0}.json)", p.name);
        let line = readme
            .lines()
            .find(|l| l.contains(&link))
            .unwrap_or_else(|| panic!("docs/schemas/README.md has no line with {link}"));
        assert!(
            line.contains(p.command),
            "docs/schemas/README.md: the line of {} names `{}`",
            p.name,
            p.command
        );
    }
}
