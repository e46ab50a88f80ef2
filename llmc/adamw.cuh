// adamw.cuh — AdamW with the arithmetic of torch.optim.AdamW (and of the CPU engine's t5_update),
// on fp32 master weights and fp32 moments; also refreshes the floatX copy the matmuls read
// (fp32 → bf16 rounds to nearest even). Gradient clipping enters as a factor on the gradient.
//
//   g ← g·clip;  θ ← θ·decay;  m ← m + (1−β1)(g − m);  v ← β2·v + (1−β2)·g²
//   θ ← θ − step_size · m / (sqrt(v)/bc2_sqrt + eps)      step_size = lr/(1−β1^t), bc2_sqrt = sqrt(1−β2^t)
#ifndef T5_ADAMW_CUH
#define T5_ADAMW_CUH

#include "cuda_common.cuh"  // defines: floatX, from_float, cudaCheck

typedef struct {
    float beta1, beta2, eps;
    float decay;       // 1 − lr·weight_decay, or 1 for tensors without decay
    float step_size, bc2_sqrt;
    float clip;        // multiplies the gradient (1 = no clipping)
} AdamWStep;

__global__ void adamw_kernel(float* p, floatX* px, const float* g, float* m, float* v, size_t n, AdamWStep s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        if (s.clip != 1.0f) gi *= s.clip;
        float pi = p[i] * s.decay;
        float mi = m[i] + (gi - m[i]) * (1.0f - s.beta1);
        float vi = s.beta2 * v[i] + (1.0f - s.beta2) * gi * gi;
        float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
        pi -= s.step_size * mi / denom;
        p[i] = pi; m[i] = mi; v[i] = vi;
        if ((void*)px != (void*)p) px[i] = from_float<floatX>(pi);
    }
}

// one tensor (n values); px may alias p (fp32 build)
static inline void adamw_update(float* p, floatX* px, const float* g, float* m, float* v, size_t n, AdamWStep s,
                                cudaStream_t stream) {
    if (n == 0) return;
    unsigned blocks = (unsigned)(n / 256 + 1 < 8192 ? n / 256 + 1 : 8192);
    adamw_kernel<<<blocks, 256, 0, stream>>>(p, px, g, m, v, n, s);
    cudaCheckLaunch();
}

// the floatX copy of fp32 values (round to nearest even)
__global__ void copy_to_floatx_kernel(floatX* dst, const float* src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_float<floatX>(src[i]);
}

static inline void copy_to_floatx(floatX* dst, const float* src, size_t n, cudaStream_t stream) {
    if ((void*)dst == (void*)src || n == 0) return;
    unsigned blocks = (unsigned)(n / 256 + 1 < 8192 ? n / 256 + 1 : 8192);
    copy_to_floatx_kernel<<<blocks, 256, 0, stream>>>(dst, src, n);
    cudaCheckLaunch();
}

#endif // T5_ADAMW_CUH
