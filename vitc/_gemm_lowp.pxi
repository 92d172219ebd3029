# GEMM on packed weights that know their dtype (csrc/gemm_lowp.c): float32, bfloat16, int8.
# A weight is packed once for a (kernel set, dtype) into a PackedWeight; every call names the kernel set
# it computes with, and a weight packed for another one is a ValueError (never undefined behaviour).

DTYPES = ("float32", "bfloat16", "int8")
_DTYPE_ALIASES = {"float32": 0, "fp32": 0, "f32": 0, "bfloat16": 1, "bf16": 1, "int8": 2, "s8": 2}
KERNEL_SETS = ("scalar", "avx2", "avx512", "avx512_bf16", "avx512_vnni", "amx")
INT8_MAX_K = 65536  # int32 sums stay exact: k·255·127 < 2^31


def dtype_code(name):
    """0/1/2 for float32/bfloat16/int8 (also 'fp32', 'bf16', 's8'); ValueError otherwise."""
    key = str(name).strip().lower()
    if key not in _DTYPE_ALIASES:
        raise ValueError(f"unknown dtype {name!r}: expected one of {', '.join(DTYPES)} (or fp32, bf16)")
    return _DTYPE_ALIASES[key]


def kernel_set_code(name):
    key = str(name).strip().lower()
    if key not in KERNEL_SETS:
        raise ValueError(f"unknown kernel set {name!r}: expected one of {', '.join(KERNEL_SETS)}")
    return KERNEL_SETS.index(key)


def kernel_set_supported(int kset):
    return 0 <= kset < len(KERNEL_SETS) and bool(vitc_kset_supported(<vitc_kset>kset))


def kernel_sets(int dtype):
    """Codes of the kernel sets this build and CPU can run for `dtype`, best last."""
    return [s for s in range(len(KERNEL_SETS))
            if vitc_kset_supported(<vitc_kset>s) and vitc_kset_has_dtype(<vitc_kset>s, <vitc_dtype>dtype)]


def gemm_tile(int kset, int dtype):
    """(mr, nr, kr) of the (kernel set, dtype) configuration: register tile and k interleave."""
    cdef size_t mr = 0, nr = 0, kr = 0
    _kset(kset, dtype)
    vitc_gemm_tile(<vitc_kset>kset, <vitc_dtype>dtype, &mr, &nr, &kr)
    return mr, nr, kr


cdef int _kset(int kset, int dtype) except -1:
    if not (0 <= dtype < len(DTYPES)):
        raise ValueError(f"unknown dtype code {dtype}")
    if not (0 <= kset < len(KERNEL_SETS)):
        raise ValueError(f"unknown kernel set code {kset}")
    if not vitc_kset_has_dtype(<vitc_kset>kset, <vitc_dtype>dtype):
        raise ValueError(f"kernel set {KERNEL_SETS[kset]} has no {DTYPES[dtype]} kernels")
    if not vitc_kset_supported(<vitc_kset>kset):
        raise ValueError(f"kernel set {KERNEL_SETS[kset]} is not supported by this CPU/build")
    return kset


def _aligned_bytes(size_t nbytes):
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    offset = (-raw.ctypes.data) % 64
    return raw[offset:offset + nbytes]


cdef class PackedWeight:
    """A Linear weight W[n, k] packed for one (kernel set, dtype): the buffer (uint8, 64-byte aligned; may
    be a slice of a model's arena) and the C handle the GEMM takes."""
    cdef vitc_packed p
    cdef readonly object buffer

    @property
    def dtype(self):
        return DTYPES[<int>self.p.dtype]

    @property
    def kernel_set(self):
        return KERNEL_SETS[<int>self.p.kset]

    @property
    def shape(self):
        return (self.p.n, self.p.k)

    @property
    def nbytes(self):
        return self.buffer.nbytes

    def scales(self):
        """int8: per-output-channel scales [n] (W[j] ~ scales[j] * q[j]); None otherwise."""
        if self.p.scales == NULL:
            return None
        off = <size_t>self.p.scales - <size_t>self.p.data
        return self.buffer[off:off + 4 * self.p.n].view(np.float32)

    def compensation(self):
        """int8: 128 * sum_k q[j, k] per output channel [n], subtracted from the u8 x s8 sums."""
        if self.p.comp == NULL:
            return None
        off = <size_t>self.p.comp - <size_t>self.p.data
        return self.buffer[off:off + 4 * self.p.n].view(np.int32)

    def unpack(self):
        """(q, scales): the logical form of a bfloat16 / int8 weight, as gemm_convert_weight returns it (what
        it was packed from, read back out of the panels)."""
        if self.p.dtype == VITC_DTYPE_F32:
            raise ValueError("unpack: a float32 packed weight has no converted form")
        q = np.empty((self.p.n, self.p.k), LOGICAL_DTYPES[<int>self.p.dtype])
        scales = np.empty(self.p.n, np.float32) if self.p.dtype == VITC_DTYPE_S8 else None
        cdef unsigned char[:, ::1] qv = q.view(np.uint8)
        cdef float[::1] sv
        cdef float *sp = NULL
        if scales is not None:
            sv = scales
            sp = &sv[0]
        with nogil:
            vitc_gemm_unpack(&self.p, &qv[0, 0], self.p.k, sp)
        return q, scales

    def __repr__(self):
        return f"PackedWeight({self.dtype}, {self.kernel_set}, n={self.p.n}, k={self.p.k}, {self.nbytes} bytes)"


def gemm_packed_bytes(int kset, int dtype, size_t n, size_t k):
    _kset(kset, dtype)
    return vitc_gemm_packed_bytes(<vitc_kset>kset, <vitc_dtype>dtype, n, k)


cdef _pack_buffer(size_t need, out, w_arr):
    """A new 64-byte aligned buffer of `need` bytes, or `out` checked to be one (not overlapping w)."""
    if out is None:
        return _aligned_bytes(need)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 1 or not out.flags.c_contiguous:
        raise ValueError("out: expected a contiguous 1-D uint8 array")
    _check_shape(out, (need,), "out")
    if out.ctypes.data % 64:
        raise ValueError("out: must start on a 64-byte boundary")
    _no_overlap(out, w_arr, "out", "w")
    return out


cdef _check_k(int dtype, size_t n, size_t k):
    if n == 0 or k == 0:
        raise ValueError("w must be non-empty")
    if dtype == 2 and k > INT8_MAX_K:
        raise ValueError(f"int8 GEMM: k = {k} > {INT8_MAX_K} would overflow the int32 sums")


def gemm_pack_weight(int kset, int dtype, const float[:, :] w, out=None):
    """Pack (and convert) a float32 Linear weight W[n, k] for (kset, dtype) into a new buffer or into `out`
    (1-D uint8, exactly gemm_packed_bytes(kset, dtype, n, k) long, 64-byte aligned)."""
    _kset(kset, dtype)
    w_arr = np.asarray(w)
    cdef size_t n = w.shape[0], k = w.shape[1], ldw = _ld(w_arr, "w")
    _check_k(dtype, n, k)
    buf = _pack_buffer(vitc_gemm_packed_bytes(<vitc_kset>kset, <vitc_dtype>dtype, n, k), out, w_arr)
    cdef unsigned char[::1] b = buf
    pw = PackedWeight()
    with nogil:
        vitc_gemm_pack(<vitc_kset>kset, <vitc_dtype>dtype, n, k, &w[0, 0], ldw, &b[0], &pw.p)
    pw.buffer = buf
    return pw


# the logical form of a converted weight: numpy dtype of its values per dtype code
LOGICAL_DTYPES = {1: np.dtype(np.uint16), 2: np.dtype(np.int8)}


def gemm_convert_weight(int dtype, const float[:, :] w, q=None, scales=None):
    """The first step of gemm_pack_weight alone: (q, scales) of a float32 W[n, k]; bfloat16: q = the bf16
    bits (uint16 [n, k], round to nearest even), scales None; int8: q = s8 values (int8 [n, k]) and
    scales = float32 [n] (W[j] ~ scales[j] * q[j], symmetric per output channel). Rows convert
    independently (a row block gives the same values as the whole weight). q / scales: arrays to fill
    (C-contiguous, not overlapping w), else new ones."""
    if dtype not in LOGICAL_DTYPES:
        raise ValueError(f"gemm_convert_weight: dtype code {dtype} is not bfloat16 (1) or int8 (2)")
    w_arr = np.asarray(w)
    cdef size_t n = w.shape[0], k = w.shape[1], ldw = _ld(w_arr, "w")
    _check_k(dtype, n, k)
    if q is None:
        q = np.empty((n, k), LOGICAL_DTYPES[dtype])
    elif not isinstance(q, np.ndarray) or q.dtype != LOGICAL_DTYPES[dtype] or not q.flags.c_contiguous:
        raise ValueError(f"q: expected a C-contiguous {LOGICAL_DTYPES[dtype]} array")
    _check_shape(q, (n, k), "q")
    _no_overlap(q, w_arr, "q", "w")
    if dtype == 2:
        if scales is None:
            scales = np.empty(n, np.float32)
        elif not isinstance(scales, np.ndarray) or scales.dtype != np.float32 or not scales.flags.c_contiguous:
            raise ValueError("scales: expected a C-contiguous float32 array")
        _check_shape(scales, (n,), "scales")
        _no_overlap(scales, w_arr, "scales", "w")
    elif scales is not None:
        raise ValueError("scales: bfloat16 weights have no scales")
    cdef unsigned char[:, ::1] qv = q.view(np.uint8)
    cdef float[::1] sv
    cdef float *sp = NULL
    if scales is not None:
        sv = scales
        sp = &sv[0]
    with nogil:
        vitc_gemm_convert(<vitc_dtype>dtype, n, k, &w[0, 0], ldw, &qv[0, 0], k, sp)
    return q, scales


def gemm_pack_converted(int kset, int dtype, q, scales=None, out=None):
    """The second step alone: pack a weight already in the logical form of gemm_convert_weight (q: uint16
    bf16 bits or int8 values [n, k], C-contiguous; scales: float32 [n] for int8). The bytes are those
    gemm_pack_weight makes from the float32 weight that converts to (q, scales)."""
    _kset(kset, dtype)
    if dtype not in LOGICAL_DTYPES:
        raise ValueError("gemm_pack_converted: float32 weights take gemm_pack_weight")
    want = LOGICAL_DTYPES[dtype]
    if not isinstance(q, np.ndarray) or q.dtype != want or q.ndim != 2 or not q.flags.c_contiguous:
        got = f"{q.dtype} {q.ndim}-D" if isinstance(q, np.ndarray) else type(q).__name__
        raise ValueError(f"q: expected a C-contiguous 2-D {want} array for {DTYPES[dtype]}, got {got}")
    cdef size_t n = q.shape[0], k = q.shape[1]
    _check_k(dtype, n, k)
    cdef const float[::1] sv
    cdef const float *sp = NULL
    if dtype == 2:
        if (not isinstance(scales, np.ndarray) or scales.dtype != np.float32 or scales.ndim != 1
                or not scales.flags.c_contiguous):
            raise ValueError("scales: int8 needs a contiguous 1-D float32 array of per-output-channel scales")
        _check_shape(scales, (n,), "scales")
        sv = scales
        sp = &sv[0]
    elif scales is not None:
        raise ValueError("scales: bfloat16 weights have no scales")
    buf = _pack_buffer(vitc_gemm_packed_bytes(<vitc_kset>kset, <vitc_dtype>dtype, n, k), out, q)
    if scales is not None:
        _no_overlap(buf, scales, "out", "scales")
    cdef const unsigned char[:, ::1] qv = q.view(np.uint8)
    cdef unsigned char[::1] b = buf
    pw = PackedWeight()
    with nogil:
        vitc_gemm_pack_converted(<vitc_kset>kset, <vitc_dtype>dtype, n, k, &qv[0, 0], k, sp, &b[0], &pw.p)
    pw.buffer = buf
    return pw


cdef _check_weight(int kset, PackedWeight w, size_t k):
    if w is None or w.buffer is None:
        raise ValueError("w: expected a PackedWeight from gemm_pack_weight")
    if <int>w.p.kset != kset:
        raise ValueError(f"w was packed for kernel set {w.kernel_set} ({w.dtype}) but kernel set "
                         f"{KERNEL_SETS[kset] if 0 <= kset < len(KERNEL_SETS) else kset} was asked to compute "
                         f"with it: repack the weight for this kernel set")
    _kset(kset, <int>w.p.dtype)
    if k != w.p.k:
        raise ValueError(f"a: expected {w.p.k} columns (the packed weight's k), got {k}")


def gemm_workspace_bytes(int kset, int dtype, size_t m, size_t k):
    """Bytes of workspace gemm_packed needs for m rows: the converted A (+ int8 row scales); 0 for float32."""
    _kset(kset, dtype)
    return vitc_gemm_workspace_bytes(<vitc_kset>kset, <vitc_dtype>dtype, m, k)


def gemm_packed(int kset, int nthreads, const float[:, :] a, PackedWeight w, float[:, :] out,
                const float[::1] bias=None, int act=0, const float[:, :] residual=None, workspace=None,
                const float[::1] scale=None):
    """out[m, n] = act(a · Wᵀ + bias) · scale + residual with W packed by gemm_pack_weight for `kset`; `residual`
    may be `out` itself. a is converted per call (bf16 rounding / int8 per-row quantization) into
    `workspace` (uint8, >= gemm_workspace_bytes(...), allocated when None)."""
    _threads(nthreads)
    a_arr, out_arr = np.asarray(a), np.asarray(out)
    cdef size_t m = a.shape[0], k = a.shape[1]
    cdef size_t lda = _ld(a_arr, "a"), ldc = _ld(out_arr, "out")
    _check_weight(kset, w, k)
    if m == 0:
        raise ValueError("gemm_packed: a must have >= 1 row")
    cdef vitc_epilogue ep
    _fill_epilogue(&ep, bias, act, residual, out_arr, m, w.p.n, ldc, scale)
    _no_overlap(out_arr, a_arr, "out", "a")
    _no_overlap(out_arr, w.buffer, "out", "w")
    cdef size_t need = vitc_gemm_workspace_bytes(<vitc_kset>kset, w.p.dtype, m, k)
    ws = _aligned_bytes(max(need, <size_t>1)) if workspace is None else workspace
    if not isinstance(ws, np.ndarray) or ws.dtype != np.uint8 or ws.ndim != 1 or not ws.flags.c_contiguous:
        raise ValueError("workspace: expected a contiguous 1-D uint8 array")
    if <size_t>ws.shape[0] < need:
        raise ValueError(f"workspace: needs {need} bytes, got {ws.shape[0]}")
    for arr, name in ((a_arr, "a"), (out_arr, "out"), (w.buffer, "w")):
        _no_overlap(ws, arr, "workspace", name)
    cdef unsigned char[::1] wsv = ws
    cdef vitc_status st
    with nogil:
        st = vitc_gemm(<vitc_kset>kset, nthreads, m, &a[0, 0], lda, &w.p, &ep, &out[0, 0], ldc, &wsv[0])
    _raise_for(st, "gemm_packed")
    return out_arr


def gemm_pack_a(int kset, int dtype, const float[:, :] a, apack, row_scales=None, size_t row0=0):
    """Convert rows [row0, row0 + len(a)) of an m-row A into `apack` (uint8, gemm_packed_a_bytes(kset, dtype,
    m, k) long) and, for int8, `row_scales` (float32, >= m rounded up to mr): the separate step a LayerNorm/GELU
    producer can run on each row block it finishes, before gemm_packed_a."""
    _kset(kset, dtype)
    a_arr = np.asarray(a)
    cdef size_t rows = a.shape[0], k = a.shape[1], lda = _ld(a_arr, "a")
    cdef size_t mr = 0, nr = 0, kr = 0
    vitc_gemm_tile(<vitc_kset>kset, <vitc_dtype>dtype, &mr, &nr, &kr)
    if dtype == 0:
        raise ValueError("gemm_pack_a: float32 has no A conversion")
    if rows == 0 or k == 0:
        raise ValueError("gemm_pack_a: a must be non-empty")
    cdef size_t m_pad = (row0 + rows + mr - 1) // mr * mr
    cdef size_t need = vitc_gemm_packed_a_bytes(<vitc_kset>kset, <vitc_dtype>dtype, m_pad, k)
    if not isinstance(apack, np.ndarray) or apack.dtype != np.uint8 or apack.ndim != 1 or not apack.flags.c_contiguous:
        raise ValueError("apack: expected a contiguous 1-D uint8 array")
    if <size_t>apack.shape[0] < need:
        raise ValueError(f"apack: rows up to {row0 + rows} of k = {k} need {need} bytes, got {apack.shape[0]}")
    _no_overlap(apack, a_arr, "apack", "a")
    cdef float[::1] rs
    cdef float *rsp = NULL
    if dtype == 2:
        if row_scales is None:
            raise ValueError("gemm_pack_a: int8 needs row_scales")
        rs = row_scales
        _check_len(np.asarray(rs), m_pad, "row_scales")
        rsp = &rs[0]
    cdef unsigned char[::1] ap = apack
    with nogil:
        vitc_gemm_pack_a(<vitc_kset>kset, <vitc_dtype>dtype, row0, rows, k, &a[0, 0], lda, &ap[0], rsp)
    return apack


def gemm_into_packed_a(int kset, int nthreads, const float[:, :] a, PackedWeight w, apack,
                       const float[::1] bias=None, int act=0):
    """act(a · Wᵀ + bias) for a bf16 W, rounded to bf16 straight into `apack` (uint8, gemm_packed_a_bytes(kset,
    bf16, m, W's n) long): the packed A of a next GEMM with k = n, as gemm_packed then gemm_pack_a would give,
    without the float32 output. ValueError where the kernel set cannot (no tile kernel, n not a multiple of
    its tile width, an activation it does not finish)."""
    _threads(nthreads)
    a_arr = np.asarray(a)
    cdef size_t m = a.shape[0], k = a.shape[1], lda = _ld(a_arr, "a")
    _check_weight(kset, w, k)
    if m == 0:
        raise ValueError("gemm_into_packed_a: a must have >= 1 row")
    _act(act)
    cdef vitc_epilogue ep
    ep.residual = NULL
    ep.ldr = 0
    ep.scale = NULL
    ep.bias = NULL
    ep.act = <vitc_act>act
    if bias is not None:
        _check_shape(np.asarray(bias), (w.p.n,), "bias")
        ep.bias = &bias[0]
    if not vitc_gemm_output_packs(<vitc_kset>kset, &w.p, &ep):
        raise ValueError(f"gemm_into_packed_a: kernel set {w.kernel_set} cannot write a {w.dtype} output of "
                         f"n = {w.p.n} with activation {act} as packed A")
    cdef size_t need = vitc_gemm_packed_a_bytes(<vitc_kset>kset, w.p.dtype, m, w.p.n)
    if not isinstance(apack, np.ndarray) or apack.dtype != np.uint8 or apack.ndim != 1 or not apack.flags.c_contiguous:
        raise ValueError("apack: expected a contiguous 1-D uint8 array")
    if <size_t>apack.shape[0] < need:
        raise ValueError(f"apack: needs {need} bytes for m = {m}, k = {w.p.n}, got {apack.shape[0]}")
    _no_overlap(apack, a_arr, "apack", "a")
    _no_overlap(apack, w.buffer, "apack", "w")
    ws = _aligned_bytes(max(vitc_gemm_workspace_bytes(<vitc_kset>kset, w.p.dtype, m, k), <size_t>1))
    cdef unsigned char[::1] wsv = ws
    cdef unsigned char[::1] ap = apack
    cdef vitc_status st
    with nogil:
        st = vitc_gemm_into_packed_a(<vitc_kset>kset, nthreads, m, &a[0, 0], lda, &w.p, &ep, &ap[0], &wsv[0])
    _raise_for(st, "gemm_into_packed_a")
    return apack


def gemm_packed_a_bytes(int kset, int dtype, size_t m, size_t k):
    _kset(kset, dtype)
    return vitc_gemm_packed_a_bytes(<vitc_kset>kset, <vitc_dtype>dtype, m, k)


def gemm_packed_a(int kset, int nthreads, size_t m, apack, row_scales, PackedWeight w, float[:, :] out,
                  const float[::1] bias=None, int act=0, const float[:, :] residual=None,
                  const float[::1] scale=None):
    """gemm_packed on an A already converted by gemm_pack_a (all m rows)."""
    _threads(nthreads)
    _check_weight(kset, w, w.p.k)
    if w.p.dtype == 0:
        raise ValueError("gemm_packed_a: float32 weights take gemm_packed")
    out_arr = np.asarray(out)
    cdef size_t ldc = _ld(out_arr, "out"), k = w.p.k
    cdef size_t mr = 0, nr = 0, kr = 0
    vitc_gemm_tile(<vitc_kset>kset, w.p.dtype, &mr, &nr, &kr)
    if m == 0:
        raise ValueError("gemm_packed_a: m must be >= 1")
    cdef size_t need = vitc_gemm_packed_a_bytes(<vitc_kset>kset, w.p.dtype, m, k)
    if not isinstance(apack, np.ndarray) or apack.dtype != np.uint8 or apack.ndim != 1 or not apack.flags.c_contiguous:
        raise ValueError("apack: expected a contiguous 1-D uint8 array")
    if <size_t>apack.shape[0] < need:
        raise ValueError(f"apack: needs {need} bytes for m = {m}, k = {k}, got {apack.shape[0]}")
    cdef vitc_epilogue ep
    _fill_epilogue(&ep, bias, act, residual, out_arr, m, w.p.n, ldc, scale)
    _no_overlap(out_arr, apack, "out", "apack")
    cdef float[::1] rs
    cdef const float *rsp = NULL
    if w.p.dtype == 2:
        if row_scales is None:
            raise ValueError("gemm_packed_a: int8 needs row_scales")
        rs = row_scales
        _check_len(np.asarray(rs), (m + mr - 1) // mr * mr, "row_scales")
        rsp = &rs[0]
    cdef const unsigned char[::1] ap = apack
    cdef vitc_status st
    with nogil:
        st = vitc_gemm_packed_a(<vitc_kset>kset, nthreads, m, &ap[0], rsp, &w.p, &ep, &out[0, 0], ldc)
    _raise_for(st, "gemm_packed_a")
    return out_arr
