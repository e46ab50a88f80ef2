// embedding.cu — twin of llmc/embedding.cuh: the token embedding forward (gather + dropout) and the
// deterministic backward (positions grouped by id on the host, one block per distinct id, rows added in
// token order) against the CPU engine's embedding_forward / embedding_backward (llmc/t5_cpu.h), at
// several sizes and vocabularies (few ids: long groups; many ids: short ones), with and without
// dropout, then a benchmark (L2 flushed, CUDA events, GB/s).
// Variants: 1 = llmc/embedding.cuh.
//   make -C dev/cuda embedding && ./dev/cuda/embedding      (run from the repository root)
#include <string.h>               // defines: memcmp
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_f, download_f, compare, bench_ms
#include "llmc/t5_cpu.h"          // defines: t5cpu_embedding_forward, t5cpu_embedding_backward
#include "llmc/embedding.cuh"     // defines: embedding_forward, embedding_backward, EmbedGroups, embed_groups_build

// the forward is a copy and one multiply per value, as on the CPU: equal to the last bit; the backward
// adds the same terms in the same order, but either compiler may fuse a multiply-add: 1e-6 of the max
#define TOL_GATHER 0.0f
#define TOL_SUM 1e-6f

// host groups of ids (N) uploaded into one device block; g receives the device pointers
static int* upload_groups(const int* ids, int N, EmbedGroups* g) {
    int* h = (int*)mallocCheck((size_t)(3 * N + 2) * sizeof(int));
    int* pairs = (int*)mallocCheck((size_t)2 * N * sizeof(int));
    EmbedGroups hg = { h, h + N + 1, h + 2 * (N + 1), 0, 0 };
    embed_groups_build(&hg, ids, N, pairs);
    h[N] = hg.n_uniq; // the device count of a launch over cap = N groups (the trainer's CUDA graphs)
    int* d = cuda_alloc<int>((size_t)3 * N + 2);
    cudaCheck(cudaMemcpy(d, h, (size_t)(3 * N + 2) * sizeof(int), cudaMemcpyHostToDevice));
    *g = EmbedGroups{ d, d + N + 1, d + 2 * (N + 1), hg.n_uniq, 0 };
    free(h); free(pairs);
    return d;
}

static void check_size(int N, int C, int V, float p) {
    printf("N=%d C=%d V=%d dropout=%g\n", N, C, V, (double)p);
    size_t n = (size_t)N * C, nw = (size_t)V * C;
    int* ids = (int*)mallocCheck((size_t)N * sizeof(int));
    Rng r;
    rng_init(&r, 17 + (uint64_t)N);
    for (int t = 0; t < N; t++) ids[t] = (int)(rng_next(&r) % (uint64_t)V);
    float *wte = host_normal(nw, 1, 1.0f), *dout = host_normal(n, 2, 1.0f), *dwte = host_normal(nw, 3, 0.1f);
    DropSite d = { p, 99, 5, NULL };
    int* d_ids = cuda_alloc<int>(N);
    cudaCheck(cudaMemcpy(d_ids, ids, (size_t)N * sizeof(int), cudaMemcpyHostToDevice));
    float *d_wte = upload_f(wte, nw), *d_dout = upload_f(dout, n), *d_dwte = upload_f(dwte, nw), *d_out = cuda_alloc<float>(n);
    EmbedGroups g;
    int* d_groups = upload_groups(ids, N, &g);
    // forward
    embedding_forward(d_out, d_ids, d_wte, N, C, d, 0);
    float* out = (float*)mallocCheck(n * sizeof(float));
    t5cpu_embedding_forward(out, ids, wte, N, C, p, d.seed, d.site);
    float* g_out = download_f(d_out, n);
    compare("forward: dropout(wte[ids])", g_out, out, n, TOL_GATHER);
    // backward: accumulates into dwte; twice from the same start must give the same bits
    embedding_backward(d_dwte, g, d_dout, C, d, 0);
    float* g_dwte = download_f(d_dwte, nw);
    cudaCheck(cudaMemcpy(d_dwte, dwte, nw * sizeof(float), cudaMemcpyHostToDevice));
    embedding_backward(d_dwte, g, d_dout, C, d, 0);
    float* g_dwte2 = download_f(d_dwte, nw);
    t5cpu_embedding_backward(dwte, ids, dout, N, C, p, d.seed, d.site);
    compare("backward: dwte (accumulated)", g_dwte, dwte, nw, TOL_SUM);
    int same = memcmp(g_dwte, g_dwte2, nw * sizeof(float)) == 0;
    printf("  %-56s %s\n", "backward twice: bit-identical", same ? "OK" : "FAIL");
    if (same) g_pass++; else g_fail++;
    // as a CUDA graph runs it: the seed read from device memory, the launch over N groups (cap)
    uint64_t* d_seed = cuda_alloc<uint64_t>(1);
    cudaCheck(cudaMemcpy(d_seed, &d.seed, sizeof(uint64_t), cudaMemcpyHostToDevice));
    DropSite dd = { p, 0, d.site, d_seed };
    EmbedGroups gc = g;
    gc.cap = N;
    float* start = host_normal(nw, 3, 0.1f); // dwte's start again (the CPU twin accumulated into dwte)
    cudaCheck(cudaMemcpy(d_dwte, start, nw * sizeof(float), cudaMemcpyHostToDevice));
    embedding_backward(d_dwte, gc, d_dout, C, dd, 0);
    float* g_dwte3 = download_f(d_dwte, nw);
    int same_dev = memcmp(g_dwte, g_dwte3, nw * sizeof(float)) == 0;
    printf("  %-56s %s\n", "backward, device seed + launch over cap: bit-identical", same_dev ? "OK" : "FAIL");
    if (same_dev) g_pass++; else g_fail++;
    free(start); free(g_dwte3);
    cudaCheck(cudaFree(d_seed));
    if (n >= 1 << 20) {
        float fms = bench_ms([&] { embedding_forward(d_out, d_ids, d_wte, N, C, d, 0); }, 20);
        float bms = bench_ms([&] { embedding_backward(d_dwte, g, d_dout, C, d, 0); }, 20);
        double fbytes = n * 8.0, bbytes = n * 4.0 + (double)g.n_uniq * C * 8.0; // rows read + written
        printf("  bench forward %.3f ms (%.0f GB/s), backward %.3f ms (%.0f GB/s, %d distinct ids)\n", fms,
               fbytes / fms / 1e6, bms, bbytes / bms / 1e6, g.n_uniq);
    }
    free(ids); free(wte); free(dout); free(dwte); free(out); free(g_out); free(g_dwte); free(g_dwte2);
    cudaCheck(cudaFree(d_ids)); cudaCheck(cudaFree(d_wte)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dwte));
    cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_groups));
}

int main(void) {
    check_size(7, 24, 50, 0.0f);
    check_size(300, 512, 10, 0.1f);      // 10 ids: groups of ~30 positions
    check_size(1000, 100, 1000, 0.1f);
    check_size(6640, 768, 32128, 0.1f);  // a flan-t5-base batch: 16 × 415 source tokens
    check_size(6640, 768, 200, 0.0f);    // few distinct ids: long groups
    return finish("embedding");
}
