#!/usr/bin/env bash
# MSRV check, as a user's project gets the crate: package it, make a fresh project that depends
# on the packaged copy (no lockfile: a fresh dependency resolve), and build it with exactly the
# toolchain named by `rust-version`, with default features and with every feature a user may
# enable on a target with std.
set -euo pipefail
cd "$(dirname "$0")/.."
MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -1)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
rustup toolchain install "$MSRV" --profile minimal >/dev/null
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cargo package --no-verify --allow-dirty --quiet --target-dir "$WORK/pkg-target"
tar -xzf "$WORK/pkg-target/package/tether-net-$VERSION.crate" -C "$WORK"
for feats in "" "alloc,gzip,std,defmt"; do
  rm -rf "$WORK/user"
  mkdir -p "$WORK/user/src"
  cat > "$WORK/user/Cargo.toml" <<TOML
[package]
name = "msrv-user"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tether-net = { path = "../tether-net-$VERSION", features = [$(echo "$feats" | sed 's/[^,][^,]*/"&"/g')] }

[workspace]
TOML
  printf 'pub use tether_net::Instant;\n' > "$WORK/user/src/lib.rs"
  echo "msrv: cargo +$MSRV build, features [$feats], fresh resolve"
  (cd "$WORK/user" && cargo "+$MSRV" build --quiet)
done
echo "msrv: tether-net $VERSION builds with Rust $MSRV (fresh resolve, no lockfile)"
