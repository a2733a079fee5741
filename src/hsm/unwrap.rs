//! Unwrapping into a [`KeyTemplate`], and the token's refusal of an unwrap
//! classified here ([`Refusal`]) so that callers decide what it means for
//! them (wrong key, altered bundle, missing capability, failing token)
//! without handling PKCS#11 return values.

use cryptoki::error::RvError;
use cryptoki::object::Attribute;

use super::template::KeyTemplate;
use super::wrap::{self, OaepHash};
use super::{Handle, Token};
use crate::error::{ckr_name, Error};

/// Why the token would not unwrap: its CKR_ answer, opaque outside `hsm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(RvError);

impl Refusal {
    /// The CKR_ name, for messages.
    pub fn name(self) -> String {
        ckr_name(self.0)
    }

    /// The mechanism or its parameters are not offered
    /// ([`crate::error::rv_is_unsupported`]).
    pub fn is_unsupported(self) -> bool {
        crate::error::rv_is_unsupported(self.0)
    }

    /// The key may not be used so (CKR_KEY_FUNCTION_NOT_PERMITTED).
    pub fn is_not_permitted(self) -> bool {
        self.0 == RvError::KeyFunctionNotPermitted
    }

    /// The standard answers to a blob that does not open under this key
    /// ([`crate::error::rv_is_bad_ciphertext`]).
    pub fn is_bad_ciphertext(self) -> bool {
        crate::error::rv_is_bad_ciphertext(self.0)
    }

    /// How tokens refuse an OAEP hash they lack: bad arguments, or the
    /// mechanism or its parameters invalid.
    pub fn is_oaep_refused(self) -> bool {
        matches!(
            self.0,
            RvError::ArgumentsBad | RvError::MechanismInvalid | RvError::MechanismParamInvalid
        )
    }

    /// Answers by which an unwrap into a comparison copy is refused for
    /// what was asked, not because the token failed: the proof is then not
    /// made.
    pub fn is_not_proof(self) -> bool {
        matches!(
            self.0,
            RvError::TemplateInconsistent
                | RvError::TemplateIncomplete
                | RvError::AttributeValueInvalid
                | RvError::KeyFunctionNotPermitted
                | RvError::KeySizeRange
        )
    }

    /// Whether a failed AES key-wrap unwrap means "this blob does not open
    /// under this key" (wrong key or altered bytes) rather than a failing
    /// token: one of the standard answers, or the answer this token gives a
    /// blob known to be bad (docs/TOKENS.md).
    pub fn means_bad_blob(self, token: &Token<'_>, mechanism: u64) -> bool {
        self.is_bad_ciphertext()
            || matches!(
                super::probe::answer_to_bad_blob(token, mechanism),
                Ok(Some(answer)) if answer == self.0
            )
    }

    /// The token error for this refusal of C_UnwrapKey while doing `action`.
    pub fn failure(self, action: &str) -> Error {
        crate::error::token_failure("C_UnwrapKey", self.0, action)
    }
}

/// C_UnwrapKey with any mechanism number into `template`.
pub fn unwrap_into(
    token: &Token<'_>,
    mechanism: u64,
    unwrapping: Handle,
    wrapped: &[u8],
    template: &KeyTemplate,
) -> std::result::Result<Handle, Refusal> {
    wrap::unwrap(token, mechanism, unwrapping, wrapped, template.attributes()).map_err(Refusal)
}

/// C_UnwrapKey of a KEK: the new key also gets an unwrap template that
/// lets it unwrap only sensitive keys.
pub fn unwrap_kek_into(
    token: &Token<'_>,
    mechanism: u64,
    unwrapping: Handle,
    wrapped: &[u8],
    template: &KeyTemplate,
) -> std::result::Result<Handle, Refusal> {
    wrap::unwrap_with_unwrap_template(
        token,
        mechanism,
        unwrapping,
        wrapped,
        template.attributes(),
        &[Attribute::Sensitive(true)],
    )
    .map_err(Refusal)
}

/// RSA-OAEP unwrap into `template`.
pub fn unwrap_oaep_into(
    token: &Token<'_>,
    hash: OaepHash,
    private: Handle,
    wrapped: &[u8],
    template: &KeyTemplate,
) -> std::result::Result<Handle, Refusal> {
    wrap::unwrap_oaep(token, hash, private, wrapped, template.attributes()).map_err(Refusal)
}
