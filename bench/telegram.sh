#!/usr/bin/env bash
# Telegram store benchmark (issue 12): tgferry's vault through the real grammers client into
# fakegram, the loopback Telegram, with the per-connection cap real accounts see
# (--conn-rate 4.6MiB), a user session, release builds.
#
# Two parts, each against a fakegram of its own (so each has its own counts):
#
# 1. Large files (byte-bound), once for each --tg-connections in CONNECTIONS (issue 14):
#    LARGE_MIB MiB in files of up to 128 MiB (BASE_MIB for one connection, which takes four
#    minutes a GiB each way), `tgferry run` to the end, then `tgferry restore` from the
#    chat; the restored tree is compared byte for byte. Prints MiB/s of each, as a multiple
#    of the one-connection round's, peak RSS (/usr/bin/time -v), and fakegram's counts.
# 2. Small files of 2-30 KB: SMALL_FILES files, `tgferry run --budget SMALL_BUDGET`; then
#    the files it stored are restored and compared byte for byte. In the vault they share
#    packs (one message per --pack-size, 64 MiB), so they are byte-bound like large files;
#    with --pack-threshold 0 (EXTRA="--pack-threshold 0") every file is a message, and a
#    chat takes about one a second after a burst of 20 (fakegram/src/rules.rs). Prints
#    files a minute, messages, flood waits, and the time 10,000 files would take at that
#    rate: a PROJECTION unless SMALL_FILES=10000 (measured when the budget allows).
#
# Usage: bench/telegram.sh        (everything under /tmp/tgferry-bench/telegram)
# Environment: BENCH_DIR (default /tmp/tgferry-bench), LARGE_MIB (1024; 0 skips part 1),
#              CONNECTIONS ("1 8 16"), BASE_MIB (256: the one-connection round's corpus),
#              BOTS ("user": the small-files rounds, one per entry: `user` is the user
#              session, a number N that many bots sending round-robin, e.g. BOTS="1 4"),
#              SMALL_FILES (300; 0 skips part 2), SMALL_BUDGET (120s, tgferry --budget),
#              RATE (4.6MiB), JOBS (tgferry --jobs, default 4), EXTRA (more `tgferry run`
#              flags for part 2), CARGO_TARGET_DIR,
#              TGFERRY / FAKEGRAM (use these binaries instead of building).
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/tgferry-bench}
LARGE_MIB=${LARGE_MIB:-1024}
CONNECTIONS=${CONNECTIONS:-1 8 16}
BOTS=${BOTS:-user}
BASE_MIB=${BASE_MIB:-256}
SMALL_FILES=${SMALL_FILES:-300}
SMALL_BUDGET=${SMALL_BUDGET:-120s}
RATE=${RATE:-4.6MiB}
JOBS=${JOBS:-4}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

WORK=$BENCH_DIR/telegram
MiB=$((1 << 20))

export TGFERRY_PASSPHRASE=bench-passphrase
unset TGFERRY_TG_API_ID TGFERRY_TG_API_HASH TGFERRY_TG_SESSION TGFERRY_TG_BOT_TOKEN TGFERRY_TG_CHAT

[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

# Large files: LARGE_MIB MiB in files of 128 MiB and the remainder (cached).
make_large() {
    local dir=$WORK/large-$LARGE_MIB
    if [ ! -f "$dir.complete" ]; then
        echo "corpus: $LARGE_MIB MiB of large files in $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        local left=$LARGE_MIB i=0 size
        while [ "$left" -gt 0 ]; do
            size=$((left < 128 ? left : 128))
            head -c $((size * MiB)) /dev/urandom >"$dir/video$i.bin"
            left=$((left - size))
            i=$((i + 1))
        done
        touch "$dir.complete"
    fi
    echo "$dir"
}

# Small files: SMALL_FILES files of 2-30 KB in 100 folders (cached).
make_small() {
    local dir=$WORK/small-$SMALL_FILES
    if [ ! -f "$dir.complete" ]; then
        echo "corpus: $SMALL_FILES files of 2-30 KB in $dir" >&2
        rm -rf "$dir"
        python3 - "$dir" "$SMALL_FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(12)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.dat"), "wb") as f:
        f.write(os.urandom(rng.randint(2000, 30000)))
PY
        touch "$dir.complete"
    fi
    echo "$dir"
}

build() {
    if [ -n "${TGFERRY:-}" ] && [ -n "${FAKEGRAM:-}" ]; then
        return
    fi
    echo "build: cargo build --release --locked -p tgferry -p fakegram" >&2
    (cd "$REPO" && cargo build --release --locked --quiet -p tgferry -p fakegram)
    TGFERRY=$TARGET/release/tgferry
    FAKEGRAM=$TARGET/release/fakegram
}

# Runs a command under /usr/bin/time -v; prints "<wall s> <peak RSS KiB> <exit code>".
# Fails (printing the command's last lines) on an exit code other than 0 and $ALLOW_EXIT.
measure() {
    local out rc=0
    out=$(mktemp)
    /usr/bin/time -v -o "$out" "$@" >"$out.log" 2>&1 || rc=$?
    if [ $rc != 0 ] && [ $rc != "${ALLOW_EXIT:-0}" ]; then
        echo "failed ($rc): $*" >&2
        tail -20 "$out.log" >&2
        rm -f "$out" "$out.log"
        return 1
    fi
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out" |
        awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
    cp "$out.log" "$RUN/last.log"
    rm -f "$out" "$out.log"
    echo "$wall $rss $rc"
}

FAKE_PID=
stop_fake() {
    if [ -n "$FAKE_PID" ]; then
        kill -TERM "$FAKE_PID" 2>/dev/null || true
        wait "$FAKE_PID" 2>/dev/null || true
        FAKE_PID=
    fi
}
trap stop_fake EXIT

# Starts a fresh fakegram for one part in $RUN; sets STORE and exports its credentials.
start_fake() {
    local accounts=()
    case "${1:-user}" in
        user) ;;
        *) accounts=(--bot --bots "$1") ;;
    esac
    "$FAKEGRAM" --listen 127.0.0.1 --conn-rate "$RATE" --stats-file "$RUN/fakegram.stats" "${accounts[@]}" \
        >"$RUN/fakegram.env" 2>"$RUN/fakegram.log" &
    FAKE_PID=$!
    for _ in $(seq 100); do
        [ -s "$RUN/fakegram.env" ] && break
        sleep 0.1
    done
    eval "$(head -1 "$RUN/fakegram.env")"
    STORE="telegram:$TGFERRY_TG_CHAT"
}

# fakegram's counts for the part just finished (it writes them when stopped).
counts() {
    stop_fake
    STATS=$(cat "$RUN/fakegram.stats")
}
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$STATS"; }
counts_line() {
    printf "messages sent: %s (by account: %s), requests: %s, flood waits: %s (%s s in all), connections: %s\n" \
        "$(field messages)" "$(sed -n 's/.*messages_by=\([0-9/]*\).*/\1/p' <<<"$STATS")" \
        "$(field requests)" "$(field flood_waits)" \
        "$(field flood_wait_seconds)" "$(field connections)"
    printf "requests by method: %s\n" "${STATS#*| }"
}

build
echo "tgferry: $("$TGFERRY" --version), machine: $(nproc) cores, $(uname -srm)"

# One large-file round with --tg-connections $1 over the corpus $2: run, restore, compare;
# appends "<connections> <MiB> <up s> <up RSS KiB> <down s> <down RSS KiB>" to $ROWS.
large_round() {
    local conns=$1 dir=$2 bytes res up_s up_rss down_s down_rss
    bytes=$(du -sb "$dir" | cut -f1)
    RUN=$WORK/run-large-$conns
    rm -rf "$RUN"
    mkdir -p "$RUN"
    start_fake
    echo "large: $((bytes / MiB)) MiB into $STORE, --tg-connections $conns, $RATE each" >&2
    res=$(measure "$TGFERRY" run --source "$dir" --store "$STORE" --tg-connections "$conns" \
        --state "$RUN/state.json" --jobs "$JOBS" --quiet)
    read -r up_s up_rss _ <<<"$res"
    res=$(measure "$TGFERRY" restore --store "$STORE" --tg-connections "$conns" \
        --state "$RUN/state.json" --to "$RUN/restored")
    read -r down_s down_rss _ <<<"$res"
    diff -r "$dir" "$RUN/restored" >/dev/null || { echo "restored tree differs" >&2; exit 1; }
    rm -rf "$RUN/restored"
    counts
    echo "$conns $((bytes / MiB)) $up_s $up_rss $down_s $down_rss" >>"$ROWS"
    echo "  --tg-connections $conns: $(counts_line | head -1)" >>"$WORK/counts.txt"
}

if [ "$LARGE_MIB" -gt 0 ]; then
    ROWS=$WORK/rows.txt
    : >"$ROWS"
    : >"$WORK/counts.txt"
    for conns in $CONNECTIONS; do
        if [ "$conns" = 1 ]; then
            # One connection at 4.6 MiB/s takes 4 minutes a GiB each way: a smaller corpus.
            saved=$LARGE_MIB
            LARGE_MIB=$BASE_MIB
            large_round 1 "$(make_large)"
            LARGE_MIB=$saved
        else
            large_round "$conns" "$(make_large)"
        fi
    done
    printf "\nLarge files (files of up to 128 MiB), fakegram --conn-rate %s, tgferry --jobs %s, restored byte for byte\n\n" \
        "$RATE" "$JOBS"
    printf "| --tg-connections | MiB | upload MiB/s | × 1 | restore MiB/s | × 1 | upload peak RSS | restore peak RSS |\n"
    printf "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    awk '
        { up = $2 / $3; down = $2 / $5 }
        $1 == 1 { up1 = up; down1 = down }
        { rows[NR] = $0; ups[NR] = up; downs[NR] = down }
        END {
            for (i = 1; i <= NR; i++) {
                split(rows[i], f, " ")
                x = up1 ? sprintf("%.1f×", ups[i] / up1) : "-"
                y = down1 ? sprintf("%.1f×", downs[i] / down1) : "-"
                printf "| %d | %d | %.1f | %s | %.1f | %s | %d MiB | %d MiB |\n",
                    f[1], f[2], ups[i], x, downs[i], y, f[4] / 1024, f[6] / 1024
            }
        }' "$ROWS"
    printf "\nfakegram (first line of its counts, per round):\n"
    cat "$WORK/counts.txt"
fi

# One small-files round with $1 accounts (`user`: the user session; N: that many bots, all
# admins of the channel, sending parts round-robin, each with its own message limits).
small_round() {
    local bots=$1 SMALL BYTES res up_s up_rss down_s down_rss done stop restored per_min
    SMALL=$(make_small)
    BYTES=$(du -sb "$SMALL" | cut -f1)
    RUN=$WORK/run-small-$bots
    rm -rf "$RUN"
    mkdir -p "$RUN"
    start_fake "$bots"
    echo "small: $SMALL_FILES files into $STORE, --budget $SMALL_BUDGET, $bots account(s)" >&2
    read -r -a extra <<<"${EXTRA:-}"
    # A run stopped by its budget exits 0 too: the state says how far it got.
    res=$(measure "$TGFERRY" run --source "$SMALL" --store "$STORE" \
        --state "$RUN/state.json" --jobs "$JOBS" --budget "$SMALL_BUDGET" --quiet "${extra[@]}")
    read -r up_s up_rss _ <<<"$res"
    read -r done stop <<<"$(python3 - "$RUN/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
print(len(st["completed"]), st["runs"][-1]["stop_reason"])
PY
)"
    echo "small: restore of the $done files stored" >&2
    res=$(measure "$TGFERRY" restore --store "$STORE" \
        --state "$RUN/state.json" --to "$RUN/restored")
    read -r down_s down_rss _ <<<"$res"
    # Every file restored equals its source, and there are as many as the state says.
    restored=$(cd "$RUN/restored" && find . -type f | wc -l)
    [ "$restored" = "$done" ] || { echo "restored $restored files, the state has $done" >&2; exit 1; }
    (cd "$RUN/restored" && find . -type f -print0 | xargs -0 -I{} cmp -s {} "$SMALL/{}") ||
        { echo "a restored small file differs" >&2; exit 1; }
    counts
    per_min=$(awk -v n="$done" -v s="$up_s" 'BEGIN { printf "%.1f", n * 60 / s }')
    project() { awk -v n="$1" -v r="$per_min" 'BEGIN { m = n / r; printf "%.0f min (%.1f h)", m, m / 60 }'; }
    printf "\nSmall files (2-30 KB), accounts: %s (%s): %s of %s stored in %.1f s (--budget %s, stop reason %s), %s KiB in all\n\n" \
        "$bots" "$([ "$bots" = user ] && echo "a user session" || echo "bots, all admins")" \
        "$done" "$SMALL_FILES" "$up_s" "$SMALL_BUDGET" "$stop" "$((BYTES / 1024))"
    printf "| step | wall | files/min | peak RSS |\n| --- | --- | --- | --- |\n"
    printf "| tgferry run (upload, budgeted) | %.1f s | %s | %d MiB |\n" "$up_s" "$per_min" $((up_rss / 1024))
    printf "| tgferry restore (%s files) | %.1f s | %s | %d MiB |\n\n" "$done" "$down_s" \
        "$(awk -v n="$done" -v s="$down_s" 'BEGIN { printf "%.0f", n * 60 / s }')" $((down_rss / 1024))
    counts_line
    if [ "$done" -lt 10000 ]; then
        printf "PROJECTED (not measured), at the measured %s files/min: 10,000 files in %s\n" \
            "$per_min" "$(project 10000)"
    fi
}

if [ "$SMALL_FILES" -gt 0 ]; then
    for bots in $BOTS; do
        small_round "$bots"
    done
fi
