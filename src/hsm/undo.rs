//! What a command created on the token, destroyed again unless the command
//! completes: a failure changes nothing. Whatever clean-up cannot destroy is
//! named in the error (HK1403, exit 9) instead of being left silently.

use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;

use crate::error::Error;

/// Token objects made by this run, newest last.
pub struct Undo<'s> {
    session: &'s Session,
    objects: Vec<(ObjectHandle, String)>,
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
            committed: false,
        }
    }

    /// An empty record for the objects made on `token`'s main session.
    pub fn for_token(token: &'s super::Token<'_>) -> Self {
        Undo::new(token.session())
    }

    /// Record an object as soon as the token has made it.
    pub fn add(&mut self, handle: ObjectHandle, what: String) {
        self.objects.push((handle, what));
    }

    /// Hand the objects over (to a record on another session): this one
    /// no longer destroys them.
    pub fn into_objects(mut self) -> Vec<(ObjectHandle, String)> {
        self.committed = true;
        std::mem::take(&mut self.objects)
    }

    pub fn extend(&mut self, objects: Vec<(ObjectHandle, String)>) {
        self.objects.extend(objects);
    }

    pub fn handles(&self) -> impl Iterator<Item = ObjectHandle> + '_ {
        self.objects.iter().map(|(h, _)| *h)
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
        for (h, what) in self.objects.drain(..).rev() {
            if let Err(e) = self.session.destroy_object(h) {
                left.push(format!("{what}, handle {}: {e}", h.handle()));
            }
        }
        left
    }
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
