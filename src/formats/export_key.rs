//! Piiano Vault's "get export key" shape: `{"export_key": "<base64>"}`, plus
//! what the importing side needs to check: the wrap algorithm, the KEK's
//! identity and the key's KCV.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExportKey {
    /// base64 of the key wrapped under the KEK.
    pub export_key: String,
    /// "rfc3394" or "rfc5649".
    pub algorithm: String,
    /// "aes" or "generic".
    pub key_type: String,
    pub size: Option<u64>,
    /// KCV of the exported key, with its method.
    pub kcv: Option<String>,
    pub kcv_method: Option<String>,
    pub kek_label: String,
    pub kek_kcv: Option<String>,
}

impl ExportKey {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not an export-key document: {e}"))
    }
}
