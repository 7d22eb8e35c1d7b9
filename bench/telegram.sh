#!/usr/bin/env bash
# Telegram store benchmark (issue 12): tgferry's vault through the real grammers client into
# fakegram, the loopback Telegram, with the per-connection cap real accounts see
# (--conn-rate 4.6MiB), then a restore from the chat alone.
#
# Creates once (cached) a corpus of large files (LARGE_MIB in all, 128 MiB files and the
# remainder) and SMALL small files of 2-30 KB; builds tgferry and fakegram in release mode;
# starts `fakegram --listen 127.0.0.1 --conn-rate $RATE` (the channel's credentials come from
# its first line of output), runs `tgferry run` and `tgferry restore`, checks the restored
# tree byte for byte, stops fakegram (SIGTERM: it prints its counts) and prints wall time,
# MiB/s, peak RSS (/usr/bin/time -v) of each, and fakegram's messages sent, requests and
# flood waits.
#
# Usage: bench/telegram.sh        (everything under /tmp/tgferry-bench/telegram)
# Environment: BENCH_DIR (default /tmp/tgferry-bench), LARGE_MIB (1024), SMALL (10000),
#              RATE (4.6MiB), JOBS (tgferry --jobs, default 4), CARGO_TARGET_DIR,
#              TGFERRY / FAKEGRAM (use these binaries instead of building).
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/tgferry-bench}
LARGE_MIB=${LARGE_MIB:-1024}
SMALL=${SMALL:-10000}
RATE=${RATE:-4.6MiB}
JOBS=${JOBS:-4}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

WORK=$BENCH_DIR/telegram
CORPUS=$WORK/corpus-$LARGE_MIB-$SMALL
MiB=$((1 << 20))

export TGFERRY_PASSPHRASE=bench-passphrase

[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

make_corpus() {
    if [ -f "$CORPUS.complete" ]; then
        echo "corpus: reusing $CORPUS" >&2
        return
    fi
    echo "corpus: $LARGE_MIB MiB of large files and $SMALL files of 2-30 KB in $CORPUS" >&2
    rm -rf "$CORPUS" "$CORPUS.complete"
    mkdir -p "$CORPUS/large"
    local left=$LARGE_MIB i=0 size
    while [ "$left" -gt 0 ]; do
        size=$((left < 128 ? left : 128))
        head -c $((size * MiB)) /dev/urandom >"$CORPUS/large/video$i.bin"
        left=$((left - size))
        i=$((i + 1))
    done
    # Small files from one random stream: 100 folders, sizes 2-30 KB.
    python3 - "$CORPUS/small" "$SMALL" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(12)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.dat"), "wb") as f:
        f.write(os.urandom(rng.randint(2000, 30000)))
PY
    touch "$CORPUS.complete"
}

build() {
    if [ -n "${TGFERRY:-}" ] && [ -n "${FAKEGRAM:-}" ]; then
        return
    fi
    echo "build: cargo build --release (tgferry, fakegram)" >&2
    (cd "$REPO" && cargo build --release --quiet -p tgferry -p fakegram)
    TGFERRY=$TARGET/release/tgferry
    FAKEGRAM=$TARGET/release/fakegram
}

# Runs a command under /usr/bin/time -v; prints "<wall s> <peak RSS KiB>".
measure() {
    local out rc=0
    out=$(mktemp)
    /usr/bin/time -v -o "$out" "$@" >"$out.log" 2>&1 || rc=$?
    if [ $rc != 0 ]; then
        echo "failed ($rc): $*" >&2
        tail -20 "$out.log" >&2
        rm -f "$out" "$out.log"
        return 1
    fi
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out" |
        awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
    rm -f "$out" "$out.log"
    echo "$wall $rss"
}

make_corpus
build
BYTES=$(du -sb "$CORPUS" | cut -f1)
FILES=$(find "$CORPUS" -type f | wc -l)

rm -rf "$WORK/run"
mkdir -p "$WORK/run"
ENV_FILE=$WORK/run/fakegram.env
STATS=$WORK/run/fakegram.stats
"$FAKEGRAM" --listen 127.0.0.1 --conn-rate "$RATE" --stats-file "$STATS" >"$ENV_FILE" 2>"$WORK/run/fakegram.log" &
FAKE_PID=$!
trap 'kill "$FAKE_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [ -s "$ENV_FILE" ] && break
    sleep 0.1
done
eval "$(head -1 "$ENV_FILE")"
STORE="telegram:$TGFERRY_TG_CHAT"

echo "run: $FILES files, $((BYTES / MiB)) MiB into $STORE at $RATE per connection" >&2
read -r up_s up_rss < <(measure "$TGFERRY" run --source "$CORPUS" --store "$STORE" \
    --state "$WORK/run/state.json" --jobs "$JOBS" --quiet)
echo "restore" >&2
read -r down_s down_rss < <(measure "$TGFERRY" restore --store "$STORE" \
    --state "$WORK/run/state.json" --to "$WORK/run/restored")
diff -r "$CORPUS" "$WORK/run/restored" >/dev/null || { echo "restored tree differs" >&2; exit 1; }

kill -TERM "$FAKE_PID"
wait "$FAKE_PID" || true
trap - EXIT
stats=$(cat "$STATS")
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$stats"; }

mibs() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.2f", b / 1048576 / s }'; }
printf "\nfakegram, --conn-rate %s, tgferry --jobs %s: %s files, %s MiB (%s MiB large, %s small of 2-30 KB)\n\n" \
    "$RATE" "$JOBS" "$FILES" "$((BYTES / MiB))" "$LARGE_MIB" "$SMALL"
printf "| step | wall | MiB/s | peak RSS |\n| --- | --- | --- | --- |\n"
printf "| tgferry run (upload) | %.1f s | %s | %d MiB |\n" "$up_s" "$(mibs "$up_s")" $((up_rss / 1024))
printf "| tgferry restore | %.1f s | %s | %d MiB |\n" "$down_s" "$(mibs "$down_s")" $((down_rss / 1024))
printf "\nmessages sent: %s, requests: %s, flood waits: %s (%s s in all), connections: %s\n" \
    "$(field messages)" "$(field requests)" "$(field flood_waits)" "$(field flood_wait_seconds)" \
    "$(field connections)"
printf "requests by method: %s\n" "${stats#*| }"
