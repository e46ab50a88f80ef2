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
        { "--lora-adapter dev/fixtures/lora_relu/adapter --save-lora x", "matches no module" },
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

#endif // T5_TESTING_H
