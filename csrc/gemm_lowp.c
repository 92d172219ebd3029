/* gemm_lowp.c — GEMM on packed weights that know their dtype: float32 (vitc_f32_gemm unchanged), bf16 and
 * int8, one configuration per (kernel set, dtype).
 *
 * bf16: W and A rounded to bf16 (nearest even), float32 sums: vdpbf16ps on AVX512_BF16; elsewhere the
 *   float32 micro-kernels on the bf16-rounded values, widened to float32 at packing (same products, exact
 *   in float32; the sums differ only in rounding order).
 * int8: W s8 symmetric per output channel; A quantized per row at each call (scale max|row|/127), + 128 to
 *   u8 for vpdpbusd; int32 sums (exact), minus the compensation 128·colsum(q) precomputed at packing,
 *   dequantized once (row_scale·col_scale) in the epilogue, then bias/act/residual in float32 — never
 *   requantized. Without VNNI: 16-bit A and vpmaddwd (vpmaddubsw would saturate); portable int32 loops.
 *
 * Driver: A is converted into MR-row panels once (a parallel loop over panels), then a parallel loop over
 * tasks = (row block of packed A: all of it up to 1.5 MB, else 1 MB) × (group of NR panels) computes each
 * MR×NR tile over all of k and runs the epilogue on it: panel by panel (its B micro-panel stays in L1), the block's row tiles inner
 * (measured against rows outer / panels inner: better at batch 1, worse by ~15% at 1576×768·768×2304). Each parallel region is one loop whose body is a function of (run, index)
 * (parallel_for): the only place that knows about threads. bf16 on AMX writes full tiles straight into C
 * (panel_into_c: accumulators from the bias or the residual, the activation overlapped with the next tile).
 */
#include <stdlib.h>
#include <string.h>

#include <stdatomic.h>

#include "gemm_internal.h"
#include "gemm_lowp_convert.h"
#include "gemm_lowp_internal.h"
#include "kernel_table.h"
#include "threadpool.h"

typedef struct {
    size_t mr, nr, kr;   /* register tile; k interleave of packed A and B */
    vitc_lowp_afmt afmt; /* the A-conversion step */
    size_t b_elt;        /* bytes per packed B element: 1 (s8), 2 (bf16), 4 (bf16 widened to float32) */
    vitc_lowp_ukernel_fn ukernel;
    vitc_lowp_pack_a_fn pack_a;
    vitc_lowp_epilogue_fn epilogue;
    /* tile kernels (AMX) only; zero elsewhere */
    size_t kq_block;                   /* kq rounded up to a multiple of this (0: not rounded) */
    int tile_rows_a;                   /* packed A in 16-row tiles instead of MR-row panels */
    void (*task_begin)(void), (*task_end)(void); /* around a thread's run of micro-kernel calls */
    /* bf16 AMX: a tile whose accumulators start from the bias or the residual, stored into C (panel_into_c) */
    void (*tile_c)(size_t mr, size_t kq, const void *a, const void *b, const vitc_amx_tile_c *t);
    int (*tile_c_finishes)(vitc_act act); /* whether tile_c can finish the previous tile with this activation */
} lowp_config;

/* the float32 micro-kernels as full-k tile kernels (bf16 widened at packing) */
static void bf16f32_ukernel_scalar(size_t mr, size_t kq, const void *VITC_RESTRICT a, const void *VITC_RESTRICT b,
                                   void *VITC_RESTRICT tile) {
    vitc_f32_gemm_ukernel_4x16__scalar(mr, 16, kq, (const float *)a, (const float *)b, (float *)tile, 16, 0);
}
static const lowp_config bf16_scalar = {.mr = 4, .nr = 16, .kr = 1, .afmt = VITC_A_BF16_F32, .b_elt = 4,
    .ukernel = bf16f32_ukernel_scalar, .pack_a = vitc_lowp_pack_a__scalar, .epilogue = vitc_lowp_epilogue__scalar};
static const lowp_config s8_scalar = {.mr = 4, .nr = 16, .kr = 4, .afmt = VITC_A_U8, .b_elt = 1,
    .ukernel = vitc_s8_gemm_ukernel_4x16__scalar, .pack_a = vitc_lowp_pack_a__scalar, .epilogue = vitc_lowp_epilogue__scalar};
#if defined(VITC_HAVE_X86_KERNELS)
static void bf16f32_ukernel_avx2(size_t mr, size_t kq, const void *VITC_RESTRICT a, const void *VITC_RESTRICT b,
                                 void *VITC_RESTRICT tile) {
    vitc_f32_gemm_ukernel_6x16__avx2(mr, 16, kq, (const float *)a, (const float *)b, (float *)tile, 16, 0);
}
static void bf16f32_ukernel_avx512(size_t mr, size_t kq, const void *VITC_RESTRICT a, const void *VITC_RESTRICT b,
                                   void *VITC_RESTRICT tile) {
    vitc_f32_gemm_ukernel_14x32__avx512(mr, 32, kq, (const float *)a, (const float *)b, (float *)tile, 32, 0);
}
static const lowp_config bf16_avx2 = {.mr = 6, .nr = 16, .kr = 1, .afmt = VITC_A_BF16_F32, .b_elt = 4,
    .ukernel = bf16f32_ukernel_avx2, .pack_a = vitc_lowp_pack_a__avx2, .epilogue = vitc_lowp_epilogue__avx2};
static const lowp_config s8_avx2 = {.mr = 6, .nr = 16, .kr = 2, .afmt = VITC_A_U16, .b_elt = 1,
    .ukernel = vitc_s16_gemm_ukernel_6x16__avx2, .pack_a = vitc_lowp_pack_a__avx2, .epilogue = vitc_lowp_epilogue__avx2};
static const lowp_config bf16_avx512 = {.mr = 14, .nr = 32, .kr = 1, .afmt = VITC_A_BF16_F32, .b_elt = 4,
    .ukernel = bf16f32_ukernel_avx512, .pack_a = vitc_lowp_pack_a__avx512, .epilogue = vitc_lowp_epilogue__avx512};
static const lowp_config s8_avx512 = {.mr = 12, .nr = 32, .kr = 2, .afmt = VITC_A_U16, .b_elt = 1,
    .ukernel = vitc_s16_gemm_ukernel_12x32__avx512, .pack_a = vitc_lowp_pack_a__avx512, .epilogue = vitc_lowp_epilogue__avx512};
static const lowp_config bf16_avx512bf16 = {.mr = 14, .nr = 32, .kr = 2, .afmt = VITC_A_BF16, .b_elt = 2,
    .ukernel = vitc_bf16_gemm_ukernel_14x32__avx512bf16, .pack_a = vitc_lowp_pack_a__avx512bf16, .epilogue = vitc_lowp_epilogue__avx512bf16};
static const lowp_config s8_avx512vnni = {.mr = 14, .nr = 32, .kr = 4, .afmt = VITC_A_U8, .b_elt = 1,
    .ukernel = vitc_s8_gemm_ukernel_14x32__avx512vnni, .pack_a = vitc_lowp_pack_a__avx512vnni, .epilogue = vitc_lowp_epilogue__avx512vnni};
/* AMX: B panels as vdpbf16ps / vpdpbusd lay them out (a 16-group × 16-column block of a panel is one B tile),
 * A in 16-row tiles, u8 A with the same compensation as VNNI (so int8 results equal avx512_vnni's bit for bit) */
static const lowp_config bf16_amx = {.mr = 32, .nr = 32, .kr = 2, .afmt = VITC_A_BF16, .b_elt = 2,
    .ukernel = vitc_bf16_gemm_ukernel_32x32__amx, .pack_a = vitc_lowp_pack_a__amx, .epilogue = vitc_lowp_epilogue__amx,
    .kq_block = 16, .tile_rows_a = 1, .task_begin = vitc_amx_task_begin, .task_end = vitc_amx_task_end,
    .tile_c = vitc_bf16_gemm_tile_c__amx, .tile_c_finishes = vitc_amx_finishes};
static const lowp_config s8_amx = {.mr = 32, .nr = 32, .kr = 4, .afmt = VITC_A_U8, .b_elt = 1,
    .ukernel = vitc_s8_gemm_ukernel_32x32__amx, .pack_a = vitc_lowp_pack_a__amx, .epilogue = vitc_lowp_epilogue__amx,
    .kq_block = 16, .tile_rows_a = 1, .task_begin = vitc_amx_task_begin, .task_end = vitc_amx_task_end};
#endif

/* The configuration of (kset, dtype) for bf16 / int8; NULL when that kernel set has none. */
static const lowp_config *lowp_config_of(vitc_kset kset, vitc_dtype dtype) {
    const int s8 = dtype == VITC_DTYPE_S8;
    if (dtype != VITC_DTYPE_BF16 && !s8) return NULL;
    switch (kset) {
    case VITC_KSET_SCALAR: return s8 ? &s8_scalar : &bf16_scalar;
#if defined(VITC_HAVE_X86_KERNELS)
    case VITC_KSET_AVX2: return s8 ? &s8_avx2 : &bf16_avx2;
    case VITC_KSET_AVX512: return s8 ? &s8_avx512 : &bf16_avx512;
    case VITC_KSET_AVX512_BF16: return s8 ? NULL : &bf16_avx512bf16;
    case VITC_KSET_AVX512_VNNI: return s8 ? &s8_avx512vnni : NULL;
    case VITC_KSET_AMX: return s8 ? &s8_amx : &bf16_amx;
#endif
    default: return NULL;
    }
}

static vitc_isa isa_of_kset(vitc_kset kset) {
    return kset == VITC_KSET_SCALAR ? VITC_ISA_SCALAR : kset == VITC_KSET_AVX2 ? VITC_ISA_AVX2 : VITC_ISA_AVX512;
}

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }
static size_t round64(size_t bytes) { return div_up(bytes, 64) * 64; }
static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* k groups of KR elements in packed A and B (per panel column / row), rounded up to the configuration's k
 * block: decided here only */
static size_t packed_kq(const lowp_config *cfg, size_t k) {
    const size_t kq = div_up(k, cfg->kr);
    return cfg->kq_block ? div_up(kq, cfg->kq_block) * cfg->kq_block : kq;
}

int vitc_kset_has_dtype(vitc_kset kset, vitc_dtype dtype) {
    if (dtype == VITC_DTYPE_F32) return kset <= VITC_KSET_AVX512 && vitc_isa_compiled((vitc_isa)kset);
    return lowp_config_of(kset, dtype) != NULL;
}

void vitc_gemm_tile(vitc_kset kset, vitc_dtype dtype, size_t *mr, size_t *nr, size_t *kr) {
    *mr = *nr = *kr = 0;
    if (!vitc_kset_has_dtype(kset, dtype)) return;
    if (dtype == VITC_DTYPE_F32) {
        /* the float32 table lives in gemm.c; its NR is what one packed row of one column occupies */
        *nr = vitc_f32_gemm_packed_floats((vitc_isa)kset, 1, 1);
        *mr = kset == VITC_KSET_AVX512 ? 14 : kset == VITC_KSET_AVX2 ? 6 : 4;
        *kr = 1;
        return;
    }
    const lowp_config *cfg = lowp_config_of(kset, dtype);
    *mr = cfg->mr;
    *nr = cfg->nr;
    *kr = cfg->kr;
}

/* ---- packed weights: [data][scales][comp], each 64-byte aligned ----------------------------------
 * Two steps: convert float32 to the logical form (bf16 bits, or s8 values + per-channel scales), then lay
 * the logical form out into panels. vitc_gemm_pack runs both a row chunk at a time; a weight saved in the
 * logical form (save_pretrained) takes only the second, so both give the same bytes. */

static size_t b_data_bytes(const lowp_config *cfg, size_t n, size_t k) {
    return round64(div_up(n, cfg->nr) * cfg->nr * packed_kq(cfg, k) * cfg->kr * cfg->b_elt);
}

size_t vitc_gemm_packed_bytes(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k) {
    if (!vitc_kset_has_dtype(kset, dtype)) return 0;
    if (dtype == VITC_DTYPE_F32) return vitc_f32_gemm_packed_floats((vitc_isa)kset, n, k) * sizeof(float);
    const lowp_config *cfg = lowp_config_of(kset, dtype);
    const size_t n_pad = div_up(n, cfg->nr) * cfg->nr;
    return b_data_bytes(cfg, n, k) + (dtype == VITC_DTYPE_S8 ? 2 * round64(n_pad * 4) : 0);
}

/* The parts of a packed bf16/int8 weight inside its buffer. */
typedef struct {
    const lowp_config *cfg;
    vitc_dtype dtype;
    size_t kq;
    unsigned char *data;
    float *scales;  /* s8 only */
    int32_t *comp;  /* s8 only */
} packed_parts;

static packed_parts parts_of(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k, const void *buf) {
    packed_parts v;
    v.cfg = lowp_config_of(kset, dtype);
    v.dtype = dtype;
    v.kq = packed_kq(v.cfg, k);
    v.data = (unsigned char *)(uintptr_t)buf;
    v.scales = NULL;
    v.comp = NULL;
    if (dtype == VITC_DTYPE_S8) {
        v.scales = (float *)(void *)(v.data + b_data_bytes(v.cfg, n, k));
        v.comp = (int32_t *)(void *)((unsigned char *)v.scales + round64(div_up(n, v.cfg->nr) * v.cfg->nr * 4));
    }
    return v;
}

/* The one statement of the layout (gemm_lowp_internal.h): W[column j, k index p] is element
 *     (j / NR)·kq·NR·KR + (j % NR)·KR   +   (p / KR)·NR·KR + p % KR
 * of the panels (b_elt bytes each): a column's base, then KR-element groups NR·KR elements apart.
 * panel_walk steps p through it without a division per element. */
typedef struct {
    size_t at, q;           /* element index of the current p; p % KR */
    size_t kr, group_step;  /* KR; NR·KR */
} panel_walk;

static panel_walk walk_from(const packed_parts *v, size_t j, size_t p) {
    const size_t NR = v->cfg->nr, KR = v->cfg->kr;
    panel_walk w = {(j / NR) * v->kq * NR * KR + (j % NR) * KR + (p / KR) * NR * KR + p % KR, p % KR, KR, NR * KR};
    return w;
}

static void walk_next(panel_walk *w) {
    if (++w->q == w->kr) {
        w->q = 0;
        w->at += w->group_step - w->kr + 1;
    } else {
        w->at++;
    }
}

/* Elements [p0, p0 + count) of output channel j, in logical form (bf16 bits / s8), into the panels; s8
 * adds them to the channel's compensation 128·Σq. */
static void put_logical(const packed_parts *v, size_t j, size_t p0, size_t count, const void *src) {
    panel_walk w = walk_from(v, j, p0);
    if (v->dtype == VITC_DTYPE_S8) {
        const int8_t *q = (const int8_t *)src;
        int8_t *dst = (int8_t *)(void *)v->data;
        int32_t sum = 0;
        for (size_t i = 0; i < count; i++, walk_next(&w)) {
            dst[w.at] = q[i];
            sum += q[i];
        }
        v->comp[j] += 128 * sum;
    } else if (v->cfg->b_elt == 2) {
        const uint16_t *h = (const uint16_t *)src;
        uint16_t *dst = (uint16_t *)(void *)v->data;
        for (size_t i = 0; i < count; i++, walk_next(&w)) dst[w.at] = h[i];
    } else { /* bf16 widened to float32 for kernels without bf16 arithmetic */
        const uint16_t *h = (const uint16_t *)src;
        uint32_t *dst = (uint32_t *)(void *)v->data;
        for (size_t i = 0; i < count; i++, walk_next(&w)) dst[w.at] = (uint32_t)h[i] << 16;
    }
}

/* The inverse: elements [0, k) of output channel j in logical form. */
static void get_logical(const packed_parts *v, size_t j, size_t k, void *out) {
    panel_walk w = walk_from(v, j, 0);
    for (size_t p = 0; p < k; p++, walk_next(&w)) {
        if (v->dtype == VITC_DTYPE_S8)
            ((int8_t *)out)[p] = ((const int8_t *)(const void *)v->data)[w.at];
        else if (v->cfg->b_elt == 2)
            ((uint16_t *)out)[p] = ((const uint16_t *)(const void *)v->data)[w.at];
        else
            ((uint16_t *)out)[p] = (uint16_t)(((const uint32_t *)(const void *)v->data)[w.at] >> 16);
    }
}

/* Zeroes the buffer (padding columns and k indices, their scales and compensation) and fills *out. */
static packed_parts begin_pack(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k, void *buf, vitc_packed *out) {
    memset(buf, 0, vitc_gemm_packed_bytes(kset, dtype, n, k));
    packed_parts v = parts_of(kset, dtype, n, k, buf);
    out->dtype = dtype;
    out->kset = kset;
    out->n = n;
    out->k = k;
    out->data = buf;
    out->scales = v.scales;
    out->comp = v.comp;
    return v;
}

/* s8: the scale of a row (max|w|/127) and inv = 127/max|w| that lowp_quant multiplies by. */
static float row_scale(const float *w, size_t k, float *inv) {
    const float amax = lowp_max_abs(w, k);
    *inv = lowp_quant_inv(amax);
    return amax / 127.0f;
}

/* count floats of one row into logical form: bf16 bits, or s8 with the row's inv */
static void convert_part(vitc_dtype dtype, const float *w, size_t count, float inv, void *q) {
    if (dtype == VITC_DTYPE_S8)
        for (size_t p = 0; p < count; p++) ((int8_t *)q)[p] = (int8_t)lowp_quant(w[p], inv);
    else
        for (size_t p = 0; p < count; p++) ((uint16_t *)q)[p] = lowp_bf16_bits(w[p]);
}

static size_t logical_elt(vitc_dtype dtype) { return dtype == VITC_DTYPE_S8 ? 1 : 2; }

void vitc_gemm_convert(vitc_dtype dtype, size_t n, size_t k, const float *w, size_t ldw, void *q, size_t ldq,
                       float *scales) {
    for (size_t j = 0; j < n; j++) {
        float inv = 0.0f;
        if (dtype == VITC_DTYPE_S8) scales[j] = row_scale(w + j * ldw, k, &inv);
        convert_part(dtype, w + j * ldw, k, inv, (unsigned char *)q + j * ldq * logical_elt(dtype));
    }
}

void vitc_gemm_pack_converted(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k, const void *q, size_t ldq,
                              const float *scales, void *buf, vitc_packed *out) {
    const packed_parts v = begin_pack(kset, dtype, n, k, buf, out);
    for (size_t j = 0; j < n; j++) {
        if (v.scales) v.scales[j] = scales[j];
        put_logical(&v, j, 0, k, (const unsigned char *)q + j * ldq * logical_elt(dtype));
    }
}

void vitc_gemm_unpack(const vitc_packed *w, void *q, size_t ldq, float *scales) {
    const packed_parts v = parts_of(w->kset, w->dtype, w->n, w->k, w->data);
    for (size_t j = 0; j < w->n; j++) {
        if (v.scales) scales[j] = v.scales[j];
        get_logical(&v, j, w->k, (unsigned char *)q + j * ldq * logical_elt(w->dtype));
    }
}

void vitc_gemm_pack(vitc_kset kset, vitc_dtype dtype, size_t n, size_t k, const float *w, size_t ldw,
                    void *buf, vitc_packed *out) {
    if (dtype == VITC_DTYPE_F32) {
        out->dtype = dtype;
        out->kset = kset;
        out->n = n;
        out->k = k;
        out->data = buf;
        out->scales = NULL;
        out->comp = NULL;
        vitc_f32_gemm_pack_nk((vitc_isa)kset, n, k, w, ldw, (float *)buf);
        return;
    }
    const packed_parts v = begin_pack(kset, dtype, n, k, buf, out);
    uint16_t chunk[256]; /* one row's logical form, a piece at a time (no allocation) */
    for (size_t j = 0; j < n; j++) {
        float inv = 0.0f;
        if (v.scales) v.scales[j] = row_scale(w + j * ldw, k, &inv);
        for (size_t p0 = 0; p0 < k; p0 += 256) {
            const size_t count = min_size(256, k - p0);
            convert_part(dtype, w + j * ldw + p0, count, inv, chunk);
            put_logical(&v, j, p0, count, chunk);
        }
    }
}

/* ---- packed A ------------------------------------------------------------------------------------ */
static size_t a_data_bytes(const lowp_config *cfg, size_t m, size_t k) {
    return round64(div_up(m, cfg->mr) * cfg->mr * packed_kq(cfg, k) * 4);
}

size_t vitc_gemm_packed_a_bytes(vitc_kset kset, vitc_dtype dtype, size_t m, size_t k) {
    const lowp_config *cfg = lowp_config_of(kset, dtype);
    return cfg ? a_data_bytes(cfg, m, k) : 0;
}

void vitc_gemm_pack_a(vitc_kset kset, vitc_dtype dtype, size_t row0, size_t rows, size_t k, const float *a,
                      size_t lda, void *apack, float *row_scales) {
    const lowp_config *cfg = lowp_config_of(kset, dtype);
    cfg->pack_a(cfg->afmt, cfg->tile_rows_a, cfg->mr, packed_kq(cfg, k), row0, rows, k, a, lda, apack,
                row_scales);
}

size_t vitc_gemm_workspace_bytes(vitc_kset kset, vitc_dtype dtype, size_t m, size_t k) {
    const lowp_config *cfg = lowp_config_of(kset, dtype);
    if (!cfg) return 0;
    return a_data_bytes(cfg, m, k) + round64(div_up(m, cfg->mr) * cfg->mr * sizeof(float));
}

/* ---- the threaded driver --------------------------------------------------------------------------- */
typedef struct {
    const lowp_config *cfg;
    size_t m, n, k, kq, n_panels;
    const float *a;
    size_t lda;
    unsigned char *apack_w; /* written by the packing loop */
    const unsigned char *apack;
    float *row_scales;
    const unsigned char *b;
    vitc_lowp_epilogue_args e;
    float *c;
    size_t ldc;
    unsigned char *out_a; /* bf16 AMX into packed A (vitc_gemm_into_packed_a) instead of c */
    size_t out_block;     /* bytes of one 16-row block of out_a */
    size_t block_tiles, n_groups, group_panels; /* task grid: row blocks (MR tiles each) × panel groups */
} lowp_run;

typedef void (*lowp_task_fn)(const lowp_run *r, size_t t);

/* body(r, t) for t < count, tasks handed out by an atomic counter (a dynamic schedule) on vitc's pool. */
typedef struct {
    lowp_task_fn body;
    const lowp_run *r;
    size_t count;
    atomic_size_t next;
} lowp_team;

static void lowp_member(void *ctx, int tid, int nt) {
    lowp_team *team = (lowp_team *)ctx;
    (void)tid;
    (void)nt;
    for (size_t t; (t = atomic_fetch_add_explicit(&team->next, 1, memory_order_relaxed)) < team->count;)
        team->body(team->r, t);
}

static void parallel_for(int nthreads, size_t count, lowp_task_fn body, const lowp_run *r) {
    if (nthreads <= 1 || count <= 1) {
        for (size_t t = 0; t < count; t++) body(r, t);
        return;
    }
    lowp_team team = {body, r, count, 0};
    atomic_init(&team.next, 0);
    vitc_parallel(nthreads, lowp_member, &team);
}

static void pack_a_task(const lowp_run *r, size_t t) {
    const size_t MR = r->cfg->mr, row0 = t * MR;
    r->cfg->pack_a(r->cfg->afmt, r->cfg->tile_rows_a, MR, packed_kq(r->cfg, r->k), row0,
                   min_size(MR, r->m - row0), r->k, r->a + row0 * r->lda, r->lda, r->apack_w, r->row_scales);
}

/* Whether panel_into_c can run the epilogue: the accumulators start from the bias, or from the residual
 * with the bias added after (no activation between them); the activation runs in place after. */
static int epilogue_into_c(const lowp_run *r) {
    return r->cfg->tile_c && !r->e.scale && !r->e.row_scales && !(r->e.residual && r->e.act != VITC_ACT_NONE);
}

/* A full tile in C still to finish in place: x = act(x + bias) (bias: after a residual start, else NULL); or,
 * into packed A, a tile in the task's scratch to finish into bf16 at `bf16`. */
typedef struct {
    float *c;
    const float *bias;
    unsigned char *bf16;
    unsigned flip; /* which of the two scratch tiles the next tile call stores into */
} pending_tile;

static void finish_now(const lowp_run *r, pending_tile *p) {
    if (p->c && p->bf16)
        vitc_amx_finish_bf16(r->cfg->mr, p->c, r->cfg->nr, p->bias, r->e.act, p->bf16, r->out_block);
    else if (p->c)
        vitc_kernels_for(r->e.isa)->tile_epilogue(r->cfg->mr, r->cfg->nr, p->c, r->ldc, p->c, r->ldc, p->bias,
                                                  r->e.act, NULL, NULL, 0);
    p->c = NULL;
}

/* The row tiles [i0, i1) of a full-width panel jp (bf16 AMX): full tiles straight into C, started from the
 * bias or the residual (then the bias added in place), the activation in place after; a last tile of fewer
 * than MR rows the same way through `edge`. A full tile's bias-after / activation runs during the next
 * tile call (its vector work overlaps that call's tile multiply-adds; *pend carries it to the next panel).
 * Each call also prefetches a share of the next panel of this task (next_b) into L1 and the next tile's C
 * rows for writing (docs/performance.md). Into packed A (r->out_a): every tile goes to one of two scratch tiles
 * (`edge` holds both), then act(x + bias) rounded to bf16 into its 16 groups of out_a's 16-row tiles, during
 * the next call like the activation above (the previous tile is read from the other scratch tile). */
static void panel_into_c(const lowp_run *r, size_t jp, const unsigned char *next_b, size_t i0, size_t i1,
                         float *edge, pending_tile *pend) {
    const lowp_config *cfg = r->cfg;
    const size_t MR = cfg->mr, NR = cfg->nr, col0 = jp * NR;
    const size_t panel_bytes = r->kq * NR * cfg->kr * cfg->b_elt;
    const unsigned char *bp = r->b + jp * panel_bytes;
    const size_t b_lines = next_b ? panel_bytes / 64 : 0, share = div_up(b_lines, div_up(i1 - i0, MR));
    const int overlap = cfg->tile_c_finishes(r->e.act);
    for (size_t i = i0, t = 0; i < i1; i += MR, t++) {
        const size_t rows = min_size(MR, r->m - i), next_rows = i + MR < i1 ? min_size(MR, r->m - (i + MR)) : 0;
        vitc_amx_tile_c tc;
        memset(&tc, 0, sizeof(tc));
        unsigned char *bf16 = r->out_a ? r->out_a + (i / 16) * r->out_block + jp * 16 * 64 : NULL;
        if (bf16) { /* no residual here (vitc_gemm_output_packs) */
            tc.c = edge + (pend->flip ^= 1u) * MR * NR;
            tc.ldc = NR;
            tc.init = r->e.bias ? r->e.bias + col0 : NULL;
        } else if (rows == MR) {
            tc.c = r->c + i * r->ldc + col0;
            tc.ldc = r->ldc;
            if (r->e.residual) {
                tc.init = r->e.residual + i * r->e.ldr + col0;
                tc.ldi = r->e.ldr;
            } else {
                tc.init = r->e.bias ? r->e.bias + col0 : NULL;
            }
        } else { /* the same start in `edge` (a row's result must not depend on where M ends) */
            tc.c = edge;
            tc.ldc = NR;
            if (r->e.residual) {
                for (size_t q = 0; q < rows; q++)
                    memcpy(edge + q * NR, r->e.residual + (i + q) * r->e.ldr + col0, NR * sizeof(float));
                memset(edge + rows * NR, 0, (MR - rows) * NR * sizeof(float));
                tc.init = edge;
                tc.ldi = NR;
            } else {
                tc.init = r->e.bias ? r->e.bias + col0 : NULL;
            }
        }
        if (next_rows == MR && !bf16) {
            tc.next_c = r->c + (i + MR) * r->ldc + col0;
            tc.next_c_rows = MR;
            tc.next_ldc = r->ldc;
        }
        if (t * share < b_lines) {
            tc.next_b = next_b + t * share * 64;
            tc.next_b_lines = min_size(share, b_lines - t * share);
        }
        if (pend->c) {
            tc.prev = pend->c;
            tc.prev_rows = MR;
            tc.prev_ldc = pend->bf16 ? NR : r->ldc; /* a scratch tile, else C */
            tc.prev_bias = pend->bias;
            tc.act = r->e.act;
            tc.prev_bf16 = pend->bf16;
            tc.prev_bf16_block = r->out_block;
            pend->c = NULL;
        }
        cfg->tile_c(rows, r->kq, r->apack + i * r->kq * 4, bp, &tc);
        const float *bias_after = r->e.residual && r->e.bias ? r->e.bias + col0 : NULL;
        if (bf16 && rows < MR) {
            vitc_amx_finish_bf16(rows, tc.c, NR, NULL, r->e.act, bf16, r->out_block);
            continue;
        }
        if (rows < MR) { /* finished from `edge` into C now, with the operations finish_rows uses */
            vitc_kernels_for(r->e.isa)->tile_epilogue(rows, NR, edge, NR, r->c + i * r->ldc + col0, r->ldc,
                                                      bias_after, r->e.act, NULL, NULL, 0);
            continue;
        }
        if (bias_after || r->e.act != VITC_ACT_NONE || bf16) {
            pend->c = tc.c;
            pend->bias = bias_after;
            pend->bf16 = bf16;
            if (!overlap) finish_now(r, pend);
        }
    }
}

static void gemm_task(const lowp_run *r, size_t t) {
    const lowp_config *cfg = r->cfg;
    const size_t MR = cfg->mr, NR = cfg->nr, KR = cfg->kr;
    const size_t i0 = t / r->n_groups * r->block_tiles * MR, i1 = min_size(i0 + r->block_tiles * MR, r->m);
    const size_t jp0 = t % r->n_groups * r->group_panels, jp1 = min_size(jp0 + r->group_panels, r->n_panels);
    const size_t panel_bytes = r->kq * NR * KR * cfg->b_elt;
    _Alignas(64) int32_t tile[2 * VITC_LOWP_MR_MAX * VITC_LOWP_NR_MAX]; /* panel_into_c: two scratch tiles */
    if (cfg->task_begin) cfg->task_begin();
    const int into_c = epilogue_into_c(r);
    pending_tile pend = {NULL, NULL, NULL, 0};
    for (size_t jp = jp0; jp < jp1; jp++) {
        const size_t col0 = jp * NR, cols = min_size(NR, r->n - col0);
        const unsigned char *bp = r->b + jp * panel_bytes;
        if (into_c && cols == NR) {
            panel_into_c(r, jp, jp + 1 < jp1 ? bp + panel_bytes : NULL, i0, i1, (float *)(void *)tile, &pend);
            continue;
        }
        for (size_t i = i0; i < i1; i += MR) {
            const size_t rows = min_size(MR, r->m - i);
            cfg->ukernel(rows, r->kq, r->apack + i * r->kq * 4, bp, tile);
            cfg->epilogue(&r->e, rows, cols, i, col0, tile, NR, r->c, r->ldc);
        }
    }
    finish_now(r, &pend);
    if (cfg->task_end) cfg->task_end();
}

/* Packed A per row block: the whole A when it fits in ~3/4 of a 2 MB L2 (then each weight panel is read
 * from memory once: ViT-B batch 1, every shape), else blocks of 1 MB (docs/performance.md). */
#define A_WHOLE_BYTES ((size_t)1536 << 10)
#define A_BLOCK_BYTES ((size_t)1024 << 10)

static int threads_for(int nthreads, size_t m, size_t n, size_t k) {
    return 2.0 * (double)m * (double)n * (double)k >= 5e5 ? nthreads : 1; /* below: a region costs more */
}

static int kset_matches(vitc_kset kset, const vitc_packed *w) {
    return w->kset == kset && vitc_kset_supported(kset) && vitc_kset_has_dtype(kset, w->dtype);
}

/* vitc_gemm_packed_a, its output in C or (out_a) in packed A (vitc_gemm_into_packed_a) */
static vitc_status run_packed_a(vitc_kset kset, int nthreads, size_t m, const void *apack, const float *row_scales,
                                const vitc_packed *w, const vitc_epilogue *ep, float *c, size_t ldc,
                                void *out_a) {
    if (!kset_matches(kset, w) || w->dtype == VITC_DTYPE_F32) return VITC_ERR_ISA;
    const lowp_config *cfg = lowp_config_of(kset, w->dtype);
    lowp_run r;
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    r.m = m;
    r.n = w->n;
    r.k = w->k;
    r.kq = packed_kq(cfg, w->k);
    r.n_panels = div_up(w->n, cfg->nr);
    r.apack = (const unsigned char *)apack;
    r.b = (const unsigned char *)w->data;
    r.e.isa = isa_of_kset(kset);
    if (ep) {
        r.e.bias = ep->bias;
        r.e.act = ep->act;
        r.e.scale = ep->scale;
        r.e.residual = ep->residual;
        r.e.ldr = ep->ldr;
    }
    if (w->dtype == VITC_DTYPE_S8) {
        r.e.row_scales = row_scales;
        r.e.col_scales = w->scales;
        r.e.comp = w->comp;
    }
    r.c = c;
    r.ldc = ldc;
    r.out_a = (unsigned char *)out_a;
    r.out_block = 16 * packed_kq(cfg, w->n) * 4;
    nthreads = threads_for(nthreads, m, w->n, w->k);
    /* row blocks of packed A that stay in L2 while the group's B panels stream past them (A_WHOLE_BYTES); then
     * ~4 tasks per thread over N so a thread the OS delays leaves its share to the others */
    const size_t m_tiles = div_up(m, cfg->mr), tile_bytes = cfg->mr * r.kq * 4;
    const size_t a_limit = m_tiles * tile_bytes <= A_WHOLE_BYTES ? m_tiles * tile_bytes : A_BLOCK_BYTES;
    const size_t m_blocks = div_up(m_tiles, min_size(m_tiles, a_limit / tile_bytes > 0 ? a_limit / tile_bytes : 1));
    r.block_tiles = div_up(m_tiles, m_blocks); /* blocks of equal size (50 tiles: 17+17+16, not 21+21+8) */
    /* and a task count that is a multiple of the thread count where the panels allow (9 equal tasks on 2
     * threads leave one thread idle for a ninth of the time) */
    const size_t want = nthreads > 1 ? 4 * (size_t)nthreads : 1;
    r.n_groups = min_size(r.n_panels, div_up(want, m_blocks));
    for (size_t g = r.n_groups; g <= r.n_panels && g < 2 * r.n_groups; g++) {
        const size_t groups = div_up(r.n_panels, div_up(r.n_panels, g));
        if (m_blocks * groups % (size_t)nthreads == 0) {
            r.n_groups = g;
            break;
        }
    }
    r.group_panels = div_up(r.n_panels, r.n_groups);
    r.n_groups = div_up(r.n_panels, r.group_panels);
    parallel_for(nthreads, m_blocks * r.n_groups, gemm_task, &r);
    return VITC_OK;
}

vitc_status vitc_gemm_packed_a(vitc_kset kset, int nthreads, size_t m, const void *apack,
                               const float *row_scales, const vitc_packed *w, const vitc_epilogue *ep, float *c,
                               size_t ldc) {
    return run_packed_a(kset, nthreads, m, apack, row_scales, w, ep, c, ldc, NULL);
}

/* A converted per call into workspace (packed A and its row scales), on the pool */
static const void *pack_a_parallel(const lowp_config *cfg, int nthreads, size_t m, size_t n, size_t k,
                                   const float *a, size_t lda, void *workspace, float **row_scales) {
    lowp_run r;
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    r.m = m;
    r.k = k;
    r.a = a;
    r.lda = lda;
    r.apack_w = (unsigned char *)workspace;
    r.row_scales = *row_scales = (float *)(void *)(r.apack_w + a_data_bytes(cfg, m, k));
    parallel_for(threads_for(nthreads, m, n, k), div_up(m, cfg->mr), pack_a_task, &r);
    return workspace;
}

int vitc_gemm_output_packs(vitc_kset kset, const vitc_packed *w, const vitc_epilogue *ep) {
    const lowp_config *cfg = kset_matches(kset, w) ? lowp_config_of(kset, w->dtype) : NULL;
    return cfg && cfg->tile_c && w->dtype == VITC_DTYPE_BF16 && w->n % cfg->nr == 0 &&
           (!ep || (!ep->scale && !ep->residual && cfg->tile_c_finishes(ep->act)));
}

vitc_status vitc_gemm_into_packed_a(vitc_kset kset, int nthreads, size_t m, const float *a, size_t lda,
                                    const vitc_packed *w, const vitc_epilogue *ep, void *out_apack,
                                    void *workspace) {
    if (!vitc_gemm_output_packs(kset, w, ep)) return VITC_ERR_ISA;
    float *row_scales;
    const void *apack = pack_a_parallel(lowp_config_of(kset, w->dtype), nthreads, m, w->n, w->k, a, lda, workspace,
                                        &row_scales);
    return run_packed_a(kset, nthreads, m, apack, row_scales, w, ep, NULL, 0, out_apack);
}

vitc_status vitc_gemm(vitc_kset kset, int nthreads, size_t m, const float *a, size_t lda, const vitc_packed *w,
                      const vitc_epilogue *ep, float *c, size_t ldc, void *workspace) {
    if (!kset_matches(kset, w)) return VITC_ERR_ISA;
    if (w->dtype == VITC_DTYPE_F32)
        return vitc_f32_gemm((vitc_isa)kset, nthreads, m, w->n, w->k, a, lda, (const float *)w->data, ep, c, ldc);
    float *row_scales;
    const void *apack = pack_a_parallel(lowp_config_of(kset, w->dtype), nthreads, m, w->n, w->k, a, lda, workspace,
                                        &row_scales);
    return vitc_gemm_packed_a(kset, nthreads, m, apack, row_scales, w, ep, c, ldc);
}
