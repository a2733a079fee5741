//! What a command created on the token, destroyed again unless the command
//! completes: a failure changes nothing. Whatever clean-up cannot destroy is
//! named in the error (HK1403, exit 9) instead of being left silently.

use std::collections::HashMap;

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::Error;

/// Token objects made by this run, newest last. Objects handed over in
/// bulk (a restore's thousands of keys) are kept by handle alone, and named
/// from the token should clean-up fail: a name per object would be memory
/// that grows with the keys.
pub struct Undo<'s> {
    session: &'s Session,
    objects: Vec<ObjectHandle>,
    /// What each object is, by handle, where it was said when it was made.
    names: HashMap<u64, String>,
    committed: bool,
}

/// How an object is named in a clean-up report: label, class, id.
pub fn describe(label: &str, class: &str, id: &[u8]) -> String {
    format!(
        "'{}' ({class}, id {})",
        label.escape_debug(),
        hex::encode(id)
    )
}

impl<'s> Undo<'s> {
    pub fn new(session: &'s Session) -> Self {
        Undo {
            session,
            objects: Vec::new(),
            names: HashMap::new(),
            committed: false,
        }
    }

    /// An empty record for the objects made on `token`'s main session.
    pub fn for_token(token: &'s super::Token<'_>) -> Self {
        Undo::new(token.session())
    }

    /// Record an object as soon as the token has made it.
    pub fn add(&mut self, handle: ObjectHandle, what: String) {
        self.objects.push(handle);
        self.names.insert(handle.handle(), what);
    }

    /// Hand the objects over (to a record on another session): this one
    /// no longer destroys them.
    pub fn into_objects(mut self) -> Vec<(ObjectHandle, String)> {
        self.committed = true;
        let mut names = std::mem::take(&mut self.names);
        std::mem::take(&mut self.objects)
            .into_iter()
            .map(|h| {
                let name = names.remove(&h.handle()).unwrap_or_default();
                (h, name)
            })
            .collect()
    }

    /// Take over objects in bulk, by handle alone (their names are read
    /// from the token if clean-up fails).
    pub fn extend(&mut self, objects: Vec<(ObjectHandle, String)>) {
        self.objects.extend(objects.into_iter().map(|(h, _)| h));
    }

    pub fn handles(&self) -> impl Iterator<Item = ObjectHandle> + '_ {
        self.objects.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The command completed: keep everything.
    pub fn commit(mut self) {
        self.committed = true;
    }

    /// Destroy everything, newest first, and return `err`, with the objects
    /// that could not be destroyed when there are any.
    pub fn fail(mut self, err: Error) -> Error {
        let left = self.destroy_all();
        self.committed = true;
        err.with_leftovers(left)
    }

    fn destroy_all(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        for h in std::mem::take(&mut self.objects).into_iter().rev() {
            if let Err(e) = self.session.destroy_object(h) {
                let what = match self.names.remove(&h.handle()) {
                    Some(what) => what,
                    None => name_from_token(self.session, h),
                };
                left.push(format!("{what}, handle {}: {e}", h.handle()));
            }
        }
        self.names.clear();
        left
    }
}

/// An object named by what the token says of it (label, class, id).
fn name_from_token(session: &Session, h: ObjectHandle) -> String {
    let Ok(attrs) = session.get_attributes(
        h,
        &[
            AttributeType::Label,
            AttributeType::Class,
            AttributeType::Id,
        ],
    ) else {
        return "an object the token could not describe".into();
    };
    let (mut label, mut class, mut id) = (Vec::new(), "object", Vec::new());
    for a in attrs {
        match a {
            Attribute::Label(l) => label = l,
            Attribute::Class(c) if c == ObjectClass::SECRET_KEY => class = "secret-key",
            Attribute::Class(c) if c == ObjectClass::PRIVATE_KEY => class = "private-key",
            Attribute::Class(c) if c == ObjectClass::PUBLIC_KEY => class = "public-key",
            Attribute::Id(i) => id = i,
            _ => {}
        }
    }
    describe(&String::from_utf8_lossy(&label), class, &id)
}

impl Drop for Undo<'_> {
    /// A path that returned early without `fail` (a panic included) still
    /// destroys; what it cannot destroy is logged, since no error carries it.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for left in self.destroy_all() {
            tracing::error!("clean-up could not destroy {left}");
        }
    }
}
