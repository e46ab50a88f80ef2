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
