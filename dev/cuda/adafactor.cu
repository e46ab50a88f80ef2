// adafactor.cu — twin of llmc/adafactor.cuh: the Adafactor update of one tensor (factored row/column
// moments or a vector's full one, the update's RMS clipping, the parameter-scaled lr, β1, weight decay,
// the floatX copy of the new weights) against the host reference llmc/adafactor.h (which
// dev/test_adafactor checks against transformers), at several shapes and option sets, over three steps;
// then the device-valued step (a CUDA graph's path) against the by-value one, a skipped step, and a
// benchmark (L2 flushed, CUDA events, GB/s).
// Variants: 1 = llmc/adafactor.cuh.
//   make -C dev/cuda adafactor && ./dev/cuda/adafactor      (run from the repository root)
#include <string.h>               // defines: memcmp
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_f, download_f, download_x, compare, bench_ms, finish
#include "llmc/adafactor.h"       // defines: AdafactorConfig, adafactor_defaults, adafactor_step_values, adafactor_update_values
#include "llmc/adafactor.cuh"     // defines: adafactor_update, AdafactorScratch, adafactor_scratch_create

// The same fp32 operations in the same order on both sides; the sums are in double on both, in another
// order, and a compiler may fuse g·g + eps1 on one side only: an ulp or two of a mean, an RMS or a weight,
// carried through three steps: 1e-6 of the max (as the AdamW twin)
#define TOL_STATE 1e-6f

typedef struct { const char* name; AdafactorConfig c; float gscale; } Options;

static Options options(int k) {
    Options o;
    o.c = adafactor_defaults();
    o.gscale = 1.0f;
    if (k == 0) { o.name = "T5 (lr 1e-3, no relative step, no scale)"; o.c.has_lr = 1; o.c.lr = 1e-3; o.c.relative_step = 0; o.c.scale_parameter = 0; }
    else if (k == 1) { o.name = "transformers' defaults (relative step, scale)"; }
    else { // everything on: β1, weight decay, a clipping that bites, a gradient pre-scaled by global-norm clipping
        o.name = "beta1 0.9, wd 0.01, clip 0.5, gscale 0.37, lr 1e-2 scaled";
        o.c.has_lr = 1; o.c.lr = 1e-2; o.c.relative_step = 0; o.c.has_beta1 = 1; o.c.beta1 = 0.9; o.c.weight_decay = 0.01;
        o.c.clip_threshold = 0.5; o.gscale = 0.37f;
    }
    return o;
}

// three steps of a (rows, cols) tensor on both sides; compare weights, state and the floatX copy
static void check_shape(int rows, int cols, int factored, int opt, AdafactorScratch* w) {
    Options o = options(opt);
    size_t n = (size_t)rows * cols, ns = adafactor_state_floats(rows, cols, factored, o.c.has_beta1);
    printf("(%d, %d) %s, %s\n", rows, cols, factored ? "factored" : "vector", o.name);
    float* p = host_normal(n, 1, 0.05f);
    float* state = (float*)callocCheck(ns, sizeof(float));
    float *d_p = upload_f(p, n), *d_state = cuda_alloc<float>(ns), *d_g = cuda_alloc<float>(n);
    cudaCheck(cudaMemset(d_state, 0, ns * sizeof(float)));
    floatX* d_px = cuda_alloc<floatX>(n);
    for (int t = 1; t <= 3; t++) {
        float* g = host_normal(n, 10 + (uint64_t)t, t == 2 ? 1e-1f : 1e-3f); // a 100x step: RMS(u) > 1
        cudaCheck(cudaMemcpy(d_g, g, n * sizeof(float), cudaMemcpyHostToDevice));
        AdafactorStep s = adafactor_step_values(&o.c, t, o.c.lr);
        s.gscale = o.gscale;
        adafactor_update(d_p, d_px, d_g, d_state, rows, cols, factored, s, NULL, w, 0);
        adafactor_update_values(p, g, state, rows, cols, factored, &s);
        free(g);
    }
    float *g_p = download_f(d_p, n), *g_state = download_f(d_state, ns);
    compare("weights after 3 steps", g_p, p, n, TOL_STATE);
    size_t nv = factored ? (size_t)rows + cols : n;
    compare(factored ? "row and column moments (R, C)" : "second moments (V)", g_state, state, nv, TOL_STATE);
    if (o.c.has_beta1) compare("first moments (M)", g_state + nv, state + nv, n, TOL_STATE);
#ifndef ENABLE_FP32 // the bf16 copy: the fp32 weights rounded to nearest even (2^-9 relative)
    float* g_px = download_x(d_px, n);
    compare("floatX copy of the weights", g_px, p, n, TOL_X);
    free(g_px);
#endif
    free(p); free(state); free(g_p); free(g_state);
    cudaCheck(cudaFree(d_p)); cudaCheck(cudaFree(d_state)); cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_px));
}

// the step's values read from device memory (how a CUDA graph replays a step) must give the by-value update
// bit for bit; with skip set nothing changes
static void check_device_values(int rows, int cols, AdafactorScratch* w) {
    printf("(%d, %d) step values in device memory\n", rows, cols);
    Options o = options(2);
    size_t n = (size_t)rows * cols, ns = adafactor_state_floats(rows, cols, 1, 1);
    float *p = host_normal(n, 31, 0.05f), *g = host_normal(n, 32, 1e-2f);
    float *d_g = upload_f(g, n);
    AdafactorStep* d_s = cuda_alloc<AdafactorStep>(1);
    for (int skip = 0; skip <= 1; skip++) {
        AdafactorStep s = adafactor_step_values(&o.c, 4, o.c.lr);
        s.skip = skip;
        cudaCheck(cudaMemcpy(d_s, &s, sizeof(s), cudaMemcpyHostToDevice));
        float *d_p1 = upload_f(p, n), *d_p2 = upload_f(p, n), *d_s1 = cuda_alloc<float>(ns), *d_s2 = cuda_alloc<float>(ns);
        cudaCheck(cudaMemset(d_s1, 0, ns * sizeof(float))); cudaCheck(cudaMemset(d_s2, 0, ns * sizeof(float)));
        floatX *d_x1 = cuda_alloc<floatX>(n), *d_x2 = cuda_alloc<floatX>(n);
        AdafactorStep by_value = s;
        by_value.skip = 0;
        adafactor_update(d_p1, d_x1, d_g, d_s1, rows, cols, 1, by_value, NULL, w, 0);
        adafactor_update(d_p2, d_x2, d_g, d_s2, rows, cols, 1, s /* unused */, d_s, w, 0);
        float *p1 = download_f(d_p1, n), *p2 = download_f(d_p2, n), *s1 = download_f(d_s1, ns), *s2 = download_f(d_s2, ns);
        int ok = skip ? memcmp(p2, p, n * sizeof(float)) == 0 && s2[0] == 0.0f
                      : memcmp(p1, p2, n * sizeof(float)) == 0 && memcmp(s1, s2, ns * sizeof(float)) == 0;
        printf("  %-56s %s\n", skip ? "skip set: nothing changed" : "equal to the by-value update (weights, state)", ok ? "OK" : "FAIL");
        if (ok) g_pass++; else g_fail++;
        free(p1); free(p2); free(s1); free(s2);
        void* dev[] = { d_p1, d_p2, d_s1, d_s2, d_x1, d_x2 };
        for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
    }
    free(p); free(g);
    cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_s));
}

// time one update of a (rows, cols) tensor, T5 options. Bytes moved: g read 4 times (row sums, column
// sums, Σu², the update), p read twice and written once, the floatX copy written
static void bench_shape(int rows, int cols, int factored, AdafactorScratch* w) {
    Options o = options(0);
    size_t n = (size_t)rows * cols, ns = adafactor_state_floats(rows, cols, factored, 0);
    float *h = host_normal(n, 41, 0.05f), *d_p = upload_f(h, n), *d_g = upload_f(h, n), *d_state = cuda_alloc<float>(ns);
    cudaCheck(cudaMemset(d_state, 0, ns * sizeof(float)));
    floatX* d_px = cuda_alloc<floatX>(n);
    AdafactorStep s = adafactor_step_values(&o.c, 10, o.c.lr);
    float ms = bench_ms([&] { adafactor_update(d_p, d_px, d_g, d_state, rows, cols, factored, s, NULL, w, 0); }, 20);
    double bytes = n * ((factored ? 4.0 : 2.0) * 4 + 3.0 * 4 + sizeof(floatX)) + (factored ? 0.0 : 2.0 * 4 * n);
    printf("  bench (%d, %d) %s: %.3f ms (%.0f GB/s)\n", rows, cols, factored ? "factored" : "vector", ms, bytes / ms / 1e6);
    free(h);
    cudaCheck(cudaFree(d_p)); cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_state)); cudaCheck(cudaFree(d_px));
}

int main(void) {
    AdafactorScratch w;
    adafactor_scratch_create(&w, 32128, 5120);
    for (int opt = 0; opt < 3; opt++) {
        check_shape(1, 7, 0, opt, &w);          // a tiny vector
        check_shape(1, 4096, 0, opt, &w);       // an RMSNorm weight of flan-t5-xl
        check_shape(6, 10, 1, opt, &w);         // the fixtures' matrix
        check_shape(32, 12, 1, opt, &w);        // relative_attention_bias (num_buckets, H)
        check_shape(513, 257, 1, opt, &w);      // odd sizes: partial warps, chunks and blocks
    }
    check_shape(32128, 512, 1, 1, &w);          // flan-t5-small's embedding, defaults (32 row chunks)
    check_shape(1, 1000003, 0, 2, &w);          // a long vector, grid-stride
    check_device_values(513, 257, &w);
    bench_shape(32128, 768, 1, &w);             // flan-t5-base's embedding: 24.7M values
    bench_shape(2048, 5120, 1, &w);             // flan-t5-xl's wo (C, F) transposed shape
    bench_shape(1, 4096, 0, &w);
    adafactor_scratch_free(&w);
    return finish("adafactor");
}
