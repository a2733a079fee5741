//! The `--json` documents. Each is one object whose `schema` member names its
//! JSON Schema, `hsmkey.<what>.v<N>`, published as docs/schemas/<name>.json.
//! The schemas are generated from the types below with `schemars`;
//! `json/tests.rs` fails when the published files differ from them.
//!
//! Within one `vN` members are only added, never renamed or removed: a
//! change that would break a reader is a new schema, `v<N+1>`.

use std::collections::BTreeMap;

use hsmkey::formats::export_key::ExportKey;
use hsmkey::formats::import_params::Parameters;
use hsmkey::hsm::keys::KeyInfo;
use hsmkey::hsm::probe::Capabilities;
use hsmkey::hsm::{TokenDetails, TokenSummary};
use hsmkey::ops::backup::{BackupReport, RestoreReport};
use hsmkey::ops::byok::ByokResult;
use hsmkey::ops::import::ImportReport;
use hsmkey::ops::inspect::Inspection;
use schemars::JsonSchema;
use serde::Serialize;

/// A `--json` document: what one command prints on stdout.
pub(crate) trait Document: Serialize + JsonSchema {
    /// The `schema` member, and the file docs/schemas/<SCHEMA>.json.
    const SCHEMA: &'static str;
    /// The command that prints it (docs/schemas/README.md; read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    const COMMAND: &'static str;
}

/// The document with its `schema` member first.
#[derive(Serialize)]
struct Tagged<'a, T> {
    schema: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// Print a document on stdout.
pub(crate) fn print<T: Document>(doc: &T) {
    super::print_json(&Tagged {
        schema: T::SCHEMA,
        body: doc,
    });
}

/// A document as `print` writes it: pretty JSON and a newline (for output
/// whose bytes must be known before they are printed).
pub(crate) fn to_vec<T: Document>(doc: &T) -> hsmkey::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(&Tagged {
        schema: T::SCHEMA,
        body: doc,
    })
    .map_err(|e| hsmkey::Error::Internal(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

macro_rules! document {
    ($type:ident, $schema:literal, $command:literal) => {
        impl $crate::cli::json::Document for $type {
            const SCHEMA: &'static str = $schema;
            const COMMAND: &'static str = $command;
        }
    };
    ($type:ident<'_>, $schema:literal, $command:literal) => {
        impl $crate::cli::json::Document for $type<'_> {
            const SCHEMA: &'static str = $schema;
            const COMMAND: &'static str = $command;
        }
    };
}
pub(crate) use document;

/// Every initialized or empty slot the module offers.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TokenList<'a> {
    pub tokens: &'a [TokenSummary],
}
document!(TokenList<'_>, "hsmkey.token-list.v1", "hsmkey token list");

/// One token's details.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TokenInfo<'a> {
    #[serde(flatten)]
    pub token: &'a TokenDetails,
}
document!(TokenInfo<'_>, "hsmkey.token-info.v1", "hsmkey token info");

/// The token just initialized.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TokenInit<'a> {
    #[serde(flatten)]
    pub token: &'a TokenSummary,
}
document!(TokenInit<'_>, "hsmkey.token-init.v1", "hsmkey token init");

/// What the token can do for hsmkey, proved by known-answer tests.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TokenMechanisms<'a> {
    #[serde(flatten)]
    pub capabilities: &'a Capabilities,
}
document!(
    TokenMechanisms<'_>,
    "hsmkey.token-mechanisms.v1",
    "hsmkey token mechanisms"
);

/// The objects created: one for a secret key, two for a key pair.
#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyGenerate<'a> {
    pub keys: &'a [KeyInfo],
}
document!(
    KeyGenerate<'_>,
    "hsmkey.key-generate.v1",
    "hsmkey key generate"
);

/// `key generate --count N`: a summary, not each key.
#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyGenerateMany<'a> {
    /// How many keys were created.
    pub created: usize,
    /// The first label made (LABEL-00001), or null when none.
    pub first: Option<&'a str>,
    /// The last label made, or null when none.
    pub last: Option<&'a str>,
}
document!(
    KeyGenerateMany<'_>,
    "hsmkey.key-generate-many.v1",
    "hsmkey key generate --count N"
);

/// Every key object the selector names (all of them without one), every version.
#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyList<'a> {
    pub keys: &'a [KeyInfo],
}
document!(KeyList<'_>, "hsmkey.key-list.v1", "hsmkey key list");

/// The key objects the selector names; at least one.
#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyShow<'a> {
    pub keys: &'a [KeyInfo],
}
document!(KeyShow<'_>, "hsmkey.key-show.v1", "hsmkey key show");

/// The public key written as PEM.
#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyPublic<'a> {
    pub label: &'a str,
    /// "rsa" or "ec".
    #[serde(rename = "type")]
    pub key_type: &'a str,
    /// The PEM file written.
    pub out: String,
    /// SHA-256 of the SubjectPublicKeyInfo DER, hex: what a recipient bundle records.
    pub spki_sha256: &'a str,
}
document!(KeyPublic<'_>, "hsmkey.key-public.v1", "hsmkey key public");

/// The objects of the new version.
#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyRotate<'a> {
    pub keys: &'a [KeyInfo],
}
document!(KeyRotate<'_>, "hsmkey.key-rotate.v1", "hsmkey key rotate");

/// The objects relabelled, as they are now.
#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyLabel<'a> {
    pub keys: &'a [KeyInfo],
}
document!(KeyLabel<'_>, "hsmkey.key-label.v1", "hsmkey key label");

/// The objects destroyed, as they were just before.
#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyDestroy<'a> {
    pub keys: &'a [KeyInfo],
}
document!(
    KeyDestroy<'_>,
    "hsmkey.key-destroy.v1",
    "hsmkey key destroy"
);

/// What a backup wrote.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Backup<'a> {
    /// The file written.
    pub out: String,
    /// "bundle" or "blob".
    pub format: &'static str,
    #[serde(flatten)]
    pub report: &'a BackupReport,
    /// `--format blob`: the blob itself (also in the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_blob: Option<String>,
}
document!(Backup<'_>, "hsmkey.backup.v1", "hsmkey backup");

/// What a restore created (with `dry_run`, would create).
#[derive(Serialize, JsonSchema)]
pub(crate) struct Restore<'a> {
    #[serde(flatten)]
    pub report: &'a RestoreReport,
}
document!(Restore<'_>, "hsmkey.restore.v1", "hsmkey restore");

/// A bundle proved to restore: the MAC checked in the token and every key
/// unwrapped into a session object, checked and destroyed. A bundle that
/// fails is never reported here: the command prints hsmkey.error.v1 and
/// exits non-zero.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Verify<'a> {
    /// Always true: a verify that fails prints an error instead.
    #[schemars(extend("const" = true))]
    pub verified: bool,
    #[serde(flatten)]
    pub report: &'a RestoreReport,
}
document!(Verify<'_>, "hsmkey.verify.v1", "hsmkey verify");

/// A bundle or blob described without a token.
#[derive(Serialize, JsonSchema)]
pub(crate) struct BundleInspect<'a> {
    /// The file read, as given.
    pub file: String,
    #[serde(flatten)]
    pub report: &'a Inspection,
}
document!(
    BundleInspect<'_>,
    "hsmkey.bundle-inspect.v1",
    "hsmkey bundle inspect"
);

/// A key wrapped for a cloud KMS, and the command that imports it.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Byok<'a> {
    #[serde(flatten)]
    pub result: &'a ByokResult,
    /// The files written: the main output, and for AWS its import token.
    pub files: Vec<String>,
}
document!(Byok<'_>, "hsmkey.byok.v1", "hsmkey byok");

/// The import parameters, as written to `--out`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ImportParams<'a> {
    #[serde(flatten)]
    pub params: &'a Parameters,
}
document!(
    ImportParams<'_>,
    "hsmkey.import-params.v1",
    "hsmkey import-params"
);

/// The key imported.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Import<'a> {
    #[serde(flatten)]
    pub report: &'a ImportReport,
}
document!(Import<'_>, "hsmkey.import.v1", "hsmkey import");

/// The export key. Without `--json` (and in the `--out` file) the same
/// members are printed without `schema`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ExportKeyDoc<'a> {
    #[serde(flatten)]
    pub doc: &'a ExportKey,
}
document!(
    ExportKeyDoc<'_>,
    "hsmkey.export-key.v1",
    "hsmkey export-key"
);

/// The key created from an export key.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ImportExportKey<'a> {
    pub keys: &'a [KeyInfo],
}
document!(
    ImportExportKey<'_>,
    "hsmkey.import-export-key.v1",
    "hsmkey import-export-key"
);

/// A failed command, on stdout, with the exit code docs/ERRORS.md gives.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ErrorDoc<'a> {
    /// HKnnnn (docs/ERRORS.md).
    pub error_code: &'a str,
    /// What went wrong.
    pub message: String,
    /// Named details (key, path, mechanism...), depending on the code.
    pub context: BTreeMap<&'static str, String>,
    /// What to do next.
    pub hint: String,
}
document!(ErrorDoc<'_>, "hsmkey.error.v1", "any command that fails");

/// `audit verify`: the log passed every check (a bad log is the error
/// HK1308). docs/AUDIT.md.
#[derive(Serialize, JsonSchema)]
pub(crate) struct AuditVerify<'a> {
    #[serde(flatten)]
    pub report: &'a hsmkey::audit::verify::Report,
}
document!(
    AuditVerify<'_>,
    "hsmkey.audit-verify.v1",
    "hsmkey audit verify"
);

/// `audit show`: the lines of a log that pass the filters, as written
/// (nothing checked). docs/AUDIT.md.
#[derive(Serialize, JsonSchema)]
pub(crate) struct AuditShow<'a> {
    /// The log read.
    pub path: String,
    /// The lines shown, oldest first, each an audit line
    /// (hsmkey.audit-line.v1).
    pub lines: &'a [hsmkey::audit::Line],
    /// Lines of the log that are not audit lines, left out.
    pub unreadable: u64,
}
document!(AuditShow<'_>, "hsmkey.audit-show.v1", "hsmkey audit show");

/// One published schema.
#[cfg(test)]
pub(crate) struct Published {
    pub name: &'static str,
    pub command: &'static str,
    pub schema: fn() -> serde_json::Value,
}

#[cfg(test)]
fn published<T: Document>() -> Published {
    Published {
        name: T::SCHEMA,
        command: T::COMMAND,
        schema: schema_of::<T>,
    }
}

/// Every schema hsmkey publishes, in the order docs/schemas/README.md lists them.
#[cfg(test)]
pub(crate) fn all() -> Vec<Published> {
    vec![
        published::<TokenList<'static>>(),
        published::<super::profile::ProfileList>(),
        published::<super::profile::ProfileShow>(),
        published::<TokenInfo<'static>>(),
        published::<TokenInit<'static>>(),
        published::<TokenMechanisms<'static>>(),
        published::<KeyGenerate<'static>>(),
        published::<KeyGenerateMany<'static>>(),
        published::<KeyList<'static>>(),
        published::<KeyShow<'static>>(),
        published::<KeyPublic<'static>>(),
        published::<KeyRotate<'static>>(),
        published::<KeyDestroy<'static>>(),
        published::<KeyLabel<'static>>(),
        published::<Backup<'static>>(),
        published::<Restore<'static>>(),
        published::<Verify<'static>>(),
        published::<BundleInspect<'static>>(),
        published::<Byok<'static>>(),
        published::<ImportParams<'static>>(),
        published::<Import<'static>>(),
        published::<ExportKeyDoc<'static>>(),
        published::<ImportExportKey<'static>>(),
        published::<AuditVerify<'static>>(),
        published::<AuditShow<'static>>(),
        published::<ErrorDoc<'static>>(),
        // Not printed: what the audit log holds, one per line (docs/AUDIT.md).
        Published {
            name: hsmkey::audit::line::SCHEMA,
            command: "each line of the audit log",
            schema: hsmkey::audit::line::schema,
        },
    ]
}

/// The JSON Schema (draft 2020-12) of what `T` serializes to, with the
/// `schema` member every document carries.
#[cfg(test)]
pub(crate) fn schema_of<T: Document>() -> serde_json::Value {
    use serde_json::{json, Value};
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut value = generator.into_root_schema_for::<T>().to_value();
    let Some(root) = value.as_object_mut() else {
        unreachable!("a document is an object")
    };
    root.insert("title".into(), json!(T::SCHEMA));
    let properties = root
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(properties) = properties {
        let own = properties.insert(
            "schema".into(),
            json!({
                "description": "The name of this schema: what the document is and its version.",
                "type": "string",
                "const": T::SCHEMA,
            }),
        );
        // A report with its own `schema` member would print it twice.
        assert!(own.is_none(), "{} has a member named schema", T::SCHEMA);
    }
    let required = root.entry("required").or_insert_with(|| json!([]));
    if let Value::Array(names) = required {
        names.insert(0, json!("schema"));
    }
    value
}

#[cfg(test)]
mod tests;
