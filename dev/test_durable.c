/*
dev/test_durable.c — tests for durable publication (llmc/fileio.h, checkpoint.h, rundir.h), the background
checkpoint writer (llmc/async_save.h) and the stalled-rank watchdog (llmc/watchdog.h). One line per check,
exit code = verdict. Runs in a few seconds (the watchdog children stall for about a second each, in parallel).

    make build/test_durable && ./build/test_durable
    ./build/test_durable --publish DIR   publishes one file of each writer into DIR (an atomic file, a checkpoint
                                         written in the background with the run's pruning, a safetensors file),
                                         for dev/check_fsync_order.sh to trace

A full disk is made with a 1 MiB tmpfs when the process may mount one (root with CAP_SYS_ADMIN); otherwise
PATH.tmp is made a symbolic link to /dev/full, where every write fails with ENOSPC.
*/
#include <stdio.h>        // defines: printf, fopen, fread
#include <stdlib.h>       // defines: malloc, free, mkdtemp
#include <string.h>       // defines: strstr, memcmp
#include <unistd.h>       // defines: fork, pipe, dup2, usleep, symlink, access, rmdir
#include <sys/wait.h>     // defines: waitpid, WIFEXITED, WEXITSTATUS
#include <sys/mount.h>    // defines: mount, umount2, MNT_DETACH
#include <sys/stat.h>     // defines: stat
#include <dirent.h>       // defines: opendir, readdir (removing the temp dir)
#include "llmc/fileio.h"      // defines: AtomicFile, atomic_open, atomic_write, atomic_close, disk_space_check, fsync_parent_dir
#include "llmc/checkpoint.h"  // defines: ckpt_save, ckpt_load, CkptInfo
#include "llmc/rundir.h"      // defines: ckpt_path, ckpt_list, ckpt_prune
#include "llmc/safetensors.h" // defines: st_write_f32, StWriteTensor
#include "llmc/async_save.h"  // defines: AsyncSaver, AsyncJob, async_save_start/_wait/_poll/_busy, CkptJob, ckpt_job_stage
#include "llmc/watchdog.h"    // defines: Watchdog, WatchdogConfig, watchdog_start/_enter/_leave/_announce/_stop

// ----------------------------------------------------------------------------
// bookkeeping (no globals: a context)

typedef struct {
    int passed, failed;
    char dir[256];
} TestCtx;

static void check(TestCtx* tc, const char* name, int ok, const char* detail) {
    printf("%-62s %s", name, ok ? "OK" : "FAIL");
    if (detail != NULL && detail[0] != '\0') printf("  (%s)", detail);
    printf("\n");
    if (ok) tc->passed++; else tc->failed++;
}

static double now_s(void) { return (double)watchdog_now_ns() * 1e-9; }

// the whole file into buf (at most cap bytes); its length, or -1
static long read_all(const char* path, char* buf, size_t cap) {
    FILE* f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return (long)n;
}

static int exists(const char* path) { struct stat st; return lstat(path, &st) == 0; }

static void remove_tree(const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return;
    char path[4400];
    for (struct dirent* e; (e = readdir(d)) != NULL; ) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(path);
        else unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int atomic_write_file(const char* path, const void* data, size_t n, char* err, size_t errlen) {
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) return -1;
    int ok = atomic_write(&a, data, n, err, errlen) == 0;
    return atomic_close(&a, ok, err, errlen);
}

static T5Config tiny_config(void) {
    T5Config c = { .vocab_size = 20, .d_model = 8, .d_kv = 4, .num_heads = 2, .d_ff = 12, .num_layers = 2,
                   .num_decoder_layers = 2, .num_buckets = 8, .max_distance = 16, .eps = 1e-6f, .dropout = 0.1f,
                   .act = ACT_GELU_TANH, .gated = 1, .tied = 0, .scale_out = 0, .pad_id = 0, .eos_id = 1,
                   .decoder_start_id = 0 };
    return c;
}

// ----------------------------------------------------------------------------
// durable publication

static void test_atomic(TestCtx* tc) {
    char path[512], tmp[520], buf[64], err[1024] = "";
    snprintf(path, sizeof(path), "%s/atomic.txt", tc->dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int rc = atomic_write_file(path, "first version", 13, err, sizeof(err));
    long n = read_all(path, buf, sizeof(buf));
    check(tc, "atomic write: new file has the written bytes", rc == 0 && n == 13 && memcmp(buf, "first version", 13) == 0, err);
    rc = atomic_write_file(path, "second", 6, err, sizeof(err));
    n = read_all(path, buf, sizeof(buf));
    check(tc, "atomic write: replaces an existing file whole", rc == 0 && n == 6 && memcmp(buf, "second", 6) == 0, err);
    check(tc, "atomic write: no PATH.tmp left", !exists(tmp), tmp);
    AtomicFile a;
    rc = atomic_open(&a, path, err, sizeof(err)) || atomic_write(&a, "half", 4, err, sizeof(err));
    rc |= atomic_close(&a, 0, err, sizeof(err)) != -1; // an earlier step failed: abandoned
    n = read_all(path, buf, sizeof(buf));
    check(tc, "atomic write abandoned: old file kept, no PATH.tmp", rc == 0 && n == 6 && !exists(tmp), "");
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/no_such_dir/x", tc->dir);
    rc = fsync_parent_dir(missing, err, sizeof(err));
    check(tc, "fsync_parent_dir: a missing directory is an error naming it", rc == -1 && strstr(err, "no_such_dir"), err);
    rc = fsync_parent_dir(path, err, sizeof(err));
    check(tc, "fsync_parent_dir: the test directory syncs", rc == 0, "");
}

static void test_space_message(TestCtx* tc) {
    char err[1024] = "";
    uint64_t absurd = 1ull << 62; // 4 EiB: no disk has it
    int rc = disk_space_check("/", absurd, err, sizeof(err));
    int ok = rc == -1 && strstr(err, "/: not enough free space") && strstr(err, "4611686018427387904 bytes") &&
             strstr(err, "GiB) needed") && strstr(err, "free");
    check(tc, "disk_space_check: 4 EiB on / refused, message names dir/need/free", ok, err);
    rc = disk_space_check("/", 1, err, sizeof(err));
    check(tc, "disk_space_check: 1 byte on / fits", rc == 0, "");
    rc = disk_space_check("/no/such/dir", 1, err, sizeof(err));
    check(tc, "disk_space_check: a missing directory is an error naming it", rc == -1 && strstr(err, "/no/such/dir"), err);
    char h[32];
    check(tc, "human_bytes: 2.97 GiB, 1.5 MiB", strcmp(human_bytes(3188000000ull, h, sizeof(h)), "2.97 GiB") == 0 &&
          strcmp(human_bytes(3u << 19, h, sizeof(h)), "1.5 MiB") == 0, h);
}

// 3 checkpoints, keep 1: the newest stays
static void test_prune(TestCtx* tc) {
    T5Config c = tiny_config();
    T5Layout L;
    t5_layout(&c, &L);
    float* p = (float*)calloc(L.total, sizeof(float));
    char out[512], path[4400], dir[600], err[1024] = "";
    snprintf(out, sizeof(out), "%s/run_prune", tc->dir);
    int rc = 0;
    for (long long s = 1; s <= 3; s++) {
        ckpt_path(path, sizeof(path), out, s);
        rc |= ckpt_save(path, &c, p, NULL, NULL, (int64_t)L.total, s, NULL, err, sizeof(err));
    }
    rc |= ckpt_prune(out, 1);
    long long steps[8];
    snprintf(dir, sizeof(dir), "%s/checkpoints", out);
    int n = ckpt_list(dir, steps, 8);
    check(tc, "ckpt_prune: keep 1 of 3 leaves the newest", rc == 0 && n == 1 && steps[0] == 3, err);
    free(p);
}

// ----------------------------------------------------------------------------
// a full disk: a 1 MiB tmpfs, else PATH.tmp -> /dev/full

typedef struct { char dir[600]; int mounted; } FullDisk;

static int full_disk_open(TestCtx* tc, FullDisk* fd) {
    snprintf(fd->dir, sizeof(fd->dir), "%s/tmpfs", tc->dir);
    mkdir(fd->dir, 0755);
    fd->mounted = mount("tmpfs", fd->dir, "tmpfs", 0, "size=1m") == 0;
    if (!fd->mounted) printf("(no tmpfs: mount failed: %s; using PATH.tmp -> /dev/full)\n", strerror(errno));
    return fd->mounted;
}

static void full_disk_close(FullDisk* fd) {
    if (fd->mounted) umount2(fd->dir, MNT_DETACH);
}

// a job that writes 4 MiB with no free-space check (the disk filled after the check): ENOSPC mid-write
typedef struct { char path[700]; int done_called; } BigWrite;

static int big_write(void* ctx, char* err, size_t errlen) {
    BigWrite* b = (BigWrite*)ctx;
    size_t n = 4u << 20;
    char* data = (char*)calloc(n, 1);
    int rc = data ? atomic_write_file(b->path, data, n, err, errlen) : -1;
    free(data);
    return rc;
}
static void big_write_done(void* ctx) { ((BigWrite*)ctx)->done_called = 1; }

static void test_enospc(TestCtx* tc) {
    FullDisk fd;
    int mounted = full_disk_open(tc, &fd);
    char path[700], tmp[710], buf[64], err[1024] = "";
    snprintf(path, sizeof(path), "%s/ckpt.bin", fd.dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int rc = atomic_write_file(path, "previous", 8, err, sizeof(err));
    check(tc, "full disk: the previous file is written", rc == 0, err);
    if (!mounted && symlink("/dev/full", tmp) != 0) {
        printf("skipped: ENOSPC in a background write (no tmpfs, and no symlink to /dev/full: %s)\n", strerror(errno));
        return;
    }
    AsyncSaver s;
    if (async_saver_init(&s, err, sizeof(err))) { check(tc, "async_saver_init", 0, err); return; }
    BigWrite b;
    memset(&b, 0, sizeof(b));
    snprintf(b.path, sizeof(b.path), "%s", path);
    AsyncJob job = { big_write, big_write_done, &b, "" };
    snprintf(job.what, sizeof(job.what), "%s", path);
    rc = async_save_start(&s, &job, err, sizeof(err));
    int polled = 0;
    for (double t0 = now_s(); rc == 0 && now_s() - t0 < 10.0 && !polled; usleep(2000))
        polled = async_save_poll(&s, err, sizeof(err)) == -1;
    check(tc, "ENOSPC in the background: async_save_poll reports it", polled && strstr(err, "No space left on device") &&
          strstr(err, "background checkpoint write of") && strstr(err, path), err);
    check(tc, "ENOSPC: the job's done function ran", b.done_called, "");
    check(tc, "ENOSPC: no PATH.tmp left", !exists(tmp), tmp);
    long n = read_all(path, buf, sizeof(buf));
    check(tc, "ENOSPC: the previous file is intact", n == 8 && memcmp(buf, "previous", 8) == 0, "");
    // the same through async_save_wait
    if (!mounted && symlink("/dev/full", tmp) != 0) printf("(symlink: %s)\n", strerror(errno));
    rc = async_save_start(&s, &job, err, sizeof(err));
    err[0] = 0;
    int waited = rc == 0 ? async_save_wait(&s, err, sizeof(err)) : 0;
    check(tc, "ENOSPC in the background: async_save_wait reports it", waited == -1 && strstr(err, "No space left"), err);
    check(tc, "ENOSPC: reported once (the next wait returns 0)", async_save_wait(&s, err, sizeof(err)) == 0, "");
    n = read_all(path, buf, sizeof(buf));
    check(tc, "ENOSPC: still no PATH.tmp, previous file intact", !exists(tmp) && n == 8, "");
    // a checkpoint larger than the free space is refused before a byte is written
    if (mounted) {
        T5Config c = tiny_config();
        int64_t nf = 1 << 20; // 4 MiB of parameters (the header's config is not checked by the writer)
        float* p = (float*)calloc((size_t)nf, sizeof(float));
        CkptJob* j = ckpt_job_stage(p, NULL, NULL, nf);
        snprintf(j->path, sizeof(j->path), "%s", path);
        j->config = c;
        AsyncJob cj = ckpt_job_async(j);
        rc = async_save_start(&s, &cj, err, sizeof(err));
        waited = rc == 0 ? async_save_wait(&s, err, sizeof(err)) : 0;
        check(tc, "checkpoint over free space: refused up front with sizes", waited == -1 &&
              strstr(err, "tmpfs: not enough free space for ckpt.bin: 4194816 bytes (4.0 MiB) needed") && strstr(err, fd.dir), err);
        n = read_all(path, buf, sizeof(buf));
        check(tc, "checkpoint over free space: previous file intact, no PATH.tmp", n == 8 && !exists(tmp), "");
        free(p);
    } else {
        printf("skipped: checkpoint over free space (needs a tmpfs of known size)\n");
    }
    async_saver_free(&s);
    full_disk_close(&fd);
}

// ----------------------------------------------------------------------------
// the saver's ordering: one job in flight, start waits, wait/poll report

typedef struct {
    int id;
    int sleep_ms;
    int fail;
    int* log;      // order of events: +id at the start of write, -id at its end, 100+id at done
    int* nlog;
    pthread_mutex_t* mu;
} OrderJob;

static void log_event(OrderJob* o, int e) {
    pthread_mutex_lock(o->mu);
    o->log[(*o->nlog)++] = e;
    pthread_mutex_unlock(o->mu);
}
static int order_write(void* ctx, char* err, size_t errlen) {
    OrderJob* o = (OrderJob*)ctx;
    log_event(o, o->id);
    usleep((useconds_t)o->sleep_ms * 1000);
    log_event(o, -o->id);
    if (o->fail) { snprintf(err, errlen, "job %d failed on purpose", o->id); return -1; }
    return 0;
}
static void order_done(void* ctx) { OrderJob* o = (OrderJob*)ctx; log_event(o, 100 + o->id); }

static AsyncJob order_job(OrderJob* o) {
    AsyncJob j = { order_write, order_done, o, "" };
    snprintf(j.what, sizeof(j.what), "job%d.bin", o->id);
    return j;
}

static void test_ordering(TestCtx* tc) {
    AsyncSaver s;
    char err[1024] = "", detail[256];
    if (async_saver_init(&s, err, sizeof(err))) { check(tc, "async_saver_init", 0, err); return; }
    int log[64], nlog = 0;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    OrderJob o[6];
    for (int i = 0; i < 6; i++) o[i] = (OrderJob){ i + 1, 0, 0, log, &nlog, &mu };
    o[0].sleep_ms = 300;
    AsyncJob j1 = order_job(&o[0]), j2 = order_job(&o[1]);
    double t0 = now_s();
    int rc = async_save_start(&s, &j1, err, sizeof(err));
    int busy = async_save_busy(&s);
    int poll_busy = async_save_poll(&s, err, sizeof(err)); // in flight, nothing failed: 0
    double t_start1 = now_s() - t0;
    rc |= async_save_start(&s, &j2, err, sizeof(err));
    double t_start2 = now_s() - t0;
    pthread_mutex_lock(&mu);
    int first_done = nlog >= 3 && log[0] == 1 && log[1] == -1 && log[2] == 101; // job 1 finished before start 2 returned
    pthread_mutex_unlock(&mu);
    snprintf(detail, sizeof(detail), "start 1 returned after %.3f s, start 2 after %.3f s", t_start1, t_start2);
    check(tc, "start returns at once; busy while a job is in flight", rc == 0 && busy && poll_busy == 0 && t_start1 < 0.1, detail);
    check(tc, "a second start waits for the first job to finish", first_done && t_start2 >= 0.29, detail);
    rc = async_save_wait(&s, err, sizeof(err));
    check(tc, "wait: 0 after good jobs, then idle", rc == 0 && !async_save_busy(&s) && s.finished == 2, "");
    int in_order = nlog == 6 && log[3] == 2 && log[4] == -2 && log[5] == 102;
    check(tc, "jobs ran one at a time, in order (write, then done)", in_order, "");
    // a failure is returned by wait, once
    o[2].fail = 1;
    AsyncJob j3 = order_job(&o[2]);
    rc = async_save_start(&s, &j3, err, sizeof(err));
    err[0] = 0;
    int w1 = async_save_wait(&s, err, sizeof(err));
    check(tc, "wait returns the failed job's status and message", rc == 0 && w1 == -1 &&
          strstr(err, "background checkpoint write of job3.bin failed: job 3 failed on purpose"), err);
    check(tc, "a failure is reported once", async_save_wait(&s, err, sizeof(err)) == 0 && async_save_poll(&s, err, sizeof(err)) == 0, "");
    // an unreported failure stops the next start: the new job is not run, its staging is released
    o[3].fail = 1;
    AsyncJob j4 = order_job(&o[3]), j5 = order_job(&o[4]);
    rc = async_save_start(&s, &j4, err, sizeof(err));
    err[0] = 0;
    int st5 = async_save_start(&s, &j5, err, sizeof(err));
    pthread_mutex_lock(&mu);
    int ran5 = 0, done5 = 0;
    for (int i = 0; i < nlog; i++) { ran5 |= log[i] == 5; done5 |= log[i] == 105; }
    pthread_mutex_unlock(&mu);
    check(tc, "start after an unreported failure: -1 with it, job not run", rc == 0 && st5 == -1 && strstr(err, "job 4 failed") &&
          !ran5 && done5, err);
    AsyncJob j6 = order_job(&o[5]);
    rc = async_save_start(&s, &j6, err, sizeof(err)) || async_save_wait(&s, err, sizeof(err));
    check(tc, "the saver goes on after a reported failure", rc == 0 && s.finished == 5, err);
    async_saver_free(&s);
    check(tc, "a freed saver is idle and reports nothing", !async_save_busy(&s) && async_save_wait(&s, err, sizeof(err)) == 0, "");
}

// a staged checkpoint is what was staged, whatever training does to the live buffers meanwhile
static void test_ckpt_job(TestCtx* tc) {
    T5Config c = tiny_config();
    T5Layout L;
    t5_layout(&c, &L);
    int64_t n = (int64_t)L.total;
    float* live = (float*)malloc(3 * (size_t)n * sizeof(float));
    for (int64_t i = 0; i < 3 * n; i++) live[i] = (float)i * 0.25f;
    char out[512], err[1024] = "";
    snprintf(out, sizeof(out), "%s/run_async", tc->dir);
    AsyncSaver s;
    if (async_saver_init(&s, err, sizeof(err))) { check(tc, "async_saver_init", 0, err); free(live); return; }
    int rc = 0;
    for (long long step = 10; step <= 30; step += 10) {
        CkptJob* j = ckpt_job_stage(live, live + n, live + 2 * n, n);
        ckpt_path(j->path, sizeof(j->path), out, step);
        snprintf(j->out_dir, sizeof(j->out_dir), "%s", out);
        j->keep = 2;
        j->config = c;
        j->step = step;
        j->train.run_step = step;
        AsyncJob job = ckpt_job_async(j);
        rc |= async_save_start(&s, &job, err, sizeof(err));
        if (step < 30) for (int64_t i = 0; i < 3 * n; i++) live[i] += 1.0f; // training goes on (not after the last)
    }
    for (int64_t i = 0; i < 3 * n; i++) live[i] += 1000.0f; // after the last stage: must not reach the file
    rc |= async_save_wait(&s, err, sizeof(err));
    async_saver_free(&s);
    char path[4400], dir[600];
    ckpt_path(path, sizeof(path), out, 30);
    CkptInfo info;
    float *p = NULL, *m = NULL, *v = NULL;
    int lrc = ckpt_load(path, &info, &p, &m, &v, err, sizeof(err));
    int same = lrc == 0 && info.has_opt && info.step == 30 && info.train.run_step == 30;
    for (int64_t i = 0; same && i < n; i++)
        same = p[i] == (float)i * 0.25f + 2.0f && m[i] == (float)(n + i) * 0.25f + 2.0f && v[i] == (float)(2 * n + i) * 0.25f + 2.0f;
    check(tc, "background checkpoint = the staged state (CRC checked on load)", rc == 0 && same, err);
    long long steps[8];
    snprintf(dir, sizeof(dir), "%s/checkpoints", out);
    int k = ckpt_list(dir, steps, 8);
    check(tc, "the job pruned to --keep-checkpoints 2 after writing", k == 2 && steps[0] == 30 && steps[1] == 20, "");
    free(p); free(m); free(v); free(live);
}

// ----------------------------------------------------------------------------
// the watchdog, in forked children (it ends the process it watches)

typedef struct { const char* name; pid_t pid; int out; double t0; } Child;

static void on_timeout_note(void* ctx, const char* what) {
    (void)ctx;
    fprintf(stderr, "on_timeout called: %.20s\n", what);
}
static void on_timeout_hang(void* ctx, const char* what) {
    (void)ctx; (void)what;
    for (;;) pause(); // an abort that never returns: the grace period ends the process
}

// mode 0: stalls in allreduce; 1: announced wait, left in time, then a stall in "second"; 2: watchdog off;
// 3: on_timeout hangs; 4: stops the watchdog while inside an op (never fires)
static void watchdog_child(int mode) {
    Watchdog w;
    char err[256];
    WatchdogConfig cfg = { mode == 2 ? 0.0 : 1.0, 3, 0.1, mode == 3 ? 0.5 : 0.0,
                           mode == 3 ? on_timeout_hang : on_timeout_note, NULL };
    if (watchdog_start(&w, &cfg, err, sizeof(err))) { fprintf(stderr, "%s\n", err); _exit(2); }
    if (mode == 1) {
        watchdog_announce(&w, "rank 0 evaluating", 3.0);
        watchdog_enter(&w, "barrier", 7);
        usleep(2000000); // 2 s: over the timeout, inside the announced bound
        watchdog_leave(&w);
        watchdog_enter(&w, "second", 8); // the announcement ended with the leave
        usleep(2500000);
        _exit(0);
    }
    watchdog_enter(&w, "allreduce", 42);
    usleep(mode == 4 ? 300000 : mode == 3 ? 10000000 : 2500000); // a stall exits 124 only through the watchdog
    if (mode == 4) {
        double t0 = now_s();
        watchdog_stop(&w);
        if (now_s() - t0 > 0.2) { fprintf(stderr, "watchdog_stop took %.3f s\n", now_s() - t0); _exit(3); }
        usleep(1500000); // still "inside": a stopped watchdog never fires
    }
    watchdog_leave(&w);
    _exit(0);
}

static Child spawn_child(const char* name, int mode) {
    Child c = { name, -1, -1, now_s() };
    int p[2];
    if (pipe(p) != 0) return c;
    fflush(stdout);
    c.pid = fork();
    if (c.pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        watchdog_child(mode);
    }
    close(p[1]);
    c.out = p[0];
    return c;
}

// waits for all the children (in the order they end: each one's lifetime is its own), then reads their
// stderr (a few lines: the pipe holds it); exit codes (-1: not a normal exit) and seconds lived
static void reap_children(Child* kids, int n, char out[][2048], int* code, double* secs) {
    for (int left = n; left > 0; left--) {
        int status = 0;
        pid_t pid = wait(&status);
        for (int i = 0; i < n; i++) {
            if (kids[i].pid != pid || pid <= 0) continue;
            secs[i] = now_s() - kids[i].t0;
            code[i] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        if (pid <= 0) break;
    }
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        for (ssize_t r; kids[i].out >= 0 && len + 1 < 2048 && (r = read(kids[i].out, out[i] + len, 2047 - len)) > 0; ) len += (size_t)r;
        out[i][len] = 0;
        if (kids[i].out >= 0) close(kids[i].out);
    }
}

static void test_watchdog(TestCtx* tc) {
    const char* names[5] = { "stall", "announce", "off", "hanging callback", "stopped" };
    Child kids[5];
    for (int i = 0; i < 5; i++) kids[i] = spawn_child(names[i], i);
    char out[5][2048], detail[2400];
    int code[5] = { -2, -2, -2, -2, -2 };
    double secs[5] = { 0 };
    reap_children(kids, 5, out, code, secs);
    for (int i = 0; i < 5; i++) {
        char* nl;
        while ((nl = strchr(out[i], '\n')) != NULL) *nl = '|'; // one line per check
    }
    snprintf(detail, sizeof(detail), "exit %d after %.2f s: %s", code[0], secs[0], out[0]);
    check(tc, "watchdog: stall past 1 s exits 124 with rank/op/step line", code[0] == WATCHDOG_EXIT_CODE &&
          strstr(out[0], "watchdog: rank 3 stalled 1.") && strstr(out[0], "s in allreduce at step 42 (timeout 1 s)") &&
          strstr(out[0], "on_timeout called: watchdog: rank 3") && secs[0] > 1.0, detail);
    snprintf(detail, sizeof(detail), "exit %d after %.2f s: %s", code[1], secs[1], out[1]);
    check(tc, "watchdog: announce +3 s covers a 2 s wait; leave ends it", code[1] == WATCHDOG_EXIT_CODE &&
          !strstr(out[1], "in barrier") && strstr(out[1], "in second at step 8 (timeout 1 s)") && secs[1] > 2.9, detail);
    snprintf(detail, sizeof(detail), "exit %d after %.2f s: %s", code[2], secs[2], out[2]);
    check(tc, "watchdog: timeout 0 is off (a 2.5 s wait passes)", code[2] == 0 && !strstr(out[2], "watchdog"), detail);
    snprintf(detail, sizeof(detail), "exit %d after %.2f s: %s", code[3], secs[3], out[3]);
    check(tc, "watchdog: a hanging on_timeout ends after the grace period", code[3] == WATCHDOG_EXIT_CODE &&
          strstr(out[3], "stalled") && strstr(out[3], "the abort did not finish in 0.5 s") && secs[3] > 1.4 && secs[3] < 9.0, detail);
    snprintf(detail, sizeof(detail), "exit %d after %.2f s: %s", code[4], secs[4], out[4]);
    check(tc, "watchdog: stop is immediate, and nothing fires after it", code[4] == 0 && !strstr(out[4], "watchdog"), detail);
    Watchdog w;
    char err[256] = "";
    WatchdogConfig bad = { -1.0, 0, 0, 0, NULL, NULL };
    check(tc, "watchdog: a negative timeout is refused", watchdog_start(&w, &bad, err, sizeof(err)) == -1 && err[0], err);
}

// ----------------------------------------------------------------------------
// --publish DIR: one file of each writer, for dev/check_fsync_order.sh (strace)

static int publish(const char* dir) {
    char path[4400], err[1024];
    T5Config c = tiny_config();
    T5Layout L;
    t5_layout(&c, &L);
    float* p = (float*)calloc(3 * L.total, sizeof(float));
    snprintf(path, sizeof(path), "%s/plain.txt", dir);
    if (atomic_write_file(path, "hello\n", 6, err, sizeof(err))) goto fail;
    AsyncSaver s;
    if (async_saver_init(&s, err, sizeof(err))) goto fail;
    for (long long step = 1; step <= 2; step++) { // the second prunes the first (keep 1)
        CkptJob* j = ckpt_job_stage(p, p + L.total, p + 2 * L.total, (int64_t)L.total);
        ckpt_path(j->path, sizeof(j->path), dir, step);
        snprintf(j->out_dir, sizeof(j->out_dir), "%s", dir);
        j->keep = 1;
        j->config = c;
        AsyncJob job = ckpt_job_async(j);
        if (async_save_start(&s, &job, err, sizeof(err))) { async_saver_free(&s); goto fail; }
    }
    int rc = async_save_wait(&s, err, sizeof(err));
    async_saver_free(&s);
    if (rc) goto fail;
    StWriteTensor t = { "w", 1, { 4 }, p };
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if (st_write_f32(path, &t, 1, NULL, 0, err, sizeof(err))) goto fail;
    free(p);
    printf("published into %s\n", dir);
    return 0;
fail:
    free(p);
    fprintf(stderr, "error: %s\n", err);
    return 1;
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "--publish") == 0) return publish(argv[2]);
    if (argc != 1) { fprintf(stderr, "usage: test_durable [--publish DIR]\n"); return 2; }
    TestCtx tc;
    memset(&tc, 0, sizeof(tc));
    snprintf(tc.dir, sizeof(tc.dir), "/tmp/test_durable_XXXXXX");
    if (!mkdtemp(tc.dir)) { perror("mkdtemp"); return 1; }
    test_watchdog(&tc); // first: fork before this process has other threads
    test_atomic(&tc);
    test_space_message(&tc);
    test_prune(&tc);
    test_enospc(&tc);
    test_ordering(&tc);
    test_ckpt_job(&tc);
    remove_tree(tc.dir);
    printf("test_durable: %d passed, %d failed\n", tc.passed, tc.failed);
    return tc.failed ? 1 : 0;
}
