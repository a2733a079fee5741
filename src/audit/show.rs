//! `hsmkey audit show`: the lines of a log that pass a filter (since a
//! time, naming a key, of one operation). Reading only: nothing is checked
//! here (`audit verify` does that).

use std::io::BufRead;

use super::line::{self, Line};
use crate::error::{Error, Result};

/// Which lines to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Lines written at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Lines that name this key: a label (`NAME@v2`) or a name (every version).
    pub key: Option<String>,
    /// Lines of this operation (`backup`, `key generate`, ...).
    pub op: Option<String>,
}

/// `--since`: an RFC 3339 time (`2025-06-01T12:00:00Z`), a UTC date
/// (`2025-06-01`), or an age (`90m`, `24h`, `7d`) counted back from `now`.
pub fn parse_since(text: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp> {
    let text = text.trim();
    let bad = |reason: String| Error::BadInput {
        what: "--since".into(),
        reason,
    };
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = text.parse::<jiff::civil::Date>() {
        return jiff::tz::Offset::UTC
            .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|e| bad(e.to_string()));
    }
    let split = text
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: i64 = num.parse().map_err(|_| {
        bad(format!(
            "'{text}' is not a time (2025-06-01T12:00:00Z), a date (2025-06-01) or an age (24h)"
        ))
    })?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(bad(format!("unknown unit '{other}': use s, m, h or d"))),
    };
    let secs = n
        .checked_mul(unit_secs)
        .ok_or_else(|| bad("too far back".into()))?;
    now.checked_sub(jiff::SignedDuration::from_secs(secs))
        .map_err(|e| bad(e.to_string()))
}

impl Filter {
    pub fn accepts(&self, l: &Line) -> bool {
        if self.op.as_deref().is_some_and(|op| op != l.op) {
            return false;
        }
        if let Some(since) = self.since {
            match l.time.parse::<jiff::Timestamp>() {
                Ok(t) if t >= since => {}
                _ => return false,
            }
        }
        if let Some(key) = &self.key {
            let named = l.keys.iter().any(|k| {
                k.label == *key || crate::hsm::keys::split_version(&k.label).0 == key.as_str()
            });
            if !named {
                return false;
            }
        }
        true
    }
}

/// Every line of `input` that `filter` accepts, in order. Lines that are
/// not audit lines are counted, not shown.
pub fn read(
    path: &str,
    mut input: impl BufRead,
    filter: &Filter,
    each: &mut dyn FnMut(Line),
) -> Result<u64> {
    let mut raw = Vec::new();
    let mut unreadable = 0u64;
    loop {
        raw.clear();
        let n = input.read_until(b'\n', &mut raw).map_err(|e| Error::Io {
            path: path.to_string(),
            source: e,
        })?;
        if n == 0 {
            return Ok(unreadable);
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        match line::parse(&raw) {
            Ok(p) if filter.accepts(&p.line) => each(p.line),
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
}
