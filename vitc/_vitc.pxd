# C declarations of csrc/vitc.h for the bindings in _vitc.pyx (see that header for the contracts).
from libc.stdint cimport uint64_t

cdef extern from "vitc.h" nogil:
    ctypedef enum vitc_isa:
        VITC_ISA_SCALAR
        VITC_ISA_AVX2
        VITC_ISA_AVX512
    ctypedef enum vitc_status:
        VITC_OK
        VITC_ERR_ARG
        VITC_ERR_NOMEM
        VITC_ERR_ISA
    ctypedef enum vitc_act:
        VITC_ACT_NONE
        VITC_ACT_GELU_ERF
        VITC_ACT_GELU_TANH
        VITC_ACT_QUICK_GELU
        VITC_ACT_RELU
        VITC_ACT_SILU
        VITC_ACT_TANH
        VITC_ACT_SIGMOID

    enum: VITC_ISA_COUNT
    enum: VITC_ACT_COUNT
    enum: VITC_PHASE_COUNT
    enum: VITC_CPU_FEATURE_COUNT
    uint64_t vitc_cpu_features()
    const char *vitc_cpu_feature_name(int bit)
    uint64_t vitc_isa_required_features(vitc_isa isa)
    int vitc_isa_compiled(vitc_isa isa)
    int vitc_isa_supported(vitc_isa isa)
    vitc_isa vitc_isa_best()
    const char *vitc_isa_name(vitc_isa isa)
    const char *vitc_act_name(vitc_act act)
    ctypedef struct vitc_tile_sizes:
        size_t gemm_mr, gemm_nr, gemm_kc, gemm_mc, gemm_nc
        size_t attention_mr, attention_nr
    void vitc_isa_tile_sizes(vitc_isa isa, vitc_tile_sizes *out)

    size_t vitc_f32_gemm_packed_floats(vitc_isa isa, size_t n, size_t k)
    void vitc_f32_gemm_pack_nk(vitc_isa isa, size_t n, size_t k, const float *w, size_t ldw, float *packed)
    void vitc_f32_gemm_pack_kn(vitc_isa isa, size_t n, size_t k, const float *b, size_t ldb, float *packed)
    ctypedef struct vitc_epilogue:
        const float *bias
        vitc_act act
        const float *residual
        size_t ldr
        const float *scale
    vitc_status vitc_f32_gemm(vitc_isa isa, int nthreads, size_t m, size_t n, size_t k,
                              const float *a, size_t lda, const float *packed, const vitc_epilogue *ep,
                              float *c, size_t ldc)
    ctypedef enum vitc_dtype:
        VITC_DTYPE_F32
        VITC_DTYPE_BF16
        VITC_DTYPE_S8
    ctypedef enum vitc_kset:
        VITC_KSET_SCALAR
        VITC_KSET_AVX2
        VITC_KSET_AVX512
        VITC_KSET_AVX512_BF16
        VITC_KSET_AVX512_VNNI
        VITC_KSET_AMX
    ctypedef struct vitc_packed:
        vitc_dtype dtype
        vitc_kset kset
        size_t n, k
        const void *data
        const float *scales
        const int *comp
    int vitc_kset_supported(vitc_kset kset)
    int vitc_kset_has_dtype(vitc_kset kset, vitc_dtype dtype)
    void vitc_gemm_tile(vitc_kset kset, vitc_dtype dtype, size_t *mr, size_t *nr, size_t *kr)
    size_t vitc_gemm_packed_bytes(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k)
    void vitc_gemm_pack(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k, const float *w, size_t ldw,
                        void *buf, vitc_packed *out)
    void vitc_gemm_convert(vitc_dtype dtype, size_t n, size_t k, const float *w, size_t ldw, void *q, size_t ldq,
                           float *scales)
    void vitc_gemm_pack_converted(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k, const void *q, size_t ldq,
                                  const float *scales, void *buf, vitc_packed *out)
    void vitc_gemm_unpack(const vitc_packed *w, void *q, size_t ldq, float *scales)
    size_t vitc_gemm_packed_a_bytes(vitc_kset kset, vitc_dtype dtype, size_t m, size_t k)
    void vitc_gemm_pack_a(vitc_kset kset, vitc_dtype dtype, size_t row0, size_t rows, size_t k, const float *a,
                          size_t lda, void *apack, float *row_scales)
    vitc_status vitc_gemm_packed_a(vitc_kset kset, int nthreads, size_t m, const void *apack,
                                   const float *row_scales, const vitc_packed *w, const vitc_epilogue *ep,
                                   float *c, size_t ldc)
    int vitc_gemm_output_packs(vitc_kset kset, const vitc_packed *w, const vitc_epilogue *ep)
    vitc_status vitc_gemm_into_packed_a(vitc_kset kset, int nthreads, size_t m, const float *a, size_t lda,
                                        const vitc_packed *w, const vitc_epilogue *ep, void *out_apack,
                                        void *workspace)
    size_t vitc_gemm_workspace_bytes(vitc_kset kset, vitc_dtype dtype, size_t m, size_t k)
    vitc_status vitc_gemm(vitc_kset kset, int nthreads, size_t m, const float *a, size_t lda,
                          const vitc_packed *w, const vitc_epilogue *ep, float *c, size_t ldc, void *workspace)
    size_t vitc_f32_gemm_serial_workspace_floats(vitc_isa isa, size_t k)
    void vitc_f32_gemm_serial(vitc_isa isa, size_t m, size_t n, size_t k, const float *a, size_t lda,
                              const float *packed, const vitc_epilogue *ep, float *c, size_t ldc,
                              float *workspace)

    void vitc_f32_layernorm(vitc_isa isa, int nthreads, size_t rows, size_t dim, const float *x, size_t ldx,
                            const float *gamma, const float *beta, float eps, float *y, size_t ldy)
    void vitc_f32_softmax_rows(vitc_isa isa, size_t rows, size_t n, float scale, float *x, size_t ldx)
    void vitc_f32_activation(vitc_isa isa, vitc_act act, float *x, size_t n)
    void vitc_f32_swiglu(vitc_isa isa, size_t rows, size_t hidden, const float *x, size_t ldx, float *y,
                         size_t ldy)
    void vitc_f32_patchify(int nthreads, size_t batch, size_t channels, size_t height, size_t width,
                           size_t ph, size_t pw, const float *pixels, float *out)
    size_t vitc_f32_attention_workspace_floats(vitc_isa isa, int nthreads, size_t seq, size_t head_dim)
    void vitc_f32_attention(vitc_isa isa, int nthreads, size_t batch, size_t seq, size_t heads,
                            size_t head_dim, const float *qkv, size_t ldqkv, float *out, size_t ldo,
                            float *probs, float *workspace)
    ctypedef struct vitc_attention_desc:
        size_t batch, heads, head_dim, seq_q, seq_kv
        const float *q
        size_t ldq
        const float *k
        size_t ldk
        const float *v
        size_t ldv
        float scale
        int causal
        const unsigned char *key_mask
    size_t vitc_f32_attention_general_workspace_floats(vitc_isa isa, int nthreads, size_t seq_q, size_t seq_kv,
                                                       size_t head_dim)
    void vitc_f32_attention_general(vitc_isa isa, int nthreads, const vitc_attention_desc *d, float *out,
                                    size_t ldo, float *probs, float *workspace)
    int vitc_bf16_attention_applies(vitc_kset kset, const vitc_attention_desc *d)
    size_t vitc_bf16_attention_workspace_floats(int nthreads, size_t seq_kv, size_t head_dim)
    vitc_status vitc_bf16_attention(vitc_kset kset, int nthreads, const vitc_attention_desc *d, float *out,
                                    size_t ldo, float *workspace)

    ctypedef enum vitc_mlp:
        VITC_MLP_STANDARD
        VITC_MLP_SWIGLU
    enum: VITC_MLP_COUNT
    const char *vitc_mlp_name(vitc_mlp mlp)
    ctypedef struct vitc_vit_dims:
        size_t dim, heads, inter
        float eps
        vitc_act act
        vitc_mlp mlp
        vitc_kset kset
        vitc_dtype dtype
    ctypedef enum vitc_phase:
        pass
    const char *vitc_phase_name(vitc_phase phase)
    ctypedef struct vitc_vit_layer:
        const float *ln1_g
        const float *ln1_b
        const float *ln2_g
        const float *ln2_b
        const vitc_packed *qkv_w
        const float *qkv_b
        const vitc_packed *proj_w
        const float *proj_b
        const vitc_packed *fc1_w
        const float *fc1_b
        const vitc_packed *fc2_w
        const float *fc2_b
        const float *ls1
        const float *ls2
    size_t vitc_vit_layer_workspace_floats(vitc_isa isa, int nthreads, const vitc_vit_dims *d, size_t batch,
                                           size_t seq)
    vitc_status vitc_vit_layer_forward(vitc_isa isa, int nthreads, const vitc_vit_dims *d, const vitc_vit_layer *w,
                                size_t batch, size_t seq, float *hidden, float *probs, float *workspace,
                                double *phase_seconds)
    vitc_status vitc_vit_layer_forward_masked(vitc_isa isa, int nthreads, const vitc_vit_dims *d,
                                              const vitc_vit_layer *w, size_t batch, size_t seq, int causal,
                                              const unsigned char *key_mask, float *hidden, float *probs,
                                              float *workspace, double *phase_seconds)
    size_t vitc_patch_embed_workspace_floats(size_t batch, size_t channels, size_t height, size_t width,
                                             size_t ph, size_t pw)
    vitc_status vitc_patch_embed(vitc_isa isa, int nthreads, size_t batch, size_t channels, size_t height,
                                 size_t width, size_t ph, size_t pw, size_t dim, const float *pixels,
                                 const float *patch_w, const float *patch_b, size_t nprefix, const float *prefix,
                                 const float *patch_pos, float *out, float *workspace)


cdef extern from "threadpool.h" nogil:
    int vitc_parallel_enabled()
    int vitc_parallel_workers()
    int vitc_parallel_probe(int nthreads)
