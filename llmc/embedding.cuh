// embedding.cuh — token embedding forward and a deterministic backward.
//
//   forward:   out (N, C) fp32 = dropout(wte[ids])        (wte: the fp32 master table)
//   backward:  dwte[id] += Σ over the tokens t with ids[t] = id, in token order, of dropout'(dout[t])
// The backward needs no atomics: the host groups the batch's positions by token id (it holds the
// ids anyway), and one block per distinct id adds its rows in token order, exactly the order of
// the CPU engine, so the result is bit-identical run to run.
#ifndef T5_EMBEDDING_CUH
#define T5_EMBEDDING_CUH

#include <stdlib.h>         // defines: qsort
#include "cuda_common.cuh"  // defines: DropSite, dropout_apply_dev, cudaCheck

__global__ void embedding_forward_kernel(float* out, const int* ids, const float* wte, int N, int C, DropSite d) {
    d = dropout_resolve(d);
    int t = blockIdx.x;
    const float* row = wte + (size_t)ids[t] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        size_t i = (size_t)t * C + c;
        out[i] = dropout_apply_dev(row[c], d, i);
    }
}

static inline void embedding_forward(float* out, const int* ids, const float* wte, int N, int C, DropSite d,
                                     cudaStream_t stream) {
    embedding_forward_kernel<<<N, 256, 0, stream>>>(out, ids, wte, N, C, d);
    cudaCheckLaunch();
}

// positions grouped by id: uniq[k] is the k-th distinct id, its positions are pos[start[k] .. start[k+1])
// in increasing order. Sizes: uniq, start ≤ N + 1, pos = N.
// n_uniq is the host's count. A CUDA graph replays its launch with the count of the batch it was captured
// with, so for graphs the launch covers `cap` groups (cap ≥ n_uniq) and the kernel reads the batch's
// count from uniq[cap] on the device (staged with the groups); cap = 0: the launch covers n_uniq exactly.
typedef struct { int* uniq; int* start; int* pos; int n_uniq; int cap; } EmbedGroups;

static int embed_pair_cmp(const void* a, const void* b) {
    const int* x = (const int*)a; const int* y = (const int*)b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : (x[1] > y[1]);
}

// host: fills g (arrays of capacity N + 1) from ids (N); pairs is (2N) scratch
static inline void embed_groups_build(EmbedGroups* g, const int* ids, int N, int* pairs) {
    for (int t = 0; t < N; t++) { pairs[2 * t] = ids[t]; pairs[2 * t + 1] = t; }
    qsort(pairs, (size_t)N, 2 * sizeof(int), embed_pair_cmp);
    g->n_uniq = 0;
    for (int t = 0; t < N; t++) {
        if (t == 0 || pairs[2 * t] != pairs[2 * t - 2]) { g->uniq[g->n_uniq] = pairs[2 * t]; g->start[g->n_uniq++] = t; }
        g->pos[t] = pairs[2 * t + 1];
    }
    g->start[g->n_uniq] = N;
}

__global__ void embedding_backward_kernel(float* dwte, EmbedGroups g, const float* dout, int C, DropSite d) {
    d = dropout_resolve(d);
    int k = blockIdx.x;
    if (g.cap && k >= g.uniq[g.cap]) return; // past this batch's groups (a graph's launch covers cap)
    int id = g.uniq[k];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = dwte[(size_t)id * C + c];
        for (int p = g.start[k]; p < g.start[k + 1]; p++) {
            size_t i = (size_t)g.pos[p] * C + c;
            acc += dropout_apply_dev(dout[i], d, i);
        }
        dwte[(size_t)id * C + c] = acc;
    }
}

// g holds device pointers; n_uniq (or cap) from the host. dwte NULL (a frozen embedding under LoRA): nothing to do
static inline void embedding_backward(float* dwte, EmbedGroups g, const float* dout, int C, DropSite d,
                                      cudaStream_t stream) {
    int blocks = g.cap ? g.cap : g.n_uniq;
    if (blocks == 0 || !dwte) return;
    embedding_backward_kernel<<<blocks, 256, 0, stream>>>(dwte, g, dout, C, d);
    cudaCheckLaunch();
}

#endif // T5_EMBEDDING_CUH
