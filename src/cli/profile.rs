//! Profiles (README.md, "Profiles"): `--profile NAME` or `HSMKEY_PROFILE`
//! fills the global options from `[profiles.NAME]` of the configuration
//! file, under the command line and the environment: flag > environment
//! variable > profile > default. `hsmkey profile list|show` reads the file
//! for an admin, without a module or PIN.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Subcommand};
use hsmkey::config::{self, Config, Profile};
use hsmkey::{Error, Result};
use serde::Serialize;

use super::terminal::escape_path;
use super::{out, table, Context, Global};

/// Where the configuration file is: `$HSMKEY_CONFIG`, else
/// `$XDG_CONFIG_HOME/hsmkey/config.toml` (an absolute XDG_CONFIG_HOME only,
/// as the XDG spec says), else `~/.config/hsmkey/config.toml`.
pub(crate) fn config_path() -> Result<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = set("HSMKEY_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let base = match set("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        Some(base) => base,
        None => match set("HOME") {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(Error::Config {
                    path: "~/.config/hsmkey/config.toml".into(),
                    line: None,
                    reason: "neither HSMKEY_CONFIG, XDG_CONFIG_HOME nor HOME is set, so there is no file to read".into(),
                })
            }
        },
    };
    Ok(base.join("hsmkey").join("config.toml"))
}

/// The file at [`config_path`], or HK1009 for profile `name` when there is
/// no file.
fn load_for(name: &str) -> Result<Config> {
    let path = config_path()?;
    config::load(&path)?.ok_or_else(|| Error::ProfileNotFound {
        name: name.to_string(),
        path: format!("{} (the file does not exist)", path.display()),
        known: Vec::new(),
    })
}

/// Fill `global` from the profile it names, if any. `matches` tells a value
/// given on the command line or by an environment variable (kept) from a
/// default (replaced by the profile's).
pub(crate) fn apply(global: &mut Global, matches: &ArgMatches) -> Result<()> {
    let Some(name) = global.profile.clone() else {
        return Ok(());
    };
    let config = load_for(&name)?;
    let p = config.profile(&name)?.clone();
    let source = |id: &str| matches.value_source(id);
    let given = |id: &str| {
        matches!(
            source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let note_override = |id: &str, var: &str, has: bool| {
        if has && source(id) == Some(ValueSource::EnvVariable) {
            tracing::warn!("{var} overrides {id} of profile '{name}'");
        }
    };
    let fill = |value: &mut Option<String>, from: Option<String>, id: &str, var: &str| {
        note_override(id, var, from.is_some());
        if !given(id) && from.is_some() {
            *value = from;
        }
    };
    fill(&mut global.module, p.module, "module", "HSMKEY_MODULE");
    fill(
        &mut global.module_args,
        p.module_args,
        "module_args",
        "HSMKEY_MODULE_ARGS",
    );
    fill(&mut global.token, p.token, "token", "HSMKEY_TOKEN");
    note_override("sessions", "HSMKEY_SESSIONS", p.sessions.is_some());
    if let (false, Some(n)) = (given("sessions"), p.sessions) {
        global.sessions = n;
    }
    note_override("wait", "HSMKEY_WAIT", p.wait.is_some());
    if let (false, Some(w)) = (given("wait"), p.wait) {
        global.wait = w;
    }
    note_override("audit_log", "HSMKEY_AUDIT_LOG", p.audit_log.is_some());
    if let (false, Some(path)) = (given("audit_log"), p.audit_log) {
        global.audit_log = Some(path.into());
    }
    // The PIN sources have no clap variable: HSMKEY_PIN / HSMKEY_SO_PIN are
    // their environment default, read when no source is given.
    for (value, from, id, var) in [
        (
            &mut global.pin_source,
            p.pin_source,
            "pin_source",
            "HSMKEY_PIN",
        ),
        (
            &mut global.so_pin_source,
            p.so_pin_source,
            "so_pin_source",
            "HSMKEY_SO_PIN",
        ),
    ] {
        if given(id) || from.is_none() {
            continue;
        }
        if std::env::var_os(var).is_some() {
            tracing::warn!("{var} overrides {id} of profile '{name}'");
            continue;
        }
        *value = from;
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// List the profiles of the configuration file (no module, no PIN).
    List,
    /// Show one profile's settings (default: the one --profile or
    /// HSMKEY_PROFILE names).
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The profile's name.
    name: Option<String>,
}

/// The profiles of the configuration file.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct ProfileList {
    /// The configuration file read.
    path: String,
    /// Whether it exists (no file: no profiles).
    exists: bool,
    profiles: Vec<Named>,
}
super::json::document!(ProfileList, "hsmkey.profile-list.v1", "hsmkey profile list");

/// One profile, by name.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Named {
    name: String,
    #[serde(flatten)]
    profile: Profile,
}

/// One profile and the file it is in.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct ProfileShow {
    path: String,
    name: String,
    #[serde(flatten)]
    profile: Profile,
}
super::json::document!(ProfileShow, "hsmkey.profile-show.v1", "hsmkey profile show");

pub fn run(ctx: &Context, cmd: ProfileCommand) -> Result<()> {
    match cmd {
        ProfileCommand::List => {
            let path = config_path()?;
            let config = config::load(&path)?;
            let exists = config.is_some();
            let profiles: Vec<Named> = config
                .map(|c| c.profiles)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, profile)| Named { name, profile })
                .collect();
            if ctx.json() {
                super::json::print(&ProfileList {
                    path: path.display().to_string(),
                    exists,
                    profiles,
                });
            } else if !exists {
                out(&format!(
                    "no configuration file at {} (README.md, Profiles)\n",
                    escape_path(&path)
                ));
            } else {
                let dash = |v: &Option<String>| v.as_deref().map(shown).unwrap_or("-".into());
                let rows: Vec<Vec<String>> = profiles
                    .iter()
                    .map(|n| {
                        vec![
                            shown(&n.name),
                            dash(&n.profile.token),
                            dash(&n.profile.module),
                            dash(&n.profile.pin_source),
                        ]
                    })
                    .collect();
                let mut text = format!("profiles in {}\n", escape_path(&path));
                if !rows.is_empty() {
                    text.push_str(&table(&["NAME", "TOKEN", "MODULE", "PIN SOURCE"], &rows));
                }
                out(&text);
            }
        }
        ProfileCommand::Show(args) => {
            let name = args
                .name
                .or_else(|| ctx.global.profile.clone())
                .ok_or_else(|| Error::Usage {
                    message: "name the profile: `hsmkey profile show NAME` (or set --profile / HSMKEY_PROFILE)".into(),
                })?;
            let config = load_for(&name)?;
            let profile = config.profile(&name)?.clone();
            if ctx.json() {
                super::json::print(&ProfileShow {
                    path: config.path.display().to_string(),
                    name,
                    profile,
                });
            } else {
                let mut text = format!(
                    "profile '{}' in {}\n",
                    shown(&name),
                    escape_path(&config.path)
                );
                let p = &profile;
                let rows = [
                    ("module", p.module.clone()),
                    ("module_args", p.module_args.clone()),
                    ("token", p.token.clone()),
                    ("pin_source", p.pin_source.clone()),
                    ("so_pin_source", p.so_pin_source.clone()),
                    ("sessions", p.sessions.map(|n| n.to_string())),
                    ("wait", p.wait.map(|n| n.to_string())),
                    ("audit_log", p.audit_log.clone()),
                ];
                for (key, value) in rows {
                    if let Some(v) = value {
                        text.push_str(&format!("  {key:<14} {}\n", shown(&v)));
                    }
                }
                out(&text);
            }
        }
    }
    Ok(())
}

/// A value from the file, for a terminal.
fn shown(text: &str) -> String {
    text.escape_debug().to_string()
}
