// ffn_act.cuh — the middle of T5's FFN: activation, gate and dropout, forward and backward.
//
//   gated (T5 v1.1 / FLAN):  out = dropout(act(h0) · h1)      h0 = wi_0 x, h1 = wi_1 x
//   plain (original T5):     out = dropout(act(h0))           h0 = wi x
//   act: ReLU, GELU (erf), or GELU with the tanh approximation (HF "gelu_new", FLAN-T5)
// Backward (written, not accumulated), g = dropout'(dout):
//   dh0 = g · h1 · act'(h0)      dh1 = g · act(h0)
// cuBLASLt's GELU/ReLU epilogues cannot express the gate product nor the dropout mask between the
// activation and wo, so this stays one elementwise kernel after the wi products. The one case they
// cover, the plain ReLU FFN with no dropout on the activation, skips this file: train_t5.cu
// ffn_fused_relu runs wi with the RELU_AUX epilogue and wo's input gradient with DRELU (llmc/matmul.cuh).
#ifndef T5_FFN_ACT_CUH
#define T5_FFN_ACT_CUH

#include "cuda_common.cuh"  // defines: floatX, DropSite, dropout_apply_dev
#include "t5.h"             // defines: T5Act, act_value, act_grad (host and device)

__global__ void ffn_act_forward_kernel(floatX* out, const floatX* h0, const floatX* h1, size_t n, T5Act a, DropSite d) {
    d = dropout_resolve(d);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float y = act_value(a, to_float(h0[i])) * (h1 ? to_float(h1[i]) : 1.0f);
        out[i] = from_float<floatX>(dropout_apply_dev(y, d, i));
    }
}

__global__ void ffn_act_backward_kernel(floatX* dh0, floatX* dh1, const floatX* dout, const floatX* h0, const floatX* h1,
                                        size_t n, T5Act a, DropSite d) {
    d = dropout_resolve(d);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = dropout_apply_dev(to_float(dout[i]), d, i), x = to_float(h0[i]);
        dh0[i] = from_float<floatX>(g * (h1 ? to_float(h1[i]) : 1.0f) * act_grad(a, x));
        if (h1) dh1[i] = from_float<floatX>(g * act_value(a, x));
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
