//! Checks a command `hsmkey byok` prints against the target CLI's documented
//! flags (tests/vectors/byok/next-step-clis.json): split as a POSIX shell
//! would, refusing anything the shell would do besides passing words (an
//! unquoted `<` is a redirect, `;` a second command, `~` or `*` an
//! expansion), then every flag known, the required ones there, values
//! allowed, and the right number of bare arguments.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

/// One word after the shell is done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellWord {
    /// The text, with each variable shown as `${NAME}`.
    pub text: String,
    /// The variables it expands.
    pub vars: Vec<String>,
}

impl ShellWord {
    pub fn literal(&self) -> Option<&str> {
        self.vars.is_empty().then_some(self.text.as_str())
    }
}

fn var_name(chars: &[char], mut i: usize) -> Result<(String, usize), String> {
    // chars[i] is just after '$'.
    let braced = chars.get(i) == Some(&'{');
    if braced {
        i += 1;
    }
    let start = i;
    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    let name: String = chars[start..i].iter().collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("'$' not followed by a variable name at {start}"));
    }
    if braced {
        if chars.get(i) != Some(&'}') {
            return Err("an unclosed ${".into());
        }
        i += 1;
    }
    Ok((name, i))
}

/// Split a command line into words as `sh` would, or say what else the
/// shell would do with it.
pub fn shell_words(line: &str) -> Result<Vec<ShellWord>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut cur: Option<ShellWord> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at_start = cur.is_none();
        match c {
            ' ' | '\t' => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
                i += 1;
            }
            '\'' => {
                let w = cur.get_or_insert(ShellWord {
                    text: String::new(),
                    vars: Vec::new(),
                });
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or("an unclosed single quote")?;
                w.text.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            }
            '"' => {
                let w = cur.get_or_insert(ShellWord {
                    text: String::new(),
                    vars: Vec::new(),
                });
                i += 1;
                loop {
                    let c = *chars.get(i).ok_or("an unclosed double quote")?;
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' => {
                            let next = *chars.get(i + 1).ok_or("a trailing backslash")?;
                            if "$`\"\\".contains(next) {
                                w.text.push(next);
                            } else {
                                w.text.push('\\');
                                w.text.push(next);
                            }
                            i += 2;
                        }
                        '$' => {
                            if chars.get(i + 1) == Some(&'(') {
                                return Err("a command substitution $( inside double quotes".into());
                            }
                            let (name, next) = var_name(&chars, i + 1)?;
                            w.text.push_str(&format!("${{{name}}}"));
                            w.vars.push(name);
                            i = next;
                        }
                        '`' => return Err("a backquote command substitution".into()),
                        '!' => {
                            return Err(
                                "a '!' (history expansion in bash) inside double quotes".into()
                            )
                        }
                        c => {
                            w.text.push(c);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => {
                let next = *chars.get(i + 1).ok_or("a trailing backslash")?;
                if next == '\n' {
                    return Err("a line continuation".into());
                }
                cur.get_or_insert(ShellWord {
                    text: String::new(),
                    vars: Vec::new(),
                })
                .text
                .push(next);
                i += 2;
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '\n' => {
                return Err(format!(
                    "an unquoted '{c}' at {i}: the shell would not pass it as a word"
                ));
            }
            '`' | '$' => return Err(format!("an unquoted expansion '{c}' at {i}")),
            '*' | '?' | '[' | ']' | '{' | '}' | '!' => {
                return Err(format!(
                    "an unquoted '{c}' at {i}: a glob, brace or history expansion"
                ));
            }
            '#' | '~' if at_start => {
                return Err(format!(
                    "a word starting with '{c}' at {i}: a comment or a home directory"
                ));
            }
            c => {
                cur.get_or_insert(ShellWord {
                    text: String::new(),
                    vars: Vec::new(),
                })
                .text
                .push(c);
                i += 1;
            }
        }
    }
    if let Some(w) = cur.take() {
        words.push(w);
    }
    Ok(words)
}

#[derive(Debug, Deserialize)]
pub struct Table {
    pub commands: Vec<Cli>,
}

#[derive(Debug, Deserialize)]
pub struct Cli {
    pub argv: Vec<String>,
    pub source: String,
    pub checked: String,
    pub flags: BTreeMap<String, String>,
    pub values: BTreeMap<String, Vec<String>>,
    pub prefixes: BTreeMap<String, String>,
    pub one_of: Vec<Vec<String>>,
    pub bare_arguments: (usize, usize),
}

pub fn table() -> Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/byok/next-step-clis.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).expect("the CLI table parses")
}

/// A printed command, taken apart.
#[derive(Debug)]
pub struct Parsed {
    pub argv: Vec<String>,
    /// Flags in order, with their values.
    pub flags: Vec<(String, Option<ShellWord>)>,
    pub bare: Vec<ShellWord>,
    pub vars: BTreeSet<String>,
}

impl Parsed {
    /// The value of a flag given once.
    pub fn value(&self, flag: &str) -> Option<&ShellWord> {
        self.flags
            .iter()
            .find(|(f, _)| f == flag)
            .and_then(|(_, v)| v.as_ref())
    }
}

/// Check one command line against the table.
pub fn check(line: &str, table: &Table) -> Result<Parsed, String> {
    let words = shell_words(line)?;
    let cli = table
        .commands
        .iter()
        .filter(|c| {
            c.argv.len() <= words.len()
                && c.argv
                    .iter()
                    .zip(&words)
                    .all(|(a, w)| w.literal() == Some(a.as_str()))
        })
        .max_by_key(|c| c.argv.len())
        .ok_or_else(|| format!("no CLI in the table runs `{line}`"))?;
    let mut parsed = Parsed {
        argv: cli.argv.clone(),
        flags: Vec::new(),
        bare: Vec::new(),
        vars: words.iter().flat_map(|w| w.vars.iter().cloned()).collect(),
    };
    let mut rest = words[cli.argv.len()..].iter();
    while let Some(w) = rest.next() {
        let text = w.literal().unwrap_or("");
        if !(text.starts_with('-') && text.len() > 1) {
            if w.text.starts_with('-') {
                return Err(format!(
                    "a variable word that starts like a flag: {}",
                    w.text
                ));
            }
            parsed.bare.push(w.clone());
            continue;
        }
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (
                n.to_string(),
                Some(ShellWord {
                    text: v.to_string(),
                    vars: Vec::new(),
                }),
            ),
            _ => (text.to_string(), None),
        };
        let kind = cli
            .flags
            .get(&name)
            .ok_or_else(|| format!("{} has no flag {name} ({})", cli.argv.join(" "), cli.source))?;
        let value = if kind == "switch" {
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
            None
        } else {
            Some(match inline {
                Some(v) => v,
                None => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} without a value"))?,
            })
        };
        if let (Some(v), Some(allowed)) = (&value, cli.values.get(&name)) {
            if let Some(t) = v.literal() {
                if !allowed.iter().any(|a| a == t) {
                    return Err(format!(
                        "{name} {t}: the documented values are {}",
                        allowed.join(", ")
                    ));
                }
            }
        }
        if let (Some(v), Some(prefix)) = (&value, cli.prefixes.get(&name)) {
            if !v.text.starts_with(prefix.as_str()) {
                return Err(format!("{name} {}: must start with {prefix}", v.text));
            }
        }
        parsed.flags.push((name, value));
    }
    let given: BTreeSet<&str> = parsed.flags.iter().map(|(f, _)| f.as_str()).collect();
    for (flag, kind) in &cli.flags {
        if kind == "required" && !given.contains(flag.as_str()) {
            return Err(format!("`{line}` lacks the required {flag}"));
        }
    }
    for group in &cli.one_of {
        let n = group.iter().filter(|f| given.contains(f.as_str())).count();
        if n != 1 {
            return Err(format!(
                "`{line}` must have exactly one of {}",
                group.join(", ")
            ));
        }
    }
    let (lo, hi) = cli.bare_arguments;
    if !(lo..=hi).contains(&parsed.bare.len()) {
        return Err(format!(
            "`{line}` has {} bare argument(s); {} takes {lo} to {hi}",
            parsed.bare.len(),
            cli.argv.join(" ")
        ));
    }
    Ok(parsed)
}

/// Check the command of a `byok --json` result: against the table, and
/// every variable it uses listed in `variables` (and nothing more).
pub fn check_result(result: &serde_json::Value, table: &Table) -> Parsed {
    let command = result["command"].as_str().expect("command");
    let parsed = check(command, table).unwrap_or_else(|e| panic!("{e}\n  in: {command}"));
    let declared: BTreeSet<String> = result["variables"]
        .as_object()
        .expect("variables is an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(parsed.vars, declared, "variables used vs listed: {command}");
    parsed
}
