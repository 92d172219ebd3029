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
