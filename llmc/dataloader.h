// dataloader.h — batches from a pre-tokenized example file (llmc/examples.h), shared by the CPU and
// CUDA trainers.
//
// One epoch is a fixed function of (seed, epoch), so a position (epoch, batch) restores exactly:
//   1. order   = the examples in file order, or a seeded permutation (shuffle)
//   2. buckets = (bucketing on) windows of `bucket_window` global batches of `order`, each sorted by
//                (source length, target length) descending, so a batch holds examples of similar length
//   3. batches = consecutive runs of G = batch_size × num_ranks examples; the last one may be shorter,
//                so every example is seen exactly once per epoch
//   4. with shuffle and bucketing, the batch order is permuted too (the sorted windows would otherwise
//      feed all long batches, then all short ones)
// Rank r of R takes the slice [r·n/R, (r+1)·n/R) of each global batch of n examples: the ranks'
// batches are disjoint and their union is the global batch a single process would see.
//
// A batch is padded to its own longest example (dynamic padding), not to the maximum length; with a
// shape ladder (src_step, tgt_step > 1) that length is rounded up to the next rung (a multiple of the
// step, or the maximum length itself), so the trainers see a small fixed set of shapes that per-shape
// plans (matmul algorithms, cuDNN and CUDA graphs) can be built once for:
//   src    (B, Ts)  ids, pad after src_len[b]
//   labels (B, Tt)  target ids, -100 after the target
//   dec_in (B, Tt)  labels shifted right: [decoder_start, labels[:-1]] with -100 → pad
#ifndef T5_DATALOADER_H
#define T5_DATALOADER_H

#include <stdint.h>    // defines: int64_t, uint64_t
#include <stdio.h>     // defines: snprintf
#include <stdlib.h>    // defines: malloc, free, qsort, strtol
#include <string.h>    // defines: memset
#include "utils.h"     // defines: mallocCheck, callocCheck
#include "rng.h"       // defines: Rng, rng_init, rng_next, mix64
#include "examples.h"  // defines: ExampleFile, examples_open, examples_src, examples_tgt
#include "t5.h"        // defines: T5Config

#define IGNORE_INDEX (-100)

// ----------------------------------------------------------------------------
// a batch: B examples, sources padded to Ts, targets padded to Tt

typedef struct {
    int B, Ts, Tt;
    int* src;      // (B, Ts) encoder input ids, pad_id after src_len[b]
    int* src_len;  // (B)     real source tokens (≥ 1): keys at j ≥ src_len[b] are masked
    int* dec_in;   // (B, Tt) decoder input ids = labels shifted right, start token first, -100 → pad
    int* labels;   // (B, Tt) target ids, IGNORE_INDEX on padding
} T5Batch;

typedef struct { int cap_B, cap_Ts, cap_Tt; T5Batch b; } BatchBuf;

static inline void batch_reserve(BatchBuf* bb, int B, int Ts, int Tt) {
    if (B <= bb->cap_B && Ts <= bb->cap_Ts && Tt <= bb->cap_Tt) return;
    free(bb->b.src); free(bb->b.src_len); free(bb->b.dec_in); free(bb->b.labels);
    bb->cap_B = B > bb->cap_B ? B : bb->cap_B;
    bb->cap_Ts = Ts > bb->cap_Ts ? Ts : bb->cap_Ts;
    bb->cap_Tt = Tt > bb->cap_Tt ? Tt : bb->cap_Tt;
    bb->b.src = (int*)mallocCheck((size_t)bb->cap_B * bb->cap_Ts * sizeof(int));
    bb->b.src_len = (int*)mallocCheck((size_t)bb->cap_B * sizeof(int));
    bb->b.dec_in = (int*)mallocCheck((size_t)bb->cap_B * bb->cap_Tt * sizeof(int));
    bb->b.labels = (int*)mallocCheck((size_t)bb->cap_B * bb->cap_Tt * sizeof(int));
}

static inline void batch_free(BatchBuf* bb) {
    free(bb->b.src); free(bb->b.src_len); free(bb->b.dec_in); free(bb->b.labels);
    memset(bb, 0, sizeof(*bb));
}

static inline int clamp_len(int len, int max) { return len < max ? len : max; }

// a padded length on the ladder: len (≤ cap) rounded up to a multiple of step, but not past cap, the
// longest allowed (a rung of its own); step ≤ 1 leaves it as it is
static inline int ladder_len(int len, int step, int cap) {
    if (step <= 1) return len;
    int r = (int)(((long long)len + step - 1) / step * step);
    return r < cap ? r : (len > cap ? len : cap);
}

// the decoder input at a position: the previous label (teacher forcing), pad_id where that is padding
static inline int dec_input(int prev_label, int pad_id) { return prev_label == IGNORE_INDEX ? pad_id : prev_label; }

// "S,T" (the --shape-ladder flag): two steps in [0, 4096] into out[0], out[1]; 0 ok, -1 malformed
static inline int ladder_parse(const char* v, int* out) {
    char* end;
    long a = strtol(v, &end, 10), b = -1;
    if (end != v && *end == ',') b = strtol(end + 1, &end, 10);
    if (*end != 0 || a < 0 || a > 4096 || b < 0 || b > 4096) return -1;
    out[0] = (int)a; out[1] = (int)b;
    return 0;
}

// x (len ids) cut to its first cap ids in out; an example that ends in eos_id keeps it last, as the T5
// tokenizer truncates (max_length - 1 ids, then </s>): a cut source still ends the input, a cut target still
// teaches the model to stop. eos_id < 0: a plain cut. Returns the ids written
static inline int cut_ids(int* out, const uint32_t* x, int len, int cap, int eos_id) {
    int n = clamp_len(len, cap);
    for (int j = 0; j < n; j++) out[j] = (int)x[j];
    if (n < len && n > 0 && eos_id >= 0 && (int)x[len - 1] == eos_id) out[n - 1] = eos_id;
    return n;
}

// lays out examples idx[0..B) (sources / targets cut to max_src / max_tgt tokens by cut_ids), padded to the
// longest of them on the ladder of src_step / tgt_step (ladder_len)
static inline T5Batch* batch_make(BatchBuf* bb, const ExampleFile* e, const int64_t* idx, int B, int max_src,
                                  int max_tgt, int src_step, int tgt_step, int pad_id, int start_id, int eos_id) {
    int Ts = 1, Tt = 1;
    for (int i = 0; i < B; i++) {
        int ls = clamp_len(e->lens[2 * idx[i]], max_src), lt = clamp_len(e->lens[2 * idx[i] + 1], max_tgt);
        if (ls > Ts) Ts = ls;
        if (lt > Tt) Tt = lt;
    }
    Ts = ladder_len(Ts, src_step, max_src);
    Tt = ladder_len(Tt, tgt_step, max_tgt);
    batch_reserve(bb, B > 0 ? B : 1, Ts, Tt);
    T5Batch* b = &bb->b;
    b->B = B; b->Ts = Ts; b->Tt = Tt;
    for (int i = 0; i < B; i++) {
        int* src = b->src + (size_t)i * Ts;
        int* lab = b->labels + (size_t)i * Tt;
        int* din = b->dec_in + (size_t)i * Tt;
        int ls = cut_ids(src, examples_src(e, idx[i]), e->lens[2 * idx[i]], max_src, eos_id);
        int lt = cut_ids(lab, examples_tgt(e, idx[i]), e->lens[2 * idx[i] + 1], max_tgt, eos_id);
        b->src_len[i] = ls;
        for (int j = ls; j < Ts; j++) src[j] = pad_id;
        for (int j = lt; j < Tt; j++) lab[j] = IGNORE_INDEX;
        for (int j = 0; j < Tt; j++) din[j] = dec_input(j == 0 ? start_id : lab[j - 1], pad_id);
    }
    return b;
}

// out = b with its source side padded to Ts and its target side to Tt (≥ b's): pad ids, IGNORE_INDEX
// labels and decoder inputs by dec_input, so the real positions compute exactly as in b
static inline T5Batch* batch_repad(BatchBuf* out, const T5Batch* b, int Ts, int Tt, int pad_id) {
    batch_reserve(out, b->B, Ts, Tt);
    T5Batch* o = &out->b;
    o->B = b->B; o->Ts = Ts; o->Tt = Tt;
    for (int i = 0; i < b->B; i++) {
        o->src_len[i] = b->src_len[i];
        for (int j = 0; j < Ts; j++) o->src[(size_t)i * Ts + j] = j < b->Ts ? b->src[(size_t)i * b->Ts + j] : pad_id;
        for (int j = 0; j < Tt; j++) {
            int* lab = o->labels + (size_t)i * Tt;
            lab[j] = j < b->Tt ? b->labels[(size_t)i * b->Tt + j] : IGNORE_INDEX;
            o->dec_in[(size_t)i * Tt + j] = j < b->Tt ? b->dec_in[(size_t)i * b->Tt + j] : dec_input(lab[j - 1], pad_id);
        }
    }
    return o;
}

static inline int batch_count_labels(const T5Batch* b) {
    int n = 0;
    for (int i = 0; i < b->B * b->Tt; i++) n += b->labels[i] != IGNORE_INDEX;
    return n;
}

// real (non-padding) tokens of a batch: sources plus counted targets
static inline long long batch_real_tokens(const T5Batch* b) {
    long long n = batch_count_labels(b);
    for (int i = 0; i < b->B; i++) n += b->src_len[i];
    return n;
}

// ----------------------------------------------------------------------------
// the loader

typedef struct {
    int batch_size;     // examples per rank per batch
    int num_ranks, rank;
    int shuffle;        // permute examples (and batches) each epoch
    int bucket;         // sort windows of bucket_window global batches by length
    int bucket_window;  // global batches per sorted window
    int max_src, max_tgt;
    int pad_id, start_id;
    uint64_t seed;
    int src_step, tgt_step; // the shape ladder (ladder_len); ≤ 1: dynamic padding
    int eos_id;             // the terminator a cut keeps last (cut_ids); -1: plain cuts
} LoaderConfig;

typedef struct {
    LoaderConfig cfg;
    ExampleFile data;
    int64_t* order;        // (n) example order of the current epoch
    int64_t* batch_start;  // (num_batches) first position in `order` of each global batch, in epoch order
    int32_t* batch_count;  // (num_batches) examples in each global batch
    int64_t num_batches;   // global batches per epoch
    int64_t epoch, batch;  // position: the next batch to yield
    int64_t idx_cap;
    int64_t* idx;          // (≤ batch_size) examples of the last batch, this rank's slice
    int idx_n;
    long long real_tokens, padded_tokens; // yielded so far: for the padding fraction
} DataLoader;

static inline const char* loader_config_check(const LoaderConfig* c) {
    if (c->batch_size < 1) return "batch size must be >= 1";
    if (c->num_ranks < 1 || c->rank < 0 || c->rank >= c->num_ranks) return "rank must be in [0, num_ranks)";
    if (c->bucket_window < 1) return "bucket window must be >= 1";
    if (c->max_src < 1 || c->max_tgt < 1) return "maximum lengths must be >= 1";
    if (c->src_step < 0 || c->tgt_step < 0) return "shape ladder steps must be >= 0";
    return NULL;
}

// sort key: longest first by (source, target) length; ties by position so the result is deterministic
typedef struct { int32_t ls, lt; int64_t pos, ex; } LenKey;

static inline int lenkey_cmp(const void* a, const void* b) {
    const LenKey *x = (const LenKey*)a, *y = (const LenKey*)b;
    if (x->ls != y->ls) return x->ls > y->ls ? -1 : 1;
    if (x->lt != y->lt) return x->lt > y->lt ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

static inline void shuffle_i64(int64_t* a, int64_t n, Rng* r) { // Fisher–Yates
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(r) % (uint64_t)(i + 1));
        int64_t t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

// sorts order[lo, hi) by length, longest first
static inline void sort_window(DataLoader* dl, int64_t lo, int64_t hi, LenKey* keys) {
    for (int64_t i = lo; i < hi; i++) {
        int64_t ex = dl->order[i];
        keys[i - lo] = (LenKey){ dl->data.lens[2 * ex], dl->data.lens[2 * ex + 1], i, ex };
    }
    qsort(keys, (size_t)(hi - lo), sizeof(LenKey), lenkey_cmp);
    for (int64_t i = lo; i < hi; i++) dl->order[i] = keys[i - lo].ex;
}

// builds order, batch_start and batch_count of `epoch` (a pure function of seed and epoch)
static inline void loader_plan_epoch(DataLoader* dl, int64_t epoch) {
    const LoaderConfig* c = &dl->cfg;
    int64_t n = dl->data.n, G = (int64_t)c->batch_size * c->num_ranks;
    Rng rng;
    rng_init(&rng, mix64(c->seed ^ mix64(0x5eed0000ULL + (uint64_t)epoch)));
    for (int64_t i = 0; i < n; i++) dl->order[i] = i;
    if (c->shuffle) shuffle_i64(dl->order, n, &rng);
    if (c->bucket) {
        int64_t W = G * c->bucket_window;
        LenKey* keys = (LenKey*)mallocCheck((size_t)(W < n ? W : n) * sizeof(LenKey));
        for (int64_t lo = 0; lo < n; lo += W) sort_window(dl, lo, lo + W < n ? lo + W : n, keys);
        free(keys);
    }
    for (int64_t k = 0; k < dl->num_batches; k++) {
        dl->batch_start[k] = k * G;
        dl->batch_count[k] = (int32_t)(n - k * G < G ? n - k * G : G);
    }
    if (c->shuffle && c->bucket) { // permute batch order: start and count move together
        for (int64_t i = dl->num_batches - 1; i > 0; i--) {
            int64_t j = (int64_t)(rng_next(&rng) % (uint64_t)(i + 1));
            int64_t ts = dl->batch_start[i]; dl->batch_start[i] = dl->batch_start[j]; dl->batch_start[j] = ts;
            int32_t tc = dl->batch_count[i]; dl->batch_count[i] = dl->batch_count[j]; dl->batch_count[j] = tc;
        }
    }
}

// opens and validates `path`; returns 0, or -1 with a message naming the file
static inline int dataloader_init(DataLoader* dl, const char* path, const LoaderConfig* cfg, char* err, size_t errlen) {
    memset(dl, 0, sizeof(*dl));
    const char* bad = loader_config_check(cfg);
    if (bad) { snprintf(err, errlen, "%s: %s", path, bad); return -1; }
    if (examples_open(&dl->data, path, err, errlen)) return -1;
    dl->cfg = *cfg;
    int64_t n = dl->data.n, G = (int64_t)cfg->batch_size * cfg->num_ranks;
    dl->num_batches = (n + G - 1) / G;
    dl->order = (int64_t*)mallocCheck((size_t)n * sizeof(int64_t));
    dl->batch_start = (int64_t*)mallocCheck((size_t)dl->num_batches * sizeof(int64_t));
    dl->batch_count = (int32_t*)mallocCheck((size_t)dl->num_batches * sizeof(int32_t));
    dl->idx = (int64_t*)mallocCheck((size_t)cfg->batch_size * sizeof(int64_t));
    loader_plan_epoch(dl, 0);
    return 0;
}

static inline void dataloader_free(DataLoader* dl) {
    examples_free(&dl->data);
    free(dl->order); free(dl->batch_start); free(dl->batch_count); free(dl->idx);
    memset(dl, 0, sizeof(*dl));
}

// moves to (epoch, batch); returns 0, or -1 if batch is not a batch index of an epoch
static inline int dataloader_seek(DataLoader* dl, int64_t epoch, int64_t batch) {
    if (epoch < 0 || batch < 0 || batch >= dl->num_batches) return -1;
    if (epoch != dl->epoch) loader_plan_epoch(dl, epoch);
    dl->epoch = epoch; dl->batch = batch;
    return 0;
}

// this rank's part of global batch k of the current epoch, as example indices (sets idx, idx_n)
static inline void loader_slice(DataLoader* dl, int64_t k) {
    int n = dl->batch_count[k], R = dl->cfg.num_ranks, r = dl->cfg.rank;
    int lo = (int)((int64_t)r * n / R), hi = (int)((int64_t)(r + 1) * n / R);
    for (int i = lo; i < hi; i++) dl->idx[i - lo] = dl->order[dl->batch_start[k] + i];
    dl->idx_n = hi - lo;
}

// the next batch into bb (this rank's slice; B = 0 is possible on the short last batch when ranks
// outnumber its examples); advances the position, rolling over to the next epoch
static inline T5Batch* dataloader_next(DataLoader* dl, BatchBuf* bb) {
    loader_slice(dl, dl->batch);
    const LoaderConfig* c = &dl->cfg;
    T5Batch* b = batch_make(bb, &dl->data, dl->idx, dl->idx_n, c->max_src, c->max_tgt, c->src_step, c->tgt_step, c->pad_id,
                            c->start_id, c->eos_id);
    dl->real_tokens += batch_real_tokens(b);
    dl->padded_tokens += (long long)b->B * (b->Ts + b->Tt);
    if (++dl->batch == dl->num_batches) dataloader_seek(dl, dl->epoch + 1, 0);
    return b;
}

// fraction of the yielded batch tokens that are padding
static inline double dataloader_padding_fraction(const DataLoader* dl) {
    return dl->padded_tokens > 0 ? 1.0 - (double)dl->real_tokens / (double)dl->padded_tokens : 0.0;
}

// a batch checked against the model config before any compute: NULL, or what is wrong
static inline const char* batch_check(const T5Config* c, const T5Batch* b) {
    int V = c->vocab_size;
    if (b->B < 1 || b->Ts < 1 || b->Tt < 1) return "empty batch";
    for (int i = 0; i < b->B; i++) if (b->src_len[i] < 1 || b->src_len[i] > b->Ts) return "source length out of range";
    for (int i = 0; i < b->B * b->Ts; i++) if (b->src[i] < 0 || b->src[i] >= V) return "source token id outside the vocabulary";
    for (int i = 0; i < b->B * b->Tt; i++) {
        if (b->dec_in[i] < 0 || b->dec_in[i] >= V) return "decoder input id outside the vocabulary";
        if (b->labels[i] != IGNORE_INDEX && (b->labels[i] < 0 || b->labels[i] >= V)) return "label id outside the vocabulary";
    }
    return NULL;
}

#endif // T5_DATALOADER_H
