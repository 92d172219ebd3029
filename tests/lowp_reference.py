"""float64 references of the reduced-precision GEMMs' math (bf16 rounding, int8 per-row/per-channel
quantization), written independently of csrc/ from the definitions in csrc/vitc.h, plus the kernel-set
fixtures both test files use."""
import numpy as np
import pytest

from test_gemm import ACT_REF, check, rand  # noqa: F401  (shared with the float32 tests)
from vitc import _vitc

BF16, INT8 = _vitc.dtype_code("bfloat16"), _vitc.dtype_code("int8")


def kernel_set_params(dtype):
    """pytest params: every kernel set this build and CPU can run for dtype (each forced in turn)."""
    return [pytest.param(s, id=_vitc.KERNEL_SETS[s]) for s in _vitc.kernel_sets(dtype)]


def bf16_round(x):
    """float32 -> nearest-even bfloat16, as float32 (no NaN in the tests)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32).reshape(np.shape(x))


def quantize(x):
    """Symmetric s8 per row of x (float32 arithmetic, as the kernels): (q int64, scale float32 per row)."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=1)
    scale = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int64)
    return q, scale


def int8_reference(a, w):
    """Exact int64 sums of the quantized operands and the float64 dequantized product A·Wᵀ."""
    qa, sa = quantize(a)
    qw, sw = quantize(w)
    acc = qa @ qw.T
    return acc, acc.astype(np.float64) * sa.astype(np.float64)[:, None] * sw.astype(np.float64)[None, :]


def run(kset, dtype, a, w, nthreads=1, out=None, **ep):
    pw = _vitc.gemm_pack_weight(kset, dtype, w)
    if out is None:
        out = np.full((a.shape[0], w.shape[0]), np.nan, dtype=np.float32)
    return _vitc.gemm_packed(kset, nthreads, a, pw, out, **ep)
