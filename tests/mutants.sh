#!/usr/bin/env bash
# Mutation testing of the library with cargo-mutants, and its score.
#
#   tests/mutants.sh --file src/game/wire.rs [cargo-mutants options...]
#   tests/mutants.sh --shard 7/20            [cargo-mutants options...]
#   tests/mutants.sh --retry src/game/wire.rs [cargo-mutants options...]
#
# --retry re-tests only the mutants that the last --file run of PATH missed (those the current
# configuration still generates) and prints the score merged with that run's other outcomes. It
# refuses when the file's mutants changed since that run (an edit outside its tests moves their
# line:column names): then run --file again. Adding tests cannot free a caught mutant, so the
# merged figures are those of a full run.
#
# Prints `caught N, missed M, timeout T, unviable U, score P%` where the score is
# (caught + timeout) / (caught + missed + timeout): a mutant that makes the tests hang is caught.
# Missed mutants are listed from mutants.out/missed.txt. Configuration and the exclusions with
# their reasons: .cargo/mutants.toml. Install the tool with `cargo install cargo-mutants --locked`.
#
# For --file, only the test targets that exercise that part of the crate are run per mutant
# (the library's unit tests always); a shard runs every target but the slow soak and flood.
# The copy cargo-mutants builds in leaves out what .gitignore files ignore (the nested target
# directories of the other workspaces would add gigabytes).
# Environment: MUTANTS_JOBS (default 1), MUTANTS_OUT (default target/mutants/<name>),
# MUTANTS_IN_PLACE=1: mutate this checkout's files in place (one job; no copy, so the build
# reuses ./target; use a spare worktree, the files are restored after each mutant),
# MUTANTS_FAST=1: no debuginfo and rust-lld as the linker (each mutant relinks every selected
# test binary; this cuts that from about a minute to seconds here).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=""; what=""
case "${1:-}" in
  --file) mode=file; what=${2:?--file needs a path}; shift 2 ;;
  --shard) mode=shard; what=${2:?--shard needs K/N}; shift 2 ;;
  --retry) mode=retry; what=${2:?--retry needs a path}; shift 2 ;;
  *) echo "usage: $0 --file PATH | --shard K/N | --retry PATH [cargo-mutants options]" >&2; exit 2 ;;
esac

all_targets() {
  for t in tests/*.rs; do
    n=$(basename "$t" .rs)
    case "$n" in soak|flood|interop_*) ;; *) printf -- '--test %s ' "$n" ;; esac
  done
}
targets_for() {
  local prefix
  case "$1" in
    src/game/*) prefix=game ;;
    src/longport/gzip.rs) prefix=gzip ;;
    src/longport/*) prefix=longport ;;
    *) all_targets; return ;;
  esac
  for t in tests/"$prefix"*.rs tests/hostile_inputs.rs tests/zero_alloc.rs; do
    n=$(basename "$t" .rs)
    case "$n" in interop_*) ;; *) printf -- '--test %s ' "$n" ;; esac
  done
}

place=(--jobs "${MUTANTS_JOBS:-1}" --gitignore true)
[ "${MUTANTS_IN_PLACE:-0}" = 1 ] && place=(--in-place)
if [ "${MUTANTS_FAST:-0}" = 1 ]; then
  export CARGO_PROFILE_DEV_DEBUG=0
  export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-B$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld -C link-arg=-fuse-ld=lld"
fi

# The target selection goes to every cargo call (`--cargo-arg`), so that a mutant's build links
# only the test binaries that run, not every test, example and bench of the package.
as_cargo_args() { for a in "$@"; do printf -- '--cargo-arg=%s ' "$a"; done; }

name=$(echo "$what" | tr '/.' '__')
out=${MUTANTS_OUT:-target/mutants/$name}
mkdir -p "$out"
# grep -c prints 0 and exits 1 on an empty file: keep its output, ignore its status.
count() { local n=0; [ -f "$1" ] && n=$(grep -c . "$1") || true; echo "${n:-0}"; }
if [ "$mode" = retry ]; then
  prev="$out/mutants.out"
  [ -f "$prev/outcomes.json" ] || { echo "$what: no earlier --file run in $prev" >&2; exit 1; }
  work="$out/retry"
  mkdir -p "$work"
  cargo mutants --list --file "$what" >"$work/list.txt"
  cat "$prev"/{caught,missed,timeout,unviable}.txt | sort -u >"$work/known.txt"
  if [ -n "$(sort -u "$work/list.txt" | comm -23 - "$work/known.txt")" ]; then
    echo "$what: mutants changed since the last --file run; run --file again" >&2
    exit 1
  fi
  grep -Fx -f "$work/list.txt" "$prev/missed.txt" >"$work/todo.txt" || true
  for k in caught timeout unviable; do
    grep -Fx -f "$work/list.txt" "$prev/$k.txt" >"$work/prev_$k.txt" || true
  done
  start=$SECONDS
  : >"$work/new_caught.txt"; : >"$work/new_missed.txt"; : >"$work/new_timeout.txt"; : >"$work/new_unviable.txt"
  if [ -s "$work/todo.txt" ]; then
    re=()
    while IFS= read -r m; do
      re+=(-F "^$(printf '%s' "$m" | sed 's/[][\\.^$*+?(){}|]/\\&/g')\$")
    done <"$work/todo.txt"
    status=0
    # shellcheck disable=SC2046
    cargo mutants --file "$what" "${re[@]}" "${place[@]}" --output "$work" "$@" \
      $(as_cargo_args --lib $(targets_for "$what")) || status=$?
    case "$status" in
      0|2|3) ;;
      *) echo "$what: cargo mutants failed (exit $status); no score" >&2; exit "$status" ;;
    esac
    for k in caught missed timeout unviable; do
      cp "$work/mutants.out/$k.txt" "$work/new_$k.txt" 2>/dev/null || true
    done
  fi
  caught=$(( $(count "$work/prev_caught.txt") + $(count "$work/new_caught.txt") ))
  missed=$(count "$work/new_missed.txt")
  timeout=$(( $(count "$work/prev_timeout.txt") + $(count "$work/new_timeout.txt") ))
  unviable=$(( $(count "$work/prev_unviable.txt") + $(count "$work/new_unviable.txt") ))
  missed_file="$work/new_missed.txt"
  echo "$what: re-tested $(count "$work/todo.txt") missed mutants of the run of $(date -u -r "$prev/outcomes.json" '+%F %H:%M UTC')"
else
  if [ "$mode" = file ]; then
    sel=(--file "$what")
    tests=$(targets_for "$what")
  else
    sel=(--shard "$what")
    tests=$(all_targets)
  fi
  # Exit status of cargo-mutants: 0 all caught, 2 some missed, 3 some timed out; anything else
  # (1 usage, 4 the unmutated tree fails its tests) means there is no score to print.
  start=$SECONDS
  status=0
  # shellcheck disable=SC2086
  cargo mutants "${sel[@]}" "${place[@]}" --output "$out" "$@" $(as_cargo_args --lib $tests) \
    || status=$?
  case "$status" in
    0|2|3) ;;
    *) echo "$what: cargo mutants failed (exit $status); no score" >&2; exit "$status" ;;
  esac
  dir="$out/mutants.out"
  caught=$(count "$dir/caught.txt"); missed=$(count "$dir/missed.txt")
  timeout=$(count "$dir/timeout.txt"); unviable=$(count "$dir/unviable.txt")
  missed_file="$dir/missed.txt"
fi

viable=$((caught + missed + timeout))
if [ "$viable" -gt 0 ]; then
  score=$(awk -v c="$caught" -v t="$timeout" -v v="$viable" 'BEGIN { printf "%.1f", 100 * (c + t) / v }')
else
  score="n/a"
fi
echo "$what: caught $caught, missed $missed, timeout $timeout, unviable $unviable, score $score%"
echo "$what: took $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
if [ "$missed" -gt 0 ]; then
  echo "missed:"
  sed 's/^/  /' "$missed_file"
fi
