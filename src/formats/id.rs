//! Hex helpers shared by the text outputs.

/// Parse an object id given as hex (`--id 01ab`), with or without a `0x` prefix.
pub fn parse_id(s: &str) -> Result<Vec<u8>, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.is_empty() {
        return Err("the id is empty".into());
    }
    hex::decode(s).map_err(|e| format!("'{s}' is not hex: {e}"))
}

#[cfg(test)]
mod tests;
