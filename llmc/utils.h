// utils.h — checked wrappers for the C standard library, used by programs (not loaders).
// Each *Check prints the failing call, the file and the line, then exits: only top-level
// program code uses them. Loaders that parse files return an error instead (STYLE.md §8).
#ifndef T5_UTILS_H
#define T5_UTILS_H

#include <stdio.h>   // defines: FILE, fopen, fread, fprintf
#include <stdlib.h>  // defines: malloc, calloc, exit
#include <string.h>  // defines: strerror
#include <errno.h>   // defines: errno

static inline FILE* fopen_check(const char* path, const char* mode, const char* file, int line) {
    FILE* f = fopen(path, mode);
    if (f == NULL) {
        fprintf(stderr, "error: cannot open '%s' (mode %s): %s\n  at %s:%d\n", path, mode, strerror(errno), file, line);
        exit(EXIT_FAILURE);
    }
    return f;
}
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)

static inline void* malloc_check(size_t size, const char* file, int line) {
    void* p = malloc(size == 0 ? 1 : size);
    if (p == NULL) {
        fprintf(stderr, "error: out of memory allocating %zu bytes\n  at %s:%d\n", size, file, line);
        exit(EXIT_FAILURE);
    }
    return p;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

static inline void* calloc_check(size_t n, size_t size, const char* file, int line) {
    void* p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL) {
        fprintf(stderr, "error: out of memory allocating %zu x %zu bytes\n  at %s:%d\n", n, size, file, line);
        exit(EXIT_FAILURE);
    }
    return p;
}
#define callocCheck(n, size) calloc_check(n, size, __FILE__, __LINE__)

static inline void* realloc_check(void* old, size_t size, const char* file, int line) {
    void* p = realloc(old, size == 0 ? 1 : size);
    if (p == NULL) {
        fprintf(stderr, "error: out of memory growing a buffer to %zu bytes\n  at %s:%d\n", size, file, line);
        exit(EXIT_FAILURE);
    }
    return p;
}
#define reallocCheck(old, size) realloc_check(old, size, __FILE__, __LINE__)

// Subnormal floats (below 1.2e-38) make x86 multiply-adds ~100x slower; softmax tails and their
// gradients produce many of them. Flush them to zero on every OpenMP thread (FTZ + DAZ), as GPU
// kernels do by default. Every program calls this first, tests included, so what is tested is what runs.
#if defined(__SSE3__)
#include <pmmintrin.h>  // defines: _MM_SET_FLUSH_ZERO_MODE, _MM_SET_DENORMALS_ZERO_MODE
#endif
static inline void enable_flush_to_zero(void) {
#if defined(__SSE3__)
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
    #pragma omp parallel
    {
        _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
        _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
    }
#endif
}

// a monotonic clock in milliseconds (step times, benchmarks)
#include <time.h>    // defines: clock_gettime, CLOCK_MONOTONIC
static inline double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

// this process's peak resident memory in MiB (Linux: VmHWM of /proc/self/status, the high-water mark
// of the program's own address space since exec, unlike getrusage, which also counts a parent's pages
// from before the exec); -1 where unavailable
static inline double peak_rss_mib(void) {
    FILE* f = fopen("/proc/self/status", "r");
    if (!f) return -1.0;
    char line[256];
    double kib = -1.0;
    while (kib < 0 && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0) kib = strtod(line + 6, NULL);
    fclose(f);
    return kib < 0 ? -1.0 : kib / 1024.0;
}

// The OpenMP queries the engine makes, also when it is built without OpenMP (NO_OMP=1: one thread,
// never inside a parallel region).
#ifdef _OPENMP
#include <omp.h>  // defines: omp_get_thread_num, omp_get_num_threads, omp_get_max_threads, omp_in_parallel
static inline int par_thread(void) { return omp_get_thread_num(); }
static inline int par_team(void) { return omp_get_num_threads(); }
static inline int par_max_threads(void) { return omp_get_max_threads(); }
static inline int par_active(void) { return omp_in_parallel(); }
#else
static inline int par_thread(void) { return 0; }
static inline int par_team(void) { return 1; }
static inline int par_max_threads(void) { return 1; }
static inline int par_active(void) { return 0; }
#endif

#endif // T5_UTILS_H
