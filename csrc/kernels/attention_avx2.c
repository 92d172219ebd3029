/* attention_avx2.c — AVX2+FMA attention head kernel: 6×16 register tiles (see attention_body.h). */
#include <math.h>
#include "attention_kernels.h"
#include "vmath_avx2.h"
#define ATT_MR VITC_ATTENTION_MR_AVX2
#include "attention_body.h"
