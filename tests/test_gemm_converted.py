"""Packing a weight already converted (bf16 bits / s8 values + scales, as save_pretrained stores it) gives the
same bytes as packing its float32 original: the two steps of gemm_pack_weight (convert, lay out) run apart,
on awkward shapes, for every bf16 / int8 kernel set this CPU can run, plus unpack and the boundary checks."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from lowp_reference import BF16, INT8, bf16_round, quantize  # noqa: E402

from vitc import _vitc  # noqa: E402

CASES = [pytest.param(s, d, id=f"{_vitc.DTYPES[d]}-{_vitc.KERNEL_SETS[s]}")
         for d in (BF16, INT8) for s in _vitc.kernel_sets(d)]
SHAPES = [(1, 1), (1, 7), (5, 3), (17, 31), (33, 67), (64, 130), (97, 257)]


def _weight(n, k, seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n, k)) * rng.uniform(0.01, 10, (n, 1))).astype(np.float32)
    if n > 2:
        w[1] = 0.0  # an all-zero channel: scale 0
        w[2, 0] = -np.abs(w[2]).max() * 3  # a channel whose max is negative
    return w


@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("kset,dtype", CASES)
def test_packing_converted_is_byte_identical(kset, dtype, n, k):
    w = _weight(n, k, n * 1000 + k)
    direct = _vitc.gemm_pack_weight(kset, dtype, w)
    q, scales = _vitc.gemm_convert_weight(dtype, w)
    packed = _vitc.gemm_pack_converted(kset, dtype, q, scales)
    assert packed.dtype == direct.dtype and packed.kernel_set == direct.kernel_set and packed.shape == (n, k)
    np.testing.assert_array_equal(packed.buffer, direct.buffer)
    back_q, back_scales = direct.unpack()
    np.testing.assert_array_equal(back_q, q)
    if dtype == INT8:
        np.testing.assert_array_equal(back_scales, scales)
        np.testing.assert_array_equal(packed.compensation(), 128 * q.astype(np.int64).sum(axis=1))
    else:
        assert back_scales is None


@pytest.mark.parametrize("dtype", [BF16, INT8])
def test_convert_matches_reference(dtype):
    w = _weight(33, 67, 3)
    q, scales = _vitc.gemm_convert_weight(dtype, w)
    if dtype == BF16:
        assert q.dtype == np.uint16 and scales is None
        want = bf16_round(w).view(np.uint32) >> 16
        np.testing.assert_array_equal(q, want.astype(np.uint16))
    else:
        want_q, want_scales = quantize(w)
        assert q.dtype == np.int8 and scales.dtype == np.float32
        np.testing.assert_array_equal(q, want_q)
        np.testing.assert_array_equal(scales, want_scales)
        assert scales[1] == 0 and not q[1].any()


@pytest.mark.parametrize("kset,dtype", CASES)
def test_gemm_on_converted_weight_is_bitwise_the_same(kset, dtype):
    w = _weight(70, 45, 7)
    a = np.random.default_rng(1).standard_normal((13, 45)).astype(np.float32)
    bias = np.linspace(-1, 1, 70, dtype=np.float32)
    outs = []
    for pw in (_vitc.gemm_pack_weight(kset, dtype, w),
               _vitc.gemm_pack_converted(kset, dtype, *_vitc.gemm_convert_weight(dtype, w))):
        outs.append(_vitc.gemm_packed(kset, 1, a, pw, np.empty((13, 70), np.float32), bias=bias, act=1))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_unpack_of_a_strided_source():
    w = _weight(20, 40, 5)[:, :33]  # rows with a stride > k
    q, scales = _vitc.gemm_convert_weight(INT8, w)
    want_q, want_scales = quantize(w)
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(scales, want_scales)


def test_boundary_checks():
    kset_bf16, kset_s8 = _vitc.kernel_sets(BF16)[-1], _vitc.kernel_sets(INT8)[-1]
    q8 = np.zeros((4, 8), np.int8)
    ok_scales = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="expected a C-contiguous 2-D int8 array for int8, got uint16"):
        _vitc.gemm_pack_converted(kset_s8, INT8, q8.view(np.uint16)[:, :4].copy(), ok_scales)
    with pytest.raises(ValueError, match="expected a C-contiguous 2-D uint16"):
        _vitc.gemm_pack_converted(kset_bf16, BF16, q8, None)
    with pytest.raises(ValueError, match="C-contiguous"):
        _vitc.gemm_pack_converted(kset_s8, INT8, np.zeros((4, 16), np.int8)[:, ::2], ok_scales)
    with pytest.raises(ValueError, match="scales: int8 needs"):
        _vitc.gemm_pack_converted(kset_s8, INT8, q8, None)
    with pytest.raises(ValueError, match="scales: int8 needs"):
        _vitc.gemm_pack_converted(kset_s8, INT8, q8, ok_scales.astype(np.float64))
    with pytest.raises(ValueError, match=r"scales: expected shape \(4,\), got \(5,\)"):
        _vitc.gemm_pack_converted(kset_s8, INT8, q8, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="bfloat16 weights have no scales"):
        _vitc.gemm_pack_converted(kset_bf16, BF16, np.zeros((4, 8), np.uint16), ok_scales)
    with pytest.raises(ValueError, match="non-empty"):
        _vitc.gemm_pack_converted(kset_s8, INT8, np.zeros((0, 8), np.int8), np.ones(0, np.float32))
    with pytest.raises(ValueError, match="float32 weights take gemm_pack_weight"):
        _vitc.gemm_pack_converted(0, 0, np.zeros((4, 8), np.float32))
    with pytest.raises(ValueError, match="overflow"):
        _vitc.gemm_pack_converted(kset_s8, INT8, np.zeros((1, _vitc.INT8_MAX_K + 1), np.int8),
                                  np.ones(1, np.float32))
    with pytest.raises(ValueError, match="not bfloat16"):
        _vitc.gemm_convert_weight(0, np.zeros((2, 2), np.float32))
    f32 = _vitc.gemm_pack_weight(0, 0, np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="float32 packed weight has no converted form"):
        f32.unpack()


@pytest.mark.parametrize("dtype", [BF16, INT8])
def test_convert_by_row_blocks_into_given_arrays(dtype):
    w = _weight(50, 37, 11)
    whole_q, whole_scales = _vitc.gemm_convert_weight(dtype, w)
    q = np.full_like(whole_q, 99)
    scales = np.full(50, np.nan, np.float32) if dtype == INT8 else None
    for r0 in range(0, 50, 16):
        got = _vitc.gemm_convert_weight(dtype, w[r0:r0 + 16], q[r0:r0 + 16],
                                        None if scales is None else scales[r0:r0 + 16])
        assert got[0].base is q or got[0].base is q.base
    np.testing.assert_array_equal(q, whole_q)
    if dtype == INT8:
        np.testing.assert_array_equal(scales, whole_scales)
    with pytest.raises(ValueError, match=r"q: expected shape \(50, 37\)"):
        _vitc.gemm_convert_weight(dtype, w, q[:10], scales)
    with pytest.raises(ValueError, match="q: expected a C-contiguous"):
        _vitc.gemm_convert_weight(dtype, w, q.astype(np.float32), scales)
    if dtype == INT8:
        with pytest.raises(ValueError, match=r"scales: expected shape \(50,\)"):
            _vitc.gemm_convert_weight(dtype, w, q, scales[:3])
    else:
        with pytest.raises(ValueError, match="bfloat16 weights have no scales"):
            _vitc.gemm_convert_weight(dtype, w, q, np.ones(50, np.float32))
