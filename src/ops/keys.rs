//! Key management: generate, list, show, rotate, destroy.

use crate::error::{Error, Result};
use crate::hsm::keys::{self, GenerateSpec, KeyInfo, KeySelector, Usage};
use crate::hsm::Token;

/// Create a key (or key pair) and describe what was created. Refuses a name
/// that already exists: a second version is made with `rotate`.
pub fn generate(token: &Token<'_>, spec: &GenerateSpec) -> Result<Vec<KeyInfo>> {
    keys::validate_name(&spec.name)?;
    keys::effective_usage(spec)?;
    let existing = keys::find(token, &KeySelector::parse(&spec.name)?)?;
    if !existing.is_empty() {
        return Err(Error::AlreadyExists {
            what: format!("a key named '{}'", spec.name),
        });
    }
    let made = keys::generate(token, spec)?;
    made.handles
        .iter()
        .map(|h| keys::describe(token, *h))
        .collect()
}

/// Describe every key the selector names.
pub fn list(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<KeyInfo>> {
    keys::find(token, selector)?
        .into_iter()
        .map(|h| keys::describe(token, h))
        .collect()
}

/// Like [`list`], but the key must exist.
pub fn show(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<KeyInfo>> {
    keys::find_required(token, selector)?
        .into_iter()
        .map(|h| keys::describe(token, h))
        .collect()
}

/// Make the next version of a named key: same type, usage, policy and id.
pub fn rotate(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<KeyInfo>> {
    let all = show(token, selector)?;
    let mut names: Vec<&str> = all.iter().map(|k| k.name.as_str()).collect();
    names.dedup();
    if names.len() > 1 {
        return Err(Error::Ambiguous {
            what: "key",
            selector: selector.shown.clone(),
            candidates: names.iter().map(|s| s.to_string()).collect(),
        });
    }
    // The newest version's secret or private object carries the policy.
    let latest = all
        .iter()
        .filter(|k| k.class != "public-key")
        .max_by_key(|k| k.version)
        .ok_or_else(|| Error::NotCapable {
            capability: "rotating a public key alone".into(),
            detail: "only the public half of this key is on the token".into(),
            alternatives: String::new(),
        })?;
    // Rotation follows the whole family, so later versions are found by name.
    let family = show(token, &KeySelector::parse(&latest.name)?)?;
    let next = family.iter().map(|k| k.version).max().unwrap_or(1) + 1;
    let usage_text = family
        .iter()
        .filter(|k| k.version == latest.version)
        .flat_map(|k| k.usage.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let usage: Usage = usage_text.parse()?;
    let policy = match latest.backup_policy.as_str() {
        "none" => keys::BackupPolicy::None,
        "trusted" => keys::BackupPolicy::Trusted,
        "any" => keys::BackupPolicy::Any,
        other => {
            return Err(Error::NotCapable {
                capability: "rotating this key".into(),
                detail: format!("its backup policy reads as '{other}'"),
                alternatives: String::new(),
            })
        }
    };
    let spec = GenerateSpec {
        name: latest.name.clone(),
        id: hex::decode(&latest.id).map_err(|e| Error::Internal(e.to_string()))?,
        spec: keys::spec_of(latest)?,
        usage: Some(usage),
        policy,
        kek: false,
        trusted: latest.trusted == Some(true),
        version: next,
    };
    let made = keys::generate(token, &spec)?;
    made.handles
        .iter()
        .map(|h| keys::describe(token, *h))
        .collect()
}

/// Destroy every object the selector names and say what was destroyed.
pub fn destroy(token: &Token<'_>, selector: &KeySelector) -> Result<Vec<KeyInfo>> {
    let handles = keys::find_required(token, selector)?;
    let described = handles
        .iter()
        .map(|h| keys::describe(token, *h))
        .collect::<Result<Vec<_>>>()?;
    keys::destroy(token, &handles)?;
    Ok(described)
}
