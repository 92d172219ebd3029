"""Tests the bf16 and int8 GEMM files share: the same shapes, epilogues, strides and thread checks, run against
each file's own float64 reference and bound. A test file defines the fixture `kset` (its kernel sets) and
CASES (its GemmCases), then imports the fixture `cases` and the test_* functions below, which pytest collects
there, or calls the GemmCases methods from its own tests where its parametrization differs."""
import numpy as np
import pytest

from lowp_reference import ACT_REF, check, rand, run
from vitc import _vitc


def epilogue_reference(pre, scale, bias=None, act=0, residual=None):
    """Bias, activation and residual on a float64 pre-activation, widening its error scale to match."""
    if bias is not None:
        pre, scale = pre + bias, scale + np.abs(bias)
    out = ACT_REF[act](pre)
    scale = scale * (1.2 if act else 1.0) + np.abs(out)
    if residual is not None:
        out, scale = out + residual, scale + np.abs(residual)
    return out, scale


def shapes(kset, dtype):
    """Awkward (m, n, k): around the kernel set's tile and past one AMX k block."""
    mr, nr, kr = _vitc.gemm_tile(kset, dtype)
    ms = [1, mr - 1, mr, mr + 1, 13, 197]
    ns = [1, nr - 1, nr + 1, 97]
    ks = [1, kr + 1, 7, 63, 97, 768]  # 97: past one AMX k block (32 bf16 / 64 int8 values), not a multiple
    return [(m, n, k) for m in ms for n in ns for k in ks if m >= 1]


class GemmCases:
    """The shared checks for one dtype: reference(a, w, bias, act, residual) -> (float64 out, error scale),
    tol, the bound relative to that scale, and seed, the first of the seeds the shared tests use."""

    def __init__(self, dtype, reference, tol, seed):
        self.dtype, self.reference, self.tol, self.seed = dtype, reference, tol, seed

    def common_validation(self, kset, rng):
        """A weight packed for kset runs only on kset, and A must have its k columns; returns the 5x7 A, the
        9x7 W, its packing and a 5x9 out for the dtype's own checks."""
        a, w = rand(rng, 5, 7), rand(rng, 9, 7)
        pw = _vitc.gemm_pack_weight(kset, self.dtype, w)
        out = np.empty((5, 9), np.float32)
        for other in range(len(_vitc.KERNEL_SETS)):
            if other != kset:
                with pytest.raises(ValueError, match="packed for kernel set"):
                    _vitc.gemm_packed(other, 1, a, pw, out)
        with pytest.raises(ValueError, match="columns"):
            _vitc.gemm_packed(kset, 1, rand(rng, 5, 8), pw, out)
        return a, w, pw, out

    def vit_shapes_two_threads(self, kset, rng, m, n, k):
        a, w = rand(rng, m, k), rand(rng, n, k)
        want, scale = self.reference(a, w)
        check(run(kset, self.dtype, a, w, nthreads=2), want, scale, self.tol, what=f"m={m} n={n} k={k}")

    def leading_dimensions(self, kset, rng, mnks, without_residual):
        """Row strides past the row width on A, W, residual and out; nothing written into out's padding."""
        for m, n, k in mnks:
            a, w, res = rand(rng, m, k, ld=k + 5), rand(rng, n, k, ld=k + 3), rand(rng, m, n, ld=n + 11)
            bias = rand(rng, 1, n)[0]
            for r in (res, None) if without_residual else (res,):
                big = np.full((m, n + 9), np.nan, dtype=np.float32)
                want, scale = self.reference(a, w, bias, 0, r)
                run(kset, self.dtype, a, w, nthreads=2, out=big[:, :n], bias=bias, residual=r)
                check(big[:, :n], want, scale, self.tol, what=f"m={m} n={n} k={k}")
                assert np.isnan(big[:, n:]).all(), "wrote past the row width into ldc padding"

    def epilogue_bias_activation(self, kset, rng, act):
        mr, nr, _ = _vitc.gemm_tile(kset, self.dtype)
        for m, n, k in [(mr + 1, nr + 3, 129), (197, 97, 64)]:
            a, w, bias = rand(rng, m, k) * np.float32(4 / np.sqrt(k)), rand(rng, n, k), rand(rng, 1, n)[0]
            for b in (None, bias):
                want, scale = self.reference(a, w, b, act)
                got = run(kset, self.dtype, a, w, nthreads=2, bias=b, act=act)
                check(got, want, scale, self.tol, what=f"act={act}")

    def residual_separate_and_in_place(self, kset, rng, act):
        for m, n, k in [(197, 97, 65), (1, 1, 1), (15, 33, 768)]:
            a, w, bias, res = rand(rng, m, k), rand(rng, n, k), rand(rng, 1, n)[0], rand(rng, m, n)
            want, scale = self.reference(a, w, bias, act, res)
            got = run(kset, self.dtype, a, w, bias=bias, act=act, residual=res)
            check(got, want, scale, self.tol, what="separate")
            for nthreads in (1, 2):
                out = res.copy()  # residual is out: out = act(a·Wᵀ + bias) + out
                run(kset, self.dtype, a, w, nthreads=nthreads, out=out, bias=bias, act=act, residual=out)
                check(out, want, scale, self.tol, what=f"in place, {nthreads} threads")

    def threads_agree_bitwise(self, kset, rng, m, n, k, act, with_residual):
        a, w, bias, res = rand(rng, m, k), rand(rng, n, k), rand(rng, 1, n)[0], rand(rng, m, n)
        res = res if with_residual else None
        pw = _vitc.gemm_pack_weight(kset, self.dtype, w)
        outs = [_vitc.gemm_packed(kset, t, a, pw, np.empty((m, n), np.float32), bias=bias, act=act, residual=res)
                for t in (1, 2, 3)]
        assert all(np.array_equal(outs[0], o) for o in outs[1:]), "1/2/3 threads differ"

    def pack_a_row_blocks_then_gemm(self, kset, rng):
        """The separate A-conversion entry a LayerNorm/GELU producer would call per finished row block gives
        the bits of the one-call GEMM (int8: with the row scales it writes)."""
        m, n, k = 197, 45, 300
        a, w = rand(rng, m, k), rand(rng, n, k)
        pw = _vitc.gemm_pack_weight(kset, self.dtype, w)
        mr = _vitc.gemm_tile(kset, self.dtype)[0]
        apack = np.full(_vitc.gemm_packed_a_bytes(kset, self.dtype, m, k), 0xAB, np.uint8)
        rs = np.full(-(-m // mr) * mr, np.nan, np.float32) if self.dtype == _vitc.dtype_code("int8") else None
        for r0, r1 in [(0, 5), (5, 100), (100, 197)]:
            _vitc.gemm_pack_a(kset, self.dtype, a[r0:r1], apack, rs, row0=r0)
        got = _vitc.gemm_packed_a(kset, 2, m, apack, rs, pw, np.empty((m, n), np.float32))
        assert np.array_equal(got, _vitc.gemm_packed(kset, 1, a, pw, np.empty((m, n), np.float32)))


@pytest.fixture
def cases(request):
    """The importing test module's GemmCases."""
    return request.module.CASES


@pytest.mark.parametrize("m,n,k", [(197, 2304, 768), (1576, 97, 768), (37, 768, 3072)])
def test_vit_shapes_two_threads(kset, cases, m, n, k):
    cases.vit_shapes_two_threads(kset, np.random.default_rng(cases.seed), m, n, k)


@pytest.mark.parametrize("act", range(8))
def test_epilogue_bias_activation(kset, cases, act):
    cases.epilogue_bias_activation(kset, np.random.default_rng(cases.seed + 2 + act), act)


@pytest.mark.parametrize("act", [0, 1])
def test_residual_separate_and_in_place(kset, cases, act):
    cases.residual_separate_and_in_place(kset, np.random.default_rng(cases.seed + 3), act)


def test_pack_a_row_blocks_then_gemm(kset, cases):
    cases.pack_a_row_blocks_then_gemm(kset, np.random.default_rng(cases.seed + 5))
