// gemm.h — the one fp32 matrix multiply of the CPU engine, plain C + OpenMP.
//   C (M, N) [+]= op(A) (M, K) · op(B) (K, N)
// op(A) = A (row-major, lda) or Aᵀ (A stored (K, M)); op(B) likewise. Every Linear layer's
// forward, input gradient and weight gradient is one call (see matmul_* in train_t5.c).
//
// How: both operands are packed into panels (A: MR rows × KC, B: KC × NR columns, zero-padded at
// the edges), then an MR×NR register tile accumulates over each KC slice. The inner loop is a
// fixed-width loop the compiler vectorises (-O3 -march=native); no intrinsics, no fast-math, so
// each output is the same sum in the same order whatever the thread count (deterministic).
#ifndef T5_GEMM_H
#define T5_GEMM_H

#include <stddef.h>  // defines: size_t
#include <string.h>  // defines: memset
#include "utils.h"   // defines: mallocCheck

#define GEMM_MR 8     // rows of the register tile
#define GEMM_NR 16    // columns of the register tile (one AVX-512 or two AVX2 vectors)
#define GEMM_KC 256   // depth of one packed slice: a B panel slice (16 KB) stays in L1
#define GEMM_MC 256   // rows of A per cache block: MC × KC floats = 256 KB stay in L2

// scratch for the packed operands, grown on demand and owned by the caller (no global state)
typedef struct { float* buf; size_t cap; } GemmWorkspace;

static inline void gemm_workspace_free(GemmWorkspace* w) { free(w->buf); w->buf = NULL; w->cap = 0; }

static inline float* gemm_workspace_get(GemmWorkspace* w, size_t floats) {
    if (floats > w->cap) {
        free(w->buf);
        w->buf = (float*)mallocCheck(floats * sizeof(float));
        w->cap = floats;
    }
    return w->buf;
}

// element (r, c) of op(X) where X is row-major with leading dimension ld
static inline float gemm_at(const float* X, size_t ld, int trans, size_t r, size_t c) {
    return trans ? X[c * ld + r] : X[r * ld + c];
}

// pack op(A) rows [m0, m0+MR) × depth [k0, k0+kc) into Ap[k][r] (zero rows past M)
static inline void gemm_pack_a(float* Ap, const float* A, size_t lda, int ta, int M, int m0, int k0, int kc) {
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < GEMM_MR; r++)
            Ap[k * GEMM_MR + r] = (m0 + r < M) ? gemm_at(A, lda, ta, (size_t)(m0 + r), (size_t)(k0 + k)) : 0.0f;
}

// pack op(B) depth [k0, k0+kc) × columns [n0, n0+NR) into Bp[k][c] (zero columns past N)
static inline void gemm_pack_b(float* Bp, const float* B, size_t ldb, int tb, int N, int n0, int k0, int kc) {
    for (int k = 0; k < kc; k++) {
        float* dst = Bp + (size_t)k * GEMM_NR;
        if (!tb && n0 + GEMM_NR <= N) {
            memcpy(dst, B + (size_t)(k0 + k) * ldb + n0, GEMM_NR * sizeof(float));
            continue;
        }
        for (int c = 0; c < GEMM_NR; c++)
            dst[c] = (n0 + c < N) ? gemm_at(B, ldb, tb, (size_t)(k0 + k), (size_t)(n0 + c)) : 0.0f;
    }
}

// acc (MR, NR) = Σ_k Ap[k][r] · Bp[k][c], then C tile (+)= acc for the valid rows/columns
__attribute__((always_inline)) static inline void gemm_micro(const float* Ap, const float* Bp, int kc, float* C, size_t ldc,
                              int rows, int cols, int add) {
    float acc[GEMM_MR][GEMM_NR];
    memset(acc, 0, sizeof(acc));
    for (int k = 0; k < kc; k++) {
        const float* a = Ap + (size_t)k * GEMM_MR;
        const float* b = Bp + (size_t)k * GEMM_NR;
        for (int r = 0; r < GEMM_MR; r++) {
            float ar = a[r];
            #pragma omp simd
            for (int c = 0; c < GEMM_NR; c++) acc[r][c] += ar * b[c];
        }
    }
    for (int r = 0; r < rows; r++) {
        float* crow = C + (size_t)r * ldc;
        if (add) { for (int c = 0; c < cols; c++) crow[c] += acc[r][c]; }
        else     { for (int c = 0; c < cols; c++) crow[c] = acc[r][c]; }
    }
}

// C (M, N) = op(A) · op(B)  (accumulate = 0)   or   C += op(A) · op(B)  (accumulate = 1)
static void gemm(GemmWorkspace* ws, int M, int N, int K,
                 const float* A, size_t lda, int ta, const float* B, size_t ldb, int tb,
                 float* C, size_t ldc, int accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate) for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    int mblocks = (M + GEMM_MR - 1) / GEMM_MR, nblocks = (N + GEMM_NR - 1) / GEMM_NR;
    size_t a_size = (size_t)mblocks * GEMM_MR * GEMM_KC, b_size = (size_t)nblocks * GEMM_NR * GEMM_KC;
    float* Ap = gemm_workspace_get(ws, a_size + b_size);
    float* Bp = Ap + a_size;
    for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
        int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
        int add = accumulate || k0 > 0;
        #pragma omp parallel
        {
            #pragma omp for schedule(static)
            for (int mb = 0; mb < mblocks; mb++)
                gemm_pack_a(Ap + (size_t)mb * GEMM_MR * kc, A, lda, ta, M, mb * GEMM_MR, k0, kc);
            #pragma omp for schedule(static)
            for (int nb = 0; nb < nblocks; nb++)
                gemm_pack_b(Bp + (size_t)nb * GEMM_NR * kc, B, ldb, tb, N, nb * GEMM_NR, k0, kc);
            // rows in blocks of GEMM_MC: the packed A block (MC × KC) stays in L2 while every thread
            // sweeps its column panels over it; each B panel (KC × NR) stays in L1 across the block
            for (int mc = 0; mc < mblocks; mc += GEMM_MC / GEMM_MR) {
                int mc_end = mc + GEMM_MC / GEMM_MR < mblocks ? mc + GEMM_MC / GEMM_MR : mblocks;
                #pragma omp for schedule(static)
                for (int nb = 0; nb < nblocks; nb++) {
                    int n0 = nb * GEMM_NR, cols = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
                    for (int mb = mc; mb < mc_end; mb++) {
                        int m0 = mb * GEMM_MR, rows = M - m0 < GEMM_MR ? M - m0 : GEMM_MR;
                        gemm_micro(Ap + (size_t)mb * GEMM_MR * kc, Bp + (size_t)nb * GEMM_NR * kc, kc,
                                   C + (size_t)m0 * ldc + n0, ldc, rows, cols, add);
                    }
                }
            }
        }
    }
}

#endif // T5_GEMM_H
