/* cpu_lowp.c — which reduced-precision kernel sets this CPU and build can run: the AVX-512 path (whose check
 * includes the OS's ZMM state) plus the AVX512_BF16 / AVX512_VNNI / AMX bits of the shared feature mask. */
#if defined(__linux__)
#define _GNU_SOURCE /* syscall() */
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <stdatomic.h>

#include "vitc.h"

#if defined(VITC_HAVE_X86_KERNELS)
/* Linux hands out the AMX tile data state (8 KB per thread of context) only to processes that ask:
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). The permission is the whole process's (threads made
 * before and after, and forked children, have it); asked once, the answer cached (1 granted, -1 refused). */
static int amx_permitted(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    static _Atomic int answer = 0;
    int a = atomic_load_explicit(&answer, memory_order_acquire);
    if (!a) {
        const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
        a = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 1 : -1;
        atomic_store_explicit(&answer, a, memory_order_release);
    }
    return a == 1;
#else
    return 0; /* other systems: no AMX kernels (not tested there) */
#endif
}
#endif

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
    case VITC_KSET_AMX: {
        const uint64_t need = VITC_CPU_AMX_TILE | VITC_CPU_AMX_BF16 | VITC_CPU_AMX_INT8;
        return vitc_isa_supported(VITC_ISA_AVX512) && (vitc_cpu_features() & need) == need && amx_permitted();
    }
#endif
    default: return 0;
    }
}
