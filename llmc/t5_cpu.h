// t5_cpu.h — the CPU reference engine (train_t5.c) as a small library for the CUDA tests: test_t5cu
// and the kernel twins of dev/cuda compare the CUDA engine against it. (train_t5cu itself links only
// the driver, llmc/driver.c.) Implemented by llmc/t5_cpu.c, a C translation unit
// that includes train_t5.c with TESTING defined; nothing of the engine is re-declared here.
#ifndef T5_CPU_H
#define T5_CPU_H

#include <stddef.h>        // defines: size_t
#include <stdint.h>        // defines: uint64_t
#include "t5.h"            // defines: T5Config
#include "dataloader.h"    // defines: T5Batch
#include "lora.h"          // defines: LoraConfig
#include "engine.h"        // defines: GenConfig

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
// generation (train_t5.c t5_generate) on the CPU engine: out (B, max_new_tokens) summaries after the start
// token, out_len (B)
int t5cpu_generate(T5Cpu* m, const int* const* src, const int* src_len, int B, const GenConfig* g, int* out, int* out_len,
                   char* err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif // T5_CPU_H
