// cuda_common.cuh — what every CUDA kernel file needs: checked CUDA calls, the activation type
// floatX (bf16, or fp32 under PRECISION=FP32), conversions, warp/block reductions, the dropout hash.
//
// Precision (the whole CUDA trainer):
//   master weights, gradients, AdamW moments, residual streams: fp32
//   weights used by the matmuls, matmul inputs (normed activations, attention, FFN): floatX
//   every reduction (RMSNorm statistics, softmax, loss, norms) accumulates in fp32 (or fp64)
//   fp32 → bf16 conversions round to nearest even (__float2bfloat16_rn)
#ifndef T5_CUDA_COMMON_H
#define T5_CUDA_COMMON_H

#include <stdio.h>          // defines: fprintf
#include <stdlib.h>         // defines: exit
#include <stdint.h>         // defines: uint64_t, uint32_t
#include <cuda_runtime.h>   // defines: cudaError_t, cudaMalloc, cudaMemcpyAsync, cudaStream_t
#include <cuda_bf16.h>      // defines: __nv_bfloat16, __float2bfloat16_rn, __bfloat162float

// ----------------------------------------------------------------------------
// checked calls: print the statement, file and line, then exit (program code only)

// While a CUDA graph is being captured (graph_capture_launch of llmc/graphs.cuh sets `on`), a checked call that
// fails does not stop the program: the first failure is kept, the capture (invalid from then on) runs to
// its end, and the step runs again eagerly, where a call that still fails stops the program as below.
// One per translation unit: the one that captures is the one whose checks it needs to soften.
typedef struct { int on, failed; char first[512]; } CaptureErrors;
static CaptureErrors g_capture_errors;

static inline int capture_soft_fail(const char* kind, const char* msg, const char* what, const char* file, int line) {
    if (!g_capture_errors.on) return 0;
    if (!g_capture_errors.failed)
        snprintf(g_capture_errors.first, sizeof(g_capture_errors.first), "%s error %s in %s at %s:%d", kind, msg, what, file, line);
    g_capture_errors.failed = 1;
    return 1;
}

// during a capture: 1 when stream s is not (any longer) part of a valid capture, so work queued on it would
// run eagerly or fail; marks the capture failed (graph_capture_launch then reruns the body eagerly)
static inline int capture_broken(cudaStream_t s) {
    if (!g_capture_errors.on) return 0;
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (!g_capture_errors.failed && cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusActive) return 0;
    g_capture_errors.failed = 1;
    return 1;
}

static inline void cuda_check(cudaError_t e, const char* what, const char* file, int line) {
    if (e == cudaSuccess) return;
    if (capture_soft_fail("CUDA", cudaGetErrorString(e), what, file, line)) return;
    fprintf(stderr, "CUDA error: %s\n  in %s\n  at %s:%d\n", cudaGetErrorString(e), what, file, line);
    exit(EXIT_FAILURE);
}
#define cudaCheck(call) cuda_check((call), #call, __FILE__, __LINE__)
// after a kernel launch: catches bad launch configurations at once (no synchronisation)
#define cudaCheckLaunch() cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

// ----------------------------------------------------------------------------
// the activation type

#ifdef ENABLE_FP32
typedef float floatX;
#define PRECISION_NAME "fp32"
#else
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "bf16 (fp32 master weights)"
#endif

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
// store a float into T: bf16 rounds to nearest even
template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// ----------------------------------------------------------------------------
// reductions: warp shuffles, then one value per warp through shared memory. The order of the
// additions is fixed by the thread layout, so results are bit-identical run to run.

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double warp_sum_double(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// block-wide sum or max (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the trailing barrier allows reuse right away.
__device__ __forceinline__ float block_reduce(float v, float* scratch, bool is_max) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = is_max ? warp_max(v) : warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < nwarps ? scratch[lane] : (is_max ? -INFINITY : 0.0f);
    r = is_max ? warp_max(r) : warp_sum(r);
    __syncthreads();
    return r;
}

// ----------------------------------------------------------------------------
// dropout: the device twin of llmc/rng.h dropout_keep (same splitmix64 hash of (seed, site, index)),
// so a CUDA run draws exactly the CPU engine's masks. test_t5cu compares the two bit for bit.

__device__ __forceinline__ uint64_t mix64_dev(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ bool dropout_keep_dev(uint64_t seed, uint32_t site, uint64_t index, float p) {
    uint64_t h = mix64_dev(seed ^ mix64_dev(((uint64_t)site << 48) ^ index));
    return (float)(h >> 40) * (1.0f / 16777216.0f) >= p;
}

// one dropout site of a forward/backward pair; p = 0 is the identity. The seed is `seed`, or, when
// seed_dev is set, the value there: the trainer keeps each micro-batch's seed in device memory, so a
// step captured once as a CUDA graph draws new masks on every replay (train_t5.cu, StepDev)
typedef struct { float p; uint64_t seed; uint32_t site; const uint64_t* seed_dev; } DropSite;

// the site with its seed read (kernels that apply a site in a loop read it once)
__device__ __forceinline__ DropSite dropout_resolve(DropSite d) {
    if (d.p != 0.0f && d.seed_dev) { d.seed = *d.seed_dev; d.seed_dev = NULL; }
    return d;
}

// x · keep / (1-p), computed as the CPU engine does (x * (1/(1-p))) so fp32 results agree
__device__ __forceinline__ float dropout_apply_dev(float x, DropSite d, uint64_t index) {
    if (d.p == 0.0f) return x;
    uint64_t seed = d.seed_dev ? *d.seed_dev : d.seed;
    return dropout_keep_dev(seed, d.site, index, d.p) ? x * (1.0f / (1.0f - d.p)) : 0.0f;
}

// ----------------------------------------------------------------------------
// device memory

template <typename T> static T* cuda_alloc(size_t n) {
    void* p = NULL;
    cudaCheck(cudaMalloc(&p, (n == 0 ? 1 : n) * sizeof(T)));
    return (T*)p;
}

#endif // T5_CUDA_COMMON_H
