// async_save.h — checkpoints written by a background thread while training goes on (docs/durability.md).
//
// The training thread only stages: it copies the state a checkpoint needs (parameters, AdamW moments,
// the header's fields) into memory the job owns, hands the job over, and trains on. The saver's one
// thread runs the job's write function: checksum, write, fsync, rename, directory fsync, pruning (all
// of it lives in the write function: ckpt_job_write below does ckpt_save + ckpt_prune), then its done
// function (freeing the staged copy).
//
// The contract:
//   - at most one job in flight: async_save_start first waits for the previous job;
//   - a failed job is reported exactly once, by whichever of async_save_poll (at a step boundary),
//     async_save_start (the next checkpoint) or async_save_wait (the end of the run) comes first, with
//     its message; a failure is never overwritten by a later job (start refuses to start one then);
//   - async_save_wait blocks until no job is in flight: call it before the final checkpoint, before a
//     stop (signal) checkpoint, at the end of the run, and before anything reads or deletes the
//     checkpoints directory (ckpt_remove_stale would delete the in-flight PATH.tmp).
// Host memory: one staged copy of the state while a job is in flight (12 bytes per parameter for full
// fine-tuning with AdamW in fp32).
//
// Valid C and C++ (the CUDA driver includes it); needs -pthread (glibc ≥ 2.34 has it in libc).
#ifndef T5_ASYNC_SAVE_H
#define T5_ASYNC_SAVE_H

#include <stdio.h>      // defines: snprintf
#include <stdint.h>     // defines: int64_t, uint32_t
#include <stdlib.h>     // defines: malloc, free
#include <string.h>     // defines: memcpy, strerror
#include <pthread.h>    // defines: pthread_t, pthread_mutex_t, pthread_cond_t, pthread_create, pthread_join
#include "checkpoint.h" // defines: ckpt_save, CkptTrainState, T5Config
#include "lora.h"       // defines: lora_ckpt_save, LoraConfig
#include "rundir.h"     // defines: ckpt_prune

// one background write. write runs on the saver's thread and returns 0, or -1 with a message in err;
// done (may be NULL) runs after it, on the same thread, whatever write returned: it releases ctx
typedef struct {
    int (*write)(void* ctx, char* err, size_t errlen);
    void (*done)(void* ctx);
    void* ctx;
    char what[512]; // for messages: the file being written
} AsyncJob;

typedef struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;     // signalled when a job is handed over, when one finishes, and to stop
    int running;           // the thread exists (async_saver_init succeeded)
    int pending;           // a job was handed over and has not finished
    int stop;              // async_saver_free: finish the job in flight, then end the thread
    AsyncJob job;          // the job handed over (valid while pending)
    int failed;            // the last finished job failed, and no call has reported it yet
    char err[1024];        // its message
    long long finished;    // jobs finished (for tests and logs)
} AsyncSaver;

static inline void* async_saver_main(void* arg) {
    AsyncSaver* s = (AsyncSaver*)arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->pending) break; // stop, nothing left to do
        AsyncJob job = s->job;
        pthread_mutex_unlock(&s->mu);
        char err[1024] = "";
        int rc = job.write(job.ctx, err, sizeof(err));
        if (job.done) job.done(job.ctx);
        pthread_mutex_lock(&s->mu);
        s->failed = rc != 0;
        if (rc != 0) snprintf(s->err, sizeof(s->err), "background checkpoint write of %s failed: %s", job.what,
                              err[0] ? err : "(no message)");
        s->pending = 0;
        s->finished++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// starts the saver's thread. 0, or -1 with a message
static inline int async_saver_init(AsyncSaver* s, char* err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = pthread_create(&s->thread, NULL, async_saver_main, s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the checkpoint writer thread: %s", strerror(rc));
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        return -1;
    }
    s->running = 1;
    return 0;
}

// caller holds s->mu: takes the unreported failure, if any, into err
static inline int async_save_take_failure(AsyncSaver* s, char* err, size_t errlen) {
    if (!s->failed) return 0;
    s->failed = 0;
    snprintf(err, errlen, "%s", s->err);
    return -1;
}

// waits for the job in flight (if any) to finish. 0, or -1 with the message of a failure not reported yet
static inline int async_save_wait(AsyncSaver* s, char* err, size_t errlen) {
    if (!s->running) return 0;
    pthread_mutex_lock(&s->mu);
    while (s->pending) pthread_cond_wait(&s->cv, &s->mu);
    int rc = async_save_take_failure(s, err, errlen);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

// hands JOB to the thread after the previous job finished. -1 with a message, and JOB not run (its done
// function is called, releasing its staging), when the previous job failed unreported or the saver
// is not running; 0 when handed over
static inline int async_save_start(AsyncSaver* s, const AsyncJob* job, char* err, size_t errlen) {
    if (!s->running) {
        snprintf(err, errlen, "%s: the checkpoint writer is not running", job->what);
        if (job->done) job->done(job->ctx);
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    while (s->pending) pthread_cond_wait(&s->cv, &s->mu);
    int rc = async_save_take_failure(s, err, errlen);
    if (rc == 0) {
        s->job = *job;
        s->pending = 1;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != 0 && job->done) job->done(job->ctx);
    return rc;
}

// never blocks on a write: -1 with the message when a job has failed since the last report, else 0 (also
// while a job is in flight). For the step boundary: a failed background write stops the run there.
static inline int async_save_poll(AsyncSaver* s, char* err, size_t errlen) {
    if (!s->running) return 0;
    pthread_mutex_lock(&s->mu); // held by the thread only between jobs, never during a write
    int rc = async_save_take_failure(s, err, errlen);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

// is a job in flight?
static inline int async_save_busy(AsyncSaver* s) {
    if (!s->running) return 0;
    pthread_mutex_lock(&s->mu);
    int busy = s->pending;
    pthread_mutex_unlock(&s->mu);
    return busy;
}

// finishes the job in flight (its failure, if unreported, is lost: call async_save_wait first) and ends
// the thread
static inline void async_saver_free(AsyncSaver* s) {
    if (!s->running) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    s->running = 0;
}

// ----------------------------------------------------------------------------
// a checkpoint as a job: the staged copy of a model's state, written by ckpt_save (full fine-tuning) or
// lora_ckpt_save (an adapter), then the run's old checkpoints pruned (only after the new one is durable)

typedef struct {
    char path[4400];        // the checkpoint file (ckpt_path)
    char out_dir[4096];     // the run directory, for ckpt_prune; "" = no pruning
    int keep;               // --keep-checkpoints
    float* state;           // owned: n floats, or n + opt_floats (params | m | v, or params | Adafactor state) when has_opt
    int64_t n;
    int has_opt;
    int opt_kind, af_beta1; // OptimKind of the state; Adafactor: M in it
    int64_t opt_floats;     // 2n (AdamW) or the Adafactor state's length
    int64_t step;           // the optimizer step in the header
    CkptTrainState train;
    int lora;               // 0: ckpt_save with config; 1: lora_ckpt_save with lora_config, base_n, base_crc
    T5Config config;
    LoraConfig lora_config;
    int64_t base_n;
    uint32_t base_crc;
} CkptJob;

// a CkptJob with room for the state: n floats, 3n with the optimizer state; the caller fills job->state
// (a memcpy on the CPU engine, a device-to-host copy on the GPU one) and the header fields. NULL when out
// of memory
static inline CkptJob* ckpt_job_alloc(int64_t n, int has_opt) {
    CkptJob* j = (CkptJob*)calloc(1, sizeof(CkptJob));
    if (!j) return NULL;
    j->state = (float*)malloc((size_t)n * (has_opt ? 3 : 1) * sizeof(float));
    if (!j->state) { free(j); return NULL; }
    j->n = n;
    j->has_opt = has_opt;
    j->opt_floats = has_opt ? 2 * n : 0;
    return j;
}

// a job holding copies of params and of the optimizer state opt describes (NULL or no buffers: none)
static inline CkptJob* ckpt_job_stage_opt(const float* params, const CkptOpt* opt, int64_t n) {
    int64_t nopt = ckpt_opt_floats(opt, n);
    CkptJob* j = (CkptJob*)calloc(1, sizeof(CkptJob));
    if (!j) return NULL;
    j->state = (float*)malloc((size_t)(n + nopt) * sizeof(float) + 1);
    if (!j->state) { free(j); return NULL; }
    j->n = n; j->has_opt = nopt > 0; j->opt_floats = nopt;
    memcpy(j->state, params, (size_t)n * sizeof(float));
    if (nopt) {
        j->opt_kind = opt->kind; j->af_beta1 = opt->af_beta1;
        if (opt->kind == OPTIM_ADAFACTOR) memcpy(j->state + n, opt->af, (size_t)nopt * sizeof(float));
        else { memcpy(j->state + n, opt->m, (size_t)n * sizeof(float)); memcpy(j->state + 2 * n, opt->v, (size_t)n * sizeof(float)); }
    }
    return j;
}

// the staging step of the CPU engine: a job holding copies of params (and m, v when both are given)
static inline CkptJob* ckpt_job_stage(const float* params, const float* m, const float* v, int64_t n) {
    CkptJob* j = ckpt_job_alloc(n, m && v);
    if (!j) return NULL;
    memcpy(j->state, params, (size_t)n * sizeof(float));
    if (j->has_opt) {
        memcpy(j->state + n, m, (size_t)n * sizeof(float));
        memcpy(j->state + 2 * n, v, (size_t)n * sizeof(float));
    }
    return j;
}

static inline int ckpt_job_write(void* ctx, char* err, size_t errlen) {
    const CkptJob* j = (const CkptJob*)ctx;
    CkptOpt o = { j->opt_kind, j->af_beta1, NULL, NULL, NULL, 0 };
    if (j->has_opt && j->opt_kind == OPTIM_ADAFACTOR) { o.af = j->state + j->n; o.af_n = j->opt_floats; }
    else if (j->has_opt) { o.m = j->state + j->n; o.v = j->state + 2 * j->n; }
    int rc = j->lora ? lora_ckpt_save_opt(j->path, &j->lora_config, j->state, &o, j->n, j->step, j->base_n, j->base_crc,
                                          (const int64_t*)&j->train, err, errlen)
                     : ckpt_save_opt(j->path, &j->config, j->state, &o, j->n, j->step, &j->train, err, errlen);
    if (rc == 0 && j->out_dir[0]) ckpt_prune(j->out_dir, j->keep); // warns; a failed prune loses no checkpoint
    return rc;
}

static inline void ckpt_job_free(void* ctx) {
    CkptJob* j = (CkptJob*)ctx;
    if (!j) return;
    free(j->state);
    free(j);
}

// the AsyncJob that writes J and then frees it
static inline AsyncJob ckpt_job_async(CkptJob* j) {
    AsyncJob job;
    memset(&job, 0, sizeof(job));
    job.write = ckpt_job_write;
    job.done = ckpt_job_free;
    job.ctx = j;
    snprintf(job.what, sizeof(job.what), "%s", j->path);
    return job;
}

#endif // T5_ASYNC_SAVE_H
