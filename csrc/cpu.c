/* cpu.c — which kernels this build has and which the CPU can run.
 * Detection follows the usual recipe: cpuid feature bits AND xgetbv, because the OS must have
 * enabled the YMM/ZMM register state before AVX2/AVX-512 instructions are safe to run. */
#include "vitc.h"

#if defined(__x86_64__) || defined(_M_X64)
#define VITC_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#include <immintrin.h>
#else
#include <cpuid.h>
#endif
#endif

#if defined(VITC_X86)
static void cpuid_count(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
    int t[4];
    __cpuidex(t, (int)leaf, (int)sub);
    for (int i = 0; i < 4; i++) r[i] = (unsigned)t[i];
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

static unsigned long long read_xcr0(void) {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
#endif
}

/* Detected once; the answer cannot change while the process runs. */
static int cpu_has(vitc_isa isa) {
    unsigned r[4];
    cpuid_count(0, 0, r);
    unsigned max_leaf = r[0];
    if (max_leaf < 7) return 0;
    cpuid_count(1, 0, r);
    int osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, fma = (r[2] >> 12) & 1;
    if (!osxsave || !avx) return 0;
    unsigned long long xcr0 = read_xcr0();
    int ymm_state = (xcr0 & 0x6) == 0x6;     /* SSE + AVX state */
    int zmm_state = (xcr0 & 0xe6) == 0xe6;   /* + opmask, ZMM_Hi256, Hi16_ZMM */
    cpuid_count(7, 0, r);
    int avx2 = (r[1] >> 5) & 1;
    int avx512f = (r[1] >> 16) & 1, avx512dq = (r[1] >> 17) & 1;
    int avx512bw = (r[1] >> 30) & 1, avx512vl = (r[1] >> 31) & 1;
    if (isa == VITC_ISA_AVX2) return ymm_state && avx2 && fma;
    if (isa == VITC_ISA_AVX512)
        return ymm_state && zmm_state && avx2 && fma && avx512f && avx512dq && avx512bw && avx512vl;
    return 0;
}
#endif

int vitc_isa_compiled(vitc_isa isa) {
    if (isa == VITC_ISA_SCALAR) return 1;
#if defined(VITC_HAVE_X86_KERNELS)
    return isa == VITC_ISA_AVX2 || isa == VITC_ISA_AVX512;
#else
    return 0;
#endif
}

int vitc_isa_supported(vitc_isa isa) {
    if (!vitc_isa_compiled(isa)) return 0;
    if (isa == VITC_ISA_SCALAR) return 1;
#if defined(VITC_X86)
    static int cached[VITC_ISA_COUNT] = {-1, -1, -1};
    if (cached[isa] < 0) cached[isa] = cpu_has(isa);
    return cached[isa];
#else
    return 0;
#endif
}

vitc_isa vitc_isa_best(void) {
    if (vitc_isa_supported(VITC_ISA_AVX512)) return VITC_ISA_AVX512;
    if (vitc_isa_supported(VITC_ISA_AVX2)) return VITC_ISA_AVX2;
    return VITC_ISA_SCALAR;
}

const char *vitc_isa_name(vitc_isa isa) {
    switch (isa) {
    case VITC_ISA_SCALAR: return "scalar";
    case VITC_ISA_AVX2: return "avx2";
    case VITC_ISA_AVX512: return "avx512";
    }
    return "unknown";
}
