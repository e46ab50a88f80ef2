// crossentropy.cu — twin of llmc/crossentropy.cuh: the fused softmax + cross-entropy + dlogits with
// ignore index -100 against the CPU engine's crossentropy_forward / _backward (llmc/t5_cpu.h), at
// several sizes, then a benchmark (L2 flushed, CUDA events, GB/s).
// Variants: 1 = llmc/crossentropy.cuh (one 1024-thread block per row, three passes over the row).
//   make -C dev/cuda crossentropy && ./dev/cuda/crossentropy      (run from the repository root)
#include <string.h>                // defines: memcmp
#include "dev/cuda/common.cuh"     // defines: host_normal, upload_x, compare, bench_ms
#include "llmc/t5_cpu.h"           // defines: t5cpu_crossentropy, t5cpu_crossentropy_backward
#include "llmc/crossentropy.cuh"   // defines: crossentropy_forward_backward

static void check(int N, int V) {
    printf("N=%d V=%d\n", N, V);
    size_t n = (size_t)N * V;
    float* logits = host_normal(n, 1, 3.0f);
    int* labels = (int*)mallocCheck(N * sizeof(int));
    for (int t = 0; t < N; t++) labels[t] = t % 5 == 4 ? -100 : (t * 7919) % V; // every 5th ignored
    floatX* d_logits = upload_x(logits, n);
    int* d_labels = cuda_alloc<int>(N);
    cudaCheck(cudaMemcpy(d_labels, labels, N * sizeof(int), cudaMemcpyHostToDevice));
    float* d_losses = cuda_alloc<float>(N);
    double* d_sum = cuda_alloc<double>(2);
    cudaCheck(cudaMemset(d_sum, 0, 2 * sizeof(double)));
    float* losses = (float*)mallocCheck(N * sizeof(float));
    int counted = t5cpu_crossentropy(losses, logits, labels, N, V);
    float scale = 1.0f / counted;
    floatX* d_logits2 = cuda_alloc<floatX>(n); // the same logits, for the run with the scale in device memory
    cudaCheck(cudaMemcpy(d_logits2, d_logits, n * sizeof(floatX), cudaMemcpyDeviceToDevice));
    crossentropy_forward_backward(d_logits, d_losses, d_sum, d_labels, N, V, scale, NULL, 0);
    t5cpu_crossentropy_backward(logits, labels, N, V, scale);
    float *g_losses = download_f(d_losses, N), *g_d = download_x(d_logits, n);
    compare("per-token losses", g_losses, losses, N, 1e-5f);
    compare("dlogits", g_d, logits, n, TOL_X);
    // as a CUDA graph replays it: the scale read from device memory, the same bits
    float* d_scale = upload_f(&scale, 1);
    crossentropy_forward_backward(d_logits2, d_losses, d_sum, d_labels, N, V, 0.0f, d_scale, 0);
    float* g_d2 = download_x(d_logits2, n);
    int same = memcmp(g_d2, g_d, n * sizeof(float)) == 0;
    printf("  %-56s %s\n", "dlogits, scale in device memory: bit-identical", same ? "OK" : "FAIL");
    if (same) g_pass++; else g_fail++;
    free(g_d2);
    cudaCheck(cudaFree(d_logits2)); cudaCheck(cudaFree(d_scale));
    if (n >= (1 << 24)) {
        float ms = bench_ms([&] { crossentropy_forward_backward(d_logits, d_losses, d_sum, d_labels, N, V, scale, NULL, 0); }, 10);
        printf("  bench %.3f ms (%.0f GB/s: 4 passes over the logits)\n", ms, 4.0 * n * sizeof(floatX) / ms / 1e6);
    }
    free(logits); free(labels); free(losses); free(g_losses); free(g_d);
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_labels)); cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_sum));
}

int main(void) {
    check(10, 37);
    check(64, 1000);
    check(1024, 32128);
    return finish("crossentropy");
}
