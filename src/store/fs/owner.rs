//! Which files the store trusts: regular files of this user that nobody else
//! can write. Anyone who could plant or change one could make cacheback
//! replay their output, hold a lock forever or feed its counters.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// The effective user id, which owns every file cacheback writes.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A regular file owned by this user, writable by no one else.
pub fn is_private_file(meta: &Metadata) -> bool {
    meta.is_file() && meta.uid() == effective_uid() && meta.mode() & 0o022 == 0
}
