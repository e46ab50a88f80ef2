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
    int skip;          // 1: the step is skipped (a non-finite loss or gradient norm): nothing changes
} AdamWStep;

// An update whose values live in device memory, so that a step captured once as a CUDA graph replays
// with each step's values: the host writes cls (one AdamWStep per weight-decay class: [0] decayed,
// [1] not) and the gate's inputs before the step; adamw_gate_kernel then sets skip and clip from the
// gradient norm and the loss the same step computed on the device, as the host would have:
//   skip = loss or norm not finite (loss = (float)(Σ token losses / counted));  clip = min(1, max_norm / (norm + 1e-6))
typedef struct {
    AdamWStep cls[2];
    double counted;    // counted label tokens of the step (all ranks)
    float max_norm;    // 0: no clipping
} AdamWDevice;

__global__ void adamw_gate_kernel(AdamWDevice* u, const float* norm, const double* loss_sum) {
    float loss = (float)(loss_sum[1] / u->counted), nrm = *norm, clip = 1.0f;
    int skip = !isfinite(loss) || !isfinite(nrm);
    if (u->max_norm > 0.0f) { float coef = u->max_norm / (nrm + 1e-6f); if (coef < 1.0f) clip = coef; }
    for (int c = 0; c < 2; c++) { u->cls[c].skip = skip; u->cls[c].clip = clip; }
}

static inline void adamw_gate(AdamWDevice* u, const float* norm, const double* loss_sum, cudaStream_t stream) {
    adamw_gate_kernel<<<1, 1, 0, stream>>>(u, norm, loss_sum);
    cudaCheckLaunch();
}

// s, or (sd set) the step's values in device memory
__global__ void adamw_kernel(float* p, floatX* px, const float* g, float* m, float* v, size_t n, AdamWStep s,
                             const AdamWStep* sd) {
    if (sd) s = *sd;
    if (s.skip) return;
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

// one tensor (n values); px may alias p (fp32 build); sd: NULL, or the values in device memory (then s is unused)
static inline void adamw_update(float* p, floatX* px, const float* g, float* m, float* v, size_t n, AdamWStep s,
                                const AdamWStep* sd, cudaStream_t stream) {
    if (n == 0) return;
    unsigned blocks = (unsigned)(n / 256 + 1 < 8192 ? n / 256 + 1 : 8192);
    adamw_kernel<<<blocks, 256, 0, stream>>>(p, px, g, m, v, n, s, sd);
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
