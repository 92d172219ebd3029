/* attention_avx512.c — AVX-512 attention head kernel: 14×32 register tiles (see attention_body.h). */
#include <math.h>
#include "attention_kernels.h"
#include "vmath_avx512.h"
#define ATT_MR VITC_ATTENTION_MR_AVX512
#include "attention_body.h"
