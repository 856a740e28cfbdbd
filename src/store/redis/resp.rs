//! RESP2, the Redis wire protocol: commands out as arrays of bulk strings,
//! replies in as one of five types. Small on purpose: cacheback needs a
//! handful of commands, each wait under a deadline of its own choosing
//! (docs/internals.md compares it with the `redis` crate, measured).

use std::io::{self, BufRead, Read, Write};

/// Longest bulk string accepted in a reply: a value chunk is far smaller,
/// so anything longer is a confused peer, not data.
pub const MAX_BULK: usize = 64 << 20;
/// Most elements accepted in one array reply.
pub const MAX_ARRAY: usize = 1 << 20;
/// Deepest nesting of arrays accepted in a reply. cacheback's replies nest
/// at most 3 deep (a cluster's slot map); the cap keeps a hostile server, or
/// anyone in the middle of a plain link, from exhausting the stack with
/// `*1\r\n` repeated (the reader recurses once per level).
pub const MAX_DEPTH: usize = 8;
/// Most bytes (or elements) reserved before they arrive: a length is only a
/// claim, and memory follows what the server actually sends.
const PREALLOC: usize = 1 << 20;
/// Bytes of a non-Redis server's first line quoted in the error.
const QUOTED: usize = 32;

/// Where replies are read from: bytes, and a say in how long a long reply
/// may take ([`Source::expect`]).
pub trait Source: BufRead {
    /// Told the length of each bulk string before it is read, so that a
    /// caller's deadline can grow with the bytes still expected.
    fn expect(&mut self, bytes: usize) {
        let _ = bytes;
    }
}

impl Source for &[u8] {}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    /// `:42`
    Int(i64),
    /// `$n` bytes, or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*n` values, or `*-1` (nil).
    Array(Option<Vec<Value>>),
}

/// Writes one command as an array of bulk strings.
pub fn write_command(out: &mut impl Write, args: &[&[u8]]) -> io::Result<()> {
    let mut head = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        head.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        // Large arguments go out as they are rather than copied into `head`.
        if arg.len() > 4096 {
            out.write_all(&head)?;
            out.write_all(arg)?;
            head.clear();
        } else {
            head.extend_from_slice(arg);
        }
        head.extend_from_slice(b"\r\n");
    }
    out.write_all(&head)
}

/// Reads one reply. Memory and stack stay bounded whatever the server
/// sends: arrays nest at most [`MAX_DEPTH`] deep, and lengths are checked
/// against [`MAX_BULK`] and [`MAX_ARRAY`] before anything is reserved.
pub fn read_value(input: &mut impl Source) -> io::Result<Value> {
    read_nested(input, 0)
}

fn read_nested(input: &mut impl Source, depth: usize) -> io::Result<Value> {
    let line = read_line(input, depth)?;
    let (kind, rest) = line.split_first().ok_or_else(|| bad("empty reply line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    Ok(match kind {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Int(number(rest)?),
        b'$' => match number(rest)? {
            -1 => Value::Bulk(None),
            len if (0..=MAX_BULK as i64).contains(&len) => {
                let len = len as usize;
                input.expect(len);
                let mut data = Vec::with_capacity(len.min(PREALLOC) + 2);
                input.by_ref().take(len as u64 + 2).read_to_end(&mut data)?;
                if data.len() < len + 2 {
                    return Err(closed());
                }
                if !data.ends_with(b"\r\n") {
                    return Err(bad("bulk string without its CRLF"));
                }
                data.truncate(len);
                Value::Bulk(Some(data))
            }
            _ => return Err(bad("bulk string length out of range")),
        },
        b'*' => match number(rest)? {
            -1 => Value::Array(None),
            len if (0..=MAX_ARRAY as i64).contains(&len) => {
                if depth >= MAX_DEPTH {
                    return Err(bad(&format!("arrays nested more than {MAX_DEPTH} deep")));
                }
                let len = len as usize;
                let mut items = Vec::with_capacity(len.min(PREALLOC / 64));
                for _ in 0..len {
                    items.push(read_nested(input, depth + 1)?);
                }
                Value::Array(Some(items))
            }
            _ => return Err(bad("array length out of range")),
        },
        _ => return Err(bad("unknown reply type")),
    })
}

/// One line of a reply, without its CRLF. The first line of a reply that
/// does not start like one of Redis's is another protocol's answer (an HTTP
/// server's, an SSH banner...), and the error quotes it.
fn read_line(input: &mut impl Source, depth: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    // Bounded: a reply line is a type byte and a number or a short message.
    let read = input
        .by_ref()
        .take(64 * 1024)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Err(if depth == 0 {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )
        } else {
            closed()
        });
    }
    if depth == 0 && !matches!(line[0], b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(not_redis(&line));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad("reply line without CRLF"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn not_redis(line: &[u8]) -> io::Error {
    let first = line
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let quoted = &first[..first.len().min(QUOTED)];
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "not a Redis server: it answered '{}...'",
            crate::display::escape_bytes(quoted)
        ),
    )
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection in the middle of a reply",
    )
}

fn number(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| bad("not a number"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad reply from the store: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        let big = vec![b'x'; 5000];
        write_command(&mut out, &[b"SET", b"k", &big]).unwrap();
        let mut expected = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn every_reply_type_reads_back() {
        let wire = b"+OK\r\n-ERR no\r\n:-7\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n:1\r\n*-1\r\n*0\r\n";
        let mut input = &wire[..];
        let expected = [
            Value::Simple("OK".into()),
            Value::Error("ERR no".into()),
            Value::Int(-7),
            Value::Bulk(Some(b"a\r\n".to_vec())),
            Value::Bulk(None),
            Value::Array(Some(vec![Value::Int(1), Value::Array(None)])),
            Value::Array(Some(vec![])),
        ];
        for value in expected {
            assert_eq!(read_value(&mut input).unwrap(), value);
        }
        assert!(read_value(&mut input).is_err(), "end of input");
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        // Seeded, so a failure replays: every prefix and random bytes.
        let mut seed: u64 = 0x5eed_cafe;
        let wire = b"*2\r\n$3\r\nabc\r\n:12\r\n";
        for cut in 0..wire.len() {
            assert!(read_value(&mut &wire[..cut]).is_err(), "prefix {cut}");
        }
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(b"*$:+-\r\n0123-9ab"[(seed % 15) as usize]);
            }
            let _ = read_value(&mut &bytes[..]);
        }
        assert!(read_value(&mut &b"$99999999999\r\n"[..]).is_err());
        assert!(read_value(&mut &b"*-5\r\n"[..]).is_err());
        assert!(read_value(&mut &b"$1\r\nab"[..]).is_err());
    }

    #[test]
    fn nesting_is_capped_without_recursing_through_the_input() {
        // Two million levels (8 MB) would overflow the stack if followed.
        let deep = b"*1\r\n".repeat(2_000_000);
        let err = read_value(&mut &deep[..]).unwrap_err();
        assert!(err.to_string().contains("nested more than 8 deep"), "{err}");
        // Up to the cap is fine: cacheback's own replies nest 3 deep.
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":1\r\n");
        let mut value = read_value(&mut &ok[..]).unwrap();
        for _ in 0..MAX_DEPTH {
            let Value::Array(Some(mut items)) = value else {
                panic!("an array")
            };
            value = items.pop().unwrap();
        }
        assert_eq!(value, Value::Int(1));
        let mut over = b"*1\r\n".repeat(MAX_DEPTH + 1);
        over.extend_from_slice(b":1\r\n");
        assert!(read_value(&mut &over[..]).is_err());
    }

    #[test]
    fn another_protocol_is_named_and_quoted() {
        let err =
            read_value(&mut &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a Redis server: it answered 'HTTP/1.1 400 Bad Request...'"
        );
        let err = read_value(&mut &b"SSH-2.0-OpenSSH_9.6 \x1b[2J and a very long banner\n"[..])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r"not a Redis server: it answered 'SSH-2.0-OpenSSH_9.6 \e[2J and a v...'"
        );
    }
}
