// testing.h — what the test harnesses share (test_t5.c, test_t5cu.cu): pass/fail bookkeeping, the
// tolerance comparison that prints one line per tensor, the fixture readers (dev/make_fixtures.py
// writes the fixtures) and running a command line as a user runs it. Valid C and C++ (nvcc).
#ifndef T5_TESTING_H
#define T5_TESTING_H

#include <stdio.h>              // defines: printf, popen, pclose
#include <stdlib.h>             // defines: exit, strtof
#include <string.h>             // defines: strstr
#include <math.h>               // defines: fabs, isnan, INFINITY
#include <sys/wait.h>           // defines: WIFEXITED, WEXITSTATUS
#include "llmc/utils.h"         // defines: mallocCheck
#include "llmc/safetensors.h"   // defines: StFile, st_find, st_read_f32, st_read_i32, st_metadata
#include "llmc/fileio.h"        // defines: file_size_of
#include "llmc/hf.h"            // defines: t5_load_hf_dir
#include "llmc/lora.h"          // defines: lora_load_dir, lora_layout, lora_key, lora_A, lora_B

static int g_pass = 0, g_fail = 0;

static void verdict(int ok, const char* what) {
    if (ok) g_pass++; else { g_fail++; printf("  ^^^ FAIL: %s\n", what); }
}

// compares n floats; tol is relative to max|want| (with an absolute floor of tol for all-zero tensors)
static int check_close(const char* name, const float* got, const float* want, size_t n, float tol) {
    double maxabs = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= maxabs)) maxabs = isnan(d) ? INFINITY : d;
    }
    double rel = maxabs / (scale > 0 ? scale : 1.0);
    int ok = rel <= tol;
    printf("%-62s max abs %.3e  max rel %.3e  tol %.0e  %s\n", name, maxabs, rel, (double)tol, ok ? "OK" : "FAIL");
    verdict(ok, name);
    return ok;
}

// mixed-precision comparison: ‖got − want‖₂ / ‖want‖₂ ≤ tol_norm, and max|got − want| / max|want| ≤ tol_max
// (the norm bounds the accumulated rounding of the whole tensor; the max bound still catches a wrong row)
static int check_close_norm(const char* name, const float* got, const float* want, size_t n, float tol_norm, float tol_max) {
    double num = 0.0, den = 0.0, maxabs = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        num += d * d; den += (double)want[i] * want[i];
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
        if (!(d <= maxabs)) maxabs = isnan(d) ? INFINITY : d;
    }
    double rel = sqrt(num) / (den > 0 ? sqrt(den) : 1.0), relmax = maxabs / (scale > 0 ? scale : 1.0);
    int ok = rel <= tol_norm && relmax <= tol_max;
    printf("%-62s rel l2 %.3e  max rel %.3e  tol %.0e/%.0e  %s\n", name, rel, relmax, (double)tol_norm, (double)tol_max,
           ok ? "OK" : "FAIL");
    verdict(ok, name);
    return ok;
}

static void check_true(const char* name, int ok) {
    printf("%-62s %s\n", name, ok ? "OK" : "FAIL");
    verdict(ok, name);
}

// ----------------------------------------------------------------------------
// fixture access: a missing tensor or unreadable data ends the test program

typedef struct { StFile st; char path[512]; } Fixture;

static float* fx_f32(Fixture* f, const char* name, size_t* n) {
    char err[1024];
    const StTensor* t = st_find(&f->st, name);
    if (!t) { printf("fixture %s lacks tensor %s\n", f->path, name); exit(EXIT_FAILURE); }
    float* out = (float*)mallocCheck((size_t)t->numel * sizeof(float));
    if (st_read_f32(&f->st, t, out, err, sizeof(err))) { printf("%s\n", err); exit(EXIT_FAILURE); }
    if (n) *n = (size_t)t->numel;
    return out;
}

static int* fx_i32(Fixture* f, const char* name, int* rows, int* cols) {
    char err[1024];
    const StTensor* t = st_find(&f->st, name);
    if (!t) { printf("fixture %s lacks tensor %s\n", f->path, name); exit(EXIT_FAILURE); }
    int32_t* out = (int32_t*)mallocCheck((size_t)t->numel * sizeof(int32_t));
    if (st_read_i32(&f->st, t, out, err, sizeof(err))) { printf("%s\n", err); exit(EXIT_FAILURE); }
    if (rows) *rows = (int)t->shape[0];
    if (cols) *cols = t->ndim > 1 ? (int)t->shape[1] : 1;
    return (int*)out;
}

static float fx_meta(Fixture* f, const char* key) {
    const char* v = st_metadata(&f->st, key);
    if (!v) { printf("fixture %s lacks metadata %s\n", f->path, key); exit(EXIT_FAILURE); }
    return strtof(v, NULL);
}

// ----------------------------------------------------------------------------
// command lines

// runs a command, captures stdout+stderr into out (truncated), returns the exit status
static int run_cmd(const char* cmd, char* out, size_t n) {
    char full[4096];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE* p = popen(full, "r");
    if (!p) return -1;
    size_t len = fread(out, 1, n - 1, p);
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// the "| loss X" values of a trainer's step lines (at most max); returns how many
static int parse_losses(const char* out, float* losses, int max) {
    int n = 0;
    for (const char* q = strstr(out, "| loss "); q && n < max; q = strstr(q + 1, "| loss ")) losses[n++] = strtof(q + 7, NULL);
    return n;
}

// `bin` (train_t5 or train_t5cu) from peft's adapter of the lora_gated fixture: peft's trainable count, and
// the 4 step losses of peft's training to tol (6 decimals are printed: at least 1e-5)
static void check_cli_lora_peft(const char* bin, float tol) {
    static char out[1 << 16];
    char cmd[3000], name[200], err[1024];
    snprintf(cmd, sizeof(cmd), "%s --model dev/fixtures/flan_gated/model --lora-adapter dev/fixtures/lora_gated/adapter --lora-r 4 "
             "--train-file dev/fixtures/flan_gated/examples.bin --steps 4 --batch-size 3 --shuffle 0 --bucket 0 --lr 1e-2 --warmup 2 "
             "--schedule-steps 6 --weight-decay 0.01 --clip 1 --dropout 0", bin);
    int rc = run_cmd(cmd, out, sizeof(out));
    float got[8];
    int n = parse_losses(out, got, 8);
    snprintf(name, sizeof(name), "%s --lora-adapter: exit 0, 4 steps, peft's trainable count", bin);
    check_true(name, rc == 0 && n == 4 && strstr(out, "trainable params: 10,752 of 68,608 (15.67%)"));
    if (rc != 0 || n != 4) { printf("%s\n", out); return; }
    Fixture f;
    snprintf(f.path, sizeof(f.path), "dev/fixtures/lora_gated/fixture.safetensors");
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("%s\n", err); check_true("the lora_gated fixture opens", 0); return; }
    for (int k = 0; k < 4; k++) {
        char key[64];
        snprintf(key, sizeof(key), "step%d.loss", k);
        float* want = fx_f32(&f, key, NULL);
        snprintf(name, sizeof(name), "CLI --lora-adapter %s (6 decimals printed)", key);
        check_close(name, &got[k], want, 1, tol);
        free(want);
    }
    st_close(&f.st);
}

// a LoRA run of `bin` (train_t5 or train_t5cu) on the flan_gated fixture, stopped after 2 steps and resumed
// with --resume latest, must end byte-identical to an uninterrupted one (its adapter and its last
// checkpoint; LoRA dropout and T5 dropout on), and the adapter checkpoint hold the adapter and its AdamW
// moments only, no copy of the base. `extra`: more flags for the uninterrupted run, whose run directory
// (TMP/lora_full) is left for the caller
static void check_cli_lora_resume(const char* bin, const char* tmp, const char* extra) {
    static char out[1 << 16];
    char cmd[3000], a[700], b[700], path[800], name[200], err[256];
    const char* common = "--model dev/fixtures/flan_gated/model --train-file dev/fixtures/flan_gated/examples.bin --batch-size 1 "
                         "--lr 1e-2 --schedule linear --warmup 1 --schedule-steps 6 --lora-r 4 --lora-alpha 8 --lora-dropout 0.1 "
                         "--lora-targets q,v,o,wi_0,wo --dropout 0.1 --seed 5";
    snprintf(a, sizeof(a), "%s/lora_full", tmp);
    snprintf(b, sizeof(b), "%s/lora_resumed", tmp);
    snprintf(cmd, sizeof(cmd), "%s %s --steps 4 --out-dir %s %s", bin, common, a, extra);
    int ok = run_cmd(cmd, out, sizeof(out)) == 0;
    snprintf(cmd, sizeof(cmd), "%s %s --steps 2 --out-dir %s", bin, common, b);
    ok = ok && run_cmd(cmd, out, sizeof(out)) == 0;
    snprintf(cmd, sizeof(cmd), "%s %s --steps 4 --out-dir %s --resume latest", bin, common, b);
    ok = ok && run_cmd(cmd, out, sizeof(out)) == 0 && strstr(out, "resuming from") != NULL;
    if (!ok) printf("%s\n", out);
    snprintf(cmd, sizeof(cmd), "cmp -s %s/adapter/adapter_model.safetensors %s/adapter/adapter_model.safetensors && "
             "cmp -s %s/checkpoints/ckpt_000000004.bin %s/checkpoints/ckpt_000000004.bin", a, b, a, b);
    check_true("LoRA run stopped at 2 and resumed == uninterrupted run (adapter, checkpoint: byte-identical)", ok && system(cmd) == 0);
    snprintf(path, sizeof(path), "%s/checkpoints/ckpt_000000004.bin", a);
    int64_t size = file_size_of(path, err, sizeof(err));
    snprintf(name, sizeof(name), "adapter checkpoint: header + adapter + AdamW moments only (%lld bytes)", (long long)size);
    check_true(name, size == 256 + 3 * 4 * 7680); // 7,680 adapter floats: r 4 on q, v, o, wi_0, wo of 2+2 blocks
}

// the LoRA flags' errors of `bin` (train_t5 or train_t5cu): each refused with its message and an exit
// status in 1..127 (a crash is no refusal); then, with TMP/lora_full of check_cli_lora_resume, an adapter
// checkpoint as --model, and resuming that run on other base weights (their fingerprint differs)
static void check_cli_lora_errors(const char* bin, const char* tmp) {
    static char out[1 << 16];
    char cmd[3000], name[200];
    struct { const char* args; const char* want; } cases[] = {
        { "--lora-r 0 --lora-adapter dev/fixtures/lora_gated/adapter --save-hf x", "contradicts --lora-adapter" },
        { "--lora-adapter dev/fixtures/lora_gated/adapter --lora-r 8 --save-lora x", "--lora-r contradicts" },
        { "--lora-adapter dev/fixtures/lora_gated/adapter --lora-alpha 16 --save-lora x", "--lora-alpha contradicts" },
        { "--lora-adapter dev/fixtures/lora_gated/adapter --lora-targets q,v --save-lora x", "--lora-targets contradicts" },
        { "--lora-r 4 --lora-targets q,query --save-lora x", "unknown module name 'query'" },
        { "--lora-r 4 --lora-targets wi --save-lora x", "matches no module" },
        { "--lora-alpha 16 --save-hf x", "need --lora-r" },
        { "--merge-lora x", "need LoRA" },
        { "--lora-adapter dev/fixtures/lora_relu/adapter --save-lora x", "matches no LoRA module" }, // its wi tensors
        { "--model %s/lora_full/checkpoints/ckpt_000000004.bin --save-hf %s/x", "LoRA adapter checkpoint, not a model" },
        { "--model dev/fixtures/flan_gated/model_bf16 --train-file dev/fixtures/flan_gated/examples.bin --batch-size 1 "
          "--lora-r 4 --steps 5 --out-dir %s/lora_full --resume latest", "fingerprint" }, // other base weights
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char args[1000];
        snprintf(args, sizeof(args), cases[i].args, tmp, tmp);
        snprintf(cmd, sizeof(cmd), "%s --model dev/fixtures/flan_gated/model %s", bin, args);
        int rc = run_cmd(cmd, out, sizeof(out));
        int ok = rc > 0 && rc < 128 && strstr(out, cases[i].want) != NULL;
        snprintf(name, sizeof(name), "CLI refuses: %.90s", cases[i].args);
        printf("%-62s %s\n      -> %s\n", name, ok ? "OK" : "FAIL", rc ? out : "(accepted!)");
        verdict(ok, name);
    }
}

// ----------------------------------------------------------------------------
// Adafactor against transformers (dev/make_adafactor_model_fixtures.py): `bin` trains with the case's flags on
// the fixture's model and batch, then its step losses and the weights it saved are compared with
// transformers' Adafactor run. Weights: max |ours − HF| (tol_abs), and the same over the largest change of
// any weight since the start (tol_change): the warmup case moves weights by ~1e-6, where an absolute bound
// alone would pass an optimizer that did nothing.

// max |a − b| over n values, and max |b − c| (c: the start; NULL: skipped)
static void adafactor_diffs(const float* a, const float* b, const float* c, size_t n, double* diff, double* change) {
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= *diff)) *diff = isnan(d) ? INFINITY : d;
        if (c && fabs((double)b[i] - c[i]) > *change) *change = fabs((double)b[i] - c[i]);
    }
}

static void adafactor_verdict(const char* label, double diff, double change, double tol_abs, double tol_change) {
    char name[300];
    double rel = diff / (change > 0 ? change : 1.0);
    int ok = diff <= tol_abs && rel <= tol_change;
    snprintf(name, sizeof(name), "%s weights", label);
    printf("%-62s max abs %.3e  / max change %.3e = %.3e  tol %.0e, %.0e  %s\n", name, diff, change, rel, tol_abs, tol_change,
           ok ? "OK" : "FAIL");
    verdict(ok, name);
}

// model: dev/fixtures/adafactor_model/<model>; cs: the case (its flags in the fixture's metadata)
static void check_cli_adafactor(const char* bin, const char* tmp, const char* model, const char* cs, float tol_loss,
                                double tol_abs, double tol_change) {
    static char out[1 << 16];
    char cmd[3000], dir[600], key[400], name[300], err[1024];
    Fixture f;
    snprintf(dir, sizeof(dir), "dev/fixtures/adafactor_model/%s", model);
    snprintf(f.path, sizeof(f.path), "%s/fixture.safetensors", dir);
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("%s\n", err); check_true("the adafactor_model fixture opens", 0); return; }
    snprintf(key, sizeof(key), "%s.flags", cs);
    const char* flags = st_metadata(&f.st, key);
    int steps = (int)fx_meta(&f, "steps");
    snprintf(cmd, sizeof(cmd), "%s --model %s/model --train-file %s/examples.bin --steps %d --batch-size 3 --shuffle 0 --bucket 0 "
             "--clip %g --dropout 0 --optimizer adafactor %s --save-hf %s/af_%s_%s", bin, dir, dir, steps, (double)fx_meta(&f, "clip"),
             flags ? flags : "", tmp, model, cs);
    int rc = run_cmd(cmd, out, sizeof(out));
    float got[16];
    int n = parse_losses(out, got, 16);
    snprintf(name, sizeof(name), "%s adafactor %s/%s: exit 0, %d steps", bin, model, cs, steps);
    check_true(name, rc == 0 && n == steps);
    if (rc != 0 || n != steps) { printf("%s\n%s\n", cmd, out); st_close(&f.st); return; }
    snprintf(key, sizeof(key), "%s.loss", cs);
    float* want = fx_f32(&f, key, NULL);
    snprintf(name, sizeof(name), "adafactor %s/%s: %d step losses vs transformers", model, cs, steps);
    check_close(name, got, want, (size_t)steps, tol_loss);
    free(want);
    // the saved weights, tensor by tensor (each layer its own HF tensor), against HF's; the start from model/
    T5Config c, c0;
    float *p = NULL, *p0 = NULL;
    snprintf(key, sizeof(key), "%s/af_%s_%s", tmp, model, cs);
    snprintf(name, sizeof(name), "%s/model", dir);
    if (t5_load_hf_dir(key, &c, &p, err, sizeof(err)) || t5_load_hf_dir(name, &c0, &p0, err, sizeof(err))) {
        printf("%s\n", err); check_true("the saved weights load", 0); st_close(&f.st); return;
    }
    T5Layout L;
    t5_layout(&c, &L);
    double diff = 0.0, change = 0.0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &L.t[i];
        size_t copy = t5_tensor_copy_size(t);
        for (int l = 0; t->size && l < t->layers; l++) {
            char hf[128];
            t5_tensor_name(&L, i, l, hf, sizeof(hf));
            snprintf(key, sizeof(key), "%s.final.%s", cs, hf);
            size_t nw = 0;
            float* w = fx_f32(&f, key, &nw);
            if (nw != copy) { printf("%s: %zu values, ours %zu\n", key, nw, copy); diff = INFINITY; }
            else adafactor_diffs(p + t->offset + l * copy, w, p0 + t->offset + l * copy, copy, &diff, &change);
            free(w);
        }
    }
    snprintf(name, sizeof(name), "adafactor %s/%s: all %zu", model, cs, L.total);
    adafactor_verdict(name, diff, change, tol_abs, tol_change);
    free(p); free(p0);
    st_close(&f.st);
}

// the LoRA case: peft's adapter of lora_gated on flan_gated, Adafactor over the adapter only
static void check_cli_adafactor_lora(const char* bin, const char* tmp, float tol_loss, double tol_abs, double tol_change) {
    static char out[1 << 16];
    char cmd[3000], path[600], key[400], name[300], err[1024];
    Fixture f;
    snprintf(f.path, sizeof(f.path), "dev/fixtures/adafactor_model/lora.safetensors");
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("%s\n", err); check_true("the adafactor lora fixture opens", 0); return; }
    const char* flags = st_metadata(&f.st, "lora.flags");
    int steps = (int)fx_meta(&f, "steps");
    snprintf(path, sizeof(path), "%s/af_lora", tmp);
    snprintf(cmd, sizeof(cmd), "%s --model dev/fixtures/flan_gated/model --lora-adapter dev/fixtures/lora_gated/adapter "
             "--train-file dev/fixtures/flan_gated/examples.bin --steps %d --batch-size 3 --shuffle 0 --bucket 0 --clip %g --dropout 0 "
             "--optimizer adafactor %s --save-lora %s", bin, steps, (double)fx_meta(&f, "clip"), flags ? flags : "", path);
    int rc = run_cmd(cmd, out, sizeof(out));
    float got[16];
    int n = parse_losses(out, got, 16);
    snprintf(name, sizeof(name), "%s adafactor LoRA: exit 0, %d steps", bin, steps);
    check_true(name, rc == 0 && n == steps);
    if (rc != 0 || n != steps) { printf("%s\n%s\n", cmd, out); st_close(&f.st); return; }
    float* want = fx_f32(&f, "lora.loss", NULL);
    snprintf(name, sizeof(name), "adafactor LoRA: %d step losses vs transformers + peft", steps);
    check_close(name, got, want, (size_t)steps, tol_loss);
    free(want);
    T5Config c;
    float *base = NULL, *a = NULL, *a0 = NULL;
    LoraConfig lc, lc0;
    if (t5_load_hf_dir("dev/fixtures/flan_gated/model", &c, &base, err, sizeof(err)) ||
        lora_load_dir(path, &c, &lc, &a, err, sizeof(err)) || lora_load_dir("dev/fixtures/lora_gated/adapter", &c, &lc0, &a0, err, sizeof(err))) {
        printf("%s\n", err); check_true("the saved adapter loads", 0); st_close(&f.st); return;
    }
    T5Layout bl;
    LoraLayout L;
    t5_layout(&c, &bl);
    lora_layout(&lc, &bl, c.gated, &L);
    double diff = 0.0, change = 0.0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const LoraTensor* t = &L.t[i];
        for (int l = 0; t->on && l < t->layers; l++)
            for (int ab = 0; ab < 2; ab++) {
                char k[200];
                lora_key(&bl, i, l, ab ? 'B' : 'A', k, sizeof(k));
                snprintf(key, sizeof(key), "lora.final.%s", k);
                size_t nw = 0, cnt = ab ? (size_t)t->out * L.r : (size_t)L.r * t->in;
                float* w = fx_f32(&f, key, &nw);
                float* ours = ab ? lora_B(&L, a, i, l) : lora_A(&L, a, i, l);
                float* start = ab ? lora_B(&L, a0, i, l) : lora_A(&L, a0, i, l);
                if (nw != cnt) { printf("%s: %zu values, ours %zu\n", key, nw, cnt); diff = INFINITY; }
                else adafactor_diffs(ours, w, start, cnt, &diff, &change);
                free(w);
            }
    }
    snprintf(name, sizeof(name), "adafactor LoRA: all %zu adapter", L.total);
    adafactor_verdict(name, diff, change, tol_abs, tol_change);
    free(base); free(a); free(a0);
    st_close(&f.st);
}

#endif // T5_TESTING_H
