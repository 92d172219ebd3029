/* cpu_lowp.c — which reduced-precision kernel sets this CPU and build can run. The one place that reads
 * the AVX512_BF16 / AVX512_VNNI cpuid bits: swap it for the shared feature mask (vitc_cpu_features) when
 * that lands. Both need the AVX-512 path (which already checks the OS's ZMM state with xgetbv). */
#include "vitc.h"

#if defined(VITC_HAVE_X86_KERNELS) && (defined(__x86_64__) || defined(_M_X64))
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif

static int cpuid7_bit(unsigned sub, int reg, int bit) {
    unsigned r[4] = {0, 0, 0, 0};
#if defined(_MSC_VER)
    int t[4];
    __cpuidex(t, 0, 0);
    if (t[0] < 7) return 0;
    __cpuidex(t, 7, (int)sub);
    for (int i = 0; i < 4; i++) r[i] = (unsigned)t[i];
#else
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, sub, r[0], r[1], r[2], r[3]);
#endif
    return (int)((r[reg] >> bit) & 1u);
}

static int avx512_bf16(void) { return cpuid7_bit(1, 0, 5); }  /* leaf 7.1 EAX[5] */
static int avx512_vnni(void) { return cpuid7_bit(0, 2, 11); } /* leaf 7.0 ECX[11] */
#else
static int avx512_bf16(void) { return 0; }
static int avx512_vnni(void) { return 0; }
#endif

int vitc_kset_supported(vitc_kset kset) {
    static int cached[VITC_KSET_COUNT] = {-1, -1, -1, -1, -1};
    if ((unsigned)kset >= VITC_KSET_COUNT) return 0;
    if (cached[kset] < 0) {
        switch (kset) {
        case VITC_KSET_SCALAR:
        case VITC_KSET_AVX2:
        case VITC_KSET_AVX512: cached[kset] = vitc_isa_supported((vitc_isa)kset); break;
        case VITC_KSET_AVX512_BF16: cached[kset] = vitc_isa_supported(VITC_ISA_AVX512) && avx512_bf16(); break;
        case VITC_KSET_AVX512_VNNI: cached[kset] = vitc_isa_supported(VITC_ISA_AVX512) && avx512_vnni(); break;
        }
    }
    return cached[kset];
}
