#!/usr/bin/env bash
# WebAssembly: the library builds for wasm32-unknown-unknown (default features, and alloc+gzip),
# and the tests that need no peer run for wasm32-wasip1 under a WASI runtime.
#
# Usage: .ci/wasm.sh   (from anywhere; installs the rustup targets and the runtime it needs)
# Env:   TETHER_WASI_RUNTIME=wasmtime (default: Wasmtime from PyPI, pinned below, in a venv under
#        target/) or node (Node >= 20's built-in WASI: nothing to install).
#        Any cargo test arguments after `--` in WASM_TEST_ARGS (e.g. "-- --skip flood").
#
# Run one test binary by hand the same way:
#   CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $PWD/.ci/wasi-run.mjs" \
#     cargo test --target wasm32-wasip1 --test game_vectors
#
# Test selection: the library's unit tests and every tests/*.rs except those that need a real
# peer or real sockets (interop_*, longport_tcp_examples) and soak (its two tests run on a
# 64 MiB-stack thread; the simulated sessions are covered by game_session, longport_session,
# sim_selftest, flood and hostile_inputs). Inside the selected binaries, tests that need threads
# or unwinding are #[ignore]d on wasm with their reason (`cfg_attr(target_os = "wasi", ...)`,
# `cfg_attr(panic = "abort", ...)`), and libtest shows it; they count as skipped below.
# A panic aborts the whole test binary on wasm32 (no unwinding), so libtest's captured output is
# lost: a failing binary is run once more with --nocapture to show the panic message.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
WASMTIME_VERSION=50.0.1
RUNTIME="${TETHER_WASI_RUNTIME:-wasmtime}"

echo "== wasm: rustup targets"
rustup target add wasm32-unknown-unknown wasm32-wasip1

echo "== wasm: WASI runtime ($RUNTIME)"
case "$RUNTIME" in
wasmtime)
    venv=target/wasi-venv
    if ! "$venv/bin/python" -c "import wasmtime, sys; sys.exit(wasmtime.__version__ != '$WASMTIME_VERSION')" 2>/dev/null; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "wasmtime==$WASMTIME_VERSION"
    fi
    RUNNER="$PWD/$venv/bin/python $PWD/.ci/wasi-run.py"
    ;;
node)
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 20 ]; then
        echo "node $major: WASI preview1 needs Node >= 20" >&2
        exit 1
    fi
    RUNNER="node --no-warnings $PWD/.ci/wasi-run.mjs"
    ;;
*)
    echo "TETHER_WASI_RUNTIME must be wasmtime or node, not '$RUNTIME'" >&2
    exit 1
    ;;
esac
export CARGO_TARGET_WASM32_WASIP1_RUNNER="$RUNNER"

echo "== wasm: library for wasm32-unknown-unknown (default features; alloc,gzip), clippy on it"
cargo build --lib --target wasm32-unknown-unknown
cargo build --lib --target wasm32-unknown-unknown --features alloc,gzip
# the 32-bit cfg paths (e.g. the Huffman lookup width) under clippy too
cargo clippy --lib --target wasm32-unknown-unknown --features alloc,gzip -- -D warnings

SELECT=(--lib)
for f in tests/*.rs; do
    t=$(basename "$f" .rs)
    case "$t" in
    interop_* | longport_tcp_examples | soak) ;;
    *) SELECT+=(--test "$t") ;;
    esac
done

echo "== wasm: build the peer-free tests for wasm32-wasip1"
cargo test --target wasm32-wasip1 --no-run "${SELECT[@]}"

echo "== wasm: run them under $RUNTIME: ${SELECT[*]}"
LOG=target/wasm-test.log
status=0
# shellcheck disable=SC2086
cargo test --target wasm32-wasip1 --no-fail-fast "${SELECT[@]}" ${WASM_TEST_ARGS:-} 2>&1 | tee "$LOG" ||
    status=$?

# Binaries that started but printed no result line aborted (a panic): count each as one failure.
read -r passed failed skipped < <(awk '
    /^     Running / { started++ }
    /^test result:/ { done++; p += $4; f += $6; i += $8 }
    END { print p + 0, f + (started - done), i + 0 }' "$LOG")
aborted=$(awk '/^     Running / { if (t) print t; t = $NF } /^test result:/ { t = "" }
    END { if (t) print t }' "$LOG" | sed 's|.*/||; s|-[0-9a-f]*\.wasm)$||' | tr '\n' ' ')

if [ "$status" != 0 ]; then
    # cargo lists the failed targets as "    `--lib`" / "    `--test name`" after "N targets failed"
    sed -n 's/^ *`\(--lib\|--test [A-Za-z0-9_]*\)`$/\1/p' "$LOG" | while read -r target; do
        echo "== wasm: $target once more with --nocapture (the panic message)"
        # shellcheck disable=SC2086
        cargo test --target wasm32-wasip1 $target -- --nocapture 2>&1 |
            grep -vE '^ +[0-9]+: +0x' | tail -n 40 || true
    done
fi

echo "== wasm: done in $(($(date +%s) - START)) s (runtime $RUNTIME)"
[ -z "$aborted" ] || echo "aborted on a panic (their other tests uncounted): $aborted"
echo "wasm32-wasip1: $passed passed, $failed failed, $skipped skipped"
[ "$status" = 0 ] && [ "$failed" = 0 ]
