/*
 * A stand-in for Windows' bcryptprimitives.dll, for running ferry's Windows build under Wine 8.
 *
 * Rust's standard library (1.78 and newer) gets random numbers on Windows from
 * ProcessPrng in bcryptprimitives.dll. Debian 12's Wine 8.0 has no such DLL, so every Rust
 * Windows program dies at load time with STATUS_DLL_NOT_FOUND (c0000135). Real Windows
 * (10 and newer) has the DLL; this file is only for Wine, never shipped with ferry.
 *
 * ProcessPrng here calls RtlGenRandom (exported by advapi32 as SystemFunction036), which Wine
 * implements from the host's random source. scripts/wine/runner.sh builds it with
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c -ladvapi32
 * and puts it next to each .exe it runs (Windows loads a DLL from the exe's folder first).
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
