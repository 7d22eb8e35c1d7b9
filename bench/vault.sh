#!/usr/bin/env bash
# Encrypted-store throughput and memory benchmark (issue 3): tgferry's vault vs rclone crypt
# vs restic on 1 GiB of incompressible files, plus the CPU (openssl speed) and disk (cp -r)
# ceilings, and tgferry's peak RSS on one 4 GiB file.
#
# Creates once (cached) a corpus of ~200 random files, 1 GiB in all (3 x 100 MiB, ~130 of
# 1-10 MiB, 64 of 1-64 KiB), and a 4 GiB random file; builds tgferry in release mode; then
# runs each tool RUNS times (round robin: tgferry --jobs 2/4/8, rclone crypt, restic, cp -r)
# into a fresh empty destination on the same disk, dropping the page cache before each run,
# and prints the median wall time, MB/s (corpus bytes / wall, 1 MB = 10^6 B), peak RSS
# (/usr/bin/time -v), user/sys CPU, and the time of the `sync` that follows (data the tool
# left dirty in the page cache: tgferry and restic fsync, rclone and cp do not).
#
# Usage: bench/vault.sh   (everything under /tmp/tgferry-bench; ~2 min, +1 min the first time)
# Environment: BENCH_DIR (default /tmp/tgferry-bench), CARGO_TARGET_DIR, TGFERRY (use this
#              binary instead of building one), RUNS (3: runs per tool, median shown),
#              BIG (0 skips the 4 GiB run).
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/tgferry-bench}
BIG=${BIG:-1}
RUNS=${RUNS:-3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

CORPUS=$BENCH_DIR/vault-corpus
BIGSRC=$BENCH_DIR/vault-big
WORK=$BENCH_DIR/vault
MiB=$((1 << 20))

export TGFERRY_PASSPHRASE=bench-passphrase
export RESTIC_PASSWORD=bench-passphrase
export RESTIC_CACHE_DIR=$WORK/restic-cache

need() {
    local missing=()
    command -v rclone >/dev/null || missing+=(rclone)
    command -v restic >/dev/null || missing+=(restic)
    command -v openssl >/dev/null || missing+=(openssl)
    [ -x /usr/bin/time ] || missing+=(time)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        apt-get install -y "${missing[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${missing[@]}" >&2; }
    fi
}

rand_file() { # <path> <bytes>
    head -c "$2" /dev/urandom >"$1"
}

make_corpus() {
    if [ -f "$CORPUS.complete" ]; then
        echo "corpus: reusing $CORPUS" >&2
        return
    fi
    echo "corpus: creating 1 GiB of random files in $CORPUS" >&2
    rm -rf "$CORPUS" "$CORPUS.complete"
    mkdir -p "$CORPUS/large" "$CORPUS/small"
    local total=$((1024 * MiB)) used=0 i size dir
    for i in 1 2 3; do
        rand_file "$CORPUS/large/video$i.bin" $((100 * MiB))
        used=$((used + 100 * MiB))
    done
    # Small files: 64 of 1-64 KiB.
    for ((i = 0; i < 64; i++)); do
        size=$(((i * 37 % 64 + 1) * 1024 + i))
        rand_file "$CORPUS/small/note$(printf %03d "$i").dat" "$size"
        used=$((used + size))
    done
    # Medium files of 1-10 MiB (and a bit) in 8 folders until 1 GiB, the last one taking
    # the remainder.
    i=0
    while [ $used -lt $total ]; do
        size=$(((i * 7 % 10 + 1) * MiB + i * 4099))
        if [ $((total - used)) -lt $((size + MiB)) ]; then
            size=$((total - used))
        fi
        dir=$CORPUS/photos/set$((i % 8))
        mkdir -p "$dir"
        rand_file "$dir/img$(printf %04d "$i").raw" "$size"
        used=$((used + size))
        i=$((i + 1))
    done
    touch "$CORPUS.complete"
}

make_big() {
    if [ -f "$BIGSRC.complete" ]; then
        echo "big: reusing $BIGSRC" >&2
        return
    fi
    echo "big: creating a 4 GiB random file in $BIGSRC" >&2
    rm -rf "$BIGSRC" "$BIGSRC.complete"
    mkdir -p "$BIGSRC"
    rand_file "$BIGSRC/big.bin" $((4096 * MiB))
    touch "$BIGSRC.complete"
}

build() {
    if [ -n "${TGFERRY:-}" ]; then
        return
    fi
    echo "build: cargo build --release" >&2
    (cd "$REPO" && cargo build --release --quiet --bin tgferry)
    TGFERRY=${CARGO_TARGET_DIR:-$REPO/target}/release/tgferry
}

COLD=1
if ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    echo "cannot drop the page cache: runs are warm (each tool runs once first)" >&2
    COLD=0
fi
drop_caches() {
    sync
    if [ $COLD = 1 ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# Runs a command cold and prints "<wall s> <peak RSS KiB> <user s> <sys s> <sync s>".
# With a warm cache (COLD=0) the command runs once untimed first; $RESET empties the
# destination in between.
measure() {
    local out rc
    out=$(mktemp)
    drop_caches
    if [ $COLD = 0 ]; then
        "$@" >/dev/null 2>&1 || true
        eval "$RESET"
        sync
    fi
    rc=0
    /usr/bin/time -v -o "$out" "$@" >"$out.log" 2>&1 || rc=$?
    local s0 s1
    s0=$(date +%s.%N)
    sync
    s1=$(date +%s.%N)
    if [ $rc != 0 ]; then
        echo "failed ($rc): $*" >&2
        cat "$out.log" "$out" >&2
        rm -f "$out" "$out.log"
        return 1
    fi
    local wall rss user sys
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
    user=$(sed -n 's/.*User time (seconds): //p' "$out")
    sys=$(sed -n 's/.*System time (seconds): //p' "$out")
    rm -f "$out" "$out.log"
    echo "$wall $rss $user $sys $(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }')"
}

bytes_of() { du -sb "$1" | cut -f1; }

need
make_corpus
[ "$BIG" = 1 ] && make_big
build
rm -rf "$WORK"
mkdir -p "$WORK"
CORPUS_BYTES=$(bytes_of "$CORPUS")
CORPUS_FILES=$(find "$CORPUS" -type f | wc -l)
RAW=$BENCH_DIR/vault-raw.txt # every run: label wall rss_kib user sys sync written_bytes
: >"$RAW"

TG=$WORK/tg
RESTIC_REPO=$WORK/restic
export RCLONE_CONFIG_BENCHLOCAL_TYPE=local
export RCLONE_CONFIG_BENCHCRYPT_TYPE=crypt
export RCLONE_CONFIG_BENCHCRYPT_REMOTE=benchlocal:$WORK/rclone
RCLONE_CONFIG_BENCHCRYPT_PASSWORD=$(rclone obscure bench-passphrase)
export RCLONE_CONFIG_BENCHCRYPT_PASSWORD
: >"$WORK/rclone.conf"

# One timed run of <label> into a fresh empty destination, which is removed afterwards.
run() {
    local label=$1 dest cmd
    case $label in
    tgferry-j*)
        RESET="rm -rf $TG; mkdir -p $TG"
        dest=$TG/store
        cmd=("$TGFERRY" run --source "$CORPUS" --store "$TG/store" --state "$TG/state.json"
            --encryption vault --jobs "${label#tgferry-j}" --quiet)
        ;;
    tgferry-4g)
        RESET="rm -rf $TG; mkdir -p $TG"
        dest=$TG/store
        cmd=("$TGFERRY" run --source "$BIGSRC" --store "$TG/store" --state "$TG/state.json"
            --encryption vault --quiet)
        ;;
    rclone-crypt) # rclone copy into a crypt remote over a local remote (config from env)
        RESET="rm -rf $WORK/rclone; mkdir -p $WORK/rclone"
        dest=$WORK/rclone
        cmd=(rclone --config "$WORK/rclone.conf" copy "$CORPUS" benchcrypt:)
        ;;
    restic) # a fresh local repository; init is not timed
        RESET="rm -rf $RESTIC_REPO $RESTIC_CACHE_DIR; restic -r $RESTIC_REPO init --quiet >/dev/null"
        dest=$RESTIC_REPO
        cmd=(restic -r "$RESTIC_REPO" backup --quiet "$CORPUS")
        ;;
    cp)
        RESET="rm -rf $WORK/cp"
        dest=$WORK/cp
        cmd=(cp -r "$CORPUS" "$WORK/cp")
        ;;
    esac
    eval "$RESET"
    echo "run $r/$RUNS: $label" >&2
    local m
    m=$(measure "${cmd[@]}") || { echo "$label failed" >&2; exit 1; }
    echo "$label $m $(bytes_of "$dest")" >>"$RAW"
    rm -rf "$TG" "$RESTIC_REPO" "$RESTIC_CACHE_DIR" "$WORK/rclone" "$WORK/cp"
}

# Rounds: every tool once per round, so slow drifts of the VM hit all of them alike.
for ((r = 1; r <= RUNS; r++)); do
    for label in tgferry-j2 tgferry-j4 tgferry-j8 rclone-crypt restic cp; do
        run "$label"
    done
done
if [ "$BIG" = 1 ]; then
    BIG_BYTES=$(bytes_of "$BIGSRC")
    for ((r = 1; r <= RUNS; r++)); do
        run tgferry-4g
    done
fi
rm -rf "$WORK"

# Ceilings of one core: openssl's AES-256-GCM and SHA-256 on 16 KiB blocks.
speed() {
    openssl speed -seconds 3 -bytes 16384 "$@" 2>/dev/null | tail -1 |
        awk '{ v = $NF; sub(/k$/, "", v); print v * 1000 }'
}
GCM=$(speed -evp aes-256-gcm)
SHA=$(speed -evp sha256)

# "<median wall> <min> <max> <max RSS KiB> <user> <sys> <sync> <written>" of a label; the
# CPU and sync figures are those of the median run.
stats() {
    awk -v l="$1" '$1 == l' "$RAW" | sort -k2,2g | awk '
        { w[NR] = $2; line[NR] = $0; if ($3 > rss) rss = $3 }
        END {
            m = int((NR + 1) / 2); split(line[m], f, " ")
            print w[m], w[1], w[NR], rss, f[4], f[5], f[6], f[7]
        }'
}
row() { # <label> <shown name> <bytes in>
    stats "$1" | awk -v n="$2" -v b="$3" '{
        printf "| %s | %.2f s (%.2f–%.2f) | %.0f MB/s | %.0f MiB | %.2f / %.2f s | %.2f s | %.0f MiB |\n",
            n, $1, $2, $3, b / $1 / 1e6, $4 / 1024, $5, $6, $7, $8 / 1048576
    }'
}
med() { stats "$1" | awk '{ print $1 }'; }
rss() { stats "$1" | awk '{ print $4 }'; }

echo
echo "encrypted store of $CORPUS_FILES files, $((CORPUS_BYTES / MiB)) MiB of random data, $(nproc) cores," \
    "$RUNS runs each (median, min–max), $([ $COLD = 1 ] && echo "page cache dropped before each run" || echo "warm page cache")"
echo
HEAD="| tool | wall | MB/s | peak RSS | user / sys CPU | sync after | written |
| --- | --- | --- | --- | --- | --- | --- |"
echo "$HEAD"
row tgferry-j2 "tgferry --jobs 2" "$CORPUS_BYTES"
row tgferry-j4 "tgferry --jobs 4 (default)" "$CORPUS_BYTES"
row tgferry-j8 "tgferry --jobs 8" "$CORPUS_BYTES"
row rclone-crypt "rclone copy (crypt)" "$CORPUS_BYTES"
row restic "restic backup" "$CORPUS_BYTES"
row cp "cp -r (disk ceiling)" "$CORPUS_BYTES"
awk -v g="$GCM" -v s="$SHA" 'BEGIN {
    printf "| openssl speed -evp aes-256-gcm, 16 KiB, 1 core | | %.0f MB/s | | | | |\n", g / 1e6
    printf "| openssl speed -evp sha256, 16 KiB, 1 core | | %.0f MB/s | | | | |\n", s / 1e6
}'
echo
awk -v t2="$(med tgferry-j2)" -v t4="$(med tgferry-j4)" -v rc="$(med rclone-crypt)" \
    -v rs="$(med restic)" -v m2="$(rss tgferry-j2)" -v m4="$(rss tgferry-j4)" \
    -v mc="$(rss rclone-crypt)" -v ms="$(rss restic)" 'BEGIN {
    printf "| ratio (throughput: other wall / tgferry wall) | --jobs 2 | --jobs 4 |\n| --- | --- | --- |\n"
    printf "| throughput tgferry / rclone crypt (target >= 3) | %.2f | %.2f |\n", rc / t2, rc / t4
    printf "| throughput tgferry / restic | %.2f | %.2f |\n", rs / t2, rs / t4
    printf "| peak RSS tgferry / rclone crypt | %.2f | %.2f |\n", m2 / mc, m4 / mc
    printf "| peak RSS tgferry / restic | %.2f | %.2f |\n", m2 / ms, m4 / ms
}'
if [ "$BIG" = 1 ]; then
    echo
    echo "one 4 GiB random file (target: peak RSS <= 64 MiB)"
    echo
    echo "$HEAD"
    row tgferry-4g "tgferry (defaults: --jobs 4, 512MiB parts)" "$BIG_BYTES"
fi
echo
echo "every run: $RAW"
