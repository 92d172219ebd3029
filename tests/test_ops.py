"""Activations, LayerNorm and softmax on every ISA path vs float64 numpy references."""
import math

import numpy as np
import pytest

from vitc import _vitc

F32_MIN = float(np.finfo(np.float32).tiny)
ACT = {name: code for code, name in enumerate(_vitc.ACTIVATIONS)}
QUICK_C = float(np.float32(1.702))  # torch multiplies by 1.702 in float32
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _mul_sigmoid(m, u):
    """m * sigmoid(u) in float64 without overflow or cancellation."""
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, m / (1 + e), m * e / (1 + e))


def reference(name, x32):
    """float64 value of each activation at the float32 inputs; limits at -inf (-0) as vitc defines."""
    x = x32.astype(np.float64)
    with np.errstate(all="ignore"):
        if name == "gelu_erf":
            y = 0.5 * x * _erfc(-x / math.sqrt(2)).astype(np.float64)
        elif name == "gelu_tanh":
            y = _mul_sigmoid(x, 2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))  # = 0.5x(1+tanh)
        elif name == "quick_gelu":
            y = _mul_sigmoid(x, QUICK_C * x)
        elif name == "relu":
            y = np.where(x > 0, x, np.where(x == 0, x, 0.0))
        elif name == "silu":
            y = _mul_sigmoid(x, x)
        elif name == "tanh":
            y = np.tanh(x)
        elif name == "sigmoid":
            y = _mul_sigmoid(np.ones_like(x), x)
        else:
            y = x.copy()
        if name in ("gelu_erf", "gelu_tanh", "quick_gelu", "silu"):
            y = np.where(x == -np.inf, -0.0, np.where(x == np.inf, np.inf, y))
        y = np.where(np.isnan(x), np.nan, y)
    return y


def ulp_error(got, ref):
    """|got - ref| in float32 ulps of ref (subnormal spacing below FLT_MIN); 0 where both agree on
    inf/NaN, inf where they disagree."""
    got = got.astype(np.float64)
    ref32 = np.abs(ref).astype(np.float32)
    ulp = np.spacing(np.maximum(ref32, np.float32(F32_MIN))).astype(np.float64)
    with np.errstate(all="ignore"):
        err = np.abs(got - ref) / ulp
    same_special = (np.isnan(got) & np.isnan(ref)) | (np.isinf(got) & (got == ref))
    err = np.where(same_special, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def sweep():
    dense = np.linspace(-20, 20, 160_001, dtype=np.float32)
    mags = np.logspace(-45, 38.5, 4001).astype(np.float32)
    specials = np.array([0.0, -0.0, 1e-45, -1e-45, F32_MIN, -F32_MIN, 1e-30, -1e-30, 3.4e38, -3.4e38,
                         np.inf, -np.inf, np.nan, 0.55, -0.55, 15.0, -15.0, 88.7, -88.7, 89.5, -89.5,
                         -92.0, -104.0, -110.0], dtype=np.float32)
    return np.concatenate([dense, mags, -mags, specials])


GELU_ERF_TAIL = float(np.float32(13.146238))  # csrc/kernels/ops_kernels.h: flushed beyond (no subnormals)


def flushed_gelu_erf_ok(x, got, ref):
    """Where gelu_erf flushes (x <= -TAIL, |x| Phi(-|x|) < 1.0002 FLT_MIN): exactly -0 is right."""
    tail = x <= -GELU_ERF_TAIL
    assert (np.abs(ref[tail]) < 1.0002 * F32_MIN).all()
    return tail & (got == 0) & np.signbit(got)


# allowed ulps per activation (measured maxima are reported by test_activation_report). gelu_erf: float
# Horner of its degree-4/5 rational alone errs up to ~5 ulps (measured max over this sweep plus 4M random
# normals x4: 6.04, the 2026-12 exp form before it 6.23)
ULP_TOL = {"gelu_erf": 6.5, "gelu_tanh": 6, "quick_gelu": 4, "relu": 0, "silu": 4, "tanh": 3, "sigmoid": 3}


@pytest.mark.parametrize("name", [n for n in _vitc.ACTIVATIONS if n != "none"])
def test_activation_ulps(isa, name):
    x = sweep()
    got = _vitc.activation(isa, ACT[name], x.copy())
    err = ulp_error(got, reference(name, x))
    if name == "gelu_erf":
        err = np.where(flushed_gelu_erf_ok(x, got, reference(name, x)), 0.0, err)
    tol = ULP_TOL[name]
    bad = err > tol
    assert not bad.any(), (f"{name}: {bad.sum()} inputs over tolerance, worst x={x[np.argmax(err)]!r} "
                           f"got={got[np.argmax(err)]!r} ref={reference(name, x[[np.argmax(err)]])[0]!r} "
                           f"err={err.max():.1f} ulp")


def test_activation_report(isa, capsys):
    """Max ulp error per activation on this ISA (printed with -s; the bounds are asserted above)."""
    x = sweep()
    for name in _vitc.ACTIVATIONS[1:]:
        got = _vitc.activation(isa, ACT[name], x.copy())
        ref = reference(name, x)
        err = ulp_error(got, ref)
        if name == "gelu_erf":
            err = np.where(flushed_gelu_erf_ok(x, got, ref), 0.0, err)
        dense = np.abs(x) <= 20
        rel = np.abs(got[dense] - ref[dense]) / np.maximum(np.abs(ref[dense]), 1e-30)
        with capsys.disabled():
            print(f"\n[isa {_vitc.ISA_NAMES[isa]}] {name:10s} max {err.max():6.2f} ulp  "
                  f"max rel (|x|<=20) {rel.max():.2e}", end="")
        assert np.isfinite(err).all()


@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 31, 33, 64, 1000])
def test_activation_lengths_and_neighbours(isa, n):
    """Every length (vector body + masked tail) gives the same value per element; bytes past n untouched."""
    rng = np.random.default_rng(n)
    for name in ("gelu_erf", "silu", "tanh"):
        buf = rng.standard_normal(n + 8).astype(np.float32) * 4
        x = buf[:n].copy()
        guard = buf[n:].copy()
        out = _vitc.activation(isa, ACT[name], buf[:n])
        assert np.array_equal(buf[n:], guard)
        single = np.array([_vitc.activation(isa, ACT[name], np.array([v], np.float32))[0] for v in x])
        np.testing.assert_array_equal(out, single)
        assert (ulp_error(out, reference(name, x)) <= ULP_TOL[name]).all()


def test_gelu_erf_huge_inputs_never_subnormal(isa):
    """|x| up to 1e30 and +-inf: gelu = x exactly above the tail, -0 below it, never a subnormal (they cost
    microcode assists: fc1 ran 2.2x slower on such inputs); NaN in -> NaN out (as torch). torch gives NaN
    at +-inf too; vitc keeps the limits +inf and -0."""
    mags = np.concatenate([np.linspace(12, 16, 40_001), np.logspace(1, 30, 2001),
                           [GELU_ERF_TAIL, np.nextafter(np.float32(GELU_ERF_TAIL), np.float32(0)), 3.4e38]])
    x = np.concatenate([mags, -mags, [np.inf, -np.inf, np.nan, -np.nan]]).astype(np.float32)
    got = _vitc.activation(isa, ACT["gelu_erf"], x.copy())
    assert not ((got != 0) & (np.abs(got) < F32_MIN)).any(), "subnormal results"
    big = x >= GELU_ERF_TAIL
    np.testing.assert_array_equal(got[big], x[big])
    small = x <= -GELU_ERF_TAIL
    assert (got[small] == 0).all() and np.signbit(got[small]).all()
    assert np.isnan(got[np.isnan(x)]).all()
    inside = np.abs(x) < GELU_ERF_TAIL
    assert (ulp_error(got[inside], reference("gelu_erf", x[inside])) <= ULP_TOL["gelu_erf"]).all()
    # the GEMM tile epilogue (fc1 + bias + gelu) takes the same path: pre-activations of +-1e30 and +-inf
    pre = x[::97].reshape(-1, 1)
    out = _vitc.gemm(isa, 1, pre, _vitc.gemm_pack_kn(isa, np.ones((1, 3), np.float32)), 3,
                     np.empty((pre.shape[0], 3), np.float32), act=ACT["gelu_erf"])
    ref_rows = _vitc.activation(isa, ACT["gelu_erf"], pre[:, 0].copy())
    np.testing.assert_array_equal(out, np.repeat(ref_rows[:, None], 3, axis=1))


def test_activation_none_is_identity(isa):
    x = np.linspace(-3, 3, 37, dtype=np.float32)
    np.testing.assert_array_equal(_vitc.activation(isa, ACT["none"], x.copy()), x)


# ---- LayerNorm --------------------------------------------------------------------------------------
def layernorm_ref(x, g, b, eps):
    x = x.astype(np.float64)
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


@pytest.mark.parametrize("dim", [1, 2, 7, 15, 16, 17, 33, 768, 1000])
@pytest.mark.parametrize("rows", [1, 3, 197])
def test_layernorm(isa, rows, dim):
    rng = np.random.default_rng(rows * 1000 + dim)
    x = rng.standard_normal((rows, dim + 5)).astype(np.float32)[:, :dim]  # ld > width
    g = rng.standard_normal(dim).astype(np.float32)
    b = rng.standard_normal(dim).astype(np.float32)
    out = np.full((rows, dim + 3), 7.0, np.float32)
    for nthreads in (1, 2):
        y = _vitc.layernorm(isa, nthreads, x, g, b, 1e-5, out[:, :dim])
        ref = layernorm_ref(x, g, b, 1e-5)
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=2e-6 * np.abs(ref).max() + 1e-7)
        assert (out[:, dim:] == 7.0).all(), "wrote past the row width"
    y1 = _vitc.layernorm(isa, 1, x, g, b, 1e-5, np.empty((rows, dim), np.float32))
    y2 = _vitc.layernorm(isa, 2, x, g, b, 1e-5, np.empty((rows, dim), np.float32))
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("dim", [17, 768])
def test_layernorm_large_offset_and_in_place(isa, dim):
    rng = np.random.default_rng(dim)
    x = (1e4 + rng.standard_normal((197, dim))).astype(np.float32)
    x[:, dim // 2] = 1e4 + 40.0  # an outlier: the shift value is not the mean
    g = rng.uniform(0.5, 2, dim).astype(np.float32)
    b = rng.standard_normal(dim).astype(np.float32)
    ref = layernorm_ref(x, g, b, 1e-12)
    xi = x.copy()
    y = _vitc.layernorm(isa, 2, xi, g, b, 1e-12, xi)
    assert y.ctypes.data == xi.ctypes.data
    np.testing.assert_allclose(xi, ref, rtol=1e-5, atol=3e-6 * np.abs(ref).max())


def test_layernorm_constant_row_gives_beta(isa):
    x = np.full((3, 33), 5.5, np.float32)
    g = np.ones(33, np.float32)
    b = np.arange(33, dtype=np.float32)
    y = _vitc.layernorm(isa, 1, x, g, b, 1e-6, np.empty_like(x))
    np.testing.assert_array_equal(y, np.broadcast_to(b, (3, 33)))


# ---- softmax ----------------------------------------------------------------------------------------
def softmax_ref(x, scale):
    z = x.astype(np.float64) * float(np.float32(scale))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n", [1, 7, 16, 17, 197, 1000])
def test_softmax(isa, n):
    rng = np.random.default_rng(n)
    rows = 5
    buf = (rng.standard_normal((rows, n + 9)) * 6).astype(np.float32)
    x = buf[:, :n]
    x[1] += 1e4                       # large values: max subtraction
    if n > 2:
        x[2, ::3] = -np.inf           # masked entries
        x[3, :n - 1] = -np.inf        # only one finite entry
    ref = softmax_ref(x, 0.125)
    guard = buf[:, n:].copy()
    got = _vitc.softmax_rows(isa, x, 0.125)
    assert np.array_equal(buf[:, n:], guard), "wrote past the row width"
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-8)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=2e-6)


def test_softmax_scales(isa):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 37)).astype(np.float32) * 30
    for scale in (1.0, 0.05, -0.7, 3.0):
        np.testing.assert_allclose(_vitc.softmax_rows(isa, x.copy(), scale), softmax_ref(x, scale),
                                   rtol=3e-6, atol=1e-9)


def test_softmax_all_masked_row_is_nan_like_torch(isa):
    x = np.full((2, 19), -np.inf, np.float32)
    x[1, 3] = 0.0
    got = _vitc.softmax_rows(isa, x)
    assert np.isnan(got[0]).all()
    np.testing.assert_array_equal(got[1], np.eye(19, dtype=np.float32)[3])


# ---- binding validation -----------------------------------------------------------------------------
def test_row_ops_reject_bad_input(isa):
    x = np.ones((3, 8), np.float32)
    g = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="gamma"):
        _vitc.layernorm(isa, 1, x, g[:7], g, 1e-5, np.empty_like(x))
    with pytest.raises(ValueError, match="out"):
        _vitc.layernorm(isa, 1, x, g, g, 1e-5, np.empty((3, 9), np.float32))
    with pytest.raises(ValueError, match="eps"):
        _vitc.layernorm(isa, 1, x, g, g, 0.0, np.empty_like(x))
    with pytest.raises(ValueError, match="nthreads"):
        _vitc.layernorm(isa, 0, x, g, g, 1e-5, np.empty_like(x))
    base = np.ones(32, np.float32)
    with pytest.raises(ValueError, match="overlap"):
        _vitc.layernorm(isa, 1, base[:24].reshape(3, 8), g, g, 1e-5, base[1:25].reshape(3, 8))
    with pytest.raises(ValueError, match="non-empty"):
        _vitc.softmax_rows(isa, np.ones((0, 4), np.float32))
    with pytest.raises(ValueError, match="activation"):
        _vitc.activation(isa, 99, np.ones(4, np.float32))
    with pytest.raises((ValueError, TypeError)):
        _vitc.activation(isa, 1, np.ones(4, np.float64))
    with pytest.raises(ValueError, match="ISA"):
        _vitc.activation(7, 1, np.ones(4, np.float32))


@pytest.mark.parametrize("rows,hidden", [(1, 1), (3, 7), (5, 16), (197, 33), (2, 1536)])
def test_swiglu(isa, rows, hidden):
    """silu(gate) · up (Dinov2SwiGLUFFN, [gate | up] = chunk(2)), into a new buffer and in place."""
    rng = np.random.default_rng(rows * 1000 + hidden)
    x = (rng.standard_normal((rows, 2 * hidden + 3)) * 4).astype(np.float32)[:, :2 * hidden]  # ldx > 2h
    g, u = x[:, :hidden].astype(np.float64), x[:, hidden:].astype(np.float64)
    want = g / (1.0 + np.exp(-g)) * u
    bound = 8e-7 * np.abs(want) + 1e-37  # silu within 4 ulp (test_activation_ulps), then one product rounding
    out = np.full((rows, hidden + 2), np.nan, np.float32)[:, :hidden]
    _vitc.swiglu(isa, x, out)
    assert (np.abs(out - want) <= bound).all()
    inplace = x.copy()
    _vitc.swiglu(isa, inplace, inplace[:, :hidden])
    np.testing.assert_array_equal(inplace[:, :hidden], out)
    np.testing.assert_array_equal(inplace[:, hidden:], x[:, hidden:])  # up half untouched
    with pytest.raises(ValueError, match="out"):
        _vitc.swiglu(isa, x, np.empty((rows, hidden + 1), np.float32))
    with pytest.raises(ValueError, match="swiglu"):
        _vitc.swiglu(isa, x[:, :2 * hidden - 1], out)
    with pytest.raises(ValueError, match="overlap"):
        _vitc.swiglu(isa, inplace, inplace[:, 1:hidden + 1]) if hidden > 1 else _vitc.swiglu(
            isa, inplace, inplace[:, hidden:])
