#!/usr/bin/env bash
# Embedded checks for CI (.ci/run calls this). Installs nothing: needs the rustup targets
# thumbv6m-none-eabi, thumbv7m-none-eabi, thumbv7em-none-eabihf, qemu-system-arm and
# binutils-arm-none-eabi. Runs every check, prints a summary, exits non-zero if any failed.
#
#   1. library build matrix from the repository root: 3 targets x {no default features, alloc, defmt}
#   2. the QEMU firmware (both profiles, no global allocator) links for the 3 targets and
#      contains no allocator symbol
#   3. QEMU runs: Cortex-M3 (lm3s6965evb) and Cortex-M0 (microbit) must exit 0 with
#      "N passed, 0 failed"; with --features break-step the M3 run must exit non-zero
#   4. the defmt firmware (thumbv7em, defmt-rtt) builds and links the defmt logger
#   5. footprint.sh (writes embedded/FOOTPRINT.md)
set -uo pipefail
EMB="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$EMB/.." && pwd)"
export CARGO_TERM_COLOR=never
TARGETS=(thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf)

results=()
failed=0
record() { # status name
  results+=("$(printf '%-4s %s' "$1" "$2")")
  [ "$1" = ok ] || failed=$((failed + 1))
}
banner() { printf '\n----- embedded: %s -----\n' "$*"; }
check() { # name cmd...   (runs cmd, records ok/FAIL)
  local name=$1
  shift
  if "$@"; then record ok "$name"; else record FAIL "$name"; fi
}

# 1. ---------------------------------------------------------------------------------------------
banner "library build matrix"
lib_build() { # target features...
  local target=$1
  shift
  local env=()
  # thumbv6m has no atomic CAS: the `bytes` crate (under prost, feature alloc) then takes its
  # atomics from portable-atomic, which a library check lets assume a single core.
  if [ "$target" = thumbv6m-none-eabi ] && [ "$*" = "--features alloc" ]; then
    env=(env RUSTFLAGS="--cfg portable_atomic_unsafe_assume_single_core" CARGO_TARGET_DIR="$ROOT/target/thumbv6m-alloc")
  fi
  (cd "$ROOT" && "${env[@]}" cargo build --quiet --lib --no-default-features "$@" --target "$target") && return 0
  if [ ${#env[@]} -gt 0 ] && ! grep -q 'extra-platforms' "$ROOT/Cargo.toml"; then
    echo "hint: thumbv6m + alloc needs the target-specific bytes/extra-platforms dependency in the root Cargo.toml (embedded/README.md, 'No allocator')" >&2
  fi
  return 1
}
for t in "${TARGETS[@]}"; do
  check "lib $t --no-default-features" lib_build "$t"
  check "lib $t --no-default-features --features alloc" lib_build "$t" --features alloc
  check "lib $t --no-default-features --features defmt" lib_build "$t" --features defmt
done

# 2. ---------------------------------------------------------------------------------------------
banner "firmware links without a global allocator"
fw_links() { # target
  # the firmware defines no allocator (the link itself fails if `alloc` were in the graph) ...
  if grep -rn 'global_allocator' "$EMB/src"; then
    echo "the firmware defines a global allocator" >&2
    return 1
  fi
  (cd "$EMB" && cargo build --quiet --release --bin tether-firmware --target "$1") || return 1
  local elf="$EMB/target/$1/release/tether-firmware"
  # ... and nothing in the image is an allocator entry point
  local syms
  syms=$(arm-none-eabi-nm "$elf") || return 1
  # (grep on a variable: `nm | grep -q` would fail on SIGPIPE under pipefail)
  if grep -qE '__rust_alloc|__rg_alloc|__rust_no_alloc_shim' <<< "$syms"; then
    echo "allocator symbols found in $elf" >&2
    return 1
  fi
  arm-none-eabi-size "$elf"
}
for t in "${TARGETS[@]}"; do
  check "firmware (game + LongPort, no allocator) links for $t" fw_links "$t"
done

# 3. ---------------------------------------------------------------------------------------------
qemu_run() { # expect(pass|fail) target [cargo args...]
  local expect=$1 target=$2
  shift 2
  local log rc
  log=$(cd "$EMB" && cargo run --quiet --release --bin tether-firmware --target "$target" "$@" 2>&1)
  rc=$?
  printf '%s\n' "$log" | grep -v '^Timer with period zero'
  echo "exit status: $rc"
  local summary
  summary=$(printf '%s\n' "$log" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  if [ "$expect" = pass ]; then
    [ "$rc" = 0 ] && [[ "$summary" =~ ^[1-9][0-9]*\ passed,\ 0\ failed$ ]]
  else
    [ "$rc" != 0 ] && [[ "$summary" =~ ^[0-9]+\ passed,\ [1-9][0-9]*\ failed$ ]]
  fi
}
banner "QEMU Cortex-M3 (lm3s6965evb, thumbv7m)"
check "QEMU Cortex-M3 scenario exits 0" qemu_run pass thumbv7m-none-eabi
banner "QEMU Cortex-M3 with a deliberately broken step"
check "QEMU Cortex-M3 broken step exits non-zero" qemu_run fail thumbv7m-none-eabi --features break-step
banner "QEMU Cortex-M0 (microbit, thumbv6m)"
check "QEMU Cortex-M0 scenario exits 0" qemu_run pass thumbv6m-none-eabi

# 4. ---------------------------------------------------------------------------------------------
banner "defmt firmware (thumbv7em, defmt-rtt)"
defmt_fw() {
  (cd "$EMB/defmt-fw" && cargo build --quiet --release) || return 1
  local elf="$EMB/defmt-fw/target/thumbv7em-none-eabihf/release/tether-defmt-fw"
  arm-none-eabi-size "$elf"
  local syms
  syms=$(arm-none-eabi-nm "$elf") || return 1
  grep -q ' _defmt_write$' <<< "$syms" && grep -q ' _SEGGER_RTT$' <<< "$syms"
}
check "defmt firmware builds and links defmt-rtt" defmt_fw

# 5. ---------------------------------------------------------------------------------------------
banner "footprint"
check "footprint.sh" "$EMB/footprint.sh"

banner "summary"
printf '%s\n' "${results[@]}"
echo "embedded: $(( ${#results[@]} - failed )) ok, $failed failed"
[ "$failed" = 0 ]
