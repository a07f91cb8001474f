# shellcheck shell=bash
# Shared by scripts/test-c.sh, scripts/install-c.sh and
# scripts/test-c-windows.sh (sourced, not run): installing what the C
# side needs, and building the C library. Expects `set -euo pipefail`
# and the repository root as the current directory.

# c_apt_install PACKAGE...: installs the Debian packages that are missing
# (apt-get update first, once), as root or through sudo. A fresh CI
# machine has none of the C tools beyond gcc.
c_apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || {
        echo "c-common: missing packages ${missing[*]} and no apt-get to install them" >&2
        return 1
    }
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    echo "c-common: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z ${C_APT_UPDATED:-} ]]; then
        "${sudo[@]}" apt-get update -qq
        C_APT_UPDATED=1
    fi
    "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# c_target_dir: cargo's target directory (CARGO_TARGET_DIR or the
# workspace's), printed.
c_target_dir() {
    cargo metadata --format-version 1 --no-deps |
        grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4
}

# c_build_release [CARGO ARGS...]: builds libmallocator (static and
# shared, release) and sets MLC_NATIVE_LIBS to the system libraries a
# static link needs (rustc's --print native-static-libs, e.g. "-lgcc_s
# -lutil -lrt -lpthread -lm -ldl -lc"). `cargo rustc` rather than `cargo
# build` because only it passes --print to rustc; cargo replays the note
# when the library is already fresh, so a second call costs nothing.
c_build_release() {
    local out
    out=$(cargo rustc --release -p mallocator-c --lib --crate-type staticlib,cdylib "$@" \
        -- --print native-static-libs 2>&1) || {
        printf '%s\n' "$out" >&2
        return 1
    }
    MLC_NATIVE_LIBS=$(printf '%s\n' "$out" | sed -n 's/^note: native-static-libs: //p' | tail -n 1)
    [[ -n $MLC_NATIVE_LIBS ]] || {
        printf '%s\n' "$out" >&2
        echo "c-common: rustc printed no native-static-libs" >&2
        return 1
    }
}

# c_version: the crate's version (as in Cargo.toml), printed.
c_version() {
    local id
    id=$(cargo pkgid -p mallocator-c)
    printf '%s\n' "${id##*[#@]}"
}

# --- counting checks ---------------------------------------------------------
# c_checks_init WORKDIR: starts counting; check logs go to WORKDIR.
c_checks_init() {
    c_work=$1
    passed=0
    failed=0
    failures=()
}

# check NAME COMMAND...: one check; its output goes to a log, shown if it
# fails. The command runs in a background subshell: there `set -e` holds
# inside the check functions (in an `if` condition bash would ignore it,
# and a function would only report its last command), and what a check
# exports stays in it.
check() {
    local name=$1 log status=0
    shift
    log=$c_work/log.$((passed + failed)).txt
    ("$@") >"$log" 2>&1 </dev/null &
    wait $! || status=$?
    if ((status == 0)); then
        passed=$((passed + 1))
        echo "ok    $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAIL  $name (exit status $status; log: $log)"
        tail -n 40 "$log" | sed 's/^/      | /'
    fi
}

# refute COMMAND...: fails if COMMAND succeeds (`! cmd` would not stop a
# function under set -e).
refute() {
    if "$@"; then
        echo "refute: this should have failed: $*"
        return 1
    fi
}

# run_test EXE [RUNNER...]: runs a C test program (through RUNNER, e.g.
# valgrind or wine, if given) and insists on exit status 0 and on its
# closing line "N passed, 0 failed" with N > 0 (carriage returns, which
# Wine's console adds, ignored).
run_test() {
    local exe=$1 out status=0 last
    shift
    out=$("$@" "$exe" 2>&1) || status=$?
    out=${out//$'\r'/}
    printf '%s\n' "$out"
    ((status == 0)) || { echo "run_test: $exe exited with status $status"; return 1; }
    last=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1 || true)
    if ! [[ $last =~ ^([0-9]+)\ passed,\ 0\ failed$ ]] || ((BASH_REMATCH[1] == 0)); then
        echo "run_test: $exe: no closing 'N passed, 0 failed' line"
        return 1
    fi
}

# c_checks_summary: the failures, the closing "N passed, M failed" line;
# returns 1 if a check failed (or none ran).
c_checks_summary() {
    echo
    if ((failed > 0)); then
        echo "failed checks:"
        printf '  %s\n' "${failures[@]}"
    fi
    echo "$passed passed, $failed failed"
    ((failed == 0 && passed > 0))
}
