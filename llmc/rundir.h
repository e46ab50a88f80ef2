// rundir.h — a training run's directory, shared by train_t5 (CPU) and train_t5cu (GPU):
//
//   OUT/metrics.jsonl                    one JSON object per line: train steps, evaluations, run events
//   OUT/checkpoints/ckpt_NNNNNNNNN.bin   the newest --keep-checkpoints, named by optimizer step
//   OUT/run.lock                         held by the one process training in OUT (rundir_lock)
//
// The log's first record ("start", or "resume") holds the model's parameter count and how many of
// them train; its last ("end", or "stop") the padding fraction and the process's peak memory. The
// comparison report reads them back (metrics_run_info) for the models a run wrote (OUT/model,
// OUT/adapter, OUT/checkpoints/...: rundir_of).
//
// Checkpoints are written elsewhere (llmc/checkpoint.h, durably); this file names, lists, prunes
// and picks them, and keeps the metrics log consistent with the checkpoint a run resumes from.
#ifndef T5_RUNDIR_H
#define T5_RUNDIR_H

#include <stdio.h>      // defines: FILE, fopen, fprintf, snprintf, sscanf, fgets
#include <stdlib.h>     // defines: strtoll
#include <string.h>     // defines: strcmp, strlen, strstr, strchr
#include <math.h>       // defines: isfinite, NAN
#include <sys/stat.h>   // defines: stat, S_ISREG
#include <dirent.h>     // defines: opendir, readdir, closedir
#include <unistd.h>     // defines: unlink, read, write, ftruncate, getpid, close
#include <fcntl.h>      // defines: open, O_RDWR, O_CREAT
#include <sys/file.h>   // defines: flock, LOCK_EX, LOCK_NB
#include "fileio.h"     // defines: AtomicFile, atomic_open, atomic_write, atomic_close, mkdir_p, fsync_parent_dir
#include "checkpoint.h" // defines: CkptTrainState
#include "json.h"       // defines: json_parse, json_find, json_free (metrics_run_info)

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

// deletes all but the newest `keep` checkpoints of the run, then syncs the directory so that the deletions
// are as durable as the checkpoint that made them possible. Call it only after the newest checkpoint is
// durable (ckpt_save has returned 0: written, synced, renamed, its directory synced); never while another
// checkpoint of the run is being written by a different process. 0, or -1 after a warning on stderr
// (a checkpoint that could not be removed, a directory that could not be synced): a failed prune costs
// disk space, never a checkpoint, so callers may go on.
static inline int ckpt_prune(const char* out_dir, int keep) {
    char dir[4096], path[4400], err[4600];
    snprintf(dir, sizeof(dir), "%s/checkpoints", out_dir);
    long long steps[CKPT_MAX_LISTED];
    int n = ckpt_list(dir, steps, CKPT_MAX_LISTED), rc = 0, removed = 0;
    for (int i = keep; i < n; i++) {
        ckpt_path(path, sizeof(path), out_dir, steps[i]);
        if (unlink(path) == 0) removed++;
        else { fprintf(stderr, "warning: could not remove old checkpoint %s: %s\n", path, strerror(errno)); rc = -1; }
    }
    if (removed > 0 && fsync_parent_dir(path, err, sizeof(err))) { fprintf(stderr, "warning: %s\n", err); rc = -1; }
    return rc;
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

// creates OUT and opens its metrics log with the run's first record ("start", or "resume" at `step`):
// the model's parameters and the trainable ones among them (all of them in full fine-tuning, the
// adapter's under LoRA, where `params` counts the frozen base). NULL after a message
static inline FILE* metrics_start(const char* out_dir, int resumed, long long step, long long total_steps, size_t params,
                                  size_t trainable) {
    char err[1024];
    if (mkdir_p(out_dir, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return NULL; }
    FILE* f = metrics_open(out_dir, resumed, step);
    if (!f) return NULL;
    fprintf(f, "{\"type\": \"%s\", \"step\": %lld, \"total_steps\": %lld, \"params\": %zu, \"trainable\": %zu}\n",
            resumed ? "resume" : "start", step, total_steps, params, trainable);
    fflush(f);
    return f;
}

// the run's last record: "end" (all steps run) or "stop" (a signal, an error), with the share of padding
// in the training batches and the process's peak memory in MiB (< 0: unknown, written as null), and
// which memory that is: "resident" (the CPU process's peak resident set) or "device" (the GPU memory in
// use at its highest, as cudaMemGetInfo counts it). f NULL: no log, nothing to do
static inline void metrics_end(FILE* f, int finished, long long step, double padding, double peak_mib, const char* peak_memory) {
    if (!f) return;
    fprintf(f, "{\"type\": \"%s\", \"step\": %lld", finished ? "end" : "stop", step);
    json_num(f, "padding_fraction", padding);
    json_num(f, "peak_mib", peak_mib >= 0.0 ? peak_mib : NAN);
    fprintf(f, ", \"peak_memory\": \"%s\"}\n", peak_memory);
    fflush(f);
}

// ----------------------------------------------------------------------------
// reading a run back: what its log says about the run, for the comparison report

typedef struct {
    long long trainable;  // trainable parameters, from the last start/resume record (-1: not in the log)
    long long params;     // the model's parameters (the base's under LoRA), same record (-1: not in the log)
    long long steps;      // train records read
    double step_ms;       // median "ms" of the train records (NAN: none)
    double peak_mib;      // the largest "peak_mib" of the end/stop records (NAN: none; a resumed run has several)
    char peak_memory[16]; // what peak_mib measured ("resident", "device"), "" unknown
    long long bad_lines;  // lines that are not a JSON object (skipped: the log is informational here)
} RunInfo;

static inline RunInfo run_info_unknown(void) {
    RunInfo r;
    memset(&r, 0, sizeof(r));
    r.trainable = r.params = -1;
    r.step_ms = r.peak_mib = NAN;
    return r;
}

static inline int metrics_cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

// the number at obj[key], or NAN when absent, null or not a number
static inline double metrics_field(const JsonValue* obj, const char* key) {
    const JsonValue* v = json_find(obj, key);
    return v && v->type == JSON_NUMBER ? v->number : NAN;
}

// one record into r; train records' "ms" go to (*ms)[*n] (grown as needed)
static inline void metrics_take_record(const JsonValue* rec, RunInfo* r, double** ms, size_t* n, size_t* cap) {
    const JsonValue* type = json_find(rec, "type");
    const char* t = type && type->type == JSON_STRING ? type->string : "";
    if (strcmp(t, "start") == 0 || strcmp(t, "resume") == 0) {
        double tr = metrics_field(rec, "trainable"), p = metrics_field(rec, "params");
        r->trainable = tr >= 0.0 ? (long long)tr : -1; // an old log without the field: unknown
        r->params = p >= 0.0 ? (long long)p : -1;
    } else if (strcmp(t, "train") == 0) {
        double x = metrics_field(rec, "ms");
        r->steps++;
        if (!(x >= 0.0 && isfinite(x))) return;
        if (*n == *cap) {
            double* g = (double*)realloc(*ms, (*cap = *cap ? 2 * *cap : 256) * sizeof(double));
            if (!g) return; // out of memory: this step's time is left out
            *ms = g;
        }
        (*ms)[(*n)++] = x;
    } else if (strcmp(t, "end") == 0 || strcmp(t, "stop") == 0) {
        double x = metrics_field(rec, "peak_mib");
        const JsonValue* what = json_find(rec, "peak_memory");
        if (!(x >= 0.0) || (x <= r->peak_mib)) return; // NAN compares false: the first known value is taken
        r->peak_mib = x;
        snprintf(r->peak_memory, sizeof(r->peak_memory), "%s", what && what->type == JSON_STRING ? what->string : "");
    }
}

// reads PATH (a run's metrics.jsonl) into *r: what it holds, each field unknown where it does not (an old
// log, a run killed early). A line that does not parse is skipped and counted in r->bad_lines; a last line
// without its newline is a record still being written, skipped silently. 0, or -1 if PATH cannot be opened.
static inline int metrics_run_info(const char* path, RunInfo* r) {
    *r = run_info_unknown();
    FILE* f = fopen(path, "rb");
    if (!f) return -1;
    char* line = NULL;
    size_t linecap = 0, n = 0, cap = 0;
    double* ms = NULL;
    for (ssize_t len; (len = getline(&line, &linecap, f)) > 0; ) {
        JsonValue rec;
        char why[128];
        if (line[len - 1] != '\n') break; // torn last line
        if (len == 1) continue;          // a blank line
        if (json_parse(line, (size_t)len, &rec, why, sizeof(why)) || rec.type != JSON_OBJECT) { r->bad_lines++; json_free(&rec); continue; }
        metrics_take_record(&rec, r, &ms, &n, &cap);
        json_free(&rec);
    }
    free(line);
    fclose(f);
    if (n > 0) {
        qsort(ms, n, sizeof(double), metrics_cmp_double);
        r->step_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    }
    free(ms);
    return 0;
}

// the evaluations OUT/metrics.jsonl records after step lo up to step hi, or -1 when it cannot be read. A
// resumed run's count of evaluations since its best: best.json holds the count as of its last write, which
// may be past the resumed checkpoint (killed after an evaluation, before the next checkpoint)
static inline int metrics_count_evals(const char* out_dir, long long lo, long long hi) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", out_dir);
    FILE* f = fopen(path, "rb");
    if (!f) return -1;
    char* line = NULL;
    size_t linecap = 0;
    int n = 0;
    for (ssize_t len; (len = getline(&line, &linecap, f)) > 0; ) {
        JsonValue rec;
        char why[128];
        if (line[len - 1] != '\n') break; // torn last line
        if (json_parse(line, (size_t)len, &rec, why, sizeof(why)) == 0 && rec.type == JSON_OBJECT) {
            const JsonValue* type = json_find(&rec, "type");
            double step = metrics_field(&rec, "step");
            if (type && type->type == JSON_STRING && strcmp(type->string, "eval") == 0 && step > (double)lo && step <= (double)hi) n++;
        }
        json_free(&rec);
    }
    free(line);
    fclose(f);
    return n;
}

// the run directory that PATH (a model directory, a checkpoint file or an adapter directory) was written
// into, when it lies in one: RUN/model, RUN/adapter, RUN/<dir> → RUN; RUN/checkpoints/<file> → RUN. 0 with
// RUN in buf when RUN/metrics.jsonl is there, else -1
static inline int rundir_of(const char* path, char* buf, size_t n) {
    char log[4400];
    struct stat st;
    size_t len = (size_t)snprintf(buf, n, "%s", path);
    if (len >= n || len == 0) return -1;
    while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
    for (int up = 0; up < 2; up++) { // the parent, and past a checkpoints/ folder its parent
        char* slash = strrchr(buf, '/');
        if (!slash) snprintf(buf, n, ".");
        else if (slash == buf) buf[1] = '\0';
        else *slash = '\0';
        const char* base = strrchr(buf, '/');
        if (strcmp(base ? base + 1 : buf, "checkpoints") != 0) break;
    }
    snprintf(log, sizeof(log), "%s/metrics.jsonl", buf);
    return stat(log, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -1;
}

#endif // T5_RUNDIR_H
