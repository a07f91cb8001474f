/*
 * A stand-in for Windows' bcryptprimitives.dll, for running Rust test
 * binaries under Wine.
 *
 * Rust's standard library on Windows gets its random bytes (HashMap keys)
 * from `ProcessPrng` in bcryptprimitives.dll. The Wine packaged in Debian
 * 12 has no such export, so every Rust program fails to start. This DLL
 * exports `ProcessPrng` and fills the buffer through `RtlGenRandom`
 * (exported by advapi32 as `SystemFunction036`), which Wine implements.
 *
 * Built by scripts/test-windows.sh:
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *       bcryptprimitives.c -ladvapi32
 * and found through WINEPATH.
 */
#include <stdlib.h>
#include <windows.h>

/* RtlGenRandom takes a 32-bit length. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        /* Callers trust the buffer (the real function cannot fail), so
         * never hand back unfilled bytes: stop the process instead. */
        if (!SystemFunction036(data, chunk))
            abort();
        data += chunk;
        length -= chunk;
    }
    return TRUE; /* as documented for the real ProcessPrng */
}
