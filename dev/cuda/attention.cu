// attention.cu — twin of llmc/attention.cuh: T5 attention (relative bias, padding and causal masks,
// dropout, no 1/sqrt(D)) forward and backward (dq, dk, dv, relative-bias gradient) against the CPU
// engine's attention_forward / attention_backward (llmc/t5_cpu.h), then a benchmark.
// Variants: 1 = llmc/attention.cuh (cuBLASLt batched per-head GEMMs + fused softmax kernels).
//   make -C dev/cuda attention && ./dev/cuda/attention      (run from the repository root)
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_x, compare, bench_ms
#include "llmc/t5.h"              // defines: t5_relative_bucket
#include "llmc/t5_cpu.h"          // defines: t5cpu_attention_forward, t5cpu_attention_backward
#include "llmc/attention.cuh"     // defines: attention_forward, attention_backward, relative_buckets

static void check(int B, int Tq, int Tk, int H, int D, int self, int causal, float p) {
    printf("B=%d Tq=%d Tk=%d H=%d D=%d %s%s dropout=%g\n", B, Tq, Tk, H, D, self ? "self" : "cross",
           causal ? " causal" : "", (double)p);
    MatmulCtx mm;
    matmul_ctx_init(&mm, 0);
    int HD = H * D, NB = 32, MD = 128;
    size_t nq = (size_t)B * Tq * HD, nk = (size_t)B * Tk * HD, na = (size_t)B * H * Tq * Tk;
    float *q = host_normal(nq, 1, 1.0f), *k = host_normal(nk, 2, 1.0f), *v = host_normal(nk, 3, 1.0f);
    float *dout = host_normal(nq, 4, 1.0f), *relb = host_normal((size_t)NB * H, 5, 1.0f);
    int* key_len = (int*)mallocCheck(B * sizeof(int));
    for (int b = 0; b < B; b++) key_len[b] = causal ? Tk : 1 + (Tk - 1) * (b + 1) / B; // padding differs per sequence
    int* buckets = (int*)mallocCheck((2 * Tq - 1) * sizeof(int));
    for (int r = 0; r < 2 * Tq - 1; r++) buckets[r] = t5_relative_bucket(r - (Tq - 1), !causal, NB, MD);
    floatX *d_q = upload_x(q, nq), *d_k = upload_x(k, nk), *d_v = upload_x(v, nk), *d_dout = upload_x(dout, nq);
    float* d_relb = upload_f(relb, (size_t)NB * H);
    int *d_len = cuda_alloc<int>(B), *d_buckets = cuda_alloc<int>(2 * Tq - 1);
    cudaCheck(cudaMemcpy(d_len, key_len, B * sizeof(int), cudaMemcpyHostToDevice));
    relative_buckets(d_buckets, Tq, !causal, NB, MD, 0);
    floatX *d_out = cuda_alloc<floatX>(nq), *d_att = cuda_alloc<floatX>(na), *d_dq = cuda_alloc<floatX>(nq);
    floatX *d_dk = cuda_alloc<floatX>(nk), *d_dv = cuda_alloc<floatX>(nk);
    float* d_drelb = cuda_alloc<float>((size_t)NB * H);
    cudaCheck(cudaMemset(d_drelb, 0, (size_t)NB * H * sizeof(float)));
    AttnScratch w = { cuda_alloc<float>(na), cuda_alloc<floatX>(na), cuda_alloc<float>((size_t)H * (Tq + Tk - 1)) };
    DropSite drop = { p, 11, 3 };
    AttnSpec s = { B, Tq, Tk, H, D, causal ? NULL : d_len, causal, self ? d_relb : NULL, self ? d_buckets : NULL, drop };
    attention_forward(&mm, d_out, d_att, w, d_q, d_k, d_v, &s, 0);
    attention_backward(&mm, d_dq, d_dk, d_dv, d_drelb, NB, w, d_dout, d_q, d_k, d_v, d_att, &s, 0);
    T5CpuAttn cs = { B, Tq, Tk, H, D, causal, causal ? NULL : key_len, self ? relb : NULL, self ? buckets : NULL, p, 11, 3 };
    float *out = (float*)mallocCheck(nq * 4), *att = (float*)mallocCheck(na * 4), *scr = (float*)mallocCheck(na * 4);
    float *dq = (float*)mallocCheck(nq * 4), *dk = (float*)mallocCheck(nk * 4), *dv = (float*)mallocCheck(nk * 4);
    float* drelb = (float*)calloc((size_t)NB * H, sizeof(float));
    t5cpu_attention_forward(out, att, scr, q, k, v, &cs);
    t5cpu_attention_backward(dq, dk, dv, scr, drelb, dout, q, k, v, att, &cs);
    float *g_out = download_x(d_out, nq), *g_att = download_x(d_att, na), *g_dq = download_x(d_dq, nq);
    float *g_dk = download_x(d_dk, nk), *g_dv = download_x(d_dv, nk), *g_drelb = download_f(d_drelb, (size_t)NB * H);
    compare("forward: probabilities", g_att, att, na, TOL_X);
    compare("forward: output", g_out, out, nq, TOL_X);
    compare("backward: dq", g_dq, dq, nq, 2 * TOL_X);
    compare("backward: dk", g_dk, dk, nk, 2 * TOL_X);
    compare("backward: dv", g_dv, dv, nk, TOL_X);
    if (self) compare("backward: relative bias gradient", g_drelb, drelb, (size_t)NB * H, 2 * TOL_X);
    if (na >= (1 << 24)) {
        float fms = bench_ms([&] { attention_forward(&mm, d_out, d_att, w, d_q, d_k, d_v, &s, 0); }, 10);
        float bms = bench_ms([&] { attention_backward(&mm, d_dq, d_dk, d_dv, d_drelb, NB, w, d_dout, d_q, d_k, d_v, d_att, &s, 0); }, 10);
        double flops = 4.0 * B * H * (double)Tq * Tk * D;
        printf("  bench forward %.3f ms (%.1f TFLOP/s), backward %.3f ms (%.1f TFLOP/s)\n", fms, flops / fms / 1e9, bms,
               2 * flops / bms / 1e9);
    }
    free(q); free(k); free(v); free(dout); free(relb); free(key_len); free(buckets); free(out); free(att); free(scr);
    free(dq); free(dk); free(dv); free(drelb); free(g_out); free(g_att); free(g_dq); free(g_dk); free(g_dv); free(g_drelb);
    void* dev[] = { d_q, d_k, d_v, d_dout, d_relb, d_len, d_buckets, d_out, d_att, d_dq, d_dk, d_dv, d_drelb, w.scores, w.scratch, w.diag };
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
    matmul_ctx_free(&mm);
}

int main(void) {
    check(2, 7, 7, 2, 4, 1, 0, 0.0f);     // tiny, odd sizes
    check(3, 33, 33, 3, 10, 1, 0, 0.1f);  // D = 10: unaligned head views, dropout
    check(2, 20, 20, 4, 16, 1, 1, 0.1f);  // causal decoder self-attention
    check(3, 17, 45, 2, 8, 0, 0, 0.1f);   // cross-attention: Tq ≠ Tk, no bias
    check(16, 512, 512, 12, 64, 1, 0, 0.1f); // flan-t5-base encoder shape
    return finish("attention");
}
