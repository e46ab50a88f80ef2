// bench_adafactor.c — the CPU cost of one optimizer step on a T5's tensors: the engine's AdamW
// (t5cpu_adamw, llmc/t5_cpu.h) against Adafactor (llmc/adafactor.h), on random weights and gradients of
// a preset's shapes (llmc/t5.h), and the optimizer state each one keeps.
//
//   make build/bench_adafactor
//   OMP_NUM_THREADS=2 ./build/bench_adafactor flan-t5-small [steps]   (median ms/step and state bytes of both)
//   ./build/bench_adafactor --memory                                  (state bytes of every preset)
// dev/bench_adafactor.py runs it beside PyTorch's AdamW and transformers' Adafactor.
//
// Adafactor runs with the T5 fine-tuning options (lr 1e-3, no relative step, no parameter scale, no β1)
// and updates each Hugging Face tensor on its own: one call per layer of a stacked tensor. AdamW runs
// on each stacked tensor in one call (elementwise, so the split does not matter).
#include <stdio.h>              // defines: printf, fprintf
#include <stdlib.h>             // defines: atoi, free
#include <string.h>             // defines: strcmp
#include "llmc/t5.h"            // defines: T5Config, T5Layout, T5_PRESETS, t5_config_preset, t5_layout
#include "llmc/t5_cpu.h"        // defines: t5cpu_adamw
#include "llmc/rng.h"           // defines: Rng, rng_init, rng_normal
#include "llmc/adafactor.h"     // defines: AdafactorConfig, adafactor_update, adafactor_state_floats (and utils.h: now_ms, par_max_threads)

// Adafactor's state floats for the whole model: every copy of every tensor, factored when it is a matrix
static size_t adafactor_model_state(const T5Layout* L, int has_beta1) {
    size_t total = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &L->t[i];
        if (t->size == 0) continue;
        int factored = t->cols > 0, cols = factored ? t->cols : 1;
        total += (size_t)t->layers * adafactor_state_floats(t->rows, cols, factored, has_beta1);
    }
    return total;
}

// state bytes of AdamW (m and v: 8 bytes per parameter) and Adafactor (with and without β1), every preset
static void print_memory_table(void) {
    printf("| preset | parameters | AdamW state | Adafactor state (β1 None) | ratio | Adafactor state (β1 set) |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < T5_NUM_PRESETS; k++) {
        T5Config c;
        T5Layout L;
        t5_config_preset(&c, T5_PRESETS[k].name);
        t5_layout(&c, &L);
        double adamw = 8.0 * L.total, af = 4.0 * adafactor_model_state(&L, 0), af1 = 4.0 * adafactor_model_state(&L, 1);
        printf("| %s | %zu | %.1f MiB (%.0f B) | %.3f MiB (%.0f B) | %.0fx | %.1f MiB |\n", T5_PRESETS[k].name, L.total,
               adamw / 1048576.0, adamw, af / 1048576.0, af, adamw / af, af1 / 1048576.0);
    }
}

static float* random_floats(size_t n, uint64_t seed, float std) {
    float* x = (float*)mallocCheck(n * sizeof(float));
    Rng r;
    rng_init(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(&r);
    return x;
}

// one Adafactor step over the model: each copy of each tensor on its own
static void adafactor_model_step(float* p, const float* g, float* state, const T5Layout* L, const AdafactorConfig* c, long long t) {
    size_t soff = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* tt = &L->t[i];
        if (tt->size == 0) continue;
        int factored = tt->cols > 0, cols = factored ? tt->cols : tt->rows, rows = factored ? tt->rows : 1;
        size_t copy = (size_t)rows * cols, ns = adafactor_state_floats(rows, cols, factored, c->has_beta1);
        for (int l = 0; l < tt->layers; l++) {
            size_t off = tt->offset + (size_t)l * copy;
            adafactor_update(p + off, g + off, state + soff, rows, cols, factored, c, t, c->lr);
            soff += ns;
        }
    }
}

static void adamw_model_step(float* p, const float* g, float* m, float* v, const T5Layout* L, long long t) {
    const float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
    double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* tt = &L->t[i];
        float decay = t5_is_norm(i) ? 1.0f : (float)(1.0 - lr * 0.01);
        t5cpu_adamw(p + tt->offset, g + tt->offset, m + tt->offset, v + tt->offset, tt->size, beta1, beta2, eps, decay,
                    (float)(lr / bc1), (float)sqrt(bc2));
    }
}

// the median of n timings (sorted in place): steady against a neighbour that takes a core for a moment
static double median(double* x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j - 1] > x[j]; j--) { double t = x[j]; x[j] = x[j - 1]; x[j - 1] = t; }
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

int main(int argc, char** argv) {
    enable_flush_to_zero();
    if (argc > 1 && strcmp(argv[1], "--memory") == 0) { print_memory_table(); return EXIT_SUCCESS; }
    const char* preset = argc > 1 ? argv[1] : "flan-t5-small";
    int steps = argc > 2 ? atoi(argv[2]) : 5;
    T5Config c;
    if (t5_config_preset(&c, preset) || steps < 1) {
        fprintf(stderr, "usage: bench_adafactor [preset] [steps >= 1] | --memory\n");
        return EXIT_FAILURE;
    }
    T5Layout L;
    t5_layout(&c, &L);
    AdafactorConfig ac = adafactor_defaults();
    ac.has_lr = 1; ac.lr = 1e-3; ac.relative_step = 0; ac.scale_parameter = 0;
    char err[256];
    if (adafactor_check(&ac, err, sizeof(err))) { fprintf(stderr, "%s\n", err); return EXIT_FAILURE; }
    size_t n = L.total, ns = adafactor_model_state(&L, ac.has_beta1);
    float *p = random_floats(n, 1, 0.05f), *g = random_floats(n, 2, 1e-3f);
    float *m = (float*)callocCheck(n, sizeof(float)), *v = (float*)callocCheck(n, sizeof(float));
    float* state = (float*)callocCheck(ns, sizeof(float));
    // one untimed step each (first touch of the state), then `steps` timed ones
    double* ms = (double*)mallocCheck(steps * sizeof(double));
    adamw_model_step(p, g, m, v, &L, 1);
    for (int t = 2; t <= steps + 1; t++) { double t0 = now_ms(); adamw_model_step(p, g, m, v, &L, t); ms[t - 2] = now_ms() - t0; }
    double adamw_ms = median(ms, steps);
    adafactor_model_step(p, g, state, &L, &ac, 1);
    for (int t = 2; t <= steps + 1; t++) { double t0 = now_ms(); adafactor_model_step(p, g, state, &L, &ac, t); ms[t - 2] = now_ms() - t0; }
    double af_ms = median(ms, steps);
    free(ms);
    printf("%s: %zu parameters, %d threads, %d steps\n", preset, n, par_max_threads(), steps);
    printf("  (median of the timed steps)\n");
    printf("  adamw      %9.1f ms/step  state %12zu bytes\n", adamw_ms, 2 * n * sizeof(float));
    printf("  adafactor  %9.1f ms/step  state %12zu bytes\n", af_ms, ns * sizeof(float));
    free(p); free(g); free(m); free(v); free(state);
    return EXIT_SUCCESS;
}
