//! `hsmkey key ...`

use clap::Subcommand;
use hsmkey::formats::id::parse_id;
use hsmkey::hsm::keys::{BackupPolicy, GenerateSpec, KeyInfo, KeySelector, KeySpec, Usage};
use hsmkey::ops;
use hsmkey::Error;

use super::json::{self, Document};
use super::{escape, out, table, terminal, Context};

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a key in the token. Keys are always CKA_SENSITIVE; they leave the
    /// token only wrapped, and only if --backup-policy allows it.
    Generate {
        /// The key's name (CKA_LABEL). Later versions are labelled NAME@v2, NAME@v3...
        #[arg(long)]
        label: String,
        /// aes-128|aes-192|aes-256|generic-256|rsa-2048|rsa-3072|rsa-4096|ec-p256|ec-p384
        /// (default aes-256 with --kek).
        #[arg(long = "type", value_name = "TYPE")]
        key_type: Option<String>,
        /// CKA_ID as hex; refused if any key on the token has it. Default: 16 random bytes from the token.
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
        /// Comma-separated: encrypt,decrypt,sign,verify,wrap,unwrap,derive.
        /// Default: encrypt,decrypt for AES; sign,verify otherwise; wrap,unwrap with --kek.
        #[arg(long, value_name = "LIST")]
        usage: Option<String>,
        /// none: never leaves the token (default). trusted: may be wrapped only
        /// under keys the SO marked CKA_TRUSTED. any: may be wrapped under any
        /// wrapping key (weaker: see docs/KEYS.md).
        #[arg(long, value_name = "POLICY", default_value = "none")]
        backup_policy: String,
        /// Make a key-encryption key: AES-256, wrap/unwrap, non-extractable.
        #[arg(long)]
        kek: bool,
        /// Set CKA_TRUSTED so that keys with --backup-policy trusted may be wrapped
        /// under this one. Needs the SO PIN (--so-pin-source); the key is then a
        /// public (CKA_PRIVATE=false) token object, usable by the user.
        #[arg(long)]
        trusted: bool,
        /// Make N keys labelled LABEL-00001, LABEL-00002, ... (test tokens,
        /// benchmarks); each gets its own random id. Prints a summary only.
        #[arg(long, value_name = "N", conflicts_with_all = ["id", "trusted"])]
        count: Option<u32>,
    },
    /// List keys (optionally those a name or pkcs11: URI names), every version,
    /// with whether each is sensitive and extractable.
    List {
        /// A label or pkcs11: URI; default: every key.
        key: Option<String>,
    },
    /// Show every attribute hsmkey uses for a key, and its KCV.
    Show {
        /// Name (all versions), NAME@vN (one version) or pkcs11: URI (object= is
        /// the exact label).
        key: String,
    },
    /// Write the public half of a key pair as PEM (SubjectPublicKeyInfo): what
    /// `backup --recipient` takes on the sending side.
    Public {
        /// Label, NAME@vN or pkcs11: URI of one version of a key pair.
        key: String,
        /// Output file (atomic, 0600); `-`: stdout (the report then goes to stderr).
        #[arg(long, value_name = "PUB.pem")]
        out: std::path::PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Make the next version of a key: same type, usage and backup policy, its own id.
    Rotate {
        /// The key's name or URI.
        key: String,
    },
    /// Destroy a key: every version and both halves of a key pair, unless the URI narrows it.
    Destroy {
        /// Label, NAME@vN or pkcs11: URI.
        key: String,
        /// Confirm; without it nothing is destroyed.
        #[arg(long)]
        yes: bool,
    },
    /// Give one key a new label (CKA_LABEL; both halves of a key pair): for keys
    /// another tool made without one, which backup cannot take. The new name must
    /// be free; a key with versions is relabelled one version at a time.
    Label {
        /// The key: NAME@vK or a pkcs11: URI (`pkcs11:id=%0f%0e` for a key without a label).
        key: String,
        /// The new label.
        new_label: String,
    },
}

pub fn run(ctx: &Context, cmd: KeyCommand) -> hsmkey::Result<()> {
    match cmd {
        KeyCommand::Generate {
            label,
            key_type,
            id,
            usage,
            backup_policy,
            kek,
            trusted,
            count,
        } => {
            let spec = match key_type {
                Some(t) => t.parse()?,
                None if kek => KeySpec::Aes256,
                None => {
                    return Err(Error::Usage {
                        message: "--type is required (or --kek for an AES-256 key-encryption key)"
                            .into(),
                    })
                }
            };
            let usage = usage.map(|u| u.parse::<Usage>()).transpose()?;
            let policy: BackupPolicy = backup_policy.parse()?;
            let id = id
                .map(|hex| {
                    parse_id(&hex).map_err(|reason| Error::BadInput {
                        what: "--id".into(),
                        reason,
                    })
                })
                .transpose()?;
            let mut request = GenerateSpec {
                name: label,
                id: id.unwrap_or_default(),
                spec,
                usage,
                policy,
                kek,
                trusted,
                version: 1,
            };
            hsmkey::hsm::keys::effective_usage(&request)?;
            if count == Some(0) {
                return Err(Error::Usage {
                    message: "--count takes 1 or more".into(),
                });
            }
            if let Some(n) = count {
                let labels = ctx.audited("key generate", || {
                    let module = ctx.module()?;
                    let _lock = ctx.lock(&module, None, "key generate --count")?;
                    let token = ctx.open_user(&module)?;
                    let mut bar = super::backup::Bar::new(ctx, "generate");
                    let labels = ops::keys::generate_many(&token, &request, n, &mut |d, t| {
                        bar.update(d, t)
                    })?;
                    ctx.audit_note(|f| f.asked(labels.iter().cloned()));
                    Ok(labels)
                })?;
                if ctx.json() {
                    json::print(&json::KeyGenerateMany {
                        created: labels.len(),
                        first: labels.first().map(String::as_str),
                        last: labels.last().map(String::as_str),
                    });
                } else {
                    out(&format!(
                        "{} key(s) created: {} .. {}\n",
                        labels.len(),
                        labels.first().map(String::as_str).unwrap_or("-"),
                        labels.last().map(String::as_str).unwrap_or("-")
                    ));
                }
                return Ok(());
            }
            let made = ctx.audited("key generate", || {
                ctx.audit_note(|f| f.asked([request.name.clone()]));
                let module = ctx.module()?;
                let lock;
                let token = {
                    // Names and ids are checked where private objects are visible:
                    // an SO session sees only public ones.
                    // Held from the check to the create, across the SO session.
                    lock = ctx.lock(&module, None, "key generate")?;
                    let user = ctx.open_user(&module)?;
                    if request.id.is_empty() {
                        request.id = ops::keys::random_id(&user)?;
                    }
                    ops::keys::check_available(&user, &request.name, &request.id)?;
                    if trusted {
                        drop(user);
                        ctx.open_so_for(&module, None)?
                    } else {
                        user
                    }
                };
                let made = ops::keys::generate(&token, &request)?;
                drop(lock);
                ctx.audit_note(|f| f.keys(&made));
                Ok(made)
            })?;
            render_keys(ctx, &made, "created", |keys| json::KeyGenerate { keys });
        }
        KeyCommand::List { key } => {
            let selector = match key {
                Some(k) => KeySelector::parse(&k)?,
                None => KeySelector::all(),
            };
            let module = ctx.module()?;
            let token = ctx.open_user_for(&module, Some(&selector))?;
            let keys = ops::keys::list(&token, &selector)?;
            render_keys(ctx, &keys, "list", |keys| json::KeyList { keys });
        }
        KeyCommand::Show { key } => {
            let selector = KeySelector::parse(&key)?;
            let module = ctx.module()?;
            let token = ctx.open_user_for(&module, Some(&selector))?;
            let keys = ops::keys::show(&token, &selector)?;
            if ctx.json() {
                json::print(&json::KeyShow { keys: &keys });
            } else {
                let mut text = String::new();
                for k in &keys {
                    text.push_str(&show_one(k));
                    text.push('\n');
                }
                out(&text);
            }
        }
        KeyCommand::Public {
            key,
            out: path,
            force,
        } => {
            let selector = KeySelector::parse(&key)?;
            let to_stdout = terminal::check_out(ctx, &path)?;
            // Claim the output before any token work.
            let mut file = hsmkey::output::AtomicFile::for_out(&path, force)?;
            let module = ctx.module()?;
            let token = ctx.open_user_for(&module, Some(&selector))?;
            let export = ops::keys::public_pem(&token, &selector)?;
            use std::io::Write;
            file.file()
                .write_all(export.pem.as_bytes())
                .map_err(|e| Error::Io {
                    path: path.display().to_string(),
                    source: e,
                })?;
            file.commit()?;
            if ctx.json() {
                json::print(&json::KeyPublic {
                    label: &export.label,
                    key_type: &export.key_type,
                    out: path.display().to_string(),
                    spki_sha256: &export.spki_sha256,
                });
            } else {
                terminal::report(
                    ctx,
                    to_stdout,
                    &format!(
                        "public key of {} written to {} (SHA-256 of SPKI: {})\n",
                        export.label,
                        terminal::out_name(&path),
                        export.spki_sha256
                    ),
                );
            }
        }
        KeyCommand::Rotate { key } => {
            let selector = KeySelector::parse(&key)?;
            let made = ctx.audited("key rotate", || {
                ctx.audit_note(|f| f.asked([selector.shown.clone()]));
                let module = ctx.module()?;
                let (made, lock) = {
                    let lock = ctx.lock(&module, Some(&selector), "key rotate")?;
                    let token = ctx.open_user_for(&module, Some(&selector))?;
                    (ops::keys::rotate(&token, &selector), lock)
                };
                // A trusted KEK can only be made by the SO: retry in an SO session.
                let made = match made {
                    Err(Error::SoLoginRequired { .. }) => {
                        let token = ctx.open_so_for(&module, Some(&selector))?;
                        ops::keys::rotate(&token, &selector)?
                    }
                    other => other?,
                };
                drop(lock);
                ctx.audit_note(|f| f.keys(&made));
                Ok(made)
            })?;
            render_keys(ctx, &made, "created", |keys| json::KeyRotate { keys });
        }
        KeyCommand::Destroy { key, yes } => {
            let selector = KeySelector::parse(&key)?;
            if !yes {
                return Err(Error::Usage {
                    message: format!(
                        "destroying '{}' is permanent; add --yes to confirm",
                        selector.shown
                    ),
                });
            }
            let gone = ctx.audited("key destroy", || {
                ctx.audit_note(|f| f.asked([selector.shown.clone()]));
                let module = ctx.module()?;
                let _lock = ctx.lock(&module, Some(&selector), "key destroy")?;
                let token = ctx.open_user_for(&module, Some(&selector))?;
                let gone = ops::keys::destroy(&token, &selector)?;
                ctx.audit_note(|f| f.keys(&gone));
                Ok(gone)
            })?;
            render_keys(ctx, &gone, "destroyed", |keys| json::KeyDestroy { keys });
        }
        KeyCommand::Label { key, new_label } => {
            let selector = KeySelector::parse(&key)?;
            let renamed = ctx.audited("key label", || {
                ctx.audit_note(|f| f.asked([selector.shown.clone(), new_label.clone()]));
                let module = ctx.module()?;
                let _lock = ctx.lock(&module, Some(&selector), "key label")?;
                let token = ctx.open_user_for(&module, Some(&selector))?;
                let renamed = ops::keys::relabel(&token, &selector, &new_label)?;
                ctx.audit_note(|f| f.keys(&renamed));
                Ok(renamed)
            })?;
            render_keys(ctx, &renamed, "relabelled", |keys| json::KeyLabel { keys });
        }
    }
    Ok(())
}

/// The label as the token holds it: its own bytes when they are not UTF-8.
fn label_bytes(k: &KeyInfo) -> Vec<u8> {
    k.label_hex
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_else(|| k.label.as_bytes().to_vec())
}

/// `yes`, `no`, or `-` when the token does not report the attribute.
fn yes_no(flag: Option<bool>) -> &'static str {
    match flag {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// Keys as a table (`verb` "list" for `key list`, which adds whether each
/// key is sensitive and extractable), or as JSON.
fn render_keys<'a, D: Document>(
    ctx: &Context,
    keys: &'a [KeyInfo],
    verb: &str,
    doc: impl FnOnce(&'a [KeyInfo]) -> D,
) {
    if ctx.json() {
        json::print(&doc(keys));
        return;
    }
    let listing = verb == "list";
    let rows: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| {
            let mut row = vec![
                label_bytes(k),
                k.id.clone().into_bytes(),
                k.class.clone().into_bytes(),
                k.key_type.clone().into_bytes(),
                k.size
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into())
                    .into_bytes(),
                k.version.to_string().into_bytes(),
                k.usage.join(",").into_bytes(),
                k.backup_policy.clone().into_bytes(),
            ];
            if listing {
                row.push(yes_no(k.sensitive).into());
                row.push(yes_no(k.extractable).into());
            }
            row.push(
                k.kcv
                    .clone()
                    .unwrap_or_else(|| "unavailable".into())
                    .into_bytes(),
            );
            row
        })
        .collect();
    let mut header = vec![
        "LABEL", "ID", "CLASS", "TYPE", "SIZE", "VERSION", "USAGE", "BACKUP",
    ];
    if listing {
        header.extend(["SENSITIVE", "EXTRACTABLE"]);
    }
    header.push("KCV");
    let mut text = table(&header, &rows);
    if !listing {
        text.push_str(&format!("{} object(s) {verb}\n", keys.len()));
    } else if keys.is_empty() {
        text.push_str("no keys\n");
    }
    out(&text);
}

fn show_one(k: &KeyInfo) -> String {
    let flag = |b: Option<bool>| match b {
        Some(true) => "true",
        Some(false) => "false",
        None => "not reported",
    };
    format!(
        "label:             {}\nname / version:    {} / {}\nid:                {}\nclass:             {}\ntype:              {}\nsize:              {}\nusage:             {}\nbackup policy:     {}\nKCV:               {} ({})\nsensitive:         {}\nextractable:       {}\nalways sensitive:  {}\nnever extractable: {}\nwrap with trusted: {}\ntrusted:           {}\nprivate:           {}\nlocal:             {}\nmodifiable:        {}\nURI:               {}\n",
        escape(&label_bytes(k)),
        if k.name == k.label {
            escape(&label_bytes(k))
        } else {
            escape(k.name.as_bytes())
        },
        k.version,
        k.id,
        k.class,
        k.key_type,
        k.size.map(|s| format!("{s} bits")).unwrap_or_else(|| "unknown".into()),
        k.usage.join(","),
        k.backup_policy,
        k.kcv.as_deref().unwrap_or("unavailable"),
        k.kcv_method,
        flag(k.sensitive),
        flag(k.extractable),
        flag(k.always_sensitive),
        flag(k.never_extractable),
        flag(k.wrap_with_trusted),
        flag(k.trusted),
        flag(k.private),
        flag(k.local),
        flag(k.modifiable),
        k.uri
    )
}
