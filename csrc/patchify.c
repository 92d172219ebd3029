/* patchify.c — im2col for the ViT patch embedding Conv2d(kernel = stride = patch). */
#include <string.h>
#include "vitc.h"

/* Below this many output floats the copy runs on the calling thread. */
#define PATCHIFY_PARALLEL_MIN_FLOATS 32768

/* pixels [batch, channels, height, width] -> out [batch*gh*gw, channels*ph*pw], gh = height/ph,
 * gw = width/pw; row (b, py, px) holds pixels[b, c, py*ph + ky, px*pw + kx] at (c*ph + ky)*pw + kx. */
void vitc_f32_patchify(int nthreads, size_t batch, size_t channels, size_t height, size_t width,
                       size_t ph, size_t pw, const float *pixels, float *out) {
    const size_t gh = height / ph, gw = width / pw, row_len = channels * ph * pw;
    const long long bands = (long long)(batch * gh); /* one band = one row of patches of one image */
    const int team = (bands > 1 && (size_t)bands * gw * row_len >= PATCHIFY_PARALLEL_MIN_FLOATS) ? nthreads : 1;
    (void)team; /* read only by the OpenMP pragma (a build without OpenMP ignores it) */
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
    for (long long band = 0; band < bands; band++) {
        const size_t b = (size_t)band / gh, py = (size_t)band % gh;
        float *dst_band = out + (size_t)band * gw * row_len;
        for (size_t c = 0; c < channels; c++)
            for (size_t ky = 0; ky < ph; ky++) {
                /* one source image row feeds the same (c, ky) segment of every patch in the band */
                const float *src = pixels + ((b * channels + c) * height + py * ph + ky) * width;
                float *dst = dst_band + (c * ph + ky) * pw;
                for (size_t px = 0; px < gw; px++) memcpy(dst + px * row_len, src + px * pw, pw * sizeof(float));
            }
    }
}
