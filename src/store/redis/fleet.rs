//! The fleet tier's data layout and its rules of exclusion, on a [`Connection`].
//!
//! ```text
//! cacheback:{KEY}:meta        hash: the value's header (generation, times, lengths, details)
//! cacheback:{KEY}:GEN:N       string: chunk N of generation GEN (stdout then stderr)
//! cacheback:{KEY}:lease       string: the refresh lease's token, with a PX expiry
//! cacheback:{KEY}:fail        hash: the last failed run (time, status, count, stderr tail)
//! cacheback:{KEY}:counts      hash: hits, misses, refreshes, failures, fleet-wide
//! ```
//!
//! `{KEY}` is a Redis Cluster hash tag: all of one entry's keys share a slot,
//! so its scripts may touch them together. Every key expires on its own
//! ([`Fleet::new`]'s `expiry`), so a cache nobody uses any more empties itself.
//!
//! A reader never sees half a value: chunks are written first, under a
//! generation of their own that nothing points to yet, and only then does one
//! script switch the header to them. That script also checks that the writer
//! still holds its lease and that the value it replaces is older, so a
//! refresher that lost its lease (it expired, or the server failed over)
//! cannot overwrite a newer value. The replaced generation's chunks are left
//! to expire a minute later, long enough for a reader already streaming them.

use std::io::{self, Read, Write};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::cluster::{Router, slot};
use super::conn::{Connection, StoreError};
use super::resp::Value;
use crate::clock::now_ms;
use crate::digest::DIGEST_LEN;
use crate::key::Key;

/// Bytes per chunk: large enough that a 100 MiB value is 100 round trips,
/// small enough that one chunk in memory is nothing.
pub const CHUNK_LEN: usize = 1 << 20;
/// How long a replaced generation's chunks stay readable.
pub const OLD_CHUNKS_GRACE: Duration = Duration::from_secs(60);

/// The server's clock in milliseconds, in a script: the one clock every
/// host of a fleet agrees on, whatever their own say.
macro_rules! server_now {
    () => {
        "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"
    };
}

/// Switches the header to a new generation if the lease is still ours. The
/// value is stamped with the server's clock (less its age when published),
/// never the producing host's: a host whose clock runs ahead must not make
/// its value look newer than the next one for days. The lease alone decides
/// who may write, so nothing else is compared. KEYS: lease, meta. ARGV:
/// token, age_ms, expiry_ms, then field/value pairs. Returns the replaced
/// generation (a string) and its chunk count ({"0", 0} for none), or -1 when
/// the lease is lost.
const PUBLISH: &str = concat!(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end\n",
    server_now!(),
    // The old generation goes back as the string it was stored as: a Lua
    // number is a double, which rounds a 60-bit generation to another one
    // (the replaced chunks were then never found to expire).
    r"local old = redis.call('HGET', KEYS[2], 'gen') or '0'
local old_chunks = tonumber(redis.call('HGET', KEYS[2], 'chunks') or '0') or 0
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'finished_ms', string.format('%.0f', now - tonumber(ARGV[2])), unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {old, old_chunks}
"
);

/// Records a failed run under the lease, stamped like [`PUBLISH`]; the count
/// restarts after a success (a header newer than the last failure). KEYS:
/// lease, fail, meta. ARGV: token, age_ms, exit_code, expiry_ms, stderr
/// tail. Returns the consecutive failures, or -1 when the lease is lost.
const RECORD_FAILURE: &str = concat!(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end\n",
    server_now!(),
    r"local entry = tonumber(redis.call('HGET', KEYS[3], 'finished_ms') or '0') or 0
local last = tonumber(redis.call('HGET', KEYS[2], 'finished_ms') or '0') or 0
local failures = 1
if last > entry then failures = (tonumber(redis.call('HGET', KEYS[2], 'failures') or '0') or 0) + 1 end
redis.call('HSET', KEYS[2], 'finished_ms', string.format('%.0f', now - tonumber(ARGV[2])), 'exit_code', ARGV[3], 'failures', failures, 'stderr_tail', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return failures
"
);

/// The clock of the server that holds an entry. KEYS: one of the entry's
/// keys, so a cluster sends it to the node that stamps the entry's times.
const SERVER_TIME: &str = "return redis.call('TIME')";

/// Whether a lease is held, bounding its life by `length`: a lease stored
/// without an expiry (or with a longer one than cacheback sets) would make
/// every host wait for a holder that may not exist. KEYS: lease. ARGV:
/// length_ms. Returns 1 when held.
const BOUND_LEASE: &str = r"
local left = redis.call('PTTL', KEYS[1])
if left == -2 then return 0 end
if left == -1 or left > tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
";

/// Sets the forced-stale flag (bit 0) of a stored header. KEYS: meta.
const MARK_STALE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local flags = tonumber(redis.call('HGET', KEYS[1], 'flags') or '0')
if flags % 2 == 0 then redis.call('HSET', KEYS[1], 'flags', flags + 1) end
return 1
";

/// Deletes the lease only if it still holds our token. KEYS: lease. ARGV: token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Extends the lease only if it still holds our token. KEYS: lease. ARGV: token, ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// A hash's field/value pairs, as HGETALL returns them.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// The last failed run of an entry, fleet-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetFailure {
    /// When it finished, on this host's clock (see [`FleetMeta::finished_ms`]).
    pub finished_ms: u64,
    /// When it finished on the store's clock: the same in every read, so it
    /// tells one failure from the next.
    pub stamp_ms: u64,
    /// Its exit status.
    pub exit_code: i32,
    /// Failed runs in a row, since the last success.
    pub failures: u32,
    /// The end of its stderr.
    pub stderr_tail: Vec<u8>,
}

/// A value's header as the fleet tier keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetMeta {
    /// Which chunks hold the bytes (set by [`Fleet::publish`]).
    pub generation: u64,
    /// When the value was produced, on this host's clock. The store keeps
    /// it on its own clock (the publish stamps it) and a read carries it
    /// over to the reader's, so every host judges a value's age alike
    /// however far apart their clocks are.
    pub finished_ms: u64,
    /// How long the run took.
    pub duration_ms: u64,
    /// The command's exit status.
    pub exit_code: i32,
    /// The `--jitter` delay drawn for it.
    pub jitter_ms: u32,
    /// Preamble flags (`--cache-failures`).
    pub flags: u32,
    /// Bytes of stdout, then of stderr, in the chunks.
    pub stdout_len: u64,
    /// Bytes of stderr after them.
    pub stderr_len: u64,
    /// The encoded details (argv, label, key inputs).
    pub details: Vec<u8>,
    /// SHA-256 of the bytes (stdout then stderr), set by [`Fleet::publish`];
    /// `None` in a value an older cacheback published.
    pub digest: Option<[u8; DIGEST_LEN]>,
}

impl FleetMeta {
    /// Bytes of the value: stdout and stderr. A decoded header's lengths
    /// are checked to add up ([`decode_meta`]).
    pub fn value_len(&self) -> u64 {
        self.stdout_len.saturating_add(self.stderr_len)
    }

    fn chunks(&self) -> u64 {
        self.value_len().div_ceil(CHUNK_LEN as u64)
    }
}

/// The right to refresh one entry fleet-wide, until its expiry. It carries
/// its key, so it can only ever publish that entry.
#[derive(Debug)]
pub struct FleetLease {
    key: Key,
    token: String,
}

impl FleetLease {
    /// The entry this lease is for.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// A handle that can renew this lease and nothing else, for the thread
    /// that keeps it alive while the command runs.
    pub fn renewer(&self) -> LeaseRenewer {
        LeaseRenewer {
            key: self.key,
            token: self.token.clone(),
        }
    }
}

/// The right to extend a [`FleetLease`] (see [`FleetLease::renewer`]): it
/// cannot publish, record a failure or release.
#[derive(Debug)]
pub struct LeaseRenewer {
    key: Key,
    token: String,
}

/// What became of a [`Fleet::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The header points at the new value.
    Stored,
    /// The lease had expired or was taken over: nothing changed.
    LeaseLost,
}

/// The fleet tier of one server (or Redis Cluster) and key prefix.
pub struct Fleet {
    /// Every command goes through the router: to the one server, or to the
    /// cluster node serving its key (all of one entry's keys share a slot).
    conn: Router,
    prefix: String,
    expiry_ms: u64,
}

impl Fleet {
    /// The fleet tier on `conn`, keys under `prefix` (e.g. `cacheback`),
    /// each expiring `expiry` after its last write. When `conn`'s server is
    /// a Redis Cluster node, the others are found from its redirections.
    pub fn new(conn: Connection, prefix: &str, expiry: Duration) -> Fleet {
        Fleet {
            conn: Router::new(conn),
            prefix: prefix.to_owned(),
            expiry_ms: expiry.as_millis().max(1) as u64,
        }
    }

    fn name(&self, key: &Key, part: &str) -> String {
        entry_key(&self.prefix, key, part)
    }

    /// The stored header of `key`, if the fleet has a readable value for it.
    pub fn meta(&mut self, key: &Key) -> Result<Option<FleetMeta>, StoreError> {
        Ok(self.read(key)?.meta)
    }

    /// Everything the fleet holds about `key`, in one round trip.
    pub fn read(&mut self, key: &Key) -> Result<Snapshot, StoreError> {
        let mut found = self.snapshots(std::slice::from_ref(key))?;
        found.pop().ok_or_else(|| self.broken("no reply to a read"))
    }

    /// Everything the fleet holds about each of `keys` (header, failure,
    /// counters, lease), a few hundred keys per round trip: a listing of
    /// thousands of entries must not cost a round trip per field.
    pub fn snapshots(&mut self, keys: &[Key]) -> Result<Vec<Snapshot>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for batch in keys.chunks(256) {
            let names: Vec<[String; 4]> = batch
                .iter()
                .map(|key| ["meta", "fail", "counts", "lease"].map(|part| self.name(key, part)))
                .collect();
            // One key each, so a slot in migration is followed through ASK
            // command by command (a script over several keys would get
            // TRYAGAIN until the migration ends); all go in one round trip.
            let mut commands: Vec<Vec<&[u8]>> = Vec::with_capacity(batch.len() * 5);
            for [meta, fail, counts, lease] in &names {
                commands.push(vec![b"HGETALL", meta.as_bytes()]);
                commands.push(vec![b"HGETALL", fail.as_bytes()]);
                commands.push(vec![b"HGETALL", counts.as_bytes()]);
                commands.push(vec![b"PTTL", lease.as_bytes()]);
                commands.push(vec![b"EVAL", SERVER_TIME.as_bytes(), b"1", meta.as_bytes()]);
            }
            let commands: Vec<&[&[u8]]> = commands.iter().map(|c| c.as_slice()).collect();
            let replies = self.conn.pipeline(&commands)?;
            // Taken after the replies came: a value then looks older by the
            // round trip at most, never younger.
            let local_now = now_ms();
            if replies.len() != batch.len() * 5 {
                return Err(self.broken("too few replies to a read"));
            }
            let mut replies = replies.into_iter();
            for key in batch {
                let parts: Vec<Value> = replies.by_ref().take(5).collect();
                let snapshot = snapshot_from(*key, parts, local_now)
                    .ok_or_else(|| self.broken("unexpected reply to a read"))?;
                found.push(snapshot);
            }
        }
        Ok(found)
    }

    /// Streams a value's bytes (stdout then stderr) to `out`, one chunk at a
    /// time; an error means `out` got a part only, and the caller must not
    /// keep it.
    pub fn read_value(
        &mut self,
        key: &Key,
        meta: &FleetMeta,
        out: &mut dyn Write,
    ) -> Result<(), StoreError> {
        let mut left = meta.value_len();
        let mut hasher = Sha256::new();
        for index in 0..meta.chunks() {
            let name = self.name(key, &format!("{}:{index}", meta.generation));
            let chunk = match self.conn.command(&[b"GET", name.as_bytes()])? {
                Value::Bulk(Some(chunk)) => chunk,
                _ => return Err(self.bad_value("a chunk of the value is missing")),
            };
            let expected = left.min(CHUNK_LEN as u64);
            if chunk.len() as u64 != expected {
                return Err(self.bad_value("a chunk of the value has the wrong length"));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(|err| self.io(err))?;
            left -= expected;
        }
        if meta
            .digest
            .is_some_and(|digest| digest != <[u8; DIGEST_LEN]>::from(hasher.finalize()))
        {
            return Err(self.bad_value("the value does not match its digest"));
        }
        Ok(())
    }

    /// Takes the refresh lease of `key` for `length`, if nobody holds it.
    pub fn try_lease(
        &mut self,
        key: &Key,
        length: Duration,
    ) -> Result<Option<FleetLease>, StoreError> {
        let token = random_token().map_err(|err| self.io(err))?;
        let name = self.name(key, "lease");
        let millis = length.as_millis().max(1).to_string();
        let reply = self.conn.command(&[
            b"SET",
            name.as_bytes(),
            token.as_bytes(),
            b"NX",
            b"PX",
            millis.as_bytes(),
        ])?;
        Ok(matches!(reply, Value::Simple(_)).then_some(FleetLease { key: *key, token }))
    }

    /// Extends a held lease to `length` from now; false when it was lost.
    pub fn renew(&mut self, lease: &FleetLease, length: Duration) -> Result<bool, StoreError> {
        self.renew_token(&lease.key, &lease.token, length)
    }

    /// [`Fleet::renew`] through a [`LeaseRenewer`].
    pub fn renew_with(
        &mut self,
        renewer: &LeaseRenewer,
        length: Duration,
    ) -> Result<bool, StoreError> {
        self.renew_token(&renewer.key, &renewer.token, length)
    }

    fn renew_token(
        &mut self,
        key: &Key,
        token: &str,
        length: Duration,
    ) -> Result<bool, StoreError> {
        let name = self.name(key, "lease");
        let millis = length.as_millis().max(1).to_string();
        let reply = self.script(RENEW, &[&name], &[token.as_bytes(), millis.as_bytes()])?;
        Ok(reply == Value::Int(1))
    }

    /// Whether some host holds the refresh lease of `key` now. A lease that
    /// would outlive `bound` (one stored without an expiry, by hand or by
    /// another program) is cut to it first: no lease cacheback sets lives
    /// longer without being renewed.
    pub fn lease_held(&mut self, key: &Key, bound: Duration) -> Result<bool, StoreError> {
        let name = self.name(key, "lease");
        let millis = bound.as_millis().max(1).to_string();
        Ok(self.script(BOUND_LEASE, &[&name], &[millis.as_bytes()])? == Value::Int(1))
    }

    /// Waits up to `limit` for each later reply (a value's chunks may take
    /// longer than the first, short, round trip is allowed).
    pub fn set_reply_timeout(&mut self, limit: Duration) {
        self.conn.set_io_timeout(limit);
    }

    /// Gives the lease back (only if it is still ours).
    pub fn release(&mut self, lease: FleetLease) -> Result<(), StoreError> {
        let name = self.name(&lease.key, "lease");
        self.script(RELEASE, &[&name], &[lease.token.as_bytes()])
            .map(drop)
    }

    /// Writes a value produced under `lease`: its `body` (stdout then stderr,
    /// `meta.stdout_len + meta.stderr_len` bytes) in chunks, then the header,
    /// atomically and only if the lease still holds and no newer value is there.
    pub fn publish(
        &mut self,
        lease: &FleetLease,
        mut meta: FleetMeta,
        body: &mut dyn Read,
    ) -> Result<Published, StoreError> {
        let key = lease.key;
        // A generation of its own for every publish, never the lease's: a
        // second publish under one lease must not write over the chunks the
        // header points to before its script is refused.
        let fresh = random_token().map_err(|err| self.io(err))?;
        meta.generation = u64::from_str_radix(&fresh[..15], 16).unwrap_or(1).max(1);
        let expiry = self.expiry_ms.to_string();
        let mut buffer = vec![0u8; CHUNK_LEN];
        let mut left = meta
            .stdout_len
            .checked_add(meta.stderr_len)
            .ok_or_else(|| {
                self.io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "value too large",
                ))
            })?;
        let mut hasher = Sha256::new();
        for index in 0..meta.chunks() {
            let len = left.min(CHUNK_LEN as u64) as usize;
            body.read_exact(&mut buffer[..len])
                .map_err(|err| self.io(err))?;
            hasher.update(&buffer[..len]);
            let name = self.name(&key, &format!("{}:{index}", meta.generation));
            self.conn.command(&[
                b"SET",
                name.as_bytes(),
                &buffer[..len],
                b"PX",
                expiry.as_bytes(),
            ])?;
            left -= len as u64;
        }
        let digest: [u8; DIGEST_LEN] = hasher.finalize().into();
        let fields: Vec<(&[u8], Vec<u8>)> = vec![
            (b"gen", meta.generation.to_string().into_bytes()),
            (b"digest", hex(&digest).into_bytes()),
            (b"duration_ms", meta.duration_ms.to_string().into_bytes()),
            (b"exit_code", meta.exit_code.to_string().into_bytes()),
            (b"jitter_ms", meta.jitter_ms.to_string().into_bytes()),
            (b"flags", meta.flags.to_string().into_bytes()),
            (b"stdout_len", meta.stdout_len.to_string().into_bytes()),
            (b"stderr_len", meta.stderr_len.to_string().into_bytes()),
            (b"chunks", meta.chunks().to_string().into_bytes()),
            (b"details", meta.details.clone()),
        ];
        let age = now_ms().saturating_sub(meta.finished_ms).to_string();
        let mut args: Vec<&[u8]> = vec![lease.token.as_bytes(), age.as_bytes(), expiry.as_bytes()];
        for (field, value) in &fields {
            args.push(field);
            args.push(value);
        }
        let (lease_name, meta_name) = (self.name(&key, "lease"), self.name(&key, "meta"));
        let reply = self.script(PUBLISH, &[&lease_name, &meta_name], &args)?;
        let stale_generation = match reply {
            Value::Int(-1) => Some((Published::LeaseLost, meta.generation, meta.chunks())),
            Value::Array(Some(old)) => match old.as_slice() {
                [Value::Bulk(Some(generation)), Value::Int(chunks)] => {
                    let generation = std::str::from_utf8(generation)
                        .ok()
                        .and_then(|text| text.parse::<u64>().ok())
                        .unwrap_or(0);
                    (generation > 0).then_some((Published::Stored, generation, *chunks as u64))
                }
                _ => None,
            },
            _ => return Err(self.broken("unexpected reply to the publish script")),
        };
        let Some((outcome, generation, chunks)) = stale_generation else {
            return Ok(Published::Stored);
        };
        // The chunks nothing points to (ours, refused; or the replaced ones)
        // go after a grace period, not at once: a reader may be streaming them.
        self.expire_chunks(&key, generation, chunks)?;
        Ok(outcome)
    }

    /// Records a failed run under `lease` and returns the failures in a row
    /// (which drive every host's back-off); `None` when the lease was lost.
    pub fn record_failure(
        &mut self,
        lease: &FleetLease,
        finished_ms: u64,
        exit_code: i32,
        stderr_tail: &[u8],
    ) -> Result<Option<u32>, StoreError> {
        let key = lease.key;
        let names = [
            self.name(&key, "lease"),
            self.name(&key, "fail"),
            self.name(&key, "meta"),
        ];
        let (age, code, expiry) = (
            now_ms().saturating_sub(finished_ms).to_string(),
            exit_code.to_string(),
            self.expiry_ms.to_string(),
        );
        let reply = self.script(
            RECORD_FAILURE,
            &[&names[0], &names[1], &names[2]],
            &[
                lease.token.as_bytes(),
                age.as_bytes(),
                code.as_bytes(),
                expiry.as_bytes(),
                stderr_tail,
            ],
        )?;
        Ok(match reply {
            Value::Int(failures) if failures > 0 => Some(failures as u32),
            _ => None,
        })
    }

    /// The last failed run of `key`, if one is recorded.
    pub fn failure(&mut self, key: &Key) -> Result<Option<FleetFailure>, StoreError> {
        Ok(self.read(key)?.failure)
    }

    /// Adds one to a fleet-wide counter of `key` (`hits`, `misses`, ...).
    pub fn count(&mut self, key: &Key, counter: &str) -> Result<(), StoreError> {
        let name = self.name(key, "counts");
        let expiry = self.expiry_ms.to_string();
        self.conn.pipeline(&[
            &[b"HINCRBY", name.as_bytes(), counter.as_bytes(), b"1"],
            &[b"PEXPIRE", name.as_bytes(), expiry.as_bytes()],
        ])?;
        Ok(())
    }

    /// The fleet-wide counters of `key`.
    pub fn counts(&mut self, key: &Key) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.read(key)?.counts)
    }

    /// Marks the stored value stale for every host (`invalidate --refresh`);
    /// false when there is none.
    pub fn mark_stale(&mut self, key: &Key) -> Result<bool, StoreError> {
        let name = self.name(key, "meta");
        Ok(self.script(MARK_STALE, &[&name], &[])? == Value::Int(1))
    }

    /// Forgets `key` fleet-wide (`invalidate`): its header, failure record
    /// and counters, and its lease, so a refresh running now cannot publish
    /// a value that may predate the change the user reacted to. Its chunks,
    /// unreachable, go after the grace a reader streaming them needs.
    pub fn forget(&mut self, key: &Key) -> Result<bool, StoreError> {
        let meta = self.meta(key)?;
        let names = ["meta", "fail", "counts", "lease"].map(|part| self.name(key, part));
        let args: Vec<&[u8]> = std::iter::once(b"DEL".as_slice())
            .chain(names.iter().map(|name| name.as_bytes()))
            .collect();
        let forgotten = matches!(self.conn.command(&args)?, Value::Int(n) if n > 0);
        if let Some(meta) = meta {
            self.expire_chunks(key, meta.generation, meta.chunks())?;
        }
        Ok(forgotten)
    }

    /// Lets the chunks of one generation expire after [`OLD_CHUNKS_GRACE`].
    fn expire_chunks(&mut self, key: &Key, generation: u64, chunks: u64) -> Result<(), StoreError> {
        let grace = OLD_CHUNKS_GRACE.as_millis().to_string();
        let names: Vec<String> = (0..chunks)
            .map(|index| self.name(key, &format!("{generation}:{index}")))
            .collect();
        let commands: Vec<[&[u8]; 3]> = names
            .iter()
            .map(|name| [b"PEXPIRE".as_slice(), name.as_bytes(), grace.as_bytes()])
            .collect();
        let commands: Vec<&[&[u8]]> = commands.iter().map(|c| c.as_slice()).collect();
        if !commands.is_empty() {
            self.conn.pipeline(&commands)?;
        }
        Ok(())
    }

    /// Every key the fleet tier holds anything of (a value, a failure
    /// record, counters), listed with SCAN (never KEYS, which blocks the
    /// server for as long as it takes).
    pub fn keys(&mut self) -> Result<Vec<Key>, StoreError> {
        let pattern = format!("{}:{{*}}:*", self.prefix);
        // On a cluster, every master's keys: each holds its own slots'.
        let names = self.conn.scan(pattern.as_bytes())?;
        let mut keys: Vec<Key> = names.iter().filter_map(|name| self.key_of(name)).collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn key_of(&self, name: &[u8]) -> Option<Key> {
        let name = std::str::from_utf8(name).ok()?;
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        Key::from_hex(rest.split_once('}')?.0)
    }

    fn script(&mut self, body: &str, keys: &[&str], args: &[&[u8]]) -> Result<Value, StoreError> {
        // A cluster runs a script only when its KEYS share a slot (else
        // CROSSSLOT): each script here takes the keys of one entry.
        debug_assert!(
            keys.windows(2)
                .all(|pair| slot(pair[0].as_bytes()) == slot(pair[1].as_bytes())),
            "a script's KEYS span slots: {keys:?}"
        );
        let count = keys.len().to_string();
        let mut command: Vec<&[u8]> = vec![b"EVAL", body.as_bytes(), count.as_bytes()];
        command.extend(keys.iter().map(|key| key.as_bytes()));
        command.extend_from_slice(args);
        self.conn.command(&command)
    }

    fn io(&self, err: io::Error) -> StoreError {
        StoreError::Io {
            url: self.conn.url().to_owned(),
            source: err,
        }
    }

    fn broken(&self, what: &str) -> StoreError {
        self.io(io::Error::new(io::ErrorKind::InvalidData, what.to_owned()))
    }

    /// A stored value that cannot be used (a chunk missing or of the wrong
    /// length, bytes that do not match the digest): the store itself works.
    fn bad_value(&self, what: &'static str) -> StoreError {
        self.io(io::Error::new(io::ErrorKind::InvalidData, BadValue(what)))
    }
}

/// Why a stored value was refused while the store answered normally.
#[derive(Debug)]
struct BadValue(&'static str);

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BadValue {}

/// Whether `err` is about one stored value rather than the store: the
/// value counts as missing, and the store as up.
pub fn is_bad_value(err: &StoreError) -> bool {
    matches!(err, StoreError::Io { source, .. }
        if source.get_ref().is_some_and(|inner| inner.is::<BadValue>()))
}

/// The store's name of one `part` of an entry: `PREFIX:{KEY}:PART`, the
/// key in braces a Redis Cluster hash tag, so all of an entry's keys share a
/// slot (and a node).
fn entry_key(prefix: &str, key: &Key, part: &str) -> String {
    format!("{prefix}:{{{}}}:{part}", key.to_hex())
}

/// Everything the fleet holds about one key (see [`Fleet::snapshots`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The key.
    pub key: Key,
    /// Its value's header, if it has a value with a readable header.
    pub meta: Option<FleetMeta>,
    /// Why the stored header was refused, if it was ([`decode_meta`]): the
    /// entry then counts as having no value, and the next publish replaces it.
    pub invalid: Option<String>,
    /// Its last failed run, if one is recorded.
    pub failure: Option<FleetFailure>,
    /// Its counters.
    pub counts: Vec<(String, u64)>,
    /// Some host holds its lease.
    pub lease_held: bool,
}

/// The replies to one key's reads (its three hashes, the lease's remaining
/// life and the server's clock) as a snapshot, its times carried over to
/// the local clock (`local_now`, read when the replies came); `None` for
/// replies of another shape.
fn snapshot_from(key: Key, parts: Vec<Value>, local_now: u64) -> Option<Snapshot> {
    let [meta, fail, counts, lease, time]: [Value; 5] = parts.try_into().ok()?;
    let server_now = server_ms(&time)?;
    // A stamp's age on the store's clock is its age on ours.
    let local = |stamp: u64| {
        let moved = i128::from(stamp) + i128::from(local_now) - i128::from(server_now);
        u64::try_from(moved.max(0)).unwrap_or(u64::MAX)
    };
    let (meta, invalid) = match decode_meta(&fields_of(meta)) {
        Ok(meta) => (meta, None),
        Err(why) => (None, Some(why)),
    };
    Some(Snapshot {
        key,
        meta: meta.map(|mut meta| {
            meta.finished_ms = local(meta.finished_ms);
            meta
        }),
        invalid,
        failure: failure_from(&fields_of(fail)).map(|mut failure| {
            failure.finished_ms = local(failure.stamp_ms);
            failure
        }),
        counts: counts_from(fields_of(counts)),
        lease_held: matches!(lease, Value::Int(left) if left != -2),
    })
}

/// TIME's reply (seconds, microseconds) in milliseconds.
fn server_ms(time: &Value) -> Option<u64> {
    let Value::Array(Some(parts)) = time else {
        return None;
    };
    let number = |value: &Value| match value {
        Value::Bulk(Some(digits)) => std::str::from_utf8(digits).ok()?.parse::<u64>().ok(),
        _ => None,
    };
    match parts.as_slice() {
        [secs, micros] => number(secs)?
            .checked_mul(1000)?
            .checked_add(number(micros)? / 1000),
        _ => None,
    }
}

/// A hash's field/value pairs from an HGETALL reply.
fn fields_of(reply: Value) -> Fields {
    let Value::Array(Some(items)) = reply else {
        return Vec::new();
    };
    let mut pairs = Vec::new();
    let mut items = items.into_iter();
    while let (Some(Value::Bulk(Some(field))), Some(Value::Bulk(Some(value)))) =
        (items.next(), items.next())
    {
        pairs.push((field, value));
    }
    pairs
}

/// Decodes a stored header (its hash's field/value pairs), on the store's
/// clock: `Ok(None)` when there is none, `Err` with the reason when it does
/// not hold together. Anyone who can write to the store can write a header,
/// so nothing in it is trusted: every number must parse in its own type, the
/// lengths must add up without overflow and agree with the chunk count, and
/// a digest must be 64 hex digits.
pub fn decode_meta(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Option<FleetMeta>, String> {
    if fields.is_empty() {
        return Ok(None);
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name.as_bytes())
            .map(|(_, value)| value.as_slice())
    };
    fn parse<T: std::str::FromStr>(name: &str, value: Option<&[u8]>) -> Result<Option<T>, String> {
        value
            .map(|bytes| {
                std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| format!("its {name} is not a number of the right size"))
            })
            .transpose()
    }
    let required = |name: &str| parse::<u64>(name, get(name))?.ok_or(format!("it has no {name}"));
    let generation = required("gen")?;
    if generation == 0 {
        return Err("its gen is 0".to_owned());
    }
    let stdout_len = required("stdout_len")?;
    let stderr_len = required("stderr_len")?;
    let len = stdout_len
        .checked_add(stderr_len)
        .ok_or("its lengths overflow")?;
    let chunks = required("chunks")?;
    if chunks != len.div_ceil(CHUNK_LEN as u64) {
        return Err(format!(
            "its chunk count {chunks} does not fit its length {len}"
        ));
    }
    let digest = match get("digest") {
        None => None,
        Some(text) => Some(unhex(text).ok_or("its digest is not 64 hex digits")?),
    };
    Ok(Some(FleetMeta {
        generation,
        finished_ms: required("finished_ms")?,
        duration_ms: parse("duration_ms", get("duration_ms"))?.unwrap_or(0),
        exit_code: parse("exit_code", get("exit_code"))?.unwrap_or(0),
        jitter_ms: parse("jitter_ms", get("jitter_ms"))?.unwrap_or(0),
        flags: parse("flags", get("flags"))?.unwrap_or(0),
        stdout_len,
        stderr_len,
        details: get("details").unwrap_or_default().to_vec(),
        digest,
    }))
}

fn failure_from(fields: &Fields) -> Option<FleetFailure> {
    let number = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name.as_bytes())
            .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<i64>().ok())
    };
    let stamp_ms = u64::try_from(number("finished_ms")?).ok()?;
    Some(FleetFailure {
        finished_ms: stamp_ms,
        stamp_ms,
        exit_code: number("exit_code")
            .and_then(|code| i32::try_from(code).ok())
            .unwrap_or(1),
        failures: number("failures")
            .and_then(|count| u32::try_from(count).ok())
            .unwrap_or(1)
            .max(1),
        stderr_tail: fields
            .iter()
            .find(|(field, _)| field == b"stderr_tail")
            .map(|(_, value)| value.clone())
            .unwrap_or_default(),
    })
}

fn counts_from(fields: Fields) -> Vec<(String, u64)> {
    fields
        .into_iter()
        .map(|(field, value)| {
            let value = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse().ok());
            (
                String::from_utf8_lossy(&field).into_owned(),
                value.unwrap_or(0),
            )
        })
        .collect()
}

/// Lower-case hex digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest `text` spells in hex, if it does.
fn unhex(text: &[u8]) -> Option<[u8; DIGEST_LEN]> {
    if text.len() != 2 * DIGEST_LEN {
        return None;
    }
    let mut digest = [0u8; DIGEST_LEN];
    for (byte, pair) in digest.iter_mut().zip(text.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(digest)
}

/// 32 random hex digits from the kernel, unique per lease holder.
fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `redis.call(CMD, FIRST` of a script, FIRST being the key the
    /// command touches.
    fn calls(body: &str) -> Vec<(String, String)> {
        body.split("redis.call(")
            .skip(1)
            .map(|call| {
                let mut args = call.split(',').map(|arg| arg.trim().to_owned());
                (
                    args.next().unwrap_or_default(),
                    args.next().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn every_key_of_one_entry_shares_a_slot() {
        let key = Key::from_hex(&"c0ffee".repeat(11)[..64]).unwrap();
        let parts = ["meta", "fail", "counts", "lease", "123456:0", "123456:99"];
        for prefix in ["cacheback", "team-a:cache", "x"] {
            let slots: Vec<u16> = parts
                .iter()
                .map(|part| slot(entry_key(prefix, &key, part).as_bytes()))
                .collect();
            assert!(slots.iter().all(|&s| s == slots[0]), "{prefix}: {slots:?}");
            assert_eq!(
                slots[0],
                slot(key.to_hex().as_bytes()),
                "the tag is the key"
            );
        }
    }

    #[test]
    fn scripts_touch_only_the_keys_they_are_given() {
        // A cluster routes a script by its KEYS and refuses keys of other
        // slots; a key name built inside a script would escape both.
        for body in [
            PUBLISH,
            RECORD_FAILURE,
            MARK_STALE,
            RELEASE,
            RENEW,
            SERVER_TIME,
            BOUND_LEASE,
        ] {
            let calls = calls(body);
            assert!(!calls.is_empty());
            for (command, first) in calls {
                if command == "'TIME')" || command.starts_with("'TIME'") {
                    continue; // the server's clock: no key
                }
                assert!(
                    first.starts_with("KEYS["),
                    "{command} on {first} in:\n{body}"
                );
            }
        }
    }
}
