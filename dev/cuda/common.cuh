// common.cuh — what every kernel twin in dev/cuda needs: random inputs, a comparison that prints
// what it compared, and a benchmark that flushes L2 and times with CUDA events.
#ifndef DEV_CUDA_COMMON_CUH
#define DEV_CUDA_COMMON_CUH

#include <stdio.h>                // defines: printf
#include <stdlib.h>               // defines: malloc, free
#include <math.h>                 // defines: fabs
#include "llmc/utils.h"           // defines: mallocCheck
#include "llmc/rng.h"             // defines: Rng, rng_init, rng_normal
#include "llmc/cuda_common.cuh"   // defines: floatX, cudaCheck, cuda_alloc

static int g_fail = 0, g_pass = 0;

static float* host_normal(size_t n, uint64_t seed, float std) {
    float* h = (float*)mallocCheck(n * sizeof(float));
    Rng r;
    rng_init(&r, seed);
    for (size_t i = 0; i < n; i++) h[i] = std * rng_normal(&r);
    return h;
}

// fp32 host values rounded to floatX (what the kernel sees), back as fp32 for the CPU reference
__global__ void to_floatx_kernel(floatX* dst, const float* src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) dst[i] = from_float<floatX>(src[i]);
}
__global__ void from_floatx_kernel(float* dst, const floatX* src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) dst[i] = to_float(src[i]);
}

// device floatX copy of h; h itself is replaced by the rounded values
static floatX* upload_x(float* h, size_t n) {
    float* d = cuda_alloc<float>(n);
    floatX* x = cuda_alloc<floatX>(n);
    cudaCheck(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    to_floatx_kernel<<<256, 256>>>(x, d, n);
    from_floatx_kernel<<<256, 256>>>(d, x, n);
    cudaCheck(cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaFree(d));
    return x;
}

static float* upload_f(const float* h, size_t n) {
    float* d = cuda_alloc<float>(n);
    cudaCheck(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

static float* download_x(const floatX* x, size_t n) {
    float* d = cuda_alloc<float>(n);
    from_floatx_kernel<<<256, 256>>>(d, x, n);
    float* h = (float*)mallocCheck(n * sizeof(float));
    cudaCheck(cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaFree(d));
    return h;
}

static float* download_f(const float* d, size_t n) {
    float* h = (float*)mallocCheck(n * sizeof(float));
    cudaCheck(cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
}

// max |got − want| relative to max |want|
static void compare(const char* name, const float* got, const float* want, size_t n, float tol) {
    double maxabs = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(want[i]));
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= maxabs)) maxabs = isnan(d) ? INFINITY : d;
    }
    double rel = maxabs / (scale > 0 ? scale : 1.0);
    int ok = rel <= tol;
    printf("  %-56s max rel %.2e  tol %.0e  %s\n", name, rel, (double)tol, ok ? "OK" : "FAIL");
    if (ok) g_pass++; else g_fail++;
}

// bf16 inputs are rounded before both sides see them; outputs stored in bf16 carry 2^-9 relative
#ifdef ENABLE_FP32
#define TOL_X 1e-5f
#else
#define TOL_X 1e-2f
#endif

// mean time of `reps` calls of fn(), L2 flushed (a 256 MiB memset) before each, CUDA events around it
template <typename F> static float bench_ms(F fn, int reps) {
    size_t flush_n = (size_t)256 << 20;
    char* flush = cuda_alloc<char>(flush_n);
    cudaEvent_t a, b;
    cudaCheck(cudaEventCreate(&a)); cudaCheck(cudaEventCreate(&b));
    float total = 0.0f;
    for (int r = 0; r < reps; r++) {
        cudaCheck(cudaMemset(flush, r, flush_n));
        cudaCheck(cudaEventRecord(a));
        fn();
        cudaCheck(cudaEventRecord(b));
        cudaCheck(cudaEventSynchronize(b));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, a, b));
        total += ms;
    }
    cudaCheck(cudaEventDestroy(a)); cudaCheck(cudaEventDestroy(b)); cudaCheck(cudaFree(flush));
    return total / reps;
}

static int finish(const char* what) {
    printf("%s: %d passed, %d failed\n", what, g_pass, g_fail);
    return g_fail ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif // DEV_CUDA_COMMON_CUH
