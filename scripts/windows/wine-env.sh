# shellcheck shell=bash
# Wine for running x86_64-pc-windows-gnu programs here (sourced, not run),
# shared by scripts/test-windows.sh (the Rust tests) and
# scripts/test-c-windows.sh (the C library's tests).
#
#   source scripts/windows/wine-env.sh
#   wine_setup WORKDIR     # sets $wine; exports WINEPREFIX, WINEPATH, ...
#   "$wine" program.exe
#
# Needs x86_64-w64-mingw32-gcc (Debian: gcc-mingw-w64-x86-64) and Wine
# (Debian: wine64); no display. Expects `set -euo pipefail`, the
# repository root as the current directory, and a `die` function.

MINGW_CC=${MINGW_CC:-x86_64-w64-mingw32-gcc}

# wine_setup WORKDIR: the Wine loader in $wine, the ProcessPrng shim DLL
# and a private, quiet Wine prefix under WORKDIR.
wine_setup() {
    local work=$1

    # The Wine loader: the 64-bit one directly when Debian's layout is there
    # (the /usr/bin/wine wrapper prefers a 32-bit Wine and nags without one).
    if [[ -x /usr/lib/wine/wine64 ]]; then
        wine=/usr/lib/wine/wine64
        export WINELOADER=$wine
    elif command -v wine64 >/dev/null; then
        wine=$(command -v wine64)
    elif command -v wine >/dev/null; then
        wine=$(command -v wine)
    else
        die "Wine not found (Debian: apt-get install wine64)"
    fi
    command -v "$MINGW_CC" >/dev/null || die "$MINGW_CC not found (Debian: apt-get install gcc-mingw-w64-x86-64)"

    # 1. The ProcessPrng shim: Rust's std imports it from bcryptprimitives.dll,
    #    which the packaged Wine lacks.
    local shim_src=scripts/windows/bcryptprimitives.c
    local shim_dir=$work/dlls
    local shim=$shim_dir/bcryptprimitives.dll
    mkdir -p "$shim_dir"
    if [[ ! -f $shim || $shim_src -nt $shim ]]; then
        "$MINGW_CC" -shared -O2 -Wall -Werror -o "$shim.tmp" "$shim_src" -ladvapi32
        mv "$shim.tmp" "$shim"
    fi

    # 2. A private, quiet Wine prefix inside the work directory. Creating it
    #    takes a few seconds the first time; mono/gecko installers are disabled
    #    so that nothing asks questions, and no display is needed.
    export WINEPREFIX=$work/prefix
    export WINEDEBUG=-all
    export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
    export WINEPATH="Z:${shim_dir//\//\\}"
    unset DISPLAY WAYLAND_DISPLAY
    # wineboot now and then fails on a fresh prefix ("could not load
    # kernel32.dll", seen once in a clean CI run and not reproducible): try up
    # to three times, each time from an empty prefix, and wait for the Wine
    # server to finish writing the prefix.
    local wineserver attempt=0
    wineserver=$(dirname "$wine")/wineserver
    [[ -x $wineserver ]] || wineserver=$(command -v wineserver || true)
    while [[ ! -f $WINEPREFIX/system.reg ]]; do
        attempt=$((attempt + 1))
        ((attempt <= 3)) || { cat "$work/wineboot.log" >&2; die "wineboot failed 3 times"; }
        echo "wine-env: creating the Wine prefix $WINEPREFIX (attempt $attempt)"
        rm -rf "$WINEPREFIX"
        mkdir -p "$WINEPREFIX"
        if "$wine" wineboot --init </dev/null >"$work/wineboot.log" 2>&1; then
            [[ -z $wineserver ]] || "$wineserver" -w || true
        else
            [[ -z $wineserver ]] || "$wineserver" -k || true
            rm -rf "$WINEPREFIX"
        fi
    done
}
