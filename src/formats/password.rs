//! The rules a new backup password must meet (docs/SECURITY.md, "Backup
//! passwords"). `strength`, the default: any passphrase, spaces and
//! non-ASCII letters included, that zxcvbn scores 3 or 4 (of 4). `vsp`:
//! Hitachi VSP's character-set rule, 6 to 255 characters of letters, digits
//! and ASCII punctuation, for passwords that must also work on such a device.
//! Only `backup` applies a rule; `restore` and `verify` take any password.

/// The punctuation VSP allows: every printable ASCII symbol.
pub const SYMBOLS: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The lowest zxcvbn score (0 to 4) the strength policy accepts.
pub const MIN_SCORE: u8 = 3;

/// The most characters a password may have under the strength policy.
pub const MAX_CHARS: usize = 1024;

/// Which rule a new password must meet (`backup --password-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// zxcvbn's estimate: score 3 or more.
    #[default]
    Strength,
    /// Hitachi VSP's character-set rule.
    Vsp,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Strength => "strength",
            Policy::Vsp => "vsp",
        }
    }
}

/// Check a new backup password; the error says which rule failed and how to
/// do better, never the password.
pub fn check(password: &str, policy: Policy) -> Result<(), String> {
    match policy {
        Policy::Strength => check_strength(password),
        Policy::Vsp => check_vsp(password),
    }
}

/// Hitachi VSP's rule: 6 to 255 letters, digits and ASCII punctuation.
pub fn check_vsp(password: &str) -> Result<(), String> {
    let count = password.chars().count();
    if !(6..=255).contains(&count) {
        return Err(format!("it has {count} characters; 6 to 255 are required"));
    }
    if let Some(pos) = password
        .chars()
        .position(|c| !(c.is_ascii_alphanumeric() || SYMBOLS.contains(c)))
    {
        return Err(format!(
            "character {} is not allowed: use letters, digits and {SYMBOLS} (no spaces)",
            pos + 1
        ));
    }
    Ok(())
}

/// The strength rule: no control characters, at most [`MAX_CHARS`], and a
/// zxcvbn score of at least [`MIN_SCORE`]. The refusal carries zxcvbn's
/// warning and suggestions (generic sentences that never quote the input).
pub fn check_strength(password: &str) -> Result<(), String> {
    let count = password.chars().count();
    if count > MAX_CHARS {
        return Err(format!(
            "it has {count} characters; at most {MAX_CHARS} are allowed"
        ));
    }
    if let Some(pos) = password.chars().position(char::is_control) {
        return Err(format!(
            "character {} is a control character (a tab, an escape, ...): use printable characters; spaces are fine",
            pos + 1
        ));
    }
    let estimate = zxcvbn::zxcvbn(password, &["hsmkey", "backup", "bundle"]);
    let score = u8::from(estimate.score());
    if score >= MIN_SCORE {
        return Ok(());
    }
    let mut reason =
        format!("it is too easy to guess (zxcvbn strength {score} of 4; {MIN_SCORE} is required)");
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            reason.push_str(&format!(": {warning}"));
        }
        for suggestion in feedback.suggestions() {
            reason.push_str(&format!(" {suggestion}"));
        }
    }
    reason.push_str(
        " A passphrase of four or more uncommon words, separated by spaces, passes; \
         --password-policy vsp applies the Hitachi VSP character rule instead.",
    );
    Err(reason)
}

#[cfg(test)]
mod tests;
