# Included by _vitc.pyx: the bf16 attention of bf16 models (csrc/attention_lowp.c), exposed for its tests.
from libc.string cimport memset


def bf16_attention_applies(int kset, size_t head_dim):
    """Whether bf16_attention runs for this kernel set and head size (else models use the float32 one)."""
    cdef vitc_attention_desc d
    memset(&d, 0, sizeof(d))
    d.head_dim = head_dim
    return vitc_bf16_attention_applies(<vitc_kset>kset, &d) != 0


def bf16_attention(int kset, int nthreads, const float[:, :] q, const float[:, :] k, const float[:, :] v,
                   size_t batch, size_t heads, float[:, :] out, scale=None):
    """out [batch*seq_q, dim] = softmax(scale · Q Kᵀ) V per (image, head) with Q, K, V and the probabilities
    rounded to bf16, float32 sums and softmax; shapes as attention_general. ValueError where it does not
    apply (bf16_attention_applies)."""
    _threads(nthreads)
    q_arr, k_arr, v_arr, out_arr = np.asarray(q), np.asarray(k), np.asarray(v), np.asarray(out)
    cdef size_t tq = q.shape[0], tkv = k.shape[0], dim = out.shape[1]
    if batch == 0 or heads == 0 or tq == 0 or tkv == 0 or tq % batch or tkv % batch or dim == 0 or dim % heads:
        raise ValueError(f"bf16_attention: bad sizes (query rows={tq}, key rows={tkv}, batch={batch}, "
                         f"heads={heads}, dim={dim})")
    if <size_t>v.shape[0] != tkv:
        raise ValueError(f"v: expected {tkv} rows (as k), got {v.shape[0]}")
    for arr, name in ((q_arr, "q"), (k_arr, "k"), (v_arr, "v")):
        if <size_t>arr.shape[1] < dim:
            raise ValueError(f"{name}: expected >= {dim} columns, got {arr.shape[1]}")
    _check_shape(out_arr, (tq, dim), "out")
    for arr, name in ((q_arr, "q"), (k_arr, "k"), (v_arr, "v")):
        _no_overlap(out_arr, arr, "out", name)
    cdef vitc_attention_desc d
    memset(&d, 0, sizeof(d))
    d.batch, d.heads, d.head_dim = batch, heads, dim // heads
    d.seq_q, d.seq_kv = tq // batch, tkv // batch
    d.q, d.ldq = &q[0, 0], _ld(q_arr, "q")
    d.k, d.ldk = &k[0, 0], _ld(k_arr, "k")
    d.v, d.ldv = &v[0, 0], _ld(v_arr, "v")
    d.scale = np.float32(1) / np.sqrt(np.float32(d.head_dim)) if scale is None else scale
    if not (d.scale > 0 and np.isfinite(d.scale)):
        raise ValueError(f"bf16_attention: scale must be finite and > 0, got {scale}")
    if not vitc_bf16_attention_applies(<vitc_kset>kset, &d):
        raise ValueError(f"bf16_attention: needs the amx kernel set on a CPU that runs it and head_dim a "
                         f"multiple of 32 (kernel set {kset}, head_dim {d.head_dim})")
    cdef size_t ldo = _ld(out_arr, "out")
    ws = aligned_empty(max(vitc_bf16_attention_workspace_floats(nthreads, d.seq_kv, d.head_dim), <size_t>1))
    cdef float[::1] w = ws
    cdef vitc_status st
    with nogil:
        st = vitc_bf16_attention(<vitc_kset>kset, nthreads, &d, &out[0, 0], ldo, &w[0])
    _raise_for(st, "bf16_attention")
    return out_arr
