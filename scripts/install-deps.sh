#!/usr/bin/env bash
# Install what hsmkey's tests and demo need on Debian/Ubuntu: SoftHSM2 (the
# default token), OpenSC (pkcs11-tool, the independent cross-check), NSS
# (libsoftokn3, the third token kind), gcc and libp11-kit-dev for the
# benchmark's C loop, and jq for the documentation's examples. Idempotent: apt-get runs only when
# something is missing, and `apt-get update` only once.
set -euo pipefail

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
# jq: the README and docs/BYOK.md, docs/FORMAT.md read JSON with it (scripts/doc-test.sh).
command -v jq >/dev/null 2>&1 || need+=(jq)
# curl and a Python venv: scripts/huawei-sdk-test.sh runs Huawei's Python SDK.
command -v curl >/dev/null 2>&1 || need+=(curl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
have_nss=""
for lib in /usr/lib/*/libsoftokn3.so /usr/lib64/libsoftokn3.so; do
    [ -e "$lib" ] && have_nss=1
done
[ -n "$have_nss" ] || need+=(libnss3)
spy=""
for lib in /usr/lib/*/pkcs11-spy.so /usr/lib/*/pkcs11/pkcs11-spy.so; do
    [ -e "$lib" ] && spy=1
done
[ -n "$spy" ] || need+=(opensc-pkcs11)
# gcc and the PKCS#11 header: scripts/bench.sh builds bench/loop.c.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -e /usr/include/p11-kit-1/p11-kit/pkcs11.h ] || need+=(libp11-kit-dev)
if ((${#need[@]} == 0)); then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${need[*]}; install them with your package manager" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
