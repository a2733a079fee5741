//! `hsmkey token ...`

use clap::Subcommand;
use hsmkey::hsm::probe;
use hsmkey::Error;

use super::{json, out, table, Context};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// List the slots that hold a token.
    List,
    /// Show one token's details (the one --token names, or the only one).
    Info,
    /// Initialize a fresh token: sets the label, the SO PIN and the user PIN.
    ///
    /// Takes the first slot without an initialized token (SoftHSM2 always offers
    /// one), or --slot; never an initialized one. The SO PIN comes from
    /// --so-pin-source (NSS softokn: `empty`), the user PIN from --pin-source.
    Init {
        /// Token label, 1 to 32 bytes.
        #[arg(long)]
        label: String,
        /// Slot id to initialize (see `token list`).
        #[arg(long)]
        slot: Option<u64>,
    },
    /// What the token can do for hsmkey: mechanism information and a known-answer
    /// test of each AES key-wrap mechanism (what 0x210A really is), plus RSA-OAEP hashes.
    Mechanisms {
        /// Fail (exit 5, HK1201) unless the token has all of these, proved by the
        /// probe: rfc3394, rfc5649, oaep-sha1, oaep-sha256, rsa-aes-key-wrap.
        /// For pre-flight checks in scripts.
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        require: Vec<String>,
    },
}

pub fn run(ctx: &Context, cmd: TokenCommand) -> hsmkey::Result<()> {
    let module = ctx.module()?;
    match cmd {
        TokenCommand::List => {
            let tokens = module.tokens()?;
            if ctx.json() {
                json::print(&json::TokenList { tokens: &tokens });
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.slot_id.to_string(),
                            if t.initialized {
                                t.label.clone()
                            } else {
                                "(not initialized)".into()
                            },
                            t.manufacturer.clone(),
                            t.model.clone(),
                            t.serial.clone(),
                            t.uri.clone(),
                        ]
                    })
                    .collect();
                out(&table(
                    &["SLOT", "LABEL", "MANUFACTURER", "MODEL", "SERIAL", "URI"],
                    &rows,
                ));
            }
        }
        TokenCommand::Info => {
            let slot = module.select_token(ctx.token_selector())?;
            let d = module.details(slot)?;
            if ctx.json() {
                json::print(&json::TokenInfo { token: &d });
            } else {
                let s = &d.summary;
                out(&format!(
                    "label:          {}\nmanufacturer:   {}\nmodel:          {}\nserial:         {}\nslot:           {}\nfirmware:       {}\nhardware:       {}\nlibrary:        {} {} ({})\nmodule:         {}\nPIN length:     {}..{}\nuser PIN:       {}\nURI:            {}\n",
                    s.label, s.manufacturer, s.model, s.serial, s.slot_id, d.firmware_version, d.hardware_version,
                    d.library_description, d.library_version, d.library_manufacturer, d.module,
                    d.min_pin_length, d.max_pin_length,
                    if d.user_pin_locked { "locked" } else if d.user_pin_count_low { "count low" } else if s.user_pin_initialized { "set" } else { "not initialized" },
                    s.uri
                ));
            }
        }
        TokenCommand::Init { label, slot } => {
            let made = ctx.audited("token init", || init_token(ctx, &module, &label, slot))?;
            if ctx.json() {
                json::print(&json::TokenInit { token: &made });
            } else {
                out(&format!(
                    "initialized token '{}' (serial {}): {}\n",
                    made.label, made.serial, made.uri
                ));
            }
        }
        TokenCommand::Mechanisms { require } => {
            for capability in &require {
                probe::check_capability_name(capability)?;
            }
            let token = ctx.open_user(&module)?;
            let caps = probe::probe(&token)?;
            for capability in &require {
                caps.require(capability)?;
            }
            if ctx.json() {
                json::print(&json::TokenMechanisms {
                    capabilities: &caps,
                });
            } else {
                render_capabilities(&caps);
            }
        }
    }
    Ok(())
}

/// The token work of `token init`. The new token signs the audit line: the
/// user logs in to it once it has a user PIN.
fn init_token(
    ctx: &Context,
    module: &hsmkey::hsm::Module,
    label: &str,
    slot: Option<u64>,
) -> hsmkey::Result<hsmkey::hsm::TokenSummary> {
    if module
        .tokens()?
        .iter()
        .any(|t| t.initialized && t.label == label)
    {
        return Err(Error::AlreadyExists {
            what: format!("a token labelled '{label}'"),
        });
    }
    let free = module.uninitialized_slots()?;
    let chosen = match slot {
        Some(id) => {
            free.into_iter()
                .find(|s| s.id() == id)
                .ok_or_else(|| Error::TokenNotFound {
                    selector: format!("slot {id} without an initialized token"),
                })?
        }
        None => free
            .into_iter()
            .next()
            .ok_or_else(|| Error::TokenNotFound {
                selector: "a slot without an initialized token".into(),
            })?,
    };
    let so_pin = ctx.so_pin()?;
    let user_pin = ctx.user_pin()?;
    module.check_pin_length(chosen, &user_pin)?;
    module.init_token(chosen, label, &so_pin, &user_pin)?;
    // SoftHSM moves a freshly initialized token to a new slot id, so
    // look for the label first; NSS softokn keeps its slot but ignores
    // the label ("NSS Certificate DB").
    let tokens = module.tokens()?;
    let by_label = tokens.iter().find(|t| t.initialized && t.label == label);
    let by_slot = tokens
        .iter()
        .find(|t| t.initialized && t.slot_id == chosen.id());
    let made = by_label
        .or(by_slot)
        .cloned()
        .ok_or_else(|| Error::Internal("the token just initialized is not listed".into()))?;
    if made.label != label {
        tracing::warn!(
            "this token keeps its own label '{}'; '{label}' was not applied",
            made.label
        );
    }
    let slot = module.select_token(Some(&made.uri))?;
    ctx.audit_saw(|| Ok(made.clone()))?;
    let token = module.open(slot, hsmkey::hsm::Login::User(&user_pin))?;
    ctx.audit_attach(&token, false)?;
    Ok(made)
}

fn render_capabilities(caps: &probe::Capabilities) {
    let rows: Vec<Vec<String>> = caps
        .mechanisms
        .iter()
        .map(|m| {
            vec![
                m.number.clone(),
                m.name.to_string(),
                if m.available {
                    "yes".into()
                } else {
                    "no".into()
                },
                m.flags.join(","),
                match (m.min_key_size, m.max_key_size) {
                    (Some(a), Some(b)) => format!("{a}..{b}"),
                    _ => String::new(),
                },
                m.kat.clone().unwrap_or_default(),
                m.purpose.to_string(),
            ]
        })
        .collect();
    let mut text = table(
        &[
            "NUMBER",
            "MECHANISM",
            "AVAILABLE",
            "FLAGS",
            "KEY SIZES",
            "KNOWN-ANSWER TEST",
            "USED FOR",
        ],
        &rows,
    );
    let yn = |b: bool| if b { "yes" } else { "no" };
    text.push_str(&format!(
        "\nexact RFC 3394:          {}\nexact RFC 5649:          {}\n0x210A on this token is: {}\nRSA-OAEP with SHA-1:     {}\nRSA-OAEP with SHA-256:   {}\n",
        caps.rfc3394_mechanism.as_deref().unwrap_or("none"),
        caps.rfc5649_mechanism.as_deref().unwrap_or("none"),
        caps.aes_key_wrap_pad_is,
        yn(caps.oaep_sha1),
        yn(caps.oaep_sha256),
    ));
    out(&text);
}
