#!/usr/bin/env bash
# Short fuzz run of every target, for CI: fuzz/run.sh [SECONDS] (default 30),
# the time shared out among the targets (at least 5 s each):
#   decode_entry  the local entry decoder and the store's open path
#   resp_reply    the Redis protocol reader (a hostile server's replies)
#   fleet_reply   a fleet store's header and chunks, through the real client
#
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. The run is without a sanitizer (-s none): the
# code under test is safe Rust, so what the fuzzer hunts is panics (a decoder
# panic is a bug), unbounded recursion or allocation, and reads past the
# validated lengths, which the targets assert. Any crash leaves its input in
# fuzz/artifacts/TARGET/ and fails this script.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
targets=(decode_entry resp_reply fleet_reply)
each=$((seconds / ${#targets[@]}))
[ "$each" -ge 5 ] || each=5
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
RUSTC_BOOTSTRAP=1 cargo fuzz build -s none
for target in "${targets[@]}"; do
  echo "-- $target (${each} s)"
  mkdir -p "corpus/$target"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -s none "corpus/$target" "seeds/$target" -- \
    -max_total_time="$each" -max_len=4096 -print_final_stats=1
done
