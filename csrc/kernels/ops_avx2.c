/* ops_avx2.c — AVX2+FMA activation, softmax and LayerNorm row kernels (see ops_body.h). */
#include <math.h>
#include "ops_kernels.h"
#include "vmath_avx2.h"
#include "ops_body.h"
