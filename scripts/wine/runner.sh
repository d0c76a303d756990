#!/usr/bin/env bash
# Cargo runner for x86_64-pc-windows-gnu: runs a Windows .exe under Wine.
#
#   CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=scripts/wine/runner.sh   (scripts/test-windows.sh sets it)
#
# Cargo calls it as `runner.sh PATH/TO/prog.exe ARGS...`. Before running, it:
# - builds the stand-in bcryptprimitives.dll (bcryptprimitives.c; Debian's Wine 8 lacks the DLL
#   Rust's std loads for random numbers) once per target dir and copies it next to the exe, and
#   next to the binaries one folder up when the exe sits in deps/ (the integration tests spawn
#   target/x86_64-pc-windows-gnu/debug/ferry.exe, which needs it too);
# - uses one Wine prefix per target dir (TARGET/wine-prefix, created on first use, ~20 s), or
#   $FERRY_WINEPREFIX when set; Wine's own messages are silenced (WINEDEBUG=-all).
# Exit status: the program's own.
set -euo pipefail

exe=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exe_dir=$(cd "$(dirname "$exe")" && pwd)

# The target dir: the folder holding x86_64-pc-windows-gnu/ above the exe (else the exe's folder).
target_dir=$exe_dir
while [ "$target_dir" != / ] && [ "$(basename "$target_dir")" != x86_64-pc-windows-gnu ]; do
    target_dir=$(dirname "$target_dir")
done
if [ "$target_dir" = / ]; then target_dir=$exe_dir; else target_dir=$(dirname "$target_dir"); fi

cc=${FERRY_MINGW_CC:-x86_64-w64-mingw32-gcc}
dll=$target_dir/wine-support/bcryptprimitives.dll
if [ ! -e "$dll" ] || [ "$here/bcryptprimitives.c" -nt "$dll" ]; then
    mkdir -p "$(dirname "$dll")"
    "$cc" -shared -O2 -o "$dll.tmp.$$" "$here/bcryptprimitives.c" -ladvapi32
    mv -f "$dll.tmp.$$" "$dll"
fi
place_dll() {
    if ! cmp -s "$dll" "$1/bcryptprimitives.dll"; then
        cp -f "$dll" "$1/bcryptprimitives.dll.tmp.$$" && mv -f "$1/bcryptprimitives.dll.tmp.$$" "$1/bcryptprimitives.dll"
    fi
}
place_dll "$exe_dir"
if [ "$(basename "$exe_dir")" = deps ]; then place_dll "$(dirname "$exe_dir")"; fi

wine=${WINE:-}
if [ -z "$wine" ]; then
    if [ -x /usr/lib/wine/wine64 ]; then wine=/usr/lib/wine/wine64; else wine=$(command -v wine64 || command -v wine); fi
fi

export WINEPREFIX=${FERRY_WINEPREFIX:-$target_dir/wine-prefix}
export WINEDEBUG=${WINEDEBUG:--all}
# No Mono or Gecko install prompts when the prefix is created; no window is needed.
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
# Wine turns the Unix command line and environment into UTF-16 using the locale's character
# set: with a non-UTF-8 locale, non-ASCII file names would arrive mangled.
case "${LC_ALL:-${LC_CTYPE:-${LANG:-}}}" in
    *UTF-8* | *utf-8* | *UTF8* | *utf8*) ;;
    *) export LC_ALL=C.UTF-8 ;;
esac
mkdir -p "$WINEPREFIX"
exec "$wine" "$exe" "$@"
