#!/usr/bin/env bash
# Flash / static RAM of each profile x role on thumbv7em (size-optimised), and size_of of the
# machine types. Prints a markdown report and writes it to embedded/FOOTPRINT.md
# (`--update-readme`: also into the generated section of embedded/README.md).
#
# Method: every `fp-*` binary runs ONE machine (in a static) through the same fixed drive loop
# (src/fp_common.rs); `fp-baseline` runs the loop without a machine. Flash = .vector_table +
# .text + .rodata + .data (initialisers live in flash), static RAM = .data + .bss + .uninit,
# each minus the baseline. Because the drive loop makes the compiler link the memcpy/memmove/
# memset routines of compiler-builtins (up to ~3 KB, shared by everything else in a real
# firmware), they are also reported separately. Every variant is built with tether's default
# features off (`default-features = false`) except the rows that name them. size_of comes from
# the `sizes` firmware run on QEMU (thumbv7m: same data layout as thumbv7em); the stack use of
# single calls into the machines from the scenario firmware run on QEMU (thumbv7m, release).
#
# Needs: rustup target thumbv7em-none-eabihf + thumbv7m-none-eabi, arm-none-eabi-size/nm
# (binutils-arm-none-eabi), qemu-system-arm. Installs nothing.
set -euo pipefail
cd "$(dirname "$0")"

TARGET=thumbv7em-none-eabihf
PROFILE=footprint
DIR="target/$TARGET/$PROFILE"
OUT=FOOTPRINT.md

# budgets (bytes)
BUDGET_GAME_CLIENT_FLASH=6144
BUDGET_LP_CLIENT_FLASH=16384
BUDGET_GAME_CLIENT_SIZE=256
BUDGET_GAME_PEER_SLOT=64
BUDGET_CHUNK_LAYER_FLASH=4096
BUDGET_CALL_STACK=2048

cargo build --quiet --profile "$PROFILE" --target "$TARGET" \
  --bin fp-baseline --bin fp-game-client --bin fp-game-server --bin fp-lp-client --bin fp-lp-server \
  --bin fp-game-client-chunks --bin fp-vital --bin fp-huffman
# measure copies (cargo's outputs are hard links it may rewrite), then the chunk-layer variants
# again with tether's `small-huffman` decoder
M="$DIR/measure"
rm -rf "$M" && mkdir -p "$M"
for v in fp-baseline fp-game-client fp-game-server fp-lp-client fp-lp-server \
  fp-game-client-chunks fp-vital fp-huffman; do
  cp "$DIR/$v" "$M/$v"
done
cargo build --quiet --profile "$PROFILE" --target "$TARGET" --features small-huffman \
  --bin fp-game-client-chunks --bin fp-huffman
for v in fp-game-client-chunks fp-huffman; do cp "$DIR/$v" "$M/$v-small"; done
# the game machines with tether's default features (server-info, control-huffman)
cargo build --quiet --profile "$PROFILE" --target "$TARGET" --features tether-defaults \
  --bin fp-game-client --bin fp-game-server
for v in fp-game-client fp-game-server; do cp "$DIR/$v" "$M/$v-default"; done
DIR="$M"

# "flash ram" of an ELF
sections() {
  arm-none-eabi-size -A "$1" | awk '
    $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" { f += $2 }
    $1 == ".data" { f += $2; r += $2 }
    $1 == ".bss" || $1 == ".uninit" { r += $2 }
    END { print f + 0, r + 0 }'
}

# bytes of compiler-builtins memory routines (memcpy/memmove/memset/memclr and their aeabi entries)
mem_routines() {
  local total=0 addr size typ name
  while read -r addr size typ name; do
    case "$name" in
      __aeabi_mem* | compiler_builtins::mem::*) total=$((total + 16#$size)) ;;
    esac
  done < <(arm-none-eabi-nm -S -C "$1" | awk 'NF >= 4')
  echo "$total"
}

verdict() { # value budget
  if [ "$1" -le "$2" ]; then echo "hit"; else echo "MISSED"; fi
}

read -r BASE_FLASH BASE_RAM < <(sections "$DIR/fp-baseline")
BASE_MEM=$(mem_routines "$DIR/fp-baseline")

declare -A MACHINE=(
  [fp-game-client]='`game::Client` (EVENTS = 4), no default features'
  [fp-game-client-default]='the same, default features (`server-info`, `control-huffman`)'
  [fp-game-server]='`game::Server<([u8; 4], u16), 16>`, no default features'
  [fp-game-server-default]='the same, default features (`server-info`, `control-huffman`)'
  [fp-lp-client]='`longport::Client` (default capacities, TCP, no `alloc`)'
  [fp-lp-server]='`longport::Server<u32>` (16 conns, 64 sessions)'
  [fp-game-client-chunks]='`game::Client<4, Reliable<2048, 16, 2048, 16>>`'
  [fp-game-client-chunks-small]='the same, `small-huffman`'
  [fp-vital]='`game::vital::Vital<2048, 16, 2048, 16>` + chunk codec'
  [fp-huffman]='`game::huffman` compress + decompress (lookup tables)'
  [fp-huffman-small]='`game::huffman` compress + decompress (`small-huffman`)'
)
declare -A ROLE=(
  [fp-game-client]='game client' [fp-game-server]='game server'
  [fp-game-client-default]='game client' [fp-game-server-default]='game server'
  [fp-lp-client]='LongPort client' [fp-lp-server]='LongPort server'
  [fp-game-client-chunks]='game client, chunk layer' [fp-game-client-chunks-small]='game client, chunk layer'
  [fp-vital]='vital channel' [fp-huffman]='Huffman' [fp-huffman-small]='Huffman'
)

flash_rows=""
budget_rows=""
declare -A NET=()
for v in fp-game-client fp-game-client-default fp-game-server fp-game-server-default fp-lp-client \
  fp-lp-server fp-game-client-chunks fp-game-client-chunks-small fp-vital fp-huffman \
  fp-huffman-small; do
  read -r flash ram < <(sections "$DIR/$v")
  mem=$(mem_routines "$DIR/$v")
  dflash=$((flash - BASE_FLASH))
  dmem=$((mem - BASE_MEM))
  net=$((dflash - dmem))
  dram=$((ram - BASE_RAM))
  flash_rows+="| ${ROLE[$v]} | ${MACHINE[$v]} | $dflash | $dmem | $net | $dram |"$'\n'
  NET[$v]=$net
  case "$v" in
    fp-game-client) b=$BUDGET_GAME_CLIENT_FLASH what='game client (no default features)' ;;
    fp-game-client-default) b=$BUDGET_GAME_CLIENT_FLASH what='game client with default features' ;;
    fp-lp-client) b=$BUDGET_LP_CLIENT_FLASH what='LongPort client' ;;
    *) continue ;;
  esac
  budget_rows+="| $what flash ≤ $b B | $dflash B: $(verdict "$dflash" "$b") | $net B: $(verdict "$net" "$b") |"$'\n'
done

# size_of, printed by the `sizes` firmware under QEMU (thumbv7m)
SIZES_LOG=$(cargo run --quiet --release --bin sizes --target thumbv7m-none-eabi 2>/dev/null)
size_of() { # name -> bytes
  printf '%s\n' "$SIZES_LOG" | awk -v n="size_of $1 =" 'index($0, n) == 1 { print $NF }'
}
size_rows=""
while IFS= read -r line; do
  case "$line" in
    "size_of "*)
      name=${line#size_of }
      name=${name% = *}
      size_rows+="| \`$name\` | ${line##* } |"$'\n'
      ;;
  esac
done <<< "$SIZES_LOG"
[ -n "$size_rows" ] || { echo "footprint: the sizes firmware printed nothing" >&2; exit 1; }
# the game client again with tether's default features (its server-info query is a field)
SIZES_DEFAULT_LOG=$(cargo run --quiet --release --bin sizes --target thumbv7m-none-eabi --features tether-defaults 2>/dev/null)
client_size_default=$(printf '%s\n' "$SIZES_DEFAULT_LOG" | awk 'index($0, "size_of game::Client =") == 1 { print $NF }')
[ -n "$client_size_default" ] || { echo "footprint: the sizes firmware (default features) printed nothing" >&2; exit 1; }
size_rows=$(printf '%s' "$size_rows" | awk -v d="$client_size_default" '
  { print }
  index($0, "| `game::Client` |") == 1 { print "| `game::Client` with default features | " d " |" }')$'\n'

declare -A HUFF=([fp-huffman]='lookup tables' [fp-huffman-small]='`small-huffman`')
for h in fp-huffman fp-huffman-small; do
  sum=$((NET[fp-vital] + NET[$h]))
  budget_rows+="| chunk layer (vital channel + Huffman with ${HUFF[$h]}) flash ≤ $BUDGET_CHUNK_LAYER_FLASH B | | ${NET[fp-vital]} + ${NET[$h]} = $sum B: $(verdict "$sum" "$BUDGET_CHUNK_LAYER_FLASH") |"$'\n'
done

# stack use of single calls into the machines: the scenario firmware on QEMU (thumbv7m, release)
STACK_LOG=$(cargo run --quiet --release --bin tether-firmware --target thumbv7m-none-eabi 2>/dev/null) || {
  echo "footprint: the scenario firmware failed on QEMU" >&2
  exit 1
}
stack_rows=""
deepest=0
deepest_call=""
while IFS= read -r line; do
  case "$line" in
    "stack call "*)
      # stack call <scenario> <label> = <bytes>   (or >= <window> when the window ran out)
      read -r _ _ scenario label op bytes <<< "$line"
      [ "$op" = "=" ] || bytes=">= $bytes"
      stack_rows+="| $scenario | \`$label\` | $bytes |"$'\n'
      n=${bytes#>= }
      if [ "$op" != "=" ] || [ "$n" -gt "$deepest" ]; then
        deepest=$n
        deepest_call="$scenario \`$label\`"
        [ "$op" = "=" ] || deepest=$((BUDGET_CALL_STACK + 1))
      fi
      ;;
  esac
done <<< "$STACK_LOG"
[ -n "$stack_rows" ] || { echo "footprint: the scenario firmware printed no stack figures" >&2; exit 1; }
scenario_peaks=$(printf '%s\n' "$STACK_LOG" | awk '/^peak stack use:/ { sub(/^peak stack use: /, ""); print }')
budget_rows+="| stack of any single call into a machine ≤ $BUDGET_CALL_STACK B | deepest: $deepest_call $deepest B: $(verdict "$deepest" "$BUDGET_CALL_STACK") | |"$'\n'

client_size=$(size_of "game::Client")
peer_u32=$(size_of "game::Server per peer slot (u32 key)")
peer_addr=$(size_of "game::Server per peer slot ((ipv4,port) key)")
budget_rows+="| \`size_of::<game::Client>()\` ≤ $BUDGET_GAME_CLIENT_SIZE B | no default features: $client_size B: $(verdict "$client_size" "$BUDGET_GAME_CLIENT_SIZE"); default features: $client_size_default B: $(verdict "$client_size_default" "$BUDGET_GAME_CLIENT_SIZE") | |"$'\n'
budget_rows+="| game server, one peer slot ≤ $BUDGET_GAME_PEER_SLOT B (whole marginal cost per peer) | u32 key: $peer_u32 B: $(verdict "$peer_u32" "$BUDGET_GAME_PEER_SLOT"); (ipv4, port) key: $peer_addr B: $(verdict "$peer_addr" "$BUDGET_GAME_PEER_SLOT") | |"$'\n'

rustc_v=$(rustc --version)
report=$(cat <<MD
## Footprint (thumbv7em-none-eabihf)

Measured by \`embedded/footprint.sh\` with $rustc_v, profile \`footprint\` (opt-level "z",
LTO, codegen-units 1, panic abort). Each role is one firmware (\`embedded/src/bin/fp_*.rs\`)
that runs only that machine, in a static, through the same fixed drive loop (opaque inputs,
the role's commands, \`handle_input\`/\`handle_timeout\`/\`poll_*\`); numbers are that firmware
minus the baseline firmware without a machine (flash ${BASE_FLASH} B, RAM ${BASE_RAM} B).
tether is built with \`default-features = false\` except in the rows that name its default
features (\`server-info\`: the game client's server-info queries; \`control-huffman\`: compressed
packets read without the chunk layer).
Flash = .text + .rodata (+ .data initialisers, 0 here); static RAM = .data + .bss, which is
the machine itself (stack not included). "mem*" is compiler-builtins' memcpy/memmove/memset,
which the machine code makes the linker pull in but which any firmware that copies buffers
already has.

| role | machine | flash Δ (B) | of which mem* (B) | flash Δ without mem* (B) | static RAM Δ (B) |
|---|---|---:|---:|---:|---:|
${flash_rows}
### size_of (32-bit Cortex-M, default capacities, no default features unless named)

| type | bytes |
|---|---:|
${size_rows}
"Per peer slot" / "per connection slot" / "per session entry" are marginal costs:
(size_of with 2k slots − size_of with k slots) / k, i.e. everything one more slot adds.

### Stack per call (QEMU Cortex-M3, thumbv7m, release profile)

The deepest single call of each kind into a machine in the QEMU scenarios (\`src/stack.rs\`:
the stack below the caller is painted before the call and searched after it; 16 B is the
smallest figure it can show). Whole scenarios, with their machines and logs on the stack:
${scenario_peaks}.

| scenario | call | peak stack (B) |
|---|---|---:|
${stack_rows}
### Budgets

| budget | measured | without mem* |
|---|---|---|
${budget_rows}
MD
)
printf '%s\n' "$report"
printf '%s\n' "$report" > "$OUT"
echo "footprint: wrote embedded/$OUT" >&2

# --update-readme: also replace the generated section of embedded/README.md (headings one level down)
if [ "${1:-}" = --update-readme ]; then
  body=$(printf '%s\n' "$report" | awk 'NR == 1 && /^## / { next } /^### / { $0 = "#" $0 } { print }')
  awk -v body="$body" '
    /<!-- FOOTPRINT:BEGIN/ { print; print body; skip = 1; next }
    /<!-- FOOTPRINT:END/ { skip = 0 }
    !skip { print }' README.md > README.md.tmp && mv README.md.tmp README.md
  echo "footprint: updated embedded/README.md" >&2
fi
