//! The configuration file (README.md, "Profiles"): named sets of global
//! options, `[profiles.NAME]` tables in TOML. Every key is checked: an
//! unknown key, a wrong type, a PIN source hsmkey would refuse, or a value out
//! of range is [`Error::Config`] (HK1008) naming the file and line. A profile
//! never holds a PIN: `pin_source = "pin:..."` is refused like a PIN in argv.
//! Which file, and which profile applies, is the command line's business.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{Error, Result};
use crate::hsm::pin::PinSource;

/// One profile, checked.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_args: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub so_pin_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
    /// The audit log (docs/AUDIT.md), as `--audit-log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<String>,
}

/// A configuration file, read and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub profiles: BTreeMap<String, Profile>,
}

impl Config {
    /// The profile `name`, or HK1009 naming the file and the profiles it has.
    pub fn profile(&self, name: &str) -> Result<&Profile> {
        self.profiles
            .get(name)
            .ok_or_else(|| Error::ProfileNotFound {
                name: name.to_string(),
                path: self.path.display().to_string(),
                known: self.profiles.keys().cloned().collect(),
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    module: Option<Spanned<String>>,
    module_args: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    pin_source: Option<Spanned<String>>,
    so_pin_source: Option<Spanned<String>>,
    sessions: Option<Spanned<i64>>,
    wait: Option<Spanned<i64>>,
    audit_log: Option<Spanned<String>>,
}

/// The most sessions a profile may ask for (as `--sessions`).
const MAX_SESSIONS: i64 = 64;

/// Read and check the file at `path`; `Ok(None)` when there is no such file.
pub fn load(path: &Path) -> Result<Option<Config>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes =
        crate::input::read_bounded(path, crate::input::limits::CONFIG, "configuration file")?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Config {
        path: path.display().to_string(),
        line: None,
        reason: "it is not UTF-8 text".into(),
    })?;
    parse(&text, path).map(Some)
}

/// Check the text of a configuration file; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let error = |span: Option<std::ops::Range<usize>>, reason: String| Error::Config {
        path: path.display().to_string(),
        line: span.map(|s| line_of(text, s.start)),
        reason,
    };
    let raw: RawFile =
        toml::from_str(text).map_err(|e| error(e.span(), without_value(e.message())))?;
    let mut profiles = BTreeMap::new();
    for (name, p) in raw.profiles {
        let string = |v: Option<Spanned<String>>, key: &str| -> Result<Option<String>> {
            match v {
                Some(s) if s.get_ref().is_empty() => Err(error(
                    Some(s.span()),
                    format!("profile '{name}': {key} is empty"),
                )),
                Some(s) => Ok(Some(s.into_inner())),
                None => Ok(None),
            }
        };
        let pin = |v: Option<Spanned<String>>, key: &str| -> Result<Option<String>> {
            let Some(s) = v else { return Ok(None) };
            let here =
                |reason: String| error(Some(s.span()), format!("profile '{name}': {key} {reason}"));
            match s.get_ref().parse::<PinSource>() {
                Ok(PinSource::Argv(_)) => Err(here(
                    "is pin:VALUE, which would keep a PIN in this file; use env:VAR, file:PATH (mode 0600) or prompt"
                        .into(),
                )),
                Ok(_) => Ok(Some(s.into_inner())),
                Err(e) => Err(here(format!("is not a PIN source: {e}"))),
            }
        };
        let sessions = match p.sessions {
            Some(s) if !(1..=MAX_SESSIONS).contains(s.get_ref()) => {
                return Err(error(
                    Some(s.span()),
                    format!("profile '{name}': sessions must be between 1 and {MAX_SESSIONS}"),
                ))
            }
            Some(s) => Some(*s.get_ref() as usize),
            None => None,
        };
        let wait = match p.wait {
            Some(s) if *s.get_ref() < 0 => {
                return Err(error(
                    Some(s.span()),
                    format!("profile '{name}': wait is a number of seconds, 0 or more"),
                ))
            }
            Some(s) => Some(*s.get_ref() as u64),
            None => None,
        };
        let profile = Profile {
            module: string(p.module, "module")?,
            module_args: string(p.module_args, "module_args")?,
            token: string(p.token, "token")?,
            pin_source: pin(p.pin_source, "pin_source")?,
            so_pin_source: pin(p.so_pin_source, "so_pin_source")?,
            sessions,
            wait,
            audit_log: string(p.audit_log, "audit_log")?,
        };
        profiles.insert(name, profile);
    }
    Ok(Config {
        path: path.to_path_buf(),
        profiles,
    })
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A reader's message (TOML's, serde_json's) without the value it quotes
/// (`invalid type: string "1234", expected i64`): a misplaced value may be
/// a PIN or a password, and the message is shown and may be logged.
pub(crate) fn without_value(message: &str) -> String {
    let message = message.trim();
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let kind = rest.split([' ', ',']).next().unwrap_or("value");
            return match rest.find(", expected") {
                Some(at) => format!("{prefix}{kind}{}", &rest[at..]),
                None => format!("{prefix}{kind}"),
            };
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests;
