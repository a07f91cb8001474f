#!/usr/bin/env bash
# Throughput of `mallocator leaks` on a large text (Firedancer-format) log,
# next to `wc -l` on the same file: finding the line ends and nothing else,
# the bound no log parser can beat.
#
#   scripts/bench-leaks-throughput.sh [MB] [RUNS]     (default: 500 MB, 5 runs)
#
# Writes one realistic log of MB megabytes (10^6 bytes) into a temporary
# folder, removed at exit: records as the tracker writes them (5 to 20
# frame lines of shared libraries and the program, about 3000 distinct
# stacks, most blocks freed and some leaked, a little program output),
# made by crates/mallocator-cli/benches/leaks_throughput.rs. It then reads
# the file once so that every run finds it in the page cache, checks that
# the release build of `mallocator leaks` reports the blocks the generator
# leaked, and times RUNS runs of each command, alternating so that a busy
# spell of the machine hits both:
#
#   wc -l LOG
#   mallocator leaks --no-progress LOG > /dev/null
#
# It prints the best and the median MB/s of each, the ratio of the two,
# and the CPU time and peak memory of the leaks runs. Times are wall
# clock: on a machine busy with other work the CPU time says more.
set -euo pipefail

mb=${1:-500}
runs=${2:-5}
[[ $mb =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]] || {
    echo "usage: $0 [MB] [RUNS]" >&2
    exit 2
}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac

cargo build --release -p mallocator-cli --bin mallocator >&2
bin=$target/release/mallocator

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log=$tmp/fd.log
echo "writing a ${mb} MB log to $log" >&2
facts=$(cargo bench -p mallocator-cli --bench leaks_throughput -- --write-log "$log" --mb "$mb" |
    grep '^bytes=')
bytes=$(stat -c %s "$log")
leaked=${facts##*leaked_blocks=}
echo "log: $facts" >&2

cat "$log" >/dev/null
report=$("$bin" leaks --json --no-progress "$log")
grep -q "\"leaked_blocks\": $leaked," <<<"$report" || {
    echo "mallocator leaks did not report the $leaked leaked blocks:" >&2
    head -5 <<<"$report" >&2
    exit 1
}

# run NAME COMMAND...: appends "NAME wall_s user_s sys_s max_rss_kb" to
# $tmp/times (CPU and memory from GNU time when it is installed).
gnu_time=/usr/bin/time
[[ -x $gnu_time ]] || gnu_time=""
run() {
    local name=$1
    shift
    local start=$EPOCHREALTIME cpu="- - -"
    if [[ -n $gnu_time ]]; then
        "$gnu_time" -o "$tmp/cpu" -f "%U %S %M" "$@" >/dev/null
        cpu=$(<"$tmp/cpu")
    else
        "$@" >/dev/null
    fi
    local end=$EPOCHREALTIME
    echo "$name $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }') $cpu" >>"$tmp/times"
}
for ((i = 0; i < runs; i++)); do
    run wc wc -l "$log"
    run leaks "$bin" leaks --no-progress "$log"
done

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v bytes="$bytes" -v runs="$runs" '
    {
        wall[$1, ++n[$1]] = $2
        if ($3 != "-") { cpu[$1] += $3 + $4; if ($5 > rss[$1]) rss[$1] = $5 }
    }
    function sorted(name,   i, j, t) {
        for (i = 1; i <= runs; i++) s[i] = wall[name, i]
        for (i = 2; i <= runs; i++)
            for (j = i; j > 1 && s[j - 1] > s[j]; j--) { t = s[j]; s[j] = s[j - 1]; s[j - 1] = t }
    }
    function report(name, label) {
        sorted(name)
        best[name] = bytes / 1e6 / s[1]
        med[name] = bytes / 1e6 / (runs % 2 ? s[(runs + 1) / 2] : (s[runs / 2] + s[runs / 2 + 1]) / 2)
        printf "%-40s best %6.0f MB/s (%.3f s), median %6.0f MB/s", label, best[name], s[1], med[name]
        if (name in cpu)
            printf "; CPU %.3f s/run = %.0f MB/s, peak RSS %.1f MB", cpu[name] / runs,
                bytes / 1e6 / (cpu[name] / runs), rss[name] / 1024
        printf "\n"
    }
    END {
        printf "log: %.1f MB, %d runs each\n", bytes / 1e6, runs
        report("wc", "wc -l")
        report("leaks", "mallocator leaks --no-progress")
        printf "mallocator leaks / wc -l: %.2f (best), %.2f (median)\n", best["leaks"] / best["wc"], med["leaks"] / med["wc"]
    }' "$tmp/times"
