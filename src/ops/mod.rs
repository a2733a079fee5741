//! Use-cases: each composes `hsm` (the token) and `formats` (the bytes).

pub mod backup;
pub mod byok;
pub mod import;
pub mod inspect;
pub mod keys;
