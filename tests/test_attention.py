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


SHAPES = [(1, 1, 1, 1), (2, 5, 3, 7), (1, 197, 12, 64), (3, 17, 2, 16), (1, 50, 4, 33)]


@pytest.mark.parametrize("batch,seq,heads,hd", SHAPES)
def test_attention(isa, batch, seq, heads, hd):
    rng = np.random.default_rng(seq * 100 + hd)
    dim = heads * hd
    t = batch * seq
    qkv = (rng.standard_normal((t, 3 * dim + 5)) * 1.5).astype(np.float32)  # ldqkv > 3*dim
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
