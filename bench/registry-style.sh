#!/usr/bin/env bash
# Builds cacheback the way a user installing it from crates.io gets it, and
# prints the binary's path: `cargo package`, the .crate unpacked outside the
# repository and installed from a working directory outside it too, so no
# .cargo/config.toml is read (no static linking, PIE, sha2's run-time backend
# choice, and none of the flags a user might have set either: RUSTFLAGS and
# CARGO_ENCODED_RUSTFLAGS are cleared). The result is correct, only slower;
# bench/run.sh times it as `cacheback-untuned`.
#
#   bench/registry-style.sh   -> target/registry-style/bin/cacheback
#
# The build directory (target/registry-style/build) is kept, so a second run
# only recompiles cacheback itself. Progress goes to stderr.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/registry-style"
UNPACK="${TMPDIR:-/tmp}/cacheback-registry-style"
cd "$ROOT"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
crate="target/package/cacheback-$version.crate"
# --no-verify: verifying would build inside target/, under the repository,
# where its .cargo/config.toml applies; the build below is the check.
cargo package --quiet --no-verify --allow-dirty --locked >&2
rm -rf "$UNPACK"
mkdir -p "$UNPACK"
tar -xzf "$crate" -C "$UNPACK"
# The package carries .cargo/config.toml, and `cargo install --path` reads
# the config of the directory it installs from (a crate from a registry is
# built without it): remove it, so the build is the registry's.
rm -rf "$UNPACK/cacheback-$version/.cargo"
# The archive's files carry one fixed date, so cargo would take a changed
# source for the one it built last time: date them now.
find "$UNPACK" -exec touch {} +
# From a directory outside the repository, so no config of it applies.
cd "$UNPACK"
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_TARGET -u CACHEBACK_REQUIRE_TUNED \
  cargo install --quiet --locked --force --path "cacheback-$version" \
  --root "$OUT" --target-dir "$OUT/build" >&2
echo "$OUT/bin/cacheback"
