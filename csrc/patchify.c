/* patchify.c — im2col for the ViT patch embedding Conv2d(kernel = stride = patch). */
#include <string.h>
#include "vitc.h"

void vitc_f32_patchify(int nthreads, size_t batch, size_t channels, size_t height, size_t width,
                       size_t ph, size_t pw, const float *pixels, float *out) {
    (void)nthreads;
    size_t gh = height / ph, gw = width / pw, row_len = channels * ph * pw;
    for (size_t b = 0; b < batch; b++)
        for (size_t py = 0; py < gh; py++)
            for (size_t px = 0; px < gw; px++) {
                float *dst = out + ((b * gh + py) * gw + px) * row_len;
                for (size_t c = 0; c < channels; c++)
                    for (size_t ky = 0; ky < ph; ky++) {
                        const float *src = pixels + ((b * channels + c) * height + py * ph + ky) * width + px * pw;
                        memcpy(dst + (c * ph + ky) * pw, src, pw * sizeof(float));
                    }
            }
}
