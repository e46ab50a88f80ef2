// t5_cpu.c — the CPU reference engine behind llmc/t5_cpu.h: train_t5.c compiled as a library
// (TESTING drops its main), wrapped in a few extern functions for the CUDA programs.
#define TESTING
#include "../train_t5.c"   // defines: T5, t5_forward, t5_backward, t5_update, t5_init_random, ...
#include "t5_cpu.h"        // declares: the functions below

struct T5Cpu { T5 m; };

void t5cpu_init_random(const T5Config* c, float* params, uint64_t seed) {
    t5_init_params(c, params, seed);
}

T5Cpu* t5cpu_create(const T5Config* c, const float* params) {
    T5Cpu* x = (T5Cpu*)callocCheck(1, sizeof(T5Cpu));
    t5_build_from_config(&x->m, c);
    memcpy(x->m.params_memory, params, x->m.layout.total * sizeof(float));
    return x;
}

void t5cpu_free(T5Cpu* x) { t5_free(&x->m); free(x); }
size_t t5cpu_num_params(const T5Cpu* x) { return t5_num_params(&x->m); }
float* t5cpu_params(T5Cpu* x) { return x->m.params_memory; }
float* t5cpu_grads(T5Cpu* x) { return x->m.grads_memory; }
const float* t5cpu_logits(const T5Cpu* x) { return x->m.acts.logits; }
int t5cpu_num_counted(const T5Cpu* x) { return x->m.num_counted; }
float t5cpu_forward(T5Cpu* x, const T5Batch* b, int train, uint64_t seed) { return t5_forward(&x->m, b, train, seed); }
void t5cpu_zero_grad(T5Cpu* x) { t5_zero_grad(&x->m); }
void t5cpu_backward(T5Cpu* x, const T5Batch* b, int train, float loss_scale) { t5_backward(&x->m, b, train, loss_scale); }

float t5cpu_step(T5Cpu* x, float lr, float beta1, float beta2, float eps, float weight_decay, int decay_norms,
                 float max_norm) {
    float norm = t5_grad_norm(&x->m);
    t5_clip_grads(&x->m, norm, max_norm);
    AdamW o = { lr, beta1, beta2, eps, weight_decay, decay_norms };
    t5_update(&x->m, &o, lr);
    return norm;
}

void t5cpu_lora_attach(T5Cpu* x, const LoraConfig* c, const float* adapter) {
    T5Layout base;
    LoraLayout L;
    t5_layout(&x->m.config, &base);
    lora_layout(c, &base, x->m.config.gated, &L);
    float* copy = (float*)mallocCheck(L.total * sizeof(float) + 1);
    memcpy(copy, adapter, L.total * sizeof(float));
    t5_lora_attach(&x->m, c, copy, 0);
}

float* t5cpu_lora_params(T5Cpu* x) { return x->m.lora_memory; }
float* t5cpu_lora_grads(T5Cpu* x) { return x->m.lora_grads; }

// a T5 shell that holds only what lora_forward / lora_backward use: the LoRA scratch and a GEMM workspace
static T5 lora_shell(int r, int N, int IC, float p, uint64_t seed) {
    T5 m;
    memset(&m, 0, sizeof(m));
    m.acts.lora_x = (float*)mallocCheck((size_t)N * IC * sizeof(float) + 1);
    m.acts.lora_u = (float*)mallocCheck((size_t)N * r * sizeof(float) + 1);
    m.acts.lora_du = (float*)mallocCheck((size_t)N * r * sizeof(float) + 1);
    m.lora_drop = (Dropout){ p, seed };
    return m;
}

static void lora_shell_free(T5* m) {
    free(m->acts.lora_x); free(m->acts.lora_u); free(m->acts.lora_du);
    gemm_workspace_free(&m->gemm_ws);
}

void t5cpu_lora_forward(float* out, const float* inp, const float* A, const float* B, float s, int r, int N, int IC, int OC,
                        float p, uint64_t seed, uint32_t site) {
    T5 m = lora_shell(r, N, IC, p, seed);
    LoraView v = { A, B, NULL, NULL, s, r, m.lora_drop, site };
    lora_forward(&m, out, inp, &v, N, IC, OC);
    lora_shell_free(&m);
}

void t5cpu_lora_backward(float* dinp, float* dA, float* dB, const float* dout, const float* inp, const float* A,
                         const float* B, float s, int r, int N, int IC, int OC, float p, uint64_t seed, uint32_t site) {
    T5 m = lora_shell(r, N, IC, p, seed);
    LoraView v = { A, B, dA, dB, s, r, m.lora_drop, site };
    lora_backward(&m, dinp, dout, inp, &v, N, IC, OC);
    lora_shell_free(&m);
}

void t5cpu_rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) {
    rmsnorm_forward(out, rstd, inp, w, N, C, eps);
}

void t5cpu_rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                            const float* rstd, int N, int C) {
    rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
}

void t5cpu_ffn_act_forward(float* out, const float* h0, const float* h1, size_t n, T5Act a, float p, uint64_t seed,
                           uint32_t site) {
    Dropout d = { p, seed };
    ffn_act_forward(out, h0, h1, n, a, d, site);
}

void t5cpu_ffn_act_backward(float* dh0, float* dh1, const float* dout, const float* h0, const float* h1, size_t n,
                            T5Act a, float p, uint64_t seed, uint32_t site) {
    Dropout d = { p, seed };
    ffn_act_backward(dh0, dh1, dout, h0, h1, n, a, d, site);
}

void t5cpu_embedding_forward(float* out, const int* ids, const float* wte, int N, int C, float p, uint64_t seed,
                             uint32_t site) {
    Dropout d = { p, seed };
    embedding_forward(out, ids, wte, N, C, d, site);
}

void t5cpu_embedding_backward(float* dwte, const int* ids, const float* dout, int N, int C, float p, uint64_t seed,
                              uint32_t site) {
    Dropout d = { p, seed };
    embedding_backward(dwte, ids, dout, N, C, d, site);
}

double t5cpu_sum_squares(const float* g, size_t n) { return sum_squares(g, n); }

void t5cpu_linear(float* out, const float* inp, const float* w, int N, int IC, int OC) {
    matmul_rows_forward(out, inp, w, N, IC, OC);
}

void t5cpu_adamw(float* p, const float* g, float* m, float* v, size_t n, float beta1, float beta2, float eps, float decay,
                 float step_size, float bc2_sqrt) {
    AdamW o = { 0.0f, beta1, beta2, eps, 0.0f, 0 }; // lr and weight decay enter through step_size and decay
    adamw_tensor(p, g, m, v, n, &o, decay, step_size, bc2_sqrt);
}

int t5cpu_crossentropy(float* losses, const float* logits, const int* labels, int N, int V) {
    double sum;
    return crossentropy_forward(losses, &sum, logits, labels, N, V);
}

void t5cpu_crossentropy_backward(float* logits, const int* labels, int N, int V, float scale) {
    crossentropy_backward(logits, labels, N, V, scale);
}

static AttnSpec cpu_attn_spec(const T5CpuAttn* s) {
    AttnSpec a = { s->B, s->Tq, s->Tk, s->H, s->D, s->key_len, s->causal, s->relb, s->buckets, { s->p, s->seed }, s->site };
    return a;
}

void t5cpu_attention_forward(float* out, float* att, float* scratch, const float* q, const float* k, const float* v,
                             const T5CpuAttn* s) {
    GemmWorkspace ws = { 0 };
    AttnSpec a = cpu_attn_spec(s);
    attention_forward(&ws, out, att, scratch, q, k, v, &a);
    gemm_workspace_free(&ws);
}

void t5cpu_attention_backward(float* dq, float* dk, float* dv, float* dscore, float* drelb, const float* dout,
                              const float* q, const float* k, const float* v, const float* att, const T5CpuAttn* s) {
    GemmWorkspace ws = { 0 };
    AttnSpec a = cpu_attn_spec(s);
    attention_backward(&ws, dq, dk, dv, dscore, drelb, dout, q, k, v, att, &a);
    gemm_workspace_free(&ws);
}

// ----------------------------------------------------------------------------
// generation

int t5cpu_generate(T5Cpu* x, const int* const* src, const int* src_len, int B, const GenConfig* g, int* out, int* out_len,
                   char* err, size_t errlen) {
    return t5_generate(&x->m, src, src_len, B, g, out, out_len, err, errlen);
}
