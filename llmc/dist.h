// dist.h — data parallelism across processes with MPI (mpirun / srun), for the CPU trainer and for
// the CUDA trainer's NCCL bootstrap. Built with USE_MPI (the Makefile's probe); without it, or when
// the program was not started by a launcher, every call is the single-process identity.
//
// A launcher is recognised by its environment (Open MPI: OMPI_COMM_WORLD_SIZE, MPICH/Hydra and
// Slurm's PMI: PMI_SIZE, PMIx: PMIX_RANK); a plain `./train_t5` never initialises MPI.
#ifndef T5_DIST_H
#define T5_DIST_H

#include <stdio.h>    // defines: fprintf
#include <stdlib.h>   // defines: getenv, atoi
#include <unistd.h>   // defines: _exit
#include <stdint.h>   // defines: int64_t
#ifdef USE_MPI
#include <mpi.h>      // defines: MPI_Init, MPI_Allreduce, MPI_Comm_rank, MPI_Comm_size
#endif

typedef struct {
    int rank, size;   // this process, all processes
    int local_rank;   // rank within this node (the GPU to use)
    int local_size;   // processes on this node (they share its cores)
    int active;       // 1: MPI was initialised (size may still be 1)
} Dist;

static inline int dist_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

// returns 0, or -1 with a message when a launcher started us but this build has no MPI
static inline int dist_init(Dist* d, int* argc, char*** argv) {
    d->rank = 0; d->size = 1; d->local_rank = 0; d->local_size = 1; d->active = 0;
    if (!dist_launched()) return 0;
#ifdef USE_MPI
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &d->local_rank);
    MPI_Comm_size(node, &d->local_size);
    MPI_Comm_free(&node);
    d->active = 1;
    return 0;
#else
    (void)argc; (void)argv;
    const char* n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1) {
        fprintf(stderr, "error: started by an MPI launcher with %s processes, but this build has no MPI "
                "(install libopenmpi-dev and rebuild: the Makefile reports MPI ✓/✗)\n", n);
        return -1;
    }
    return 0;
#endif
}

// ends every rank at once (a stalled job: llmc/watchdog.h); without MPI, this process
static inline void dist_abort(const Dist* d, int code) {
#ifdef USE_MPI
    if (d->active) MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)d;
#endif
    _exit(code);
}

static inline void dist_finalize(Dist* d) {
#ifdef USE_MPI
    if (d->active) MPI_Finalize();
#endif
    d->active = 0;
}

// in-place sums over all processes (identity for one process)
static inline void dist_sum_f32(const Dist* d, float* x, size_t n) {
#ifdef USE_MPI
    if (d->size > 1) { // MPI counts are int: large buffers go in chunks
        for (size_t off = 0; off < n; off += (size_t)1 << 30) {
            size_t c = n - off < ((size_t)1 << 30) ? n - off : ((size_t)1 << 30);
            MPI_Allreduce(MPI_IN_PLACE, x + off, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }
    }
#else
    (void)d; (void)x; (void)n;
#endif
}

static inline void dist_sum_f64(const Dist* d, double* x, int n) {
#ifdef USE_MPI
    if (d->size > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)d; (void)x; (void)n;
#endif
}

static inline void dist_sum_i64(const Dist* d, int64_t* x, int n) {
#ifdef USE_MPI
    if (d->size > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)d; (void)x; (void)n;
#endif
}

// the largest value over all processes: a flag any rank raises (a signal, an error) reaches all
static inline int dist_max_int(const Dist* d, int x) {
#ifdef USE_MPI
    if (d->size > 1) MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
#else
    (void)d;
#endif
    return x;
}

// rank 0's bytes to every process
static inline void dist_broadcast(const Dist* d, void* buf, int bytes) {
#ifdef USE_MPI
    if (d->size > 1) MPI_Bcast(buf, bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
#else
    (void)d; (void)buf; (void)bytes;
#endif
}

static inline void dist_barrier(const Dist* d) {
#ifdef USE_MPI
    if (d->size > 1) MPI_Barrier(MPI_COMM_WORLD);
#else
    (void)d;
#endif
}

#endif // T5_DIST_H
