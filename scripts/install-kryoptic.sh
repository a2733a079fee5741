#!/usr/bin/env bash
# Build the kryoptic PKCS#11 soft token (crates.io, Apache-2.0) against the
# system OpenSSL and put it at target/kryoptic/libkryoptic_pkcs11.so. Cached:
# a rerun with the library present does nothing.
#
# kryoptic is a cdylib, which `cargo install` cannot install, so its published
# crate is fetched with cargo into CARGO_HOME's registry and built from there,
# with its own Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

version="1.5.4"
out="$PWD/target/kryoptic"
lib="$out/libkryoptic_pkcs11.so"
if [ -f "$lib" ] && [ "$(cat "$out/version" 2>/dev/null)" = "$version" ]; then
    exit 0
fi

need=()
for pkg in libclang-dev libssl-dev libsqlite3-dev pkg-config; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing: ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$out/fetch/src"
cat >"$out/fetch/Cargo.toml" <<TOML
[package]
name = "kryoptic-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
kryoptic = { version = "=$version", default-features = false }

[workspace]
TOML
: >"$out/fetch/src/lib.rs"
echo "fetching kryoptic $version from crates.io" >&2
cargo fetch --quiet --manifest-path "$out/fetch/Cargo.toml"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
src=$(ls -d "$cargo_home"/registry/src/*/kryoptic-"$version" | head -n 1)
rm -rf "$out/src"
cp -r "$src" "$out/src"

echo "building kryoptic $version (minimal, dynamic OpenSSL); about a minute" >&2
(cd "$out/src" && CARGO_TARGET_DIR="$out/build" cargo build --quiet --release --locked \
    --no-default-features --features minimal,kryoptic-lib/dynamic)
cp "$out/build/release/libkryoptic_pkcs11.so" "$lib"
echo "$version" >"$out/version"
echo "kryoptic ready: $lib" >&2
