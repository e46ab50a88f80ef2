// attention.cuh — T5 attention: relative position bias (buckets computed on the GPU), key padding
// mask, causal mask, dropout on the probabilities, and NO 1/sqrt(D) scale (T5 folds it into q's init).
//
//   out (B, Tq, H·D) = dropout(softmax(q·kᵀ + bias[bucket(j−i), h] + mask)) · v
//
// q (B, Tq, H·D) and k, v (B, Tk, H·D) stay in the layout of the projections; a head is a strided
// (T, D) view. The two products per head run as cuBLASLt batched GEMMs (tensor cores); the softmax,
// bias, masks and dropout are one fused kernel. The probabilities (B, H, Tq, Tk) are kept in floatX
// for the backward pass, as the CPU engine keeps them; the scores themselves are fp32 scratch.
// Backward (gradient rule: dq, dk, dv written; drelb accumulated):
//   dv = p'ᵀ·dout    dp' = dout·vᵀ    dp = dropout'(dp')    ds_j = p_j (dp_j − Σ_k p_k dp_k)
//   dq = ds·k        dk = dsᵀ·q       drelb[bucket(j−i), h] += Σ_{b,i} ds_ij
#ifndef T5_ATTENTION_CUH
#define T5_ATTENTION_CUH

#include "cuda_common.cuh"  // defines: floatX, DropSite, dropout_keep_dev, warp_sum, warp_max
#include "matmul.cuh"       // defines: MatmulCtx, Matmul, matmul
#include "t5.h"             // defines: t5_relative_bucket (host and device: the one bucket function)

// ----------------------------------------------------------------------------
// relative position buckets on the GPU, from llmc/t5.h's function (test_t5cu compares the tables)

// buckets[r + T − 1] for rel r in [−(T−1), T−1]
__global__ void relative_buckets_kernel(int* buckets, int T, int bidirectional, int num_buckets, int max_distance) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < 2 * T - 1) buckets[i] = t5_relative_bucket(i - (T - 1), bidirectional, num_buckets, max_distance);
}

static inline void relative_buckets(int* buckets, int T, int bidirectional, int num_buckets, int max_distance,
                                    cudaStream_t stream) {
    relative_buckets_kernel<<<CEIL_DIV(2 * T - 1, 256), 256, 0, stream>>>(buckets, T, bidirectional, num_buckets, max_distance);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// one attention call

typedef struct {
    int B, Tq, Tk, H, D;
    const int* key_len;   // (B) device: keys j ≥ key_len[b] masked, or NULL
    int causal;           // keys j > i masked
    const float* relb;    // (NB, H) fp32 bias table, or NULL (cross-attention)
    const int* buckets;   // (2Tq−1) device: bucket of rel j−i at index j−i+Tq−1 (self-attention only)
    DropSite drop;        // on the probabilities, index ((b·H + h)·Tq + i)·Tk + j as on the CPU
} AttnSpec;

// scratch of one call: fp32 scores (B, H, Tq, Tk) and a floatX matrix of the same size
typedef struct { float* scores; floatX* scratch; float* diag; } AttnScratch;

__device__ __forceinline__ int attn_keys_dev(const AttnSpec& s, int b, int i) {
    int n = s.key_len ? s.key_len[b] : s.Tk;
    if (s.causal && i + 1 < n) n = i + 1;
    return n;
}

// one warp per row (b, h, i): scores + bias, masked softmax in fp32 → att (floatX, 0 where masked),
// and the dropped probabilities into dropped (when dropout is on)
__global__ void attention_softmax_forward_kernel(floatX* att, floatX* dropped, const float* scores, AttnSpec s) {
    s.drop = dropout_resolve(s.drop);
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= s.B * s.H * s.Tq) return;
    int i = row % s.Tq, h = (row / s.Tq) % s.H, b = row / (s.Tq * s.H);
    size_t base = (size_t)row * s.Tk;
    const float* x = scores + base;
    int n = attn_keys_dev(s, b, i);
    float maxv = -INFINITY;
    for (int j = lane; j < n; j += 32) {
        float v = x[j] + (s.relb ? s.relb[s.buckets[j - i + s.Tq - 1] * s.H + h] : 0.0f);
        maxv = fmaxf(maxv, v);
    }
    maxv = warp_max(maxv);
    float sum = 0.0f;
    for (int j = lane; j < n; j += 32) {
        float v = x[j] + (s.relb ? s.relb[s.buckets[j - i + s.Tq - 1] * s.H + h] : 0.0f);
        sum += expf(v - maxv);
    }
    float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < s.Tk; j += 32) {
        float p = 0.0f;
        if (j < n) {
            float v = x[j] + (s.relb ? s.relb[s.buckets[j - i + s.Tq - 1] * s.H + h] : 0.0f);
            p = expf(v - maxv) * inv;
        }
        floatX px = from_float<floatX>(p);
        att[base + j] = px;
        if (dropped) dropped[base + j] = from_float<floatX>(dropout_apply_dev(to_float(px), s.drop, base + j));
    }
}

// dropped = dropout(att) over the whole (B, H, Tq, Tk) tensor (the backward pass recomputes p')
__global__ void attention_dropout_kernel(floatX* dropped, const floatX* att, size_t n, DropSite d) {
    d = dropout_resolve(d);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dropped[i] = from_float<floatX>(dropout_apply_dev(to_float(att[i]), d, i));
}

// one warp per row: dscores (fp32, in place over dp' in `grad`) and its floatX copy
__global__ void attention_softmax_backward_kernel(float* grad, floatX* grad_x, const floatX* att, AttnSpec s) {
    s.drop = dropout_resolve(s.drop);
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= s.B * s.H * s.Tq) return;
    int i = row % s.Tq, b = row / (s.Tq * s.H);
    size_t base = (size_t)row * s.Tk;
    int n = attn_keys_dev(s, b, i);
    float dot = 0.0f;
    for (int j = lane; j < n; j += 32) dot += to_float(att[base + j]) * dropout_apply_dev(grad[base + j], s.drop, base + j);
    dot = warp_sum(dot);
    for (int j = lane; j < s.Tk; j += 32) {
        float ds = 0.0f;
        if (j < n) ds = to_float(att[base + j]) * (dropout_apply_dev(grad[base + j], s.drop, base + j) - dot);
        grad[base + j] = ds;
        grad_x[base + j] = from_float<floatX>(ds);
    }
}

// diag[h, r + Tq − 1] = Σ_{b, i} ds[b, h, i, i + r] over `batches` sequences (B, or 1 for a gradient that
// is already summed over the batch, as cuDNN's dbias): one block per (r, h), fixed-order block sum
template <typename T>
__global__ void attention_bias_diag_kernel(float* diag, const T* ds, AttnSpec s, int batches) {
    __shared__ float scratch[32];
    int r = (int)blockIdx.x - (s.Tq - 1), h = blockIdx.y;
    float sum = 0.0f;
    for (int k = threadIdx.x; k < batches * s.Tq; k += blockDim.x) {
        int b = k / s.Tq, i = k % s.Tq, j = i + r;
        if (j >= 0 && j < s.Tk) sum += to_float(ds[(((size_t)b * s.H + h) * s.Tq + i) * s.Tk + j]);
    }
    sum = block_reduce(sum, scratch, false);
    if (threadIdx.x == 0) diag[(size_t)h * (s.Tq + s.Tk - 1) + blockIdx.x] = sum;
}

// drelb[k, h] += Σ over the diagonals r with bucket(r) = k, in order of r
__global__ void attention_bias_bucket_kernel(float* drelb, const float* diag, AttnSpec s, int num_buckets) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= num_buckets * s.H) return;
    int k = idx / s.H, h = idx % s.H, R = s.Tq + s.Tk - 1;
    float sum = 0.0f;
    for (int r = 0; r < R; r++) if (s.buckets[r] == k) sum += diag[(size_t)h * R + r];
    drelb[idx] += sum;
}

// the relative-bias gradient: drelb (NB, H) += the score gradients ds (batches, H, Tq, Tk) summed over
// each bucket's diagonals (diag: H·(Tq+Tk−1) floats of scratch)
template <typename T>
static inline void attention_bias_grad(float* drelb, int num_buckets, float* diag, const T* ds, int batches,
                                       const AttnSpec* s, cudaStream_t stream) {
    dim3 grid(s->Tq + s->Tk - 1, s->H);
    attention_bias_diag_kernel<T><<<grid, 256, 0, stream>>>(diag, ds, *s, batches);
    cudaCheckLaunch();
    attention_bias_bucket_kernel<<<CEIL_DIV(num_buckets * s->H, 128), 128, 0, stream>>>(drelb, diag, *s, num_buckets);
    cudaCheckLaunch();
}

// the bias as a dense tensor: bias[h, i, j] = relb[bucket(j − i), h], (H, Tq, Tk) (for cuDNN's SDPA)
__global__ void relative_bias_dense_kernel(floatX* bias, AttnSpec s) {
    size_t n = (size_t)s.H * s.Tq * s.Tk;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
        int j = (int)(idx % s.Tk), i = (int)(idx / s.Tk % s.Tq), h = (int)(idx / ((size_t)s.Tk * s.Tq));
        bias[idx] = from_float<floatX>(s.relb[s.buckets[j - i + s.Tq - 1] * s.H + h]);
    }
}

static inline void relative_bias_dense(floatX* bias, const AttnSpec* s, cudaStream_t stream) {
    size_t n = (size_t)s->H * s->Tq * s->Tk;
    relative_bias_dense_kernel<<<(unsigned)min((size_t)4096, CEIL_DIV(n, (size_t)256)), 256, 0, stream>>>(bias, *s);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// per-head products: a head of sequence b is a strided view, so the (b, h) pairs are batched with
// one stride: for each b over h (stride D in the projections), or for each h over b; the shorter
// loop of launches is taken.

typedef struct { const void* p; int trans; int64_t ld, off_b, off_h; } HeadOperand;

static inline void attention_gemm(MatmulCtx* ctx, void* out, int out_fp32, int64_t ldo, int64_t out_off_b,
                                  int64_t out_off_h, HeadOperand a, HeadOperand b, int M, int N, int K, int B, int H) {
    size_t oelem = out_fp32 ? sizeof(float) : sizeof(floatX);
    int loop_b = B <= H, outer = loop_b ? B : H, inner = loop_b ? H : B;
    for (int o = 0; o < outer; o++) {
        int64_t ao = loop_b ? a.off_b * o : a.off_h * o, bo = loop_b ? b.off_b * o : b.off_h * o;
        int64_t oo = loop_b ? out_off_b * o : out_off_h * o;
        Matmul m = {};
        m.out = (char*)out + oo * (int64_t)oelem; m.out_fp32 = out_fp32; m.ldo = ldo;
        m.stride_out = loop_b ? out_off_h : out_off_b;
        m.a = MatOperand{ (const floatX*)a.p + ao, a.trans, a.ld, loop_b ? a.off_h : a.off_b };
        m.b = MatOperand{ (const floatX*)b.p + bo, b.trans, b.ld, loop_b ? b.off_h : b.off_b };
        m.M = M; m.N = N; m.K = K; m.batch = inner; m.accumulate = 0;
        matmul(ctx, &m);
    }
}

// out (B, Tq, H·D) from q (B, Tq, H·D), k, v (B, Tk, H·D); att (B, H, Tq, Tk) keeps the probabilities
static inline void attention_forward(MatmulCtx* ctx, floatX* out, floatX* att, AttnScratch w, const floatX* q,
                                     const floatX* k, const floatX* v, const AttnSpec* s, cudaStream_t stream) {
    int B = s->B, Tq = s->Tq, Tk = s->Tk, H = s->H, D = s->D;
    int64_t HD = (int64_t)H * D, TT = (int64_t)Tq * Tk;
    // scores (Tq, Tk) = q_bh (Tq, D) · k_bhᵀ
    attention_gemm(ctx, w.scores, 1, Tk, H * TT, TT, HeadOperand{ q, 0, HD, Tq * HD, D },
                   HeadOperand{ k, 1, HD, Tk * HD, D }, Tq, Tk, D, B, H);
    int rows = B * H * Tq, warps = 8;
    floatX* dropped = s->drop.p > 0.0f ? w.scratch : NULL;
    attention_softmax_forward_kernel<<<CEIL_DIV(rows, warps), warps * 32, 0, stream>>>(att, dropped, w.scores, *s);
    cudaCheckLaunch();
    // out_bh (Tq, D) = p'_bh (Tq, Tk) · v_bh (Tk, D)
    attention_gemm(ctx, out, 0, HD, Tq * HD, D, HeadOperand{ dropped ? dropped : att, 0, Tk, H * TT, TT },
                   HeadOperand{ v, 0, HD, Tk * HD, D }, Tq, D, Tk, B, H);
}

// dq, dk, dv written from dout; drelb (NB, H) accumulated when s->relb is set (and drelb is: NULL when frozen)
static inline void attention_backward(MatmulCtx* ctx, floatX* dq, floatX* dk, floatX* dv, float* drelb, int num_buckets,
                                      AttnScratch w, const floatX* dout, const floatX* q, const floatX* k,
                                      const floatX* v, const floatX* att, const AttnSpec* s, cudaStream_t stream) {
    int B = s->B, Tq = s->Tq, Tk = s->Tk, H = s->H, D = s->D;
    int64_t HD = (int64_t)H * D, TT = (int64_t)Tq * Tk;
    size_t n = (size_t)B * H * TT;
    const floatX* pd = att;
    if (s->drop.p > 0.0f) {
        attention_dropout_kernel<<<(unsigned)min((size_t)65535, CEIL_DIV(n, (size_t)256)), 256, 0, stream>>>(w.scratch, att, n, s->drop);
        cudaCheckLaunch();
        pd = w.scratch;
    }
    // dv_bh (Tk, D) = p'_bhᵀ · dout_bh
    attention_gemm(ctx, dv, 0, HD, Tk * HD, D, HeadOperand{ pd, 1, Tk, H * TT, TT },
                   HeadOperand{ dout, 0, HD, Tq * HD, D }, Tk, D, Tq, B, H);
    // dp' (Tq, Tk) = dout_bh · v_bhᵀ   (fp32)
    attention_gemm(ctx, w.scores, 1, Tk, H * TT, TT, HeadOperand{ dout, 0, HD, Tq * HD, D },
                   HeadOperand{ v, 1, HD, Tk * HD, D }, Tq, Tk, D, B, H);
    int rows = B * H * Tq, warps = 8;
    attention_softmax_backward_kernel<<<CEIL_DIV(rows, warps), warps * 32, 0, stream>>>(w.scores, w.scratch, att, *s);
    cudaCheckLaunch();
    // dq_bh (Tq, D) = ds · k_bh;  dk_bh (Tk, D) = dsᵀ · q_bh
    attention_gemm(ctx, dq, 0, HD, Tq * HD, D, HeadOperand{ w.scratch, 0, Tk, H * TT, TT },
                   HeadOperand{ k, 0, HD, Tk * HD, D }, Tq, D, Tk, B, H);
    attention_gemm(ctx, dk, 0, HD, Tk * HD, D, HeadOperand{ w.scratch, 1, Tk, H * TT, TT },
                   HeadOperand{ q, 0, HD, Tq * HD, D }, Tk, D, Tq, B, H);
    if (s->relb && drelb) attention_bias_grad(drelb, num_buckets, w.diag, w.scores, B, s, stream);
}

#endif // T5_ATTENTION_CUH
