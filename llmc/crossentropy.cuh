// crossentropy.cuh — the fused loss at the head: softmax + cross-entropy + dlogits in one pass over
// each row of logits, ignore index -100, the probabilities never written as a matrix.
//
//   losses[t]  = logsumexp(logits_t) − logits_t[y_t]            (0 on ignored tokens)
//   dlogits_t  = (softmax(logits_t) − onehot(y_t)) · scale       written over logits_t when scale ≠ 0
//                (0 on ignored tokens); scale = 1 / counted tokens of the whole step
// Max, sum of exponentials and the loss are fp32; the per-token losses are summed in fixed order.
#ifndef T5_CROSSENTROPY_CUH
#define T5_CROSSENTROPY_CUH

#include "cuda_common.cuh"  // defines: floatX, block_reduce, cudaCheck

#define CE_IGNORE_INDEX (-100)

// one block per token row; the scale is `scale`, or the value at scale_dev when that is set (a step
// replayed as a CUDA graph reads its own 1 / counted there)
__global__ void crossentropy_fused_kernel(floatX* logits, float* losses, const int* labels, int V, float scale,
                                          const float* scale_dev) {
    __shared__ float scratch[32];
    if (scale_dev) scale = *scale_dev;
    int t = blockIdx.x, y = labels[t];
    floatX* x = logits + (size_t)t * V;
    if (y == CE_IGNORE_INDEX) {
        if (threadIdx.x == 0) losses[t] = 0.0f;
        if (scale != 0.0f) for (int i = threadIdx.x; i < V; i += blockDim.x) x[i] = from_float<floatX>(0.0f);
        return;
    }
    float maxv = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) maxv = fmaxf(maxv, to_float(x[i]));
    maxv = block_reduce(maxv, scratch, true);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(to_float(x[i]) - maxv);
    sum = block_reduce(sum, scratch, false);
    if (threadIdx.x == 0) losses[t] = logf(sum) + maxv - to_float(x[y]);
    if (scale == 0.0f) return;
    __syncthreads(); // every thread has read x[y] above before it is overwritten
    float inv = 1.0f / sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float p = expf(to_float(x[i]) - maxv) * inv * scale;
        x[i] = from_float<floatX>(i == y ? p - scale : p);
    }
}

// total[0] = Σ losses (fp64, one block, fixed order); total[1] += the same (a step's micro-batches)
__global__ void loss_sum_kernel(double* total, const float* losses, int N) {
    __shared__ double part[256];
    double s = 0.0;
    for (int t = threadIdx.x; t < N; t += blockDim.x) s += losses[t];
    part[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double all = 0.0;
        for (int k = 0; k < (int)blockDim.x; k++) all += part[k];
        total[0] = all;
        total[1] += all;
    }
}

// losses (N) and, when scale ≠ 0, dlogits over logits; loss_sum (2 doubles, device) as loss_sum_kernel.
// scale_dev: NULL, or where the scale is on the device (then `scale` is unused)
static inline void crossentropy_forward_backward(floatX* logits, float* losses, double* loss_sum, const int* labels,
                                                 int N, int V, float scale, const float* scale_dev, cudaStream_t stream) {
    crossentropy_fused_kernel<<<N, 1024, 0, stream>>>(logits, losses, labels, V, scale, scale_dev);
    cudaCheckLaunch();
    loss_sum_kernel<<<1, 256, 0, stream>>>(loss_sum, losses, N);
    cudaCheckLaunch();
}

#endif // T5_CROSSENTROPY_CUH
