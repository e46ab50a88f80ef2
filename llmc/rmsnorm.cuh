// rmsnorm.cuh — T5's RMSNorm (no mean, no bias), fused with the residual add that precedes it.
//
// Forward, one warp per token row t (C columns):
//   res_out = res_in + dropout(sub)                 (the previous sublayer's residual add; skipped when sub = NULL)
//   out     = dropout(w · res_out / sqrt(mean(res_out²) + eps)) · out_scale
// The output dropout and scale serve the final norms (T5's final dropout; the tied head's C^-0.5).
//
// Backward (gradient rule: the residual gradient accumulates, the rest is written), with
//   dy = dropout'(dout · pre_scale),  r = rstd[t],  g = w·dy:
//   dres   (+)= r·g − x·r³·mean(g·x)
//   g_next  = dropout'(dres)      the gradient of the previous sublayer's output (its residual dropout)
//   dw     += Σ_t dy·x·r          (separate kernel: column partials over fixed row chunks, then a
//                                  fixed-order sum, so the result is bit-identical run to run)
#ifndef T5_RMSNORM_CUH
#define T5_RMSNORM_CUH

#include "cuda_common.cuh"  // defines: floatX, DropSite, dropout_apply_dev, warp_sum, cudaCheck

typedef struct {
    float* res_out;       // (N, C) fp32
    const float* res_in;  // (N, C) fp32
    const float* sub;     // (N, C) fp32 sublayer output, or NULL (res_out already holds the input)
    DropSite res_drop;    // on sub
    floatX* out;          // (N, C) normed output
    float* rstd;          // (N)
    const float* w;       // (C) fp32 master weight
    DropSite out_drop;
    float out_scale, eps;
    int N, C;
} RmsNormForward;

__global__ void residual_rmsnorm_forward_kernel(RmsNormForward a) {
    a.res_drop = dropout_resolve(a.res_drop); a.out_drop = dropout_resolve(a.out_drop);
    int t = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (t >= a.N) return;
    size_t row = (size_t)t * a.C;
    float ss = 0.0f;
    for (int c = lane; c < a.C; c += 32) {
        float x;
        if (a.sub) {
            x = a.res_in[row + c] + dropout_apply_dev(a.sub[row + c], a.res_drop, row + c);
            a.res_out[row + c] = x;
        } else {
            x = a.res_out[row + c];
        }
        ss += x * x;
    }
    ss = warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)a.C + a.eps);
    for (int c = lane; c < a.C; c += 32) {
        float y = dropout_apply_dev(a.w[c] * (a.res_out[row + c] * r), a.out_drop, row + c);
        if (a.out_scale != 1.0f) y *= a.out_scale;
        a.out[row + c] = from_float<floatX>(y);
    }
    if (lane == 0) a.rstd[t] = r;
}

static inline void residual_rmsnorm_forward(const RmsNormForward* a, cudaStream_t stream) {
    const int warps = 8;
    residual_rmsnorm_forward_kernel<<<CEIL_DIV(a->N, warps), warps * 32, 0, stream>>>(*a);
    cudaCheckLaunch();
}

typedef struct {
    float* dres;          // (N, C) fp32 residual gradient: written (accumulate = 0) or accumulated
    int accumulate;
    floatX* g_next;       // (N, C) dropout'(dres) for the previous sublayer, or NULL
    DropSite next_drop;
    float* dw;            // (C) fp32 weight gradient (+=); NULL: a frozen weight under LoRA, skipped
    float* dw_partial;    // (RMSNORM_CHUNKS, C) scratch
    const float* dout;    // (N, C) fp32 gradient of the normed output
    float pre_scale;
    DropSite dout_drop;
    const float* x;       // (N, C) the forward input (fp32 residual)
    const float* w;       // (C)
    const float* rstd;    // (N)
    int N, C;
} RmsNormBackward;

#define RMSNORM_CHUNKS 64  // row chunks of the weight-gradient partial sums

__device__ __forceinline__ float rmsnorm_dy(const RmsNormBackward& a, size_t i) {
    float g = a.dout[i];
    if (a.pre_scale != 1.0f) g *= a.pre_scale;
    return dropout_apply_dev(g, a.dout_drop, i);
}

__global__ void rmsnorm_backward_input_kernel(RmsNormBackward a) {
    a.next_drop = dropout_resolve(a.next_drop); a.dout_drop = dropout_resolve(a.dout_drop);
    int t = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (t >= a.N) return;
    size_t row = (size_t)t * a.C;
    float r = a.rstd[t], dot = 0.0f;
    for (int c = lane; c < a.C; c += 32) dot += a.w[c] * rmsnorm_dy(a, row + c) * a.x[row + c];
    dot = warp_sum(dot);
    float k = r * r * r * dot / (float)a.C;
    for (int c = lane; c < a.C; c += 32) {
        size_t i = row + c;
        float d = (a.accumulate ? a.dres[i] : 0.0f) + (r * a.w[c] * rmsnorm_dy(a, i) - k * a.x[i]);
        a.dres[i] = d;
        if (a.g_next) a.g_next[i] = from_float<floatX>(dropout_apply_dev(d, a.next_drop, i));
    }
}

// dw_partial[chunk, c] = Σ over the chunk's rows of dy·x·r; block (32 columns, 8 row lanes)
__global__ void rmsnorm_backward_weight_kernel(RmsNormBackward a) {
    a.dout_drop = dropout_resolve(a.dout_drop);
    __shared__ float part[8][33];
    int c = blockIdx.x * 32 + threadIdx.x, chunk = blockIdx.y;
    int rows = CEIL_DIV(a.N, RMSNORM_CHUNKS), lo = chunk * rows, hi = min(a.N, lo + rows);
    float s = 0.0f;
    if (c < a.C)
        for (int t = lo + threadIdx.y; t < hi; t += 8) {
            size_t i = (size_t)t * a.C + c;
            s += rmsnorm_dy(a, i) * a.x[i] * a.rstd[t];
        }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < a.C) {
        float total = 0.0f;
        for (int y = 0; y < 8; y++) total += part[y][threadIdx.x];
        a.dw_partial[(size_t)chunk * a.C + c] = total;
    }
}

__global__ void rmsnorm_backward_weight_reduce_kernel(float* dw, const float* partial, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < RMSNORM_CHUNKS; k++) s += partial[(size_t)k * C + c];
    dw[c] += s;
}

static inline void rmsnorm_backward(const RmsNormBackward* a, cudaStream_t stream) {
    // the weight gradient first: it reads dout, never dres, so the order does not matter for
    // correctness, and launching it first lets the input kernel overwrite nothing it needs
    if (a->dw) {
        dim3 grid(CEIL_DIV(a->C, 32), RMSNORM_CHUNKS), block(32, 8);
        rmsnorm_backward_weight_kernel<<<grid, block, 0, stream>>>(*a);
        cudaCheckLaunch();
        rmsnorm_backward_weight_reduce_kernel<<<CEIL_DIV(a->C, 256), 256, 0, stream>>>(a->dw, a->dw_partial, a->C);
        cudaCheckLaunch();
    }
    const int warps = 8;
    rmsnorm_backward_input_kernel<<<CEIL_DIV(a->N, warps), warps * 32, 0, stream>>>(*a);
    cudaCheckLaunch();
}

#endif // T5_RMSNORM_CUH
