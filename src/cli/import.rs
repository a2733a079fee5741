//! `hsmkey import-params`, `import`, `export-key`, `import-export-key`.

use std::path::{Path, PathBuf};

use clap::Args;
use hsmkey::formats::export_key::ExportKey;
use hsmkey::formats::import_params::{self, Material};
use hsmkey::hsm::keys::{BackupPolicy, KeySelector, KeySpec, Usage};
use hsmkey::ops::import::{self as imp, ImportRequest, MaterialInput, ParamsRequest};
use std::io::Write;

use hsmkey::output::{write_atomic, AtomicFile};
use hsmkey::Error;

use super::{json, out, terminal, Context};

fn read(path: &Path, what: &str) -> hsmkey::Result<Vec<u8>> {
    hsmkey::input::read_bounded(path, hsmkey::input::limits::DOCUMENT, what)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[derive(Args, Debug)]
pub struct ParamsArgs {
    /// Size of the RSA wrapping key pair made in the token.
    #[arg(long, value_name = "SPEC", value_parser = ["RSA_2048", "RSA_3072", "RSA_4096"])]
    key_spec: String,
    /// How the sender will wrap the key material.
    #[arg(long, value_name = "ALG", value_parser = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"])]
    algorithm: String,
    /// Key id (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, lowercase); default: random.
    #[arg(long, value_name = "UUID")]
    key_id: Option<String>,
    /// How long the parameters stay valid: 90s, 30m, 24h, 7d (default 24h, as AWS).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    valid_for: String,
    /// Where to write the parameters (JSON: key_id, import_token, expiration_time,
    /// public_key); `-`: stdout (the report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

/// The token work of `import-params`: the key pair made, the file written.
fn params_in_token(
    ctx: &Context,
    args: &ParamsArgs,
    bits: u64,
    valid_for: i64,
) -> hsmkey::Result<(import_params::Parameters, Vec<u8>)> {
    // Staged before any token work: a folder that cannot take the file fails
    // here, not after the key pair is made.
    let mut staged = Some(AtomicFile::for_out(&args.out, args.force)?);
    let module = ctx.module()?;
    let _lock = ctx.lock(&module, None, "import-params")?;
    let token = ctx.open_user(&module)?;
    let mut written = Vec::new();
    let params = imp::import_params(
        &token,
        &ParamsRequest {
            bits,
            algorithm: args.algorithm.clone(),
            key_id: args.key_id.clone(),
            valid_for,
            now: now(),
        },
        &mut |params| {
            let mut bytes =
                serde_json::to_vec_pretty(params).map_err(|e| Error::Internal(e.to_string()))?;
            bytes.push(b'\n');
            let mut file = staged
                .take()
                .ok_or_else(|| Error::Internal("import parameters published twice".into()))?;
            file.file().write_all(&bytes).map_err(|e| Error::Io {
                path: args.out.display().to_string(),
                source: e,
            })?;
            file.commit()?;
            written = bytes;
            Ok(())
        },
    )?;
    Ok((params, written))
}

pub fn run_params(ctx: &Context, args: ParamsArgs) -> hsmkey::Result<()> {
    let bits = import_params::key_spec_bits(&args.key_spec).ok_or_else(|| Error::Usage {
        message: format!("unknown --key-spec {}", args.key_spec),
    })?;
    let valid_for =
        import_params::parse_duration(&args.valid_for).map_err(|reason| Error::BadInput {
            what: "--valid-for".into(),
            reason,
        })?;
    let to_stdout = terminal::check_out(ctx, &args.out)?;
    let params = ctx.audited("import-params", || {
        let (params, written) = params_in_token(ctx, &args, bits, valid_for)?;
        ctx.audit_note(|f| {
            let id = hex::encode(params.key_id.as_bytes());
            f.keys = hsmkey::audit::Keys::Listed(
                ["private-key", "public-key"]
                    .into_iter()
                    .map(|class| hsmkey::audit::KeyRef {
                        class: Some(class.into()),
                        id: Some(id.clone()),
                        version: Some(1),
                        ..hsmkey::audit::KeyRef::named(format!(
                            "{}{}",
                            imp::PAIR_PREFIX,
                            params.key_id
                        ))
                    })
                    .collect(),
            );
            if to_stdout {
                f.output_bytes("-", &written);
            } else {
                f.output(&args.out);
            }
        });
        Ok(params)
    })?;
    if ctx.json() {
        json::print(&json::ImportParams { params: &params });
    } else {
        terminal::report(
            ctx,
            to_stdout,
            &format!(
                "import parameters for key id {} (RSA {bits}, {}) valid until {} written to {}\n",
                params.key_id,
                args.algorithm,
                params.expiration_time,
                terminal::out_name(&args.out)
            ),
        );
    }
    Ok(())
}

/// The new key's properties.
#[derive(Args, Debug)]
pub struct NewKeyArgs {
    /// Label of the new key.
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// What the material is: aes-128|aes-192|aes-256|generic-256|rsa-2048|rsa-3072|rsa-4096|ec-p256|ec-p384.
    #[arg(long = "type", value_name = "TYPE")]
    key_type: String,
    /// none (default), trusted or any: whether the new key may leave again.
    #[arg(long, value_name = "POLICY", default_value = "none")]
    backup_policy: String,
    /// Usage flags (default by type, as `key generate`).
    #[arg(long, value_name = "LIST")]
    usage: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The import-key-material request (JSON: key_id, import_token,
    /// encrypted_key_material, encrypted_privatekey?), or with --import-token
    /// the raw EncryptedKeyMaterial (AWS style). `-`: standard input.
    #[arg(long, value_name = "FILE")]
    material: PathBuf,
    /// The import token, when --material is raw bytes (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    import_token: Option<PathBuf>,
    #[command(flatten)]
    key: NewKeyArgs,
}

pub fn run_import(ctx: &Context, args: ImportArgs) -> hsmkey::Result<()> {
    let bytes = read(&args.material, "key material")?;
    // What the audit line says was read (the bytes, `-` included).
    let mut read_in = vec![(
        args.material.clone(),
        hsmkey::audit::line::sha256_hex(&bytes),
    )];
    let input = match &args.import_token {
        Some(t) => {
            let token_bytes = read(t, "import token")?;
            read_in.push((t.clone(), hsmkey::audit::line::sha256_hex(&token_bytes)));
            MaterialInput::Raw {
                material: bytes,
                import_token: String::from_utf8_lossy(&token_bytes).trim().to_string(),
            }
        }
        None => MaterialInput::Json(Material::parse(&bytes).map_err(|reason| Error::BadInput {
            what: "--material".into(),
            reason,
        })?),
    };
    let spec: KeySpec = args.key.key_type.parse()?;
    let policy: BackupPolicy = args.key.backup_policy.parse()?;
    let usage = args
        .key
        .usage
        .as_deref()
        .map(str::parse::<Usage>)
        .transpose()?;
    let report = ctx.audited("import", || {
        ctx.audit_note(|f| {
            f.asked([args.key.label.clone()]);
            for (path, sha256) in &read_in {
                f.inputs.push(hsmkey::audit::FileRef {
                    path: path.display().to_string(),
                    sha256: sha256.clone(),
                });
            }
        });
        let module = ctx.module()?;
        let _lock = ctx.lock(&module, None, "import")?;
        let token = ctx.open_user(&module)?;
        let report = imp::import(
            &token,
            &ImportRequest {
                input,
                label: args.key.label.clone(),
                spec,
                policy,
                usage,
                now: now(),
            },
        )?;
        ctx.audit_note(|f| {
            f.keys(&report.keys);
            f.protection = Some(hsmkey::audit::Protection::Recipient {
                fingerprint: None,
                label: Some(format!("{}{}", imp::PAIR_PREFIX, report.key_id)),
            });
        });
        Ok(report)
    })?;
    if ctx.json() {
        json::print(&json::Import { report: &report });
    } else if let Some(k) = report.keys.first() {
        out(&format!(
            "imported {} ({} {}, KCV {}) with key id {} ({}); the import parameters are used up\n",
            k.label,
            k.class,
            k.key_type,
            k.kcv.as_deref().unwrap_or("unavailable"),
            report.key_id,
            report.algorithm
        ));
        for left in &report.left_behind {
            out(&format!(
                "note: the used import key pair's {left} could not be removed (harmless without its private key); destroy it by hand\n"
            ));
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExportKeyArgs {
    /// The key to export (a secret key; one version).
    #[arg(long, value_name = "KEY")]
    key: String,
    /// The KEK to wrap it under.
    #[arg(long, value_name = "KEY")]
    kek: String,
    /// Also write the JSON to this file (atomic, 0600). The JSON is always
    /// printed on stdout; `-` writes no file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

pub fn run_export(ctx: &Context, args: ExportKeyArgs) -> hsmkey::Result<()> {
    let dek = KeySelector::parse(&args.key)?;
    let kek = KeySelector::parse(&args.kek)?;
    let printed = ctx.audited("export-key", || {
        ctx.audit_note(|f| {
            f.asked([dek.shown.clone()]);
            f.protection = Some(hsmkey::audit::Protection::Kek {
                label: kek.shown.clone(),
                kcv: None,
            });
        });
        let module = ctx.module()?;
        let token = ctx.open_user_for(&module, Some(&dek))?;
        let doc = imp::export_key(&token, &dek, &kek)?;
        let mut bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| Error::Internal(e.to_string()))?;
        bytes.push(b'\n');
        let file = args.out.as_ref().filter(|p| !hsmkey::input::is_stdio(p));
        if let Some(path) = file {
            write_atomic(path, &bytes, args.force)?;
        }
        // The export key is the product: JSON with or without --json; with
        // it, the document names its schema like every --json output.
        let printed = if ctx.json() {
            json::to_vec(&json::ExportKeyDoc { doc: &doc })?
        } else {
            bytes
        };
        ctx.audit_note(|f| {
            if let Some(k) = f.keys.first_mut() {
                k.kcv = doc.kcv.clone();
            }
            f.protection = Some(hsmkey::audit::Protection::Kek {
                label: doc.kek_label.clone(),
                kcv: doc.kek_kcv.clone(),
            });
            file.iter().for_each(|p| f.output(p));
            // The document is printed too: what leaves on stdout, as printed.
            f.output_bytes("-", &printed);
        });
        Ok(printed)
    })?;
    out(&String::from_utf8(printed).map_err(|e| Error::Internal(e.to_string()))?);
    Ok(())
}

#[derive(Args, Debug)]
pub struct ImportExportArgs {
    /// The export-key JSON (from `hsmkey export-key`; `-`: standard input).
    file: PathBuf,
    /// The KEK it was wrapped under (the same key, on this token).
    #[arg(long, value_name = "KEY")]
    kek: String,
    /// Label of the new key.
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// none (default), trusted or any.
    #[arg(long, value_name = "POLICY", default_value = "none")]
    backup_policy: String,
    /// Usage flags (default by type).
    #[arg(long, value_name = "LIST")]
    usage: Option<String>,
}

pub fn run_import_export(ctx: &Context, args: ImportExportArgs) -> hsmkey::Result<()> {
    let bytes = read(&args.file, "export key")?;
    let doc = ExportKey::parse(&bytes).map_err(|reason| Error::BadInput {
        what: hsmkey::input::shown(&args.file),
        reason,
    })?;
    let kek = KeySelector::parse(&args.kek)?;
    let policy: BackupPolicy = args.backup_policy.parse()?;
    let usage = args.usage.as_deref().map(str::parse::<Usage>).transpose()?;
    let made = ctx.audited("import-export-key", || {
        ctx.audit_note(|f| {
            f.asked([args.label.clone()]);
            f.input_bytes(&args.file, &bytes);
            f.protection = Some(hsmkey::audit::Protection::Kek {
                label: doc.kek_label.clone(),
                kcv: doc.kek_kcv.clone(),
            });
        });
        let module = ctx.module()?;
        let _lock = ctx.lock(&module, None, "import-export-key")?;
        let token = ctx.open_user(&module)?;
        let made = imp::import_export_key(&token, &doc, &kek, &args.label, policy, usage)?;
        ctx.audit_note(|f| f.keys(&made));
        Ok(made)
    })?;
    if ctx.json() {
        json::print(&json::ImportExportKey { keys: &made });
    } else if let Some(k) = made.first() {
        out(&format!(
            "imported {} (KCV {})\n",
            k.label,
            k.kcv.as_deref().unwrap_or("unavailable")
        ));
    }
    Ok(())
}
