#!/usr/bin/env bash
# Short fuzz run of the entry decoder, for CI: fuzz/run.sh [SECONDS] (default 30).
#
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. The run is without a sanitizer (-s none): the
# code under test is safe Rust, so what the fuzzer hunts is panics (a decoder
# panic is a bug) and reads past the validated lengths, which the target asserts.
# Any crash leaves its input in fuzz/artifacts/ and fails this script.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
mkdir -p corpus/decode_entry
RUSTC_BOOTSTRAP=1 cargo fuzz run decode_entry -s none corpus/decode_entry seeds -- \
  -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
