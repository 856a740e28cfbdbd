#!/usr/bin/env bash
# The mutants of the lines a change touched, in the files of
# .cargo/mutants.toml, each tested with its group's tests (mutants/run.sh):
#
#   mutants/changed.sh [BASE]   # the change: git diff BASE...HEAD (default HEAD^)
#
# Bounded for CI: at most MUTANTS_CAP mutants (default 8). When the change
# has more, one round-robin shard of them runs, chosen by HEAD's hash, so
# successive changes try different ones; the summary says how many were left
# out, and `mutants/run.sh GROUP --in-diff FILE` runs them all. A group that
# would start with less than a minute of MUTANTS_BUDGET seconds (default 270)
# left is skipped, saying so, and one still running at the budget is stopped
# (its mutants so far are reported).
#
# Fails when a mutant of the touched lines is missed (the tests pass with it)
# and is not listed in mutants/survivors.txt, the survivors docs/testing.md
# explains (listed without line and column, which move with every edit).
# Timeouts are printed, never failed on: on a loaded machine a slow caught
# mutant can look like one. The baseline (the unmutated tests) is skipped:
# CI has just run the whole suite.
#
# Each mutant rebuilds only cacheback when CARGO_TARGET_DIR (target/mutants
# unless set) is a dev target directory with the dependencies built: prime
# it first with `cargo test --no-run` (.ci/run does, in the background).
# Not here: a plain build in a directory cargo-mutants has used reuses the
# build script's output, whose linker script path names cargo-mutants'
# deleted copy of the tree, and fails to link (`touch build.rs` mends it).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:-HEAD^}
cap=${MUTANTS_CAP:-8}
budget=${MUTANTS_BUDGET:-270}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/mutants}
started=$SECONDS
out=mutants.out/changed
rm -rf "$out"
mkdir -p "$out"

# The examined files, as git pathspecs (the globs of .cargo/mutants.toml).
mapfile -t files < <(sed -n '/^examine_globs/,/^]/p' .cargo/mutants.toml | grep -o '"[^"]*"' | tr -d '"')
diff="$PWD/$out/change.diff"
git diff "$base"...HEAD -- "${files[@]}" >"$diff"
if [ ! -s "$diff" ]; then
  echo "mutants: the change ($base...HEAD) touches no line of the mutated core (.cargo/mutants.toml)"
  exit 0
fi

# The mutants of the touched lines, group by group (a line outside every
# group's functions has none).
groups=(rules ownership commit lock entry refresher fleet)
declare -A count
total=0
for group in "${groups[@]}"; do
  count[$group]=$(mutants/run.sh "$group" --in-diff "$diff" --list 2>/dev/null | grep -c . || true)
  total=$((total + count[$group]))
done
if [ "$total" = 0 ]; then
  echo "mutants: the change touches the core's files but none of the lines the groups mutate"
  exit 0
fi
shard=()
shards=1
if [ "$total" -gt "$cap" ]; then
  shards=$(((total + cap - 1) / cap))
  head=$(git rev-parse HEAD)
  shard=(--sharding round-robin --shard "$((16#${head:0:7} % shards))/$shards")
fi
echo "mutants: $total of the touched lines ($(for g in "${groups[@]}"; do [ "${count[$g]}" = 0 ] || printf '%s %s, ' "$g" "${count[$g]}"; done | sed 's/, $//'))" \
  "$([ "$shards" = 1 ] || echo "; testing one shard in $shards (${shard[*]})")"

status=0
for group in "${groups[@]}"; do
  [ "${count[$group]}" != 0 ] || continue
  left=$((budget - (SECONDS - started)))
  if [ "$left" -lt 60 ]; then
    echo "mutants: $group skipped: ${left} s of the ${budget} s budget left (mutants/run.sh $group --in-diff FILE runs it)"
    continue
  fi
  echo "-- $group"
  MUTANTS_OUTPUT="$out/$group" timeout --signal=INT "$left" \
    mutants/run.sh "$group" --in-diff "$diff" "${shard[@]}" \
    --baseline skip --timeout 180 --build-timeout 300 || true
  results="$out/$group/mutants.out"
  for kind in caught missed timeout unviable; do
    n=$(grep -c . "$results/$kind.txt" 2>/dev/null) || true
    printf '   %s %s\n' "$kind" "${n:-0}"
  done
  if [ -s "$results/timeout.txt" ]; then
    sed 's/^/   timeout (not failed on): /' "$results/timeout.txt"
  fi
  if [ -s "$results/missed.txt" ]; then
    while read -r mutant; do
      if grep -qxF "$(sed -E 's/:[0-9]+:[0-9]+:/:/' <<<"$mutant")" mutants/survivors.txt; then
        echo "   missed, a known survivor (docs/testing.md): $mutant"
      else
        echo "   MISSED: $mutant"
        status=1
      fi
    done <"$results/missed.txt"
  fi
done
echo "mutants: $((SECONDS - started)) s"
if [ "$status" != 0 ]; then
  echo "error: the tests pass with a mutant of the touched lines (MISSED above): add a test that" \
    "fails on it, or, if it is equivalent or not worth a test, explain it in docs/testing.md" \
    "and list it in mutants/survivors.txt" >&2
fi
exit "$status"
