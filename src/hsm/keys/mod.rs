//! Keys on the token: what they are (`spec`), making them (`generate`),
//! naming them (`select`) and showing them (`describe`).
//!
//! Versions (docs/KEYS.md): version 1 of a key named `N` has CKA_LABEL `N`;
//! version k >= 2 has CKA_LABEL `N@vk` and a CKA_ID that binds it to `N` and
//! k (`formats::id::version_id`), so another tool's `N@v2` is not taken for
//! one. Each version has its own CKA_ID (NSS softokn replaces a key whose
//! CKA_ID and class match a new one). A bare name selects every version;
//! `N@vk` selects one.

mod attrs;
mod describe;
mod generate;
mod identity;
mod listing;
mod select;
mod spec;

pub use describe::{
    describe, describe_all, describe_handles, describe_with, kcv, spec_of, KeyInfo,
};
pub use generate::{
    effective_usage, generate, generate_inner, others_with_label, random_id, random_version_id,
    remove_crash_shells, remove_new_unlabelled, unlabelled, Generated,
};
pub use identity::{identities, identities_except, identities_of, identity, Identity};
pub use listing::{list_keys, Listing};
pub use select::{
    destroy, find, find_required, highest_label_version, resolve_one, set_label, KeySelector,
};
pub use spec::{
    name_and_version, split_version, validate_name, versioned_label, BackupPolicy, GenerateSpec,
    KeySpec, StoredKey, Usage,
};

#[cfg(test)]
mod tests;
