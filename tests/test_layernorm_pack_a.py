"""LayerNorm fused with the reduced-precision GEMM's A conversion (the model's LayerNorms before qkv and fc1 in
bf16/int8): the same float32 output as layernorm and the same packed A (and int8 row scales) as gemm_pack_a of
it, bit for bit, for every kernel set of both dtypes and every LayerNorm ISA, on awkward row counts (a row
block per panel, the last one short) and widths, 1 and 2 threads; and a clear error for bad arguments."""
import os
import sys

import numpy as np
import pytest

from vitc import _vitc

sys.path.insert(0, os.path.dirname(__file__))
from lowp_reference import BF16, INT8, rand  # noqa: E402

KSETS = [pytest.param(dtype, s, id=f"{'bf16' if dtype == BF16 else 'int8'}-{_vitc.KERNEL_SETS[s]}")
         for dtype in (BF16, INT8) for s in _vitc.kernel_sets(dtype)]


@pytest.mark.parametrize("dtype,kset", KSETS)
@pytest.mark.parametrize("m,dim", [(1, 8), (13, 37), (31, 64), (33, 100), (197, 768)])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_same_bits_as_layernorm_then_pack(isa, dtype, kset, m, dim, nthreads):
    rng = np.random.default_rng(m + dim)
    x = rand(rng, m, dim) * 3 + 1
    gamma, beta = rand(rng, 1, dim)[0] * 2, rand(rng, 1, dim)[0]
    want_y = _vitc.layernorm(isa, 1, x, gamma, beta, 1e-6, np.empty((m, dim), np.float32))
    mr, _, _ = _vitc.gemm_tile(kset, dtype)
    m_pad = -(-m // mr) * mr
    want_s = np.zeros(m_pad, np.float32)
    want_a, other = (np.full(_vitc.gemm_packed_a_bytes(kset, dtype, m, dim), fill, np.uint8) for fill in (0xAB, 0))
    for buf in (want_a, other):
        _vitc.gemm_pack_a(kset, dtype, want_y, buf, want_s if dtype == INT8 else None)
    written = want_a == other  # the bytes gemm_pack_a writes (the buffer is rounded up to 64 bytes)
    assert written[:m * dim // 4].all()
    y = np.full((m, dim), np.nan, np.float32)
    apack, scales = _vitc.layernorm_pack_a(kset, dtype, isa, nthreads, x, gamma, beta, 1e-6, y)
    assert np.array_equal(y.view(np.uint32), want_y.view(np.uint32))
    assert np.array_equal(apack[written], want_a[written])
    if dtype == INT8:
        assert np.array_equal(scales[:m].view(np.uint32), want_s[:m].view(np.uint32))
    else:
        assert scales is None


def test_bad_arguments_raise():
    kset = _vitc.kernel_sets(BF16)[-1]
    x, g = np.ones((4, 8), np.float32), np.ones(8, np.float32)
    isa = _vitc.kernel_set_code("scalar")
    with pytest.raises(ValueError, match="gamma"):
        _vitc.layernorm_pack_a(kset, BF16, isa, 1, x, np.ones(7, np.float32), g, 1e-6, np.empty_like(x))
    with pytest.raises(ValueError, match="out"):
        _vitc.layernorm_pack_a(kset, BF16, isa, 1, x, g, g, 1e-6, np.empty((4, 9), np.float32))
    with pytest.raises(ValueError, match="overlap"):
        _vitc.layernorm_pack_a(kset, BF16, isa, 1, x, g, g, 1e-6, x)
    with pytest.raises(ValueError, match="float32"):
        _vitc.layernorm_pack_a(_vitc.kernel_set_code("scalar"), 0, isa, 1, x, g, g, 1e-6, np.empty_like(x))
