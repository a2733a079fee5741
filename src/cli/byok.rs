//! `hsmkey byok`

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use hsmkey::formats::byok::{self, aws, huawei, Target};
use hsmkey::hsm::keys::KeySelector;
use hsmkey::input::limits;
use hsmkey::ops::byok::{ByokRequest, WrappingSource};
use hsmkey::output::AtomicFile;
use hsmkey::Error;

use super::{json, terminal, Context};

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum TargetArg {
    Aws,
    Gcp,
    Azure,
    Huawei,
    Vault,
}

#[derive(Args, Debug)]
#[group(id = "wrapping_source", required = true, multiple = false)]
pub struct Source {
    /// The KMS's RSA wrapping public key: PEM, DER, or base64 DER (as the AWS
    /// CLI prints PublicKey); `-`: standard input.
    #[arg(long, value_name = "FILE")]
    wrapping_key: Option<PathBuf>,
    /// The KMS's import parameters as JSON: Huawei get-parameters-for-import
    /// response, or AWS get-parameters-for-import output (public key, import
    /// token, expiry); `-`: standard input. Expired parameters are refused.
    #[arg(long, value_name = "FILE")]
    import_params: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ByokArgs {
    /// The key to export (one version: NAME@vN when it has several).
    #[arg(long, value_name = "KEY")]
    key: String,
    /// The receiving KMS.
    #[arg(long, value_enum)]
    target: TargetArg,
    /// The target's wrapping algorithm, spelled as the target spells it:
    /// aws: RSAES_OAEP_SHA_1|RSAES_OAEP_SHA_256|RSA_AES_KEY_WRAP_SHA_1|RSA_AES_KEY_WRAP_SHA_256;
    /// gcp: RSA_OAEP_{3072,4096}_SHA1_AES_256|RSA_OAEP_{3072,4096}_SHA256_AES_256|RSA_OAEP_{3072,4096}_SHA256;
    /// azure: CKM_RSA_AES_KEY_WRAP; huawei: RSAES_OAEP_SHA_256|RSAES_OAEP_SHA_1;
    /// vault: SHA1|SHA224|SHA256|SHA384|SHA512.
    #[arg(long, value_name = "ALG")]
    algorithm: String,
    #[command(flatten)]
    source: Source,
    /// Output file (atomic, 0600). AWS: EncryptedKeyMaterial (binary); GCP:
    /// the wrapped key file; Azure: the .byok JSON; Huawei and Vault: the
    /// import request body (JSON). `-`: stdout (not with a second file, the
    /// AWS import token; the report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Azure: the versioned KEK id (https://VAULT.vault.azure.net/keys/NAME/VERSION);
    /// the printed command imports into that vault or Managed HSM.
    /// AWS: the KMS key id to put in the printed command.
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// AWS: the ImportToken (binary or base64; `-`: standard input), copied
    /// next to the output as OUT.import-token.
    #[arg(long, value_name = "FILE")]
    import_token: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    force: bool,
}

fn read(path: &Path, limit: u64, what: &str) -> hsmkey::Result<Vec<u8>> {
    hsmkey::input::read_bounded(path, limit, what)
}

/// The token work of `byok`: the key wrapped, every output file written.
fn wrap_and_write(
    ctx: &Context,
    args: &ByokArgs,
    target: Target,
    wrapping: WrappingSource,
    import_token: Option<Vec<u8>>,
    two_files: bool,
) -> hsmkey::Result<(hsmkey::ops::byok::ByokResult, Vec<String>)> {
    let selector = KeySelector::parse(&args.key)?;
    // Every output file is claimed before the token does any work, so a
    // refusal leaves nothing half-written.
    let mut main = Some(AtomicFile::for_out(&args.out, args.force)?);
    let token_path = PathBuf::from(format!("{}.import-token", args.out.display()));
    let mut token_out = if two_files {
        Some(AtomicFile::create(&token_path, args.force)?)
    } else {
        None
    };
    let module = ctx.module()?;
    let token = ctx.open_user_for(&module, Some(&selector))?;
    let now = jiff::Timestamp::now().as_second();
    let request = ByokRequest {
        key: selector,
        target,
        algorithm: args.algorithm.clone(),
        wrapping,
        kid: args.kid.clone(),
        import_token,
        now,
        out: args.out.display().to_string(),
    };
    let result = hsmkey::ops::byok::byok(&token, &request)?;
    let mut names = Vec::new();
    for file in &result.files {
        let path = PathBuf::from(format!("{}{}", args.out.display(), file.suffix));
        let claimed = if file.suffix.is_empty() {
            main.take()
        } else {
            token_out.take()
        };
        let mut f = match claimed {
            Some(f) => f,
            None => AtomicFile::create(&path, args.force)?,
        };
        use std::io::Write;
        f.file().write_all(&file.bytes).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        f.commit()?;
        names.push(path.display().to_string());
    }
    Ok((result, names))
}

pub fn run(ctx: &Context, args: ByokArgs) -> hsmkey::Result<()> {
    let target = match args.target {
        TargetArg::Aws => Target::Aws,
        TargetArg::Gcp => Target::Gcp,
        TargetArg::Azure => Target::Azure,
        TargetArg::Huawei => Target::Huawei,
        TargetArg::Vault => Target::Vault,
    };
    // Unknown algorithms are refused before the token is opened.
    byok::plan(target, &args.algorithm).map_err(|e| Error::TargetRule { rule: e.0 })?;
    let bad = |what: &str, reason: String| Error::BadInput {
        what: what.to_string(),
        reason,
    };
    let wrapping = if let Some(p) = &args.source.wrapping_key {
        WrappingSource::PublicKey(read(p, limits::PUBLIC_KEY, "wrapping key")?)
    } else if let Some(p) = &args.source.import_params {
        let bytes = read(p, limits::DOCUMENT, "import parameters")?;
        match target {
            Target::Huawei => WrappingSource::Huawei(
                huawei::ImportParameters::parse(&bytes).map_err(|r| bad("--import-params", r))?,
            ),
            Target::Aws => WrappingSource::Aws(
                aws::ImportParameters::parse(&bytes).map_err(|r| bad("--import-params", r))?,
            ),
            _ => return Err(Error::Usage {
                message:
                    "--import-params is for --target huawei or aws; give the others --wrapping-key"
                        .into(),
            }),
        }
    } else {
        unreachable!("clap requires one wrapping source")
    };
    let import_token = match &args.import_token {
        Some(p) => {
            let raw = read(p, limits::DOCUMENT, "import token")?;
            // The AWS CLI prints ImportToken as base64; accept that or the binary.
            use base64::Engine;
            let text = String::from_utf8_lossy(&raw);
            let decoded = base64::engine::general_purpose::STANDARD.decode(text.trim());
            Some(decoded.unwrap_or(raw))
        }
        None => None,
    };
    // Options that would be silently ignored are refused instead.
    if args.kid.is_some() && !matches!(target, Target::Azure | Target::Aws) {
        return Err(Error::Usage {
            message: "--kid is for --target azure (the KEK id) or aws (the key id in the printed command)".into(),
        });
    }
    if args.import_token.is_some() && (target != Target::Aws || args.source.import_params.is_some())
    {
        return Err(Error::Usage {
            message: "--import-token is for --target aws with --wrapping-key (import parameters carry their own token)".into(),
        });
    }
    let to_stdout = terminal::check_out(ctx, &args.out)?;
    let two_files =
        target == Target::Aws && (import_token.is_some() || args.source.import_params.is_some());
    if to_stdout && two_files {
        return Err(Error::Usage {
            message: "--out - holds one output, and AWS with an import token writes two (OUT and OUT.import-token): name a file".into(),
        });
    }
    let (result, names) = ctx.audited("byok", || {
        ctx.audit_note(|f| f.asked([args.key.clone()]));
        let done = wrap_and_write(ctx, &args, target, wrapping, import_token, two_files)?;
        ctx.audit_note(|f| {
            f.asked([done.0.key.clone()]);
            f.protection = Some(hsmkey::audit::Protection::Recipient {
                fingerprint: Some(done.0.wrapping_key_sha256.clone()),
                label: Some(format!("{} wrapping key", done.0.target)),
            });
            for (file, name) in done.0.files.iter().zip(&done.1) {
                if to_stdout {
                    f.output_bytes("-", &file.bytes);
                } else {
                    f.output(Path::new(name));
                }
            }
        });
        Ok(done)
    })?;
    if ctx.json() {
        json::print(&json::Byok {
            result: &result,
            files: names,
        });
    } else {
        let written = if to_stdout {
            "standard output (FILE below: where you saved it)".to_string()
        } else {
            names
                .iter()
                .map(|n| terminal::escape_path(std::path::Path::new(n)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = format!(
            "{} ({}{}) wrapped for {} with {} by the token: {}\nwritten: {}\nnext: {}\n",
            result.key,
            result.key_type,
            result.size.map(|s| format!("-{s}")).unwrap_or_default(),
            result.target,
            result.algorithm,
            result.method,
            written,
            result.command
        );
        for (name, meaning) in &result.variables {
            text.push_str(&format!("  set {name}: {meaning}\n"));
        }
        for note in &result.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        terminal::report(ctx, to_stdout, &text);
    }
    Ok(())
}
