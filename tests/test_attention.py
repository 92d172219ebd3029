"""Attention core on every ISA path vs a float64 numpy reference."""
import numpy as np
import pytest

from vitc import _vitc


def attention_ref(qkv, batch, heads, dim):
    """softmax(Q Kᵀ · head_dim^-0.5) V per (image, head), float64; returns out [T, dim], probs [B,H,S,S]."""
    t = qkv.shape[0]
    seq, hd = t // batch, dim // heads
    x = qkv[:, :3 * dim].astype(np.float64).reshape(batch, seq, 3, heads, hd)
    q, k, v = (x[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # [B, H, S, hd]
    s = q @ k.transpose(0, 1, 3, 2) * float(np.float32(1 / np.sqrt(np.float32(hd))))
    s -= s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    o = (p @ v).transpose(0, 2, 1, 3).reshape(t, dim)
    return o, p


# (batch, seq, heads, head_dim). The AVX-512 head kernel tiles 14 query rows × 32 columns (two vectors of
# 16), AVX2 6 × 16 (two of 8): seq below / at / above a row block (13, 14, 15, 29), head_dim of one full
# vector (16), a full tile (32), a full tile + a partial vector (40), a partial second vector (24), odd
# (7, 33), several tiles (80); several jobs per thread (the next job's rows are prefetched).
SHAPES = [(1, 1, 1, 1), (2, 5, 3, 7), (1, 197, 12, 64), (3, 17, 2, 16), (1, 50, 4, 33), (2, 13, 3, 24),
          (1, 15, 2, 16), (1, 29, 1, 32), (2, 14, 2, 40), (1, 64, 2, 80), (4, 6, 3, 3)]


@pytest.mark.parametrize("tight", [False, True], ids=["ld_gt_3dim", "ld_eq_3dim"])
@pytest.mark.parametrize("batch,seq,heads,hd", SHAPES)
def test_attention(isa, batch, seq, heads, hd, tight):
    rng = np.random.default_rng(seq * 100 + hd)
    dim = heads * hd
    t = batch * seq
    # tight: the last head's V ends its row and the buffer (the kernel reads V in place: no overread)
    qkv = (rng.standard_normal((t, 3 * dim + (0 if tight else 5))) * 1.5).astype(np.float32)
    ref_o, ref_p = attention_ref(qkv, batch, heads, dim)
    outs = []
    for nthreads in (1, 2):
        for with_probs in (False, True):
            out_buf = np.full((t, dim + 3), 9.0, np.float32)  # ldo > dim
            probs = np.full((batch, heads, seq, seq), 9.0, np.float32) if with_probs else None
            o = _vitc.attention(isa, nthreads, qkv, batch, heads, out_buf[:, :dim], probs)
            np.testing.assert_allclose(o, ref_o, rtol=1e-5, atol=2e-5 * np.abs(ref_o).max())
            assert (out_buf[:, dim:] == 9.0).all(), "wrote past the head columns"
            if with_probs:
                np.testing.assert_allclose(probs, ref_p, rtol=1e-5, atol=1e-7)
            outs.append(o.copy())
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])  # threads and probs don't change the result


def test_attention_large_scores(isa):
    """Scores up to ~±150 (softmax rows dominated by one entry, most exps underflow to 0): the max
    subtraction keeps every row finite. A float32 score s is itself only known to ~|s|·2^-24, and e^s
    turns that into a relative error: the tolerance grows with the largest score (~4e-5 here)."""
    batch, seq, heads, hd = 1, 41, 2, 20
    rng = np.random.default_rng(7)
    dim = heads * hd
    qkv = (rng.standard_normal((seq, 3 * dim)) * 6).astype(np.float32)
    ref_o, ref_p = attention_ref(qkv, batch, heads, dim)
    probs = np.empty((batch, heads, seq, seq), np.float32)
    o = _vitc.attention(isa, 1, qkv, batch, heads, np.empty((seq, dim), np.float32), probs)
    assert np.isfinite(o).all() and np.isfinite(probs).all()
    x = qkv.astype(np.float64).reshape(seq, 3, heads, hd)
    s_max = np.abs(np.einsum("ihd,jhd->hij", x[:, 0], x[:, 1])).max() / np.sqrt(hd)
    assert s_max > 100, "scores not large enough to test anything"
    rtol = max(1e-5, 4 * s_max * 2.0**-24)
    np.testing.assert_allclose(o, ref_o, rtol=rtol, atol=2e-5 * np.abs(ref_o).max())
    np.testing.assert_allclose(probs, ref_p, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_attention_rejects_bad_input(isa):
    qkv = np.ones((10, 3 * 8), np.float32)
    out = np.empty((10, 8), np.float32)
    with pytest.raises(ValueError, match="bad sizes"):
        _vitc.attention(isa, 1, qkv, 3, 2, out)           # 10 tokens not divisible by batch 3
    with pytest.raises(ValueError, match="bad sizes"):
        _vitc.attention(isa, 1, qkv, 2, 3, out)           # dim 8 not divisible by 3 heads
    with pytest.raises(ValueError, match="qkv"):
        _vitc.attention(isa, 1, qkv[:, :20], 2, 2, out)   # fewer than 3*dim columns
    with pytest.raises(ValueError, match="out"):
        _vitc.attention(isa, 1, qkv, 2, 2, np.empty((9, 8), np.float32))
    with pytest.raises(ValueError, match="probs"):
        _vitc.attention(isa, 1, qkv, 2, 2, out, np.empty((2, 2, 5, 4), np.float32))
    with pytest.raises(ValueError, match="nthreads"):
        _vitc.attention(isa, 0, qkv, 2, 2, out)
    with pytest.raises(ValueError, match="overlap"):
        _vitc.attention(isa, 1, qkv, 2, 2, qkv[:, :8])


# ---- general form: own query rows, seq_q != seq_kv, causal and key-padding masks --------------------------
def general_ref(q, k, v, batch, heads, dim, scale, causal=False, key_mask=None):
    """float64 softmax(scale · Q Kᵀ + mask) V as transformers' eager attention with an additive finfo.min
    mask: hidden keys get probability 0, a query that sees no key attends uniformly to all."""
    hd = dim // heads
    sq, skv = q.shape[0] // batch, k.shape[0] // batch

    def heads_of(x, s):
        return x[:, :dim].astype(np.float64).reshape(batch, s, heads, hd).transpose(0, 2, 1, 3)

    qh, kh, vh = heads_of(q, sq), heads_of(k, skv), heads_of(v, skv)
    s = qh @ kh.transpose(0, 1, 3, 2) * float(scale)
    hidden = np.zeros((batch, 1, sq, skv), bool)
    if causal:
        hidden |= np.triu(np.ones((sq, skv), bool), 1)[None, None]
    if key_mask is not None:
        hidden |= (np.asarray(key_mask) == 0)[:, None, None, :]
    hidden = np.broadcast_to(hidden, s.shape)
    none_visible = hidden.all(axis=-1, keepdims=True)
    s = np.where(hidden & ~none_visible, -np.inf, np.where(none_visible, 0.0, s))
    s -= s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    o = (p @ vh).transpose(0, 2, 1, 3).reshape(batch * sq, dim)
    return o, p


def rows(rng, n, width, extra=3, mag=1.5):
    """float32 [n, width] as a row slice of a wider array (its own leading dimension)."""
    return (rng.standard_normal((n, width + extra)) * mag).astype(np.float32)[:, :width]


def run_general(isa, q, k, v, batch, heads, dim, **kw):
    outs = []
    sq, skv = q.shape[0] // batch, k.shape[0] // batch
    for nthreads in (1, 2):
        for with_probs in (False, True):
            out_buf = np.full((q.shape[0], dim + 2), 9.0, np.float32)
            probs = np.full((batch, heads, sq, skv), 9.0, np.float32) if with_probs else None
            o = _vitc.attention_general(isa, nthreads, q, k, v, batch, heads, out_buf[:, :dim], probs=probs, **kw)
            assert (out_buf[:, dim:] == 9.0).all(), "wrote past the head columns"
            outs.append((o.copy(), probs))
    for o, _ in outs[1:]:
        np.testing.assert_array_equal(o, outs[0][0])  # threads and probs don't change the result
    return outs[0][0], outs[-1][1]


# one learned query over ViT-B (197) / DINOv2-B or SigLIP (257) tokens: SigLIP's pooling head; plus odd shapes
@pytest.mark.parametrize("batch,seq_q,seq_kv,heads,hd", [(1, 1, 197, 12, 64), (2, 1, 257, 4, 32), (2, 1, 1, 2, 5),
                                                         (1, 3, 29, 2, 40), (3, 17, 5, 1, 24), (1, 15, 257, 3, 16)])
def test_attention_separate_query_rows(isa, batch, seq_q, seq_kv, heads, hd):
    rng = np.random.default_rng(seq_q * 1000 + seq_kv)
    dim = heads * hd
    q, k, v = rows(rng, batch * seq_q, dim), rows(rng, batch * seq_kv, dim, 7), rows(rng, batch * seq_kv, dim, 1)
    scale = np.float32(1) / np.sqrt(np.float32(hd))
    ref_o, ref_p = general_ref(q, k, v, batch, heads, dim, scale)
    o, probs = run_general(isa, q, k, v, batch, heads, dim)
    np.testing.assert_allclose(o, ref_o, rtol=1e-5, atol=2e-5 * np.abs(ref_o).max())
    np.testing.assert_allclose(probs, ref_p, rtol=1e-5, atol=1e-7)
    # an explicit scale (e.g. a query pre-scaled elsewhere)
    ref_o2, _ = general_ref(q, k, v, batch, heads, dim, np.float32(0.3))
    o2, _ = run_general(isa, q, k, v, batch, heads, dim, scale=0.3)
    np.testing.assert_allclose(o2, ref_o2, rtol=1e-5, atol=2e-5 * np.abs(ref_o2).max())


def test_attention_general_equals_fused_self_attention(isa):
    """Q, K, V as column blocks of one qkv buffer: bitwise what vitc.attention (the layer's path) gives."""
    rng = np.random.default_rng(11)
    batch, seq, heads, hd = 2, 197, 3, 64
    dim = heads * hd
    qkv = (rng.standard_normal((batch * seq, 3 * dim)) * 1.5).astype(np.float32)
    fused = _vitc.attention(isa, 2, qkv, batch, heads, np.empty((batch * seq, dim), np.float32))
    general = _vitc.attention_general(isa, 2, qkv[:, :dim], qkv[:, dim:2 * dim], qkv[:, 2 * dim:], batch, heads,
                                      np.empty((batch * seq, dim), np.float32))
    np.testing.assert_array_equal(general, fused)


# CLIP's text tower: 77 tokens, causal, padded sequences; plus tile edges (13, 14, 15, 29) and one token
@pytest.mark.parametrize("batch,seq,heads,hd", [(3, 77, 8, 64), (2, 13, 2, 16), (2, 14, 1, 40), (1, 15, 2, 33),
                                                (2, 29, 3, 8), (2, 1, 1, 4)])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("padded", [False, True], ids=["no_padding", "padding"])
def test_attention_masks(isa, batch, seq, heads, hd, causal, padded):
    rng = np.random.default_rng(seq * 10 + batch)
    dim = heads * hd
    q, k, v = rows(rng, batch * seq, dim), rows(rng, batch * seq, dim), rows(rng, batch * seq, dim)
    key_mask = None
    if padded:  # each sequence's own length >= 1 (token 0 is never padded), as a tokenizer's attention_mask
        lengths = rng.integers(1, seq + 1, size=batch)
        lengths[0] = max(1, seq // 2)
        key_mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    scale = np.float32(1) / np.sqrt(np.float32(hd))
    ref_o, ref_p = general_ref(q, k, v, batch, heads, dim, scale, causal, key_mask)
    o, probs = run_general(isa, q, k, v, batch, heads, dim, causal=causal, key_mask=key_mask)
    np.testing.assert_allclose(o, ref_o, rtol=1e-5, atol=2e-5 * np.abs(ref_o).max())
    np.testing.assert_allclose(probs, ref_p, rtol=1e-5, atol=1e-7)
    assert (probs[ref_p == 0] == 0).all(), "a hidden key must get probability exactly 0"
    if (causal or padded) and seq > 1:
        assert (ref_p == 0).any(), "nothing was masked"


def test_attention_fully_masked_rows_stay_finite(isa):
    """A query that sees no key (all keys padded; cannot happen in CLIP) attends uniformly to all keys,
    as transformers' additive finfo.min mask does: finite output, rows of probs summing to 1."""
    rng = np.random.default_rng(12)
    batch, seq, heads, hd = 2, 20, 2, 16
    dim = heads * hd
    q, k, v = rows(rng, batch * seq, dim), rows(rng, batch * seq, dim), rows(rng, batch * seq, dim)
    key_mask = np.ones((batch, seq), bool)
    key_mask[1] = False  # image 1: every key padded
    key_mask[0, :3] = False  # image 0 with causal: queries 0..2 see nothing
    scale = np.float32(1) / np.sqrt(np.float32(hd))
    ref_o, ref_p = general_ref(q, k, v, batch, heads, dim, scale, True, key_mask)
    o, probs = run_general(isa, q, k, v, batch, heads, dim, causal=True, key_mask=key_mask)
    assert np.isfinite(o).all() and np.isfinite(probs).all()
    np.testing.assert_allclose(probs[1], 1.0 / seq, rtol=1e-6)
    np.testing.assert_allclose(o, ref_o, rtol=1e-5, atol=2e-5 * np.abs(ref_o).max())
    np.testing.assert_allclose(probs, ref_p, rtol=1e-5, atol=1e-7)


def test_attention_general_rejects_bad_input(isa):
    q, k, v = np.ones((2, 8), np.float32), np.ones((10, 8), np.float32), np.ones((10, 8), np.float32)
    out = np.empty((2, 8), np.float32)
    _vitc.attention_general(isa, 1, q, k, v, 2, 2, out)
    with pytest.raises(ValueError, match="bad sizes"):
        _vitc.attention_general(isa, 1, q, k[:9], v[:9], 2, 2, out)  # 9 key rows for 2 images
    with pytest.raises(ValueError, match="v: expected 10 rows"):
        _vitc.attention_general(isa, 1, q, k, v[:8], 2, 2, out)
    with pytest.raises(ValueError, match="k: expected >= 8 columns"):
        _vitc.attention_general(isa, 1, q, k[:, :6], v, 2, 2, out)
    with pytest.raises(ValueError, match="key_mask"):
        _vitc.attention_general(isa, 1, q, k, v, 2, 2, out, key_mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="key_mask"):
        _vitc.attention_general(isa, 1, q, k, v, 2, 2, out, key_mask=np.full((2, 5), 2))
    with pytest.raises(ValueError, match="key_mask"):
        _vitc.attention_general(isa, 1, q, k, v, 2, 2, out, key_mask=np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="scale"):
        _vitc.attention_general(isa, 1, q, k, v, 2, 2, out, scale=0.0)
    with pytest.raises(ValueError, match="probs"):
        _vitc.attention_general(isa, 1, q, k, v, 2, 2, out, probs=np.empty((2, 2, 5, 1), np.float32))
    with pytest.raises(ValueError, match="overlap"):
        _vitc.attention_general(isa, 1, q, k, v, 2, 2, k[:2])
