"""The last encoder layer for the first token(s) of each image only: all that an embedding read from the CLS
token needs (`embed()` of ViT, CLIP and DINOv2 image towers).

A layer's other rows reach the first ones only through attention's keys and values, so LayerNorm-1 and the
QKV GEMM still run on every token, while the attention queries, the output projection, LayerNorm-2 and the MLP
run on the first rows alone: 11/12 of the last layer's GEMM work for ViT-B/32's 50 tokens, ~6% of the
forward. The same kernels in the same order as csrc/vit.c, each computing a row independently of the others,
so those rows come out bit for bit as from the whole layer (tests/test_first_tokens.py, every ISA and dtype)."""
import numpy as np

from . import _vitc


def last_layer_first_tokens(model, layer, hidden, batch, keep, nthreads):
    """hidden [batch*seq, D] holds the input of `layer` (an _vitc.EncoderLayer of `model`, standard MLP, no
    mask); the layer's output for the first `keep` tokens of each image is written over those rows, the other
    rows keep the input."""
    cfg = model.config
    d = cfg.hidden_size
    t = hidden.shape[0]
    s = t // batch
    a, w = layer.arrays, layer.weights
    kset = _vitc.kernel_set_code(w["qkv_w"].kernel_set)
    isa, eps = model._isa, float(cfg.layer_norm_eps)
    ln = np.empty((t, d), np.float32)
    _vitc.layernorm(isa, nthreads, hidden, a["ln1_g"], a["ln1_b"], eps, ln)
    qkv = np.empty((t, 3 * d), np.float32)
    _vitc.gemm_packed(kset, nthreads, ln, w["qkv_w"], qkv, bias=a.get("qkv_b"))
    rows = batch * keep
    q = np.ascontiguousarray(qkv.reshape(batch, s, 3 * d)[:, :keep, :d]).reshape(rows, d)
    ctx = np.empty((rows, d), np.float32)
    heads = cfg.num_attention_heads
    # the attention the whole layer runs (csrc/vit.c): bf16 on AMX for bf16/int8 models where it applies
    if w["qkv_w"].dtype != "float32" and _vitc.bf16_attention_applies(kset, d // heads):
        _vitc.bf16_attention(kset, nthreads, q, qkv[:, d:2 * d], qkv[:, 2 * d:], batch, heads, ctx)
    else:
        _vitc.attention_general(isa, nthreads, q, qkv[:, d:2 * d], qkv[:, 2 * d:], batch, heads, ctx)
    first = hidden.reshape(batch, s, d)[:, :keep]
    h = np.ascontiguousarray(first).reshape(rows, d)
    _vitc.gemm_packed(kset, nthreads, ctx, w["proj_w"], h, bias=a.get("proj_b"), residual=h, scale=a.get("ls1"))
    ln2 = np.empty((rows, d), np.float32)
    _vitc.layernorm(isa, nthreads, h, a["ln2_g"], a["ln2_b"], eps, ln2)
    inter = np.empty((rows, cfg.intermediate_size), np.float32)
    _vitc.gemm_packed(kset, nthreads, ln2, w["fc1_w"], inter, bias=a.get("fc1_b"), act=cfg.hidden_act_code)
    _vitc.gemm_packed(kset, nthreads, inter, w["fc2_w"], h, bias=a.get("fc2_b"), residual=h, scale=a.get("ls2"))
    first[...] = h.reshape(batch, keep, d)
