/*
 * Test-only shim for running selgate.exe under Wine 8; never shipped.
 *
 * Rust's standard library on Windows draws randomness from ProcessPrng in
 * bcryptprimitives.dll, which Wine 8 does not provide. This one-function
 * DLL, placed next to the exe, provides it on top of SystemFunction036
 * (RtlGenRandom), which Wine does have. Real Windows has its own DLL and
 * never loads this file.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        /* RtlGenRandom takes a ULONG length: feed it in chunks. */
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
