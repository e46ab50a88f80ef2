// global_norm.cu — twin of llmc/global_norm.cuh: the global gradient norm (fp64 partial sums of a fixed
// grid, then one block in a fixed order) against the CPU engine's sum_squares (llmc/t5_cpu.h), at
// several sizes, bit-identical twice, then a benchmark (L2 flushed, CUDA events, GB/s).
// Variants: 1 = llmc/global_norm.cuh.
//   make -C dev/cuda global_norm && ./dev/cuda/global_norm      (run from the repository root)
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_f, compare, bench_ms
#include "llmc/t5_cpu.h"          // defines: t5cpu_sum_squares
#include "llmc/global_norm.cuh"   // defines: global_norm, NORM_BLOCKS

// both sums are fp64 in different orders (≤ n·2^-53 relative apart), rounded once to fp32 at the end:
// they differ by at most one fp32 ulp (6e-8 relative)
#define TOL_NORM 1.2e-7f

static void check_size(size_t n) {
    printf("n=%zu\n", n);
    float* g = host_normal(n, 7 + n, 1e-3f);
    float* d_g = upload_f(g, n);
    float *d_norm = cuda_alloc<float>(1), *d_norm2 = cuda_alloc<float>(1);
    double* d_partial = cuda_alloc<double>(NORM_BLOCKS);
    global_norm(d_norm, d_partial, d_g, n, 0);
    global_norm(d_norm2, d_partial, d_g, n, 0);
    float got, got2, want = (float)sqrt(t5cpu_sum_squares(g, n));
    cudaCheck(cudaMemcpy(&got, d_norm, sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(&got2, d_norm2, sizeof(float), cudaMemcpyDeviceToHost));
    compare("norm", &got, &want, 1, TOL_NORM);
    printf("  %-56s %s\n", "twice: bit-identical", got == got2 ? "OK" : "FAIL");
    if (got == got2) g_pass++; else g_fail++;
    if (n >= ((size_t)1 << 24)) {
        float ms = bench_ms([&] { global_norm(d_norm, d_partial, d_g, n, 0); }, 20);
        printf("  bench %.3f ms (%.0f GB/s)\n", ms, n * 4.0 / ms / 1e6);
    }
    free(g);
    cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_norm)); cudaCheck(cudaFree(d_norm2)); cudaCheck(cudaFree(d_partial));
}

int main(void) {
    size_t sizes[] = { 1, 1000, 262145, 1000003, 100000007 }; // the last: 400 MB, a bandwidth test
    for (int i = 0; i < 5; i++) check_size(sizes[i]);
    return finish("global_norm");
}
