"""Patchify (im2col for Conv2d kernel = stride = patch) vs a numpy reshape/transpose reference."""
import numpy as np
import pytest

from vitc import _vitc


def patchify_ref(pixels, ph, pw):
    b, c, h, w = pixels.shape
    gh, gw = h // ph, w // pw
    x = pixels[:, :, :gh * ph, :gw * pw].reshape(b, c, gh, ph, gw, pw)
    return x.transpose(0, 2, 4, 1, 3, 5).reshape(b * gh * gw, c * ph * pw)


@pytest.mark.parametrize("b,c,h,w,ph,pw", [
    (1, 3, 224, 224, 16, 16),   # ViT-B/16
    (2, 3, 32, 32, 8, 8),
    (1, 1, 7, 7, 7, 7),         # one patch
    (3, 2, 10, 13, 3, 4),       # non-square patches, leftover rows and columns
    (1, 4, 5, 9, 2, 1),
    (2, 3, 17, 16, 16, 16),     # one leftover row
])
def test_patchify(b, c, h, w, ph, pw):
    rng = np.random.default_rng(h * w + ph)
    pixels = rng.standard_normal((b, c, h, w)).astype(np.float32)
    ref = patchify_ref(pixels, ph, pw)
    for nthreads in (1, 2):
        out = _vitc.patchify(nthreads, pixels, ph, pw)
        np.testing.assert_array_equal(out, ref)


def test_patchify_rejects_bad_input():
    pixels = np.ones((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        _vitc.patchify(1, pixels, 9, 2)
    with pytest.raises(ValueError, match="does not fit"):
        _vitc.patchify(1, pixels, 0, 2)
    with pytest.raises(ValueError, match="nthreads"):
        _vitc.patchify(0, pixels, 2, 2)
    with pytest.raises(ValueError):
        _vitc.patchify(1, np.ones((1, 3, 8, 8), np.float64), 2, 2)
