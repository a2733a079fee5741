//! Pure data layouts, one module per format: no token, no paths, only
//! `Read`/`Write` and bytes.

pub mod bundle;
pub mod byok;
pub mod export_key;
pub mod id;
pub mod import_params;
pub mod password;
pub mod spki;
