# shellcheck shell=bash
# Paired wall-time measurement, shared by scripts/bench-leak-tracking.sh
# (the churn workload) and scripts/bench-real-program.sh (ripgrep).
#
# Usage: `source scripts/bench-common.sh` from a script running under
# `set -euo pipefail` and `shopt -s inherit_errexit`, then set
#   BENCH_NAME   the script's name, for error messages
#   BENCH_WORK   a scratch folder: every run starts in it
#   PLAIN        array: the plain program each tool is compared with
#   THREADS      array: the thread counts, one table column pair each
# and define `bench_args THREADS`, which sets the array ARGS to the
# arguments appended to both the plain program and the tool for a run on
# THREADS threads. Then call `row LABEL RUNS cmd...` once per tool and
# `print_table` at the end.
#
# The machine may be shared, and its load drifts within seconds. So every
# run of a tool is paired with a run of the plain program next to it (which
# one goes first alternates), and a row's slowdown is the median of those
# per-pair ratios; its time is the median of its runs. A load spike then
# inflates one pair, not a row. A run that fails stops the script.

# wall_time cmd...: runs cmd once (in $BENCH_WORK, output discarded),
# prints the wall time in seconds; fails, with a message, if cmd fails.
wall_time() {
    local start end
    start=$(date +%s.%N)
    if ! (cd "$BENCH_WORK" && "$@" >/dev/null 2>&1); then
        echo "$BENCH_NAME: failed: $*" >&2
        return 1
    fi
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f\n", e - s }'
}

# median: the median of the numbers on stdin.
median() {
    sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

have() { command -v "$1" >/dev/null 2>&1; }

# paired N THREADS cmd...: N times, the plain program and cmd (ARGS from
# bench_args THREADS appended to both), in alternating order; prints
# "plain_median cmd_median median_ratio".
paired() {
    local n=$1 threads=$2
    shift 2
    bench_args "$threads"
    local i p t
    for ((i = 0; i < n; i++)); do
        if ((i % 2 == 0)); then
            p=$(wall_time "${PLAIN[@]}" "${ARGS[@]}")
            t=$(wall_time "$@" "${ARGS[@]}")
        else
            t=$(wall_time "$@" "${ARGS[@]}")
            p=$(wall_time "${PLAIN[@]}" "${ARGS[@]}")
        fi
        echo "$p $t"
    done >"$BENCH_WORK/pairs"
    echo "$(cut -d' ' -f1 "$BENCH_WORK/pairs" | median) $(cut -d' ' -f2 "$BENCH_WORK/pairs" | median)" \
        "$(awk '{ print $2 / $1 }' "$BENCH_WORK/pairs" | median)"
}

rows=()
declare -A plain_time

# row LABEL RUNS cmd...: one table row, RUNS pairs per thread count.
row() {
    local label=$1 n=$2
    shift 2
    local line="| $label |"
    local threads out p t r
    # shellcheck disable=SC2153 # THREADS is set by the sourcing script
    for threads in "${THREADS[@]}"; do
        out=$(paired "$n" "$threads" "$@")
        read -r p t r <<<"$out"
        plain_time[$threads]+=" $p"
        line+=$(awk -v t="$t" -v r="$r" 'BEGIN { printf " %.3f | %.1fx |", t, r }')
    done
    rows+=("$line")
}

# print_table: the header, a plain row (for each thread count, the median
# of the plain medians paired with each row), then the rows.
print_table() {
    local threads header="| tool |" rule="|---|" plain_row="| plain (system malloc) |"
    for threads in "${THREADS[@]}"; do
        if ((threads == 1)); then
            header+=" 1 thread (s) | slowdown |"
        else
            header+=" $threads threads (s) | slowdown |"
        fi
        rule+="---|---|"
        plain_row+=$(echo "${plain_time[$threads]}" | tr ' ' '\n' | grep . | median | awk '{ printf " %.3f | 1.0x |", $1 }')
    done
    echo "$header"
    echo "$rule"
    echo "$plain_row"
    printf '%s\n' "${rows[@]}"
}

# load_now: the load averages over 1, 5 and 15 minutes, to print beside
# a table measured on a machine that may be shared.
load_now() { cut -d' ' -f1-3 /proc/loadavg; }
