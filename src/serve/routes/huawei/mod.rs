//! Huawei Cloud's route families (docs/SERVER.md, "Huawei KMS" and "Huawei
//! CSMS"): KMS key import (`kms.rs`) and CSMS secret backup (`csms.rs`),
//! both authenticated by an API key in `X-Auth-Token` or by Huawei's AK/SK
//! request signing (`auth.rs`, `sign.rs`).
//!
//! | File | Owns |
//! |---|---|
//! | `sign.rs` | SDK-HMAC-SHA256 verification, pure. |
//! | `auth.rs` | Who sent a request, the `{project_id}` check, Huawei's error codes. |
//! | `kms.rs` | `get-parameters-for-import`, `import-key-material`. |
//! | `csms.rs` | Secret backup and restore. |

pub mod auth;
pub mod csms;
pub mod kms;
pub mod sign;
