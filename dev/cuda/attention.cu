// attention.cu — twin of llmc/attention.cuh and llmc/flash_attention.cuh: T5 attention (relative
// bias, padding and causal masks, dropout, no 1/sqrt(D)) forward and backward (dq, dk, dv,
// relative-bias gradient) against the CPU engine's attention_forward / attention_backward
// (llmc/t5_cpu.h), then a benchmark of both variants on the same inputs.
// Variants: 1 = llmc/attention.cuh (cuBLASLt batched per-head GEMMs + fused softmax kernels; any D)
//           2 = llmc/flash_attention.cuh (fused tiles with online softmax, no T×T matrix in memory;
//               D = 64 or 128); its backward pass also runs twice and must be bit-identical.
//           3 = llmc/attention_cudnn.cuh (cuDNN's fused SDPA; D a multiple of 8), in the USE_CUDNN=1
//               build only: its dropout mask is cuDNN's own, so it is compared with the CPU without
//               dropout and only run (finite outputs) and timed with dropout.
//   make -C dev/cuda attention && ./dev/cuda/attention      (run from the repository root)
//   make -C dev/cuda USE_CUDNN=1 attention                  (+ variant 3; after make USE_CUDNN=1 build/cudnn_att.o)
#include <string.h>               // defines: memcmp
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_x, compare, bench_ms
#include "llmc/t5.h"              // defines: t5_relative_bucket
#include "llmc/t5_cpu.h"          // defines: t5cpu_attention_forward, t5cpu_attention_backward
#include "llmc/attention.cuh"     // defines: attention_forward, attention_backward, relative_buckets
#include "llmc/flash_attention.cuh" // defines: flash_attention_forward, flash_attention_backward
#ifdef ENABLE_CUDNN
#include "llmc/attention_cudnn.cuh" // defines: cudnn_attention_forward, cudnn_attention_backward, CudnnScratch
#endif

// variant 2's dk and relative-bias gradient, bf16 build: Δ = Σ dout·out is taken from the bf16 output,
// whose rounding (2^-9·|dout·out| per row) stays in ds = p (dp − Δ) even where ds is exactly 0 (a row
// with one key under dropout, the one_key cases): measured up to 3.3e-2 of the tensor's scale in a CPU
// emulation of these kernels. fp32 build: no rounding of out, variant 1's tolerance.
#ifdef ENABLE_FP32
#define TOL_FLASH_DK (2 * TOL_X)
#else
#define TOL_FLASH_DK 5e-2f
#endif

// variant 2 on the inputs of one check; dq, dk, dv, drelb (zeroed first) come back on the host
typedef struct { floatX *out, *dq, *dk, *dv; float *lse, *drelb; FlashScratch w; } FlashRun;

static FlashRun flash_run_alloc(int B, int Tq, int Tk, int H, int D, int NB) {
    size_t nq = (size_t)B * Tq * H * D, nk = (size_t)B * Tk * H * D;
    FlashRun f = { cuda_alloc<floatX>(nq), cuda_alloc<floatX>(nq), cuda_alloc<floatX>(nk), cuda_alloc<floatX>(nk),
                   cuda_alloc<float>((size_t)B * H * Tq), cuda_alloc<float>((size_t)NB * H),
                   { cuda_alloc<float>((size_t)B * H * Tq), cuda_alloc<float>(flash_attention_part_floats(B, H, Tq, Tk)),
                     cuda_alloc<float>((size_t)H * (Tq + Tk - 1)) } };
    return f;
}

static void flash_run_free(FlashRun* f) {
    void* dev[] = { f->out, f->dq, f->dk, f->dv, f->lse, f->drelb, f->w.delta, f->w.part, f->w.diag };
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
}

static void flash_run(FlashRun* f, int NB, const floatX* q, const floatX* k, const floatX* v, const floatX* dout,
                      const AttnSpec* s) {
    cudaCheck(cudaMemset(f->drelb, 0, (size_t)NB * s->H * sizeof(float)));
    flash_attention_forward(f->out, f->lse, q, k, v, s, 0);
    flash_attention_backward(f->dq, f->dk, f->dv, f->drelb, NB, f->w, dout, q, k, v, f->out, f->lse, s, 0);
}

// the two kernels that connect T5's bucket table to a dense bias (variant 3's input and gradient), in
// every build: relative_bias_dense against the table lookup on the host (exact up to the floatX
// rounding of the table value: TOL_X), and attention_bias_grad over one batch-summed ds (H, Tq, Tk)
// against the host's bucket sums of the same rounded values (fp32 sums in another order: TOL_X)
static void check_bias_glue(const AttnSpec* s, const float* relb, const int* buckets, int NB) {
    int H = s->H, Tq = s->Tq, Tk = s->Tk;
    size_t n = (size_t)H * Tq * Tk;
    floatX* d_bias = cuda_alloc<floatX>(n);
    relative_bias_dense(d_bias, s, 0);
    float* got = download_x(d_bias, n);
    float *want = (float*)mallocCheck(n * sizeof(float)), *ds = host_normal(n, 9, 1.0f);
    float* drelb = (float*)calloc((size_t)NB * H, sizeof(float));
    floatX* d_ds = upload_x(ds, n); // ds now holds the rounded values the kernel sums
    // drelb[bucket(j − i), h] = Σ_{i, j} ds[h, i, j]   (one batch: dbias is summed over it already)
    for (int h = 0; h < H; h++)
        for (int i = 0; i < Tq; i++)
            for (int j = 0; j < Tk; j++) {
                size_t x = ((size_t)h * Tq + i) * Tk + j;
                int bk = buckets[j - i + Tq - 1];
                want[x] = relb[bk * H + h];
                drelb[bk * H + h] += ds[x];
            }
    compare("dense relative bias (H, Tq, Tk) from the bucket table", got, want, n, TOL_X);
    float *d_drelb = cuda_alloc<float>((size_t)NB * H), *d_diag = cuda_alloc<float>((size_t)H * (Tq + Tk - 1));
    cudaCheck(cudaMemset(d_drelb, 0, (size_t)NB * H * sizeof(float)));
    attention_bias_grad(d_drelb, NB, d_diag, d_ds, 1, s, 0);
    float* g_drelb = download_f(d_drelb, (size_t)NB * H);
    compare("bucket sums of a batch-summed bias gradient", g_drelb, drelb, (size_t)NB * H, TOL_X);
    free(got); free(want); free(ds); free(drelb); free(g_drelb);
    void* dev[] = { d_bias, d_ds, d_drelb, d_diag };
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
}

#ifdef ENABLE_CUDNN
// variant 3 against the CPU results (out, dq, dk, dv, drelb) of the same inputs. Tolerances: variant 1's,
// except dk and the relative-bias gradient: cuDNN takes Δ = Σ dout·out from the bf16 output as flash
// does, and rounds dbias to bf16 per element before the bucket sums (2^-9 of each term, which the sum
// can keep while the terms cancel): variant 2's bound.
static CudnnAttn* g_cudnn;
static void cudnn_variant(int NB, const floatX* q, const floatX* k, const floatX* v, const floatX* dout, const AttnSpec* s,
                          const float* out, const float* dq, const float* dk, const float* dv, const float* drelb) {
    if (s->D % 8 != 0) { printf("  3 cudnn: skipped (D %% 8 != 0)\n"); return; }
    if (!g_cudnn) {
        char err[256];
        g_cudnn = cudnn_attn_create(err, sizeof(err));
        if (!g_cudnn) { printf("  3 cudnn: %s\n", err); g_fail++; return; }
    }
    int B = s->B, H = s->H, Tq = s->Tq, Tk = s->Tk;
    size_t nq = (size_t)B * Tq * H * s->D, nk = (size_t)B * Tk * H * s->D, nb = (size_t)H * Tq * Tk;
    CudnnScratch w = { cuda_alloc<floatX>(nb), cuda_alloc<floatX>(nb), cuda_alloc<int>(B), cuda_alloc<float>((size_t)H * (Tq + Tk - 1)),
                       cuda_alloc<int64_t>(2) };
    floatX *c_out = cuda_alloc<floatX>(nq), *c_dq = cuda_alloc<floatX>(nq), *c_dk = cuda_alloc<floatX>(nk), *c_dv = cuda_alloc<floatX>(nk);
    float *c_lse = cuda_alloc<float>((size_t)B * H * Tq), *c_drelb = cuda_alloc<float>((size_t)NB * H);
    cudaCheck(cudaMemset(c_drelb, 0, (size_t)NB * H * sizeof(float)));
    cudnn_attention_inputs(s, w, 0);
    cudnn_attention_forward(g_cudnn, w, c_out, c_lse, q, k, v, s, 0);
    cudnn_attention_backward(g_cudnn, w, c_dq, c_dk, c_dv, c_drelb, NB, dout, q, k, v, c_out, c_lse, s, 0);
    float *g_out = download_x(c_out, nq), *g_dq = download_x(c_dq, nq), *g_dk = download_x(c_dk, nk);
    float *g_dv = download_x(c_dv, nk), *g_drelb = download_f(c_drelb, (size_t)NB * H);
    if (s->drop.p == 0.0f) {
        compare("3 cudnn forward: output", g_out, out, nq, TOL_X);
        compare("3 cudnn backward: dq", g_dq, dq, nq, 2 * TOL_X);
        compare("3 cudnn backward: dk", g_dk, dk, nk, TOL_FLASH_DK);
        compare("3 cudnn backward: dv", g_dv, dv, nk, TOL_X);
        if (s->relb) compare("3 cudnn backward: relative bias gradient", g_drelb, drelb, (size_t)NB * H, TOL_FLASH_DK);
    } else { // cuDNN's mask: outputs finite, and the dropout changed them (the CPU ran the hash's mask)
        int finite = 1;
        for (size_t i = 0; i < nq; i++) finite &= isfinite(g_out[i]) && isfinite(g_dq[i]);
        for (size_t i = 0; i < nk; i++) finite &= isfinite(g_dk[i]) && isfinite(g_dv[i]);
        printf("  %-56s %s\n", "3 cudnn with cuDNN's dropout: finite out, dq, dk, dv", finite ? "OK" : "FAIL");
        if (finite) g_pass++; else g_fail++;
    }
    if (nb * B >= (1 << 24)) {
        double flops = 4.0 * B * H * (double)Tq * Tk * s->D;
        float fms = bench_ms([&] { cudnn_attention_forward(g_cudnn, w, c_out, c_lse, q, k, v, s, 0); }, 10);
        float bms = bench_ms([&] { cudnn_attention_backward(g_cudnn, w, c_dq, c_dk, c_dv, c_drelb, NB, dout, q, k, v, c_out,
                                                             c_lse, s, 0); }, 10);
        printf("  bench 3 cudnn forward %.3f ms (%.1f TFLOP/s), backward %.3f ms (%.1f TFLOP/s)\n", fms, flops / fms / 1e9,
               bms, 2 * flops / bms / 1e9);
    }
    free(g_out); free(g_dq); free(g_dk); free(g_dv); free(g_drelb);
    void* dev[] = { w.bias, w.dbias, w.q_len, w.diag, w.rng, c_out, c_dq, c_dk, c_dv, c_lse, c_drelb };
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
}
#endif

// one_key: the first sequence has a single key (non-causal), its rows' probabilities are exactly 1
static void check(int B, int Tq, int Tk, int H, int D, int self, int causal, float p, int one_key) {
    printf("B=%d Tq=%d Tk=%d H=%d D=%d %s%s dropout=%g%s\n", B, Tq, Tk, H, D, self ? "self" : "cross",
           causal ? " causal" : "", (double)p, one_key ? " (a one-key sequence)" : "");
    MatmulCtx mm;
    matmul_ctx_init(&mm, 0);
    int HD = H * D, NB = 32, MD = 128;
    size_t nq = (size_t)B * Tq * HD, nk = (size_t)B * Tk * HD, na = (size_t)B * H * Tq * Tk;
    float *q = host_normal(nq, 1, 1.0f), *k = host_normal(nk, 2, 1.0f), *v = host_normal(nk, 3, 1.0f);
    float *dout = host_normal(nq, 4, 1.0f), *relb = host_normal((size_t)NB * H, 5, 1.0f);
    int* key_len = (int*)mallocCheck(B * sizeof(int));
    for (int b = 0; b < B; b++) key_len[b] = causal ? Tk : 1 + (Tk - 1) * (b + 1) / B; // padding differs per sequence
    if (one_key) key_len[0] = 1;
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
    DropSite drop = { p, 11, 3, NULL };
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
    compare("1 gemm forward: probabilities", g_att, att, na, TOL_X);
    compare("1 gemm forward: output", g_out, out, nq, TOL_X);
    compare("1 gemm backward: dq", g_dq, dq, nq, 2 * TOL_X);
    compare("1 gemm backward: dk", g_dk, dk, nk, 2 * TOL_X);
    compare("1 gemm backward: dv", g_dv, dv, nk, TOL_X);
    if (self) compare("1 gemm backward: relative bias gradient", g_drelb, drelb, (size_t)NB * H, 2 * TOL_X);
    if (self && Tq == Tk) check_bias_glue(&s, relb, buckets, NB);
    int flash = flash_attention_supports(D);
    FlashRun fr;
    if (flash) {
        fr = flash_run_alloc(B, Tq, Tk, H, D, NB);
        flash_run(&fr, NB, d_q, d_k, d_v, d_dout, &s);
        float *f_out = download_x(fr.out, nq), *f_dq = download_x(fr.dq, nq), *f_dk = download_x(fr.dk, nk);
        float *f_dv = download_x(fr.dv, nk), *f_drelb = download_f(fr.drelb, (size_t)NB * H);
        compare("2 flash forward: output", f_out, out, nq, TOL_X);
        compare("2 flash backward: dq", f_dq, dq, nq, 2 * TOL_X);
        compare("2 flash backward: dk", f_dk, dk, nk, TOL_FLASH_DK);
        compare("2 flash backward: dv", f_dv, dv, nk, TOL_X);
        if (self) compare("2 flash backward: relative bias gradient", f_drelb, drelb, (size_t)NB * H, TOL_FLASH_DK);
        if (p > 0.0f) { // the trainer's CUDA graphs read the seed from device memory: the same masks, the same bits
            uint64_t* d_seed = cuda_alloc<uint64_t>(1);
            cudaCheck(cudaMemcpy(d_seed, &drop.seed, sizeof(uint64_t), cudaMemcpyHostToDevice));
            AttnSpec sd = s;
            sd.drop.seed = 0; sd.drop.seed_dev = d_seed;
            flash_run(&fr, NB, d_q, d_k, d_v, d_dout, &sd);
            float *s_out = download_x(fr.out, nq), *s_dk = download_x(fr.dk, nk);
            int same = memcmp(s_out, f_out, nq * sizeof(float)) == 0 && memcmp(s_dk, f_dk, nk * sizeof(float)) == 0;
            printf("  %-56s %s\n", "2 flash, seed in device memory: bit-identical out, dk", same ? "OK" : "FAIL");
            if (same) g_pass++; else g_fail++;
            free(s_out); free(s_dk);
            cudaCheck(cudaFree(d_seed));
        }
        free(f_out); free(f_dq); free(f_dk); free(f_dv); free(f_drelb);
    }
    if (na >= (1 << 24)) {
        double flops = 4.0 * B * H * (double)Tq * Tk * D;
        float fms = bench_ms([&] { attention_forward(&mm, d_out, d_att, w, d_q, d_k, d_v, &s, 0); }, 10);
        float bms = bench_ms([&] { attention_backward(&mm, d_dq, d_dk, d_dv, d_drelb, NB, w, d_dout, d_q, d_k, d_v, d_att, &s, 0); }, 10);
        printf("  bench 1 gemm  forward %.3f ms (%.1f TFLOP/s), backward %.3f ms (%.1f TFLOP/s)\n", fms, flops / fms / 1e9, bms,
               2 * flops / bms / 1e9);
        if (flash) {
            float ffms = bench_ms([&] { flash_attention_forward(fr.out, fr.lse, d_q, d_k, d_v, &s, 0); }, 10);
            float fbms = bench_ms([&] { flash_attention_backward(fr.dq, fr.dk, fr.dv, fr.drelb, NB, fr.w, d_dout, d_q, d_k, d_v,
                                                                 fr.out, fr.lse, &s, 0); }, 10);
            printf("  bench 2 flash forward %.3f ms (%.1f TFLOP/s), backward %.3f ms (%.1f TFLOP/s); vs gemm: forward %.2fx, "
                   "backward %.2fx\n", ffms, flops / ffms / 1e9, fbms, 2 * flops / fbms / 1e9, fms / ffms, bms / fbms);
            // two runs from the same inputs: bit-identical gradients (no atomics in the flash backward)
            size_t bytes[4] = { nq * sizeof(floatX), nk * sizeof(floatX), nk * sizeof(floatX), (size_t)NB * H * sizeof(float) };
            const void* dev[4] = { fr.dq, fr.dk, fr.dv, fr.drelb };
            char* first[4];
            for (int i = 0; i < 4; i++) first[i] = (char*)mallocCheck(bytes[i]);
            flash_run(&fr, NB, d_q, d_k, d_v, d_dout, &s);
            for (int i = 0; i < 4; i++) cudaCheck(cudaMemcpy(first[i], dev[i], bytes[i], cudaMemcpyDeviceToHost));
            flash_run(&fr, NB, d_q, d_k, d_v, d_dout, &s);
            int same = 1;
            for (int i = 0; i < 4; i++) {
                char* again = (char*)mallocCheck(bytes[i]);
                cudaCheck(cudaMemcpy(again, dev[i], bytes[i], cudaMemcpyDeviceToHost));
                same &= memcmp(again, first[i], bytes[i]) == 0;
                free(again); free(first[i]);
            }
            printf("  %-56s %s\n", "2 flash backward twice: bit-identical dq, dk, dv, drelb", same ? "OK" : "FAIL");
            if (same) g_pass++; else g_fail++;
        }
    }
    if (flash) flash_run_free(&fr);
#ifdef ENABLE_CUDNN
    cudnn_variant(NB, d_q, d_k, d_v, d_dout, &s, out, dq, dk, dv, drelb);
#endif
    free(q); free(k); free(v); free(dout); free(relb); free(key_len); free(buckets); free(out); free(att); free(scr);
    free(dq); free(dk); free(dv); free(drelb); free(g_out); free(g_att); free(g_dq); free(g_dk); free(g_dv); free(g_drelb);
    void* dev[] = { d_q, d_k, d_v, d_dout, d_relb, d_len, d_buckets, d_out, d_att, d_dq, d_dk, d_dv, d_drelb, w.scores, w.scratch, w.diag };
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
    matmul_ctx_free(&mm);
}

int main(void) {
    check(2, 7, 7, 2, 4, 1, 0, 0.0f, 0);     // tiny, odd sizes (variant 1 only: D ∉ {64, 128})
    check(3, 33, 33, 3, 10, 1, 0, 0.1f, 0);  // D = 10: unaligned head views, dropout
    check(2, 20, 20, 4, 16, 1, 1, 0.1f, 0);  // causal decoder self-attention
    check(3, 17, 45, 2, 8, 0, 0, 0.1f, 0);   // cross-attention: Tq ≠ Tk, no bias
    check(2, 64, 64, 2, 64, 1, 0, 0.0f, 0);  // both variants: one whole 64 × 64 tile, no dropout
    check(2, 77, 77, 3, 64, 1, 0, 0.1f, 0);  // partial tiles, padding, dropout
    check(2, 130, 130, 2, 64, 1, 1, 0.1f, 0); // causal over 3 tiles (tiles above the diagonal skipped)
    check(3, 45, 150, 2, 64, 0, 0, 0.1f, 1); // cross-attention, a one-key sequence
    check(2, 200, 200, 2, 64, 1, 0, 0.1f, 1); // key blocks wholly past the padding
    check(2, 100, 100, 2, 128, 1, 0, 0.1f, 0); // D = 128 (t5-3b / t5-11b)
    check(16, 512, 512, 12, 64, 1, 0, 0.1f, 0); // flan-t5-base encoder shape: benchmark of both
#ifdef ENABLE_CUDNN
    cudnn_attn_free(g_cudnn);
#endif
    return finish("attention");
}
