# Bindings for the ViT pieces of csrc/vit.c (included by _vitc.pyx).

# Names of the vitc_phase entries (csrc/vitc.h), in order: the layout of forward()'s phase_seconds.
LAYER_PHASES = tuple(vitc_phase_name(<vitc_phase>i).decode() for i in range(VITC_PHASE_COUNT))
PHASE_CODES = {name: code for code, name in enumerate(LAYER_PHASES)}

# The C struct vitc_vit_layer (csrc/vitc.h), field by field in its order: (name, rows, cols) of the array
# each pointer needs, as expressions of the layer dims (cols None: a vector of `rows` floats; else a Linear
# weight [rows, cols]: a PackedWeight (bf16/int8) or a float32 array packed for the layer's ISA, both
# handed to C as vitc_packed handles). The struct holds nothing but pointers, so the plumbing below fills
# it by position; the families' layer tables (vitc/families) name the same fields.
LAYER_STRUCT = (
    ("ln1_g", "dim", None), ("ln1_b", "dim", None), ("ln2_g", "dim", None), ("ln2_b", "dim", None),
    ("qkv_w", "3*dim", "dim"), ("qkv_b", "3*dim", None), ("proj_w", "dim", "dim"), ("proj_b", "dim", None),
    ("fc1_w", "fc1_n", "dim"), ("fc1_b", "fc1_n", None), ("fc2_w", "dim", "inter"), ("fc2_b", "dim", None),
    ("ls1", "dim", None), ("ls2", "dim", None),
)
_LAYER_FIELDS = tuple(f for f, _, _ in LAYER_STRUCT)
# fields that may be None or left out: the biases, the layer scales (DINOv2's lambda1 / lambda2)
_LAYER_OPTIONAL = frozenset(f for f, _, cols in LAYER_STRUCT if f.endswith("_b") or f.startswith("ls"))
MLP_KINDS = tuple(vitc_mlp_name(<vitc_mlp>i).decode() for i in range(VITC_MLP_COUNT))


def _layer_size(str expr, size_t dim, size_t inter, size_t fc1_n):
    return {"dim": dim, "3*dim": 3 * dim, "inter": inter, "fc1_n": fc1_n}[expr]


cdef const float *_ptr(arr, size_t need, str name) except? NULL:
    if arr is None:
        return NULL
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.ndim != 1 or not arr.flags.c_contiguous:
        raise ValueError(f"{name}: expected a contiguous 1-D float32 array")
    if <size_t>arr.shape[0] != need:
        raise ValueError(f"{name}: expected {need} floats, got {arr.shape[0]}")
    cdef const float[::1] view = arr
    return &view[0]


cdef PackedWeight _f32_packed(int isa, arr, size_t n, size_t k, str name):
    """A float32 PackedWeight over a weight already packed by gemm_pack_nk for `isa` (no copy): float32
    layers take the same handle path as bf16/int8 ones."""
    cdef const float *p = _ptr(arr, vitc_f32_gemm_packed_floats(<vitc_isa>isa, n, k), name)
    pw = PackedWeight()
    pw.p.dtype, pw.p.kset, pw.p.n, pw.p.k = VITC_DTYPE_F32, <vitc_kset>isa, n, k
    pw.p.data, pw.p.scales, pw.p.comp = p, NULL, NULL
    pw.buffer = arr.view(np.uint8)
    return pw


cdef class EncoderLayer:
    """One pre-LN ViT encoder layer: packed weights (for one ISA) plus the C struct pointing into them.
    mlp: "standard" (fc2(act(fc1))) or "swiglu" (fc1_w packed [2*inter, dim]: gate | up rows); arrays may
    hold layer scales "ls1", "ls2" [dim] (DINOv2's lambda1 / lambda2)."""
    cdef vitc_vit_layer c
    cdef vitc_vit_dims dims
    cdef readonly int isa
    cdef readonly dict arrays
    cdef readonly dict weights  # the four Linear weights: field -> PackedWeight

    def __init__(self, int isa, size_t dim, size_t heads, size_t inter, float eps, int act, dict arrays,
                 str mlp="standard"):
        _isa(isa); _act(act)
        if mlp not in MLP_KINDS:
            raise ValueError(f"unknown MLP kind {mlp!r}: expected one of {', '.join(MLP_KINDS)}")
        cdef size_t fc1_n = 2 * inter if mlp == "swiglu" else inter
        if dim == 0 or heads == 0 or inter == 0 or dim % heads:
            raise ValueError(f"bad layer sizes: dim={dim}, heads={heads}, inter={inter}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        missing = [f for f in _LAYER_FIELDS if f not in arrays and f not in _LAYER_OPTIONAL]
        if missing:
            raise ValueError(f"EncoderLayer: missing arrays {missing}")
        self.isa = isa
        self.arrays = dict(arrays)  # keeps the buffers alive while C points into them
        self.dims.dim, self.dims.heads, self.dims.inter = dim, heads, inter
        self.dims.eps = eps
        self.dims.act = <vitc_act>act
        cdef int mlp_code = MLP_KINDS.index(mlp)
        self.dims.mlp = <vitc_mlp>mlp_code
        a = self.arrays
        if sizeof(vitc_vit_layer) != len(LAYER_STRUCT) * sizeof(const void *):
            raise RuntimeError("LAYER_STRUCT does not match csrc/vitc.h's vitc_vit_layer")
        cdef const void **slot = <const void **>&self.c
        cdef size_t rows, cols
        cdef PackedWeight pw
        self.weights = {}
        for j, (field, rows_expr, cols_expr) in enumerate(LAYER_STRUCT):
            rows = _layer_size(rows_expr, dim, inter, fc1_n)
            if cols_expr is None:
                slot[j] = _ptr(a.get(field), rows, field)
                if slot[j] == NULL and field not in _LAYER_OPTIONAL:
                    raise ValueError(f"EncoderLayer: {field} must not be None")
                continue
            cols = _layer_size(cols_expr, dim, inter, fc1_n)
            w = a.get(field)
            if w is None:
                raise ValueError(f"EncoderLayer: {field} must not be None")
            pw = w if isinstance(w, PackedWeight) else _f32_packed(isa, w, rows, cols, field)
            if (pw.p.n, pw.p.k) != (rows, cols):
                raise ValueError(f"{field}: expected a [{rows}, {cols}] weight, got {list(pw.shape)}")
            self.weights[field] = pw
            slot[j] = &pw.p
        kinds = {(<PackedWeight>w).p.kset for w in self.weights.values()}
        dtypes = {(<PackedWeight>w).p.dtype for w in self.weights.values()}
        if len(kinds) != 1 or len(dtypes) != 1:
            raise ValueError("EncoderLayer: the four Linear weights must share one kernel set and dtype")
        pw = self.weights["qkv_w"]
        if pw.p.dtype == VITC_DTYPE_F32 and <int>pw.p.kset != isa:
            raise ValueError(f"EncoderLayer: float32 weights packed for {pw.kernel_set}, layer ISA {isa}")
        _kset(<int>pw.p.kset, <int>pw.p.dtype)
        self.dims.kset, self.dims.dtype = pw.p.kset, pw.p.dtype

    def workspace_floats(self, int nthreads, size_t batch, size_t seq):
        return vitc_vit_layer_workspace_floats(<vitc_isa>self.isa, nthreads, &self.dims, batch, seq)

    def forward(self, int nthreads, float[:, ::1] hidden, size_t batch, float[::1] workspace,
                float[:, :, :, ::1] probs=None, double[::1] phase_seconds=None, bint causal=False,
                const unsigned char[:, ::1] key_mask=None):
        """In place on hidden [batch*seq, dim]; probs, if given, gets [batch, heads, seq, seq];
        phase_seconds, if given (float64, len(LAYER_PHASES)), gets each phase's wall time added.
        causal: query i sees keys <= i; key_mask, if given, uint8 [batch, seq] (0 = padding, never attended)."""
        _threads(nthreads)
        cdef size_t t = hidden.shape[0]
        if batch == 0 or t == 0 or t % batch or <size_t>hidden.shape[1] != self.dims.dim:
            raise ValueError(f"hidden: expected [batch*seq, {self.dims.dim}], got {tuple(np.asarray(hidden).shape)}"
                             f" for batch={batch}")
        cdef size_t seq = t // batch
        _check_len(np.asarray(workspace), self.workspace_floats(nthreads, batch, seq), "workspace")
        cdef float *pp = NULL
        if probs is not None:
            _check_shape(np.asarray(probs), (batch, self.dims.heads, seq, seq), "probs")
            pp = &probs[0, 0, 0, 0]
        cdef double *ps = NULL
        if phase_seconds is not None:
            _check_shape(np.asarray(phase_seconds), (len(LAYER_PHASES),), "phase_seconds")
            ps = &phase_seconds[0]
        cdef const unsigned char *km = NULL
        if key_mask is not None:
            _check_shape(np.asarray(key_mask), (batch, seq), "key_mask")
            km = &key_mask[0, 0]
        cdef vitc_status st
        with nogil:
            st = vitc_vit_layer_forward_masked(<vitc_isa>self.isa, nthreads, &self.dims, &self.c, batch, seq,
                                               causal, km, &hidden[0, 0], pp, &workspace[0], ps)
        _raise_for(st, "encoder layer")


def embed_workspace_floats(size_t batch, size_t channels, size_t height, size_t width, size_t ph, size_t pw):
    return vitc_patch_embed_workspace_floats(batch, channels, height, width, ph, pw)


def embed(int isa, int nthreads, const float[:, :, :, ::1] pixels, size_t ph, size_t pw,
          const float[::1] patch_w, const float[::1] patch_b, const float[:, ::1] prefix,
          const float[:, ::1] patch_pos, float[:, :, ::1] out, float[::1] workspace):
    """out [B, nprefix + np, D] = [prefix; (patches·Wᵀ + patch_b) + patch_pos] (patch_w packed for `isa`).
    prefix [nprefix, D] (nprefix 0.. : CLS, distillation, registers, complete with their position rows) or
    None; patch_b [D] or None (CLIP); patch_pos [np, D] or None."""
    _isa(isa); _threads(nthreads)
    cdef size_t b = pixels.shape[0], c = pixels.shape[1], h = pixels.shape[2], w = pixels.shape[3]
    cdef size_t dim = out.shape[2]
    if b == 0 or c == 0 or ph == 0 or pw == 0 or ph > h or pw > w or dim == 0:
        raise ValueError(f"embed: bad pixel/patch sizes {(b, c, h, w)} / {(ph, pw)}")
    cdef size_t npatch = (h // ph) * (w // pw)
    cdef size_t nprefix = 0 if prefix is None else prefix.shape[0]
    if prefix is not None:
        _check_shape(np.asarray(prefix), (nprefix, dim), "prefix")
    if patch_pos is not None:
        _check_shape(np.asarray(patch_pos), (npatch, dim), "patch_pos")
    _check_shape(np.asarray(out), (b, nprefix + npatch, dim), "out")
    if patch_b is not None:
        _check_shape(np.asarray(patch_b), (dim,), "patch_b")
    if <size_t>patch_w.shape[0] != vitc_f32_gemm_packed_floats(<vitc_isa>isa, dim, c * ph * pw):
        raise ValueError("patch_w: packed size does not match dim x channels*ph*pw")
    _check_len(np.asarray(workspace), vitc_patch_embed_workspace_floats(b, c, h, w, ph, pw), "workspace")
    out_arr = np.asarray(out)
    for arr, name in ((pixels, "pixels"), (patch_w, "patch_w"), (patch_b, "patch_b"), (prefix, "prefix"),
                      (patch_pos, "patch_pos"), (workspace, "workspace")):
        if arr is not None:
            _no_overlap(out_arr, np.asarray(arr), "out", name)
    cdef const float *pb = NULL
    cdef const float *pre = NULL
    cdef const float *pos = NULL
    if patch_b is not None:
        pb = &patch_b[0]
    if nprefix:
        pre = &prefix[0, 0]
    if patch_pos is not None:
        pos = &patch_pos[0, 0]
    cdef vitc_status st
    with nogil:
        st = vitc_patch_embed(<vitc_isa>isa, nthreads, b, c, h, w, ph, pw, dim, &pixels[0, 0, 0, 0], &patch_w[0],
                              pb, nprefix, pre, pos, &out[0, 0, 0], &workspace[0])
    _raise_for(st, "patch embedding")
    return out_arr
