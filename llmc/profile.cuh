// profile.cuh — the phase/operation profiler of --bench, opt-in at build time: `make PROFILE=1` compiles it
// in (-DENABLE_PROFILE); without it every call below compiles to nothing, so the training step carries no
// profiling code at all. The GPU engine (train_t5.cu) marks the phases of a step with prof_mark and, under
// --profile ops, every operation with prof_op, on the one stream the profiler was started on.
//
// Events at the phase boundaries of a step (and, with --profile ops, after every operation: matmuls,
// attention, norms, ...), in two sets that alternate by step. A set is read one step later, after that
// step's synchronisation, so timing adds no synchronisation. The interval before a mark is charged to the
// mark's name; names are summed over the steps (static strings). Events are host-visible work between
// kernels: a profiled step cannot be a CUDA graph, so the engine launches eagerly while a profiler runs.
#ifndef T5_PROFILE_CUH
#define T5_PROFILE_CUH

#include <cuda_runtime.h>   // defines: cudaStream_t, cudaEvent_t

#ifdef ENABLE_PROFILE
#include <stdio.h>          // defines: printf
#include <stdlib.h>         // defines: free
#include <string.h>         // defines: strcmp
#include "utils.h"          // defines: mallocCheck, callocCheck
#include "cuda_common.cuh"  // defines: cudaCheck

#define PROF_BUILT 1
#define PROF_PHASE_EVENTS 16
#define PROF_OP_EVENTS 8192 // ops mode: ~40 marks per block
#define PROF_NAMES 64
typedef struct PhaseProf {
    int cap, ops;                   // events per set; 1: operation marks too
    cudaStream_t stream;            // where the marks are recorded (the engine's compute stream)
    cudaEvent_t* ev[2];             // (cap + 1) per set
    const char** name[2];           // (cap) the mark that ends the interval before event i + 1
    unsigned char* phase[2];        // (cap) 1: a phase mark
    int n[2], cur;                  // marks recorded in each set; the set of the running step
    const char* key[2][PROF_NAMES]; // [0] phases, [1] operations: names in first-seen order
    double ms[2][PROF_NAMES];       // their GPU milliseconds, summed over the collected steps
    int nkeys[2], steps;
} PhaseProf;

// a profiler recording on `stream`; ops: every operation timed too (--profile ops)
static PhaseProf* prof_start(cudaStream_t stream, int ops) {
    PhaseProf* p = (PhaseProf*)callocCheck(1, sizeof(PhaseProf));
    p->ops = ops;
    p->stream = stream;
    p->cap = p->ops ? PROF_OP_EVENTS : PROF_PHASE_EVENTS;
    for (int s = 0; s < 2; s++) {
        p->ev[s] = (cudaEvent_t*)mallocCheck((size_t)(p->cap + 1) * sizeof(cudaEvent_t));
        p->name[s] = (const char**)mallocCheck((size_t)p->cap * sizeof(const char*));
        p->phase[s] = (unsigned char*)mallocCheck((size_t)p->cap);
        for (int i = 0; i <= p->cap; i++) cudaCheck(cudaEventCreate(&p->ev[s][i]));
    }
    return p;
}

// a step begins: its events go to the other set
static void prof_begin(PhaseProf* p) {
    if (!p) return;
    p->cur ^= 1;
    p->n[p->cur] = 0;
    cudaCheck(cudaEventRecord(p->ev[p->cur][0], p->stream));
}

static void prof_record(PhaseProf* p, const char* name, int phase) {
    int s = p->cur, i = p->n[s];
    if (i >= p->cap) return;
    p->name[s][i] = name;
    p->phase[s][i] = (unsigned char)phase;
    cudaCheck(cudaEventRecord(p->ev[s][i + 1], p->stream));
    p->n[s] = i + 1;
}

// the phase `name` has been queued
static void prof_mark(PhaseProf* p, const char* name) { if (p) prof_record(p, name, 1); }
// the operation `name` has been queued (--profile ops)
static void prof_op(PhaseProf* p, const char* name) { if (p && p->ops) prof_record(p, name, 0); }

static void prof_add(PhaseProf* p, int table, const char* name, double ms) {
    int k = 0;
    while (k < p->nkeys[table] && strcmp(p->key[table][k], name) != 0) k++;
    if (k == PROF_NAMES) return;
    if (k == p->nkeys[table]) { p->key[table][k] = name; p->ms[table][k] = 0.0; p->nkeys[table]++; }
    p->ms[table][k] += ms;
}

// adds the marks of set s (complete: the caller has synchronised past them) to the totals: every
// interval to its operation, and the intervals since the last phase mark to that phase
static void prof_collect(PhaseProf* p, int s) {
    if (!p || p->n[s] == 0) return;
    double pending = 0.0;
    for (int i = 0; i < p->n[s]; i++) {
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, p->ev[s][i], p->ev[s][i + 1]));
        if (p->ops) prof_add(p, 1, p->name[s][i], ms);
        pending += ms;
        if (p->phase[s][i]) { prof_add(p, 0, p->name[s][i], pending); pending = 0.0; }
    }
    p->steps++;
    p->n[s] = 0;
}
// after a step's synchronisation: the step before it (complete by now)
static void prof_collect_previous(PhaseProf* p) { if (p) prof_collect(p, p->cur ^ 1); }
// after the last step's synchronisation: that step
static void prof_collect_last(PhaseProf* p) { if (p) prof_collect(p, p->cur); }

// one line per table: phases in step order; operations by time, largest first
static void prof_print(const PhaseProf* p) {
    printf("phases (GPU ms per step, mean of %d):", p->steps);
    for (int k = 0; k < p->nkeys[0]; k++) printf(" %s=%.2f", p->key[0][k], p->ms[0][k] / p->steps);
    printf("\n");
    if (!p->ops) return;
    int order[PROF_NAMES];
    for (int k = 0; k < p->nkeys[1]; k++) order[k] = k;
    for (int a = 1; a < p->nkeys[1]; a++) // insertion sort, descending time
        for (int b = a; b > 0 && p->ms[1][order[b]] > p->ms[1][order[b - 1]]; b--) {
            int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
        }
    printf("ops (GPU ms per step, mean of %d):", p->steps);
    for (int k = 0; k < p->nkeys[1]; k++) printf(" %s=%.2f", p->key[1][order[k]], p->ms[1][order[k]] / p->steps);
    printf("\n");
}

static void prof_free(PhaseProf* p) {
    if (!p) return;
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i <= p->cap; i++) cudaCheck(cudaEventDestroy(p->ev[s][i]));
        free(p->ev[s]); free(p->name[s]); free(p->phase[s]);
    }
    free(p);
}

#else
// compiled out (a build without PROFILE=1): no profiler is ever made, its pointers stay NULL, and every
// call is an empty statement whose arguments are not evaluated
#define PROF_BUILT 0
typedef struct PhaseProf PhaseProf; // (never defined in this build)
#define prof_start(stream, ops) ((PhaseProf*)NULL)
#define prof_begin(p) ((void)0)
#define prof_mark(p, name) ((void)0)
#define prof_op(p, name) ((void)0)
#define prof_collect_previous(p) ((void)0)
#define prof_collect_last(p) ((void)0)
#define prof_print(p) ((void)0)
#define prof_free(p) ((void)0)
#endif // ENABLE_PROFILE

#endif // T5_PROFILE_CUH
