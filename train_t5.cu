// train_t5.cu — the CUDA trainer for T5 / FLAN-T5: bf16 mixed precision (PRECISION=FP32 for an fp32
// build), fp32 master weights and AdamW moments, fused kernels from llmc/*.cuh, cuBLASLt matmuls.
// Reads top to bottom: model state → sublayers → model forward/backward → optimizer → data → CLI.
// test_t5cu.cu includes this file with TESTING defined to reach its internals.
//
// It computes exactly what the CPU reference engine (train_t5.c) computes, in the same order of
// operations where it matters: the same parameter layout (llmc/t5.h), the same dropout masks (the
// counter hash of llmc/rng.h with the same site numbers), the same loss normalisation.
//
// Precision: see llmc/cuda_common.cuh. Residual streams, gradients of the residual streams and all
// parameter gradients are fp32; matmul inputs are floatX; matmul weights are the floatX copy of the
// fp32 master weights (refreshed by the AdamW kernel, round to nearest even); RMSNorm weights, the
// relative bias and the embedding gather read the fp32 master weights.
// Gradient rule (the whole file): parameter gradients accumulate (+=); activation gradients are
// written (=), except the residual streams and the encoder output, which accumulate.
// Host synchronisation: one per optimizer step, after the backward passes, to read the loss and the
// gradient norm (to print them and to skip a non-finite step before it reaches the weights, as the
// CPU engine does); the next step's batches are prepared on the host before that wait.
#include <stdio.h>      // defines: printf, fprintf
#include <stdlib.h>     // defines: malloc, free, strtol, strtod
#include <stdint.h>     // defines: uint64_t, uint32_t
#include <string.h>     // defines: memset, memcpy, strcmp, strstr
#include <math.h>       // defines: sqrt, log, exp, cos, isfinite
#include <time.h>       // defines: clock_gettime
#include <errno.h>      // defines: errno
#include <sys/stat.h>   // defines: stat, S_ISDIR
#include "llmc/utils.h"        // defines: mallocCheck, callocCheck
#include "llmc/t5.h"           // defines: T5Config, T5Layout, t5_layout, P_* tensor ids, presets
#include "llmc/rng.h"          // defines: mix64, Rng, rng_init, rng_next
#include "llmc/schedule.h"     // defines: LrSchedule, lr_multiplier, lr_schedule_parse
#include "llmc/hf.h"           // defines: t5_load_hf_dir, t5_save_hf_dir
#include "llmc/checkpoint.h"   // defines: ckpt_save, ckpt_load, CkptTrainState
#include "llmc/dataloader.h"   // defines: T5Batch, BatchBuf, DataLoader, dataloader_next, IGNORE_INDEX
#include "llmc/t5_cpu.h"       // defines: t5cpu_init_random, t5cpu_check_batch, t5cpu_parse_int/_float
#include "llmc/cuda_common.cuh"  // defines: floatX, cudaCheck, DropSite, cuda_alloc
#include "llmc/matmul.cuh"       // defines: MatmulCtx, matmul_forward, matmul_backward_input/_weight
#include "llmc/rmsnorm.cuh"      // defines: residual_rmsnorm_forward, rmsnorm_backward
#include "llmc/attention.cuh"    // defines: attention_forward, attention_backward, relative_buckets
#include "llmc/ffn_act.cuh"      // defines: ffn_act_forward, ffn_act_backward
#include "llmc/embedding.cuh"    // defines: embedding_forward, embedding_backward, EmbedGroups
#include "llmc/crossentropy.cuh" // defines: crossentropy_forward_backward
#include "llmc/global_norm.cuh"  // defines: global_norm
#include "llmc/adamw.cuh"        // defines: adamw_update, copy_to_floatx

// ----------------------------------------------------------------------------
// activations on the device, sized for the largest batch seen (layer strides use the current batch)

typedef struct {
    // encoder, Ne = B·Ts tokens
    float* e_res;     // (Le+1, Ne, C) fp32 residual entering each block; [Le] enters the final norm
    float* e_mid;     // (Le, Ne, C)   fp32 residual after self-attention
    floatX* e_ln1;    // (Le, Ne, C)   normed input of self-attention
    float* e_rstd1;   // (Le, Ne)
    floatX* e_qkv;    // (Le, 3, Ne, HD)
    floatX* e_att;    // (Le, B, H, Ts, Ts) probabilities (before dropout)
    floatX* e_ctx;    // (Le, Ne, HD)
    floatX* e_ln2;    // (Le, Ne, C)
    float* e_rstd2;   // (Le, Ne)
    floatX* e_h0;     // (Le, Ne, F)
    floatX* e_h1;     // (Le, Ne, F)   gated only
    floatX* e_ff;     // (Le, Ne, F)
    float* e_rstdf;   // (Ne)
    floatX* e_out;    // (Ne, C)       encoder output (after final norm and dropout)
    // decoder, Nd = B·Tt tokens
    float* d_res;     // (Ld+1, Nd, C)
    float* d_mid1;    // (Ld, Nd, C)   after self-attention
    float* d_mid2;    // (Ld, Nd, C)   after cross-attention
    floatX* d_ln1;    // (Ld, Nd, C)
    float* d_rstd1;   // (Ld, Nd)
    floatX* d_qkv;    // (Ld, 3, Nd, HD)
    floatX* d_att;    // (Ld, B, H, Tt, Tt)
    floatX* d_ctx;    // (Ld, Nd, HD)
    floatX* d_ln2;    // (Ld, Nd, C)
    float* d_rstd2;   // (Ld, Nd)
    floatX* d_cq;     // (Ld, Nd, HD)
    floatX* d_ckv;    // (Ld, 2, Ne, HD)
    floatX* d_catt;   // (Ld, B, H, Tt, Ts)
    floatX* d_cctx;   // (Ld, Nd, HD)
    floatX* d_ln3;    // (Ld, Nd, C)
    float* d_rstd3;   // (Ld, Nd)
    floatX* d_h0;     // (Ld, Nd, F)
    floatX* d_h1;     // (Ld, Nd, F)
    floatX* d_ff;     // (Ld, Nd, F)
    float* d_rstdf;   // (Nd)
    floatX* d_out;    // (Nd, C)       fed to the head (after dropout, · C^-0.5 if tied)
    floatX* logits;   // (Nd, V)       becomes dlogits in the fused loss
    float* losses;    // (Nd)
    // scratch
    float* sub;       // (Nm, C)       a sublayer's output before its residual add
    float* scores;    // (B, H, Tm, Tm) fp32 attention scores / their gradients
    floatX* att_x;    // (B, H, Tm, Tm) dropped probabilities / floatX score gradients
    float* diag;      // (H, 2Tm−1)    relative-bias gradient per diagonal
    float* g_res;     // (Nm, C)       gradient of the residual stream
    float* g_x;       // (Nm, C)       gradient of a normed sublayer input
    floatX* g_sub;    // (Nm, C)       gradient of a sublayer output (after its residual dropout)
    floatX* g_qkv;    // (3, Nm, HD)
    floatX* g_ctx;    // (Nm, HD)
    floatX* g_h0;     // (Nm, F)
    floatX* g_h1;     // (Nm, F)
    floatX* g_ff;     // (Nm, F)
    float* g_enc;     // (Ne, C)       gradient of the encoder output, accumulated over decoder blocks
    floatX* g_ckv;    // (2, Ne, HD)
    float* dw_partial;// (RMSNORM_CHUNKS, C)
} T5CudaActs;

// the current batch on the device: ids, lengths, and the token positions grouped by id (embedding backward)
typedef struct {
    int* dev;           // one block: src | src_len | dec_in | labels | enc groups | dec groups | buckets
    int* host[2];       // pinned staging, two slots so one can fill while the other is in flight
    cudaEvent_t copied[2];
    int slot;
    size_t cap;         // ints per block
    int* pairs;         // host scratch for grouping (2 · max tokens)
    const int *src, *src_len, *dec_in, *labels, *enc_buckets, *dec_buckets;
    EmbedGroups enc, dec;
} BatchDev;

typedef struct {
    T5Config config;
    T5Layout layout;
    float* params;       // (total) fp32 master weights, layout order
    floatX* params_x;    // (total) floatX copy for the matmuls (aliases params in the fp32 build)
    float* grads;        // (total) fp32
    float* m_mem;        // AdamW moments (total), allocated with the model
    float* v_mem;
    long long step;      // optimizer updates done
    T5CudaActs acts;
    int max_B, max_Ts, max_Tt;
    int B, Ts, Tt;       // sizes of the last forward pass
    int num_counted;     // label tokens of the last forward pass
    int train;           // dropout on in the last forward pass
    uint64_t dropout_seed;
    BatchDev batch;
    double* loss_sum;    // device (2): Σ token losses of the last forward; of the step since t5cu_zero_grad
    float* norm;         // device: gradient norm
    double* norm_partial;
    MatmulCtx mm;
    cudaStream_t stream;
    size_t act_bytes;    // device bytes of the activations
} T5Cuda;

static size_t t5cu_num_params(const T5Cuda* m) { return m->layout.total; }

// copy `l` of tensor i: fp32 master, floatX copy, gradient
static float* PM(const T5Cuda* m, int i, int l) {
    const T5Tensor* t = &m->layout.t[i];
    return t->size ? m->params + t->offset + (size_t)l * t5_tensor_copy_size(t) : NULL;
}
static const floatX* PX(const T5Cuda* m, int i, int l) {
    const T5Tensor* t = &m->layout.t[i];
    return t->size ? m->params_x + t->offset + (size_t)l * t5_tensor_copy_size(t) : NULL;
}
static float* PG(const T5Cuda* m, int i, int l) {
    const T5Tensor* t = &m->layout.t[i];
    return t->size ? m->grads + t->offset + (size_t)l * t5_tensor_copy_size(t) : NULL;
}

// builds the model from a flat host buffer of fp32 parameters (layout order) on the current device
static void t5cu_build(T5Cuda* m, const T5Config* c, const float* params) {
    memset(m, 0, sizeof(*m));
    m->config = *c;
    t5_layout(c, &m->layout);
    size_t n = m->layout.total;
    cudaCheck(cudaStreamCreate(&m->stream));
    matmul_ctx_init(&m->mm, m->stream);
    m->params = cuda_alloc<float>(n);
#ifdef ENABLE_FP32
    m->params_x = m->params;
#else
    m->params_x = cuda_alloc<floatX>(n);
#endif
    m->grads = cuda_alloc<float>(n);
    m->m_mem = cuda_alloc<float>(n);
    m->v_mem = cuda_alloc<float>(n);
    cudaCheck(cudaMemcpy(m->params, params, n * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemset(m->grads, 0, n * sizeof(float)));
    cudaCheck(cudaMemset(m->m_mem, 0, n * sizeof(float)));
    cudaCheck(cudaMemset(m->v_mem, 0, n * sizeof(float)));
    copy_to_floatx(m->params_x, m->params, n, m->stream);
    m->loss_sum = cuda_alloc<double>(2);
    m->norm = cuda_alloc<float>(1);
    m->norm_partial = cuda_alloc<double>(NORM_BLOCKS);
    for (int s = 0; s < 2; s++) cudaCheck(cudaEventCreateWithFlags(&m->batch.copied[s], cudaEventDisableTiming));
    cudaCheck(cudaStreamSynchronize(m->stream));
}

// AdamW moments and step from a checkpoint (host buffers of layout size)
static void t5cu_set_optimizer_state(T5Cuda* m, const float* mm, const float* vv, long long step) {
    size_t n = t5cu_num_params(m) * sizeof(float);
    cudaCheck(cudaMemcpy(m->m_mem, mm, n, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->v_mem, vv, n, cudaMemcpyHostToDevice));
    m->step = step;
}

static void t5cu_free_acts(T5CudaActs* a) {
    void** p = (void**)a;
    for (size_t i = 0; i < sizeof(T5CudaActs) / sizeof(void*); i++) { cudaCheck(cudaFree(p[i])); p[i] = NULL; }
}

static void t5cu_free_batch(BatchDev* d) {
    cudaCheck(cudaFree(d->dev));
    for (int s = 0; s < 2; s++) { cudaCheck(cudaFreeHost(d->host[s])); cudaCheck(cudaEventDestroy(d->copied[s])); }
    free(d->pairs);
}

static void t5cu_free(T5Cuda* m) {
    cudaCheck(cudaStreamSynchronize(m->stream));
    t5cu_free_acts(&m->acts);
    t5cu_free_batch(&m->batch);
    cudaCheck(cudaFree(m->params));
    if ((void*)m->params_x != (void*)m->params) cudaCheck(cudaFree(m->params_x));
    cudaCheck(cudaFree(m->grads)); cudaCheck(cudaFree(m->m_mem)); cudaCheck(cudaFree(m->v_mem));
    cudaCheck(cudaFree(m->loss_sum)); cudaCheck(cudaFree(m->norm)); cudaCheck(cudaFree(m->norm_partial));
    matmul_ctx_free(&m->mm);
    cudaCheck(cudaStreamDestroy(m->stream));
    memset(m, 0, sizeof(*m));
}

static void t5cu_alloc_acts(T5Cuda* m, int B, int Ts, int Tt) {
    const T5Config* c = &m->config;
    size_t C = c->d_model, HD = (size_t)c->num_heads * c->d_kv, F = c->d_ff, H = c->num_heads, V = c->vocab_size;
    size_t Le = c->num_layers, Ld = c->num_decoder_layers;
    size_t Ne = (size_t)B * Ts, Nd = (size_t)B * Tt, Nm = Ne > Nd ? Ne : Nd, Tm = Ts > Tt ? Ts : Tt;
    size_t Ff = c->gated ? F : 0, f = sizeof(float), x = sizeof(floatX);
    cudaCheck(cudaStreamSynchronize(m->stream));
    T5CudaActs* a = &m->acts;
    t5cu_free_acts(a);
    struct { void** p; size_t bytes; } plan[] = {
        {(void**)&a->e_res, (Le + 1) * Ne * C * f}, {(void**)&a->e_mid, Le * Ne * C * f}, {(void**)&a->e_ln1, Le * Ne * C * x},
        {(void**)&a->e_rstd1, Le * Ne * f}, {(void**)&a->e_qkv, Le * 3 * Ne * HD * x}, {(void**)&a->e_att, Le * B * H * Ts * Ts * x},
        {(void**)&a->e_ctx, Le * Ne * HD * x}, {(void**)&a->e_ln2, Le * Ne * C * x}, {(void**)&a->e_rstd2, Le * Ne * f},
        {(void**)&a->e_h0, Le * Ne * F * x}, {(void**)&a->e_h1, Le * Ne * Ff * x}, {(void**)&a->e_ff, Le * Ne * F * x},
        {(void**)&a->e_rstdf, Ne * f}, {(void**)&a->e_out, Ne * C * x},
        {(void**)&a->d_res, (Ld + 1) * Nd * C * f}, {(void**)&a->d_mid1, Ld * Nd * C * f}, {(void**)&a->d_mid2, Ld * Nd * C * f},
        {(void**)&a->d_ln1, Ld * Nd * C * x}, {(void**)&a->d_rstd1, Ld * Nd * f}, {(void**)&a->d_qkv, Ld * 3 * Nd * HD * x},
        {(void**)&a->d_att, Ld * B * H * Tt * Tt * x}, {(void**)&a->d_ctx, Ld * Nd * HD * x}, {(void**)&a->d_ln2, Ld * Nd * C * x},
        {(void**)&a->d_rstd2, Ld * Nd * f}, {(void**)&a->d_cq, Ld * Nd * HD * x}, {(void**)&a->d_ckv, Ld * 2 * Ne * HD * x},
        {(void**)&a->d_catt, Ld * B * H * Tt * Ts * x}, {(void**)&a->d_cctx, Ld * Nd * HD * x}, {(void**)&a->d_ln3, Ld * Nd * C * x},
        {(void**)&a->d_rstd3, Ld * Nd * f}, {(void**)&a->d_h0, Ld * Nd * F * x}, {(void**)&a->d_h1, Ld * Nd * Ff * x},
        {(void**)&a->d_ff, Ld * Nd * F * x}, {(void**)&a->d_rstdf, Nd * f}, {(void**)&a->d_out, Nd * C * x},
        {(void**)&a->logits, Nd * V * x}, {(void**)&a->losses, Nd * f},
        {(void**)&a->sub, Nm * C * f}, {(void**)&a->scores, B * H * Tm * Tm * f}, {(void**)&a->att_x, B * H * Tm * Tm * x},
        {(void**)&a->diag, H * (2 * Tm - 1) * f}, {(void**)&a->g_res, Nm * C * f}, {(void**)&a->g_x, Nm * C * f},
        {(void**)&a->g_sub, Nm * C * x}, {(void**)&a->g_qkv, 3 * Nm * HD * x}, {(void**)&a->g_ctx, Nm * HD * x},
        {(void**)&a->g_h0, Nm * F * x}, {(void**)&a->g_h1, Nm * Ff * x}, {(void**)&a->g_ff, Nm * F * x},
        {(void**)&a->g_enc, Ne * C * f}, {(void**)&a->g_ckv, 2 * Ne * HD * x}, {(void**)&a->dw_partial, RMSNORM_CHUNKS * C * f},
    };
    static_assert(sizeof(plan) / sizeof(plan[0]) == sizeof(T5CudaActs) / sizeof(void*), "every activation is planned");
    m->act_bytes = 0;
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
        *plan[i].p = cuda_alloc<char>(plan[i].bytes);
        m->act_bytes += plan[i].bytes;
    }
    m->max_B = B; m->max_Ts = Ts; m->max_Tt = Tt;
}

static void t5cu_build_acts(T5Cuda* m, int B, int Ts, int Tt) {
    if (B <= m->max_B && Ts <= m->max_Ts && Tt <= m->max_Tt) return;
    t5cu_alloc_acts(m, B > m->max_B ? B : m->max_B, Ts > m->max_Ts ? Ts : m->max_Ts, Tt > m->max_Tt ? Tt : m->max_Tt);
}

// ----------------------------------------------------------------------------
// the batch: validated on the host, staged in pinned memory, one copy to the device

// ints of one staged batch: ids, lengths, groups (3N + 2 each side), buckets (2T − 1 each side)
static size_t batch_ints(int B, int Ts, int Tt) {
    size_t Ne = (size_t)B * Ts, Nd = (size_t)B * Tt;
    return Ne + B + 2 * Nd + (3 * Ne + 2) + (3 * Nd + 2) + (2 * Ts - 1) + (2 * Tt - 1);
}

static void batch_dev_reserve(BatchDev* d, size_t ints, size_t tokens) {
    if (ints <= d->cap) return;
    if (d->dev) {
        cudaCheck(cudaFree(d->dev));
        for (int s = 0; s < 2; s++) cudaCheck(cudaFreeHost(d->host[s]));
        free(d->pairs);
    }
    d->cap = ints;
    d->dev = cuda_alloc<int>(ints);
    for (int s = 0; s < 2; s++) cudaCheck(cudaMallocHost((void**)&d->host[s], ints * sizeof(int)));
    d->pairs = (int*)mallocCheck(2 * tokens * sizeof(int));
}

// carves a staged block into its parts; g receives the group arrays of N tokens
static int* batch_carve_groups(int* p, EmbedGroups* g, int N) {
    g->uniq = p; g->start = p + N + 1; g->pos = p + 2 * (N + 1);
    return p + 3 * N + 2;
}

// stages b and copies it to the device; computes the relative-position buckets on the device
static void t5cu_upload_batch(T5Cuda* m, const T5Batch* b) {
    BatchDev* d = &m->batch;
    int B = b->B, Ts = b->Ts, Tt = b->Tt, Ne = B * Ts, Nd = B * Tt;
    size_t n = batch_ints(B, Ts, Tt);
    if (n > d->cap) cudaCheck(cudaStreamSynchronize(m->stream)); // growing: the old buffers may still be read
    batch_dev_reserve(d, n, (size_t)(Ne > Nd ? Ne : Nd));
    d->slot ^= 1;
    cudaCheck(cudaEventSynchronize(d->copied[d->slot])); // the slot's previous copy has finished
    int* h = d->host[d->slot];
    memcpy(h, b->src, (size_t)Ne * sizeof(int));
    memcpy(h + Ne, b->src_len, (size_t)B * sizeof(int));
    memcpy(h + Ne + B, b->dec_in, (size_t)Nd * sizeof(int));
    memcpy(h + Ne + B + Nd, b->labels, (size_t)Nd * sizeof(int));
    EmbedGroups he, hd;
    int* end = batch_carve_groups(h + Ne + B + 2 * Nd, &he, Ne);
    end = batch_carve_groups(end, &hd, Nd);
    embed_groups_build(&he, b->src, Ne, d->pairs);
    embed_groups_build(&hd, b->dec_in, Nd, d->pairs);
    cudaCheck(cudaMemcpyAsync(d->dev, h, (size_t)(end - h) * sizeof(int), cudaMemcpyHostToDevice, m->stream));
    cudaCheck(cudaEventRecord(d->copied[d->slot], m->stream));
    int* q = d->dev;
    d->src = q; d->src_len = q + Ne; d->dec_in = q + Ne + B; d->labels = q + Ne + B + Nd;
    int* qe = batch_carve_groups(q + Ne + B + 2 * Nd, &d->enc, Ne);
    int* qd = batch_carve_groups(qe, &d->dec, Nd);
    d->enc.n_uniq = he.n_uniq; d->dec.n_uniq = hd.n_uniq;
    int* eb = qd;
    int* db = eb + 2 * Ts - 1;
    const T5Config* c = &m->config;
    relative_buckets(eb, Ts, 1, c->num_buckets, c->max_distance, m->stream);
    relative_buckets(db, Tt, 0, c->num_buckets, c->max_distance, m->stream);
    d->enc_buckets = eb; d->dec_buckets = db;
}

// ----------------------------------------------------------------------------
// sublayers: pre-norm residual blocks. The RMSNorm of a sublayer is computed by the fused kernel
// that ends the previous sublayer (its residual add), so a sublayer starts from its normed input.

// dropout sites: (stack, block, kind) → one 32-bit id. These numbers must be the CPU engine's
// (train_t5.c drop_site): test_t5cu compares the two engines with dropout on, which fails otherwise.
enum { DROP_EMBED, DROP_ATT, DROP_ATT_RES, DROP_CROSS, DROP_CROSS_RES, DROP_FF, DROP_FF_RES, DROP_FINAL };
static DropSite drop_at(const T5Cuda* m, int decoder, int layer, int kind) {
    DropSite d = { m->train ? m->config.dropout : 0.0f, m->dropout_seed,
                   ((uint32_t)decoder << 20) | ((uint32_t)layer << 4) | (uint32_t)kind };
    return d;
}
static const DropSite NO_DROP = { 0.0f, 0, 0 };

typedef struct { int ln, q, k, v, o; } AttnIds;     // tensor ids of one attention sublayer
typedef struct { int ln, wi0, wi1, wo; } FfnIds;
static const AttnIds ENC_ATTN = { P_ENC_LN1, P_ENC_Q, P_ENC_K, P_ENC_V, P_ENC_O };
static const AttnIds DEC_SELF = { P_DEC_LN1, P_DEC_Q, P_DEC_K, P_DEC_V, P_DEC_O };
static const AttnIds DEC_CROSS = { P_DEC_LN2, P_DEC_CQ, P_DEC_CK, P_DEC_CV, P_DEC_CO };
static const FfnIds ENC_FFN = { P_ENC_LN2, P_ENC_WI0, P_ENC_WI1, P_ENC_WO };
static const FfnIds DEC_FFN = { P_DEC_LN3, P_DEC_WI0, P_DEC_WI1, P_DEC_WO };

// activations of one attention sublayer. Self-attention: k, v from ln (N tokens); cross-attention:
// from the encoder output (Nkv = B·Ts tokens)
typedef struct {
    floatX* ln; float* rstd;   // (N, C), (N)
    floatX *q, *kv;            // (N, HD), (2, Nkv, HD)
    floatX *att, *ctx;         // (B, H, Tq, Tk), (N, HD)
    const floatX* kv_src; int Nkv;
} AttnActs;

typedef struct { floatX* ln; float* rstd; floatX *h0, *h1, *ff; } FfnActs;

static AttnScratch attn_scratch(T5Cuda* m) { return AttnScratch{ m->acts.scores, m->acts.att_x, m->acts.diag }; }

// sub (N, C) fp32 = o(attention(q(ln), k(kv_src), v(kv_src)))
static void attn_sublayer_forward(T5Cuda* m, AttnActs a, AttnIds w, int l, const AttnSpec* s, int N) {
    const T5Config* c = &m->config;
    int C = c->d_model, HD = c->num_heads * c->d_kv;
    const floatX* kv_src = a.kv_src ? a.kv_src : a.ln;
    matmul_forward(&m->mm, a.q, 0, a.ln, PX(m, w.q, l), N, C, HD);
    matmul_forward(&m->mm, a.kv, 0, kv_src, PX(m, w.k, l), a.Nkv, C, HD);
    matmul_forward(&m->mm, a.kv + (size_t)a.Nkv * HD, 0, kv_src, PX(m, w.v, l), a.Nkv, C, HD);
    attention_forward(&m->mm, a.ctx, a.att, attn_scratch(m), a.q, a.kv, a.kv + (size_t)a.Nkv * HD, s, m->stream);
    matmul_forward(&m->mm, m->acts.sub, 1, a.ctx, PX(m, w.o, l), N, HD, C);
}

// sub (N, C) fp32 = wo(dropout(act(wi0 ln) [· wi1 ln]))
static void ffn_sublayer_forward(T5Cuda* m, FfnActs a, FfnIds w, int l, int N, DropSite act_drop) {
    const T5Config* c = &m->config;
    int C = c->d_model, F = c->d_ff;
    matmul_forward(&m->mm, a.h0, 0, a.ln, PX(m, w.wi0, l), N, C, F);
    if (c->gated) matmul_forward(&m->mm, a.h1, 0, a.ln, PX(m, w.wi1, l), N, C, F);
    ffn_act_forward(a.ff, a.h0, c->gated ? a.h1 : NULL, (size_t)N * F, c->act, act_drop, m->stream);
    matmul_forward(&m->mm, m->acts.sub, 1, a.ff, PX(m, w.wo, l), N, F, C);
}

// res_out = res_in + dropout(sub) (sub = NULL: res_out is the input already), then the next norm:
// out = dropout(rmsnorm(res_out; w)) · out_scale
static void residual_norm(T5Cuda* m, float* res_out, const float* res_in, const float* sub, DropSite res_drop,
                          floatX* out, float* rstd, const float* w, DropSite out_drop, float out_scale, int N) {
    RmsNormForward a = { res_out, res_in, sub, res_drop, out, rstd, w, out_drop, out_scale, m->config.eps, N,
                         m->config.d_model };
    residual_rmsnorm_forward(&a, m->stream);
}

// g_x (N, C) fp32 = ∂L/∂ln from g_sub (the gradient of the sublayer output); k/v input gradients go
// to g_kv_src (the encoder output gradient, accumulated) for cross-attention
static void attn_sublayer_backward(T5Cuda* m, AttnActs a, AttnIds w, int l, const AttnSpec* s, int N, float* drelb,
                                   float* g_kv_src) {
    const T5Config* c = &m->config;
    T5CudaActs* A = &m->acts;
    int C = c->d_model, HD = c->num_heads * c->d_kv;
    MatmulCtx* mm = &m->mm;
    const floatX* kv_src = a.kv_src ? a.kv_src : a.ln;
    matmul_backward_weight(mm, PG(m, w.o, l), A->g_sub, a.ctx, N, HD, C);
    matmul_backward_input(mm, A->g_ctx, 0, A->g_sub, PX(m, w.o, l), N, HD, C, 0);
    floatX* gq = A->g_qkv;
    floatX* gk = a.kv_src ? A->g_ckv : A->g_qkv + (size_t)N * HD;
    floatX* gv = gk + (size_t)a.Nkv * HD;
    attention_backward(mm, gq, gk, gv, drelb, c->num_buckets, attn_scratch(m), A->g_ctx, a.q, a.kv,
                       a.kv + (size_t)a.Nkv * HD, a.att, s, m->stream);
    float* g_kv_dst = g_kv_src ? g_kv_src : A->g_x;
    matmul_backward_weight(mm, PG(m, w.q, l), gq, a.ln, N, C, HD);
    matmul_backward_weight(mm, PG(m, w.k, l), gk, kv_src, a.Nkv, C, HD);
    matmul_backward_weight(mm, PG(m, w.v, l), gv, kv_src, a.Nkv, C, HD);
    matmul_backward_input(mm, A->g_x, 1, gq, PX(m, w.q, l), N, C, HD, 0);
    matmul_backward_input(mm, g_kv_dst, 1, gk, PX(m, w.k, l), a.Nkv, C, HD, 1);
    matmul_backward_input(mm, g_kv_dst, 1, gv, PX(m, w.v, l), a.Nkv, C, HD, 1);
}

static void ffn_sublayer_backward(T5Cuda* m, FfnActs a, FfnIds w, int l, int N, DropSite act_drop) {
    const T5Config* c = &m->config;
    T5CudaActs* A = &m->acts;
    int C = c->d_model, F = c->d_ff;
    MatmulCtx* mm = &m->mm;
    matmul_backward_weight(mm, PG(m, w.wo, l), A->g_sub, a.ff, N, F, C);
    matmul_backward_input(mm, A->g_ff, 0, A->g_sub, PX(m, w.wo, l), N, F, C, 0);
    ffn_act_backward(A->g_h0, A->g_h1, A->g_ff, a.h0, c->gated ? a.h1 : NULL, (size_t)N * F, c->act, act_drop, m->stream);
    matmul_backward_weight(mm, PG(m, w.wi0, l), A->g_h0, a.ln, N, C, F);
    matmul_backward_input(mm, A->g_x, 1, A->g_h0, PX(m, w.wi0, l), N, C, F, 0);
    if (c->gated) {
        matmul_backward_weight(mm, PG(m, w.wi1, l), A->g_h1, a.ln, N, C, F);
        matmul_backward_input(mm, A->g_x, 1, A->g_h1, PX(m, w.wi1, l), N, C, F, 1);
    }
}

// RMSNorm backward of a sublayer's input norm: g_res += rmsnorm'(g_x); then g_sub = dropout'(g_res)
// for the sublayer before it (next_drop), when there is one (g_next = 1)
static void norm_backward(T5Cuda* m, int ln_id, int l, const float* x, const float* rstd, int N, int g_next,
                          DropSite next_drop) {
    T5CudaActs* A = &m->acts;
    RmsNormBackward a = { A->g_res, 1, g_next ? A->g_sub : NULL, next_drop, PG(m, ln_id, l), A->dw_partial, A->g_x,
                          1.0f, NO_DROP, x, PM(m, ln_id, l), rstd, N, m->config.d_model };
    rmsnorm_backward(&a, m->stream);
}

// ----------------------------------------------------------------------------
// per-block views into the stacked activations (strides of the current batch)

// self-attention of block l over T tokens per sequence, from the stacked buffers of one stack
static AttnActs self_attn_a(T5Cuda* m, int l, int T, floatX* ln, float* rstd, floatX* qkv, floatX* att, floatX* ctx) {
    const T5Config* c = &m->config;
    size_t N = (size_t)m->B * T, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv;
    size_t n_att = (size_t)m->B * c->num_heads * T * T;
    floatX* q = qkv + (size_t)l * 3 * N * HD;
    return AttnActs{ ln + l * N * C, rstd + l * N, q, q + N * HD, att + l * n_att, ctx + l * N * HD, NULL, (int)N };
}
static AttnActs enc_attn_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts;
    return self_attn_a(m, l, m->Ts, a->e_ln1, a->e_rstd1, a->e_qkv, a->e_att, a->e_ctx);
}
// FFN of block l over N tokens
static FfnActs ffn_a(T5Cuda* m, int l, size_t N, floatX* ln, float* rstd, floatX* h0, floatX* h1, floatX* ff) {
    const T5Config* c = &m->config;
    size_t C = c->d_model, F = c->d_ff;
    return FfnActs{ ln + l * N * C, rstd + l * N, h0 + l * N * F, c->gated ? h1 + l * N * F : NULL, ff + l * N * F };
}
static FfnActs enc_ffn_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts;
    return ffn_a(m, l, (size_t)m->B * m->Ts, a->e_ln2, a->e_rstd2, a->e_h0, a->e_h1, a->e_ff);
}
static AttnActs dec_self_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts;
    return self_attn_a(m, l, m->Tt, a->d_ln1, a->d_rstd1, a->d_qkv, a->d_att, a->d_ctx);
}
static AttnActs dec_cross_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts; const T5Config* c = &m->config;
    size_t N = (size_t)m->B * m->Tt, Ne = (size_t)m->B * m->Ts, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv;
    size_t att = (size_t)m->B * c->num_heads * m->Tt * m->Ts;
    return AttnActs{ a->d_ln2 + l * N * C, a->d_rstd2 + l * N, a->d_cq + l * N * HD, a->d_ckv + l * 2 * Ne * HD,
                     a->d_catt + l * att, a->d_cctx + l * N * HD, a->e_out, (int)Ne };
}
static FfnActs dec_ffn_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts;
    return ffn_a(m, l, (size_t)m->B * m->Tt, a->d_ln3, a->d_rstd3, a->d_h0, a->d_h1, a->d_ff);
}

// ----------------------------------------------------------------------------
// the model: forward (loss), backward (gradients)

typedef struct { AttnSpec enc, dec_self, dec_cross; } T5Specs;

static T5Specs t5cu_specs(const T5Cuda* m) {
    const T5Config* c = &m->config;
    int B = m->B, Ts = m->Ts, Tt = m->Tt, H = c->num_heads, D = c->d_kv;
    const BatchDev* d = &m->batch;
    T5Specs s;
    s.enc = AttnSpec{ B, Ts, Ts, H, D, d->src_len, 0, PM(m, P_ENC_RELB, 0), d->enc_buckets, NO_DROP };
    s.dec_self = AttnSpec{ B, Tt, Tt, H, D, NULL, 1, PM(m, P_DEC_RELB, 0), d->dec_buckets, NO_DROP };
    s.dec_cross = AttnSpec{ B, Tt, Ts, H, D, d->src_len, 0, NULL, NULL, NO_DROP };
    return s;
}

static float t5cu_head_scale(const T5Config* c) { return c->tied ? 1.0f / sqrtf((float)c->d_model) : 1.0f; }
static int t5cu_head_id(const T5Config* c) { return c->tied ? P_SHARED : P_LM_HEAD; }

static void t5cu_encoder_forward(T5Cuda* m, const T5Specs* s) {
    const T5Config* c = &m->config;
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Ts, C = c->d_model, L = c->num_layers;
    size_t NC = (size_t)N * C;
    embedding_forward(a->e_res, m->batch.src, PM(m, P_SHARED, 0), N, C, drop_at(m, 0, 0, DROP_EMBED), m->stream);
    residual_norm(m, a->e_res, NULL, NULL, NO_DROP, a->e_ln1, a->e_rstd1, PM(m, P_ENC_LN1, 0), NO_DROP, 1.0f, N);
    for (int l = 0; l < L; l++) {
        AttnSpec sp = s->enc; sp.drop = drop_at(m, 0, l, DROP_ATT);
        AttnActs aa = enc_attn_a(m, l);
        FfnActs fa = enc_ffn_a(m, l);
        float* res_in = a->e_res + l * NC;
        float* mid = a->e_mid + l * NC;
        attn_sublayer_forward(m, aa, ENC_ATTN, l, &sp, N);
        residual_norm(m, mid, res_in, a->sub, drop_at(m, 0, l, DROP_ATT_RES), fa.ln, fa.rstd, PM(m, P_ENC_LN2, l), NO_DROP, 1.0f, N);
        ffn_sublayer_forward(m, fa, ENC_FFN, l, N, drop_at(m, 0, l, DROP_FF));
        DropSite rd = drop_at(m, 0, l, DROP_FF_RES);
        if (l + 1 < L) {
            AttnActs next = enc_attn_a(m, l + 1);
            residual_norm(m, res_in + NC, mid, a->sub, rd, next.ln, next.rstd, PM(m, P_ENC_LN1, l + 1), NO_DROP, 1.0f, N);
        } else {
            residual_norm(m, res_in + NC, mid, a->sub, rd, a->e_out, a->e_rstdf, PM(m, P_ENC_LNF, 0),
                          drop_at(m, 0, 0, DROP_FINAL), 1.0f, N);
        }
    }
}

static void t5cu_decoder_forward(T5Cuda* m, const T5Specs* s) {
    const T5Config* c = &m->config;
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Tt, C = c->d_model, L = c->num_decoder_layers;
    size_t NC = (size_t)N * C;
    embedding_forward(a->d_res, m->batch.dec_in, PM(m, P_SHARED, 0), N, C, drop_at(m, 1, 0, DROP_EMBED), m->stream);
    residual_norm(m, a->d_res, NULL, NULL, NO_DROP, a->d_ln1, a->d_rstd1, PM(m, P_DEC_LN1, 0), NO_DROP, 1.0f, N);
    for (int l = 0; l < L; l++) {
        AttnSpec self = s->dec_self, cross = s->dec_cross;
        self.drop = drop_at(m, 1, l, DROP_ATT); cross.drop = drop_at(m, 1, l, DROP_CROSS);
        AttnActs sa = dec_self_a(m, l), ca = dec_cross_a(m, l);
        FfnActs fa = dec_ffn_a(m, l);
        float* res_in = a->d_res + l * NC;
        float* mid1 = a->d_mid1 + l * NC;
        float* mid2 = a->d_mid2 + l * NC;
        attn_sublayer_forward(m, sa, DEC_SELF, l, &self, N);
        residual_norm(m, mid1, res_in, a->sub, drop_at(m, 1, l, DROP_ATT_RES), ca.ln, ca.rstd, PM(m, P_DEC_LN2, l), NO_DROP, 1.0f, N);
        attn_sublayer_forward(m, ca, DEC_CROSS, l, &cross, N);
        residual_norm(m, mid2, mid1, a->sub, drop_at(m, 1, l, DROP_CROSS_RES), fa.ln, fa.rstd, PM(m, P_DEC_LN3, l), NO_DROP, 1.0f, N);
        ffn_sublayer_forward(m, fa, DEC_FFN, l, N, drop_at(m, 1, l, DROP_FF));
        DropSite rd = drop_at(m, 1, l, DROP_FF_RES);
        if (l + 1 < L) {
            AttnActs next = dec_self_a(m, l + 1);
            residual_norm(m, res_in + NC, mid2, a->sub, rd, next.ln, next.rstd, PM(m, P_DEC_LN1, l + 1), NO_DROP, 1.0f, N);
        } else { // T5 (tied): the decoder output is scaled by C^-0.5 before the shared embedding acts as the head
            residual_norm(m, res_in + NC, mid2, a->sub, rd, a->d_out, a->d_rstdf, PM(m, P_DEC_LNF, 0),
                          drop_at(m, 1, 0, DROP_FINAL), t5cu_head_scale(c), N);
        }
    }
    matmul_forward(&m->mm, a->logits, 0, a->d_out, PX(m, t5cu_head_id(c), 0), N, C, c->vocab_size);
}

// forward pass of a validated batch. Per-token losses and their sum stay on the device (read with
// t5cu_read_loss). loss_scale ≠ 0 also turns the logits into dlogits · loss_scale, ready for
// t5cu_backward; loss_scale = 0 keeps the logits. `train` turns dropout on with masks from `seed`.
static void t5cu_forward(T5Cuda* m, const T5Batch* b, int train, uint64_t seed, float loss_scale) {
    t5cu_build_acts(m, b->B, b->Ts, b->Tt);
    m->B = b->B; m->Ts = b->Ts; m->Tt = b->Tt;
    m->train = train; m->dropout_seed = seed;
    m->num_counted = batch_count_labels(b);
    t5cu_upload_batch(m, b);
    T5Specs s = t5cu_specs(m);
    t5cu_encoder_forward(m, &s);
    t5cu_decoder_forward(m, &s);
    crossentropy_forward_backward(m->acts.logits, m->acts.losses, m->loss_sum, m->batch.labels, b->B * b->Tt,
                                  m->config.vocab_size, loss_scale, m->stream);
}

// Σ token losses of the last forward pass [0] and of the step so far [1] (synchronises)
static void t5cu_read_loss_sums(T5Cuda* m, double sums[2]) {
    cudaCheck(cudaMemcpyAsync(sums, m->loss_sum, 2 * sizeof(double), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
}

// mean loss of the last forward pass over its counted tokens (synchronises)
static float t5cu_read_loss(T5Cuda* m) {
    double s[2];
    t5cu_read_loss_sums(m, s);
    return m->num_counted > 0 ? (float)(s[0] / m->num_counted) : 0.0f;
}

// starts a step: gradients and the step's loss sum to zero
static void t5cu_zero_grad(T5Cuda* m) {
    cudaCheck(cudaMemsetAsync(m->grads, 0, t5cu_num_params(m) * sizeof(float), m->stream));
    cudaCheck(cudaMemsetAsync(m->loss_sum, 0, 2 * sizeof(double), m->stream));
}

static void t5cu_encoder_backward(T5Cuda* m, const T5Specs* s) {
    const T5Config* c = &m->config;
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Ts, C = c->d_model, L = c->num_layers;
    size_t NC = (size_t)N * C;
    // encoder output: e_out = dropout(rmsnorm(e_res[L]));  ∂e_out was accumulated in g_enc
    RmsNormBackward fin = { a->g_res, 0, a->g_sub, drop_at(m, 0, L - 1, DROP_FF_RES), PG(m, P_ENC_LNF, 0), a->dw_partial,
                            a->g_enc, 1.0f, drop_at(m, 0, 0, DROP_FINAL), a->e_res + L * NC, PM(m, P_ENC_LNF, 0),
                            a->e_rstdf, N, C };
    rmsnorm_backward(&fin, m->stream);
    for (int l = L - 1; l >= 0; l--) {
        AttnSpec sp = s->enc; sp.drop = drop_at(m, 0, l, DROP_ATT);
        AttnActs aa = enc_attn_a(m, l);
        FfnActs fa = enc_ffn_a(m, l);
        ffn_sublayer_backward(m, fa, ENC_FFN, l, N, drop_at(m, 0, l, DROP_FF));
        norm_backward(m, P_ENC_LN2, l, a->e_mid + l * NC, fa.rstd, N, 1, drop_at(m, 0, l, DROP_ATT_RES));
        attn_sublayer_backward(m, aa, ENC_ATTN, l, &sp, N, PG(m, P_ENC_RELB, 0), NULL);
        norm_backward(m, P_ENC_LN1, l, a->e_res + l * NC, aa.rstd, N, l > 0, l > 0 ? drop_at(m, 0, l - 1, DROP_FF_RES) : NO_DROP);
    }
    embedding_backward(PG(m, P_SHARED, 0), m->batch.enc, a->g_res, C, drop_at(m, 0, 0, DROP_EMBED), m->stream);
}

static void t5cu_decoder_backward(T5Cuda* m, const T5Specs* s) {
    const T5Config* c = &m->config;
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Tt, C = c->d_model, L = c->num_decoder_layers, head = t5cu_head_id(c);
    size_t NC = (size_t)N * C;
    // head: logits = d_out · headᵀ, d_out = hs · dropout(rmsnorm(d_res[L]))
    matmul_backward_weight(&m->mm, PG(m, head, 0), a->logits, a->d_out, N, C, c->vocab_size);
    matmul_backward_input(&m->mm, a->g_x, 1, a->logits, PX(m, head, 0), N, C, c->vocab_size, 0);
    RmsNormBackward fin = { a->g_res, 0, a->g_sub, drop_at(m, 1, L - 1, DROP_FF_RES), PG(m, P_DEC_LNF, 0), a->dw_partial,
                            a->g_x, t5cu_head_scale(c), drop_at(m, 1, 0, DROP_FINAL), a->d_res + L * NC,
                            PM(m, P_DEC_LNF, 0), a->d_rstdf, N, C };
    rmsnorm_backward(&fin, m->stream);
    cudaCheck(cudaMemsetAsync(a->g_enc, 0, (size_t)m->B * m->Ts * C * sizeof(float), m->stream));
    for (int l = L - 1; l >= 0; l--) {
        AttnSpec self = s->dec_self, cross = s->dec_cross;
        self.drop = drop_at(m, 1, l, DROP_ATT); cross.drop = drop_at(m, 1, l, DROP_CROSS);
        AttnActs sa = dec_self_a(m, l), ca = dec_cross_a(m, l);
        FfnActs fa = dec_ffn_a(m, l);
        ffn_sublayer_backward(m, fa, DEC_FFN, l, N, drop_at(m, 1, l, DROP_FF));
        norm_backward(m, P_DEC_LN3, l, a->d_mid2 + l * NC, fa.rstd, N, 1, drop_at(m, 1, l, DROP_CROSS_RES));
        attn_sublayer_backward(m, ca, DEC_CROSS, l, &cross, N, NULL, a->g_enc);
        norm_backward(m, P_DEC_LN2, l, a->d_mid1 + l * NC, ca.rstd, N, 1, drop_at(m, 1, l, DROP_ATT_RES));
        attn_sublayer_backward(m, sa, DEC_SELF, l, &self, N, PG(m, P_DEC_RELB, 0), NULL);
        norm_backward(m, P_DEC_LN1, l, a->d_res + l * NC, sa.rstd, N, l > 0, l > 0 ? drop_at(m, 1, l - 1, DROP_FF_RES) : NO_DROP);
    }
    embedding_backward(PG(m, P_SHARED, 0), m->batch.dec, a->g_res, C, drop_at(m, 1, 0, DROP_EMBED), m->stream);
}

// backward pass of the last t5cu_forward (which ran with loss_scale ≠ 0): grads += ∂(loss_scale · Σ losses)
static void t5cu_backward(T5Cuda* m) {
    T5Specs s = t5cu_specs(m);
    t5cu_decoder_backward(m, &s);
    t5cu_encoder_backward(m, &s);
}

// ----------------------------------------------------------------------------
// optimizer: AdamW exactly as torch.optim.AdamW (and t5_update), clipping as clip_grad_norm_

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int decay_norms;  // 1: decay RMSNorm weights too; 0: HF Trainer's rule
} AdamW;

// launches the norm; the value stays on the device until t5cu_read_norm
static void t5cu_grad_norm(T5Cuda* m) { global_norm(m->norm, m->norm_partial, m->grads, t5cu_num_params(m), m->stream); }

static float t5cu_read_norm(T5Cuda* m) {
    float n;
    cudaCheck(cudaMemcpyAsync(&n, m->norm, sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
    return n;
}

// one update at learning rate lr; the gradients are scaled by max_norm / (norm + 1e-6) when that is < 1
static void t5cu_update(T5Cuda* m, const AdamW* o, float lr, float norm, float max_norm) {
    m->step++;
    double bc1 = 1.0 - pow((double)o->beta1, (double)m->step), bc2 = 1.0 - pow((double)o->beta2, (double)m->step);
    float clip = 1.0f;
    if (max_norm > 0.0f) { float coef = max_norm / (norm + 1e-6f); if (coef < 1.0f) clip = coef; }
    for (int t = 0; t < NUM_PARAM_TENSORS; t++) {
        const T5Tensor* tt = &m->layout.t[t];
        float decay = (t5_is_norm(t) && !o->decay_norms) ? 1.0f : (float)(1.0 - (double)lr * o->weight_decay);
        AdamWStep s = { o->beta1, o->beta2, o->eps, decay, (float)(lr / bc1), (float)sqrt(bc2), clip };
        size_t off = tt->offset;
        adamw_update(m->params + off, m->params_x + off, m->grads + off, m->m_mem + off, m->v_mem + off, tt->size, s, m->stream);
    }
}

// host copies of device buffers (for checkpoints, exports and tests)
static void t5cu_download(T5Cuda* m, float* dst, const float* src, size_t n) {
    cudaCheck(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
}

static int t5cu_save_checkpoint(T5Cuda* m, const char* path, const CkptTrainState* ts, char* err, size_t errlen) {
    size_t n = t5cu_num_params(m);
    float* p = (float*)mallocCheck(3 * n * sizeof(float));
    t5cu_download(m, p, m->params, n);
    t5cu_download(m, p + n, m->m_mem, n);
    t5cu_download(m, p + 2 * n, m->v_mem, n);
    int rc = ckpt_save(path, &m->config, p, p + n, p + 2 * n, (int64_t)n, m->step, ts, err, errlen);
    free(p);
    return rc;
}

// ----------------------------------------------------------------------------
// throughput: FLOPs of the real tokens, the card's bf16 dense peak

// training FLOPs (forward + backward = 3 × forward) of one batch, counting real tokens only:
// every Linear is 2·in·out per token; attention 2·2·H·D per (query, key) pair, causal pairs only
static double t5_batch_flops(const T5Config* c, const T5Batch* b) {
    double C = c->d_model, HD = (double)c->num_heads * c->d_kv, F = c->d_ff, V = c->vocab_size;
    double ffn = 2.0 * C * F * (c->gated ? 3 : 2), attn_proj = 2.0 * 4 * C * HD;
    double f = 0.0;
    for (int i = 0; i < b->B; i++) {
        double ls = b->src_len[i], lt = 0;
        for (int j = 0; j < b->Tt; j++) lt += b->labels[(size_t)i * b->Tt + j] != IGNORE_INDEX;
        f += c->num_layers * (ls * (attn_proj + ffn) + 4.0 * HD * ls * ls);
        f += c->num_decoder_layers * (lt * (2 * attn_proj + ffn - 2.0 * 2 * C * HD) + ls * 2.0 * 2 * C * HD +
                                      4.0 * HD * lt * (lt + 1) / 2 + 4.0 * HD * lt * ls);
        f += lt * 2.0 * C * V;
    }
    return 3.0 * f;
}

// bf16 dense tensor-core peak (TFLOP/s) of known cards by name, else 0 (MFU not printed)
static double card_peak_tflops(const char* name) {
    struct { const char* key; double tflops; } cards[] = {
        {"H100 SXM", 989.4}, {"H100 80GB HBM3", 989.4}, {"H200", 989.4}, {"GH200", 989.4}, {"H100 NVL", 835.0},
        {"H100 PCIe", 756.0}, {"H100", 756.0}, {"A100", 312.0}, {"A10G", 70.0}, {"L40S", 362.0}, {"L4", 121.0},
        {"RTX 4090", 165.2}, {"RTX 3090", 71.0},
    };
    for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++) if (strstr(name, cards[i].key)) return cards[i].tflops;
    return 0.0;
}

// device memory in use now (this process and any other), bytes
static size_t device_memory_used(void) {
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

// ----------------------------------------------------------------------------
// synthetic DialogSum-shaped batches (for --bench; dev/bench_hf_gpu.py draws the same ones):
// dialogue lengths log-normal with mean 223 and p95 415 tokens (μ 5.312, σ 0.435) clipped to
// [16, 512]; summaries log-normal with mean 40 (μ 3.628, σ 0.35) clipped to [4, 128]. Four draws
// of splitmix64 per example, uniform u = ((x >> 11) + 0.5)·2^-53, Box–Muller in double.

static double bench_uniform(Rng* r) { return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static int bench_length(Rng* r, double mu, double sigma, int lo, int hi) {
    double u1 = bench_uniform(r), u2 = bench_uniform(r);
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    long v = lround(exp(mu + sigma * z));
    return (int)(v < lo ? lo : v > hi ? hi : v);
}

// a batch of B examples with source lengths ls and target lengths lt, ids in [2, V) drawn from r:
// src = ids then pad;  labels = ids then -100;  dec_in = [start, labels[:-1]] with -100 → pad
static void synthetic_batch(BatchBuf* bb, const int* ls, const int* lt, int B, const T5Config* c, Rng* r) {
    int Ts = 1, Tt = 1;
    for (int i = 0; i < B; i++) { if (ls[i] > Ts) Ts = ls[i]; if (lt[i] > Tt) Tt = lt[i]; }
    batch_reserve(bb, B, Ts, Tt);
    T5Batch* b = &bb->b;
    b->B = B; b->Ts = Ts; b->Tt = Tt;
    uint64_t V = (uint64_t)c->vocab_size - 2;
    for (int i = 0; i < B; i++) {
        b->src_len[i] = ls[i];
        for (int j = 0; j < Ts; j++) b->src[i * Ts + j] = j < ls[i] ? 2 + (int)(rng_next(r) % V) : c->pad_id;
        for (int j = 0; j < Tt; j++) b->labels[i * Tt + j] = j < lt[i] ? 2 + (int)(rng_next(r) % V) : IGNORE_INDEX;
        for (int j = 0; j < Tt; j++) {
            int prev = j == 0 ? c->decoder_start_id : b->labels[i * Tt + j - 1];
            b->dec_in[i * Tt + j] = prev == IGNORE_INDEX ? c->pad_id : prev;
        }
    }
}

// batch k of the synthetic stream: examples k·B .. k·B + B − 1 (each seeds its own generator)
static void bench_batch(BatchBuf* bb, int k, int B, const T5Config* c) {
    int ls[B], lt[B];
    Rng r;
    for (int i = 0; i < B; i++) {
        rng_init(&r, mix64(0xd1a1095ULL + (uint64_t)k * B + i));
        ls[i] = bench_length(&r, 5.312, 0.435, 16, 512);
        lt[i] = bench_length(&r, 3.628, 0.35, 4, 128);
    }
    synthetic_batch(bb, ls, lt, B, c, &r);
}

// ----------------------------------------------------------------------------
// command line

typedef struct {
    const char* model;       // preset, HF directory or checkpoint file
    const char* train_file;  // pre-tokenized examples
    const char* save_hf;
    const char* save_ckpt;
    int steps, schedule_steps, batch_size, grad_accum, warmup, shuffle, bucket, decay_norms, max_src_len, max_tgt_len;
    float lr, weight_decay, beta1, beta2, adam_eps, clip, dropout, peak_tflops;
    LrScheduleKind schedule;
    long long seed;
    int bench, bench_warmup;
} Options;

static Options options_default(void) {
    Options o;
    memset(&o, 0, sizeof(o));
    o.model = "flan-t5-small"; o.steps = 10; o.batch_size = 8; o.grad_accum = 1; o.shuffle = 1; o.bucket = 1;
    o.max_src_len = 512; o.max_tgt_len = 128; o.lr = 3e-4f; o.weight_decay = 0.01f; o.beta1 = 0.9f;
    o.beta2 = 0.999f; o.adam_eps = 1e-8f; o.clip = 1.0f; o.dropout = -1.0f; o.schedule = SCHED_LINEAR; o.seed = 42;
    o.bench_warmup = 3;
    return o;
}

static void usage(void) {
    Options d = options_default();
    fprintf(stderr,
        "usage: train_t5cu [options]   (" PRECISION_NAME " build)\n"
        "  --model SPEC           preset name, HF model directory, or native checkpoint (default %s). Presets:", d.model);
    for (int i = 0; i < T5_NUM_PRESETS; i++) fprintf(stderr, " %s", T5_PRESETS[i].name);
    fprintf(stderr, "\n"
        "  --train-file PATH      pre-tokenized example file (llmc/examples.h format)\n"
        "  --steps N              optimizer steps (default %d)\n"
        "  --batch-size N         examples per micro-batch (default %d)\n"
        "  --grad-accum N         micro-batches per step (default %d)\n"
        "  --lr X                 peak learning rate (default %g)\n"
        "  --schedule S           constant | linear | cosine (default %s)\n"
        "  --warmup N             linear warmup steps (default %d)\n"
        "  --schedule-steps N     length of the lr schedule, 0 = --steps (default 0)\n"
        "  --weight-decay X       AdamW decoupled weight decay (default %g)\n"
        "  --decay-norms 0|1      also decay RMSNorm weights (default %d: HF Trainer's rule)\n"
        "  --beta1 X --beta2 X    AdamW betas (default %g, %g)\n"
        "  --adam-eps X           AdamW epsilon (default %g)\n"
        "  --clip X               max global gradient norm, 0 = off (default %g)\n"
        "  --dropout X            dropout rate, -1 = the model config's (default %g)\n"
        "  --shuffle 0|1          shuffle examples each epoch (default %d)\n"
        "  --bucket 0|1           length-bucketed batches (default %d)\n"
        "  --max-src-len N        truncate sources to N tokens (default %d)\n"
        "  --max-tgt-len N        truncate targets to N tokens (default %d)\n"
        "  --seed N               seed for init, data order and dropout (default %lld)\n"
        "  --save-hf DIR          write the trained model as an HF directory\n"
        "  --save-checkpoint PATH write a native checkpoint (params + AdamW state)\n"
        "  --bench N              time N training steps on synthetic DialogSum-shaped batches and exit\n"
        "  --bench-warmup N       untimed steps before them (default %d)\n"
        "  --peak-tflops X        bf16 dense peak for MFU, 0 = from the card's name (default 0)\n",
        d.steps, d.batch_size, d.grad_accum, (double)d.lr, lr_schedule_name(d.schedule), d.warmup, (double)d.weight_decay,
        d.decay_norms, (double)d.beta1, (double)d.beta2, (double)d.adam_eps, (double)d.clip, (double)d.dropout, d.shuffle,
        d.bucket, d.max_src_len, d.max_tgt_len, d.seed, d.bench_warmup);
}

typedef struct { const char* flag; int* dst; long long lo, hi; } IntFlag;
typedef struct { const char* flag; float* dst; double lo, hi; } FloatFlag;
typedef struct { const char* flag; const char** dst; } StrFlag;

// one flag and its value; returns 1 if it was known and valid, 0 if unknown, -1 if invalid
static int parse_flag(Options* o, const char* f, const char* v) {
    IntFlag ints[] = {
        {"--steps", &o->steps, 0, 1000000000}, {"--schedule-steps", &o->schedule_steps, 0, 1000000000},
        {"--batch-size", &o->batch_size, 1, 65536}, {"--grad-accum", &o->grad_accum, 1, 65536},
        {"--warmup", &o->warmup, 0, 1000000000}, {"--shuffle", &o->shuffle, 0, 1}, {"--bucket", &o->bucket, 0, 1},
        {"--decay-norms", &o->decay_norms, 0, 1}, {"--max-src-len", &o->max_src_len, 1, 1 << 16},
        {"--max-tgt-len", &o->max_tgt_len, 1, 1 << 16}, {"--bench", &o->bench, 0, 1000000},
        {"--bench-warmup", &o->bench_warmup, 0, 1000000},
    };
    FloatFlag floats[] = {
        {"--lr", &o->lr, 0.0, 10.0}, {"--weight-decay", &o->weight_decay, 0.0, 10.0}, {"--beta1", &o->beta1, 0.0, 0.999999},
        {"--beta2", &o->beta2, 0.0, 0.999999999}, {"--adam-eps", &o->adam_eps, 1e-30, 1.0}, {"--clip", &o->clip, 0.0, 1e9},
        {"--dropout", &o->dropout, -1.0, 0.99}, {"--peak-tflops", &o->peak_tflops, 0.0, 1e6},
    };
    StrFlag strs[] = { {"--model", &o->model}, {"--train-file", &o->train_file}, {"--save-hf", &o->save_hf},
                       {"--save-checkpoint", &o->save_ckpt} };
    for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
        if (strcmp(f, ints[k].flag) != 0) continue;
        long long x;
        if (t5cpu_parse_int(f, v, ints[k].lo, ints[k].hi, &x)) return -1;
        *ints[k].dst = (int)x;
        return 1;
    }
    for (size_t k = 0; k < sizeof(floats) / sizeof(floats[0]); k++)
        if (strcmp(f, floats[k].flag) == 0) return t5cpu_parse_float(f, v, floats[k].lo, floats[k].hi, floats[k].dst) ? -1 : 1;
    for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++)
        if (strcmp(f, strs[k].flag) == 0) { *strs[k].dst = v; return 1; }
    if (strcmp(f, "--seed") == 0) return t5cpu_parse_int(f, v, 0, (1LL << 62), &o->seed) ? -1 : 1;
    if (strcmp(f, "--schedule") == 0) {
        if (lr_schedule_parse(v, &o->schedule) == 0) return 1;
        fprintf(stderr, "error: --schedule must be constant, linear or cosine, got '%s'\n", v);
        return -1;
    }
    return 0;
}

// returns 0, or -1 after printing what was wrong
static int parse_args(int argc, char** argv, Options* o) {
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) { usage(); exit(EXIT_SUCCESS); }
        if (i + 1 >= argc) { fprintf(stderr, "error: %s needs a value (see --help)\n", f); return -1; }
        int r = parse_flag(o, f, argv[++i]);
        if (r < 0) return -1;
        if (r == 0) { fprintf(stderr, "error: unknown option %s (see --help)\n", f); return -1; }
    }
    if (o->bench == 0 && !o->train_file && !o->save_hf && !o->save_ckpt) {
        fprintf(stderr, "error: nothing to do: give --train-file, --bench, --save-hf or --save-checkpoint\n");
        return -1;
    }
    return 0;
}

// the model's fp32 parameters (and optimizer state) on the host, from a preset, HF directory or checkpoint
typedef struct { T5Config config; float *params, *m, *v; long long step; const char* from; } HostModel;

static int load_host_model(const Options* o, HostModel* h) {
    char err[1024];
    struct stat st;
    memset(h, 0, sizeof(*h));
    if (stat(o->model, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (t5_load_hf_dir(o->model, &h->config, &h->params, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        h->from = "HF directory";
    } else if (stat(o->model, &st) == 0) {
        CkptInfo info;
        if (ckpt_load(o->model, &info, &h->params, &h->m, &h->v, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        h->config = info.config; h->step = info.step;
        h->from = "checkpoint";
    } else {
        if (t5_config_preset(&h->config, o->model)) {
            fprintf(stderr, "error: --model '%s' is not a directory, a file, or a preset (see --help)\n", o->model);
            return -1;
        }
        T5Layout L;
        t5_layout(&h->config, &L);
        h->params = (float*)mallocCheck(L.total * sizeof(float));
        t5cpu_init_random(&h->config, h->params, (uint64_t)o->seed);
        h->from = "random init (the CPU engine's)";
    }
    if (o->dropout >= 0.0f) h->config.dropout = o->dropout;
    return 0;
}

static void print_config(const T5Cuda* m, const Options* o, const char* from, const cudaDeviceProp* p, double peak) {
    const T5Config* c = &m->config;
    printf("+------------------------+---------------------------------------------+\n");
    printf("| %-22s | %-43s |\n", "model", o->model);
    printf("| %-22s | %-43s |\n", "loaded from", from);
    printf("| %-22s | %-43zu |\n", "parameters", t5cu_num_params(m));
    char shape[96];
    snprintf(shape, sizeof(shape), "V=%d C=%d H=%d D=%d F=%d L=%d/%d", c->vocab_size, c->d_model, c->num_heads, c->d_kv,
             c->d_ff, c->num_layers, c->num_decoder_layers);
    printf("| %-22s | %-43s |\n", "shape", shape);
    printf("| %-22s | %-43s |\n", "ffn / head", c->tied ? (c->gated ? "gated, tied" : "plain, tied") : (c->gated ? "gated, untied" : "plain, untied"));
    printf("| %-22s | %-43s |\n", "precision", PRECISION_NAME);
    printf("| %-22s | %-43s |\n", "device", p->name);
    printf("| %-22s | %-43.1f |\n", "bf16 dense peak TFLOP/s", peak);
    printf("| %-22s | %d x %-39d |\n", "batch x accumulation", o->batch_size, o->grad_accum);
    printf("| %-22s | %-10g %-8s warmup %-17d |\n", "lr / schedule", (double)o->lr, lr_schedule_name(o->schedule), o->warmup);
    printf("| %-22s | wd %-8g clip %-8g dropout %-14g |\n", "regularisation", (double)o->weight_decay, (double)o->clip, (double)c->dropout);
    printf("+------------------------+---------------------------------------------+\n");
}

// ----------------------------------------------------------------------------
// training

typedef struct { float loss, grad_norm, lr; long long tokens; double flops; int skipped; const char* error; } StepResult;

// one optimizer step over the micro-batches batches[0..A); the loss is the mean over all counted tokens
static StepResult train_step(T5Cuda* m, const Options* o, T5Batch** batches, int A, long long k) {
    StepResult r;
    memset(&r, 0, sizeof(r));
    long long total = 0;
    for (int a = 0; a < A; a++) { // labels of the whole step first: they fix the loss normalisation
        const char* bad = t5cpu_check_batch(&m->config, batches[a]);
        if (bad) { r.error = bad; return r; } // refused before any compute
        total += batch_count_labels(batches[a]);
        r.tokens += batch_real_tokens(batches[a]);
        r.flops += t5_batch_flops(&m->config, batches[a]);
    }
    t5cu_zero_grad(m);
    for (int a = 0; a < A && total > 0; a++) {
        uint64_t seed = mix64((uint64_t)o->seed ^ mix64((uint64_t)k * 65536 + (uint64_t)a));
        t5cu_forward(m, batches[a], 1, seed, 1.0f / (float)total);
        t5cu_backward(m);
    }
    t5cu_grad_norm(m);
    double sums[2];
    t5cu_read_loss_sums(m, sums); // the step's one synchronisation (see the top of the file)
    r.loss = total > 0 ? (float)(sums[1] / (double)total) : NAN;
    r.grad_norm = t5cu_read_norm(m);
    LrSchedule sched = { o->schedule, o->warmup, o->schedule_steps ? o->schedule_steps : o->steps };
    r.lr = (float)(o->lr * lr_multiplier(&sched, k));
    if (!isfinite(r.loss) || !isfinite(r.grad_norm)) { r.skipped = 1; return r; } // never reaches the weights
    AdamW opt = { o->lr, o->beta1, o->beta2, o->adam_eps, o->weight_decay, o->decay_norms };
    t5cu_update(m, &opt, r.lr, r.grad_norm, o->clip);
    return r;
}

typedef struct { double peak_tflops; size_t peak_mem; } Meter;

static void log_step(const StepResult* r, long long k, int steps, double ms, Meter* meter) {
    size_t used = device_memory_used();
    if (used > meter->peak_mem) meter->peak_mem = used;
    double tflops = r->flops / (ms / 1e3) / 1e12;
    printf("step %lld/%d | loss %.6f | lr %.4e | grad norm %.4f | %.1f ms | %.0f tok/s", k + 1, steps, (double)r->loss,
           (double)r->lr, (double)r->grad_norm, ms, r->tokens / (ms / 1e3));
    if (meter->peak_tflops > 0) printf(" | MFU %.1f%%", 100.0 * tflops / meter->peak_tflops);
    printf(" | mem %.2f GiB%s\n", used / 1073741824.0, r->skipped ? " | SKIPPED: non-finite loss or gradient norm" : "");
    fflush(stdout);
}

static int train(T5Cuda* m, const Options* o, Meter* meter) {
    char err[1024];
    DataLoader dl;
    LoaderConfig lc = { o->batch_size, 1, 0, o->shuffle, o->bucket, 64, o->max_src_len, o->max_tgt_len,
                        m->config.pad_id, m->config.decoder_start_id, (uint64_t)o->seed };
    if (dataloader_init(&dl, o->train_file, &lc, err, sizeof(err)) ||
        examples_check_vocab(&dl.data, m->config.vocab_size, o->train_file, err, sizeof(err))) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    printf("train file: %lld examples\n", (long long)dl.data.n);
    BatchBuf* bufs = (BatchBuf*)callocCheck((size_t)o->grad_accum, sizeof(BatchBuf));
    T5Batch** batches = (T5Batch**)mallocCheck((size_t)o->grad_accum * sizeof(T5Batch*));
    int rc = 0, skipped = 0;
    for (long long k = 0; k < o->steps; k++) {
        double t0 = now_ms();
        for (int a = 0; a < o->grad_accum; a++) batches[a] = dataloader_next(&dl, &bufs[a]);
        StepResult r = train_step(m, o, batches, o->grad_accum, k);
        if (r.error) { fprintf(stderr, "error: %s: %s\n", o->train_file, r.error); rc = -1; break; }
        skipped += r.skipped;
        log_step(&r, k, o->steps, now_ms() - t0, meter);
    }
    if (skipped) printf("%d step(s) skipped for non-finite values\n", skipped);
    for (int a = 0; a < o->grad_accum; a++) batch_free(&bufs[a]);
    free(bufs); free(batches);
    dataloader_free(&dl);
    return rc;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

// full training steps on synthetic DialogSum-shaped batches: median step time, real tokens/s, MFU
static int bench(T5Cuda* m, const Options* o, Meter* meter) {
    int W = o->bench_warmup, N = o->bench;
    BatchBuf bb;
    memset(&bb, 0, sizeof(bb));
    double* ms = (double*)mallocCheck((size_t)N * sizeof(double));
    double tokens = 0, flops = 0, total_ms = 0;
    for (int k = 0; k < W + N; k++) {
        bench_batch(&bb, k, o->batch_size, &m->config);
        T5Batch* b = &bb.b;
        double t0 = now_ms();
        StepResult r = train_step(m, o, &b, 1, k);
        double dt = now_ms() - t0;
        if (r.error) { fprintf(stderr, "error: bench batch: %s\n", r.error); free(ms); batch_free(&bb); return -1; }
        log_step(&r, k, W + N, dt, meter);
        if (k < W) continue;
        ms[k - W] = dt; tokens += r.tokens; flops += r.flops; total_ms += dt;
    }
    qsort(ms, (size_t)N, sizeof(double), cmp_double);
    double tok_s = tokens / (total_ms / 1e3), tflops = flops / (total_ms / 1e3) / 1e12;
    printf("bench: engine=t5.c-cuda precision=%s batch=%d steps=%d median_step_ms=%.2f real_tok_per_s=%.0f "
           "tflops=%.1f mfu=%.1f%% peak_mem_gib=%.2f\n", PRECISION_NAME, o->batch_size, N, ms[(N - 1) / 2], tok_s, tflops,
           meter->peak_tflops > 0 ? 100.0 * tflops / meter->peak_tflops : 0.0, meter->peak_mem / 1073741824.0);
    free(ms);
    batch_free(&bb);
    return 0;
}

static int save_outputs(T5Cuda* m, const Options* o) {
    char err[1024];
    if (o->save_hf) {
        float* p = (float*)mallocCheck(t5cu_num_params(m) * sizeof(float));
        t5cu_download(m, p, m->params, t5cu_num_params(m));
        int rc = t5_save_hf_dir(o->save_hf, &m->config, p, err, sizeof(err));
        free(p);
        if (rc) { fprintf(stderr, "error: %s\n", err); return -1; }
        printf("saved HF directory %s\n", o->save_hf);
    }
    if (o->save_ckpt) {
        if (t5cu_save_checkpoint(m, o->save_ckpt, NULL, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        printf("saved checkpoint %s\n", o->save_ckpt);
    }
    return 0;
}

#ifndef TESTING
int main(int argc, char** argv) {
    Options o = options_default();
    if (parse_args(argc, argv, &o)) { usage(); return EXIT_FAILURE; }
    HostModel h;
    if (load_host_model(&o, &h)) return EXIT_FAILURE;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    Meter meter = { o.peak_tflops > 0 ? o.peak_tflops : card_peak_tflops(prop.name), 0 };
    T5Cuda m;
    t5cu_build(&m, &h.config, h.params);
    if (h.m) t5cu_set_optimizer_state(&m, h.m, h.v, h.step);
    free(h.params); free(h.m); free(h.v);
    print_config(&m, &o, h.from, &prop, meter.peak_tflops);
    int rc = o.bench ? bench(&m, &o, &meter) : o.train_file ? train(&m, &o, &meter) : 0;
    if (rc == 0 && !o.bench) rc = save_outputs(&m, &o);
    printf("peak device memory in use: %.2f GiB (activations %.2f GiB)\n", meter.peak_mem / 1073741824.0,
           m.act_bytes / 1073741824.0);
    t5cu_free(&m);
    return rc ? EXIT_FAILURE : EXIT_SUCCESS;
}
#endif
