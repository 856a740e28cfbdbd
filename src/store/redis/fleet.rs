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

use super::cluster::{Router, slot};
use super::conn::{Connection, StoreError};
use super::resp::Value;
use crate::key::Key;

/// Bytes per chunk: large enough that a 100 MiB value is 100 round trips,
/// small enough that one chunk in memory is nothing.
pub const CHUNK_LEN: usize = 1 << 20;
/// How long a replaced generation's chunks stay readable.
pub const OLD_CHUNKS_GRACE: Duration = Duration::from_secs(60);

/// Switches the header to a new generation if the lease is still ours and
/// the stored value is older. KEYS: lease, meta. ARGV: token, finished_ms,
/// expiry_ms, then field/value pairs. Returns the replaced generation (0 for
/// none), -1 when the lease is lost, -2 when a newer value is stored.
const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local stored = redis.call('HGET', KEYS[2], 'finished_ms')
if stored and tonumber(stored) >= tonumber(ARGV[2]) then return -2 end
local old = tonumber(redis.call('HGET', KEYS[2], 'gen') or '0')
local old_chunks = tonumber(redis.call('HGET', KEYS[2], 'chunks') or '0')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {old, old_chunks}
";

/// Records a failed run under the lease; the count restarts after a success
/// (a header newer than the last failure). KEYS: lease, fail, meta. ARGV:
/// token, finished_ms, exit_code, expiry_ms, stderr tail. Returns the
/// consecutive failures, or -1 when the lease is lost.
const RECORD_FAILURE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local entry = tonumber(redis.call('HGET', KEYS[3], 'finished_ms') or '0')
local last = tonumber(redis.call('HGET', KEYS[2], 'finished_ms') or '0')
local failures = 1
if last > entry then failures = tonumber(redis.call('HGET', KEYS[2], 'failures') or '0') + 1 end
redis.call('HSET', KEYS[2], 'finished_ms', ARGV[2], 'exit_code', ARGV[3], 'failures', failures, 'stderr_tail', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return failures
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
    /// When it finished.
    pub finished_ms: u64,
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
    /// When the value was produced, on the producing host's clock: every
    /// host judges its age from this.
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
}

impl FleetMeta {
    fn chunks(&self) -> u64 {
        (self.stdout_len + self.stderr_len).div_ceil(CHUNK_LEN as u64)
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
    /// A newer value was already there: nothing changed.
    Superseded,
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

    /// The stored header of `key`, if the fleet has a value for it.
    pub fn meta(&mut self, key: &Key) -> Result<Option<FleetMeta>, StoreError> {
        Ok(meta_from(self.hash(&self.name(key, "meta"))?))
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
            let mut commands: Vec<[&[u8]; 2]> = Vec::with_capacity(batch.len() * 4);
            for [meta, fail, counts, lease] in &names {
                commands.push([b"HGETALL", meta.as_bytes()]);
                commands.push([b"HGETALL", fail.as_bytes()]);
                commands.push([b"HGETALL", counts.as_bytes()]);
                commands.push([b"EXISTS", lease.as_bytes()]);
            }
            let commands: Vec<&[&[u8]]> = commands.iter().map(|c| c.as_slice()).collect();
            let mut replies = self.conn.pipeline(&commands)?.into_iter();
            for key in batch {
                let (Some(meta), Some(fail), Some(counts), Some(lease)) = (
                    replies.next(),
                    replies.next(),
                    replies.next(),
                    replies.next(),
                ) else {
                    return Err(self.broken("too few replies to a listing"));
                };
                found.push(Snapshot {
                    key: *key,
                    meta: meta_from(fields_of(meta)),
                    failure: failure_from(&fields_of(fail)),
                    counts: counts_from(fields_of(counts)),
                    lease_held: lease == Value::Int(1),
                });
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
        let mut left = meta.stdout_len + meta.stderr_len;
        for index in 0..meta.chunks() {
            let name = self.name(key, &format!("{}:{index}", meta.generation));
            let chunk = match self.conn.command(&[b"GET", name.as_bytes()])? {
                Value::Bulk(Some(chunk)) => chunk,
                _ => return Err(self.broken("a chunk of the value is missing")),
            };
            let expected = left.min(CHUNK_LEN as u64);
            if chunk.len() as u64 != expected {
                return Err(self.broken("a chunk of the value has the wrong length"));
            }
            out.write_all(&chunk).map_err(|err| self.io(err))?;
            left -= expected;
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

    /// Whether some host holds the refresh lease of `key` now.
    pub fn lease_held(&mut self, key: &Key) -> Result<bool, StoreError> {
        let name = self.name(key, "lease");
        Ok(self.conn.command(&[b"EXISTS", name.as_bytes()])? == Value::Int(1))
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
        let mut left = meta.stdout_len + meta.stderr_len;
        for index in 0..meta.chunks() {
            let len = left.min(CHUNK_LEN as u64) as usize;
            body.read_exact(&mut buffer[..len])
                .map_err(|err| self.io(err))?;
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
        let fields: Vec<(&[u8], Vec<u8>)> = vec![
            (b"gen", meta.generation.to_string().into_bytes()),
            (b"finished_ms", meta.finished_ms.to_string().into_bytes()),
            (b"duration_ms", meta.duration_ms.to_string().into_bytes()),
            (b"exit_code", meta.exit_code.to_string().into_bytes()),
            (b"jitter_ms", meta.jitter_ms.to_string().into_bytes()),
            (b"flags", meta.flags.to_string().into_bytes()),
            (b"stdout_len", meta.stdout_len.to_string().into_bytes()),
            (b"stderr_len", meta.stderr_len.to_string().into_bytes()),
            (b"chunks", meta.chunks().to_string().into_bytes()),
            (b"details", meta.details.clone()),
        ];
        let finished = meta.finished_ms.to_string();
        let mut args: Vec<&[u8]> = vec![
            lease.token.as_bytes(),
            finished.as_bytes(),
            expiry.as_bytes(),
        ];
        for (field, value) in &fields {
            args.push(field);
            args.push(value);
        }
        let (lease_name, meta_name) = (self.name(&key, "lease"), self.name(&key, "meta"));
        let reply = self.script(PUBLISH, &[&lease_name, &meta_name], &args)?;
        let stale_generation = match reply {
            Value::Int(-1) => Some((Published::LeaseLost, meta.generation, meta.chunks())),
            Value::Int(-2) => Some((Published::Superseded, meta.generation, meta.chunks())),
            Value::Array(Some(old)) => match old.as_slice() {
                [Value::Int(generation), Value::Int(chunks)] if *generation > 0 => {
                    Some((Published::Stored, *generation as u64, *chunks as u64))
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
        let (finished, code, expiry) = (
            finished_ms.to_string(),
            exit_code.to_string(),
            self.expiry_ms.to_string(),
        );
        let reply = self.script(
            RECORD_FAILURE,
            &[&names[0], &names[1], &names[2]],
            &[
                lease.token.as_bytes(),
                finished.as_bytes(),
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
        Ok(failure_from(&self.hash(&self.name(key, "fail"))?))
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
        Ok(counts_from(self.hash(&self.name(key, "counts"))?))
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

    /// Whether the store showed itself a Redis Cluster so far (it
    /// redirected a command, or a listing asked it).
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    fn key_of(&self, name: &[u8]) -> Option<Key> {
        let name = std::str::from_utf8(name).ok()?;
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        Key::from_hex(rest.split_once('}')?.0)
    }

    fn hash(&mut self, name: &str) -> Result<Fields, StoreError> {
        Ok(fields_of(
            self.conn.command(&[b"HGETALL", name.as_bytes()])?,
        ))
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
    /// Its value's header, if it has a value.
    pub meta: Option<FleetMeta>,
    /// Its last failed run, if one is recorded.
    pub failure: Option<FleetFailure>,
    /// Its counters.
    pub counts: Vec<(String, u64)>,
    /// Some host holds its lease.
    pub lease_held: bool,
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

fn meta_from(fields: Fields) -> Option<FleetMeta> {
    let mut meta = FleetMeta {
        generation: 0,
        finished_ms: 0,
        duration_ms: 0,
        exit_code: 0,
        jitter_ms: 0,
        flags: 0,
        stdout_len: 0,
        stderr_len: 0,
        details: Vec::new(),
    };
    for (field, value) in fields {
        let number = || std::str::from_utf8(&value).ok()?.parse::<i128>().ok();
        let number = number().unwrap_or(0);
        match field.as_slice() {
            b"gen" => meta.generation = number as u64,
            b"finished_ms" => meta.finished_ms = number as u64,
            b"duration_ms" => meta.duration_ms = number as u64,
            b"exit_code" => meta.exit_code = number as i32,
            b"jitter_ms" => meta.jitter_ms = number as u32,
            b"flags" => meta.flags = number as u32,
            b"stdout_len" => meta.stdout_len = number as u64,
            b"stderr_len" => meta.stderr_len = number as u64,
            b"details" => meta.details = value,
            _ => {}
        }
    }
    (meta.generation != 0).then_some(meta)
}

fn failure_from(fields: &Fields) -> Option<FleetFailure> {
    let number = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name.as_bytes())
            .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<i64>().ok())
    };
    Some(FleetFailure {
        finished_ms: number("finished_ms")? as u64,
        exit_code: number("exit_code").unwrap_or(0) as i32,
        failures: number("failures").unwrap_or(1) as u32,
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

/// 32 random hex digits from the kernel, unique per lease holder.
fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
        for body in [PUBLISH, RECORD_FAILURE, MARK_STALE, RELEASE, RENEW] {
            let calls = calls(body);
            assert!(!calls.is_empty());
            for (command, first) in calls {
                assert!(
                    first.starts_with("KEYS["),
                    "{command} on {first} in:\n{body}"
                );
            }
        }
    }
}
