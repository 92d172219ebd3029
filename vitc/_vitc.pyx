# cython: language_level=3
"""Thin bindings over csrc/: validate with the GIL held, then one C call inside `with nogil`.

Every function takes the ISA as an int (its index in ISA_NAMES; see vitc/runtime.py) and arrays as
float32 memoryviews whose last axis is contiguous; a row stride larger than the width is passed to C as
the leading dimension. Arrays are validated here so the C kernels can trust their arguments.
"""
import numpy as np

# The C enums by name (csrc/vitc.h): a name's index is its code.
ISA_NAMES = tuple(vitc_isa_name(<vitc_isa>i).decode() for i in range(VITC_ISA_COUNT))
ACTIVATIONS = tuple(vitc_act_name(<vitc_act>i).decode() for i in range(VITC_ACT_COUNT))
ISA_CODES = {name: code for code, name in enumerate(ISA_NAMES)}
ACT_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}


# Names of the vitc_cpu_features() bits, bit i = CPU_FEATURES[i] (csrc/vitc.h VITC_CPU_*).
CPU_FEATURES = tuple(vitc_cpu_feature_name(i).decode() for i in range(VITC_CPU_FEATURE_COUNT))


def cpu_features():
    """Bitmask of the CPU features cpuid reports and the OS has enabled (bit i: CPU_FEATURES[i])."""
    return int(vitc_cpu_features())


def isa_required_features(int isa):
    """Bitmask of the CPU features the kernels of ISA code `isa` are compiled for."""
    if not (0 <= isa < len(ISA_NAMES)):
        raise ValueError(f"unknown ISA code {isa}")
    return int(vitc_isa_required_features(<vitc_isa>isa))


def isa_compiled(int isa):
    return bool(vitc_isa_compiled(<vitc_isa>isa)) if 0 <= isa < VITC_ISA_COUNT else False


def isa_supported(int isa):
    return bool(vitc_isa_supported(<vitc_isa>isa)) if 0 <= isa < VITC_ISA_COUNT else False


def tile_sizes(int isa):
    """Tile sizes of ISA code `isa`'s kernel set: dict gemm_mr, gemm_nr, gemm_kc, gemm_mc, gemm_nc,
    attention_mr, attention_nr (0 when attention runs through the GEMM)."""
    if not (0 <= isa < VITC_ISA_COUNT):
        raise ValueError(f"unknown ISA code {isa}")
    cdef vitc_tile_sizes t
    vitc_isa_tile_sizes(<vitc_isa>isa, &t)
    return dict(gemm_mr=t.gemm_mr, gemm_nr=t.gemm_nr, gemm_kc=t.gemm_kc, gemm_mc=t.gemm_mc, gemm_nc=t.gemm_nc,
                attention_mr=t.attention_mr, attention_nr=t.attention_nr)


def isa_best():
    return <int>vitc_isa_best()


def threads_enabled():
    """True when the kernels run in parallel (vitc's pthread pool, csrc/threadpool.c)."""
    return bool(vitc_parallel_enabled())


def pool_workers():
    """Worker threads vitc's pool has started in this process (0 in a fork child until its first region)."""
    return vitc_parallel_workers()


def pool_probe(int nthreads):
    """Run a team of nthreads through barriers and a work queue: the number of distinct OS threads that ran
    it (nthreads when the pool works; 1 without threads), -1 if the barrier or the queue misbehaved."""
    cdef int n
    with nogil:
        n = vitc_parallel_probe(nthreads)
    return n


def aligned_empty(shape, size_t alignment=64):
    """float32 array of `shape` whose data starts on an `alignment`-byte boundary."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * 4 + alignment, dtype=np.uint8)
    offset = (-raw.ctypes.data) % alignment
    return raw[offset:offset + count * 4].view(np.float32).reshape(shape)


cdef int _isa(int isa) except -1:
    if not (0 <= isa < VITC_ISA_COUNT) or not vitc_isa_supported(<vitc_isa>isa):
        raise ValueError(f"ISA {isa} ({ISA_NAMES[isa] if 0 <= isa < VITC_ISA_COUNT else '?'}) is not supported here")
    return isa


cdef int _threads(int nthreads) except -1:
    if nthreads < 1:
        raise ValueError(f"nthreads must be >= 1, got {nthreads}")
    return nthreads


cdef int _act(int act) except -1:
    if not (0 <= act < len(ACTIVATIONS)):
        raise ValueError(f"unknown activation code {act}")
    return act


cdef size_t _ld(arr, str name) except 0:
    """Row stride in floats of a 2-D float32 view whose last axis is contiguous."""
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got {arr.ndim}-D")
    s0, s1 = arr.strides
    if arr.shape[1] > 1 and s1 != 4:
        raise ValueError(f"{name}: the last axis must be contiguous")
    if arr.shape[0] <= 1:
        return max(arr.shape[1], 1)
    if s0 <= 0 or s0 % 4 or s0 // 4 < arr.shape[1]:
        raise ValueError(f"{name}: rows must be laid out forward with a stride >= the width")
    return s0 // 4


cdef _raise_for(vitc_status st, str what):
    """A kernel's failure status as a Python exception (its outputs are then unspecified)."""
    if st == VITC_ERR_NOMEM:
        raise MemoryError(f"vitc {what}: out of memory for the GEMM's packing buffers")
    if st != VITC_OK:
        raise RuntimeError(f"vitc {what} failed with status {st}")


cdef _check_shape(arr, tuple shape, str name):
    if tuple(arr.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(arr.shape)}")


cdef _check_len(arr, size_t need, str name):
    if arr.shape[0] < need:
        raise ValueError(f"{name}: needs {need} floats, got {arr.shape[0]}")


cdef _no_overlap(out, other, str out_name, str other_name):
    if other is not None and np.may_share_memory(out, other):
        raise ValueError(f"{out_name} must not overlap {other_name}")


cdef _fill_epilogue(vitc_epilogue *ep, bias, int act, residual, out_arr, size_t m, size_t n, size_t ldc,
                    scale=None):
    """Validate the fused epilogue's operands against out [m, n] and point ep at them (the caller keeps
    the arrays alive for the call). residual may be out itself, nothing else that overlaps it."""
    _act(act)
    ep.bias = NULL
    ep.act = <vitc_act>act
    ep.residual = NULL
    ep.ldr = 0
    ep.scale = NULL
    _check_shape(out_arr, (m, n), "out")
    cdef const float[::1] b, sc
    if scale is not None:
        sc = scale
        _check_shape(np.asarray(sc), (n,), "scale")
        ep.scale = &sc[0]
    cdef const float[:, :] r
    if bias is not None:
        b = bias
        _check_shape(np.asarray(b), (n,), "bias")
        ep.bias = &b[0]
    if residual is not None:
        r = residual
        res_arr = np.asarray(r)
        _check_shape(res_arr, (m, n), "residual")
        ldr = _ld(res_arr, "residual")
        if np.may_share_memory(res_arr, out_arr) and not (
                res_arr.ctypes.data == out_arr.ctypes.data and ldr == ldc):
            raise ValueError("residual must be exactly out or not overlap it")
        ep.residual = &r[0, 0]
        ep.ldr = ldr


# ---- GEMM ------------------------------------------------------------------------------------------
def gemm_packed_floats(int isa, size_t n, size_t k):
    return vitc_f32_gemm_packed_floats(<vitc_isa>_isa(isa), n, k)


def gemm_pack_nk(int isa, const float[:, :] w, out=None):
    """Pack a Linear weight W[n, k] (C = A·Wᵀ) for `isa` into a new 64-byte aligned buffer, or into `out`
    (1-D float32, exactly gemm_packed_floats(isa, n, k) long: e.g. a slice of a model's weight arena)."""
    _isa(isa)
    cdef size_t n = w.shape[0], k = w.shape[1], ldw = _ld(np.asarray(w), "w")
    if n == 0 or k == 0:
        raise ValueError("w must be non-empty")
    cdef size_t need = vitc_f32_gemm_packed_floats(<vitc_isa>isa, n, k)
    if out is None:
        packed = aligned_empty(need)
    else:
        packed = out
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 1:
            raise ValueError("out: expected a 1-D float32 array")
        _check_shape(out, (need,), "out")
        _no_overlap(out, np.asarray(w), "out", "w")
    cdef float[::1] p = packed
    with nogil:
        vitc_f32_gemm_pack_nk(<vitc_isa>isa, n, k, &w[0, 0], ldw, &p[0])
    return packed


def gemm_pack_kn(int isa, const float[:, :] b):
    """Pack a plain B[k, n] (C = A·B) into a 64-byte aligned buffer for `isa`."""
    _isa(isa)
    cdef size_t k = b.shape[0], n = b.shape[1], ldb = _ld(np.asarray(b), "b")
    if n == 0 or k == 0:
        raise ValueError("b must be non-empty")
    packed = aligned_empty(vitc_f32_gemm_packed_floats(<vitc_isa>isa, n, k))
    cdef float[::1] p = packed
    with nogil:
        vitc_f32_gemm_pack_kn(<vitc_isa>isa, n, k, &b[0, 0], ldb, &p[0])
    return packed


def gemm(int isa, int nthreads, const float[:, :] a, const float[::1] packed, size_t n, float[:, :] out,
         const float[::1] bias=None, int act=0, const float[:, :] residual=None, bint serial=False,
         const float[::1] scale=None):
    """out[m, n] = act(a[m, k] · B + bias) · scale + residual, B packed by gemm_pack_* for `isa`;
    scale: a per-column layer scale [n]. `residual` may be `out` itself (then out += ...)."""
    _isa(isa); _threads(nthreads); _act(act)
    a_arr, out_arr = np.asarray(a), np.asarray(out)
    cdef size_t m = a.shape[0], k = a.shape[1]
    cdef size_t lda = _ld(a_arr, "a"), ldc = _ld(out_arr, "out")
    if m == 0 or n == 0 or k == 0:
        raise ValueError("gemm: m, n and k must be >= 1")
    _check_shape(out_arr, (m, n), "out")
    if <size_t>packed.shape[0] != vitc_f32_gemm_packed_floats(<vitc_isa>isa, n, k):
        raise ValueError(f"packed: expected {vitc_f32_gemm_packed_floats(<vitc_isa>isa, n, k)} floats for "
                         f"n={n}, k={k}, got {packed.shape[0]}")
    _no_overlap(out_arr, a_arr, "out", "a")
    _no_overlap(out_arr, np.asarray(packed), "out", "packed")
    cdef vitc_epilogue ep
    _fill_epilogue(&ep, bias, act, residual, out_arr, m, n, ldc, scale)
    ws = aligned_empty(max(vitc_f32_gemm_serial_workspace_floats(<vitc_isa>isa, k), <size_t>1)) if serial else None
    cdef float[::1] w = ws
    cdef vitc_status st = VITC_OK
    with nogil:
        if serial:
            vitc_f32_gemm_serial(<vitc_isa>isa, m, n, k, &a[0, 0], lda, &packed[0], &ep, &out[0, 0], ldc, &w[0])
        else:
            st = vitc_f32_gemm(<vitc_isa>isa, nthreads, m, n, k, &a[0, 0], lda, &packed[0], &ep, &out[0, 0], ldc)
    _raise_for(st, "gemm")
    return out_arr


# ---- row ops ---------------------------------------------------------------------------------------
def layernorm(int isa, int nthreads, const float[:, :] x, const float[::1] gamma, const float[::1] beta,
              float eps, float[:, :] out):
    _isa(isa); _threads(nthreads)
    x_arr, out_arr = np.asarray(x), np.asarray(out)
    cdef size_t rows = x.shape[0], dim = x.shape[1]
    cdef size_t ldx = _ld(x_arr, "x"), ldy = _ld(out_arr, "out")
    if rows == 0 or dim == 0:
        raise ValueError("layernorm: x must be non-empty")
    _check_shape(out_arr, (rows, dim), "out")
    _check_shape(np.asarray(gamma), (dim,), "gamma")
    _check_shape(np.asarray(beta), (dim,), "beta")
    if not eps > 0:
        raise ValueError(f"layernorm: eps must be > 0, got {eps}")
    if np.may_share_memory(x_arr, out_arr) and not (x_arr.ctypes.data == out_arr.ctypes.data and ldx == ldy):
        raise ValueError("out must be exactly x or not overlap it")
    with nogil:
        vitc_f32_layernorm(<vitc_isa>isa, nthreads, rows, dim, &x[0, 0], ldx, &gamma[0], &beta[0], eps,
                           &out[0, 0], ldy)
    return out_arr


def softmax_rows(int isa, float[:, :] x, float scale=1.0):
    """In place: each row of x becomes softmax(scale * row)."""
    _isa(isa)
    cdef size_t rows = x.shape[0], n = x.shape[1], ldx = _ld(np.asarray(x), "x")
    if rows == 0 or n == 0:
        raise ValueError("softmax_rows: x must be non-empty")
    with nogil:
        vitc_f32_softmax_rows(<vitc_isa>isa, rows, n, scale, &x[0, 0], ldx)
    return np.asarray(x)


def activation(int isa, int act, float[::1] x):
    """In place activation over a contiguous 1-D array."""
    _isa(isa); _act(act)
    cdef size_t n = x.shape[0]
    if n == 0:
        return np.asarray(x)
    with nogil:
        vitc_f32_activation(<vitc_isa>isa, <vitc_act>act, &x[0], n)
    return np.asarray(x)


def swiglu(int isa, const float[:, :] x, float[:, :] out):
    """out[r, j] = silu(x[r, j]) · x[r, h + j] for x [rows, 2h] = [gate | up]; out [rows, h] may be the gate
    half of x itself (x[:, :h])."""
    _isa(isa)
    x_arr, out_arr = np.asarray(x), np.asarray(out)
    cdef size_t rows = x.shape[0], h = x.shape[1] // 2
    cdef size_t ldx = _ld(x_arr, "x"), ldy = _ld(out_arr, "out")
    if rows == 0 or h == 0 or x.shape[1] % 2:
        raise ValueError(f"swiglu: x must be [rows >= 1, 2*hidden >= 2], got {tuple(x_arr.shape)}")
    _check_shape(out_arr, (rows, h), "out")
    if np.may_share_memory(x_arr, out_arr):
        if not (x_arr.ctypes.data == out_arr.ctypes.data and (ldx == ldy or rows == 1)):
            raise ValueError("out must be exactly the gate half of x or not overlap x")
        ldy = ldx
    with nogil:
        vitc_f32_swiglu(<vitc_isa>isa, rows, h, &x[0, 0], ldx, &out[0, 0], ldy)
    return out_arr


def patchify(int nthreads, const float[:, :, :, ::1] pixels, size_t ph, size_t pw):
    """im2col: [B, C, H, W] -> [B * (H//ph) * (W//pw), C*ph*pw] in Conv2d weight order."""
    _threads(nthreads)
    cdef size_t b = pixels.shape[0], c = pixels.shape[1], h = pixels.shape[2], w = pixels.shape[3]
    if ph == 0 or pw == 0 or ph > h or pw > w:
        raise ValueError(f"patch {ph}x{pw} does not fit an image of {h}x{w}")
    if b == 0 or c == 0:
        raise ValueError("patchify: empty batch or no channels")
    out = aligned_empty((b * (h // ph) * (w // pw), c * ph * pw))
    cdef float[:, ::1] o = out
    with nogil:
        vitc_f32_patchify(nthreads, b, c, h, w, ph, pw, &pixels[0, 0, 0, 0], &o[0, 0])
    return out


def attention(int isa, int nthreads, const float[:, :] qkv, size_t batch, size_t heads, float[:, :] out,
              float[:, :, :, ::1] probs=None):
    """Multi-head attention core over qkv rows [batch*seq, >= 3*dim] (Q|K|V); out [batch*seq, dim]."""
    _isa(isa); _threads(nthreads)
    qkv_arr, out_arr = np.asarray(qkv), np.asarray(out)
    cdef size_t t = qkv.shape[0], ldq = _ld(qkv_arr, "qkv"), ldo = _ld(out_arr, "out")
    cdef size_t dim = out.shape[1]
    if batch == 0 or heads == 0 or t == 0 or t % batch or dim == 0 or dim % heads:
        raise ValueError(f"attention: bad sizes (tokens={t}, batch={batch}, heads={heads}, dim={dim})")
    cdef size_t seq = t // batch, hd = dim // heads
    if <size_t>qkv.shape[1] < 3 * dim:
        raise ValueError(f"qkv: expected >= {3 * dim} columns, got {qkv.shape[1]}")
    _check_shape(out_arr, (t, dim), "out")
    _no_overlap(out_arr, qkv_arr, "out", "qkv")
    cdef float *pp = NULL
    if probs is not None:
        _check_shape(np.asarray(probs), (batch, heads, seq, seq), "probs")
        _no_overlap(np.asarray(probs), qkv_arr, "probs", "qkv")
        _no_overlap(np.asarray(probs), out_arr, "probs", "out")
        pp = &probs[0, 0, 0, 0]
    ws = aligned_empty(max(vitc_f32_attention_workspace_floats(<vitc_isa>isa, nthreads, seq, hd), <size_t>1))
    cdef float[::1] w = ws
    with nogil:
        vitc_f32_attention(<vitc_isa>isa, nthreads, batch, seq, heads, hd, &qkv[0, 0], ldq, &out[0, 0], ldo,
                           pp, &w[0])
    return out_arr


def attention_general(int isa, int nthreads, const float[:, :] q, const float[:, :] k, const float[:, :] v,
                      size_t batch, size_t heads, float[:, :] out, scale=None, bint causal=False, key_mask=None,
                      float[:, :, :, ::1] probs=None):
    """out [batch*seq_q, dim] = softmax(scale · Q Kᵀ + mask) V per (image, head): q rows [batch*seq_q, >= dim],
    k and v rows [batch*seq_kv, >= dim] (head h at columns h*head_dim), dim = out.shape[1].
    scale: default head_dim^-0.5 (float32). causal: key j hidden from query i when j > i.
    key_mask: [batch, seq_kv] bool or 0/1 integers (transformers' attention_mask; 0 = padding).
    probs, if given, gets [batch, heads, seq_q, seq_kv]."""
    _isa(isa); _threads(nthreads)
    q_arr, k_arr, v_arr, out_arr = np.asarray(q), np.asarray(k), np.asarray(v), np.asarray(out)
    cdef size_t tq = q.shape[0], tkv = k.shape[0], dim = out.shape[1]
    if batch == 0 or heads == 0 or tq == 0 or tkv == 0 or tq % batch or tkv % batch or dim == 0 or dim % heads:
        raise ValueError(f"attention: bad sizes (query rows={tq}, key rows={tkv}, batch={batch}, heads={heads}, "
                         f"dim={dim})")
    if <size_t>v.shape[0] != tkv:
        raise ValueError(f"v: expected {tkv} rows (as k), got {v.shape[0]}")
    for arr, name in ((q_arr, "q"), (k_arr, "k"), (v_arr, "v")):
        if <size_t>arr.shape[1] < dim:
            raise ValueError(f"{name}: expected >= {dim} columns, got {arr.shape[1]}")
    cdef vitc_attention_desc d
    d.batch, d.heads, d.head_dim = batch, heads, dim // heads
    d.seq_q, d.seq_kv = tq // batch, tkv // batch
    d.q, d.ldq = &q[0, 0], _ld(q_arr, "q")
    d.k, d.ldk = &k[0, 0], _ld(k_arr, "k")
    d.v, d.ldv = &v[0, 0], _ld(v_arr, "v")
    d.scale = np.float32(1) / np.sqrt(np.float32(d.head_dim)) if scale is None else scale
    if not (d.scale > 0 and np.isfinite(d.scale)):
        raise ValueError(f"attention: scale must be finite and > 0, got {scale}")
    d.causal = causal
    d.key_mask = NULL
    cdef size_t ldo = _ld(out_arr, "out")
    _check_shape(out_arr, (tq, dim), "out")
    for arr, name in ((q_arr, "q"), (k_arr, "k"), (v_arr, "v")):
        _no_overlap(out_arr, arr, "out", name)
    cdef const unsigned char[:, ::1] mask_view
    if key_mask is not None:
        mask = np.asarray(key_mask)
        _check_shape(mask, (batch, d.seq_kv), "key_mask")
        if mask.dtype != np.bool_ and not (np.issubdtype(mask.dtype, np.integer) and np.isin(mask, (0, 1)).all()):
            raise ValueError(f"key_mask: expected bool or 0/1 integers, got {mask.dtype}")
        mask_view = np.ascontiguousarray(mask, dtype=np.uint8)
        d.key_mask = &mask_view[0, 0]
    cdef float *pp = NULL
    if probs is not None:
        _check_shape(np.asarray(probs), (batch, heads, d.seq_q, d.seq_kv), "probs")
        for arr, name in ((q_arr, "q"), (k_arr, "k"), (v_arr, "v"), (out_arr, "out")):
            _no_overlap(np.asarray(probs), arr, "probs", name)
        pp = &probs[0, 0, 0, 0]
    ws = aligned_empty(max(vitc_f32_attention_general_workspace_floats(<vitc_isa>isa, nthreads, d.seq_q, d.seq_kv,
                                                                       d.head_dim), <size_t>1))
    cdef float[::1] w = ws
    with nogil:
        vitc_f32_attention_general(<vitc_isa>isa, nthreads, &d, &out[0, 0], ldo, pp, &w[0])
    return out_arr


include "_gemm_lowp.pxi"
include "_attention_lowp.pxi"
include "_model.pxi"
