// rmsnorm.cu — twin of llmc/rmsnorm.cuh: the fused residual add + RMSNorm forward and its backward
// against the CPU engine's rmsnorm_forward / rmsnorm_backward (llmc/t5_cpu.h), at several sizes,
// then a benchmark (L2 flushed, CUDA events, GB/s).
// Variants: 1 = llmc/rmsnorm.cuh (one warp per row; weight gradient by fixed row chunks).
//   make -C dev/cuda rmsnorm && ./dev/cuda/rmsnorm      (run from the repository root)
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_x, compare, bench_ms
#include "llmc/t5_cpu.h"          // defines: t5cpu_rmsnorm_forward, t5cpu_rmsnorm_backward
#include "llmc/rmsnorm.cuh"       // defines: residual_rmsnorm_forward, rmsnorm_backward

static void check_size(int N, int C) {
    size_t n = (size_t)N * C;
    printf("N=%d C=%d\n", N, C);
    float *res = host_normal(n, 1, 1.0f), *sub = host_normal(n, 2, 1.0f), *w = host_normal(C, 3, 1.0f);
    float *dout = host_normal(n, 4, 1.0f), *dres0 = host_normal(n, 5, 1.0f);
    float *d_res = upload_f(res, n), *d_sub = upload_f(sub, n), *d_w = upload_f(w, C), *d_dout = upload_f(dout, n);
    float *d_out_res = cuda_alloc<float>(n), *d_rstd = cuda_alloc<float>(N), *d_dres = upload_f(dres0, n);
    float *d_dw = cuda_alloc<float>(C), *d_part = cuda_alloc<float>((size_t)RMSNORM_CHUNKS * C);
    floatX* d_ln = cuda_alloc<floatX>(n);
    cudaCheck(cudaMemset(d_dw, 0, C * sizeof(float)));
    DropSite none = { 0.0f, 0, 0, NULL };
    RmsNormForward f = { d_out_res, d_res, d_sub, none, d_ln, d_rstd, d_w, none, 1.0f, 1e-6f, N, C };
    residual_rmsnorm_forward(&f, 0);
    // CPU: x = res + sub, then the norm
    float *x = (float*)mallocCheck(n * sizeof(float)), *ln = (float*)mallocCheck(n * sizeof(float));
    float* rstd = (float*)mallocCheck(N * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = res[i] + sub[i];
    t5cpu_rmsnorm_forward(ln, rstd, x, w, N, C, 1e-6f);
    float* g_x = download_f(d_out_res, n);
    compare("forward: residual sum (fp32)", g_x, x, n, 1e-6f);
    float* g_ln = download_x(d_ln, n);
    compare("forward: normed output", g_ln, ln, n, TOL_X);
    float* g_rstd = download_f(d_rstd, N);
    compare("forward: rstd", g_rstd, rstd, N, 1e-5f);
    RmsNormBackward b = { d_dres, 1, NULL, none, d_dw, d_part, d_dout, 1.0f, none, d_out_res, d_w, d_rstd, N, C };
    rmsnorm_backward(&b, 0);
    float* dw = (float*)calloc(C, sizeof(float));
    t5cpu_rmsnorm_backward(dres0, dw, dout, x, w, rstd, N, C);
    float* g_dres = download_f(d_dres, n);
    compare("backward: dres (accumulated)", g_dres, dres0, n, 1e-5f);
    float* g_dw = download_f(d_dw, C);
    compare("backward: dweight", g_dw, dw, C, 1e-4f);
    if (N * C >= 1 << 20) {
        float fms = bench_ms([&] { residual_rmsnorm_forward(&f, 0); }, 20);
        float bms = bench_ms([&] { rmsnorm_backward(&b, 0); }, 20);
        double fbytes = n * (3.0 * 4 + sizeof(floatX)), bbytes = n * 4.0 * 5;
        printf("  bench forward %.3f ms (%.0f GB/s), backward %.3f ms (%.0f GB/s)\n", fms, fbytes / fms / 1e6, bms,
               bbytes / bms / 1e6);
    }
    free(res); free(sub); free(w); free(dout); free(dres0); free(x); free(ln); free(rstd); free(dw);
    free(g_x); free(g_ln); free(g_rstd); free(g_dres); free(g_dw);
    cudaCheck(cudaFree(d_res)); cudaCheck(cudaFree(d_sub)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_dout));
    cudaCheck(cudaFree(d_out_res)); cudaCheck(cudaFree(d_rstd)); cudaCheck(cudaFree(d_dres)); cudaCheck(cudaFree(d_dw));
    cudaCheck(cudaFree(d_part)); cudaCheck(cudaFree(d_ln));
}

int main(void) {
    int sizes[][2] = { {7, 24}, {300, 512}, {1000, 1000}, {8192, 768} };
    for (int i = 0; i < 4; i++) check_size(sizes[i][0], sizes[i][1]);
    return finish("rmsnorm");
}
