// gemm.h — the one fp32 matrix multiply of the CPU engine, plain C + OpenMP.
//   C (M, N) [+]= op(A) (M, K) · op(B) (K, N)
// op(A) = A (row-major, lda) or Aᵀ (A stored (K, M)); op(B) likewise. Every Linear layer's
// forward, input gradient and weight gradient is one call (see matmul_* in train_t5.c).
//
// How: both operands are packed into panels (A: MR rows × KC, B: KC × NR columns, zero-padded at
// the edges), then an MR×NR register tile accumulates over each KC slice. The tile is written with
// GNU C vector types (gemm_vec: GEMM_VL floats, one machine register), so its MR × 2 accumulators,
// the two B vectors and one broadcast A value stay in registers whatever the compiler's preferred
// vector width (GCC prefers 256 bits even on AVX-512 machines, which halved the tile's speed).
// Loops, outer to inner: KC slices of the depth (A packed whole), NC blocks of columns (B packed,
// L2), row tiles (split over the threads; one stays in L1), column panels (the register tile).
// No intrinsics, no fast-math: each output is the same sum in the same order (k ascending within
// a KC slice, slices added to C in order) whatever the thread count (deterministic).
// dev/bench_gemm.py times it against PyTorch on a training step's products.
#ifndef T5_GEMM_H
#define T5_GEMM_H

#include <stddef.h>  // defines: size_t
#include <string.h>  // defines: memset
#include <stdio.h>   // defines: fprintf
#include <stdlib.h>  // defines: aligned_alloc, free, exit
#include "utils.h"   // defines: par_active, par_max_threads, par_thread

// The register tile: MR rows × NR = 2 vectors of columns.
//   AVX-512 (32 registers): VL 16, MR 12 → 24 accumulators + 2 B vectors + 1 broadcast
//   AVX/AVX2 (16 registers): VL 8, MR 6 → 12 accumulators + 2 B vectors + 1 broadcast
//   SSE (16 registers):      VL 4, MR 6, the same count
#if defined(__AVX512F__)
#define GEMM_VL 16
#define GEMM_MR 12
#elif defined(__AVX__)
#define GEMM_VL 8
#define GEMM_MR 6
#else
#define GEMM_VL 4
#define GEMM_MR 6
#endif
#define GEMM_NR (2 * GEMM_VL)
#define GEMM_KC 256   // depth of one packed slice: a row tile of A (MR × KC, ≤ 12 KB) stays in L1
#define GEMM_NC 1024  // columns per block: the block's packed B (KC × NC floats = 1 MB) stays in L2

typedef float gemm_vec __attribute__((vector_size(GEMM_VL * sizeof(float))));

// scratch for the packed operands, grown on demand and owned by the caller (no global state)
typedef struct { float* buf; size_t cap; } GemmWorkspace;

static inline void gemm_workspace_free(GemmWorkspace* w) { free(w->buf); w->buf = NULL; w->cap = 0; }

static inline float* gemm_workspace_get(GemmWorkspace* w, size_t floats) {
    if (floats > w->cap) {
        free(w->buf);
        // 64-byte aligned: every packed B row (NR floats) is whole vectors on cache-line boundaries
        size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
        w->buf = (float*)aligned_alloc(64, bytes);
        if (w->buf == NULL) { fprintf(stderr, "error: out of memory allocating %zu bytes (gemm workspace)\n", bytes); exit(EXIT_FAILURE); }
        w->cap = floats;
    }
    return w->buf;
}

// pack W lines [i0, i0+W) × depth [k0, k0+kc) of a matrix into P[k][w] (zero lines past n), the
// inner loop along memory either way: depth_major = 1 when X is stored (depth, lines) (X[k·ld + i]),
// 0 when stored (lines, depth) (X[i·ld + k]). A's row tiles are W = MR lines of op(A) (depth-major
// when A is transposed); B's panels are W = NR columns of op(B) (depth-major when B is not).
__attribute__((always_inline)) static inline void gemm_pack(float* P, const float* X, size_t ld, int depth_major, int n,
                                                            int i0, int k0, int kc, int W) {
    int lines = n - i0 < W ? n - i0 : W;
    if (depth_major) {
        for (int k = 0; k < kc; k++) {
            const float* src = X + (size_t)(k0 + k) * ld + i0;
            for (int w = 0; w < W; w++) P[k * W + w] = w < lines ? src[w] : 0.0f;
        }
        return;
    }
    for (int w = 0; w < W; w++) {
        const float* src = X + (size_t)(i0 + w) * ld + k0;
        for (int k = 0; k < kc; k++) P[k * W + w] = w < lines ? src[k] : 0.0f;
    }
}

// acc (MR, NR) = Σ_k Ap[k][r] · Bp[k][c], then C tile (+)= acc for the valid rows/columns.
// Per k: two B vectors loaded, each A value broadcast (a[r] − 0 is a[r] exactly, also for −0, so
// the compiler broadcasts straight from memory), 2·MR fused multiply-adds.
__attribute__((always_inline)) static inline void gemm_micro(const float* Ap, const float* Bp, int kc, float* C, size_t ldc,
                              int rows, int cols, int add) {
    gemm_vec acc[GEMM_MR][2];
    for (int r = 0; r < GEMM_MR; r++) acc[r][0] = acc[r][1] = (gemm_vec){0};
    for (int k = 0; k < kc; k++) {
        const float* a = Ap + (size_t)k * GEMM_MR;
        gemm_vec b0 = *(const gemm_vec*)(Bp + (size_t)k * GEMM_NR), b1 = *(const gemm_vec*)(Bp + (size_t)k * GEMM_NR + GEMM_VL);
        for (int r = 0; r < GEMM_MR; r++) {
            gemm_vec ar = a[r] - (gemm_vec){0};
            acc[r][0] += ar * b0;
            acc[r][1] += ar * b1;
        }
    }
    if (cols == GEMM_NR) { // whole rows of the tile: two vector stores each (C rows need no alignment)
        for (int r = 0; r < rows; r++) {
            float* crow = C + (size_t)r * ldc;
            gemm_vec c0 = acc[r][0], c1 = acc[r][1];
            if (add) {
                gemm_vec o0, o1;
                memcpy(&o0, crow, sizeof(o0));
                memcpy(&o1, crow + GEMM_VL, sizeof(o1));
                c0 = o0 + c0;
                c1 = o1 + c1;
            }
            memcpy(crow, &c0, sizeof(c0));
            memcpy(crow + GEMM_VL, &c1, sizeof(c1));
        }
        return;
    }
    for (int r = 0; r < rows; r++) {
        float* crow = C + (size_t)r * ldc;
        const float* t = (const float*)acc[r];
        if (add) { for (int c = 0; c < cols; c++) crow[c] += t[c]; }
        else     { for (int c = 0; c < cols; c++) crow[c] = t[c]; }
    }
}

// the packed-operand floats one call of shape (M, N, ·) needs: all of A's row tiles, one column
// block of B's panels
static inline size_t gemm_workspace_floats(int M, int N) {
    size_t mblocks = (size_t)(M + GEMM_MR - 1) / GEMM_MR, nblocks = (size_t)(N + GEMM_NR - 1) / GEMM_NR;
    size_t block = GEMM_NC / GEMM_NR;
    return (mblocks * GEMM_MR + (nblocks < block ? nblocks : block) * GEMM_NR) * GEMM_KC;
}

// Products side by side (one per sequence and head, say), each on one thread: every thread gets its
// own slice of one workspace. gemm_threads_reserve returns the base for slices of `floats` each
// (the largest gemm_workspace_floats of the calls); inside the parallel loop,
// gemm_thread_workspace(base, floats) is the calling thread's slice.
static inline float* gemm_threads_reserve(GemmWorkspace* ws, size_t floats) {
    return gemm_workspace_get(ws, floats * (size_t)par_max_threads());
}
static inline GemmWorkspace gemm_thread_workspace(float* base, size_t floats) {
    GemmWorkspace w = { base + (size_t)par_thread() * floats, floats };
    return w;
}

// C (M, N) = op(A) · op(B)  (accumulate = 0)   or   C += op(A) · op(B)  (accumulate = 1)
// Called outside a parallel region it runs on every thread; called inside one (many small products
// side by side, each thread with its own workspace) it runs on the calling thread alone.
static void gemm(GemmWorkspace* ws, int M, int N, int K,
                 const float* A, size_t lda, int ta, const float* B, size_t ldb, int tb,
                 float* C, size_t ldc, int accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate) for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    int mblocks = (M + GEMM_MR - 1) / GEMM_MR, nblocks = (N + GEMM_NR - 1) / GEMM_NR;
    float* Ap = gemm_workspace_get(ws, gemm_workspace_floats(M, N));
    float* Bp = Ap + (size_t)mblocks * GEMM_MR * GEMM_KC;
    int team = !par_active();
    (void)team; // read only by the OpenMP pragma
    for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
        int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
        int add = accumulate || k0 > 0;
        #pragma omp parallel if (team)
        {
            #pragma omp for schedule(static)
            for (int mb = 0; mb < mblocks; mb++)
                gemm_pack(Ap + (size_t)mb * GEMM_MR * kc, A, lda, ta, M, mb * GEMM_MR, k0, kc, GEMM_MR);
            // columns in blocks of NC: the block's packed B panels (KC × NC, 1 MB) stay in L2 while
            // the threads sweep row tiles over them; a row tile (MR × KC) stays in L1 across the
            // block's panels, and the tile's C rows are written left to right
            for (int nc = 0; nc < nblocks; nc += GEMM_NC / GEMM_NR) {
                int nc_end = nc + GEMM_NC / GEMM_NR < nblocks ? nc + GEMM_NC / GEMM_NR : nblocks;
                #pragma omp for schedule(static)
                for (int nb = nc; nb < nc_end; nb++)
                    gemm_pack(Bp + (size_t)(nb - nc) * GEMM_NR * kc, B, ldb, !tb, N, nb * GEMM_NR, k0, kc, GEMM_NR);
                // (row tile, panel) pairs in row-major order, split in contiguous runs: a thread keeps
                // its row tile across consecutive panels, and a product with few row tiles still
                // splits over every thread
                #pragma omp for collapse(2) schedule(static)
                for (int mb = 0; mb < mblocks; mb++)
                    for (int nb = nc; nb < nc_end; nb++) {
                        int m0 = mb * GEMM_MR, rows = M - m0 < GEMM_MR ? M - m0 : GEMM_MR;
                        int n0 = nb * GEMM_NR, cols = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
                        gemm_micro(Ap + (size_t)mb * GEMM_MR * kc, Bp + (size_t)(nb - nc) * GEMM_NR * kc, kc,
                                   C + (size_t)m0 * ldc + n0, ldc, rows, cols, add);
                    }
            }
        }
    }
}

#endif // T5_GEMM_H
