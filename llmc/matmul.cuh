// matmul.cuh — every matrix product of the CUDA trainer, through cuBLASLt: floatX inputs, fp32
// accumulation (CUBLAS_COMPUTE_32F, no TF32), output floatX or fp32, optionally batched with strides.
//
// Everything is stated row-major, as the rest of the code thinks:
//   out (M, N) = op(A) (M, K) · op(B) (K, N)      (+ out when accumulate)
// with op(X) = X or Xᵀ. cuBLASLt is column-major, so the call computes outᵀ = op(B)ᵀ · op(A)ᵀ:
// a row-major matrix with leading dimension ld is the same bytes as a column-major one with the
// same ld and the two dimensions swapped.
//
// Epilogues (applied by cuBLASLt to the fp32 product before the store): the plain ReLU FFN (original
// T5) without dropout on its activation is the one place of the trainer where they apply. The gated
// FFN multiplies act(h0) by a second product, and dropout sits between the activation and wo: neither
// is an epilogue cuBLASLt has (llmc/ffn_act.cuh fuses those in one elementwise kernel instead).
//   MM_RELU_AUX  out = relu(product); aux = a bit mask of (product > 0), one bit per element of out
//   MM_DRELU     out = product where the aux bit is set, else 0 (the backward pass of MM_RELU_AUX)
// The mask is column-major in cuBLASLt's view: per row of the row-major out, aux_ld bits (a multiple
// of 128, at least the row length: relu_mask_ld).
#ifndef T5_MATMUL_CUH
#define T5_MATMUL_CUH

#include <stdio.h>        // defines: fprintf
#include <stdint.h>       // defines: uintptr_t, int64_t, uint64_t
#include <stdlib.h>       // defines: getenv, calloc
#include <string.h>       // defines: memset, memcmp, strcmp
#include <time.h>         // defines: clock_gettime
#include <math.h>         // defines: ceil, floor, log2, exp2
#include <cublasLt.h>     // defines: cublasLtHandle_t, cublasLtMatmul, cublasLtMatmulAlgoGetHeuristic
#include "cuda_common.cuh" // defines: floatX, cudaCheck

static inline void cublas_check(cublasStatus_t s, const char* what, const char* file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    char code[32];
    snprintf(code, sizeof(code), "%d", (int)s);
    if (capture_soft_fail("cuBLAS", code, what, file, line)) return; // cuda_common.cuh
    fprintf(stderr, "cuBLAS error %d\n  in %s\n  at %s:%d\n", (int)s, what, file, line);
    exit(EXIT_FAILURE);
}
#define cublasCheck(call) cublas_check((call), #call, __FILE__, __LINE__)

// How each product's algorithm is chosen (T5_MATMUL_TUNE in the environment; see "Shape classes" below):
//   MM_ALGO_FIRST  unset or 0: cuBLASLt's heuristic, asked for every product, its first candidate
//   MM_ALGO_TIMED  1: once per shape class, the fastest of its candidates, timed on the GPU
//   MM_ALGO_CLASS  class: once per shape class, the heuristic's first for the class's largest member
typedef enum { MM_ALGO_FIRST = 0, MM_ALGO_TIMED = 1, MM_ALGO_CLASS = 2 } MatmulAlgoMode;

// the mode a T5_MATMUL_TUNE value names (NULL: unset); -1 for anything else
static inline int matmul_algo_mode(const char* v) {
    if (!v || strcmp(v, "0") == 0) return MM_ALGO_FIRST;
    if (strcmp(v, "1") == 0) return MM_ALGO_TIMED;
    if (strcmp(v, "class") == 0) return MM_ALGO_CLASS;
    return -1;
}

static inline const char* matmul_algo_mode_name(int mode) {
    return mode == MM_ALGO_TIMED ? "fastest candidate per shape class (timed)" :
           mode == MM_ALGO_CLASS ? "heuristic's first per shape class" : "heuristic's first per product";
}

// the cuBLASLt handle, its workspace and the stream every product runs on; the kept algorithms of the
// shape classes (modes 1 and class)
typedef struct MatmulTuned MatmulTuned;
typedef struct MatmulCached MatmulCached;
typedef struct {
    cublasLtHandle_t handle;
    void* workspace;
    size_t workspace_size;
    cudaStream_t stream;
    int tune;                   // MatmulAlgoMode
    MatmulTuned* tuned;         // MM_TUNE_SLOTS shape classes and their kept algorithms
    void* scratch;              // where candidates write while timed (MM_ALGO_TIMED), scratch_bytes
    size_t scratch_bytes;
    int tuned_shapes, tuned_changed; // shape classes planned; of those, timed to another than the first
    int tune_misfits;           // products their class's algorithm did not support (their own first ran)
    double tune_ms;             // host time spent timing candidates
    int plans;                  // T5_MATMUL_PLANS=1: plans kept per exact shape (see "Plans per shape")
    MatmulCached* cached;       // MM_PLAN_SLOTS of them
    int plans_built;            // exact shapes planned; products that found their plan built
    long long plans_hit;
} MatmulCtx;

// T5_MATMUL_PLANS: unset or 0 (plan every product), 1 (keep plans per exact shape); -1 for anything else
static inline int matmul_plans_mode(const char* v) {
    if (v == NULL || strcmp(v, "0") == 0) return 0;
    return strcmp(v, "1") == 0 ? 1 : -1;
}

static inline void matmul_ctx_init(MatmulCtx* c, cudaStream_t stream) {
    memset(c, 0, sizeof(*c));
    cublasCheck(cublasLtCreate(&c->handle));
    c->workspace_size = (size_t)32 << 20; // 32 MiB: what cuBLAS recommends for Hopper
    cudaCheck(cudaMalloc(&c->workspace, c->workspace_size));
    c->stream = stream;
    const char* env = getenv("T5_MATMUL_TUNE");
    c->tune = matmul_algo_mode(env);
    if (c->tune < 0) {
        fprintf(stderr, "error: T5_MATMUL_TUNE=%s: expected 0, 1 or class\n", env);
        exit(EXIT_FAILURE);
    }
    const char* plans = getenv("T5_MATMUL_PLANS");
    c->plans = matmul_plans_mode(plans);
    if (c->plans < 0) {
        fprintf(stderr, "error: T5_MATMUL_PLANS=%s: expected 0 or 1\n", plans);
        exit(EXIT_FAILURE);
    }
}

static void matmul_tune_free(MatmulCtx* c);
static void matmul_plans_free(MatmulCtx* c);

static inline void matmul_ctx_free(MatmulCtx* c) {
    matmul_plans_free(c); // before the handle they were made with
    cublasCheck(cublasLtDestroy(c->handle));
    cudaCheck(cudaFree(c->workspace));
    matmul_tune_free(c);
}

// one operand: pointer, transposed or not, leading dimension (elements), batch stride (elements)
typedef struct { const void* p; int trans; int64_t ld, stride; } MatOperand;

typedef enum { MM_PLAIN = 0, MM_RELU_AUX, MM_DRELU } MatmulEpilogue;

typedef struct {
    void* out; int out_fp32;   // output buffer; fp32 (else floatX)
    int64_t ldo, stride_out;
    MatOperand a, b;
    int M, N, K;
    int batch;                 // 1 = a plain product
    int accumulate;            // out += (beta = 1) instead of out =
    int epilogue;              // MatmulEpilogue (MM_PLAIN when left zero)
    void* aux; int64_t aux_ld; // the ReLU bit mask and its leading dimension in bits
    float alpha;               // out = alpha · product (+ out): LoRA's scale s. 0 (a Matmul zeroed or initialised
                               //   without it) means 1
} Matmul;

// bits per row of a ReLU mask over rows of `cols` elements; bytes of a mask of `rows` such rows,
// rounded up to 256 so that masks stacked per layer keep cuBLASLt's default alignment
static inline int64_t relu_mask_ld(int cols) { return ((int64_t)cols + 127) / 128 * 128; }
static inline size_t relu_mask_bytes(int rows, int cols) {
    return ((size_t)rows * (size_t)relu_mask_ld(cols) / 8 + 255) / 256 * 256;
}

// largest power of two (≤ 256) dividing the address and every byte stride: the alignment promise
// cuBLASLt may rely on (its default assumption is 256 bytes, which odd shapes break)
static inline uint32_t matmul_alignment(const void* p, int64_t ld, int64_t stride, size_t elem) {
    uint64_t bits = (uint64_t)(uintptr_t)p | (uint64_t)(ld * (int64_t)elem) | (uint64_t)(stride * (int64_t)elem) | 256u;
    return (uint32_t)(bits & (~bits + 1));
}

static inline cublasLtMatrixLayout_t matmul_layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld,
                                                   int batch, int64_t stride) {
    cublasLtMatrixLayout_t l;
    cublasCheck(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld));
    if (batch > 1) {
        int32_t n = batch;
        cublasCheck(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &n, sizeof(n)));
        cublasCheck(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
    }
    return l;
}

#ifdef ENABLE_FP32
#define CUDA_FLOATX CUDA_R_32F
#else
#define CUDA_FLOATX CUDA_R_16BF
#endif

// a product's cuBLASLt descriptors: operation, the three layouts, the search preference
typedef struct {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t lx, ly, lo;
    cublasLtMatmulPreference_t pref;
    const void *x, *y;          // the first and second cuBLAS operands
} MatmulPlan;

// align: the operands' alignment promises (A, B, out), or NULL for the ones m's pointers make
static inline void matmul_plan(MatmulCtx* ctx, const Matmul* m, MatmulPlan* p, const uint32_t* align) {
    // column-major call: D (N, M) = op(B)ᵀ-side first operand · op(A)ᵀ-side second operand
    const MatOperand* x = &m->b; // first cuBLAS operand: rows N (after op), cols K
    const MatOperand* y = &m->a; // second: rows K, cols M
    p->x = x->p; p->y = y->p;
    cublasOperation_t opx = x->trans ? CUBLAS_OP_T : CUBLAS_OP_N, opy = y->trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t otype = m->out_fp32 ? CUDA_R_32F : CUDA_FLOATX;
    size_t oelem = m->out_fp32 ? sizeof(float) : sizeof(floatX);
    cublasCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opx, sizeof(opx)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opy, sizeof(opy)));
    if (m->epilogue != MM_PLAIN) {
        cublasLtEpilogue_t e = m->epilogue == MM_RELU_AUX ? CUBLASLT_EPILOGUE_RELU_AUX : CUBLASLT_EPILOGUE_DRELU;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &m->aux, sizeof(m->aux)));
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &m->aux_ld, sizeof(m->aux_ld)));
    }
    // stored shapes (column-major): op N keeps (rows, cols), op T stores the transpose
    p->lx = x->trans ? matmul_layout(CUDA_FLOATX, m->K, m->N, x->ld, m->batch, x->stride)
                     : matmul_layout(CUDA_FLOATX, m->N, m->K, x->ld, m->batch, x->stride);
    p->ly = y->trans ? matmul_layout(CUDA_FLOATX, m->M, m->K, y->ld, m->batch, y->stride)
                     : matmul_layout(CUDA_FLOATX, m->K, m->M, y->ld, m->batch, y->stride);
    p->lo = matmul_layout(otype, m->N, m->M, m->ldo, m->batch, m->stride_out);
    cublasCheck(cublasLtMatmulPreferenceCreate(&p->pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ctx->workspace_size, sizeof(ctx->workspace_size)));
    uint32_t al[3] = { align ? align[1] : matmul_alignment(x->p, x->ld, x->stride, sizeof(floatX)),
                       align ? align[0] : matmul_alignment(y->p, y->ld, y->stride, sizeof(floatX)),
                       align ? align[2] : matmul_alignment(m->out, m->ldo, m->stride_out, oelem) };
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(p->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], sizeof(uint32_t)));
}

static inline void matmul_plan_free(MatmulPlan* p) {
    cublasCheck(cublasLtMatmulPreferenceDestroy(p->pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lx));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->ly));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lo));
    cublasCheck(cublasLtMatmulDescDestroy(p->desc));
}

// cuBLASLt's algorithms for the plan, best first by its heuristic: how many went into res (≤ max)
static inline int matmul_candidates(MatmulCtx* ctx, const Matmul* m, const MatmulPlan* p,
                                    cublasLtMatmulHeuristicResult_t* res, int max) {
    int found = 0;
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(ctx->handle, p->desc, p->lx, p->ly, p->lo, p->lo, p->pref, max,
                                                       res, &found);
    // (an unsupported epilogue may also be refused with an error status rather than zero results)
    if (hs != CUBLAS_STATUS_SUCCESS && m->epilogue == MM_PLAIN) cublasCheck(hs);
    return hs == CUBLAS_STATUS_SUCCESS ? found : 0;
}

// the heuristic's first candidate for the product (mode 0; in the class modes, a misfit's and what the
// class mode leaves to mode 0); 0 when cuBLASLt has none
static inline int matmul_first_algo(MatmulCtx* ctx, const Matmul* m, const MatmulPlan* p, cublasLtMatmulAlgo_t* algo) {
    cublasLtMatmulHeuristicResult_t h;
    int n = matmul_candidates(ctx, m, p, &h, 1);
    if (n) *algo = h.algo;
    return n;
}

// runs the plan with algo, writing D (and reading C, when m accumulates) at out
static inline cublasStatus_t matmul_launch(MatmulCtx* ctx, const Matmul* m, const MatmulPlan* p,
                                           const cublasLtMatmulAlgo_t* algo, void* out) {
    float alpha = m->alpha != 0.0f ? m->alpha : 1.0f, beta = m->accumulate ? 1.0f : 0.0f;
    return cublasLtMatmul(ctx->handle, p->desc, &alpha, p->x, p->lx, p->y, p->ly, &beta, out, p->lo, out, p->lo,
                          algo, ctx->workspace, ctx->workspace_size, ctx->stream);
}

static int matmul_tuned_algo(MatmulCtx* ctx, const Matmul* m, const MatmulPlan* p, cublasLtMatmulAlgo_t* algo);
static int matmul_run_cached(MatmulCtx* ctx, const Matmul* m, int* found);

// plans m and, when run is set, runs it; 0 when cuBLASLt has no algorithm for it (nothing runs)
static inline int matmul_try(MatmulCtx* ctx, const Matmul* m, int run) {
    int kept;
    if (run && ctx->plans && m->epilogue == MM_PLAIN && matmul_run_cached(ctx, m, &kept)) return kept;
    MatmulPlan p;
    matmul_plan(ctx, m, &p, NULL);
    cublasLtMatmulAlgo_t algo;
    int found = run && ctx->tune ? matmul_tuned_algo(ctx, m, &p, &algo) : matmul_first_algo(ctx, m, &p, &algo);
    if (found && run) cublasCheck(matmul_launch(ctx, m, &p, &algo, m->out));
    matmul_plan_free(&p);
    return found;
}

static inline void matmul(MatmulCtx* ctx, const Matmul* m) {
    if (matmul_try(ctx, m, 1)) return;
    fprintf(stderr, "error: cuBLASLt has no algorithm for M=%d N=%d K=%d batch=%d transA=%d transB=%d epilogue=%d\n",
            m->M, m->N, m->K, m->batch, m->a.trans, m->b.trans, m->epilogue);
    exit(EXIT_FAILURE);
}

// ----------------------------------------------------------------------------
// Linear layers without bias, PyTorch layout W (OC, IC)

// out (N, OC) = inp (N, IC) · Wᵀ
static inline void matmul_forward(MatmulCtx* c, void* out, int out_fp32, const floatX* inp, const floatX* w,
                                  int N, int IC, int OC) {
    Matmul m = { out, out_fp32, OC, 0, { inp, 0, IC, 0 }, { w, 1, IC, 0 }, N, OC, IC, 1, 0, MM_PLAIN, NULL, 0, 1.0f };
    matmul(c, &m);
}

// dinp (N, IC) = dout (N, OC) · W   (+= when accumulate)
static inline void matmul_backward_input(MatmulCtx* c, void* dinp, int dinp_fp32, const floatX* dout, const floatX* w,
                                         int N, int IC, int OC, int accumulate) {
    Matmul m = { dinp, dinp_fp32, IC, 0, { dout, 0, OC, 0 }, { w, 0, IC, 0 }, N, IC, OC, 1, accumulate, MM_PLAIN, NULL, 0, 1.0f };
    matmul(c, &m);
}

// out (N, OC) = relu(inp (N, IC) · Wᵀ), and its mask (product > 0) into mask (relu_mask_ld(OC) bits a row)
static inline Matmul matmul_forward_relu_desc(floatX* out, const floatX* inp, const floatX* w, int N, int IC, int OC, void* mask) {
    Matmul m = { out, 0, OC, 0, { inp, 0, IC, 0 }, { w, 1, IC, 0 }, N, OC, IC, 1, 0, MM_RELU_AUX, mask, relu_mask_ld(OC), 1.0f };
    return m;
}

// dinp (N, IC) = (dout (N, OC) · W) where mask is set, else 0: the ReLU's backward fused into the product
static inline Matmul matmul_backward_input_drelu_desc(floatX* dinp, const floatX* dout, const floatX* w, int N, int IC, int OC,
                                                      const void* mask) {
    Matmul m = { dinp, 0, IC, 0, { dout, 0, OC, 0 }, { w, 0, IC, 0 }, N, IC, OC, 1, 0, MM_DRELU, (void*)mask, relu_mask_ld(IC), 1.0f };
    return m;
}

// whether cuBLASLt has both ReLU epilogues for an FFN of width F over C (asked at N = 128 rows with
// 256-byte aligned placeholder addresses: planning reads no memory). The trainer fuses only then.
static inline int matmul_relu_epilogues_available(MatmulCtx* c, int C, int F) {
    floatX* p = (floatX*)(uintptr_t)4096;
    Matmul f = matmul_forward_relu_desc(p, p, p, 128, C, F, p), b = matmul_backward_input_drelu_desc(p, p, p, 128, F, C, p);
    return matmul_try(c, &f, 0) && matmul_try(c, &b, 0);
}

// dW (OC, IC) += doutᵀ · inp   (fp32 gradients accumulate; dw NULL: a frozen weight under LoRA, skipped)
static inline void matmul_backward_weight(MatmulCtx* c, float* dw, const floatX* dout, const floatX* inp,
                                          int N, int IC, int OC) {
    if (!dw) return;
    Matmul m = { dw, 1, IC, 0, { dout, 1, OC, 0 }, { inp, 0, IC, 0 }, OC, IC, N, 1, 1, MM_PLAIN, NULL, 0, 1.0f };
    matmul(c, &m);
}

// ----------------------------------------------------------------------------
// Shape classes (T5_MATMUL_TUNE=1 or class). A batch's token count changes the shape of most products,
// and asking cuBLASLt's heuristic again for every new shape costs host time on every product (on an
// H100 the flan-t5-base step was bound by it: docs/benchmarks.md). So an algorithm is kept per shape
// class: every field of the Matmul except its pointers (their alignment instead), with M, N and K
// above 256 taken in quarter octaves (sizes within 19 % of each other). A kept algorithm is checked
// against each product's actual shape (cublasLtMatmulAlgoCheck, host only) before it runs; where it
// does not fit, that product's own first candidate runs (a misfit).
//   1      On a class's first product, up to MM_TUNE_CANDIDATES of its candidates each run once to warm
//          up, then are timed over MM_TUNE_REPS runs with CUDA events; the fastest is kept. Timing
//          synchronises the host with the GPU, only on a class's first product. Candidates write to a
//          scratch buffer, never to the product's output (an accumulating product would add several
//          times); a ReLU_AUX candidate writes its mask, which the real product rewrites right after.
//          Every candidate is a valid algorithm (dev/cuda/matmul checks each against the CPU), but two
//          candidates may sum in different orders, and two processes that time differently can pick
//          differently: runs are not bit-identical.
//   class  The heuristic's first candidate for the class's largest member (each of M, N, K at the top
//          of its quarter octave, leading dimensions widened to fit, the class's alignments), with no
//          timing. The kept algorithm is a function of the class alone, whatever product came first,
//          so every product's algorithm is a function of its shape: runs and resumes stay
//          bit-identical. Batched products and epilogues keep the per-product heuristic (mode 0).
#define MM_TUNE_SLOTS 4096
#define MM_TUNE_CANDIDATES 8
#define MM_TUNE_REPS 3

typedef struct { // a product's shape: what decides which algorithms apply and how fast they run
    int M, N, K, batch, ta, tb, out_fp32, accumulate, epilogue;
    uint32_t align[3];
    int64_t lda, ldb, ldo, sa, sb, so, aux_ld;
} MatmulShape;

// used: 0 empty, 1 algo kept, 2 the class has no kept algorithm (its largest member has no candidate)
struct MatmulTuned { int used; MatmulShape shape; cublasLtMatmulAlgo_t algo; };

// the quarter octave q of a size d: the least integer with d ≤ 2^(q/4)
static inline int matmul_quarter_octave(int d) { return (int)ceil(4.0 * log2((double)d)); }

// a size's class: itself up to 256, else its quarter octave (negative, so the two never meet)
static inline int matmul_size_class(int d) { return d <= 256 ? d : -matmul_quarter_octave(d); }

// a size at least as large as every size of d's class: 2^(q/4) for quarter octave q rounded down (every
// member d has 4·log2(d) ≤ q, so d ≤ 2^(q/4), and d is an integer), then up to a multiple of 8, as the
// trainer's sizes are (an odd size could steer the heuristic to kernels for unaligned shapes)
static inline int matmul_class_top(int d) {
    if (d <= 256) return d;
    int top = (int)floor(exp2(matmul_quarter_octave(d) / 4.0));
    return (top + 7) / 8 * 8;
}

static inline MatmulShape matmul_shape(const Matmul* m) {
    MatmulShape s;
    memset(&s, 0, sizeof(s)); // padding too: shapes are compared with memcmp
    s.M = matmul_size_class(m->M); s.N = matmul_size_class(m->N); s.K = matmul_size_class(m->K);
    s.batch = m->batch; s.ta = m->a.trans; s.tb = m->b.trans;
    s.out_fp32 = m->out_fp32; s.accumulate = m->accumulate; s.epilogue = m->epilogue;
    s.align[0] = matmul_alignment(m->a.p, m->a.ld, m->a.stride, sizeof(floatX));
    s.align[1] = matmul_alignment(m->b.p, m->b.ld, m->b.stride, sizeof(floatX));
    s.align[2] = matmul_alignment(m->out, m->ldo, m->stride_out, m->out_fp32 ? sizeof(float) : sizeof(floatX));
    s.lda = m->a.ld; s.ldb = m->b.ld; s.ldo = m->ldo; s.sa = m->a.stride; s.sb = m->b.stride; s.so = m->stride_out;
    s.aux_ld = m->aux_ld;
    return s;
}

// the slot of shape s: where it is, else the empty slot it would go to; NULL when the table is full
static MatmulTuned* matmul_tuned_slot(MatmulCtx* ctx, const MatmulShape* s) {
    uint64_t h = 1469598103934665603ULL; // FNV-1a over the shape's bytes
    for (size_t i = 0; i < sizeof(*s); i++) h = (h ^ ((const unsigned char*)s)[i]) * 1099511628211ULL;
    for (int probe = 0; probe < MM_TUNE_SLOTS; probe++) {
        MatmulTuned* t = &ctx->tuned[(h + (uint64_t)probe) % MM_TUNE_SLOTS];
        if (!t->used || memcmp(&t->shape, s, sizeof(*s)) == 0) return t;
    }
    return NULL;
}

// bytes the product writes from out: the last batch entry's last row ends there
static inline size_t matmul_out_bytes(const Matmul* m) {
    size_t elem = m->out_fp32 ? sizeof(float) : sizeof(floatX);
    return ((size_t)(m->batch - 1) * (size_t)m->stride_out + (size_t)(m->M - 1) * (size_t)m->ldo + (size_t)m->N) * elem;
}

static inline double matmul_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

// mean GPU ms of one run of algo over MM_TUNE_REPS runs into the scratch buffer; -1 if it fails to run
static float matmul_time_algo(MatmulCtx* ctx, const Matmul* m, const MatmulPlan* p, const cublasLtMatmulAlgo_t* algo,
                              cudaEvent_t ev[2]) {
    if (matmul_launch(ctx, m, p, algo, ctx->scratch) != CUBLAS_STATUS_SUCCESS) return -1.0f; // the warm-up
    cudaCheck(cudaEventRecord(ev[0], ctx->stream));
    for (int r = 0; r < MM_TUNE_REPS; r++)
        if (matmul_launch(ctx, m, p, algo, ctx->scratch) != CUBLAS_STATUS_SUCCESS) return -1.0f;
    cudaCheck(cudaEventRecord(ev[1], ctx->stream));
    cudaCheck(cudaEventSynchronize(ev[1]));
    float ms;
    cudaCheck(cudaEventElapsedTime(&ms, ev[0], ev[1]));
    return ms / MM_TUNE_REPS;
}

// whether algo runs p's product with the workspace at hand (host only)
static inline int matmul_algo_fits(MatmulCtx* ctx, const MatmulPlan* p, const cublasLtMatmulAlgo_t* algo) {
    cublasLtMatmulHeuristicResult_t r;
    cublasStatus_t ok = cublasLtMatmulAlgoCheck(ctx->handle, p->desc, p->lx, p->ly, p->lo, p->lo, algo, &r);
    return ok == CUBLAS_STATUS_SUCCESS && r.workspaceSize <= ctx->workspace_size;
}

// a leading dimension widened to hold rows of `row` elements: a multiple of 128 elements, so that the
// layout itself keeps every alignment up to 256 bytes
static inline int64_t matmul_widen_ld(int64_t ld, int64_t row) { return ld >= row ? ld : (row + 127) / 128 * 128; }

// the class's largest member: M, N, K at the top of their quarter octaves, leading dimensions widened
// to hold them (planning reads no memory: m's pointers stay)
static inline Matmul matmul_class_top_member(const Matmul* m) {
    Matmul r = *m;
    r.M = matmul_class_top(m->M); r.N = matmul_class_top(m->N); r.K = matmul_class_top(m->K);
    r.a.ld = matmul_widen_ld(m->a.ld, m->a.trans ? r.M : r.K);
    r.b.ld = matmul_widen_ld(m->b.ld, m->b.trans ? r.K : r.N);
    r.ldo = matmul_widen_ld(m->ldo, r.N);
    return r;
}

// MM_ALGO_CLASS on a class's first product: the heuristic's first for its largest member, planned with
// the class's alignments (a widened leading dimension must not promise more than the members keep);
// kept in t (NULL: a full table, nothing kept, the same answer is worked out again next time)
static int matmul_class_algo(MatmulCtx* ctx, const Matmul* m, const MatmulPlan* p, const MatmulShape* s,
                             MatmulTuned* t, cublasLtMatmulAlgo_t* algo) {
    Matmul top = matmul_class_top_member(m);
    MatmulPlan tp;
    matmul_plan(ctx, &top, &tp, s->align);
    // asked directly, not through matmul_candidates: a refusal for this stand-in shape is no error
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(ctx->handle, tp.desc, tp.lx, tp.ly, tp.lo, tp.lo, tp.pref, 1, &h, &found);
    matmul_plan_free(&tp);
    int kept = hs == CUBLAS_STATUS_SUCCESS && found > 0;
    if (t) { t->used = kept ? 1 : 2; t->shape = *s; t->algo = h.algo; ctx->tuned_shapes++; }
    if (kept && matmul_algo_fits(ctx, p, &h.algo)) { *algo = h.algo; return 1; }
    if (kept) ctx->tune_misfits++;
    return matmul_first_algo(ctx, m, p, algo);
}

// MM_ALGO_TIMED on a class's first product: the fastest of its candidates, kept in t (NULL: a full
// table, where nothing is timed and the first runs)
static int matmul_timed_algo(MatmulCtx* ctx, const Matmul* m, const MatmulPlan* p, const MatmulShape* s,
                             MatmulTuned* t, cublasLtMatmulAlgo_t* algo) {
    cublasLtMatmulHeuristicResult_t res[MM_TUNE_CANDIDATES];
    int n = matmul_candidates(ctx, m, p, res, t ? MM_TUNE_CANDIDATES : 1);
    if (n == 0) return 0;
    *algo = res[0].algo;
    if (!t) return 1;
    double t0 = matmul_now_ms();
    size_t need = matmul_out_bytes(m);
    if (need > ctx->scratch_bytes) {
        cudaCheck(cudaStreamSynchronize(ctx->stream)); // the old scratch may still be written
        if (ctx->scratch) cudaCheck(cudaFree(ctx->scratch));
        cudaCheck(cudaMalloc(&ctx->scratch, need));
        cudaCheck(cudaMemsetAsync(ctx->scratch, 0, need, ctx->stream)); // an accumulating candidate reads it
        ctx->scratch_bytes = need;
    }
    cudaEvent_t ev[2];
    cudaCheck(cudaEventCreate(&ev[0])); cudaCheck(cudaEventCreate(&ev[1]));
    float best = -1.0f;
    int pick = 0;
    for (int i = 0; i < n; i++) {
        float ms = matmul_time_algo(ctx, m, p, &res[i].algo, ev);
        if (ms >= 0.0f && (best < 0.0f || ms < best)) { best = ms; pick = i; }
    }
    cudaCheck(cudaEventDestroy(ev[0])); cudaCheck(cudaEventDestroy(ev[1]));
    *algo = res[pick].algo;
    t->used = 1; t->shape = *s; t->algo = *algo;
    ctx->tuned_shapes++;
    ctx->tuned_changed += pick != 0;
    ctx->tune_ms += matmul_now_ms() - t0;
    return 1;
}

// the algorithm of m's shape class (see "Shape classes"), planned on the class's first product;
// 0 when cuBLASLt has none for m
static int matmul_tuned_algo(MatmulCtx* ctx, const Matmul* m, const MatmulPlan* p, cublasLtMatmulAlgo_t* algo) {
    if (ctx->tune == MM_ALGO_CLASS && (m->batch > 1 || m->epilogue != MM_PLAIN)) return matmul_first_algo(ctx, m, p, algo);
    if (!ctx->tuned) ctx->tuned = (MatmulTuned*)calloc(MM_TUNE_SLOTS, sizeof(MatmulTuned));
    MatmulShape s = matmul_shape(m);
    MatmulTuned* t = ctx->tuned ? matmul_tuned_slot(ctx, &s) : NULL;
    if (t && t->used == 2) return matmul_first_algo(ctx, m, p, algo);
    if (t && t->used == 1) { // the class's algorithm, where it supports this member of the class
        if (matmul_algo_fits(ctx, p, &t->algo)) { *algo = t->algo; return 1; }
        ctx->tune_misfits++;
        return matmul_first_algo(ctx, m, p, algo);
    }
    return ctx->tune == MM_ALGO_CLASS ? matmul_class_algo(ctx, m, p, &s, t, algo) : matmul_timed_algo(ctx, m, p, &s, t, algo);
}

static void matmul_tune_free(MatmulCtx* c) {
    free(c->tuned);
    if (c->scratch) cudaCheck(cudaFree(c->scratch));
    c->tuned = NULL; c->scratch = NULL; c->scratch_bytes = 0;
}

// ----------------------------------------------------------------------------
// Plans per shape (T5_MATMUL_PLANS=1; opt-in: written without a GPU, not yet run on one). With the
// shape ladder (--shape-ladder) a run has a few dozen batch shapes (dev/ladder_stats.c: 34 in a
// DialogSum epoch at batch 64 with 32,16), so a product's descriptors, layouts, preference and
// algorithm can be built on the first product of its exact shape (MatmulShape with M, N, K themselves,
// not their classes) and kept: every later product of that shape costs one cublasLtMatmul call on the
// host, where planning costs a dozen descriptor calls and a heuristic query. The algorithm is the one
// the mode picks without the cache (T5_MATMUL_TUNE), asked once per exact shape; in mode 0 the
// heuristic's answer depends on the plan alone, so every product runs the algorithm it runs uncached,
// and each product's algorithm is a function of its shape: runs and resumes stay bit-identical.
// Epilogue products (their aux pointer lives in the descriptor) and products of new shapes once the table
// is 3/4 full plan per product.
#define MM_PLAN_SLOTS 8192

// used: the plan is built; found: cuBLASLt had an algorithm for it (else products of the shape fail)
struct MatmulCached { int used, found; MatmulShape shape; MatmulPlan plan; cublasLtMatmulAlgo_t algo; };

static inline MatmulShape matmul_exact_shape(const Matmul* m) {
    MatmulShape s = matmul_shape(m);
    s.M = m->M; s.N = m->N; s.K = m->K; // the sizes themselves, not their classes
    return s;
}

// the slot of exact shape s: where it is, else the empty slot it would go to; NULL when the table is full
static MatmulCached* matmul_cached_slot(MatmulCtx* ctx, const MatmulShape* s) {
    uint64_t h = 1469598103934665603ULL; // FNV-1a over the shape's bytes (zeroed padding included)
    for (size_t i = 0; i < sizeof(*s); i++) h = (h ^ ((const unsigned char*)s)[i]) * 1099511628211ULL;
    for (int probe = 0; probe < MM_PLAN_SLOTS; probe++) {
        MatmulCached* c = &ctx->cached[(h + (uint64_t)probe) % MM_PLAN_SLOTS];
        if (!c->used || memcmp(&c->shape, s, sizeof(*s)) == 0) return c;
    }
    return NULL;
}

// runs m through its shape's kept plan, building it on the shape's first product; 0 when the table is
// full (the caller plans m itself), else 1 with *found = whether cuBLASLt had an algorithm
static int matmul_run_cached(MatmulCtx* ctx, const Matmul* m, int* found) {
    if (!ctx->cached && !(ctx->cached = (MatmulCached*)calloc(MM_PLAN_SLOTS, sizeof(MatmulCached)))) return 0;
    MatmulShape s = matmul_exact_shape(m);
    MatmulCached* c = matmul_cached_slot(ctx, &s);
    // the table stops taking new shapes at 3/4 full, so a lookup's probe always meets an empty slot soon
    if (!c || (!c->used && ctx->plans_built >= MM_PLAN_SLOTS / 4 * 3)) return 0;
    if (!c->used) {
        matmul_plan(ctx, m, &c->plan, s.align);
        c->found = ctx->tune ? matmul_tuned_algo(ctx, m, &c->plan, &c->algo) : matmul_first_algo(ctx, m, &c->plan, &c->algo);
        c->shape = s;
        c->used = 1;
        ctx->plans_built++;
    } else {
        ctx->plans_hit++;
    }
    *found = c->found;
    if (!c->found) return 1;
    c->plan.x = m->b.p; c->plan.y = m->a.p; // the operands of this product (matmul_plan's x is B, y is A)
    cublasCheck(matmul_launch(ctx, m, &c->plan, &c->algo, m->out));
    return 1;
}

static void matmul_plans_free(MatmulCtx* c) {
    for (int i = 0; c->cached && i < MM_PLAN_SLOTS; i++) if (c->cached[i].used) matmul_plan_free(&c->cached[i].plan);
    free(c->cached);
    c->cached = NULL;
}

#endif // T5_MATMUL_CUH
