//! Where values live: the local file store ([`fs`]), the fleet tier on a
//! Redis server ([`redis`]), and copying between the two ([`transfer`]).
//!
//! The file store's types are re-exported here, as most of the program
//! speaks in its keys, entries and locks.

pub mod fs;
pub mod redis;
pub mod transfer;

pub use fs::{
    Committed, EntryWriter, FileKind, FsStore, OpenError, Record, RunRecord, SECRET_FILE,
    StderrSource, StoredEntry, TEMP_PREFIX, Turn, block_writer, entry, events, lock,
    remove_if_present,
};
