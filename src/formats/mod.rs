//! Pure data layouts, one module per format: no token, no paths, only
//! `Read`/`Write` and bytes.

pub mod bundle;
pub mod byok;
pub mod export_key;
pub mod id;
pub mod import_params;
pub mod password;
pub mod spki;

/// Equal bytes, compared in time that does not depend on where they differ
/// (MACs computed in the token and compared here).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
