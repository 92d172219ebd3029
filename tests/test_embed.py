"""Patch embeddings with nprefix prefix rows (none, CLS, CLS + distillation, CLS + registers) on every ISA
path vs a float64 numpy reference: prefix rows copied exactly, patch rows = (conv + bias) + position."""
import numpy as np
import pytest

from vitc import _vitc

# (batch, channels, height, width, ph, pw, dim): a grid with leftover pixels (13x11 by 4x3), one patch,
# dims off every tile width (37, 1) and a ViT-B/16-like row (768).
SHAPES = [(2, 3, 13, 11, 4, 3, 37), (1, 1, 4, 4, 4, 4, 1), (3, 2, 8, 10, 2, 5, 33), (1, 3, 32, 32, 16, 16, 768)]


def reference(pixels, ph, pw, w, bias, prefix, pos):
    b, c, h, wd = pixels.shape
    gh, gw = h // ph, wd // pw
    x = pixels[:, :, :gh * ph, :gw * pw].astype(np.float64).reshape(b, c, gh, ph, gw, pw)
    patches = x.transpose(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * ph * pw)
    rows = patches @ w.astype(np.float64).T
    scale = np.abs(patches) @ np.abs(w.astype(np.float64)).T
    if bias is not None:
        rows, scale = rows + bias, scale + np.abs(bias)
    if pos is not None:
        rows, scale = rows + pos, scale + np.abs(pos)
    return rows, scale


@pytest.mark.parametrize("nprefix", range(6))
@pytest.mark.parametrize("shape", SHAPES)
def test_embed_prefix_rows(isa, shape, nprefix):
    b, c, h, wd, ph, pw, dim = shape
    rng = np.random.default_rng(nprefix * 10 + dim)
    npatch = (h // ph) * (wd // pw)
    pixels = rng.standard_normal((b, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((dim, c * ph * pw)).astype(np.float32)
    bias = rng.standard_normal(dim).astype(np.float32)
    prefix = rng.standard_normal((nprefix, dim)).astype(np.float32)
    pos = rng.standard_normal((npatch, dim)).astype(np.float32)
    packed = _vitc.gemm_pack_nk(isa, w)
    for with_bias in (True, False):  # CLIP: no patch bias
        for with_pos in (True, False):  # DINOv2's registers and SigLIP's prefix-free rows need no C position
            out = np.full((b, nprefix + npatch, dim), np.nan, np.float32)
            ws = _vitc.aligned_empty(_vitc.embed_workspace_floats(b, c, h, wd, ph, pw))
            for nthreads in (1, 2):
                _vitc.embed(isa, nthreads, pixels, ph, pw, packed, bias if with_bias else None,
                            prefix if nprefix else None, pos if with_pos else None, out, ws)
                want, scale = reference(pixels, ph, pw, w, bias if with_bias else None, prefix,
                                        pos if with_pos else None)
                for i in range(b):
                    np.testing.assert_array_equal(out[i, :nprefix], prefix)
                err = np.abs(out[:, nprefix:] - want)
                assert (err <= 1e-5 * scale).all(), f"bias={with_bias} pos={with_pos}: max err {err.max()}"


def test_embed_rounding_order_is_conv_plus_bias_then_position(isa):
    """transformers adds the position rows to (conv + bias): a result rounded in another order differs."""
    rng = np.random.default_rng(3)
    dim = 16
    pixels = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    w = rng.standard_normal((dim, 16)).astype(np.float32)
    bias = (rng.standard_normal(dim) * 1e4).astype(np.float32)  # large terms: the order shows in the rounding
    pos = (-bias + rng.standard_normal(dim).astype(np.float32) * 1e-3).astype(np.float32)[None]
    out = np.empty((1, 1, dim), np.float32)
    ws = _vitc.aligned_empty(_vitc.embed_workspace_floats(1, 1, 4, 4, 4, 4))
    _vitc.embed(isa, 1, pixels, 4, 4, _vitc.gemm_pack_nk(isa, w), bias, None, pos, out, ws)
    conv = (pixels.reshape(1, 16).astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)
    want = (conv + bias) + pos  # float32, as torch
    other = conv + (bias + pos)  # the order vitc must not use: off by ~ulp(1e4) = 1e-3 here
    assert (np.abs(other - want) > 1e-5).sum() >= 4, "the test cannot tell the orders apart"
    # the kernel's float32 conv may differ from `conv` by ~1e-6 and flip a rare rounding of conv + bias
    assert (np.abs(out[0] - want) <= 1e-5).sum() >= dim - 1


def test_embed_rejects_bad_input(isa):
    pixels = np.zeros((1, 3, 8, 8), np.float32)
    packed = _vitc.gemm_pack_nk(isa, np.zeros((4, 48), np.float32))
    ws = _vitc.aligned_empty(_vitc.embed_workspace_floats(1, 3, 8, 8, 4, 4))
    out = np.zeros((1, 6, 4), np.float32)
    prefix, pos = np.zeros((2, 4), np.float32), np.zeros((4, 4), np.float32)
    _vitc.embed(isa, 1, pixels, 4, 4, packed, None, prefix, pos, out, ws)
    with pytest.raises(ValueError, match="prefix"):
        _vitc.embed(isa, 1, pixels, 4, 4, packed, None, np.zeros((2, 5), np.float32), pos, out, ws)
    with pytest.raises(ValueError, match="patch_pos"):
        _vitc.embed(isa, 1, pixels, 4, 4, packed, None, prefix, np.zeros((5, 4), np.float32), out, ws)
    with pytest.raises(ValueError, match="out"):
        _vitc.embed(isa, 1, pixels, 4, 4, packed, None, None, pos, out, ws)  # out has room for 2 prefix rows
    with pytest.raises(ValueError, match="patch_b"):
        _vitc.embed(isa, 1, pixels, 4, 4, packed, np.zeros(3, np.float32), prefix, pos, out, ws)
    with pytest.raises(ValueError, match="workspace"):
        _vitc.embed(isa, 1, pixels, 4, 4, packed, None, prefix, pos, out, ws[:10])
    with pytest.raises(ValueError, match="overlap"):
        _vitc.embed(isa, 1, pixels, 4, 4, packed, None, out[0, :2], pos, out, ws)
