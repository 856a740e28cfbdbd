//! Redis Cluster: sending each command to the node that serves its key.
//!
//! A `--store` URL names one node. A server that is not a cluster answers
//! everything, and the [`Router`] is then a thin layer over its one
//! [`Connection`]: the same round trips as without it, and no other work
//! than hashing a command's key when a slot map is known (it never is, for
//! such a server). A cluster node answers a command for a key it does not
//! serve with a redirection, which the router follows:
//!
//! - `-MOVED SLOT HOST:PORT`: the slot lives there now. The router connects
//!   there (same user, password, TLS trust, database and time limits as the
//!   URL's node), remembers the slot's node for the later commands of this
//!   process, and sends the command again;
//! - `-ASK SLOT HOST:PORT`: the slot is being migrated and this key is
//!   already on the target: `ASKING` then the command, there, once; the map
//!   is not changed (the slot still belongs to the source);
//! - `-TRYAGAIN`: a multi-key command met a slot half migrated: again after
//!   a short pause.
//!
//! Each command gets at most [`MAX_REDIRECTIONS`] of them, so a cluster
//! whose nodes point at each other ends in one clear error, not a loop.
//! Every connection is opened and read with the URL's time limits.
//!
//! Listing (`SCAN`) must visit every master, each of which holds its own
//! slots' keys: [`Router::scan`] asks `CLUSTER NODES` in the same write as
//! its first `SCAN`, so a single server pays no extra round trip, and a
//! cluster's masters (and its whole slot map) are known from the answer.
//! Pipelines ([`Router::pipeline`]) are split by node, sent to every node
//! before any reply is read, and their redirected commands sent again.

use std::time::Duration;

use super::conn::{Connection, StoreError, refusal};
use super::resp::Value;

/// Most redirections (`MOVED`, `ASK`, `TRYAGAIN`) one command may get
/// before the router gives up: a healthy cluster needs one or two, even in
/// the middle of a resharding.
pub const MAX_REDIRECTIONS: usize = 5;
/// The slots of a Redis Cluster.
pub const SLOTS: usize = 16384;

/// A slot whose node is not known yet.
const UNKNOWN: u16 = u16::MAX;

/// The slot of `key`: CRC16 (XMODEM) of its hash tag (the text between
/// the first `{` and the next `}`, when not empty) or of the whole key,
/// modulo [`SLOTS`], as the cluster specification defines it.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), bit by bit:
/// a few keys per command do not need a table.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The key a command is routed by: the first of `EVAL`'s KEYS, the first
/// argument of the key commands cacheback sends, none for the commands of a
/// node (`SCAN`, `CLUSTER`, `PING`...), which go to the URL's node.
fn routing_key<'a>(args: &[&'a [u8]]) -> Option<&'a [u8]> {
    let name = args.first()?;
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    if is("EVAL") || is("EVALSHA") {
        let count: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
        return if count > 0 {
            args.get(3).copied()
        } else {
            None
        };
    }
    let node_wide = [
        "SCAN", "CLUSTER", "PING", "INFO", "ASKING", "SELECT", "AUTH",
    ];
    if node_wide.iter().any(|word| is(word)) {
        return None;
    }
    args.get(1).copied()
}

/// What an error reply asks of the client, if it is a redirection.
#[derive(Debug, PartialEq, Eq)]
enum Redirection {
    /// `MOVED SLOT HOST:PORT`.
    Moved { slot: u16, host: String, port: u16 },
    /// `ASK SLOT HOST:PORT`.
    Ask { host: String, port: u16 },
    /// `TRYAGAIN ...`.
    TryAgain,
}

fn redirection(reply: &Value) -> Option<Redirection> {
    let Value::Error(message) = reply else {
        return None;
    };
    if message.starts_with("TRYAGAIN") {
        return Some(Redirection::TryAgain);
    }
    let mut words = message.split(' ');
    let kind = words.next()?;
    if kind != "MOVED" && kind != "ASK" {
        return None;
    }
    let slot: u16 = words.next()?.parse().ok()?;
    let (host, port) = split_address(words.next()?)?;
    Some(if kind == "MOVED" {
        Redirection::Moved { slot, host, port }
    } else {
        Redirection::Ask { host, port }
    })
}

/// `HOST:PORT` (an IPv6 host unbracketed, as Redis writes it); the host
/// may be empty or `?` when the node does not know it (then it is the
/// host of the node that answered).
fn split_address(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

/// One node of a cluster as `CLUSTER NODES` describes it.
#[derive(Debug, PartialEq, Eq)]
struct Described {
    host: String,
    port: u16,
    myself: bool,
    master: bool,
    /// Slot ranges it serves, both ends included.
    ranges: Vec<(u16, u16)>,
}

/// Parses `CLUSTER NODES`: one line per node, `ID HOST:PORT@BUS[,NAME]
/// FLAGS MASTER PING PONG EPOCH LINK SLOT...`, a slot being `N`, `A-B`, or
/// a bracketed migration note (skipped: the slot is still its owner's).
fn parse_nodes(text: &str) -> Vec<Described> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [_, address, flags, ..] = fields.as_slice() else {
            continue;
        };
        let address = address.split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = split_address(address) else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        let ranges = fields
            .iter()
            .skip(8)
            .filter(|slot| !slot.starts_with('['))
            .filter_map(|slot| {
                let (first, last) = slot.split_once('-').unwrap_or((slot, slot));
                let (first, last) = (first.parse().ok()?, last.parse().ok()?);
                (first <= last && usize::from(last) < SLOTS).then_some((first, last))
            })
            .collect();
        nodes.push(Described {
            host,
            port,
            myself: flags.contains(&"myself"),
            master: flags.contains(&"master"),
            ranges,
        });
    }
    nodes
}

/// A node the router knows, by the names the cluster gave it.
struct Node {
    /// `host:port` as redirections and `CLUSTER NODES` name it (the URL's
    /// node may have two: the URL's and the cluster's).
    names: Vec<String>,
    host: String,
    port: u16,
    /// Open lazily, and dropped after an error (a reply may be unread).
    conn: Option<Connection>,
}

/// Sends each command to the node serving its key: the URL's node until a
/// redirection or `CLUSTER NODES` tells otherwise (see the module's notes).
pub struct Router {
    /// `nodes[0]` is the URL's node, whose connection is never dropped: it
    /// carries the credentials and limits the others are opened with.
    nodes: Vec<Node>,
    /// Node of each slot, once the server is known to be a cluster.
    slots: Option<Vec<u16>>,
}

impl Router {
    /// A router whose first node is `conn`'s (the URL's).
    pub fn new(conn: Connection) -> Router {
        let (host, port) = conn
            .address()
            .and_then(|address| split_address(&address))
            .unwrap_or_default();
        Router {
            nodes: vec![Node {
                names: conn.address().into_iter().collect(),
                host,
                port,
                conn: Some(conn),
            }],
            slots: None,
        }
    }

    /// Whether the server showed it is a cluster (redirected a command, or
    /// described its nodes).
    pub fn is_cluster(&self) -> bool {
        self.slots.is_some()
    }

    /// The URL's node address, without its password, for messages.
    pub fn url(&self) -> &str {
        self.home().url()
    }

    fn home(&self) -> &Connection {
        self.nodes[0].conn.as_ref().expect("the URL's node stays")
    }

    /// Changes how long each later reply may take, on every node.
    pub fn set_io_timeout(&mut self, limit: Duration) {
        for node in &mut self.nodes {
            if let Some(conn) = &mut node.conn {
                conn.set_io_timeout(limit);
            }
        }
    }

    /// Sends one command and reads its reply; an error reply is a
    /// [`StoreError`] (see [`refusal`]).
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Value, StoreError> {
        let mut replies = self.pipeline(&[args])?;
        Ok(replies.pop().expect("one reply per command"))
    }

    /// Sends several commands and reads their replies in order; the first
    /// error reply (after redirections) fails the whole batch. On a single
    /// server: one write, one round trip. On a cluster: one write per node
    /// involved, all sent before any reply is read, then again for the
    /// commands redirected.
    pub fn pipeline(&mut self, commands: &[&[&[u8]]]) -> Result<Vec<Value>, StoreError> {
        let replies = self.pipeline_raw(commands)?;
        for (args, reply) in commands.iter().zip(&replies) {
            if let Value::Error(message) = reply {
                let name = args.first().copied().unwrap_or_default();
                return Err(refusal(self.url(), name, message));
            }
        }
        Ok(replies)
    }

    /// [`Router::pipeline`] with error replies left as values.
    fn pipeline_raw(&mut self, commands: &[&[&[u8]]]) -> Result<Vec<Value>, StoreError> {
        let mut replies: Vec<Option<Value>> = vec![None; commands.len()];
        // (command, node, after ASKING)
        let mut pending: Vec<(usize, usize, bool)> = commands
            .iter()
            .enumerate()
            .map(|(index, args)| (index, self.route(args), false))
            .collect();
        for round in 0..=MAX_REDIRECTIONS {
            let mut again = Vec::new();
            let mut retry_later = false;
            let mut last: Option<(usize, String)> = None;
            let mut failure = None;
            // Every node's batch goes out before any reply is read: a
            // listing over three masters waits about one round trip.
            let mut sent = Vec::new();
            for node in distinct(pending.iter().map(|&(_, node, _)| node)) {
                let batch: Vec<(usize, bool)> = pending
                    .iter()
                    .filter(|&&(_, to, _)| to == node)
                    .map(|&(index, _, asking)| (index, asking))
                    .collect();
                let mut wire: Vec<&[&[u8]]> = Vec::with_capacity(batch.len());
                for &(index, asking) in &batch {
                    if asking {
                        wire.push(&[b"ASKING"]);
                    }
                    wire.push(commands[index]);
                }
                match self.connection(node).and_then(|conn| conn.send(&wire)) {
                    Ok(()) => sent.push((node, batch, wire.len())),
                    Err(err) => {
                        self.forget_connection(node);
                        failure.get_or_insert(err);
                    }
                }
            }
            for (node, batch, count) in sent {
                let conn = self.nodes[node].conn.as_mut().expect("sent on it");
                let mut got = match conn.receive(count) {
                    Ok(got) => got.into_iter(),
                    Err(err) => {
                        self.forget_connection(node);
                        failure.get_or_insert(err);
                        continue;
                    }
                };
                for (index, asking) in batch {
                    let mut reply = got.next().expect("one reply per command sent");
                    if asking {
                        // ASKING's own reply: an error there (no permission)
                        // is what the caller needs to see.
                        let answer = got.next().expect("one reply per command sent");
                        if !matches!(reply, Value::Error(_)) {
                            reply = answer;
                        }
                    }
                    match redirection(&reply) {
                        None => replies[index] = Some(reply),
                        Some(Redirection::Moved { slot, host, port }) => {
                            let to = self.node_named(&host, port, node);
                            self.learn(slot, slot, to);
                            again.push((index, to, false));
                            last = Some((node, reply_text(&reply)));
                        }
                        Some(Redirection::Ask { host, port }) => {
                            let to = self.node_named(&host, port, node);
                            again.push((index, to, true));
                            last = Some((node, reply_text(&reply)));
                        }
                        Some(Redirection::TryAgain) => {
                            retry_later = true;
                            again.push((index, node, asking));
                            last = Some((node, reply_text(&reply)));
                        }
                    }
                }
            }
            if let Some(err) = failure {
                return Err(err);
            }
            if again.is_empty() {
                return Ok(replies
                    .into_iter()
                    .map(|reply| reply.expect("every command answered"))
                    .collect());
            }
            if round == MAX_REDIRECTIONS {
                let (node, message) = last.unwrap_or_default();
                let name = commands[again[0].0].first().copied().unwrap_or_default();
                return Err(StoreError::Cluster {
                    url: self.nodes[node]
                        .conn
                        .as_ref()
                        .map_or_else(|| self.url().to_owned(), |conn| conn.url().to_owned()),
                    command: String::from_utf8_lossy(name).to_ascii_uppercase(),
                    what: format!(
                        "still redirected after {MAX_REDIRECTIONS} redirections (the last: \
                         {message}); is the cluster misconfigured or resharding?"
                    ),
                });
            }
            if retry_later {
                // A slot in migration: its keys settle in milliseconds.
                std::thread::sleep(Duration::from_millis(10 << round));
            }
            pending = again;
        }
        unreachable!("the last round returns")
    }

    /// Every key name matching `pattern`, listed with SCAN on every master
    /// of a cluster, or on the one server. A name may come twice (a key
    /// migrating, or the URL's node a replica): callers dedupe.
    pub fn scan(&mut self, pattern: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let first: [&[u8]; 6] = [b"SCAN", b"0", b"MATCH", pattern, b"COUNT", b"1000"];
        // Whether it is a cluster rides along with the first batch: a single
        // server answers an error, and the listing costs what it did.
        let home = self.nodes[0].conn.as_mut().expect("the URL's node stays");
        home.send(&[&[b"CLUSTER", b"NODES"], &first])?;
        let mut replies = home.receive(2)?.into_iter();
        let (layout, batch) = (replies.next(), replies.next());
        let mut names = Vec::new();
        let mut cursor = self.scan_reply(0, batch, &mut names)?;
        let mut others = Vec::new();
        match layout {
            Some(Value::Bulk(Some(text))) => {
                for node in parse_nodes(&String::from_utf8_lossy(&text)) {
                    if node.myself {
                        let name = format!("{}:{}", node.host, node.port);
                        if !node.host.is_empty() && !self.nodes[0].names.contains(&name) {
                            self.nodes[0].names.push(name);
                        }
                        if !node.master {
                            // A replica's keys are its master's, listed there.
                            cursor = b"0".to_vec();
                        }
                        for &(first, last) in &node.ranges {
                            self.learn(first, last, 0);
                        }
                        continue;
                    }
                    let index = self.node_named(&node.host, node.port, 0);
                    for &(first, last) in &node.ranges {
                        self.learn(first, last, index);
                    }
                    if node.master && !node.ranges.is_empty() {
                        others.push(index);
                    }
                }
                // Nothing learnt (no slots yet) still says "a cluster".
                self.slots.get_or_insert_with(|| vec![UNKNOWN; SLOTS]);
            }
            Some(Value::Error(message)) if self.is_cluster() => {
                // Refused (an ACL without it) on a server that redirected
                // us: a listing of one node would be silently partial.
                return Err(StoreError::Cluster {
                    url: self.url().to_owned(),
                    command: "CLUSTER NODES".into(),
                    what: format!("listing a cluster's entries needs it: {message}"),
                });
            }
            // Not a cluster ("cluster support disabled"), or a user not
            // allowed to ask on a server that never redirected: one node.
            _ => {}
        }
        while cursor != b"0" {
            cursor = self.scan_batch(0, &cursor, pattern, &mut names)?;
        }
        for node in distinct(others.into_iter()) {
            if node == 0 {
                continue;
            }
            let mut cursor = b"0".to_vec();
            loop {
                cursor = self.scan_batch(node, &cursor, pattern, &mut names)?;
                if cursor == b"0" {
                    break;
                }
            }
        }
        Ok(names)
    }

    /// One SCAN round trip on `node`; returns the next cursor.
    fn scan_batch(
        &mut self,
        node: usize,
        cursor: &[u8],
        pattern: &[u8],
        names: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, StoreError> {
        let args: [&[u8]; 6] = [b"SCAN", cursor, b"MATCH", pattern, b"COUNT", b"1000"];
        let reply = self
            .connection(node)
            .and_then(|conn| conn.send(&[&args]).and_then(|()| conn.receive(1)));
        match reply {
            Ok(mut reply) => self.scan_reply(node, reply.pop(), names),
            Err(err) => {
                self.forget_connection(node);
                Err(err)
            }
        }
    }

    /// The names in a SCAN reply from `node`, and its next cursor.
    fn scan_reply(
        &self,
        node: usize,
        reply: Option<Value>,
        names: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, StoreError> {
        let url = self.nodes[node]
            .conn
            .as_ref()
            .map_or_else(|| self.url().to_owned(), |conn| conn.url().to_owned());
        let Some(Value::Array(Some(mut parts))) = reply else {
            if let Some(Value::Error(message)) = reply {
                return Err(refusal(&url, b"SCAN", &message));
            }
            return Err(StoreError::Io {
                url,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "unexpected reply to SCAN",
                ),
            });
        };
        let (Some(Value::Array(Some(found))), Some(Value::Bulk(Some(next)))) =
            (parts.pop(), parts.pop())
        else {
            return Err(StoreError::Io {
                url,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "unexpected reply to SCAN",
                ),
            });
        };
        names.extend(found.into_iter().filter_map(|name| match name {
            Value::Bulk(Some(name)) => Some(name),
            _ => None,
        }));
        Ok(next)
    }

    /// The node a command goes to first: its slot's, when known.
    fn route(&self, args: &[&[u8]]) -> usize {
        match (&self.slots, routing_key(args)) {
            (Some(slots), Some(key)) => match slots[usize::from(slot(key))] {
                UNKNOWN => 0,
                node => usize::from(node),
            },
            _ => 0,
        }
    }

    /// Records that `node` serves slots `first..=last`.
    fn learn(&mut self, first: u16, last: u16, node: usize) {
        let slots = self.slots.get_or_insert_with(|| vec![UNKNOWN; SLOTS]);
        let node = u16::try_from(node).unwrap_or(UNKNOWN);
        for slot in first..=last.min(SLOTS as u16 - 1) {
            slots[usize::from(slot)] = node;
        }
    }

    /// The index of the node named `host:port`, added if new; an empty or
    /// `?` host is that of node `from`, which sent the name.
    fn node_named(&mut self, host: &str, port: u16, from: usize) -> usize {
        let host = if host.is_empty() || host == "?" {
            match self.nodes[from].host.as_str() {
                "" => "127.0.0.1".to_owned(),
                known => known.to_owned(),
            }
        } else {
            host.to_owned()
        };
        let name = format!("{host}:{port}");
        if let Some(index) = self
            .nodes
            .iter()
            .position(|node| node.names.contains(&name))
        {
            return index;
        }
        self.nodes.push(Node {
            names: vec![name],
            host,
            port,
            conn: None,
        });
        self.nodes.len() - 1
    }

    /// The open connection to `node`, opened now if need be.
    fn connection(&mut self, node: usize) -> Result<&mut Connection, StoreError> {
        if self.nodes[node].conn.is_none() {
            let (host, port) = (self.nodes[node].host.clone(), self.nodes[node].port);
            let conn = self.home().open_peer(&host, port)?;
            self.nodes[node].conn = Some(conn);
        }
        Ok(self.nodes[node].conn.as_mut().expect("just opened"))
    }

    /// Drops a peer's connection after an error (its replies may be out of
    /// step); the URL's node keeps its own, as a single server's would.
    fn forget_connection(&mut self, node: usize) {
        if node != 0 {
            self.nodes[node].conn = None;
        }
    }
}

/// The values in their first order, each once.
fn distinct(values: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut seen = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen
}

fn reply_text(reply: &Value) -> String {
    match reply {
        Value::Error(message) => message.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_specification() {
        // The specification's check value, and its hash-tag examples.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(
            slot(b"foo{}{bar}"),
            slot(b"bar"),
            "an empty tag hashes the whole key"
        );
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn commands_route_by_their_key() {
        assert_eq!(routing_key(&[b"GET", b"k"]), Some(&b"k"[..]));
        assert_eq!(
            routing_key(&[b"EVAL", b"return 1", b"2", b"a", b"b", b"x"]),
            Some(&b"a"[..])
        );
        assert_eq!(routing_key(&[b"eval", b"return 1", b"0", b"x"]), None);
        assert_eq!(routing_key(&[b"SCAN", b"0"]), None);
        assert_eq!(routing_key(&[b"CLUSTER", b"NODES"]), None);
    }

    #[test]
    fn redirections_parse() {
        let moved = Value::Error("MOVED 3999 127.0.0.1:6381".into());
        assert_eq!(
            redirection(&moved),
            Some(Redirection::Moved {
                slot: 3999,
                host: "127.0.0.1".into(),
                port: 6381
            })
        );
        let ask = Value::Error("ASK 3999 ::1:6381".into());
        assert_eq!(
            redirection(&ask),
            Some(Redirection::Ask {
                host: "::1".into(),
                port: 6381
            })
        );
        let unknown_host = Value::Error("MOVED 1 :7000".into());
        assert!(matches!(
            redirection(&unknown_host),
            Some(Redirection::Moved { port: 7000, .. })
        ));
        assert_eq!(
            redirection(&Value::Error(
                "TRYAGAIN Multiple keys request during rehashing".into()
            )),
            Some(Redirection::TryAgain)
        );
        for other in [
            "ERR no",
            "MOVED x 1:2",
            "MOVED 1 nowhere",
            "CLUSTERDOWN The cluster is down",
        ] {
            assert_eq!(redirection(&Value::Error(other.into())), None, "{other}");
        }
        assert_eq!(redirection(&Value::Simple("MOVED 1 a:2".into())), None);
    }

    #[test]
    fn cluster_nodes_parse() {
        let text = "\
07c3 127.0.0.1:30004@31004,host-a myself,master - 0 0 1 connected 0-5460 [5461->-e7d1]\n\
e7d1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461 5462-10922\n\
6ec2 127.0.0.1:30005@31005 slave 07c3 0 1426238316232 1 connected\n\
67ed :30003@31003 master,fail - 1426238316232 0 3 disconnected\n";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 4);
        assert!(nodes[0].myself && nodes[0].master);
        assert_eq!(nodes[0].ranges, [(0, 5460)]);
        assert_eq!(
            (nodes[1].host.as_str(), nodes[1].port),
            ("127.0.0.1", 30002)
        );
        assert_eq!(nodes[1].ranges, [(5461, 5461), (5462, 10922)]);
        assert!(!nodes[2].master && nodes[2].ranges.is_empty());
        assert_eq!((nodes[3].host.as_str(), nodes[3].port), ("", 30003));
    }
}
