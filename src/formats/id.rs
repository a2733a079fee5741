//! Key ids: hex as operators type it (`--id 01ab`), and the CKA_ID that
//! marks an object as a version of a key (docs/KEYS.md, "Versions").

use sha2::{Digest, Sha256};

/// Parse an object id given as hex (`--id 01ab`), with or without a `0x` prefix.
pub fn parse_id(s: &str) -> Result<Vec<u8>, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.is_empty() {
        return Err("the id is empty".into());
    }
    hex::decode(s).map_err(|e| format!("'{s}' is not hex: {e}"))
}

/// Bytes of a version id drawn at random; as many again bind them to the key.
pub const VERSION_NONCE_LEN: usize = 8;

/// Length of a version id: the random part, then the binding.
pub const VERSION_ID_LEN: usize = 2 * VERSION_NONCE_LEN;

/// The binding of a version id: the first 8 bytes of SHA-256 over a domain
/// string, the key name's length (4 bytes, big-endian) and bytes, the
/// version (4 bytes, big-endian) and the random part.
fn version_binding(name: &str, version: u32, nonce: &[u8]) -> [u8; VERSION_NONCE_LEN] {
    let mut h = Sha256::new();
    h.update(b"hsmkey key version id\0");
    h.update((name.len() as u32).to_be_bytes());
    h.update(name.as_bytes());
    h.update(version.to_be_bytes());
    h.update(nonce);
    let digest = h.finalize();
    let mut out = [0u8; VERSION_NONCE_LEN];
    out.copy_from_slice(&digest[..VERSION_NONCE_LEN]);
    out
}

/// The CKA_ID of version `version` (2 or more) of key `name`: `nonce` (8
/// random bytes), then 8 bytes that bind it to the name and the version.
/// An object labelled `name@v<version>` is that version only if its id is
/// such an id (see [`is_version_id`]); another tool's key that merely has
/// such a label is not one, but for a 1 in 2^64 chance.
pub fn version_id(name: &str, version: u32, nonce: &[u8; VERSION_NONCE_LEN]) -> Vec<u8> {
    let mut id = nonce.to_vec();
    id.extend_from_slice(&version_binding(name, version, nonce));
    id
}

/// Whether `id` is a version id of version `version` of key `name`.
pub fn is_version_id(name: &str, version: u32, id: &[u8]) -> bool {
    id.len() == VERSION_ID_LEN && {
        let (nonce, binding) = id.split_at(VERSION_NONCE_LEN);
        crate::formats::same_bytes(binding, &version_binding(name, version, nonce))
    }
}

/// A version id whose random part is taken from `seed` instead (a restore
/// gives the same key the same id on every run).
pub fn version_id_from_seed(name: &str, version: u32, seed: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(seed);
    let mut nonce = [0u8; VERSION_NONCE_LEN];
    nonce.copy_from_slice(&digest[..VERSION_NONCE_LEN]);
    version_id(name, version, &nonce)
}

#[cfg(test)]
mod tests;
