/* cpu.c — which kernels this build has, which the CPU can run, and the OpenMP thread count.
 * Detection follows the usual recipe: cpuid feature bits AND xgetbv, because the OS must have
 * enabled the YMM/ZMM/tile register state before those instructions are safe to run. */
#include <stdatomic.h>
#include "vitc.h"

#ifdef _OPENMP
#include <omp.h>
#endif

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

/* cpuid feature bits, kept only where xgetbv says the OS saves the registers they use. */
static uint64_t detect_features(void) {
    unsigned r[4];
    cpuid_count(0, 0, r);
    const unsigned max_leaf = r[0];
    if (max_leaf < 1) return 0;
    cpuid_count(1, 0, r);
    const unsigned ecx1 = r[2];
    if (!((ecx1 >> 27) & 1) || !((ecx1 >> 28) & 1)) return 0; /* OSXSAVE and AVX: else no YMM at all */
    const unsigned long long xcr0 = read_xcr0();
    const int ymm_state = (xcr0 & 0x6) == 0x6;         /* SSE + AVX state */
    const int zmm_state = (xcr0 & 0xe0) == 0xe0;       /* opmask, ZMM_Hi256, Hi16_ZMM */
    const int tile_state = (xcr0 & 0x60000) == 0x60000; /* XTILECFG, XTILEDATA */
    if (!ymm_state) return 0;
    uint64_t f = 0;
    if ((ecx1 >> 12) & 1) f |= VITC_CPU_FMA;
    if ((ecx1 >> 29) & 1) f |= VITC_CPU_F16C;
    if (max_leaf < 7) return f;
    cpuid_count(7, 0, r);
    const unsigned max_sub7 = r[0], ebx7 = r[1], ecx7 = r[2], edx7 = r[3];
    unsigned eax71 = 0;
    if (max_sub7 >= 1) {
        cpuid_count(7, 1, r);
        eax71 = r[0];
    }
    if ((ebx7 >> 5) & 1) f |= VITC_CPU_AVX2;
    if ((eax71 >> 4) & 1) f |= VITC_CPU_AVX_VNNI;
    if (zmm_state) {
        if ((ebx7 >> 16) & 1) f |= VITC_CPU_AVX512F;
        if ((ebx7 >> 17) & 1) f |= VITC_CPU_AVX512DQ;
        if ((ebx7 >> 30) & 1) f |= VITC_CPU_AVX512BW;
        if ((ebx7 >> 31) & 1) f |= VITC_CPU_AVX512VL;
        if ((ecx7 >> 11) & 1) f |= VITC_CPU_AVX512_VNNI;
        if ((eax71 >> 5) & 1) f |= VITC_CPU_AVX512_BF16;
    }
    if (tile_state) {
        if ((edx7 >> 24) & 1) f |= VITC_CPU_AMX_TILE;
        if ((edx7 >> 22) & 1) f |= VITC_CPU_AMX_BF16;
        if ((edx7 >> 25) & 1) f |= VITC_CPU_AMX_INT8;
    }
    return f;
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

/* Detected once; the answer cannot change while the process runs. Bit 63 marks "detected", so a
 * racing first call at worst detects twice and stores the same value. */
#define FEATURES_DETECTED ((uint64_t)1 << 63)
uint64_t vitc_cpu_features(void) {
    static _Atomic uint64_t cached = 0;
    uint64_t f = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!f) {
#if defined(VITC_X86)
        f = detect_features() | FEATURES_DETECTED;
#else
        f = FEATURES_DETECTED;
#endif
        atomic_store_explicit(&cached, f, memory_order_relaxed);
    }
    return f & ~FEATURES_DETECTED;
}

const char *vitc_cpu_feature_name(int bit) {
    static const char *const names[VITC_CPU_FEATURE_COUNT] = {
        "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "avx512_vnni",
        "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"};
    return bit >= 0 && bit < VITC_CPU_FEATURE_COUNT ? names[bit] : NULL;
}

uint64_t vitc_isa_required_features(vitc_isa isa) {
    const uint64_t avx2 = VITC_CPU_AVX2 | VITC_CPU_FMA;
    switch (isa) {
    case VITC_ISA_SCALAR: return 0;
    case VITC_ISA_AVX2: return avx2;
    case VITC_ISA_AVX512:
        return avx2 | VITC_CPU_AVX512F | VITC_CPU_AVX512DQ | VITC_CPU_AVX512BW | VITC_CPU_AVX512VL;
    }
    return 0;
}

int vitc_isa_supported(vitc_isa isa) {
    if (!vitc_isa_compiled(isa)) return 0;
    const uint64_t need = vitc_isa_required_features(isa);
    return (vitc_cpu_features() & need) == need;
}

vitc_isa vitc_isa_best(void) {
    if (vitc_isa_supported(VITC_ISA_AVX512)) return VITC_ISA_AVX512;
    if (vitc_isa_supported(VITC_ISA_AVX2)) return VITC_ISA_AVX2;
    return VITC_ISA_SCALAR;
}

const char *vitc_isa_name(vitc_isa isa) {
    static const char *const names[VITC_ISA_COUNT] = {"scalar", "avx2", "avx512"};
    return (unsigned)isa < VITC_ISA_COUNT ? names[isa] : "unknown";
}

int vitc_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int vitc_omp_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
