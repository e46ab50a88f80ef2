// cudnn_att.h — T5 attention through cuDNN's fused SDPA (scaled dot-product attention) graphs, the
// --attention cudnn path of train_t5cu (built with USE_CUDNN=1; bf16 only: cuDNN's SDPA takes bf16/fp16).
//
//   out (B, Tq, H·D) = dropout(softmax(q·kᵀ·1 + bias + mask)) · v      — T5: attention scale 1, NOT 1/sqrt(D)
//   stats (B, H, Tq) = the row logsumexp, kept for the backward pass (flash attention's lse layout)
//
// What T5 needs and how it maps onto cuDNN:
//   relative position bias  → a dense bias (1, H, Tq, Tk) bf16 that the caller fills from the bucket
//                             table (llmc/attention.cuh relative_bias_dense); the backward pass returns
//                             dbias (1, H, Tq, Tk), summed over the batch, which the caller folds back
//                             into the (num_buckets, H) table (attention_bias_grad)
//   key padding             → cuDNN's padding mask: seq_len_kv = the source lengths, seq_len_q = Tq for
//                             every sequence (padded query rows are computed as the other paths do)
//   causal                  → top-left diagonal band, right bound 0 (key j ≤ query i)
//   dropout                 → cuDNN's own Philox stream (seed, offset): NOT the CPU engine's hash, so
//                             runs with dropout on cannot be compared with the CPU or flash paths
//                             mask for mask (test_t5cu compares them with dropout 0)
// q, k, v, out, dout, dq, dk, dv are (B, T, H·D) row-major: a head is a strided view, as elsewhere.
//
// Graphs are built the first time a shape (B, H, Tq, Tk, D, masks, dropout) is seen and cached; the
// build and a workspace that must grow synchronise the host once per new shape (stated: the
// length-bucketed batches of a run bring a bounded number of shapes, each built once).
#ifndef T5_CUDNN_ATT_H
#define T5_CUDNN_ATT_H

#include <stdint.h>        // defines: int64_t, uint32_t
#include <cuda_runtime.h>  // defines: cudaStream_t

typedef struct {
    int B, H, Tq, Tk, D;
    int causal;           // key j > query i masked
    int bias;             // 1: a (1, H, Tq, Tk) bias (and dbias in the backward pass)
    const int* key_len;   // (B) device: keys j ≥ key_len[b] masked, or NULL (no padding mask)
    const int* q_len;     // (B) device, all Tq (required by cuDNN with key_len; NULL otherwise)
    float dropout;        // probability on the attention weights; 0: off
    const int64_t* rng;   // (2) device: cuDNN's Philox seed and offset for this call (with dropout; a site's
                          //   forward and backward pass must see the same pair)
} CudnnAttnSpec;

typedef struct CudnnAttn CudnnAttn; // handle, graph cache, workspace

// NULL with a message in err (size n) when cuDNN cannot start or is older than 9.5 (dbias with padding)
CudnnAttn* cudnn_attn_create(char* err, int n);
void cudnn_attn_free(CudnnAttn* a);
// 1 when every backward graph built so far runs cuDNN's deterministic algorithm (bit-identical reruns)
int cudnn_attn_deterministic(const CudnnAttn* a);
// changes whenever the workspace is reallocated: a CUDA graph captured before holds the freed address
int cudnn_attn_epoch(const CudnnAttn* a);

// out, stats written. Pointers to bf16 (__nv_bfloat16) data; stats fp32. A failure prints the cuDNN
// message with the shape and exits (it happens at the first call of a shape, never mid-shape).
void cudnn_attn_forward(CudnnAttn* a, const CudnnAttnSpec* s, void* out, float* stats, const void* q, const void* k,
                        const void* v, const void* bias, cudaStream_t stream);
// dq, dk, dv, dbias written (dbias only with s->bias)
void cudnn_attn_backward(CudnnAttn* a, const CudnnAttnSpec* s, void* dq, void* dk, void* dv, void* dbias,
                         const void* dout, const void* q, const void* k, const void* v, const void* out,
                         const float* stats, const void* bias, cudaStream_t stream);

#endif // T5_CUDNN_ATT_H
