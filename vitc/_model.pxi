# Bindings for the ViT pieces of csrc/vit.c (included by _vitc.pyx).

# Names of the vitc_phase entries (csrc/vitc.h), in order: the layout of forward()'s phase_seconds.
LAYER_PHASES = tuple(vitc_phase_name(<vitc_phase>i).decode() for i in range(VITC_PHASE_COUNT))
PHASE_CODES = {name: code for code, name in enumerate(LAYER_PHASES)}

_LAYER_FIELDS = ("ln1_g", "ln1_b", "ln2_g", "ln2_b", "qkv_w", "qkv_b", "proj_w", "proj_b",
                 "fc1_w", "fc1_b", "fc2_w", "fc2_b")
_OPTIONAL_LAYER_FIELDS = ("ls1", "ls2")  # layer scales: absent or None = none
MLP_KINDS = tuple(vitc_mlp_name(<vitc_mlp>i).decode() for i in range(VITC_MLP_COUNT))


cdef const float *_ptr(arr, size_t need, str name) except? NULL:
    if arr is None:
        return NULL
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.ndim != 1 or not arr.flags.c_contiguous:
        raise ValueError(f"{name}: expected a contiguous 1-D float32 array")
    if <size_t>arr.shape[0] != need:
        raise ValueError(f"{name}: expected {need} floats, got {arr.shape[0]}")
    cdef const float[::1] view = arr
    return &view[0]


cdef class EncoderLayer:
    """One pre-LN ViT encoder layer: packed weights (for one ISA) plus the C struct pointing into them.
    mlp: "standard" (fc2(act(fc1))) or "swiglu" (fc1_w packed [2*inter, dim]: gate | up rows); arrays may
    hold layer scales "ls1", "ls2" [dim] (DINOv2's lambda1 / lambda2)."""
    cdef vitc_vit_layer c
    cdef vitc_vit_dims dims
    cdef readonly int isa
    cdef readonly dict arrays

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
        missing = [f for f in _LAYER_FIELDS if f not in arrays]
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
        self.c.ln1_g = _ptr(a["ln1_g"], dim, "ln1_g")
        self.c.ln1_b = _ptr(a["ln1_b"], dim, "ln1_b")
        self.c.ln2_g = _ptr(a["ln2_g"], dim, "ln2_g")
        self.c.ln2_b = _ptr(a["ln2_b"], dim, "ln2_b")
        self.c.qkv_w = _ptr(a["qkv_w"], vitc_f32_gemm_packed_floats(<vitc_isa>isa, 3 * dim, dim), "qkv_w")
        self.c.qkv_b = _ptr(a["qkv_b"], 3 * dim, "qkv_b")
        self.c.proj_w = _ptr(a["proj_w"], vitc_f32_gemm_packed_floats(<vitc_isa>isa, dim, dim), "proj_w")
        self.c.proj_b = _ptr(a["proj_b"], dim, "proj_b")
        self.c.fc1_w = _ptr(a["fc1_w"], vitc_f32_gemm_packed_floats(<vitc_isa>isa, fc1_n, dim), "fc1_w")
        self.c.fc1_b = _ptr(a["fc1_b"], fc1_n, "fc1_b")
        self.c.fc2_w = _ptr(a["fc2_w"], vitc_f32_gemm_packed_floats(<vitc_isa>isa, dim, inter), "fc2_w")
        self.c.fc2_b = _ptr(a["fc2_b"], dim, "fc2_b")
        self.c.ls1 = _ptr(a.get("ls1"), dim, "ls1")
        self.c.ls2 = _ptr(a.get("ls2"), dim, "ls2")
        if self.c.qkv_w == NULL or self.c.proj_w == NULL or self.c.fc1_w == NULL or self.c.fc2_w == NULL:
            raise ValueError("EncoderLayer: weights must not be None")
        if self.c.ln1_g == NULL or self.c.ln1_b == NULL or self.c.ln2_g == NULL or self.c.ln2_b == NULL:
            raise ValueError("EncoderLayer: LayerNorm parameters must not be None")

    def workspace_floats(self, int nthreads, size_t batch, size_t seq):
        return vitc_vit_layer_workspace_floats(<vitc_isa>self.isa, nthreads, &self.dims, batch, seq)

    def forward(self, int nthreads, float[:, ::1] hidden, size_t batch, float[::1] workspace,
                float[:, :, :, ::1] probs=None, double[::1] phase_seconds=None):
        """In place on hidden [batch*seq, dim]; probs, if given, gets [batch, heads, seq, seq];
        phase_seconds, if given (float64, len(LAYER_PHASES)), gets each phase's wall time added."""
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
        cdef vitc_status st
        with nogil:
            st = vitc_vit_layer_forward(<vitc_isa>self.isa, nthreads, &self.dims, &self.c, batch, seq,
                                        &hidden[0, 0], pp, &workspace[0], ps)
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
    if patch_w.shape[0] != vitc_f32_gemm_packed_floats(<vitc_isa>isa, dim, c * ph * pw):
        raise ValueError("patch_w: packed size does not match dim x channels*ph*pw")
    _check_len(np.asarray(workspace), vitc_patch_embed_workspace_floats(b, c, h, w, ph, pw), "workspace")
    out_arr = np.asarray(out)
    for arr, name in ((pixels, "pixels"), (patch_w, "patch_w"), (patch_b, "patch_b"), (prefix, "prefix"),
                      (patch_pos, "patch_pos"), (workspace, "workspace")):
        if arr is not None:
            _no_overlap(out_arr, np.asarray(arr), "out", name)
    cdef const float *pb = NULL if patch_b is None else &patch_b[0]
    cdef const float *pre = NULL if nprefix == 0 else &prefix[0, 0]
    cdef const float *pos = NULL if patch_pos is None else &patch_pos[0, 0]
    cdef vitc_status st
    with nogil:
        st = vitc_patch_embed(<vitc_isa>isa, nthreads, b, c, h, w, ph, pw, dim, &pixels[0, 0, 0, 0], &patch_w[0],
                              pb, nprefix, pre, pos, &out[0, 0, 0], &workspace[0])
    _raise_for(st, "patch embedding")
    return out_arr
