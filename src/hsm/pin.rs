//! Where PINs come from. Never argv by default (docs/SECURITY.md, invariant 6).

use std::path::PathBuf;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::input::limits::PIN_FILE;

/// Which PIN: the normal user's or the Security Officer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinRole {
    User,
    SecurityOfficer,
}

impl PinRole {
    pub fn name(self) -> &'static str {
        match self {
            PinRole::User => "user",
            PinRole::SecurityOfficer => "SO",
        }
    }

    /// The environment variable read when no source is given.
    pub fn default_env(self) -> &'static str {
        match self {
            PinRole::User => "HSMKEY_PIN",
            PinRole::SecurityOfficer => "HSMKEY_SO_PIN",
        }
    }
}

/// A `--pin-source` value.
#[derive(Debug, Clone)]
pub enum PinSource {
    /// `env:VAR`
    Env(String),
    /// `file:PATH`: the first line of the file.
    File(PathBuf),
    /// `prompt`: ask on the terminal.
    Prompt,
    /// `empty`: the empty PIN, which NSS softokn's Security Officer has.
    Empty,
    /// `pin:VALUE`: only with the explicit insecure flag.
    Argv(SecretString),
}

/// What a PIN source may be, for the error that refuses another.
const ACCEPTED: &str = "expected env:VAR, file:PATH, prompt or empty \
    (pin:VALUE with --insecure-pin-in-argv); the value is not repeated here, as it may be a PIN";

impl FromStr for PinSource {
    type Err = Error;

    /// The error never quotes `s`: a mistyped source (`PIN:1234`, `pin=1234`,
    /// a bare `1234`) is most likely the PIN itself.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Usage {
            message: format!("invalid PIN source ({reason}): {ACCEPTED}"),
        };
        if s == "prompt" {
            return Ok(PinSource::Prompt);
        }
        if s == "empty" {
            return Ok(PinSource::Empty);
        }
        match s.split_once(':') {
            Some(("env", "")) => Err(bad("env: needs a variable name")),
            Some(("env", var)) => Ok(PinSource::Env(var.to_string())),
            Some(("file", "")) => Err(bad("file: needs a path")),
            Some(("file", path)) => Ok(PinSource::File(PathBuf::from(path))),
            Some(("pin", value)) => Ok(PinSource::Argv(SecretString::from(value.to_string()))),
            _ => Err(bad("not a known scheme")),
        }
    }
}

/// Asks the operator for a PIN; supplied by the binary, which owns the terminal.
pub type Prompter<'a> = &'a dyn Fn(&str) -> std::io::Result<SecretString>;

/// Everything needed to obtain one PIN.
pub struct PinRequest<'a> {
    pub role: PinRole,
    pub source: Option<PinSource>,
    /// The operator passed the explicit flag that accepts a PIN in argv.
    pub allow_argv: bool,
    /// `None` when there is no terminal: a prompt then is an error, never a hang.
    pub prompter: Option<Prompter<'a>>,
}

impl PinRequest<'_> {
    /// Resolve the PIN: the explicit source, else the role's environment
    /// variable, else a prompt on a terminal.
    pub fn resolve(&self) -> Result<SecretString> {
        let user = self.role.name();
        let source = match &self.source {
            Some(s) => s.clone(),
            None => match std::env::var_os(self.role.default_env()) {
                Some(_) => PinSource::Env(self.role.default_env().to_string()),
                None => PinSource::Prompt,
            },
        };
        match source {
            PinSource::Env(var) => match std::env::var(&var) {
                Ok(value) if !value.is_empty() => Ok(SecretString::from(value)),
                Ok(_) => Err(Error::PinUnavailable {
                    user,
                    reason: format!("environment variable {var} is empty"),
                }),
                Err(_) => Err(Error::PinUnavailable {
                    user,
                    reason: format!("environment variable {var} is not set"),
                }),
            },
            PinSource::File(path) => {
                let raw = match crate::input::read_secret(&path, PIN_FILE, "PIN file") {
                    Ok(raw) => raw,
                    Err(Error::InputFile { source, .. }) => {
                        return Err(Error::PinUnavailable {
                            user,
                            reason: format!(
                                "cannot read {}: {source}",
                                crate::input::shown(&path)
                            ),
                        })
                    }
                    Err(e) => return Err(e),
                };
                let text = std::str::from_utf8(&raw).map_err(|_| Error::PinUnavailable {
                    user,
                    reason: format!("{} is not UTF-8", crate::input::shown(&path)),
                })?;
                // A PIN file is a single line; editors add a final newline.
                let pin = text.lines().next().unwrap_or("");
                if pin.is_empty() {
                    return Err(Error::PinUnavailable {
                        user,
                        reason: format!("{} is empty", crate::input::shown(&path)),
                    });
                }
                Ok(SecretString::from(pin.to_string()))
            }
            PinSource::Argv(pin) => {
                if self.allow_argv {
                    Ok(pin)
                } else {
                    Err(Error::PinInArgv {
                        what: format!("the {user} PIN was given as pin:VALUE"),
                    })
                }
            }
            PinSource::Empty => Ok(SecretString::from(String::new())),
            PinSource::Prompt => match self.prompter {
                Some(prompt) => {
                    let pin = prompt(&format!("{user} PIN: ")).map_err(|e| {
                        Error::PinUnavailable {
                            user,
                            reason: format!("cannot read from the terminal: {e}"),
                        }
                    })?;
                    if pin.expose_secret().is_empty() {
                        return Err(Error::PinUnavailable {
                            user,
                            reason: "an empty PIN was entered".into(),
                        });
                    }
                    Ok(pin)
                }
                None => Err(Error::PinUnavailable {
                    user,
                    reason: format!(
                        "no --{}pin-source and no {} variable, and there is no terminal to prompt on",
                        if self.role == PinRole::User { "" } else { "so-" },
                        self.role.default_env()
                    ),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests;
