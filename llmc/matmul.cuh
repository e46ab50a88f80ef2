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
#include <stdint.h>       // defines: uintptr_t, int64_t
#include <cublasLt.h>     // defines: cublasLtHandle_t, cublasLtMatmul, cublasLtMatmulAlgoGetHeuristic
#include "cuda_common.cuh" // defines: floatX, cudaCheck

static inline void cublas_check(cublasStatus_t s, const char* what, const char* file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "cuBLAS error %d\n  in %s\n  at %s:%d\n", (int)s, what, file, line);
    exit(EXIT_FAILURE);
}
#define cublasCheck(call) cublas_check((call), #call, __FILE__, __LINE__)

// the cuBLASLt handle, its workspace and the stream every product runs on
typedef struct {
    cublasLtHandle_t handle;
    void* workspace;
    size_t workspace_size;
    cudaStream_t stream;
} MatmulCtx;

static inline void matmul_ctx_init(MatmulCtx* c, cudaStream_t stream) {
    cublasCheck(cublasLtCreate(&c->handle));
    c->workspace_size = (size_t)32 << 20; // 32 MiB: what cuBLAS recommends for Hopper
    cudaCheck(cudaMalloc(&c->workspace, c->workspace_size));
    c->stream = stream;
}

static inline void matmul_ctx_free(MatmulCtx* c) {
    cublasCheck(cublasLtDestroy(c->handle));
    cudaCheck(cudaFree(c->workspace));
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

// plans m and, when run is set, runs it; 0 when cuBLASLt has no algorithm for it (nothing runs)
static inline int matmul_try(MatmulCtx* ctx, const Matmul* m, int run) {
    // column-major call: D (N, M) = op(B)ᵀ-side first operand · op(A)ᵀ-side second operand
    const MatOperand* x = &m->b; // first cuBLAS operand: rows N (after op), cols K
    const MatOperand* y = &m->a; // second: rows K, cols M
    cublasOperation_t opx = x->trans ? CUBLAS_OP_T : CUBLAS_OP_N, opy = y->trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t otype = m->out_fp32 ? CUDA_R_32F : CUDA_FLOATX;
    size_t oelem = m->out_fp32 ? sizeof(float) : sizeof(floatX);
    cublasLtMatmulDesc_t desc;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opx, sizeof(opx)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opy, sizeof(opy)));
    if (m->epilogue != MM_PLAIN) {
        cublasLtEpilogue_t e = m->epilogue == MM_RELU_AUX ? CUBLASLT_EPILOGUE_RELU_AUX : CUBLASLT_EPILOGUE_DRELU;
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &m->aux, sizeof(m->aux)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &m->aux_ld, sizeof(m->aux_ld)));
    }
    // stored shapes (column-major): op N keeps (rows, cols), op T stores the transpose
    cublasLtMatrixLayout_t lx = x->trans ? matmul_layout(CUDA_FLOATX, m->K, m->N, x->ld, m->batch, x->stride)
                                         : matmul_layout(CUDA_FLOATX, m->N, m->K, x->ld, m->batch, x->stride);
    cublasLtMatrixLayout_t ly = y->trans ? matmul_layout(CUDA_FLOATX, m->M, m->K, y->ld, m->batch, y->stride)
                                         : matmul_layout(CUDA_FLOATX, m->K, m->M, y->ld, m->batch, y->stride);
    cublasLtMatrixLayout_t lo = matmul_layout(otype, m->N, m->M, m->ldo, m->batch, m->stride_out);
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ctx->workspace_size, sizeof(ctx->workspace_size)));
    uint32_t al[3] = { matmul_alignment(x->p, x->ld, x->stride, sizeof(floatX)),
                       matmul_alignment(y->p, y->ld, y->stride, sizeof(floatX)),
                       matmul_alignment(m->out, m->ldo, m->stride_out, oelem) };
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], sizeof(uint32_t)));
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    // (an unsupported epilogue may also be refused with an error status rather than zero results)
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(ctx->handle, desc, lx, ly, lo, lo, pref, 1, &h, &found);
    if (hs != CUBLAS_STATUS_SUCCESS && m->epilogue == MM_PLAIN) cublasCheck(hs);
    if (hs != CUBLAS_STATUS_SUCCESS) found = 0;
    float alpha = 1.0f, beta = m->accumulate ? 1.0f : 0.0f;
    if (found && run)
        cublasCheck(cublasLtMatmul(ctx->handle, desc, &alpha, x->p, lx, y->p, ly, &beta, m->out, lo, m->out, lo,
                                   &h.algo, ctx->workspace, ctx->workspace_size, ctx->stream));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(lx));
    cublasCheck(cublasLtMatrixLayoutDestroy(ly));
    cublasCheck(cublasLtMatrixLayoutDestroy(lo));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
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
    Matmul m = { out, out_fp32, OC, 0, { inp, 0, IC, 0 }, { w, 1, IC, 0 }, N, OC, IC, 1, 0, MM_PLAIN, NULL, 0 };
    matmul(c, &m);
}

// dinp (N, IC) = dout (N, OC) · W   (+= when accumulate)
static inline void matmul_backward_input(MatmulCtx* c, void* dinp, int dinp_fp32, const floatX* dout, const floatX* w,
                                         int N, int IC, int OC, int accumulate) {
    Matmul m = { dinp, dinp_fp32, IC, 0, { dout, 0, OC, 0 }, { w, 0, IC, 0 }, N, IC, OC, 1, accumulate, MM_PLAIN, NULL, 0 };
    matmul(c, &m);
}

// out (N, OC) = relu(inp (N, IC) · Wᵀ), and its mask (product > 0) into mask (relu_mask_ld(OC) bits a row)
static inline Matmul matmul_forward_relu_desc(floatX* out, const floatX* inp, const floatX* w, int N, int IC, int OC, void* mask) {
    Matmul m = { out, 0, OC, 0, { inp, 0, IC, 0 }, { w, 1, IC, 0 }, N, OC, IC, 1, 0, MM_RELU_AUX, mask, relu_mask_ld(OC) };
    return m;
}

// dinp (N, IC) = (dout (N, OC) · W) where mask is set, else 0: the ReLU's backward fused into the product
static inline Matmul matmul_backward_input_drelu_desc(floatX* dinp, const floatX* dout, const floatX* w, int N, int IC, int OC,
                                                      const void* mask) {
    Matmul m = { dinp, 0, IC, 0, { dout, 0, OC, 0 }, { w, 0, IC, 0 }, N, IC, OC, 1, 0, MM_DRELU, (void*)mask, relu_mask_ld(IC) };
    return m;
}

// whether cuBLASLt has both ReLU epilogues for an FFN of width F over C (asked at N = 128 rows with
// 256-byte aligned placeholder addresses: planning reads no memory). The trainer fuses only then.
static inline int matmul_relu_epilogues_available(MatmulCtx* c, int C, int F) {
    floatX* p = (floatX*)(uintptr_t)4096;
    Matmul f = matmul_forward_relu_desc(p, p, p, 128, C, F, p), b = matmul_backward_input_drelu_desc(p, p, p, 128, F, C, p);
    return matmul_try(c, &f, 0) && matmul_try(c, &b, 0);
}

// dW (OC, IC) += doutᵀ · inp   (fp32 gradients accumulate)
static inline void matmul_backward_weight(MatmulCtx* c, float* dw, const floatX* dout, const floatX* inp,
                                          int N, int IC, int OC) {
    Matmul m = { dw, 1, IC, 0, { dout, 1, OC, 0 }, { inp, 0, IC, 0 }, OC, IC, N, 1, 1, MM_PLAIN, NULL, 0 };
    matmul(c, &m);
}

#endif // T5_MATMUL_CUH
