//! The chain heads (docs/AUDIT.md, "The chain head"): for each log, the
//! number of lines the token signed and the SHA-256 of the last, in a
//! `hsmkey-audit-head` object: read, found from a listing's handles or by
//! search, and moved in place where the token allows.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use serde::{Deserialize, Serialize};

use super::{audit_err, primed, AuditToken, Primed, APPLICATION, HEAD_LABEL};
use crate::error::{Error, Result};

/// What a head object holds: for one log (named by the SHA-256 of its first
/// line), the number of lines it had and the SHA-256 of the last one when
/// this token last signed a line of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub log: String,
    pub count: u64,
    pub last: String,
}

impl AuditToken {
    /// Every head object, with its handle and where its value sits. Values
    /// that do not parse are left out (they are not heads hsmkey wrote).
    fn heads(&mut self) -> Result<Vec<(Head, ObjectHandle, Carrier)>> {
        let session = self.session()?;
        let mut out = Vec::new();
        // One search for both carriers (a search is a pass over every
        // object on SoftHSM); the class read first says which it is.
        let handles = crate::hsm::find_objects(
            session,
            &[
                Attribute::Token(true),
                Attribute::Label(HEAD_LABEL.as_bytes().to_vec()),
            ],
        )
        .map_err(audit_err("find the audit chain heads"))?;
        for h in handles {
            let class = session
                .get_attributes(h, &[AttributeType::Class])
                .map_err(audit_err("read an audit chain head"))?;
            let carrier = match class.first() {
                Some(Attribute::Class(c)) if *c == ObjectClass::DATA => Carrier::Data,
                Some(Attribute::Class(c)) if *c == ObjectClass::SECRET_KEY => Carrier::Key,
                _ => continue,
            };
            let holder = match carrier {
                Carrier::Data => AttributeType::Value,
                Carrier::Key => AttributeType::Id,
            };
            // The class is read again with the value, so that a trace of the
            // PKCS#11 calls shows whose CKA_VALUE this is: a data object's.
            let attrs = session
                .get_attributes(h, &[AttributeType::Class, holder])
                .map_err(audit_err("read an audit chain head"))?;
            for a in attrs {
                if let Attribute::Value(v) | Attribute::Id(v) = a {
                    if let Ok(head) = serde_json::from_slice::<Head>(&v) {
                        out.push((head, h, carrier));
                    }
                }
            }
        }
        // Data objects first, as the two searches gave them before.
        out.sort_by_key(|(_, _, c)| matches!(c, Carrier::Key));
        Ok(out)
    }

    /// The heads of `log` among those the token's listing saw, read again:
    /// `None` when it saw none of this log (its first line here, or a head
    /// made since by another run), or one is gone or is another object now
    /// (then: search).
    fn primed_heads(&mut self, log: &str) -> Result<Option<Vec<(ObjectHandle, Carrier)>>> {
        let handles = match self.seen.lock() {
            Ok(mut slot) => slot
                .as_mut()
                .map(|s| std::mem::take(&mut s.heads))
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let session = self.session()?;
        let mut mine = Vec::new();
        for h in handles {
            let first = [
                AttributeType::Class,
                AttributeType::Label,
                AttributeType::Id,
            ];
            let attrs = match primed(session.get_attributes(h, &first)) {
                Primed::Found(attrs) => attrs,
                Primed::Stale => return Ok(None),
            };
            let (mut carrier, mut labelled, mut value) = (None, false, None);
            for a in attrs {
                match a {
                    Attribute::Class(c) if c == ObjectClass::DATA => carrier = Some(Carrier::Data),
                    Attribute::Class(c) if c == ObjectClass::SECRET_KEY => {
                        carrier = Some(Carrier::Key)
                    }
                    Attribute::Label(l) => labelled = l == HEAD_LABEL.as_bytes(),
                    Attribute::Id(v) => value = Some(v),
                    _ => {}
                }
            }
            let Some(carrier) = carrier.filter(|_| labelled) else {
                return Ok(None);
            };
            if carrier == Carrier::Data {
                // The class again with the value, as `heads` reads it.
                let read = session.get_attributes(h, &[AttributeType::Class, AttributeType::Value]);
                value = match primed(read) {
                    Primed::Found(attrs) => attrs.into_iter().find_map(|a| match a {
                        Attribute::Value(v) => Some(v),
                        _ => None,
                    }),
                    Primed::Stale => return Ok(None),
                };
            }
            let parsed = value.and_then(|v| serde_json::from_slice::<Head>(&v).ok());
            if parsed.is_some_and(|p| p.log == log) {
                mine.push((h, carrier));
            }
        }
        Ok((!mine.is_empty()).then_some(mine))
    }

    /// The head this token keeps for the log whose id is `log` (the
    /// furthest one, should a crash have left two).
    pub fn head(&mut self, log: &str) -> Result<Option<Head>> {
        Ok(self
            .heads()?
            .into_iter()
            .filter(|(h, _, _)| h.log == log)
            .map(|(h, _, _)| h)
            .max_by_key(|h| h.count))
    }

    /// Record the new head of a log: the value is changed in place where the
    /// token allows it, else a new object is made before the old is removed.
    pub fn write_head(&mut self, head: &Head) -> Result<()> {
        let value = serde_json::to_vec(head).map_err(|e| Error::Internal(e.to_string()))?;
        let old: Vec<(ObjectHandle, Carrier)> = match self.primed_heads(&head.log)? {
            Some(old) => old,
            None => self
                .heads()?
                .into_iter()
                .filter(|(h, _, _)| h.log == head.log)
                .map(|(_, o, c)| (o, c))
                .collect(),
        };
        let session = self.session()?;
        let mut key_carrier = false;
        if let [(only, carrier)] = old.as_slice() {
            let attr = match carrier {
                Carrier::Data => Attribute::Value(value.clone()),
                Carrier::Key => Attribute::Id(value.clone()),
            };
            if session.update_attributes(*only, &[attr]).is_ok() {
                return Ok(());
            }
            // A token that will not change a data object's value (SoftHSM)
            // keeps the head in a key's CKA_ID from now on, which it changes
            // in place: a destroyed token object costs SoftHSM a pass over
            // the token's files, every time.
            key_carrier = *carrier == Carrier::Data;
        }
        let data = if key_carrier {
            None
        } else {
            Some(session.create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Modifiable(true),
                Attribute::Label(HEAD_LABEL.as_bytes().to_vec()),
                Attribute::Application(APPLICATION.as_bytes().to_vec()),
                Attribute::Value(value.clone()),
            ]))
        };
        match data {
            Some(Ok(_)) => {}
            // NSS softokn refuses private and token data objects: the head
            // then rides in the CKA_ID of a key that can do nothing.
            None
            | Some(Err(CkError::Pkcs11(
                RvError::AttributeValueInvalid
                | RvError::TemplateInconsistent
                | RvError::AttributeTypeInvalid,
                _,
            ))) => {
                session
                    .generate_key(
                        &Mechanism::GenericSecretKeyGen,
                        &[
                            Attribute::Class(ObjectClass::SECRET_KEY),
                            Attribute::KeyType(KeyType::GENERIC_SECRET),
                            Attribute::Token(true),
                            Attribute::Private(true),
                            Attribute::Modifiable(true),
                            Attribute::Label(HEAD_LABEL.as_bytes().to_vec()),
                            Attribute::Id(value),
                            Attribute::ValueLen(16u64.into()),
                            Attribute::Sensitive(true),
                            Attribute::Extractable(false),
                            Attribute::Sign(false),
                            Attribute::Verify(false),
                            Attribute::Encrypt(false),
                            Attribute::Decrypt(false),
                            Attribute::Wrap(false),
                            Attribute::Unwrap(false),
                            Attribute::Derive(false),
                        ],
                    )
                    .map_err(audit_err("record the audit chain head"))?;
            }
            Some(Err(e)) => return Err(Error::pkcs11("record the audit chain head", e)),
        }
        for (o, _) in old {
            let _ = session.destroy_object(o);
        }
        Ok(())
    }
}

/// Where a head's value is kept: CKA_VALUE of a CKO_DATA object (with
/// CKA_APPLICATION "hsmkey"), or CKA_ID of a generic secret key with no
/// use, on a token that refuses private token data objects (NSS softokn) or
/// will not change a data object's value in place (SoftHSM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carrier {
    Data,
    Key,
}
