// ffn_act.cu — twin of llmc/ffn_act.cuh: gated-GELU(tanh) / ReLU / GELU forward and backward with
// dropout against the CPU engine's ffn_act_forward / ffn_act_backward (llmc/t5_cpu.h), at several
// sizes, then a benchmark (L2 flushed, CUDA events, GB/s).
// Variants: 1 = llmc/ffn_act.cuh (grid-stride elementwise).
//           2 = the plain ReLU FFN without dropout through cuBLASLt's epilogues (llmc/matmul.cuh): the
//               wi product with RELU_AUX (ReLU + bit mask), the wo input gradient with DRELU, against the
//               CPU's products and activation, and timed against product + variant 1.
//   make -C dev/cuda ffn_act && ./dev/cuda/ffn_act      (run from the repository root)
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_x, compare, bench_ms
#include "llmc/t5_cpu.h"          // defines: t5cpu_ffn_act_forward, t5cpu_ffn_act_backward, t5cpu_linear
#include "llmc/ffn_act.cuh"       // defines: ffn_act_forward, ffn_act_backward
#include "llmc/matmul.cuh"        // defines: matmul, matmul_forward_relu_desc, matmul_backward_input_drelu_desc

static void check(size_t n, T5Act a, int gated, float p) {
    printf("n=%zu act=%d gated=%d dropout=%g\n", n, (int)a, gated, (double)p);
    float *h0 = host_normal(n, 1, 2.0f), *h1 = host_normal(n, 2, 1.0f), *dout = host_normal(n, 3, 1.0f);
    floatX *d_h0 = upload_x(h0, n), *d_h1 = upload_x(h1, n), *d_dout = upload_x(dout, n);
    floatX *d_out = cuda_alloc<floatX>(n), *d_dh0 = cuda_alloc<floatX>(n), *d_dh1 = cuda_alloc<floatX>(n);
    DropSite d = { p, 77, 5, NULL };
    ffn_act_forward(d_out, d_h0, gated ? d_h1 : NULL, n, a, d, 0);
    ffn_act_backward(d_dh0, d_dh1, d_dout, d_h0, gated ? d_h1 : NULL, n, a, d, 0);
    float *out = (float*)mallocCheck(n * 4), *dh0 = (float*)mallocCheck(n * 4), *dh1 = (float*)mallocCheck(n * 4);
    t5cpu_ffn_act_forward(out, h0, gated ? h1 : NULL, n, a, p, 77, 5);
    t5cpu_ffn_act_backward(dh0, dh1, dout, h0, gated ? h1 : NULL, n, a, p, 77, 5);
    float *g_out = download_x(d_out, n), *g_dh0 = download_x(d_dh0, n), *g_dh1 = download_x(d_dh1, n);
    compare("forward", g_out, out, n, TOL_X);
    compare("backward dh0", g_dh0, dh0, n, TOL_X);
    if (gated) compare("backward dh1", g_dh1, dh1, n, TOL_X);
    if (n >= (1 << 24)) {
        float fms = bench_ms([&] { ffn_act_forward(d_out, d_h0, gated ? d_h1 : NULL, n, a, d, 0); }, 20);
        float bms = bench_ms([&] { ffn_act_backward(d_dh0, d_dh1, d_dout, d_h0, gated ? d_h1 : NULL, n, a, d, 0); }, 20);
        printf("  bench forward %.3f ms (%.0f GB/s), backward %.3f ms (%.0f GB/s)\n", fms, 3.0 * n * sizeof(floatX) / fms / 1e6,
               bms, 5.0 * n * sizeof(floatX) / bms / 1e6);
    }
    free(h0); free(h1); free(dout); free(out); free(dh0); free(dh1); free(g_out); free(g_dh0); free(g_dh1);
    cudaCheck(cudaFree(d_h0)); cudaCheck(cudaFree(d_h1)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_out));
    cudaCheck(cudaFree(d_dh0)); cudaCheck(cudaFree(d_dh1));
}

// variant 2 on x (N, C), wi (F, C), wo (C, F), g (N, C):
//   ff (N, F) = relu(x·wiᵀ) (+ mask)      dh (N, F) = (g·wo) where x·wiᵀ > 0
// Tolerance: each output is one fp32 product rounded once to floatX, as the reference is: TOL_X. (A mask
// bit could differ only where x·wiᵀ is within fp32 summation noise of 0: none at these sizes.)
// ref = 0 skips the CPU reference (the benchmark size).
static void check_epilogue(int N, int C, int F, int ref) {
    printf("relu epilogues: N=%d C=%d F=%d\n", N, C, F);
    MatmulCtx mm;
    matmul_ctx_init(&mm, 0);
    int ok = matmul_relu_epilogues_available(&mm, C, F);
    printf("  %-56s %s\n", "2 cuBLASLt has RELU_AUX and DRELU for this shape", ok ? "OK" : "FAIL");
    if (ok) g_pass++; else { g_fail++; matmul_ctx_free(&mm); return; }
    size_t nx = (size_t)N * C, nw = (size_t)F * C, nh = (size_t)N * F;
    float *x = host_normal(nx, 11, 1.0f), *wi = host_normal(nw, 12, 0.1f), *wo = host_normal(nw, 13, 0.1f), *g = host_normal(nx, 14, 1.0f);
    floatX *d_x = upload_x(x, nx), *d_wi = upload_x(wi, nw), *d_wo = upload_x(wo, nw), *d_g = upload_x(g, nx);
    floatX *d_ff = cuda_alloc<floatX>(nh), *d_dh = cuda_alloc<floatX>(nh), *d_h = cuda_alloc<floatX>(nh), *d_gh = cuda_alloc<floatX>(nh);
    unsigned char* d_mask = cuda_alloc<unsigned char>(relu_mask_bytes(N, F));
    Matmul fwd = matmul_forward_relu_desc(d_ff, d_x, d_wi, N, C, F, d_mask);
    Matmul bwd = matmul_backward_input_drelu_desc(d_dh, d_g, d_wo, N, F, C, d_mask);
    matmul(&mm, &fwd);
    matmul(&mm, &bwd);
    if (ref) {
        float *h = (float*)mallocCheck(nh * 4), *ff = (float*)mallocCheck(nh * 4), *gh = (float*)mallocCheck(nh * 4);
        float *dh = (float*)mallocCheck(nh * 4), *woT = (float*)mallocCheck(nw * 4);
        for (int c = 0; c < C; c++) for (int f = 0; f < F; f++) woT[(size_t)f * C + c] = wo[(size_t)c * F + f];
        t5cpu_linear(h, x, wi, N, C, F);
        t5cpu_ffn_act_forward(ff, h, NULL, nh, ACT_RELU, 0.0f, 0, 0);
        t5cpu_linear(gh, g, woT, N, C, F); // g·wo = g·(woᵀ)ᵀ
        t5cpu_ffn_act_backward(dh, NULL, gh, h, NULL, nh, ACT_RELU, 0.0f, 0, 0);
        float *g_ff = download_x(d_ff, nh), *g_dh = download_x(d_dh, nh);
        compare("2 epilogue forward: relu(x·wiᵀ)", g_ff, ff, nh, TOL_X);
        compare("2 epilogue backward: (g·wo) masked", g_dh, dh, nh, TOL_X);
        free(h); free(ff); free(gh); free(dh); free(woT); free(g_ff); free(g_dh);
    } else {
        DropSite d = { 0.0f, 0, 0, NULL };
        float fused_f = bench_ms([&] { matmul(&mm, &fwd); }, 20);
        float fused_b = bench_ms([&] { matmul(&mm, &bwd); }, 20);
        float plain_f = bench_ms([&] { matmul_forward(&mm, d_h, 0, d_x, d_wi, N, C, F);
                                       ffn_act_forward(d_ff, d_h, NULL, nh, ACT_RELU, d, 0); }, 20);
        float plain_b = bench_ms([&] { matmul_backward_input(&mm, d_gh, 0, d_g, d_wo, N, F, C, 0);
                                       ffn_act_backward(d_dh, NULL, d_gh, d_h, NULL, nh, ACT_RELU, d, 0); }, 20);
        printf("  bench forward: epilogue %.3f ms, product + kernel %.3f ms (%.2fx); backward: %.3f ms vs %.3f ms (%.2fx)\n",
               fused_f, plain_f, plain_f / fused_f, fused_b, plain_b, plain_b / fused_b);
    }
    free(x); free(wi); free(wo); free(g);
    void* dev[] = { d_x, d_wi, d_wo, d_g, d_ff, d_dh, d_h, d_gh, d_mask };
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
    matmul_ctx_free(&mm);
}

int main(void) {
    check(1000, ACT_GELU_TANH, 1, 0.0f);
    check(12345, ACT_GELU_TANH, 1, 0.1f);
    check(12345, ACT_RELU, 0, 0.1f);
    check(777, ACT_GELU, 0, 0.0f);
    check(4321, ACT_SILU, 1, 0.1f); // UL2's gated SiLU
    check((size_t)8192 * 2048, ACT_GELU_TANH, 1, 0.1f);
    check_epilogue(300, 64, 200, 1);    // F not a multiple of 128: the mask rows are padded to 256 bits
    check_epilogue(77, 48, 128, 1);     // odd row count
    check_epilogue(8192, 512, 2048, 0); // t5-small's FFN over 8192 tokens: the benchmark
    return finish("ffn_act");
}
