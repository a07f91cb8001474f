#!/usr/bin/env bash
# Truth for `mallocator trace`: the never-freed bytes and blocks, how
# many of them are definitely, indirectly, possibly lost or still
# reachable, and the blocks and bytes allocated in all, of
# programs nobody here wrote (Debian's jq, sqlite3, tclsh, bc, xz, git,
# perl, and ssh, which closes every descriptor above 2 as it starts) and
# of our own C test programs built with gcc -O2 without frame pointers
# (crates/mallocator-cli/tests/trace/programs.c) must be what Valgrind
# memcheck reports "in use at exit", in its leak summary and as "total
# heap usage", both
# leaving the C library's clean-up at exit undone
# (--run-libc-freeres=no --run-cxx-freeres=no).
# For our programs the leak sites must also be named: the innermost frame
# of each leak of theirs is a function of programs.c with its line.
#
# Both runs get the same environment. Valgrind's launcher adds variables
# to the program's environment (LD_PRELOAD, LD_LIBRARY_PATH, PWD,
# GLIBCPP_FORCE_NEW, GLIBCXX_FORCE_NEW), and programs allocate by it
# (perl copies it into %ENV; setenv grows the array): the traced run gets
# the same ones, its LD_PRELOAD naming a missing library of the same
# length (the dynamic loader says it cannot preload it, and goes on), as
# the preload library takes itself out of the variable at start.
#
# Usage: scripts/compare-trace-valgrind.sh     (exit 1 on any mismatch)
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
for tool in jq sqlite3 tclsh bc xz git perl ssh cc; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

cargo build --release -q -p mallocator-cli
bin=$PWD/target/release/mallocator
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cc -O2 -g -fomit-frame-pointer -pthread -o "$work/programs" \
    crates/mallocator-cli/tests/trace/programs.c -ldl
echo '{"name": "mallocator", "tags": ["a", "b"], "n": [1, 2, 3]}' > "$work/in.json"
printf 'create table t(a, b);\ninsert into t values (1, 2), (3, 4);\nselect sum(a) from t;\n' > "$work/script.sql"
printf 'set d [dict create a 1 b 2]\nputs [dict get $d a]\n' > "$work/script.tcl"
printf 'scale=50\n4*a(1)\n' > "$work/pi.bc"

base=(env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$HOME" LANG=C.UTF-8
    PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0)
# What Valgrind's launcher adds to the environment (see above).
vg_preload=$("${base[@]}" valgrind -q sh -c 'printf %s "$LD_PRELOAD"' 2>/dev/null)
placeholder="/nonexistent/$(printf '%*s' $((${#vg_preload} - 13)) '' | tr ' ' x)"
as_valgrind=(LD_PRELOAD="$placeholder" LD_LIBRARY_PATH=/usr/lib/debug PWD="$work"
    GLIBCPP_FORCE_NEW=1 GLIBCXX_FORCE_NEW=1)

failures=0
# row LABEL VALGRIND TRACE UNIT1 UNIT2 EXCUSE: prints one comparison, each
# side two numbers ("N1 N2", shown as "N1 UNIT1, N2 UNIT2"). A difference
# is a mismatch, but in the threads program (the caller's $name), where
# EXCUSE says why it is expected.
row() {
    local label=$1 vg=$2 ours=$3 unit1=$4 unit2=$5 excuse=$6 verdict=ok
    if [ "$vg" != "$ours" ] && [[ ${name:-} == *threads* ]]; then
        verdict=$excuse
    elif [ "$vg" != "$ours" ]; then
        verdict=MISMATCH
        failures=$((failures + 1))
    fi
    printf '  %-34s valgrind %-22s trace %-22s %s\n' "$label" "${vg/ / $unit1, } $unit2" \
        "${ours/ / $unit1, } $unit2" "$verdict"
}

# compare NAME COMMAND...: runs COMMAND under both tools in $work.
compare() {
    # The program's own exit status is not the point here.
    local -
    set +o pipefail
    local name=$1
    shift
    local vg vg_out vg_heap trace_json
    vg_out=$(cd "$work" && "${base[@]}" valgrind --leak-check=summary \
        --run-libc-freeres=no --run-cxx-freeres=no "$@" 2>&1 >/dev/null) || true
    vg=$(sed -n 's/.*in use at exit: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 \2/p' \
        <<<"$vg_out" | tr -d ,)
    # "total heap usage: N allocs, M frees, B bytes allocated": N and B.
    vg_heap=$(sed -n 's/.*total heap usage: \([0-9,]*\) allocs, [0-9,]* frees, \([0-9,]*\) bytes.*/\1 \2/p' \
        <<<"$vg_out" | tr -d ,)
    rm -f "$work/log"
    (cd "$work" && "${base[@]}" "${as_valgrind[@]}" "$bin" trace --output "$work/log" -- "$@" \
        >/dev/null 2>"$work/trace.err") || true
    trace_json=$("$bin" leaks --json "$work/log")
    local ours
    ours=$(jq -r '"\(.leaked_bytes) \(.leaked_blocks)"' <<<"$trace_json")
    row "$name" "$vg" "$ours" bytes blocks "(TLS vectors, below)"
    # Every allocation, freed or not: the report's heap line against
    # memcheck's total heap usage (the preload library starts the tracker
    # without allocating: the log has the program's allocations only).
    local our_heap
    our_heap=$(jq -r '"\(.log.input.allocs) \(.log.heap.allocated_bytes)"' <<<"$trace_json")
    row "  allocated in all" "$vg_heap" "$our_heap" blocks bytes "(TLS vectors)"
    # The never-freed blocks by class: memcheck's leak summary against
    # the classes the tracker's scan at exit gave the report's groups.
    local class vg_class our_class
    for class in "definitely lost" "indirectly lost" "possibly lost" "still reachable"; do
        vg_class=$(sed -n "s/.*$class: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 \2/p" \
            <<<"$vg_out" | tr -d ,)
        our_class=$(jq -r --arg k "${class/ /_}" '[.groups[] | select(.kind == $k)]
            | "\(map(.bytes) | add // 0) \(map(.count) | add // 0)"' <<<"$trace_json")
        row "  $class" "${vg_class:-0 0}" "$our_class" bytes blocks "(see below)"
    done
    LAST_JSON=$trace_json
}

echo "never-freed bytes and blocks at exit, Valgrind memcheck against mallocator trace:"
compare "jq . in.json" jq . in.json
compare "sqlite3 :memory: < script.sql" sqlite3 :memory: -init /dev/null ".read script.sql"
compare "tclsh script.tcl" tclsh script.tcl
compare "bc -l pi.bc" bc -lq pi.bc
compare "xz -c in.json" xz -c in.json
compare "git log -n 5 (this repository)" git -C "$PWD" log -n 5 --oneline
compare "perl -e (a hash of 200 strings)" perl -e 'my %h = map { $_ => "x" x $_ } 1..200'
compare "ssh -V (closes its descriptors)" ssh -V
# Without pvalloc, at which memcheck aborts the program.
compare "programs.c family (gcc -O2, no fp)" ./programs family without-pvalloc
family_json=$LAST_JSON
# With threads, glibc keeps each thread's TLS vector (DTV) for reuse: one
# 16-byte slot per module with thread-local storage, and the preload
# library is one more such module. So the totals differ by that; the
# blocks the program itself leaked (its code called malloc) are compared
# instead. Their classes differ too, for what each scan can see: glibc
# hands a freed address out again where memcheck's allocator holds freed
# blocks back, so a stale pointer to a freed block (the program's table
# of the blocks its threads freed) may point at a block leaked later,
# which is then still reachable; and memcheck scans every mapping, the
# ended threads' cached stacks too, where a pointer into each thread's
# TLS vector makes it possibly lost, not lost.
own_leaks_valgrind() {
    (cd "$work" && "${base[@]}" valgrind --leak-check=full --show-leak-kinds=all \
        --run-libc-freeres=no --run-cxx-freeres=no "$@" 2>&1 >/dev/null) |
        awk '/bytes in [0-9,]+ blocks are/ { rec = $0; mine = 0; first = 1; next }
             / by 0x/ && first { first = 0; if ($0 ~ /programs\.c/) mine = 1 }
             /^==[0-9]+== $/ { if (rec != "" && mine) print rec; rec = "" }' |
        sed -E 's/==[0-9]+== ([0-9,]+) (\([^)]*\) )?bytes in ([0-9,]+) blocks.*/\1 \3/' | tr -d , |
        awk '{ b += $1; n += $2 } END { print b + 0, n + 0 }'
}
vg_own=$(own_leaks_valgrind ./programs threads)
compare "programs.c threads (gcc -O2, no fp)" ./programs threads
threads_json=$LAST_JSON
our_own=$(jq -r '[.groups[] | select((.frames[0].file // "") | endswith("programs.c"))]
    | "\(map(.bytes) | add // 0) \(map(.count) | add // 0)"' <<<"$LAST_JSON")
row "  its own leaks (programs.c)" "$vg_own" "$our_own" bytes blocks ""
for json in "$family_json" "$threads_json"; do
    # Every leak of programs.c's own is named: its innermost frame (the
    # return address into the caller of malloc, found without frame
    # pointers too) is a function of programs.c with its line.
    unnamed=$(jq '[.groups[] | select(.frames[0].object // "" | endswith("/programs"))
        | select((.frames[0].function // "") == "" or (.frames[0].line // 0) == 0)] | length' \
        <<<"$json")
    named=$(jq '[.groups[] | select((.frames[0].file // "") | endswith("programs.c"))] | length' \
        <<<"$json")
    if [ "$unnamed" != 0 ] || [ "$named" = 0 ]; then
        echo "  programs.c: $named leak sites named, $unnamed not" >&2
        failures=$((failures + 1))
    fi
done
# The leak stacks of programs.c (built without frame pointers), as
# chains of its functions, innermost first, with the bytes and blocks
# leaked from each: memcheck's against the trace's DWARF-unwound ones.
valgrind_chains() {
    # (The program's own exit status is not the point here.)
    (cd "$work" && "${base[@]}" valgrind --leak-check=full --show-leak-kinds=all \
        --run-libc-freeres=no --run-cxx-freeres=no "$@" 2>&1 >/dev/null || true) |
        awk '/bytes in [0-9,]+ blocks are/ {
                 rec = $0; sub(/^==[0-9]+== /, "", rec); gsub(/,/, "", rec)
                 split(rec, w, " "); bytes = w[1]; blocks = (w[2] ~ /^\(/) ? w[5] : w[4]
                 chain = ""; next }
             /(at|by) 0x[0-9A-F]+: .*programs\.c/ {
                 f = $0; sub(/.*0x[0-9A-F]+: /, "", f); sub(/ .*/, "", f)
                 chain = chain (chain == "" ? "" : ">") f; next }
             /^==[0-9]+== $/ { if (chain != "") print chain, bytes, blocks; chain = "" }' |
        awk '{ b[$1] += $2; n[$1] += $3 } END { for (c in b) print c, b[c], n[c] }' | sort
}
trace_chains() {
    jq -r '.groups[] | [([.frames[] | select((.file // "") | endswith("programs.c"))
        | .function // "?"] | join(">")), .bytes, .count] | select(.[0] != "") | @tsv' <<<"$1" |
        awk '{ b[$1] += $2; n[$1] += $3 } END { for (c in b) print c, b[c], n[c] }' | sort
}
vg_chains=$(valgrind_chains ./programs family without-pvalloc)
our_chains=$(trace_chains "$family_json")
echo "leak stacks of programs.c family (its functions, innermost first; bytes, blocks):"
if [ "$vg_chains" = "$our_chains" ]; then
    sed 's/^/  /' <<<"$our_chains"
    echo "  the same under memcheck and trace"
else
    diff <(echo "$vg_chains") <(echo "$our_chains") | sed 's/^/  /' >&2
    echo "  MISMATCH (< memcheck, > trace)" >&2
    failures=$((failures + 1))
fi
if [ "$failures" -gt 0 ]; then
    echo "$failures mismatch(es)" >&2
    exit 1
fi
echo "all agree"
