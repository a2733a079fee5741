//! Writing a bundle: the protection set up, the selected keys wrapped one
//! entry each (with their KCV or public half), the lines MACed in the token
//! as they are written, and `--verify` reading the result back.

use std::io::Write;
use std::sync::atomic::Ordering;

use secrecy::{ExposeSecret, SecretString};

use super::choose::Choice;
use super::protection::{
    argon2_key, check_password, open_mac_key, open_protection, resolve_kek_listed,
};
use super::select::{select, Candidate};
use super::verify::verify_opened;
use super::{
    read_header, BackupOptions, BackupReport, BundleSink, Entries, EntrySummary, Progress, Protect,
    Selection, Skipped, Unprotect, Warning, ARGON2_M_KIB, ARGON2_P, ARGON2_T,
};
use crate::error::{Error, Result};
use crate::formats::bundle::{
    self, b64, Entry, Header, Kcv, KdfParams, KeyRef, Line, MacInfo, Protection, PublicPart,
    RecipientInfo, SourceToken, Trailer,
};
use crate::hsm::check;
use crate::hsm::keys::{self, KeyInfo, Listing};
use crate::hsm::mac::{MacFeed, MacPurpose};
use crate::hsm::probe::Ephemeral;
use crate::hsm::template::{self, KeyClass, KeyKind, KeyTemplate};
use crate::hsm::unwrap::unwrap_into;
use crate::hsm::wrap::{self, PublicValues, SessionKey, WrapSupport};
use crate::hsm::{Handle, Token};

pub(super) fn source_of(token: &Token<'_>) -> SourceToken {
    let s = token.summary();
    SourceToken {
        label: s.label.clone(),
        manufacturer: s.manufacturer.clone(),
        model: s.model.clone(),
        serial: s.serial.clone(),
    }
}

/// Back up keys into `out`, one line at a time; with `options.verify`,
/// read the written bundle back and check every key in the token.
pub fn backup(
    token: &Token<'_>,
    protect: &Protect,
    selection: &Selection,
    out: &mut dyn BundleSink,
    options: &BackupOptions<'_>,
    progress: Progress<'_>,
) -> Result<BackupReport> {
    let cancel = options.cancel;
    let mut eph = Ephemeral::for_token(token);

    // `--all` reads the token's keys once, and finds the KEK among them.
    let mut listing = match selection {
        Selection::All => Some(keys::list_keys(token)?),
        Selection::Named(_) => None,
    };
    if let Some(listed) = options.listed {
        listed()?;
    }
    // Protection first: whether the KEK is trusted decides what may be selected.
    let (wrapping, protection, trusted_kek, kek_handle) = match protect {
        Protect::Kek(selector) => {
            let kek = resolve_kek_listed(token, selector, listing.as_ref())?;
            if !kek.usage.contains(&"wrap") {
                return Err(Error::PolicyRefused {
                    key: kek.label,
                    reason: "this key may not wrap (CKA_WRAP=false); use a KEK made with `key generate --kek`".into(),
                });
            }
            if options.verify && !kek.usage.contains(&"unwrap") {
                return Err(Error::Usage {
                    message: format!(
                        "--verify reads the bundle back under the KEK, and '{}' may not unwrap (CKA_UNWRAP=false)",
                        kek.label
                    ),
                });
            }
            let protection = Protection::Kek {
                kek: KeyRef {
                    label: kek.label.clone(),
                    id: kek.id.clone(),
                    kcv: kek.kcv.clone(),
                },
            };
            (
                kek.handle,
                protection,
                kek.trusted == Some(true),
                Some(kek.handle),
            )
        }
        Protect::Password(pw, policy) => {
            check_password(pw, *policy)?;
            let salt = template::random(token, 16, "draw a salt")?;
            let params = KdfParams {
                algorithm: "argon2id".into(),
                version: 0x13,
                m_kib: ARGON2_M_KIB,
                t: ARGON2_T,
                p: ARGON2_P,
                salt: b64(&salt),
            };
            let value = argon2_key(pw, &params)?;
            let kek = wrap::session_kek_from_value(token, &mut eph, value)?;
            (kek, Protection::Password { kdf: params }, false, None)
        }
        Protect::Recipient { public, hash } => {
            let pubh = wrap::session_rsa_public(
                token,
                &mut eph,
                &public.modulus,
                &public.public_exponent,
            )?;
            let transfer = wrap::generate_session_key(token, &mut eph, SessionKey::Transfer)?;
            let wrapped = wrap::wrap_oaep(token, *hash, pubh, transfer)?;
            let protection = Protection::Recipient {
                recipient: RecipientInfo {
                    spki_sha256: public.fingerprint(),
                    bits: public.bits,
                    oaep_hash: hash.name().into(),
                    wrapped_transfer_key: b64(&wrapped),
                },
            };
            (transfer, protection, false, None)
        }
    };

    let (mut work, mut skipped) =
        select(token, selection, listing.take(), trusted_kek, kek_handle)?;
    let support = WrapSupport::probe(token)?;
    let secret_alg = support.for_secret().ok_or_else(|| Error::NotCapable {
        capability: "AES key wrap (RFC 3394 or RFC 5649)".into(),
        detail: format!("known-answer tests found {}", support.describe()),
        alternatives: "Use a token with CKM_AES_KEY_WRAP (`hsmkey token mechanisms`).".into(),
    })?;
    let private_alg = support.for_private();
    let named = matches!(selection, Selection::Named(_));
    // Filtered in place: a second list of every key is memory that grows
    // with the token.
    let mut refused = None;
    let publics = &work.publics;
    work.keys.retain(|info| {
        if info.class == "private-key" && private_alg.is_none() {
            let reason = format!(
                "private keys travel as PKCS#8 under RFC 5649, which this token lacks ({})",
                support.describe()
            );
            if named {
                refused = Some(Error::NotCapable {
                    capability: "exact RFC 5649 key wrap".into(),
                    detail: reason,
                    alternatives:
                        "Back up secret keys only, or use a token with CKM_AES_KEY_WRAP_KWP.".into(),
                });
                return true;
            }
            skipped.push(Skipped::new(info, "token-lacks-rfc5649", reason));
            return false;
        }
        if info.key_type == "ec" && !publics.contains_key(&info.handle.handle()) {
            let reason = "an EC private key without its public half on the token cannot be checked after restore".to_string();
            if named {
                refused = Some(Error::PolicyRefused {
                    key: info.label.clone(),
                    reason,
                });
                return true;
            }
            skipped.push(Skipped::new(info, "ec-without-public", reason));
            return false;
        }
        true
    });
    if let Some(e) = refused {
        return Err(e);
    }
    // Exit 0 means complete: a key left out for any reason but its own
    // policy stops the backup before anything is wrapped or written.
    let lost: Vec<String> = skipped
        .iter()
        .filter(|s| !s.is_policy())
        .map(|s| format!("{} ({}: {})", s.shown(), s.code, s.reason))
        .collect();
    if !lost.is_empty() && !options.allow_skips {
        return Err(Error::Incomplete { skipped: lost });
    }

    let warnings = not_sensitive(&work.keys);

    // The integrity key, wrapped like the entries.
    let (secret_name, secret_mech) = secret_alg;
    let mac_key = wrap::generate_session_key(token, &mut eph, SessionKey::Mac)?;
    let wrapped_mac = wrap::wrap(token, secret_mech, wrapping, mac_key)?;
    let header = Header {
        format: bundle::FORMAT.into(),
        version: bundle::VERSION,
        tool: crate::TOOL.into(),
        created: now_rfc3339(),
        source: source_of(token),
        protection,
        mac: MacInfo {
            algorithm: "hmac-sha256".into(),
            wrap: secret_name.into(),
            wrapped_key: b64(&wrapped_mac),
        },
    };
    let mut mac = MacFeed::start(token, mac_key, MacPurpose::Make)?;
    let emit = |line: &Line, out: &mut dyn Write, mac: &mut MacFeed| -> Result<()> {
        let bytes = bundle::encode_line(line)?;
        mac.feed(&bytes)?;
        out.write_all(&bytes).map_err(|e| Error::Io {
            path: "the output".into(),
            source: e,
        })
    };
    emit(&Line::Header(header), out, &mut mac)?;

    // Wrapping (and the check copies of keys without a token KCV) runs on
    // `--sessions` sessions; lines are written and MACed here, in order.
    let total = work.keys.len() as u64;
    let mut entries = Entries::new();
    crate::hsm::pool::run_ordered(
        token,
        work.into_candidates().map(Ok),
        |t, c| {
            let mut checks = Ephemeral::for_token(t);
            backup_entry(t, &mut checks, secret_alg, private_alg, wrapping, &c)
        },
        |entry| {
            let done = entries.len() as u64;
            if cancel.load(Ordering::SeqCst) {
                return Err(Error::Interrupted {
                    what: format!(
                        "backup stopped after {done} of {total} keys; no output was written"
                    ),
                });
            }
            let summary = EntrySummary {
                label: entry.label.clone(),
                class: entry.class.clone(),
                key_type: entry.key_type.clone(),
                size: entry.size,
                kcv: entry.kcv.as_ref().map(|k| k.value.clone()),
                wrap: entry.wrap.clone(),
                renamed_from: None,
                id_from: None,
            };
            entries.push(summary, Some(entry.id.clone()), entry.version)?;
            emit(&Line::Key(entry), out, &mut mac)?;
            progress(done + 1, total);
            Ok(())
        },
        drop,
    )?;
    let mac = mac.finish()?;
    let trailer = bundle::encode_line(&Line::Trailer(Trailer {
        entries: entries.len() as u64,
        mac: b64(&mac),
    }))?;
    out.write_all(&trailer).map_err(|e| Error::Io {
        path: "the output".into(),
        source: e,
    })?;
    if options.verify {
        // The bundle as written, read back like a restore would: the MAC
        // key unwrapped from the header, every key unwrapped into a session
        // object and checked. Nothing is created on the token.
        let input = out.reread()?;
        let header = read_header(&input)?;
        // KEK and password bundles are opened from the header, as a restore
        // would (the KEK found again and its KCV checked; the password key
        // derived again from the recorded salt and costs); a recipient bundle
        // with the transfer key still at hand, since the recipient's private
        // key is on another token.
        let opened = match protect {
            Protect::Kek(selector) => open_protection(
                token,
                &mut eph,
                header,
                &Unprotect::Kek(selector.clone()),
                &support,
            )?,
            Protect::Password(pw, _) => open_protection(
                token,
                &mut eph,
                header,
                &Unprotect::Password(SecretString::from(pw.expose_secret().to_string())),
                &support,
            )?,
            Protect::Recipient { .. } => open_mac_key(
                token,
                &mut eph,
                header,
                wrapping,
                false,
                "transfer key",
                &support,
            )?,
        };
        let checked = verify_opened(
            token,
            &input,
            &opened,
            &support,
            Choice::default(),
            &mut |_, _| {},
        )?;
        if checked.entries.len() != entries.len() {
            return Err(Error::Internal(format!(
                "--verify read {} keys back; {} were written",
                checked.entries.len(),
                entries.len()
            )));
        }
    }
    Ok(BackupReport {
        scheme: match protect {
            Protect::Kek(_) => "kek",
            Protect::Password(..) => "password",
            Protect::Recipient { .. } => "recipient",
        }
        .into(),
        entries,
        skipped,
        warnings,
    })
}

pub(super) fn map_wrap_error(label: &str, e: Error) -> Error {
    wrap::refused_by_policy(label, e)
}

pub(super) fn backup_entry(
    token: &Token<'_>,
    eph: &mut Ephemeral<'_>,
    secret_alg: (&'static str, u64),
    private_alg: Option<(&'static str, u64)>,
    wrapping: Handle,
    c: &Candidate,
) -> Result<Entry> {
    let info = &c.info;
    let is_private = info.class == "private-key";
    let (alg, mech) = if is_private {
        private_alg.ok_or_else(|| {
            Error::Internal(format!(
                "{}: a private key reached wrapping without RFC 5649",
                info.label
            ))
        })?
    } else {
        secret_alg
    };
    let blob = wrap::wrap(token, mech, wrapping, info.handle)
        .map_err(|e| map_wrap_error(&info.label, e))?;
    let key_type = KeyKind::from_name(&info.key_type);
    let mut kcv = None;
    let mut public = None;
    if !is_private {
        // The token's own KCV when it has one; otherwise a check copy made
        // from the blob itself, which also proves the blob unwraps.
        let known = if key_type != KeyKind::Aes {
            None
        } else if info.kcv_method == "CKA_CHECK_VALUE" && info.kcv.is_some() {
            info.kcv.clone()
        } else if info.usage.contains(&"encrypt") {
            check::kcv(token, info.handle, KeyKind::Aes)
                .ok()
                .map(|k| k.0)
        } else {
            None
        };
        let value = match known {
            Some(v) => (v, wrap::KCV_AES),
            None => {
                let copy = unwrap_into(
                    token,
                    mech,
                    wrapping,
                    &blob,
                    &KeyTemplate::check_copy(KeyClass::Secret, key_type),
                )
                .map_err(|rv| {
                    if rv.is_unsupported() || rv.is_not_permitted() {
                        Error::NotCapable {
                            capability: format!("checking the wrapped copy of {}", info.label),
                            detail: format!(
                                "unwrapping it into a session key failed with {}",
                                rv.name()
                            ),
                            alternatives: "Use a KEK that may also unwrap (`key generate --kek`)."
                                .into(),
                        }
                    } else {
                        rv.failure(&format!("check the wrapped copy of {}", info.label))
                    }
                })?;
                let copy = eph.keep(copy);
                check::kcv(token, copy, key_type)?
            }
        };
        kcv = Some(Kcv {
            method: value.1.into(),
            value: value.0,
        });
    } else {
        let values_from = if key_type == KeyKind::Rsa {
            info.handle
        } else {
            c.public.as_ref().map(|p| p.handle).ok_or_else(|| Error::PolicyRefused {
                key: info.label.clone(),
                reason: "an EC private key without its public half on the token cannot be checked after restore".into(),
            })?
        };
        let values =
            check::public_of(token, values_from, key_type)?.ok_or_else(|| Error::NotCapable {
                capability: format!("reading the public half of {}", info.label),
                detail: "the token did not return the public values".into(),
                alternatives: String::new(),
            })?;
        if alg == "rfc5649-zero-padded" {
            // Not RFC 5649 as written: prove that this token gives the same key back.
            let copy = unwrap_into(
                token,
                mech,
                wrapping,
                &blob,
                &KeyTemplate::check_copy(KeyClass::Private, key_type),
            )
            .map_err(|rv| {
                if rv.means_bad_blob(token, mech) || rv.is_unsupported() {
                    Error::NotCapable {
                        capability: "exact RFC 5649 key wrap".into(),
                        detail: format!(
                            "{}: this token's 0x210A zero-pads PKCS#8 and the wrapped key did not unwrap ({})",
                            info.label,
                            rv.name()
                        ),
                        alternatives: "Back up secret keys only from this token, or use a token with CKM_AES_KEY_WRAP_KWP.".into(),
                    }
                } else {
                    rv.failure(&format!("check the zero-padded wrap of {}", info.label),
                    )
                }
            })?;
            let copy = eph.keep(copy);
            if !wrap::private_matches(token, eph, copy, &values)? {
                return Err(Error::NotCapable {
                    capability: "exact RFC 5649 key wrap".into(),
                    detail: format!(
                        "{}: the zero-padded wrap did not give the same key back",
                        info.label
                    ),
                    alternatives: "Use a token with CKM_AES_KEY_WRAP_KWP.".into(),
                });
            }
        }
        let usage = c
            .public
            .as_ref()
            .map(|p| p.usage.iter().map(|u| u.to_string()).collect())
            .unwrap_or_else(|| vec!["verify".to_string()]);
        public = Some(match values {
            PublicValues::Rsa { modulus, exponent } => PublicPart::Rsa {
                modulus: b64(&modulus),
                public_exponent: b64(&exponent),
                usage,
            },
            PublicValues::Ec { params, point } => PublicPart::Ec {
                params: b64(&params),
                point: b64(&point),
                usage,
            },
        });
    }
    Ok(Entry {
        label: info.label.clone(),
        name: info.name.clone(),
        version: info.version,
        id: info.id.clone(),
        class: info.class.clone(),
        key_type: info.key_type.clone(),
        size: info.size.or_else(|| secret_bits_of_blob(info, alg, &blob)),
        usage: info.usage.iter().map(|u| u.to_string()).collect(),
        backup_policy: info.backup_policy.clone(),
        kcv,
        public,
        wrap: alg.into(),
        wrapped: b64(&blob),
    })
}

/// The size of a secret key the token does not report (SoftHSM forgets it
/// for keys it unwrapped, docs/TOKENS.md), from its wrapped length, where
/// that is exact: RFC 3394 adds 8 bytes to any key, RFC 5649 to a key of
/// whole 8-byte blocks, which every AES key is.
fn secret_bits_of_blob(info: &KeyInfo, alg: &str, blob: &[u8]) -> Option<u64> {
    let exact = alg == "rfc3394" || (alg == "rfc5649" && info.key_type == "aes");
    (info.class == "secret-key" && exact && blob.len() > 8).then(|| (blob.len() as u64 - 8) * 8)
}

/// Keys the bundle carries that are not CKA_SENSITIVE on their token:
/// backed up all the same, with a warning (their value can be read in the
/// clear there, so the bundle is not their only way out).
fn not_sensitive(work: &Listing) -> Vec<Warning> {
    work.infos()
        .filter(|info| info.sensitive == Some(false))
        .map(|info| Warning {
            label: info.label.clone(),
            class: info.class.clone(),
            code: "not-sensitive",
            message: "CKA_SENSITIVE is false on this token: anyone with the user PIN can read its value in the clear there, with or without this backup; restore brings it back sensitive".into(),
        })
        .collect()
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC).
pub(super) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    // Whole seconds: Timestamp's Display then prints no fraction.
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}
