// zero.cuh — how train_t5cu lays the parameters out on the device for communication, and the
// sharding of ZeRO-1 (optimizer state partitioned across ranks).
//
// Device order. The host layout of llmc/t5.h stacks each tensor over its layers (all q of the encoder,
// then all k, ...), so one layer's gradients are scattered. On the device the same tensors are laid
// out in BUCKETS: the tensors whose gradients become final at the same point of the backward pass,
// contiguous, each copy 256-byte aligned, each bucket padded to a multiple of ORDER_ALIGN · ranks:
//   [0] shared embedding                   fp32-read   final after the encoder's embedding backward
//   [1] encoder relb, ln1[*], ln2[*], lnf  fp32-read   final after the encoder's block 0
//   [2] decoder relb, ln1..3[*], lnf       fp32-read   final after the decoder's block 0
//   [3] lm_head (untied models; else empty)            final after the head's backward
//   [4 + l]       decoder block l: q k v o cq ck cv co wi0 wi1 wo
//   [4 + Ld + l]  encoder block l: q k v o wi0 wi1 wo
// "fp32-read": the forward pass reads these as fp32 master values (embedding gather, RMSNorm
// weights, relative bias); they form the prefix [0, f32_total) of the device order.
// Gradients of one bucket are reduced (all-reduce, or reduce-scatter under ZeRO-1) as soon as the
// backward pass is done with them, while it goes on with the next layer. Host buffers keep the
// llmc/t5.h layout; train_t5cu converts at upload and download, slice by slice (OrderSlice).
//
// ZeRO-1 with R ranks: rank r owns part r of every bucket (part = n / R floats, [off + r·part, +part)).
// Its shard (fp32 master weights, AdamW m and v, the reduced gradients) is the concatenation of its
// parts, bucket after bucket: part of bucket b starts at vstart in the shard. With R = 1 the shard is
// the whole device order (vstart = off), which is also how the unsharded trainer uses these tables.
#ifndef T5_ZERO_CUH
#define T5_ZERO_CUH

#include <stdint.h>          // defines: uint64_t
#include <string.h>          // defines: memset
#include "cuda_common.cuh"   // defines: cudaCheck, CEIL_DIV
#include "utils.h"           // defines: mallocCheck, callocCheck
#include "t5.h"              // defines: T5Config, T5Layout, P_* tensor ids, t5_is_norm, t5_tensor_copy_size
#include "global_norm.cuh"   // defines: NORM_BLOCKS, global_norm_partial_kernel

#define ORDER_ALIGN 64  // floats: 256 bytes, the alignment cuBLASLt and NCCL like best

typedef struct { int tensor, layer; size_t host, dev, n; } OrderSlice;  // one copy of a tensor
typedef struct {
    size_t off, n;      // device-order range (n padded)
    size_t part;        // n / ranks: what one rank owns
    size_t vstart;      // start of this bucket's part in a shard
    int fp32_read;
} Bucket;
typedef struct { size_t off, n; int norm; } DecayRun;  // a device-order range of one weight-decay class

enum { BK_EMBED, BK_ENC_NORMS, BK_DEC_NORMS, BK_HEAD, BK_LAYERS };  // decoder block l: BK_LAYERS + l

typedef struct {
    int ranks;            // parts per bucket (1 without ZeRO-1)
    int Lmax;             // the larger stack depth
    OrderSlice* s; int ns;
    size_t* at;           // (NUM_PARAM_TENSORS, Lmax) device offset of copy l of tensor i
    Bucket* b; int nb;
    DecayRun* runs; int nruns;
    size_t total;         // floats in a full device-order buffer
    size_t f32_total;     // floats of the fp32-read prefix
    size_t shard;         // floats in one shard (Σ parts)
    size_t max_bucket;    // floats in the largest bucket
} ParamOrder;

static inline int order_enc_bucket(const T5Config* c, int l) { return BK_LAYERS + c->num_decoder_layers + l; }
static inline int order_dec_bucket(int l) { return BK_LAYERS + l; }

static inline size_t order_round(size_t n, size_t k) { return (n + k - 1) / k * k; }

// appends copy l of tensor i (if present) at the aligned end of the order
static inline void order_add(ParamOrder* o, const T5Layout* L, int i, int l, size_t* end) {
    const T5Tensor* t = &L->t[i];
    if (!t->size) return;
    size_t n = t5_tensor_copy_size(t);
    OrderSlice* s = &o->s[o->ns++];
    s->tensor = i; s->layer = l; s->n = n;
    s->host = t->offset + (size_t)l * n;
    s->dev = *end;
    o->at[(size_t)i * o->Lmax + l] = s->dev;
    *end = order_round(*end + n, ORDER_ALIGN);
}

static inline void order_add_stack(ParamOrder* o, const T5Layout* L, int i, size_t* end) {
    for (int l = 0; l < L->t[i].layers; l++) order_add(o, L, i, l, end);
}

// closes the bucket that began at `start`: pads it so that every rank's part stays aligned
static inline void order_close(ParamOrder* o, size_t start, int fp32_read, size_t* end) {
    Bucket* b = &o->b[o->nb++];
    b->off = start;
    b->n = order_round(*end - start, (size_t)ORDER_ALIGN * o->ranks);
    b->part = b->n / o->ranks;
    b->vstart = o->shard;
    b->fp32_read = fp32_read;
    o->shard += b->part;
    if (b->n > o->max_bucket) o->max_bucket = b->n;
    *end = start + b->n;
}

// maximal runs of one weight-decay class over [0, total); alignment gaps join the run they follow
// (their parameters, gradients and moments are zero and stay zero under AdamW)
static inline void order_runs(ParamOrder* o) {
    o->runs = (DecayRun*)mallocCheck((size_t)(o->ns + 1) * sizeof(DecayRun));
    o->nruns = 0;
    for (int k = 0; k < o->ns; k++) {
        int norm = t5_is_norm(o->s[k].tensor);
        if (o->nruns > 0 && o->runs[o->nruns - 1].norm == norm) continue;
        size_t off = o->nruns == 0 ? 0 : o->s[k].dev;
        if (o->nruns > 0) o->runs[o->nruns - 1].n = off - o->runs[o->nruns - 1].off;
        o->runs[o->nruns] = DecayRun{ off, 0, norm };
        o->nruns++;
    }
    o->runs[o->nruns - 1].n = o->total - o->runs[o->nruns - 1].off;
}

static inline void order_build(ParamOrder* o, const T5Config* c, int ranks) {
    memset(o, 0, sizeof(*o));
    T5Layout L;
    t5_layout(c, &L);
    int Le = c->num_layers, Ld = c->num_decoder_layers;
    o->ranks = ranks;
    o->Lmax = Le > Ld ? Le : Ld;
    o->s = (OrderSlice*)mallocCheck((size_t)NUM_PARAM_TENSORS * o->Lmax * sizeof(OrderSlice));
    o->at = (size_t*)callocCheck((size_t)NUM_PARAM_TENSORS * o->Lmax, sizeof(size_t));
    o->b = (Bucket*)mallocCheck((size_t)(BK_LAYERS + Le + Ld) * sizeof(Bucket));
    size_t end = 0, start = 0;
    order_add(o, &L, P_SHARED, 0, &end);
    order_close(o, start, 1, &end);
    const int enc_norms[] = { P_ENC_RELB, P_ENC_LN1, P_ENC_LN2, P_ENC_LNF };
    const int dec_norms[] = { P_DEC_RELB, P_DEC_LN1, P_DEC_LN2, P_DEC_LN3, P_DEC_LNF };
    start = end;
    for (int k = 0; k < 4; k++) order_add_stack(o, &L, enc_norms[k], &end);
    order_close(o, start, 1, &end);
    start = end;
    for (int k = 0; k < 5; k++) order_add_stack(o, &L, dec_norms[k], &end);
    order_close(o, start, 1, &end);
    o->f32_total = end;
    start = end;
    order_add(o, &L, P_LM_HEAD, 0, &end);
    order_close(o, start, 0, &end);
    const int dec_block[] = { P_DEC_Q, P_DEC_K, P_DEC_V, P_DEC_O, P_DEC_CQ, P_DEC_CK, P_DEC_CV, P_DEC_CO, P_DEC_WI0,
                              P_DEC_WI1, P_DEC_WO };
    const int enc_block[] = { P_ENC_Q, P_ENC_K, P_ENC_V, P_ENC_O, P_ENC_WI0, P_ENC_WI1, P_ENC_WO };
    for (int l = 0; l < Ld; l++) {
        start = end;
        for (int k = 0; k < 11; k++) order_add(o, &L, dec_block[k], l, &end);
        order_close(o, start, 0, &end);
    }
    for (int l = 0; l < Le; l++) {
        start = end;
        for (int k = 0; k < 7; k++) order_add(o, &L, enc_block[k], l, &end);
        order_close(o, start, 0, &end);
    }
    o->total = end;
    order_runs(o);
}

// the invariants the trainer relies on; NULL, or what is broken. Checked at every build and, for every
// preset and several rank counts, by `train_t5cu --plan-memory` (which CI runs without a GPU).
static inline const char* order_check(const ParamOrder* o, const T5Layout* L) {
    size_t covered = 0, end = 0, shard = 0;
    for (int k = 0; k < o->ns; k++) {
        const OrderSlice* s = &o->s[k];
        if (s->dev < end) return "slices overlap or are out of order";
        if (s->dev % ORDER_ALIGN) return "a slice is not aligned";
        if (s->host + s->n > L->total) return "a slice lies outside the host layout";
        end = s->dev + s->n;
        covered += s->n;
    }
    if (covered != L->total) return "the slices do not cover the layout exactly once";
    for (int b = 0; b < o->nb; b++) {
        const Bucket* bk = &o->b[b];
        if (bk->off != (b ? o->b[b - 1].off + o->b[b - 1].n : 0)) return "buckets are not contiguous";
        if (bk->part * o->ranks != bk->n || bk->part % ORDER_ALIGN) return "a bucket does not split into aligned parts";
        if (bk->vstart != shard) return "shard offsets are not cumulative";
        if (bk->n && bk->fp32_read != (bk->off + bk->n <= o->f32_total)) return "fp32-read buckets are not the prefix";
        shard += bk->part;
    }
    if (o->nb == 0 || o->b[o->nb - 1].off + o->b[o->nb - 1].n != o->total || end > o->total) return "buckets do not end at the total";
    if (shard != o->shard) return "the shard size is not the sum of the parts";
    for (int k = 0; k < o->ns; k++) { // a slice lies within one bucket
        int b = 0;
        while (b + 1 < o->nb && o->b[b + 1].off <= o->s[k].dev) b++;
        if (o->s[k].dev + o->s[k].n > o->b[b].off + o->b[b].n) return "a slice crosses a bucket boundary";
    }
    size_t at = 0;
    for (int r = 0; r < o->nruns; r++) {
        if (o->runs[r].off != at || o->runs[r].n == 0) return "decay runs do not partition the device order";
        at += o->runs[r].n;
    }
    return at == o->total ? NULL : "decay runs do not end at the total";
}

static inline void order_free(ParamOrder* o) {
    free(o->s); free(o->at); free(o->b); free(o->runs);
    memset(o, 0, sizeof(*o));
}

static inline size_t order_at(const ParamOrder* o, int i, int l) { return o->at[(size_t)i * o->Lmax + l]; }

// ----------------------------------------------------------------------------
// the gradient norm of a ZeRO-1 step: each rank sums the squares of its shard (the partial kernel of
// global_norm.cuh, so with one rank the result is bit-identical to global_norm), the sums are added
// over ranks (a collective between the two kernels below), then the square root

__global__ void norm_sumsq_final_kernel(double* sumsq, const double* partial) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s = 0.0;
    for (int k = 0; k < NORM_BLOCKS; k++) s += partial[k];
    *sumsq = s;
}

__global__ void norm_sqrt_kernel(float* norm, const double* sumsq) {
    if (threadIdx.x == 0 && blockIdx.x == 0) *norm = (float)sqrt(*sumsq);
}

// sumsq (device double) = Σ g² over n values, fixed order
static inline void shard_sumsq(double* sumsq, double* partial, const float* g, size_t n, cudaStream_t stream) {
    global_norm_partial_kernel<<<NORM_BLOCKS, 256, 0, stream>>>(partial, g, n);
    cudaCheckLaunch();
    norm_sumsq_final_kernel<<<1, 32, 0, stream>>>(sumsq, partial);
    cudaCheckLaunch();
}

static inline void norm_from_sumsq(float* norm, const double* sumsq, cudaStream_t stream) {
    norm_sqrt_kernel<<<1, 32, 0, stream>>>(norm, sumsq);
    cudaCheckLaunch();
}

#endif // T5_ZERO_CUH
