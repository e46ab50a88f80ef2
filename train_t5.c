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
#include "llmc/utils.h"       // defines: fopenCheck, mallocCheck, callocCheck, par_team, par_thread, now_ms
#include "llmc/t5.h"          // defines: T5Config, T5Params, T5Layout, t5_layout, t5_point_params, presets
#include "llmc/gemm.h"        // defines: gemm, GemmWorkspace
#include "llmc/vmath.h"       // defines: t5_expf (vectorisable e^x for softmax and cross-entropy)
#include "llmc/rng.h"         // defines: Rng, rng_next, rng_normal, dropout_keep
#include "llmc/hf.h"          // defines: t5_load_hf_dir, t5_save_hf_dir (config.json + safetensors)
#include "llmc/hub.h"         // defines: hub_save_dir, hub_write_card (generation config, tokenizer files, model card)
#include "llmc/lora.h"        // defines: LoraConfig, LoraLayout, lora_layout, lora_init, lora_merge, lora_save_dir, lora_load_dir
#include "llmc/checkpoint.h"  // defines: ckpt_save, ckpt_load (native format)
#include "llmc/examples.h"    // defines: ExampleFile, examples_open (pre-tokenized example file)
#include "llmc/dataloader.h"  // defines: T5Batch, BatchBuf, batch_make, DataLoader, dataloader_next
#include "llmc/dist.h"        // defines: Dist, dist_init, dist_sum_f32 (MPI data parallelism, USE_MPI)
#include "llmc/rouge.h"       // defines: rouge_score_multi, RougeCorpus (rouge_score's ROUGE)
#include "llmc/bleu.h"        // defines: bleu_add, bleu_compute (sacrebleu's corpus BLEU)
#include "tokenizer/spm.h"    // defines: SpmModel, spm_load, spm_encode, spm_decode (T5's SentencePiece)
#include "llmc/schedule.h"    // defines: LrSchedule, lr_multiplier
#include "llmc/rundir.h"      // defines: ckpt_list, ckpt_path, ckpt_prune, metrics_open, json_num (run directory)

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
    uint32_t lora_base_crc; // fingerprint of the (frozen) base weights, for adapter checkpoints
} T5;

static size_t t5_num_params(const T5* m) { return m->layout.total; }

// allocate the parameter (and gradient) buffers for model->config
static void t5_alloc_params(T5* m) {
    t5_layout(&m->config, &m->layout);
    m->params_memory = (float*)callocCheck(m->layout.total, sizeof(float));
    m->grads_memory = (float*)callocCheck(m->layout.total, sizeof(float));
    t5_point_params(&m->params, m->params_memory, &m->layout);
    t5_point_params(&m->grads, m->grads_memory, &m->layout);
}

// T5's own initialisation (transformers T5PreTrainedModel._init_weights, factor 1.0):
//   shared, untied lm_head ~ N(0, 1)  ·  q ~ N(0, (C·D)^-0.5)
//   k, v ~ N(0, C^-0.5)  ·  o ~ N(0, (H·D)^-0.5)  ·  wi ~ N(0, C^-0.5)  ·  wo ~ N(0, F^-0.5)
//   relative_attention_bias ~ N(0, C^-0.5)  ·  RMSNorm weights = 1
static float t5_init_std(const T5Config* c, int i) {
    float C = (float)c->d_model, D = (float)c->d_kv, HD = (float)(c->num_heads * c->d_kv), F = (float)c->d_ff;
    switch (i) {
        case P_SHARED: case P_LM_HEAD: return 1.0f;
        case P_ENC_Q: case P_DEC_Q: case P_DEC_CQ: return 1.0f / sqrtf(C * D);
        case P_ENC_O: case P_DEC_O: case P_DEC_CO: return 1.0f / sqrtf(HD);
        case P_ENC_WO: case P_DEC_WO: return 1.0f / sqrtf(F);
        default: return 1.0f / sqrtf(C); // k, v, wi, relative bias
    }
}

static void t5_init_random(T5* m, uint64_t seed) {
    Rng rng;
    rng_init(&rng, seed);
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &m->layout.t[i];
        float* p = m->params_memory + t->offset;
        if (t5_is_norm(i)) { for (size_t j = 0; j < t->size; j++) p[j] = 1.0f; continue; }
        float std = t5_init_std(&m->config, i);
        for (size_t j = 0; j < t->size; j++) p[j] = std * rng_normal(&rng);
    }
}

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
    free(m->params_memory); free(m->grads_memory); free(m->m_memory); free(m->v_memory);
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
static const char* t5_check_batch(const T5* m, const T5Batch* b) {
    int V = m->config.vocab_size;
    if (b->B < 1 || b->Ts < 1 || b->Tt < 1) return "empty batch";
    for (int i = 0; i < b->B; i++) if (b->src_len[i] < 1 || b->src_len[i] > b->Ts) return "source length out of range";
    for (int i = 0; i < b->B * b->Ts; i++) if (b->src[i] < 0 || b->src[i] >= V) return "source token id outside the vocabulary";
    for (int i = 0; i < b->B * b->Tt; i++) {
        if (b->dec_in[i] < 0 || b->dec_in[i] >= V) return "decoder input id outside the vocabulary";
        if (b->labels[i] != IGNORE_INDEX && (b->labels[i] < 0 || b->labels[i] >= V)) return "label id outside the vocabulary";
    }
    return NULL;
}

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
// optimizer: AdamW with the exact semantics of torch.optim.AdamW, gradient-norm clipping

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int decay_norms;  // 1: decay RMSNorm weights too (torch AdamW over all parameters); 0: HF Trainer's rule
} AdamW;

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
        float decay = (t5_is_norm(t) && !o->decay_norms) ? 1.0f : (float)(1.0 - (double)lr * o->weight_decay);
        size_t off = tt->offset;
        adamw_tensor(m->params_memory + off, m->grads_memory + off, m->m_memory + off, m->v_memory + off, tt->size, o,
                     decay, step_size, bc2_sqrt);
    }
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

#define GEN_NEG 1.0e9f  // HF's penalty for hypotheses that must not be picked (exact in fp32: 15625000·2^6)

typedef struct {
    int max_new_tokens;        // ≥ 1: tokens generated per input, eos included
    int num_beams;             // 1 = greedy search
    int no_repeat_ngram_size;  // 0 = off; n: a token that would complete an n-gram already in the sequence
                               // (start token included) is banned (score −inf)
    double length_penalty;     // beam: a finished hypothesis scores Σ log p / (its new tokens)^length_penalty;
                               // a double because HF raises to this power in Python floats
    int early_stopping;        // beam: 1 = an input is done once it has num_beams finished hypotheses (HF True);
                               // 0 = HF's default: done once the best running beam, scored at the current
                               // length, cannot beat the worst of num_beams finished ones
    float eos_bias;            // added to the eos logit before anything else; 0 = off (lets tests make random
                               // models stop: they rarely pick eos on their own)
} GenConfig;

// the public entry points (this one and t5_generate) are static inline, so that a program that includes
// the engine without generating compiles without unused-function warnings
static inline GenConfig gen_config_default(void) {
    return (GenConfig){ .max_new_tokens = 128, .num_beams = 1, .no_repeat_ngram_size = 0, .length_penalty = 1.0,
                        .early_stopping = 0, .eos_bias = 0.0f };
}

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

// in place: x ← log_softmax(x) = x − max − log Σ exp(x − max)
static void log_softmax_forward(float* x, int V) {
    float maxv = -INFINITY;
    for (int i = 0; i < V; i++) if (x[i] > maxv) maxv = x[i];
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += expf(x[i] - maxv);
    float lse = (float)log(sum);
    for (int i = 0; i < V; i++) x[i] = x[i] - maxv - lse;
}

// idx[0..k) = positions of the k largest x[0..n), largest first; equal values keep index order
static void topk_indices(const float* x, int n, int k, int* idx) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (count == k && !(x[i] > x[idx[k - 1]])) continue;
        int at = count < k ? count++ : k - 1;
        while (at > 0 && x[i] > x[idx[at - 1]]) { idx[at] = idx[at - 1]; at--; }
        idx[at] = i;
    }
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
            gen_ban_ngrams(x, seq + (size_t)r * L, t + 1, cfg->no_repeat_ngram_size);
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

// beam search state, named after the tensors of HF's _beam_search. K = 2·num_beams candidates per step
// (one eos token: HF keeps max(2, 1 + #eos)·num_beams), L = 1 + max_new_tokens positions
typedef struct {
    int nb, K, L;
    int* run_seq;            // (B, nb, L) running hypotheses, start token first (running_sequences)
    float* run_score;        // (B, nb) their summed log-probabilities (running_beam_scores)
    int* cand_seq;           // (B, K, L) this step's candidates
    float* cand_score;       // (B, K) summed log-probabilities, best first
    int* cand_beam;          // (B, K) the running beam a candidate extends
    unsigned char* cand_hit; // (B, K) candidate ends here: eos, or the maximum length
    int* fin_seq;            // (B, nb, L) finished hypotheses, best first (sequences)
    float* fin_score;        // (B, nb) length-normalised scores; −1e9 while a slot is empty (beam_scores)
    int* fin_len;            // (B, nb) new tokens of each, eos included (the filled part of beam_indices)
    unsigned char* fin_done; // (B, nb) is_sent_finished
    unsigned char* open;     // (B) is_early_stop_heuristic_unsatisfied: an input can still improve
    int* parent;             // (R) the cache row each running beam continues
    int* scratch;            // (B, nb + K) merge staging: indices, then sequences below
    int* stage_seq;          // (B, nb, L)
} BeamState;

static void beam_build(BeamState* s, GenCache* g, const T5Config* c, int max_new) {
    int B = g->B, nb = g->nb;
    s->nb = nb; s->K = 2 * nb; s->L = 1 + max_new;
    size_t nL = (size_t)B * nb * s->L, KL = (size_t)B * s->K * s->L, BK = (size_t)B * s->K, Bn = (size_t)B * nb;
    s->run_seq = gen_alloc(g, nL * sizeof(int)); s->run_score = gen_alloc(g, Bn * sizeof(float));
    s->cand_seq = gen_alloc(g, KL * sizeof(int)); s->cand_score = gen_alloc(g, BK * sizeof(float));
    s->cand_beam = gen_alloc(g, BK * sizeof(int)); s->cand_hit = gen_alloc(g, BK);
    s->fin_seq = gen_alloc(g, nL * sizeof(int)); s->fin_score = gen_alloc(g, Bn * sizeof(float));
    s->fin_len = gen_alloc(g, Bn * sizeof(int)); s->fin_done = gen_alloc(g, Bn); s->open = gen_alloc(g, B);
    s->parent = gen_alloc(g, Bn * sizeof(int)); s->scratch = gen_alloc(g, (size_t)B * (nb + s->K) * sizeof(int));
    s->stage_seq = gen_alloc(g, nL * sizeof(int));
    // HF: only beam 0 starts live (the others at −1e9, so step 0 does not pick the same token nb times)
    for (size_t i = 0; i < nL; i++) s->run_seq[i] = s->fin_seq[i] = c->eos_id; // HF's fill value (see t5_generate)
    for (size_t r = 0; r < Bn; r++) {
        s->run_seq[r * s->L] = s->fin_seq[r * s->L] = c->decoder_start_id;
        s->run_score[r] = (r % nb) == 0 ? 0.0f : -GEN_NEG;
        s->fin_score[r] = -GEN_NEG; s->fin_len[r] = 0; s->fin_done[r] = 0;
    }
    for (int b = 0; b < B; b++) s->open[b] = 1;
}

// step 1, second half: the candidate sequences of input b from its top K (value, index) pairs, index =
// beam·V + token; cand_hit when a candidate ends in eos or reaches L tokens (also driven with a GPU's
// top-k, llmc/t5_cpu.c)
static void beam_candidates_given(BeamState* s, const T5Config* c, int b, int cur_len, const float* val, const int* idx) {
    int V = c->vocab_size;
    for (int k = 0; k < s->K; k++) {
        size_t ck = (size_t)b * s->K + k;
        int beam = idx[k] / V, tok = idx[k] % V;
        s->cand_score[ck] = val[k];
        s->cand_beam[ck] = beam;
        s->cand_hit[ck] = tok == c->eos_id || cur_len + 1 >= s->L;
        int* cs = s->cand_seq + ck * s->L;
        memcpy(cs, s->run_seq + ((size_t)b * s->nb + beam) * s->L, (size_t)s->L * sizeof(int));
        cs[cur_len] = tok;
    }
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

// step 2 (_get_running_beams_for_next_iteration): the nb best candidates that did not end go on;
// ended ones are pushed down by 1e9 (their penalised score is what the running beam keeps)
static void beam_next_running(BeamState* s, int b) {
    int nb = s->nb, K = s->K, L = s->L;
    float pen[K];
    memset(pen, 0, sizeof(pen)); // (every entry is written below; GCC cannot see K ≥ 1 in every build)
    int* idx = s->scratch + (size_t)b * (nb + K);
    for (int k = 0; k < K; k++) pen[k] = s->cand_score[(size_t)b * K + k] + (s->cand_hit[(size_t)b * K + k] ? -GEN_NEG : -0.0f);
    topk_indices(pen, K, nb, idx);
    for (int j = 0; j < nb; j++) {
        size_t ck = (size_t)b * K + idx[j], r = (size_t)b * nb + j;
        memcpy(s->run_seq + r * L, s->cand_seq + ck * L, (size_t)L * sizeof(int));
        s->run_score[r] = pen[idx[j]];
        s->parent[r] = b * nb + s->cand_beam[ck];
    }
}

// step 3 (_update_finished_beams): candidates among the top nb that just ended enter the finished set
// with score / (new tokens)^length_penalty; the nb best of old ∪ new stay. Candidates that did not end,
// and all candidates once the input is full (early_stopping) or cannot improve, get −1e9 (in this order,
// as fp32 adds, like HF)
static void beam_update_finished(BeamState* s, const GenConfig* cfg, int b, int cur_len) {
    int nb = s->nb, K = s->K, L = s->L;
    float merged[nb + K];
    int full = cfg->early_stopping;
    for (int j = 0; j < nb; j++) { merged[j] = s->fin_score[(size_t)b * nb + j]; full &= s->fin_done[(size_t)b * nb + j]; }
    float denom = (float)pow((double)cur_len, cfg->length_penalty);
    for (int k = 0; k < K; k++) {
        size_t ck = (size_t)b * K + k;
        int did = s->cand_hit[ck] && k < nb;
        float sc = s->cand_score[ck] / denom;
        sc += full ? -GEN_NEG : -0.0f;
        sc += s->open[b] ? -0.0f : -GEN_NEG;
        sc += did ? -0.0f : -GEN_NEG;
        merged[nb + k] = sc;
    }
    int* idx = s->scratch + (size_t)b * (nb + K);
    topk_indices(merged, nb + K, nb, idx);
    float score[nb];
    int len[nb];
    unsigned char done[nb];
    for (int j = 0; j < nb; j++) { // staged: the new set may take slots of the old one
        int i = idx[j];
        const int* src = i < nb ? s->fin_seq + ((size_t)b * nb + i) * L : s->cand_seq + ((size_t)b * K + i - nb) * L;
        memcpy(s->stage_seq + ((size_t)b * nb + j) * L, src, (size_t)L * sizeof(int));
        score[j] = merged[i];
        len[j] = i < nb ? s->fin_len[(size_t)b * nb + i] : cur_len;
        done[j] = i < nb ? s->fin_done[(size_t)b * nb + i] : (s->cand_hit[(size_t)b * K + i - nb] && i - nb < nb);
    }
    memcpy(s->fin_seq + (size_t)b * nb * L, s->stage_seq + (size_t)b * nb * L, (size_t)nb * L * sizeof(int));
    for (int j = 0; j < nb; j++) {
        s->fin_score[(size_t)b * nb + j] = score[j]; s->fin_len[(size_t)b * nb + j] = len[j];
        s->fin_done[(size_t)b * nb + j] = done[j];
    }
}

// step 4 (_check_early_stop_heuristic, after cur_len grew): an input stays open while its best running
// beam, scored at the current length, beats the worst finished score in some slot (an empty slot
// counts as −1e9, so an input with fewer than nb finished hypotheses stays open)
static void beam_check_open(BeamState* s, const GenConfig* cfg, int b, int cur_len) {
    int nb = s->nb;
    const float* fs = s->fin_score + (size_t)b * nb;
    float best = s->run_score[(size_t)b * nb] / (float)pow((double)(cur_len - 1), cfg->length_penalty);
    float worst = fs[0];
    for (int j = 1; j < nb; j++) if (fs[j] < worst) worst = fs[j];
    int any = 0;
    for (int j = 0; j < nb; j++) any |= best > (s->fin_done[(size_t)b * nb + j] ? worst : -GEN_NEG);
    s->open[b] = s->open[b] && any;
}

// _beam_search_has_unfinished_sequences: go on while some input can improve, some input has a slot
// left (early_stopping only), and some candidate did not end
static int beam_go_on(const BeamState* s, const GenConfig* cfg, int B) {
    int improvable = 0, all_done = 1, all_hit = 1;
    for (int b = 0; b < B; b++) improvable |= s->open[b];
    for (int i = 0; i < B * s->nb; i++) all_done &= s->fin_done[i];
    for (int i = 0; i < B * s->K; i++) all_hit &= s->cand_hit[i];
    return improvable && !(all_done && cfg->early_stopping) && !all_hit;
}

// beam search: the best finished hypothesis of each input → seq (B, L) (start token first), out_len (B)
static void gen_beam(T5* m, GenCache* g, const GenConfig* cfg, int* seq, int* out_len) {
    const T5Config* c = &m->config;
    int B = g->B, R = g->R, V = c->vocab_size;
    BeamState s;
    beam_build(&s, g, c, cfg->max_new_tokens);
    int* tokens = gen_alloc(g, (size_t)R * sizeof(int));
    for (int cur_len = 1, go_on = 1; go_on; cur_len++) {
        for (int r = 0; r < R; r++) tokens[r] = s.run_seq[(size_t)r * s.L + cur_len - 1];
        gen_decode_step(m, g, tokens, cur_len - 1);
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < R; r++) { // log p, processed, plus the running score
            float* x = g->logits + (size_t)r * V;
            x[c->eos_id] += cfg->eos_bias;
            log_softmax_forward(x, V);
            gen_ban_ngrams(x, s.run_seq + (size_t)r * s.L, cur_len, cfg->no_repeat_ngram_size);
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
}

// validates a generation request; returns 0, or -1 with a message naming the bad input
static int gen_check(const T5* m, const int* const* src, const int* src_len, int B, const GenConfig* g,
                     char* err, size_t errlen) {
    int V = m->config.vocab_size;
    const char* bad = NULL;
    if (B < 1) bad = "batch size must be >= 1";
    else if (g->max_new_tokens < 1 || g->max_new_tokens > (1 << 16)) bad = "max_new_tokens must be in [1, 65536]";
    else if (g->num_beams < 1 || g->num_beams > 1024) bad = "num_beams must be in [1, 1024]";
    else if (g->no_repeat_ngram_size < 0) bad = "no_repeat_ngram_size must be >= 0";
    else if (!isfinite(g->length_penalty) || !isfinite(g->eos_bias)) bad = "length_penalty and eos_bias must be finite";
    if (bad) { snprintf(err, errlen, "generate: %s", bad); return -1; }
    for (int b = 0; b < B; b++) {
        if (src[b] == NULL || src_len[b] < 1 || src_len[b] > (1 << 20)) {
            snprintf(err, errlen, "generate: input %d: length %d outside [1, 1048576]", b, src_len[b]);
            return -1;
        }
        for (int j = 0; j < src_len[b]; j++)
            if (src[b][j] < 0 || src[b][j] >= V) {
                snprintf(err, errlen, "generate: input %d: token id %d at position %d outside the vocabulary [0, %d)",
                         b, src[b][j], j, V);
                return -1;
            }
    }
    return 0;
}

// Summaries for B inputs (src[b]: src_len[b] token ids): out (B, max_new_tokens) gets each input's best
// sequence without the start token, ending with eos if it stopped, then pad_id; out_len its length.
// (HF pads its batched output with pad_id after greedy search but with eos after beam search: its fill
// value `pad_token_id or eos_token_id` skips pad id 0. out_len makes that moot here.)
static int gen_run(T5* m, const int* const* src, const int* src_len, int B, const GenConfig* cfg,
                   int* out, int* out_len, char* err, size_t errlen) {
    if (gen_check(m, src, src_len, B, cfg, err, errlen)) return -1;
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
// building and loading models

// from a preset name, an HF directory (config.json + safetensors) or a native checkpoint file
typedef enum { SRC_PRESET, SRC_HF_DIR, SRC_CHECKPOINT } ModelSource;

static ModelSource model_source(const char* spec) {
    struct stat st;
    if (stat(spec, &st) == 0) return S_ISDIR(st.st_mode) ? SRC_HF_DIR : SRC_CHECKPOINT;
    return SRC_PRESET;
}

static void t5_build_from_config(T5* m, const T5Config* c) {
    memset(m, 0, sizeof(*m));
    m->config = *c;
    t5_alloc_params(m);
}

// takes ownership of a loaded flat buffer
static void t5_adopt_params(T5* m, const T5Config* c, float* params) {
    t5_build_from_config(m, c);
    memcpy(m->params_memory, params, m->layout.total * sizeof(float));
    free(params);
}

// an adapter checkpoint onto the base model m (its config and fingerprint must match); ts may be NULL
static int t5_load_lora_checkpoint(T5* m, const char* path, CkptTrainState* ts, char* err, size_t errlen) {
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

static int t5_build_from_hf(T5* m, const char* dir, char* err, size_t errlen) {
    T5Config c;
    float* p;
    if (t5_load_hf_dir(dir, &c, &p, err, errlen)) return -1;
    t5_adopt_params(m, &c, p);
    return 0;
}

// ts (may be NULL) receives the training state stored with the weights
static int t5_build_from_checkpoint(T5* m, const char* path, CkptTrainState* ts, char* err, size_t errlen) {
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
static int t5_save_checkpoint(const T5* m, const char* path, const CkptTrainState* ts, char* err, size_t errlen) {
    if (m->lora.r)
        return lora_ckpt_save(path, &m->lora, m->lora_memory, m->m_memory, m->v_memory, (int64_t)m->lora_layout.total, m->step,
                              (int64_t)m->layout.total, m->lora_base_crc, (const int64_t*)ts, err, errlen);
    return ckpt_save(path, &m->config, m->params_memory, m->m_memory, m->v_memory, (int64_t)m->layout.total, m->step,
                     ts, err, errlen);
}

// ----------------------------------------------------------------------------
// evaluation: summaries of a split written by the model, scored against the human ones
//
// A split is what prepro_dialogsum.py wrote: PREFIX.bin (sources: prompt + dialogue + </s>) and
// PREFIX_refs.jsonl (one line per example, in the same order: id, dialogue, summaries, topic).
// Summaries are decoded as sentencepiece decodes (special tokens dropped) and scored with ROUGE
// (rouge_score's, use_stemmer=True; best F over the references, plain mean over examples: HF
// `evaluate` reports a bootstrap median instead) and corpus BLEU (sacrebleu's defaults).

typedef struct {
    ExampleFile ex;        // the sources
    int64_t n;             // examples used (≤ ex.n with a limit)
    char** ids;            // (n)
    char** dialogues;      // (n)
    char** refs;           // all references, example by example
    int* ref_start;        // (n + 1) example i's references are refs[ref_start[i] .. ref_start[i+1])
} EvalSet;

static void evalset_free(EvalSet* s) {
    examples_free(&s->ex);
    for (int64_t i = 0; i < s->n; i++) { free(s->ids[i]); free(s->dialogues[i]); }
    for (int64_t r = 0; s->ref_start && r < s->ref_start[s->n]; r++) free(s->refs[r]);
    free(s->ids); free(s->dialogues); free(s->refs); free(s->ref_start);
    memset(s, 0, sizeof(*s));
}

static char* json_dup_string(const JsonValue* obj, const char* key) {
    const JsonValue* v = json_find(obj, key);
    return v && v->type == JSON_STRING ? strdup(v->string) : NULL;
}

// one line of PREFIX_refs.jsonl into example i; 0, or -1 with "file:line: problem"
static int evalset_parse_line(EvalSet* s, int64_t i, const char* line, size_t len, const char* path, char* err, size_t errlen) {
    JsonValue v;
    char why[256];
    s->ref_start[i + 1] = s->ref_start[i]; // no references yet: evalset_free sees exactly what was added
    if (json_parse(line, len, &v, why, sizeof(why))) { snprintf(err, errlen, "%s:%lld: %s", path, (long long)i + 1, why); return -1; }
    const JsonValue* sums = json_find(&v, "summaries");
    s->ids[i] = json_dup_string(&v, "id");
    s->dialogues[i] = json_dup_string(&v, "dialogue");
    int ok = s->ids[i] && s->dialogues[i] && sums && sums->type == JSON_ARRAY && sums->count >= 1;
    for (size_t k = 0; ok && k < sums->count; k++) ok = sums->items[k].type == JSON_STRING;
    if (ok) {
        int r0 = s->ref_start[i];
        s->refs = (char**)reallocCheck(s->refs, (size_t)(r0 + sums->count) * sizeof(char*));
        for (size_t k = 0; k < sums->count; k++) s->refs[r0 + k] = strdup(sums->items[k].string);
        s->ref_start[i + 1] = r0 + (int)sums->count;
    } else {
        snprintf(err, errlen, "%s:%lld: a record needs string fields id and dialogue and a non-empty array of string summaries",
                 path, (long long)i + 1);
    }
    json_free(&v);
    return ok ? 0 : -1;
}

static int evalset_read_refs(EvalSet* s, const char* path, char* err, size_t errlen) {
    FILE* f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open (written by prepro_dialogsum.py next to the .bin)", path); return -1; }
    char* line = NULL;
    size_t cap = 0;
    int64_t i = 0;
    int rc = 0;
    for (ssize_t len; rc == 0 && i < s->n && (len = getline(&line, &cap, f)) > 0; i++) {
        s->ids[i] = s->dialogues[i] = NULL;
        rc = evalset_parse_line(s, i, line, (size_t)len, path, err, errlen); // on failure, i still moves past the line
    }
    if (rc == 0 && i < s->n) { snprintf(err, errlen, "%s: %lld records for %lld examples in the .bin", path, (long long)i, (long long)s->ex.n); rc = -1; }
    s->n = i; // what was filled, so evalset_free releases exactly that
    free(line);
    fclose(f);
    return rc;
}

// PREFIX.bin + PREFIX_refs.jsonl, the first `limit` examples (0 = all)
static int evalset_open(EvalSet* s, const char* prefix, int64_t limit, char* err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    char bin[4400], refs[4400];
    snprintf(bin, sizeof(bin), "%s.bin", prefix);
    snprintf(refs, sizeof(refs), "%s_refs.jsonl", prefix);
    if (examples_open(&s->ex, bin, err, errlen)) return -1;
    s->n = limit > 0 && limit < s->ex.n ? limit : s->ex.n;
    s->ids = (char**)callocCheck((size_t)s->n, sizeof(char*));
    s->dialogues = (char**)callocCheck((size_t)s->n, sizeof(char*));
    s->ref_start = (int*)callocCheck((size_t)s->n + 1, sizeof(int));
    if (evalset_read_refs(s, refs, err, errlen)) { evalset_free(s); return -1; }
    return 0;
}

typedef struct {
    GenConfig gen;
    int batch_size;   // inputs per t5_generate call
    int max_src;      // sources longer than this keep their first max_src - 1 tokens and </s>
    int progress;     // a progress bar on stderr
} EvalConfig;

typedef struct {
    char** summaries;    // (n) generated, decoded
    RougeScores* each;   // (n) per-example ROUGE (best over the references)
    RougeScores rouge;   // means over examples, F in [0, 1]
    BleuScore bleu;      // corpus BLEU, 0..100
    double seconds;
    int64_t n;           // summaries made
    int64_t cap;         // slots of summaries / each (the split's size)
} EvalResult;

static void eval_result_free(EvalResult* r) {
    for (int64_t i = 0; r->summaries && i < r->cap; i++) free(r->summaries[i]);
    free(r->summaries); free(r->each);
    memset(r, 0, sizeof(*r));
}

static void progress_bar(const char* label, int64_t done, int64_t total, double seconds) {
    int width = 30, filled = (int)(width * done / (total > 0 ? total : 1));
    fprintf(stderr, "\r%s [%.*s%.*s] %lld/%lld  %.2f summaries/s", label, filled, "##############################",
            width - filled, "..............................", (long long)done, (long long)total, done / (seconds > 0 ? seconds : 1e-9));
    if (done == total) fprintf(stderr, "\n");
}

// generated ids → text as sentencepiece decodes (special tokens dropped). Ids past the tokenizer's
// vocabulary (T5's embedding has 28 padding rows after the 32,100 tokens) are not tokens: dropped too,
// as HF's fast tokenizer drops them.
static char* decode_summary(const SpmModel* tok, const int* ids, int n, char* err, size_t errlen) {
    int* kept = (int*)mallocCheck((size_t)(n > 0 ? n : 1) * sizeof(int));
    int k = 0;
    for (int i = 0; i < n; i++) if (ids[i] >= 0 && ids[i] < tok->vocab_size) kept[k++] = ids[i];
    char* s = spm_decode(tok, kept, (size_t)k, SPM_SKIP_SPECIAL, NULL, err, errlen);
    free(kept);
    return s;
}

// an evaluation in progress: summaries as they come, their scores, the corpus sums
typedef struct { EvalResult r; RougeCorpus rouge; BleuStats bleu; } EvalAccum;

static void eval_accum_init(EvalAccum* a, int64_t n) {
    memset(a, 0, sizeof(*a));
    a->r.summaries = (char**)callocCheck((size_t)n, sizeof(char*));
    a->r.each = (RougeScores*)callocCheck((size_t)n, sizeof(RougeScores));
    a->r.cap = n;
}

// example e's generated ids: decoded, scored against its references, added to the corpus sums
static int eval_accum_add(EvalAccum* a, const EvalSet* s, const SpmModel* tok, int64_t e, const int* ids, int n,
                          char* err, size_t errlen) {
    if (e < 0 || e >= s->n || a->r.summaries[e]) { snprintf(err, errlen, "evaluation: example %lld out of range or given twice", (long long)e); return -1; }
    a->r.summaries[e] = decode_summary(tok, ids, n, err, errlen);
    if (!a->r.summaries[e]) return -1;
    const char* const* refs = (const char* const*)s->refs + s->ref_start[e];
    int nrefs = s->ref_start[e + 1] - s->ref_start[e];
    a->r.each[e] = rouge_score_multi(a->r.summaries[e], refs, nrefs);
    rouge_corpus_add(&a->rouge, &a->r.each[e]);
    bleu_add(&a->bleu, a->r.summaries[e], refs, nrefs);
    a->r.n++;
    return 0;
}

static void eval_accum_finish(EvalAccum* a, double seconds) {
    a->r.seconds = seconds;
    a->r.rouge = rouge_corpus_mean(&a->rouge);
    a->r.bleu = bleu_compute(&a->bleu);
}

// sources of examples [lo, lo+B) as int rows (truncated to max_src with </s> kept last)
static void eval_sources(const EvalSet* s, int64_t lo, int B, int max_src, int eos, int* buf, int** rows, int* lens) {
    for (int b = 0; b < B; b++) {
        int64_t e = lo + b;
        int len = s->ex.lens[2 * e];
        const uint32_t* src = examples_src(&s->ex, e);
        rows[b] = buf + (size_t)b * max_src;
        lens[b] = len < max_src ? len : max_src;
        for (int j = 0; j < lens[b]; j++) rows[b][j] = (int)src[j];
        if (len > max_src) rows[b][max_src - 1] = eos;
    }
}

// generates a summary for every example of s and scores them; 0, or -1 with a message
static int eval_generate(T5* m, const SpmModel* tok, const EvalSet* s, const EvalConfig* c, const char* label,
                         EvalResult* r, char* err, size_t errlen) {
    EvalAccum acc;
    eval_accum_init(&acc, s->n);
    int Bmax = c->batch_size, T = c->gen.max_new_tokens;
    int* buf = (int*)mallocCheck((size_t)Bmax * c->max_src * sizeof(int));
    int* out = (int*)mallocCheck((size_t)Bmax * T * sizeof(int));
    int *rows[Bmax], lens[Bmax], out_len[Bmax];
    double t0 = now_ms();
    int status = 0;
    float* saved = t5_lora_merge(m); // once for the whole split
    for (int64_t lo = 0; lo < s->n && status == 0; lo += Bmax) {
        int B = (int)(s->n - lo < Bmax ? s->n - lo : Bmax);
        eval_sources(s, lo, B, c->max_src, m->config.eos_id, buf, rows, lens);
        status = t5_generate(m, (const int* const*)rows, lens, B, &c->gen, out, out_len, err, errlen);
        for (int b = 0; b < B && status == 0; b++) status = eval_accum_add(&acc, s, tok, lo + b, out + (size_t)b * T, out_len[b], err, errlen);
        if (c->progress) progress_bar(label, acc.r.n, s->n, (now_ms() - t0) / 1e3);
    }
    t5_lora_unmerge(m, saved);
    eval_accum_finish(&acc, (now_ms() - t0) / 1e3);
    *r = acc.r;
    free(buf); free(out);
    return status;
}

// ----------------------------------------------------------------------------
// evaluation outputs: generations JSONL, scores, the side-by-side comparison report

// (id, dialogue, human summaries, generated summary, its ROUGE F1 x 100) per line; written to PATH.tmp,
// then renamed
static int write_generations(const char* path, const EvalSet* s, const EvalResult* r, char* err, size_t errlen) {
    AtomicFile a;
    if (mkdir_parent(path, err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
    for (int64_t i = 0; i < r->n; i++) {
        fputs("{\"id\": ", a.f); json_put_string(a.f, s->ids[i]);
        fputs(", \"dialogue\": ", a.f); json_put_string(a.f, s->dialogues[i]);
        fputs(", \"human\": [", a.f);
        for (int k = s->ref_start[i]; k < s->ref_start[i + 1]; k++) {
            if (k > s->ref_start[i]) fputs(", ", a.f);
            json_put_string(a.f, s->refs[k]);
        }
        fputs("], \"generated\": ", a.f); json_put_string(a.f, r->summaries[i]);
        for (int k = 0; k < ROUGE_NUM_METRICS; k++) fprintf(a.f, ", \"%s\": %.6f", ROUGE_NAMES[k], 100 * r->each[i].m[k].fmeasure);
        fputs("}\n", a.f);
    }
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

// What a model of the report is: the original (zero-shot) one, a full fine-tune, a LoRA adapter (on its
// base, or merged into it), or a fine-tuned model whose training is unknown. The report orders them so,
// as the lab's table does: original → full fine-tune → PEFT.
typedef enum { KIND_ZERO_SHOT, KIND_FULL, KIND_TUNED, KIND_LORA, KIND_MODEL } ModelKind;
static const char* const KIND_NAMES[] = { "zero-shot", "full fine-tune", "fine-tuned", "LoRA", "model" };
static int kind_rank(ModelKind k) { return k == KIND_ZERO_SHOT ? 0 : k == KIND_LORA ? 2 : 1; }

#define REPORT_NA "–" // an unknown cell: 3 bytes, 1 column

// one model of the report: what it is, what its training run's log says, its summaries and scores
typedef struct {
    const char* spec;     // the model as given: --model, --compare-model or --baseline-model
    const char* adapter;  // the LoRA adapter directory applied to it, or NULL
    const char* name;     // its scores.json's "model" (the spec; "fine-tuned" for a model trained by this process)
    const char* tag;      // its files: generations{tag}.jsonl, scores{tag}.json ("", "_compare", "_baseline")
    ModelKind kind;
    int trained;          // 1: trained by this process, from spec (its run: --out-dir)
    char label[40];       // the kind, made unique within the report
    char run[4400];       // the run directory its info was read from ("": none)
    RunInfo info;         // trainable parameters (0 for zero-shot), median step ms, peak MiB (-1 / NAN: unknown)
    EvalResult r;
} ReportRow;

// the run columns of a row as text: trainable parameters, median step ms, peak MiB (REPORT_NA: unknown)
static void run_cells(const RunInfo* i, char cells[3][32]) {
    if (i->trainable >= 0) lora_count_string(cells[0], 32, (unsigned long long)i->trainable);
    else snprintf(cells[0], 32, REPORT_NA);
    if (isfinite(i->step_ms)) snprintf(cells[1], 32, "%.1f", i->step_ms);
    else snprintf(cells[1], 32, REPORT_NA);
    if (isfinite(i->peak_mib)) snprintf(cells[2], 32, "%.0f", i->peak_mib);
    else snprintf(cells[2], 32, REPORT_NA);
}

// text: right-aligned in `width` columns (the dash counts one column, not its three bytes); markdown: a cell
static void put_cell(FILE* f, int md, int width, const char* cell) {
    if (md) fprintf(f, " %s |", cell);
    else fprintf(f, " %*s", width + (strcmp(cell, REPORT_NA) == 0 ? 2 : 0), cell);
}

static void print_scores_row(FILE* f, const ReportRow* w, int md) {
    const EvalResult* r = &w->r;
    const char* fmt = md ? "| %s | %lld | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |"
                         : "%-24s %6lld %8.2f %8.2f %8.2f %10.2f %8.2f %8.2f";
    fprintf(f, fmt, w->label, (long long)r->n, 100 * r->rouge.m[ROUGE_1].fmeasure, 100 * r->rouge.m[ROUGE_2].fmeasure,
            100 * r->rouge.m[ROUGE_L].fmeasure, 100 * r->rouge.m[ROUGE_LSUM].fmeasure, r->bleu.score, r->n / r->seconds);
    char cells[3][32];
    run_cells(&w->info, cells);
    int widths[3] = { 12, 9, 9 };
    for (int k = 0; k < 3; k++) put_cell(f, md, widths[k], cells[k]);
    fputc('\n', f);
}

static void print_scores_header(FILE* f, int md) {
    if (md) fprintf(f, "| model | examples | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | BLEU | summaries/s | trainable params "
                       "| step ms | peak MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    else fprintf(f, "%-24s %6s %8s %8s %8s %10s %8s %8s %12s %9s %9s\n", "model", "n", "ROUGE-1", "ROUGE-2", "ROUGE-L",
                 "ROUGE-Lsum", "BLEU", "summ/s", "trainable", "step ms", "peak MiB");
}

// under the table: each row's model (spec, adapter) and the run its last three columns come from
static void print_legend(FILE* f, int md, const ReportRow* rows, int n) {
    fprintf(f, md ? "\nModels:\n\n" : "models:\n");
    for (int k = 0; k < n; k++) {
        const ReportRow* w = &rows[k];
        fprintf(f, md ? "- **%s**: `%s`" : "  %-24s %s", w->label, w->spec);
        if (w->adapter) fprintf(f, md ? " + LoRA adapter `%s`" : " + LoRA adapter %s", w->adapter);
        if (w->trained) fprintf(f, ", trained by this process");
        if (w->kind == KIND_ZERO_SHOT) fprintf(f, " (as it is: nothing trained)\n");
        else if (w->run[0]) fprintf(f, md ? " (run `%s`: %lld steps%s%s)\n" : " (run %s: %lld steps%s%s)\n", w->run, w->info.steps,
                                    w->info.peak_memory[0] ? ", peak memory: " : "", w->info.peak_memory);
        else fprintf(f, " (no run directory with a metrics.jsonl: its run columns are unknown)\n");
    }
    fprintf(f, md ? "\nROUGE: mean per-example F1 x 100 against every human summary (best one counts); BLEU: corpus sacrebleu "
                    "(13a, exp smoothing). Trainable params, step ms (median training step) and peak MiB (resident memory "
                    "of a CPU run, device memory of a GPU run) come from each model's training run (its metrics.jsonl).\n"
                  : "(ROUGE: mean per-example F1 x 100, best over the human references; BLEU: corpus sacrebleu; step ms: "
                    "median training step; peak MiB: the run's peak memory)\n");
}

static int write_scores_json(const char* path, const ReportRow* w, char* err, size_t errlen) {
    const EvalResult* r = &w->r;
    AtomicFile a;
    if (mkdir_parent(path, err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
    fputs("{\"model\": ", a.f); json_put_string(a.f, w->name);
    fprintf(a.f, ", \"examples\": %lld", (long long)r->n);
    for (int k = 0; k < ROUGE_NUM_METRICS; k++) fprintf(a.f, ", \"%s\": %.6f", ROUGE_NAMES[k], 100 * r->rouge.m[k].fmeasure);
    fprintf(a.f, ", \"bleu\": %.6f, \"bleu_bp\": %.6f, \"summaries_per_s\": %.4f, \"note\": \"ROUGE: mean of per-example F1 x 100 "
            "(rouge_score, use_stemmer, best over the references), not a bootstrap median\"", r->bleu.score, r->bleu.bp, r->n / r->seconds);
    fprintf(a.f, ", \"kind\": \"%s\"", KIND_NAMES[w->kind]);
    if (w->adapter) { fputs(", \"lora_adapter\": ", a.f); json_put_string(a.f, w->adapter); }
    if (w->run[0]) { fputs(", \"run_dir\": ", a.f); json_put_string(a.f, w->run); }
    if (w->info.trainable >= 0) fprintf(a.f, ", \"trainable_params\": %lld", w->info.trainable);
    if (isfinite(w->info.step_ms)) fprintf(a.f, ", \"step_ms\": %.3f", w->info.step_ms);
    if (isfinite(w->info.peak_mib)) {
        fprintf(a.f, ", \"peak_mib\": %.1f, \"peak_memory\": ", w->info.peak_mib);
        json_put_string(a.f, w->info.peak_memory); // as the log said it: "resident", "device"
    }
    fputs("}\n", a.f);
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

// the side-by-side report: every model's scores (rows ordered zero-shot, full fine-tune, LoRA), then the
// first `examples` dialogues with the human summary and each model's; as text and as markdown
static void write_comparison(FILE* f, int md, const EvalSet* s, const ReportRow* rows, int n, int examples) {
    int width = 5; // "human"
    fprintf(f, md ? "# Summaries: human" : "SUMMARIES: human");
    for (int k = 0; k < n; k++) {
        fprintf(f, " vs %s", rows[k].label);
        if ((int)strlen(rows[k].label) > width) width = (int)strlen(rows[k].label);
    }
    fprintf(f, "\n\n");
    print_scores_header(f, md);
    for (int k = 0; k < n; k++) print_scores_row(f, &rows[k], md);
    print_legend(f, md, rows, n);
    for (int64_t i = 0; i < s->n && i < examples; i++) {
        fprintf(f, md ? "\n## %s\n\n```\n%s\n```\n\n" : "\n=== %s\n%s\n\n", s->ids[i], s->dialogues[i]);
        if (md) fprintf(f, "- **human**: %s\n", s->refs[s->ref_start[i]]);
        else fprintf(f, "  %-*s : %s\n", width, "human", s->refs[s->ref_start[i]]);
        for (int k = 0; k < n; k++) {
            if (md) fprintf(f, "- **%s**: %s\n", rows[k].label, rows[k].r.summaries[i]);
            else fprintf(f, "  %-*s : %s\n", width, rows[k].label, rows[k].r.summaries[i]);
        }
    }
}

static int write_comparison_files(const char* dir, const EvalSet* s, const ReportRow* rows, int n, int examples,
                                  char* err, size_t errlen) {
    const char* names[2] = { "comparison.txt", "comparison.md" };
    for (int md = 0; md < 2; md++) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, names[md]);
        AtomicFile a;
        if (mkdir_parent(path, err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
        write_comparison(a.f, md, s, rows, n, examples);
        if (atomic_close(&a, !ferror(a.f), err, errlen)) return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// summarize: one dialogue in, its summary out, with the C tokenizer end to end

#define DEFAULT_PROMPT "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "

// prompt(dialogue) → ids + </s> (the last max_src tokens dropped past the limit, </s> kept)
static int encode_prompt(const SpmModel* tok, const char* prompt, const char* text, int max_src, int eos,
                         int** ids, int* n, char* err, size_t errlen) {
    const char* at = strstr(prompt, "{dialogue}");
    if (!at) { snprintf(err, errlen, "--prompt must contain {dialogue}"); return -1; }
    size_t len = (size_t)(at - prompt) + strlen(text) + strlen(at + 10);
    char* full = (char*)mallocCheck(len + 1);
    snprintf(full, len + 1, "%.*s%s%s", (int)(at - prompt), prompt, text, at + 10);
    SpmEncoding e = {0};
    int rc = spm_encode(tok, full, len, &e, err, errlen);
    free(full);
    if (rc == 0) {
        *n = (int)(e.n + 1 < (size_t)max_src ? e.n + 1 : (size_t)max_src);
        *ids = (int*)mallocCheck((size_t)*n * sizeof(int));
        memcpy(*ids, e.ids, (size_t)(*n - 1) * sizeof(int));
        (*ids)[*n - 1] = eos;
    }
    spm_encoding_free(&e);
    return rc;
}

static char* summarize_text(T5* m, const SpmModel* tok, const char* prompt, const char* text, const EvalConfig* c,
                            char* err, size_t errlen) {
    int *ids, n, out_len;
    if (encode_prompt(tok, prompt, text, c->max_src, m->config.eos_id, &ids, &n, err, errlen)) return NULL;
    int* out = (int*)mallocCheck((size_t)c->gen.max_new_tokens * sizeof(int));
    const int* rows[1] = { ids };
    char* s = NULL;
    if (t5_generate(m, rows, &n, 1, &c->gen, out, &out_len, err, errlen) == 0)
        s = decode_summary(tok, out, out_len, err, errlen);
    free(ids); free(out);
    return s;
}

// ----------------------------------------------------------------------------
// command line

typedef struct {
    const char* model;       // preset, HF directory or checkpoint file
    const char* train_file;  // pre-tokenized examples (prepro_dialogsum.py output)
    const char* val_file;    // pre-tokenized validation examples
    const char* out_dir;     // run directory: metrics.jsonl, checkpoints/, model/
    const char* resume;      // "latest" (newest valid checkpoint in out_dir/checkpoints) or a checkpoint file
    const char* save_hf;     // output HF directory (default with --out-dir: OUT/model)
    HfWeightsOptions hf_weights; // --save-hf-dtype fp32|bf16, --max-shard-size (as save_pretrained's)
    const char* save_ckpt;   // output native checkpoint
    const char* data_log;    // PREFIX: each rank writes the example ids of every step to PREFIX.rank<r>
    const char* eval_split;  // PREFIX of a prepro split (PREFIX.bin + PREFIX_refs.jsonl): summaries + scores
    const char* eval_out;    // directory for generations.jsonl, scores.json, comparison.{txt,md}
    const char* baseline_model; // the model to compare with (the original, zero-shot one)
    const char* compare_model;  // a third model in the comparison (e.g. the full fine-tune beside a LoRA --model)
    const char* compare_lora_adapter; // a peft adapter applied to compare_model (as lora_adapter to model)
    const char* summarize;   // FILE or - : print the summary of one dialogue
    const char* tokenizer;   // T5's spiece.model
    const char* prompt;      // source template with {dialogue}, as prepro_dialogsum.py's
    int num_beams, max_new_tokens, no_repeat_ngram, early_stopping, gen_batch_size, eval_limit, eval_rouge, compare_examples;
    float length_penalty;
    int steps, schedule_steps, batch_size, grad_accum, warmup, shuffle, bucket, decay_norms, max_src_len, max_tgt_len;
    int ladder[2];           // --shape-ladder S,T: padded lengths rounded up to multiples of S / T (0: dynamic)
    float epochs;
    int eval_every, eval_batches, eval_batch_size, checkpoint_every, keep_checkpoints, max_skips;
    float lr, weight_decay, beta1, beta2, adam_eps, clip, dropout;
    LrScheduleKind schedule;
    long long seed;
    int bench, bench_src_len, bench_tgt_len;
    T5Config dims;           // explicit dimensions over a preset (0 / -1 = keep the preset's)
    int lora_r;              // LoRA rank, 0 = full fine-tuning, -1 = not given (0, or the adapter's)
    float lora_alpha, lora_dropout; // -1 = not given (peft's defaults 8 and 0, or the adapter's)
    const char* lora_targets;  // "q,v" (NULL: peft's T5 default q,v, or the adapter's)
    const char* lora_adapter;  // a peft adapter directory to start from
    const char* save_lora;     // where to write the adapter (default with --out-dir: OUT/adapter)
    const char* merge_lora;    // where to write the merged model as an HF directory
} Options;

static Options options_default(void) {
    Options o = { .model = "flan-t5-small", .steps = 0, .epochs = 1.0f, .batch_size = 4, .grad_accum = 1, .warmup = 0,
                  .shuffle = 1, .bucket = 1, .decay_norms = 0, .max_src_len = 512, .max_tgt_len = 128, .eval_every = 0,
                  .eval_batches = 0, .eval_batch_size = 0, .checkpoint_every = 0, .keep_checkpoints = 3, .max_skips = 10, .lr = 3e-4f,
                  .weight_decay = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .adam_eps = 1e-8f, .clip = 1.0f,
                  .dropout = -1.0f, .schedule = SCHED_LINEAR, .seed = 42, .bench = 0, .bench_src_len = 256,
                  .bench_tgt_len = 64, .prompt = DEFAULT_PROMPT,
                  .num_beams = 1, .max_new_tokens = 128, .no_repeat_ngram = 0, .early_stopping = 0, .gen_batch_size = 8,
                  .eval_limit = 0, .eval_rouge = 0, .compare_examples = 5, .length_penalty = 1.0f };
    o.hf_weights = (HfWeightsOptions){ ST_F32, 0 };
    o.dims.tied = -1; o.dims.scale_out = -1; o.dims.gated = -1; o.dims.act = (T5Act)-1;
    o.lora_r = -1; o.lora_alpha = -1.0f; o.lora_dropout = -1.0f;
    return o;
}

static void usage(void) {
    Options d = options_default();
    fprintf(stderr,
        "usage: train_t5 [options]\n"
        "  --model SPEC           preset name, HF model directory (config.json + *.safetensors), or native\n"
        "                         checkpoint file (default %s). Presets:", d.model);
    for (int i = 0; i < T5_NUM_PRESETS; i++) fprintf(stderr, " %s", T5_PRESETS[i].name);
    fprintf(stderr, "\n"
        " data\n"
        "  --train-file PATH      pre-tokenized training examples (prepro_dialogsum.py / llmc/examples.h)\n"
        "  --val-file PATH        pre-tokenized validation examples: validation loss\n"
        "  --batch-size N         examples per micro-batch (default %d)\n"
        "  --grad-accum N         micro-batches per optimizer step (default %d)\n"
        "  --shuffle 0|1          shuffle examples each epoch; 0 = file order (default %d)\n"
        "  --bucket 0|1           group examples of similar length into batches (default %d)\n"
        "  --shape-ladder S,T     pad each batch's sources / targets up to a multiple of S / T (capped at the\n"
        "                         maximum lengths): a small fixed set of shapes (default 0,0: to the longest)\n"
        "  --max-src-len N        truncate sources to N tokens (default %d)\n"
        "  --max-tgt-len N        truncate targets to N tokens (default %d)\n"
        " schedule and optimizer\n"
        "  --epochs X             passes over the training file (default %g), used when --steps is 0\n"
        "  --steps N              optimizer steps in all, 0 = from --epochs (default %d)\n"
        "  --lr X                 peak learning rate (default %g)\n"
        "  --schedule S           constant | linear | cosine (default %s)\n"
        "  --warmup N             linear warmup steps (default %d)\n"
        "  --schedule-steps N     length of the lr schedule, 0 = the run's steps (default 0)\n"
        "  --weight-decay X       AdamW decoupled weight decay (default %g)\n"
        "  --decay-norms 0|1      also decay RMSNorm weights (default %d: HF Trainer's rule)\n"
        "  --beta1 X --beta2 X    AdamW betas (default %g, %g)\n"
        "  --adam-eps X           AdamW epsilon (default %g)\n"
        "  --clip X               max global gradient norm, 0 = off (default %g)\n"
        "  --max-skips N          stop after N consecutive steps with a non-finite loss or gradient norm (default %d)\n"
        "  --dropout X            dropout rate, -1 = the model config's (default %g)\n"
        "  --seed N               seed for init, data order and dropout (default %lld)\n"
        " run directory, evaluation, checkpoints\n"
        "  --out-dir DIR          write DIR/metrics.jsonl, DIR/checkpoints/ and the final model to DIR/model\n"
        "  --eval-every N         validation loss every N steps, 0 = at the end only (default %d)\n"
        "  --eval-batches N       validation batches per evaluation, 0 = the whole file (default %d)\n"
        "  --eval-batch-size N    validation batch size, 0 = --batch-size (default %d)\n"
        "  --checkpoint-every N   checkpoint every N steps into DIR/checkpoints, 0 = at the end (default %d)\n"
        "  --keep-checkpoints K   keep the newest K checkpoints (default %d)\n"
        "  --resume latest|PATH   continue the run in --out-dir from its newest valid checkpoint (or PATH)\n"
        "  --save-hf DIR          write the trained model as an HF directory (weights, config, generation config,\n"
        "                         tokenizer files, model card; default with --out-dir: OUT/model)\n"
        "  --save-hf-dtype fp32|bf16  its weights' dtype (default fp32)   --max-shard-size SIZE  shards above SIZE\n"
        "                         (\"5GB\", \"500MB\" or bytes; default 50GB, as save_pretrained)\n"
        "  --save-checkpoint PATH write a native checkpoint (params + AdamW state)\n"
        "  SIGINT / SIGTERM finish the current step, write a checkpoint and exit with 130 / 143.\n"
        " summaries and scores (ROUGE as rouge_score, BLEU as sacrebleu)\n"
        "  --eval-split PREFIX    summarize PREFIX.bin (prepro output, e.g. out/dialogsum/test) and score against\n"
        "                         PREFIX_refs.jsonl; after training when --train-file is given\n"
        "  --eval-out DIR         generations.jsonl + scores.json (+ comparison.txt/.md) (default OUT/eval, or out/eval)\n"
        "  --baseline-model SPEC  also summarize with SPEC (the original model) and write the side-by-side comparison\n"
        "  --compare-model SPEC   also summarize with SPEC (e.g. the full fine-tune beside a LoRA --model): a third\n"
        "                         model in the comparison, generations_compare.jsonl + scores_compare.json\n"
        "  --compare-lora-adapter DIR  a peft adapter applied to --compare-model, as --lora-adapter to --model\n"
        "                         (the comparison orders its models zero-shot, full fine-tune, LoRA, and shows\n"
        "                         trainable parameters, step time and peak memory from each one's run directory)\n"
        "  --compare-examples N   dialogues shown side by side in the comparison (default %d)\n"
        "  --eval-limit N         only the first N examples of the split, 0 = all (default %d)\n"
        "  --eval-rouge N         while training, also ROUGE on the first N validation examples at each evaluation\n"
        "  --summarize FILE|-     print the summary of the dialogue in FILE (- = stdin)\n"
        "  --tokenizer PATH       T5's spiece.model (default: spiece.model in the --model or --baseline-model\n"
        "                         directory, as a hub download holds it, else %s);\n"
        "                         the HF directory written after training gets a copy\n"
        "  --prompt TEXT          source template with {dialogue} (default: prepro_dialogsum.py's FLAN prompt)\n"
        "  --num-beams N          1 = greedy (default %d)   --max-new-tokens N (default %d)\n"
        "  --length-penalty X     beam score / length^X (default %g)   --early-stopping 0|1 (default %d)\n"
        "  --no-repeat-ngram N    ban repeated N-grams, 0 = off (default %d)   --gen-batch-size N (default %d)\n"
 " LoRA (peft's math and files; llmc/lora.h)\n"
        "  --lora-r N             adapter rank; 0 = full fine-tuning (default 0)\n"
        "  --lora-alpha X         scale alpha/r (default 8, peft's)   --lora-dropout X  on each adapter's input (default 0)\n"
        "  --lora-targets LIST    peft's T5 module names: q,k,v,o,wi,wi_0,wi_1,wo (default q,v), or all-linear; encoder\n"
        "                         and decoder self- and cross-attention alike\n"
        "  --lora-adapter DIR     start from a peft adapter directory (its r, alpha, dropout and targets apply;\n"
        "                         the flags may repeat them, not contradict them); also for --eval-split / --summarize\n"
        "  --save-lora DIR        write the adapter as peft does (default with --out-dir: OUT/adapter; OUT/model\n"
        "                         is not written under LoRA)\n"
        "  --merge-lora DIR       write base + adapter merged (peft's merge_and_unload) as an HF directory;\n"
        "                         --save-hf DIR does the same under LoRA\n"
        " several processes (built with MPI): mpirun -np N ./train_t5 ... — each rank takes 1/N of every\n"
        "  global batch of N x --batch-size examples; gradients are summed with MPI_Allreduce\n"
        "  --data-log PREFIX      each rank writes the example ids of every step to PREFIX.rank<r>\n"
        " other\n"
        "  --bench N              time N forward+backward passes on a synthetic batch and exit\n"
        "  --bench-src-len N      (default %d)   --bench-tgt-len N (default %d)\n"
        "  explicit dimensions over a preset: --vocab-size --d-model --d-kv --num-heads --d-ff --num-layers\n"
        "  --num-decoder-layers --num-buckets --max-distance N, --ffn relu|gelu|gelu_new|silu|gated-gelu|gated-relu|gated-silu,\n"
        "  --tied 0|1 (lm_head = embedding; also sets the output scaling, as transformers 4 did), --scale-output 0|1\n"
        "  (decoder output * d_model^-0.5 before the head, HF scale_decoder_outputs)\n",
        d.batch_size, d.grad_accum, d.shuffle, d.bucket, d.max_src_len, d.max_tgt_len, (double)d.epochs, d.steps,
        (double)d.lr, lr_schedule_name(d.schedule), d.warmup, (double)d.weight_decay, d.decay_norms, (double)d.beta1,
        (double)d.beta2, (double)d.adam_eps, (double)d.clip, d.max_skips, (double)d.dropout, d.seed, d.eval_every, d.eval_batches,
        d.eval_batch_size, d.checkpoint_every, d.keep_checkpoints, d.compare_examples, d.eval_limit, T5_DEFAULT_TOKENIZER,
        d.num_beams, d.max_new_tokens, (double)d.length_penalty, d.early_stopping, d.no_repeat_ngram, d.gen_batch_size,
        d.bench_src_len, d.bench_tgt_len);
}

static int parse_int(const char* flag, const char* s, long long lo, long long hi, long long* out) {
    char* end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "error: %s needs an integer in [%lld, %lld], got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char* flag, const char* s, double lo, double hi, float* out) {
    char* end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi)) {
        fprintf(stderr, "error: %s needs a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

typedef struct { const char* flag; int* dst; long long lo, hi; } IntFlag;
typedef struct { const char* flag; float* dst; double lo, hi; } FloatFlag;
typedef struct { const char* flag; const char** dst; } StrFlag;

// the LoRA flags as llmc/lora.h takes them
static LoraFlags lora_flags(const Options* o) {
    LoraFlags f = { o->lora_r, o->lora_alpha, o->lora_dropout, o->lora_targets, o->lora_adapter };
    return f;
}

// the LoRA flags among themselves (the adapter and the model are checked once loaded)
static const char* check_lora_options(const Options* o) {
    static char msg[1100];
    LoraFlags f = lora_flags(o);
    return lora_flags_check(&f, o->resume != NULL, o->save_lora || o->merge_lora, msg, sizeof(msg));
}

// combinations the flags alone cannot rule out
static int check_options(const Options* o) {
    const char* bad = NULL;
    if (o->resume && !o->out_dir) bad = "--resume needs --out-dir (the run directory to continue)";
    else if (o->resume && !o->train_file) bad = "--resume needs --train-file";
    else if ((o->eval_every || o->eval_batches) && !o->val_file) bad = "--eval-every / --eval-batches need --val-file";
    else if (o->checkpoint_every && !o->out_dir) bad = "--checkpoint-every needs --out-dir";
    else if (o->eval_rouge && !o->val_file) bad = "--eval-rouge needs --val-file (and its _refs.jsonl beside it)";
    else if (o->baseline_model && !o->eval_split) bad = "--baseline-model needs --eval-split";
    else if (o->compare_lora_adapter && !o->compare_model) bad = "--compare-lora-adapter needs --compare-model (the base it adapts)";
    else if (o->compare_model && !o->eval_split) bad = "--compare-model needs --eval-split (it adds a model to the comparison report)";
    else if (!strstr(o->prompt, "{dialogue}")) bad = "--prompt must contain {dialogue}";
    else bad = check_lora_options(o);
    if (bad) fprintf(stderr, "error: %s\n", bad);
    return bad ? -1 : 0;
}

// returns 0, or -1 after printing what was wrong
static int parse_args(int argc, char** argv, Options* o) {
    IntFlag ints[] = {
        {"--steps", &o->steps, 0, 1000000000}, {"--schedule-steps", &o->schedule_steps, 0, 1000000000}, {"--batch-size", &o->batch_size, 1, 65536},
        {"--grad-accum", &o->grad_accum, 1, 65536}, {"--warmup", &o->warmup, 0, 1000000000},
        {"--shuffle", &o->shuffle, 0, 1}, {"--bucket", &o->bucket, 0, 1}, {"--decay-norms", &o->decay_norms, 0, 1},
        {"--max-src-len", &o->max_src_len, 1, 1 << 20}, {"--max-tgt-len", &o->max_tgt_len, 1, 1 << 20},
        {"--eval-every", &o->eval_every, 0, 1000000000}, {"--eval-batches", &o->eval_batches, 0, 1000000000},
        {"--eval-batch-size", &o->eval_batch_size, 0, 65536}, {"--checkpoint-every", &o->checkpoint_every, 0, 1000000000},
        {"--keep-checkpoints", &o->keep_checkpoints, 1, 1000000}, {"--max-skips", &o->max_skips, 1, 1000000000},
        {"--num-beams", &o->num_beams, 1, 64}, {"--max-new-tokens", &o->max_new_tokens, 1, 4096},
        {"--no-repeat-ngram", &o->no_repeat_ngram, 0, 64}, {"--early-stopping", &o->early_stopping, 0, 1},
        {"--gen-batch-size", &o->gen_batch_size, 1, 4096}, {"--eval-limit", &o->eval_limit, 0, 1000000000},
        {"--eval-rouge", &o->eval_rouge, 0, 1000000000}, {"--compare-examples", &o->compare_examples, 0, 1000000},
        {"--bench", &o->bench, 0, 1000000}, {"--bench-src-len", &o->bench_src_len, 1, 1 << 16},
        {"--bench-tgt-len", &o->bench_tgt_len, 1, 1 << 16},
        {"--vocab-size", &o->dims.vocab_size, 2, 1 << 24}, {"--d-model", &o->dims.d_model, 1, 65536},
        {"--d-kv", &o->dims.d_kv, 1, 4096}, {"--num-heads", &o->dims.num_heads, 1, 1024},
        {"--d-ff", &o->dims.d_ff, 1, 1 << 20}, {"--num-layers", &o->dims.num_layers, 1, 256},
        {"--num-decoder-layers", &o->dims.num_decoder_layers, 1, 256}, {"--num-buckets", &o->dims.num_buckets, 4, 4096},
        {"--max-distance", &o->dims.max_distance, 2, 1 << 20}, {"--tied", &o->dims.tied, 0, 1}, {"--scale-output", &o->dims.scale_out, 0, 1},
        {"--lora-r", &o->lora_r, 0, 65536},
    };
    FloatFlag floats[] = {
        {"--lr", &o->lr, 0.0, 10.0}, {"--weight-decay", &o->weight_decay, 0.0, 10.0}, {"--beta1", &o->beta1, 0.0, 0.999999},
        {"--beta2", &o->beta2, 0.0, 0.999999999}, {"--adam-eps", &o->adam_eps, 1e-30, 1.0}, {"--clip", &o->clip, 0.0, 1e9},
        {"--dropout", &o->dropout, -1.0, 0.99}, {"--epochs", &o->epochs, 1e-6, 1e6},
        {"--length-penalty", &o->length_penalty, -100.0, 100.0},
        {"--lora-alpha", &o->lora_alpha, 1e-6, 1e6}, {"--lora-dropout", &o->lora_dropout, 0.0, 0.99},
    };
    StrFlag strs[] = {
        {"--model", &o->model}, {"--train-file", &o->train_file}, {"--val-file", &o->val_file}, {"--out-dir", &o->out_dir},
        {"--resume", &o->resume}, {"--save-hf", &o->save_hf}, {"--save-checkpoint", &o->save_ckpt},
        {"--data-log", &o->data_log}, {"--eval-split", &o->eval_split}, {"--eval-out", &o->eval_out},
        {"--baseline-model", &o->baseline_model}, {"--compare-model", &o->compare_model},
        {"--compare-lora-adapter", &o->compare_lora_adapter}, {"--summarize", &o->summarize}, {"--tokenizer", &o->tokenizer},
        {"--prompt", &o->prompt}, {"--lora-targets", &o->lora_targets}, {"--lora-adapter", &o->lora_adapter},
        {"--save-lora", &o->save_lora}, {"--merge-lora", &o->merge_lora},
    };
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) { usage(); exit(EXIT_SUCCESS); }
        if (i + 1 >= argc) { fprintf(stderr, "error: %s needs a value (see --help)\n", f); return -1; }
        const char* v = argv[++i];
        int done = 0;
        for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]) && !done; k++) {
            if (strcmp(f, ints[k].flag) != 0) continue;
            long long x;
            if (parse_int(f, v, ints[k].lo, ints[k].hi, &x)) return -1;
            *ints[k].dst = (int)x; done = 1;
        }
        for (size_t k = 0; k < sizeof(floats) / sizeof(floats[0]) && !done; k++) {
            if (strcmp(f, floats[k].flag) != 0) continue;
            if (parse_float(f, v, floats[k].lo, floats[k].hi, floats[k].dst)) return -1;
            done = 1;
        }
        for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]) && !done; k++)
            if (strcmp(f, strs[k].flag) == 0) { *strs[k].dst = v; done = 1; }
        if (done) continue;
        if (strcmp(f, "--seed") == 0) { if (parse_int(f, v, 0, (1LL << 62), &o->seed)) return -1; }
        else if (strcmp(f, "--shape-ladder") == 0) {
            if (ladder_parse(v, o->ladder)) { fprintf(stderr, "error: --shape-ladder must be S,T: two steps in [0, 4096] (e.g. 64,16; 0,0 = dynamic padding), got '%s'\n", v); return -1; }
        }
        else if (strcmp(f, "--save-hf-dtype") == 0) {
            if (strcmp(v, "fp32") != 0 && strcmp(v, "bf16") != 0) { fprintf(stderr, "error: --save-hf-dtype must be fp32 or bf16, got '%s'\n", v); return -1; }
            o->hf_weights.dtype = strcmp(v, "bf16") == 0 ? ST_BF16 : ST_F32;
        } else if (strcmp(f, "--max-shard-size") == 0) {
            if ((o->hf_weights.max_shard_bytes = hf_parse_size(v)) == 0) {
                fprintf(stderr, "error: --max-shard-size must be a size like 5GB, 500MB, 100KB or a byte count, got '%s'\n", v); return -1;
            }
        }
        else if (strcmp(f, "--schedule") == 0) {
            if (lr_schedule_parse(v, &o->schedule)) { fprintf(stderr, "error: --schedule must be constant, linear or cosine, got '%s'\n", v); return -1; }
        } else if (strcmp(f, "--ffn") == 0) {
            T5Config t;
            if (hf_parse_ffn(v, &t)) { fprintf(stderr, "error: --ffn must be relu, gelu, gelu_new, silu, gated-gelu, gated-relu or gated-silu, got '%s'\n", v); return -1; }
            o->dims.gated = t.gated; o->dims.act = t.act;
        } else { fprintf(stderr, "error: unknown option %s (see --help)\n", f); return -1; }
    }
    return check_options(o);
}

// a preset with the explicitly given dimensions replacing its own
static int config_from_preset(const Options* o, const char* spec, T5Config* c) {
    if (t5_config_preset(c, spec)) {
        fprintf(stderr, "error: model '%s' is not a directory, a file, or a preset (see --help)\n", spec);
        return -1;
    }
    const T5Config* d = &o->dims;
    if (d->vocab_size) c->vocab_size = d->vocab_size;
    if (d->d_model) c->d_model = d->d_model;
    if (d->d_kv) c->d_kv = d->d_kv;
    if (d->num_heads) c->num_heads = d->num_heads;
    if (d->d_ff) c->d_ff = d->d_ff;
    if (d->num_layers) { c->num_layers = d->num_layers; c->num_decoder_layers = d->num_layers; }
    if (d->num_decoder_layers) c->num_decoder_layers = d->num_decoder_layers;
    if (d->num_buckets) c->num_buckets = d->num_buckets;
    if (d->max_distance) c->max_distance = d->max_distance;
    if (d->tied >= 0) c->tied = c->scale_out = d->tied;
    if (d->scale_out >= 0) c->scale_out = d->scale_out;
    if (d->gated >= 0) { c->gated = d->gated; c->act = d->act; }
    const char* bad = t5_config_check(c);
    if (bad) { fprintf(stderr, "error: invalid model dimensions: %s\n", bad); return -1; }
    return 0;
}

// whether any of --vocab-size, --d-model, ..., --tied, --scale-output, --ffn was given (they shape a preset)
static int dims_given(const T5Config* d) {
    return d->vocab_size || d->d_model || d->d_kv || d->num_heads || d->d_ff || d->num_layers || d->num_decoder_layers ||
           d->num_buckets || d->max_distance || d->tied >= 0 || d->scale_out >= 0 || d->gated >= 0;
}

// the parts of a config that fix the parameter layout and the computation
static int same_shape(const T5Config* a, const T5Config* b) {
    return a->vocab_size == b->vocab_size && a->d_model == b->d_model && a->d_kv == b->d_kv && a->num_heads == b->num_heads &&
           a->d_ff == b->d_ff && a->num_layers == b->num_layers && a->num_decoder_layers == b->num_decoder_layers &&
           a->num_buckets == b->num_buckets && a->max_distance == b->max_distance && a->act == b->act &&
           a->gated == b->gated && a->tied == b->tied && a->scale_out == b->scale_out;
}

// spec: --model or --baseline-model (a preset gets the same dimension flags and --seed)
static int load_model(T5* m, const Options* o, const char* spec) {
    char err[1024];
    int rc = 0;
    switch (model_source(spec)) {
        case SRC_HF_DIR: rc = t5_build_from_hf(m, spec, err, sizeof(err)); break;
        case SRC_CHECKPOINT:
            if (lora_ckpt_is(spec)) { // it holds no base weights: name what to do instead
                fprintf(stderr, "error: %s is a LoRA adapter checkpoint, not a model: give its base as --model (and --resume it, "
                        "or use the run's adapter directory with --lora-adapter)\n", spec);
                return -1;
            }
            rc = t5_build_from_checkpoint(m, spec, NULL, err, sizeof(err));
            break;
        default: {
            T5Config c;
            if (config_from_preset(o, spec, &c)) return -1;
            t5_build_from_config(m, &c);
            t5_init_random(m, (uint64_t)o->seed);
            fprintf(stderr, "note: model %s: RANDOMLY INITIALISED %s-shaped T5 (seed %lld), not pretrained weights\n", spec, spec, o->seed);
        }
    }
    if (rc) { fprintf(stderr, "error: %s\n", err); return -1; }
    if (o->dropout >= 0.0f) m->config.dropout = o->dropout;
    return 0;
}

// the peft adapter in DIR attached to m, its config and weights as the files say; `flags` (NULL: none)
// holds LoRA flags that may repeat the adapter's config, not contradict it. 0, or -1 after a message
static int attach_adapter(T5* m, const char* dir, const Options* flags) {
    char err[1400];
    LoraConfig c;
    float* adapter = NULL;
    const char* bad = NULL;
    if (lora_load_dir(dir, &m->config, &c, &adapter, err, sizeof(err))) bad = err;
    else if (flags) { LoraFlags f = lora_flags(flags); bad = lora_flags_contradict(&f, &c, &m->config, err, sizeof(err)); }
    if (bad) { fprintf(stderr, "error: %s\n", bad); free(adapter); return -1; }
    t5_lora_attach(m, &c, adapter, 0);
    return 0;
}

// a model of the evaluation (--compare-model, --baseline-model) as --model and --lora-adapter give the
// main one: SPEC loaded (load_model), with the peft adapter in DIR (NULL: none) attached
static int load_adapted_model(T5* m, const Options* o, const char* spec, const char* adapter) {
    if (load_model(m, o, spec)) return -1;
    if (!adapter || attach_adapter(m, adapter, NULL) == 0) return 0;
    t5_free(m);
    return -1;
}

// LoRA as the flags ask: --lora-adapter's config and weights (the flags may repeat it, not contradict
// it), or a fresh adapter of rank --lora-r with peft's init and defaults (alpha 8, dropout 0, q,v)
static int lora_setup(T5* m, const Options* o) {
    char err[1400];
    if (o->lora_adapter) return attach_adapter(m, o->lora_adapter, o);
    if (o->lora_r <= 0) return 0;
    LoraConfig c;
    LoraFlags f = lora_flags(o);
    const char* bad = lora_flags_config(&f, &m->config, &c, err, sizeof(err));
    if (bad) { fprintf(stderr, "error: %s\n", bad); return -1; }
    t5_lora_attach(m, &c, NULL, lora_init_seed((uint64_t)o->seed));
    return 0;
}

// peft's print_trainable_parameters: the adapter against base + adapter (everything, full fine-tuning)
static void print_trainable(const T5* m) {
    lora_print_trainable(t5_num_trainable(m), t5_num_params(m) + (m->lora.r ? m->lora_layout.total : 0));
}

static void print_config(const T5* m, const Options* o, const char* model_from) {
    const T5Config* c = &m->config;
    printf("+------------------------+---------------------------------------------+\n");
    printf("| %-22s | %-43s |\n", "model", model_from);
    printf("| %-22s | %-43zu |\n", "parameters", t5_num_params(m));
    printf("| %-22s | V=%d C=%d H=%d D=%d F=%d L=%d/%d %-9s |\n", "shape", c->vocab_size, c->d_model, c->num_heads,
           c->d_kv, c->d_ff, c->num_layers, c->num_decoder_layers, "");
    printf("| %-22s | %-43s |\n", "ffn / head", t5_head_desc(c));
    printf("| %-22s | %-43s |\n", "train file", o->train_file ? o->train_file : "(none)");
    printf("| %-22s | %-43s |\n", "val file", o->val_file ? o->val_file : "(none)");
    printf("| %-22s | %-43s |\n", "run directory", o->out_dir ? o->out_dir : "(none)");
    printf("| %-22s | %d x %-39d |\n", "batch x accumulation", o->batch_size, o->grad_accum);
    printf("| %-22s | shuffle %d bucket %d src<=%-6d tgt<=%-10d |\n", "batches", o->shuffle, o->bucket, o->max_src_len, o->max_tgt_len);
    if (o->ladder[0] > 1 || o->ladder[1] > 1) printf("| %-22s | multiples of %-4d / %-4d (capped at the maxima) |\n", "shape ladder", o->ladder[0], o->ladder[1]);
    printf("| %-22s | %-10g %-8s warmup %-17d |\n", "lr / schedule", (double)o->lr, lr_schedule_name(o->schedule), o->warmup);
    printf("| %-22s | wd %-8g clip %-8g dropout %-14g |\n", "regularisation", (double)o->weight_decay, (double)o->clip, (double)c->dropout);
    char lora[128];
    printf("| %-22s | %-43s |\n", "LoRA", lora_describe(&m->lora, lora, sizeof(lora)));
#ifdef _OPENMP
    printf("| %-22s | %-43d |\n", "OpenMP threads", omp_get_max_threads());
#endif
    printf("+------------------------+---------------------------------------------+\n");
    print_trainable(m);
}

static EvalConfig eval_config(const Options* o, int progress) {
    EvalConfig c = { gen_config_default(), o->gen_batch_size, o->max_src_len, progress };
    c.gen.max_new_tokens = o->max_new_tokens;
    c.gen.num_beams = o->num_beams;
    c.gen.no_repeat_ngram_size = o->no_repeat_ngram;
    c.gen.length_penalty = o->length_penalty;
    c.gen.early_stopping = o->early_stopping;
    return c;
}

// --tokenizer, or the model directory's spiece.model, or the default (hf_tokenizer_path)
static const char* tokenizer_path(const Options* o, char* buf, size_t n) {
    return hf_tokenizer_path(buf, n, o->tokenizer, o->model, o->baseline_model);
}

static int load_tokenizer(SpmModel* tok, const Options* o) {
    char err[1024], path[4400];
    if (spm_load(tok, tokenizer_path(o, path, sizeof(path)), err, sizeof(err)) == 0) return 0;
    fprintf(stderr, "error: tokenizer: %s\n", err);
    return -1;
}

// ----------------------------------------------------------------------------
// the run directory (llmc/rundir.h): metrics log, checkpoints, and OUT/model/ (the final model as an
// HF directory)

// writes OUT/checkpoints/ckpt_<steps run>.bin atomically, then deletes all but the newest `keep`
static int ckpt_write_run(const T5* m, const char* out_dir, const CkptTrainState* ts, int keep) {
    char path[4400], err[1024];
    ckpt_path(path, sizeof(path), out_dir, ts->run_step);
    if (t5_save_checkpoint(m, path, ts, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    printf("checkpoint %s\n", path);
    ckpt_prune(out_dir, keep);
    return 0;
}

// PATH as a full checkpoint, or as an adapter checkpoint over --model (the base it was trained on)
static int resume_from(T5* m, const Options* o, const char* path, CkptTrainState* ts, char* err, size_t errlen) {
    if (!lora_ckpt_is(path)) return t5_build_from_checkpoint(m, path, ts, err, errlen);
    if (load_model(m, o, o->model)) { snprintf(err, errlen, "%s: cannot load its base model --model %s", path, o->model); return -1; }
    if (t5_load_lora_checkpoint(m, path, ts, err, errlen) == 0) return 0;
    t5_free(m);
    return -1;
}

// the checkpoint to resume: PATH as given, or the newest one in OUT/checkpoints that loads and
// checks out (a corrupted newer one is reported and skipped, never deleted). 0 on success.
static int resume_model(T5* m, const Options* o, CkptTrainState* ts, char* used, size_t usedlen) {
    char err[1024], dir[4096];
    if (strcmp(o->resume, "latest") != 0) {
        snprintf(used, usedlen, "%s", o->resume);
        if (resume_from(m, o, o->resume, ts, err, sizeof(err)) == 0) return 0;
        fprintf(stderr, "error: cannot resume: %s\n", err);
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s/checkpoints", o->out_dir);
    long long steps[CKPT_MAX_LISTED];
    int n = ckpt_list(dir, steps, CKPT_MAX_LISTED);
    for (int i = 0; i < n; i++) {
        ckpt_path(used, usedlen, o->out_dir, steps[i]);
        if (resume_from(m, o, used, ts, err, sizeof(err)) == 0) return 0;
        fprintf(stderr, "warning: skipping checkpoint: %s\n", err);
    }
    fprintf(stderr, "error: cannot resume: no valid checkpoint in %s\n", dir);
    return -1;
}

// ----------------------------------------------------------------------------
// training

typedef struct { float loss, grad_norm, lr; long long tokens; int skipped; const char* error; } StepResult;

// set by SIGINT / SIGTERM, read between steps: the one piece of global state, as signal handlers
// can reach nothing else
static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL); // a second signal stops the program at once
}

// everything a run holds besides the model
typedef struct {
    const Dist* dist;       // this process among the data-parallel ranks
    DataLoader train, val;
    BatchBuf* bufs;         // (grad_accum) the micro-batches of a step
    FILE* data_log;         // --data-log
    EvalSet rouge_set;      // --eval-rouge: the first N validation examples with their references
    SpmModel tok;           // decodes their summaries
    int has_rouge;
    BatchBuf val_buf;
    FILE* metrics;          // NULL without --out-dir
    long long step;         // steps run (the optimizer's count, m->step, skips non-finite steps)
    long long total_steps;
    int has_val;
} Run;

static LrSchedule run_schedule(const Options* o, const Run* r) {
    return (LrSchedule){ o->schedule, o->warmup, o->schedule_steps ? o->schedule_steps : (int)r->total_steps };
}

static void log_step_data(Run* run, long long k, int a) {
    if (!run->data_log) return;
    fprintf(run->data_log, "%lld %d", k + 1, a);
    for (int i = 0; i < run->train.idx_n; i++) fprintf(run->data_log, " %lld", (long long)run->train.idx[i]);
    fprintf(run->data_log, "\n");
}

// one optimizer step over grad_accum micro-batches; the loss is the mean over all counted tokens of
// the global batch. With R ranks each holds 1/R of every micro-batch: the token count and, after the
// backward passes, the gradients are summed over ranks, so every rank applies the same update.
static StepResult train_step(T5* m, const Options* o, Run* run, long long k) {
    StepResult r = {0};
    const Dist* d = run->dist;
    int A = o->grad_accum, bad_batch = 0;
    int64_t counts[2] = {0, 0}; // counted label tokens, real tokens
    for (int a = 0; a < A; a++) { // labels of the whole step first: they fix the loss normalisation
        T5Batch* b = dataloader_next(&run->train, &run->bufs[a]);
        log_step_data(run, k, a);
        const char* bad = b->B > 0 ? t5_check_batch(m, b) : NULL; // B = 0: a rank's empty share of a short batch
        if (bad) { r.error = bad; bad_batch = 1; }
        counts[0] += batch_count_labels(b);
        counts[1] += batch_real_tokens(b);
    }
    if (dist_max_int(d, bad_batch)) { if (!r.error) r.error = "a bad batch on another rank"; return r; } // before any compute
    dist_sum_i64(d, counts, 2);
    long long total = counts[0];
    r.tokens = counts[1];
    t5_zero_grad(m);
    double loss_sum = 0.0;
    for (int a = 0; a < A; a++) {
        if (run->bufs[a].b.B == 0 || total == 0) continue;
        // ranks > 0 draw other masks than rank 0 for the same positions of their slices
        uint64_t seed = mix64((uint64_t)o->seed ^ mix64((uint64_t)k * 65536 + (uint64_t)a)) + (uint64_t)d->rank * 0x9e3779b97f4a7c15ULL;
        float mean = t5_forward(m, &run->bufs[a].b, 1, seed);
        loss_sum += (double)mean * m->num_counted;
        t5_backward(m, &run->bufs[a].b, 1, 1.0f / (float)total);
    }
    dist_sum_f32(d, t5_trainable_grads(m), t5_num_trainable(m));
    dist_sum_f64(d, &loss_sum, 1);
    r.loss = total > 0 ? (float)(loss_sum / (double)total) : NAN;
    r.grad_norm = t5_grad_norm(m);
    LrSchedule sched = run_schedule(o, run);
    r.lr = (float)(o->lr * lr_multiplier(&sched, k));
    if (!isfinite(r.loss) || !isfinite(r.grad_norm)) { r.skipped = 1; return r; } // a bad step never reaches the weights
    t5_clip_grads(m, r.grad_norm, o->clip);
    AdamW opt = { o->lr, o->beta1, o->beta2, o->adam_eps, o->weight_decay, o->decay_norms };
    t5_update(m, &opt, r.lr);
    return r;
}

// mean loss over the validation file (or its first eval_batches batches), dropout off
static double evaluate(T5* m, const Options* o, Run* run, long long* tokens) {
    DataLoader* v = &run->val;
    dataloader_seek(v, 0, 0);
    long long nb = o->eval_batches ? o->eval_batches : v->num_batches, counted = 0;
    if (nb > v->num_batches) nb = v->num_batches;
    double sum[2] = {0.0, 0.0}; // loss sum, counted tokens; over this rank's slices, then all ranks
    for (long long i = 0; i < nb; i++) {
        T5Batch* b = dataloader_next(v, &run->val_buf);
        if (b->B == 0 || t5_check_batch(m, b)) continue;
        float mean = t5_forward(m, b, 0, 0);
        sum[0] += (double)mean * m->num_counted;
        sum[1] += m->num_counted;
    }
    dist_sum_f64(run->dist, sum, 2);
    counted = (long long)sum[1];
    *tokens = counted;
    return counted ? sum[0] / (double)counted : NAN;
}

// ROUGE of greedy summaries of the --eval-rouge validation examples (rank 0; 0 = fine, -1 = failed)
static int eval_rouge(T5* m, const Options* o, Run* run, EvalResult* r) {
    char err[1024];
    EvalConfig c = eval_config(o, 0);
    c.gen.num_beams = 1;
    if (eval_generate(m, &run->tok, &run->rouge_set, &c, "rouge", r, err, sizeof(err)) == 0) return 0;
    fprintf(stderr, "warning: validation ROUGE failed: %s\n", err);
    return -1;
}

static void log_eval(T5* m, const Options* o, Run* run) {
    double t0 = now_ms();
    long long tokens;
    double loss = evaluate(m, o, run, &tokens);
    EvalResult r = {0};
    int rouge = run->has_rouge && run->dist->rank == 0 && eval_rouge(m, o, run, &r) == 0;
    printf("eval step %lld | val loss %.6f | %lld target tokens", run->step, loss, tokens);
    if (rouge) printf(" | ROUGE-1/2/L/Lsum %.2f/%.2f/%.2f/%.2f on %lld", 100 * r.rouge.m[ROUGE_1].fmeasure, 100 * r.rouge.m[ROUGE_2].fmeasure,
                      100 * r.rouge.m[ROUGE_L].fmeasure, 100 * r.rouge.m[ROUGE_LSUM].fmeasure, (long long)r.n);
    printf(" | %.1f s\n", (now_ms() - t0) / 1e3);
    if (run->metrics) {
        fprintf(run->metrics, "{\"type\": \"eval\", \"step\": %lld", run->step);
        json_num(run->metrics, "val_loss", loss);
        for (int k = 0; rouge && k < ROUGE_NUM_METRICS; k++) json_num(run->metrics, ROUGE_NAMES[k], 100 * r.rouge.m[k].fmeasure);
        if (rouge) json_num(run->metrics, "bleu", r.bleu.score);
        fprintf(run->metrics, ", \"tokens\": %lld}\n", tokens);
        fflush(run->metrics);
    }
    eval_result_free(&r);
}

// --eval-rouge: the validation split's references (VAL.bin → VAL_refs.jsonl) and the tokenizer
static int open_rouge(Run* run, const Options* o) {
    char err[1024], prefix[4400];
    snprintf(prefix, sizeof(prefix), "%s", o->val_file);
    size_t l = strlen(prefix);
    if (l > 4 && strcmp(prefix + l - 4, ".bin") == 0) prefix[l - 4] = 0;
    if (evalset_open(&run->rouge_set, prefix, o->eval_rouge, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    if (load_tokenizer(&run->tok, o)) { evalset_free(&run->rouge_set); return -1; }
    run->has_rouge = 1;
    return 0;
}

static void log_step(const Run* run, const StepResult* r, long long k, double ms, double avg_ms, long long epoch) {
    double eta = avg_ms * (double)(run->total_steps - k - 1) / 1e3;
    printf("step %lld/%lld | loss %.6f | lr %.4e | grad norm %.4f | %.1f ms | %.0f tok/s | eta %dm%02ds%s\n", k + 1,
           run->total_steps, (double)r->loss, (double)r->lr, (double)r->grad_norm, ms, r->tokens / (ms / 1e3),
           (int)(eta / 60), (int)eta % 60, r->skipped ? " | SKIPPED: non-finite loss or gradient norm" : "");
    fflush(stdout);
    if (!run->metrics) return;
    FILE* f = run->metrics;
    fprintf(f, "{\"type\": \"train\", \"step\": %lld, \"epoch\": %lld", k + 1, epoch);
    json_num(f, "loss", r->loss); json_num(f, "lr", r->lr); json_num(f, "grad_norm", r->grad_norm);
    json_num(f, "ms", ms); json_num(f, "tokens_per_s", r->tokens / (ms / 1e3));
    fprintf(f, ", \"tokens\": %lld, \"skipped\": %d}\n", r->tokens, r->skipped);
    fflush(f);
}

static CkptTrainState train_state(const Options* o, const Run* run) {
    return (CkptTrainState){ o->seed, run->step, run->train.epoch, run->train.batch, o->batch_size, o->grad_accum, run->dist->size };
}

static int open_loader(DataLoader* dl, const char* path, const Options* o, const T5* m, const Dist* d, int bs, int training) {
    char err[1024];
    LoaderConfig c = { bs, d->size, d->rank, training ? o->shuffle : 0, training ? o->bucket : 1, 64, o->max_src_len, o->max_tgt_len,
                       m->config.pad_id, m->config.decoder_start_id, (uint64_t)o->seed, o->ladder[0], o->ladder[1] };
    if (dataloader_init(dl, path, &c, err, sizeof(err)) ||
        examples_check_vocab(&dl->data, m->config.vocab_size, path, err, sizeof(err))) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    return 0;
}

// a resumed run continues with its checkpoint's data position (llmc/rundir.h ckpt_check_geometry)
static int resume_data(Run* run, const Options* o, const CkptTrainState* ts, const char* from) {
    if (ckpt_check_geometry(ts, o->batch_size, run->dist->size, o->grad_accum, o->seed, from)) return -1;
    if (dataloader_seek(&run->train, ts->epoch, ts->batch)) {
        fprintf(stderr, "error: %s: data position (epoch %lld, batch %lld) does not fit %s\n", from,
                (long long)ts->epoch, (long long)ts->batch, o->train_file);
        return -1;
    }
    return 0;
}

static int run_open(Run* run, T5* m, const Options* o, const Dist* d, const CkptTrainState* resumed, const char* from) {
    memset(run, 0, sizeof(*run));
    run->dist = d;
    if (open_loader(&run->train, o->train_file, o, m, d, o->batch_size, 1)) return -1;
    run->has_val = o->val_file != NULL;
    if (run->has_val && open_loader(&run->val, o->val_file, o, m, d, o->eval_batch_size ? o->eval_batch_size : o->batch_size, 0)) return -1;
    long long per_epoch = (run->train.num_batches + o->grad_accum - 1) / o->grad_accum;
    // --epochs is read as a float: 0.05f is 0.0500000007, so 40 batches would give 2.0000000298 steps;
    // a hundredth of a step is noise, not a step
    run->total_steps = o->steps ? o->steps : (long long)ceil((double)o->epochs * (double)per_epoch - 0.01);
    if (run->total_steps < 1) run->total_steps = 1;
    printf("train file: %lld examples, %lld batches of %d x %d ranks per epoch, %lld steps in all\n", (long long)run->train.data.n,
           (long long)run->train.num_batches, o->batch_size, d->size, run->total_steps);
    if (run->has_val) printf("val file: %lld examples\n", (long long)run->val.data.n);
    if (o->eval_rouge && d->rank == 0 && open_rouge(run, o)) return -1;
    if (resumed && resume_data(run, o, resumed, from)) return -1;
    run->step = resumed ? resumed->run_step : 0;
    run->bufs = (BatchBuf*)callocCheck((size_t)o->grad_accum, sizeof(BatchBuf));
    if (o->data_log) {
        char path[4400];
        snprintf(path, sizeof(path), "%s.rank%d", o->data_log, d->rank);
        if (!(run->data_log = fopen(path, resumed ? "a" : "w"))) { fprintf(stderr, "error: %s: cannot open for writing\n", path); return -1; }
    }
    if (o->out_dir && d->rank == 0 && // rank 0 writes the run directory
        !(run->metrics = metrics_start(o->out_dir, resumed != NULL, run->step, run->total_steps, t5_num_params(m),
                                       t5_num_trainable(m)))) return -1;
    return 0;
}

static void run_close(Run* run, const Options* o) {
    dataloader_free(&run->train);
    if (run->has_val) dataloader_free(&run->val);
    if (run->bufs) for (int a = 0; a < o->grad_accum; a++) batch_free(&run->bufs[a]);
    free(run->bufs);
    batch_free(&run->val_buf);
    if (run->metrics) fclose(run->metrics);
    if (run->data_log) fclose(run->data_log);
    if (run->has_rouge) { evalset_free(&run->rouge_set); spm_free(&run->tok); }
}

// the step loop; returns 0, -1 on error, or the signal number that stopped it
static int train_loop(T5* m, const Options* o, Run* run) {
    const Dist* d = run->dist;
    double ms_sum = 0.0;
    int timed = 0, skipped = 0, in_a_row = 0;
    for (long long k = run->step; k < run->total_steps; k++) {
        double t0 = now_ms();
        long long epoch = run->train.epoch;
        StepResult r = train_step(m, o, run, k);
        if (r.error) { fprintf(stderr, "error: %s (rank %d): %s\n", o->train_file, d->rank, r.error); return -1; }
        double ms = now_ms() - t0;
        ms_sum += ms; timed++;
        skipped += r.skipped;
        in_a_row = r.skipped ? in_a_row + 1 : 0;
        run->step = k + 1;
        log_step(run, &r, k, ms, ms_sum / timed, epoch);
        if (in_a_row >= o->max_skips) { // the weights never saw these steps; the data or the model is broken
            fprintf(stderr, "error: %d consecutive steps had a non-finite loss or gradient norm (last: step %lld); stopping "
                    "(--max-skips)\n", in_a_row, k + 1);
            return -1;
        }
        int last = k + 1 == run->total_steps;
        if (run->has_val && o->eval_every && (k + 1) % o->eval_every == 0 && !last) log_eval(m, o, run);
        if (o->checkpoint_every && (k + 1) % o->checkpoint_every == 0 && !last) {
            CkptTrainState ts = train_state(o, run);
            int bad = d->rank == 0 && ckpt_write_run(m, o->out_dir, &ts, o->keep_checkpoints);
            if (dist_max_int(d, bad)) return -1;
        }
        int sig = dist_max_int(d, (int)g_stop_signal); // every rank stops after the same step
        if (sig) return sig;
    }
    if (skipped) printf("%d step(s) skipped for non-finite values\n", skipped);
    return 0;
}

// after the last step (or a stop signal): the final evaluation and checkpoint, and the log's last record
static int train_finish(T5* m, const Options* o, Run* run, int rc) {
    printf("padding: %.1f%% of the training batch tokens; peak memory %.0f MiB (resident)\n",
           100.0 * dataloader_padding_fraction(&run->train), peak_rss_mib());
    if (rc > 0) printf("stopped by signal %d after step %lld\n", rc, run->step);
    if (rc == 0 && run->has_val) log_eval(m, o, run);
    if (rc >= 0 && o->out_dir) {
        CkptTrainState ts = train_state(o, run);
        int bad = run->dist->rank == 0 && ckpt_write_run(m, o->out_dir, &ts, o->keep_checkpoints);
        if (dist_max_int(run->dist, bad)) rc = -1;
        else if (rc > 0) printf("resume with the same command and --resume latest\n");
    }
    metrics_end(run->metrics, rc == 0, run->step, dataloader_padding_fraction(&run->train), peak_rss_mib(), "resident");
    return rc;
}

static int train(T5* m, const Options* o, const Dist* d, const CkptTrainState* resumed, const char* from) {
    Run run;
    int rc = dist_max_int(d, run_open(&run, m, o, d, resumed, from) != 0) ? -1 : 0; // all ranks or none
    if (rc == 0) {
        signal(SIGINT, on_stop_signal);
        signal(SIGTERM, on_stop_signal);
        rc = train_finish(m, o, &run, train_loop(m, o, &run));
    }
    run_close(&run, o);
    return rc;
}

// ----------------------------------------------------------------------------
// the evaluation and summarize commands

static void eval_path(const Options* o, const char* file, char* buf, size_t len) {
    const char* dir = o->eval_out ? o->eval_out : (o->out_dir ? NULL : "out/eval");
    if (dir) snprintf(buf, len, "%s/%s", dir, file);
    else snprintf(buf, len, "%s/eval/%s", o->out_dir, file);
}

// one model over the split: generations{tag}.jsonl and scores{tag}.json in the eval directory
static int eval_model(T5* m, const Options* o, const SpmModel* tok, const EvalSet* s, ReportRow* w) {
    char err[1024], file[256], path[4400], label[32];
    EvalConfig c = eval_config(o, 1);
    snprintf(label, sizeof(label), "%-14s", KIND_NAMES[w->kind]);
    if (eval_generate(m, tok, s, &c, label, &w->r, err, sizeof(err))) {
        fprintf(stderr, "error: %s: %s\n", w->spec, err);
        return -1;
    }
    snprintf(file, sizeof(file), "generations%s.jsonl", w->tag);
    eval_path(o, file, path, sizeof(path));
    int rc = write_generations(path, s, &w->r, err, sizeof(err));
    snprintf(file, sizeof(file), "scores%s.json", w->tag);
    eval_path(o, file, path, sizeof(path));
    if (rc == 0) rc = write_scores_json(path, w, err, sizeof(err));
    if (rc) fprintf(stderr, "error: %s\n", err);
    return rc;
}

// the run directory a model given as SPEC (+ an adapter DIR) came from: the adapter's run, else the
// model's (llmc/rundir.h rundir_of); NULL for a preset alone or a model outside any run directory
static const char* spec_run_dir(const char* spec, const char* adapter, char* buf, size_t n) {
    const char* path = adapter ? adapter : model_source(spec) != SRC_PRESET ? spec : NULL;
    return path && rundir_of(path, buf, n) == 0 ? buf : NULL;
}

// what a row's model is, from what is known: its run's log in run_dir (NULL: none); `own` = the model's
// trainable count when it is known without the log (the attached adapter's size, or every weight of a
// model this process fully fine-tuned), else -1; `adapter` = an adapter is attached. Kind: an adapter, or a
// run that trained fewer weights than the model has (a merged LoRA model), is LoRA; a run that trained
// them all, or a full fine-tune here, full fine-tune; a run directory that does not say, "fine-tuned"; no
// run directory at all (a model evaluated as it is, e.g. a hub checkpoint), just "model".
static void describe_row(ReportRow* w, const char* run_dir, long long own, int adapter) {
    char log[4500];
    w->info = run_info_unknown();
    w->run[0] = '\0';
    if (w->kind == KIND_ZERO_SHOT) { w->info.trainable = 0; return; }
    snprintf(log, sizeof(log), "%s/metrics.jsonl", run_dir ? run_dir : "");
    if (run_dir && metrics_run_info(log, &w->info) == 0) {
        snprintf(w->run, sizeof(w->run), "%s", run_dir);
        if (w->info.bad_lines) fprintf(stderr, "warning: %s: %lld line(s) that are not JSON records skipped\n", log, w->info.bad_lines);
    }
    const RunInfo* i = &w->info;
    if (i->trainable < 0) w->info.trainable = own;
    w->kind = adapter ? KIND_LORA
            : i->trainable > 0 && i->params > 0 ? (i->trainable < i->params ? KIND_LORA : KIND_FULL)
            : own >= 0 ? KIND_FULL : w->run[0] ? KIND_TUNED : KIND_MODEL;
}

// describe_row for a model m: its adapter (if any) and whether this process trained it
static void describe_model_row(ReportRow* w, const T5* m, const char* run_dir, int trained_here) {
    describe_row(w, run_dir, m->lora.r || trained_here ? (long long)t5_num_trainable(m) : -1, m->lora.r > 0);
}

// a model besides --model (the baseline, the compare model): loaded, described, run over the split, freed
static int eval_other(const Options* o, const SpmModel* tok, const EvalSet* s, ReportRow* w) {
    T5 b;
    char dir[4400];
    if (load_adapted_model(&b, o, w->spec, w->adapter)) return -1;
    describe_model_row(w, &b, w->kind == KIND_ZERO_SHOT ? NULL : spec_run_dir(w->spec, w->adapter, dir, sizeof(dir)), 0);
    int rc = eval_model(&b, o, tok, s, w);
    t5_free(&b);
    return rc;
}

// the rows in the report's order (zero-shot, full fine-tune, LoRA; stable), each labelled with its kind,
// and the compare model's with "(compare)" after it when another row has the same kind
static void order_rows(ReportRow* rows, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && kind_rank(rows[j].kind) < kind_rank(rows[j - 1].kind); j--) {
            ReportRow t = rows[j]; rows[j] = rows[j - 1]; rows[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        int twin = 0;
        for (int j = 0; j < n; j++) twin |= j != i && rows[j].kind == rows[i].kind;
        snprintf(rows[i].label, sizeof(rows[i].label), "%s%s", KIND_NAMES[rows[i].kind],
                 twin && strcmp(rows[i].tag, "_compare") == 0 ? " (compare)" : "");
    }
}

// the score table on stdout and, with two models or more, comparison.txt / comparison.md
static int report(const Options* o, const EvalSet* s, ReportRow* rows, int n) {
    char err[1024], path[4400];
    order_rows(rows, n);
    print_scores_header(stdout, 0);
    for (int k = 0; k < n; k++) print_scores_row(stdout, &rows[k], 0);
    print_legend(stdout, 0, rows, n);
    eval_path(o, "", path, sizeof(path));
    printf("wrote generations and scores to %s\n", path);
    if (n < 2) return 0;
    if (write_comparison_files(path, s, rows, n, o->compare_examples, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    printf("wrote the side-by-side comparison to %scomparison.txt and comparison.md\n", path);
    return 0;
}

// a model the evaluation loads later names something there (a typo shows before any training or summary)
static int check_model_spec(const char* flag, const char* spec, const char* adapter) {
    T5Config c;
    struct stat st;
    if (spec && model_source(spec) == SRC_PRESET && t5_config_preset(&c, spec)) {
        fprintf(stderr, "error: %s %s is not a directory, a file, or a preset\n", flag, spec);
        return -1;
    }
    if (!adapter || (stat(adapter, &st) == 0 && S_ISDIR(st.st_mode))) return 0;
    fprintf(stderr, "error: --compare-lora-adapter %s: not a directory (a peft adapter: adapter_config.json + "
            "adapter_model.safetensors)\n", adapter);
    return -1;
}

// --eval-split's examples and references, checked against the model's vocabulary, and the tokenizer;
// the output directory is created first, so that a bad --eval-out shows before any summary is generated
static int open_eval_inputs(const T5* m, const Options* o, EvalSet* s, SpmModel* tok) {
    char err[1024] = "", out[4400];
    if (check_model_spec("--baseline-model", o->baseline_model, NULL) ||
        check_model_spec("--compare-model", o->compare_model, o->compare_lora_adapter)) return -1;
    eval_path(o, "generations.jsonl", out, sizeof(out));
    if (mkdir_parent(out, err, sizeof(err)) || evalset_open(s, o->eval_split, o->eval_limit, err, sizeof(err))) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    if (examples_check_vocab(&s->ex, m->config.vocab_size, o->eval_split, err, sizeof(err)) || load_tokenizer(tok, o)) {
        if (err[0]) fprintf(stderr, "error: %s\n", err);
        evalset_free(s);
        return -1;
    }
    return 0;
}

// before training: the evaluation that follows it can open its inputs (not only after hours of training)
static int check_eval_inputs(const T5* m, const Options* o) {
    EvalSet s;
    SpmModel tok;
    if (open_eval_inputs(m, o, &s, &tok)) return -1;
    evalset_free(&s);
    spm_free(&tok);
    return 0;
}

// summaries for --eval-split with the model (and --baseline-model, --compare-model), scores, and the
// comparison report. `name` is scores.json's "model": "fine-tuned" when this process trained m
static int run_eval(T5* m, const Options* o, const char* name) {
    char dir[4400];
    EvalSet s;
    SpmModel tok;
    if (open_eval_inputs(m, o, &s, &tok)) return -1;
    printf("evaluating on %s: %lld dialogues, %s, up to %d new tokens\n", o->eval_split, (long long)s.n,
           o->num_beams > 1 ? "beam search" : "greedy", o->max_new_tokens);
    ReportRow rows[3];
    int n = 0, rc = 0, trained = o->train_file != NULL;
    if (o->baseline_model) {
        rows[n] = (ReportRow){ .spec = o->baseline_model, .name = o->baseline_model, .tag = "_baseline", .kind = KIND_ZERO_SHOT };
        rc = eval_other(o, &tok, &s, &rows[n++]);
    }
    if (rc == 0) { // a model trained here: its run is --out-dir, and --lora-adapter was only where it started
        ReportRow* w = &rows[n++];
        *w = (ReportRow){ .spec = o->model, .adapter = trained ? NULL : o->lora_adapter, .name = name, .tag = "", .kind = KIND_TUNED,
                          .trained = trained };
        describe_model_row(w, m, trained ? o->out_dir : spec_run_dir(o->model, o->lora_adapter, dir, sizeof(dir)), trained);
        rc = eval_model(m, o, &tok, &s, w);
    }
    if (rc == 0 && o->compare_model) {
        rows[n] = (ReportRow){ .spec = o->compare_model, .adapter = o->compare_lora_adapter, .name = o->compare_model,
                               .tag = "_compare", .kind = KIND_TUNED };
        rc = eval_other(o, &tok, &s, &rows[n++]);
    }
    if (rc == 0) rc = report(o, &s, rows, n);
    for (int k = 0; k < n; k++) eval_result_free(&rows[k].r);
    spm_free(&tok);
    evalset_free(&s);
    return rc;
}

// the whole of FILE (or stdin) as one dialogue → its summary on stdout
static int run_summarize(T5* m, const Options* o) {
    char err[1024];
    FILE* f = strcmp(o->summarize, "-") == 0 ? stdin : fopen(o->summarize, "rb");
    if (!f) { fprintf(stderr, "error: %s: cannot open\n", o->summarize); return -1; }
    size_t len = 0, cap = 1 << 16;
    char* text = (char*)mallocCheck(cap);
    for (size_t got; (got = fread(text + len, 1, cap - 1 - len, f)) > 0; ) {
        len += got;
        if (len + 1 == cap) text = (char*)reallocCheck(text, cap *= 2);
    }
    if (f != stdin) fclose(f);
    text[len] = 0;
    int blank = 1;
    for (size_t i = 0; i < len && blank; i++) blank = text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r';
    if (blank || strlen(text) != len) {
        fprintf(stderr, "error: %s: %s\n", o->summarize, blank ? "empty dialogue" : "the text contains a NUL byte");
        free(text);
        return -1;
    }
    SpmModel tok;
    if (load_tokenizer(&tok, o)) { free(text); return -1; }
    EvalConfig c = eval_config(o, 0);
    char* summary = summarize_text(m, &tok, o->prompt, text, &c, err, sizeof(err));
    if (summary) printf("%s\n", summary);
    else fprintf(stderr, "error: %s\n", err);
    free(summary); free(text);
    spm_free(&tok);
    return summary ? 0 : -1;
}

// synthetic full-length batch, for timing forward + backward
static int bench(T5* m, const Options* o) {
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

// the HF directory this run writes of its model (--save-hf, else OUT/model), or NULL; under LoRA the merged
// model goes to --merge-lora and --save-hf instead (save_lora_outputs), and OUT/model is not written
static const char* hf_out_dir(const Options* o, char* buf, size_t n) {
    if (o->save_hf) return o->save_hf;
    if (!o->out_dir) return NULL;
    snprintf(buf, n, "%s/model", o->out_dir);
    return buf;
}

// what the HF directory holds besides the weights (llmc/hub.h); buffers for the paths it points to.
// `evaluated`: the run's evaluation has written its scores (the card then carries them)
typedef struct { char tok[4400], scores[4400], baseline[4400], lora[256]; } HubPaths;

static HubSave hub_save_of(const T5* m, const Options* o, int ranks, int evaluated, HubPaths* p) {
    HubSave s = { .weights = o->hf_weights, .spm_path = tokenizer_path(o, p->tok, sizeof(p->tok)) };
    s.gen = (HubGeneration){ o->num_beams, o->max_new_tokens, o->no_repeat_ngram, o->early_stopping, o->length_penalty };
    eval_path(o, "scores.json", p->scores, sizeof(p->scores));
    eval_path(o, "scores_baseline.json", p->baseline, sizeof(p->baseline));
    p->lora[0] = 0;
    if (m->lora.r) snprintf(p->lora, sizeof(p->lora), "LoRA rank %d, alpha %g, merged into the weights", m->lora.r, (double)m->lora.alpha);
    s.card = (HubCard){ .engine = "train_t5 (CPU, fp32)", .base_model = o->model,
                        .random_init = model_source(o->model) == SRC_PRESET, .train_file = o->train_file,
                        .steps = (long long)m->step, .batch_size = o->batch_size, .grad_accum = o->grad_accum, .ranks = ranks,
                        .warmup = o->warmup, .max_src_len = o->max_src_len, .max_tgt_len = o->max_tgt_len, .lr = o->lr,
                        .weight_decay = o->weight_decay, .dropout = m->config.dropout, .clip = o->clip,
                        .schedule = lr_schedule_name(o->schedule), .seed = o->seed,
                        .eval_split = evaluated ? o->eval_split : NULL, .scores_json = p->scores,
                        .baseline_json = o->baseline_model ? p->baseline : NULL, .lora = m->lora.r ? p->lora : NULL };
    return s;
}

// one hub-ready HF directory of the weights `params` (the model's own, or merged with its adapter)
static int save_hub_dir(const T5* m, const float* params, const char* dir, const Options* o, int ranks) {
    char err[1024];
    HubPaths paths;
    HubSave s = hub_save_of(m, o, ranks, 0, &paths);
    int tokjson;
    if (hub_save_dir(dir, &m->config, params, &s, &tokjson, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    printf("saved HF directory %s (%s, %s)\n", dir, o->hf_weights.dtype == ST_BF16 ? "bf16" : "fp32",
           tokjson ? "with tokenizer.json" : "no tokenizer.json at hand: AutoTokenizer converts spiece.model, "
           "which needs pip install sentencepiece protobuf");
    const char* note = hf_head_4x_note(&m->config);
    if (note) printf("note: %s\n", note);
    return 0;
}

// under LoRA: the adapter (--save-lora, else OUT/adapter) as peft writes it, and the merged model as
// an HF directory where --merge-lora or --save-hf asks for one (OUT/model is not written: the base
// is --model, unchanged)
static int save_lora_outputs(T5* m, const Options* o, int ranks) {
    char err[1024], dir[4400];
    const char* ad = o->save_lora;
    if (!ad && o->out_dir) { snprintf(dir, sizeof(dir), "%s/adapter", o->out_dir); ad = dir; }
    if (ad) {
        if (lora_save_dir(ad, &m->lora, &m->layout, &m->lora_layout, m->lora_memory, o->model, err, sizeof(err))) {
            fprintf(stderr, "error: %s\n", err); return -1;
        }
        printf("saved LoRA adapter %s (peft format)\n", ad);
    }
    const char* dirs[2] = { o->merge_lora, o->save_hf };
    for (int k = 0; k < 2; k++) {
        if (!dirs[k]) continue;
        float* saved = t5_lora_merge(m);
        int rc = save_hub_dir(m, m->params_memory, dirs[k], o, ranks);
        t5_lora_unmerge(m, saved);
        if (rc) return -1;
        printf("(the merged model: base + LoRA)\n");
    }
    return 0;
}

static int save_outputs(T5* m, const Options* o, int ranks) {
    char err[1024], dir[4400];
    if (m->lora.r && save_lora_outputs(m, o, ranks)) return -1;
    const char* hf = m->lora.r ? NULL : hf_out_dir(o, dir, sizeof(dir));
    if (hf && save_hub_dir(m, m->params_memory, hf, o, ranks)) return -1;
    if (o->save_ckpt) {
        if (t5_save_checkpoint(m, o->save_ckpt, NULL, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        printf("saved checkpoint %s\n", o->save_ckpt);
    }
    return 0;
}

// after the evaluation: the model cards of this run's HF directories get its scores
static int update_card(const T5* m, const Options* o, int ranks) {
    char err[1024], dir[4400];
    const char* dirs[2] = { m->lora.r ? o->merge_lora : hf_out_dir(o, dir, sizeof(dir)), m->lora.r ? o->save_hf : NULL };
    for (int k = 0; k < 2; k++) {
        if (!dirs[k]) continue;
        HubPaths paths;
        HubSave s = hub_save_of(m, o, ranks, 1, &paths);
        if (hub_write_card(dirs[k], &s.card, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        printf("model card %s/README.md: the evaluation's scores added\n", dirs[k]);
    }
    return 0;
}

// the model of this run: a resumed checkpoint, or --model; *resumed is set when resuming
static int setup_model(T5* m, const Options* o, CkptTrainState* ts, int* resumed, char* from, size_t fromlen) {
    *resumed = 0;
    snprintf(from, fromlen, "%s", o->model);
    int preset = model_source(o->model) == SRC_PRESET;
    if (dims_given(&o->dims) && !preset && !(o->baseline_model && model_source(o->baseline_model) == SRC_PRESET)) {
        fprintf(stderr, "error: the dimension flags (--d-model, ...) shape a preset, and neither --model nor --baseline-model "
                "is one (%s brings its own shape)\n", o->model);
        return -1;
    }
    if (o->resume) {
        if (resume_model(m, o, ts, from, fromlen)) return -1;
        T5Config want; // explicit dimensions must describe the checkpoint's model, not be silently dropped
        if (preset && dims_given(&o->dims) && (config_from_preset(o, o->model, &want) || !same_shape(&want, &m->config))) {
            const T5Config* c = &m->config;
            fprintf(stderr, "error: %s holds a V=%d C=%d H=%d D=%d F=%d L=%d/%d model, not the one --model %s and the dimension "
                    "flags describe\n", from, c->vocab_size, c->d_model, c->num_heads, c->d_kv, c->d_ff, c->num_layers,
                    c->num_decoder_layers, o->model);
            t5_free(m);
            return -1;
        }
        char msg[5000];
        LoraFlags f = lora_flags(o);
        const char* mismatch = lora_flags_resume(&f, m->lora.r, from, msg, sizeof(msg));
        if (mismatch) {
            fprintf(stderr, "error: %s\n", mismatch);
            t5_free(m);
            return -1;
        }
        if (o->dropout >= 0.0f) m->config.dropout = o->dropout;
        *resumed = 1;
        printf("resuming from %s at step %lld (epoch %lld, batch %lld)\n", from, (long long)ts->run_step, (long long)ts->epoch, (long long)ts->batch);
        return 0;
    }
    if (o->out_dir && o->train_file && check_fresh_run_dir(o->out_dir)) return -1;
    if (load_model(m, o, o->model)) return -1;
    if (lora_setup(m, o) == 0) return 0;
    t5_free(m);
    return -1;
}

// rank 0 of a training run holds its run directory's lock until the process ends (llmc/rundir.h)
static int lock_run_dir(const Options* o, const Dist* d) {
    char err[1024];
    if (!o->train_file || !o->out_dir || d->rank != 0 || rundir_lock(o->out_dir, err, sizeof(err)) == 0) return 0;
    fprintf(stderr, "error: %s\n", err);
    return -1;
}

#ifndef TESTING
// setup → train (or bench) → outputs; returns 0, -1 on error, or the signal that stopped training
static int run_program(const Options* o, const Dist* d) {
    T5 m;
    CkptTrainState ts;
    int resumed;
    char from[4400];
    if (dist_max_int(d, lock_run_dir(o, d) != 0)) return -1; // before anything reads or cleans the directory
    if (dist_max_int(d, setup_model(&m, o, &ts, &resumed, from, sizeof(from)) != 0)) return -1; // all ranks or none
    if (dist_max_int(d, o->train_file && o->eval_split && !o->bench && check_eval_inputs(&m, o) != 0)) { t5_free(&m); return -1; }
    if (o->out_dir && d->rank == 0) ckpt_remove_stale(o->out_dir);
    if (o->summarize) { // stdout carries the summary alone
        int rc = run_summarize(&m, o);
        t5_free(&m);
        return rc;
    }
    print_config(&m, o, from);
    int rc = 0;
    if (o->bench) rc = bench(&m, o);
    else if (o->train_file) rc = train(&m, o, d, resumed ? &ts : NULL, from);
    if (rc == 0 && !o->bench && d->rank == 0) rc = save_outputs(&m, o, d->size);
    if (rc == 0 && o->eval_split && d->rank == 0) rc = run_eval(&m, o, o->train_file ? "fine-tuned" : from);
    if (rc == 0 && o->eval_split && !o->bench && d->rank == 0) rc = update_card(&m, o, d->size);
    t5_free(&m);
    return rc;
}

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

int main(int argc, char** argv) {
    Dist d;
    if (dist_init(&d, &argc, &argv)) return EXIT_FAILURE;
    share_cores(&d);
    enable_flush_to_zero(); // after the thread count is set: every thread of the team gets FTZ/DAZ
    if (d.rank > 0 && !freopen("/dev/null", "w", stdout)) return EXIT_FAILURE; // rank 0 speaks for all
    Options o = options_default();
    int rc = parse_args(argc, argv, &o);
    if (rc == 0 && o.bench == 0 && o.train_file == NULL && !o.save_hf && !o.save_ckpt && !o.eval_split && !o.summarize &&
        !o.save_lora && !o.merge_lora) {
        fprintf(stderr, "error: nothing to do: give --train-file, --eval-split, --summarize, --bench, --save-hf or --save-checkpoint\n"
                "  (to fine-tune on DialogSum: python3 prepro_dialogsum.py, then ./train_t5 --model DIR|PRESET --train-file "
                "out/dialogsum/train.bin; the README's first command, make dialogsum, runs the whole job)\n");
        usage();
        rc = -1;
    }
    if (rc == 0) {
        if (d.size > 1) printf("data parallel: %d ranks (MPI)\n", d.size);
        rc = run_program(&o, &d);
    }
    dist_finalize(&d);
    if (rc > 0) return 128 + rc; // stopped by a signal, checkpoint written
    return rc ? EXIT_FAILURE : EXIT_SUCCESS;
}
#endif
