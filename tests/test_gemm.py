"""vitc's SGEMM against a float64 numpy reference, on every ISA path, on awkward shapes.

Error bound per element: 1e-5 relative to the magnitude of what was summed (|A|·|B| + |bias|, and
|residual|), which a float32 sum over k <= 3072 meets with margin but a wrong index or a missed k block
does not."""
import math

import numpy as np
import pytest

from vitc import _vitc

def tile(isa):
    """(MR, NR, KC) of the ISA's kernel set (csrc/kernel_table.c); NR is checked against the packed size."""
    t = _vitc.tile_sizes(isa)
    assert _vitc.gemm_packed_floats(isa, 1, 1) == t["gemm_nr"]
    return t["gemm_mr"], t["gemm_nr"], t["gemm_kc"]


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


_ACT_REF_BY_NAME = {
    "none": lambda x: x,
    "gelu_erf": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
    "quick_gelu": lambda x: x * _sigmoid(1.702 * x),
    "relu": lambda x: np.maximum(x, 0.0),
    "silu": lambda x: x * _sigmoid(x),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
}
GELU = _vitc.ACT_CODES["gelu_erf"]
ACT_REF = {_vitc.ACT_CODES[name]: ref for name, ref in _ACT_REF_BY_NAME.items()}


def rand(rng, *shape, ld=None):
    """float32 [shape] with values in [-1, 1); ld > width gives a strided view of a wider array."""
    rows, cols = shape
    if ld is None:
        return rng.uniform(-1, 1, size=shape).astype(np.float32)
    return rng.uniform(-1, 1, size=(rows, ld)).astype(np.float32)[:, :cols]


def reference(a, b_kn, bias=None, act=0, residual=None, col_scale=None):
    """float64 result and its per-element error scale."""
    a64, b64 = a.astype(np.float64), b_kn.astype(np.float64)
    pre = a64 @ b64
    scale = np.abs(a64) @ np.abs(b64)
    if bias is not None:
        pre = pre + bias.astype(np.float64)
        scale = scale + np.abs(bias.astype(np.float64))
    out = ACT_REF[act](pre)
    scale = scale * (1.2 if act else 1.0) + np.abs(out)  # |act'| <= 1.13 for the GELUs
    if col_scale is not None:
        out = out * col_scale.astype(np.float64)
        scale = scale * np.abs(col_scale.astype(np.float64))
    if residual is not None:
        out = out + residual.astype(np.float64)
        scale = scale + np.abs(residual.astype(np.float64))
    return out, scale


def check(got, want, scale, rtol=1e-5, what=""):
    err = np.abs(got.astype(np.float64) - want)
    bound = rtol * scale + 1e-30
    bad = ~(err <= bound)  # NaN (an element never written) counts as wrong
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise AssertionError(f"{what}: {bad.sum()} elements off, first at ({i},{j}): got {got[i, j]}, "
                             f"want {want[i, j]}, |err| {err[i, j]:.3g} > {bound[i, j]:.3g}")


def run_gemm(isa, a, b_kn, layout="nk", nthreads=1, out=None, serial=False, **ep):
    if layout == "nk":
        packed = _vitc.gemm_pack_nk(isa, np.ascontiguousarray(b_kn.T))
    else:
        packed = _vitc.gemm_pack_kn(isa, b_kn)
    m, n = a.shape[0], b_kn.shape[1]
    if out is None:
        out = np.full((m, n), np.nan, dtype=np.float32)  # C must never be read when there is no residual
    return _vitc.gemm(isa, nthreads, a, packed, n, out, serial=serial, **ep)


def small_shapes(isa):
    """Every m × n edge case for k within one KC block; a diagonal of them for k spanning KC blocks."""
    mr, nr, kc = tile(isa)
    ms = [1, mr - 1, mr, mr + 1, 37, 197]
    ns = [1, 7, nr - 1, nr, nr + 1, 97]
    shapes = [(m, n, k) for m in ms for n in ns for k in (1, 7, 300)]
    for k in (kc - 1, kc, kc + 1, 2 * kc + 3):
        shapes += [(m, n, k) for m, n in zip(ms, ns[::-1] if k % 2 else ns)]
    return shapes


def test_small_shapes_against_float64(isa):
    rng = np.random.default_rng(0)
    for m, n, k in small_shapes(isa):
        a, b = rand(rng, m, k), rand(rng, k, n)
        want, scale = reference(a, b)
        check(run_gemm(isa, a, b), want, scale, what=f"isa {isa} m={m} n={n} k={k}")


@pytest.mark.parametrize("m,n,k", [(197, 768, 768), (197, 97, 3072), (1576, 768, 768), (37, 2304, 768)])
def test_vit_shapes_against_float64(isa, m, n, k):
    rng = np.random.default_rng(1)
    a, b = rand(rng, m, k), rand(rng, k, n)
    want, scale = reference(a, b)
    check(run_gemm(isa, a, b, nthreads=2), want, scale, what=f"isa {isa} m={m} n={n} k={k}")


def test_blocks_and_next_panel_prefetch(isa):
    """Several MC row blocks, KC blocks, NR panels with a partial last one, and NC blocks (the kernel is handed
    the next panel to prefetch, wrapping to the block's first panel for the next rows), 1 and 2 threads."""
    t = _vitc.tile_sizes(isa)
    mr, nr, kc, mc, nc = (t[f"gemm_{x}"] for x in ("mr", "nr", "kc", "mc", "nc"))
    rng = np.random.default_rng(9)
    for m, n, k in [(2 * mc + mr + 3, 3 * nr + 7, kc + 5), (mc + 1, nc + nr + 1, 33), (mr + 1, 2 * nr, 2 * kc + 1)]:
        a, b = rand(rng, m, k), rand(rng, k, n)
        want, scale = reference(a, b)
        for nthreads in (1, 2):
            check(run_gemm(isa, a, b, nthreads=nthreads), want, scale, what=f"isa {isa} m={m} n={n} k={k}")


@pytest.mark.parametrize("layout", ["nk", "kn"])
def test_leading_dimensions_and_layouts(isa, layout):
    """a, b, out and residual as row slices of wider arrays (lda/ldb/ldc/ldr > width)."""
    rng = np.random.default_rng(2)
    mr, nr, kc = tile(isa)
    for m, n, k in [(mr + 1, nr + 1, kc + 1), (37, 97, 7), (1, 1, 1), (197, 2 * nr + 3, 300)]:
        a = rand(rng, m, k, ld=k + 5)
        b = rand(rng, k, n, ld=n + 3)
        res = rand(rng, m, n, ld=n + 11)
        bias = rand(rng, 1, n)[0]
        big = np.full((m, n + 9), np.nan, dtype=np.float32)
        out = big[:, :n]
        want, scale = reference(a, b, bias, 0, res)
        if layout == "nk":
            w = np.empty((n, k + 2), dtype=np.float32)[:, :k]
            w[...] = b.T
            packed = _vitc.gemm_pack_nk(isa, w)
        else:
            packed = _vitc.gemm_pack_kn(isa, b)
        _vitc.gemm(isa, 2, a, packed, n, out, bias=bias, residual=res)
        check(out, want, scale, what=f"isa {isa} {layout} m={m} n={n} k={k}")
        assert np.isnan(big[:, n:]).all(), "wrote past the row width into ldc padding"


def test_pack_nk_equals_pack_kn(isa):
    rng = np.random.default_rng(3)
    _, nr, _ = tile(isa)
    for n, k in [(1, 1), (nr + 1, 7), (97, 300)]:
        b = rand(rng, k, n)
        assert np.array_equal(_vitc.gemm_pack_nk(isa, np.ascontiguousarray(b.T)), _vitc.gemm_pack_kn(isa, b))
        assert _vitc.gemm_packed_floats(isa, n, k) == -(-n // nr) * nr * k


@pytest.mark.parametrize("act", range(len(_vitc.ACTIVATIONS)))
def test_epilogue_bias_activation(isa, act):
    rng = np.random.default_rng(4 + act)
    mr, nr, kc = tile(isa)
    for m, n, k in [(mr + 1, nr + 3, kc + 1), (197, 97, 64)]:
        a, b = rand(rng, m, k), rand(rng, k, n)
        a *= 4.0 / math.sqrt(k)  # pre-activations of order 1..4: every branch of the activation is used
        bias = rand(rng, 1, n)[0]
        for with_bias in (False, True):
            want, scale = reference(a, b, bias if with_bias else None, act)
            got = run_gemm(isa, a, b, nthreads=2, bias=bias if with_bias else None, act=act)
            check(got, want, scale, what=f"isa {isa} act={act} bias={with_bias} m={m} n={n} k={k}")


@pytest.mark.parametrize("act", range(len(_vitc.ACTIVATIONS)))
def test_residual_separate_and_in_place(isa, act):
    rng = np.random.default_rng(5)
    mr, nr, kc = tile(isa)
    for m, n, k in [(mr + 1, nr + 1, 2 * kc + 1), (197, 97, 7), (1, 1, 1)]:
        a, b = rand(rng, m, k), rand(rng, k, n)
        bias, res = rand(rng, 1, n)[0], rand(rng, m, n)
        want, scale = reference(a, b, bias, act, res)
        for nthreads in (1, 2):
            got = run_gemm(isa, a, b, nthreads=nthreads, bias=bias, act=act, residual=res)
            check(got, want, scale, what=f"separate residual isa {isa} act={act} m={m} n={n} k={k}")
            out = res.copy()  # residual is out: out = act(a·b + bias) + out
            run_gemm(isa, a, b, nthreads=nthreads, out=out, bias=bias, act=act, residual=out)
            check(out, want, scale, what=f"in-place residual isa {isa} act={act} m={m} n={n} k={k}")
            out_s = res.copy()
            run_gemm(isa, a, b, out=out_s, bias=bias, act=act, residual=out_s, serial=True)
            check(out_s, want, scale, what=f"in-place residual serial isa {isa} act={act} m={m} n={n} k={k}")


@pytest.mark.parametrize("act", range(len(_vitc.ACTIVATIONS)))
def test_layer_scale_epilogue(isa, act):
    """((a·b + bias) -> act) · scale + residual (Dinov2LayerScale's order), with a separate residual and
    with the residual being out (the full-k path), threaded and serial, on tile edges and KC blocks."""
    rng = np.random.default_rng(9)
    mr, nr, kc = tile(isa)
    for m, n, k in [(mr + 1, nr + 1, 2 * kc + 1), (197, 97, 7), (1, 1, 1), (2 * mr - 1, 3 * nr, 300)]:
        a, b = rand(rng, m, k), rand(rng, k, n)
        bias, res = rand(rng, 1, n)[0], rand(rng, m, n)
        col_scale = (rand(rng, 1, n)[0] * 1e-1).astype(np.float32)  # DINOv2's lambdas are ~1e-5..1
        want, scale = reference(a, b, bias, act, res, col_scale)
        want_nores, scale_nores = reference(a, b, bias, act, None, col_scale)
        got = run_gemm(isa, a, b, nthreads=2, bias=bias, act=act, scale=col_scale)
        check(got, want_nores, scale_nores, what=f"no residual isa {isa} act={act} m={m} n={n} k={k}")
        for nthreads, serial in [(1, False), (2, False), (1, True)]:
            got = run_gemm(isa, a, b, nthreads=nthreads, bias=bias, act=act, residual=res, scale=col_scale,
                           serial=serial)
            check(got, want, scale, what=f"separate residual isa {isa} act={act} m={m} n={n} k={k}")
            out = res.copy()
            run_gemm(isa, a, b, nthreads=nthreads, out=out, bias=bias, act=act, residual=out, scale=col_scale,
                     serial=serial)
            check(out, want, scale, what=f"in-place residual isa {isa} act={act} m={m} n={n} k={k}")
    with pytest.raises(ValueError, match="scale"):
        run_gemm(isa, a, b, scale=np.ones(n + 1, np.float32))


# A packed once and shared by the threads (the first three; then DINOv2-S's qkv and proj at batch 1, whose
# grids balance_grid picks), per-thread packing of an A over the 8M-float shared limit (2M floats;
# 2800×3073), and a problem too small to thread at all.
@pytest.mark.parametrize("m,n,k", [(197, 768, 768), (1576, 97, 300), (15, 2304, 65), (257, 1152, 384),
                                   (257, 384, 384), (2800, 9, 3073), (3, 5, 3072)])
def test_threads_and_serial_agree_bitwise(isa, m, n, k):
    rng = np.random.default_rng(6)
    a, b = rand(rng, m, k), rand(rng, k, n)
    bias, res = rand(rng, 1, n)[0], rand(rng, m, n)
    packed = _vitc.gemm_pack_nk(isa, np.ascontiguousarray(b.T))
    outs = []
    for nthreads, serial in [(1, False), (2, False), (3, False), (1, True)]:
        out = np.empty((m, n), dtype=np.float32)
        _vitc.gemm(isa, nthreads, a, packed, n, out, bias=bias, act=GELU, residual=res, serial=serial)
        outs.append(out)
    for o in outs[1:]:
        assert np.array_equal(outs[0], o), "threaded / serial results differ"
    want, scale = reference(a, b, bias, GELU, res)
    check(outs[0], want, scale, what=f"isa {isa}")


# The layer-scaled residual onto C itself (DINOv2's proj and fc2: the full-k path): A shared by the threads
# (k <= KC), per-thread static rectangles (k > KC), and M split with N narrow (batch 8's fc2 shape, smaller).
@pytest.mark.parametrize("m,n,k", [(257, 384, 384), (257, 97, 1536), (40, 5, 3100), (1030, 64, 1536)])
def test_full_k_threads_and_serial_agree_bitwise(isa, m, n, k):
    rng = np.random.default_rng(8)
    a, b = rand(rng, m, k), rand(rng, k, n)
    bias, res = rand(rng, 1, n)[0], rand(rng, m, n)
    col_scale = (rand(rng, 1, n)[0] * 1e-1).astype(np.float32)
    packed = _vitc.gemm_pack_nk(isa, np.ascontiguousarray(b.T))
    outs = []
    for nthreads, serial in [(1, False), (2, False), (3, False), (1, True)]:
        out = res.copy()
        _vitc.gemm(isa, nthreads, a, packed, n, out, bias=bias, act=GELU, residual=out, serial=serial,
                   scale=col_scale)
        outs.append(out)
    for o in outs[1:]:
        assert np.array_equal(outs[0], o), "threaded / serial results differ"
    want, scale = reference(a, b, bias, GELU, res, col_scale)
    check(outs[0], want, scale, what=f"isa {isa}")


def test_isas_agree(isa):
    """Every path against the scalar one (on top of each against float64)."""
    rng = np.random.default_rng(7)
    a, b = rand(rng, 197, 300), rand(rng, 300, 97)
    got = run_gemm(isa, a, b)
    ref = run_gemm(_vitc.ISA_CODES["scalar"], a, b)
    _, scale = reference(a, b)
    check(got, ref.astype(np.float64), 2 * scale, what=f"isa {isa} vs scalar")


def test_validation_errors(isa):
    rng = np.random.default_rng(8)
    a, b = rand(rng, 5, 7), rand(rng, 7, 9)
    packed = _vitc.gemm_pack_kn(isa, b)
    out = np.empty((5, 9), dtype=np.float32)
    with pytest.raises(ValueError, match="packed"):
        _vitc.gemm(isa, 1, a, packed[:-1], 9, out)
    with pytest.raises(ValueError, match="packed"):
        _vitc.gemm(isa, 1, rand(rng, 5, 8), packed, 9, out)  # k does not match the packing
    with pytest.raises(ValueError, match="out"):
        _vitc.gemm(isa, 1, a, packed, 9, np.empty((5, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="bias"):
        _vitc.gemm(isa, 1, a, packed, 9, out, bias=np.zeros(8, dtype=np.float32))
    with pytest.raises(ValueError, match="residual"):
        _vitc.gemm(isa, 1, a, packed, 9, out, residual=np.zeros((4, 9), dtype=np.float32))
    with pytest.raises(ValueError, match="nthreads"):
        _vitc.gemm(isa, 0, a, packed, 9, out)
    with pytest.raises(ValueError, match="activation"):
        _vitc.gemm(isa, 1, a, packed, 9, out, act=len(_vitc.ACTIVATIONS))
    big = np.zeros((5, 20), dtype=np.float32)
    with pytest.raises(ValueError, match="overlap"):
        _vitc.gemm(isa, 1, big[:, :7], packed, 9, big[:, 7:16])  # out overlaps a
    with pytest.raises(ValueError, match="residual"):
        _vitc.gemm(isa, 1, a, packed, 9, big[:, :9], residual=big[:, 1:10])  # partial overlap
    with pytest.raises(ValueError):
        _vitc.gemm(isa, 1, a[:, ::2], packed, 9, out)  # non-contiguous rows
