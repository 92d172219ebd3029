/* peak_probe.c — the instruction-throughput peaks bench_gemm.py reports efficiency against (compiled by
 * the benchmark at run time, never part of vitc). Each probe runs `iters` × 24 independent zmm
 * multiply-adds (24 accumulators cover the latency of every instruction here) and returns the operations
 * done: float32 FMA (2 flop/lane), vdpbf16ps (4 flop/lane), vpdpbusd (8 op/lane). */
#include <stdint.h>

#define REP24(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
                 X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
#define ZERO(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define CLOBBER(i) , "xmm" #i

#define PROBE(name, insn, ops_per_insn)                                                       \
    double name(int64_t iters) {                                                              \
        int64_t n = iters;                                                                    \
        __asm__ volatile(REP24(ZERO) "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"                   \
                         "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"                               \
                         "1:\n\t" REP24(insn) "dec %0\n\t"                                    \
                         "jnz 1b\n\t"                                                         \
                         : "+r"(n)                                                            \
                         :                                                                    \
                         : "cc" REP24(CLOBBER), "xmm30", "xmm31");                            \
        return (double)iters * 24.0 * (ops_per_insn);                                         \
    }

#define FMA(i) "vfmadd231ps %%zmm30, %%zmm31, %%zmm" #i "\n\t"
#define DPBF16(i) "vdpbf16ps %%zmm30, %%zmm31, %%zmm" #i "\n\t"
#define DPBUSD(i) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #i "\n\t"

PROBE(vitc_probe_fma_f32, FMA, 16 * 2)
PROBE(vitc_probe_dpbf16, DPBF16, 16 * 4)
PROBE(vitc_probe_dpbusd, DPBUSD, 16 * 8)
