// rundir.h — a training run's directory, shared by train_t5 (CPU) and train_t5cu (GPU):
//
//   OUT/metrics.jsonl                    one JSON object per line: train steps, evaluations, run events
//   OUT/checkpoints/ckpt_NNNNNNNNN.bin   the newest --keep-checkpoints, named by optimizer step
//   OUT/run.lock                         held by the one process training in OUT (rundir_lock)
//
// Checkpoints are written elsewhere (llmc/checkpoint.h, atomically); this file names, lists, prunes
// and picks them, and keeps the metrics log consistent with the checkpoint a run resumes from.
#ifndef T5_RUNDIR_H
#define T5_RUNDIR_H

#include <stdio.h>      // defines: FILE, fopen, fprintf, snprintf, sscanf, fgets
#include <stdlib.h>     // defines: strtoll
#include <string.h>     // defines: strcmp, strlen, strstr, strchr
#include <math.h>       // defines: isfinite
#include <dirent.h>     // defines: opendir, readdir, closedir
#include <unistd.h>     // defines: unlink, read, write, ftruncate, getpid, close
#include <fcntl.h>      // defines: open, O_RDWR, O_CREAT
#include <sys/file.h>   // defines: flock, LOCK_EX, LOCK_NB
#include "fileio.h"     // defines: AtomicFile, atomic_open, atomic_write, atomic_close, mkdir_p
#include "checkpoint.h" // defines: CkptTrainState

#define CKPT_PREFIX "ckpt_"
#define CKPT_SUFFIX ".bin"
#define CKPT_MAX_LISTED 4096

// steps of the checkpoints in dir, newest first; returns how many (at most max)
static inline int ckpt_list(const char* dir, long long* steps, int max) {
    DIR* d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent* e; (e = readdir(d)) != NULL && n < max; ) {
        long long s;
        char tail[8];
        if (sscanf(e->d_name, CKPT_PREFIX "%lld%7s", &s, tail) == 2 && strcmp(tail, CKPT_SUFFIX) == 0 && s >= 0) steps[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++) // insertion sort, newest first
        for (int j = i; j > 0 && steps[j] > steps[j - 1]; j--) { long long t = steps[j]; steps[j] = steps[j - 1]; steps[j - 1] = t; }
    return n;
}

static inline void ckpt_path(char* buf, size_t len, const char* out_dir, long long step) {
    snprintf(buf, len, "%s/checkpoints/" CKPT_PREFIX "%09lld" CKPT_SUFFIX, out_dir, step);
}

// leftovers of a write that was killed (PATH.tmp) are never read; remove them
static inline void ckpt_remove_stale(const char* out_dir) {
    char dir[4096], path[4400];
    snprintf(dir, sizeof(dir), "%s/checkpoints", out_dir);
    DIR* d = opendir(dir);
    if (!d) return;
    for (struct dirent* e; (e = readdir(d)) != NULL; ) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            if (unlink(path) == 0) printf("removed %s (an interrupted checkpoint write)\n", path);
        }
    }
    closedir(d);
}

// deletes all but the newest `keep` checkpoints of the run
static inline void ckpt_prune(const char* out_dir, int keep) {
    char dir[4096], path[4400];
    snprintf(dir, sizeof(dir), "%s/checkpoints", out_dir);
    long long steps[CKPT_MAX_LISTED];
    int n = ckpt_list(dir, steps, CKPT_MAX_LISTED);
    for (int i = keep; i < n; i++) {
        ckpt_path(path, sizeof(path), out_dir, steps[i]);
        if (unlink(path) != 0) fprintf(stderr, "warning: could not remove old checkpoint %s\n", path);
    }
}

// One run at a time in a run directory: a second process (the same command started twice, a resume
// while the first still runs) would interleave the log, race the checkpoints, and delete the other's
// checkpoint being written as a stale leftover. OUT/run.lock is held with flock for the life of the
// process (the kernel drops it at exit, also after kill -9) and names the holder's pid. 0, or -1 with
// a message. Local file systems only: flock may be a no-op on some network mounts.
static inline int rundir_lock(const char* out_dir, char* err, size_t errlen) {
    char path[4400];
    if (mkdir_p(out_dir, err, errlen)) return -1;
    snprintf(path, sizeof(path), "%s/run.lock", out_dir);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = read(fd, pid, sizeof(pid) - 1);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen, "%s is in use by another training process (pid %s): wait for it to finish, or choose another "
                 "--out-dir", out_dir, pid[0] ? pid : "unknown");
        close(fd);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)len) != len) { /* the lock holds without the pid */ }
    return 0; // fd stays open: the lock lasts until the process ends
}

// a fresh run must not overwrite another run's checkpoints
static inline int check_fresh_run_dir(const char* out_dir) {
    char dir[4096];
    long long steps[1];
    snprintf(dir, sizeof(dir), "%s/checkpoints", out_dir);
    if (ckpt_list(dir, steps, 1) == 0) return 0;
    fprintf(stderr, "error: %s already holds checkpoints of a run: pass --resume latest to continue it, or choose "
            "another --out-dir\n", dir);
    return -1;
}

// a resumed run continues with the data position of its checkpoint, which only means the same
// thing under the same global batch (batch size x ranks), accumulation and seed; the number of
// ranks may change if the global batch stays the same. 0, or -1 with a message naming `from`.
static inline int ckpt_check_geometry(const CkptTrainState* ts, long long batch_size, int ranks, long long grad_accum,
                                      long long seed, const char* from) {
    long long global = batch_size * ranks, was = (long long)(ts->batch_size * (ts->num_ranks > 0 ? ts->num_ranks : 1));
    if (was == global && ts->grad_accum == grad_accum && ts->seed == seed) return 0;
    fprintf(stderr, "error: %s was written with a global batch of %lld (--batch-size %lld x %lld ranks), --grad-accum "
            "%lld, --seed %lld; resume with the same global batch, accumulation and seed\n", from, was,
            (long long)ts->batch_size, (long long)ts->num_ranks, (long long)ts->grad_accum, (long long)ts->seed);
    return -1;
}

// JSON has no NaN/Inf: non-finite numbers are written as null
static inline void json_num(FILE* f, const char* key, double x) {
    if (isfinite(x)) fprintf(f, ", \"%s\": %.9g", key, x);
    else fprintf(f, ", \"%s\": null", key);
}

// on resume, the log keeps only the records up to the checkpoint's step (a killed run may have
// logged steps past its last checkpoint); rewritten atomically
static inline int metrics_truncate(const char* path, long long step, char* err, size_t errlen) {
    FILE* in = fopen(path, "rb");
    if (!in) return 0;
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) { fclose(in); return -1; }
    char line[8192];
    int ok = 1;
    while (ok && fgets(line, sizeof(line), in)) {
        const char* s = strstr(line, "\"step\": ");
        if (s && strtoll(s + 8, NULL, 10) > step) continue;
        if (strchr(line, '\n') == NULL) continue; // a torn last line from a killed run
        ok = atomic_write(&a, line, strlen(line), err, errlen) == 0;
    }
    fclose(in);
    return atomic_close(&a, ok, err, errlen);
}

// OUT/metrics.jsonl for appending (resumed: cut back to `step` first) or writing anew; NULL on error
static inline FILE* metrics_open(const char* out_dir, int resumed, long long step) {
    char path[4400], err[1024];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", out_dir);
    if (resumed && metrics_truncate(path, step, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return NULL; }
    FILE* f = fopen(path, resumed ? "ab" : "wb");
    if (!f) fprintf(stderr, "error: %s: cannot open for writing\n", path);
    return f;
}

// creates OUT and opens its metrics log with the run's first record ("start", or "resume" at `step`);
// NULL after a message
static inline FILE* metrics_start(const char* out_dir, int resumed, long long step, long long total_steps, size_t params) {
    char err[1024];
    if (mkdir_p(out_dir, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return NULL; }
    FILE* f = metrics_open(out_dir, resumed, step);
    if (!f) return NULL;
    fprintf(f, "{\"type\": \"%s\", \"step\": %lld, \"total_steps\": %lld, \"params\": %zu}\n", resumed ? "resume" : "start",
            step, total_steps, params);
    fflush(f);
    return f;
}

#endif // T5_RUNDIR_H
