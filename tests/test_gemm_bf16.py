"""bf16 GEMM (weights and A rounded to bf16, float32 sums) against a float64 reference of the same rounded
operands, on every kernel set that can run here (vdpbf16ps, and the AVX-512 / AVX2 / portable fallbacks),
on awkward shapes, with every epilogue. The products of bf16 values are exact in float32, so the only error
is float32 summation: the float32 tests' bound (1e-5 of Σ|a||w|) applies."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from lowp_gemm_cases import GemmCases, epilogue_reference, shapes  # noqa: E402
from lowp_gemm_cases import (cases, test_epilogue_bias_activation, test_pack_a_row_blocks_then_gemm,  # noqa: E402,F401
                             test_residual_separate_and_in_place, test_vit_shapes_two_threads)  # (used here)
from lowp_reference import BF16, bf16_round, check, kernel_set_params, rand, run  # noqa: E402
from vitc import _vitc  # noqa: E402

F32 = _vitc.dtype_code("float32")


@pytest.fixture(params=kernel_set_params(BF16))
def kset(request):
    return request.param


def reference(a, w, bias=None, act=0, residual=None):
    a64, w64 = bf16_round(a).astype(np.float64), bf16_round(w).astype(np.float64)
    return epilogue_reference(a64 @ w64.T, np.abs(a64) @ np.abs(w64).T, bias, act, residual)


CASES = GemmCases(BF16, reference, 1e-5, seed=11)


def test_tile_and_packed_size(kset):
    mr, nr, kr = _vitc.gemm_tile(kset, BF16)
    assert 1 <= mr <= 32 and nr in (16, 32) and kr in (1, 2)
    f32_bytes = (-(-97 // nr) * nr) * 768 * 4
    want = f32_bytes // 2 if kr == 2 else f32_bytes  # bf16 pairs, or widened to float32 at packing
    assert _vitc.gemm_packed_bytes(kset, BF16, 97, 768) == want


def test_shapes_against_float64(kset):
    rng = np.random.default_rng(10)
    for m, n, k in shapes(kset, BF16):
        a, w = rand(rng, m, k), rand(rng, n, k)
        want, scale = reference(a, w)
        check(run(kset, BF16, a, w), want, scale, 1e-5, what=f"{_vitc.KERNEL_SETS[kset]} m={m} n={n} k={k}")


def test_leading_dimensions(kset, cases):
    mr, nr, _ = _vitc.gemm_tile(kset, BF16)
    # also without a residual: AMX's full tiles go straight into C (row stride ldc)
    cases.leading_dimensions(kset, np.random.default_rng(cases.seed + 1),
                             [(mr + 1, nr + 1, 65), (37, 97, 7), (1, 1, 1), (2 * mr, 2 * nr, 33)],
                             without_residual=True)


@pytest.mark.parametrize("act", [0, 1])
@pytest.mark.parametrize("with_residual", [True, False])
@pytest.mark.parametrize("m,n,k", [(197, 768, 768), (1576, 97, 300), (3, 5, 3072)])
def test_threads_agree_bitwise(kset, cases, m, n, k, with_residual, act):
    cases.threads_agree_bitwise(kset, np.random.default_rng(cases.seed + 4), m, n, k, act, with_residual)


@pytest.mark.parametrize("with_bias", [True, False])
def test_residual_many_tiles_and_panels(kset, with_bias):
    """out = a·Wᵀ (+ bias) + residual over shapes with many full tiles per task and several panels per task
    (AMX: the accumulators start from the residual, the bias is added after, and each tile prefetches the
    next one's C rows and the next panel), an edge row tile and an edge panel; residual separate (its own
    row stride) and in place, 1 and 2 threads giving the same bits."""
    rng = np.random.default_rng(16)
    for m, n, k in [(197, 768, 768), (229, 131, 3072), (1576, 96, 62)]:
        a, w, res = rand(rng, m, k), rand(rng, n, k), rand(rng, m, n, ld=n + 7)
        bias = rand(rng, 1, n)[0] if with_bias else None
        want, scale = reference(a, w, bias, 0, res)
        pw = _vitc.gemm_pack_weight(kset, BF16, w)
        outs = []
        for nthreads in (1, 2):
            sep = _vitc.gemm_packed(kset, nthreads, a, pw, np.empty((m, n), np.float32), bias=bias, residual=res)
            check(sep, want, scale, 1e-5, what=f"separate m={m} n={n} k={k}")
            out = np.ascontiguousarray(res)
            _vitc.gemm_packed(kset, nthreads, a, pw, out, bias=bias, residual=out)
            check(out, want, scale, 1e-5, what=f"in place m={m} n={n} k={k}")
            outs += [sep, out]
        assert all(np.array_equal(outs[0], o) for o in outs[1:]), "threads or in place / separate differ"


def test_kernel_sets_agree(kset):
    rng = np.random.default_rng(17)
    a, w = rand(rng, 197, 300), rand(rng, 97, 300)
    want, scale = reference(a, w)
    check(run(kset, BF16, a, w), run(_vitc.kernel_sets(BF16)[0], BF16, a, w).astype(np.float64), 2 * scale, 1e-5)


def test_float32_handle_is_the_float32_gemm(isa):
    """dtype float32 through the handle packs byte for byte as gemm_pack_nk and computes the same bits."""
    rng = np.random.default_rng(18)
    a, w = rand(rng, 197, 300), rand(rng, 97, 300)
    pw = _vitc.gemm_pack_weight(isa, F32, w)
    packed = _vitc.gemm_pack_nk(isa, w)
    assert np.array_equal(pw.buffer.view(np.float32), packed)
    got = _vitc.gemm_packed(isa, 2, a, pw, np.empty((197, 97), np.float32), act=1)
    assert np.array_equal(got, _vitc.gemm(isa, 2, a, packed, 97, np.empty((197, 97), np.float32), act=1))


def test_mismatch_and_validation_errors(kset):
    a, w, pw, out = CASES.common_validation(kset, np.random.default_rng(19))
    vnni = _vitc.kernel_set_code("avx512_vnni")
    with pytest.raises(ValueError, match="no bfloat16 kernels"):
        _vitc.gemm_pack_weight(vnni, BF16, w)
    with pytest.raises(ValueError, match="out"):
        _vitc.gemm_packed(kset, 1, a, pw, np.empty((5, 8), np.float32))
    with pytest.raises(ValueError, match="bias"):
        _vitc.gemm_packed(kset, 1, a, pw, out, bias=np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="residual"):
        _vitc.gemm_packed(kset, 1, a, pw, out, residual=np.zeros((4, 9), np.float32))
    with pytest.raises(ValueError, match="workspace"):
        _vitc.gemm_packed(kset, 1, a, pw, out, workspace=np.empty(1, np.uint8))
    with pytest.raises(ValueError, match="activation"):
        _vitc.gemm_packed(kset, 1, a, pw, out, act=8)
    with pytest.raises(ValueError, match="unknown dtype"):
        _vitc.dtype_code("float16")
    with pytest.raises(ValueError, match="apack"):
        _vitc.gemm_packed_a(kset, 1, 5, np.empty(3, np.uint8), None, pw, out)


@pytest.mark.parametrize("epilogue", ["bias", "gelu", "residual"])
def test_a_rows_result_does_not_depend_on_m(kset, epilogue):
    """Rows [r0, r1) computed alone give the bits they get inside a larger A (a model's first-token path runs
    the last layer's rows alone): on AMX a row in a full 32-row tile and the same row in a last, shorter tile
    start their accumulators the same way."""
    rng = np.random.default_rng(17)
    m, n, k = 83, 96, 200
    a, w, bias, res = rand(rng, m, k), rand(rng, n, k), rand(rng, 1, n)[0], rand(rng, m, n)
    pw = _vitc.gemm_pack_weight(kset, BF16, w)
    ep = {"bias": bias, "act": 1 if epilogue == "gelu" else 0}

    def gemm(rows):
        out = res[rows].copy()
        return _vitc.gemm_packed(kset, 2, a[rows], pw, out, residual=out if epilogue == "residual" else None, **ep)

    full = gemm(slice(0, m))
    for r0, r1 in [(0, 1), (0, 5), (31, 33), (32, 47), (40, 83), (82, 83)]:
        assert np.array_equal(gemm(slice(r0, r1)), full[r0:r1]), f"rows {r0}:{r1}"
