// lora.cu — twin of llmc/lora.cuh: one wrapped Linear's adapter against the CPU engine's lora_forward /
// lora_backward (llmc/t5_cpu.h), at several shapes, ranks and dropout rates, with fp32 and floatX
// outputs: the forward (the input dropout kernel, u = s·xd·Aᵀ, out += u·Bᵀ), the backward (xd and u
// recomputed, dB, du, dA, the input gradient through the dropout mask); the merge W += s·B·A against
// lora_merge_one of llmc/lora.h. Then a benchmark: what the adapter adds to the frozen product it sits
// beside, forward and backward (flan-t5-base's q and wi_0 over a batch of 16 DialogSum examples, r 32).
// Variants: 1 = llmc/lora.cuh (cuBLASLt products through llmc/matmul.cuh, grid-stride dropout kernels).
//   make -C dev/cuda lora && ./dev/cuda/lora      (run from the repository root)
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_x, upload_f, download_x, download_f, compare, bench_ms
#include "llmc/t5_cpu.h"          // defines: t5cpu_lora_forward, t5cpu_lora_backward
#include "llmc/lora.cuh"          // defines: LoraLinear, LoraScratch, lora_linear_forward/_backward, lora_merge_weight

// Tolerances: TOL_X (common.cuh) relative to the tensor's largest value. The inputs are rounded to floatX
// before both sides see them; the fp32 build differs from the CPU in summation order only (a few ulp).
// The bf16 build rounds u, du and the dropped input to bf16 (2^-9 relative each) where the CPU keeps
// fp32: each output is a sum of such terms, so its error stays near 2^-9 of its scale, under 1e-2.

// an output-shaped buffer on the device: fp32, or floatX (h is then rounded to what the device holds)
static void* upload_out(float* h, size_t n, int fp32) { return fp32 ? (void*)upload_f(h, n) : (void*)upload_x(h, n); }
static float* download_out(const void* d, size_t n, int fp32) {
    return fp32 ? download_f((const float*)d, n) : download_x((const floatX*)d, n);
}

static LoraScratch scratch_alloc(int N, int IC, int r) {
    LoraScratch w = { cuda_alloc<float>((size_t)N * IC), cuda_alloc<floatX>((size_t)N * r), cuda_alloc<floatX>((size_t)N * r) };
    return w;
}
static void scratch_free(LoraScratch* w) { cudaCheck(cudaFree(w->x)); cudaCheck(cudaFree(w->u)); cudaCheck(cudaFree(w->du)); }

// out (N, OC) starts from random values (fp32 output) or zero (floatX output: a sum rounded to bf16 would
// hide the adapter's small share under the base's rounding); so does dinp (N, IC)
static float* initial(size_t n, int fp32, uint64_t seed) {
    float* h = host_normal(n, seed, 1.0f);
    if (!fp32) memset(h, 0, n * sizeof(float));
    return h;
}

static void check(int N, int IC, int OC, int r, float p, int out_fp32) {
    printf("N=%d IC=%d OC=%d r=%d dropout=%g out=%s\n", N, IC, OC, r, (double)p, out_fp32 ? "fp32" : "floatX");
    size_t nx = (size_t)N * IC, no = (size_t)N * OC, na = (size_t)r * IC, nb = (size_t)OC * r;
    float *x = host_normal(nx, 1, 1.0f), *A = host_normal(na, 2, 0.1f), *B = host_normal(nb, 3, 0.1f);
    float *g = host_normal(no, 4, 1.0f), *out = initial(no, out_fp32, 5), *dinp = initial(nx, out_fp32, 6);
    floatX *d_x = upload_x(x, nx), *d_A = upload_x(A, na), *d_B = upload_x(B, nb), *d_g = upload_x(g, no);
    void* d_out = upload_out(out, no, out_fp32);
    void* d_dinp = upload_out(dinp, nx, out_fp32);
    float *d_dA = cuda_alloc<float>(na), *d_dB = cuda_alloc<float>(nb);
    cudaCheck(cudaMemset(d_dA, 0, na * sizeof(float))); cudaCheck(cudaMemset(d_dB, 0, nb * sizeof(float)));
    float s = 2.5f;
    DropSite d = { p, 99, lora_drop_site(3, 1), NULL };
    LoraLinear v = { d_A, d_B, d_dA, d_dB, s, r, d };
    LoraScratch w = scratch_alloc(N, IC, r);
    MatmulCtx mm;
    matmul_ctx_init(&mm, 0);
    lora_linear_forward(&mm, &v, w, d_out, out_fp32, d_x, N, IC, OC, 0);
    lora_linear_backward(&mm, &v, w, d_dinp, out_fp32, d_g, d_x, N, IC, OC, 0);
    float *dA = (float*)calloc(na, sizeof(float)), *dB = (float*)calloc(nb, sizeof(float));
    t5cpu_lora_forward(out, x, A, B, s, r, N, IC, OC, p, d.seed, d.site);
    t5cpu_lora_backward(dinp, dA, dB, g, x, A, B, s, r, N, IC, OC, p, d.seed, d.site);
    float *g_out = download_out(d_out, no, out_fp32), *g_dinp = download_out(d_dinp, nx, out_fp32);
    float *g_dA = download_f(d_dA, na), *g_dB = download_f(d_dB, nb);
    compare("1 forward: out += s·dropout(x)·Aᵀ·Bᵀ", g_out, out, no, TOL_X);
    compare("1 backward: dA", g_dA, dA, na, TOL_X);
    compare("1 backward: dB", g_dB, dB, nb, TOL_X);
    compare("1 backward: dinp += dropout'(s·g·B·A)", g_dinp, dinp, nx, TOL_X);
    free(x); free(A); free(B); free(g); free(out); free(dinp); free(dA); free(dB);
    free(g_out); free(g_dinp); free(g_dA); free(g_dB);
    void* dev[] = { d_x, d_A, d_B, d_g, d_out, d_dinp, d_dA, d_dB };
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
    scratch_free(&w);
    matmul_ctx_free(&mm);
}

// W (OC, IC) += s·B·A into a floatX weight (the merge for generation), against lora.h's lora_merge_one.
// W starts small (1e-3) so that the adapter's share, not W's own rounding, sets the scale compared.
static void check_merge(int IC, int OC, int r) {
    printf("merge: IC=%d OC=%d r=%d\n", IC, OC, r);
    size_t nw = (size_t)OC * IC, na = (size_t)r * IC, nb = (size_t)OC * r;
    float *W = host_normal(nw, 7, 1e-3f), *A = host_normal(na, 8, 0.1f), *B = host_normal(nb, 9, 0.1f);
    floatX *d_W = upload_x(W, nw), *d_A = upload_x(A, na), *d_B = upload_x(B, nb);
    DropSite none = { 0.0f, 0, 0, NULL };
    LoraLinear v = { d_A, d_B, NULL, NULL, 0.75f, r, none };
    MatmulCtx mm;
    matmul_ctx_init(&mm, 0);
    lora_merge_weight(&mm, d_W, &v, IC, OC);
    lora_merge_one(W, A, B, OC, IC, r, 0.75f);
    float* got = download_x(d_W, nw);
    compare("1 merge: W += s·B·A", got, W, nw, TOL_X);
    free(W); free(A); free(B); free(got);
    cudaCheck(cudaFree(d_W)); cudaCheck(cudaFree(d_A)); cudaCheck(cudaFree(d_B));
    matmul_ctx_free(&mm);
}

// the adapter's GPU time beside its frozen product: forward (the product; the adapter's two products)
// and backward (the input-gradient product; the adapter's five products), dropout 0 and 0.1
static void bench(const char* what, int N, int IC, int OC, int r) {
    size_t nx = (size_t)N * IC, no = (size_t)N * OC, na = (size_t)r * IC, nb = (size_t)OC * r;
    float *x = host_normal(nx, 11, 1.0f), *W = host_normal((size_t)OC * IC, 12, 0.05f), *A = host_normal(na, 13, 0.1f);
    float *B = host_normal(nb, 14, 0.1f), *g = host_normal(no, 15, 1.0f);
    floatX *d_x = upload_x(x, nx), *d_W = upload_x(W, (size_t)OC * IC), *d_A = upload_x(A, na), *d_B = upload_x(B, nb);
    floatX *d_g = upload_x(g, no), *d_out = cuda_alloc<floatX>(no);
    float *d_dinp = cuda_alloc<float>(nx), *d_dA = cuda_alloc<float>(na), *d_dB = cuda_alloc<float>(nb);
    LoraScratch w = scratch_alloc(N, IC, r);
    MatmulCtx mm;
    matmul_ctx_init(&mm, 0);
    float base_f = bench_ms([&] { matmul_forward(&mm, d_out, 0, d_x, d_W, N, IC, OC); }, 20);
    float base_b = bench_ms([&] { matmul_backward_input(&mm, d_dinp, 1, d_g, d_W, N, IC, OC, 0); }, 20);
    printf("  bench %s (N=%d IC=%d OC=%d r=%d): frozen product %.3f ms, its input gradient %.3f ms\n", what, N, IC, OC, r,
           base_f, base_b);
    for (int k = 0; k < 2; k++) {
        DropSite d = { k ? 0.1f : 0.0f, 5, 7, NULL };
        LoraLinear v = { d_A, d_B, d_dA, d_dB, 2.0f, r, d };
        float f = bench_ms([&] { lora_linear_forward(&mm, &v, w, d_out, 0, d_x, N, IC, OC, 0); }, 20);
        float b = bench_ms([&] { lora_linear_backward(&mm, &v, w, d_dinp, 1, d_g, d_x, N, IC, OC, 0); }, 20);
        printf("  bench %s, lora_dropout %.1f: adapter forward %.3f ms (+%.0f%% of the product), backward %.3f ms "
               "(+%.0f%% of the input gradient)\n", what, (double)d.p, f, 100.0 * f / base_f, b, 100.0 * b / base_b);
    }
    free(x); free(W); free(A); free(B); free(g);
    void* dev[] = { d_x, d_W, d_A, d_B, d_g, d_out, d_dinp, d_dA, d_dB };
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
    scratch_free(&w);
    matmul_ctx_free(&mm);
}

int main(void) {
    check(300, 64, 96, 4, 0.0f, 1);
    check(300, 64, 96, 4, 0.1f, 0);
    check(77, 48, 200, 2, 0.1f, 1);      // odd sizes, r 2
    check(1024, 512, 384, 16, 0.0f, 0);
    check(2000, 768, 2048, 32, 0.1f, 1); // flan-t5-base's wi_0 shape
    check_merge(64, 96, 4);
    check_merge(768, 2048, 32);
    int N = 16 * 263;                    // 16 examples of DialogSum's mean 223 + 40 tokens
    bench("q", N, 768, 768, 32);
    bench("wi_0", N, 768, 2048, 32);
    return finish("lora");
}
