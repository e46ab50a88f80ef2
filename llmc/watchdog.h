// watchdog.h — a stalled-rank watchdog (docs/durability.md). Under mpirun a rank that dies or hangs leaves
// the others blocked forever in their next collective: on a rented machine that is a bill for N GPUs
// doing nothing until a person notices. Each rank runs one watchdog thread; the training thread marks
// the operations where it waits for other ranks (collectives, the step-boundary agreement, barriers)
// with watchdog_enter / watchdog_leave. The thread wakes every poll_s and, when the rank has been inside
// one such operation longer than its bound, prints
//     watchdog: rank R stalled N s in OP at step S (timeout T s): ...
// to stderr, calls on_timeout (the driver writes a last record to metrics.jsonl and calls MPI_Abort /
// ncclCommAbort there), and ends the process with _exit(WATCHDOG_EXIT_CODE) if the callback returns.
// If the callback itself hangs (an abort that blocks on a dead peer), the process still ends after
// abort_grace_s.
//
// The bound of an operation is timeout_s plus what watchdog_announce added: a rank that legitimately
// waits for a busy peer (rank 0 evaluating, or writing a checkpoint synchronously) announces it with the
// longest that phase may take. An announcement holds for the operation in progress, or for the next one
// when none is, and ends at watchdog_leave.
//
// Cost on the training thread: watchdog_enter / watchdog_leave are a clock read (clock_gettime through
// the vDSO, no system call) and a few atomic stores; no lock, no allocation. The watchdog thread reads
// that state with atomic loads and a sequence number, so it never sees one operation's start with
// another's name.
//
// Recommended default for the driver: --watchdog-timeout 300 (seconds; 0 turns it off).
//   - It bounds one wait for the other ranks, not a run or a step. A healthy wait lasts as long as the
//     skew between ranks: milliseconds to a few seconds (different batch lengths, data loading). The
//     largest legitimate skew is a rank meeting a new shape first and building its plans (cuBLASLt
//     heuristics, cuDNN graphs, a CUDA graph capture): seconds, tens of seconds at worst. 300 s is
//     ten times that with room for a slow shared file system or a swapping host.
//   - It is half of PyTorch's NCCL watchdog default (10 min, TORCH_NCCL timeout), because our steps are
//     shorter and the phases that are legitimately long are bounded separately: evaluation and a
//     synchronous checkpoint write are announced with their own bound (the driver should pass
//     --watchdog-timeout + the phase's own limit, e.g. 1800 s for an evaluation), the background
//     checkpoint writer is not watched (it is this rank's own disk, reported by async_save_poll), and
//     the first step (lazy initialisation, the first plans) is announced with +600 s.
//   - On a failure it costs at most 5 minutes of N machines, instead of the hours until someone looks.
//
// WATCHDOG_EXIT_CODE is 124, the code of coreutils' timeout(1): "ran out of time", which schedulers and
// scripts already read that way; distinct from 1 (an error the program explains), 130/143 (a stop after
// SIGINT/SIGTERM, with a checkpoint) and 128+n (killed by a signal). mpirun returns it when the driver
// passes it to MPI_Abort.
//
// Valid C and C++ (the CUDA driver includes it); atomics are GCC/Clang's __atomic builtins, which both
// languages have. Needs -pthread (glibc ≥ 2.34 has it in libc).
#ifndef T5_WATCHDOG_H
#define T5_WATCHDOG_H

#include <stdio.h>      // defines: fprintf, snprintf
#include <stdint.h>     // defines: int64_t, uint64_t
#include <string.h>     // defines: memset, strerror
#include <time.h>       // defines: clock_gettime, CLOCK_MONOTONIC, timespec
#include <unistd.h>     // defines: _exit
#include <pthread.h>    // defines: pthread_create, pthread_join, pthread_mutex_t, pthread_cond_t, pthread_condattr_setclock

#define WATCHDOG_EXIT_CODE 124
#define WATCHDOG_DEFAULT_TIMEOUT_S 300.0

typedef struct {
    double timeout_s;      // the bound of one guarded operation; 0 = off (no thread is started)
    int rank;
    double poll_s;         // how often the thread looks (0.5 s when 0)
    double abort_grace_s;  // how long on_timeout may take before the process ends anyway (30 s when 0)
    void (*on_timeout)(void* ctx, const char* what); // may be NULL; runs on the watchdog's thread
    void* ctx;
} WatchdogConfig;

typedef struct {
    WatchdogConfig cfg;
    pthread_t thread;
    pthread_mutex_t mu;    // with cv: lets watchdog_stop wake the thread at once
    pthread_cond_t cv;
    int running;           // the thread exists
    int stop;              // under mu
    // written by the training thread, read by the watchdog thread: only through __atomic builtins
    int64_t since_ns;      // when the current operation was entered (CLOCK_MONOTONIC); 0 = not inside one
    int64_t extra_ns;      // announced extension of the bound
    int64_t step;
    const char* op;        // a string that outlives the operation (a literal)
    const char* phase;     // the announced phase (a literal), NULL when none
    uint64_t seq;          // odd while enter / leave / announce write, even when consistent
} Watchdog;

static inline int64_t watchdog_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

// the training thread's writes: a sequence number around them (a seqlock with one writer)
static inline void watchdog_write_begin(Watchdog* w) {
    __atomic_store_n(&w->seq, __atomic_load_n(&w->seq, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}
static inline void watchdog_write_end(Watchdog* w) {
    __atomic_store_n(&w->seq, __atomic_load_n(&w->seq, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}

// the rank starts waiting in OP (a string literal) at STEP
static inline void watchdog_enter(Watchdog* w, const char* op, long long step) {
    int64_t now = watchdog_now_ns();
    watchdog_write_begin(w);
    __atomic_store_n(&w->op, op, __ATOMIC_RELAXED);
    __atomic_store_n(&w->step, (int64_t)step, __ATOMIC_RELAXED);
    __atomic_store_n(&w->since_ns, now, __ATOMIC_RELAXED);
    watchdog_write_end(w);
}

// the wait is over; an announcement ends with it
static inline void watchdog_leave(Watchdog* w) {
    watchdog_write_begin(w);
    __atomic_store_n(&w->since_ns, (int64_t)0, __ATOMIC_RELAXED);
    __atomic_store_n(&w->extra_ns, (int64_t)0, __ATOMIC_RELAXED);
    __atomic_store_n(&w->phase, (const char*)NULL, __ATOMIC_RELAXED);
    watchdog_write_end(w);
}

// the wait in progress (or the next one) may last extra_s longer: PHASE (a literal) says why
static inline void watchdog_announce(Watchdog* w, const char* phase, double extra_s) {
    watchdog_write_begin(w);
    __atomic_store_n(&w->phase, phase, __ATOMIC_RELAXED);
    __atomic_store_n(&w->extra_ns, (int64_t)(extra_s > 0 ? extra_s * 1e9 : 0), __ATOMIC_RELAXED);
    watchdog_write_end(w);
}

typedef struct { int64_t since_ns, extra_ns, step; const char* op; const char* phase; } WatchdogSnapshot;

// a consistent copy of what the training thread wrote; 0, or -1 when it was writing (look again later)
static inline int watchdog_snapshot(Watchdog* w, WatchdogSnapshot* s) {
    uint64_t a = __atomic_load_n(&w->seq, __ATOMIC_ACQUIRE);
    s->since_ns = __atomic_load_n(&w->since_ns, __ATOMIC_RELAXED);
    s->extra_ns = __atomic_load_n(&w->extra_ns, __ATOMIC_RELAXED);
    s->step = __atomic_load_n(&w->step, __ATOMIC_RELAXED);
    s->op = __atomic_load_n(&w->op, __ATOMIC_RELAXED);
    s->phase = __atomic_load_n(&w->phase, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return (a & 1) == 0 && __atomic_load_n(&w->seq, __ATOMIC_RELAXED) == a ? 0 : -1;
}

// ends the process abort_grace_s after the timeout, should on_timeout hang
static inline void* watchdog_reaper_main(void* arg) {
    double grace = *(const double*)arg;
    struct timespec t = { (time_t)grace, (long)((grace - (double)(time_t)grace) * 1e9) };
    while (nanosleep(&t, &t) != 0) {}
    fprintf(stderr, "watchdog: the abort did not finish in %.1f s; exiting\n", grace);
    _exit(WATCHDOG_EXIT_CODE);
    return NULL;
}

// prints the stall, calls on_timeout, ends the process; never returns
static inline void watchdog_fire(Watchdog* w, const WatchdogSnapshot* s, double stalled_s) {
    char what[512], bound[160];
    double extra = (double)s->extra_ns * 1e-9;
    if (extra > 0) snprintf(bound, sizeof(bound), "%.0f s + %.0f s announced for %s", w->cfg.timeout_s, extra,
                            s->phase ? s->phase : "?");
    else snprintf(bound, sizeof(bound), "%.0f s", w->cfg.timeout_s);
    snprintf(what, sizeof(what), "watchdog: rank %d stalled %.1f s in %s at step %lld (timeout %s): another rank died, "
             "hung or lost its connection; aborting the run", w->cfg.rank, stalled_s, s->op ? s->op : "?",
             (long long)s->step, bound);
    fprintf(stderr, "%s\n", what);
    fflush(stderr);
    pthread_t reaper; // if it cannot start, there is no backstop for a hanging on_timeout; the exit below stays
    if (pthread_create(&reaper, NULL, watchdog_reaper_main, &w->cfg.abort_grace_s) == 0) pthread_detach(reaper);
    if (w->cfg.on_timeout) w->cfg.on_timeout(w->cfg.ctx, what);
    _exit(WATCHDOG_EXIT_CODE);
}

static inline void* watchdog_main(void* arg) {
    Watchdog* w = (Watchdog*)arg;
    int64_t poll_ns = (int64_t)(w->cfg.poll_s * 1e9);
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t wake = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec + poll_ns;
        t.tv_sec = (time_t)(wake / 1000000000LL);
        t.tv_nsec = (long)(wake % 1000000000LL);
        while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &t) == 0) {}
        if (w->stop) break;
        WatchdogSnapshot s;
        if (watchdog_snapshot(w, &s) != 0 || s.since_ns == 0) continue;
        double stalled = (double)(watchdog_now_ns() - s.since_ns) * 1e-9;
        if (stalled <= w->cfg.timeout_s + (double)s.extra_ns * 1e-9) continue;
        pthread_mutex_unlock(&w->mu); // watchdog_stop may run meanwhile; it waits for the exit
        watchdog_fire(w, &s, stalled);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

// zeroes W and, when cfg->timeout_s > 0, starts its thread. 0, or -1 with a message (a bad setting, no thread)
static inline int watchdog_start(Watchdog* w, const WatchdogConfig* cfg, char* err, size_t errlen) {
    memset(w, 0, sizeof(*w));
    w->cfg = *cfg;
    if (!(cfg->timeout_s >= 0) || !(cfg->poll_s >= 0) || !(cfg->abort_grace_s >= 0)) {
        snprintf(err, errlen, "watchdog: timeout, poll interval and abort grace must be >= 0 seconds");
        return -1;
    }
    if (cfg->timeout_s == 0) return 0; // off: enter / leave still work, nobody looks
    if (w->cfg.poll_s == 0) w->cfg.poll_s = w->cfg.timeout_s < 1.0 ? w->cfg.timeout_s / 2 : 0.5;
    if (w->cfg.abort_grace_s == 0) w->cfg.abort_grace_s = 30.0;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->mu, NULL);
    int rc = pthread_create(&w->thread, NULL, watchdog_main, w);
    if (rc != 0) {
        snprintf(err, errlen, "watchdog: cannot start its thread: %s", strerror(rc));
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return -1;
    }
    w->running = 1;
    return 0;
}

// stops the thread (at once, not at its next poll); nothing fires after this returns
static inline void watchdog_stop(Watchdog* w) {
    if (!w->running) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->running = 0;
}

#endif // T5_WATCHDOG_H
