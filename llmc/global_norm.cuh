// global_norm.cuh — the global L2 norm of all gradients (torch.nn.utils.clip_grad_norm_'s norm).
// fp64 accumulation; a fixed grid writes one partial per block, and one block sums them in a fixed
// order, so the norm is bit-identical run to run. The result stays on the device.
#ifndef T5_GLOBAL_NORM_CUH
#define T5_GLOBAL_NORM_CUH

#include "cuda_common.cuh"  // defines: warp_sum_double, cudaCheck

#define NORM_BLOCKS 1024

__global__ void global_norm_partial_kernel(double* partial, const float* g, size_t n) {
    __shared__ double part[32];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += (double)g[i] * g[i];
    s = warp_sum_double(s);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double all = 0.0;
        for (int w = 0; w < (int)blockDim.x / 32; w++) all += part[w];
        partial[blockIdx.x] = all;
    }
}

__global__ void global_norm_final_kernel(float* norm, const double* partial) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s = 0.0;
    for (int k = 0; k < NORM_BLOCKS; k++) s += partial[k];
    *norm = (float)sqrt(s);
}

// partial: NORM_BLOCKS doubles of scratch; *norm (device) = sqrt(Σ g²)
static inline void global_norm(float* norm, double* partial, const float* g, size_t n, cudaStream_t stream) {
    global_norm_partial_kernel<<<NORM_BLOCKS, 256, 0, stream>>>(partial, g, n);
    cudaCheckLaunch();
    global_norm_final_kernel<<<1, 32, 0, stream>>>(norm, partial);
    cudaCheckLaunch();
}

#endif // T5_GLOBAL_NORM_CUH
