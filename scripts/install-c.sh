#!/usr/bin/env bash
# Installs the mallocator C library under a prefix:
#
#   bash scripts/install-c.sh PREFIX        e.g. /usr/local or "$HOME/.local"
#
#   PREFIX/include/mallocator.h, PREFIX/include/fd_valloc.h
#   PREFIX/lib/libmallocator.a, PREFIX/lib/libmallocator.so
#   PREFIX/lib/pkgconfig/mallocator.pc
#
# Builds the library first (cargo, release). Then compile with
#   cc app.c $(pkg-config --cflags --libs mallocator)
# (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig if pkg-config does not search
# PREFIX already); `pkg-config --static` adds the system libraries that
# linking libmallocator.a needs (Libs.private).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/c-common.sh
source scripts/c-common.sh

if (($# != 1)) || [[ -z $1 ]]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
mkdir -p "$1"
prefix=$(cd "$1" && pwd) # absolute: the .pc file names it

c_build_release --quiet
target=$(c_target_dir)/release
version=$(c_version)
for f in libmallocator.a libmallocator.so; do
    [[ -f $target/$f ]] || { echo "install-c: cargo did not produce $target/$f" >&2; exit 1; }
done

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 crates/mallocator-c/include/mallocator.h crates/mallocator-c/include/fd_valloc.h "$prefix/include/"
install -m 644 "$target/libmallocator.a" "$prefix/lib/"
# Copy to a temporary name, then rename: a program that is running with
# the old libmallocator.so keeps its mapping intact.
install -m 755 "$target/libmallocator.so" "$prefix/lib/.libmallocator.so.tmp"
mv -f "$prefix/lib/.libmallocator.so.tmp" "$prefix/lib/libmallocator.so"

# The pkg-config file. Libs.private: what rustc says a static link of the
# library needs, each library once (the last mention kept, so that a
# library still comes after the ones that use it).
# shellcheck disable=SC2086 # one word per library
private=$(printf '%s\n' $MLC_NATIVE_LIBS | tac | awk '!seen[$0]++' | tac | paste -sd' ' -)
cat >"$prefix/lib/pkgconfig/mallocator.pc" <<EOF
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: mallocator
Description: Composable allocators, a virtual-memory arena and a backtracing leak tracker (mallocator.h, fd_valloc.h)
Version: $version
Libs: -L\${libdir} -lmallocator
Libs.private: $private
Cflags: -I\${includedir}
EOF
chmod 644 "$prefix/lib/pkgconfig/mallocator.pc"
echo "install-c: installed mallocator $version under $prefix"
