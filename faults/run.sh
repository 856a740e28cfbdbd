#!/usr/bin/env bash
# Fault soaks at full size: faults/run.sh [quick|kills|output|load|all] (default all).
#
#   quick   the fault tests CI runs (tests/faults.rs), against the release build
#   kills   kill -9 of a refresher at random moments of a write, CACHEBACK_SOAK_KILLS times (300)
#   output  CACHEBACK_SOAK_OUTPUT_MB (1024) of stdout and as much stderr through a miss
#           and a hit: byte-exact, peak RSS flat against a 16 MB run
#   load    CACHEBACK_SOAK_CALLERS (200) concurrent callers over 20 entries, fresh,
#           stale and missing, for CACHEBACK_SOAK_LOAD_SECS (30) seconds
#
# The scenarios are the #[ignore]d soak_* tests in tests/faults.rs (one
# implementation, sized here), so this builds the release binary through cargo.
# Needs root for the tmpfs (disk full) and chown (other user) cases, like CI.
# Prints a table of fault / tries / lost and exits non-zero on any loss or failure.
set -uo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
case "$which" in
  quick) runs=(quick) ;;
  kills | output | load) runs=("$which") ;;
  all) runs=(quick kills output load) ;;
  *) echo "usage: $0 [quick|kills|output|load|all]" >&2; exit 2 ;;
esac

export CARGO_TERM_COLOR=never
cargo test --release --test integration --no-run >/dev/null 2>&1 || {
  echo "faults: the release build failed" >&2
  cargo test --release --test integration --no-run
  exit 1
}

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failed=0
for run in "${runs[@]}"; do
  case "$run" in
    quick) args=(faults:: --skip soak_) ;;
    kills) args=(--ignored --exact faults::soak_refresher_kills) ;;
    output) args=(--ignored --exact faults::soak_huge_output) ;;
    load) args=(--ignored --exact faults::soak_load) ;;
  esac
  echo "== $run"
  if ! cargo test --release --test integration -- "${args[@]}" --nocapture --test-threads=1 2>&1 \
    | tee -a "$log" | grep -oE '(FAULT-RESULT|test result|load:|[0-9]+ MB stdout).*|panicked.*'; then
    failed=1
  fi
  grep -q '^test result: ok' <(tail -n 50 "$log") || failed=1
done

echo
printf '%-52s %8s %6s  %s\n' fault tries lost notes
lost_total=0
while IFS=$'\t' read -r _ fault tries lost notes; do
  printf '%-52s %8s %6s  %s\n' "$fault" "$tries" "$lost" "$notes"
  lost_total=$((lost_total + lost))
done < <(grep -o 'FAULT-RESULT.*' "$log")
if grep -q 'test result: FAILED\|panicked' "$log"; then
  failed=1
fi
if [ "$lost_total" -ne 0 ] || [ "$failed" -ne 0 ]; then
  echo "faults: FAILED (lost $lost_total)" >&2
  exit 1
fi
echo "faults: nothing lost"
