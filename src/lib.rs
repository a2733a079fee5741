//! hsmkey: a hardware-backed key manager. Every backup, export and import of
//! key material happens inside a PKCS#11 token as C_WrapKey / C_UnwrapKey.
//!
//! The library never prints and never reads argv: `hsm` is the only module that
//! calls cryptoki, `formats` holds pure data layouts, `ops` composes them, and
//! the binary owns the terminal.
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
pub mod config;
pub mod error;
pub mod formats;
pub mod hsm;
pub mod input;
pub mod ops;
pub mod output;
pub mod serve;
pub mod spool;

pub use error::{Error, Result};

/// The tool's name and version, as recorded in every output it writes.
pub const TOOL: &str = concat!("hsmkey ", env!("CARGO_PKG_VERSION"));
