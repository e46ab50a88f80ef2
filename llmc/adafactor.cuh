// adafactor.cuh — Adafactor with transformers' semantics (llmc/adafactor.h holds the rules and the host
// reference) on one fp32 tensor on the device, then the floatX copy the matmuls read (fp32 → bf16 rounds
// to nearest even). The scalar rules are adafactor.h's own functions compiled for the device; sums are in
// double with an order fixed by the launch shapes, so a step is bit-identical run to run.
//
// A tensor (rows, cols), its state laid out as in adafactor.h ([R | C | M] factored, [V | M] not), in
// stream order (G = (gscale·g)² + eps1):
//   factored    adafactor_rows_kernel      R_i ← β2t·R_i + (1−β2t)·mean_j G_ij            a warp per row
//               adafactor_colpart_kernel   Σ_i G_ij over one chunk of rows                  32 columns × a chunk per block
//               adafactor_cols_kernel      C_j ← β2t·C_j + (1−β2t)·mean_i G_ij;  cf_j = rsqrt(C_j)
//               adafactor_rowmean_kernel   mean(R);  rf_i = rsqrt(R_i / mean(R))            one block
//   both        adafactor_sums_kernel      Σp² and Σu² per block, u = rf_i·cf_j·g  (unfactored: V ← β2t·V +
//                                          (1−β2t)·G first, u = rsqrt(V)·g)
//               adafactor_scalars_kernel   RMS(p) → lr_t and the decay's alpha; RMS(u) → the clip divisor
//               adafactor_apply_kernel     u ← u / div · lr_t (→ M with β1);  p ← p + alpha·p − u;  px ← floatX(p)
// The step's values (AdafactorStep: rel_step, β2t, ...) come by value, or (sd set) from device memory, so a
// step captured once as a CUDA graph replays with each step's values; lr_t and the divisor are computed on
// the device from the two RMS, never read back by the host.
#ifndef T5_ADAFACTOR_CUH
#define T5_ADAFACTOR_CUH

#include "cuda_common.cuh"  // defines: floatX, from_float, warp_sum_double, cudaCheck, cudaCheckLaunch, cuda_alloc, CEIL_DIV
#include "adafactor.h"      // defines: AdafactorStep, AdafactorLr, adafactor_rms, adafactor_lr, adafactor_clip_div, adafactor_ema, adafactor_apply

#define ADAFACTOR_BLOCKS 512  // blocks of the sums kernel: one partial Σp², Σu² each
#define ADAFACTOR_CHUNKS 32   // at most this many row chunks in the column sums

// per-tensor values the kernels hand on to each other, in AdafactorScratch.scal
enum { AF_ROW_MEAN, AF_LR, AF_DECAY_ALPHA, AF_CLIP_DIV, AF_PARAM_RMS, AF_UPDATE_RMS, AF_NUM_SCALARS };

// device scratch for the update of one tensor at a time, sized for the largest (rows, cols) updated
typedef struct {
    double* partial;  // 2·ADAFACTOR_BLOCKS: Σp² per block, then Σu² per block
    double* colpart;  // ADAFACTOR_CHUNKS·max_cols: column sums per row chunk
    float* rf;        // max_rows: rsqrt(R_i / mean(R))
    float* cf;        // max_cols: rsqrt(C_j)
    float* scal;      // AF_NUM_SCALARS
    int max_rows, max_cols;
} AdafactorScratch;

static inline void adafactor_scratch_create(AdafactorScratch* w, int max_rows, int max_cols) {
    w->max_rows = max_rows; w->max_cols = max_cols;
    w->partial = cuda_alloc<double>(2 * ADAFACTOR_BLOCKS);
    w->colpart = cuda_alloc<double>((size_t)ADAFACTOR_CHUNKS * max_cols);
    w->rf = cuda_alloc<float>(max_rows);
    w->cf = cuda_alloc<float>(max_cols);
    w->scal = cuda_alloc<float>(AF_NUM_SCALARS);
}

static inline void adafactor_scratch_free(AdafactorScratch* w) {
    cudaCheck(cudaFree(w->partial)); cudaCheck(cudaFree(w->colpart)); cudaCheck(cudaFree(w->rf));
    cudaCheck(cudaFree(w->cf)); cudaCheck(cudaFree(w->scal));
}

// G = (gscale·g)² + eps1, each product rounded to fp32 (grad**2 + eps1)
__device__ __forceinline__ float adafactor_g2(float g, const AdafactorStep& s) {
    float gi = g * s.gscale;
    return gi * gi + s.eps1;
}

// block-wide double sum (blockDim.x a multiple of 32); the result in thread 0
__device__ __forceinline__ double adafactor_block_sum(double v, double* scratch32) {
    v = warp_sum_double(v);
    if (threadIdx.x % 32 == 0) scratch32[threadIdx.x / 32] = v;
    __syncthreads();
    double all = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < (int)blockDim.x / 32; w++) all += scratch32[w];
    __syncthreads();
    return all;
}

// R_i ← β2t·R_i + (1−β2t)·mean_j G_ij, one warp per row
__global__ void adafactor_rows_kernel(float* R, const float* g, int rows, int cols, AdafactorStep s, const AdafactorStep* sd) {
    if (sd) s = *sd;
    if (s.skip) return;
    int i = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (i >= rows) return;
    const float* gr = g + (size_t)i * cols;
    double acc = 0.0;
    for (int j = lane; j < cols; j += 32) acc += (double)adafactor_g2(gr[j], s);
    acc = warp_sum_double(acc);
    if (lane == 0) R[i] = adafactor_ema(R[i], (float)acc / (float)cols, s.beta2t, s.one_minus_beta2t);
}

// colpart[c·cols + j] = Σ_{i in chunk c} G_ij; block (32, 8): 32 columns, 8 row lanes
__global__ void adafactor_colpart_kernel(double* colpart, const float* g, int rows, int cols, int rows_per_chunk,
                                         AdafactorStep s, const AdafactorStep* sd) {
    if (sd) s = *sd;
    if (s.skip) return;
    __shared__ double part[8][32];
    int j = blockIdx.x * 32 + threadIdx.x, c = blockIdx.y;
    int r0 = c * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
    double acc = 0.0;
    if (j < cols)
        for (int i = r0 + threadIdx.y; i < r1; i += 8) acc += (double)adafactor_g2(g[(size_t)i * cols + j], s);
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        double all = 0.0;
        for (int y = 0; y < 8; y++) all += part[y][threadIdx.x];
        colpart[(size_t)c * cols + j] = all;
    }
}

// C_j ← β2t·C_j + (1−β2t)·mean_i G_ij (the chunks summed in order);  cf_j = rsqrt(C_j)
__global__ void adafactor_cols_kernel(float* C, float* cf, const double* colpart, int rows, int cols, int chunks,
                                      AdafactorStep s, const AdafactorStep* sd) {
    if (sd) s = *sd;
    if (s.skip) return;
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    double acc = 0.0;
    for (int c = 0; c < chunks; c++) acc += colpart[(size_t)c * cols + j];
    float cj = adafactor_ema(C[j], (float)acc / (float)rows, s.beta2t, s.one_minus_beta2t);
    C[j] = cj;
    cf[j] = 1.0f / sqrtf(cj);
}

// mean(R), then rf_i = rsqrt(R_i / mean(R)) (transformers' _approx_sq_grad row factor); one block
__global__ void adafactor_rowmean_kernel(float* rf, float* scal, const float* R, int rows, AdafactorStep s,
                                         const AdafactorStep* sd) {
    if (sd) s = *sd;
    if (s.skip) return;
    __shared__ double scratch[32];
    __shared__ float mean;
    double acc = 0.0;
    for (int i = threadIdx.x; i < rows; i += blockDim.x) acc += R[i];
    acc = adafactor_block_sum(acc, scratch);
    if (threadIdx.x == 0) { mean = (float)acc / (float)rows; scal[AF_ROW_MEAN] = mean; }
    __syncthreads();
    for (int i = threadIdx.x; i < rows; i += blockDim.x) rf[i] = 1.0f / sqrtf(R[i] / mean);
}

// the raw update of element k (row i, column j): rf_i·cf_j·g (factored) or rsqrt(V_k)·g
__device__ __forceinline__ float adafactor_raw(const float* g, const float* V, const float* rf, const float* cf, size_t k,
                                               int i, int j, int factored, const AdafactorStep& s) {
    float gi = g[k] * s.gscale;
    return factored ? (rf[i] * cf[j]) * gi : (1.0f / sqrtf(V[k])) * gi;
}

// partial[b] = Σp², partial[B + b] = Σu² over block b's elements (unfactored: V updated first). Factored:
// block b takes rows b, b + B, ...; unfactored: a grid-stride loop over the elements
__global__ void adafactor_sums_kernel(double* partial, const float* p, const float* g, float* V, const float* rf,
                                      const float* cf, int rows, int cols, int factored, AdafactorStep s,
                                      const AdafactorStep* sd) {
    if (sd) s = *sd;
    if (s.skip) return;
    __shared__ double scratch[32];
    double sp = 0.0, su = 0.0;
    if (factored) {
        for (int i = blockIdx.x; i < rows; i += gridDim.x)
            for (int j = threadIdx.x; j < cols; j += blockDim.x) {
                size_t k = (size_t)i * cols + j;
                float u = adafactor_raw(g, V, rf, cf, k, i, j, 1, s);
                sp += (double)p[k] * p[k];
                su += (double)u * u;
            }
    } else {
        size_t n = (size_t)rows * cols;
        for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x) {
            V[k] = adafactor_ema(V[k], adafactor_g2(g[k], s), s.beta2t, s.one_minus_beta2t);
            float u = adafactor_raw(g, V, rf, cf, k, 0, 0, 0, s);
            sp += (double)p[k] * p[k];
            su += (double)u * u;
        }
    }
    sp = adafactor_block_sum(sp, scratch);
    su = adafactor_block_sum(su, scratch);
    if (threadIdx.x == 0) { partial[blockIdx.x] = sp; partial[gridDim.x + blockIdx.x] = su; }
}

// RMS(p) → lr_t and −wd·lr_t; RMS(u) → the clip divisor (one warp: the partials in a fixed order)
__global__ void adafactor_scalars_kernel(float* scal, const double* partial, size_t n, AdafactorStep s, const AdafactorStep* sd) {
    if (sd) s = *sd;
    if (s.skip) return;
    double sp = 0.0, su = 0.0;
    for (int b = threadIdx.x; b < ADAFACTOR_BLOCKS; b += 32) { sp += partial[b]; su += partial[ADAFACTOR_BLOCKS + b]; }
    sp = warp_sum_double(sp);
    su = warp_sum_double(su);
    if (threadIdx.x != 0) return;
    float prms = adafactor_rms(sp, n), urms = adafactor_rms(su, n);
    AdafactorLr L = adafactor_lr(&s, prms);
    scal[AF_PARAM_RMS] = prms; scal[AF_UPDATE_RMS] = urms;
    scal[AF_LR] = L.lr; scal[AF_DECAY_ALPHA] = L.decay_alpha;
    scal[AF_CLIP_DIV] = adafactor_clip_div(&s, urms);
}

// p ← p + alpha·p − (u / div · lr_t, or its average M);  px ← floatX(p)
__global__ void adafactor_apply_kernel(float* p, floatX* px, const float* g, const float* V, float* M, const float* rf,
                                       const float* cf, const float* scal, int rows, int cols, int factored,
                                       AdafactorStep s, const AdafactorStep* sd) {
    if (sd) s = *sd;
    if (s.skip) return;
    AdafactorLr L = { scal[AF_LR], scal[AF_DECAY_ALPHA] };
    float div = scal[AF_CLIP_DIV];
    if (factored) { // block b takes rows b, b + grid, ... (i and j from the loops, no division per element)
        for (int i = blockIdx.x; i < rows; i += gridDim.x)
            for (int j = threadIdx.x; j < cols; j += blockDim.x) {
                size_t k = (size_t)i * cols + j;
                float u = adafactor_raw(g, V, rf, cf, k, i, j, 1, s);
                float pk = adafactor_apply(p[k], u, s.has_beta1 ? &M[k] : NULL, &s, L, div);
                p[k] = pk;
                if ((void*)px != (void*)p) px[k] = from_float<floatX>(pk);
            }
        return;
    }
    size_t n = (size_t)rows * cols;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x) {
        float u = adafactor_raw(g, V, rf, cf, k, 0, 0, 0, s);
        float pk = adafactor_apply(p[k], u, s.has_beta1 ? &M[k] : NULL, &s, L, div);
        p[k] = pk;
        if ((void*)px != (void*)p) px[k] = from_float<floatX>(pk);
    }
}

// row chunks of the column sums for a tensor of `rows` rows (a fixed function of the shape)
static inline int adafactor_col_chunks(int rows) {
    int c = CEIL_DIV(rows, 64);
    return c < 1 ? 1 : (c > ADAFACTOR_CHUNKS ? ADAFACTOR_CHUNKS : c);
}

// one update of tensor p (rows, cols) (factored: a matrix in Hugging Face; 0: a vector) with gradient g and
// its state (adafactor.h's layout); px: its floatX copy (may alias p in the fp32 build); s: the step's values
// (adafactor_step_values), or sd: the same in device memory (then s is unused); w: scratch that fits the shape
static inline void adafactor_update(float* p, floatX* px, const float* g, float* state, int rows, int cols, int factored,
                                    AdafactorStep s, const AdafactorStep* sd, AdafactorScratch* w, cudaStream_t stream) {
    size_t n = (size_t)rows * cols;
    if (n == 0) return;
    if (factored && (rows > w->max_rows || cols > w->max_cols)) {
        fprintf(stderr, "adafactor_update: a (%d, %d) tensor does not fit scratch made for (%d, %d)\n", rows, cols,
                w->max_rows, w->max_cols);
        exit(EXIT_FAILURE);
    }
    // M: where the first moment is when the step's has_beta1 is set (the kernels read that flag, which may
    // live on the device; without β1 the state ends before M and M is never touched)
    float *R = state, *C = state + rows, *V = state, *M = state + (factored ? (size_t)rows + cols : n);
    if (factored) {
        int chunks = adafactor_col_chunks(rows);
        adafactor_rows_kernel<<<CEIL_DIV(rows, 8), 256, 0, stream>>>(R, g, rows, cols, s, sd);
        cudaCheckLaunch();
        adafactor_colpart_kernel<<<dim3(CEIL_DIV(cols, 32), chunks), dim3(32, 8), 0, stream>>>(
            w->colpart, g, rows, cols, CEIL_DIV(rows, chunks), s, sd);
        cudaCheckLaunch();
        adafactor_cols_kernel<<<CEIL_DIV(cols, 256), 256, 0, stream>>>(C, w->cf, w->colpart, rows, cols, chunks, s, sd);
        cudaCheckLaunch();
        adafactor_rowmean_kernel<<<1, 1024, 0, stream>>>(w->rf, w->scal, R, rows, s, sd);
        cudaCheckLaunch();
    }
    adafactor_sums_kernel<<<ADAFACTOR_BLOCKS, 256, 0, stream>>>(w->partial, p, g, V, w->rf, w->cf, rows, cols, factored, s, sd);
    cudaCheckLaunch();
    adafactor_scalars_kernel<<<1, 32, 0, stream>>>(w->scal, w->partial, n, s, sd);
    cudaCheckLaunch();
    size_t units = factored ? (size_t)rows : n / 256 + 1; // factored: whole rows per block
    unsigned blocks = (unsigned)(units < 8192 ? units : 8192);
    adafactor_apply_kernel<<<blocks, 256, 0, stream>>>(p, px, g, V, M, w->rf, w->cf, w->scal, rows, cols, factored, s, sd);
    cudaCheckLaunch();
}

#endif // T5_ADAFACTOR_CUH
