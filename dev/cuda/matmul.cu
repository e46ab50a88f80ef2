// matmul.cu — twin of llmc/matmul.cuh: every product shape the trainer uses (plain, transposed operands,
// fp32 or floatX output, accumulating, strided-batched) against a CPU product of the same rounded
// inputs, through matmul() with cuBLASLt's first choice, through matmul() tuned (T5_MATMUL_TUNE's
// path), in the class mode, and with EVERY candidate cuBLASLt offers (tuning may pick any of them, so each
// must be right); a class's algorithm on another member; the class mode's independence of order; plans
// kept per exact shape (T5_MATMUL_PLANS=1) giving the bits of per-product planning.
// Then a benchmark of the flan-t5-base training step's products (batch 16, 320 source / 64 target
// tokens): the heuristic's first candidate against the fastest, GPU time only (plan made once), and
// matmul() called back to back (planning on the host included): untuned, tuned and class.
//   make -C dev/cuda matmul && ./dev/cuda/matmul      (run from the repository root)
#include <functional>             // defines: std::function
#include "dev/cuda/common.cuh"    // defines: host_normal, upload_x, download_x, compare, bench_ms
#include "llmc/matmul.cuh"        // defines: MatmulCtx, Matmul, matmul, matmul_plan, matmul_candidates

// Tolerances. floatX output: one fp32 sum rounded once to floatX, as TOL_X states. fp32 output from
// bf16 inputs: the inputs are exact on both sides, and only the fp32 summation order differs (random
// signs: about sqrt(K)·2^-24 of the largest |value|, 4e-6 at K = 4096); 1e-4 keeps a 25× margin.
#ifdef ENABLE_FP32
#define TOL_OUT_F32 1e-5f
#else
#define TOL_OUT_F32 1e-4f
#endif

typedef struct { int M, N, K, ta, tb, batch, out_fp32, accumulate; } Shape;

// stored sizes: A is (M, K), or (K, M) when transposed; B is (K, N), or (N, K); out (M, N); the batch
// entries follow each other (stride = one entry's size)
static size_t a_elems(const Shape* s) { return (size_t)s->M * s->K; }
static size_t b_elems(const Shape* s) { return (size_t)s->K * s->N; }
static size_t o_elems(const Shape* s) { return (size_t)s->M * s->N; }

static Matmul make_matmul(const Shape* s, void* out, const floatX* a, const floatX* b) {
    Matmul m;
    memset(&m, 0, sizeof(m));
    m.out = out; m.out_fp32 = s->out_fp32; m.ldo = s->N; m.stride_out = s->batch > 1 ? (int64_t)o_elems(s) : 0;
    m.a = MatOperand{ a, s->ta, s->ta ? s->M : s->K, s->batch > 1 ? (int64_t)a_elems(s) : 0 };
    m.b = MatOperand{ b, s->tb, s->tb ? s->K : s->N, s->batch > 1 ? (int64_t)b_elems(s) : 0 };
    m.M = s->M; m.N = s->N; m.K = s->K; m.batch = s->batch; m.accumulate = s->accumulate; m.epilogue = MM_PLAIN;
    return m;
}

// out[e] (M, N) (+)= op(A[e]) · op(B[e]), in double
static void cpu_matmul(float* out, const float* a, const float* b, const Shape* s) {
    #pragma omp parallel for collapse(2)
    for (int e = 0; e < s->batch; e++)
        for (int i = 0; i < s->M; i++) {
            const float* A = a + e * a_elems(s);
            const float* B = b + e * b_elems(s);
            float* O = out + e * o_elems(s);
            for (int j = 0; j < s->N; j++) {
                double acc = s->accumulate ? O[(size_t)i * s->N + j] : 0.0;
                for (int k = 0; k < s->K; k++) {
                    double x = s->ta ? A[(size_t)k * s->M + i] : A[(size_t)i * s->K + k];
                    double y = s->tb ? B[(size_t)j * s->K + k] : B[(size_t)k * s->N + j];
                    acc += x * y;
                }
                O[(size_t)i * s->N + j] = (float)acc;
            }
        }
}

// the device output, set to the initial values init (rounded to floatX for a floatX output: init too)
static void* upload_out(const Shape* s, float* init) {
    size_t n = o_elems(s) * s->batch;
    return s->out_fp32 ? (void*)upload_f(init, n) : (void*)upload_x(init, n);
}

static float* download_out(const Shape* s, const void* d) {
    size_t n = o_elems(s) * s->batch;
    return s->out_fp32 ? download_f((const float*)d, n) : download_x((const floatX*)d, n);
}

static void check_shape(const Shape* s) {
    printf("M=%d N=%d K=%d transA=%d transB=%d batch=%d out=%s accumulate=%d\n", s->M, s->N, s->K, s->ta, s->tb,
           s->batch, s->out_fp32 ? "fp32" : "floatX", s->accumulate);
    size_t na = a_elems(s) * s->batch, nb = b_elems(s) * s->batch, no = o_elems(s) * s->batch;
    float* a = host_normal(na, 11 + s->M, 1.0f);
    float* b = host_normal(nb, 13 + s->N, 1.0f);
    float* init = host_normal(no, 17 + s->K, 1.0f);
    floatX *d_a = upload_x(a, na), *d_b = upload_x(b, nb);
    void* d_out = upload_out(s, init); // init is rounded as the device holds it: the reference starts there
    float* want = (float*)mallocCheck(no * sizeof(float));
    memcpy(want, init, no * sizeof(float));
    cpu_matmul(want, a, b, s);
    float tol = s->out_fp32 ? TOL_OUT_F32 : TOL_X;
    MatmulCtx mm;
    matmul_ctx_init(&mm, 0);
    static const char* mode_name[3] = { "first choice", "tuned", "class" };
    for (int tune = 0; tune < 3; tune++) { // matmul() as the trainer calls it, in each MatmulAlgoMode
        mm.tune = tune;
        void* d = upload_out(s, init);
        Matmul m = make_matmul(s, d, d_a, d_b);
        matmul(&mm, &m);
        matmul(&mm, &m); // a class's second product uses the kept algorithm
        if (s->accumulate) { // two accumulations: compare the second against init + 2·product
            float* twice = (float*)mallocCheck(no * sizeof(float));
            for (size_t i = 0; i < no; i++) twice[i] = 2.0f * want[i] - init[i];
            float* got = download_out(s, d);
            char name[64];
            snprintf(name, sizeof(name), "matmul(), %s, twice", mode_name[tune]);
            compare(name, got, twice, no, 2.0f * tol);
            free(got); free(twice);
        } else {
            float* got = download_out(s, d);
            char name[64];
            snprintf(name, sizeof(name), "matmul(), %s", mode_name[tune]);
            compare(name, got, want, no, tol);
            free(got);
        }
        cudaCheck(cudaFree(d));
    }
    { // plans kept per exact shape (T5_MATMUL_PLANS=1): the same bits as planning every product, on the
      // shape's first product (plan built) and its second (plan reused, with this product's pointers)
        void *d0 = upload_out(s, init), *d1 = upload_out(s, init);
        Matmul m0 = make_matmul(s, d0, d_a, d_b), m1 = make_matmul(s, d1, d_a, d_b);
        mm.tune = 0; mm.plans = 0;
        matmul(&mm, &m0); matmul(&mm, &m0);
        mm.plans = 1;
        matmul(&mm, &m1); matmul(&mm, &m1);
        mm.plans = 0;
        float *g0 = download_out(s, d0), *g1 = download_out(s, d1);
        int same = memcmp(g0, g1, no * sizeof(float)) == 0, reused = mm.plans_built == 1 && mm.plans_hit == 1;
        printf("  %-56s %s\n", "kept plan (built, then reused) == planned per product, bit for bit", same ? "OK" : "FAIL");
        printf("  %-56s %d built, %lld reused  %s\n", "one plan for the shape", mm.plans_built, mm.plans_hit, reused ? "OK" : "FAIL");
        g_pass += same + reused; g_fail += !same + !reused;
        free(g0); free(g1);
        cudaCheck(cudaFree(d0)); cudaCheck(cudaFree(d1));
    }
    mm.tune = 0;
    Matmul m = make_matmul(s, d_out, d_a, d_b);
    MatmulPlan p;
    matmul_plan(&mm, &m, &p, NULL);
    cublasLtMatmulHeuristicResult_t res[MM_TUNE_CANDIDATES];
    int n = matmul_candidates(&mm, &m, &p, res, MM_TUNE_CANDIDATES);
    printf("  %-56s %d\n", "cuBLASLt candidates", n);
    if (n > 0) g_pass++; else g_fail++;
    for (int i = 0; i < n; i++) { // each on a fresh copy of the initial output
        void* d = upload_out(s, init);
        cublasStatus_t st = matmul_launch(&mm, &m, &p, &res[i].algo, d);
        char name[64];
        snprintf(name, sizeof(name), "candidate %d", i);
        if (st != CUBLAS_STATUS_SUCCESS) { printf("  %-56s status %d  FAIL\n", name, (int)st); g_fail++; }
        else { float* got = download_out(s, d); compare(name, got, want, no, tol); free(got); }
        cudaCheck(cudaFree(d));
    }
    matmul_plan_free(&p);
    matmul_ctx_free(&mm);
    free(a); free(b); free(init); free(want);
    cudaCheck(cudaFree(d_a)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_out));
}

// a class's algorithm on another member of the class (mode MM_ALGO_TIMED or MM_ALGO_CLASS): planned at
// `first`, then `other` (same class, other M) must still match the CPU and must reuse the kept algorithm
// (no second planning)
static void check_class_reuse(const Shape* first, const Shape* other, int mode) {
    printf("class reuse (%s): planned at M=%d, then M=%d\n", mode == MM_ALGO_TIMED ? "timed" : "class", first->M, other->M);
    MatmulCtx mm;
    matmul_ctx_init(&mm, 0);
    mm.tune = mode;
    const Shape* both[2] = { first, other };
    for (int i = 0; i < 2; i++) {
        const Shape* s = both[i];
        size_t na = a_elems(s), nb = b_elems(s), no = o_elems(s);
        float *a = host_normal(na, 21 + i, 1.0f), *b = host_normal(nb, 23 + i, 1.0f);
        float* want = (float*)calloc(no, sizeof(float));
        floatX *d_a = upload_x(a, na), *d_b = upload_x(b, nb);
        void* d = upload_out(s, want);
        cpu_matmul(want, a, b, s);
        Matmul m = make_matmul(s, d, d_a, d_b);
        matmul(&mm, &m);
        float* got = download_out(s, d);
        compare(i ? "second member, the kept algorithm" : "first member", got, want, no,
                s->out_fp32 ? TOL_OUT_F32 : TOL_X);
        free(a); free(b); free(want); free(got);
        cudaCheck(cudaFree(d_a)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d));
    }
    int ok = mm.tuned_shapes == 1;
    printf("  %-56s %d planned, %d misfits  %s\n", "one class planned once", mm.tuned_shapes, mm.tune_misfits, ok ? "OK" : "FAIL");
    if (ok) g_pass++; else g_fail++;
    matmul_ctx_free(&mm);
}

// MM_ALGO_CLASS: a product's algorithm depends on its shape alone, not on which member of its class came
// first. Two contexts see the members of a class in opposite orders: each member must get the same
// algorithm in both, and bit-identical output. (What keeps runs and resumes bit-identical.)
static void check_class_order(const Shape* const* members, int n) {
    printf("class mode, order: %d members of one class, forwards and backwards\n", n);
    MatmulCtx fwd, bwd;
    matmul_ctx_init(&fwd, 0); matmul_ctx_init(&bwd, 0);
    fwd.tune = bwd.tune = MM_ALGO_CLASS;
    void* out[2][8];
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < n; j++) {
            int i = pass ? n - 1 - j : j;
            const Shape* s = members[i];
            float *a = host_normal(a_elems(s), 31 + i, 1.0f), *b = host_normal(b_elems(s), 37 + i, 1.0f);
            float* zero = (float*)calloc(o_elems(s), sizeof(float));
            floatX *d_a = upload_x(a, a_elems(s)), *d_b = upload_x(b, b_elems(s));
            out[pass][i] = upload_out(s, zero);
            Matmul m = make_matmul(s, out[pass][i], d_a, d_b);
            matmul(pass ? &bwd : &fwd, &m);
            cudaCheck(cudaDeviceSynchronize());
            free(a); free(b); free(zero);
            cudaCheck(cudaFree(d_a)); cudaCheck(cudaFree(d_b));
        }
    for (int i = 0; i < n; i++) {
        float *x = download_out(members[i], out[0][i]), *y = download_out(members[i], out[1][i]);
        int same = memcmp(x, y, o_elems(members[i]) * sizeof(float)) == 0;
        char name[64];
        snprintf(name, sizeof(name), "M=%d: bit-identical in both orders", members[i]->M);
        printf("  %-56s %s\n", name, same ? "OK" : "FAIL");
        if (same) g_pass++; else g_fail++;
        free(x); free(y);
        cudaCheck(cudaFree(out[0][i])); cudaCheck(cudaFree(out[1][i]));
    }
    int ok = fwd.tuned_shapes == 1 && bwd.tuned_shapes == 1;
    printf("  %-56s %d and %d  %s\n", "one class planned in each context", fwd.tuned_shapes, bwd.tuned_shapes, ok ? "OK" : "FAIL");
    if (ok) g_pass++; else g_fail++;
    matmul_ctx_free(&fwd); matmul_ctx_free(&bwd);
}

// ----------------------------------------------------------------------------
// benchmark: the products of one flan-t5-base training step

typedef struct { const char* name; Shape s; int per_step; } StepProduct;

// uniform values in [-1, 1) from a hash of the index: the tensor cores draw less power (and clock
// higher) on zeros, so benchmark inputs must not be zeros
__global__ void fill_random_kernel(floatX* x, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
        x[i] = from_float<floatX>((float)(h >> 8) / 8388608.0f - 1.0f);
    }
}

// mean ms per call of fn called `reps` times back to back between two events (no L2 flush: the
// trainer's products follow each other the same way)
static float back_to_back_ms(const std::function<void()>& fn, int reps) {
    fn();
    cudaEvent_t a, b;
    cudaCheck(cudaEventCreate(&a)); cudaCheck(cudaEventCreate(&b));
    cudaCheck(cudaEventRecord(a));
    for (int r = 0; r < reps; r++) fn();
    cudaCheck(cudaEventRecord(b));
    cudaCheck(cudaEventSynchronize(b));
    float ms;
    cudaCheck(cudaEventElapsedTime(&ms, a, b));
    cudaCheck(cudaEventDestroy(a)); cudaCheck(cudaEventDestroy(b));
    return ms / reps;
}

static void bench_step(void) {
    const int C = 768, F = 2048, V = 32128, L = 12, Ne = 16 * 320, Nd = 16 * 64;
    // rows × columns × depth as the trainer calls them: forward out = in·Wᵀ (transB), input gradient
    // dx = dy·W, weight gradient dW += dyᵀ·x (transA, fp32, accumulating); per_step: calls per step
    StepProduct ps[] = {
        { "enc q/k/v/o fwd",        { Ne, C, C, 0, 1, 1, 0, 0 }, 4 * L },
        { "enc ffn wi0/wi1 fwd",    { Ne, F, C, 0, 1, 1, 0, 0 }, 2 * L },
        { "enc ffn wo fwd (fp32)",  { Ne, C, F, 0, 1, 1, 1, 0 }, L },
        { "dec q/k/v/o fwd",        { Nd, C, C, 0, 1, 1, 0, 0 }, 7 * L },
        { "dec ffn wi0/wi1 fwd",    { Nd, F, C, 0, 1, 1, 0, 0 }, 2 * L },
        { "lm_head fwd",            { Nd, V, C, 0, 1, 1, 0, 0 }, 1 },
        { "enc q/k/v dx (fp32)",    { Ne, C, C, 0, 0, 1, 1, 0 }, 3 * L },
        { "enc ffn wi dx (fp32)",   { Ne, C, F, 0, 0, 1, 1, 0 }, 2 * L },
        { "enc ffn wo dx",          { Ne, F, C, 0, 0, 1, 0, 0 }, L },
        { "enc q/k/v/o dW",         { C, C, Ne, 1, 0, 1, 1, 1 }, 4 * L },
        { "enc ffn wi dW",          { F, C, Ne, 1, 0, 1, 1, 1 }, 2 * L },
        { "enc ffn wo dW",          { C, F, Ne, 1, 0, 1, 1, 1 }, L },
        { "dec q/k/v/o dW",         { C, C, Nd, 1, 0, 1, 1, 1 }, 7 * L },
        { "lm_head dW",             { V, C, Nd, 1, 0, 1, 1, 1 }, 1 },
        { "lm_head dx (fp32)",      { Nd, C, V, 0, 0, 1, 1, 0 }, 1 },
    };
    int np = (int)(sizeof(ps) / sizeof(ps[0]));
    printf("\nbenchmark: flan-t5-base step products (batch 16, 320 + 64 tokens); ms per product\n");
    printf("%-24s %6s %6s %6s %5s | %8s %6s | %8s %6s %4s | %8s %8s %8s\n", "product", "M", "N", "K", "cands",
           "first", "TF/s", "best", "TF/s", "idx", "call", "tuned", "class");
    double step_first = 0, step_best = 0, step_call = 0, step_tuned = 0, step_class = 0;
    MatmulCtx mm, tuned, cls;
    matmul_ctx_init(&mm, 0);
    matmul_ctx_init(&tuned, 0);
    matmul_ctx_init(&cls, 0);
    tuned.tune = MM_ALGO_TIMED;
    cls.tune = MM_ALGO_CLASS;
    for (int i = 0; i < np; i++) {
        const Shape* s = &ps[i].s;
        floatX* d_a = cuda_alloc<floatX>(a_elems(s));
        floatX* d_b = cuda_alloc<floatX>(b_elems(s));
        void* d_out = s->out_fp32 ? (void*)cuda_alloc<float>(o_elems(s)) : (void*)cuda_alloc<floatX>(o_elems(s));
        fill_random_kernel<<<1024, 256>>>(d_a, a_elems(s), 1u + i);
        fill_random_kernel<<<1024, 256>>>(d_b, b_elems(s), 1001u + i);
        cudaCheck(cudaMemset(d_out, 0, o_elems(s) * (s->out_fp32 ? sizeof(float) : sizeof(floatX))));
        Matmul m = make_matmul(s, d_out, d_a, d_b);
        MatmulPlan p;
        matmul_plan(&mm, &m, &p, NULL);
        cublasLtMatmulHeuristicResult_t res[MM_TUNE_CANDIDATES];
        int n = matmul_candidates(&mm, &m, &p, res, MM_TUNE_CANDIDATES), best_i = 0;
        float first = -1.0f, best = -1.0f;
        for (int c = 0; c < n; c++) {
            float ms = back_to_back_ms([&] { cublasCheck(matmul_launch(&mm, &m, &p, &res[c].algo, d_out)); }, 20);
            if (c == 0) first = ms;
            if (best < 0.0f || ms < best) { best = ms; best_i = c; }
        }
        matmul_plan_free(&p);
        float call = back_to_back_ms([&] { matmul(&mm, &m); }, 20);
        float call_tuned = back_to_back_ms([&] { matmul(&tuned, &m); }, 20);
        float call_class = back_to_back_ms([&] { matmul(&cls, &m); }, 20);
        double gf = 2.0 * s->M * s->N * (double)s->K / 1e9;
        printf("%-24s %6d %6d %6d %5d | %8.4f %6.0f | %8.4f %6.0f %4d | %8.4f %8.4f %8.4f\n", ps[i].name, s->M, s->N, s->K,
               n, first, gf / first, best, gf / best, best_i, call, call_tuned, call_class);
        step_first += first * ps[i].per_step; step_best += best * ps[i].per_step;
        step_call += call * ps[i].per_step; step_tuned += call_tuned * ps[i].per_step;
        step_class += call_class * ps[i].per_step;
        cudaCheck(cudaFree(d_a)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_out));
    }
    printf("these products x their calls per step: first choice %.2f ms, fastest candidate %.2f ms (%.2fx); "
           "matmul() %.2f ms, tuned %.2f ms (%.2fx), class %.2f ms (%.2fx)\n", step_first, step_best,
           step_first / step_best, step_call, step_tuned, step_call / step_tuned, step_class, step_call / step_class);
    printf("matmul tuning: %d shape classes timed, %d faster with another candidate, %.0f ms spent, %d misfits\n",
           tuned.tuned_shapes, tuned.tuned_changed, tuned.tune_ms, tuned.tune_misfits);
    matmul_ctx_free(&mm);
    matmul_ctx_free(&tuned);
    matmul_ctx_free(&cls);
}

int main(void) {
    // kept plans do not record the mode that chose them: this twin switches modes within one context, so
    // it keeps plans only where it checks them (mm.plans = 1 below), whatever the environment says
    unsetenv("T5_MATMUL_PLANS");
    Shape shapes[] = {
        { 77, 50, 33, 0, 1, 1, 0, 0 },     // forward: out = x·Wᵀ, odd sizes
        { 64, 96, 128, 0, 1, 1, 1, 0 },    // forward into the fp32 residual stream
        { 77, 48, 96, 0, 0, 1, 1, 1 },     // input gradient, fp32, accumulating
        { 96, 40, 77, 1, 0, 1, 1, 1 },     // weight gradient: dyᵀ·x, fp32, accumulating
        { 33, 65, 40, 0, 1, 3, 0, 0 },     // batched (attention's gemm path)
        { 40, 33, 65, 1, 0, 3, 0, 1 },     // batched, transposed A, accumulating
        { 512, 2048, 768, 0, 1, 1, 0, 0 }, // a real FFN size
        { 768, 768, 4096, 1, 0, 1, 1, 1 }, // a real weight gradient (K = the batch's tokens)
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) check_shape(&shapes[i]);
    Shape c1 = { 512, 2048, 768, 0, 1, 1, 0, 0 }, c2 = { 500, 2048, 768, 0, 1, 1, 0, 0 }; // 4·log2: 36 and 35.9
    check_class_reuse(&c1, &c2, MM_ALGO_TIMED);
    check_class_reuse(&c1, &c2, MM_ALGO_CLASS);
    // token counts of one class (quarter octave 4·log2 ∈ (49, 50]: 4871..5792), as the encoder's
    // products see them from batch to batch, fp32 out (the residual stream): bit-for-bit comparable
    Shape o1 = { 4912, 768, 768, 0, 1, 1, 1, 0 }, o2 = { 5120, 768, 768, 0, 1, 1, 1, 0 }, o3 = { 5792, 768, 768, 0, 1, 1, 1, 0 };
    const Shape* order[3] = { &o1, &o2, &o3 };
    check_class_order(order, 3);
    bench_step();
    return finish("matmul");
}
