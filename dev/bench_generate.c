// bench_generate.c — summaries per second of t5_generate (greedy and beam search) on the CPU.
//
//   gcc -O3 -march=native -std=gnu11 -fopenmp -Wall -Wextra -Werror -Wno-format-truncation
//       -Wno-unused-function -I. dev/bench_generate.c -o build/bench_generate -lm   (one line)
//   OMP_NUM_THREADS=2 ./build/bench_generate [preset] [batch] [max_new_tokens]
//
// A randomly initialised model of the preset's shape (default flan-t5-small), DialogSum-like inputs
// (source lengths 200..240, the spread of a real batch after dynamic padding), max_new_tokens (default 64)
// new tokens. A random model does not pick eos, so every summary runs the full max_new_tokens: the
// worst case for the decoder, which is where generation spends its time.
#define TESTING
#include "train_t5.c"

static double bench_run(T5* m, const int* const* src, const int* len, int B, const GenConfig* g, int* out, int* out_len) {
    char err[256];
    double t0 = now_ms();
    if (t5_generate(m, src, len, B, g, out, out_len, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); exit(EXIT_FAILURE); }
    return now_ms() - t0;
}

int main(int argc, char** argv) {
    enable_flush_to_zero();
    const char* preset = argc > 1 ? argv[1] : "flan-t5-small";
    int B = argc > 2 ? atoi(argv[2]) : 8, max_new = argc > 3 ? atoi(argv[3]) : 64;
    T5Config c;
    if (t5_config_preset(&c, preset) || B < 1 || max_new < 1) {
        fprintf(stderr, "usage: bench_generate [preset] [batch >= 1] [max_new_tokens >= 1]\n");
        return EXIT_FAILURE;
    }
    T5 m;
    t5_build_from_config(&m, &c);
    t5_init_random(&m, 42);
    Rng rng;
    rng_init(&rng, 7);
    int* ids = (int*)mallocCheck((size_t)B * 240 * sizeof(int));
    int* len = (int*)mallocCheck((size_t)B * sizeof(int));
    const int** src = (const int**)mallocCheck((size_t)B * sizeof(int*));
    long src_tokens = 0;
    for (int b = 0; b < B; b++) {
        len[b] = 200 + (int)(rng_next(&rng) % 41);
        src[b] = ids + (size_t)b * 240;
        for (int j = 0; j < len[b]; j++) ids[b * 240 + j] = j == len[b] - 1 ? c.eos_id : 2 + (int)(rng_next(&rng) % 32000);
        src_tokens += len[b];
    }
    int* out = (int*)mallocCheck((size_t)B * max_new * sizeof(int));
    int* out_len = (int*)mallocCheck((size_t)B * sizeof(int));
#ifdef _OPENMP
    int threads = omp_get_max_threads();
#else
    int threads = 1;
#endif
    printf("%s (random weights), batch %d, source tokens %ld (200..240 each), max_new_tokens %d, %d threads\n",
           preset, B, src_tokens, max_new, threads);
    { // the encoder's share: one pass over the batch plus the cross-attention keys/values
        GenCache g;
        double best = 1e30;
        for (int it = 0; it < 3; it++) {
            gen_cache_build(&g, &m.config, B, 1, 240, max_new);
            double t0 = now_ms();
            gen_encode(&m, &g, src, len);
            double ms = now_ms() - t0;
            if (ms < best) best = ms;
            gen_cache_free(&g);
        }
        printf("encoder + cross keys/values alone: %8.1f ms per batch (best of 3)\n", best);
    }
    int beams[2] = { 1, 4 };
    for (int i = 0; i < 2; i++) {
        GenConfig g = gen_config_default();
        g.max_new_tokens = max_new;
        g.num_beams = beams[i];
        bench_run(&m, src, len, B, &g, out, out_len); // warm-up: allocations, page faults
        double best = 1e30;
        for (int it = 0; it < 3; it++) { double ms = bench_run(&m, src, len, B, &g, out, out_len); if (ms < best) best = ms; }
        long tokens = 0;
        for (int b = 0; b < B; b++) tokens += out_len[b];
        printf("%-8s num_beams %d: %8.1f ms per batch (best of 3), %6.2f summaries/s, %7.1f new tokens/s\n",
               beams[i] == 1 ? "greedy" : "beam", beams[i], best, B / (best / 1e3), tokens / (best / 1e3));
    }
    free(ids); free(len); free(src); free(out); free(out_len);
    t5_free(&m);
    return 0;
}
