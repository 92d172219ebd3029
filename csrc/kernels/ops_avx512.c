/* ops_avx512.c — AVX-512 activation, softmax and LayerNorm row kernels (see ops_body.h). */
#include <math.h>
#include "ops_kernels.h"
#include "vmath_avx512.h"
#include "ops_body.h"
