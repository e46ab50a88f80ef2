// ffn_act.cuh — the middle of T5's FFN: activation, gate and dropout, forward and backward.
//
//   gated (T5 v1.1 / FLAN):  out = dropout(act(h0) · h1)      h0 = wi_0 x, h1 = wi_1 x
//   plain (original T5):     out = dropout(act(h0))           h0 = wi x
//   act: ReLU, GELU (erf), or GELU with the tanh approximation (HF "gelu_new", FLAN-T5)
// Backward (written, not accumulated), g = dropout'(dout):
//   dh0 = g · h1 · act'(h0)      dh1 = g · act(h0)
// cuBLASLt's GELU/ReLU epilogues cannot express the gate product nor the dropout mask between the
// activation and wo, so this stays one elementwise kernel after the wi products.
#ifndef T5_FFN_ACT_CUH
#define T5_FFN_ACT_CUH

#include "cuda_common.cuh"  // defines: floatX, DropSite, dropout_apply_dev
#include "t5.h"             // defines: T5Act

#define GELU_K_DEV 0.7978845608028654f  // sqrt(2/π)

__device__ __forceinline__ float act_value_dev(T5Act a, float x) {
    switch (a) {
        case ACT_RELU: return x > 0.0f ? x : 0.0f;
        case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        default: return 0.5f * x * (1.0f + tanhf(GELU_K_DEV * (x + 0.044715f * x * x * x)));
    }
}

__device__ __forceinline__ float act_grad_dev(T5Act a, float x) {
    switch (a) {
        case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
        case ACT_GELU: return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.3989422804014327f * expf(-0.5f * x * x);
        default: {
            float t = tanhf(GELU_K_DEV * (x + 0.044715f * x * x * x));
            return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K_DEV * (1.0f + 3.0f * 0.044715f * x * x);
        }
    }
}

__global__ void ffn_act_forward_kernel(floatX* out, const floatX* h0, const floatX* h1, size_t n, T5Act a, DropSite d) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float y = act_value_dev(a, to_float(h0[i])) * (h1 ? to_float(h1[i]) : 1.0f);
        out[i] = from_float<floatX>(dropout_apply_dev(y, d, i));
    }
}

__global__ void ffn_act_backward_kernel(floatX* dh0, floatX* dh1, const floatX* dout, const floatX* h0, const floatX* h1,
                                        size_t n, T5Act a, DropSite d) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = dropout_apply_dev(to_float(dout[i]), d, i), x = to_float(h0[i]);
        dh0[i] = from_float<floatX>(g * (h1 ? to_float(h1[i]) : 1.0f) * act_grad_dev(a, x));
        if (h1) dh1[i] = from_float<floatX>(g * act_value_dev(a, x));
    }
}

static inline unsigned elementwise_blocks(size_t n) { return (unsigned)(n / 256 + 1 < 65536 ? n / 256 + 1 : 65535); }

// h1 = NULL for the plain FFN
static inline void ffn_act_forward(floatX* out, const floatX* h0, const floatX* h1, size_t n, T5Act a, DropSite d,
                                   cudaStream_t stream) {
    ffn_act_forward_kernel<<<elementwise_blocks(n), 256, 0, stream>>>(out, h0, h1, n, a, d);
    cudaCheckLaunch();
}

static inline void ffn_act_backward(floatX* dh0, floatX* dh1, const floatX* dout, const floatX* h0, const floatX* h1,
                                    size_t n, T5Act a, DropSite d, cudaStream_t stream) {
    ffn_act_backward_kernel<<<elementwise_blocks(n), 256, 0, stream>>>(dh0, dh1, dout, h0, h1, n, a, d);
    cudaCheckLaunch();
}

#endif // T5_FFN_ACT_CUH
