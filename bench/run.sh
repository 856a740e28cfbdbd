#!/usr/bin/env bash
# Benchmarks for cacheback against two process-start floors, cat and bkt.
#
#   bench/run.sh           full run (~5 min on 2 cores): writes BENCHMARKS.md
#                          at the repo top and bench/hit-latency.svg
#   bench/run.sh --smoke   < ~45 s once built: 1 KiB hit, miss, stale hits, the fleet
#                          store's cases (small), no bkt, no valgrind; exits non-zero
#                          if anything is wrong; writes its report to a temp dir, not the repo
#
# Builds what it needs: cacheback (cargo build --release, and for the hit
# table also for x86_64-unknown-linux-musl and registry-style, see below),
# bench/floor, and bkt 0.8.2 (cargo install into bench/.work/bkt, kept between runs).  Installs
# valgrind/strace with apt-get when missing (full run only), and redis-server (both runs: the
# fleet cases start their own on a loopback port and stop it by PID; never a system service).
#
# Knobs (env): BENCH_REPS_1K BENCH_REPS_1M BENCH_REPS_100M BENCH_REPS_MISS
#   BENCH_REPS_STALE BENCH_REPS_STALE_SHORT BENCH_STALE_GAP_MS BENCH_REPS_ENTRIES BENCH_WARMUP BENCH_ENTRIES="10 100000"
#   BENCH_CONCURRENCY="50 200" BENCH_PREFILL_MAX_S BENCH_STALE_TTL_MS
#   BENCH_REPS_FLEET_HIT BENCH_REPS_FLEET_FILL BENCH_REPS_FLEET_MISS BENCH_FLEET_CALLERS (per host)
#   BENCH_UNTUNED=PATH (a registry-style cacheback; a smoke run times it only when given)
#   BENCH_NO_BKT=1 (skip bkt)  BENCH_NO_CACHEBACK=1 (harness development only)
#   BENCH_KEEP=1 (keep the scratch cache dirs under bench/.work)
#   BENCH_NO_SETTLE=1 (do not wait 5 min after the last run's scratch removal)
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH_DIR")"
WORK="$BENCH_DIR/.work"
SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
START=$(date +%s)
mkdir -p "$WORK"
# Scratch from earlier runs (cache dirs can hold 100k files). ext4 without a
# journal skips inodes freed in the last 60 s (300 s while their inode table
# block is dirty) one by one when it allocates a new one: right after such a
# mass deletion every file creation, so every miss, cost about 0.5 ms more
# here. A full run therefore starts 5 minutes after the last full run's
# scratch removal (BENCH_NO_SETTLE=1 skips the wait; after running the test
# suite, wait too). A smoke run's few hundred files are not worth a wait.
if compgen -G "$WORK/run-*" >/dev/null; then
  rm -rf "$WORK"/run-*
  date +%s > "$WORK/.removed-at"
fi
if [ "$SMOKE" = 0 ] && [ "${BENCH_NO_SETTLE:-0}" != 1 ] && [ -f "$WORK/.removed-at" ]; then
  left=$(( $(cat "$WORK/.removed-at") + 300 - $(date +%s) ))
  if [ "$left" -gt 0 ]; then
    say "waiting ${left} s for the last run's deleted files to age out (BENCH_NO_SETTLE=1 skips)"
    sync
    sleep "$left"
  fi
fi

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ "$SMOKE" = 0 ]; then
  command -v valgrind >/dev/null || need_apt+=(valgrind)
  command -v strace >/dev/null || need_apt+=(strace)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing ${need_apt[*]} with apt-get"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2 \
      || say "apt-get failed; continuing without ${need_apt[*]}"
  else
    say "missing ${need_apt[*]} and cannot apt-get them; the matching sections will be skipped"
  fi
fi
command -v python3 >/dev/null || { say "python3 is required"; exit 1; }
command -v cargo >/dev/null || { say "cargo is required"; exit 1; }

# Path of the executable from `cargo build --message-format=json` (target
# triple dirs, CARGO_TARGET_DIR and so on are all handled by cargo itself).
cargo_exe() { # name, then cargo args
  local name="$1"; shift
  cargo build --release --message-format=json-render-diagnostics "$@" \
    | python3 -c '
import json, sys
name, exe = sys.argv[1], None
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name:
        exe = m["executable"]
if not exe:
    sys.exit("no executable named " + name)
print(exe)' "$name"
}

say "building floor"
FLOOR="$(cd "$BENCH_DIR/floor" && cargo_exe floor)"
FLOOR_STD="$(cd "$BENCH_DIR/floor" && cargo_exe floor-std)"

CACHEBACK=""
if [ "${BENCH_NO_CACHEBACK:-0}" != 1 ]; then
  say "building cacheback (cargo build --release)"
  CACHEBACK="$(cd "$ROOT" && cargo_exe cacheback --bin cacheback)"
fi

# The hit table also times cacheback built for static musl and built
# registry-style (bench/registry-style.sh). A full run builds both; a smoke
# run builds the musl one and takes the registry-style one only when given
# (BENCH_UNTUNED=path, as .ci/run does), as building it costs minutes.
CACHEBACK_MUSL=""
CACHEBACK_UNTUNED="${BENCH_UNTUNED:-}"
if [ "${BENCH_NO_CACHEBACK:-0}" != 1 ]; then
  if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    say "building cacheback for x86_64-unknown-linux-musl"
    CACHEBACK_MUSL="$(cd "$ROOT" && cargo_exe cacheback --bin cacheback --target x86_64-unknown-linux-musl)"
  else
    say "x86_64-unknown-linux-musl is not installed (rustup target add x86_64-unknown-linux-musl)"
    [ "$SMOKE" = 1 ] && exit 1
  fi
  if [ "$SMOKE" = 0 ] && [ -z "$CACHEBACK_UNTUNED" ]; then
    say "building cacheback registry-style (bench/registry-style.sh)"
    CACHEBACK_UNTUNED="$("$BENCH_DIR/registry-style.sh")"
  fi
fi

BKT=""
if [ "$SMOKE" = 0 ] && [ "${BENCH_NO_BKT:-0}" != 1 ]; then
  BKT="$WORK/bkt/bin/bkt"
  if ! "$BKT" --version 2>/dev/null | grep -qx 'bkt 0.8.2'; then
    say "installing bkt 0.8.2 into $WORK/bkt (once; kept for later runs)"
    cargo install bkt --version 0.8.2 --locked --root "$WORK/bkt" >&2
  fi
fi

args=(--floor "$FLOOR" --floor-std "$FLOOR_STD" --work "$WORK")
[ -n "$CACHEBACK" ] && args+=(--cacheback "$CACHEBACK")
[ -n "$CACHEBACK_MUSL" ] && args+=(--cacheback-musl "$CACHEBACK_MUSL")
[ -n "$CACHEBACK_UNTUNED" ] && args+=(--cacheback-untuned "$CACHEBACK_UNTUNED")
[ -n "$BKT" ] && args+=(--bkt "$BKT")
if [ "$SMOKE" = 1 ]; then
  OUT="$(mktemp -d)"
  args+=(--smoke --out-md "$OUT/BENCHMARKS.md" --out-svg "$OUT/hit-latency.svg" --out-json "$OUT/results.json")
else
  args+=(--out-md "$ROOT/BENCHMARKS.md" --out-svg "$BENCH_DIR/hit-latency.svg" --out-json "$WORK/results.json")
fi

say "measuring"
status=0
python3 "$BENCH_DIR/bench.py" "${args[@]}" || status=$?
if [ "${BENCH_KEEP:-0}" != 1 ] && { [ "$status" = 0 ] || [ "$SMOKE" = 0 ]; }; then
  # scratch cache dirs: the 100k-entry case leaves some 500k small files
  say "removing scratch cache dirs"
  rm -rf "$WORK"/run-*
  [ "$SMOKE" = 1 ] || date +%s > "$WORK/.removed-at"
fi
if [ "$SMOKE" = 1 ] && [ "$status" = 0 ]; then
  cat "$OUT/BENCHMARKS.md"
  echo
fi
if [ "$status" = 0 ]; then
  say "ok in $(( $(date +%s) - START )) s"
else
  say "FAILED (exit $status) after $(( $(date +%s) - START )) s"
fi
exit "$status"
