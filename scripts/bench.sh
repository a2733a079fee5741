#!/usr/bin/env bash
# Bulk performance of hsmkey against a bare C loop doing the same job on the
# same token (bench/loop.c), and against what administrators script today
# (pkcs11-tool once per key). SoftHSM2 tokens on tmpfs. docs/PERFORMANCE.md
# explains the method and the figures.
#
#   scripts/bench.sh              N = 10000 (the table docs/PERFORMANCE.md shows),
#                                 pkcs11-tool loop on 200 keys, network HSM
#                                 model on 2000 keys
#   scripts/bench.sh 100000       any N (several: scripts/bench.sh 1000 10000)
#   scripts/bench.sh 50           CI's smoke run, with HSMKEY_BENCH_LOOP_KEYS=3
#                                 HSMKEY_BENCH_NET_KEYS=50
#
# Each figure is the median of HSMKEY_BENCH_RUNS (default 5) runs, hsmkey and
# the loop alternating. Prints, per job: wall time, peak RSS (GNU time),
# hsmkey's time over the loop's and its RSS over the loop's. Then the network
# HSM model: the same token behind tools/p11shim, which adds
# HSMKEY_BENCH_DELAY_US (default 1000) to every PKCS#11 call, with
# --sessions 1 and --sessions 8.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(10000)
runs="${HSMKEY_BENCH_RUNS:-5}"
loop_keys="${HSMKEY_BENCH_LOOP_KEYS:-200}"
net_keys="${HSMKEY_BENCH_NET_KEYS:-2000}"
net_delay="${HSMKEY_BENCH_DELAY_US:-1000}"

scripts/install-deps.sh
if ! [ -x /usr/bin/time ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq time >/dev/null
fi
cargo build --quiet --release --bin hsmkey
cargo build --quiet --release -p hsmkey-p11shim
target="${CARGO_TARGET_DIR:-$PWD/target}/release"
shim="$target/libhsmkey_p11shim.so"
hsmkey="$target/hsmkey"
loop="$target/hsmkey-bench-loop"
gcc -O2 -Wall -pthread -I/usr/include/p11-kit-1 bench/loop.c -o "$loop" -ldl
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -e "$m" ] && module="$m" && break
done

base="/dev/shm"
[ -d "$base" ] || base="${TMPDIR:-/tmp}"
work=$(mktemp -d "$base/hsmkey-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
export HSMKEY_PIN=1234
# The audit log of these runs is the bench's own, removed with it.
export HSMKEY_AUDIT_LOG="$work/audit.jsonl"
unset HSMKEY_MODULE HSMKEY_TOKEN HSMKEY_SESSIONS HSMKEY_SHIM_MODULE HSMKEY_SHIM_DELAY_US HSMKEY_SHIM_FAULT HSMKEY_SHIM_COUNTS
echo 'Bench#Password1' >"$work/pw"

new_token() { # dir label
    mkdir -p "$1/tokens"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$1" >"$1/conf"
    SOFTHSM2_CONF="$1/conf" softhsm2-util --init-token --free --label "$2" --so-pin 5678 --pin 1234 >/dev/null
}

# fresh FROM TO: a copy of token directory FROM (restores need an empty target each run).
fresh() {
    rm -rf "$2"
    cp -a "$1" "$2"
    sed -i "s#$1/tokens#$2/tokens#" "$2/conf"
}

# run NAME CONF command...: time it, append "name seconds rss_kib" to results
run() {
    local name="$1" conf="$2"
    shift 2
    SOFTHSM2_CONF="$conf" /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
        cat "$work/err" >&2
        echo "FAILED: $name" >&2
        exit 1
    }
    read -r secs rss <"$work/time"
    echo "$name $secs $rss" >>"$work/results"
}

# median NAME: "seconds rss_kib", each the median of the runs recorded
median() {
    local column values=()
    for column in 2 3; do
        values+=("$(awk -v k="$1" -v c="$column" '$1 == k { print $c }' "$work/results" | sort -n |
            awk '{ v[NR] = $1 } END { print (NR > 0) ? v[int((NR + 1) / 2)] : 0 }')")
    done
    echo "${values[@]}"
}

row() { # label n secs rss base_secs base_rss
    awk -v l="$1" -v n="$2" -v s="$3" -v r="$4" -v bs="$5" -v br="$6" 'BEGIN {
        ratio = (bs > 0) ? s / bs : 0
        printf "%-38s %7d %8.2f %9.1f %8.2fx %+9.1f\n", l, n, s, r / 1024, ratio, (r - br) / 1024
    }'
}

echo "hsmkey $("$hsmkey" --version | head -1); SoftHSM $(softhsm2-util --version); $(nproc) CPUs; median of $runs runs"
printf '%-38s %7s %8s %9s %9s %9s\n' "job" "keys" "wall s" "RSS MiB" "ratio" "RSS +MiB"
for n in "${sizes[@]}"; do
    : >"$work/results"
    src="$work/src-$n" dst="$work/dst-$n"
    new_token "$src" src
    new_token "$dst" dst
    SOFTHSM2_CONF="$src/conf" "$hsmkey" -q key generate --label kek --kek --backup-policy any >/dev/null
    SOFTHSM2_CONF="$src/conf" "$hsmkey" -q key generate --label k --type aes-256 --backup-policy any --count "$n" >/dev/null
    # The same KEK in the target, carried by a password bundle.
    SOFTHSM2_CONF="$src/conf" "$hsmkey" -q backup --password-file "$work/pw" kek --out "$work/kek-$n.bundle" >/dev/null
    SOFTHSM2_CONF="$dst/conf" "$hsmkey" -q restore "$work/kek-$n.bundle" --password-file "$work/pw" >/dev/null

    for i in $(seq "$runs"); do
        run loop-backup "$src/conf" "$loop" "$module" src backupfull kek "$work/loop-$n.out"
        run backup "$src/conf" "$hsmkey" backup --kek kek --all --out "$work/all-$n.bundle"
        rm -f "$work/all-$n.bundle"
        # The audit trail's share: its two searches of the token and its line.
        run backup-noaudit "$src/conf" "$hsmkey" --no-audit backup --kek kek --all --out "$work/all-$n.bundle"
        rm -f "$work/all-$n.bundle"
    done
    SOFTHSM2_CONF="$src/conf" "$hsmkey" -q backup --kek kek --all --out "$work/all-$n.bundle" >/dev/null
    for i in $(seq "$runs"); do
        fresh "$dst" "$work/t"
        run loop-restore "$work/t/conf" "$loop" "$module" dst restorefull kek "$work/loop-$n.out"
        fresh "$dst" "$work/t"
        run restore "$work/t/conf" "$hsmkey" restore "$work/all-$n.bundle" --kek kek
        run loop-verify "$dst/conf" "$loop" "$module" dst verify kek "$work/loop-$n.out"
        run verify "$dst/conf" "$hsmkey" verify "$work/all-$n.bundle" --kek kek
    done
    rm -rf "$work/t"
    for i in $(seq "$runs"); do
        run loop-list "$src/conf" "$loop" "$module" src list
        run list "$src/conf" "$hsmkey" key list --json
    done

    read -r lb lbr < <(median loop-backup)
    read -r lr lrr < <(median loop-restore)
    read -r lv lvr < <(median loop-verify)
    read -r ll llr < <(median loop-list)
    read -r s r < <(median backup)
    row "loop backupfull" "$n" "$lb" "$lbr" "$lb" "$lbr"
    row "hsmkey backup --all --kek" "$n" "$s" "$r" "$lb" "$lbr"
    read -r s r < <(median backup-noaudit)
    row "hsmkey --no-audit backup --all --kek" "$n" "$s" "$r" "$lb" "$lbr"
    read -r rs rr < <(median restore)
    row "loop restorefull" "$n" "$lr" "$lrr" "$lr" "$lrr"
    row "hsmkey restore --kek" "$n" "$rs" "$rr" "$lr" "$lrr"
    read -r s r < <(median verify)
    row "loop verify" "$n" "$lv" "$lvr" "$lv" "$lvr"
    row "hsmkey verify --kek" "$n" "$s" "$r" "$lv" "$lvr"
    row "hsmkey verify (vs hsmkey restore)" "$n" "$s" "$r" "$rs" "$rr"
    read -r s r < <(median list)
    row "loop list" "$n" "$ll" "$llr" "$ll" "$llr"
    row "hsmkey key list --json" "$n" "$s" "$r" "$ll" "$llr"
    read -r s _ < <(median backup)
    echo "$n $s" >>"$work/per-key"
done

# What users do today: one pkcs11-tool process per key, on the largest token.
if command -v pkcs11-tool >/dev/null && [ "$loop_keys" -gt 0 ]; then
    n="${sizes[-1]}"
    src="$work/src-$n"
    # The ids to wrap, read before the clock starts.
    SOFTHSM2_CONF="$src/conf" "$hsmkey" key list --json |
        awk -F'"' -v k="$loop_keys" '/"label": "k-/ { want = 1 } want && /"id":/ { print $4; want = 0; if (++c >= k) exit }' >"$work/ids" || true
    kek_id=$(SOFTHSM2_CONF="$src/conf" "$hsmkey" key show kek --json | awk -F'"' '/"id":/ { print $4; exit }')
    start=$(date +%s.%N)
    # Each iteration: a process, a login, one wrap (and no KCV, no metadata).
    # pkcs11-tool 0.23: --id names the wrapping key, --application-id the key wrapped.
    while read -r id; do
        SOFTHSM2_CONF="$src/conf" pkcs11-tool --module "$module" --token-label src --login --pin 1234 \
            --wrap --mechanism AES-KEY-WRAP --id "$kek_id" --application-id "$id" \
            --output-file "$work/pkcs11-tool-$id.bin" >/dev/null 2>&1
    done <"$work/ids"
    wrapped=$(find "$work" -name 'pkcs11-tool-*.bin' -size 40c | wc -l)
    [ "$wrapped" -eq "$(wc -l <"$work/ids")" ] || echo "warning: pkcs11-tool wrapped $wrapped keys" >&2
    end=$(date +%s.%N)
    per=$(awk -v a="$start" -v b="$end" -v k="$loop_keys" 'BEGIN { print (b - a) / k }')
    ours=$(awk -v n="$n" '$1 == n { print $2 / n }' "$work/per-key")
    awk -v k="$loop_keys" -v per="$per" -v ours="$ours" -v n="$n" 'BEGIN {
        printf "%-38s %7d %8.2f\n", "pkcs11-tool per key (token of " n ")", k, per * k
        if (ours > 0) printf "hsmkey is %.0fx faster per key than the scripted loop (%.2f ms vs %.0f ms)\n", per / ours, ours * 1000, per * 1000
    }'
fi

# A network HSM: every call waits HSMKEY_BENCH_DELAY_US in the pass-through
# module, as a round trip would. One session against eight.
if [ "$net_keys" -gt 0 ]; then
    src="$work/net-src" dst="$work/net-dst"
    new_token "$src" src
    new_token "$dst" dst
    SOFTHSM2_CONF="$src/conf" "$hsmkey" -q key generate --label kek --kek --backup-policy any >/dev/null
    SOFTHSM2_CONF="$src/conf" "$hsmkey" -q key generate --label k --type aes-256 --backup-policy any --count "$net_keys" >/dev/null
    SOFTHSM2_CONF="$src/conf" "$hsmkey" -q backup --password-file "$work/pw" kek --out "$work/net-kek.bundle" >/dev/null
    SOFTHSM2_CONF="$dst/conf" "$hsmkey" -q restore "$work/net-kek.bundle" --password-file "$work/pw" >/dev/null
    SOFTHSM2_CONF="$src/conf" "$hsmkey" -q backup --kek kek --all --out "$work/net.bundle" >/dev/null
    : >"$work/results"
    export HSMKEY_SHIM_MODULE="$module" HSMKEY_SHIM_DELAY_US="$net_delay"
    for s in 1 8; do
        # The loop on the same sessions: the speed-up the token itself gives.
        HSMKEY_LOOP_SESSIONS=$s run "loop-backup-$s" "$src/conf" "$loop" "$shim" src backupfull kek "$work/net-loop.out"
        HSMKEY_LOOP_SESSIONS=$s run "loop-verify-$s" "$dst/conf" "$loop" "$shim" dst verify kek "$work/net-loop.out"
        fresh "$dst" "$work/net-loop-dst-$s"
        HSMKEY_LOOP_SESSIONS=$s run "loop-restore-$s" "$work/net-loop-dst-$s/conf" "$loop" "$shim" dst restorefull kek "$work/net-loop.out"
        rm -rf "$work/net-loop-dst-$s"
        HSMKEY_SHIM_COUNTS="$work/calls-backup-$s" run "backup-$s" "$src/conf" \
            "$hsmkey" --module "$shim" --sessions "$s" backup --kek kek --all --out "$work/net-$s.bundle"
        HSMKEY_SHIM_COUNTS="$work/calls-verify-$s" run "verify-$s" "$dst/conf" \
            "$hsmkey" --module "$shim" --sessions "$s" verify "$work/net.bundle" --kek kek
        HSMKEY_SHIM_COUNTS="$work/calls-list-$s" run "list-$s" "$src/conf" \
            "$hsmkey" --module "$shim" --sessions "$s" key list --json
        # Each restore into a fresh copy of the target.
        fresh "$dst" "$work/net-dst-$s"
        HSMKEY_SHIM_COUNTS="$work/calls-restore-$s" run "restore-$s" "$work/net-dst-$s/conf" \
            "$hsmkey" --module "$shim" --sessions "$s" restore "$work/net.bundle" --kek kek
    done
    unset HSMKEY_SHIM_MODULE HSMKEY_SHIM_DELAY_US
    echo
    echo "Network HSM model: ${net_delay} us added to every PKCS#11 call (tools/p11shim), $net_keys AES keys"
    printf '%-16s %9s %9s %8s %9s %9s %8s %7s %9s\n' "job" "1 session" "8 sess." "speed-up" "loop 1" "loop 8" "loop up" "calls" "calls/key"
    for op in backup verify restore list; do
        read -r t1 _ < <(median "$op-1")
        read -r t8 _ < <(median "$op-8")
        read -r l1 _ < <(median "loop-$op-1")
        read -r l8 _ < <(median "loop-$op-8")
        calls=$(awk '{ n += $2 } END { print n + 0 }' "$work/calls-$op-1")
        awk -v op="$op" -v a="$t1" -v b="$t8" -v la="$l1" -v lb="$l8" -v c="$calls" -v n="$net_keys" 'BEGIN {
            loop = (la > 0 && lb > 0) ? sprintf("%8.2fs %8.2fs %7.1fx", la, lb, la / lb) : sprintf("%9s %9s %8s", "-", "-", "-")
            printf "%-16s %8.2fs %8.2fs %7.1fx %s %7d %9.2f\n", "hsmkey " op, a, b, (b > 0 ? a / b : 0), loop, c, c / n
        }'
    done
fi
