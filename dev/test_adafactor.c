// test_adafactor.c — llmc/adafactor.h against transformers' Adafactor (dev/make_adafactor_fixtures.py
// ran it on small tensors for 6 steps under 7 option sets), then the refusals of adafactor_check, then a
// resume from a saved flat state. One line per comparison; the exit code is the verdict.
//
//   make test_adafactor        (or: gcc -O3 -std=gnu11 -I. dev/test_adafactor.c -o build/test_adafactor -lm)
#include <stdio.h>              // defines: printf, tmpfile, fwrite, fread
#include <stdlib.h>             // defines: strtod, free
#include <string.h>             // defines: strcmp, memcmp, memcpy, strtok_r
#include <math.h>               // defines: fabs
#include "llmc/adafactor.h"     // defines: AdafactorConfig, adafactor_check, adafactor_update, adafactor_state_floats
#include "dev/testing.h"        // defines: Fixture, fx_f32, check_close, check_true, verdict, g_pass, g_fail

// Tolerances. Both sides compute in fp32 with the same order of operations; the sums differ (torch: fp32
// cascades; here: double), so a mean, a norm or an RMS may differ in its last bit or two, and so may
// every value computed from them.
// Weights: |p| ≤ 2.3 here, where one fp32 ulp is 2.4e-7; six steps, each able to round differently by an
// ulp, stay under 1e-6 absolute (the target of issue 26).
#define TOL_P_ABS 1e-6
// What the steps changed, p_t − p0, relative to its largest value: this is what a wrong formula would
// move by whole percents, and what the absolute check cannot see on the tensor whose values are 1e-5.
// Its floor is p's own rounding: an ulp of |p| ≈ 2 is 2.4e-7, against changes of ~1e-2 → ~2e-5 at worst
// (measured: 1.8e-6). Applying the weight decay after the update instead of before moves it by 1.5e-3 or more.
#define TOL_DP_REL 2e-5
// The moments: a few ulps (1.2e-7 each) of a value carried through six exponential averages (measured: 2.0e-7)
#define TOL_STATE_REL 1e-6

#define MAX_TENSORS 8

typedef struct {
    char name[32];
    int rows, cols, factored;
    size_t n;
    float *p, *p0, *state;
} Tensor;

// "none" or a number: has = 0 or 1
static double meta_opt(Fixture* f, const char* key, int* has) {
    const char* v = st_metadata(&f->st, key);
    if (!v) { printf("fixture %s lacks metadata %s\n", f->path, key); exit(EXIT_FAILURE); }
    if (has) *has = strcmp(v, "none") != 0;
    return strcmp(v, "none") == 0 ? 0.0 : strtod(v, NULL);
}

static AdafactorConfig config_from_fixture(Fixture* f) {
    AdafactorConfig c;
    c.lr = meta_opt(f, "lr", &c.has_lr);
    c.beta1 = meta_opt(f, "beta1", &c.has_beta1);
    c.eps1 = meta_opt(f, "eps1", NULL);
    c.eps2 = meta_opt(f, "eps2", NULL);
    c.clip_threshold = meta_opt(f, "clip_threshold", NULL);
    c.decay_rate = meta_opt(f, "decay_rate", NULL);
    c.weight_decay = meta_opt(f, "weight_decay", NULL);
    c.scale_parameter = (int)meta_opt(f, "scale_parameter", NULL);
    c.relative_step = (int)meta_opt(f, "relative_step", NULL);
    c.warmup_init = (int)meta_opt(f, "warmup_init", NULL);
    return c;
}

// the fixture's tensors, at their initial values, with zero state; returns how many
static int load_tensors(Fixture* f, const AdafactorConfig* c, Tensor* ts) {
    const char* list = st_metadata(&f->st, "tensors");
    if (!list) { printf("fixture %s lacks metadata tensors\n", f->path); exit(EXIT_FAILURE); }
    char buf[256], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", list);
    int k = 0;
    for (char* name = strtok_r(buf, ",", &save); name && k < MAX_TENSORS; name = strtok_r(NULL, ",", &save), k++) {
        Tensor* t = &ts[k];
        char key[64];
        snprintf(t->name, sizeof(t->name), "%s", name);
        snprintf(key, sizeof(key), "%s.p0", name);
        const StTensor* st = st_find(&f->st, key);
        if (!st || st->ndim < 1 || st->ndim > 2) { printf("fixture %s: %s missing or not 1-D/2-D\n", f->path, key); exit(EXIT_FAILURE); }
        // transformers factors every tensor of 2 or more dimensions; a vector is one row
        t->factored = st->ndim == 2;
        t->rows = st->ndim == 2 ? (int)st->shape[0] : 1;
        t->cols = (int)st->shape[st->ndim - 1];
        t->p0 = fx_f32(f, key, &t->n);
        t->p = (float*)mallocCheck(t->n * sizeof(float));
        memcpy(t->p, t->p0, t->n * sizeof(float));
        t->state = (float*)callocCheck(adafactor_state_floats(t->rows, t->cols, t->factored, c->has_beta1), sizeof(float));
    }
    return k;
}

static void free_tensors(Tensor* ts, int k) {
    for (int i = 0; i < k; i++) { free(ts[i].p); free(ts[i].p0); free(ts[i].state); }
}

// max |got − want|, and max |(got − p0) − (want − p0)| / max |want − p0| (in double)
static void diff_p(const float* got, const float* want, const float* p0, size_t n, double* abs_out, double* dp_out) {
    double maxabs = 0.0, dmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= maxabs)) maxabs = d; // NaN counts as a failure
        double ch = fabs((double)want[i] - p0[i]);
        if (ch > dmax) dmax = ch;
    }
    *abs_out = maxabs;
    *dp_out = maxabs / (dmax > 0 ? dmax : 1.0);
}

// one fixture: every step of every tensor; the worst difference over the steps per tensor, then the state
static void check_fixture(const char* cfg_name) {
    Fixture f;
    char err[1024], name[128];
    snprintf(f.path, sizeof(f.path), "dev/fixtures/adafactor/%s.safetensors", cfg_name);
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("%s\n", err); check_true(f.path, 0); return; }
    AdafactorConfig c = config_from_fixture(&f);
    int steps = (int)meta_opt(&f, "steps", NULL);
    snprintf(name, sizeof(name), "%s: adafactor_check accepts the options", cfg_name);
    check_true(name, adafactor_check(&c, err, sizeof(err)) == 0);
    Tensor ts[MAX_TENSORS];
    int k = load_tensors(&f, &c, ts);
    double worst_abs[MAX_TENSORS] = { 0 }, worst_dp[MAX_TENSORS] = { 0 };
    int clipped = 0, floored = 0;
    for (int t = 1; t <= steps; t++) {
        for (int i = 0; i < k; i++) {
            char key[64];
            snprintf(key, sizeof(key), "%s.g%d", ts[i].name, t);
            float* g = fx_f32(&f, key, NULL);
            AdafactorInfo info = adafactor_update(ts[i].p, g, ts[i].state, ts[i].rows, ts[i].cols, ts[i].factored, &c, t, c.lr);
            clipped += info.update_rms > (float)c.clip_threshold;
            floored += info.param_rms <= (float)c.eps2;
            snprintf(key, sizeof(key), "%s.p%d", ts[i].name, t);
            float* want = fx_f32(&f, key, NULL);
            double a, dp;
            diff_p(ts[i].p, want, ts[i].p0, ts[i].n, &a, &dp);
            if (!(a <= worst_abs[i])) worst_abs[i] = a;
            if (!(dp <= worst_dp[i])) worst_dp[i] = dp;
            free(g);
            free(want);
        }
    }
    for (int i = 0; i < k; i++) {
        Tensor* T = &ts[i];
        int ok = worst_abs[i] <= TOL_P_ABS && worst_dp[i] <= TOL_DP_REL;
        snprintf(name, sizeof(name), "%s %s (%dx%d%s) weights, steps 1..%d", cfg_name, T->name, T->rows, T->cols,
                 T->factored ? "" : ", vector", steps);
        printf("%-62s max abs %.3e (tol %.0e)  change rel %.3e (tol %.0e)  %s\n", name, worst_abs[i], TOL_P_ABS,
               worst_dp[i], TOL_DP_REL, ok ? "OK" : "FAIL");
        verdict(ok, name);
        // the final state under transformers' names, in our layout
        size_t n = T->n, off_m = T->factored ? (size_t)T->rows + T->cols : n;
        struct { const char* hf; size_t off, len; int present; } parts[] = {
            { "exp_avg_sq_row", 0, (size_t)T->rows, T->factored },
            { "exp_avg_sq_col", (size_t)T->rows, (size_t)T->cols, T->factored },
            { "exp_avg_sq", 0, n, !T->factored },
            { "exp_avg", off_m, n, c.has_beta1 },
        };
        for (size_t q = 0; q < sizeof(parts) / sizeof(parts[0]); q++) {
            if (!parts[q].present) continue;
            char key[64];
            snprintf(key, sizeof(key), "%s.%s", T->name, parts[q].hf);
            size_t len;
            float* want = fx_f32(&f, key, &len);
            snprintf(name, sizeof(name), "%s %s state %s", cfg_name, T->name, parts[q].hf);
            if (len != parts[q].len) { check_true(name, 0); free(want); continue; }
            check_close(name, T->state + parts[q].off, want, len, TOL_STATE_REL);
            free(want);
        }
    }
    // the fixtures exercise what they are meant to: the clipping, the parameter scale's floor
    if (strcmp(cfg_name, "clip") == 0) {
        snprintf(name, sizeof(name), "clip: RMS(u) above clip_threshold in %d of %d updates", clipped, steps * k);
        check_true(name, clipped > steps * k / 2);
    }
    if (strcmp(cfg_name, "defaults") == 0) {
        snprintf(name, sizeof(name), "defaults: RMS(p) under eps2 (scale floored) in %d of %d updates", floored, steps * k);
        check_true(name, floored >= steps);
    }
    free_tensors(ts, k);
    st_close(&f.st);
}

// transformers' two refusals, and the missing lr its step() would fail on
static void check_refusals(void) {
    char err[512], name[160];
    AdafactorConfig c = adafactor_defaults();
    check_true("adafactor_check accepts transformers' defaults", adafactor_check(&c, err, sizeof(err)) == 0);
    struct { const char* what; AdafactorConfig c; const char* want; } cases[4];
    cases[0].what = "explicit lr with relative_step";
    cases[0].c = c; cases[0].c.has_lr = 1; cases[0].c.lr = 1e-3;
    cases[0].want = "Cannot combine manual `lr` and `relative_step=True`";
    cases[1].what = "warmup_init without relative_step";
    cases[1].c = c; cases[1].c.has_lr = 1; cases[1].c.lr = 1e-3; cases[1].c.relative_step = 0; cases[1].c.warmup_init = 1;
    cases[1].want = "`warmup_init=True` requires `relative_step=True`";
    cases[2].what = "no lr and no relative_step";
    cases[2].c = c; cases[2].c.relative_step = 0;
    cases[2].want = "needs an lr";
    cases[3].what = "beta1 = 1";
    cases[3].c = c; cases[3].c.has_beta1 = 1; cases[3].c.beta1 = 1.0;
    cases[3].want = "beta1 must be in [0, 1)";
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = 0;
        int rc = adafactor_check(&cases[i].c, err, sizeof(err));
        snprintf(name, sizeof(name), "adafactor_check refuses %s", cases[i].what);
        int ok = rc != 0 && strstr(err, cases[i].want) != NULL;
        printf("%-62s %s\n      -> %s\n", name, ok ? "OK" : "FAIL", rc ? err : "(accepted!)");
        verdict(ok, name);
    }
}

// steps first..last of every tensor of a fixture
static void run_steps(Fixture* f, const AdafactorConfig* c, Tensor* ts, int k, int first, int last) {
    for (int t = first; t <= last; t++)
        for (int i = 0; i < k; i++) {
            char key[64];
            snprintf(key, sizeof(key), "%s.g%d", ts[i].name, t);
            float* g = fx_f32(f, key, NULL);
            adafactor_update(ts[i].p, g, ts[i].state, ts[i].rows, ts[i].cols, ts[i].factored, c, t, c->lr);
            free(g);
        }
}

// 3 steps, the weights and states through a file as one flat fp32 array each, 3 more steps: bit-identical
// to 6 steps in one go (the state is the whole of the optimizer's memory besides the step count)
static void check_resume(const char* cfg_name) {
    Fixture f;
    char err[1024], name[128];
    snprintf(f.path, sizeof(f.path), "dev/fixtures/adafactor/%s.safetensors", cfg_name);
    if (st_open(&f.st, f.path, err, sizeof(err))) { printf("%s\n", err); check_true(f.path, 0); return; }
    AdafactorConfig c = config_from_fixture(&f);
    Tensor a[MAX_TENSORS], b[MAX_TENSORS];
    int k = load_tensors(&f, &c, a);
    load_tensors(&f, &c, b);
    run_steps(&f, &c, a, k, 1, 6);
    run_steps(&f, &c, b, k, 1, 3);
    FILE* tmp = tmpfile();
    int io_ok = tmp != NULL;
    for (int i = 0; i < k && io_ok; i++) {
        size_t ns = adafactor_state_floats(b[i].rows, b[i].cols, b[i].factored, c.has_beta1);
        io_ok = fwrite(b[i].p, sizeof(float), b[i].n, tmp) == b[i].n && fwrite(b[i].state, sizeof(float), ns, tmp) == ns;
    }
    free_tensors(b, k);
    load_tensors(&f, &c, b); // fresh buffers, filled from the file
    if (io_ok) rewind(tmp);
    for (int i = 0; i < k && io_ok; i++) {
        size_t ns = adafactor_state_floats(b[i].rows, b[i].cols, b[i].factored, c.has_beta1);
        io_ok = fread(b[i].p, sizeof(float), b[i].n, tmp) == b[i].n && fread(b[i].state, sizeof(float), ns, tmp) == ns;
    }
    if (tmp) fclose(tmp);
    run_steps(&f, &c, b, k, 4, 6);
    int same = io_ok;
    for (int i = 0; i < k; i++) {
        size_t ns = adafactor_state_floats(a[i].rows, a[i].cols, a[i].factored, c.has_beta1);
        same = same && memcmp(a[i].p, b[i].p, a[i].n * sizeof(float)) == 0 && memcmp(a[i].state, b[i].state, ns * sizeof(float)) == 0;
    }
    snprintf(name, sizeof(name), "%s: 3 steps, state saved + reloaded, 3 steps == 6 steps (bitwise)", cfg_name);
    check_true(name, same);
    free_tensors(a, k);
    free_tensors(b, k);
    st_close(&f.st);
}

int main(void) {
    enable_flush_to_zero();
    const char* configs[] = { "t5", "defaults", "warmup", "beta1_wd", "beta1_wd_plain", "clip", "eps_decay" };
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) check_fixture(configs[i]);
    check_refusals();
    check_resume("beta1_wd");
    check_resume("defaults");
    printf("test_adafactor: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? EXIT_FAILURE : EXIT_SUCCESS;
}
