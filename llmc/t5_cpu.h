// t5_cpu.h — the CPU reference engine (train_t5.c) as a small library for the CUDA programs:
// train_t5cu takes its random initialisation from it (same seed → same model on both engines) and
// test_t5cu compares the CUDA engine against it. Implemented by llmc/t5_cpu.c, a C translation unit
// that includes train_t5.c with TESTING defined; nothing of the engine is re-declared here.
#ifndef T5_CPU_H
#define T5_CPU_H

#include <stddef.h>        // defines: size_t
#include <stdint.h>        // defines: uint64_t
#include "t5.h"            // defines: T5Config
#include "dataloader.h"    // defines: T5Batch
#include "lora.h"          // defines: LoraConfig

#ifdef __cplusplus
extern "C" {
#endif

typedef struct T5Cpu T5Cpu;  // opaque: the CPU engine's model

// T5's own initialisation (train_t5.c t5_init_random) of a flat buffer in layout order
void t5cpu_init_random(const T5Config* c, float* params, uint64_t seed);

T5Cpu* t5cpu_create(const T5Config* c, const float* params);  // copies params (layout order)
void t5cpu_free(T5Cpu* m);
size_t t5cpu_num_params(const T5Cpu* m);
float* t5cpu_params(T5Cpu* m);
float* t5cpu_grads(T5Cpu* m);
const float* t5cpu_logits(const T5Cpu* m);      // (B·Tt, V) of the last forward (dlogits after backward)
int t5cpu_num_counted(const T5Cpu* m);

float t5cpu_forward(T5Cpu* m, const T5Batch* b, int train, uint64_t seed);
void t5cpu_zero_grad(T5Cpu* m);
void t5cpu_backward(T5Cpu* m, const T5Batch* b, int train, float loss_scale);
// clip to max_norm (0 = off) and one AdamW update at learning rate lr; returns the gradient norm
float t5cpu_step(T5Cpu* m, float lr, float beta1, float beta2, float eps, float weight_decay, int decay_norms,
                 float max_norm);

// LoRA (llmc/lora.h) on the CPU engine: attach config c with a copy of `adapter` (lora_layout's order); the
// base freezes (t5cpu_grads returns NULL from then on) and t5cpu_step updates the adapter alone
void t5cpu_lora_attach(T5Cpu* m, const LoraConfig* c, const float* adapter);
float* t5cpu_lora_params(T5Cpu* m);  // (lora_layout total) A and B
float* t5cpu_lora_grads(T5Cpu* m);

// the CPU engine's checks and command-line value parsers, shared by train_t5cu:
// a batch against the config (NULL or a message); a flag's value in [lo, hi] (0, or -1 after a message)
const char* t5cpu_check_batch(const T5Config* c, const T5Batch* b);
int t5cpu_parse_int(const char* flag, const char* s, long long lo, long long hi, long long* out);
int t5cpu_parse_float(const char* flag, const char* s, double lo, double hi, float* out);

// single layers of the CPU engine: the references of the kernel twins in dev/cuda/. Dropout is
// (p, seed, site) with the engine's semantics; p = 0 turns it off.
void t5cpu_rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps);
void t5cpu_rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                            const float* rstd, int N, int C);
void t5cpu_ffn_act_forward(float* out, const float* h0, const float* h1, size_t n, T5Act a, float p, uint64_t seed,
                           uint32_t site);
void t5cpu_ffn_act_backward(float* dh0, float* dh1, const float* dout, const float* h0, const float* h1, size_t n,
                            T5Act a, float p, uint64_t seed, uint32_t site);
// out (N, C) = dropout(wte[ids]); dwte[ids[t]] += dropout'(dout[t]) in token order
void t5cpu_embedding_forward(float* out, const int* ids, const float* wte, int N, int C, float p, uint64_t seed,
                             uint32_t site);
void t5cpu_embedding_backward(float* dwte, const int* ids, const float* dout, int N, int C, float p, uint64_t seed,
                              uint32_t site);
// out (N, OC) = inp (N, IC) · wᵀ, w (OC, IC): the engine's Linear without bias
void t5cpu_linear(float* out, const float* inp, const float* w, int N, int IC, int OC);
// one wrapped Linear's adapter (train_t5.c lora_forward / lora_backward), A (r, IC), B (OC, r), scale s,
// dropout (p, seed, site) on its input: out (N, OC) += s·dropout(inp)·Aᵀ·Bᵀ; then from dout (N, OC):
// dA, dB += their gradients, dinp (N, IC) += the input gradient
void t5cpu_lora_forward(float* out, const float* inp, const float* A, const float* B, float s, int r, int N, int IC, int OC,
                        float p, uint64_t seed, uint32_t site);
void t5cpu_lora_backward(float* dinp, float* dA, float* dB, const float* dout, const float* inp, const float* A,
                         const float* B, float s, int r, int N, int IC, int OC, float p, uint64_t seed, uint32_t site);
// Σ g² in double (the global gradient norm is its square root)
double t5cpu_sum_squares(const float* g, size_t n);
// AdamW on n values: θ·decay, moments, θ −= step_size · m / (sqrt(v)/bc2_sqrt + eps)
void t5cpu_adamw(float* p, const float* g, float* m, float* v, size_t n, float beta1, float beta2, float eps, float decay,
                 float step_size, float bc2_sqrt);
// losses (N); returns the counted tokens. Then logits → dlogits · scale in place
int t5cpu_crossentropy(float* losses, const float* logits, const int* labels, int N, int V);
void t5cpu_crossentropy_backward(float* logits, const int* labels, int N, int V, float scale);
// attention over q (B,Tq,H·D), k/v (B,Tk,H·D); att (B,H,Tq,Tk) probabilities; scratch same size.
// relb (NB,H) and buckets (2Tq−1) for self-attention, else NULL; key_len (B) or NULL
typedef struct {
    int B, Tq, Tk, H, D, causal;
    const int* key_len; const float* relb; const int* buckets;
    float p; uint64_t seed; uint32_t site;
} T5CpuAttn;
void t5cpu_attention_forward(float* out, float* att, float* scratch, const float* q, const float* k, const float* v,
                             const T5CpuAttn* s);
void t5cpu_attention_backward(float* dq, float* dk, float* dv, float* dscore, float* drelb, const float* dout,
                              const float* q, const float* k, const float* v, const float* att, const T5CpuAttn* s);

// ----------------------------------------------------------------------------
// generation (train_t5.c t5_generate), for the GPU engine's search and its test. T5CpuGen carries the
// fields of the engine's GenConfig (train_t5.c), converted field by field in t5_cpu.c.
typedef struct {
    int max_new_tokens, num_beams, no_repeat_ngram_size;
    double length_penalty;
    int early_stopping;
    float eos_bias;
} T5CpuGen;
T5CpuGen t5cpu_gen_default(void);

// t5_generate on the CPU engine: out (B, max_new_tokens) summaries after the start token, out_len (B)
int t5cpu_generate(T5Cpu* m, const int* const* src, const int* src_len, int B, const T5CpuGen* g, int* out, int* out_len,
                   char* err, size_t errlen);
// t5_generate's checks of a request (NULL config of a model is enough): 0, or -1 with a message
int t5cpu_gen_check(const T5Config* c, const int* const* src, const int* src_len, int B, const T5CpuGen* g, char* err,
                    size_t errlen);

// the CPU engine's beam search bookkeeping (BeamState of train_t5.c) driven by scores computed elsewhere:
// each step, the caller computes for every input b the K = 2·num_beams best continuations of its beams
// (flat index beam·V + token, value = running score + log p, largest first, ties by index) and passes
// them here; the state picks the running beams, the finished hypotheses and whether to go on.
typedef struct T5CpuBeam T5CpuBeam;
T5CpuBeam* t5cpu_beam_create(const T5Config* c, int B, const T5CpuGen* g);
void t5cpu_beam_free(T5CpuBeam* s);
int t5cpu_beam_width(const T5CpuBeam* s);          // positions per sequence: 1 + max_new_tokens
const int* t5cpu_beam_running(const T5CpuBeam* s); // (B·nb, width) running sequences, start token first
const float* t5cpu_beam_scores(const T5CpuBeam* s); // (B·nb) their summed log-probabilities
// one step at sequence length cur_len (tokens so far, start token included): top (B, K) values and flat
// indices; parent (B·nb) receives the cache row each running beam continues. Returns 1 to go on.
int t5cpu_beam_step(T5CpuBeam* s, const float* top_val, const int* top_idx, int cur_len, int* parent);
// the best finished hypothesis of each input, as t5_generate returns it: out (B, max_new_tokens), out_len (B)
void t5cpu_beam_result(const T5CpuBeam* s, int* out, int* out_len);

// ----------------------------------------------------------------------------
// the evaluation of train_t5 (--eval-split) around summaries generated elsewhere: the split
// (PREFIX.bin + PREFIX_refs.jsonl, the first `limit` examples, 0 = all), decoding with the tokenizer,
// ROUGE/BLEU against the human summaries, generations.jsonl + scores.json, the score table
typedef struct T5CpuEval T5CpuEval;
T5CpuEval* t5cpu_eval_open(const char* prefix, long long limit, const char* tokenizer, int vocab, char* err, size_t errlen);
void t5cpu_eval_free(T5CpuEval* e);
long long t5cpu_eval_size(const T5CpuEval* e);
// sources of examples [lo, lo + B) as rows into buf (B x max_src ints), truncated as train_t5 truncates
void t5cpu_eval_sources(const T5CpuEval* e, long long lo, int B, int max_src, int eos, int* buf, int** rows, int* lens);
// the summary (n ids) of example i, decoded and scored; 0, or -1 with a message
int t5cpu_eval_add(T5CpuEval* e, long long i, const int* ids, int n, char* err, size_t errlen);
// DIR/generations.jsonl, DIR/scores.json, the table on stdout; seconds: generation time (summaries/s)
int t5cpu_eval_finish(T5CpuEval* e, const char* dir, const char* model, double seconds, char* err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif // T5_CPU_H
