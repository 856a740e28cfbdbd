//! SHA-256, the one digest cacheback uses: for keys, `--env` values,
//! `--hash` files, `--stdin` input and cached stdout (to tell a change).

use std::io;

use sha2::{Digest as _, Sha256};

/// Bytes of a digest.
pub const DIGEST_LEN: usize = 32;

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// SHA-256 of everything `input` yields, copied to `out` on the way (a
/// `--stdin` capture) or to `io::sink()` (a `--hash` file, a cached stdout):
/// read in blocks, so input of any size is hashed in constant memory.
pub fn sha256_copy(
    input: &mut dyn io::Read,
    out: &mut dyn io::Write,
) -> io::Result<[u8; DIGEST_LEN]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.flush()?;
    Ok(hasher.finalize().into())
}
