// t5_cpu.c — the CPU reference engine behind llmc/t5_cpu.h: train_t5.c compiled as a library
// (TESTING drops its main), wrapped in a few extern functions for the CUDA programs.
#define TESTING
#include "../train_t5.c"   // defines: T5, t5_forward, t5_backward, t5_update, t5_init_random, ...
#include "t5_cpu.h"        // declares: the functions below

struct T5Cpu { T5 m; };

void t5cpu_init_random(const T5Config* c, float* params, uint64_t seed) {
    T5 m;
    t5_build_from_config(&m, c);
    t5_init_random(&m, seed);
    memcpy(params, m.params_memory, m.layout.total * sizeof(float));
    t5_free(&m);
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

const char* t5cpu_check_batch(const T5Config* c, const T5Batch* b) {
    T5 m;
    memset(&m, 0, sizeof(m));
    m.config = *c;
    return t5_check_batch(&m, b);
}

int t5cpu_parse_int(const char* flag, const char* s, long long lo, long long hi, long long* out) {
    return parse_int(flag, s, lo, hi, out);
}

int t5cpu_parse_float(const char* flag, const char* s, double lo, double hi, float* out) {
    return parse_float(flag, s, lo, hi, out);
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

static GenConfig gen_config_of(const T5CpuGen* g) {
    GenConfig c = gen_config_default();
    c.max_new_tokens = g->max_new_tokens; c.num_beams = g->num_beams; c.no_repeat_ngram_size = g->no_repeat_ngram_size;
    c.length_penalty = g->length_penalty; c.early_stopping = g->early_stopping; c.eos_bias = g->eos_bias;
    return c;
}

T5CpuGen t5cpu_gen_default(void) {
    GenConfig c = gen_config_default();
    T5CpuGen g = { c.max_new_tokens, c.num_beams, c.no_repeat_ngram_size, c.length_penalty, c.early_stopping, c.eos_bias };
    return g;
}

int t5cpu_generate(T5Cpu* x, const int* const* src, const int* src_len, int B, const T5CpuGen* g, int* out, int* out_len,
                   char* err, size_t errlen) {
    GenConfig c = gen_config_of(g);
    return t5_generate(&x->m, src, src_len, B, &c, out, out_len, err, errlen);
}

int t5cpu_gen_check(const T5Config* c, const int* const* src, const int* src_len, int B, const T5CpuGen* g, char* err,
                    size_t errlen) {
    T5 m;
    memset(&m, 0, sizeof(m));
    m.config = *c;
    GenConfig gc = gen_config_of(g);
    return gen_check(&m, src, src_len, B, &gc, err, errlen);
}

struct T5CpuBeam { GenCache g; BeamState s; GenConfig cfg; T5Config c; };

T5CpuBeam* t5cpu_beam_create(const T5Config* c, int B, const T5CpuGen* g) {
    T5CpuBeam* x = (T5CpuBeam*)callocCheck(1, sizeof(T5CpuBeam));
    x->cfg = gen_config_of(g);
    x->c = *c;
    x->g.B = B; x->g.nb = g->num_beams; x->g.R = B * g->num_beams; // the search state's owner: no caches
    beam_build(&x->s, &x->g, c, g->max_new_tokens);
    return x;
}

void t5cpu_beam_free(T5CpuBeam* x) { gen_cache_free(&x->g); free(x); }
int t5cpu_beam_width(const T5CpuBeam* x) { return x->s.L; }
const int* t5cpu_beam_running(const T5CpuBeam* x) { return x->s.run_seq; }
const float* t5cpu_beam_scores(const T5CpuBeam* x) { return x->s.run_score; }

int t5cpu_beam_step(T5CpuBeam* x, const float* top_val, const int* top_idx, int cur_len, int* parent) {
    BeamState* s = &x->s;
    for (int b = 0; b < x->g.B; b++) { // the loop of gen_beam after its scores
        beam_candidates_given(s, &x->c, b, cur_len, top_val + (size_t)b * s->K, top_idx + (size_t)b * s->K);
        beam_next_running(s, b);
        beam_update_finished(s, &x->cfg, b, cur_len);
        beam_check_open(s, &x->cfg, b, cur_len + 1);
    }
    memcpy(parent, s->parent, (size_t)x->g.R * sizeof(int));
    return beam_go_on(s, &x->cfg, x->g.B);
}

void t5cpu_beam_result(const T5CpuBeam* x, int* out, int* out_len) {
    const BeamState* s = &x->s;
    int T = x->cfg.max_new_tokens;
    for (int b = 0; b < x->g.B; b++) { // gen_beam's result, laid out as t5_generate returns it
        const int* best = s->fin_seq + (size_t)b * s->nb * s->L;
        out_len[b] = s->fin_len[(size_t)b * s->nb];
        for (int j = 0; j < T; j++) out[(size_t)b * T + j] = j < out_len[b] ? best[1 + j] : x->c.pad_id;
    }
}

// ----------------------------------------------------------------------------
// evaluation

struct T5CpuEval { EvalSet set; SpmModel tok; EvalAccum acc; };

T5CpuEval* t5cpu_eval_open(const char* prefix, long long limit, const char* tokenizer, int vocab, char* err, size_t errlen) {
    T5CpuEval* e = (T5CpuEval*)callocCheck(1, sizeof(T5CpuEval));
    if (evalset_open(&e->set, prefix, limit, err, errlen)) { free(e); return NULL; }
    if (examples_check_vocab(&e->set.ex, vocab, prefix, err, errlen) || spm_load(&e->tok, tokenizer, err, errlen)) {
        evalset_free(&e->set);
        free(e);
        return NULL;
    }
    eval_accum_init(&e->acc, e->set.n);
    return e;
}

void t5cpu_eval_free(T5CpuEval* e) {
    eval_result_free(&e->acc.r);
    spm_free(&e->tok);
    evalset_free(&e->set);
    free(e);
}

long long t5cpu_eval_size(const T5CpuEval* e) { return e->set.n; }

void t5cpu_eval_sources(const T5CpuEval* e, long long lo, int B, int max_src, int eos, int* buf, int** rows, int* lens) {
    eval_sources(&e->set, lo, B, max_src, eos, buf, rows, lens);
}

int t5cpu_eval_add(T5CpuEval* e, long long i, const int* ids, int n, char* err, size_t errlen) {
    return eval_accum_add(&e->acc, &e->set, &e->tok, i, ids, n, err, errlen);
}

int t5cpu_eval_finish(T5CpuEval* e, const char* dir, const char* model, double seconds, char* err, size_t errlen) {
    EvalResult* r = &e->acc.r;
    if (r->n != e->set.n) { snprintf(err, errlen, "evaluation: %lld of %lld summaries given", (long long)r->n, (long long)e->set.n); return -1; }
    eval_accum_finish(&e->acc, seconds);
    char path[4400];
    snprintf(path, sizeof(path), "%s/generations.jsonl", dir);
    if (write_generations(path, &e->set, r, err, errlen)) return -1;
    // the report's row for the model (train_t5.c): its run's trainable count, step time and peak memory
    // when `model` lies in a run directory; the row borrows r, which e keeps
    ReportRow w = { .spec = model, .name = model, .tag = "", .kind = KIND_TUNED, .r = *r };
    describe_row(&w, spec_run_dir(model, NULL, path, sizeof(path)), -1, 0);
    order_rows(&w, 1);
    snprintf(path, sizeof(path), "%s/scores.json", dir);
    if (write_scores_json(path, &w, err, errlen)) return -1;
    print_scores_header(stdout, 0);
    print_scores_row(stdout, &w, 0);
    print_legend(stdout, 0, &w, 1);
    printf("wrote %s/generations.jsonl and %s/scores.json\n", dir, dir);
    return 0;
}
