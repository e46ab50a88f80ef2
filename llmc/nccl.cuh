// nccl.cuh — the communication of train_t5cu across GPUs and nodes: one process per GPU, NCCL
// collectives, and the bootstrap that gives every process its rank and the NCCL unique id.
//
// Bootstrap (who am I, who are the others), tried in this order:
//   1. --nccl-init-dir DIR: rank, size and node-local rank from the environment (RANK / WORLD_SIZE /
//      LOCAL_RANK as torchrun sets them, else Slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID);
//      rank 0 writes the unique id to DIR/nccl_unique_id (atomically: temporary file, then rename) and
//      the others poll for it. DIR is on a filesystem every node sees and must not hold an id of an
//      earlier run (rank 0 refuses to start then): use a fresh one per job, e.g. DIR/$SLURM_JOB_ID.
//   2. an MPI launcher (mpirun, srun with PMI/PMIx; llmc/dist.h recognises it): ranks from MPI, the
//      id broadcast from rank 0 with MPI_Bcast.
//   3. neither: one process, no communicator; every collective below is the identity.
// The process then takes GPU local_rank (cudaSetDevice) before any other CUDA call.
//
// Streams: bucket reductions during the backward pass run on comm->stream, ordered after the
// compute stream's work by an event (comm_wait_for) and joined back before the optimizer reads the
// gradients (comm_join). Whole-step collectives (loss sum, ZeRO-1 gathers) run on the caller's stream.
// A collective with one rank (mpirun -np 1) still runs through NCCL, so the path is exercised.
#ifndef T5_NCCL_CUH
#define T5_NCCL_CUH

#include <stdio.h>          // defines: fprintf, snprintf, FILE, fopen, fread
#include <stdlib.h>         // defines: getenv, strtol
#include <stdint.h>         // defines: int64_t
#include <string.h>         // defines: memcmp, memcpy
#include <errno.h>          // defines: errno
#include <time.h>           // defines: nanosleep, time
#include <sys/stat.h>       // defines: stat
#include "cuda_common.cuh"  // defines: cudaCheck, floatX
#include "dist.h"           // defines: Dist, dist_init, dist_broadcast, dist_finalize
#include "fileio.h"         // defines: AtomicFile, atomic_open, atomic_write, atomic_close, file_size_of
#ifdef USE_NCCL
#include <nccl.h>           // defines: ncclComm_t, ncclUniqueId, ncclAllReduce, ncclReduceScatter, ncclAllGather
#endif

#ifdef USE_NCCL
static inline void nccl_check(ncclResult_t r, const char* what, const char* file, int line) {
    if (r == ncclSuccess) return;
    if (capture_soft_fail("NCCL", ncclGetErrorString(r), what, file, line)) return; // cuda_common.cuh
    fprintf(stderr, "NCCL error: %s\n  in %s\n  at %s:%d\n", ncclGetErrorString(r), what, file, line);
    exit(EXIT_FAILURE);
}
#define ncclCheck(call) nccl_check((call), #call, __FILE__, __LINE__)
#endif

typedef enum { COMM_F32, COMM_F64, COMM_I64, COMM_FLOATX } CommType;

static inline size_t comm_type_size(CommType t) {
    return t == COMM_F32 ? sizeof(float) : t == COMM_FLOATX ? sizeof(floatX) : 8;
}

typedef struct {
    int rank, size, local_rank;
    int active;            // 1: a communicator exists (even with one rank)
    int via_mpi;           // bootstrapped through MPI (finalised by comm_free)
    Dist dist;
#ifdef USE_NCCL
    ncclComm_t comm;
#endif
    cudaStream_t stream;   // bucket reductions during the backward pass
    cudaEvent_t ready, done;
    void* scratch;         // (64 bytes) device staging of host values
} Comm;

// ----------------------------------------------------------------------------
// bootstrap, step 1: rank, size and local rank (no CUDA call yet)

// a non-negative integer from the first of two environment variables that is set; -1 if neither
static inline long env_rank_value(const char* a, const char* b, char* err, size_t errlen) {
    const char* name = getenv(a) ? a : b;
    const char* v = getenv(name);
    if (!v) { snprintf(err, errlen, "--nccl-init-dir needs %s (or %s) in the environment", a, b); return -1; }
    char* end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < 0 || x > (1L << 20)) {
        snprintf(err, errlen, "%s='%s' is not an integer in [0, 1048576]", name, v);
        return -1;
    }
    return x;
}

// fills rank, size, local_rank; returns 0, or -1 with a message
static inline int comm_bootstrap(Comm* c, int* argc, char*** argv, const char* init_dir, char* err, size_t errlen) {
    memset(c, 0, sizeof(*c));
    c->size = 1;
    if (init_dir) {
        long r = env_rank_value("RANK", "SLURM_PROCID", err, errlen);
        long n = r < 0 ? -1 : env_rank_value("WORLD_SIZE", "SLURM_NTASKS", err, errlen);
        long l = n < 0 ? -1 : env_rank_value("LOCAL_RANK", "SLURM_LOCALID", err, errlen);
        if (l < 0) return -1;
        if (n < 1 || r >= n) { snprintf(err, errlen, "rank %ld outside a world of %ld processes", r, n); return -1; }
        c->rank = (int)r; c->size = (int)n; c->local_rank = (int)l; c->active = 1;
    } else {
        if (dist_init(&c->dist, argc, argv)) { snprintf(err, errlen, "MPI bootstrap failed (see above)"); return -1; }
        c->rank = c->dist.rank; c->size = c->dist.size; c->local_rank = c->dist.local_rank;
        c->active = c->via_mpi = c->dist.active;
    }
#ifndef USE_NCCL
    if (c->active && c->size > 1) {
        snprintf(err, errlen, "%d processes, but this build has no NCCL (the Makefile reports NCCL ✓/✗)", c->size);
        return -1;
    }
    c->active = 0; // one process and no NCCL: no communicator, the collectives are the identity
#endif
    return 0;
}

// ----------------------------------------------------------------------------
// bootstrap, step 2: the device, the streams, the communicator

#define NCCL_ID_MAGIC "T5NCCLID"

#ifdef USE_NCCL
static inline void sleep_ms(long ms) {
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

// rank 0: writes the id; the others: wait for it (up to 10 minutes). Returns 0, or -1 with a message.
static inline int comm_exchange_id_file(const Comm* c, const char* dir, ncclUniqueId* id, char* err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/nccl_unique_id", dir);
    int64_t world = c->size;
    size_t bytes = 8 + sizeof(world) + sizeof(*id);
    if (c->rank == 0) {
        struct stat st;
        if (stat(path, &st) == 0) {
            snprintf(err, errlen, "%s exists (left by an earlier run?): remove it or use a fresh --nccl-init-dir", path);
            return -1;
        }
        ncclCheck(ncclGetUniqueId(id));
        AtomicFile a;
        if (mkdir_p(dir, err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
        int ok = atomic_write(&a, NCCL_ID_MAGIC, 8, err, errlen) == 0 && atomic_write(&a, &world, sizeof(world), err, errlen) == 0 &&
                 atomic_write(&a, id, sizeof(*id), err, errlen) == 0;
        return atomic_close(&a, ok, err, errlen);
    }
    for (long waited = 0; ; waited += 100) {
        struct stat st;
        if (stat(path, &st) == 0 && (size_t)st.st_size == bytes) break; // rename makes it appear whole
        if (waited >= 600000) { snprintf(err, errlen, "%s: rank 0 wrote no id within 10 minutes", path); return -1; }
        sleep_ms(100);
    }
    unsigned char buf[8 + sizeof(int64_t) + sizeof(ncclUniqueId)];
    FILE* f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, sizeof(buf), f) : 0;
    if (f) fclose(f);
    if (got != sizeof(buf) || memcmp(buf, NCCL_ID_MAGIC, 8) != 0) { snprintf(err, errlen, "%s: not an NCCL id file", path); return -1; }
    memcpy(&world, buf + 8, sizeof(world));
    if (world != c->size) {
        snprintf(err, errlen, "%s was written for %lld processes, this one is in a world of %d", path, (long long)world, c->size);
        return -1;
    }
    memcpy(id, buf + 8 + sizeof(world), sizeof(*id));
    return 0;
}
#endif

// selects GPU local_rank and creates the communicator; returns 0, or -1 with a message
static inline int comm_init(Comm* c, const char* init_dir, char* err, size_t errlen) {
    int devices = 0;
    cudaCheck(cudaGetDeviceCount(&devices));
    if (c->local_rank >= devices) {
        snprintf(err, errlen, "local rank %d but this node has %d GPU(s): start one process per GPU", c->local_rank, devices);
        return -1;
    }
    cudaCheck(cudaSetDevice(c->local_rank));
    cudaCheck(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming));
    cudaCheck(cudaMalloc(&c->scratch, 64));
#ifdef USE_NCCL
    if (!c->active) return 0;
    ncclUniqueId id;
    if (init_dir) {
        if (comm_exchange_id_file(c, init_dir, &id, err, errlen)) return -1;
    } else {
        if (c->rank == 0) ncclCheck(ncclGetUniqueId(&id));
        dist_broadcast(&c->dist, &id, (int)sizeof(id));
    }
    ncclCheck(ncclCommInitRank(&c->comm, c->size, id, c->rank));
#else
    (void)init_dir; (void)err; (void)errlen;
#endif
    return 0;
}

static inline void comm_free(Comm* c) {
    if (c->stream) {
        cudaCheck(cudaStreamSynchronize(c->stream));
#ifdef USE_NCCL
        if (c->active) ncclCheck(ncclCommDestroy(c->comm));
#endif
        cudaCheck(cudaEventDestroy(c->ready)); cudaCheck(cudaEventDestroy(c->done));
        cudaCheck(cudaFree(c->scratch));
        cudaCheck(cudaStreamDestroy(c->stream));
    }
    if (c->via_mpi) dist_finalize(&c->dist);
    memset(c, 0, sizeof(*c));
    c->size = 1;
}

// ----------------------------------------------------------------------------
// collectives on device buffers (identity without a communicator)

#ifdef USE_NCCL
static inline ncclDataType_t comm_nccl_type(CommType t) {
    switch (t) {
        case COMM_F32: return ncclFloat32;
        case COMM_F64: return ncclFloat64;
        case COMM_I64: return ncclInt64;
#ifdef ENABLE_FP32
        default: return ncclFloat32;
#else
        default: return ncclBfloat16;
#endif
    }
}
#endif

// buf (n) ← Σ over ranks, in place
static inline void comm_all_reduce_sum(const Comm* c, void* buf, size_t n, CommType t, cudaStream_t s) {
    if (capture_broken(s)) return;
#ifdef USE_NCCL
    if (c->active && n) ncclCheck(ncclAllReduce(buf, buf, n, comm_nccl_type(t), ncclSum, c->comm, s));
#else
    (void)c; (void)buf; (void)n; (void)t; (void)s;
#endif
}

// a bucket of size·part floats: mine (part) ← Σ over ranks of the bucket's part [rank·part, (rank+1)·part)
static inline void comm_reduce_scatter_sum(const Comm* c, const float* bucket, float* mine, size_t part, cudaStream_t s) {
    if (capture_broken(s)) return;
    if (!c->active) { // one process: its part is the whole bucket
        if (bucket != mine && part) cudaCheck(cudaMemcpyAsync(mine, bucket, part * sizeof(float), cudaMemcpyDeviceToDevice, s));
        return;
    }
#ifdef USE_NCCL
    if (part) ncclCheck(ncclReduceScatter(bucket, mine, part, ncclFloat32, ncclSum, c->comm, s));
#endif
}

// recv (size·part) ← every rank's send (part), rank order. In place when send = recv + rank·part.
static inline void comm_all_gather(const Comm* c, const void* send, void* recv, size_t part, CommType t, cudaStream_t s) {
    if (capture_broken(s)) return;
    size_t bytes = part * comm_type_size(t);
    if (!c->active) { // one process: its part is the whole buffer
        if (send != recv && part) cudaCheck(cudaMemcpyAsync(recv, send, bytes, cudaMemcpyDeviceToDevice, s));
        return;
    }
#ifdef USE_NCCL
    if (part) ncclCheck(ncclAllGather(send, recv, part, comm_nccl_type(t), c->comm, s));
#endif
}

// comm->stream waits for the work enqueued on `compute` so far (a bucket's gradients are final)
static inline void comm_wait_for(Comm* c, cudaStream_t compute) {
    if (capture_broken(compute)) return;
    cudaCheck(cudaEventRecord(c->ready, compute));
    cudaCheck(cudaStreamWaitEvent(c->stream, c->ready, 0));
}

// `compute` waits for everything enqueued on comm->stream so far
static inline void comm_join(Comm* c, cudaStream_t compute) {
    if (capture_broken(compute) || capture_broken(c->stream)) return;
    cudaCheck(cudaEventRecord(c->done, c->stream));
    cudaCheck(cudaStreamWaitEvent(compute, c->done, 0));
}

// ----------------------------------------------------------------------------
// host values (synchronise): sums and maxima over ranks

static inline void comm_host_reduce(Comm* c, void* x, size_t bytes, size_t n, CommType t, int max) {
    if (!c->active) return;
#ifdef USE_NCCL
    cudaCheck(cudaMemcpyAsync(c->scratch, x, bytes, cudaMemcpyHostToDevice, c->stream));
    ncclCheck(ncclAllReduce(c->scratch, c->scratch, n, comm_nccl_type(t), max ? ncclMax : ncclSum, c->comm, c->stream));
    cudaCheck(cudaMemcpyAsync(x, c->scratch, bytes, cudaMemcpyDeviceToHost, c->stream));
    cudaCheck(cudaStreamSynchronize(c->stream));
#else
    (void)x; (void)bytes; (void)n; (void)t; (void)max;
#endif
}

static inline void comm_sum_i64(Comm* c, int64_t* x, int n) { comm_host_reduce(c, x, (size_t)n * 8, (size_t)n, COMM_I64, 0); }
// n ≤ 8 (the scratch holds 64 bytes)
static inline void comm_sum_f64(Comm* c, double* x, int n) { comm_host_reduce(c, x, (size_t)n * 8, (size_t)n, COMM_F64, 0); }

static inline int comm_max_int(Comm* c, int x) {
    int64_t v = x;
    comm_host_reduce(c, &v, 8, 1, COMM_I64, 1);
    return (int)v;
}

#endif // T5_NCCL_CUH
