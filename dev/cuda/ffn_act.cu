// ffn_act.cu — twin of llmc/ffn_act.cuh: gated-GELU(tanh) / ReLU / GELU forward and backward with
// dropout against the CPU engine's ffn_act_forward / ffn_act_backward (llmc/t5_cpu.h), at several
// sizes, then a benchmark (L2 flushed, CUDA events, GB/s).
// Variants: 1 = llmc/ffn_act.cuh (grid-stride elementwise).
//   make -C dev/cuda ffn_act && ./dev/cuda/ffn_act      (run from the repository root)
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_x, compare, bench_ms
#include "llmc/t5_cpu.h"          // defines: t5cpu_ffn_act_forward, t5cpu_ffn_act_backward
#include "llmc/ffn_act.cuh"       // defines: ffn_act_forward, ffn_act_backward

static void check(size_t n, T5Act a, int gated, float p) {
    printf("n=%zu act=%d gated=%d dropout=%g\n", n, (int)a, gated, (double)p);
    float *h0 = host_normal(n, 1, 2.0f), *h1 = host_normal(n, 2, 1.0f), *dout = host_normal(n, 3, 1.0f);
    floatX *d_h0 = upload_x(h0, n), *d_h1 = upload_x(h1, n), *d_dout = upload_x(dout, n);
    floatX *d_out = cuda_alloc<floatX>(n), *d_dh0 = cuda_alloc<floatX>(n), *d_dh1 = cuda_alloc<floatX>(n);
    DropSite d = { p, 77, 5 };
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

int main(void) {
    check(1000, ACT_GELU_TANH, 1, 0.0f);
    check(12345, ACT_GELU_TANH, 1, 0.1f);
    check(12345, ACT_RELU, 0, 0.1f);
    check(777, ACT_GELU, 0, 0.0f);
    check((size_t)8192 * 2048, ACT_GELU_TANH, 1, 0.1f);
    return finish("ffn_act");
}
