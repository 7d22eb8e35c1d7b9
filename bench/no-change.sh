#!/usr/bin/env bash
# No-change re-run benchmark (issue 2): tgferry vs rclone on 100,000 small files.
#
# Creates a tree of 1000 folders x 100 files (~1 KiB each) once, builds tgferry in release
# mode, does a first full `tgferry run` and a first `rclone copy`, then times the re-run of
# both with nothing changed (hyperfine, same invocation) and prints wall time, the ratio
# tgferry/rclone and the peak RSS of each re-run (/usr/bin/time -v).
#
# Usage: bench/no-change.sh            (everything under /tmp/tgferry-bench)
# Environment: BENCH_DIR (default /tmp/tgferry-bench), DIRS (1000), FILES_PER_DIR (100),
#              RUNS (5), CARGO_TARGET_DIR (default <repo>/target), TGFERRY (use this binary
#              instead of building one).
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/tgferry-bench}
DIRS=${DIRS:-1000}
FILES_PER_DIR=${FILES_PER_DIR:-100}
RUNS=${RUNS:-5}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

TREE=$BENCH_DIR/tree-${DIRS}x${FILES_PER_DIR}
WORK=$BENCH_DIR/no-change
STORE=$WORK/store
STATE=$WORK/state.json
RCLONE_DEST=$WORK/rclone-dest
RCLONE_CONF=$WORK/rclone.conf

need() {
    local missing=()
    command -v rclone >/dev/null || missing+=(rclone)
    command -v hyperfine >/dev/null || missing+=(hyperfine)
    [ -x /usr/bin/time ] || missing+=(time)
    command -v jq >/dev/null || missing+=(jq)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        apt-get install -y "${missing[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${missing[@]}" >&2; }
    fi
}

make_tree() {
    if [ -f "$TREE.complete" ]; then
        echo "tree: reusing $TREE" >&2
        return
    fi
    echo "tree: creating $DIRS folders x $FILES_PER_DIR files in $TREE" >&2
    rm -rf "$TREE" "$TREE.complete"
    mkdir -p "$TREE"
    local block d f
    block=$(head -c 1000 /dev/zero | tr '\0' 'x')
    for ((d = 0; d < DIRS; d++)); do
        mkdir -p "$TREE/dir$(printf %04d "$d")"
        for ((f = 0; f < FILES_PER_DIR; f++)); do
            # ~1 KiB, a different length and content per file.
            printf '%s %d %d %*s\n' "$block" "$d" "$f" $((f % 97)) '' \
                >"$TREE/dir$(printf %04d "$d")/file$(printf %03d "$f").txt"
        done
    done
    touch "$TREE.complete"
}

build() {
    if [ -n "${TGFERRY:-}" ]; then
        return
    fi
    echo "build: cargo build --release" >&2
    (cd "$REPO" && cargo build --release --quiet --bin tgferry)
    TGFERRY=${CARGO_TARGET_DIR:-$REPO/target}/release/tgferry
}

# Prints "<seconds> <peak RSS KiB>" of a command, from /usr/bin/time -v.
time_v() {
    local out
    out=$(mktemp)
    /usr/bin/time -v "$@" >/dev/null 2>"$out" || { cat "$out" >&2; rm -f "$out"; return 1; }
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
    rm -f "$out"
    echo "$wall $rss"
}

need
make_tree
build
mkdir -p "$WORK"
: >"$RCLONE_CONF"
# The default store format is the encrypted vault; it needs a passphrase.
export TGFERRY_PASSPHRASE=${TGFERRY_PASSPHRASE:-bench-passphrase}
TG_CMD="$TGFERRY run --source $TREE --store $STORE --state $STATE --quiet"
RC_CMD="rclone --config $RCLONE_CONF copy $TREE $RCLONE_DEST"

echo "first runs (full copy of the tree)" >&2
rm -rf "$STORE" "$STATE" "$STATE".* "$RCLONE_DEST"
read -r tg_first tg_first_rss < <(time_v $TG_CMD)
read -r rc_first rc_first_rss < <(time_v $RC_CMD)

echo "no-change re-runs: hyperfine --warmup 1 --runs $RUNS" >&2
hyperfine --warmup 1 --runs "$RUNS" --export-json "$WORK/hyperfine.json" \
    -n tgferry "$TG_CMD" -n rclone "$RC_CMD" >&2
read -r tg_rerun tg_rss < <(time_v $TG_CMD)
read -r rc_rerun rc_rss < <(time_v $RC_CMD)

mean() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .mean' "$WORK/hyperfine.json"; }
sd() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .stddev' "$WORK/hyperfine.json"; }
tg_mean=$(mean tgferry)
rc_mean=$(mean rclone)
files=$((DIRS * FILES_PER_DIR))

echo
echo "no-change re-run, $files files ($DIRS folders x $FILES_PER_DIR, ~1 KiB each), $(nproc) cores"
echo
awk -v tm="$tg_mean" -v ts="$(sd tgferry)" -v rm="$rc_mean" -v rs="$(sd rclone)" \
    -v tr="$tg_rss" -v rr="$rc_rss" -v tf="$tg_first" -v rf="$rc_first" \
    -v tfr="$tg_first_rss" -v rfr="$rc_first_rss" 'BEGIN {
    printf "| tool | first run (full copy) | no-change re-run (mean ± sd) | peak RSS, first / re-run |\n"
    printf "| --- | --- | --- | --- |\n"
    printf "| tgferry | %.2f s | %.3f s ± %.3f | %.0f / %.0f MiB |\n", tf, tm, ts, tfr / 1024, tr / 1024
    printf "| rclone | %.2f s | %.3f s ± %.3f | %.0f / %.0f MiB |\n", rf, rm, rs, rfr / 1024, rr / 1024
    printf "| ratio tgferry/rclone | %.2f | %.2f | %.2f / %.2f |\n", tf / rf, tm / rm, tfr / rfr, tr / rr
}'
echo
echo "state file: $(du -h "$STATE" | cut -f1) ($STATE)"
