// bench_gemm.c — GFLOP/s of llmc/gemm.h on the products one flan-t5-small training step makes
// (batch 8, 256 source / 64 target tokens: dev/bench_cpu.py's shape), each checked first against a
// double-precision product of the same operands.
//
//   make build/bench_gemm
//   OMP_NUM_THREADS=2 ./build/bench_gemm [repeats]
//
// Each row: the call (M, N, K, which operand is transposed), how often a step makes it, its median
// time and GFLOP/s; the last line weighs the rows by their count, as a step does.
#include <stdio.h>    // defines: printf
#include <stdlib.h>   // defines: atoi, qsort
#include <math.h>     // defines: fabs
#include "llmc/gemm.h"
#include "llmc/utils.h" // defines: mallocCheck, enable_flush_to_zero, now_ms

typedef struct { const char* what; int M, N, K, ta, tb, count; } Shape;

// Linear forward: (tokens, OC, IC, 0, 1); input gradient (tokens, IC, OC, 0, 0); weight gradient
// (OC, IC, tokens, 1, 0). Encoder 2048 tokens, decoder 512; d_model 512, inner 384, d_ff 1024.
static const Shape SHAPES[] = {
    {"enc q/k/v fwd", 2048, 384, 512, 0, 1, 3 * 8},      {"enc o fwd", 2048, 512, 384, 0, 1, 8},
    {"enc wi fwd", 2048, 1024, 512, 0, 1, 2 * 8},        {"enc wo fwd", 2048, 512, 1024, 0, 1, 8},
    {"enc q/k/v dinp", 2048, 512, 384, 0, 0, 3 * 8},     {"enc q/k/v dW", 384, 512, 2048, 1, 0, 3 * 8},
    {"enc wi dinp", 2048, 512, 1024, 0, 0, 2 * 8},       {"enc wi dW", 1024, 512, 2048, 1, 0, 2 * 8},
    {"dec q/k/v fwd", 512, 384, 512, 0, 1, 4 * 8},       {"dec wi fwd", 512, 1024, 512, 0, 1, 2 * 8},
    {"dec wi dW", 1024, 512, 512, 1, 0, 2 * 8},          {"lm_head fwd", 512, 32128, 512, 0, 1, 1},
    {"lm_head dinp", 512, 512, 32128, 0, 0, 1},          {"lm_head dW", 32128, 512, 512, 1, 0, 1},
    {"enc scores q·kT", 256, 256, 64, 0, 1, 8 * 6 * 8},  {"enc p·v", 256, 64, 256, 0, 0, 8 * 6 * 8},
    {"enc dv = pT·dout", 256, 64, 256, 1, 0, 8 * 6 * 8}, {"dec cross scores", 64, 256, 64, 0, 1, 8 * 6 * 8},
};

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static void fill(float* x, size_t n, unsigned* state) {
    for (size_t i = 0; i < n; i++) { *state = *state * 1664525u + 1013904223u; x[i] = (float)(*state >> 8) / 16777216.0f - 0.5f; }
}

// element (r, c) of op(X) where X is row-major with leading dimension ld
static float at(const float* X, size_t ld, int trans, size_t r, size_t c) { return trans ? X[c * ld + r] : X[r * ld + c]; }

// worst |C − exact| / (Σ_k |a||b|) over a sample of entries: the fp32 rounding bound is ~K·2^-24
static double check(const Shape* s, const float* A, const float* B, const float* C) {
    double worst = 0.0;
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    for (int r = 0; r < s->M; r += 1 + s->M / 61)
        for (int c = 0; c < s->N; c += 1 + s->N / 67) {
            double exact = 0.0, mag = 0.0;
            for (int k = 0; k < s->K; k++) {
                double a = at(A, (size_t)lda, s->ta, (size_t)r, (size_t)k), b = at(B, (size_t)ldb, s->tb, (size_t)k, (size_t)c);
                exact += a * b;
                mag += fabs(a * b);
            }
            double e = fabs((double)C[(size_t)r * s->N + c] - exact) / (mag > 0 ? mag : 1.0);
            if (e > worst) worst = e;
        }
    return worst;
}

int main(int argc, char** argv) {
    enable_flush_to_zero();
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) reps = 1;
    GemmWorkspace ws = {0};
    double total_ms = 0.0, total_flop = 0.0;
    int failed = 0;
    printf("%-18s %6s %6s %6s %3s %3s %5s %9s %8s %9s\n", "call", "M", "N", "K", "tA", "tB", "count", "ms", "GFLOP/s", "rel err");
    for (size_t i = 0; i < sizeof(SHAPES) / sizeof(SHAPES[0]); i++) {
        const Shape* s = &SHAPES[i];
        size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
        float *A = (float*)mallocCheck(na * sizeof(float)), *B = (float*)mallocCheck(nb * sizeof(float)),
              *C = (float*)mallocCheck(nc * sizeof(float));
        unsigned st = 1234u + (unsigned)i;
        fill(A, na, &st);
        fill(B, nb, &st);
        int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
        gemm(&ws, s->M, s->N, s->K, A, (size_t)lda, s->ta, B, (size_t)ldb, s->tb, C, (size_t)s->N, 0);
        double err = check(s, A, B, C);
        // fp32 accumulation over K terms: each partial sum rounds at 2^-24 relative; 4·K·2^-24 of Σ|ab|
        // is a loose worst case that any correct summation order meets
        double tol = 4.0 * s->K / 16777216.0;
        if (err > tol) failed++;
        double t[64];
        int n = reps < 64 ? reps : 64;
        for (int r = 0; r < n; r++) {
            double t0 = now_ms();
            gemm(&ws, s->M, s->N, s->K, A, (size_t)lda, s->ta, B, (size_t)ldb, s->tb, C, (size_t)s->N, 0);
            t[r] = now_ms() - t0;
        }
        qsort(t, (size_t)n, sizeof(double), cmp_double);
        double ms = t[n / 2], flop = 2.0 * s->M * s->N * s->K;
        printf("%-18s %6d %6d %6d %3d %3d %5d %9.3f %8.1f %9.1e%s\n", s->what, s->M, s->N, s->K, s->ta, s->tb, s->count,
               ms, flop / ms / 1e6, err, err > tol ? "  FAIL" : "");
        total_ms += ms * s->count;
        total_flop += flop * s->count;
        free(A); free(B); free(C);
    }
    printf("weighted: %.1f ms for these calls, %.1f GFLOP/s\n", total_ms, total_flop / total_ms / 1e6);
    gemm_workspace_free(&ws);
    if (failed) { printf("%d shapes FAILED the accuracy check\n", failed); return EXIT_FAILURE; }
    return 0;
}
