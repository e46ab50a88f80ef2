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

#endif // T5_TESTING_H
