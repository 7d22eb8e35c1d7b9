#!/usr/bin/env bash
# Telegram store benchmark (issue 12): tgferry's vault through the real grammers client into
# fakegram, the loopback Telegram, with the per-connection cap real accounts see
# (--conn-rate 4.6MiB), a user session, release builds.
#
# Three parts, each round against a fakegram of its own (so each has its own counts):
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
# 3. Telegram as a source, once for each --tg-connections in CONNECTIONS (run after part 1,
#    before part 2): SOURCE_MIB MiB of media in SOURCE_FILES .mp4 files (BASE_MIB for one
#    connection, as in part 1) posted by `fakegram --seed-chat` into a channel @NAME, then
#    `tgferry run --source telegram:@NAME --encryption none` into a local folder, each file
#    found by its `-<name>` suffix and compared with `cmp`; then (SOURCE_VAULT=1) the same
#    chat read again with `--encryption vault` into another folder, `tgferry restore`d from
#    it and compared. Prints source MiB/s, as a multiple of the one-connection round's,
#    peak RSS, and part 1's upload and restore MiB/s at the same connections when part 1
#    ran in this invocation.
#
# Usage: bench/telegram.sh        (everything under /tmp/tgferry-bench/telegram)
# Environment: BENCH_DIR (default /tmp/tgferry-bench), LARGE_MIB (1024; 0 skips part 1),
#              CONNECTIONS ("1 8 16"), BASE_MIB (256: the one-connection rounds' corpus,
#              parts 1 and 3),
#              BOTS ("user": the small-files rounds, one per entry: `user` is the user
#              session, a number N that many bots sending round-robin, e.g. BOTS="1 4"),
#              SMALL_FILES (300; 0 skips part 2), SMALL_BUDGET (120s, tgferry --budget),
#              RATE (4.6MiB), JOBS (tgferry --jobs, default 4), EXTRA (more `tgferry run`
#              flags for part 2), SOURCE_MIB (1024; 0 skips part 3), SOURCE_FILES (4: the
#              corpus split into that many .mp4 files of equal size, the last one taking
#              the remainder), SOURCE_CHAT (benchmedia: the channel's username),
#              SOURCE_VAULT (1; 0 skips the vault read and its restore), CARGO_TARGET_DIR,
#              TGFERRY / FAKEGRAM (use these binaries instead of building).
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/tgferry-bench}
LARGE_MIB=${LARGE_MIB:-1024}
CONNECTIONS=${CONNECTIONS:-1 8 16}
BOTS=${BOTS:-user}
BASE_MIB=${BASE_MIB:-256}
SMALL_FILES=${SMALL_FILES:-300}
SMALL_BUDGET=${SMALL_BUDGET:-120s}
SOURCE_MIB=${SOURCE_MIB:-1024}
SOURCE_FILES=${SOURCE_FILES:-4}
SOURCE_CHAT=${SOURCE_CHAT:-benchmedia}
SOURCE_VAULT=${SOURCE_VAULT:-1}
RATE=${RATE:-4.6MiB}
JOBS=${JOBS:-4}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

WORK=$BENCH_DIR/telegram
MiB=$((1 << 20))
mkdir -p "$WORK"

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

# Source media: $1 MiB in SOURCE_FILES .mp4 files of equal size, the last taking the
# remainder (cached).
make_source() {
    local mib=$1 dir=$WORK/source-$1-$SOURCE_FILES
    if [ ! -f "$dir.complete" ]; then
        local total=$((mib * MiB)) each i
        each=$((total / SOURCE_FILES))
        [ "$each" -gt 0 ] || { echo "SOURCE_FILES=$SOURCE_FILES files of $mib MiB would be empty" >&2; exit 1; }
        echo "corpus: $mib MiB of media in $SOURCE_FILES files in $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        for ((i = 0; i < SOURCE_FILES; i++)); do
            if [ "$i" = $((SOURCE_FILES - 1)) ]; then
                each=$((total - i * (total / SOURCE_FILES)))
            fi
            head -c "$each" /dev/urandom >"$dir/$(printf 'clip%03d.mp4' "$i")"
        done
        touch "$dir.complete"
    fi
    echo "$dir"
}

# Starts a fresh fakegram in $RUN with the channel @SOURCE_CHAT seeded from $1 (one media
# message a file) and exports its credentials; fails unless every file was posted.
start_seeded() {
    local dir=$1 files line
    files=$(find "$dir" -type f | wc -l)
    "$FAKEGRAM" --listen 127.0.0.1 --conn-rate "$RATE" --stats-file "$RUN/fakegram.stats" \
        --seed-chat "$SOURCE_CHAT=$dir" >"$RUN/fakegram.env" 2>"$RUN/fakegram.log" &
    FAKE_PID=$!
    for _ in $(seq 1200); do
        grep -q "^seeded @$SOURCE_CHAT: " "$RUN/fakegram.env" 2>/dev/null && break
        kill -0 "$FAKE_PID" 2>/dev/null || break
        sleep 0.1
    done
    line=$(grep "^seeded @$SOURCE_CHAT: " "$RUN/fakegram.env" || true)
    if [ "$line" != "seeded @$SOURCE_CHAT: $files media messages from $dir" ]; then
        echo "fakegram did not seed @$SOURCE_CHAT with the $files files of $dir:" >&2
        cat "$RUN/fakegram.env" >&2
        tail -20 "$RUN/fakegram.log" >&2
        exit 1
    fi
    eval "$(head -1 "$RUN/fakegram.env")"
}

# Every file under $1 is in the tree $2 once, as `<anything>-<its name>`, byte for byte,
# and the tree holds no other media ($3 says which copy this is). Exits on a mismatch.
check_copies() {
    local src=$1 tree=$2 what=$3 f name found n=0 held
    while IFS= read -r -d '' f; do
        name=${f##*/}
        found=$(find "$tree" -type f -name "*-$name")
        if [ -z "$found" ] || [ "$(wc -l <<<"$found")" != 1 ]; then
            echo "SOURCE MISMATCH ($what): $name is in $tree $(grep -c . <<<"$found") times, not once" >&2
            exit 1
        fi
        cmp "$f" "$found" >&2 || { echo "SOURCE MISMATCH ($what): $found differs from $f" >&2; exit 1; }
        n=$((n + 1))
    done < <(find "$src" -type f -print0 | sort -z)
    held=$(find "$tree" -type f -name '*.mp4' | wc -l)
    [ "$held" = "$n" ] || { echo "SOURCE MISMATCH ($what): $tree holds $held media, the chat $n" >&2; exit 1; }
    echo "  $what: $n files equal to the seeded ones (cmp)" >&2
}

# One source round with --tg-connections $1 over $2 MiB: seed, read plain, compare; read
# into a vault, restore, compare. Appends "<connections> <MiB> <plain s> <plain RSS KiB>
# <vault s> <vault RSS KiB> <restore s> <restore RSS KiB>" to $SROWS (vault fields 0 when
# SOURCE_VAULT=0).
source_round() {
    local conns=$1 dir res plain_s plain_rss vault_s=0 vault_rss=0 back_s=0 back_rss=0
    dir=$(make_source "$2")
    RUN=$WORK/run-source-$conns
    rm -rf "$RUN"
    mkdir -p "$RUN"
    start_seeded "$dir"
    echo "source: $2 MiB from telegram:@$SOURCE_CHAT, --tg-connections $conns, $RATE each" >&2
    res=$(measure "$TGFERRY" run --source "telegram:@$SOURCE_CHAT" --tg-connections "$conns" \
        --store "$RUN/plain" --encryption none --state "$RUN/plain.json" --jobs "$JOBS" --quiet)
    read -r plain_s plain_rss _ <<<"$res"
    check_copies "$dir" "$RUN/plain" "plain, --tg-connections $conns"
    rm -rf "$RUN/plain"
    if [ "$SOURCE_VAULT" != 0 ]; then
        res=$(measure "$TGFERRY" run --source "telegram:@$SOURCE_CHAT" --tg-connections "$conns" \
            --store "$RUN/vault" --encryption vault --state "$RUN/vault.json" --jobs "$JOBS" --quiet)
        read -r vault_s vault_rss _ <<<"$res"
        res=$(measure "$TGFERRY" restore --store "$RUN/vault" --state "$RUN/vault.json" \
            --to "$RUN/restored")
        read -r back_s back_rss _ <<<"$res"
        check_copies "$dir" "$RUN/restored" "vault, restored, --tg-connections $conns"
        rm -rf "$RUN/vault" "$RUN/restored"
    fi
    counts
    echo "$conns $2 $plain_s $plain_rss $vault_s $vault_rss $back_s $back_rss" >>"$SROWS"
    {
        echo "  --tg-connections $conns ($([ "$SOURCE_VAULT" != 0 ] && echo "the chat read twice" || echo "the chat read once")): $(counts_line | head -1)"
        echo "    $(counts_line | tail -1)"
    } >>"$WORK/source-counts.txt"
}

if [ "$SOURCE_MIB" -gt 0 ]; then
    SROWS=$WORK/source-rows.txt
    : >"$SROWS"
    : >"$WORK/source-counts.txt"
    load_before=$(uptime)
    for conns in $CONNECTIONS; do
        # One connection reads 4.6 MiB/s, 4 minutes a GiB: the smaller corpus, as in part 1.
        if [ "$conns" = 1 ]; then
            source_round 1 "$BASE_MIB"
        else
            source_round "$conns" "$SOURCE_MIB"
        fi
    done
    # Part 1's rows, when it ran in this invocation, for the upload figures.
    UROWS=/dev/null
    if [ "$LARGE_MIB" -gt 0 ]; then
        UROWS=$WORK/rows.txt
    fi
    printf "\nTelegram as a source (%s .mp4 files a round, fakegram --seed-chat), fakegram --conn-rate %s, tgferry --jobs %s, every file compared with cmp\n\n" \
        "$SOURCE_FILES" "$RATE" "$JOBS"
    printf "| --tg-connections | MiB | source MiB/s (plain) | × 1 | peak RSS | source MiB/s (vault) | × 1 | vault peak RSS | upload MiB/s | restore MiB/s |\n"
    printf "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    awk '
        FILENAME == ARGV[1] { up[$1] = sprintf("%.1f", $2 / $3); down[$1] = sprintf("%.1f", $2 / $5); next }
        { plain = $2 / $3; vault = $5 ? $2 / $5 : 0 }
        $1 == 1 { plain1 = plain; vault1 = vault }
        { rows[++n] = $0; plains[n] = plain; vaults[n] = vault }
        END {
            for (i = 1; i <= n; i++) {
                split(rows[i], f, " ")
                x = plain1 ? sprintf("%.1f×", plains[i] / plain1) : "-"
                v = vaults[i] ? sprintf("%.1f", vaults[i]) : "-"
                y = vault1 && vaults[i] ? sprintf("%.1f×", vaults[i] / vault1) : "-"
                r = vaults[i] ? sprintf("%d MiB", f[6] / 1024) : "-"
                printf "| %d | %d | %.1f | %s | %d MiB | %s | %s | %s | %s | %s |\n",
                    f[1], f[2], plains[i], x, f[4] / 1024, v, y, r,
                    (f[1] in up) ? up[f[1]] : "-", (f[1] in down) ? down[f[1]] : "-"
            }
        }' "$UROWS" "$SROWS"
    if [ "$SOURCE_VAULT" != 0 ]; then
        printf "\nvault restores (from the local vault folder): %s\n" \
            "$(awk '{ printf "%s%d conn.: %.1f s, %d MiB", (NR > 1 ? "; " : ""), $1, $7, $8 / 1024 }' "$SROWS")"
    fi
    printf "load: before %s; after %s\n" "${load_before#*load }" "$(uptime | sed 's/.*load //')"
    printf "\nfakegram (counts per round):\n"
    cat "$WORK/source-counts.txt"
fi

# One small-files round with $1 accounts (`user`: the user session; N: that many bots, all
# admins of the channel, sending parts round-robin, each with its own message limits).
small_round() {
    local bots=$1 SMALL BYTES res up_s up_rss down_s down_rss stored stop restored per_min
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
    read -r stored stop <<<"$(python3 - "$RUN/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
print(len(st["completed"]), st["runs"][-1]["stop_reason"])
PY
)"
    echo "small: restore of the $stored files stored" >&2
    res=$(measure "$TGFERRY" restore --store "$STORE" \
        --state "$RUN/state.json" --to "$RUN/restored")
    read -r down_s down_rss _ <<<"$res"
    # Every file restored equals its source, and there are as many as the state says.
    restored=$(cd "$RUN/restored" && find . -type f | wc -l)
    [ "$restored" = "$stored" ] || { echo "restored $restored files, the state has $stored" >&2; exit 1; }
    (cd "$RUN/restored" && find . -type f -print0 | xargs -0 -I{} cmp -s {} "$SMALL/{}") ||
        { echo "a restored small file differs" >&2; exit 1; }
    counts
    per_min=$(awk -v n="$stored" -v s="$up_s" 'BEGIN { printf "%.1f", n * 60 / s }')
    project() { awk -v n="$1" -v r="$per_min" 'BEGIN { m = n / r; printf "%.0f min (%.1f h)", m, m / 60 }'; }
    printf "\nSmall files (2-30 KB), accounts: %s (%s): %s of %s stored in %.1f s (--budget %s, stop reason %s), %s KiB in all\n\n" \
        "$bots" "$([ "$bots" = user ] && echo "a user session" || echo "bots, all admins")" \
        "$stored" "$SMALL_FILES" "$up_s" "$SMALL_BUDGET" "$stop" "$((BYTES / 1024))"
    printf "| step | wall | files/min | peak RSS |\n| --- | --- | --- | --- |\n"
    printf "| tgferry run (upload, budgeted) | %.1f s | %s | %d MiB |\n" "$up_s" "$per_min" $((up_rss / 1024))
    printf "| tgferry restore (%s files) | %.1f s | %s | %d MiB |\n\n" "$stored" "$down_s" \
        "$(awk -v n="$stored" -v s="$down_s" 'BEGIN { printf "%.0f", n * 60 / s }')" $((down_rss / 1024))
    counts_line
    if [ "$stored" -lt 10000 ]; then
        printf "PROJECTED (not measured), at the measured %s files/min: 10,000 files in %s\n" \
            "$per_min" "$(project 10000)"
    fi
}

if [ "$SMALL_FILES" -gt 0 ]; then
    for bots in $BOTS; do
        small_round "$bots"
    done
fi
