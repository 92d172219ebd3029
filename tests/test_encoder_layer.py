"""The C encoder layer's MLP kinds and layer scales (csrc/vit.c) on every ISA path: against a float64 numpy
reference, and against transformers' Dinov2Layer (SwiGLU FFN, LayerScale) in float32."""
import math

import numpy as np
import pytest

import torch  # noqa: E402  (a test dependency: CI installs it, never skip)
import transformers  # noqa: E402

from vitc import _vitc


def layernorm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def layer_reference(h, p, batch, heads, mlp, eps):
    """float64 pre-LN layer: h += ls1 · attn(LN1 h); h += ls2 · mlp(LN2 h) (ls = 1 when absent)."""
    p = {k: (None if v is None else v.astype(np.float64)) for k, v in p.items()}
    h = h.astype(np.float64)
    t, dim = h.shape
    seq, hd = t // batch, dim // heads
    x = layernorm(h, p["ln1_g"], p["ln1_b"], eps)
    qkv = x @ p["qkv_w"].T + p["qkv_b"]
    q, k, v = (qkv[:, i * dim:(i + 1) * dim].reshape(batch, seq, heads, hd).transpose(0, 2, 1, 3) for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    s = np.exp(s - s.max(-1, keepdims=True))
    ctx = ((s / s.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(t, dim)
    h = h + (ctx @ p["proj_w"].T + p["proj_b"]) * (1.0 if p.get("ls1") is None else p["ls1"])
    x = layernorm(h, p["ln2_g"], p["ln2_b"], eps)
    f = x @ p["fc1_w"].T + p["fc1_b"]
    if mlp == "swiglu":
        inter = f.shape[1] // 2
        f = silu(f[:, :inter]) * f[:, inter:]
    else:
        f = gelu(f)
    return h + (f @ p["fc2_w"].T + p["fc2_b"]) * (1.0 if p.get("ls2") is None else p["ls2"])


def make_layer(isa, params, dim, heads, inter, eps, mlp):
    packed = {k: (_vitc.gemm_pack_nk(isa, v) if k.endswith("_w") else v) for k, v in params.items()}
    return _vitc.EncoderLayer(isa, dim, heads, inter, eps, _vitc.ACT_CODES["gelu_erf"], packed, mlp=mlp)


def run_layer(layer, h, batch, nthreads=2):
    out = np.ascontiguousarray(h.copy())
    seq = h.shape[0] // batch
    ws = _vitc.aligned_empty(layer.workspace_floats(nthreads, batch, seq))
    layer.forward(nthreads, out, batch, ws)
    return out


def random_params(rng, dim, inter, mlp, with_ls):
    fc1_rows = 2 * inter if mlp == "swiglu" else inter
    r = lambda *s, m=1.0: (rng.standard_normal(s) * m).astype(np.float32)  # noqa: E731
    p = {"ln1_g": 1 + r(dim, m=0.2), "ln1_b": r(dim, m=0.2), "ln2_g": 1 + r(dim, m=0.2), "ln2_b": r(dim, m=0.2),
         "qkv_w": r(3 * dim, dim, m=dim ** -0.5), "qkv_b": r(3 * dim, m=0.2),
         "proj_w": r(dim, dim, m=dim ** -0.5), "proj_b": r(dim, m=0.2),
         "fc1_w": r(fc1_rows, dim, m=dim ** -0.5), "fc1_b": r(fc1_rows, m=0.2),
         "fc2_w": r(dim, inter, m=inter ** -0.5), "fc2_b": r(dim, m=0.2)}
    if with_ls:
        p["ls1"], p["ls2"] = r(dim, m=0.5), r(dim, m=0.5)
    return p


# (batch, seq, dim, heads, inter): tile edges (seq 15, 197 + registers = 201, dim 40 off every NR)
@pytest.mark.parametrize("batch,seq,dim,heads,inter", [(1, 15, 40, 5, 67), (2, 201, 64, 4, 88), (3, 1, 8, 2, 3)])
@pytest.mark.parametrize("mlp", ["standard", "swiglu"])
@pytest.mark.parametrize("with_ls", [False, True], ids=["no_ls", "layer_scale"])
def test_layer_against_float64(isa, batch, seq, dim, heads, inter, mlp, with_ls):
    rng = np.random.default_rng(batch * 100 + seq + dim)
    p = random_params(rng, dim, inter, mlp, with_ls)
    h = rng.standard_normal((batch * seq, dim)).astype(np.float32)
    want = layer_reference(h, p, batch, heads, mlp, 1e-6)
    layer = make_layer(isa, p, dim, heads, inter, 1e-6, mlp)
    got = run_layer(layer, h, batch)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
    np.testing.assert_array_equal(run_layer(layer, h, batch, nthreads=1), got)


def test_layer_rejects_bad_mlp_and_layer_scale(isa):
    rng = np.random.default_rng(0)
    p = random_params(rng, 8, 4, "swiglu", True)
    with pytest.raises(ValueError, match="MLP kind"):
        make_layer(isa, p, 8, 2, 4, 1e-6, "geglu")
    with pytest.raises(ValueError, match="fc1_b"):  # a standard MLP of width 4 expects 4 biases, not 8
        make_layer(isa, p, 8, 2, 4, 1e-6, "standard")
    p["ls2"] = p["ls2"][:7].copy()
    with pytest.raises(ValueError, match="ls2"):
        make_layer(isa, p, 8, 2, 4, 1e-6, "swiglu")


@pytest.mark.parametrize("use_swiglu", [False, True], ids=["mlp", "swiglu"])
def test_layer_matches_transformers_dinov2(isa, use_swiglu):
    """Dinov2Layer: LayerScale after each branch, SwiGLU FFN (hidden = (int(int(D·ratio)·2/3) + 7) // 8 · 8,
    gate | up rows concatenated as fc1), layer-scale values far from 1."""
    torch.manual_seed(0)
    cfg = transformers.Dinov2Config(hidden_size=48, num_attention_heads=4, mlp_ratio=4, use_swiglu_ffn=use_swiglu,
                                    layer_norm_eps=1e-6, hidden_act="gelu", attn_implementation="eager")
    ref = transformers.models.dinov2.modeling_dinov2.Dinov2Layer(cfg).eval()
    with torch.no_grad():
        for name, prm in ref.named_parameters():
            prm.copy_(torch.randn_like(prm) * (0.3 if prm.ndim == 1 else prm.shape[-1] ** -0.5)
                      + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    a = "attention."
    p = {"ln1_g": sd["norm1.weight"], "ln1_b": sd["norm1.bias"], "ln2_g": sd["norm2.weight"],
         "ln2_b": sd["norm2.bias"],
         "qkv_w": np.concatenate([sd[a + x + "_proj.weight"] for x in "qkv"]),
         "qkv_b": np.concatenate([sd[a + x + "_proj.bias"] for x in "qkv"]),
         "proj_w": sd[a + "o_proj.weight"], "proj_b": sd[a + "o_proj.bias"],
         "ls1": sd["layer_scale1.lambda1"], "ls2": sd["layer_scale2.lambda1"]}
    if use_swiglu:
        inter = (int(int(48 * 4) * 2 / 3) + 7) // 8 * 8
        assert sd["mlp.gate_proj.weight"].shape == (inter, 48)
        p["fc1_w"] = np.concatenate([sd["mlp.gate_proj.weight"], sd["mlp.up_proj.weight"]])
        p["fc1_b"] = np.concatenate([sd["mlp.gate_proj.bias"], sd["mlp.up_proj.bias"]])
        p["fc2_w"], p["fc2_b"] = sd["mlp.down_proj.weight"], sd["mlp.down_proj.bias"]
    else:
        inter = 48 * 4
        p["fc1_w"], p["fc1_b"] = sd["mlp.fc1.weight"], sd["mlp.fc1.bias"]
        p["fc2_w"], p["fc2_b"] = sd["mlp.fc2.weight"], sd["mlp.fc2.bias"]
    p = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in p.items()}
    batch, seq = 2, 1 + 4 + 36  # CLS + 4 registers + 6x6 patches
    h = np.random.default_rng(1).standard_normal((batch * seq, 48)).astype(np.float32)
    with torch.no_grad():
        out = ref(torch.from_numpy(h.reshape(batch, seq, 48)))
    want = (out[0] if isinstance(out, tuple) else out).numpy().reshape(batch * seq, 48)
    got = run_layer(make_layer(isa, p, 48, 4, inter, 1e-6, "swiglu" if use_swiglu else "standard"), h, batch)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
