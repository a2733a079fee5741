//! Who the token's keys are, in bulk: the class, label and id of every key
//! object from one search and one small attribute read each, for the checks
//! that only compare names (restore's conflicts, the duplicate check after
//! it), where a full description ([`super::describe_all`]) would read twenty
//! attributes per key for nothing.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};

use crate::error::{Error, Result};
use crate::hsm::audit::Sighting;
use crate::hsm::Token;

/// One key object's name on the token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub handle: ObjectHandle,
    /// "secret-key", "private-key" or "public-key".
    pub class: &'static str,
    /// The label as hsmkey shows it (lossy when not UTF-8).
    pub label: String,
    /// The id in hex.
    pub id: String,
}

fn key_class(c: ObjectClass) -> Option<&'static str> {
    if c == ObjectClass::SECRET_KEY {
        Some("secret-key")
    } else if c == ObjectClass::PRIVATE_KEY {
        Some("private-key")
    } else if c == ObjectClass::PUBLIC_KEY {
        Some("public-key")
    } else {
        None
    }
}

/// Every token object's handle, sorted, and the identities of the keys among
/// them: one search (a pass over the whole token on SoftHSM, whatever the
/// template) and one small attribute read per object.
/// The audit trail's objects among them are noted for the audit session
/// (which then needs no search of its own).
pub fn identities(token: &Token<'_>) -> Result<(Vec<u64>, Vec<Identity>)> {
    let found = crate::hsm::find_objects(token.session(), &[Attribute::Token(true)])
        .map_err(|e| Error::pkcs11("find objects", e))?;
    let mut handles: Vec<u64> = found.iter().map(|h| h.handle()).collect();
    handles.sort_unstable();
    let mut sighting = Sighting::default();
    let keys = read_all(token, found, Some(&mut sighting))?;
    token.saw_audit_objects(sighting);
    Ok((handles, keys))
}

/// The identities of the key objects on the token now that are in neither
/// `known` nor `ours` (both sorted handles): one search, and only those
/// objects read.
pub fn identities_except(token: &Token<'_>, known: &[u64], ours: &[u64]) -> Result<Vec<Identity>> {
    let found = crate::hsm::find_objects(token.session(), &[Attribute::Token(true)])
        .map_err(|e| Error::pkcs11("find objects", e))?;
    let others = found
        .into_iter()
        .filter(|h| {
            known.binary_search(&h.handle()).is_err() && ours.binary_search(&h.handle()).is_err()
        })
        .collect();
    identities_of(token, others)
}

/// The identities of these objects (those that are keys), in this order.
///
/// An object the token no longer knows (CKR_OBJECT_HANDLE_INVALID) was
/// destroyed after the search: by another process, or by an audit line's
/// chain head moving on while a server backs up. It is left out only when
/// a second search confirms it is gone; an object still found there is the
/// read's error, so a token answering wrongly never shortens a listing.
pub fn identities_of(token: &Token<'_>, handles: Vec<ObjectHandle>) -> Result<Vec<Identity>> {
    read_all(token, handles, None)
}

fn read_all(
    token: &Token<'_>,
    handles: Vec<ObjectHandle>,
    mut sighting: Option<&mut Sighting>,
) -> Result<Vec<Identity>> {
    let mut out = Vec::new();
    let mut gone = Vec::new();
    crate::hsm::pool::run_ordered(
        token,
        handles.into_iter().map(Ok),
        |t, h| match read(t, h) {
            Err(e) if is_gone(&e) => Ok(Err((h, e))),
            other => other.map(Ok),
        },
        |found| {
            match found {
                Ok(Read::Key(key)) => out.push(key),
                Ok(Read::Audit(handle, class, label)) => {
                    if let Some(s) = sighting.as_deref_mut() {
                        s.see(handle, class, &label);
                    }
                }
                Ok(Read::Other) => {}
                Err(g) => gone.push(g),
            }
            Ok(())
        },
        drop,
    )?;
    if !gone.is_empty() {
        let now = crate::hsm::find_objects(token.session(), &[Attribute::Token(true)])
            .map_err(|e| Error::pkcs11("find objects", e))?;
        let mut now: Vec<u64> = now.iter().map(|h| h.handle()).collect();
        now.sort_unstable();
        for (handle, e) in gone {
            if now.binary_search(&handle.handle()).is_ok() {
                return Err(e);
            }
            tracing::debug!(
                handle = handle.handle(),
                "an object was destroyed while the token was listed"
            );
        }
    }
    Ok(out)
}

fn is_gone(e: &Error) -> bool {
    matches!(e, Error::Pkcs11 { rv, .. } if rv == "CKR_OBJECT_HANDLE_INVALID")
}

/// One object, as the identity read finds it.
enum Read {
    Key(Identity),
    /// An object of the audit trail: handle, class, label.
    Audit(ObjectHandle, &'static str, String),
    Other,
}

/// One object's identity; `None` when it is not a key, or is the audit
/// trail's key.
pub fn identity(token: &Token<'_>, handle: ObjectHandle) -> Result<Option<Identity>> {
    Ok(match read(token, handle)? {
        Read::Key(key) => Some(key),
        _ => None,
    })
}

fn read(token: &Token<'_>, handle: ObjectHandle) -> Result<Read> {
    let wanted = [
        AttributeType::Class,
        AttributeType::Label,
        AttributeType::Id,
    ];
    let read = token
        .module()
        .raw()
        .get_attributes_once(token.session().handle(), handle.handle(), &wanted)
        .map_err(|rv| {
            Error::pkcs11(
                "read key attributes",
                cryptoki::error::Error::Pkcs11(rv, cryptoki::context::Function::GetAttributeValue),
            )
        })?;
    let attrs = match read {
        Some(attrs) => attrs,
        // A label or id longer than the buffers: the two-call way.
        None => token
            .session()
            .get_attributes(handle, &wanted)
            .map_err(|e| Error::pkcs11("read key attributes", e))?,
    };
    let mut class = None;
    let mut label = String::new();
    let mut id = String::new();
    for a in attrs {
        match a {
            Attribute::Class(c) => class = Some(c),
            // An unlabelled key (kryoptic leaves CKA_LABEL out) has label "".
            Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::Id(i) => id = hex::encode(i),
            _ => {}
        }
    }
    if crate::hsm::audit::is_reserved_label(&label) {
        let class = match class {
            Some(c) if c == ObjectClass::DATA => "data",
            Some(c) => key_class(c).unwrap_or("other"),
            None => "other",
        };
        return Ok(Read::Audit(handle, class, label));
    }
    let Some(class) = class.and_then(key_class) else {
        return Ok(Read::Other);
    };
    Ok(Read::Key(Identity {
        handle,
        class,
        label,
        id,
    }))
}
