// train_t5.c — the CPU reference trainer for T5 / FLAN-T5: fp32, plain C + OpenMP.
// Reads top to bottom: model state → layer forward/backward → model forward/backward →
// optimizer → data → checkpoints → command line. test_t5.c includes this file with TESTING
// defined to reach its internals.
//
// Gradient rule (the whole file): parameter gradients accumulate (+=); activation gradients are
// written (=), except the residual streams and the encoder output (read by every decoder block's
// cross-attention), which accumulate.
#include <stdio.h>      // defines: printf, fprintf, FILE
#include <stdlib.h>     // defines: malloc, free, strtol, strtod
#include <stdint.h>     // defines: uint32_t, uint64_t, int32_t
#include <string.h>     // defines: memset, memcpy, strcmp
#include <math.h>       // defines: expf, logf, erff, sqrtf
#include <sys/stat.h>   // defines: stat, S_ISDIR
#include <signal.h>     // defines: signal, sig_atomic_t, SIGINT, SIGTERM
#include <unistd.h>     // defines: unlink
#ifdef _OPENMP
#include <omp.h>        // defines: omp_get_max_threads, omp_get_num_procs, omp_set_num_threads
#endif
#include "llmc/run.h"         // defines: the driver (Program, run_begin, run_next, run_after, run_end), Options,
                              //   HostModel, EngineOps, GenConfig, AdamW, beam bookkeeping, evaluation and report
#include "llmc/utils.h"       // defines: fopenCheck, mallocCheck, callocCheck, par_team, par_thread, now_ms
#include "llmc/t5.h"          // defines: T5Config, T5Params, T5Layout, t5_layout, t5_point_params, presets
#include "llmc/gemm.h"        // defines: gemm, GemmWorkspace
#include "llmc/vmath.h"       // defines: t5_expf (vectorisable e^x for softmax and cross-entropy)
#include "llmc/rng.h"         // defines: Rng, rng_next, rng_normal, dropout_keep
#include "llmc/lora.h"        // defines: LoraConfig, LoraLayout, lora_layout, lora_init, lora_merge
#include "llmc/dataloader.h"  // defines: T5Batch, BatchBuf, batch_check
#include "llmc/dist.h"        // defines: Dist, dist_init, dist_sum_f32 (MPI data parallelism, USE_MPI)
#include "llmc/beam.h"        // defines: BeamState, beam_build, beam_* (transformers' beam search bookkeeping)
#include "llmc/model.h"       // defines: t5_init_params (T5's own initialisation)

// dropout at one site: keep x with probability 1-p, scaled by 1/(1-p); masks hashed from (seed, site, index)
typedef struct { float p; uint64_t seed; } Dropout; // p = 0: identity

// ----------------------------------------------------------------------------
// activations, sized for the largest batch the model was built for

typedef struct {
    // encoder, Ne = B*Ts tokens
    float* e_res;    // (Le+1, Ne, C)  residual stream entering each block; [Le] enters the final norm
    float* e_mid;    // (Le, Ne, C)    residual after self-attention, entering the FFN sublayer
    float* e_ln1;    // (Le, Ne, C)    normed input of self-attention
    float* e_rstd1;  // (Le, Ne)       1/rms of it
    float* e_qkv;    // (Le, 3, Ne, HD) q, k, v projections
    float* e_att;    // (Le, B, H, Ts, Ts) softmax probabilities (before dropout)
    float* e_ctx;    // (Le, Ne, HD)   attention output before the o projection (after dropout)
    float* e_ln2;    // (Le, Ne, C)
    float* e_rstd2;  // (Le, Ne)
    float* e_h0;     // (Le, Ne, F)    wi_0 x (or wi x): activation input
    float* e_h1;     // (Le, Ne, F)    wi_1 x (gated only)
    float* e_ff;     // (Le, Ne, F)    act(h0) [* h1], after dropout: the input of wo
    float* e_rstdf;  // (Ne)           final norm
    float* e_out;    // (Ne, C)        encoder output (after final norm and dropout)
    // decoder, Nd = B*Tt tokens
    float* d_res;    // (Ld+1, Nd, C)
    float* d_mid1;   // (Ld, Nd, C)    after self-attention
    float* d_mid2;   // (Ld, Nd, C)    after cross-attention
    float* d_ln1;    // (Ld, Nd, C)
    float* d_rstd1;  // (Ld, Nd)
    float* d_qkv;    // (Ld, 3, Nd, HD)
    float* d_att;    // (Ld, B, H, Tt, Tt)
    float* d_ctx;    // (Ld, Nd, HD)
    float* d_ln2;    // (Ld, Nd, C)
    float* d_rstd2;  // (Ld, Nd)
    float* d_cq;     // (Ld, Nd, HD)   cross-attention query
    float* d_ckv;    // (Ld, 2, Ne, HD) cross-attention keys, values (from the encoder output)
    float* d_catt;   // (Ld, B, H, Tt, Ts)
    float* d_cctx;   // (Ld, Nd, HD)
    float* d_ln3;    // (Ld, Nd, C)
    float* d_rstd3;  // (Ld, Nd)
    float* d_h0;     // (Ld, Nd, F)
    float* d_h1;     // (Ld, Nd, F)
    float* d_ff;     // (Ld, Nd, F)
    float* d_rstdf;  // (Nd)
    float* d_out;    // (Nd, C)        decoder output fed to the head (after dropout, * C^-0.5 if scale_out)
    float* logits;   // (Nd, V)        becomes dlogits in the backward pass
    float* losses;   // (Nd)           per-token loss (0 on ignored tokens)
    // backward scratch
    float* g_res;    // (max(Ne,Nd), C) gradient of the residual stream
    float* g_x;      // (max(Ne,Nd), C) gradient of a normed sublayer input
    float* g_qkv;    // (3, max(Ne,Nd), HD)
    float* g_ctx;    // (max(Ne,Nd), HD)
    float* g_att;    // (B, H, max T, max T) gradient of the attention scores
    float* g_h0;     // (max(Ne,Nd), F)
    float* g_h1;     // (max(Ne,Nd), F)
    float* g_ff;     // (max(Ne,Nd), F)
    float* g_enc;    // (Ne, C)        gradient of the encoder output, accumulated over decoder blocks
    float* g_ckv;    // (2, Ne, HD)
    // LoRA scratch (empty without LoRA), Nm = max(Ne, Nd), In = max(C, HD, F)
    float* lora_x;   // (Nm, In)       dropout(x) of the wrapped Linear at hand, then its input gradient
    float* lora_u;   // (Nm, r)        s · dropout(x) · Aᵀ
    float* lora_du;  // (Nm, r)        its gradient
} T5Acts;

typedef struct {
    T5Config config;
    T5Layout layout;
    T5Params params;       // pointers into params_memory
    float* params_memory;  // (layout.total)
    T5Params grads;
    float* grads_memory;
    float* m_memory;       // AdamW first moment, lazily allocated
    float* v_memory;       // AdamW second moment
    int opt_kind;          // OptimKind (llmc/optim.h): AdamW (m_memory, v_memory) or Adafactor (af_memory)
    int af_beta1;          // Adafactor: its state holds the first moment M
    float* af_memory;      // (af_n) Adafactor state of the trainable tensors' slices, lazily allocated
    size_t af_n;
    long long step;        // optimizer updates done
    T5Acts acts;
    int max_B, max_Ts, max_Tt; // sizes the activations were allocated for (0: not yet)
    int B, Ts, Tt;         // sizes of the last forward pass
    float mean_loss;       // of the last forward pass
    int num_counted;       // label tokens counted in the last forward pass
    uint64_t dropout_seed; // mask seed of the current forward/backward pair
    GemmWorkspace gemm_ws;
    // LoRA (llmc/lora.h): with lora.r > 0 only the adapter trains; the base weights stay frozen, have no
    // gradient buffer (grads_memory NULL), and m_memory / v_memory hold the adapter's AdamW moments
    LoraConfig lora;
    LoraLayout lora_layout;
    float* lora_memory;    // (lora_layout.total) A and B of every wrapped Linear
    float* lora_grads;     // (lora_layout.total)
    Dropout lora_drop;     // the adapters' input dropout in the current forward/backward pair
    int lora_merged;       // 1 while the adapter is merged into the base weights (generation)
    float* lora_saved;     // the wrapped weights as they were while merged for many generate calls (gen_begin)
    uint32_t lora_base_crc; // fingerprint of the (frozen) base weights, for adapter checkpoints
} T5;

static inline size_t t5_num_params(const T5* m) { return m->layout.total; }

// allocate the parameter (and gradient) buffers for model->config
static void t5_alloc_params(T5* m) {
    t5_layout(&m->config, &m->layout);
    m->params_memory = (float*)callocCheck(m->layout.total, sizeof(float));
    m->grads_memory = (float*)callocCheck(m->layout.total, sizeof(float));
    t5_point_params(&m->params, m->params_memory, &m->layout);
    t5_point_params(&m->grads, m->grads_memory, &m->layout);
}

// T5's own initialisation (llmc/model.h t5_init_params, transformers' _init_weights)
static inline void t5_init_random(T5* m, uint64_t seed) { t5_init_params(&m->config, m->params_memory, seed); }

// ----------------------------------------------------------------------------
// activations

static void t5_alloc_acts(T5* m, int B, int Ts, int Tt) {
    const T5Config* c = &m->config;
    size_t C = c->d_model, HD = (size_t)c->num_heads * c->d_kv, F = c->d_ff, H = c->num_heads, V = c->vocab_size;
    size_t Le = c->num_layers, Ld = c->num_decoder_layers;
    size_t Ne = (size_t)B * Ts, Nd = (size_t)B * Tt, Nm = Ne > Nd ? Ne : Nd, Tm = Ts > Tt ? Ts : Tt;
    size_t Ff = c->gated ? F : 0; // wi_1 only exists in the gated FFN
    size_t R = (size_t)m->lora.r, In = C > HD ? (C > F ? C : F) : (HD > F ? HD : F); // LoRA scratch
    T5Acts* a = &m->acts;
    struct { float** p; size_t n; } plan[] = {
        {&a->e_res, (Le + 1) * Ne * C}, {&a->e_mid, Le * Ne * C}, {&a->e_ln1, Le * Ne * C}, {&a->e_rstd1, Le * Ne},
        {&a->e_qkv, Le * 3 * Ne * HD}, {&a->e_att, Le * B * H * Ts * Ts}, {&a->e_ctx, Le * Ne * HD},
        {&a->e_ln2, Le * Ne * C}, {&a->e_rstd2, Le * Ne}, {&a->e_h0, Le * Ne * F}, {&a->e_h1, Le * Ne * Ff},
        {&a->e_ff, Le * Ne * F}, {&a->e_rstdf, Ne}, {&a->e_out, Ne * C},
        {&a->d_res, (Ld + 1) * Nd * C}, {&a->d_mid1, Ld * Nd * C}, {&a->d_mid2, Ld * Nd * C},
        {&a->d_ln1, Ld * Nd * C}, {&a->d_rstd1, Ld * Nd}, {&a->d_qkv, Ld * 3 * Nd * HD},
        {&a->d_att, Ld * B * H * Tt * Tt}, {&a->d_ctx, Ld * Nd * HD}, {&a->d_ln2, Ld * Nd * C},
        {&a->d_rstd2, Ld * Nd}, {&a->d_cq, Ld * Nd * HD}, {&a->d_ckv, Ld * 2 * Ne * HD},
        {&a->d_catt, Ld * B * H * Tt * Ts}, {&a->d_cctx, Ld * Nd * HD}, {&a->d_ln3, Ld * Nd * C},
        {&a->d_rstd3, Ld * Nd}, {&a->d_h0, Ld * Nd * F}, {&a->d_h1, Ld * Nd * Ff}, {&a->d_ff, Ld * Nd * F},
        {&a->d_rstdf, Nd}, {&a->d_out, Nd * C}, {&a->logits, Nd * V}, {&a->losses, Nd},
        {&a->g_res, Nm * C}, {&a->g_x, Nm * C}, {&a->g_qkv, 3 * Nm * HD}, {&a->g_ctx, Nm * HD},
        {&a->g_att, B * H * Tm * Tm}, {&a->g_h0, Nm * F}, {&a->g_h1, Nm * Ff}, {&a->g_ff, Nm * F},
        {&a->g_enc, Ne * C}, {&a->g_ckv, 2 * Ne * HD},
        {&a->lora_x, R ? Nm * In : 0}, {&a->lora_u, Nm * R}, {&a->lora_du, Nm * R},
    };
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
        free(*plan[i].p);
        *plan[i].p = (float*)mallocCheck(plan[i].n * sizeof(float));
    }
    m->max_B = B; m->max_Ts = Ts; m->max_Tt = Tt;
}

static void t5_free_acts(T5Acts* a) {
    float** p = (float**)a;
    for (size_t i = 0; i < sizeof(T5Acts) / sizeof(float*); i++) { free(p[i]); p[i] = NULL; }
}

static void t5_free(T5* m) {
    free(m->params_memory); free(m->grads_memory); free(m->m_memory); free(m->v_memory); free(m->af_memory);
    free(m->lora_memory); free(m->lora_grads);
    t5_free_acts(&m->acts);
    gemm_workspace_free(&m->gemm_ws);
    memset(m, 0, sizeof(*m));
}

// ----------------------------------------------------------------------------
// layers: forward and backward. N = tokens, C = d_model, HD = heads·d_kv, F = d_ff

// dropout site ids: (stack, block, kind) → one 32-bit id, so every mask in a step is distinct
enum { DROP_EMBED, DROP_ATT, DROP_ATT_RES, DROP_CROSS, DROP_CROSS_RES, DROP_FF, DROP_FF_RES, DROP_FINAL };
static inline uint32_t drop_site(int decoder, int layer, int kind) {
    return ((uint32_t)decoder << 20) | ((uint32_t)layer << 4) | (uint32_t)kind;
}


// out = x * keep / (1-p)   (in place allowed)
static void dropout_apply(float* out, const float* x, size_t n, Dropout d, uint32_t site) {
    if (d.p == 0.0f) { if (out != x) memcpy(out, x, n * sizeof(float)); return; }
    float scale = 1.0f / (1.0f - d.p);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = dropout_keep(d.seed, site, i, d.p) ? x[i] * scale : 0.0f;
}

// residual add: res_out = res_in + dropout(sub)   (sub and res_out may alias)
static void residual_forward(float* res_out, const float* res_in, const float* sub, size_t n, Dropout d, uint32_t site) {
    float scale = d.p == 0.0f ? 1.0f : 1.0f / (1.0f - d.p);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        int keep = d.p == 0.0f || dropout_keep(d.seed, site, i, d.p);
        res_out[i] = res_in[i] + (keep ? sub[i] * scale : 0.0f);
    }
}

// embedding: out (N, C) = dropout(wte[ids])
static void embedding_forward(float* out, const int* ids, const float* wte, int N, int C, Dropout d, uint32_t site) {
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) memcpy(out + (size_t)t * C, wte + (size_t)ids[t] * C, (size_t)C * sizeof(float));
    dropout_apply(out, out, (size_t)N * C, d, site);
}

// dwte[ids[t]] += dropout'(dout[t]); tokens in order, so the sum order is fixed (deterministic).
// dwte NULL (a frozen embedding under LoRA): nothing to do
static void embedding_backward(float* dwte, const int* ids, const float* dout, int N, int C, Dropout d, uint32_t site) {
    if (!dwte) return;
    float scale = d.p == 0.0f ? 1.0f : 1.0f / (1.0f - d.p);
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        for (int t = 0; t < N; t++) {
            size_t i = (size_t)t * C + c;
            if (d.p == 0.0f || dropout_keep(d.seed, site, i, d.p)) dwte[(size_t)ids[t] * C + c] += dout[i] * scale;
        }
    }
}

// T5 RMSNorm (no mean, no bias):  out = w · x / sqrt(mean(x²) + eps)
static void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) {
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        const float* x = inp + (size_t)t * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / C + eps);
        float* o = out + (size_t)t * C;
        for (int c = 0; c < C; c++) o[c] = w[c] * (x[c] * r);
        rstd[t] = r;
    }
}

// with g = w·dout:  dx += r·g − x·r³·mean(g·x)    dw += dout·x·r   (dw NULL: frozen, skipped)
static void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                             const float* rstd, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        const float* x = inp + (size_t)t * C;
        const float* dy = dout + (size_t)t * C;
        float r = rstd[t], dot = 0.0f;
        for (int c = 0; c < C; c++) dot += w[c] * dy[c] * x[c];
        float k = r * r * r * dot / C;
        float* dx = dinp + (size_t)t * C;
        for (int c = 0; c < C; c++) dx[c] += r * w[c] * dy[c] - k * x[c];
    }
    if (!dw) return;
    // weight gradient dw[c] += Σ_t dout·inp·rstd, tokens in order (deterministic): each thread owns
    // a contiguous run of columns and sweeps the tokens row by row (unit stride), one sum per column
    #pragma omp parallel
    {
        int nt = par_team(), id = par_thread();
        int c0 = (int)((long)C * id / nt), c1 = (int)((long)C * (id + 1) / nt);
        float* sum = (float*)callocCheck((size_t)(c1 - c0) + 1, sizeof(float));
        for (int t = 0; t < N; t++) {
            const float* dy = dout + (size_t)t * C;
            const float* x = inp + (size_t)t * C;
            for (int c = c0; c < c1; c++) sum[c - c0] += dy[c] * x[c] * rstd[t];
        }
        for (int c = c0; c < c1; c++) dw[c] += sum[c - c0];
        free(sum);
    }
}

// Linear without bias (PyTorch layout W (OC, IC)):  out (N, OC) = inp (N, IC) · Wᵀ
static void matmul_forward(GemmWorkspace* ws, float* out, const float* inp, const float* w, int N, int IC, int OC) {
    gemm(ws, N, OC, IC, inp, (size_t)IC, 0, w, (size_t)IC, 1, out, (size_t)OC, 0);
}

// dinp (N, IC) = dout · W  (+= when accumulate; skipped when dinp is NULL)    dW (OC, IC) += doutᵀ · inp
// (skipped when dw is NULL: a frozen weight under LoRA)
static void matmul_backward(GemmWorkspace* ws, float* dinp, float* dw, const float* dout, const float* inp,
                            const float* w, int N, int IC, int OC, int accumulate) {
    if (dinp) gemm(ws, N, IC, OC, dout, (size_t)OC, 0, w, (size_t)IC, 0, dinp, (size_t)IC, accumulate);
    if (dw) gemm(ws, OC, IC, N, dout, (size_t)OC, 1, inp, (size_t)IC, 0, dw, (size_t)IC, 1);
}

// ----------------------------------------------------------------------------
// LoRA on a Linear (peft's lora.Linear, llmc/lora.h):  out = inp·Wᵀ + s · (dropout(inp)·Aᵀ)·Bᵀ
// A (r, IC), B (OC, r). Each wrapped Linear draws its own dropout mask (its own site), as peft
// applies lora_dropout to each module's input separately. The backward pass recomputes u from the
// stored input instead of keeping it (N·IC·r flops, the forward's own cost).

typedef struct {
    const float *A, *B;  // NULL: this Linear is not wrapped
    float *dA, *dB;      // their gradients
    float s;             // scale α/r
    int r;
    Dropout drop;
    uint32_t site;
} LoraView;

// xd = dropout(inp), into the scratch; inp itself when p = 0
static const float* lora_input(T5* m, const float* inp, size_t n, const LoraView* v) {
    if (v->drop.p == 0.0f) return inp;
    dropout_apply(m->acts.lora_x, inp, n, v->drop, v->site);
    return m->acts.lora_x;
}

// u (N, r) = s · xd · Aᵀ
static void lora_project(T5* m, const float* xd, const LoraView* v, int N, int IC) {
    float* u = m->acts.lora_u;
    gemm(&m->gemm_ws, N, v->r, IC, xd, (size_t)IC, 0, v->A, (size_t)IC, 1, u, (size_t)v->r, 0);
    for (size_t i = 0; i < (size_t)N * v->r; i++) u[i] *= v->s;
}

// out (N, OC) += u · Bᵀ
static void lora_forward(T5* m, float* out, const float* inp, const LoraView* v, int N, int IC, int OC) {
    lora_project(m, lora_input(m, inp, (size_t)N * IC, v), v, N, IC);
    gemm(&m->gemm_ws, N, OC, v->r, m->acts.lora_u, (size_t)v->r, 0, v->B, (size_t)v->r, 1, out, (size_t)OC, 1);
}

// g = dout (N, OC), u recomputed:
//   dB (OC, r) += gᵀ · u    du (N, r) = s · g · B    dA (r, IC) += duᵀ · xd    dinp (N, IC) += dropout'(du · A)
static void lora_backward(T5* m, float* dinp, const float* dout, const float* inp, const LoraView* v, int N, int IC, int OC) {
    GemmWorkspace* ws = &m->gemm_ws;
    size_t r = (size_t)v->r;
    const float* xd = lora_input(m, inp, (size_t)N * IC, v);
    lora_project(m, xd, v, N, IC);
    gemm(ws, OC, (int)r, N, dout, (size_t)OC, 1, m->acts.lora_u, r, 0, v->dB, r, 1);
    float* du = m->acts.lora_du;
    gemm(ws, N, (int)r, OC, dout, (size_t)OC, 0, v->B, r, 0, du, r, 0);
    for (size_t i = 0; i < (size_t)N * r; i++) du[i] *= v->s;
    gemm(ws, (int)r, IC, N, du, r, 1, xd, (size_t)IC, 0, v->dA, (size_t)IC, 1);
    if (v->drop.p == 0.0f) { gemm(ws, N, IC, (int)r, du, r, 0, v->A, (size_t)IC, 0, dinp, (size_t)IC, 1); return; }
    float* dx = m->acts.lora_x; // xd is spent: the scratch takes du · A
    gemm(ws, N, IC, (int)r, du, r, 0, v->A, (size_t)IC, 0, dx, (size_t)IC, 0);
    residual_forward(dinp, dinp, dx, (size_t)N * IC, v->drop, v->site); // dinp += dropout'(dx): the same mask and scale
}

// a Linear with its adapter (when wrapped): forward, and backward (dW skipped when dw is NULL)
static void linear_forward(T5* m, float* out, const float* inp, const float* w, const LoraView* v, int N, int IC, int OC) {
    matmul_forward(&m->gemm_ws, out, inp, w, N, IC, OC);
    if (v->A) lora_forward(m, out, inp, v, N, IC, OC);
}
static void linear_backward(T5* m, float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                            const LoraView* v, int N, int IC, int OC, int accumulate) {
    matmul_backward(&m->gemm_ws, dinp, dw, dout, inp, w, N, IC, OC, accumulate);
    if (v->A) lora_backward(m, dinp, dout, inp, v, N, IC, OC);
}

// activations: act_value, act_grad in llmc/t5.h (shared with the CUDA kernels)

// y[i] = act(x[i]) and y[i] = act'(x[i]) over one run of elements. The switch sits outside the loops,
// so each loop sees one activation and vectorises (t5_tanhf, no calls), erf's apart.
static void act_values(T5Act a, float* y, const float* x, size_t n) {
    switch (a) {
        case ACT_RELU: for (size_t i = 0; i < n; i++) y[i] = act_value(ACT_RELU, x[i]); break;
        case ACT_GELU: for (size_t i = 0; i < n; i++) y[i] = act_value(ACT_GELU, x[i]); break;
        case ACT_SILU: for (size_t i = 0; i < n; i++) y[i] = act_value(ACT_SILU, x[i]); break;
        default:       for (size_t i = 0; i < n; i++) y[i] = act_value(ACT_GELU_TANH, x[i]); break;
    }
}
static void act_grads(T5Act a, float* y, const float* x, size_t n) {
    switch (a) {
        case ACT_RELU: for (size_t i = 0; i < n; i++) y[i] = act_grad(ACT_RELU, x[i]); break;
        case ACT_GELU: for (size_t i = 0; i < n; i++) y[i] = act_grad(ACT_GELU, x[i]); break;
        case ACT_SILU: for (size_t i = 0; i < n; i++) y[i] = act_grad(ACT_SILU, x[i]); break;
        default:       for (size_t i = 0; i < n; i++) y[i] = act_grad(ACT_GELU_TANH, x[i]); break;
    }
}

#define ACT_CHUNK 2048 // elements per task of the activation loops (8 KB of fp32 scratch on the stack)

// FFN middle:  out = dropout(act(h0) · h1)   (gated)   or   dropout(act(h0))   (h1 = NULL)
static void ffn_act_forward(float* out, const float* h0, const float* h1, size_t n, T5Act a, Dropout d, uint32_t site) {
    #pragma omp parallel for schedule(static)
    for (size_t i0 = 0; i0 < n; i0 += ACT_CHUNK) {
        size_t len = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
        act_values(a, out + i0, h0 + i0, len);
        if (h1) for (size_t i = i0; i < i0 + len; i++) out[i] *= h1[i];
    }
    dropout_apply(out, out, n, d, site);
}

// g = dropout'(dout):   dh0 = g · h1 · act'(h0)      dh1 = g · act(h0)
static void ffn_act_backward(float* dh0, float* dh1, const float* dout, const float* h0, const float* h1,
                             size_t n, T5Act a, Dropout d, uint32_t site) {
    float scale = d.p == 0.0f ? 1.0f : 1.0f / (1.0f - d.p);
    #pragma omp parallel for schedule(static)
    for (size_t i0 = 0; i0 < n; i0 += ACT_CHUNK) {
        size_t len = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
        float g[ACT_CHUNK];
        for (size_t i = 0; i < len; i++)
            g[i] = (d.p == 0.0f || dropout_keep(d.seed, site, i0 + i, d.p)) ? dout[i0 + i] * scale : 0.0f;
        act_grads(a, dh0 + i0, h0 + i0, len);
        for (size_t i = 0; i < len; i++) dh0[i0 + i] = g[i] * (h1 ? h1[i0 + i] : 1.0f) * dh0[i0 + i];
        if (!h1) continue;
        act_values(a, dh1 + i0, h0 + i0, len);
        for (size_t i = 0; i < len; i++) dh1[i0 + i] = g[i] * dh1[i0 + i];
    }
}

// attention with T5's relative position bias and masks
typedef struct {
    int B, Tq, Tk, H, D;
    const int* key_len;  // (B): keys j ≥ key_len[b] masked (padding), or NULL
    int causal;          // keys j > i masked
    const float* relb;   // (NB, H) relative bias table, or NULL (cross-attention has none)
    const int* buckets;  // (Tq+Tk-1): bucket of rel = j - i at index j - i + Tq - 1
    Dropout drop;        // on the probabilities
    uint32_t site;
} AttnSpec;

static inline int attn_keys(const AttnSpec* s, int b, int i) {
    int n = s->key_len ? s->key_len[b] : s->Tk;
    if (s->causal && i + 1 < n) n = i + 1;
    return n;
}

// pointer to head h of sequence b in a (B, T, H·D) tensor: a (T, D) matrix with row stride H·D
static inline float* head_at(const float* x, int b, int h, int T, int HD, int D) {
    return (float*)x + (size_t)b * T * HD + (size_t)h * D;
}

// in place on each row of att (B, H, Tq, Tk): + relative bias, mask, softmax; 0 on masked keys
static void attention_softmax(float* att, const AttnSpec* s) {
    int B = s->B, Tq = s->Tq, Tk = s->Tk, H = s->H;
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                float* p = att + (((size_t)b * H + h) * Tq + i) * Tk;
                int n = attn_keys(s, b, i);
                float maxv = -INFINITY;
                for (int j = 0; j < n; j++) {
                    if (s->relb) p[j] += s->relb[s->buckets[j - i + Tq - 1] * H + h];
                    if (p[j] > maxv) maxv = p[j];
                }
                for (int j = 0; j < n; j++) p[j] = t5_expf(p[j] - maxv); // vectorised
                float sum = 0.0f;
                for (int j = 0; j < n; j++) sum += p[j];                   // in order
                float inv = 1.0f / sum;
                for (int j = 0; j < n; j++) p[j] *= inv;
                for (int j = n; j < Tk; j++) p[j] = 0.0f;
            }
}

// the probabilities after dropout, p' = dropout(p), into dst (B, H, Tq, Tk); returns p itself when p = 0
static const float* attention_dropped(float* dst, const float* att, const AttnSpec* s) {
    if (s->drop.p == 0.0f) return att;
    dropout_apply(dst, att, (size_t)s->B * s->H * s->Tq * s->Tk, s->drop, s->site);
    return dst;
}

// GEMM workspace floats of one thread's per-head products (the largest of (Tq, Tk), (Tq, D), (Tk, D))
static size_t attention_gemm_floats(const AttnSpec* s) {
    size_t a = gemm_workspace_floats(s->Tq, s->Tk), b = gemm_workspace_floats(s->Tq, s->D), c = gemm_workspace_floats(s->Tk, s->D);
    return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

// out (B, Tq, H·D) = dropout(softmax(q·kᵀ + bias + mask)) · v   — T5: no 1/sqrt(D) scale.
// q (B, Tq, H·D), k/v (B, Tk, H·D); att (B, H, Tq, Tk) keeps the probabilities (0 where masked);
// scratch (B, H, Tq, Tk) holds the dropped probabilities when dropout is on.
// The two products run as one GEMM per (sequence, head) on the strided head views, the heads side
// by side on the threads (each product alone is too small to split well).
static void attention_forward(GemmWorkspace* ws, float* out, float* att, float* scratch, const float* q,
                              const float* k, const float* v, const AttnSpec* s) {
    int B = s->B, Tq = s->Tq, Tk = s->Tk, H = s->H, D = s->D, HD = H * D;
    size_t need = attention_gemm_floats(s);
    float* wbase = gemm_threads_reserve(ws, need);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) { // scores (Tq, Tk) = q_bh · k_bhᵀ
            GemmWorkspace own = gemm_thread_workspace(wbase, need);
            gemm(&own, Tq, Tk, D, head_at(q, b, h, Tq, HD, D), HD, 0, head_at(k, b, h, Tk, HD, D), HD, 1,
                 att + ((size_t)b * H + h) * Tq * Tk, Tk, 0);
        }
    attention_softmax(att, s);
    const float* pd = attention_dropped(scratch, att, s);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) { // out_bh (Tq, D) = p'_bh · v_bh
            GemmWorkspace own = gemm_thread_workspace(wbase, need);
            gemm(&own, Tq, D, Tk, pd + ((size_t)b * H + h) * Tq * Tk, Tk, 0, head_at(v, b, h, Tk, HD, D), HD, 0,
                 head_at(out, b, h, Tq, HD, D), HD, 0);
        }
}

// Given dout (B, Tq, H·D): dq, dk, dv are written (=); dscore (B, H, Tq, Tk) ends as ∂L/∂scores,
// from which drelb[bucket(j-i), h] += Σ dscore.
//   dv = p'ᵀ·dout    dp' = dout·vᵀ    dp = dropout'(dp')    ds_j = p_j (dp_j − Σ_k p_k dp_k)
//   dq = ds·k        dk = dsᵀ·q
static void attention_backward(GemmWorkspace* ws, float* dq, float* dk, float* dv, float* dscore, float* drelb,
                               const float* dout, const float* q, const float* k, const float* v,
                               const float* att, const AttnSpec* s) {
    int B = s->B, Tq = s->Tq, Tk = s->Tk, H = s->H, D = s->D, HD = H * D;
    size_t TT = (size_t)Tq * Tk;
    size_t need = attention_gemm_floats(s);
    float* wbase = gemm_threads_reserve(ws, need);
    const float* pd = attention_dropped(dscore, att, s); // dscore serves as scratch for p' first
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            GemmWorkspace own = gemm_thread_workspace(wbase, need);
            gemm(&own, Tk, D, Tq, pd + ((size_t)b * H + h) * TT, Tk, 1, head_at(dout, b, h, Tq, HD, D), HD, 0,
                 head_at(dv, b, h, Tk, HD, D), HD, 0);
        }
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            GemmWorkspace own = gemm_thread_workspace(wbase, need);
            gemm(&own, Tq, Tk, D, head_at(dout, b, h, Tq, HD, D), HD, 0, head_at(v, b, h, Tk, HD, D), HD, 1,
                 dscore + ((size_t)b * H + h) * TT, Tk, 0);
        }
    float scale = s->drop.p == 0.0f ? 1.0f : 1.0f / (1.0f - s->drop.p);
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                size_t base = ((size_t)b * H + h) * TT + (size_t)i * Tk;
                const float* p = att + base;
                float* ds = dscore + base;
                int n = attn_keys(s, b, i);
                float dot = 0.0f;
                for (int j = 0; j < n; j++) {
                    if (s->drop.p != 0.0f) ds[j] = dropout_keep(s->drop.seed, s->site, base + j, s->drop.p) ? ds[j] * scale : 0.0f;
                    dot += p[j] * ds[j];
                }
                for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - dot);
                for (int j = n; j < Tk; j++) ds[j] = 0.0f;
            }
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            GemmWorkspace own = gemm_thread_workspace(wbase, need);
            const float* ds = dscore + ((size_t)b * H + h) * TT;
            gemm(&own, Tq, D, Tk, ds, Tk, 0, head_at(k, b, h, Tk, HD, D), HD, 0, head_at(dq, b, h, Tq, HD, D), HD, 0);
            gemm(&own, Tk, D, Tq, ds, Tk, 1, head_at(q, b, h, Tq, HD, D), HD, 0, head_at(dk, b, h, Tk, HD, D), HD, 0);
        }
    if (!s->relb || !drelb) return; // no table, or a frozen one (LoRA)
    #pragma omp parallel for schedule(static)
    for (int h = 0; h < H; h++)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Tq; i++) {
                const float* ds = dscore + ((size_t)b * H + h) * TT + (size_t)i * Tk;
                int n = attn_keys(s, b, i);
                for (int j = 0; j < n; j++) drelb[s->buckets[j - i + Tq - 1] * H + h] += ds[j];
            }
}

// cross-entropy over the vocabulary, ignore index -100:  losses[t] = logsumexp(logits_t) − logits_t[y_t]
// returns the number of counted tokens; loss_sum gets Σ losses
static int crossentropy_forward(float* losses, double* loss_sum, const float* logits, const int* labels, int N, int V) {
    double total = 0.0;
    int count = 0;
    #pragma omp parallel reduction(+:total, count)
    {
        float* e = (float*)mallocCheck((size_t)V * sizeof(float)); // this thread's row of exponentials
        #pragma omp for schedule(static)
        for (int t = 0; t < N; t++) {
            if (labels[t] == IGNORE_INDEX) { losses[t] = 0.0f; continue; }
            const float* x = logits + (size_t)t * V;
            float maxv = -INFINITY;
            for (int i = 0; i < V; i++) if (x[i] > maxv) maxv = x[i];
            for (int i = 0; i < V; i++) e[i] = t5_expf(x[i] - maxv); // vectorised
            double sum = 0.0;
            for (int i = 0; i < V; i++) sum += e[i];                  // in order
            losses[t] = (float)(log(sum) + maxv - x[labels[t]]);
            total += losses[t];
            count++;
        }
        free(e);
    }
    *loss_sum = total;
    return count;
}

// in place: logits → dlogits = (softmax − onehot(y)) · scale, 0 on ignored tokens
static void crossentropy_backward(float* logits, const int* labels, int N, int V, float scale) {
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        float* x = logits + (size_t)t * V;
        if (labels[t] == IGNORE_INDEX) { memset(x, 0, (size_t)V * sizeof(float)); continue; }
        float maxv = -INFINITY;
        for (int i = 0; i < V; i++) if (x[i] > maxv) maxv = x[i];
        for (int i = 0; i < V; i++) x[i] = t5_expf(x[i] - maxv); // vectorised
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += x[i];                  // in order
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < V; i++) x[i] = x[i] * inv * scale;
        x[labels[t]] -= scale;
    }
}

// ----------------------------------------------------------------------------
// sublayers: pre-norm residual blocks,  h_out = h_in + dropout(sublayer(rmsnorm(h_in)))

typedef struct { const float *ln, *q, *k, *v, *o; LoraView lora[4]; /* q, k, v, o */ } AttnWeights; // one block's attention
typedef struct { float *ln, *q, *k, *v, *o; } AttnGrads;
typedef struct { const float *ln, *wi0, *wi1, *wo; LoraView lora[3]; /* wi0, wi1, wo */ } FfnWeights; // wi1 NULL when not gated
typedef struct { float *ln, *wi0, *wi1, *wo; } FfnGrads;

// activations of one attention sublayer. Self-attention: kv_src = ln (N tokens);
// cross-attention: kv_src = encoder output (Nkv = B·Ts tokens)
typedef struct {
    float *ln, *rstd;   // (N, C), (N)
    float *q, *kv;      // (N, HD), (2, Nkv, HD)
    float *att, *ctx;   // (B, H, Tq, Tk), (N, HD)
    const float* kv_src; int Nkv;
} AttnActs;

typedef struct { float *ln, *rstd, *h0, *h1, *ff; } FfnActs; // (N,C), (N), (N,F) ×3

static void attn_sublayer_forward(T5* m, float* res_out, const float* res_in, AttnActs a, AttnWeights w,
                                  const AttnSpec* s, int N, Dropout d, uint32_t res_site) {
    const T5Config* c = &m->config;
    int C = c->d_model, HD = c->num_heads * c->d_kv;
    rmsnorm_forward(a.ln, a.rstd, res_in, w.ln, N, C, c->eps);
    const float* kv_src = a.kv_src ? a.kv_src : a.ln;
    linear_forward(m, a.q, a.ln, w.q, &w.lora[0], N, C, HD);
    linear_forward(m, a.kv, kv_src, w.k, &w.lora[1], a.Nkv, C, HD);
    linear_forward(m, a.kv + (size_t)a.Nkv * HD, kv_src, w.v, &w.lora[2], a.Nkv, C, HD);
    attention_forward(&m->gemm_ws, a.ctx, a.att, m->acts.g_att, a.q, a.kv, a.kv + (size_t)a.Nkv * HD, s);
    linear_forward(m, res_out, a.ctx, w.o, &w.lora[3], N, HD, C);
    residual_forward(res_out, res_in, res_out, (size_t)N * C, d, res_site);
}

static void ffn_sublayer_forward(T5* m, float* res_out, const float* res_in, FfnActs a, FfnWeights w,
                                 int N, Dropout d, uint32_t act_site, uint32_t res_site) {
    const T5Config* c = &m->config;
    int C = c->d_model, F = c->d_ff;
    rmsnorm_forward(a.ln, a.rstd, res_in, w.ln, N, C, c->eps);
    linear_forward(m, a.h0, a.ln, w.wi0, &w.lora[0], N, C, F);
    if (w.wi1) linear_forward(m, a.h1, a.ln, w.wi1, &w.lora[1], N, C, F);
    ffn_act_forward(a.ff, a.h0, w.wi1 ? a.h1 : NULL, (size_t)N * F, c->act, d, act_site);
    linear_forward(m, res_out, a.ff, w.wo, &w.lora[2], N, F, C);
    residual_forward(res_out, res_in, res_out, (size_t)N * C, d, res_site);
}

// g_res: in = ∂L/∂res_out, out = ∂L/∂res_in. g_kv_src: where k/v gradients go for cross-attention
// (the encoder output gradient, accumulated); NULL for self-attention (they join the ln gradient).
static void attn_sublayer_backward(T5* m, float* g_res, const float* res_in, AttnActs a, AttnWeights w,
                                   AttnGrads g, const AttnSpec* s, int N, Dropout d, uint32_t res_site,
                                   float* drelb, float* g_kv_src) {
    const T5Config* c = &m->config;
    T5Acts* A = &m->acts;
    int C = c->d_model, HD = c->num_heads * c->d_kv;
    GemmWorkspace* ws = &m->gemm_ws;
    const float* kv_src = a.kv_src ? a.kv_src : a.ln;
    float* g_sub = A->g_x;
    dropout_apply(g_sub, g_res, (size_t)N * C, d, res_site);
    linear_backward(m, A->g_ctx, g.o, g_sub, a.ctx, w.o, &w.lora[3], N, HD, C, 0);
    float* gq = A->g_qkv;
    float* gk = a.kv_src ? A->g_ckv : A->g_qkv + (size_t)N * HD;
    float* gv = gk + (size_t)a.Nkv * HD;
    attention_backward(ws, gq, gk, gv, A->g_att, drelb, A->g_ctx, a.q, a.kv, a.kv + (size_t)a.Nkv * HD, a.att, s);
    float* g_kv_dst = g_kv_src ? g_kv_src : A->g_x;
    linear_backward(m, A->g_x, g.q, gq, a.ln, w.q, &w.lora[0], N, C, HD, 0);
    linear_backward(m, g_kv_dst, g.k, gk, kv_src, w.k, &w.lora[1], a.Nkv, C, HD, 1);
    linear_backward(m, g_kv_dst, g.v, gv, kv_src, w.v, &w.lora[2], a.Nkv, C, HD, 1);
    rmsnorm_backward(g_res, g.ln, A->g_x, res_in, w.ln, a.rstd, N, C);
}

static void ffn_sublayer_backward(T5* m, float* g_res, const float* res_in, FfnActs a, FfnWeights w, FfnGrads g,
                                  int N, Dropout d, uint32_t act_site, uint32_t res_site) {
    const T5Config* c = &m->config;
    T5Acts* A = &m->acts;
    int C = c->d_model, F = c->d_ff;
    dropout_apply(A->g_x, g_res, (size_t)N * C, d, res_site);
    linear_backward(m, A->g_ff, g.wo, A->g_x, a.ff, w.wo, &w.lora[2], N, F, C, 0);
    ffn_act_backward(A->g_h0, A->g_h1, A->g_ff, a.h0, w.wi1 ? a.h1 : NULL, (size_t)N * F, c->act, d, act_site);
    linear_backward(m, A->g_x, g.wi0, A->g_h0, a.ln, w.wi0, &w.lora[0], N, C, F, 0);
    if (w.wi1) linear_backward(m, A->g_x, g.wi1, A->g_h1, a.ln, w.wi1, &w.lora[1], N, C, F, 1);
    rmsnorm_backward(g_res, g.ln, A->g_x, res_in, w.ln, a.rstd, N, C);
}

// ----------------------------------------------------------------------------
// per-block views into the stacked parameters and activations

#define AT(ptr, l, stride) ((ptr) ? (ptr) + (size_t)(l) * (stride) : NULL)

static AttnWeights enc_attn_w(const T5Params* p, const T5Config* c, int l) {
    size_t C = c->d_model, W = C * c->num_heads * c->d_kv;
    return (AttnWeights){ AT(p->enc_ln1, l, C), AT(p->enc_q, l, W), AT(p->enc_k, l, W), AT(p->enc_v, l, W), AT(p->enc_o, l, W), .lora = {{0}} }; // no adapters: see attn_lora, ffn_lora
}
static AttnGrads enc_attn_g(const T5Params* p, const T5Config* c, int l) {
    AttnWeights w = enc_attn_w(p, c, l);
    return (AttnGrads){ (float*)w.ln, (float*)w.q, (float*)w.k, (float*)w.v, (float*)w.o };
}
static AttnWeights dec_self_w(const T5Params* p, const T5Config* c, int l) {
    size_t C = c->d_model, W = C * c->num_heads * c->d_kv;
    return (AttnWeights){ AT(p->dec_ln1, l, C), AT(p->dec_q, l, W), AT(p->dec_k, l, W), AT(p->dec_v, l, W), AT(p->dec_o, l, W), .lora = {{0}} }; // no adapters: see attn_lora, ffn_lora
}
static AttnGrads dec_self_g(const T5Params* p, const T5Config* c, int l) {
    AttnWeights w = dec_self_w(p, c, l);
    return (AttnGrads){ (float*)w.ln, (float*)w.q, (float*)w.k, (float*)w.v, (float*)w.o };
}
static AttnWeights dec_cross_w(const T5Params* p, const T5Config* c, int l) {
    size_t C = c->d_model, W = C * c->num_heads * c->d_kv;
    return (AttnWeights){ AT(p->dec_ln2, l, C), AT(p->dec_cq, l, W), AT(p->dec_ck, l, W), AT(p->dec_cv, l, W), AT(p->dec_co, l, W), .lora = {{0}} }; // no adapters: see attn_lora, ffn_lora
}
static AttnGrads dec_cross_g(const T5Params* p, const T5Config* c, int l) {
    AttnWeights w = dec_cross_w(p, c, l);
    return (AttnGrads){ (float*)w.ln, (float*)w.q, (float*)w.k, (float*)w.v, (float*)w.o };
}
static FfnWeights enc_ffn_w(const T5Params* p, const T5Config* c, int l) {
    size_t C = c->d_model, W = C * c->d_ff;
    return (FfnWeights){ AT(p->enc_ln2, l, C), AT(p->enc_wi0, l, W), AT(p->enc_wi1, l, W), AT(p->enc_wo, l, W), .lora = {{0}} }; // no adapters: see attn_lora, ffn_lora
}
static FfnGrads enc_ffn_g(const T5Params* p, const T5Config* c, int l) {
    FfnWeights w = enc_ffn_w(p, c, l);
    return (FfnGrads){ (float*)w.ln, (float*)w.wi0, (float*)w.wi1, (float*)w.wo };
}
static FfnWeights dec_ffn_w(const T5Params* p, const T5Config* c, int l) {
    size_t C = c->d_model, W = C * c->d_ff;
    return (FfnWeights){ AT(p->dec_ln3, l, C), AT(p->dec_wi0, l, W), AT(p->dec_wi1, l, W), AT(p->dec_wo, l, W), .lora = {{0}} }; // no adapters: see attn_lora, ffn_lora
}
static FfnGrads dec_ffn_g(const T5Params* p, const T5Config* c, int l) {
    FfnWeights w = dec_ffn_w(p, c, l);
    return (FfnGrads){ (float*)w.ln, (float*)w.wi0, (float*)w.wi1, (float*)w.wo };
}

// the adapters of block l (llmc/lora.h; their dropout sites: lora_drop_site, one mask per wrapped Linear)

// layout tensor i, copy l: its adapter, or an empty view (LoRA off, merged, or i not wrapped)
static LoraView lora_view(const T5* m, int i, int l) {
    const LoraLayout* L = &m->lora_layout;
    if (m->lora.r == 0 || m->lora_merged || !L->t[i].on) return (LoraView){0};
    return (LoraView){ lora_A(L, m->lora_memory, i, l), lora_B(L, m->lora_memory, i, l), lora_A(L, m->lora_grads, i, l),
                       lora_B(L, m->lora_grads, i, l), lora_scale(&m->lora), m->lora.r, m->lora_drop, lora_drop_site(i, l) };
}
// first: the q (or wi0) tensor id; q, k, v, o and wi0, wi1, wo follow each other in the table
static AttnWeights attn_lora(const T5* m, AttnWeights w, int first, int l) {
    for (int k = 0; k < 4; k++) w.lora[k] = lora_view(m, first + k, l);
    return w;
}
static FfnWeights ffn_lora(const T5* m, FfnWeights w, int first, int l) {
    for (int k = 0; k < 3; k++) w.lora[k] = lora_view(m, first + k, l);
    return w;
}
static AttnWeights enc_attn_wl(const T5* m, int l) { return attn_lora(m, enc_attn_w(&m->params, &m->config, l), P_ENC_Q, l); }
static AttnWeights dec_self_wl(const T5* m, int l) { return attn_lora(m, dec_self_w(&m->params, &m->config, l), P_DEC_Q, l); }
static AttnWeights dec_cross_wl(const T5* m, int l) { return attn_lora(m, dec_cross_w(&m->params, &m->config, l), P_DEC_CQ, l); }
static FfnWeights enc_ffn_wl(const T5* m, int l) { return ffn_lora(m, enc_ffn_w(&m->params, &m->config, l), P_ENC_WI0, l); }
static FfnWeights dec_ffn_wl(const T5* m, int l) { return ffn_lora(m, dec_ffn_w(&m->params, &m->config, l), P_DEC_WI0, l); }

// views for block l at the current batch sizes (layer strides use the current N, which fits the buffers)
static AttnActs enc_attn_a(T5* m, int l) {
    T5Acts* a = &m->acts; const T5Config* c = &m->config;
    size_t N = (size_t)m->B * m->Ts, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv;
    size_t att = (size_t)m->B * c->num_heads * m->Ts * m->Ts;
    float* qkv = a->e_qkv + (size_t)l * 3 * N * HD;
    return (AttnActs){ a->e_ln1 + l * N * C, a->e_rstd1 + l * N, qkv, qkv + N * HD, a->e_att + l * att,
                       a->e_ctx + l * N * HD, NULL, (int)N };
}
static FfnActs enc_ffn_a(T5* m, int l) {
    T5Acts* a = &m->acts; const T5Config* c = &m->config;
    size_t N = (size_t)m->B * m->Ts, C = c->d_model, F = c->d_ff;
    return (FfnActs){ a->e_ln2 + l * N * C, a->e_rstd2 + l * N, a->e_h0 + l * N * F,
                      c->gated ? a->e_h1 + l * N * F : NULL, a->e_ff + l * N * F };
}
static AttnActs dec_self_a(T5* m, int l) {
    T5Acts* a = &m->acts; const T5Config* c = &m->config;
    size_t N = (size_t)m->B * m->Tt, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv;
    size_t att = (size_t)m->B * c->num_heads * m->Tt * m->Tt;
    float* qkv = a->d_qkv + (size_t)l * 3 * N * HD;
    return (AttnActs){ a->d_ln1 + l * N * C, a->d_rstd1 + l * N, qkv, qkv + N * HD, a->d_att + l * att,
                       a->d_ctx + l * N * HD, NULL, (int)N };
}
static AttnActs dec_cross_a(T5* m, int l) {
    T5Acts* a = &m->acts; const T5Config* c = &m->config;
    size_t N = (size_t)m->B * m->Tt, Ne = (size_t)m->B * m->Ts, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv;
    size_t att = (size_t)m->B * c->num_heads * m->Tt * m->Ts;
    return (AttnActs){ a->d_ln2 + l * N * C, a->d_rstd2 + l * N, a->d_cq + l * N * HD, a->d_ckv + l * 2 * Ne * HD,
                       a->d_catt + l * att, a->d_cctx + l * N * HD, a->e_out, (int)Ne };
}
static FfnActs dec_ffn_a(T5* m, int l) {
    T5Acts* a = &m->acts; const T5Config* c = &m->config;
    size_t N = (size_t)m->B * m->Tt, C = c->d_model, F = c->d_ff;
    return (FfnActs){ a->d_ln3 + l * N * C, a->d_rstd3 + l * N, a->d_h0 + l * N * F,
                      c->gated ? a->d_h1 + l * N * F : NULL, a->d_ff + l * N * F };
}

// ----------------------------------------------------------------------------
// the model: forward (loss), backward (gradients), built for batches up to (B, Ts, Tt)

typedef struct { AttnSpec enc, dec_self, dec_cross; int* buckets; } T5Specs;

// attention specs of the current batch; buckets: encoder (2Ts-1) then decoder (2Tt-1) tables
static void t5_specs(T5* m, const T5Batch* b, Dropout d, T5Specs* s) {
    const T5Config* c = &m->config;
    int H = c->num_heads, D = c->d_kv, Ts = b->Ts, Tt = b->Tt;
    for (int r = -(Ts - 1); r <= Ts - 1; r++) s->buckets[r + Ts - 1] = t5_relative_bucket(r, 1, c->num_buckets, c->max_distance);
    int* dec_b = s->buckets + 2 * Ts - 1;
    for (int r = -(Tt - 1); r <= Tt - 1; r++) dec_b[r + Tt - 1] = t5_relative_bucket(r, 0, c->num_buckets, c->max_distance);
    s->enc = (AttnSpec){ b->B, Ts, Ts, H, D, b->src_len, 0, m->params.enc_relb, s->buckets, d, 0 };
    s->dec_self = (AttnSpec){ b->B, Tt, Tt, H, D, NULL, 1, m->params.dec_relb, dec_b, d, 0 };
    s->dec_cross = (AttnSpec){ b->B, Tt, Ts, H, D, b->src_len, 0, NULL, NULL, d, 0 };
}

// validates a batch against the model; returns NULL or a static message
static inline const char* t5_check_batch(const T5* m, const T5Batch* b) { return batch_check(&m->config, b); }

static float t5_head_scale(const T5Config* c) { return c->scale_out ? 1.0f / sqrtf((float)c->d_model) : 1.0f; }
static const float* t5_head(const T5* m) { return m->config.tied ? m->params.shared : m->params.lm_head; }

static void t5_build_acts(T5* m, int B, int Ts, int Tt) {
    if (B <= m->max_B && Ts <= m->max_Ts && Tt <= m->max_Tt) return;
    t5_alloc_acts(m, B > m->max_B ? B : m->max_B, Ts > m->max_Ts ? Ts : m->max_Ts, Tt > m->max_Tt ? Tt : m->max_Tt);
}

static void t5_encoder_forward(T5* m, const T5Batch* b, const T5Specs* s, Dropout d) {
    const T5Config* c = &m->config;
    T5Acts* a = &m->acts;
    int N = b->B * b->Ts, C = c->d_model;
    embedding_forward(a->e_res, b->src, m->params.shared, N, C, d, drop_site(0, 0, DROP_EMBED));
    for (int l = 0; l < c->num_layers; l++) {
        AttnSpec sp = s->enc; sp.site = drop_site(0, l, DROP_ATT);
        float* res_in = a->e_res + (size_t)l * N * C;
        float* mid = a->e_mid + (size_t)l * N * C;
        attn_sublayer_forward(m, mid, res_in, enc_attn_a(m, l), enc_attn_wl(m, l), &sp, N, d, drop_site(0, l, DROP_ATT_RES));
        ffn_sublayer_forward(m, res_in + (size_t)N * C, mid, enc_ffn_a(m, l), enc_ffn_wl(m, l), N, d,
                             drop_site(0, l, DROP_FF), drop_site(0, l, DROP_FF_RES));
    }
    rmsnorm_forward(a->e_out, a->e_rstdf, a->e_res + (size_t)c->num_layers * N * C, m->params.enc_lnf, N, C, c->eps);
    dropout_apply(a->e_out, a->e_out, (size_t)N * C, d, drop_site(0, 0, DROP_FINAL));
}

static void t5_decoder_forward(T5* m, const T5Batch* b, const T5Specs* s, Dropout d) {
    const T5Config* c = &m->config;
    T5Acts* a = &m->acts;
    int N = b->B * b->Tt, C = c->d_model;
    embedding_forward(a->d_res, b->dec_in, m->params.shared, N, C, d, drop_site(1, 0, DROP_EMBED));
    for (int l = 0; l < c->num_decoder_layers; l++) {
        AttnSpec self = s->dec_self, cross = s->dec_cross;
        self.site = drop_site(1, l, DROP_ATT); cross.site = drop_site(1, l, DROP_CROSS);
        float* res_in = a->d_res + (size_t)l * N * C;
        float* mid1 = a->d_mid1 + (size_t)l * N * C;
        float* mid2 = a->d_mid2 + (size_t)l * N * C;
        attn_sublayer_forward(m, mid1, res_in, dec_self_a(m, l), dec_self_wl(m, l), &self, N, d, drop_site(1, l, DROP_ATT_RES));
        attn_sublayer_forward(m, mid2, mid1, dec_cross_a(m, l), dec_cross_wl(m, l), &cross, N, d, drop_site(1, l, DROP_CROSS_RES));
        ffn_sublayer_forward(m, res_in + (size_t)N * C, mid2, dec_ffn_a(m, l), dec_ffn_wl(m, l), N, d,
                             drop_site(1, l, DROP_FF), drop_site(1, l, DROP_FF_RES));
    }
    // T5 (scale_out, original T5's tied head): the decoder output is scaled by C^-0.5 before the head
    rmsnorm_forward(a->d_out, a->d_rstdf, a->d_res + (size_t)c->num_decoder_layers * N * C, m->params.dec_lnf, N, C, c->eps);
    dropout_apply(a->d_out, a->d_out, (size_t)N * C, d, drop_site(1, 0, DROP_FINAL));
    float hs = t5_head_scale(c);
    if (hs != 1.0f) for (size_t i = 0; i < (size_t)N * C; i++) a->d_out[i] *= hs;
    matmul_forward(&m->gemm_ws, a->logits, a->d_out, t5_head(m), N, C, c->vocab_size);
}

// forward pass: logits in acts.logits, returns the mean loss over counted label tokens.
// `train` turns dropout on (rate from the config) with masks drawn from `seed`.
static float t5_forward(T5* m, const T5Batch* b, int train, uint64_t seed) {
    t5_build_acts(m, b->B, b->Ts, b->Tt);
    m->B = b->B; m->Ts = b->Ts; m->Tt = b->Tt;
    Dropout d = { train ? m->config.dropout : 0.0f, seed };
    m->dropout_seed = seed;
    m->lora_drop = (Dropout){ train ? m->lora.dropout : 0.0f, seed };
    int buckets[2 * (b->Ts + b->Tt)];
    T5Specs s = { .buckets = buckets };
    t5_specs(m, b, d, &s);
    t5_encoder_forward(m, b, &s, d);
    t5_decoder_forward(m, b, &s, d);
    double sum;
    m->num_counted = crossentropy_forward(m->acts.losses, &sum, m->acts.logits, b->labels, b->B * b->Tt, m->config.vocab_size);
    m->mean_loss = m->num_counted > 0 ? (float)(sum / m->num_counted) : 0.0f;
    return m->mean_loss;
}

// what the optimizer trains: the whole model, or under LoRA only the adapter (the base is frozen)
static float* t5_trainable_grads(const T5* m) { return m->lora.r ? m->lora_grads : m->grads_memory; }
static size_t t5_num_trainable(const T5* m) { return m->lora.r ? m->lora_layout.total : m->layout.total; }

static void t5_zero_grad(T5* m) { memset(t5_trainable_grads(m), 0, t5_num_trainable(m) * sizeof(float)); }

static void t5_encoder_backward(T5* m, const T5Batch* b, const T5Specs* s, Dropout d) {
    const T5Config* c = &m->config;
    T5Acts* a = &m->acts;
    int N = b->B * b->Ts, C = c->d_model, L = c->num_layers;
    // encoder output: e_out = dropout(rmsnorm(e_res[L]));  ∂e_out was accumulated in g_enc
    dropout_apply(a->g_x, a->g_enc, (size_t)N * C, d, drop_site(0, 0, DROP_FINAL));
    memset(a->g_res, 0, (size_t)N * C * sizeof(float));
    rmsnorm_backward(a->g_res, m->grads.enc_lnf, a->g_x, a->e_res + (size_t)L * N * C, m->params.enc_lnf, a->e_rstdf, N, C);
    for (int l = L - 1; l >= 0; l--) {
        AttnSpec sp = s->enc; sp.site = drop_site(0, l, DROP_ATT);
        float* res_in = a->e_res + (size_t)l * N * C;
        float* mid = a->e_mid + (size_t)l * N * C;
        ffn_sublayer_backward(m, a->g_res, mid, enc_ffn_a(m, l), enc_ffn_wl(m, l), enc_ffn_g(&m->grads, c, l),
                              N, d, drop_site(0, l, DROP_FF), drop_site(0, l, DROP_FF_RES));
        attn_sublayer_backward(m, a->g_res, res_in, enc_attn_a(m, l), enc_attn_wl(m, l), enc_attn_g(&m->grads, c, l),
                               &sp, N, d, drop_site(0, l, DROP_ATT_RES), m->grads.enc_relb, NULL);
    }
    embedding_backward(m->grads.shared, b->src, a->g_res, N, C, d, drop_site(0, 0, DROP_EMBED));
}

static void t5_decoder_backward(T5* m, const T5Batch* b, const T5Specs* s, Dropout d) {
    const T5Config* c = &m->config;
    T5Acts* a = &m->acts;
    int N = b->B * b->Tt, C = c->d_model, L = c->num_decoder_layers;
    float hs = t5_head_scale(c);
    float* dhead = c->tied ? m->grads.shared : m->grads.lm_head;
    // head: logits = d_out · headᵀ, d_out = hs · dropout(rmsnorm(d_res[L]))
    matmul_backward(&m->gemm_ws, a->g_x, dhead, a->logits, a->d_out, t5_head(m), N, C, c->vocab_size, 0);
    if (hs != 1.0f) for (size_t i = 0; i < (size_t)N * C; i++) a->g_x[i] *= hs;
    dropout_apply(a->g_x, a->g_x, (size_t)N * C, d, drop_site(1, 0, DROP_FINAL));
    memset(a->g_res, 0, (size_t)N * C * sizeof(float));
    rmsnorm_backward(a->g_res, m->grads.dec_lnf, a->g_x, a->d_res + (size_t)L * N * C, m->params.dec_lnf, a->d_rstdf, N, C);
    memset(a->g_enc, 0, (size_t)b->B * b->Ts * C * sizeof(float));
    for (int l = L - 1; l >= 0; l--) {
        AttnSpec self = s->dec_self, cross = s->dec_cross;
        self.site = drop_site(1, l, DROP_ATT); cross.site = drop_site(1, l, DROP_CROSS);
        float* res_in = a->d_res + (size_t)l * N * C;
        float* mid1 = a->d_mid1 + (size_t)l * N * C;
        float* mid2 = a->d_mid2 + (size_t)l * N * C;
        ffn_sublayer_backward(m, a->g_res, mid2, dec_ffn_a(m, l), dec_ffn_wl(m, l), dec_ffn_g(&m->grads, c, l),
                              N, d, drop_site(1, l, DROP_FF), drop_site(1, l, DROP_FF_RES));
        attn_sublayer_backward(m, a->g_res, mid1, dec_cross_a(m, l), dec_cross_wl(m, l), dec_cross_g(&m->grads, c, l),
                               &cross, N, d, drop_site(1, l, DROP_CROSS_RES), NULL, a->g_enc);
        attn_sublayer_backward(m, a->g_res, res_in, dec_self_a(m, l), dec_self_wl(m, l), dec_self_g(&m->grads, c, l),
                               &self, N, d, drop_site(1, l, DROP_ATT_RES), m->grads.dec_relb, NULL);
    }
    embedding_backward(m->grads.shared, b->dec_in, a->g_res, N, C, d, drop_site(1, 0, DROP_EMBED));
}

// backward pass of the last t5_forward (same batch, same train flag): grads += ∂(loss_scale · Σ token losses).
// loss_scale = 1 / (counted tokens of the whole accumulated batch), so micro-batches add up exactly.
static void t5_backward(T5* m, const T5Batch* b, int train, float loss_scale) {
    Dropout d = { train ? m->config.dropout : 0.0f, m->dropout_seed };
    m->lora_drop = (Dropout){ train ? m->lora.dropout : 0.0f, m->dropout_seed };
    int buckets[2 * (b->Ts + b->Tt)];
    T5Specs s = { .buckets = buckets };
    t5_specs(m, b, d, &s);
    crossentropy_backward(m->acts.logits, b->labels, b->B * b->Tt, m->config.vocab_size, loss_scale);
    t5_decoder_backward(m, b, &s, d);
    t5_encoder_backward(m, b, &s, d);
}

// ----------------------------------------------------------------------------
// optimizer: AdamW with the exact semantics of torch.optim.AdamW (AdamW: llmc/engine.h), gradient-norm clipping

// Σ g² in double (the global norm's sum; llmc/global_norm.cuh is its GPU twin)
static double sum_squares(const float* g, size_t n) {
    double total = 0.0;
    #pragma omp parallel for schedule(static) reduction(+:total)
    for (size_t i = 0; i < n; i++) total += (double)g[i] * g[i];
    return total;
}

// global L2 norm of all (trainable) gradients
static float t5_grad_norm(const T5* m) { return (float)sqrt(sum_squares(t5_trainable_grads(m), t5_num_trainable(m))); }

// torch.nn.utils.clip_grad_norm_: scale all gradients by max_norm / (norm + 1e-6) when that is < 1
static void t5_clip_grads(T5* m, float norm, float max_norm) {
    if (max_norm <= 0.0f) return;
    float coef = max_norm / (norm + 1e-6f);
    if (coef >= 1.0f) return;
    size_t n = t5_num_trainable(m);
    float* g = t5_trainable_grads(m);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= coef;
}

// AdamW on one tensor of n values (llmc/adamw.cuh is its GPU twin):
//   θ ← θ·decay;  m ← m + (1−β1)(g − m);  v ← β2·v + (1−β2)·g²
//   θ ← θ − step_size · m / (sqrt(v)/bc2_sqrt + eps)
static void adamw_tensor(float* p, const float* g, float* mm, float* vv, size_t n, const AdamW* o, float decay,
                         float step_size, float bc2_sqrt) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        p[i] *= decay;
        mm[i] += (g[i] - mm[i]) * (1.0f - o->beta1);
        vv[i] = o->beta2 * vv[i] + (1.0f - o->beta2) * g[i] * g[i];
        float denom = sqrtf(vv[i]) / bc2_sqrt + o->eps;
        p[i] -= step_size * mm[i] / denom;
    }
}

// one update with learning rate lr (the schedule already applied): decay = 1 − lr·wd,
// step_size = lr/(1−β1^t), bc2_sqrt = sqrt(1−β2^t)
static void t5_update(T5* m, const AdamW* o, float lr) {
    size_t n = t5_num_trainable(m);
    if (m->m_memory == NULL) {
        m->m_memory = (float*)callocCheck(n, sizeof(float));
        m->v_memory = (float*)callocCheck(n, sizeof(float));
    }
    m->step++;
    // bias corrections in double, as torch computes these Python scalars
    double bc1 = 1.0 - pow((double)o->beta1, (double)m->step), bc2 = 1.0 - pow((double)o->beta2, (double)m->step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    if (m->lora.r) { // the adapter: A and B are weights, all decayed (HF Trainer's rule; no norms among them)
        adamw_tensor(m->lora_memory, m->lora_grads, m->m_memory, m->v_memory, n, o, (float)(1.0 - (double)lr * o->weight_decay),
                     step_size, bc2_sqrt);
        return;
    }
    for (int t = 0; t < NUM_PARAM_TENSORS; t++) {
        const T5Tensor* tt = &m->layout.t[t];
        float decay = (t5_no_decay(t) && !o->decay_norms) ? 1.0f : (float)(1.0 - (double)lr * o->weight_decay);
        size_t off = tt->offset;
        adamw_tensor(m->params_memory + off, m->grads_memory + off, m->m_memory + off, m->v_memory + off, tt->size, o,
                     decay, step_size, bc2_sqrt);
    }
}

// Adafactor (llmc/adafactor.h, transformers' semantics) on every slice of the trainable tensors (llmc/optim.h:
// each layer of a stacked tensor on its own, matrices factored, norms as vectors), from the step's values
// (the driver's adafactor_step_values for update t = step + 1). RMSNorm weights and the relative bias tables
// take no weight decay unless decay_norms (HF Trainer's groups, t5_no_decay); the adapter's A and B all do.
static void t5_update_adafactor(T5* m, const AdafactorStep* s, int decay_norms) {
    int lora = m->lora.r > 0;
    int n = lora ? lora_opt_slices(&m->lora_layout, NULL) : t5_opt_slices(&m->layout, NULL);
    OptSlice* sl = (OptSlice*)mallocCheck((size_t)n * sizeof(OptSlice));
    if (lora) lora_opt_slices(&m->lora_layout, sl); else t5_opt_slices(&m->layout, sl);
    if (m->af_memory == NULL) {
        m->af_beta1 = s->has_beta1;
        m->af_n = adafactor_slices_floats(sl, n, s->has_beta1);
        m->af_memory = (float*)callocCheck(m->af_n + 1, sizeof(float));
    }
    m->step++;
    if (lora) adafactor_update_slices(m->lora_memory, m->lora_grads, m->af_memory, sl, n, s, 1);
    else adafactor_update_slices(m->params_memory, m->grads_memory, m->af_memory, sl, n, s, decay_norms);
    free(sl);
}

// ----------------------------------------------------------------------------
// LoRA: attaching an adapter, and merging it into the weights (llmc/lora.h)

// turns LoRA on with config c: the adapter `adapter` (taken over), or peft's init drawn from seed when
// NULL. The base weights freeze: their gradient buffer and any optimizer state are dropped.
static void t5_lora_attach(T5* m, const LoraConfig* c, float* adapter, uint64_t seed) {
    m->lora = *c;
    lora_layout(c, &m->layout, m->config.gated, &m->lora_layout);
    free(m->lora_memory); free(m->lora_grads);
    m->lora_memory = adapter ? adapter : (float*)callocCheck(m->lora_layout.total, sizeof(float));
    if (!adapter) lora_init(&m->lora_layout, m->lora_memory, seed);
    m->lora_grads = (float*)callocCheck(m->lora_layout.total, sizeof(float));
    free(m->grads_memory); m->grads_memory = NULL;
    memset(&m->grads, 0, sizeof(m->grads));
    free(m->m_memory); free(m->v_memory); m->m_memory = m->v_memory = NULL;
    m->step = 0;
    t5_free_acts(&m->acts); // the LoRA scratch joins the activations at the next forward pass
    m->max_B = m->max_Ts = m->max_Tt = 0;
    m->lora_base_crc = lora_base_fingerprint(m->params_memory, m->layout.total);
}

// merges the adapter into the base weights until t5_lora_unmerge: returns a copy of the wrapped
// tensors as they were, so that the base comes back bit for bit (NULL when there is nothing to do)
static float* t5_lora_merge(T5* m) {
    if (m->lora.r == 0 || m->lora_merged) return NULL;
    size_t n = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) if (m->lora_layout.t[i].on) n += m->layout.t[i].size;
    float* saved = (float*)mallocCheck(n * sizeof(float));
    size_t k = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        if (!m->lora_layout.t[i].on) continue;
        memcpy(saved + k, m->params_memory + m->layout.t[i].offset, m->layout.t[i].size * sizeof(float));
        k += m->layout.t[i].size;
    }
    lora_merge(m->params_memory, &m->layout, &m->lora_layout, m->lora_memory, lora_scale(&m->lora));
    m->lora_merged = 1;
    return saved;
}

static void t5_lora_unmerge(T5* m, float* saved) {
    if (!saved) return;
    size_t k = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        if (!m->lora_layout.t[i].on) continue;
        memcpy(m->params_memory + m->layout.t[i].offset, saved + k, m->layout.t[i].size * sizeof(float));
        k += m->layout.t[i].size;
    }
    m->lora_merged = 0;
    free(saved);
}

// ----------------------------------------------------------------------------
// generation: greedy and beam search with a key/value cache, as transformers' generate() (5.24) runs
// them for T5. The encoder runs once for the batch; the decoder then runs one position per step for
// all R = B·num_beams rows, reading the keys/values of earlier positions from a cache:
//   self-attention:  k, v of the new position t are appended; its query sees keys 0..t with the causal
//                    relative bias bucket(j − t), i.e. row t of the full causal pass
//   cross-attention: k, v of the encoder output, computed once per input and shared by its beams
// No dropout. The search loops follow GenerationMixin._sample (greedy) and _beam_search step by step,
// their fp32 arithmetic included, so near-equal scores are compared the way HF compares them.



// everything one t5_generate call owns: the caches, the per-step activations of R rows, the search state
typedef struct {
    int B, nb, R, Ts, Tmax;         // inputs, beams per input, rows R = B·nb, padded source length, positions
    float *self_k, *self_v;         // (Ld, R, Tmax, HD) keys/values of the decoded positions
    float *cross_k, *cross_v;       // (Ld, B, Ts, HD)   keys/values of the encoder output
    int *self_len, *cross_len;      // (R) keys each row attends to: t+1 / its input's source length
    int *row_input;                 // (R) the input of row r: r / nb
    int *buckets;                   // (Tmax) causal bucket of key j for the current query position t
    float *x, *x2, *ln, *rstd;      // (R, C) residual stream in and out, normed input; (R) 1/rms
    float *q, *k_new, *v_new, *ctx; // (R, HD)
    float *att;                     // (R, H, max(Tmax, Ts)) attention probabilities
    float *h0, *h1, *ff;            // (R, F)
    float *logits;                  // (R, V)
    float *tmp;                     // (R, Tmax, HD) staging area for reordering the cache
    void* owned[48]; int n_owned;   // every buffer of this struct and of the search state, for gen_cache_free
} GenCache;

static void* gen_alloc(GenCache* g, size_t bytes) {
    if (g->n_owned == (int)(sizeof(g->owned) / sizeof(g->owned[0]))) {
        fprintf(stderr, "error: GenCache.owned is full: raise its size in train_t5.c\n");
        exit(EXIT_FAILURE);
    }
    void* p = mallocCheck(bytes);
    g->owned[g->n_owned++] = p;
    return p;
}

static void gen_cache_build(GenCache* g, const T5Config* c, int B, int nb, int Ts, int Tmax) {
    memset(g, 0, sizeof(*g));
    g->B = B; g->nb = nb; g->R = B * nb; g->Ts = Ts; g->Tmax = Tmax;
    size_t R = g->R, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv, F = c->d_ff, V = c->vocab_size;
    size_t Ld = c->num_decoder_layers, Tk = Tmax > Ts ? Tmax : Ts, f = sizeof(float), i = sizeof(int);
    g->self_k = gen_alloc(g, Ld * R * Tmax * HD * f);
    g->self_v = gen_alloc(g, Ld * R * Tmax * HD * f);
    g->cross_k = gen_alloc(g, Ld * B * Ts * HD * f);
    g->cross_v = gen_alloc(g, Ld * B * Ts * HD * f);
    g->self_len = gen_alloc(g, R * i); g->cross_len = gen_alloc(g, R * i); g->row_input = gen_alloc(g, R * i);
    g->buckets = gen_alloc(g, Tmax * i);
    g->x = gen_alloc(g, R * C * f); g->x2 = gen_alloc(g, R * C * f); g->ln = gen_alloc(g, R * C * f);
    g->rstd = gen_alloc(g, R * f);
    g->q = gen_alloc(g, R * HD * f); g->k_new = gen_alloc(g, R * HD * f); g->v_new = gen_alloc(g, R * HD * f);
    g->ctx = gen_alloc(g, R * HD * f);
    g->att = gen_alloc(g, R * c->num_heads * Tk * f);
    g->h0 = gen_alloc(g, R * F * f); g->h1 = gen_alloc(g, R * F * f); g->ff = gen_alloc(g, R * F * f);
    g->logits = gen_alloc(g, R * V * f);
    g->tmp = gen_alloc(g, R * Tmax * HD * f);
    for (int r = 0; r < g->R; r++) g->row_input[r] = r / nb;
}

static void gen_cache_free(GenCache* g) {
    for (int i = 0; i < g->n_owned; i++) free(g->owned[i]);
    memset(g, 0, sizeof(*g));
}

// one new query per row:  out (R, H·D) = softmax(q·kᵀ + bias + mask) · v   — T5: no 1/sqrt(D).
// Row r reads sequence kv_seq[r] (NULL: r) of a (S, Tk, H·D) key/value cache. s describes R sequences of
// one query each (Tq = 1): attention_softmax adds the bias and masks keys j ≥ s->key_len[r].
static void attention_decode(float* out, float* att, const float* q, const float* k, const float* v,
                             const int* kv_seq, const AttnSpec* s) {
    int R = s->B, Tk = s->Tk, H = s->H, D = s->D, HD = H * D;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int r = 0; r < R; r++)
        for (int h = 0; h < H; h++) { // scores_j = q_rh · k_jh
            const float* qh = q + (size_t)r * HD + (size_t)h * D;
            const float* kh = head_at(k, kv_seq ? kv_seq[r] : r, h, Tk, HD, D);
            float* a = att + ((size_t)r * H + h) * Tk;
            for (int j = 0; j < s->key_len[r]; j++) {
                float dot = 0.0f;
                #pragma omp simd reduction(+:dot)
                for (int d = 0; d < D; d++) dot += qh[d] * kh[(size_t)j * HD + d];
                a[j] = dot;
            }
        }
    attention_softmax(att, s);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int r = 0; r < R; r++)
        for (int h = 0; h < H; h++) { // out_rh = Σ_j p_j v_jh
            const float* vh = head_at(v, kv_seq ? kv_seq[r] : r, h, Tk, HD, D);
            const float* p = att + ((size_t)r * H + h) * Tk;
            float* o = out + (size_t)r * HD + (size_t)h * D;
            for (int d = 0; d < D; d++) o[d] = 0.0f;
            for (int j = 0; j < s->key_len[r]; j++)
                for (int d = 0; d < D; d++) o[d] += p[j] * vh[(size_t)j * HD + d];
        }
}

// Linear for the few rows of a decoding step:  out (R, OC) = inp (R, IC) · Wᵀ. The GEMM would pack (copy)
// all of W for a handful of rows; here W is read in place, once: a block of 8 weight rows at a time stays
// in L1 while every group of 4 input rows passes over it, 2 weight rows × 4 input rows of dot products at
// once (8 independent sums keep the FMA units busy).
static void matmul_rows_forward(float* out, const float* inp, const float* w, int R, int IC, int OC) {
    #pragma omp parallel for schedule(static)
    for (int ob = 0; ob < OC; ob += 8)
        for (int r0 = 0; r0 < R; r0 += 4) {
            int nr = R - r0 < 4 ? R - r0 : 4, oe = OC - ob < 8 ? OC : ob + 8;
            const float *x0 = inp + (size_t)r0 * IC, *x1 = nr > 1 ? x0 + IC : x0; // rows past R repeat row r0
            const float *x2 = nr > 2 ? x0 + 2 * (size_t)IC : x0, *x3 = nr > 3 ? x0 + 3 * (size_t)IC : x0;
            for (int o = ob; o < oe; o += 2) {
                const float* w0 = w + (size_t)o * IC;
                const float* w1 = o + 1 < oe ? w0 + IC : w0; // an odd last row is computed twice, stored once
                float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, b0 = 0.0f, b1 = 0.0f, b2 = 0.0f, b3 = 0.0f;
                #pragma omp simd reduction(+:a0, a1, a2, a3, b0, b1, b2, b3)
                for (int i = 0; i < IC; i++) {
                    a0 += x0[i] * w0[i]; a1 += x1[i] * w0[i]; a2 += x2[i] * w0[i]; a3 += x3[i] * w0[i];
                    b0 += x0[i] * w1[i]; b1 += x1[i] * w1[i]; b2 += x2[i] * w1[i]; b3 += x3[i] * w1[i];
                }
                float sa[4] = { a0, a1, a2, a3 }, sb[4] = { b0, b1, b2, b3 };
                for (int i = 0; i < nr; i++) {
                    out[(size_t)(r0 + i) * OC + o] = sa[i];
                    if (o + 1 < oe) out[(size_t)(r0 + i) * OC + o + 1] = sb[i];
                }
            }
        }
}

// res_out = res_in + o(attention(rmsnorm(res_in))) for one new position per row. Self-attention
// (append_at = t ≥ 0) first writes this position's k, v into the layer's cache (R, Tmax, HD) at t.
static void gen_attn_sublayer(T5* m, GenCache* g, float* res_out, const float* res_in, AttnWeights w, float* k,
                              float* v, const int* kv_seq, const AttnSpec* s, int append_at) {
    const T5Config* c = &m->config;
    int R = g->R, C = c->d_model, HD = c->num_heads * c->d_kv;
    rmsnorm_forward(g->ln, g->rstd, res_in, w.ln, R, C, c->eps);
    matmul_rows_forward(g->q, g->ln, w.q, R, C, HD);
    if (append_at >= 0) {
        matmul_rows_forward(g->k_new, g->ln, w.k, R, C, HD);
        matmul_rows_forward(g->v_new, g->ln, w.v, R, C, HD);
        for (int r = 0; r < R; r++) {
            size_t at = ((size_t)r * g->Tmax + append_at) * HD;
            memcpy(k + at, g->k_new + (size_t)r * HD, (size_t)HD * sizeof(float));
            memcpy(v + at, g->v_new + (size_t)r * HD, (size_t)HD * sizeof(float));
        }
    }
    attention_decode(g->ctx, g->att, g->q, k, v, kv_seq, s);
    matmul_rows_forward(res_out, g->ctx, w.o, R, HD, C);
    residual_forward(res_out, res_in, res_out, (size_t)R * C, (Dropout){0}, 0);
}

// res_out = res_in + wo(act(wi_0 x) [* wi_1 x]), x = rmsnorm(res_in): ffn_sublayer_forward for a few rows
static void gen_ffn_sublayer(T5* m, GenCache* g, float* res_out, const float* res_in, FfnWeights w) {
    const T5Config* c = &m->config;
    int R = g->R, C = c->d_model, F = c->d_ff;
    rmsnorm_forward(g->ln, g->rstd, res_in, w.ln, R, C, c->eps);
    matmul_rows_forward(g->h0, g->ln, w.wi0, R, C, F);
    if (w.wi1) matmul_rows_forward(g->h1, g->ln, w.wi1, R, C, F);
    ffn_act_forward(g->ff, g->h0, w.wi1 ? g->h1 : NULL, (size_t)R * F, c->act, (Dropout){0}, 0);
    matmul_rows_forward(res_out, g->ff, w.wo, R, F, C);
    residual_forward(res_out, res_in, res_out, (size_t)R * C, (Dropout){0}, 0);
}

// the decoder at position t for every row: tokens (R) → g->logits (R, V), the same logits the full
// (non-cached) decoder gives at t for these rows' prefixes
static void gen_decode_step(T5* m, GenCache* g, const int* tokens, int t) {
    const T5Config* c = &m->config;
    int R = g->R, C = c->d_model, H = c->num_heads, D = c->d_kv;
    size_t self_stride = (size_t)R * g->Tmax * H * D, cross_stride = (size_t)g->B * g->Ts * H * D;
    Dropout none = {0};
    for (int j = 0; j <= t; j++) g->buckets[j] = t5_relative_bucket(j - t, 0, c->num_buckets, c->max_distance);
    for (int r = 0; r < R; r++) g->self_len[r] = t + 1;
    AttnSpec self = { R, 1, g->Tmax, H, D, g->self_len, 0, m->params.dec_relb, g->buckets, none, 0 };
    AttnSpec cross = { R, 1, g->Ts, H, D, g->cross_len, 0, NULL, NULL, none, 0 };
    embedding_forward(g->x, tokens, m->params.shared, R, C, none, 0);
    for (int l = 0; l < c->num_decoder_layers; l++) { // x → x2 (self) → x (cross) → x2 (FFN), then swap
        gen_attn_sublayer(m, g, g->x2, g->x, dec_self_w(&m->params, c, l), g->self_k + l * self_stride,
                          g->self_v + l * self_stride, NULL, &self, t);
        gen_attn_sublayer(m, g, g->x, g->x2, dec_cross_w(&m->params, c, l), g->cross_k + l * cross_stride,
                          g->cross_v + l * cross_stride, g->row_input, &cross, -1);
        gen_ffn_sublayer(m, g, g->x2, g->x, dec_ffn_w(&m->params, c, l));
        float* swap = g->x; g->x = g->x2; g->x2 = swap;
    }
    // T5 (scale_out, original T5's tied head): the decoder output is scaled by C^-0.5 before the head
    rmsnorm_forward(g->ln, g->rstd, g->x, m->params.dec_lnf, R, C, c->eps);
    float hs = t5_head_scale(c);
    if (hs != 1.0f) for (size_t i = 0; i < (size_t)R * C; i++) g->ln[i] *= hs;
    matmul_rows_forward(g->logits, g->ln, t5_head(m), R, C, c->vocab_size);
}

// beam search: row r continues the hypothesis of row parent[r], so it takes over that row's cached keys
// and values (positions < len). Only rows with another parent move; every source is staged before any
// row is overwritten. Serial: plain copies, bound by memory bandwidth.
static void gen_cache_reorder(GenCache* g, const T5Config* c, const int* parent, int len) {
    size_t row = (size_t)g->Tmax * c->num_heads * c->d_kv, n = (size_t)len * c->num_heads * c->d_kv * sizeof(float);
    float* caches[2] = { g->self_k, g->self_v };
    for (int l = 0; l < c->num_decoder_layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            float* base = caches[kv] + (size_t)l * g->R * row;
            for (int r = 0; r < g->R; r++) if (parent[r] != r) memcpy(g->tmp + r * row, base + (size_t)parent[r] * row, n);
            for (int r = 0; r < g->R; r++) if (parent[r] != r) memcpy(base + r * row, g->tmp + r * row, n);
        }
}

// the encoder over the batch (sources padded with pad_id to Ts, key-padding mask from src_len), then the
// cross-attention keys and values of every decoder layer from its output
static void gen_encode(T5* m, GenCache* g, const int* const* src, const int* src_len) {
    const T5Config* c = &m->config;
    int B = g->B, Ts = g->Ts, C = c->d_model, HD = c->num_heads * c->d_kv, Ne = B * Ts;
    int* ids = (int*)mallocCheck((size_t)Ne * sizeof(int));
    int* dec = (int*)mallocCheck((size_t)B * sizeof(int)); // a one-position decoder batch: t5_specs wants one
    int* lab = (int*)mallocCheck((size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < Ts; j++) ids[(size_t)b * Ts + j] = j < src_len[b] ? src[b][j] : c->pad_id;
        dec[b] = c->decoder_start_id; lab[b] = IGNORE_INDEX;
    }
    T5Batch batch = { .B = B, .Ts = Ts, .Tt = 1, .src = ids, .src_len = (int*)src_len, .dec_in = dec, .labels = lab };
    Dropout none = {0};
    t5_build_acts(m, B, Ts, 1);
    m->B = B; m->Ts = Ts; m->Tt = 1;
    int buckets[2 * (Ts + 1)];
    T5Specs s = { .buckets = buckets };
    t5_specs(m, &batch, none, &s);
    t5_encoder_forward(m, &batch, &s, none);
    size_t stride = (size_t)Ne * HD;
    for (int l = 0; l < c->num_decoder_layers; l++) {
        AttnWeights w = dec_cross_w(&m->params, c, l);
        matmul_forward(&m->gemm_ws, g->cross_k + l * stride, m->acts.e_out, w.k, Ne, C, HD);
        matmul_forward(&m->gemm_ws, g->cross_v + l * stride, m->acts.e_out, w.v, Ne, C, HD);
    }
    for (int r = 0; r < g->R; r++) g->cross_len[r] = src_len[g->row_input[r]];
    free(ids); free(dec); free(lab);
}

// HF's NoRepeatNGramLogitsProcessor on one row: the last n−1 tokens of seq (len tokens, start token
// included) are matched against every earlier window; each match bans the token that followed it
static void gen_ban_ngrams(float* scores, const int* seq, int len, int n) {
    if (n <= 0 || len < n) return;
    const int* prefix = seq + len - (n - 1);
    for (int i = 0; i + n <= len; i++)
        if (memcmp(seq + i, prefix, (size_t)(n - 1) * sizeof(int)) == 0) scores[seq[i + n - 1]] = -INFINITY;
}

// HF's RepetitionPenaltyLogitsProcessor on one row: every distinct token of seq (len tokens, start token
// included: for an encoder-decoder the processor sees the decoder's ids) has its score s replaced by
//   s < 0 ? s · penalty : s / penalty          (torch.where over a gather, then a scatter)
// once, however often it occurs (the gather reads the scores before any is changed)
static void gen_repetition_penalty(float* scores, const int* seq, int len, float penalty) {
    if (penalty == 1.0f) return; // HF adds the processor only for penalty != 1
    for (int i = 0; i < len; i++) {
        int tok = seq[i], seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = seq[j] == tok;
        if (seen) continue;
        float x = scores[tok];
        scores[tok] = x < 0.0f ? x * penalty : x / penalty;
    }
}

// the logits processors of generate() on one row, in the order _get_logits_processor builds them (those
// GenConfig can turn on): repetition penalty, n-gram ban, then the minimum length. Greedy search runs them
// on the logits, beam search on the log-probabilities (_beam_search: log_softmax, then the processors).
// seq: the row's len tokens so far, start token included. MinNewTokensLength bans eos while the new
// tokens (len − 1: the start token is the decoder's prompt) are fewer than min_new_tokens; HF also sets
// min_length = min_new_tokens + 1 for the same ban (MinLengthLogitsProcessor): one ban here
static void gen_process(float* scores, const int* seq, int len, const GenConfig* cfg, int eos) {
    gen_repetition_penalty(scores, seq, len, cfg->repetition_penalty);
    gen_ban_ngrams(scores, seq, len, cfg->no_repeat_ngram_size);
    if (len - 1 < cfg->min_new_tokens) scores[eos] = -INFINITY;
}

// in place: x ← log_softmax(x) = x − max − log Σ exp(x − max)
static void log_softmax_forward(float* x, int V) {
    float maxv = -INFINITY;
    for (int i = 0; i < V; i++) if (x[i] > maxv) maxv = x[i];
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += expf(x[i] - maxv);
    float lse = (float)log(sum);
    for (int i = 0; i < V; i++) x[i] = x[i] - maxv - lse;
}

static int argmax_first(const float* x, int n) { // torch.argmax: the first of equal maxima
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

// greedy search (HF _sample without sampling): seq (R, 1 + max_new) gets the start token then one token
// per step; a row that produced eos gets pad_id from then on while the others go on (HF's padding)
static void gen_greedy(T5* m, GenCache* g, const GenConfig* cfg, int* seq, int* out_len) {
    const T5Config* c = &m->config;
    int R = g->R, V = c->vocab_size, L = 1 + cfg->max_new_tokens;
    int* tokens = (int*)mallocCheck((size_t)R * sizeof(int));
    int* done = (int*)callocCheck((size_t)R, sizeof(int));
    for (int r = 0; r < R; r++) { seq[(size_t)r * L] = tokens[r] = c->decoder_start_id; out_len[r] = 0; }
    for (int t = 0; t < cfg->max_new_tokens; t++) {
        gen_decode_step(m, g, tokens, t);
        int open = 0;
        for (int r = 0; r < R; r++) {
            float* x = g->logits + (size_t)r * V;
            x[c->eos_id] += cfg->eos_bias;
            gen_process(x, seq + (size_t)r * L, t + 1, cfg, c->eos_id);
            int next = done[r] ? c->pad_id : argmax_first(x, V);
            seq[(size_t)r * L + t + 1] = tokens[r] = next;
            if (!done[r]) out_len[r] = t + 1;
            if (next == c->eos_id || t + 1 == cfg->max_new_tokens) done[r] = 1;
            open += !done[r];
        }
        if (!open) break;
    }
    free(tokens); free(done);
}

// step 1 for input b: the K best continuations over its nb beams of acc = running score + log p (rows of
// g->logits, flat index = beam·V + token)
static void beam_candidates(BeamState* s, const GenCache* g, const T5Config* c, int b, int cur_len) {
    int V = c->vocab_size, nb = s->nb, K = s->K;
    int* idx = s->scratch + (size_t)b * (nb + K);
    const float* scores = g->logits + (size_t)b * nb * V;
    float val[K];
    topk_indices(scores, nb * V, K, idx);
    for (int k = 0; k < K; k++) val[k] = scores[idx[k]];
    beam_candidates_given(s, c, b, cur_len, val, idx);
}

// beam search: the best finished hypothesis of each input → seq (B, L) (start token first), out_len (B)
static void gen_beam(T5* m, GenCache* g, const GenConfig* cfg, int* seq, int* out_len) {
    const T5Config* c = &m->config;
    int B = g->B, R = g->R, V = c->vocab_size;
    BeamState s;
    beam_build(&s, c, B, g->nb, cfg->max_new_tokens);
    int* tokens = gen_alloc(g, (size_t)R * sizeof(int));
    for (int cur_len = 1, go_on = 1; go_on; cur_len++) {
        for (int r = 0; r < R; r++) tokens[r] = s.run_seq[(size_t)r * s.L + cur_len - 1];
        gen_decode_step(m, g, tokens, cur_len - 1);
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < R; r++) { // log p, processed, plus the running score
            float* x = g->logits + (size_t)r * V;
            x[c->eos_id] += cfg->eos_bias;
            log_softmax_forward(x, V);
            gen_process(x, s.run_seq + (size_t)r * s.L, cur_len, cfg, c->eos_id);
            for (int i = 0; i < V; i++) x[i] += s.run_score[r];
        }
        #pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            beam_candidates(&s, g, c, b, cur_len);
            beam_next_running(&s, b);
            beam_update_finished(&s, cfg, b, cur_len);
            beam_check_open(&s, cfg, b, cur_len + 1);
        }
        gen_cache_reorder(g, c, s.parent, cur_len);
        go_on = beam_go_on(&s, cfg, B);
    }
    for (int b = 0; b < B; b++) {
        memcpy(seq + (size_t)b * s.L, s.fin_seq + (size_t)b * s.nb * s.L, (size_t)s.L * sizeof(int));
        out_len[b] = s.fin_len[(size_t)b * s.nb];
    }
    beam_free(&s);
}

// Summaries for B inputs (src[b]: src_len[b] token ids): out (B, max_new_tokens) gets each input's best
// sequence without the start token, ending with eos if it stopped, then pad_id; out_len its length.
// (HF pads its batched output with pad_id after greedy search but with eos after beam search: its fill
// value `pad_token_id or eos_token_id` skips pad id 0. out_len makes that moot here.)
static int gen_run(T5* m, const int* const* src, const int* src_len, int B, const GenConfig* cfg,
                   int* out, int* out_len, char* err, size_t errlen) {
    if (gen_request_check(&m->config, src, src_len, B, cfg, err, errlen)) return -1;
    int Ts = 1, nb = cfg->num_beams, L = 1 + cfg->max_new_tokens;
    for (int b = 0; b < B; b++) if (src_len[b] > Ts) Ts = src_len[b];
    GenCache g;
    gen_cache_build(&g, &m->config, B, nb, Ts, cfg->max_new_tokens);
    gen_encode(m, &g, src, src_len);
    int* seq = gen_alloc(&g, (size_t)g.R * L * sizeof(int));
    int* lens = gen_alloc(&g, (size_t)g.R * sizeof(int));
    if (nb == 1) gen_greedy(m, &g, cfg, seq, lens);
    else gen_beam(m, &g, cfg, seq, lens);
    for (int b = 0; b < B; b++) {
        out_len[b] = lens[b];
        for (int j = 0; j < cfg->max_new_tokens; j++)
            out[(size_t)b * cfg->max_new_tokens + j] = j < lens[b] ? seq[(size_t)b * L + 1 + j] : m->config.pad_id;
    }
    gen_cache_free(&g);
    return 0;
}

// with LoRA the adapter is merged into the weights for the call (the decoding steps run the plain
// Linear layers); callers that generate many batches merge once around them (eval_generate)
static inline int t5_generate(T5* m, const int* const* src, const int* src_len, int B, const GenConfig* cfg,
                              int* out, int* out_len, char* err, size_t errlen) {
    float* saved = t5_lora_merge(m);
    int rc = gen_run(m, src, src_len, B, cfg, out, out_len, err, errlen);
    t5_lora_unmerge(m, saved);
    return rc;
}

// ----------------------------------------------------------------------------
// building and loading models (the tests' way in; the trainer builds from llmc/model.h's HostModel)

static void t5_build_from_config(T5* m, const T5Config* c) {
    memset(m, 0, sizeof(*m));
    m->config = *c;
    t5_alloc_params(m);
}

// takes ownership of a loaded flat buffer
static inline void t5_adopt_params(T5* m, const T5Config* c, float* params) {
    t5_build_from_config(m, c);
    memcpy(m->params_memory, params, m->layout.total * sizeof(float));
    free(params);
}

// an adapter checkpoint onto the base model m (its config and fingerprint must match); ts may be NULL
static inline int t5_load_lora_checkpoint(T5* m, const char* path, CkptTrainState* ts, char* err, size_t errlen) {
    LoraCkptInfo info;
    float *a, *mm, *vv;
    uint32_t crc = lora_base_fingerprint(m->params_memory, m->layout.total);
    if (lora_ckpt_load(path, &m->config, (int64_t)m->layout.total, crc, &info, &a, &mm, &vv, err, errlen)) return -1;
    t5_lora_attach(m, &info.config, a, 0);
    m->m_memory = mm; m->v_memory = vv;
    m->step = info.step;
    if (ts) memcpy(ts, info.train, sizeof(*ts));
    return 0;
}

static inline int t5_build_from_hf(T5* m, const char* dir, char* err, size_t errlen) {
    T5Config c;
    float* p;
    if (t5_load_hf_dir(dir, &c, &p, err, errlen)) return -1;
    t5_adopt_params(m, &c, p);
    return 0;
}

// ts (may be NULL) receives the training state stored with the weights
static inline int t5_build_from_checkpoint(T5* m, const char* path, CkptTrainState* ts, char* err, size_t errlen) {
    CkptInfo info;
    float *p, *mm, *vv;
    if (ckpt_load(path, &info, &p, &mm, &vv, err, errlen)) return -1;
    t5_adopt_params(m, &info.config, p);
    m->m_memory = mm; m->v_memory = vv;
    m->step = info.step;
    if (ts) *ts = info.train;
    return 0;
}

// ts may be NULL (a checkpoint that only seeds a new run). Under LoRA: the adapter checkpoint
// (llmc/lora.h: the adapter, its AdamW moments, the base weights' fingerprint, not the base itself)
static inline int t5_save_checkpoint(const T5* m, const char* path, const CkptTrainState* ts, char* err, size_t errlen) {
    if (m->lora.r)
        return lora_ckpt_save(path, &m->lora, m->lora_memory, m->m_memory, m->v_memory, (int64_t)m->lora_layout.total, m->step,
                              (int64_t)m->layout.total, m->lora_base_crc, (const int64_t*)ts, err, errlen);
    return ckpt_save(path, &m->config, m->params_memory, m->m_memory, m->v_memory, (int64_t)m->layout.total, m->step,
                     ts, err, errlen);
}

// ----------------------------------------------------------------------------
// the CPU engine behind llmc/engine.h: what the driver (llmc/run.h) calls

static T5* cpu_model(Engine* e) { return (T5*)e->self; }
static Dist* cpu_dist(Engine* e) { return (Dist*)e->proc; }

// Ranks on one node share its cores: unless OMP_NUM_THREADS says otherwise, each takes its share
// (two OpenMP teams on the same cores spin at each other's barriers: 10–30× slower, seen here).
static void share_cores(const Dist* d) {
#ifdef _OPENMP
    if (d->local_size <= 1 || getenv("OMP_NUM_THREADS")) return;
    int n = omp_get_num_procs() / d->local_size;
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    if (d->rank == 0)
        printf("note: %d ranks on this node share its %d cores: %d OpenMP thread%s each (OMP_NUM_THREADS overrides)\n",
               d->local_size, omp_get_num_procs(), n, n == 1 ? "" : "s");
#else
    (void)d;
#endif
}

static int cpu_init(Engine* e, int* argc, char*** argv, const Options* o) {
    (void)o;
    Dist* d = (Dist*)callocCheck(1, sizeof(Dist));
    if (dist_init(d, argc, argv)) { free(d); return -1; }
    e->proc = d; e->rank = d->rank; e->size = d->size; e->local_size = d->local_size;
    share_cores(d);
    enable_flush_to_zero(); // after the thread count is set: every thread of the team gets FTZ/DAZ
    return 0;
}

static void cpu_finalize(Engine* e) {
    if (!e->proc) return;
    dist_finalize(cpu_dist(e));
    free(e->proc);
    e->proc = NULL;
}

static int cpu_max_int(Engine* e, int x) { return dist_max_int(cpu_dist(e), x); }
static void cpu_sum_i64(Engine* e, int64_t* x, int n) { dist_sum_i64(cpu_dist(e), x, n); }
static void cpu_sum_f64(Engine* e, double* x, int n) { dist_sum_f64(cpu_dist(e), x, n); }

// the model from host weights: params copied; the adapter and the optimizer state taken over
static int cpu_build(Engine* e, HostModel* h, const Options* o, int solo) {
    (void)solo; // one engine per process: rank 0's evaluation models need nothing else
    T5* m = (T5*)callocCheck(1, sizeof(T5));
    t5_build_from_config(m, &h->config);
    memcpy(m->params_memory, h->params, m->layout.total * sizeof(float));
    if (h->lora.r) { t5_lora_attach(m, &h->lora, h->adapter, 0); h->adapter = NULL; }
    m->m_memory = h->m; m->v_memory = h->v; h->m = h->v = NULL;
    m->opt_kind = o->optimizer; m->af_beta1 = o->af_beta1 >= 0.0;
    m->af_memory = h->af; m->af_n = h->af_n; h->af = NULL; // (llmc/model.h checked it is this run's optimizer's)
    m->step = h->step;
    e->self = m;
    return 0;
}

static void cpu_free(void* model) { t5_free((T5*)model); free(model); }

static void cpu_print_config(Engine* e, const Options* o) {
    (void)e; (void)o;
#ifdef _OPENMP
    printf("| %-22s | %-43d |\n", "OpenMP threads", omp_get_max_threads());
#endif
}

// one optimizer step: forward + backward of each micro-batch (loss scaled by 1 / the step's counted
// tokens), gradients and loss summed over ranks, the norm, then clipping and AdamW unless non-finite
static void cpu_step(Engine* e, const StepIn* in, StepOut* out) {
    T5* m = cpu_model(e);
    const Dist* d = cpu_dist(e);
    t5_zero_grad(m);
    double loss_sum = 0.0;
    for (int a = 0; a < in->A; a++) {
        if (in->batches[a]->B == 0 || in->total == 0) continue;
        float mean = t5_forward(m, in->batches[a], 1, in->seeds[a]);
        loss_sum += (double)mean * m->num_counted;
        t5_backward(m, in->batches[a], 1, 1.0f / (float)in->total);
    }
    engine_wait_begin(e, "the gradient all-reduce (MPI)");
    dist_sum_f32(d, t5_trainable_grads(m), t5_num_trainable(m));
    dist_sum_f64(d, &loss_sum, 1);
    engine_wait_end(e);
    memset(out, 0, sizeof(*out));
    out->loss = in->total > 0 ? (float)(loss_sum / (double)in->total) : NAN;
    out->grad_norm = t5_grad_norm(m);
    out->skipped = !isfinite(out->loss) || !isfinite(out->grad_norm);
    if (out->skipped) return; // a bad step never reaches the weights
    t5_clip_grads(m, out->grad_norm, in->clip);
    if (in->optimizer == OPTIM_ADAFACTOR) t5_update_adafactor(m, &in->af, in->opt.decay_norms);
    else t5_update(m, &in->opt, in->lr);
}

static float cpu_eval_batch(Engine* e, const T5Batch* b, int* counted) {
    T5* m = cpu_model(e);
    float mean = t5_forward(m, b, 0, 0);
    *counted = m->num_counted;
    return mean;
}

// LoRA: merged into the weights once around many generate calls
static void cpu_gen_begin(Engine* e) { T5* m = cpu_model(e); m->lora_saved = t5_lora_merge(m); }
static void cpu_gen_end(Engine* e) { T5* m = cpu_model(e); t5_lora_unmerge(m, m->lora_saved); m->lora_saved = NULL; }

static int cpu_generate(Engine* e, const int* const* src, const int* src_len, int B, const GenConfig* g, int* out, int* out_len,
                        char* err, size_t errlen) {
    return t5_generate(cpu_model(e), src, src_len, B, g, out, out_len, err, errlen);
}

// the engine's own buffers: nothing is copied
static int cpu_get_state(Engine* e, EngineState* s) {
    T5* m = cpu_model(e);
    memset(s, 0, sizeof(*s));
    s->params = m->params_memory; s->n = m->layout.total; s->step = m->step;
    if (m->lora.r) { s->adapter = m->lora_memory; s->am = m->m_memory; s->av = m->v_memory; s->lora_n = m->lora_layout.total; }
    else { s->m = m->m_memory; s->v = m->v_memory; }
    s->opt_kind = m->opt_kind; s->af_beta1 = m->af_beta1; s->af = m->af_memory; s->af_n = m->af_n;
    return 0;
}

static double cpu_peak_mib(Engine* e) { (void)e; return peak_rss_mib(); }

static void cpu_abort(Engine* e, int code) { dist_abort(cpu_dist(e), code); }

// synthetic full-length batch, for timing forward + backward
static int cpu_bench(Engine* e, const Options* o) {
    T5* m = cpu_model(e);
    int B = o->batch_size, Ts = o->bench_src_len, Tt = o->bench_tgt_len, V = m->config.vocab_size;
    BatchBuf bb = {0};
    batch_reserve(&bb, B, Ts, Tt);
    T5Batch* b = &bb.b;
    b->B = B; b->Ts = Ts; b->Tt = Tt;
    Rng rng;
    rng_init(&rng, 1234);
    for (int i = 0; i < B; i++) {
        b->src_len[i] = Ts;
        for (int j = 0; j < Ts; j++) b->src[i * Ts + j] = 2 + (int)(rng_next(&rng) % (uint64_t)(V - 2));
        for (int j = 0; j < Tt; j++) b->labels[i * Tt + j] = 2 + (int)(rng_next(&rng) % (uint64_t)(V - 2));
        for (int j = 0; j < Tt; j++) b->dec_in[i * Tt + j] = j == 0 ? 0 : b->labels[i * Tt + j - 1];
    }
    double times[o->bench + 1];
    for (int it = 0; it <= o->bench; it++) { // iteration 0 warms up (allocations, page faults)
        double t0 = now_ms();
        t5_zero_grad(m);
        t5_forward(m, b, 0, 0);
        t5_backward(m, b, 0, 1.0f / (float)(B * Tt));
        times[it] = now_ms() - t0;
        if (it > 0) printf("bench iter %d: %.1f ms (loss %.4f)\n", it, times[it], (double)m->mean_loss);
    }
    // median of the timed iterations
    for (int i = 1; i <= o->bench; i++)
        for (int j = i + 1; j <= o->bench; j++)
            if (times[j] < times[i]) { double t = times[i]; times[i] = times[j]; times[j] = t; }
    double med = times[1 + (o->bench - 1) / 2];
    printf("bench: fwdbwd_ms=%.2f tokens=%d tok_per_s=%.0f peak_rss_mib=%.0f\n", med, B * (Ts + Tt), B * (Ts + Tt) / (med / 1e3),
           peak_rss_mib());
    batch_free(&bb);
    return 0;
}

static const EngineOps CPU_ENGINE = {
    "train_t5", "train_t5 (CPU, fp32)", "resident", ENGINE_CPU,
    cpu_init, cpu_finalize, cpu_max_int, cpu_sum_i64, cpu_sum_f64,
    cpu_build, cpu_print_config, cpu_free, NULL, cpu_step, cpu_eval_batch,
    cpu_gen_begin, cpu_gen_end, cpu_generate, cpu_get_state, cpu_peak_mib, NULL,
    cpu_bench, NULL, NULL, NULL, cpu_abort,
    1, // background checkpoints: tested here (dev/test_pipeline.py, dev/crash_resume.py)
};

#ifndef TESTING
// the driver around the CPU engine: the run's setup, then its steps, then what follows them
int main(int argc, char** argv) {
    Program p;
    if (run_begin(&p, argc, argv, &CPU_ENGINE) == 0)    // options, processes, model, data, run directory
        for (StepIn in; run_next(&p, &in); ) {            // the step's micro-batches, seeds and lr
            StepOut out;
            cpu_step(&p.engine, &in, &out);               // forward, backward, all-reduce, AdamW
            run_after(&p, &out);                          // log, evaluation, checkpoint, stop signals
        }
    return run_end(&p);                                   // final eval + checkpoint, outputs, report
}
#endif
