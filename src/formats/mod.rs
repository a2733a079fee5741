//! Pure data layouts, one module per format: no token, no paths, only
//! `Read`/`Write` and bytes. The native backup bundle and the BYOK formats land
//! here (docs/FORMAT.md, docs/BYOK.md).

pub mod id;
