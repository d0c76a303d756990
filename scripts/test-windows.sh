#!/usr/bin/env bash
# Builds ferry for Windows with MinGW-w64 and tests it under Wine, on a Linux machine:
#   1. the engine and CLI tests (`cargo test --no-default-features`), cross-built for
#      x86_64-pc-windows-gnu and run under Wine by scripts/wine/runner.sh (the tests spawn the
#      Windows ferry.exe, which runs under the same Wine);
#   2. the whole app, window included, built for Windows (skip with FERRY_WINDOWS_APP=0);
#   3. tests/interop_windows.rs: that ferry.exe against this machine's Linux ferry, both ways.
# Extra arguments go to step 1's test binaries' filter, e.g. `scripts/test-windows.sh transfer`.
#
# Needs: `rustup target add x86_64-pc-windows-gnu` (done here if missing) and
# `apt-get install gcc-mingw-w64-x86-64 wine64` (Debian/Ubuntu). Only variables for the Windows
# target are set, so native builds are unaffected.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v "${FERRY_MINGW_CC:-x86_64-w64-mingw32-gcc}" >/dev/null || missing+=(gcc-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null || command -v wine >/dev/null || missing+=(wine64)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-windows.sh: missing ${missing[*]}: apt-get install ${missing[*]}" >&2
    exit 1
fi
if ! rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
    rustup target add x86_64-pc-windows-gnu
fi

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc}
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER:-$PWD/scripts/wine/runner.sh}
# Tests never announce or browse on the machine's real network.
export FERRY_NO_DISCOVERY=1
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
win=x86_64-pc-windows-gnu

step() { printf '\n== test-windows: %s (%s)\n' "$1" "$(date -u +%T)"; }
started=$SECONDS

step "engine and CLI tests under Wine"
cargo test --target $win --no-default-features -- "$@"

if [ "${FERRY_WINDOWS_APP:-1}" != 0 ]; then
    step "the whole app (window included) for Windows"
    cargo build --target $win --bin ferry
fi

step "interop: Linux ferry <-> Windows ferry.exe"
FERRY_WINDOWS_EXE=$target_dir/$win/debug/ferry.exe cargo test --test interop_windows -- --ignored

echo "test-windows: done in $((SECONDS - started)) s"
