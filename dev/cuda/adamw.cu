// adamw.cu — twin of llmc/adamw.cuh: the AdamW update (clipping factor, decoupled weight decay, the
// floatX copy of the new weights) against the CPU engine's adamw_tensor (llmc/t5_cpu.h), at several
// sizes, with and without clipping and decay, over three steps, then a benchmark (L2 flushed, CUDA
// events, GB/s).
// Variants: 1 = llmc/adamw.cuh.
//   make -C dev/cuda adamw && ./dev/cuda/adamw      (run from the repository root)
#include <math.h>                 // defines: pow, sqrt, isfinite, NAN, INFINITY
#include <string.h>               // defines: memcmp
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_f, download_f, download_x, compare, bench_ms
#include "llmc/t5_cpu.h"          // defines: t5cpu_adamw
#include "llmc/adamw.cuh"         // defines: adamw_update, AdamWStep

// the same fp32 operations in the same order; a compiler may fuse a multiply-add on either side, and
// m / (sqrt(v)/bc2 + eps) then differs in the last bit: 1e-6 of the max after three steps
#define TOL_STATE 1e-6f

static void check_size(size_t n, float clip, float decay) {
    printf("n=%zu clip=%g decay=%g\n", n, (double)clip, (double)decay);
    float *p = host_normal(n, 1, 0.05f), *m = host_normal(n, 2, 1e-3f), *v = host_normal(n, 3, 1e-3f);
    for (size_t i = 0; i < n; i++) v[i] *= v[i]; // second moments are squares
    float *d_p = upload_f(p, n), *d_m = upload_f(m, n), *d_v = upload_f(v, n), *d_g = cuda_alloc<float>(n);
    floatX* d_px = cuda_alloc<floatX>(n);
    float* gc = (float*)mallocCheck(n * sizeof(float));
    const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, lr = 1e-3f;
    AdamWStep s = { beta1, beta2, eps, decay, 0.0f, 0.0f, clip, 0 };
    for (int t = 1; t <= 3; t++) {
        float* g = host_normal(n, 10 + (uint64_t)t, 1e-2f);
        cudaCheck(cudaMemcpy(d_g, g, n * sizeof(float), cudaMemcpyHostToDevice));
        double bc1 = 1.0 - pow(beta1, t), bc2 = 1.0 - pow(beta2, t); // as train_t5.cu t5cu_update
        s.step_size = (float)(lr / bc1); s.bc2_sqrt = (float)sqrt(bc2);
        adamw_update(d_p, d_px, d_g, d_m, d_v, n, s, NULL, 0);
        for (size_t i = 0; i < n; i++) gc[i] = clip != 1.0f ? g[i] * clip : g[i]; // clipping, as the kernel
        t5cpu_adamw(p, gc, m, v, n, beta1, beta2, eps, decay, s.step_size, s.bc2_sqrt);
        free(g);
    }
    float *g_p = download_f(d_p, n), *g_m = download_f(d_m, n), *g_v = download_f(d_v, n);
    compare("weights after 3 steps", g_p, p, n, TOL_STATE);
    compare("first moments", g_m, m, n, TOL_STATE);
    compare("second moments", g_v, v, n, TOL_STATE);
#ifndef ENABLE_FP32 // the bf16 copy: the fp32 weights rounded to nearest even (2^-9 relative)
    float* g_px = download_x(d_px, n);
    compare("floatX copy of the weights", g_px, p, n, TOL_X);
    free(g_px);
#endif
    if (n >= ((size_t)1 << 24)) {
        float ms = bench_ms([&] { adamw_update(d_p, d_px, d_g, d_m, d_v, n, s, NULL, 0); }, 20);
        double bytes = n * (4.0 * 7 + sizeof(floatX)); // read p g m v, write p m v px
        printf("  bench %.3f ms (%.0f GB/s)\n", ms, bytes / ms / 1e6);
    }
    free(p); free(m); free(v); free(gc); free(g_p); free(g_m); free(g_v);
    cudaCheck(cudaFree(d_p)); cudaCheck(cudaFree(d_m)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_g));
    cudaCheck(cudaFree(d_px));
}

// the device-gated update of a step replayed as a CUDA graph (AdamWDevice): adamw_gate_kernel's clip and
// skip from a norm and a loss in device memory, then the kernel reading its values there. A finite step
// must equal the by-value update with the host's clip bit for bit; a non-finite norm or loss changes nothing.
static void check_gate(size_t n) {
    printf("n=%zu device-gated update\n", n);
    const float max_norm = 1.0f, norms[3] = { 3.7f, 0.25f, NAN };
    const double losses[3] = { 12.5, 12.5, 12.5 }, counted = 10.0;
    float* g = host_normal(n, 21, 1e-2f);
    float *d_g = upload_f(g, n), *d_norm = cuda_alloc<float>(1);
    double* d_loss = cuda_alloc<double>(2);
    AdamWDevice* d_u = cuda_alloc<AdamWDevice>(1);
    for (int k = 0; k < 4; k++) {
        float nrm = k < 3 ? norms[k] : 0.5f;
        double loss[2] = { 0.0, k < 3 ? losses[k] : INFINITY };
        float host_clip = 1.0f, coef = max_norm / (nrm + 1e-6f);
        if (coef < 1.0f) host_clip = coef;
        int host_skip = !isfinite(nrm) || !isfinite((float)(loss[1] / counted));
        AdamWStep s = { 0.9f, 0.999f, 1e-8f, 0.99999f, 1e-3f / 0.1f, (float)sqrt(1.0 - 0.999), host_clip, 0 };
        AdamWDevice u = { { s, s }, counted, max_norm };
        u.cls[1].decay = 1.0f;
        cudaCheck(cudaMemcpy(d_u, &u, sizeof(u), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(d_norm, &nrm, sizeof(float), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(d_loss, loss, sizeof(loss), cudaMemcpyHostToDevice));
        float *p = host_normal(n, 22, 0.05f), *m = host_normal(n, 23, 1e-3f), *v = host_normal(n, 24, 1e-3f);
        for (size_t i = 0; i < n; i++) v[i] *= v[i];
        float *d_p1 = upload_f(p, n), *d_m1 = upload_f(m, n), *d_v1 = upload_f(v, n);
        float *d_p2 = upload_f(p, n), *d_m2 = upload_f(m, n), *d_v2 = upload_f(v, n);
        floatX *d_x1 = cuda_alloc<floatX>(n), *d_x2 = cuda_alloc<floatX>(n);
        adamw_gate(d_u, d_norm, d_loss, 0);
        adamw_update(d_p1, d_x1, d_g, d_m1, d_v1, n, s, NULL, 0);               // by value, the host's clip
        adamw_update(d_p2, d_x2, d_g, d_m2, d_v2, n, s, &d_u->cls[0], 0);       // gated on the device
        float *p1 = download_f(d_p1, n), *p2 = download_f(d_p2, n), *m2 = download_f(d_m2, n);
        int ok = host_skip ? memcmp(p2, p, n * sizeof(float)) == 0 && memcmp(m2, m, n * sizeof(float)) == 0
                           : memcmp(p1, p2, n * sizeof(float)) == 0;
        char what[96];
        snprintf(what, sizeof(what), "norm %g, loss %g: %s", (double)nrm, loss[1] / counted,
                 host_skip ? "skipped, nothing changed" : "equal to the by-value update");
        printf("  %-56s %s\n", what, ok ? "OK" : "FAIL");
        if (ok) g_pass++; else g_fail++;
        free(p); free(m); free(v); free(p1); free(p2); free(m2);
        void* dev[] = { d_p1, d_m1, d_v1, d_p2, d_m2, d_v2, d_x1, d_x2 };
        for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
    }
    free(g);
    cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_norm)); cudaCheck(cudaFree(d_loss)); cudaCheck(cudaFree(d_u));
}

int main(void) {
    check_gate(100003);
    check_size(1, 1.0f, 0.99999f);
    check_size(1000, 0.37f, 1.0f);          // clipped, a norm tensor (no decay)
    check_size(1000003, 1.0f, 0.99999f);
    check_size(50331651, 0.5f, 0.99999f);   // 50M values: 1.5 GB per update, a fair bandwidth test
    return finish("adamw");
}
