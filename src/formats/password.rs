//! The password rule of password-protected backups: Hitachi VSP's, 6 to 255
//! characters of letters, digits and ASCII punctuation.

/// The punctuation VSP allows: every printable ASCII symbol.
pub const SYMBOLS: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Check a backup password; the error says which rule failed, never the password.
pub fn check(password: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests;
