#!/usr/bin/env bash
# Packs benchmark (issue 13): many small files into a vault, against restic (which packs)
# and rclone copy to a crypt remote, in the same invocation, and the stored parts (what
# would be Telegram messages) that takes.
#
# Creates once (cached) 20,000 random files of 2-30 KB (~320 MB); builds tgferry in release mode; then, with a warm page cache (the corpus
# is read once first), runs tgferry, restic backup and rclone copy to crypt RUNS times each,
# round robin, each into a fresh empty destination on the same disk, and prints the median
# wall time, each ratio to tgferry, peak RSS, and how many blobs each destination holds.
# Then a first vault run over the 100,000 files, and its no-change re-run (RERUNS times).
#
# Usage: bench/packs.sh   (everything under /tmp/tgferry-bench; ~5 min, +2 the first time)
# Environment: BENCH_DIR (default /tmp/tgferry-bench), RUNS (3), RERUNS (5), SMALL (20000),
#              TREE_FILES (100000; 0 skips the re-run), TGFERRY (use this binary instead of
#              building one), CARGO_TARGET_DIR.
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/tgferry-bench}
RUNS=${RUNS:-3}
SMALL=${SMALL:-20000}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

CORPUS=$BENCH_DIR/packs-corpus-$SMALL
WORK=$BENCH_DIR/packs
export TGFERRY_PASSPHRASE=bench-passphrase
export RESTIC_PASSWORD=bench-passphrase
export RESTIC_CACHE_DIR=$WORK/restic-cache
export RCLONE_CONFIG_BENCHLOCAL_TYPE=local
export RCLONE_CONFIG_BENCHCRYPT_TYPE=crypt
export RCLONE_CONFIG_BENCHCRYPT_REMOTE=benchlocal:$WORK/rclone

for tool in restic rclone /usr/bin/time python3; do
    command -v "$tool" >/dev/null || {
        echo "bench/packs.sh needs $tool (apt-get install restic rclone time python3)" >&2
        exit 2
    }
done
RCLONE_CONFIG_BENCHCRYPT_PASSWORD=$(rclone obscure bench-passphrase)
export RCLONE_CONFIG_BENCHCRYPT_PASSWORD

# <dir> <count> <min bytes> <max bytes> <files per folder>: random files, made once.
make_tree() {
    [ -f "$1.complete" ] && return
    echo "corpus: $2 files of $3-$4 bytes in $1" >&2
    rm -rf "$1"
    python3 - "$1" "$2" "$3" "$4" "$5" <<'PY'
import os, random, sys
root, n, lo, hi, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(13)
for i in range(n):
    d = os.path.join(root, f"d{i // per:04}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06}.jpg"), "wb") as f:
        f.write(os.urandom(rng.randint(lo, hi)))
PY
    touch "$1.complete"
}

if [ -z "${TGFERRY:-}" ]; then
    echo "build: cargo build --release" >&2
    (cd "$REPO" && cargo build --release --quiet --bin tgferry)
    TGFERRY=${CARGO_TARGET_DIR:-$REPO/target}/release/tgferry
fi

# Runs a command; prints "<wall s> <peak RSS KiB>".
timed() {
    local out
    out=$(mktemp)
    if ! /usr/bin/time -v -o "$out" "$@" >"$out.log" 2>&1; then
        echo "failed: $*" >&2
        cat "$out.log" "$out" >&2
        exit 1
    fi
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
    rm -f "$out" "$out.log"
    echo "$wall $rss"
}

# One run of <tool> into a fresh destination; prints "<wall> <rss> <blobs>".
run_tool() {
    local dest=$WORK/$1 t
    rm -rf "$dest" "$RESTIC_CACHE_DIR"
    mkdir -p "$dest"
    case $1 in
    tgferry)
        t=$(timed "$TGFERRY" run --source "$CORPUS" --store "$dest/store" \
            --state "$dest/state.json" --encryption vault --quiet)
        echo "$t $(find "$dest/store/data" -type f | wc -l)"
        ;;
    restic)
        restic -r "$dest/repo" init --quiet >/dev/null
        t=$(timed restic -r "$dest/repo" backup --quiet "$CORPUS")
        echo "$t $(find "$dest/repo/data" -type f | wc -l)"
        ;;
    rclone)
        t=$(timed rclone copy "$CORPUS" "benchcrypt:")
        echo "$t $(find "$WORK/rclone" -type f | wc -l)"
        ;;
    esac
}

make_tree "$CORPUS" "$SMALL" 2000 30000 500
rm -rf "$WORK"
mkdir -p "$WORK"
cat "$CORPUS"/*/* >/dev/null # warm page cache for every tool alike
BYTES=$(du -sb --apparent-size "$CORPUS" | cut -f1)
RAW=$WORK/raw.txt
: >"$RAW"
for r in $(seq "$RUNS"); do
    for tool in tgferry restic rclone; do
        echo "run $r/$RUNS: $tool" >&2
        echo "$tool $(run_tool $tool)" >>"$RAW"
    done
done

echo
echo "## $SMALL files of 2-30 KB ($((BYTES / 1000000)) MB), first vault run into a local folder"
echo "(warm page cache; median of $RUNS runs each, round robin; $(nproc) cores)"
echo
python3 - "$RAW" "$BYTES" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
nbytes = int(sys.argv[2])
med = {}
for tool in ("tgferry", "restic", "rclone"):
    mine = [r for r in rows if r[0] == tool]
    wall = statistics.median(float(r[1]) for r in mine)
    rss = statistics.median(int(r[2]) for r in mine) / 1024
    blobs = int(mine[-1][3])
    med[tool] = wall
    print(f"| {tool:8} | {wall:6.2f} s | {rss:6.0f} MiB | {blobs:6} stored blobs |")
print()
for other in ("restic", "rclone"):
    print(f"tgferry / {other}: {med['tgferry'] / med[other]:.2f}x the time")
tg = [r for r in rows if r[0] == "tgferry"][-1]
limit = -(-nbytes // (64 << 20))
print(f"tgferry stored parts (Telegram messages): {tg[3]} packs + 3 meta blobs "
      f"(key file, catalog, run record); the issue's bound: {limit} per 64 MiB + meta")
PY

