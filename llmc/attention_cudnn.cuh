// attention_cudnn.cuh — T5 attention (an AttnSpec of llmc/attention.cuh) through cuDNN's fused SDPA
// (llmc/cudnn_att.h): the glue that both train_t5.cu (--attention cudnn) and its twin
// dev/cuda/attention.cu (variant 3) use. Builds with USE_CUDNN=1 (bf16) only.
//
//   inputs  : once per step and AttnSpec (the bias table and the lengths do not change within a step):
//             q_len ← Tq for every sequence (with a key-padding mask), bias (H, Tq, Tk) ← the dense
//             relative bias from the (NB, H) table and the buckets; every call of that spec reads them
//   forward : cuDNN: out, lse
//   backward: cuDNN: dq, dk, dv, dbias (H, Tq, Tk, summed over the batch); drelb[bucket(j − i), h] += Σ dbias
//             over each bucket's diagonals (attention_bias_grad, fixed order)
// Dropout: cuDNN's Philox stream with seed = the site's seed and offset = its site id in the high 32
// bits (two sites never share counters); a site's forward and backward pass get the same pair. cuDNN
// reads the pair from device memory: a one-thread kernel writes it into the scratch just before the
// call, in stream order, so one scratch pair serves every call.
#ifndef T5_ATTENTION_CUDNN_CUH
#define T5_ATTENTION_CUDNN_CUH

#include "attention.cuh"   // defines: AttnSpec, relative_bias_dense, attention_bias_grad
#include "cudnn_att.h"     // defines: CudnnAttn, CudnnAttnSpec, cudnn_attn_forward, cudnn_attn_backward

// the buffers of one spec's calls: its inputs bias (H, Tq, Tk) floatX and q_len (B) (cudnn_attention_inputs),
// and scratch: dbias (H, Tq, Tk) floatX, diag (H, Tq + Tk − 1), rng (2)
typedef struct { floatX* bias; floatX* dbias; int* q_len; float* diag; int64_t* rng; } CudnnScratch;

__global__ void fill_int_kernel(int* p, int n, int value) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = value;
}

// cuDNN's dropout seed and offset from the site's (its seed in device memory when seed_dev is set)
__global__ void set_rng_kernel(int64_t* rng, DropSite d) {
    rng[0] = (int64_t)(d.seed_dev ? *d.seed_dev : d.seed);
    rng[1] = (int64_t)((uint64_t)d.site << 32);
}

// the inputs every call of spec s reads besides q, k, v: once per step (after the batch's buckets and
// lengths are on the device, before the first call)
static inline void cudnn_attention_inputs(const AttnSpec* s, CudnnScratch w, cudaStream_t stream) {
    if (s->key_len) {
        fill_int_kernel<<<CEIL_DIV(s->B, 128), 128, 0, stream>>>(w.q_len, s->B, s->Tq);
        cudaCheckLaunch();
    }
    if (s->relb) relative_bias_dense(w.bias, s, stream);
}

// the description of one call (and its dropout seed and offset, written in stream order)
static inline CudnnAttnSpec cudnn_call_spec(const AttnSpec* s, CudnnScratch w, cudaStream_t stream) {
    if (s->drop.p > 0.0f) {
        set_rng_kernel<<<1, 1, 0, stream>>>(w.rng, s->drop);
        cudaCheckLaunch();
    }
    CudnnAttnSpec c = { s->B, s->H, s->Tq, s->Tk, s->D, s->causal, s->relb != NULL, s->key_len,
                        s->key_len ? w.q_len : NULL, s->drop.p, w.rng };
    return c;
}

// out (B, Tq, H·D), lse (B, H, Tq) written
static inline void cudnn_attention_forward(CudnnAttn* a, CudnnScratch w, floatX* out, float* lse, const floatX* q,
                                           const floatX* k, const floatX* v, const AttnSpec* s, cudaStream_t stream) {
    CudnnAttnSpec c = cudnn_call_spec(s, w, stream);
    cudnn_attn_forward(a, &c, out, lse, q, k, v, w.bias, stream);
}

// dq, dk, dv written; drelb (NB, H) accumulated when s->relb is set (and drelb is: NULL when frozen)
static inline void cudnn_attention_backward(CudnnAttn* a, CudnnScratch w, floatX* dq, floatX* dk, floatX* dv, float* drelb,
                                            int num_buckets, const floatX* dout, const floatX* q, const floatX* k,
                                            const floatX* v, const floatX* out, const float* lse, const AttnSpec* s,
                                            cudaStream_t stream) {
    CudnnAttnSpec c = cudnn_call_spec(s, w, stream);
    cudnn_attn_backward(a, &c, dq, dk, dv, w.dbias, dout, q, k, v, out, lse, w.bias, stream);
    if (s->relb && drelb) attention_bias_grad(drelb, num_buckets, w.diag, w.dbias, 1, s, stream);
}

#endif // T5_ATTENTION_CUDNN_CUH
