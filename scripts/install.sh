#!/usr/bin/env bash
# Installs hiber under a prefix:
#
#   PREFIX/bin/hiber                  the command
#   PREFIX/lib/libhiber.so            the agent (LD_PRELOADed by `hiber launch`;
#                                     programs using the C API link it with -lhiber)
#   PREFIX/lib/hiber/hiber-restore    the restorer `hiber restart` runs
#   PREFIX/include/hiber.h            the C API
#   PREFIX/lib/pkgconfig/hiber.pc     `pkg-config --cflags --libs hiber`
#
# Usage: scripts/install.sh [PREFIX]          (default /usr/local)
#   DESTDIR=/tmp/stage scripts/install.sh /usr   stages the files under
#       /tmp/stage/usr while everything in them still says /usr (packaging).
#   HIBER_BIN_DIR=DIR   install the binaries found in DIR instead of building
#       (by default `cargo build --release` runs first; it does nothing when
#       the build is up to date).
#
# `hiber` finds libhiber.so and hiber-restore through its own location
# (../lib/ and ../lib/hiber/), so an installed copy needs no environment.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${1:-/usr/local}"
case "$prefix" in
    /*) ;;
    *) prefix="$(pwd)/$prefix" ;;
esac
prefix="${prefix%/}"
[ -n "$prefix" ] || prefix=/
destdir="${DESTDIR:-}"

if [ -n "${HIBER_BIN_DIR:-}" ]; then
    bin="$HIBER_BIN_DIR"
else
    bin="${CARGO_TARGET_DIR:-$repo/target}/release"
    if command -v cargo >/dev/null; then
        (cd "$repo" && cargo build --release)
    else
        echo "install.sh: cargo not found; installing what is in $bin" >&2
    fi
fi
for f in hiber libhiber.so hiber-restore; do
    if [ ! -f "$bin/$f" ]; then
        echo "install.sh: $bin/$f is missing (run \`cargo build --release\` first)" >&2
        exit 1
    fi
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)"
root="$destdir$prefix"
install -d "$root/bin" "$root/lib/hiber" "$root/lib/pkgconfig" "$root/include"
install -m 0755 "$bin/hiber" "$root/bin/hiber"
install -m 0755 "$bin/libhiber.so" "$root/lib/libhiber.so"
install -m 0755 "$bin/hiber-restore" "$root/lib/hiber/hiber-restore"
install -m 0644 "$repo/include/hiber.h" "$root/include/hiber.h"

# The .pc file names the final prefix, not DESTDIR. The rpath lets a program
# linked with `pkg-config --libs hiber` find libhiber.so without
# LD_LIBRARY_PATH (a prefix such as /usr/local/lib is often not in the
# loader's default path, and $HOME prefixes never are).
pc="$(mktemp)"
trap 'rm -f "$pc"' EXIT
cat >"$pc" <<EOF
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: hiber
Description: C API of hiber, transparent user-space checkpoint/restart (libhiber.so)
Version: ${version:-0}
Cflags: -I\${includedir}
Libs: -L\${libdir} -lhiber -Wl,-rpath,\${libdir}
EOF
install -m 0644 "$pc" "$root/lib/pkgconfig/hiber.pc"

echo "installed hiber ${version} under $root"
for f in bin/hiber lib/libhiber.so lib/hiber/hiber-restore include/hiber.h lib/pkgconfig/hiber.pc; do
    echo "  $root/$f"
done
case ":${PKG_CONFIG_PATH:-}:" in
    *":$prefix/lib/pkgconfig:"*) ;;
    *) echo "pkg-config: PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs hiber" ;;
esac
