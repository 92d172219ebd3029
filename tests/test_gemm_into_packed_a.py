"""bf16 GEMM whose output goes straight into the next GEMM's packed A (fc1 -> GELU -> fc2 in bf16 models on
AMX): the same bytes as the float32 output packed by gemm_pack_a (awkward m and k, every activation the tile
kernel finishes, with and without bias, 1 and 2 threads), a row's bytes independent of m, close to a float64
reference, and a clear refusal where it does not apply (the model then takes the two-step path)."""
import os
import sys

import numpy as np
import pytest

from vitc import _vitc

sys.path.insert(0, os.path.dirname(__file__))
from lowp_reference import BF16, INT8, bf16_round, rand  # noqa: E402
from test_gemm import ACT_REF  # noqa: E402

AMX = _vitc.kernel_set_code("amx")
needs_amx = pytest.mark.skipif(AMX not in _vitc.kernel_sets(BF16), reason="this CPU (or OS) has no AMX")
ACTS = ["none", "gelu_erf", "gelu_tanh", "quick_gelu"]


def two_step(kset, nthreads, a, pw, n, bias, act):
    """gemm_packed into float32, then gemm_pack_a of that output (what the fused call must equal)."""
    m = a.shape[0]
    out = _vitc.gemm_packed(kset, nthreads, a, pw, np.empty((m, n), np.float32), bias=bias,
                            act=_vitc.ACT_CODES[act])
    apack = np.full(_vitc.gemm_packed_a_bytes(kset, BF16, m, n), 0xAB, np.uint8)
    return _vitc.gemm_pack_a(kset, BF16, out, apack), out


def fused(kset, nthreads, a, pw, n, bias, act):
    apack = np.full(_vitc.gemm_packed_a_bytes(kset, BF16, a.shape[0], n), 0xCD, np.uint8)
    return _vitc.gemm_into_packed_a(kset, nthreads, a, pw, apack, bias=bias, act=_vitc.ACT_CODES[act])


def unpack_rows(apack, m, n):
    """The bf16 values of a packed A (16-row tiles of 32 k values a row) as float32 [m, n]."""
    kq = apack.size // 4 // (-(-m // 32) * 32)
    bits = apack.view(np.uint16).reshape(-1, kq // 16, 16, 32).transpose(0, 2, 1, 3).reshape(-1, 2 * kq)
    return (bits[:m, :n].astype(np.uint32) << 16).view(np.float32)


@needs_amx
@pytest.mark.parametrize("m,k,n", [(1, 1, 32), (7, 13, 64), (31, 50, 96), (32, 33, 32), (33, 768, 128),
                                   (97, 65, 64), (197, 300, 160)])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("nthreads", [1, 2])
def test_same_bytes_as_output_then_pack(m, k, n, act, nthreads):
    rng = np.random.default_rng(m * 7 + k)
    a, w = rand(rng, m, k), rand(rng, n, k)
    bias = rand(rng, 1, n)[0] if k % 2 else None
    pw = _vitc.gemm_pack_weight(AMX, BF16, w)
    want, out = two_step(AMX, nthreads, a, pw, n, bias, act)
    got = fused(AMX, nthreads, a, pw, n, bias, act)
    assert np.array_equal(got, want)  # every byte: the values, the zero padding rows
    # and the values are the float32 output rounded to bf16, near the float64 reference
    assert np.array_equal(unpack_rows(got, m, n), bf16_round(out))
    ref = bf16_round(a).astype(np.float64) @ bf16_round(w).astype(np.float64).T
    ref = ACT_REF[_vitc.ACT_CODES[act]](ref + (0 if bias is None else bias))
    assert np.abs(unpack_rows(got, m, n) - ref).max() <= 1e-2 * max(1.0, np.abs(ref).max())


@needs_amx
def test_a_rows_bytes_do_not_depend_on_m_or_threads():
    rng = np.random.default_rng(5)
    a, w = rand(rng, 131, 96), rand(rng, 64, 96)
    pw = _vitc.gemm_pack_weight(AMX, BF16, w)
    whole = unpack_rows(fused(AMX, 2, a, pw, 64, None, "gelu_erf"), 131, 64)
    for m in (1, 17, 32, 65):
        part = unpack_rows(fused(AMX, 1, a[:m], pw, 64, None, "gelu_erf"), m, 64)
        assert np.array_equal(part.view(np.uint32), whole[:m].view(np.uint32))


def test_refuses_where_it_does_not_apply():
    rng = np.random.default_rng(6)
    a = rand(rng, 5, 40)
    for kset in _vitc.kernel_sets(BF16):
        pw = _vitc.gemm_pack_weight(kset, BF16, rand(rng, 64, 40))
        apack = np.zeros(_vitc.gemm_packed_a_bytes(kset, BF16, 5, 64) + 64, np.uint8)
        if kset != AMX:  # no tile kernel: the model packs fc1's float32 output instead
            with pytest.raises(ValueError, match="cannot write"):
                _vitc.gemm_into_packed_a(kset, 1, a, pw, apack)
    if AMX in _vitc.kernel_sets(BF16):
        odd = _vitc.gemm_pack_weight(AMX, BF16, rand(rng, 40, 40))  # n not a multiple of 32
        with pytest.raises(ValueError, match="n = 40"):
            _vitc.gemm_into_packed_a(AMX, 1, a, odd, np.zeros(1 << 16, np.uint8))
        s8 = _vitc.gemm_pack_weight(AMX, INT8, rand(rng, 64, 40))
        with pytest.raises(ValueError, match="cannot write"):
            _vitc.gemm_into_packed_a(AMX, 1, a, s8, np.zeros(1 << 16, np.uint8))
        pw = _vitc.gemm_pack_weight(AMX, BF16, rand(rng, 64, 40))
        with pytest.raises(ValueError, match="apack: needs"):
            _vitc.gemm_into_packed_a(AMX, 1, a, pw, np.zeros(10, np.uint8))
        with pytest.raises(ValueError, match="bias"):
            _vitc.gemm_into_packed_a(AMX, 1, a, pw, np.zeros(1 << 16, np.uint8), bias=np.zeros(3, np.float32))
