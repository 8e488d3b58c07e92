#!/usr/bin/env bash
# Fuzz smoke run: build every cargo-fuzz target of tether-fuzz, replay the committed reproducers,
# then fuzz each target for N seconds (default 60) starting from its seed corpus.
#
#   fuzz/smoke.sh [seconds] [target...]      (default: 60 s, every target)
#
# Prints one line per target with libFuzzer's final "#N DONE cov: .. ft: .. exec/s: .." stats and
# exits non-zero if any reproducer still fails or any target crashes (the crashing input is in
# fuzz/artifacts/<target>/, the full log in fuzz/logs/<target>.log).
#
# Environment:
#   TETHER_FUZZ_SANITIZER   cargo-fuzz sanitizer (default: none; tether is #![forbid(unsafe_code)],
#                           and debug assertions + overflow checks stay on; "address" is ~5x slower)
#   TETHER_FUZZ_PARALLEL    targets fuzzed at the same time (default 1)
#   TETHER_FUZZ_ALLOW_STALE_TIMEOUT   "1" or a comma-separated list of targets that tolerate a
#                           known stale poll_timeout after inputs (see src/lib.rs); unset by
#                           default so the invariant is checked strictly
# New corpus entries go to fuzz/work/<target>/ (git-ignored); corpus/<target>/ holds the seeds.
set -uo pipefail
cd "$(dirname "$0")"
SECS="${1:-60}"
shift || true
SAN="${TETHER_FUZZ_SANITIZER:-none}"
PAR="${TETHER_FUZZ_PARALLEL:-1}"
TRIPLE="$(rustc +nightly -vV | sed -n 's/^host: //p')"
BIN="target/$TRIPLE/release"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked || exit 1
fi

echo "== build (sanitizer: $SAN)"
cargo +nightly fuzz build -s "$SAN" || exit 1
if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi
mkdir -p logs work
fail=0

echo "== reproducers"
for t in "${TARGETS[@]}"; do
  [ -d "regressions/$t" ] || continue
  for f in regressions/"$t"/*; do
    [ -f "$f" ] || continue
    if "$BIN/$t" "$f" >"logs/$t.regression.log" 2>&1; then
      echo "ok    $f"
    else
      echo "FAIL  $f: $(grep -m1 -A1 'panicked at' "logs/$t.regression.log" | tail -1)"
      fail=1
    fi
  done
done

run_target() {
  local t="$1"
  mkdir -p "work/$t" "corpus/$t"
  "$BIN/$t" "work/$t" "corpus/$t" -max_total_time="$SECS" -timeout=10 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"logs/$t.log" 2>&1
  local rc=$?
  local done_line
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "logs/$t.log" | tail -1)"
  if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
    printf '%-18s %s\n' "$t" "$done_line"
  else
    printf '%-18s CRASH (exit %s): %s\n' "$t" "$rc" \
      "$(grep -m1 -E 'panicked at|ERROR: libFuzzer' -A1 "logs/$t.log" | tr '\n' ' ')"
    grep -E 'Test unit written to' "logs/$t.log" | sed 's/^/                   /'
    echo 1 >"logs/$t.status"
    return 1
  fi
  echo 0 >"logs/$t.status"
}

echo "== fuzz ${SECS}s per target"
mkdir -p artifacts
for t in "${TARGETS[@]}"; do
  mkdir -p "artifacts/$t"
  rm -f "logs/$t.status"
  if [ "$PAR" -le 1 ]; then
    run_target "$t"
  else
    run_target "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do wait -n; done
  fi
done
wait
for t in "${TARGETS[@]}"; do
  [ "$(cat "logs/$t.status" 2>/dev/null)" = 0 ] || fail=1
done

if [ "$fail" -ne 0 ]; then
  echo "fuzz smoke: FAILED"
  exit 1
fi
echo "fuzz smoke: ok"
