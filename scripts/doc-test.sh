#!/usr/bin/env bash
# The documentation, run as written. For each file (default: README.md,
# docs/BYOK.md, docs/FORMAT.md), every ```sh block runs in order, in one bash
# (set -euo pipefail), in an empty folder of its own, with the hsmkey just
# built first on PATH, no HSMKEY_* or SOFTHSM2_CONF variable set, HOME in that
# folder (nothing is written to yours) and CI=true (no prompt can wait). The
# files' own first blocks create the throwaway SoftHSM2 tokens the rest use.
#
# Fences: ```sh blocks run; ```text, ```json, ```toml and ```console blocks
# are shown, never run (```text is for what needs hardware, a cloud or the
# repository checkout). A fence with no language, or another one, fails the
# check, so no command escapes it by accident.
#
# scripts/doc-test.sh [FILE.md...]; HSMKEY_DOC_KEEP=1 keeps the folders.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$#" -eq 0 ]; then
    set -- README.md docs/BYOK.md docs/FORMAT.md
fi

cargo build --quiet --bin hsmkey
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
[ -x "$bin/hsmkey" ] || {
    echo "doc-test: $bin/hsmkey was not built" >&2
    exit 1
}

base="$(mktemp -d "${TMPDIR:-/tmp}/hsmkey-doc.XXXXXX")"
cleanup() {
    if [ "${HSMKEY_DOC_KEEP:-}" = 1 ]; then
        echo "doc-test: folders kept in $base" >&2
    else
        rm -rf "$base"
    fi
}
trap cleanup EXIT

status=0
for doc in "$@"; do
    name="$(basename "$doc" .md)"
    work="$base/$name"
    mkdir -p "$work/run" "$work/home"
    # Check the fences and extract the ```sh blocks, each announced with its
    # file and line so that a failure names the block.
    if ! awk -v doc="$doc" '
        BEGIN { inblock = 0; blocks = 0 }
        /^```/ {
            if (inblock) { inblock = 0; if (run) print "true"; next }
            lang = substr($0, 4)
            if (lang !~ /^(sh|text|json|toml|console)$/) {
                printf "%s:%d: fence \"%s\": use sh (run), text, json, toml or console\n", doc, FNR, $0 > "/dev/stderr"
                bad = 1
            }
            inblock = 1
            run = (lang == "sh")
            if (run) {
                blocks++
                printf "__where=\"%s:%d\"; printf \"\\n== %s:%d\\n\" >&2\n", doc, FNR + 1, doc, FNR + 1
            }
            next
        }
        inblock && run { print }
        END {
            if (inblock) { printf "%s: a fence is not closed\n", doc > "/dev/stderr"; bad = 1 }
            if (blocks == 0) { printf "%s: no ```sh block to run\n", doc > "/dev/stderr"; bad = 1 }
            exit bad
        }' "$doc" >"$work/blocks.sh"; then
        status=1
        continue
    fi
    {
        echo 'set -euo pipefail'
        echo '__where=start'
        echo 'trap '\''rc=$?; echo "doc-test: $__where: the block failed (exit $rc) at: $BASH_COMMAND" >&2'\'' ERR'
        cat "$work/blocks.sh"
    } >"$work/script.sh"
    echo "== doc-test: $doc (in $work/run)" >&2
    if (cd "$work/run" && env -i \
        PATH="$bin:/usr/local/bin:/usr/bin:/bin" \
        HOME="$work/home" USER="${USER:-$(id -un)}" LOGNAME="${LOGNAME:-$(id -un)}" \
        LANG=C.UTF-8 TERM=dumb CI=true \
        bash "$work/script.sh" </dev/null); then
        echo "== doc-test: $doc: every sh block ran" >&2
    else
        echo "== doc-test: $doc FAILED (folder: $work; HSMKEY_DOC_KEEP=1 keeps it)" >&2
        status=1
    fi
done
exit "$status"
