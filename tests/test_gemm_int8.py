"""int8 GEMM (s8 weights per output channel, A quantized per row at run time, u8 = q + 128 with the
128·colsum compensation, int32 sums dequantized in the epilogue) on every kernel set that can run here
(vpdpbusd, the vpmaddwd AVX-512 / AVX2 fallbacks and the portable loops).

Integer accumulation is checked EXACTLY: with operands whose quantization is exact and whose scales are
powers of two, the float32 output is the int64 reference sum times a power of two, bit for bit (compensation
included: a wrong or missing 128·colsum, or a saturating u8×s8 pair sum, changes it)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from lowp_gemm_cases import GemmCases, epilogue_reference, shapes  # noqa: E402
from lowp_gemm_cases import (cases, test_epilogue_bias_activation, test_pack_a_row_blocks_then_gemm,  # noqa: E402,F401
                             test_residual_separate_and_in_place, test_vit_shapes_two_threads)  # (used here)
from lowp_reference import INT8, check, int8_reference, kernel_set_params, quantize, rand, run  # noqa: E402
from vitc import _vitc  # noqa: E402


@pytest.fixture(params=kernel_set_params(INT8))
def kset(request):
    return request.param


def exact_operands(rng, m, n, k, e=7, f=5, extreme=False):
    """A = qa·2^-e, W = qw·2^-f with every row's max |q| = 127: quantization recovers qa, qw exactly and the
    scales are 2^-e, 2^-f (127·2^-e / 127 is exact in float32)."""
    if extreme:  # every u8×s8 pair sums to 2·255·(-127): vpmaddubsw would saturate at -32768
        qa, qw = np.full((m, k), 127, np.int64), np.full((n, k), -127, np.int64)
    else:
        qa, qw = rng.integers(-127, 128, (m, k)), rng.integers(-127, 128, (n, k))
        qa[:, rng.integers(0, k)] = 127
        qw[np.arange(n), rng.integers(0, k, n)] = -127
    a = (qa * 2.0 ** -e).astype(np.float32)
    w = (qw * 2.0 ** -f).astype(np.float32)
    return a, w, (qa @ qw.T) * 2.0 ** -(e + f)


def dequant_reference(a, w, bias=None, act=0, residual=None):
    """float64 of the same quantized math and an error scale for the float32 epilogue."""
    acc, pre = int8_reference(a, w)
    _, sa = quantize(a)
    _, sw = quantize(w)
    scale = np.abs(acc).astype(np.float64) * sa[:, None] * sw[None, :] + np.abs(pre)
    return epilogue_reference(pre, scale, bias, act, residual)


CASES = GemmCases(INT8, dequant_reference, 1e-6, seed=23)


def test_tile_and_packed_size(kset):
    mr, nr, kr = _vitc.gemm_tile(kset, INT8)
    assert 1 <= mr <= 32 and nr in (16, 32) and kr in (2, 4)
    n_pad = -(-97 // nr) * nr
    data = -(-(n_pad * 768) // 64) * 64
    assert _vitc.gemm_packed_bytes(kset, INT8, 97, 768) == data + 2 * (-(-(n_pad * 4) // 64) * 64)


def test_integer_accumulation_exact(kset):
    rng = np.random.default_rng(20)
    for m, n, k in shapes(kset, INT8):
        a, w, want = exact_operands(rng, m, n, k)
        got = run(kset, INT8, a, w)
        assert np.array_equal(got, want.astype(np.float32)), f"m={m} n={n} k={k}: not exact"


@pytest.mark.parametrize("k", [768, 769])
def test_no_saturation_at_the_extremes(kset, k):
    a, w, want = exact_operands(None, 15, 33, k, e=0, f=0, extreme=True)
    assert want[0, 0] == -127 * 127 * k
    got = run(kset, INT8, a, w, nthreads=2)
    assert np.array_equal(got, want.astype(np.float32))


def test_quantization_matches_reference(kset):
    """Weight scales and compensation as the numpy definition gives them; A's row scales from pack_a too."""
    rng = np.random.default_rng(21)
    m, n, k = 29, 45, 131
    a, w = rand(rng, m, k) * np.float32(3), rand(rng, n, k)
    w[3] = 0.0  # an all-zero output channel: scale 0, no division by zero
    pw = _vitc.gemm_pack_weight(kset, INT8, w)
    qw, sw = quantize(w)
    assert np.array_equal(pw.scales(), sw)
    assert np.array_equal(pw.compensation(), 128 * qw.sum(axis=1))
    mr = _vitc.gemm_tile(kset, INT8)[0]
    apack = np.empty(_vitc.gemm_packed_a_bytes(kset, INT8, m, k), np.uint8)
    rs = np.full(-(-m // mr) * mr, np.nan, np.float32)
    _vitc.gemm_pack_a(kset, INT8, a, apack, rs)
    assert np.array_equal(rs[:m], quantize(a)[1])
    assert (rs[m:] == 0).all()


def test_float_inputs_against_float64(kset):
    rng = np.random.default_rng(22)
    for m, n, k in shapes(kset, INT8)[::3]:
        a, w = rand(rng, m, k), rand(rng, n, k)
        a[0] = 0.0  # a zero row quantizes to scale 0 and gives exactly 0 (+ bias)
        want, scale = dequant_reference(a, w)
        got = run(kset, INT8, a, w)
        check(got, want, scale, 1e-6, what=f"m={m} n={n} k={k}")
        assert (got[0] == 0).all()


def test_leading_dimensions(kset, cases):
    mr, nr, _ = _vitc.gemm_tile(kset, INT8)
    cases.leading_dimensions(kset, np.random.default_rng(cases.seed + 1),
                             [(mr + 1, nr + 1, 65), (37, 97, 7), (1, 1, 1)], without_residual=False)


@pytest.mark.parametrize("act", [0, 1])
def test_layer_scale_before_residual(kset, act):
    """out = act(a·Wᵀ + bias)·scale + residual (the epilogue's per-column scale), residual separate or out."""
    rng = np.random.default_rng(31)
    m, n, k = 37, 45, 129
    a, w, bias, res, sc = rand(rng, m, k), rand(rng, n, k), rand(rng, 1, n)[0], rand(rng, m, n), rand(rng, 1, n)[0]
    pre, scale = dequant_reference(a, w, bias, act)
    want = pre * sc + res
    scale = scale * np.abs(sc) + np.abs(res) + np.abs(want)
    check(run(kset, INT8, a, w, bias=bias, act=act, residual=res, scale=sc), want, scale, 1e-6, what="separate")
    out = res.copy()
    run(kset, INT8, a, w, nthreads=2, out=out, bias=bias, act=act, residual=out, scale=sc)
    check(out, want, scale, 1e-6, what="in place")


@pytest.mark.parametrize("m,n,k", [(197, 768, 768), (1576, 97, 300), (3, 5, 3072)])
def test_threads_agree_bitwise(kset, cases, m, n, k):
    cases.threads_agree_bitwise(kset, np.random.default_rng(cases.seed + 4), m, n, k, act=1, with_residual=True)


def test_kernel_sets_agree_bitwise(kset):
    """Same quantization, exact integer sums, same epilogue arithmetic: every kernel set gives the same bits."""
    rng = np.random.default_rng(29)
    a, w, bias = rand(rng, 197, 300), rand(rng, 97, 300), rand(rng, 1, 97)[0]
    ref = run(_vitc.kernel_sets(INT8)[0], INT8, a, w, bias=bias)
    assert np.array_equal(run(kset, INT8, a, w, bias=bias), ref)


def test_weights_take_a_quarter_of_float32(kset):
    f32 = _vitc.gemm_packed_bytes(_vitc.kernel_set_code("scalar"), 0, 768, 3072)
    assert _vitc.gemm_packed_bytes(kset, INT8, 768, 3072) <= f32 // 4 + 2 * 4 * 768 + 128


def test_mismatch_and_validation_errors(kset):
    a, w, pw, out = CASES.common_validation(kset, np.random.default_rng(30))
    with pytest.raises(ValueError, match="no int8 kernels"):
        _vitc.gemm_pack_weight(_vitc.kernel_set_code("avx512_bf16"), INT8, w)
    with pytest.raises(ValueError, match="overflow"):
        _vitc.gemm_pack_weight(kset, INT8, np.zeros((1, _vitc.INT8_MAX_K + 1), np.float32))
    apack = np.empty(_vitc.gemm_packed_a_bytes(kset, INT8, 5, 7), np.uint8)
    with pytest.raises(ValueError, match="row_scales"):
        _vitc.gemm_pack_a(kset, INT8, a, apack)
    with pytest.raises(ValueError, match="row_scales"):
        _vitc.gemm_packed_a(kset, 1, 5, apack, None, pw, out)
    with pytest.raises(ValueError, match="row_scales"):
        _vitc.gemm_packed_a(kset, 1, 5, apack, np.empty(1, np.float32), pw, out)
