#!/usr/bin/env bash
# The main job end to end on a SoftHSM2 token this script creates under
# ./demo (or $HSMKEY_DEMO_DIR): initialize a token, probe what it can do,
# create a KEK and keys with different backup policies, rotate one, list them.
# Backup, verify and restore join here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --quiet
hsmkey="$PWD/target/debug/hsmkey"

demo="${HSMKEY_DEMO_DIR:-$PWD/demo}"
rm -rf "$demo"
mkdir -p "$demo/tokens"
chmod 700 "$demo"
sed "s|@TOKENDIR@|$demo/tokens|" softhsm/softhsm2.conf.template >"$demo/softhsm2.conf"
export SOFTHSM2_CONF="$demo/softhsm2.conf"
unset HSMKEY_MODULE HSMKEY_TOKEN HSMKEY_PIN HSMKEY_SO_PIN

# PINs live in 0600 files: never on the command line.
umask 077
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$demo/user.pin"
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$demo/so.pin"
pins=(--pin-source "file:$demo/user.pin" --so-pin-source "file:$demo/so.pin")

step() { printf '\n== %s\n' "$*"; }

step "hsmkey token init --label demo"
"$hsmkey" "${pins[@]}" token init --label demo

step "hsmkey token mechanisms (what this token really does)"
"$hsmkey" "${pins[@]}" --token demo token mechanisms

step "a trusted KEK (needs the SO PIN), and an ordinary one"
"$hsmkey" "${pins[@]}" --token demo key generate --label backup-kek --kek --trusted
"$hsmkey" "${pins[@]}" --token demo key generate --label transfer-kek --kek

step "keys with each backup policy"
"$hsmkey" "${pins[@]}" --token demo key generate --label payments --type aes-256 --backup-policy trusted
"$hsmkey" "${pins[@]}" --token demo key generate --label sessions --type aes-128 --backup-policy any
"$hsmkey" "${pins[@]}" --token demo key generate --label signing --type ec-p256 --backup-policy trusted
"$hsmkey" "${pins[@]}" --token demo key generate --label root --type rsa-3072

step "hsmkey key rotate payments (version 2, same policy and id)"
"$hsmkey" "${pins[@]}" --token demo key rotate payments

step "hsmkey key list"
"$hsmkey" "${pins[@]}" --token demo key list

step "hsmkey key show payments@v2"
"$hsmkey" "${pins[@]}" --token demo key show payments@v2

step "key list --json: the same, for scripts"
"$hsmkey" "${pins[@]}" --token demo key list --json | head -n 12
echo "  ..."

printf '\ndemo finished: token files in %s (SOFTHSM2_CONF=%s)\n' "$demo/tokens" "$SOFTHSM2_CONF"
