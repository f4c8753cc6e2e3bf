#!/usr/bin/env bash
# Checkpoint/restart benchmark for hiber.
#
#   bash bench/run.sh                      # sizes 64 256 1024 MiB (+ the 1 MiB case),
#                                          # then 1 and 64 threads
#   SIZES="64" REPS=1 bash bench/run.sh    # quick run
#   SIZES= TINY= THREADS=64 SYSCALLS= BENCH_DOC=- bash bench/run.sh   # only 64 threads
#   SIZES= TINY= THREADS= BENCH_DOC=- bash bench/run.sh   # only the process and fd costs
#
# Environment:
#   SIZES       process sizes in MiB (default "64 256 1024"; SIZES= for none); the
#               1 MiB case (TINY, default 1; TINY= to skip) always runs first
#   THREADS     thread counts for the many-threads workload, bench/threads.c
#               (default "1 64"; THREADS= to skip); it runs after the sizes
#   THREAD_MIB  that workload's memory in MiB, shared by its threads (64)
#   THREAD_MODES  checkpoint modes for it (default "comp-sync raw-nosync")
#   SYSCALLS    1 (default): measure the process and fd costs, bench/syscalls.c
#               (fork+exec+wait, open+close, pipe), bare and under hiber, last;
#               SYSCALLS= or 0 to skip
#   SYSCALL_FORKS  fork+exec+wait rounds per program run (300)
#   SYSCALL_OPS    open+close and pipe rounds per program run (100000)
#   REPS        repetitions of every measurement; medians are reported (3)
#   WARMUP      unrecorded rounds before them (1): see "Noise" in the report
#   IDLE_WAIT   seconds to wait at most for an idle machine before each size and
#               thread count (120)
#   PREWARM     1: write and delete SIZE MiB just before each timed operation (see
#               prewarm below); 0: don't
#   BENCH_DIR   where the images and the dd files go (default: $TMPDIR or /tmp)
#   BENCH_DOC   Markdown report to write (default docs/PERFORMANCE.md; "-" = none)
#   HIBER_BIN_DIR  directory holding hiber, libhiber.so, hiber-restore
#               (default $CARGO_TARGET_DIR/release, else target/release)
#
# Every scenario uses its own coordinator (started with --port 0, so the port
# is free and unique), a cookie in a private temporary directory, and cleans
# its processes and files up afterwards. Timings are wall clock (bash
# $EPOCHREALTIME, microseconds). See docs/PERFORMANCE.md for what each
# number means.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES=${SIZES-"64 256 1024"}
TINY=${TINY-1}
THREADS=${THREADS-"1 64"}
THREAD_MIB=${THREAD_MIB:-64}
THREAD_MODES=${THREAD_MODES:-"comp-sync raw-nosync"}
SYSCALLS=${SYSCALLS-1}
[[ $SYSCALLS == 0 ]] && SYSCALLS=
SYSCALL_FORKS=${SYSCALL_FORKS:-300}
SYSCALL_OPS=${SYSCALL_OPS:-100000}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
BIN=${HIBER_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
HIBER=$BIN/hiber
DOC=${BENCH_DOC:-$ROOT/docs/PERFORMANCE.md}
BASE=${BENCH_DIR:-${TMPDIR:-/tmp}}

for f in hiber libhiber.so hiber-restore; do
    [[ -e $BIN/$f ]] || { echo "bench: $BIN/$f is missing: run cargo build --release first" >&2; exit 1; }
done
[[ ${BASH_VERSINFO[0]} -ge 5 ]] || { echo "bench: needs bash >= 5 (EPOCHREALTIME)" >&2; exit 1; }

T=$(mktemp -d "$BASE/hiber-bench.XXXXXX")
export HIBER_COOKIE=$T/cookie
unset HIBER_COORD HIBER_CKPT_DIR LD_PRELOAD HIBER_DEBUG
cc -O2 -Wall -o "$T/alloc" "$ROOT/bench/alloc.c"
cc -O2 -Wall -pthread -o "$T/threads" "$ROOT/bench/threads.c"
cc -O2 -Wall -o "$T/syscalls" "$ROOT/bench/syscalls.c"
# A private copy of the build, so a rebuild during the run cannot mix versions.
mkdir "$T/bin"
cp "$BIN/hiber" "$BIN/libhiber.so" "$BIN/hiber-restore" "$T/bin/"
BUILD="$("$BIN/hiber" --version), built $(date -u -r "$BIN/libhiber.so" '+%Y-%m-%d %H:%M UTC')"
HIBER=$T/bin/hiber

# A FIFO nobody writes to: `read -t` on it is a fork-free sleep.
mkfifo "$T/sleep.fifo"
exec {SLEEP_FD}<>"$T/sleep.fifo"
msleep1() { read -r -t 0.001 -u "$SLEEP_FD" _ || true; }

now_us() { local t=$EPOCHREALTIME; NOW=${t/./}; }

COORD= PROG_PID= RESTART_PID= RESTORED_PID= OUT_FD=

cleanup() {
    if [[ -n $RESTORED_PID ]]; then kill -9 "$RESTORED_PID" 2>/dev/null || true; fi
    if [[ -n $PROG_PID ]]; then kill -9 "$PROG_PID" 2>/dev/null || true; fi
    if [[ -n $RESTART_PID ]]; then kill -9 "$RESTART_PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [[ -n $COORD ]]; then "$HIBER" quit --coord "$COORD" >/dev/null 2>&1 || true; fi
    if [[ -n $OUT_FD ]]; then exec {OUT_FD}<&-; fi
    COORD= PROG_PID= RESTART_PID= RESTORED_PID= OUT_FD=
}
trap 'cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- results --
declare -A R          # R[key] = space-separated samples (ms, or bytes)
add() { R[$1]="${R[$1]:-}${R[$1]:+ }$2"; }
# Warm-up rounds (i < 0) are kept apart (KEY:warmup) and left out of the medians.
rec() { if ((i >= 0)); then add "$1" "$2"; else add "$1:warmup" "$2"; fi; }
median() { # median of the samples of key $1 ("-" if none)
    local v=${R[$1]:-}
    [[ -z $v ]] && { echo -; return; }
    tr ' ' '\n' <<<"$v" | sort -g | awk '{a[NR]=$1} END {
        m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; print m }'
}
fmt() { awk -v x="$1" -v d="${2:-1}" 'BEGIN { if (x == "-") print "-"; else printf "%.*f\n", d, x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }
us2ms() { awk -v x="$1" 'BEGIN { printf "%.1f\n", x / 1000 }'; }

# ------------------------------------------------------ the program's log --
# The program appends lines to $OUT; OUT_FD reads them as they come.
LINE= GAPS=()
next_line() { # reads one complete line into LINE (gap lines also go to GAPS); 1 if none yet
    local l
    if IFS= read -r -u "$OUT_FD" l; then
        LINE=${PARTIAL:-}$l; PARTIAL=
        [[ $LINE == gap* ]] && GAPS+=("$LINE")
        return 0
    fi
    PARTIAL=${PARTIAL:-}$l
    return 1
}
drain() { while next_line; do :; done; }
# wait_for KIND MIN_T_US TIMEOUT_S [PID LOG]: the first line "KIND ..." whose
# time (last field) is >= MIN_T_US; polls every millisecond. Sets LINE and
# SEEN (when the bench saw it). Gives up early if process PID has ended.
wait_for() {
    local kind=$1 min=$2 deadline n=0
    now_us; deadline=$((NOW + $3 * 1000000))
    while :; do
        if next_line; then
            local f=($LINE)
            if [[ ${f[0]} == "$kind" && ${f[-1]} -ge $min ]]; then now_us; SEEN=$NOW; return 0; fi
            continue
        fi
        now_us
        if ((NOW >= deadline)); then
            echo "bench: no '$kind' line in $OUT after $3 s" >&2; exit 1
        fi
        if [[ -n ${4:-} ]] && ((++n % 100 == 0)) && ! kill -0 "$4" 2>/dev/null; then
            echo "bench: the process ended before its '$kind' line; its output:" >&2
            cat "$5" >&2; exit 1
        fi
        msleep1
    done
}

# ------------------------------------------------------------- scenarios --
fresh_coordinator() {
    COORD=$("$HIBER" coordinator --port 0 --daemon --ckpt-dir "$T")
}

ddbench() { # ddbench MiB: dd with and without fdatasync
    local n=$1 i t0
    for ((i = -WARMUP; i < REPS; i++)); do
        rm -f "$T/ddtest"; sync; prewarm "$n"
        now_us; t0=$NOW
        dd if=/dev/zero of="$T/ddtest" bs=1M count="$n" conv=fdatasync status=none
        now_us; rec "$n:dd_sync" "$(us2ms $((NOW - t0)))"
        rm -f "$T/ddtest"; sync; prewarm "$n"
        now_us; t0=$NOW
        dd if=/dev/zero of="$T/ddtest" bs=1M count="$n" status=none
        now_us; rec "$n:dd_plain" "$(us2ms $((NOW - t0)))"
    done
    rm -f "$T/ddtest"; sync
}

# prewarm MiB: write and delete a scratch file of that size just before a
# timed operation, so that operation gets recently used memory. On this VM
# memory left free for a few seconds goes back to the hypervisor (virtio-balloon
# free page reporting), and using it again makes a large write 3-5x slower,
# dd's as much as hiber's; this puts every measurement on the same footing.
PREWARM=${PREWARM:-1}
prewarm() {
    if ((PREWARM)); then
        dd if=/dev/zero of="$T/prewarm" bs=1M count="$1" status=none
        rm -f "$T/prewarm"
    fi
}

MODES="comp-sync comp-nosync raw-sync raw-nosync"
mode_flags() {
    case $1 in
    comp-sync) echo "" ;;
    comp-nosync) echo "--no-sync" ;;
    raw-sync) echo "--no-compress" ;;
    raw-nosync) echo "--no-compress --no-sync" ;;
    esac
}

# Waits (up to IDLE_WAIT s) until the machine is idle: other work on the 2 CPUs
# (a build, say) skews every number. Called when none of our processes run.
IDLE_WAIT=${IDLE_WAIT:-120}
wait_idle() {
    local waited=0 a b
    while :; do
        a=$(busy_s); sleep 0.5; b=$(busy_s)
        # busy CPU-seconds in 0.5 s, over all CPUs: idle enough below 10 %
        if awk -v a="$a" -v b="$b" -v c="$(nproc)" 'BEGIN { exit !((b - a) < 0.05 * c) }'; then return 0; fi
        if ((waited == 0)); then echo "   (waiting for the machine to be idle)" >&2; fi
        waited=$((waited + 1))
        if ((waited > IDLE_WAIT * 2)); then echo "   (still busy: going on anyway)" >&2; return 0; fi
    done
}

# checkpoints KEY MiB MODE: WARMUP + REPS checkpoints in MODE of the running
# program (PROG_PID, SIZE MiB, log on OUT_FD) into $T/img-MODE; records
# KEY:MODE:ckpt (wall clock of `hiber checkpoint`), KEY:MODE:pause (the longest
# gap the program logged that overlaps the checkpoint), KEY:MODE:size (the
# image's bytes) and, if the gap lines name a thread (bench/threads.c),
# KEY:MODE:stalled (how many threads logged such a gap).
checkpoints() {
    local key=$1 n=$2 mode=$3 dir=$T/img-$3 i t0 t1 img
    mkdir -p "$dir"
    for ((i = -WARMUP; i < REPS; i++)); do
        rm -f "$dir"/*.hiber; sync; prewarm "$n"
        drain; GAPS=()
        now_us; t0=$NOW
        # shellcheck disable=SC2046
        "$HIBER" checkpoint --coord "$COORD" --ckpt-dir "$dir" $(mode_flags "$mode") >"$T/ckpt.out"
        now_us; t1=$NOW
        img=$(head -n1 "$T/ckpt.out")
        [[ -f $img ]] || { echo "bench: checkpoint printed no image" >&2; exit 1; }
        # the program ran after the checkpoint returned (bench/threads.c: every thread did)
        wait_for tick "$t1" 10 "$PROG_PID" "$T/prog.log"
        local g max=0 who=" " nwho=0
        for g in "${GAPS[@]}"; do
            local f=($g)
            [[ ${f[0]} == gap ]] || continue
            # a gap line is stamped (last field) when the program ran again
            if ((f[-1] >= t0 && f[-1] - f[1] <= t1 + 1000)); then
                if ((f[1] > max)); then max=${f[1]}; fi
                if ((${#f[@]} == 4)) && [[ $who != *" ${f[2]} "* ]]; then who+="${f[2]} "; nwho=$((nwho + 1)); fi
            fi
        done
        rec "$key:$mode:ckpt" "$(us2ms $((t1 - t0)))"
        rec "$key:$mode:pause" "$(us2ms "$max")"
        rec "$key:$mode:size" "$(stat -c %s "$img")"
        if [[ $key == threads* ]]; then rec "$key:$mode:stalled" "$nwho"; fi
    done
}

scenario() { # scenario MiB
    local n=$1 mode i t0 t1 img
    echo "== $n MiB" >&2
    wait_idle
    fresh_coordinator
    OUT=$T/out.$n
    : >"$OUT"
    exec {OUT_FD}<"$OUT"
    PARTIAL=
    "$HIBER" launch --coord "$COORD" --ckpt-dir "$T/img" "$T/alloc" "$n" "$OUT" \
        </dev/null >"$T/prog.log" 2>&1 &
    PROG_PID=$!
    wait_for ready 0 $((30 + n / 8)) "$PROG_PID" "$T/prog.log"

    # Checkpoints: time of `hiber checkpoint` and the stall the program saw.
    for mode in $MODES; do
        checkpoints "$n" "$n" "$mode"
        echo "   checkpoint $mode: $(median "$n:$mode:ckpt") ms" >&2
        # keep the durable images for the restarts
        if [[ $mode == *-nosync ]]; then rm -rf "$T/img-$mode"; fi
    done
    kill -9 "$PROG_PID"; wait "$PROG_PID" 2>/dev/null || true; PROG_PID=
    drain

    # Restarts: from `hiber restart` until the restarted program's first
    # wake-up (it stamps the "gap" line with the time it ran again).
    for mode in comp-sync raw-sync; do
        img=$(ls "$T/img-$mode"/*.hiber)
        for ((i = -WARMUP; i < REPS; i++)); do
            sync; prewarm "$n"
            drain
            now_us; t0=$NOW
            "$HIBER" restart --coord "$COORD" "$img" </dev/null >"$T/restart.log" 2>&1 &
            RESTART_PID=$!
            wait_for gap "$t0" 60 "$RESTART_PID" "$T/restart.log"
            local f=($LINE)
            rec "$n:$mode:restart" "$(us2ms $((f[2] - t0)))"
            rec "$n:$mode:restart_seen" "$(us2ms $((SEEN - t0)))"
            RESTORED_PID=$(cat "/proc/$RESTART_PID/task/$RESTART_PID/children")
            RESTORED_PID=${RESTORED_PID%% *}
            # Let the coordinator finish the restart (the process rejoins it)
            # before the process is killed, or it would wait for it forever.
            local k
            for ((k = 0; k < 500; k++)); do
                [[ $("$HIBER" status --coord "$COORD" --json) == *'"restarting"'* ]] || break
                msleep1
            done
            if ((i == REPS - 1)); then # the memory came back intact?
                now_us; t1=$NOW
                kill -USR1 "$RESTORED_PID"
                wait_for verify "$t1" $((30 + n / 8))
                f=($LINE)
                R["$n:$mode:verify"]=${f[1]}
            fi
            kill -9 "$RESTORED_PID"; RESTORED_PID=
            wait "$RESTART_PID" 2>/dev/null || true; RESTART_PID=
        done
        echo "   restart $mode: $(median "$n:$mode:restart") ms (verify ${R[$n:$mode:verify]})" >&2
    done
    cleanup
    rm -rf "$T"/img* "$OUT"
    ddbench "$n"
    echo "   dd fdatasync $(median "$n:dd_sync") ms, plain $(median "$n:dd_plain") ms" >&2
}

# threads_scenario NTHREADS: bench/threads.c, THREAD_MIB MiB shared by
# NTHREADS threads that each wake every millisecond; checkpoints only.
threads_scenario() {
    local nt=$1 n=$THREAD_MIB key=threads$1 mode c0 c1 t0 t1
    echo "== $nt threads, $n MiB" >&2
    wait_idle
    fresh_coordinator
    OUT=$T/out.threads$nt
    : >"$OUT"
    exec {OUT_FD}<"$OUT"
    PARTIAL=
    "$HIBER" launch --coord "$COORD" --ckpt-dir "$T/img" "$T/threads" "$nt" "$n" "$OUT" \
        </dev/null >"$T/prog.log" 2>&1 &
    PROG_PID=$!
    wait_for ready 0 $((30 + n / 8)) "$PROG_PID" "$T/prog.log"
    # Threads of the process: the workers, main, and hiber's checkpoint thread.
    R[$key:tasks]=$(ls "/proc/$PROG_PID/task" | wc -l)
    # The CPU the program uses by itself, over one second (% of one CPU).
    now_us; t0=$NOW; c0=$(proc_cpu_ticks "$PROG_PID")
    sleep 1
    now_us; t1=$NOW; c1=$(proc_cpu_ticks "$PROG_PID")
    R[$key:cpu]=$(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v t=$((t1 - t0)) \
        'BEGIN { printf "%.0f", c / hz / (t / 1e6) * 100 }')

    for mode in $THREAD_MODES; do
        checkpoints "$key" "$n" "$mode"
        rm -rf "$T/img-$mode"
        echo "   checkpoint $mode: $(median "$key:$mode:ckpt") ms, pause $(median "$key:$mode:pause") ms" \
            "(threads stalled: ${R[$key:$mode:stalled]})" >&2
    done
    cleanup
    rm -rf "$T"/img* "$OUT"
}
# syscalls_scenario: bench/syscalls.c, bare and under `hiber launch` (same
# coordinator for all), WARMUP + REPS rounds; in each round every operation
# runs once bare and once under hiber, in alternating order. Records
# syscalls:OP:bare and syscalls:OP:hiber, ns per operation (the program's
# own mean over its timed loop; its start-up, and hiber's, are not counted).
SYSCALL_OPS_LIST="forkexec openclose pipe"
syscalls_scenario() {
    local op n i how
    echo "== process and fd costs" >&2
    wait_idle
    fresh_coordinator
    for ((i = -WARMUP; i < REPS; i++)); do
        for op in $SYSCALL_OPS_LIST; do
            n=$SYSCALL_OPS
            if [[ $op == forkexec ]]; then n=$SYSCALL_FORKS; fi
            local order="bare hiber"
            if (((i + WARMUP) % 2)); then order="hiber bare"; fi
            for how in $order; do
                syscalls_run "$how" "$op" "$n"
                rec "syscalls:$op:$how" "$(head -n1 "$T/syscalls.out")"
            done
        done
    done
    for op in $SYSCALL_OPS_LIST; do
        echo "   $op: bare $(fmt "$(median "syscalls:$op:bare")" 0) ns," \
            "hiber $(fmt "$(median "syscalls:$op:hiber")" 0) ns" >&2
    done
    cleanup
    rm -rf "$T"/img* "$T"/syscalls.out "$T"/syscalls.err
}
syscalls_run() { # syscalls_run bare|hiber OP N: one run of bench/syscalls.c
    local how=$1 cmd=("$T/syscalls" "$2" "$3") rc=0
    if [[ $how == hiber ]]; then
        cmd=("$HIBER" launch --coord "$COORD" --ckpt-dir "$T/img" "${cmd[@]}")
    fi
    # The limit is only a guard against a hang (a run takes about a second).
    timeout -k 5 300 "${cmd[@]}" </dev/null >"$T/syscalls.out" 2>"$T/syscalls.err" || rc=$?
    if ((rc != 0)) || ! grep -qE '^[0-9]+(\.[0-9]+)?$' "$T/syscalls.out"; then
        local why="status $rc"
        if ((rc == 124)); then why="still running after 300 s: hung?"; fi
        echo "bench: '${cmd[*]}' failed ($why); its output:" >&2
        cat "$T/syscalls.out" "$T/syscalls.err" >&2
        exit 1
    fi
}

proc_cpu_ticks() { # utime + stime of process $1, in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# ------------------------------------------------------------------ run --
busy_s() { awk '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }
own_s() { # OWN = CPU seconds of this shell and its reaped children (not in a subshell!)
    times >"$T/times"
    OWN=$(awk '{ for (i = 1; i <= NF; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } } END { printf "%.2f\n", t }' "$T/times")
}
now_us; START=$NOW
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY0=$(busy_s); own_s; OWN0=$OWN
ALL_SIZES="${TINY:+$TINY }$SIZES"
for n in $ALL_SIZES; do scenario "$n"; done
for nt in $THREADS; do threads_scenario "$nt"; done
if [[ -n $SYSCALLS ]]; then syscalls_scenario; fi
now_us; ELAPSED=$(awk -v x=$((NOW - START)) 'BEGIN { printf "%.0f", x / 1e6 }')
own_s
OTHER=$(awk -v b0="$BUSY0" -v b1="$(busy_s)" -v o0="$OWN0" -v o1="$OWN" \
    'BEGIN { x = (b1 - b0) - (o1 - o0); if (x < 0) x = 0; printf "%.1f", x }')

# ---------------------------------------------------------------- report --
mib() { awk -v x="$1" 'BEGIN { if (x == "-") print "-"; else printf "%.1f\n", x / 1048576 }'; }
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
fs=$(df -T "$T" | awk 'NR == 2 { print $2 " (" $1 ", mounted on " $7 ")" }')
machine="$(nproc) CPUs ($cpu), $mem RAM, Linux $(uname -r), bench directory on $fs"
when=$(date -u '+%Y-%m-%d %H:%M UTC')
load=$(cut -d' ' -f1-3 /proc/loadavg)

tables() {
    local sep=
    if [[ -n $ALL_SIZES ]]; then size_tables; sep=1; fi
    if [[ -n $THREADS ]]; then
        if [[ -n $sep ]]; then echo; fi
        threads_table; sep=1
    fi
    if [[ -n $SYSCALLS ]]; then
        if [[ -n $sep ]]; then echo; fi
        syscalls_table
    fi
}
size_tables() {
    echo "### Checkpoint (\`hiber checkpoint\`, wall clock; pause = longest stall the program saw)"
    echo
    echo "| size | mode | checkpoint ms | pause ms | image MiB |"
    echo "|---:|---|---:|---:|---:|"
    for n in $ALL_SIZES; do
        for mode in $MODES; do
            echo "| $n MiB | $mode | $(fmt "$(median "$n:$mode:ckpt")") | $(fmt "$(median "$n:$mode:pause")") | $(mib "$(median "$n:$mode:size")") |"
        done
    done
    echo
    echo "### Restart (\`hiber restart\` until the restarted program runs again)"
    echo
    echo "| size | image | restart ms | seen by the bench ms | memory verified |"
    echo "|---:|---|---:|---:|---|"
    for n in $ALL_SIZES; do
        for mode in comp-sync raw-sync; do
            local name=compressed
            if [[ $mode == raw* ]]; then name=uncompressed; fi
            echo "| $n MiB | $name | $(fmt "$(median "$n:$mode:restart")") | $(fmt "$(median "$n:$mode:restart_seen")") | ${R[$n:$mode:verify]:-?} |"
        done
    done
    echo
    echo "### dd to the same directory, same byte count, and ratios"
    echo
    echo "| size | dd fdatasync ms | dd plain ms | durable ckpt / dd fdatasync (raw, comp) | --no-sync ckpt / plain dd (raw, comp) | restart / plain dd (raw, comp) |"
    echo "|---:|---:|---:|---|---|---|"
    for n in $ALL_SIZES; do
        local ds dp
        ds=$(median "$n:dd_sync"); dp=$(median "$n:dd_plain")
        echo "| $n MiB | $(fmt "$ds") | $(fmt "$dp") | $(ratio "$(median "$n:raw-sync:ckpt")" "$ds"), $(ratio "$(median "$n:comp-sync:ckpt")" "$ds") | $(ratio "$(median "$n:raw-nosync:ckpt")" "$dp"), $(ratio "$(median "$n:comp-nosync:ckpt")" "$dp") | $(ratio "$(median "$n:raw-sync:restart")" "$dp"), $(ratio "$(median "$n:comp-sync:restart")" "$dp") |"
    done
}
range() { # "min–max" of the samples of key $1 ("min" if all equal, "-" if none)
    local v=${R[$1]:-}
    [[ -z $v ]] && { echo -; return; }
    tr ' ' '\n' <<<"$v" | sort -g | awk 'NR == 1 { a = $1 } { b = $1 } END { if (a == b) print a; else print a "–" b }'
}
threads_table() {
    local nt mode k
    echo "### Many threads (\`bench/threads.c\`, $THREAD_MIB MiB in total; pause = longest stall any thread saw)"
    echo
    echo "| threads | mode | checkpoint ms | × 1 thread | pause ms | × 1 thread | threads that saw the pause | image MiB |"
    echo "|---:|---|---:|---:|---:|---:|---|---:|"
    for nt in $THREADS; do
        k=threads$nt
        for mode in $THREAD_MODES; do
            local c p c1=- p1=-
            c=$(median "$k:$mode:ckpt"); p=$(median "$k:$mode:pause")
            if [[ $nt != 1 ]]; then c1=$(median "threads1:$mode:ckpt"); p1=$(median "threads1:$mode:pause"); fi
            echo "| $nt | $mode | $(fmt "$c") | $(ratio "$c" "$c1") | $(fmt "$p") | $(ratio "$p" "$p1") | $(range "$k:$mode:stalled") of $nt | $(mib "$(median "$k:$mode:size")") |"
        done
    done
    echo
    local info=
    for nt in $THREADS; do
        info+="${info:+; }$nt thread(s): ${R[threads$nt:tasks]:-?} in the process, ${R[threads$nt:cpu]:-?} %"
    done
    echo "Threads in the process (workers, main and hiber's checkpoint thread) and the CPU the"
    echo "program used by itself before the checkpoints (% of one CPU): $info."
}

# The process and fd operations: label, limit (× bare; "-" for none).
syscall_label() {
    case $1 in
    forkexec) echo "fork+exec+wait" ;;
    openclose) echo "open+close" ;;
    pipe) echo "pipe+close" ;;
    esac
}
syscall_limit() {
    case $1 in
    forkexec) echo 2 ;;
    openclose) echo 1.5 ;;
    *) echo - ;;
    esac
}
syscalls_table() {
    local op b h r l res tgt
    echo "### Process and fd costs (\`bench/syscalls.c\`, ns per operation; bare and under \`hiber launch\`)"
    echo
    echo "| operation | bare ns | under hiber ns | ratio | target | result |"
    echo "|---|---:|---:|---:|---|---|"
    for op in $SYSCALL_OPS_LIST; do
        b=$(median "syscalls:$op:bare"); h=$(median "syscalls:$op:hiber")
        r=$(ratio "$h" "$b"); l=$(syscall_limit "$op")
        if [[ $l == - ]]; then
            tgt=none; res=measured
        else
            tgt="≤ $l × bare"; res=$(verdict "$r" "$l")
        fi
        echo "| $(syscall_label "$op") | $(fmt "$b" 0) | $(fmt "$h" 0) | $r × | $tgt | $res |"
    done
    echo
    echo "Rounds per program run: $SYSCALL_FORKS fork+exec+wait, $SYSCALL_OPS open+close or pipe+close."
}
syscalls_targets() {
    local op b h r l base res
    sn() { local v=${R[$1]:-} x out=; for x in $v; do out+="${out:+, }$(fmt "$x" 0)"; done; echo "$out"; }
    for op in $SYSCALL_OPS_LIST; do
        b=$(median "syscalls:$op:bare"); h=$(median "syscalls:$op:hiber")
        r=$(ratio "$h" "$b"); l=$(syscall_limit "$op")
        if [[ $l == - ]]; then
            base="no target (bare: $(fmt "$b" 0) ns)"; res=measured
        else
            base="≤ $l × bare ($(fmt "$b" 0) ns → ≤ $(awk -v d="$b" -v l="$l" 'BEGIN { if (d == "-") print "-"; else printf "%.0f", d * l }') ns)"
            res=$(verdict "$r" "$l")
        fi
        echo "| $(syscall_label "$op") under hiber | $base | $(fmt "$h" 0) ns = $r × | $res | hiber $(sn "syscalls:$op:hiber"); bare $(sn "syscalls:$op:bare") (ns) |"
    done
}

verdict() { # verdict MEASURED LIMIT
    awk -v m="$1" -v l="$2" 'BEGIN { if (m == "-") print "n/a"; else if (m <= l) print "**pass**"; else printf "**FAIL** (%+.0f%%)\n", (m / l - 1) * 100 }'
}
targets() {
    local big=1024 t=${TINY:-} what
    [[ " $SIZES " == *" 1024 "* ]] || big=$(tr ' ' '\n' <<<"$SIZES" | sort -n | tail -1)
    sm() { local v=${R[$1]:-}; echo "${v// /, }"; }
    echo "| target | limit | measured (median) | result | samples, ms |"
    echo "|---|---|---|---|---|"
    if [[ -n $SIZES ]]; then big_targets; fi
    if [[ -n $t ]]; then
        echo "| $t MiB checkpoint (default: compressed, durable) | ≤ 50 ms | $(fmt "$(median "$t:comp-sync:ckpt")") ms | $(verdict "$(median "$t:comp-sync:ckpt")" 50) | $(sm "$t:comp-sync:ckpt") |"
        echo "| $t MiB checkpoint \`--no-sync\` | ≤ 50 ms | $(fmt "$(median "$t:comp-nosync:ckpt")") ms | $(verdict "$(median "$t:comp-nosync:ckpt")" 50) | $(sm "$t:comp-nosync:ckpt") |"
        echo "| $t MiB restart until running (compressed image) | ≤ 50 ms | $(fmt "$(median "$t:comp-sync:restart")") ms | $(verdict "$(median "$t:comp-sync:restart")" 50) | $(sm "$t:comp-sync:restart") |"
    fi
    # Many threads: measurements only (the issue sets no limit), in the first
    # mode of THREAD_MODES, for every thread count but the 1-thread baseline.
    local nt mode=${THREAD_MODES%% *} k base
    for nt in $THREADS; do
        if [[ $nt == 1 && $THREADS != 1 ]]; then continue; fi
        k=threads$nt
        for what in ckpt pause; do
            base="no target"
            if [[ $nt != 1 && -n ${R[threads1:$mode:$what]:-} ]]; then
                base+=" (1 thread: $(fmt "$(median "threads1:$mode:$what")") ms)"
            fi
            local label="checkpoint, $mode"
            if [[ $what == pause ]]; then label="pause the program sees, $mode"; fi
            echo "| $nt threads, $THREAD_MIB MiB: $label | $base | $(fmt "$(median "$k:$mode:$what")") ms | measured | $(sm "$k:$mode:$what") |"
        done
    done
    if [[ -n $SYSCALLS ]]; then syscalls_targets; fi
}
big_targets() {
    local ds dp a b c
    ds=$(median "$big:dd_sync"); dp=$(median "$big:dd_plain")
    a=$(ratio "$(median "$big:raw-sync:ckpt")" "$ds")
    b=$(ratio "$(median "$big:raw-nosync:ckpt")" "$dp")
    c=$(ratio "$(median "$big:raw-sync:restart")" "$dp")
    echo "| $big MiB uncompressed durable checkpoint | ≤ 1.2 × dd fdatasync ($(fmt "$ds") ms → ≤ $(awk -v d="$ds" 'BEGIN{printf "%.0f", d*1.2}') ms) | $(fmt "$(median "$big:raw-sync:ckpt")") ms = $a × | $(verdict "$a" 1.2) | hiber $(sm "$big:raw-sync:ckpt"); dd $(sm "$big:dd_sync") |"
    echo "| $big MiB uncompressed \`--no-sync\` checkpoint | ≤ 1.5 × plain dd ($(fmt "$dp") ms → ≤ $(awk -v d="$dp" 'BEGIN{printf "%.0f", d*1.5}') ms) | $(fmt "$(median "$big:raw-nosync:ckpt")") ms = $b × | $(verdict "$b" 1.5) | hiber $(sm "$big:raw-nosync:ckpt"); dd $(sm "$big:dd_plain") |"
    echo "| $big MiB uncompressed restart until running | ≤ 1.0 × plain dd ($(fmt "$dp") ms) | $(fmt "$(median "$big:raw-sync:restart")") ms = $c × | $(verdict "$c" 1.0) | hiber $(sm "$big:raw-sync:restart"); dd $(sm "$big:dd_plain") |"
}

samples() {
    local k
    # sizes first, then the thread counts, then the process and fd costs
    for k in $(printf '%s\n' "${!R[@]}" | sort -t: -k1,1V -k2 | awk '/^threads/ { t[++n] = $0; next } /^syscalls/ { s[++m] = $0; next } { print }
        END { for (i = 1; i <= n; i++) print t[i]; for (i = 1; i <= m; i++) print s[i] }'); do
        if [[ $k == *:verify || $k == *size:warmup || $k == *stalled:warmup || $k == *:tasks || $k == *:cpu ]]; then continue; fi
        echo "    $k: ${R[$k]}"
    done
}

echo
echo "hiber benchmark — $machine"
echo "$BUILD"
echo "$when, $REPS repetitions (medians) after $WARMUP warm-up, $ELAPSED s total;"
echo "load average $LOAD0 at the start, $load at the end; other processes (and kernel threads) used $OTHER CPU-s meanwhile"
echo
tables | sed 's/^### /## /'
echo
targets

[[ $DOC == - ]] && exit 0
sizes_text=none
syscalls_text=no
if [[ -n $SYSCALLS ]]; then syscalls_text=yes; fi
if [[ -n $ALL_SIZES ]]; then sizes_text="$(sed 's/ \([0-9]*\)$/ and \1/' <<<"${ALL_SIZES% }") MiB"; fi
MARK='<!-- Everything below this line is kept when bench/run.sh rewrites the file. -->'
notes=
if [[ -f $DOC ]]; then notes=$(awk -v m="$MARK" 'found { print } $0 == m { found = 1 }' "$DOC"); fi
{
    cat <<EOF
# Performance

Measured by \`bash bench/run.sh\` (this file is rewritten by it; edit only below the
marker at the end).

- Machine: $machine.
- Build: $BUILD (\`cargo build --release\`).
- Run: $when; $REPS repetitions of every measurement after $WARMUP warm-up round(s),
  medians shown; whole run $ELAPSED s. Load average $LOAD0 at the start, $load at the
  end; CPU time used by other processes and kernel threads (writeback included) during the run: $OTHER s
  (of $(awk -v e="$ELAPSED" -v c="$(nproc)" 'BEGIN { print e * c }') s available).
- Sizes: $sizes_text (\`SIZES="64 256 1024" bash bench/run.sh\`);
  threads: ${THREADS:-none}${THREADS:+ with $THREAD_MIB MiB in total} (\`THREADS="1 64" THREAD_MIB=64\`);
  process and fd costs: $syscalls_text (\`SYSCALLS=1\`).

## How to run

    cargo build --release
    bash bench/run.sh                     # about 2 minutes; rewrites docs/PERFORMANCE.md
    SIZES="64" REPS=1 BENCH_DOC=- bash bench/run.sh   # quick look, no report
    SIZES= TINY= THREADS=64 SYSCALLS= BENCH_DOC=- bash bench/run.sh   # only the 64 threads, no report
    SIZES= TINY= THREADS= BENCH_DOC=- bash bench/run.sh   # only the process and fd costs (about 30 s)

\`BENCH_DIR\` picks the directory for images and dd files (its filesystem matters),
\`HIBER_BIN_DIR\` the build to measure.

## What is measured

The workload is \`bench/alloc.c\`: a single-threaded process with SIZE MiB of private
anonymous memory, the first half xorshift pseudo-random bytes, the second half written
with zeros (present pages, all zero, which hiber skips). It wakes every millisecond and
appends a line to a log file; a wake-up more than 2 ms after the previous one is logged
as a "gap" with its length and the time the program ran again.

- **checkpoint**: wall clock around \`hiber checkpoint\` (returns when the image is
  written and renamed) against a coordinator already running, for each mode:
  compressed (default) or \`--no-compress\` ("raw"), durable (default, fsynced) or
  \`--no-sync\`. The previous image is deleted and \`sync\` run before each measurement.
- **pause**: the longest gap the program logged during the checkpoint (it includes up
  to 1 ms of its own sleep).
- **image**: the image file's size.
- **restart**: from starting \`hiber restart IMAGE\` (coordinator already running,
  image in the page cache) until the restarted program's first wake-up, as stamped by
  the program itself (CLOCK_REALTIME); "seen by the bench" is when the bench's 1 ms
  poll of the log saw that line. The previous restarted process was SIGKILLed. After the last repetition the program checks all of
  its memory against the expected contents ("memory verified").
- **dd**: \`dd if=/dev/zero of=DIR/ddtest bs=1M count=SIZE conv=fdatasync\` and the same
  without \`conv=fdatasync\`, into the bench directory, after \`sync\`.

**Many threads** (after the sizes): \`bench/threads.c\` starts N worker threads (pthreads)
that share $THREAD_MIB MiB of private anonymous memory equally ($THREAD_MIB MiB / N each, touched
by its thread: half xorshift bytes, half zeros, as above), so the process has the same
size and image for every N. Each worker loops forever: write a counter into the next page
of its share, read CLOCK_MONOTONIC, sleep 1 ms. A worker whose iteration starts more than
5 ms after the previous one logs the gap (the scheduler alone can delay a wake-up by a few
ms with 64 threads on 2 CPUs); the main thread logs every 10 ms the latest time at which
every worker has run. Only checkpoints are measured (in the modes ${THREAD_MODES// /, }),
against the 1-thread run of the same program as the baseline:

- **checkpoint**, **image**: as above.
- **pause**: the longest gap of any worker that overlaps the checkpoint, read once every
  worker has run after \`hiber checkpoint\` returned (up to 1 ms of it is the worker's own
  sleep). "Threads that saw the pause" counts the workers that logged a gap there, as a
  check that all of them were stopped: lowest–highest over the recorded rounds.
- There is no target for these (the issue asks for the measurement only).

**Process and fd costs** (last): \`bench/syscalls.c OP N\` runs one operation N times in
a loop, after N/10 untimed warm-up rounds, and prints the mean time of one round
(CLOCK_MONOTONIC around the whole loop, divided by N). It runs bare and under
\`hiber launch\` (one coordinator for the whole scenario), once each per round, in
alternating order; the start-up of the program and of the agent is not timed.

- **fork+exec+wait** ($SYSCALL_FORKS rounds per run): \`fork()\`, the child \`execve()\`s a
  no-op program (\`syscalls noop\`, the same dynamically linked binary, which returns at
  once), the parent \`waitpid()\`s for it. Under hiber the exec'd child inherits
  \`LD_PRELOAD\` and the agent's settings, so it loads the agent again and joins the
  coordinator (and leaves it when it exits), as any program a checkpointed process
  runs does: that is part of the cost measured.
- **open+close** ($SYSCALL_OPS rounds): \`open()\` of a regular file (the program's own
  binary, read-only), \`close()\`.
- **pipe+close** ($SYSCALL_OPS rounds): \`pipe()\`, \`close()\` of both ends (no target).
- The ratio is the median under hiber over the median bare.

## Noise on this machine

This is a small VM, and two effects dominate the spread of the samples:

- Memory left free for a few seconds is handed back to the hypervisor (the
  virtio-balloon device reports free pages), and the next large allocation pays for
  getting it back: \`dd ... bs=1M count=1024\` without sync takes about 0.2 s right
  after a similar file was deleted and 0.85–1.5 s after 3 idle seconds. hiber's page
  cache writes, its memfd and the restored process's memory are hit the same way. So,
  with \`PREWARM=1\` (the default), the bench writes and deletes a scratch file of the
  process size just before every timed operation, dd included; without it the 1 GiB
  medians moved by 2–3× between runs (single samples by up to 7×). A few samples per
  run are still hit, which is why the targets table lists every sample.
- Anything else running on the 2 CPUs (a build, tests) slows the checkpoints, which
  compress and scan memory on every core: before each size the bench waits (up to
  \`IDLE_WAIT\` s) for the machine to be idle (and before each thread count), and the CPU time others used is shown above.

Every set starts with $WARMUP unrecorded warm-up round(s), and medians are reported; all
samples are listed at the end.

## Targets

Reference points on this machine kind (from the issue): DMTCP (no fsync) 1.6 s
checkpoint / 0.85 s restart for 1 GiB and 0.41 s / 0.21 s for 1 MiB; CRIU (root, no
fsync) 0.58 s / 0.61 s and 0.04 s / 0.03 s. The many-threads rows are measurements
without a limit, with the 1-thread run of the same program for comparison. For the
process and fd costs, DMTCP measured 27× bare for fork+exec+wait and 6.7× for
open+close on this machine kind; pipe+close has no target.

$(targets)

## Results

$(tables)

## All samples

Milliseconds (sizes in bytes; \`stalled\`: threads that logged the pause), sizes in MiB
then thread counts; the \`syscalls\` rows (process and fd costs) are nanoseconds per
operation.

$(samples)

$MARK
EOF
    if [[ -n $notes ]]; then printf '%s\n' "$notes"; fi
} >"$DOC.tmp"
mv "$DOC.tmp" "$DOC"
echo
echo "wrote $DOC"
