// lora.cuh — LoRA in the CUDA trainer (llmc/lora.h holds peft's config, layout, files and merge; this
// file the device side): the adapter's state, the products of a wrapped Linear and their two dropout
// kernels, the adapter's optimizer step, its reduction over ranks.
//
// A wrapped Linear, W (OC, IC) frozen, A (r, IC), B (OC, r), s = α/r (α/√r with use_rslora):
//   forward    xd = dropout(x)      u (N, r) = s · xd · Aᵀ       out (N, OC) += u · Bᵀ
//   backward   xd, u recomputed     dB += gᵀ · u     du (N, r) = s · g · B     dA += duᵀ · xd
//              dinp (N, IC) += dropout'(du · A)
// the CPU engine's lora_forward / lora_backward (train_t5.c), in the same order; W's own product and
// input gradient are the trainer's, and W has no gradient. Beyond the frozen products, a wrapped Linear
// costs 2 products forward and 5 backward (u is recomputed rather than kept: no activation memory, and
// --recompute needs nothing more), each of 2·N·r·IC or 2·N·r·OC FLOPs: r/OC of W's own (4 % at r 32 on
// flan-t5-base's q). With lora_dropout two elementwise kernels more (xd, and the masked input gradient).
//
// State, one flat buffer in llmc/lora.h's layout (the order of adapter_model.safetensors' tensors),
// padded to ORDER_ALIGN · ranks floats (the padding stays zero under AdamW):
//   master (fp32 A and B), its floatX copy for the products (the bf16 build's matmul inputs, as the
//   base weights are; aliases master in the fp32 build without ZeRO-1), fp32 gradients, AdamW m and v.
// ZeRO-1 (--zero 1) shards master, m and v: rank k owns part k of the buffer. The gradients are summed
// over ranks once, after the step's last backward pass (the adapter is small: no buckets), by an
// all-reduce, or under ZeRO-1 a reduce-scatter into the rank's part; its update is all-gathered.
// Precision: u and du are floatX (they are matmul inputs), dropout'(du · A) is summed in fp32.
#ifndef T5_LORA_CUH
#define T5_LORA_CUH

#include <stdio.h>           // defines: fprintf
#include <string.h>          // defines: memset
#include "lora.h"            // defines: LoraConfig, LoraLayout, lora_layout, lora_scale
#include "cuda_common.cuh"   // defines: floatX, DropSite, dropout_apply_dev, cuda_alloc, cudaCheck
#include "matmul.cuh"        // defines: MatmulCtx, Matmul, matmul, matmul_backward_weight, matmul_backward_input
#include "adamw.cuh"         // defines: AdamWStep, adamw_update, copy_to_floatx
#include "global_norm.cuh"   // defines: global_norm
#include "zero.cuh"          // defines: ORDER_ALIGN, order_round, shard_sumsq, norm_from_sumsq
#include "nccl.cuh"          // defines: Comm, comm_all_reduce_sum, comm_reduce_scatter_sum, comm_all_gather

// ----------------------------------------------------------------------------
// the dropout on an adapter's input (the same hash, site and index as the CPU engine: the same masks)

// xd (n) = dropout(x): x · keep / (1 − p), index = the element of the (N, IC) input
__global__ void lora_dropout_forward_kernel(floatX* xd, const floatX* x, size_t n, DropSite d) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        xd[i] = from_float<floatX>(dropout_apply_dev(to_float(x[i]), d, i));
}

// dinp (n) += dropout'(dx): the forward's mask and scale (the CPU engine's residual_forward)
template <typename T>
__global__ void lora_dropout_backward_kernel(T* dinp, const float* dx, size_t n, DropSite d) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dinp[i] = from_float<T>(to_float(dinp[i]) + dropout_apply_dev(dx[i], d, i));
}

static inline unsigned lora_blocks(size_t n) { return (unsigned)(n / 256 + 1 < 8192 ? n / 256 + 1 : 8192); }

static inline void lora_dropout_forward(floatX* xd, const floatX* x, size_t n, DropSite d, cudaStream_t stream) {
    if (n == 0) return;
    lora_dropout_forward_kernel<<<lora_blocks(n), 256, 0, stream>>>(xd, x, n, d);
    cudaCheckLaunch();
}

// dinp is fp32 (dinp_fp32) or floatX
static inline void lora_dropout_backward(void* dinp, int dinp_fp32, const float* dx, size_t n, DropSite d, cudaStream_t stream) {
    if (n == 0) return;
    if (dinp_fp32) lora_dropout_backward_kernel<float><<<lora_blocks(n), 256, 0, stream>>>((float*)dinp, dx, n, d);
    else lora_dropout_backward_kernel<floatX><<<lora_blocks(n), 256, 0, stream>>>((floatX*)dinp, dx, n, d);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// the products of one wrapped Linear

typedef struct {
    const floatX *A, *B;  // floatX copies: A (r, IC), B (OC, r); A NULL: the Linear is not wrapped
    float *dA, *dB;       // their fp32 gradients (+=)
    float s;              // scale α/r (α/√r)
    int r;
    DropSite drop;        // lora_dropout on the Linear's input (p = 0: off)
} LoraLinear;

// scratch of the products, sized for the largest N (tokens) and IC of the model
typedef struct {
    float* x;     // (N, IC) fp32-sized: dropout(x) as floatX in the forward pass, then dropout'(du · A) as fp32
    floatX* u;    // (N, r)
    floatX* du;   // (N, r)
} LoraScratch;

// xd: the input itself, or its dropout in the scratch
static inline const floatX* lora_input(const LoraLinear* v, LoraScratch w, const floatX* inp, size_t n, cudaStream_t stream) {
    if (v->drop.p == 0.0f) return inp;
    lora_dropout_forward((floatX*)w.x, inp, n, v->drop, stream);
    return (const floatX*)w.x;
}

// u (N, r) = s · xd · Aᵀ
static inline void lora_project(MatmulCtx* mm, const LoraLinear* v, LoraScratch w, const floatX* xd, int N, int IC) {
    Matmul p = { w.u, 0, v->r, 0, { xd, 0, IC, 0 }, { v->A, 1, IC, 0 }, N, v->r, IC, 1, 0, MM_PLAIN, NULL, 0, v->s };
    matmul(mm, &p);
}

// out (N, OC) += s · (dropout(inp) · Aᵀ) · Bᵀ; out (fp32 when out_fp32, else floatX) holds the base product
static inline void lora_linear_forward(MatmulCtx* mm, const LoraLinear* v, LoraScratch w, void* out, int out_fp32,
                                       const floatX* inp, int N, int IC, int OC, cudaStream_t stream) {
    lora_project(mm, v, w, lora_input(v, w, inp, (size_t)N * IC, stream), N, IC);
    Matmul p = { out, out_fp32, OC, 0, { w.u, 0, v->r, 0 }, { v->B, 1, v->r, 0 }, N, OC, v->r, 1, 1, MM_PLAIN, NULL, 0, 1.0f };
    matmul(mm, &p);
}

// the adapter's part of the backward pass, g = dout (N, OC): dA, dB accumulated, dinp (N, IC; fp32 when
// dinp_fp32, else floatX, holding the base's input gradient) += the adapter's input gradient
static inline void lora_linear_backward(MatmulCtx* mm, const LoraLinear* v, LoraScratch w, void* dinp, int dinp_fp32,
                                        const floatX* dout, const floatX* inp, int N, int IC, int OC, cudaStream_t stream) {
    int r = v->r;
    const floatX* xd = lora_input(v, w, inp, (size_t)N * IC, stream);
    lora_project(mm, v, w, xd, N, IC);
    matmul_backward_weight(mm, v->dB, dout, w.u, N, r, OC);                          // dB (OC, r) += gᵀ · u
    Matmul du = { w.du, 0, r, 0, { dout, 0, OC, 0 }, { v->B, 0, r, 0 }, N, r, OC, 1, 0, MM_PLAIN, NULL, 0, v->s };
    matmul(mm, &du);                                                                  // du (N, r) = s · g · B
    matmul_backward_weight(mm, v->dA, w.du, xd, N, IC, r);                            // dA (r, IC) += duᵀ · xd
    if (v->drop.p == 0.0f) { matmul_backward_input(mm, dinp, dinp_fp32, w.du, v->A, N, IC, r, 1); return; } // += du · A
    matmul_backward_input(mm, w.x, 1, w.du, v->A, N, IC, r, 0); // xd is spent: the scratch takes du · A in fp32
    lora_dropout_backward(dinp, dinp_fp32, w.x, (size_t)N * IC, v->drop, stream);
}

// W (OC, IC) += s · B · A: the merge (peft's get_delta_weight) into a floatX weight, one rounding
static inline void lora_merge_weight(MatmulCtx* mm, floatX* W, const LoraLinear* v, int IC, int OC) {
    Matmul p = { W, 0, IC, 0, { v->B, 0, v->r, 0 }, { v->A, 0, IC, 0 }, OC, IC, v->r, 1, 1, MM_PLAIN, NULL, 0, v->s };
    matmul(mm, &p);
}

// ----------------------------------------------------------------------------
// the adapter's state on the device

typedef enum { LORA_PARAMS, LORA_ADAM_M, LORA_ADAM_V, LORA_GRADS } LoraBuffer;

typedef struct {
    LoraConfig config;
    LoraLayout layout;   // llmc/lora.h: every A and B in one flat buffer (host and device alike)
    float scale;         // s
    size_t n;            // adapter floats (layout.total)
    size_t padded;       // n rounded up to ORDER_ALIGN · ranks
    int zero;            // 1: ZeRO-1 (master, m, v in parts over comm's ranks)
    int ranks, rank;     // parts and this process's part (1, 0 without ZeRO-1)
    size_t part;         // padded / ranks
    Comm* comm;          // NULL: one process without a communicator
    float* master;       // (part) fp32 A and B of this rank's part (all of them without ZeRO-1)
    floatX* x;           // (padded) floatX copy for the products (aliases master: fp32 build without ZeRO-1)
    float* grads;        // (padded) fp32 gradients, summed over the step's micro-batches
    float* gshard;       // (part) this rank's part summed over ranks (aliases grads without ZeRO-1)
    float *m, *v;        // (part) AdamW moments
    LoraScratch scratch; // for `tokens` rows of in_max columns
    size_t tokens;
    int in_max;
    int merged;          // 1 while the adapter is merged into the base weights (generation): no products
    floatX* saved;       // the wrapped base weights as they were, while merged
    int64_t base_n;      // the base weights' count and CRC-32 (lora_base_fingerprint): adapter checkpoints
    uint32_t base_crc;
} LoraState;

// the geometry of the state (nothing allocated): config c over a model of config mc, ZeRO-1 over comm's ranks
static inline void lora_state_geometry(LoraState* L, const LoraConfig* c, const T5Config* mc, int zero, Comm* comm) {
    memset(L, 0, sizeof(*L));
    L->config = *c;
    T5Layout base;
    t5_layout(mc, &base);
    lora_layout(c, &base, mc->gated, &L->layout);
    L->scale = lora_scale(c);
    L->n = L->layout.total;
    L->zero = zero;
    L->comm = comm;
    L->ranks = zero ? comm->size : 1;
    L->rank = zero ? comm->rank : 0;
    L->padded = order_round(L->n, (size_t)ORDER_ALIGN * L->ranks);
    L->part = L->padded / L->ranks;
    int HD = mc->num_heads * mc->d_kv;
    L->in_max = mc->d_model > HD ? (mc->d_model > mc->d_ff ? mc->d_model : mc->d_ff) : (HD > mc->d_ff ? HD : mc->d_ff);
}

// the owned buffers and their bytes: what lora_state_alloc allocates and --plan-memory adds up
#define LORA_STATE_BUFFERS 6
static inline int lora_state_plan(LoraState* L, void** p[LORA_STATE_BUFFERS], size_t bytes[LORA_STATE_BUFFERS]) {
    int n = 0;
    size_t f = sizeof(float);
    p[n] = (void**)&L->master; bytes[n++] = L->part * f;
    p[n] = (void**)&L->grads; bytes[n++] = L->padded * f;
    p[n] = (void**)&L->m; bytes[n++] = L->part * f;
    p[n] = (void**)&L->v; bytes[n++] = L->part * f;
#ifdef ENABLE_FP32
    if (L->zero) { p[n] = (void**)&L->x; bytes[n++] = L->padded * sizeof(floatX); }
#else
    p[n] = (void**)&L->x; bytes[n++] = L->padded * sizeof(floatX);
#endif
    if (L->zero) { p[n] = (void**)&L->gshard; bytes[n++] = L->part * f; }
    return n;
}

static inline size_t lora_state_bytes(LoraState* L) {
    void** p[LORA_STATE_BUFFERS];
    size_t bytes[LORA_STATE_BUFFERS], total = 0;
    int n = lora_state_plan(L, p, bytes);
    for (int i = 0; i < n; i++) total += bytes[i];
    return total;
}

// the scratch of the products for up to `tokens` rows, in bytes
static inline size_t lora_scratch_bytes(const LoraState* L, size_t tokens) {
    return tokens * (size_t)L->in_max * sizeof(float) + 2 * tokens * (size_t)L->layout.r * sizeof(floatX);
}

static inline void lora_state_alloc(LoraState* L) {
    void** p[LORA_STATE_BUFFERS];
    size_t bytes[LORA_STATE_BUFFERS];
    int n = lora_state_plan(L, p, bytes);
    for (int i = 0; i < n; i++) {
        *p[i] = cuda_alloc<char>(bytes[i]);
        cudaCheck(cudaMemset(*p[i], 0, bytes[i])); // the padding stays zero
    }
    if (!L->x) L->x = (floatX*)L->master; // fp32 build without ZeRO-1
    if (!L->gshard) L->gshard = L->grads;
}

// scratch for batches of up to `tokens` rows (grows only; the caller has synchronised)
static inline void lora_reserve(LoraState* L, size_t tokens) {
    if (tokens <= L->tokens) return;
    cudaCheck(cudaFree(L->scratch.x)); cudaCheck(cudaFree(L->scratch.u)); cudaCheck(cudaFree(L->scratch.du));
    L->scratch.x = cuda_alloc<float>(tokens * (size_t)L->in_max);
    L->scratch.u = cuda_alloc<floatX>(tokens * (size_t)L->layout.r);
    L->scratch.du = cuda_alloc<floatX>(tokens * (size_t)L->layout.r);
    L->tokens = tokens;
}

static inline void lora_state_free(LoraState* L) {
    void** p[LORA_STATE_BUFFERS];
    size_t bytes[LORA_STATE_BUFFERS];
    int n = lora_state_plan(L, p, bytes);
    for (int i = 0; i < n; i++) cudaCheck(cudaFree(*p[i]));
    cudaCheck(cudaFree(L->scratch.x)); cudaCheck(cudaFree(L->scratch.u)); cudaCheck(cudaFree(L->scratch.du));
    cudaCheck(cudaFree(L->saved));
    memset(L, 0, sizeof(*L));
}

// the view of copy `layer` of layout tensor i for the products; A NULL when i is not wrapped or the
// adapter is merged into the base weights
static inline LoraLinear lora_linear(const LoraState* L, int i, int layer, DropSite drop) {
    const LoraTensor* t = &L->layout.t[i];
    LoraLinear v;
    memset(&v, 0, sizeof(v));
    if (!t->on || L->merged) return v;
    size_t a = t->a + (size_t)layer * L->layout.r * t->in, b = t->b + (size_t)layer * t->out * L->layout.r;
    v.A = L->x + a; v.B = L->x + b; v.dA = L->grads + a; v.dB = L->grads + b;
    v.s = L->scale; v.r = L->layout.r; v.drop = drop;
    return v;
}

// whether the adapter wraps an FFN Linear (wi, wi_0, wi_1, wo): cuBLASLt's ReLU epilogues do not apply then
static inline int lora_wraps_ffn(const LoraConfig* c) {
    return (c->targets & ((1u << LORA_WI) | (1u << LORA_WI_0) | (1u << LORA_WI_1) | (1u << LORA_WO))) != 0;
}

// device ← host (n floats, layout order; every rank passes the whole buffer and keeps its part)
static inline void lora_put(LoraState* L, LoraBuffer which, const float* host, cudaStream_t stream) {
    float* stage = cuda_alloc<float>(L->padded);
    cudaCheck(cudaStreamSynchronize(stream));
    cudaCheck(cudaMemset(stage, 0, L->padded * sizeof(float)));
    cudaCheck(cudaMemcpy(stage, host, L->n * sizeof(float), cudaMemcpyHostToDevice));
    const float* mine = stage + (size_t)L->rank * L->part;
    size_t part = L->part * sizeof(float);
    if (which == LORA_GRADS) cudaCheck(cudaMemcpy(L->grads, stage, L->padded * sizeof(float), cudaMemcpyDeviceToDevice));
    else cudaCheck(cudaMemcpy(which == LORA_PARAMS ? L->master : which == LORA_ADAM_M ? L->m : L->v, mine, part,
                              cudaMemcpyDeviceToDevice));
    if (which == LORA_PARAMS) copy_to_floatx(L->x, stage, L->padded, 0);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaFree(stage));
}

// host (n floats, layout order) ← device. Under ZeRO-1 every rank's part is gathered, so every rank must
// call; host may be NULL on ranks that do not need the values.
static inline void lora_get(LoraState* L, LoraBuffer which, float* host, cudaStream_t stream) {
    const float* src = which == LORA_GRADS ? L->grads : which == LORA_PARAMS ? L->master : which == LORA_ADAM_M ? L->m : L->v;
    float* stage = NULL;
    if (L->zero && which != LORA_GRADS) {
        stage = cuda_alloc<float>(L->padded);
        comm_all_gather(L->comm, src, stage, L->part, COMM_F32, stream);
        src = stage;
    }
    cudaCheck(cudaStreamSynchronize(stream));
    if (host) cudaCheck(cudaMemcpy(host, src, L->n * sizeof(float), cudaMemcpyDeviceToHost));
    if (stage) cudaCheck(cudaFree(stage));
}

static inline void lora_zero_grad(LoraState* L, cudaStream_t stream) {
    cudaCheck(cudaMemsetAsync(L->grads, 0, L->padded * sizeof(float), stream));
}

// the step's gradients summed over ranks, on the communicator's stream after the work queued on
// `compute`: all-reduce in place, or (ZeRO-1) reduce-scatter into this rank's part
static inline void lora_reduce(LoraState* L, cudaStream_t compute) {
    Comm* c = L->comm;
    comm_wait_for(c, compute);
    if (L->zero) comm_reduce_scatter_sum(c, L->grads, L->gshard, L->part, c->stream);
    else comm_all_reduce_sum(c, L->grads, L->padded, COMM_F32, c->stream);
}

// *norm (device) = the global L2 norm of the adapter's summed gradients (ZeRO-1: Σ g² of the parts over ranks)
static inline void lora_grad_norm(LoraState* L, float* norm, double* partial, double* sumsq, cudaStream_t stream) {
    if (!L->zero) { global_norm(norm, partial, L->grads, L->padded, stream); return; }
    shard_sumsq(sumsq, partial, L->gshard, L->part, stream);
    comm_all_reduce_sum(L->comm, sumsq, 1, COMM_F64, stream);
    norm_from_sumsq(norm, sumsq, stream);
}

// one AdamW update of this rank's part at the step's values in device memory (sd: every A and B decays, HF
// Trainer's rule: they are weights, no norms; skipped there when the step's gate says so), then under
// ZeRO-1 every rank's floatX part to every rank
static inline void lora_update(LoraState* L, const AdamWStep* sd, cudaStream_t stream) {
    floatX* mine = L->x + (size_t)L->rank * L->part;
    AdamWStep unused;
    memset(&unused, 0, sizeof(unused));
    adamw_update(L->master, mine, L->gshard, L->m, L->v, L->part, unused, sd, stream);
    if (L->zero) comm_all_gather(L->comm, mine, L->x, L->part, COMM_FLOATX, stream);
}

#endif // T5_LORA_CUH
