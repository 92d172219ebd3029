/* cpu_lowp.c — which reduced-precision kernel sets this CPU and build can run: the AVX-512 path (whose check
 * includes the OS's ZMM state) plus the AVX512_BF16 / AVX512_VNNI bits of the shared feature mask. */
#include "vitc.h"

int vitc_kset_supported(vitc_kset kset) {
    switch (kset) {
    case VITC_KSET_SCALAR:
    case VITC_KSET_AVX2:
    case VITC_KSET_AVX512: return vitc_isa_supported((vitc_isa)kset);
#if defined(VITC_HAVE_X86_KERNELS)
    case VITC_KSET_AVX512_BF16:
        return vitc_isa_supported(VITC_ISA_AVX512) && (vitc_cpu_features() & VITC_CPU_AVX512_BF16) != 0;
    case VITC_KSET_AVX512_VNNI:
        return vitc_isa_supported(VITC_ISA_AVX512) && (vitc_cpu_features() & VITC_CPU_AVX512_VNNI) != 0;
#endif
    default: return 0;
    }
}
