// adafactor.h — Adafactor (Shazeer & Stern, 2018) with the semantics and the fp32 order of operations of
// transformers.optimization.Adafactor, on one fp32 tensor at a time. Plain C for the host; the scalar
// rules (the step's values, the learning rate, the clipping divisor, one element's update) are also
// compiled for the device, where llmc/adafactor.cuh runs the same arithmetic.
//
// One step on a tensor p with gradient g (t = the step, counted from 1):
//   rel_step = lr                                  (relative_step off: the scheduled lr)
//            = min(warmup_init ? 1e-6·t : 1e-2, 1/sqrt(t))   (relative_step on)
//   lr_t     = rel_step · (scale_parameter ? max(eps2, RMS(p)) : 1)     RMS(p) of p BEFORE this step
//   β2t      = 1 − t^decay_rate
//   G        = g² + eps1
//   factored (ndim ≥ 2, a (rows, cols) matrix):
//     R ← β2t·R + (1−β2t)·mean_j G        (rows)      C ← β2t·C + (1−β2t)·mean_i G    (cols)
//     u_ij = rsqrt(R_i / mean(R)) · rsqrt(C_j) · g_ij
//   unfactored (vectors):  V ← β2t·V + (1−β2t)·G;  u = rsqrt(V)·g
//   u ← u / max(1, RMS(u)/clip_threshold);  u ← u·lr_t
//   β1 set:  M ← β1·M + (1−β1)·u;  u = M
//   p ← p − weight_decay·lr_t·p   (when weight_decay ≠ 0; the lr of this step, the p before the update)
//   p ← p − u
// RMS(x) = ‖x‖₂ / sqrt(numel). transformers computes in fp32 tensors with Python doubles for the scalars;
// the code below rounds each scalar to fp32 where a tensor op would, and uses fmaf where torch's
// `x.add_(y, alpha=a)` does (its vectorised kernel is a fused multiply-add). Sums are in double (torch's
// are fp32 cascades): the results agree to a few fp32 ulps, not bit for bit.
//
// The state of one tensor is ONE flat fp32 array (a checkpoint stores the concatenation over tensors):
//   factored:    [ R (rows) | C (cols) | M (rows·cols) if β1 ]
//   unfactored:  [ V (n)               | M (n)         if β1 ]
// all zero before the first step (transformers' initial state); adafactor_state_floats gives its length.
// The step count is not in it: the caller keeps one for all tensors, as transformers keeps the same
// count in every tensor's state.
//
// A model's tensors are updated one at a time, each as Hugging Face sees it: a Linear weight (out, in)
// and an embedding (V, C) are factored matrices, relative_attention_bias (num_buckets, H) too, RMSNorm
// weights (C) are vectors. Storage that stacks the layers (L, rows, cols) calls this once per layer.
//
// ZeRO-1: AdamW's state shards element by element, Adafactor's does not. R needs whole rows of g, C
// whole columns, and the clipping and the parameter scale need RMS(u) and RMS(p) over the whole tensor,
// so the state (and the update) of a tensor stays with one rank: shard by whole tensors (per layer
// slice), the owner reducing that tensor's full gradient. Splitting one tensor across ranks would need
// an all-reduce of the column sums and of the two sums of squares inside the update.
#ifndef T5_ADAFACTOR_H
#define T5_ADAFACTOR_H

#include <stddef.h>  // defines: size_t
#include <stdio.h>   // defines: snprintf
#include <math.h>    // defines: sqrt, pow, sqrtf, fmaf, isfinite
#include "utils.h"   // defines: mallocCheck

#ifdef __CUDACC__
#define ADAFACTOR_HD __host__ __device__
#else
#define ADAFACTOR_HD
#endif

// the optimizer's options, named and defaulted as transformers' Adafactor(...) arguments
typedef struct {
    int has_lr;             // 0: lr=None (allowed only with relative_step)
    double lr;              // the group's learning rate (a schedule may scale it per step)
    double eps1, eps2;      // eps=(1e-30, 1e-3): added to g²; the floor of the parameter scale
    double clip_threshold;  // 1.0: the update's RMS is clipped to this
    double decay_rate;      // -0.8: β2t = 1 − t^decay_rate
    int has_beta1;          // 0: beta1=None (no first moment)
    double beta1;
    double weight_decay;    // 0.0
    int scale_parameter;    // 1: lr_t scales with max(eps2, RMS(p))
    int relative_step;      // 1: rel_step = min(1e-2, 1/sqrt(t)) instead of lr
    int warmup_init;        // 0: 1e-6·t instead of 1e-2 above (relative_step only)
} AdafactorConfig;

// transformers' defaults: Adafactor(params)
static inline AdafactorConfig adafactor_defaults(void) {
    AdafactorConfig c = { 0, 0.0, 1e-30, 1e-3, 1.0, -0.8, 0, 0.0, 0.0, 1, 1, 0 };
    return c;
}

// the combinations transformers refuses, and values its formulas cannot take; 0, or -1 and a message
static inline int adafactor_check(const AdafactorConfig* c, char* err, size_t n) {
    const char* bad = NULL;
    // transformers' two refusals (ValueError in Adafactor.__init__)
    if (c->has_lr && c->relative_step)
        bad = "an explicit lr cannot be combined with relative_step (transformers: \"Cannot combine manual `lr` and "
              "`relative_step=True` options\"); turn relative_step off or leave lr unset";
    else if (c->warmup_init && !c->relative_step)
        bad = "warmup_init needs relative_step (transformers: \"`warmup_init=True` requires `relative_step=True`\")";
    // transformers accepts these, then fails inside step() or produces NaN
    else if (!c->has_lr && !c->relative_step)
        bad = "relative_step off needs an lr (transformers would fail at the first step: None * float)";
    else if (c->has_lr && !(c->lr >= 0.0 && isfinite(c->lr))) bad = "lr must be finite and >= 0";
    else if (!(c->eps1 >= 0.0 && isfinite(c->eps1)) || !(c->eps2 >= 0.0 && isfinite(c->eps2))) bad = "eps must be finite and >= 0";
    else if (!(c->clip_threshold > 0.0 && isfinite(c->clip_threshold))) bad = "clip_threshold must be finite and > 0";
    else if (!(c->decay_rate <= 0.0 && isfinite(c->decay_rate))) bad = "decay_rate must be finite and <= 0 (beta2t = 1 - t^decay_rate)";
    else if (c->has_beta1 && !(c->beta1 >= 0.0 && c->beta1 < 1.0)) bad = "beta1 must be in [0, 1)";
    else if (!(c->weight_decay >= 0.0 && isfinite(c->weight_decay))) bad = "weight_decay must be finite and >= 0";
    if (bad) { snprintf(err, n, "adafactor: %s", bad); return -1; }
    return 0;
}

// floats of state for one tensor viewed as (rows, cols) (see the layout above)
static inline size_t adafactor_state_floats(int rows, int cols, int factored, int has_beta1) {
    size_t n = (size_t)rows * cols;
    return (factored ? (size_t)rows + cols : n) + (has_beta1 ? n : 0);
}

// ----------------------------------------------------------------------------
// the step's values: what transformers' Python scalars become where they meet fp32 tensors. The host
// fills one per step; the GPU reads it from device memory (a CUDA graph replays with each step's values).

typedef struct {
    double rel_step;                 // _get_lr's rel_step_sz (a Python float)
    double eps2, weight_decay;       // Python floats, used in double where transformers does
    float beta2t, one_minus_beta2t;  // mul_(β2t), add_(alpha=1−β2t): each rounded to fp32 once
    float beta1, one_minus_beta1;    // the same for the first moment (has_beta1 only)
    float eps1, clip_threshold;      // as the fp32 ops see them
    float gscale;                    // multiplies g (a global-norm clipping done before the optimizer; 1 = none)
    int has_beta1, scale_parameter;
    int skip;                        // 1: nothing changes this step (a non-finite loss or norm)
} AdafactorStep;

// step t (from 1); lr: the group's lr this step (a schedule's value), unused under relative_step
static inline AdafactorStep adafactor_step_values(const AdafactorConfig* c, long long t, double lr) {
    AdafactorStep s;
    double rel = lr;
    if (c->relative_step) {
        double min_step = c->warmup_init ? 1e-6 * (double)t : 1e-2;
        double inv_sqrt = 1.0 / sqrt((double)t);
        rel = min_step < inv_sqrt ? min_step : inv_sqrt;
    }
    double beta2t = 1.0 - pow((double)t, c->decay_rate);
    s.rel_step = rel;
    s.eps2 = c->eps2;
    s.weight_decay = c->weight_decay;
    s.beta2t = (float)beta2t;
    s.one_minus_beta2t = (float)(1.0 - beta2t);
    s.beta1 = (float)c->beta1;
    s.one_minus_beta1 = (float)(1.0 - c->beta1);
    s.eps1 = (float)c->eps1;
    s.clip_threshold = (float)c->clip_threshold;
    s.gscale = 1.0f;
    s.has_beta1 = c->has_beta1;
    s.scale_parameter = c->scale_parameter;
    s.skip = 0;
    return s;
}

// RMS(x) from Σx² (double): x.norm(2) is an fp32 tensor, divided by numel**0.5 rounded to fp32
static inline ADAFACTOR_HD float adafactor_rms(double sum_sq, size_t n) {
    return (float)sqrt(sum_sq) / (float)sqrt((double)n);
}

// the lr this step and the weight decay's alpha (−wd·lr). With scale_parameter and RMS(p) above eps2,
// transformers' lr is an fp32 tensor (RMS·rel_step in fp32, then −wd·lr in fp32); otherwise a Python
// float (the products in double, rounded to fp32 where a tensor op takes them)
typedef struct { float lr, decay_alpha; } AdafactorLr;

static inline ADAFACTOR_HD AdafactorLr adafactor_lr(const AdafactorStep* s, float param_rms) {
    AdafactorLr r;
    if (s->scale_parameter && param_rms > (float)s->eps2) {
        r.lr = param_rms * (float)s->rel_step;
        r.decay_alpha = (float)(-s->weight_decay) * r.lr;
    } else {
        double lr = (s->scale_parameter ? s->eps2 : 1.0) * s->rel_step;
        r.lr = (float)lr;
        r.decay_alpha = (float)(-s->weight_decay * lr);
    }
    return r;
}

// the update's divisor: (RMS(u) / clip_threshold).clamp_(min=1)
static inline ADAFACTOR_HD float adafactor_clip_div(const AdafactorStep* s, float update_rms) {
    float d = update_rms / s->clip_threshold;
    return d > 1.0f ? d : 1.0f;
}

// β·x + (1−β)·y as x.mul_(β).add_(y, alpha=1−β)
static inline ADAFACTOR_HD float adafactor_ema(float x, float y, float beta, float one_minus_beta) {
    return fmaf(y, one_minus_beta, x * beta);
}

// the last part of one element's update, from its raw u = rsqrt(·)·g: clip, lr, first moment, decay;
// returns the new p (m: its first moment, has_beta1 only)
static inline ADAFACTOR_HD float adafactor_apply(float p, float u, float* m, const AdafactorStep* s,
                                                 AdafactorLr L, float clip_div) {
    u = u / clip_div * L.lr;
    if (s->has_beta1) { *m = adafactor_ema(*m, u, s->beta1, s->one_minus_beta1); u = *m; }
    if (s->weight_decay != 0.0) p = fmaf(p, L.decay_alpha, p);
    return p - u;
}

// ----------------------------------------------------------------------------
// the host update. Rows run in parallel (OpenMP when compiled in) for tensors of ADAFACTOR_PAR_MIN values
// or more (below that a team costs more than it saves: a T5 has hundreds of small vectors); every sum has
// a fixed order, so the results do not depend on the number of threads.
#define ADAFACTOR_PAR_MIN 65536

// Σ_j x_ij² per row i (double)
static inline void adafactor_row_sum_sq(double* out, const float* x, int rows, int cols) {
    #pragma omp parallel for schedule(static) if ((size_t)rows * cols >= ADAFACTOR_PAR_MIN)
    for (int i = 0; i < rows; i++) {
        const float* r = x + (size_t)i * cols;
        double s = 0.0;
        for (int j = 0; j < cols; j++) s += (double)r[j] * r[j];
        out[i] = s;
    }
}

static inline double adafactor_sum(const double* x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    return s;
}

// factored second moments:  R_i ← β2t·R_i + (1−β2t)·mean_j G_ij,  C_j ← β2t·C_j + (1−β2t)·mean_i G_ij,
// G = (gscale·g)² + eps1 (grad**2 + eps1, each rounded to fp32); col_acc: cols doubles of scratch
static inline void adafactor_factored_moments(float* R, float* C, const float* g, int rows, int cols,
                                              const AdafactorStep* s, double* col_acc) {
    #pragma omp parallel for schedule(static) if ((size_t)rows * cols >= ADAFACTOR_PAR_MIN)
    for (int i = 0; i < rows; i++) {
        const float* gr = g + (size_t)i * cols;
        double acc = 0.0;
        for (int j = 0; j < cols; j++) { float gi = gr[j] * s->gscale; acc += (double)(gi * gi + s->eps1); }
        R[i] = adafactor_ema(R[i], (float)acc / (float)cols, s->beta2t, s->one_minus_beta2t);
    }
    // columns in blocks of 64, each block over all rows in order
    int nb = (cols + 63) / 64;
    #pragma omp parallel for schedule(static) if ((size_t)rows * cols >= ADAFACTOR_PAR_MIN)
    for (int b = 0; b < nb; b++) {
        int j0 = b * 64, j1 = j0 + 64 < cols ? j0 + 64 : cols;
        for (int j = j0; j < j1; j++) col_acc[j] = 0.0;
        for (int i = 0; i < rows; i++) {
            const float* gr = g + (size_t)i * cols;
            for (int j = j0; j < j1; j++) { float gi = gr[j] * s->gscale; col_acc[j] += (double)(gi * gi + s->eps1); }
        }
        for (int j = j0; j < j1; j++)
            C[j] = adafactor_ema(C[j], (float)col_acc[j] / (float)rows, s->beta2t, s->one_minus_beta2t);
    }
}

// transformers' _approx_sq_grad as two factors: rf_i = rsqrt(R_i / mean(R)), cf_j = rsqrt(C_j)
// (torch's rsqrt is 1/sqrt, each rounded to fp32); u_ij = (rf_i·cf_j)·g_ij
static inline void adafactor_factors(float* rf, float* cf, const float* R, const float* C, int rows, int cols) {
    double sum = 0.0;
    for (int i = 0; i < rows; i++) sum += R[i];
    float mean = (float)sum / (float)rows;
    for (int i = 0; i < rows; i++) rf[i] = 1.0f / sqrtf(R[i] / mean);
    for (int j = 0; j < cols; j++) cf[j] = 1.0f / sqrtf(C[j]);
}

// one update of tensor p (rows, cols) with gradient g and its state (layout above), from the step's
// values; returns the update's facts (for logging): lr_t, RMS(p) before, RMS of the raw update
typedef struct { float lr, param_rms, update_rms; } AdafactorInfo;

static inline AdafactorInfo adafactor_update_values(float* p, const float* g, float* state, int rows, int cols,
                                                    int factored, const AdafactorStep* s) {
    AdafactorInfo info = { 0.0f, 0.0f, 0.0f };
    size_t n = (size_t)rows * cols;
    if (s->skip || n == 0) return info;
    // scratch: per-row sums (rows), column sums (cols), the factors rf (rows) and cf (cols)
    double* sums = (double*)mallocCheck(((size_t)rows + cols) * sizeof(double));
    float* rf = (float*)mallocCheck(((size_t)rows + cols) * sizeof(float));
    float *cf = rf + rows, *R = state, *C = state + rows, *V = state;
    float* M = s->has_beta1 ? state + (factored ? (size_t)rows + cols : n) : NULL;
    // RMS(p) before the update, and the lr it sets
    adafactor_row_sum_sq(sums, p, rows, cols);
    info.param_rms = adafactor_rms(adafactor_sum(sums, rows), n);
    AdafactorLr L = adafactor_lr(s, info.param_rms);
    info.lr = L.lr;
    // second moments; the raw update u, whose RMS sets the clipping
    if (factored) {
        adafactor_factored_moments(R, C, g, rows, cols, s, sums + rows);
        adafactor_factors(rf, cf, R, C, rows, cols);
    } else {
        #pragma omp parallel for schedule(static) if (n >= ADAFACTOR_PAR_MIN)
        for (size_t k = 0; k < n; k++) {
            float gi = g[k] * s->gscale;
            V[k] = adafactor_ema(V[k], gi * gi + s->eps1, s->beta2t, s->one_minus_beta2t);
        }
    }
    // u_ij = (rf_i·cf_j)·g_ij  or  rsqrt(V)·g; Σu² per row, then in row order
    #pragma omp parallel for schedule(static) if (n >= ADAFACTOR_PAR_MIN)
    for (int i = 0; i < rows; i++) {
        double acc = 0.0;
        for (int j = 0; j < cols; j++) {
            size_t k = (size_t)i * cols + j;
            float gi = g[k] * s->gscale;
            float u = factored ? (rf[i] * cf[j]) * gi : (1.0f / sqrtf(V[k])) * gi;
            acc += (double)u * u;
        }
        sums[i] = acc;
    }
    info.update_rms = adafactor_rms(adafactor_sum(sums, rows), n);
    float d = adafactor_clip_div(s, info.update_rms);
    // p ← p − wd·lr·p − (clipped, scaled, averaged) u
    #pragma omp parallel for schedule(static) if (n >= ADAFACTOR_PAR_MIN)
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
            size_t k = (size_t)i * cols + j;
            float gi = g[k] * s->gscale;
            float u = factored ? (rf[i] * cf[j]) * gi : (1.0f / sqrtf(V[k])) * gi;
            p[k] = adafactor_apply(p[k], u, M ? &M[k] : NULL, s, L, d);
        }
    }
    free(sums);
    free(rf);
    return info;
}

// one update at step t (from 1) with the group's lr this step (unused under relative_step); factored:
// 1 for a tensor of 2 or more dimensions in Hugging Face (then rows, cols = its last two), 0 for a vector
static inline AdafactorInfo adafactor_update(float* p, const float* g, float* state, int rows, int cols, int factored,
                                             const AdafactorConfig* c, long long t, double lr) {
    AdafactorStep s = adafactor_step_values(c, t, lr);
    return adafactor_update_values(p, g, state, rows, cols, factored, &s);
}

#endif // T5_ADAFACTOR_H
