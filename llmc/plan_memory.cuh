// plan_memory.cuh — the memory plan of train_t5cu (--plan-memory GIB): for every preset, the device bytes
// per rank of the state (weights, gradients, AdamW moments; ZeRO-1 shards; LoRA's frozen base and adapter)
// and of the activations per example, and the largest batch that fits a GIB GiB device. Host arithmetic
// only: it runs without a GPU (make cuda_compile_check runs it in CI).
//
// The bytes come from the engine, through PlanSizes: train_t5.cu answers from the same allocation plans its
// allocations use (state_plan, acts_plan), so the plan cannot drift from what a run allocates. This file
// holds the search for the largest batch, the check of the device order of every preset, and the tables.
#ifndef T5_PLAN_MEMORY_CUH
#define T5_PLAN_MEMORY_CUH

#include <stdio.h>          // defines: printf, fprintf, snprintf
#include <string.h>         // defines: memset
#include "optim.h"          // defines: t5_adafactor_floats (Adafactor's state per layout)
#include "engine.h"         // defines: Options, AttnKind
#include "t5.h"             // defines: T5Config, T5Layout, t5_layout, t5_config_preset, T5_PRESETS, T5_NUM_PRESETS
#include "lora.h"           // defines: LoraConfig, LoraFlags, lora_flags_config, lora_config_check, lora_describe
#include "cuda_common.cuh"  // defines: floatX, PRECISION_NAME
#include "zero.cuh"         // defines: ParamOrder, order_build, order_check, order_free
#include "lora.cuh"         // defines: LoraState, lora_state_geometry, lora_scratch_bytes

// what the plan asks of the engine
typedef struct {
    // weights, gradients and optimizer state of config c on one of `ranks` ranks; with lora (non-NULL) the
    // frozen base and the adapter's state, the adapter sharded under ZeRO-1
    size_t (*state_bytes)(const T5Config* c, int zero, int ranks, const LoraConfig* lora);
    // the activations of a batch of B examples of Ts source and Tt target tokens
    size_t (*act_bytes)(const T5Config* c, int B, int Ts, int Tt, int recompute, int attention);
    const char* (*attn_name)(int attention); // AttnKind → its --attention name
} PlanSizes;

// what else a process holds: the CUDA context and kernels (~0.6 GiB on an H100), the cuBLASLt
// workspace (32 MiB), NCCL's buffers (~0.4 GiB for 8 ranks), and allocator fragmentation: 1.5 GiB
#define PLAN_RESERVE_BYTES ((size_t)3 << 29)

// the largest batch of B·(Ts + Tt) tokens whose state + activations fit in `budget` bytes (0: none)
// extra: bytes per example beyond the activations (LoRA's scratch)
static int plan_max_batch(const PlanSizes* z, const T5Config* c, size_t state, size_t budget, int Ts, int Tt, int recompute,
                          int attention, size_t extra) {
    if (state + PLAN_RESERVE_BYTES + z->act_bytes(c, 1, Ts, Tt, recompute, attention) + extra > budget) return 0;
    int lo = 1, hi = 65536;
    while (lo < hi) { // largest B that fits: activations grow with B
        int mid = lo + (hi - lo + 1) / 2;
        size_t need = state + PLAN_RESERVE_BYTES + z->act_bytes(c, mid, Ts, Tt, recompute, attention) + (size_t)mid * extra;
        if (need <= budget) lo = mid; else hi = mid - 1;
    }
    return lo;
}

// the device order of every preset, and of the fixture-like odd shapes, for 1 … 64 ranks
static const char* plan_check_orders(void) {
    for (int i = 0; i <= T5_NUM_PRESETS; i++) {
        T5Config c;
        t5_config_preset(&c, T5_PRESETS[i < T5_NUM_PRESETS ? i : 0].name);
        if (i == T5_NUM_PRESETS) { c.num_heads = 5; c.d_kv = 6; c.d_model = 24; c.d_ff = 37; c.num_layers = 3; c.num_decoder_layers = 1; }
        T5Layout L;
        t5_layout(&c, &L);
        for (int r = 1; r <= 64; r *= 2) {
            ParamOrder po;
            order_build(&po, &c, r);
            const char* bad = order_check(&po, &L);
            order_free(&po);
            if (bad) return bad;
        }
    }
    return NULL;
}

// preset i's config and layout (every table below walks the presets)
static void plan_preset(int i, T5Config* c, T5Layout* L) {
    memset(c, 0, sizeof(*c));
    t5_config_preset(c, T5_PRESETS[i].name);
    t5_layout(c, L);
}

// the LoRA table of --plan-memory: --lora-r (32 when not given) on --lora-targets (q,v), one GPU
static int plan_memory_lora(const PlanSizes* z, const Options* o, size_t budget, int attention) {
    LoraFlags f = { o->lora_r, o->lora_alpha, o->lora_dropout, o->lora_targets, o->lora_adapter };
    if (f.r <= 0) f.r = 32;
    int Ts = o->max_src_len, Tt = o->max_tgt_len, Tm = Ts > Tt ? Ts : Tt;
    char err[256], desc[128];
    double G = 1073741824.0;
    LoraConfig lc;
    T5Config c0;
    t5_config_preset(&c0, T5_PRESETS[0].name);
    lora_flags_config(&f, &c0, &lc, err, sizeof(err)); // (the targets are checked per preset below)
    printf("\nLoRA %s (--lora-r, --lora-targets; llmc/lora.cuh): state = the frozen base, kept once in %s\n"
           "(no master copy, gradients or AdamW moments) + the adapter's fp32 A, B, gradients, m, v and its floatX copy;\n"
           "activations as above + the adapter products' scratch.\n", lora_describe(&lc, desc, sizeof(desc)),
           sizeof(floatX) == 2 ? "bf16 (the embedding, norms and relative bias also in fp32)" : "fp32");
    printf("%-14s %10s %10s %10s %10s\n", "", "adapter", "state GiB", "max batch", "max batch");
    printf("%-14s %10s %10s %10s %10s\n", "preset", "(M)", "1 GPU", "", "recompute");
    const char* largest = NULL;
    int largest_b[2] = { 0, 0 };
    size_t largest_n = 0;
    for (int i = 0; i < T5_NUM_PRESETS; i++) {
        T5Config c;
        T5Layout base;
        plan_preset(i, &c, &base);
        if (lora_config_check(&lc, &c, err, sizeof(err))) { printf("%-14s (%s)\n", T5_PRESETS[i].name, err); continue; }
        LoraState L;
        lora_state_geometry(&L, &lc, &c, 0, NULL);
        size_t state = z->state_bytes(&c, 0, 1, &lc), extra = lora_scratch_bytes(&L, (size_t)Tm);
        int b[2] = { plan_max_batch(z, &c, state, budget, Ts, Tt, 0, attention, extra),
                     plan_max_batch(z, &c, state, budget, Ts, Tt, 1, attention, extra) };
        printf("%-14s %10.2f %10.1f %10d %10d\n", T5_PRESETS[i].name, L.n / 1e6, state / G, b[0], b[1]);
        if (b[1] > 0 && base.total > largest_n) { largest = T5_PRESETS[i].name; largest_n = base.total; largest_b[0] = b[0]; largest_b[1] = b[1]; }
    }
    if (largest)
        printf("the largest preset LoRA trains on one %.0f GiB device: %s (batch %d; %d with --recompute 1)\n",
               (double)o->plan_memory, largest, largest_b[0], largest_b[1]);
    else printf("no preset trains with LoRA on one %.0f GiB device\n", (double)o->plan_memory);
    return 0;
}

// the whole plan: the order check, the full fine-tuning table, the LoRA table; 0, or -1 after a message
// the optimizer's share of the state, AdamW beside Adafactor (--optimizer; llmc/optim.h): AdamW's m and v are
// 8 bytes per parameter; Adafactor keeps R (rows) and C (cols) per matrix and V per vector, plus M (4 bytes per
// parameter) with --adafactor-beta1. "state" is the 1-GPU state above with AdamW's moments replaced by it.
// Adafactor is not sharded by ZeRO-1 (the GPU engine refuses the pair): its state is replicated, and small.
static void plan_memory_optimizers(const PlanSizes* z, size_t budget, int Ts, int Tt, int fl) {
    double G = 1073741824.0, M = 1048576.0;
    printf("\noptimizer state per GPU (no ZeRO-1): AdamW m, v beside Adafactor (factored; + M with --adafactor-beta1)\n");
    printf("%-14s %10s %11s %11s %10s %10s %10s %10s\n", "", "AdamW", "Adafactor", "Adafactor", "state GiB", "state GiB",
           "max batch", "max batch");
    printf("%-14s %10s %11s %11s %10s %10s %10s %10s\n", "preset", "MiB", "MiB", "+beta1 MiB", "AdamW", "Adafactor",
           "AdamW rc", "Adafac. rc");
    for (int i = 0; i < T5_NUM_PRESETS; i++) {
        T5Config c;
        T5Layout L;
        plan_preset(i, &c, &L);
        size_t adamw = 8 * L.total, af = 4 * t5_adafactor_floats(&L, 0), af1 = 4 * t5_adafactor_floats(&L, 1);
        size_t s1 = z->state_bytes(&c, 0, 1, NULL), sa = s1 - adamw + af;
        printf("%-14s %10.1f %11.3f %11.1f %10.1f %10.1f %10d %10d\n", T5_PRESETS[i].name, adamw / M, af / M, af1 / M, s1 / G,
               sa / G, plan_max_batch(z, &c, s1, budget, Ts, Tt, 1, fl, 0), plan_max_batch(z, &c, sa, budget, Ts, Tt, 1, fl, 0));
    }
    printf("rc: with --recompute 1. Adafactor's update also needs per-tensor scratch (rows + cols doubles, a few KiB).\n");
}

static int plan_memory(const PlanSizes* z, const Options* o) {
    const char* bad = plan_check_orders();
    if (bad) { fprintf(stderr, "error: device order of the parameters: %s\n", bad); return -1; }
    size_t budget = (size_t)((double)o->plan_memory * 1073741824.0);
    int Ts = o->max_src_len, Tt = o->max_tgt_len, R = o->plan_ranks;
    int fl = o->attention == ATTN_AUTO ? ATTN_FLASH : o->attention; // auto: flash (every preset has d_kv 64)
    double G = 1073741824.0;
    printf("memory plan (%s build, %s attention): a %.0f GiB device, every example padded to %d source + %d target\n"
           "tokens (the worst case of --max-src-len / --max-tgt-len), %.1f GiB reserved for the CUDA context, cuBLASLt,\n"
           "NCCL and fragmentation. state = weights + gradients + AdamW moments per rank; act/ex = activations per example.\n",
           PRECISION_NAME, z->attn_name(fl), (double)o->plan_memory, Ts, Tt, PLAN_RESERVE_BYTES / G);
    char zero_col[32];
    snprintf(zero_col, sizeof(zero_col), "ZeRO-1 x%d", R);
    printf("%-14s %8s %10s %12s %10s %10s %10s %10s %13s\n", "", "params", "state GiB", "state GiB", "act GiB", "act GiB",
           "max batch", "max batch", "max batch");
    printf("%-14s %8s %10s %12s %10s %10s %10s %10s %13s\n", "preset", "(M)", "1 GPU", zero_col, "/example", "recompute",
           "", "recompute", "recomp+ZeRO-1");
    for (int i = 0; i < T5_NUM_PRESETS; i++) {
        T5Config c;
        T5Layout L;
        plan_preset(i, &c, &L);
        size_t s1 = z->state_bytes(&c, 0, 1, NULL), sz = z->state_bytes(&c, 1, R, NULL);
        double a1 = (z->act_bytes(&c, 2, Ts, Tt, 0, fl) - z->act_bytes(&c, 1, Ts, Tt, 0, fl)) / G;
        double ar = (z->act_bytes(&c, 2, Ts, Tt, 1, fl) - z->act_bytes(&c, 1, Ts, Tt, 1, fl)) / G;
        printf("%-14s %8.0f %10.1f %13.1f %10.3f %10.3f %10d %10d %13d\n", T5_PRESETS[i].name, L.total / 1e6, s1 / G, sz / G,
               a1, ar, plan_max_batch(z, &c, s1, budget, Ts, Tt, 0, fl, 0), plan_max_batch(z, &c, s1, budget, Ts, Tt, 1, fl, 0),
               plan_max_batch(z, &c, sz, budget, Ts, Tt, 1, fl, 0));
    }
    printf("max batch: examples per GPU and micro-batch (0: the state alone does not fit). DialogSum batches are\n"
           "dynamically padded (mean 223 / p95 415 source tokens), so real batches of this size use less.\n");
    plan_memory_optimizers(z, budget, Ts, Tt, fl);
    return plan_memory_lora(z, o, budget, fl);
}

#endif // T5_PLAN_MEMORY_CUH
