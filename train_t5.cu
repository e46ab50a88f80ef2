// train_t5.cu — the CUDA trainer for T5 / FLAN-T5: bf16 mixed precision (PRECISION=FP32 for an fp32
// build), fp32 master weights and AdamW moments, fused kernels from llmc/*.cuh, cuBLASLt matmuls.
// Reads top to bottom: model state → sublayers → model forward/backward → optimizer → generation →
// the engine the driver calls (llmc/engine.h). Everything else of the program — options, model loading,
// data, run directory, schedule, evaluation, checkpoints, reports — is the driver's (llmc/run.h, linked
// as llmc/driver.c), the same code train_t5 runs. The opt-in GPU machinery has its own rooms, which take
// what they need as parameters: llmc/graphs.cuh (CUDA graphs), llmc/profile.cuh (--bench's profiler, in
// PROFILE=1 builds only), llmc/plan_memory.cuh (--plan-memory). test_t5cu.cu includes this file with TESTING.
//
// It computes exactly what the CPU reference engine (train_t5.c) computes, in the same order of
// operations where it matters: the same parameter layout (llmc/t5.h), the same dropout masks (the
// counter hash of llmc/rng.h with the same site numbers), the same loss normalisation.
//
// Precision: see llmc/cuda_common.cuh. Residual streams, gradients of the residual streams and all
// parameter gradients are fp32; matmul inputs are floatX; matmul weights are the floatX copy of the
// fp32 master weights (refreshed by the AdamW kernel, round to nearest even); RMSNorm weights, the
// relative bias and the embedding gather read the fp32 master weights.
// Gradient rule (the whole file): parameter gradients accumulate (+=); activation gradients are
// written (=), except the residual streams and the encoder output, which accumulate.
// Host synchronisation: one per optimizer step, after the backward passes, to read the loss and the
// gradient norm (to print them and to skip a non-finite step before it reaches the weights, as the
// CPU engine does); the next step's batches are prepared on the host before that wait. With several
// ranks, one more at the start of a step: the global count of label tokens (the loss normalisation).
//
// Several GPUs (llmc/nccl.cuh: mpirun / srun / --nccl-init-dir, one process per GPU): each rank takes
// its slice of every global batch from the data loader, the loss is normalised by the global count of
// label tokens, and the gradients are summed over ranks bucket by bucket (llmc/zero.cuh) on a second
// stream while the backward pass goes on; every rank then applies the same update. --zero 1 shards the
// fp32 master weights and AdamW moments (reduce-scatter of the gradients, shard update, all-gather of
// the floatX weights). --recompute 1 keeps only the residual streams of each block and recomputes
// the block's internals in the backward pass.
//
// LoRA (--lora-r, --lora-adapter; llmc/lora.h for peft's math and files, llmc/lora.cuh for the device
// side): the base weights are frozen and kept once, as floatX (plus the fp32 values of what the forward
// reads in fp32: embedding, norms, relative bias), with no master copy, no gradients and no moments;
// the base's weight-gradient products are skipped. Only the adapter trains; its state and reduction
// are llmc/lora.cuh's, its products sit beside each wrapped Linear's (lora_fwd, lora_bwd below).
//
// --optimizer adafactor (llmc/adafactor.cuh, transformers' semantics; NEVER RUN ON A GPU YET, docs/adafactor.md):
// one fused update per Hugging Face tensor (llmc/optim.h's slices: each layer of a stacked tensor on its own),
// at that slice's device address; the state is one flat buffer in the host's slice order (the checkpoint's),
// replicated on every rank (no ZeRO-1: the factored moments need whole rows and columns). No AdamW moments.
#include <stdio.h>      // defines: printf, fprintf
#include <stdlib.h>     // defines: malloc, free, strtol, strtod
#include <stdint.h>     // defines: uint64_t, uint32_t
#include <string.h>     // defines: memset, memcpy, strcmp, strstr
#include <math.h>       // defines: sqrt, log, exp, cos, isfinite
#include <errno.h>      // defines: errno
#include <sys/stat.h>   // defines: stat, S_ISDIR
#include <signal.h>     // defines: signal, sig_atomic_t, SIGINT, SIGTERM
#include "llmc/utils.h"        // defines: mallocCheck, callocCheck, now_ms
#include "llmc/t5.h"           // defines: T5Config, T5Layout, t5_layout, P_* tensor ids, presets
#include "llmc/rng.h"          // defines: mix64, Rng, rng_init, rng_next
#include "llmc/schedule.h"     // defines: LrSchedule, lr_multiplier, lr_schedule_parse
#include "llmc/hf.h"           // defines: t5_load_hf_dir, t5_save_hf_dir
#include "llmc/lora.h"         // defines: LoraConfig, LoraFlags, lora_load_dir, lora_save_dir, lora_merge, lora_ckpt_save/_load
#include "llmc/hub.h"          // defines: hub_save_dir, hub_write_card (generation config, tokenizer files, model card)
#include "llmc/checkpoint.h"   // defines: ckpt_save, ckpt_load, CkptTrainState
#include "llmc/rundir.h"       // defines: ckpt_list, ckpt_path, ckpt_prune, metrics_open, json_num (run directory)
#include "llmc/dataloader.h"   // defines: T5Batch, BatchBuf, DataLoader, dataloader_next, IGNORE_INDEX
#include "llmc/engine.h"       // defines: EngineOps, Engine, Options, HostModel, StepIn, StepOut, GenConfig, AdamW,
                                //   program_* (the driver), beam_search_*, gen_check, t5_batch_check
#include "llmc/flops.h"        // defines: t5_batch_flops, card_peak_tflops (MFU on real tokens)
#include "llmc/cuda_common.cuh"  // defines: floatX, cudaCheck, DropSite, cuda_alloc
#include "llmc/matmul.cuh"       // defines: MatmulCtx, matmul_forward, matmul_backward_input/_weight
#include "llmc/rmsnorm.cuh"      // defines: residual_rmsnorm_forward, rmsnorm_backward
#include "llmc/attention.cuh"    // defines: attention_forward, attention_backward, relative_buckets
#include "llmc/flash_attention.cuh" // defines: flash_attention_forward, flash_attention_backward, FlashScratch
#include "llmc/ffn_act.cuh"      // defines: ffn_act_forward, ffn_act_backward
#include "llmc/embedding.cuh"    // defines: embedding_forward, embedding_backward, EmbedGroups
#include "llmc/crossentropy.cuh" // defines: crossentropy_forward_backward
#include "llmc/global_norm.cuh"  // defines: global_norm
#include "llmc/adamw.cuh"        // defines: adamw_update, copy_to_floatx
#include "llmc/adafactor.cuh"    // defines: adafactor_update, AdafactorScratch (--optimizer adafactor)
#include "llmc/crc32.h"          // defines: Crc32Table, crc32_table_init, crc32_update
#include "llmc/nccl.cuh"         // defines: Comm, comm_bootstrap, comm_init, comm_all_reduce_sum, comm_all_gather
#include "llmc/zero.cuh"         // defines: ParamOrder, Bucket, order_build, order_at, shard_sumsq, BK_* buckets
#include "llmc/generate.cuh"     // defines: DecodeAttn, decode_attention, gen_scores, topk, cache_reorder
#include "llmc/lora.cuh"         // defines: LoraState, LoraLinear, lora_linear_forward/_backward, lora_update, lora_put/_get
#include "llmc/graphs.cuh"       // defines: StepGraphs, GraphBody, graph_capture_launch, graphs_micro_step, graphs_step_end
#include "llmc/profile.cuh"      // defines: PhaseProf, prof_start, prof_mark, prof_op (PROFILE=1 builds; empty otherwise)
#include "llmc/plan_memory.cuh"  // defines: PlanSizes, plan_memory (--plan-memory)
#ifdef ENABLE_CUDNN
#include "llmc/attention_cudnn.cuh" // defines: cudnn_attention_forward/_backward, CudnnScratch (USE_CUDNN=1)
#endif

// ----------------------------------------------------------------------------
// activations on the device, sized for the largest batch seen (layer strides use the current batch)

typedef struct {
    // encoder, Ne = B·Ts tokens
    float* e_res;     // (Le+1, Ne, C) fp32 residual entering each block; [Le] enters the final norm
    float* e_mid;     // (Le, Ne, C)   fp32 residual after self-attention
    floatX* e_ln1;    // (Le, Ne, C)   normed input of self-attention
    float* e_rstd1;   // (Le, Ne)
    floatX* e_qkv;    // (Le, 3, Ne, HD)
    floatX* e_att;    // (Le, B, H, Ts, Ts) probabilities (before dropout; gemm attention)
    float* e_lse;     // (Le, B, H, Ts) row logsumexp of the scores (flash attention)
    floatX* e_ctx;    // (Le, Ne, HD)
    floatX* e_ln2;    // (Le, Ne, C)
    float* e_rstd2;   // (Le, Ne)
    floatX* e_h0;     // (Le, Ne, F)
    floatX* e_h1;     // (Le, Ne, F)   gated only
    floatX* e_ff;     // (Le, Ne, F)
    unsigned char* e_mask; // (Le, relu_mask_bytes(Ne, F)) ReLU mask of the fused wi product (relu_epilogue)
    float* e_rstdf;   // (Ne)
    floatX* e_out;    // (Ne, C)       encoder output (after final norm and dropout)
    // decoder, Nd = B·Tt tokens
    float* d_res;     // (Ld+1, Nd, C)
    float* d_mid1;    // (Ld, Nd, C)   after self-attention
    float* d_mid2;    // (Ld, Nd, C)   after cross-attention
    floatX* d_ln1;    // (Ld, Nd, C)
    float* d_rstd1;   // (Ld, Nd)
    floatX* d_qkv;    // (Ld, 3, Nd, HD)
    floatX* d_att;    // (Ld, B, H, Tt, Tt)
    float* d_lse;     // (Ld, B, H, Tt)
    floatX* d_ctx;    // (Ld, Nd, HD)
    floatX* d_ln2;    // (Ld, Nd, C)
    float* d_rstd2;   // (Ld, Nd)
    floatX* d_cq;     // (Ld, Nd, HD)
    floatX* d_ckv;    // (Ld, 2, Ne, HD)
    floatX* d_catt;   // (Ld, B, H, Tt, Ts)
    float* d_clse;    // (Ld, B, H, Tt)
    floatX* d_cctx;   // (Ld, Nd, HD)
    floatX* d_ln3;    // (Ld, Nd, C)
    float* d_rstd3;   // (Ld, Nd)
    floatX* d_h0;     // (Ld, Nd, F)
    floatX* d_h1;     // (Ld, Nd, F)
    floatX* d_ff;     // (Ld, Nd, F)
    unsigned char* d_mask; // (Ld, relu_mask_bytes(Nd, F))
    float* d_rstdf;   // (Nd)
    floatX* d_out;    // (Nd, C)       fed to the head (after dropout, · C^-0.5 if scale_out)
    floatX* logits;   // (Nd, V)       becomes dlogits in the fused loss
    float* losses;    // (Nd)
    // scratch
    float* sub;       // (Nm, C)       a sublayer's output before its residual add
    float* scores;    // (B, H, Tm, Tm) fp32 attention scores / their gradients
    floatX* att_x;    // (B, H, Tm, Tm) dropped probabilities / floatX score gradients
    float* diag;      // (H, 2Tm−1)    relative-bias gradient per diagonal
    float* delta;     // (B, H, Tm)    flash backward: Σ dout·out per row
    float* diag_part; // flash backward: diagonal sums per tile pair (flash_attention_part_floats)
    floatX* e_bias_x; // (H, Ts, Ts)   cuDNN attention: the encoder's relative bias as a dense tensor
    floatX* d_bias_x; // (H, Tt, Tt)   cuDNN attention: the decoder's
    floatX* dbias_x;  // (H, Tm, Tm)   cuDNN attention: a bias gradient, summed over the batch
    int* q_len;       // (2, B)        cuDNN attention: the query lengths, all Ts ([0], encoder), all Tt ([1], cross)
    int64_t* rng;     // (2)           cuDNN attention: its dropout seed and offset
    float* g_res;     // (Nm, C)       gradient of the residual stream
    float* g_x;       // (Nm, C)       gradient of a normed sublayer input
    floatX* g_sub;    // (Nm, C)       gradient of a sublayer output (after its residual dropout)
    floatX* g_qkv;    // (3, Nm, HD)
    floatX* g_ctx;    // (Nm, HD)
    floatX* g_h0;     // (Nm, F)
    floatX* g_h1;     // (Nm, F)
    floatX* g_ff;     // (Nm, F)
    float* g_enc;     // (Ne, C)       gradient of the encoder output, accumulated over decoder blocks
    floatX* g_ckv;    // (2, Ne, HD)
    float* dw_partial;// (RMSNORM_CHUNKS, C)
} T5CudaActs;

// the current batch on the device: ids, lengths, and the token positions grouped by id (embedding backward)
typedef struct {
    int* dev;           // one block: src | src_len | dec_in | labels | enc groups | dec groups | buckets
    int* host[2];       // pinned staging, two slots so one can fill while the other is in flight
    cudaEvent_t copied[2];
    int slot;
    size_t cap;         // ints per block
    int* pairs;         // host scratch for grouping (2 · max tokens)
    const int *src, *src_len, *dec_in, *labels, *enc_buckets, *dec_buckets;
    EmbedGroups enc, dec;
} BatchDev;

// attention kernels: llmc/attention.cuh (cuBLASLt products over the materialised probabilities, any
// d_kv), llmc/flash_attention.cuh (fused tiles, no T×T matrix in memory, d_kv 64 or 128) or cuDNN's
// fused SDPA (llmc/cudnn_att.h: builds with USE_CUDNN=1, bf16 only; its dropout mask is cuDNN's own)
// ATTN_AUTO (the command line's default): flash where its kernels cover d_kv (64, 128: every T5 and
// FLAN-T5 preset), else gemm; run() resolves it from the loaded model's d_kv before building
static const char* const ATTN_KIND_NAMES[] = { "gemm", "flash", "auto", "cudnn" }; // AttnKind order
static const char* attn_kind_name(int k) { return ATTN_KIND_NAMES[k]; }
// flash and cuDNN keep one logsumexp per query row for the backward pass; gemm keeps the probabilities
static int attn_keeps_lse(int k) { return k == ATTN_FLASH || k == ATTN_CUDNN; }
#ifdef ENABLE_CUDNN
#define CUDNN_BUILT 1
#else
#define CUDNN_BUILT 0
typedef struct CudnnAttn CudnnAttn;
static void cudnn_attn_free(CudnnAttn*) {}
static int cudnn_attn_deterministic(const CudnnAttn*) { return 1; }
static int cudnn_attn_epoch(const CudnnAttn*) { return 0; }
#endif

// 0 when --attention cudnn can run this model in this build, else 1 with the reason in err
static int cudnn_attention_check(int d_kv, char* err, size_t n) {
    if (!CUDNN_BUILT) {
#ifdef ENABLE_FP32
        snprintf(err, n, "--attention cudnn: cuDNN's SDPA takes bf16 only; this is the fp32 build (PRECISION=FP32)");
#else
        snprintf(err, n, "--attention cudnn: this build has no cuDNN attention (rebuild with make USE_CUDNN=1)");
#endif
        return 1;
    }
    if (d_kv % 8 != 0 || d_kv > 256) {
        snprintf(err, n, "--attention cudnn: cuDNN's SDPA needs d_kv a multiple of 8, at most 256 (this model: %d)", d_kv);
        return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// CUDA graphs (--cuda-graphs 1; the capture, replay and fallback are llmc/graphs.cuh's): a training step is
// queued as A micro-steps (micro_body) and one step end (end_body), each captured once and replayed. What
// changes from step to step lives in device memory, written before each replay (StepDev): the dropout seed,
// the loss scale 1/counted, the AdamW values of the step; the batch goes to fixed device buffers. The skip
// decision and the clipping factor are taken on the device from the norm the step computed (adamw_gate).
// Growing the activation or batch buffers drops the graphs (t5cu_reserve before the first step sizes them
// once). Phase profiling (llmc/profile.cuh, --bench in a PROFILE=1 build) needs eager launches.

// the per-step values the kernels read from device memory
typedef struct {
    uint64_t seed;      // dropout seed of the running micro-batch
    float loss_scale;   // 1 / counted label tokens of the step (0: keep the logits)
    AdamWDevice update; // the step's AdamW values and its gate (its skip and clip also gate Adafactor)
    AdafactorStep af[2]; // --optimizer adafactor: the step's values, [0] decayed, [1] RMSNorm weights (no decay
                         //   unless --decay-norms 1); skip and gscale copied from the gate on the device
} StepDev;

// one Hugging Face tensor as Adafactor updates it (llmc/optim.h) and where it lives on the device
typedef struct {
    OptSlice s;       // host layout offset, shape, factored, norm
    size_t dev;       // offset in the device buffers (master, floatX copy, gradients): the device order of
                      //   llmc/zero.cuh for the model, the layout itself for a LoRA adapter
    size_t state;     // offset of its state in the flat Adafactor state (host slice order)
} AfSlice;

#define ADAFACTOR_ZERO_REFUSAL "--zero 1 with --optimizer adafactor: the factored state needs whole tensors (each slice's " \
    "rows, columns and RMS); it is small and replicated on every rank: run without --zero"

// how the model is built: communicator (NULL: one process), ZeRO-1, recompute, attention kernels
typedef struct {
    Comm* comm;
    int zero;       // 1: fp32 master weights and AdamW moments sharded over comm's ranks (needs comm)
    int recompute;  // 1: keep the residual streams only; recompute block internals in the backward pass
    int attention;  // AttnKind
    const LoraConfig* lora; // LoRA: the base frozen, this adapter trains (NULL: full fine-tuning)
    int graphs;     // 1: training steps replayed as CUDA graphs (--cuda-graphs)
    int matmul_tune, matmul_plans; // --matmul-tune, --matmul-plans (llmc/matmul.cuh)
    int optimizer;  // OptimKind: AdamW (moments m, v) or Adafactor (its flat state; refused with ZeRO-1)
    int af_beta1;   // Adafactor: its state holds the first moment M (--adafactor-beta1 given)
} T5CudaOptions;

// Device buffers. "full": ParamOrder.total floats in the device order of llmc/zero.cuh; "shard": this
// rank's parts of every bucket (ParamOrder.shard floats; the whole device order without ZeRO-1).
typedef struct {
    T5Config config;
    T5Layout layout;     // host order (checkpoints, HF files, tests)
    ParamOrder order;    // device order, buckets, shards
    int zero, recompute, shard_rank;
    int relu_epilogue;   // 1: plain ReLU FFN, products with cuBLASLt's ReLU epilogues where no dropout intervenes
    int attention;       // AttnKind
    CudnnAttn* cudnn;    // --attention cudnn: cuDNN handle and graph cache (NULL otherwise)
    Comm* comm;
    LoraState* lora;     // LoRA (llmc/lora.cuh): the adapter that trains; the base is frozen (NULL: full fine-tuning)
    float* master;       // (shard) fp32 master weights (NULL under LoRA)
    floatX* params_x;    // (full) floatX copy for the matmuls (aliases master in the fp32 build without ZeRO-1)
    float* f32;          // (f32_total) fp32 values of the fp32-read prefix (aliases master without ZeRO-1,
                         //   params_x in the fp32 build with it or with LoRA)
    float* grads;        // (full) fp32 gradients
    float* gshard;       // (shard) this rank's summed gradients (aliases grads without ZeRO-1)
    float* m_mem;        // (shard) AdamW moments (NULL under Adafactor)
    float* v_mem;
    int opt_kind;        // OptimKind
    int af_beta1;        // Adafactor: its state holds M
    AfSlice* af_slices;  // Adafactor: the trainable tensors one HF tensor at a time (the model's, or the adapter's)
    int af_ns;
    float* af_state;     // (af_n) device: the slices' states concatenated in host slice order (llmc/optim.h)
    size_t af_n;
    AdafactorScratch af_scratch; // sized for the largest factored slice
    long long step;      // optimizer updates done
    T5CudaActs acts;
    int max_B, max_Ts, max_Tt;
    int B, Ts, Tt;       // sizes of the last forward pass
    int num_counted;     // label tokens of the last forward pass
    int train;           // dropout on in the last forward pass
    BatchDev batch;
    BatchBuf padded;     // --attention cudnn: the batch padded to CUDNN_PAD multiples (t5cu_shape_batch)
    double* loss_sum;    // device (2): Σ token losses of the last forward; of the step since t5cu_zero_grad
    float* norm;         // device: gradient norm
    double* norm_partial;
    double* sumsq;       // device: Σ g² (the ZeRO-1 norm before its sum over ranks)
    int reduce_now;      // the running backward pass reduces each bucket when it is done with it
    int next_bucket;     // position in bucket_sequence: every rank must issue the same order
    MatmulCtx mm;
    cudaStream_t stream;
    StepDev* step_dev;   // device: the values of the running step (see "CUDA graphs")
    StepGraphs graphs;
    PhaseProf* prof;     // NULL: no phase timing (prof_start turns it on)
    size_t act_bytes;    // device bytes of the activations
    size_t state_bytes;  // device bytes of weights, gradients and optimizer state on this rank
    float* host_state;   // rank 0: the state gathered for the driver (gpu_get_state), until the next gather
} T5Cuda;

// graphs hold only device operations on the model's streams; phase timing records events the host reads
// between them, so a profiled run launches eagerly
static int t5cu_graphs_usable(const T5Cuda* m) { return m->graphs.on && !m->prof; }

// whether a shape's first step may be captured at once: not when it does host-synchronising work the
// first time (T5_MATMUL_TUNE=1 times candidates on the GPU; cuDNN builds its graphs and sizes its
// workspace; NCCL over several processes sets up its connections at a collective's first use, which may
// touch the legacy stream): then it runs eagerly first and is captured the second time
static int t5cu_capture_first(const T5Cuda* m) {
    return m->mm.tune != MM_ALGO_TIMED && m->attention != ATTN_CUDNN && !(m->comm && m->comm->active);
}

static size_t t5cu_num_params(const T5Cuda* m) { return m->layout.total; }
// what trains: the adapter under LoRA (the base is frozen), else every parameter (the CPU engine's t5_num_trainable)
static size_t t5cu_num_trainable(const T5Cuda* m) { return m->lora ? m->lora->n : m->layout.total; }

// copy `l` of tensor i: fp32 value (fp32-read tensors only), floatX copy, gradient
static float* PM(const T5Cuda* m, int i, int l) {
    if (!m->layout.t[i].size) return NULL;
    size_t at = order_at(&m->order, i, l);
    if (at >= m->order.f32_total) { // a programming error: the fp32 prefix of llmc/zero.cuh lacks tensor i
        fprintf(stderr, "error: %s is read in fp32 but is not in the fp32-read buckets\n", m->layout.t[i].name);
        exit(EXIT_FAILURE);
    }
    return m->f32 + at;
}
static const floatX* PX(const T5Cuda* m, int i, int l) {
    return m->layout.t[i].size ? m->params_x + order_at(&m->order, i, l) : NULL;
}
// (NULL under LoRA: the base has no gradients, and the backward pass skips their products)
static float* PG(const T5Cuda* m, int i, int l) {
    return m->layout.t[i].size && m->grads ? m->grads + order_at(&m->order, i, l) : NULL;
}

typedef struct { void** p; size_t bytes; } AllocPlan;

// the device buffers of the model state (aliases get no entry); t5cu_build allocates these and
// --plan-memory adds them up
static int state_plan(T5Cuda* m, AllocPlan* plan) {
    size_t full = m->order.total, sh = m->order.shard, f = sizeof(float);
    int n = 0;
    if (m->lora) { // LoRA: the frozen base's floatX weights (and the fp32 values the forward reads) only
        plan[n++] = AllocPlan{ (void**)&m->params_x, full * sizeof(floatX) };
#ifndef ENABLE_FP32
        plan[n++] = AllocPlan{ (void**)&m->f32, m->order.f32_total * f };
#endif
        return n;
    }
    plan[n++] = AllocPlan{ (void**)&m->master, sh * f };
    plan[n++] = AllocPlan{ (void**)&m->grads, full * f };
    if (m->opt_kind != OPTIM_ADAFACTOR) { // (Adafactor's state: t5cu_adafactor_alloc)
        plan[n++] = AllocPlan{ (void**)&m->m_mem, sh * f };
        plan[n++] = AllocPlan{ (void**)&m->v_mem, sh * f };
    }
#ifdef ENABLE_FP32
    if (m->zero) plan[n++] = AllocPlan{ (void**)&m->params_x, full * sizeof(floatX) };
#else
    plan[n++] = AllocPlan{ (void**)&m->params_x, full * sizeof(floatX) };
    if (m->zero) plan[n++] = AllocPlan{ (void**)&m->f32, m->order.f32_total * f };
#endif
    if (m->zero) plan[n++] = AllocPlan{ (void**)&m->gshard, sh * f };
    return n;
}

static void state_alias(T5Cuda* m) {
    if (!m->params_x) m->params_x = (floatX*)m->master;                 // fp32 build, no ZeRO-1
    if (!m->f32) m->f32 = m->zero || m->lora ? (float*)m->params_x : m->master; // fp32 build with ZeRO-1 or LoRA
    if (!m->gshard) m->gshard = m->grads;
}

static size_t plan_bytes(const AllocPlan* plan, int n) {
    size_t s = 0;
    for (int i = 0; i < n; i++) s += plan[i].bytes;
    return s;
}

// the geometry of the state: device order with one part per rank under ZeRO-1
static void t5cu_set_geometry(T5Cuda* m, const T5Config* c, const T5CudaOptions* o) {
    m->config = *c;
    t5_layout(c, &m->layout);
    m->comm = o->comm;
    m->zero = o->zero;
    m->recompute = o->recompute;
    m->attention = o->attention;
    m->graphs.on = o->graphs;
    m->opt_kind = o->optimizer;
    m->af_beta1 = o->optimizer == OPTIM_ADAFACTOR && o->af_beta1;
    if (o->optimizer == OPTIM_ADAFACTOR && o->zero) { // (gpu_init refuses the flags first; this guards the tests)
        fprintf(stderr, "error: %s\n", ADAFACTOR_ZERO_REFUSAL);
        exit(EXIT_FAILURE);
    }
    if (o->attention == ATTN_FLASH && !flash_attention_supports(c->d_kv)) {
        fprintf(stderr, "error: --attention flash has kernels for d_kv 64 and 128 only (this model: %d)\n", c->d_kv);
        exit(EXIT_FAILURE);
    }
    if (o->attention == ATTN_CUDNN) {
        char err[256];
        if (cudnn_attention_check(c->d_kv, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); exit(EXIT_FAILURE); }
#ifdef ENABLE_CUDNN
        m->cudnn = cudnn_attn_create(err, sizeof(err));
        if (!m->cudnn) { fprintf(stderr, "error: %s\n", err); exit(EXIT_FAILURE); }
#endif
    }
    if (o->zero && !o->comm) { fprintf(stderr, "error: ZeRO-1 needs a communicator (even one of one rank)\n"); exit(EXIT_FAILURE); }
    int shard = o->zero && !o->lora; // LoRA: every rank holds the whole frozen base; ZeRO-1 shards the adapter's state
    int ranks = shard ? o->comm->size : 1;
    m->shard_rank = shard ? o->comm->rank : 0;
    if (o->lora) {
        m->lora = (LoraState*)callocCheck(1, sizeof(LoraState));
        lora_state_geometry(m->lora, o->lora, c, o->zero, o->comm);
    }
    order_build(&m->order, c, ranks);
    const char* bad = order_check(&m->order, &m->layout);
    if (bad) { fprintf(stderr, "error: device order of the parameters: %s\n", bad); exit(EXIT_FAILURE); }
}

// ----------------------------------------------------------------------------
// host (llmc/t5.h layout) ↔ device (llmc/zero.cuh order), one bucket at a time through a staging buffer

typedef enum { T5CU_PARAMS, T5CU_ADAM_M, T5CU_ADAM_V, T5CU_GRADS } T5CuBuffer;

// the slices of bucket b between a host buffer and `stage` (the bucket in device order)
static void bucket_slices_copy(const T5Cuda* m, int b, float* stage, float* host, cudaMemcpyKind dir) {
    const Bucket* bk = &m->order.b[b];
    for (int k = 0; k < m->order.ns; k++) {
        const OrderSlice* s = &m->order.s[k];
        if (s->dev < bk->off || s->dev >= bk->off + bk->n) continue;
        float* d = stage + (s->dev - bk->off);
        float* h = host + s->host;
        if (dir == cudaMemcpyHostToDevice) cudaCheck(cudaMemcpy(d, h, s->n * sizeof(float), dir));
        else cudaCheck(cudaMemcpy(h, d, s->n * sizeof(float), dir));
    }
}

// a programming error: under LoRA the base has only its floatX weights on the device (llmc/lora.cuh's
// lora_put / lora_get move the adapter)
static void t5cu_frozen_error(const char* what) {
    fprintf(stderr, "error: %s: the base is frozen under LoRA (no master copy, gradients or moments)\n", what);
    exit(EXIT_FAILURE);
}

static float* shard_buffer(T5Cuda* m, T5CuBuffer which) {
    return which == T5CU_PARAMS ? m->master : which == T5CU_ADAM_M ? m->m_mem : m->v_mem;
}

// device ← host buffer in layout order (every rank passes the whole buffer and keeps its parts)
static void t5cu_put(T5Cuda* m, T5CuBuffer which, const float* host) {
    if (m->lora && which != T5CU_PARAMS) t5cu_frozen_error("t5cu_put");
    const ParamOrder* o = &m->order;
    float* stage = cuda_alloc<float>(o->max_bucket);
    cudaCheck(cudaStreamSynchronize(m->stream));
    for (int b = 0; b < o->nb; b++) {
        const Bucket* bk = &o->b[b];
        if (!bk->n) continue;
        cudaCheck(cudaMemset(stage, 0, bk->n * sizeof(float)));
        bucket_slices_copy(m, b, stage, (float*)host, cudaMemcpyHostToDevice);
        const float* mine = stage + (size_t)m->shard_rank * bk->part;
        size_t part = bk->part * sizeof(float);
        if (which == T5CU_GRADS) {
            cudaCheck(cudaMemcpy(m->grads + bk->off, stage, bk->n * sizeof(float), cudaMemcpyDeviceToDevice));
            continue;
        }
        if (shard_buffer(m, which)) // (no master copy under LoRA)
            cudaCheck(cudaMemcpy(shard_buffer(m, which) + bk->vstart, mine, part, cudaMemcpyDeviceToDevice));
        if (which != T5CU_PARAMS) continue;
        copy_to_floatx(m->params_x + bk->off, stage, bk->n, 0);
        if (bk->fp32_read && m->f32 != m->master && (void*)m->f32 != (void*)m->params_x)
            cudaCheck(cudaMemcpy(m->f32 + bk->off, stage, bk->n * sizeof(float), cudaMemcpyDeviceToDevice));
    }
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaFree(stage));
}

// host buffer in layout order ← device. Under ZeRO-1 the parts are gathered from all ranks, so every
// rank must call; host may be NULL on ranks that do not need the values.
static void t5cu_get(T5Cuda* m, T5CuBuffer which, float* host) {
    if (m->lora) t5cu_frozen_error("t5cu_get");
    const ParamOrder* o = &m->order;
    float* stage = m->zero && which != T5CU_GRADS ? cuda_alloc<float>(o->max_bucket) : NULL;
    for (int b = 0; b < o->nb; b++) {
        const Bucket* bk = &o->b[b];
        if (!bk->n) continue;
        float* src;
        if (which == T5CU_GRADS) src = m->grads + bk->off;
        else if (!m->zero) src = shard_buffer(m, which) + bk->off;
        else {
            comm_all_gather(m->comm, shard_buffer(m, which) + bk->vstart, stage, bk->part, COMM_F32, m->stream);
            src = stage;
        }
        cudaCheck(cudaStreamSynchronize(m->stream));
        if (host) bucket_slices_copy(m, b, src, host, cudaMemcpyDeviceToHost);
    }
    if (stage) cudaCheck(cudaFree(stage));
}

// ----------------------------------------------------------------------------
// Adafactor's state on the device: the slices of llmc/optim.h (each HF tensor: a layer of a stacked tensor on
// its own) with their device addresses, one flat state in the host's slice order (what a checkpoint holds:
// uploaded and gathered with one copy), and the scratch of the largest factored slice

// the device offset of the model's tensor copy at host (layout) offset `host`: llmc/zero.cuh's slice of it
static size_t t5cu_dev_of(const T5Cuda* m, size_t host, size_t n) {
    for (int k = 0; k < m->order.ns; k++)
        if (m->order.s[k].host == host && m->order.s[k].n == n) return m->order.s[k].dev;
    fprintf(stderr, "error: no device copy of %zu floats at host offset %zu (llmc/optim.h and llmc/zero.cuh disagree)\n", n, host);
    exit(EXIT_FAILURE);
}

// the slices of the trainable tensors (the model's, or the adapter's: llmc/lora.h's layout is its device
// buffer's too), the zero state (the first step's) and the scratch
static void t5cu_adafactor_alloc(T5Cuda* m) {
    int lora = m->lora != NULL;
    int n = lora ? lora_opt_slices(&m->lora->layout, NULL) : t5_opt_slices(&m->layout, NULL);
    OptSlice* sl = (OptSlice*)mallocCheck((size_t)(n > 0 ? n : 1) * sizeof(OptSlice));
    if (lora) lora_opt_slices(&m->lora->layout, sl); else t5_opt_slices(&m->layout, sl);
    m->af_slices = (AfSlice*)mallocCheck((size_t)(n > 0 ? n : 1) * sizeof(AfSlice));
    m->af_ns = n;
    size_t at = 0;
    int max_rows = 1, max_cols = 1;
    for (int k = 0; k < n; k++) {
        const OptSlice* o = &sl[k];
        size_t count = (size_t)o->rows * o->cols;
        AfSlice a = { *o, lora ? o->off : t5cu_dev_of(m, o->off, count), at };
        m->af_slices[k] = a;
        at += adafactor_state_floats(o->rows, o->cols, o->factored, m->af_beta1);
        if (o->factored && o->rows > max_rows) max_rows = o->rows;
        if (o->factored && o->cols > max_cols) max_cols = o->cols;
    }
    free(sl);
    m->af_n = at;
    m->af_state = cuda_alloc<float>(at + 1);
    cudaCheck(cudaMemset(m->af_state, 0, (at + 1) * sizeof(float)));
    adafactor_scratch_create(&m->af_scratch, max_rows, max_cols);
    m->state_bytes += at * sizeof(float);
}

static void t5cu_adafactor_free(T5Cuda* m) {
    if (!m->af_state) return;
    cudaCheck(cudaFree(m->af_state));
    adafactor_scratch_free(&m->af_scratch);
    free(m->af_slices);
    m->af_state = NULL; m->af_slices = NULL;
}

// Adafactor's state from a checkpoint (af_n floats, host slice order: llmc/model.h checked the length against
// the stored config and β1; checked again here against the engine's own count) and the updates done
static void t5cu_set_adafactor_state(T5Cuda* m, const float* af, size_t n, long long step) {
    if (m->opt_kind != OPTIM_ADAFACTOR || n != m->af_n) {
        fprintf(stderr, "error: Adafactor state of %zu floats for an engine that holds %zu (%s)\n", n, m->af_n,
                optim_name(m->opt_kind));
        exit(EXIT_FAILURE);
    }
    cudaCheck(cudaMemcpy(m->af_state, af, n * sizeof(float), cudaMemcpyHostToDevice));
    m->step = step;
}

// builds the model from a flat host buffer of fp32 parameters (layout order) on the current device
static void t5cu_build_with(T5Cuda* m, const T5Config* c, const float* params, const T5CudaOptions* o) {
    memset(m, 0, sizeof(*m));
    t5cu_set_geometry(m, c, o);
    cudaCheck(cudaStreamCreate(&m->stream));
    matmul_ctx_init(&m->mm, m->stream);
    if (o->matmul_tune) m->mm.tune = o->matmul_tune;    // the flags over the environment's default (matmul_ctx_init:
    if (o->matmul_plans) m->mm.plans = o->matmul_plans; //   T5_MATMUL_TUNE / _PLANS, which the tests and twins still read)
    m->relu_epilogue = !c->gated && c->act == ACT_RELU && matmul_relu_epilogues_available(&m->mm, c->d_model, c->d_ff) &&
                       !(o->lora && lora_wraps_ffn(o->lora)); // an adapter's product goes between the FFN's and its ReLU
    AllocPlan plan[8];
    int n = state_plan(m, plan);
    for (int i = 0; i < n; i++) {
        *plan[i].p = cuda_alloc<char>(plan[i].bytes);
        cudaCheck(cudaMemset(*plan[i].p, 0, plan[i].bytes)); // alignment gaps stay zero
    }
    state_alias(m);
    m->state_bytes = plan_bytes(plan, n);
    if (m->lora) {
        lora_state_alloc(m->lora);
        m->state_bytes += lora_state_bytes(m->lora);
    }
    if (m->opt_kind == OPTIM_ADAFACTOR) t5cu_adafactor_alloc(m);
    t5cu_put(m, T5CU_PARAMS, params);
    m->loss_sum = cuda_alloc<double>(2);
    m->norm = cuda_alloc<float>(1);
    m->norm_partial = cuda_alloc<double>(NORM_BLOCKS);
    m->sumsq = cuda_alloc<double>(1);
    m->step_dev = cuda_alloc<StepDev>(1);
    cudaCheck(cudaMemset(m->step_dev, 0, sizeof(StepDev)));
    for (int s = 0; s < 2; s++) cudaCheck(cudaEventCreateWithFlags(&m->batch.copied[s], cudaEventDisableTiming));
    cudaCheck(cudaStreamSynchronize(m->stream));
}

// one process, no ZeRO-1, no recompute
static void t5cu_build(T5Cuda* m, const T5Config* c, const float* params) {
    T5CudaOptions o = { NULL, 0, 0, ATTN_GEMM, NULL, 0, 0, 0, OPTIM_ADAMW, 0 };
    t5cu_build_with(m, c, params, &o);
}

// AdamW moments and step from a checkpoint (host buffers of layout size)
// (under LoRA: the adapter's moments, adapter-sized)
static void t5cu_set_optimizer_state(T5Cuda* m, const float* mm, const float* vv, long long step) {
    if (m->lora) {
        lora_put(m->lora, LORA_ADAM_M, mm, m->stream);
        lora_put(m->lora, LORA_ADAM_V, vv, m->stream);
    } else {
        t5cu_put(m, T5CU_ADAM_M, mm);
        t5cu_put(m, T5CU_ADAM_V, vv);
    }
    m->step = step;
}

// LoRA: the adapter's A and B from a host buffer (llmc/lora.h layout), and the fingerprint of the fp32
// base (lora_base_fingerprint) that its checkpoints carry
static void t5cu_lora_set(T5Cuda* m, const float* adapter, uint32_t base_crc) {
    lora_put(m->lora, LORA_PARAMS, adapter, m->stream);
    m->lora->base_n = (int64_t)m->layout.total;
    m->lora->base_crc = base_crc;
}

static void t5cu_free_acts(T5CudaActs* a) {
    void** p = (void**)a;
    for (size_t i = 0; i < sizeof(T5CudaActs) / sizeof(void*); i++) { cudaCheck(cudaFree(p[i])); p[i] = NULL; }
}

static void t5cu_free_batch(BatchDev* d) {
    cudaCheck(cudaFree(d->dev));
    for (int s = 0; s < 2; s++) { cudaCheck(cudaFreeHost(d->host[s])); cudaCheck(cudaEventDestroy(d->copied[s])); }
    free(d->pairs);
}

static void t5cu_free(T5Cuda* m) {
    free(m->host_state);
    cudaCheck(cudaStreamSynchronize(m->stream));
    graphs_drop(&m->graphs);
    prof_free(m->prof);
    cudnn_attn_free(m->cudnn);
    batch_free(&m->padded);
    t5cu_free_acts(&m->acts);
    t5cu_free_batch(&m->batch);
    AllocPlan plan[8];
    int n = state_plan(m, plan); // the owned buffers (plan reads only the geometry and the pointers)
    for (int i = 0; i < n; i++) cudaCheck(cudaFree(*plan[i].p));
    cudaCheck(cudaFree(m->loss_sum)); cudaCheck(cudaFree(m->norm)); cudaCheck(cudaFree(m->norm_partial));
    cudaCheck(cudaFree(m->sumsq)); cudaCheck(cudaFree(m->step_dev));
    if (m->lora) { lora_state_free(m->lora); free(m->lora); }
    t5cu_adafactor_free(m);
    matmul_ctx_free(&m->mm);
    cudaCheck(cudaStreamDestroy(m->stream));
    order_free(&m->order);
    memset(m, 0, sizeof(*m));
}

// the activation buffers for batches up to (B, Ts, Tt); with recompute the block internals (all but
// the residual streams e_res, e_mid, d_res, d_mid1, d_mid2) hold one block, reused by every block.
// Gemm attention keeps the probabilities (B, H, Tq, Tk) per block and (B, H, Tm, Tm) scratch; flash
// attention keeps one logsumexp per row and its backward scratch; cuDNN keeps the logsumexps too, and
// the dense bias and its gradient (H, Tm, Tm) as scratch (the other sets are planned empty).
// t5cu_alloc_acts allocates these and --plan-memory adds them up.
static int acts_plan(T5CudaActs* a, const T5Config* c, int B, int Ts, int Tt, int recompute, int attention, int relu_epi,
                     AllocPlan* plan) {
    size_t C = c->d_model, HD = (size_t)c->num_heads * c->d_kv, F = c->d_ff, H = c->num_heads, V = c->vocab_size;
    size_t Le = c->num_layers, Ld = c->num_decoder_layers;
    size_t Ke = recompute ? 1 : Le, Kd = recompute ? 1 : Ld; // stacked copies of the block internals
    size_t Ne = (size_t)B * Ts, Nd = (size_t)B * Tt, Nm = Ne > Nd ? Ne : Nd, Tm = Ts > Tt ? Ts : Tt;
    size_t Ff = c->gated ? F : 0, f = sizeof(float), x = sizeof(floatX);
    size_t ga = attention == ATTN_GEMM, la = attn_keeps_lse(attention), fa = attention == ATTN_FLASH,
           ca = attention == ATTN_CUDNN; // which attention's buffers are sized
    size_t part = flash_attention_part_floats(B, (int)H, (int)Tm, (int)Tm); // the larger self-attention
    AllocPlan p[] = {
        {(void**)&a->e_res, (Le + 1) * Ne * C * f}, {(void**)&a->e_mid, Le * Ne * C * f}, {(void**)&a->e_ln1, Ke * Ne * C * x},
        {(void**)&a->e_rstd1, Ke * Ne * f}, {(void**)&a->e_qkv, Ke * 3 * Ne * HD * x}, {(void**)&a->e_att, ga * Ke * B * H * Ts * Ts * x},
        {(void**)&a->e_lse, la * Ke * B * H * Ts * f},
        {(void**)&a->e_ctx, Ke * Ne * HD * x}, {(void**)&a->e_ln2, Ke * Ne * C * x}, {(void**)&a->e_rstd2, Ke * Ne * f},
        {(void**)&a->e_h0, Ke * Ne * F * x}, {(void**)&a->e_h1, Ke * Ne * Ff * x}, {(void**)&a->e_ff, Ke * Ne * F * x},
        {(void**)&a->e_mask, relu_epi * Ke * relu_mask_bytes((int)Ne, (int)F)},
        {(void**)&a->e_rstdf, Ne * f}, {(void**)&a->e_out, Ne * C * x},
        {(void**)&a->d_res, (Ld + 1) * Nd * C * f}, {(void**)&a->d_mid1, Ld * Nd * C * f}, {(void**)&a->d_mid2, Ld * Nd * C * f},
        {(void**)&a->d_ln1, Kd * Nd * C * x}, {(void**)&a->d_rstd1, Kd * Nd * f}, {(void**)&a->d_qkv, Kd * 3 * Nd * HD * x},
        {(void**)&a->d_att, ga * Kd * B * H * Tt * Tt * x},
        {(void**)&a->d_lse, la * Kd * B * H * Tt * f}, {(void**)&a->d_ctx, Kd * Nd * HD * x}, {(void**)&a->d_ln2, Kd * Nd * C * x},
        {(void**)&a->d_rstd2, Kd * Nd * f}, {(void**)&a->d_cq, Kd * Nd * HD * x}, {(void**)&a->d_ckv, Kd * 2 * Ne * HD * x},
        {(void**)&a->d_catt, ga * Kd * B * H * Tt * Ts * x},
        {(void**)&a->d_clse, la * Kd * B * H * Tt * f}, {(void**)&a->d_cctx, Kd * Nd * HD * x}, {(void**)&a->d_ln3, Kd * Nd * C * x},
        {(void**)&a->d_rstd3, Kd * Nd * f}, {(void**)&a->d_h0, Kd * Nd * F * x}, {(void**)&a->d_h1, Kd * Nd * Ff * x},
        {(void**)&a->d_ff, Kd * Nd * F * x}, {(void**)&a->d_mask, relu_epi * Kd * relu_mask_bytes((int)Nd, (int)F)},
        {(void**)&a->d_rstdf, Nd * f}, {(void**)&a->d_out, Nd * C * x},
        {(void**)&a->logits, Nd * V * x}, {(void**)&a->losses, Nd * f},
        {(void**)&a->sub, Nm * C * f}, {(void**)&a->scores, ga * B * H * Tm * Tm * f}, {(void**)&a->att_x, ga * B * H * Tm * Tm * x},
        {(void**)&a->diag, H * (2 * Tm - 1) * f}, {(void**)&a->delta, fa * B * H * Tm * f}, {(void**)&a->diag_part, fa * part * f},
        {(void**)&a->e_bias_x, ca * H * Ts * Ts * x}, {(void**)&a->d_bias_x, ca * H * Tt * Tt * x},
        {(void**)&a->dbias_x, ca * H * Tm * Tm * x}, {(void**)&a->q_len, ca * 2 * B * sizeof(int)},
        {(void**)&a->rng, ca * 2 * sizeof(int64_t)},
        {(void**)&a->g_res, Nm * C * f}, {(void**)&a->g_x, Nm * C * f},
        {(void**)&a->g_sub, Nm * C * x}, {(void**)&a->g_qkv, 3 * Nm * HD * x}, {(void**)&a->g_ctx, Nm * HD * x},
        {(void**)&a->g_h0, Nm * F * x}, {(void**)&a->g_h1, Nm * Ff * x}, {(void**)&a->g_ff, Nm * F * x},
        {(void**)&a->g_enc, Ne * C * f}, {(void**)&a->g_ckv, 2 * Ne * HD * x}, {(void**)&a->dw_partial, RMSNORM_CHUNKS * C * f},
    };
    static_assert(sizeof(p) / sizeof(p[0]) == sizeof(T5CudaActs) / sizeof(void*), "every activation is planned");
    memcpy(plan, p, sizeof(p));
    return (int)(sizeof(p) / sizeof(p[0]));
}

#define ACTS_PLAN_MAX ((int)(sizeof(T5CudaActs) / sizeof(void*)))

static void t5cu_alloc_acts(T5Cuda* m, int B, int Ts, int Tt) {
    cudaCheck(cudaStreamSynchronize(m->stream));
    graphs_drop(&m->graphs);
    T5CudaActs* a = &m->acts;
    t5cu_free_acts(a);
    AllocPlan plan[ACTS_PLAN_MAX];
    int n = acts_plan(a, &m->config, B, Ts, Tt, m->recompute, m->attention, m->relu_epilogue, plan);
    for (int i = 0; i < n; i++) *plan[i].p = cuda_alloc<char>(plan[i].bytes);
    m->act_bytes = plan_bytes(plan, n);
    m->max_B = B; m->max_Ts = Ts; m->max_Tt = Tt;
    if (m->lora) { // the adapters' scratch: one wrapped Linear at a time, up to B·max(Ts, Tt) rows
        lora_reserve(m->lora, (size_t)B * (Ts > Tt ? Ts : Tt));
        m->act_bytes += lora_scratch_bytes(m->lora, m->lora->tokens);
    }
}

static void t5cu_build_acts(T5Cuda* m, int B, int Ts, int Tt) {
    if (B <= m->max_B && Ts <= m->max_Ts && Tt <= m->max_Tt) return;
    t5cu_alloc_acts(m, B > m->max_B ? B : m->max_B, Ts > m->max_Ts ? Ts : m->max_Ts, Tt > m->max_Tt ? Tt : m->max_Tt);
}
// ----------------------------------------------------------------------------
// the batch: validated on the host, staged in pinned memory, one copy to the device

// ints of one staged batch: ids, lengths, groups (3N + 2 each side), buckets (2T − 1 each side)
static size_t batch_ints(int B, int Ts, int Tt) {
    size_t Ne = (size_t)B * Ts, Nd = (size_t)B * Tt;
    return Ne + B + 2 * Nd + (3 * Ne + 2) + (3 * Nd + 2) + (2 * Ts - 1) + (2 * Tt - 1);
}

// (the sort scratch `pairs` is sized from ints too: ints ≥ 4·max(Ne, Nd), so a later batch that needs no
// more ints never needs more pairs — sizing it from the first batch's tokens overflowed the host heap)
static void batch_dev_reserve(BatchDev* d, size_t ints) {
    if (ints <= d->cap) return;
    if (d->dev) {
        cudaCheck(cudaFree(d->dev));
        for (int s = 0; s < 2; s++) cudaCheck(cudaFreeHost(d->host[s]));
        free(d->pairs);
    }
    d->cap = ints;
    d->dev = cuda_alloc<int>(ints);
    for (int s = 0; s < 2; s++) cudaCheck(cudaMallocHost((void**)&d->host[s], ints * sizeof(int)));
    d->pairs = (int*)mallocCheck(ints * sizeof(int)); // 2·max(Ne, Nd) ints at most
}

// activations and batch buffers for the largest batch a run can see (B examples of Ts / Tt tokens), made
// before its first step: growing them later frees and reallocates, which synchronises the device mid-run
// cuDNN attention builds one graph per shape (and direction): its batches are padded to multiples of
// CUDNN_PAD tokens on both sides, so a run meets at most (512/64)·(128/64) shapes instead of about one
// per batch. The added positions are padding like any other (source keys masked by src_len, target
// labels IGNORE_INDEX, causal): the loss, the gradients and the real-token counts do not change
// (test_t5 test_repad). With dropout on, the hash masks are drawn by position, so padding draws others.
#define CUDNN_PAD 64
static int t5cu_padded_len(const T5Cuda* m, int T) {
    return m->attention == ATTN_CUDNN ? CEIL_DIV(T, CUDNN_PAD) * CUDNN_PAD : T;
}

static const T5Batch* t5cu_shape_batch(T5Cuda* m, const T5Batch* b) {
    int Ts = t5cu_padded_len(m, b->Ts), Tt = t5cu_padded_len(m, b->Tt);
    if (Ts == b->Ts && Tt == b->Tt) return b;
    return batch_repad(&m->padded, b, Ts, Tt, m->config.pad_id);
}

static void t5cu_reserve(T5Cuda* m, int B, int Ts, int Tt) {
    Ts = t5cu_padded_len(m, Ts); Tt = t5cu_padded_len(m, Tt);
    t5cu_build_acts(m, B, Ts, Tt);
    if (batch_ints(B, Ts, Tt) > m->batch.cap) graphs_drop(&m->graphs);
    batch_dev_reserve(&m->batch, batch_ints(B, Ts, Tt));
}

// carves a staged block into its parts; g receives the group arrays of N tokens
static int* batch_carve_groups(int* p, EmbedGroups* g, int N) {
    g->uniq = p; g->start = p + N + 1; g->pos = p + 2 * (N + 1);
    return p + 3 * N + 2;
}

// stages b and copies it to the device; computes the relative-position buckets on the device
static void t5cu_upload_batch(T5Cuda* m, const T5Batch* b) {
    BatchDev* d = &m->batch;
    int B = b->B, Ts = b->Ts, Tt = b->Tt, Ne = B * Ts, Nd = B * Tt;
    size_t n = batch_ints(B, Ts, Tt);
    if (n > d->cap) { cudaCheck(cudaStreamSynchronize(m->stream)); graphs_drop(&m->graphs); } // growing: the old buffers may still be read
    batch_dev_reserve(d, n);
    d->slot ^= 1;
    cudaCheck(cudaEventSynchronize(d->copied[d->slot])); // the slot's previous copy has finished
    int* h = d->host[d->slot];
    memcpy(h, b->src, (size_t)Ne * sizeof(int));
    memcpy(h + Ne, b->src_len, (size_t)B * sizeof(int));
    memcpy(h + Ne + B, b->dec_in, (size_t)Nd * sizeof(int));
    memcpy(h + Ne + B + Nd, b->labels, (size_t)Nd * sizeof(int));
    EmbedGroups he, hd;
    int* end = batch_carve_groups(h + Ne + B + 2 * Nd, &he, Ne);
    end = batch_carve_groups(end, &hd, Nd);
    embed_groups_build(&he, b->src, Ne, d->pairs);
    embed_groups_build(&hd, b->dec_in, Nd, d->pairs);
    int V = m->config.vocab_size, cap_e = Ne < V ? Ne : V, cap_d = Nd < V ? Nd : V; // n_uniq ≤ min(N, V)
    he.uniq[cap_e] = he.n_uniq; hd.uniq[cap_d] = hd.n_uniq; // the device counts of a graph's launch (EmbedGroups)
    cudaCheck(cudaMemcpyAsync(d->dev, h, (size_t)(end - h) * sizeof(int), cudaMemcpyHostToDevice, m->stream));
    cudaCheck(cudaEventRecord(d->copied[d->slot], m->stream));
    int* q = d->dev;
    d->src = q; d->src_len = q + Ne; d->dec_in = q + Ne + B; d->labels = q + Ne + B + Nd;
    int* qe = batch_carve_groups(q + Ne + B + 2 * Nd, &d->enc, Ne);
    int* qd = batch_carve_groups(qe, &d->dec, Nd);
    d->enc.n_uniq = he.n_uniq; d->dec.n_uniq = hd.n_uniq;
    d->enc.cap = m->graphs.on ? cap_e : 0; d->dec.cap = m->graphs.on ? cap_d : 0;
    int* eb = qd;
    int* db = eb + 2 * Ts - 1;
    const T5Config* c = &m->config;
    relative_buckets(eb, Ts, 1, c->num_buckets, c->max_distance, m->stream);
    relative_buckets(db, Tt, 0, c->num_buckets, c->max_distance, m->stream);
    d->enc_buckets = eb; d->dec_buckets = db;
}

// ----------------------------------------------------------------------------
// sublayers: pre-norm residual blocks. The RMSNorm of a sublayer is computed by the fused kernel
// that ends the previous sublayer (its residual add), so a sublayer starts from its normed input.

// dropout sites: (stack, block, kind) → one 32-bit id. These numbers must be the CPU engine's
// (train_t5.c drop_site): test_t5cu compares the two engines with dropout on, which fails otherwise.
enum { DROP_EMBED, DROP_ATT, DROP_ATT_RES, DROP_CROSS, DROP_CROSS_RES, DROP_FF, DROP_FF_RES, DROP_FINAL };
static DropSite drop_at(const T5Cuda* m, int decoder, int layer, int kind) {
    DropSite d = { m->train ? m->config.dropout : 0.0f, 0, ((uint32_t)decoder << 20) | ((uint32_t)layer << 4) | (uint32_t)kind,
                   &m->step_dev->seed }; // the micro-batch's seed, in device memory (t5cu_forward_begin)
    return d;
}
static const DropSite NO_DROP = { 0.0f, 0, 0, NULL };

// LoRA: the adapter of layout tensor i, copy l, beside the frozen product of its Linear (llmc/lora.cuh).
// Nothing when LoRA is off, i is not wrapped, or the adapter is merged (generation). Its input dropout
// is the CPU engine's mask: lora_drop_site of llmc/lora.h, the step's seed.
static LoraLinear lora_at(const T5Cuda* m, int i, int l) {
    DropSite d = { m->train ? m->lora->config.dropout : 0.0f, 0, lora_drop_site(i, l), &m->step_dev->seed }; // as drop_at
    return lora_linear(m->lora, i, l, d);
}

// out (N, OC) += the adapter's product on inp (N, IC)
static void lora_fwd(T5Cuda* m, int i, int l, void* out, int out_fp32, const floatX* inp, int N, int IC, int OC) {
    if (!m->lora) return;
    LoraLinear v = lora_at(m, i, l);
    if (!v.A) return;
    lora_linear_forward(&m->mm, &v, m->lora->scratch, out, out_fp32, inp, N, IC, OC, m->stream);
    prof_op(m->prof, "fwd_lora");
}

// the adapter's gradients from dout (N, OC), and dinp (N, IC) += its input gradient
static void lora_bwd(T5Cuda* m, int i, int l, void* dinp, int dinp_fp32, const floatX* dout, const floatX* inp, int N,
                     int IC, int OC) {
    if (!m->lora) return;
    LoraLinear v = lora_at(m, i, l);
    if (!v.A) return;
    lora_linear_backward(&m->mm, &v, m->lora->scratch, dinp, dinp_fp32, dout, inp, N, IC, OC, m->stream);
    prof_op(m->prof, "bwd_lora");
}

typedef struct { int ln, q, k, v, o; } AttnIds;     // tensor ids of one attention sublayer
typedef struct { int ln, wi0, wi1, wo; } FfnIds;
static const AttnIds ENC_ATTN = { P_ENC_LN1, P_ENC_Q, P_ENC_K, P_ENC_V, P_ENC_O };
static const AttnIds DEC_SELF = { P_DEC_LN1, P_DEC_Q, P_DEC_K, P_DEC_V, P_DEC_O };
static const AttnIds DEC_CROSS = { P_DEC_LN2, P_DEC_CQ, P_DEC_CK, P_DEC_CV, P_DEC_CO };
static const FfnIds ENC_FFN = { P_ENC_LN2, P_ENC_WI0, P_ENC_WI1, P_ENC_WO };
static const FfnIds DEC_FFN = { P_DEC_LN3, P_DEC_WI0, P_DEC_WI1, P_DEC_WO };

// activations of one attention sublayer. Self-attention: k, v from ln (N tokens); cross-attention:
// from the encoder output (Nkv = B·Ts tokens)
typedef struct {
    floatX* ln; float* rstd;   // (N, C), (N)
    floatX *q, *kv;            // (N, HD), (2, Nkv, HD)
    floatX *att, *ctx;         // (B, H, Tq, Tk) (gemm attention), (N, HD)
    const floatX* kv_src; int Nkv;
    float* lse;                // (B, H, Tq) (flash attention)
} AttnActs;

typedef struct { floatX* ln; float* rstd; floatX *h0, *h1, *ff; unsigned char* mask; } FfnActs;

static AttnScratch attn_scratch(T5Cuda* m) { return AttnScratch{ m->acts.scores, m->acts.att_x, m->acts.diag }; }
static FlashScratch flash_scratch(T5Cuda* m) { return FlashScratch{ m->acts.delta, m->acts.diag_part, m->acts.diag }; }

// ----------------------------------------------------------------------------
// cuDNN attention (--attention cudnn, llmc/attention_cudnn.cuh) on the model's scratch

#ifdef ENABLE_CUDNN
// the buffers of a spec of t5cu_specs: encoder self-attention (bias, key padding), decoder
// self-attention (bias, causal), cross-attention (key padding, no bias)
static CudnnScratch cudnn_scratch(T5Cuda* m, const AttnSpec* s) {
    T5CudaActs* a = &m->acts;
    return CudnnScratch{ s->causal ? a->d_bias_x : a->e_bias_x, a->dbias_x, a->q_len + (s->relb ? 0 : m->B), a->diag, a->rng };
}
#define CUDNN_CALL(call) call
#else
#define CUDNN_CALL(call) ((void)0) // unreachable: t5cu_set_geometry refuses ATTN_CUDNN in this build
#endif

// a stack's attention inputs that stay fixed within the step (dense bias, query lengths), before its
// first attention call of the step; every later call of those specs (forward, recompute, backward) reads them
static void cudnn_step_inputs(T5Cuda* m, const AttnSpec* s1, const AttnSpec* s2) {
#ifdef ENABLE_CUDNN
    if (m->attention != ATTN_CUDNN) return;
    cudnn_attention_inputs(s1, cudnn_scratch(m, s1), m->stream);
    if (s2) cudnn_attention_inputs(s2, cudnn_scratch(m, s2), m->stream);
#else
    (void)m; (void)s1; (void)s2;
#endif
}

// the internals of an attention sublayer: q(ln), k(kv_src), v(kv_src), probabilities, context
static void attn_inner_forward(T5Cuda* m, AttnActs a, AttnIds w, int l, const AttnSpec* s, int N) {
    const T5Config* c = &m->config;
    int C = c->d_model, HD = c->num_heads * c->d_kv;
    const floatX* kv_src = a.kv_src ? a.kv_src : a.ln;
    matmul_forward(&m->mm, a.q, 0, a.ln, PX(m, w.q, l), N, C, HD);
    matmul_forward(&m->mm, a.kv, 0, kv_src, PX(m, w.k, l), a.Nkv, C, HD);
    matmul_forward(&m->mm, a.kv + (size_t)a.Nkv * HD, 0, kv_src, PX(m, w.v, l), a.Nkv, C, HD);
    prof_op(m->prof, "fwd_qkv_matmul");
    lora_fwd(m, w.q, l, a.q, 0, a.ln, N, C, HD);
    lora_fwd(m, w.k, l, a.kv, 0, kv_src, a.Nkv, C, HD);
    lora_fwd(m, w.v, l, a.kv + (size_t)a.Nkv * HD, 0, kv_src, a.Nkv, C, HD);
    const floatX* v = a.kv + (size_t)a.Nkv * HD;
    if (m->attention == ATTN_FLASH) flash_attention_forward(a.ctx, a.lse, a.q, a.kv, v, s, m->stream);
    else if (m->attention == ATTN_CUDNN)
        CUDNN_CALL(cudnn_attention_forward(m->cudnn, cudnn_scratch(m, s), a.ctx, a.lse, a.q, a.kv, v, s, m->stream));
    else attention_forward(&m->mm, a.ctx, a.att, attn_scratch(m), a.q, a.kv, v, s, m->stream);
    prof_op(m->prof, "fwd_attention");
}

// sub (N, C) fp32 = o(attention(q(ln), k(kv_src), v(kv_src)))
static void attn_sublayer_forward(T5Cuda* m, AttnActs a, AttnIds w, int l, const AttnSpec* s, int N) {
    const T5Config* c = &m->config;
    attn_inner_forward(m, a, w, l, s, N);
    matmul_forward(&m->mm, m->acts.sub, 1, a.ctx, PX(m, w.o, l), N, c->num_heads * c->d_kv, c->d_model);
    prof_op(m->prof, "fwd_attn_out_matmul");
    lora_fwd(m, w.o, l, m->acts.sub, 1, a.ctx, N, c->num_heads * c->d_kv, c->d_model);
}

// the plain ReLU FFN with no dropout on its activation (dropout 0, or evaluation) and a mask buffer:
// ff = relu(wi ln) straight from the product's epilogue, which also keeps the mask for the backward
// pass (h0 is not written); its backward pass is one product with the DRELU epilogue
static int ffn_fused_relu(const T5Cuda* m, const FfnActs* a, DropSite act_drop) {
    return m->relu_epilogue && a->mask && act_drop.p == 0.0f;
}

// the internals of an FFN sublayer: ff = dropout(act(wi0 ln) [· wi1 ln])
static void ffn_inner_forward(T5Cuda* m, FfnActs a, FfnIds w, int l, int N, DropSite act_drop) {
    const T5Config* c = &m->config;
    int C = c->d_model, F = c->d_ff;
    if (ffn_fused_relu(m, &a, act_drop)) {
        Matmul mm = matmul_forward_relu_desc(a.ff, a.ln, PX(m, w.wi0, l), N, C, F, a.mask);
        matmul(&m->mm, &mm);
        prof_op(m->prof, "fwd_ffn_in_matmul_relu");
        return;
    }
    matmul_forward(&m->mm, a.h0, 0, a.ln, PX(m, w.wi0, l), N, C, F);
    if (c->gated) matmul_forward(&m->mm, a.h1, 0, a.ln, PX(m, w.wi1, l), N, C, F);
    prof_op(m->prof, "fwd_ffn_in_matmul");
    lora_fwd(m, w.wi0, l, a.h0, 0, a.ln, N, C, F);
    if (c->gated) lora_fwd(m, w.wi1, l, a.h1, 0, a.ln, N, C, F);
    ffn_act_forward(a.ff, a.h0, c->gated ? a.h1 : NULL, (size_t)N * F, c->act, act_drop, m->stream);
    prof_op(m->prof, "fwd_ffn_act");
}

// sub (N, C) fp32 = wo(dropout(act(wi0 ln) [· wi1 ln]))
static void ffn_sublayer_forward(T5Cuda* m, FfnActs a, FfnIds w, int l, int N, DropSite act_drop) {
    ffn_inner_forward(m, a, w, l, N, act_drop);
    matmul_forward(&m->mm, m->acts.sub, 1, a.ff, PX(m, w.wo, l), N, m->config.d_ff, m->config.d_model);
    prof_op(m->prof, "fwd_ffn_out_matmul");
    lora_fwd(m, w.wo, l, m->acts.sub, 1, a.ff, N, m->config.d_ff, m->config.d_model);
}

// res_out = res_in + dropout(sub) (sub = NULL: res_out is the input already), then the next norm:
// out = dropout(rmsnorm(res_out; w)) · out_scale
static void residual_norm(T5Cuda* m, float* res_out, const float* res_in, const float* sub, DropSite res_drop,
                          floatX* out, float* rstd, const float* w, DropSite out_drop, float out_scale, int N) {
    RmsNormForward a = { res_out, res_in, sub, res_drop, out, rstd, w, out_drop, out_scale, m->config.eps, N,
                         m->config.d_model };
    residual_rmsnorm_forward(&a, m->stream);
    prof_op(m->prof, "fwd_residual_norm");
}

// g_x (N, C) fp32 = ∂L/∂ln from g_sub (the gradient of the sublayer output); k/v input gradients go
// to g_kv_src (the encoder output gradient, accumulated) for cross-attention
static void attn_sublayer_backward(T5Cuda* m, AttnActs a, AttnIds w, int l, const AttnSpec* s, int N, float* drelb,
                                   float* g_kv_src) {
    const T5Config* c = &m->config;
    T5CudaActs* A = &m->acts;
    int C = c->d_model, HD = c->num_heads * c->d_kv;
    MatmulCtx* mm = &m->mm;
    const floatX* kv_src = a.kv_src ? a.kv_src : a.ln;
    matmul_backward_weight(mm, PG(m, w.o, l), A->g_sub, a.ctx, N, HD, C);
    matmul_backward_input(mm, A->g_ctx, 0, A->g_sub, PX(m, w.o, l), N, HD, C, 0);
    prof_op(m->prof, "bwd_attn_out_matmuls");
    lora_bwd(m, w.o, l, A->g_ctx, 0, A->g_sub, a.ctx, N, HD, C);
    floatX* gq = A->g_qkv;
    floatX* gk = a.kv_src ? A->g_ckv : A->g_qkv + (size_t)N * HD;
    floatX* gv = gk + (size_t)a.Nkv * HD;
    const floatX* v = a.kv + (size_t)a.Nkv * HD;
    if (m->attention == ATTN_FLASH)
        flash_attention_backward(gq, gk, gv, drelb, c->num_buckets, flash_scratch(m), A->g_ctx, a.q, a.kv, v, a.ctx,
                                 a.lse, s, m->stream);
    else if (m->attention == ATTN_CUDNN)
        CUDNN_CALL(cudnn_attention_backward(m->cudnn, cudnn_scratch(m, s), gq, gk, gv, drelb, c->num_buckets, A->g_ctx, a.q,
                                            a.kv, v, a.ctx, a.lse, s, m->stream));
    else attention_backward(mm, gq, gk, gv, drelb, c->num_buckets, attn_scratch(m), A->g_ctx, a.q, a.kv, v, a.att, s, m->stream);
    prof_op(m->prof, "bwd_attention");
    float* g_kv_dst = g_kv_src ? g_kv_src : A->g_x;
    matmul_backward_weight(mm, PG(m, w.q, l), gq, a.ln, N, C, HD);
    matmul_backward_weight(mm, PG(m, w.k, l), gk, kv_src, a.Nkv, C, HD);
    matmul_backward_weight(mm, PG(m, w.v, l), gv, kv_src, a.Nkv, C, HD);
    matmul_backward_input(mm, A->g_x, 1, gq, PX(m, w.q, l), N, C, HD, 0);
    lora_bwd(m, w.q, l, A->g_x, 1, gq, a.ln, N, C, HD);
    matmul_backward_input(mm, g_kv_dst, 1, gk, PX(m, w.k, l), a.Nkv, C, HD, 1);
    lora_bwd(m, w.k, l, g_kv_dst, 1, gk, kv_src, a.Nkv, C, HD);
    matmul_backward_input(mm, g_kv_dst, 1, gv, PX(m, w.v, l), a.Nkv, C, HD, 1);
    lora_bwd(m, w.v, l, g_kv_dst, 1, gv, kv_src, a.Nkv, C, HD);
    prof_op(m->prof, "bwd_qkv_matmuls");
}

static void ffn_sublayer_backward(T5Cuda* m, FfnActs a, FfnIds w, int l, int N, DropSite act_drop) {
    const T5Config* c = &m->config;
    T5CudaActs* A = &m->acts;
    int C = c->d_model, F = c->d_ff;
    MatmulCtx* mm = &m->mm;
    matmul_backward_weight(mm, PG(m, w.wo, l), A->g_sub, a.ff, N, F, C);
    if (ffn_fused_relu(m, &a, act_drop)) { // g_h0 = (g_sub · wo) where h0 > 0
        Matmul d = matmul_backward_input_drelu_desc(A->g_h0, A->g_sub, PX(m, w.wo, l), N, F, C, a.mask);
        matmul(mm, &d);
        prof_op(m->prof, "bwd_ffn_out_matmuls_drelu");
    } else {
        matmul_backward_input(mm, A->g_ff, 0, A->g_sub, PX(m, w.wo, l), N, F, C, 0);
        prof_op(m->prof, "bwd_ffn_out_matmuls");
        lora_bwd(m, w.wo, l, A->g_ff, 0, A->g_sub, a.ff, N, F, C);
        ffn_act_backward(A->g_h0, A->g_h1, A->g_ff, a.h0, c->gated ? a.h1 : NULL, (size_t)N * F, c->act, act_drop, m->stream);
        prof_op(m->prof, "bwd_ffn_act");
    }
    matmul_backward_weight(mm, PG(m, w.wi0, l), A->g_h0, a.ln, N, C, F);
    matmul_backward_input(mm, A->g_x, 1, A->g_h0, PX(m, w.wi0, l), N, C, F, 0);
    lora_bwd(m, w.wi0, l, A->g_x, 1, A->g_h0, a.ln, N, C, F);
    if (c->gated) {
        matmul_backward_weight(mm, PG(m, w.wi1, l), A->g_h1, a.ln, N, C, F);
        matmul_backward_input(mm, A->g_x, 1, A->g_h1, PX(m, w.wi1, l), N, C, F, 1);
        lora_bwd(m, w.wi1, l, A->g_x, 1, A->g_h1, a.ln, N, C, F);
    }
    prof_op(m->prof, "bwd_ffn_in_matmuls");
}

// RMSNorm backward of a sublayer's input norm: g_res += rmsnorm'(g_x); then g_sub = dropout'(g_res)
// for the sublayer before it (next_drop), when there is one (g_next = 1)
static void norm_backward(T5Cuda* m, int ln_id, int l, const float* x, const float* rstd, int N, int g_next,
                          DropSite next_drop) {
    T5CudaActs* A = &m->acts;
    RmsNormBackward a = { A->g_res, 1, g_next ? A->g_sub : NULL, next_drop, PG(m, ln_id, l), A->dw_partial, A->g_x,
                          1.0f, NO_DROP, x, PM(m, ln_id, l), rstd, N, m->config.d_model };
    rmsnorm_backward(&a, m->stream);
    prof_op(m->prof, "bwd_norm");
}

// ----------------------------------------------------------------------------
// per-block views into the stacked activations (strides of the current batch). With recompute every
// block uses the one copy of the internals (slot 0); the residual streams stay stacked.

static size_t block_slot(const T5Cuda* m, int l) { return m->recompute ? 0 : (size_t)l; }

// self-attention of block l over T tokens per sequence, from the stacked buffers of one stack (the
// probabilities of gemm attention or the logsumexps of flash attention: the other buffer is empty)
static AttnActs self_attn_a(T5Cuda* m, int l, int T, floatX* ln, float* rstd, floatX* qkv, floatX* att, float* lse,
                            floatX* ctx) {
    const T5Config* c = &m->config;
    size_t N = (size_t)m->B * T, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv, k = block_slot(m, l);
    size_t n_att = (size_t)m->B * c->num_heads * T * T, n_lse = (size_t)m->B * c->num_heads * T;
    int flash = attn_keeps_lse(m->attention);
    floatX* q = qkv + k * 3 * N * HD;
    return AttnActs{ ln + k * N * C, rstd + k * N, q, q + N * HD, flash ? NULL : att + k * n_att, ctx + k * N * HD, NULL,
                     (int)N, flash ? lse + k * n_lse : NULL };
}
static AttnActs enc_attn_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts;
    return self_attn_a(m, l, m->Ts, a->e_ln1, a->e_rstd1, a->e_qkv, a->e_att, a->e_lse, a->e_ctx);
}
// FFN of block l over N tokens
static FfnActs ffn_a(T5Cuda* m, int l, size_t N, floatX* ln, float* rstd, floatX* h0, floatX* h1, floatX* ff,
                     unsigned char* mask) {
    const T5Config* c = &m->config;
    size_t C = c->d_model, F = c->d_ff, k = block_slot(m, l);
    return FfnActs{ ln + k * N * C, rstd + k * N, h0 + k * N * F, c->gated ? h1 + k * N * F : NULL, ff + k * N * F,
                    m->relu_epilogue ? mask + k * relu_mask_bytes((int)N, (int)F) : NULL };
}
static FfnActs enc_ffn_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts;
    return ffn_a(m, l, (size_t)m->B * m->Ts, a->e_ln2, a->e_rstd2, a->e_h0, a->e_h1, a->e_ff, a->e_mask);
}
static AttnActs dec_self_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts;
    return self_attn_a(m, l, m->Tt, a->d_ln1, a->d_rstd1, a->d_qkv, a->d_att, a->d_lse, a->d_ctx);
}
static AttnActs dec_cross_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts; const T5Config* c = &m->config;
    size_t N = (size_t)m->B * m->Tt, Ne = (size_t)m->B * m->Ts, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv;
    size_t att = (size_t)m->B * c->num_heads * m->Tt * m->Ts, lse = (size_t)m->B * c->num_heads * m->Tt, k = block_slot(m, l);
    int flash = attn_keeps_lse(m->attention);
    return AttnActs{ a->d_ln2 + k * N * C, a->d_rstd2 + k * N, a->d_cq + k * N * HD, a->d_ckv + k * 2 * Ne * HD,
                     flash ? NULL : a->d_catt + k * att, a->d_cctx + k * N * HD, a->e_out, (int)Ne,
                     flash ? a->d_clse + k * lse : NULL };
}
static FfnActs dec_ffn_a(T5Cuda* m, int l) {
    T5CudaActs* a = &m->acts;
    return ffn_a(m, l, (size_t)m->B * m->Tt, a->d_ln3, a->d_rstd3, a->d_h0, a->d_h1, a->d_ff, a->d_mask);
}

// ----------------------------------------------------------------------------
// the model: forward (loss), backward (gradients)

typedef struct { AttnSpec enc, dec_self, dec_cross; } T5Specs;

static T5Specs t5cu_specs(const T5Cuda* m) {
    const T5Config* c = &m->config;
    int B = m->B, Ts = m->Ts, Tt = m->Tt, H = c->num_heads, D = c->d_kv;
    const BatchDev* d = &m->batch;
    T5Specs s;
    s.enc = AttnSpec{ B, Ts, Ts, H, D, d->src_len, 0, PM(m, P_ENC_RELB, 0), d->enc_buckets, NO_DROP };
    s.dec_self = AttnSpec{ B, Tt, Tt, H, D, NULL, 1, PM(m, P_DEC_RELB, 0), d->dec_buckets, NO_DROP };
    s.dec_cross = AttnSpec{ B, Tt, Ts, H, D, d->src_len, 0, NULL, NULL, NO_DROP };
    return s;
}

static float t5cu_head_scale(const T5Config* c) { return c->scale_out ? 1.0f / sqrtf((float)c->d_model) : 1.0f; }
static int t5cu_head_id(const T5Config* c) { return c->tied ? P_SHARED : P_LM_HEAD; }

// the start of a stack: res (N, C) = dropout(wte[ids]), then the first block's input norm
static void stack_embed(T5Cuda* m, int decoder, float* res, const int* ids, floatX* ln, float* rstd, int ln_id, int N) {
    embedding_forward(res, ids, PM(m, P_SHARED, 0), N, m->config.d_model, drop_at(m, decoder, 0, DROP_EMBED), m->stream);
    prof_op(m->prof, "fwd_embedding");
    residual_norm(m, res, NULL, NULL, NO_DROP, ln, rstd, PM(m, ln_id, 0), NO_DROP, 1.0f, N);
}

static void t5cu_encoder_forward(T5Cuda* m, const T5Specs* s) {
    const T5Config* c = &m->config;
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Ts, C = c->d_model, L = c->num_layers;
    size_t NC = (size_t)N * C;
    stack_embed(m, 0, a->e_res, m->batch.src, a->e_ln1, a->e_rstd1, P_ENC_LN1, N);
    cudnn_step_inputs(m, &s->enc, NULL);
    for (int l = 0; l < L; l++) {
        AttnSpec sp = s->enc; sp.drop = drop_at(m, 0, l, DROP_ATT);
        AttnActs aa = enc_attn_a(m, l);
        FfnActs fa = enc_ffn_a(m, l);
        float* res_in = a->e_res + l * NC;
        float* mid = a->e_mid + l * NC;
        attn_sublayer_forward(m, aa, ENC_ATTN, l, &sp, N);
        residual_norm(m, mid, res_in, a->sub, drop_at(m, 0, l, DROP_ATT_RES), fa.ln, fa.rstd, PM(m, P_ENC_LN2, l), NO_DROP, 1.0f, N);
        ffn_sublayer_forward(m, fa, ENC_FFN, l, N, drop_at(m, 0, l, DROP_FF));
        DropSite rd = drop_at(m, 0, l, DROP_FF_RES);
        if (l + 1 < L) {
            AttnActs next = enc_attn_a(m, l + 1);
            residual_norm(m, res_in + NC, mid, a->sub, rd, next.ln, next.rstd, PM(m, P_ENC_LN1, l + 1), NO_DROP, 1.0f, N);
        } else {
            residual_norm(m, res_in + NC, mid, a->sub, rd, a->e_out, a->e_rstdf, PM(m, P_ENC_LNF, 0),
                          drop_at(m, 0, 0, DROP_FINAL), 1.0f, N);
        }
    }
}

static void t5cu_decoder_forward(T5Cuda* m, const T5Specs* s) {
    const T5Config* c = &m->config;
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Tt, C = c->d_model, L = c->num_decoder_layers;
    size_t NC = (size_t)N * C;
    stack_embed(m, 1, a->d_res, m->batch.dec_in, a->d_ln1, a->d_rstd1, P_DEC_LN1, N);
    cudnn_step_inputs(m, &s->dec_self, &s->dec_cross);
    for (int l = 0; l < L; l++) {
        AttnSpec self = s->dec_self, cross = s->dec_cross;
        self.drop = drop_at(m, 1, l, DROP_ATT); cross.drop = drop_at(m, 1, l, DROP_CROSS);
        AttnActs sa = dec_self_a(m, l), ca = dec_cross_a(m, l);
        FfnActs fa = dec_ffn_a(m, l);
        float* res_in = a->d_res + l * NC;
        float* mid1 = a->d_mid1 + l * NC;
        float* mid2 = a->d_mid2 + l * NC;
        attn_sublayer_forward(m, sa, DEC_SELF, l, &self, N);
        residual_norm(m, mid1, res_in, a->sub, drop_at(m, 1, l, DROP_ATT_RES), ca.ln, ca.rstd, PM(m, P_DEC_LN2, l), NO_DROP, 1.0f, N);
        attn_sublayer_forward(m, ca, DEC_CROSS, l, &cross, N);
        residual_norm(m, mid2, mid1, a->sub, drop_at(m, 1, l, DROP_CROSS_RES), fa.ln, fa.rstd, PM(m, P_DEC_LN3, l), NO_DROP, 1.0f, N);
        ffn_sublayer_forward(m, fa, DEC_FFN, l, N, drop_at(m, 1, l, DROP_FF));
        DropSite rd = drop_at(m, 1, l, DROP_FF_RES);
        if (l + 1 < L) {
            AttnActs next = dec_self_a(m, l + 1);
            residual_norm(m, res_in + NC, mid2, a->sub, rd, next.ln, next.rstd, PM(m, P_DEC_LN1, l + 1), NO_DROP, 1.0f, N);
        } else { // T5 (scale_out): the decoder output is scaled by C^-0.5 before the head
            residual_norm(m, res_in + NC, mid2, a->sub, rd, a->d_out, a->d_rstdf, PM(m, P_DEC_LNF, 0),
                          drop_at(m, 1, 0, DROP_FINAL), t5cu_head_scale(c), N);
        }
    }
    matmul_forward(&m->mm, a->logits, 0, a->d_out, PX(m, t5cu_head_id(c), 0), N, C, c->vocab_size);
    prof_op(m->prof, "fwd_lm_head_matmul");
}

// the host side of a forward pass of a validated batch: buffers for its shape, the batch on the device,
// and the micro-batch's values in device memory (StepDev: the dropout seed, the loss scale), written in
// stream order. `train` turns dropout on with masks from `seed`.
static void t5cu_forward_begin(T5Cuda* m, const T5Batch* b, int train, uint64_t seed, float loss_scale) {
    b = t5cu_shape_batch(m, b);
    t5cu_build_acts(m, b->B, b->Ts, b->Tt);
    m->B = b->B; m->Ts = b->Ts; m->Tt = b->Tt;
    m->train = train;
    m->num_counted = batch_count_labels(b);
    t5cu_upload_batch(m, b);
    // from pageable memory: staged at the call, so the next micro-batch may overwrite these at once
    struct { uint64_t seed; float scale; } v = { seed, loss_scale };
    static_assert(offsetof(StepDev, loss_scale) == sizeof(uint64_t), "seed and loss scale are one copy");
    cudaCheck(cudaMemcpyAsync(m->step_dev, &v, sizeof(uint64_t) + sizeof(float), cudaMemcpyHostToDevice, m->stream));
}

// the device side, everything a CUDA graph captures: encoder, decoder, loss. Per-token losses and their
// sum stay on the device (read with t5cu_read_loss). A loss scale ≠ 0 also turns the logits into
// dlogits · scale, ready for t5cu_backward; 0 keeps the logits.
static void t5cu_forward_run(T5Cuda* m) {
    T5Specs s = t5cu_specs(m);
    prof_mark(m->prof, "upload");
    t5cu_encoder_forward(m, &s);
    prof_mark(m->prof, "encoder_fwd");
    t5cu_decoder_forward(m, &s);
    prof_mark(m->prof, "decoder_fwd");
    crossentropy_forward_backward(m->acts.logits, m->acts.losses, m->loss_sum, m->batch.labels, m->B * m->Tt,
                                  m->config.vocab_size, 0.0f, &m->step_dev->loss_scale, m->stream);
    prof_mark(m->prof, "loss");
}

// forward pass of a validated batch, launched eagerly (evaluation, tests): t5cu_forward_begin + _run
static void t5cu_forward(T5Cuda* m, const T5Batch* b, int train, uint64_t seed, float loss_scale) {
    t5cu_forward_begin(m, b, train, seed, loss_scale);
    t5cu_forward_run(m);
}

// Σ token losses of the last forward pass [0] and of the step so far [1] (synchronises)
static void t5cu_read_loss_sums(T5Cuda* m, double sums[2]) {
    cudaCheck(cudaMemcpyAsync(sums, m->loss_sum, 2 * sizeof(double), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
}

// mean loss of the last forward pass over its counted tokens (synchronises)
static float t5cu_read_loss(T5Cuda* m) {
    double s[2];
    t5cu_read_loss_sums(m, s);
    return m->num_counted > 0 ? (float)(s[0] / m->num_counted) : 0.0f;
}

// starts a step: gradients and the step's loss sum to zero
static void t5cu_zero_grad(T5Cuda* m) {
    if (m->lora) lora_zero_grad(m->lora, m->stream); // (the frozen base has no gradients)
    else cudaCheck(cudaMemsetAsync(m->grads, 0, m->order.total * sizeof(float), m->stream));
    cudaCheck(cudaMemsetAsync(m->loss_sum, 0, 2 * sizeof(double), m->stream));
}

// ----------------------------------------------------------------------------
// gradient buckets (llmc/zero.cuh): the backward pass hands each bucket to the communication stream
// as soon as it has written its last gradient there. The order is fixed, the same on every rank:
//   head, decoder blocks Ld−1 … 0, decoder norms, encoder blocks Le−1 … 0, encoder norms, embedding

static int bucket_count(const T5Config* c) { return BK_LAYERS + c->num_layers + c->num_decoder_layers; }

static int bucket_sequence(const T5Config* c, int k) {
    int Le = c->num_layers, Ld = c->num_decoder_layers;
    if (k == 0) return BK_HEAD;
    if (k <= Ld) return order_dec_bucket(Ld - k);
    if (k == Ld + 1) return BK_DEC_NORMS;
    if (k <= Ld + 1 + Le) return order_enc_bucket(c, Ld + 1 + Le - k);
    return k == Ld + Le + 2 ? BK_ENC_NORMS : BK_EMBED;
}

// sums bucket b over ranks: all-reduce in place, or (ZeRO-1) reduce-scatter into this rank's shard
static void t5cu_reduce_bucket(T5Cuda* m, int b) {
    const Bucket* bk = &m->order.b[b];
    if (!bk->n) return;
    Comm* c = m->comm;
    comm_wait_for(c, m->stream);
    if (m->zero) comm_reduce_scatter_sum(c, m->grads + bk->off, m->gshard + bk->vstart, bk->part, c->stream);
    else comm_all_reduce_sum(c, m->grads + bk->off, bk->n, COMM_F32, c->stream);
}

// the backward pass is done with bucket b
// (LoRA: the base has no gradients to reduce; the adapter's are reduced at once, in t5cu_reduce_rest)
static void t5cu_bucket_done(T5Cuda* m, int b) {
    if (!m->reduce_now || m->lora) return;
    int want = bucket_sequence(&m->config, m->next_bucket++);
    if (b != want) { // a programming error that would hang the other ranks: stop here instead
        fprintf(stderr, "error: gradient bucket %d finished where bucket %d was due\n", b, want);
        exit(EXIT_FAILURE);
    }
    t5cu_reduce_bucket(m, b);
}

// the buckets not reduced yet (all of them on a rank whose last micro-batch was empty)
// (LoRA: the adapter's gradients, all of them, llmc/lora.cuh)
static void t5cu_reduce_rest(T5Cuda* m) {
    if (m->lora) { lora_reduce(m->lora, m->stream); return; }
    for (; m->next_bucket < bucket_count(&m->config); m->next_bucket++)
        t5cu_reduce_bucket(m, bucket_sequence(&m->config, m->next_bucket));
}

// ----------------------------------------------------------------------------
// recompute (--recompute 1): a block's internals rebuilt from its stored residual inputs, exactly as
// the forward pass computed them (same kernels, same order, same dropout masks), into the one slot

static void t5cu_encoder_recompute(T5Cuda* m, const T5Specs* s, int l) {
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Ts;
    size_t NC = (size_t)N * m->config.d_model;
    AttnSpec sp = s->enc; sp.drop = drop_at(m, 0, l, DROP_ATT);
    AttnActs aa = enc_attn_a(m, l);
    FfnActs fa = enc_ffn_a(m, l);
    residual_norm(m, a->e_res + l * NC, NULL, NULL, NO_DROP, aa.ln, aa.rstd, PM(m, P_ENC_LN1, l), NO_DROP, 1.0f, N);
    attn_inner_forward(m, aa, ENC_ATTN, l, &sp, N);
    residual_norm(m, a->e_mid + l * NC, NULL, NULL, NO_DROP, fa.ln, fa.rstd, PM(m, P_ENC_LN2, l), NO_DROP, 1.0f, N);
    ffn_inner_forward(m, fa, ENC_FFN, l, N, drop_at(m, 0, l, DROP_FF));
}

static void t5cu_decoder_recompute(T5Cuda* m, const T5Specs* s, int l) {
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Tt;
    size_t NC = (size_t)N * m->config.d_model;
    AttnSpec self = s->dec_self, cross = s->dec_cross;
    self.drop = drop_at(m, 1, l, DROP_ATT); cross.drop = drop_at(m, 1, l, DROP_CROSS);
    AttnActs sa = dec_self_a(m, l), ca = dec_cross_a(m, l);
    FfnActs fa = dec_ffn_a(m, l);
    residual_norm(m, a->d_res + l * NC, NULL, NULL, NO_DROP, sa.ln, sa.rstd, PM(m, P_DEC_LN1, l), NO_DROP, 1.0f, N);
    attn_inner_forward(m, sa, DEC_SELF, l, &self, N);
    residual_norm(m, a->d_mid1 + l * NC, NULL, NULL, NO_DROP, ca.ln, ca.rstd, PM(m, P_DEC_LN2, l), NO_DROP, 1.0f, N);
    attn_inner_forward(m, ca, DEC_CROSS, l, &cross, N);
    residual_norm(m, a->d_mid2 + l * NC, NULL, NULL, NO_DROP, fa.ln, fa.rstd, PM(m, P_DEC_LN3, l), NO_DROP, 1.0f, N);
    ffn_inner_forward(m, fa, DEC_FFN, l, N, drop_at(m, 1, l, DROP_FF));
}

static void t5cu_encoder_backward(T5Cuda* m, const T5Specs* s) {
    const T5Config* c = &m->config;
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Ts, C = c->d_model, L = c->num_layers;
    size_t NC = (size_t)N * C;
    // encoder output: e_out = dropout(rmsnorm(e_res[L]));  ∂e_out was accumulated in g_enc
    RmsNormBackward fin = { a->g_res, 0, a->g_sub, drop_at(m, 0, L - 1, DROP_FF_RES), PG(m, P_ENC_LNF, 0), a->dw_partial,
                            a->g_enc, 1.0f, drop_at(m, 0, 0, DROP_FINAL), a->e_res + L * NC, PM(m, P_ENC_LNF, 0),
                            a->e_rstdf, N, C };
    rmsnorm_backward(&fin, m->stream);
    for (int l = L - 1; l >= 0; l--) {
        if (m->recompute && l < L - 1) t5cu_encoder_recompute(m, s, l); // the slot still holds the last block
        AttnSpec sp = s->enc; sp.drop = drop_at(m, 0, l, DROP_ATT);
        AttnActs aa = enc_attn_a(m, l);
        FfnActs fa = enc_ffn_a(m, l);
        ffn_sublayer_backward(m, fa, ENC_FFN, l, N, drop_at(m, 0, l, DROP_FF));
        norm_backward(m, P_ENC_LN2, l, a->e_mid + l * NC, fa.rstd, N, 1, drop_at(m, 0, l, DROP_ATT_RES));
        attn_sublayer_backward(m, aa, ENC_ATTN, l, &sp, N, PG(m, P_ENC_RELB, 0), NULL);
        norm_backward(m, P_ENC_LN1, l, a->e_res + l * NC, aa.rstd, N, l > 0, l > 0 ? drop_at(m, 0, l - 1, DROP_FF_RES) : NO_DROP);
        t5cu_bucket_done(m, order_enc_bucket(c, l));
    }
    t5cu_bucket_done(m, BK_ENC_NORMS);
    embedding_backward(PG(m, P_SHARED, 0), m->batch.enc, a->g_res, C, drop_at(m, 0, 0, DROP_EMBED), m->stream);
    t5cu_bucket_done(m, BK_EMBED);
}

static void t5cu_decoder_backward(T5Cuda* m, const T5Specs* s) {
    const T5Config* c = &m->config;
    T5CudaActs* a = &m->acts;
    int N = m->B * m->Tt, C = c->d_model, L = c->num_decoder_layers, head = t5cu_head_id(c);
    size_t NC = (size_t)N * C;
    // head: logits = d_out · headᵀ, d_out = hs · dropout(rmsnorm(d_res[L]))
    matmul_backward_weight(&m->mm, PG(m, head, 0), a->logits, a->d_out, N, C, c->vocab_size);
    t5cu_bucket_done(m, BK_HEAD); // empty when tied: the head is the embedding, reduced last
    matmul_backward_input(&m->mm, a->g_x, 1, a->logits, PX(m, head, 0), N, C, c->vocab_size, 0);
    RmsNormBackward fin = { a->g_res, 0, a->g_sub, drop_at(m, 1, L - 1, DROP_FF_RES), PG(m, P_DEC_LNF, 0), a->dw_partial,
                            a->g_x, t5cu_head_scale(c), drop_at(m, 1, 0, DROP_FINAL), a->d_res + L * NC,
                            PM(m, P_DEC_LNF, 0), a->d_rstdf, N, C };
    rmsnorm_backward(&fin, m->stream);
    cudaCheck(cudaMemsetAsync(a->g_enc, 0, (size_t)m->B * m->Ts * C * sizeof(float), m->stream));
    for (int l = L - 1; l >= 0; l--) {
        if (m->recompute && l < L - 1) t5cu_decoder_recompute(m, s, l); // the slot still holds the last block
        AttnSpec self = s->dec_self, cross = s->dec_cross;
        self.drop = drop_at(m, 1, l, DROP_ATT); cross.drop = drop_at(m, 1, l, DROP_CROSS);
        AttnActs sa = dec_self_a(m, l), ca = dec_cross_a(m, l);
        FfnActs fa = dec_ffn_a(m, l);
        ffn_sublayer_backward(m, fa, DEC_FFN, l, N, drop_at(m, 1, l, DROP_FF));
        norm_backward(m, P_DEC_LN3, l, a->d_mid2 + l * NC, fa.rstd, N, 1, drop_at(m, 1, l, DROP_CROSS_RES));
        attn_sublayer_backward(m, ca, DEC_CROSS, l, &cross, N, NULL, a->g_enc);
        norm_backward(m, P_DEC_LN2, l, a->d_mid1 + l * NC, ca.rstd, N, 1, drop_at(m, 1, l, DROP_ATT_RES));
        attn_sublayer_backward(m, sa, DEC_SELF, l, &self, N, PG(m, P_DEC_RELB, 0), NULL);
        norm_backward(m, P_DEC_LN1, l, a->d_res + l * NC, sa.rstd, N, l > 0, l > 0 ? drop_at(m, 1, l - 1, DROP_FF_RES) : NO_DROP);
        t5cu_bucket_done(m, order_dec_bucket(l));
    }
    t5cu_bucket_done(m, BK_DEC_NORMS);
    embedding_backward(PG(m, P_SHARED, 0), m->batch.dec, a->g_res, C, drop_at(m, 1, 0, DROP_EMBED), m->stream);
}

// backward pass of the last t5cu_forward (which ran with loss_scale ≠ 0): grads += ∂(loss_scale · Σ losses)
static void t5cu_backward(T5Cuda* m) {
    T5Specs s = t5cu_specs(m);
    t5cu_decoder_backward(m, &s);
    prof_mark(m->prof, "decoder_bwd");
    t5cu_encoder_backward(m, &s);
    prof_mark(m->prof, "encoder_bwd");
}

// ----------------------------------------------------------------------------
// optimizer: AdamW exactly as torch.optim.AdamW (and t5_update; AdamW: llmc/engine.h), clipping as clip_grad_norm_

// launches the norm of the summed gradients; the value stays on the device until t5cu_read_norm.
// ZeRO-1: Σ g² of this rank's shard, summed over ranks, then the root.
// LoRA: the adapter's gradients (llmc/lora.cuh).
static void t5cu_grad_norm(T5Cuda* m) {
    if (m->lora) { lora_grad_norm(m->lora, m->norm, m->norm_partial, m->sumsq, m->stream); return; }
    if (!m->zero) { global_norm(m->norm, m->norm_partial, m->grads, m->order.total, m->stream); return; }
    shard_sumsq(m->sumsq, m->norm_partial, m->gshard, m->order.shard, m->stream);
    comm_all_reduce_sum(m->comm, m->sumsq, 1, COMM_F64, m->stream);
    norm_from_sumsq(m->norm, m->sumsq, m->stream);
}

static float t5cu_read_norm(T5Cuda* m) {
    float n;
    cudaCheck(cudaMemcpyAsync(&n, m->norm, sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
    return n;
}

// the values of the coming update in device memory (StepDev.update), from the host: bias corrections for
// update number step + 1, decay 1 − lr·weight_decay for the decayed class. The device decides whether the
// update happens and the clipping factor (adamw_gate, from the norm and the loss of the same step):
// gradients are scaled by max_norm / (norm + 1e-6) when that is < 1; counted: the step's label tokens
static void t5cu_update_values(T5Cuda* m, const AdamW* o, float lr, double counted, float max_norm) {
    long long t = m->step + 1;
    double bc1 = 1.0 - pow((double)o->beta1, (double)t), bc2 = 1.0 - pow((double)o->beta2, (double)t);
    AdamWStep decayed = { o->beta1, o->beta2, o->eps, (float)(1.0 - (double)lr * o->weight_decay), (float)(lr / bc1),
                          (float)sqrt(bc2), 1.0f, 0 };
    AdamWStep kept = decayed;
    kept.decay = 1.0f;
    AdamWDevice u = { { decayed, kept }, counted, max_norm };
    cudaCheck(cudaMemcpyAsync(&m->step_dev->update, &u, sizeof(u), cudaMemcpyHostToDevice, m->stream)); // staged at the call
}

// --optimizer adafactor: the step's values (llmc/adafactor.h's adafactor_step_values for update step + 1, as the
// driver computes them) in device memory, after t5cu_update_values (whose counted and max_norm feed the gate):
// [0] for every decayed tensor, [1] for the RMSNorm weights, without weight decay unless decay_norms (HF
// Trainer's groups; the adapter's A and B are all [0]). skip and gscale are the gate's, set on the device
static void t5cu_adafactor_values(T5Cuda* m, const AdafactorStep* s, int decay_norms) {
    AdafactorStep af[2] = { *s, *s };
    if (!decay_norms) af[1].weight_decay = 0.0;
    for (int c = 0; c < 2; c++) { af[c].gscale = 1.0f; af[c].skip = 0; }
    cudaCheck(cudaMemcpyAsync(m->step_dev->af, af, sizeof(af), cudaMemcpyHostToDevice, m->stream)); // staged at the call
}

// the gate's decision (adamw_gate, just before) into the step's Adafactor values: the skip, and the clipping
// factor as a factor on the gradient (HF Trainer clips the global norm before optimizer.step(); the CPU engine
// scales the gradients, g·clip, the same fp32 product adafactor.cuh forms from gscale)
__global__ void adafactor_gate_kernel(AdafactorStep* af, const AdamWDevice* u) {
    for (int c = 0; c < 2; c++) { af[c].skip = u->cls[0].skip; af[c].gscale = u->cls[0].clip; }
}

// Adafactor over every slice at the step's values in device memory (after adamw_gate): one fused update per HF
// tensor (llmc/adafactor.cuh; its kernels all read the gate, so a skipped step changes nothing), master and
// gradients at the slice's device offset, the floatX copy refreshed in place, the state at its host-order offset
static void t5cu_apply_adafactor(T5Cuda* m) {
    AdafactorStep* sd = m->step_dev->af;
    adafactor_gate_kernel<<<1, 1, 0, m->stream>>>(sd, &m->step_dev->update);
    cudaCheckLaunch();
    float* p = m->lora ? m->lora->master : m->master;
    floatX* px = m->lora ? m->lora->x : m->params_x;
    const float* g = m->lora ? m->lora->gshard : m->gshard;
    AdafactorStep unused;
    memset(&unused, 0, sizeof(unused));
    for (int k = 0; k < m->af_ns; k++) {
        const AfSlice* a = &m->af_slices[k];
        adafactor_update(p + a->dev, px + a->dev, g + a->dev, m->af_state + a->state, a->s.rows, a->s.cols, a->s.factored,
                         unused, &sd[a->s.norm ? 1 : 0], &m->af_scratch, m->stream);
    }
}

// the update at the values in device memory: gate, then AdamW over this rank's part of each bucket, cut into
// runs of one weight-decay class (the whole device order without ZeRO-1); master, moments and summed
// gradients at shard offsets, the floatX copy in place. A skipped step changes nothing (every kernel reads
// the gate), and the ZeRO-1 gathers then copy unchanged values.
static void t5cu_apply_update(T5Cuda* m, const AdamW* o) {
    AdamWDevice* u = &m->step_dev->update;
    adamw_gate(u, m->norm, m->loss_sum, m->stream);
    if (m->opt_kind == OPTIM_ADAFACTOR) { t5cu_apply_adafactor(m); return; } // (no ZeRO-1: nothing to gather)
    if (m->lora) { // the adapter alone (llmc/lora.cuh): A and B are weights and all decay, as in the CPU engine
        lora_update(m->lora, &u->cls[0], m->stream);
        return;
    }
    const ParamOrder* po = &m->order;
    AdamWStep unused;
    memset(&unused, 0, sizeof(unused));
    for (int b = 0; b < po->nb; b++) {
        const Bucket* bk = &po->b[b];
        size_t lo = bk->off + (size_t)m->shard_rank * bk->part, hi = lo + bk->part;
        for (int k = 0; k < po->nruns; k++) {
            const DecayRun* r = &po->runs[k];
            size_t a = r->off > lo ? r->off : lo, e = r->off + r->n < hi ? r->off + r->n : hi;
            if (a >= e) continue;
            int cls = (r->norm && !o->decay_norms) ? 1 : 0; // [1]: not decayed (HF Trainer's rule for norms)
            size_t v = bk->vstart + (a - lo);
            adamw_update(m->master + v, m->params_x + a, m->gshard + v, m->m_mem + v, m->v_mem + v, e - a, unused,
                         &u->cls[cls], m->stream);
        }
    }
    if (!m->zero) return;
    // ZeRO-1: every rank's updated parts to every rank: the floatX copy, and the fp32 prefix the forward reads
    for (int b = 0; b < po->nb; b++) {
        const Bucket* bk = &po->b[b];
        floatX* x = m->params_x + bk->off;
        comm_all_gather(m->comm, x + (size_t)m->shard_rank * bk->part, x, bk->part, COMM_FLOATX, m->stream);
        if (bk->fp32_read && (void*)m->f32 != (void*)m->params_x)
            comm_all_gather(m->comm, m->master + bk->vstart, m->f32 + bk->off, bk->part, COMM_F32, m->stream);
    }
}

// one update at learning rate lr after t5cu_grad_norm (tests): the norm and the clipping as the trainer
// takes them, on the device; the caller has checked that the norm is finite
static void t5cu_update(T5Cuda* m, const AdamW* o, float lr, float max_norm) {
    t5cu_update_values(m, o, lr, 1.0, max_norm);
    t5cu_apply_update(m, o);
    m->step++;
}

// the same with Adafactor at step values s (tests: adafactor_step_values for update m->step + 1)
static void t5cu_update_adafactor(T5Cuda* m, const AdafactorStep* s, int decay_norms, float max_norm) {
    AdamW o;
    memset(&o, 0, sizeof(o)); // (only its gate is read: counted 1 and max_norm)
    o.decay_norms = decay_norms;
    t5cu_update_values(m, &o, 0.0f, 1.0, max_norm);
    t5cu_adafactor_values(m, s, decay_norms);
    t5cu_apply_update(m, &o);
    m->step++;
}

static int is_rank0(const T5Cuda* m) { return !m->comm || m->comm->rank == 0; }

// the state gathered to rank 0's host buffers (every rank takes part: ZeRO-1 gathers); valid until the next call.
// Under LoRA the adapter and its optimizer state (the fp32 base is not on the device: params NULL). AdamW: the
// moments in layout order; Adafactor: its flat state (replicated: rank 0 copies its own)
static void t5cu_get_state(T5Cuda* m, EngineState* s) {
    int root = is_rank0(m), af = m->opt_kind == OPTIM_ADAFACTOR;
    memset(s, 0, sizeof(*s));
    free(m->host_state);
    m->host_state = NULL;
    s->step = m->step;
    s->opt_kind = m->opt_kind;
    s->af_beta1 = m->af_beta1;
    size_t n = m->lora ? m->lora->n : t5cu_num_params(m), nopt = af ? m->af_n : 2 * n;
    float* p = root ? (float*)mallocCheck((n + nopt) * sizeof(float) + 1) : NULL;
    if (m->lora) {
        lora_get(m->lora, LORA_PARAMS, p, m->stream);
        if (!af) {
            lora_get(m->lora, LORA_ADAM_M, p ? p + n : NULL, m->stream);
            lora_get(m->lora, LORA_ADAM_V, p ? p + 2 * n : NULL, m->stream);
        }
        if (p) { s->adapter = p; if (!af) { s->am = p + n; s->av = p + 2 * n; } }
        s->lora_n = n;
    } else {
        t5cu_get(m, T5CU_PARAMS, p);
        if (!af) {
            t5cu_get(m, T5CU_ADAM_M, p ? p + n : NULL);
            t5cu_get(m, T5CU_ADAM_V, p ? p + 2 * n : NULL);
        }
        if (p) { s->params = p; if (!af) { s->m = p + n; s->v = p + 2 * n; } }
        s->n = n;
    }
    if (af && p) {
        cudaCheck(cudaStreamSynchronize(m->stream));
        cudaCheck(cudaMemcpy(p + n, m->af_state, m->af_n * sizeof(float), cudaMemcpyDeviceToHost));
        s->af = p + n;
        s->af_n = m->af_n;
    }
    m->host_state = p;
}

// rank 0 writes weights + optimizer state in layout order (under ZeRO-1 every rank takes part in the gather).
// The file is an ordinary checkpoint: it loads with any number of ranks, with or without ZeRO-1. Under LoRA:
// llmc/lora.h's adapter checkpoint, the adapter, its optimizer state and the base weights' fingerprint instead
// of the base itself; the CPU engine's formats, so either trainer resumes the other's run
static int t5cu_save_checkpoint(T5Cuda* m, const char* path, const CkptTrainState* ts, char* err, size_t errlen) {
    EngineState s;
    t5cu_get_state(m, &s);
    if (!is_rank0(m)) return 0;
    CkptOpt o = { s.opt_kind, s.af_beta1, m->lora ? s.am : s.m, m->lora ? s.av : s.v, s.af, (int64_t)s.af_n };
    if (m->lora)
        return lora_ckpt_save_opt(path, &m->lora->config, s.adapter, &o, (int64_t)s.lora_n, m->step, m->lora->base_n,
                                  m->lora->base_crc, (const int64_t*)ts, err, errlen);
    return ckpt_save_opt(path, &m->config, s.params, &o, (int64_t)s.n, m->step, ts, err, errlen);
}

// ----------------------------------------------------------------------------
// memory

// device memory in use now (this process and any other), bytes
static size_t device_memory_used(void) {
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

// ----------------------------------------------------------------------------
// synthetic DialogSum-shaped batches (for --bench; dev/bench_hf_gpu.py draws the same ones):
// dialogue lengths log-normal with mean 223 and p95 415 tokens (μ 5.312, σ 0.435) clipped to
// [16, 512]; summaries log-normal with mean 40 (μ 3.628, σ 0.35) clipped to [4, 128]. Four draws
// of splitmix64 per example, uniform u = ((x >> 11) + 0.5)·2^-53, Box–Muller in double.
#define BENCH_MAX_SRC 512
#define BENCH_MAX_TGT 128

static double bench_uniform(Rng* r) { return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static int bench_length(Rng* r, double mu, double sigma, int lo, int hi) {
    double u1 = bench_uniform(r), u2 = bench_uniform(r);
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    long v = lround(exp(mu + sigma * z));
    return (int)(v < lo ? lo : v > hi ? hi : v);
}

// a batch of B examples with source lengths ls and target lengths lt, ids in [2, V) drawn from r:
// src = ids then pad;  labels = ids then -100;  dec_in = [start, labels[:-1]] with -100 → pad
static void synthetic_batch(BatchBuf* bb, const int* ls, const int* lt, int B, const T5Config* c, Rng* r) {
    int Ts = 1, Tt = 1;
    for (int i = 0; i < B; i++) { if (ls[i] > Ts) Ts = ls[i]; if (lt[i] > Tt) Tt = lt[i]; }
    batch_reserve(bb, B, Ts, Tt);
    T5Batch* b = &bb->b;
    b->B = B; b->Ts = Ts; b->Tt = Tt;
    uint64_t V = (uint64_t)c->vocab_size - 2;
    for (int i = 0; i < B; i++) {
        b->src_len[i] = ls[i];
        for (int j = 0; j < Ts; j++) b->src[i * Ts + j] = j < ls[i] ? 2 + (int)(rng_next(r) % V) : c->pad_id;
        for (int j = 0; j < Tt; j++) b->labels[i * Tt + j] = j < lt[i] ? 2 + (int)(rng_next(r) % V) : IGNORE_INDEX;
        for (int j = 0; j < Tt; j++)
            b->dec_in[i * Tt + j] = dec_input(j == 0 ? c->decoder_start_id : b->labels[i * Tt + j - 1], c->pad_id);
    }
}

// batch k of the synthetic stream: examples k·B .. k·B + B − 1 (each seeds its own generator)
// ladder: NULL, or --shape-ladder's steps: the batch padded up to them as the data loader pads (the shapes of
// a --bench run then repeat, as a real run's do, which CUDA-graph replay needs)
static void bench_batch(BatchBuf* bb, int k, int B, const T5Config* c, const int* ladder) {
    int ls[B], lt[B];
    Rng r;
    for (int i = 0; i < B; i++) {
        rng_init(&r, mix64(0xd1a1095ULL + (uint64_t)k * B + i));
        ls[i] = bench_length(&r, 5.312, 0.435, 16, BENCH_MAX_SRC);
        lt[i] = bench_length(&r, 3.628, 0.35, 4, BENCH_MAX_TGT);
    }
    synthetic_batch(bb, ls, lt, B, c, &r);
    if (ladder) {
        int Ts = ladder_len(bb->b.Ts, ladder[0], BENCH_MAX_SRC), Tt = ladder_len(bb->b.Tt, ladder[1], BENCH_MAX_TGT);
        if (Ts != bb->b.Ts || Tt != bb->b.Tt) {
            BatchBuf padded;
            memset(&padded, 0, sizeof(padded));
            batch_repad(&padded, &bb->b, Ts, Tt, c->pad_id);
            batch_free(bb);
            *bb = padded;
        }
    }
}

// ----------------------------------------------------------------------------
// generation on the GPU: t5_generate of the CPU engine (train_t5.c), same GenConfig semantics, with
// the encoder, the cached decoder step, the next-token scores and the top-k on the device
// (llmc/generate.cuh). The search bookkeeping is the driver's: beam search drives llmc/beam.h's state
// through beam_search_* (llmc/engine.h); greedy search is gen_greedy's few lines (gen_gpu_greedy_pick below).
// The key/value caches are floatX (bf16 in the bf16 build); scores and log-probabilities are fp32.
// Host synchronisation: once per decoder step, to read the picks (R ints, or B·2·beams candidates).

typedef struct {
    int B, nb, R, Ts, T, ngram;    // inputs, beams, rows R = B·nb, padded source length, positions, n-gram ban
    int min_new;                   // eos banned while fewer new tokens (GenConfig.min_new_tokens)
    float penalty;                 // repetition penalty, 1 = off
    int with_seq;                  // the scores read the sequences (n-gram ban or penalty): G->seq uploaded
    floatX *self_k[2], *self_v[2]; // (Ld, R, T, HD) keys/values of the decoded positions; beam search
    int cur;                       //   reorders [cur] into [cur ^ 1] and swaps
    floatX *cross_k, *cross_v;     // (Ld, B, Ts, HD) keys/values of the encoder output
    int *row_input, *cross_len;    // (R) device: the input of row r, its source length
    int* buckets;                  // (2T − 1) device: causal bucket of rel = j − t at index rel + T − 1
    int *tokens, *seq, *parent;    // (R), (R, 1 + T), (R) device
    float* gathered;               // (R, 1 + T) device: the repetition penalty's scratch (NULL when off)
    float *x, *x2, *sub;           // (R, C) fp32 residual streams and a sublayer's output
    floatX *ln, *q, *ctx;          // (R, C), (R, HD), (R, HD)
    float* rstd;                   // (R)
    floatX *h0, *h1, *ff;          // (R, F)
    float* att;                    // (R, H, max(T, Ts)) attention scratch
    float* logits;                 // (R, V) fp32 next-token scores
    float* score;                  // (R) running beam scores
    float* top_val; int* top_idx;  // (max(R, B·2nb)) picks, on the device
    float* h_val; int* h_idx;      // the same, pinned on the host
    int* h_tokens;                 // (R) pinned
    int* pos;                      // (1) device: the position t of the running step
    floatX *k_new, *v_new;         // (R, HD) the new position's key and value, before cache_put
    // the search's step (gen_step_body): scores as log-probabilities plus the running score (beam), the
    // sequences for the n-gram ban, and top-k: `groups` groups of n values, k picks each
    int log_probs, seq_stride, top_groups, top_n, top_k;
    float eos_bias;
    // --cuda-graphs 1: the step captured once per [cache buffer cur][residual buffers swapped] and replayed
    // at every position (the position is read from pos); eager before the first capture when the step's
    // first run synchronises the host (t5cu_capture_first)
    cudaGraphExec_t graph[2][2];
    float* x_first;                // G->x at the start: which of the two step graphs the pointers select
    int steps;
    void* dev[40]; int n_dev;      // every device buffer above, for gen_gpu_free
} GenGpu;

static void* gen_dev(GenGpu* G, size_t bytes) {
    void* p = cuda_alloc<char>(bytes);
    G->dev[G->n_dev++] = p;
    return p;
}

static void gen_gpu_build(GenGpu* G, const T5Config* c, int B, const GenConfig* g, int Ts) {
    memset(G, 0, sizeof(*G));
    G->B = B; G->nb = g->num_beams; G->R = B * G->nb; G->Ts = Ts; G->T = g->max_new_tokens; G->ngram = g->no_repeat_ngram_size;
    G->min_new = g->min_new_tokens; G->penalty = g->repetition_penalty; G->with_seq = G->ngram > 0 || G->penalty != 1.0f;
    size_t R = G->R, T = G->T, C = c->d_model, HD = (size_t)c->num_heads * c->d_kv, F = c->d_ff, V = c->vocab_size;
    size_t Ld = c->num_decoder_layers, x = sizeof(floatX), f = sizeof(float), i = sizeof(int);
    size_t picks = R > (size_t)B * 2 * G->nb ? R : (size_t)B * 2 * G->nb, Tk = T > (size_t)Ts ? T : (size_t)Ts;
    for (int k = 0; k < (G->nb > 1 ? 2 : 1); k++) {
        G->self_k[k] = (floatX*)gen_dev(G, Ld * R * T * HD * x);
        G->self_v[k] = (floatX*)gen_dev(G, Ld * R * T * HD * x);
    }
    G->cross_k = (floatX*)gen_dev(G, Ld * B * Ts * HD * x);
    G->cross_v = (floatX*)gen_dev(G, Ld * B * Ts * HD * x);
    G->row_input = (int*)gen_dev(G, R * i); G->cross_len = (int*)gen_dev(G, R * i);
    G->buckets = (int*)gen_dev(G, (2 * T - 1) * i);
    G->tokens = (int*)gen_dev(G, R * i); G->seq = (int*)gen_dev(G, R * (T + 1) * i); G->parent = (int*)gen_dev(G, R * i);
    if (G->penalty != 1.0f) G->gathered = (float*)gen_dev(G, R * (T + 1) * f);
    G->x = (float*)gen_dev(G, R * C * f); G->x2 = (float*)gen_dev(G, R * C * f); G->sub = (float*)gen_dev(G, R * C * f);
    G->ln = (floatX*)gen_dev(G, R * C * x); G->q = (floatX*)gen_dev(G, R * HD * x); G->ctx = (floatX*)gen_dev(G, R * HD * x);
    G->rstd = (float*)gen_dev(G, R * f);
    G->h0 = (floatX*)gen_dev(G, R * F * x); G->h1 = (floatX*)gen_dev(G, R * F * x); G->ff = (floatX*)gen_dev(G, R * F * x);
    G->att = (float*)gen_dev(G, R * c->num_heads * Tk * f);
    G->logits = (float*)gen_dev(G, R * V * f);
    G->score = (float*)gen_dev(G, R * f);
    G->top_val = (float*)gen_dev(G, picks * f); G->top_idx = (int*)gen_dev(G, picks * i);
    G->pos = (int*)gen_dev(G, i);
    G->k_new = (floatX*)gen_dev(G, R * HD * x); G->v_new = (floatX*)gen_dev(G, R * HD * x);
    G->x_first = G->x;
    cudaCheck(cudaMallocHost((void**)&G->h_val, picks * f));
    cudaCheck(cudaMallocHost((void**)&G->h_idx, picks * i));
    cudaCheck(cudaMallocHost((void**)&G->h_tokens, R * i));
    relative_buckets(G->buckets, G->T, 0, c->num_buckets, c->max_distance, 0);
}

static void gen_gpu_free(GenGpu* G) {
    cudaCheck(cudaDeviceSynchronize());
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) if (G->graph[a][b]) cudaCheck(cudaGraphExecDestroy(G->graph[a][b]));
    for (int k = 0; k < G->n_dev; k++) cudaCheck(cudaFree(G->dev[k]));
    cudaCheck(cudaFreeHost(G->h_val)); cudaCheck(cudaFreeHost(G->h_idx)); cudaCheck(cudaFreeHost(G->h_tokens));
    memset(G, 0, sizeof(*G));
}

// the encoder over the inputs (padded to Ts, key-padding mask from src_len), then the cross-attention
// keys and values of every decoder block
static void gen_gpu_encode(T5Cuda* m, GenGpu* G, const int* const* src, const int* src_len) {
    const T5Config* c = &m->config;
    int B = G->B, Ts = G->Ts, C = c->d_model, HD = c->num_heads * c->d_kv, Ne = B * Ts;
    BatchBuf bb;
    memset(&bb, 0, sizeof(bb));
    batch_reserve(&bb, B, Ts, 1);
    T5Batch* b = &bb.b; // a one-position decoder side: the upload wants a whole batch
    b->B = B; b->Ts = Ts; b->Tt = 1;
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < Ts; j++) b->src[(size_t)i * Ts + j] = j < src_len[i] ? src[i][j] : c->pad_id;
        b->src_len[i] = src_len[i]; b->dec_in[i] = c->decoder_start_id; b->labels[i] = IGNORE_INDEX;
    }
    t5cu_build_acts(m, B, Ts, 1);
    m->B = B; m->Ts = Ts; m->Tt = 1; m->train = 0;
    t5cu_upload_batch(m, b);
    T5Specs s = t5cu_specs(m);
    t5cu_encoder_forward(m, &s);
    size_t stride = (size_t)Ne * HD;
    for (int l = 0; l < c->num_decoder_layers; l++) {
        matmul_forward(&m->mm, G->cross_k + l * stride, 0, m->acts.e_out, PX(m, P_DEC_CK, l), Ne, C, HD);
        matmul_forward(&m->mm, G->cross_v + l * stride, 0, m->acts.e_out, PX(m, P_DEC_CV, l), Ne, C, HD);
    }
    int* h = (int*)mallocCheck((size_t)G->R * 2 * sizeof(int));
    for (int r = 0; r < G->R; r++) { h[r] = r / G->nb; h[G->R + r] = src_len[r / G->nb]; }
    cudaCheck(cudaMemcpy(G->row_input, h, (size_t)G->R * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(G->cross_len, h + G->R, (size_t)G->R * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaStreamSynchronize(m->stream)); // the batch staging is reused by the next upload
    free(h);
    batch_free(&bb);
}

// the decoder at the position in G->pos for every row: G->tokens (R) → G->logits (R, V), the logits the
// full decoder gives at t for these rows' prefixes (gen_decode_step of train_t5.c); then the search's
// scores and top-k picks. Only device work, the position read on the device: a CUDA graph replays it.
static void gen_step_body(T5Cuda* m, GenGpu* G) {
    const T5Config* c = &m->config;
    int R = G->R, C = c->d_model, H = c->num_heads, D = c->d_kv, HD = H * D, L = c->num_decoder_layers;
    size_t self_layer = (size_t)R * G->T * HD, cross_layer = (size_t)G->B * G->Ts * HD;
    int att_stride = G->T > G->Ts ? G->T : G->Ts;
    embedding_forward(G->x, G->tokens, PM(m, P_SHARED, 0), R, C, NO_DROP, m->stream);
    residual_norm(m, G->x, NULL, NULL, NO_DROP, G->ln, G->rstd, PM(m, P_DEC_LN1, 0), NO_DROP, 1.0f, R);
    for (int l = 0; l < L; l++) { // x → x2 (self) → x (cross) → x2 (FFN), then swap
        floatX* kc = G->self_k[G->cur] + l * self_layer;
        floatX* vc = G->self_v[G->cur] + l * self_layer;
        matmul_forward(&m->mm, G->q, 0, G->ln, PX(m, P_DEC_Q, l), R, C, HD);
        matmul_forward(&m->mm, G->k_new, 0, G->ln, PX(m, P_DEC_K, l), R, C, HD); // the new position's key and
        matmul_forward(&m->mm, G->v_new, 0, G->ln, PX(m, P_DEC_V, l), R, C, HD); // value, then into the cache
        cache_put(kc, G->k_new, G->pos, R, (size_t)G->T * HD, HD, m->stream);
        cache_put(vc, G->v_new, G->pos, R, (size_t)G->T * HD, HD, m->stream);
        DecodeAttn self = { R, H, D, kc, vc, (size_t)G->T * HD, NULL, NULL, 0, PM(m, P_DEC_RELB, 0), G->buckets, 0, G->T - 1,
                            G->pos };
        decode_attention(G->ctx, G->att, att_stride, G->q, &self, m->stream);
        matmul_forward(&m->mm, G->sub, 1, G->ctx, PX(m, P_DEC_O, l), R, HD, C);
        residual_norm(m, G->x2, G->x, G->sub, NO_DROP, G->ln, G->rstd, PM(m, P_DEC_LN2, l), NO_DROP, 1.0f, R);
        matmul_forward(&m->mm, G->q, 0, G->ln, PX(m, P_DEC_CQ, l), R, C, HD);
        DecodeAttn cross = { R, H, D, G->cross_k + l * cross_layer, G->cross_v + l * cross_layer, (size_t)G->Ts * HD,
                             G->row_input, G->cross_len, 0, NULL, NULL, 0, 0, NULL };
        decode_attention(G->ctx, G->att, att_stride, G->q, &cross, m->stream);
        matmul_forward(&m->mm, G->sub, 1, G->ctx, PX(m, P_DEC_CO, l), R, HD, C);
        residual_norm(m, G->x, G->x2, G->sub, NO_DROP, G->ln, G->rstd, PM(m, P_DEC_LN3, l), NO_DROP, 1.0f, R);
        FfnActs fa = { G->ln, G->rstd, G->h0, c->gated ? G->h1 : NULL, G->ff, NULL }; // no mask: the unfused kernels
        ffn_inner_forward(m, fa, DEC_FFN, l, R, NO_DROP);
        matmul_forward(&m->mm, G->sub, 1, G->ff, PX(m, P_DEC_WO, l), R, c->d_ff, C);
        int last = l + 1 == L; // T5 (scale_out): the final norm's output is scaled by C^-0.5 before the head
        residual_norm(m, G->x2, G->x, G->sub, NO_DROP, G->ln, G->rstd, PM(m, last ? P_DEC_LNF : P_DEC_LN1, last ? 0 : l + 1),
                      NO_DROP, last ? t5cu_head_scale(c) : 1.0f, R);
        float* swap = G->x; G->x = G->x2; G->x2 = swap;
    }
    matmul_forward(&m->mm, G->logits, 1, G->ln, PX(m, t5cu_head_id(c), 0), R, C, c->vocab_size);
    // generate()'s processors (GenScores): per call but for the position, which the step reads in G->pos
    GenScores sc = { c->vocab_size, c->eos_id, G->eos_bias, G->log_probs, G->log_probs ? G->score : NULL, G->seq,
                     G->seq_stride, 0, G->pos, G->penalty, G->gathered, G->ngram, G->min_new };
    gen_scores(G->logits, R, &sc, m->stream);
    topk(G->logits, G->top_groups, G->top_n, G->top_k, G->top_val, G->top_idx, m->stream);
}

// G->x and G->x2 after a step: swapped once per decoder block (what gen_step_body does on the host)
static void gen_step_swaps(const T5Config* c, GenGpu* G) {
    if (c->num_decoder_layers % 2 == 0) return;
    float* swap = G->x; G->x = G->x2; G->x2 = swap;
}

// a decoder step from the residual buffers it starts with (graph_capture_launch may run it twice)
typedef struct { T5Cuda* m; GenGpu* G; float *x, *x2; } GenStepCtx;
static void gen_step_from(void* ctx) {
    GenStepCtx* c = (GenStepCtx*)ctx;
    c->G->x = c->x; c->G->x2 = c->x2;
    gen_step_body(c->m, c->G);
}

// one decoder step at position t: eager, or its graph (captured here the first time)
static void gen_step_run(T5Cuda* m, GenGpu* G, int t) {
    cudaCheck(cudaMemcpyAsync(G->pos, &t, sizeof(int), cudaMemcpyHostToDevice, m->stream)); // pageable: staged at the call
    cudaGraphExec_t* e = &G->graph[G->cur][G->x != G->x_first];
    int eager = !t5cu_graphs_usable(m) || (!*e && G->steps == 0 && !t5cu_capture_first(m));
    G->steps++;
    if (eager) { gen_step_body(m, G); return; }
    if (!*e) {
        GenStepCtx c = { m, G, G->x, G->x2 };
        graph_capture_launch(&m->graphs, m->stream, gen_step_from, &c, e);
        return;
    }
    cudaCheck(cudaGraphLaunch(*e, m->stream));
    gen_step_swaps(&m->config, G);
    m->graphs.replayed++;
}

// n picks from the device into pinned host memory (synchronises); 0, or -1 when scores were all NaN
// (top-k then finds no index)
static int gen_download_picks(T5Cuda* m, GenGpu* G, int n, int with_values) {
    cudaCheck(cudaMemcpyAsync(G->h_idx, G->top_idx, (size_t)n * sizeof(int), cudaMemcpyDeviceToHost, m->stream));
    if (with_values) cudaCheck(cudaMemcpyAsync(G->h_val, G->top_val, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
    for (int i = 0; i < n; i++) if (G->h_idx[i] < 0) return -1;
    return 0;
}

static void gen_upload_tokens(T5Cuda* m, GenGpu* G) {
    cudaCheck(cudaMemcpyAsync(G->tokens, G->h_tokens, (size_t)G->R * sizeof(int), cudaMemcpyHostToDevice, m->stream));
}

// gen_greedy of train_t5.c, its bookkeeping for one step: row r's pick (pad once done) into seq; returns
// the rows still open
static int gen_gpu_greedy_pick(const T5Config* c, int t, int T, const int* pick, int* seq, int* tokens, int* done,
                               int* out_len, int R) {
    int open = 0, L = 1 + T;
    for (int r = 0; r < R; r++) {
        int next = done[r] ? c->pad_id : pick[r];
        seq[(size_t)r * L + t + 1] = tokens[r] = next;
        if (!done[r]) out_len[r] = t + 1;
        if (next == c->eos_id || t + 1 == T) done[r] = 1;
        open += !done[r];
    }
    return open;
}

// greedy search; 0, or -1 on NaN scores
static int gen_gpu_greedy(T5Cuda* m, GenGpu* G, const GenConfig* g, int* out, int* out_len) {
    const T5Config* c = &m->config;
    int R = G->R, V = c->vocab_size, T = g->max_new_tokens, L = 1 + T;
    int* seq = (int*)mallocCheck((size_t)R * L * sizeof(int));
    int* done = (int*)callocCheck((size_t)R, sizeof(int));
    for (int r = 0; r < R; r++) { seq[(size_t)r * L] = G->h_tokens[r] = c->decoder_start_id; out_len[r] = 0; }
    G->log_probs = 0; G->seq_stride = L; G->eos_bias = g->eos_bias;
    G->top_groups = R; G->top_n = V; G->top_k = 1; // argmax, the first of equal maxima
    int rc = 0;
    for (int t = 0; t < T && rc == 0; t++) {
        gen_upload_tokens(m, G);
        if (G->with_seq) cudaCheck(cudaMemcpyAsync(G->seq, seq, (size_t)R * L * sizeof(int), cudaMemcpyHostToDevice, m->stream));
        gen_step_run(m, G, t);
        rc = gen_download_picks(m, G, R, 0);
        if (rc == 0 && !gen_gpu_greedy_pick(c, t, T, G->h_idx, seq, G->h_tokens, done, out_len, R)) break;
    }
    for (int b = 0; b < G->B; b++)
        for (int j = 0; j < T; j++) out[(size_t)b * T + j] = j < out_len[b] ? seq[(size_t)b * L + 1 + j] : c->pad_id;
    free(seq); free(done);
    return rc;
}

// beam search; 0, or -1 on NaN scores
static int gen_gpu_beam(T5Cuda* m, GenGpu* G, const GenConfig* g, int* out, int* out_len) {
    const T5Config* c = &m->config;
    int R = G->R, B = G->B, nb = G->nb, V = c->vocab_size, K = 2 * nb, HD = c->num_heads * c->d_kv;
    BeamSearch* bs = beam_search_create(c, B, g);
    int W = beam_search_width(bs);
    int* parent = (int*)mallocCheck((size_t)R * sizeof(int));
    G->log_probs = 1; G->seq_stride = W; G->eos_bias = g->eos_bias;
    G->top_groups = B; G->top_n = nb * V; G->top_k = K;
    int rc = 0;
    for (int cur_len = 1, go_on = 1; go_on && rc == 0; cur_len++) {
        const int* run = beam_search_running(bs);
        for (int r = 0; r < R; r++) G->h_tokens[r] = run[(size_t)r * W + cur_len - 1];
        gen_upload_tokens(m, G);
        cudaCheck(cudaMemcpyAsync(G->score, beam_search_scores(bs), (size_t)R * sizeof(float), cudaMemcpyHostToDevice, m->stream));
        if (G->with_seq) cudaCheck(cudaMemcpyAsync(G->seq, run, (size_t)R * W * sizeof(int), cudaMemcpyHostToDevice, m->stream));
        gen_step_run(m, G, cur_len - 1);
        if ((rc = gen_download_picks(m, G, B * K, 1)) != 0) break;
        go_on = beam_search_step(bs, G->h_val, G->h_idx, cur_len, parent);
        cudaCheck(cudaMemcpyAsync(G->parent, parent, (size_t)R * sizeof(int), cudaMemcpyHostToDevice, m->stream));
        int to = G->cur ^ 1;
        cache_reorder(G->self_k[to], G->self_k[G->cur], G->parent, c->num_decoder_layers, R, (size_t)G->T * HD,
                      (size_t)cur_len * HD, m->stream);
        cache_reorder(G->self_v[to], G->self_v[G->cur], G->parent, c->num_decoder_layers, R, (size_t)G->T * HD,
                      (size_t)cur_len * HD, m->stream);
        G->cur = to;
        cudaCheck(cudaStreamSynchronize(m->stream)); // the host buffers uploaded above are rewritten next step
    }
    beam_search_result(bs, out, out_len);
    free(parent);
    beam_search_free(bs);
    return rc;
}

// LoRA: the adapter merged into the frozen floatX weights for a generation call, W += s·B·A (the CPU
// engine's t5_lora_merge; the decoding steps then run the plain products), the wrapped weights kept
// aside so that t5cu_lora_unmerge puts them back bit for bit. 1 when it merged now (0: no LoRA, or merged
// already by the caller, for a whole split)
static int t5cu_lora_merge(T5Cuda* m) {
    LoraState* L = m->lora;
    if (!L || L->merged) return 0;
    size_t n = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) if (L->layout.t[i].on) n += m->layout.t[i].size;
    L->saved = cuda_alloc<floatX>(n);
    size_t k = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const LoraTensor* t = &L->layout.t[i];
        for (int l = 0; t->on && l < t->layers; l++) {
            floatX* W = (floatX*)PX(m, i, l);
            size_t per = (size_t)t->out * t->in;
            cudaCheck(cudaMemcpyAsync(L->saved + k, W, per * sizeof(floatX), cudaMemcpyDeviceToDevice, m->stream));
            k += per;
            LoraLinear v = lora_linear(L, i, l, NO_DROP);
            lora_merge_weight(&m->mm, W, &v, t->in, t->out);
        }
    }
    L->merged = 1;
    return 1;
}

static void t5cu_lora_unmerge(T5Cuda* m) {
    LoraState* L = m->lora;
    if (!L || !L->merged) return;
    size_t k = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const LoraTensor* t = &L->layout.t[i];
        for (int l = 0; t->on && l < t->layers; l++) {
            size_t per = (size_t)t->out * t->in;
            cudaCheck(cudaMemcpyAsync((floatX*)PX(m, i, l), L->saved + k, per * sizeof(floatX), cudaMemcpyDeviceToDevice, m->stream));
            k += per;
        }
    }
    cudaCheck(cudaStreamSynchronize(m->stream));
    cudaCheck(cudaFree(L->saved));
    L->saved = NULL;
    L->merged = 0;
}

// t5_generate on the GPU: out (B, max_new_tokens) each input's summary after the start token (eos
// included if it stopped, then pad_id), out_len (B); 0, or -1 with a message naming the bad input.
// Under LoRA with the adapter merged for the call.
static int t5cu_generate(T5Cuda* m, const int* const* src, const int* src_len, int B, const GenConfig* g, int* out,
                         int* out_len, char* err, size_t errlen) {
    if (gen_check(&m->config, src, src_len, B, g, err, errlen)) return -1;
    int Ts = 1;
    for (int b = 0; b < B; b++) if (src_len[b] > Ts) Ts = src_len[b];
    Ts = t5cu_padded_len(m, Ts); // cuDNN attention: a bounded set of encoder shapes (keys past src_len are masked)
    GenGpu G;
    gen_gpu_build(&G, &m->config, B, g, Ts);
    int merged = t5cu_lora_merge(m);
    gen_gpu_encode(m, &G, src, src_len);
    int rc = g->num_beams == 1 ? gen_gpu_greedy(m, &G, g, out, out_len) : gen_gpu_beam(m, &G, g, out, out_len);
    if (merged) t5cu_lora_unmerge(m);
    gen_gpu_free(&G);
    if (rc) snprintf(err, errlen, "generate: the model's scores are NaN (no token to pick)");
    return rc;
}

// ----------------------------------------------------------------------------
// the memory plan (--plan-memory, llmc/plan_memory.cuh): device bytes per rank from the same plans the
// allocations use

// weights, gradients and optimizer state of config c on one of `ranks` ranks; with lora (non-NULL) the
// frozen base (floatX) and the adapter's state (llmc/lora.cuh), the adapter sharded under ZeRO-1
static size_t plan_state_bytes(const T5Config* c, int zero, int ranks, const LoraConfig* lora) {
    T5Cuda m;
    memset(&m, 0, sizeof(m));
    m.zero = zero;
    Comm comm;
    memset(&comm, 0, sizeof(comm));
    comm.size = ranks;
    LoraState L;
    if (lora) {
        lora_state_geometry(&L, lora, c, zero, &comm);
        m.lora = &L;
    }
    order_build(&m.order, c, zero && !lora ? ranks : 1);
    AllocPlan plan[8];
    size_t bytes = plan_bytes(plan, state_plan(&m, plan)) + (lora ? lora_state_bytes(&L) : 0);
    order_free(&m.order);
    return bytes;
}

static size_t plan_act_bytes(const T5Config* c, int B, int Ts, int Tt, int recompute, int attention) {
    T5CudaActs a;
    AllocPlan plan[ACTS_PLAN_MAX];
    int relu_epi = !c->gated && c->act == ACT_RELU; // the masks where the fusion may apply
    return plan_bytes(plan, acts_plan(&a, c, B, Ts, Tt, recompute, attention, relu_epi, plan));
}

static int gpu_plan_memory(const Options* o) {
    PlanSizes z = { plan_state_bytes, plan_act_bytes, attn_kind_name };
    return plan_memory(&z, o);
}

// ----------------------------------------------------------------------------
// a training step as CUDA graphs (see "CUDA graphs" at the top): micro-steps per shape, the step end

// a step body and the host state it starts from: its bucket position (graph_capture_launch may run it twice)
typedef struct { T5Cuda* m; const AdamW* opt; int reduce, next_bucket; } StepCtx;

// forward + backward of the uploaded micro-batch (its bucket reductions when reduce_now)
// The reductions run on the communicator's stream; the compute stream joins it before the body ends, as a
// capture requires of every stream it forks to (the work after it reads the summed gradients anyway)
static void micro_body(void* ctx) {
    const StepCtx* x = (const StepCtx*)ctx;
    x->m->next_bucket = x->next_bucket;
    t5cu_forward_run(x->m);
    t5cu_backward(x->m);
    if (x->reduce && !x->m->lora) comm_join(x->m->comm, x->m->stream); // LoRA reduces in the step end
}

// one micro-step, `body` (micro_body; a test may hand another) with a StepCtx: captured the first time its
// shape is seen (or run eagerly then and captured the second time, t5cu_capture_first), replayed after that.
// The host's bucket position advances as the body's would have (a replay runs no host code).
static void t5cu_micro_step(T5Cuda* m, GraphBody body) {
    StepGraphs* g = &m->graphs;
    if (m->cudnn) graphs_epoch(g, m->stream, cudnn_attn_epoch(m->cudnn)); // its workspace moved: the graphs hold the old one
    StepCtx x = { m, NULL, m->reduce_now, m->next_bucket };
    int replayed = graphs_micro_step(g, m->stream, t5cu_graphs_usable(m), t5cu_capture_first(m), m->B, m->Ts, m->Tt,
                                     m->reduce_now, body, &x);
    if (replayed && m->reduce_now) m->next_bucket = bucket_count(&m->config); // every bucket was handed over in order
}

// after the micro-steps: the buckets not reduced yet, the loss over ranks, the norm, the gated update
static void end_body(void* ctx) {
    const StepCtx* x = (const StepCtx*)ctx;
    T5Cuda* m = x->m;
    m->next_bucket = x->next_bucket;
    Comm* c = m->comm;
    if (x->reduce) { // joined only when this body forked to the communicator's stream (see micro_body)
        int forked = m->lora || m->next_bucket < bucket_count(&m->config);
        m->reduce_now = 1;
        t5cu_reduce_rest(m);
        m->reduce_now = 0;
        if (forked) comm_join(c, m->stream);
    }
    if (c) comm_all_reduce_sum(c, m->loss_sum, 2, COMM_F64, m->stream);
    t5cu_grad_norm(m);
    prof_mark(m->prof, "grad_norm");
    t5cu_apply_update(m, x->opt);
    prof_mark(m->prof, "adamw");
}

// the step end, as one graph when its content is the usual one: every bucket already reduced by the last
// micro-step (a rank whose last micro-batch was empty reduces them all here: that step runs eagerly)
static void t5cu_step_end(T5Cuda* m, const AdamW* opt, int reduce) {
    StepCtx x = { m, opt, reduce, m->next_bucket };
    int usual = !reduce || m->lora || m->next_bucket == bucket_count(&m->config); // LoRA: one reduction, here
    graphs_step_end(&m->graphs, m->stream, t5cu_graphs_usable(m), t5cu_capture_first(m), reduce, usual, end_body, &x);
}

// ----------------------------------------------------------------------------
// the GPU engine behind llmc/engine.h: what the driver (llmc/run.h, linked as llmc/driver.c) calls

// the processes: the communicator (NCCL over MPI, or --nccl-init-dir); in a dry run, MPI alone (no device)
typedef struct { Comm comm; int device; } GpuProc;

static T5Cuda* gpu_model(Engine* e) { return (T5Cuda*)e->self; }
static GpuProc* gpu_proc(Engine* e) { return (GpuProc*)e->proc; }

// One optimizer step over this rank's micro-batches (B = 0 is possible: a rank's empty share of a short last
// batch). The driver has summed the counted label tokens over the ranks: the backward passes scale by
// 1 / that total, the bucket reductions of the last backward pass sum the gradients, so every rank applies
// the same update. One host synchronisation, to read the loss and the norm (the step's skip decision).
// micro: the body of each micro-step (micro_body; test_t5cu hands one whose capture breaks)
static void t5cu_step_with(T5Cuda* m, const StepIn* in, StepOut* out, GraphBody micro) {
    double t_start = now_ms();
    Comm* c = m->comm;
    int comm_on = c && (c->active || m->zero);
    prof_begin(m->prof);
    t5cu_zero_grad(m);
    prof_mark(m->prof, "zero_grad");
    m->reduce_now = 0; m->next_bucket = 0;
    for (int a = 0; a < in->A && in->total > 0; a++) {
        if (in->batches[a]->B == 0) continue;
        t5cu_forward_begin(m, in->batches[a], 1, in->seeds[a], 1.0f / (float)in->total);
        m->reduce_now = comm_on && a == in->A - 1;
        t5cu_micro_step(m, micro);
    }
    t5cu_update_values(m, &in->opt, in->lr, (double)in->total, in->clip);
    if (in->optimizer != m->opt_kind) { // a programming error: the engine was built for the other optimizer
        fprintf(stderr, "error: a %s step on an engine built for %s\n", optim_name(in->optimizer), optim_name(m->opt_kind));
        exit(EXIT_FAILURE);
    }
    if (in->optimizer == OPTIM_ADAFACTOR) t5cu_adafactor_values(m, &in->af, in->opt.decay_norms);
    t5cu_step_end(m, &in->opt, comm_on && in->total > 0);
    double sums[2];
    memset(out, 0, sizeof(*out));
    out->host_ms = now_ms() - t_start;
    t5cu_read_loss_sums(m, sums); // the step's synchronisation (see the top of the file)
    prof_collect_previous(m->prof); // the previous step: complete by now
    out->loss = in->total > 0 ? (float)(sums[1] / (double)in->total) : NAN;
    out->grad_norm = t5cu_read_norm(m);
    // the device's decision (adamw_gate), taken again here from the same values: a skipped step never
    // reached the weights; an applied one counts for the bias corrections
    out->skipped = !isfinite(out->loss) || !isfinite(out->grad_norm);
    if (!out->skipped) m->step++;
}
static void t5cu_step(T5Cuda* m, const StepIn* in, StepOut* out) { t5cu_step_with(m, in, out, micro_body); }

// (the step's one synchronisation waits for the other ranks' NCCL reductions: marked for the watchdog)
static void gpu_step(Engine* e, const StepIn* in, StepOut* out) {
    engine_wait_begin(e, "the step (NCCL gradient reductions, then its synchronisation)");
    t5cu_step(gpu_model(e), in, out);
    engine_wait_end(e);
}

// the watchdog's end of a stalled job: the communicator aborted (NCCL documents ncclCommAbort for a peer
// that stopped), then every rank through MPI
static void gpu_abort(Engine* e, int code) {
    GpuProc* p = gpu_proc(e);
#ifdef USE_NCCL
    if (p && p->device && p->comm.active) ncclCommAbort(p->comm.comm);
#endif
    if (p) dist_abort(&p->comm.dist, code);
    _exit(code);
}

static int gpu_init(Engine* e, int* argc, char*** argv, const Options* o) {
    char err[1024];
    if (o->optimizer == OPTIM_ADAFACTOR && o->zero) { // (also in a dry run: the combination cannot train)
        fprintf(stderr, "error: %s\n", ADAFACTOR_ZERO_REFUSAL);
        return -1;
    }
    GpuProc* p = (GpuProc*)callocCheck(1, sizeof(GpuProc));
    e->proc = p;
    if (comm_bootstrap(&p->comm, argc, argv, o->nccl_init_dir, err, sizeof(err)) ||
        (!o->dry_run && comm_init(&p->comm, o->nccl_init_dir, err, sizeof(err)))) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    p->device = !o->dry_run;
    e->rank = p->comm.rank; e->size = p->comm.size; e->local_size = 1;
    if (p->device) {
        cudaDeviceProp prop;
        cudaCheck(cudaGetDeviceProperties(&prop, p->comm.local_rank));
        e->peak_tflops = o->peak_tflops > 0 ? o->peak_tflops : card_peak_tflops(prop.name);
        if (e->rank == 0) printf("device: %s (bf16 dense peak %.1f TFLOP/s for MFU)\n", prop.name, e->peak_tflops);
    }
    return 0;
}

static void gpu_finalize(Engine* e) {
    GpuProc* p = gpu_proc(e);
    if (!p) return;
    if (p->device) comm_free(&p->comm);
    else if (p->comm.via_mpi) dist_finalize(&p->comm.dist);
    free(p);
    e->proc = NULL;
}

// collectives over the ranks: NCCL once the device is up; in a dry run MPI's (llmc/dist.h)
static int gpu_max_int(Engine* e, int x) {
    GpuProc* p = gpu_proc(e);
    return p->device ? comm_max_int(&p->comm, x) : dist_max_int(&p->comm.dist, x);
}
static void gpu_sum_i64(Engine* e, int64_t* x, int n) {
    GpuProc* p = gpu_proc(e);
    if (p->device) comm_sum_i64(&p->comm, x, n); else dist_sum_i64(&p->comm.dist, x, n);
}
static void gpu_sum_f64(Engine* e, double* x, int n) {
    GpuProc* p = gpu_proc(e);
    if (p->device) comm_sum_f64(&p->comm, x, n); else dist_sum_f64(&p->comm.dist, x, n);
}

// the model on the device from host weights (copied); solo: rank 0's model of an evaluation, no communicator
static int gpu_build(Engine* e, HostModel* h, const Options* o, int solo) {
    char err[1024];
    int attn = o->attention != ATTN_AUTO ? o->attention : flash_attention_supports(h->config.d_kv) ? ATTN_FLASH : ATTN_GEMM;
    if ((attn == ATTN_FLASH && flash_attention_check(h->config.d_kv, err, sizeof(err))) ||
        (attn == ATTN_CUDNN && cudnn_attention_check(h->config.d_kv, err, sizeof(err)))) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    T5Cuda* m = (T5Cuda*)callocCheck(1, sizeof(T5Cuda));
    T5CudaOptions mo = { solo ? NULL : &gpu_proc(e)->comm, solo ? 0 : o->zero, o->recompute, attn, h->lora.r ? &h->lora : NULL,
                         o->cuda_graphs, o->matmul_tune, o->matmul_plans, o->optimizer, o->af_beta1 >= 0.0 };
    t5cu_build_with(m, &h->config, h->params, &mo);
    if (m->lora) t5cu_lora_set(m, h->adapter, h->base_crc);
    if (h->af) t5cu_set_adafactor_state(m, h->af, h->af_n, h->step); // (llmc/model.h checked it is this run's optimizer's)
    else if (h->m) t5cu_set_optimizer_state(m, h->m, h->v, h->step);
    else m->step = h->step; // a checkpoint without optimizer state still says its step (as the CPU engine reads it)
    e->self = m;
    return 0;
}

static void gpu_free(void* model) { t5cu_free((T5Cuda*)model); free(model); }

static void gpu_print_config(Engine* e, const Options* o) {
    T5Cuda* m = gpu_model(e);
    const T5Config* c = &m->config;
    char row[96];
    (void)o;
    printf("| %-22s | %-43s |\n", "precision", PRECISION_NAME);
    snprintf(row, sizeof(row), "%s%s, ZeRO-1 %s, recompute %s", m->comm && m->comm->active ? "NCCL" : "one process",
             m->comm && m->comm->via_mpi ? " (MPI)" : "", m->zero ? "on" : "off", m->recompute ? "on" : "off");
    printf("| %-22s | %-43s |\n", "parallelism", row);
    printf("| %-22s | %-43s |\n", "attention",
           m->attention == ATTN_FLASH ? "flash (llmc/flash_attention.cuh)" :
           m->attention == ATTN_CUDNN ? "cudnn (llmc/cudnn_att.h, cuDNN SDPA)" : "gemm (llmc/attention.cuh)");
    printf("| %-22s | %-43s |\n", "ffn matmul epilogue", m->relu_epilogue ? "ReLU fused where dropout is 0 (cuBLASLt)" :
           c->gated || c->act != ACT_RELU ? "none (gated or GELU FFN: llmc/ffn_act.cuh)" : "none (cuBLASLt has no ReLU epilogue)");
    printf("| %-22s | %-43s |\n", "matmul algorithms", matmul_algo_mode_name(m->mm.tune));
    printf("| %-22s | %-43s |\n", "matmul plans", m->mm.plans ? "kept per exact shape (--matmul-plans 1)" : "built per product");
    printf("| %-22s | %-43s |\n", "training steps", m->graphs.on ? "CUDA graphs per shape (--cuda-graphs 1)" : "eager launches");
    snprintf(row, sizeof(row), "%.2f GiB per rank (%zu buckets)", m->state_bytes / 1073741824.0, (size_t)m->order.nb);
    printf("| %-22s | %-43s |\n", m->opt_kind == OPTIM_ADAFACTOR ? "weights+grads+AF state" : "weights+grads+AdamW", row);
    if (m->opt_kind == OPTIM_ADAFACTOR) // opt-in: llmc/adafactor.cuh in this engine has not run on a GPU yet
        printf("| %-22s | %-43s |\n", "adafactor on the GPU", "never run on a GPU yet (docs/adafactor.md)");
}

static void gpu_reserve(Engine* e, int B, int Ts, int Tt) { t5cu_reserve(gpu_model(e), B, Ts, Tt); }

static float gpu_eval_batch(Engine* e, const T5Batch* b, int* counted) {
    T5Cuda* m = gpu_model(e);
    t5cu_forward(m, b, 0, 0, 0.0f);
    float mean = t5cu_read_loss(m);
    *counted = m->num_counted;
    return mean;
}

// LoRA: the adapter merged into the frozen floatX weights once around many generate calls
static void gpu_gen_begin(Engine* e) { t5cu_lora_merge(gpu_model(e)); }
static void gpu_gen_end(Engine* e) { t5cu_lora_unmerge(gpu_model(e)); }

static int gpu_generate(Engine* e, const int* const* src, const int* src_len, int B, const GenConfig* g, int* out, int* out_len,
                        char* err, size_t errlen) {
    return t5cu_generate(gpu_model(e), src, src_len, B, g, out, out_len, err, errlen);
}

// the state gathered to rank 0's host buffers (t5cu_get_state; every rank takes part); freed at the next call.
// Under ZeRO-1 the gathers are NCCL all-gathers and a synchronisation: a wait for the other ranks (watchdog)
static int gpu_get_state(Engine* e, EngineState* s) {
    T5Cuda* m = gpu_model(e);
    int gathers = m->zero && m->comm;
    if (gathers) engine_wait_begin(e, "the ZeRO-1 state's gather (NCCL all-gathers, then a synchronisation)");
    t5cu_get_state(m, s);
    if (gathers) engine_wait_end(e);
    return 0;
}

static double gpu_peak_mib(Engine* e) { (void)e; return device_memory_used() / 1048576.0; }

static double gpu_step_flops(Engine* e, const T5Batch* b) {
    return t5_batch_flops(&e->config, b, e->lora.r ? &e->lora : NULL);
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

// the inputs of bench step k: one synthetic batch, its counts over the ranks, its seed, the lr
static StepIn bench_inputs(Engine* e, const Options* o, T5Batch** b, uint64_t* seed, long long k, long long* tokens, double* flops) {
    int64_t counts[3] = { batch_count_labels(b[0]), batch_real_tokens(b[0]), (int64_t)gpu_step_flops(e, b[0]) };
    gpu_sum_i64(e, counts, 3);
    *tokens = counts[1]; *flops = (double)counts[2];
    StepIn in;
    memset(&in, 0, sizeof(in));
    in.batches = b; in.A = 1; in.total = counts[0];
    t5_step_settings(o, e, k, o->lr, seed, &in); // the training loop's seeds and optimizer (a constant lr)
    return in;
}

// full training steps on synthetic DialogSum-shaped batches: median step time, real tokens/s, MFU.
// Rank r of R draws batches k·R + r of the synthetic stream.
static int gpu_bench(Engine* e, const Options* o) {
    T5Cuda* m = gpu_model(e);
    int W = o->bench_warmup, N = o->bench, ranks = e->size, rank = e->rank, print = rank == 0;
    BatchBuf bb;
    memset(&bb, 0, sizeof(bb));
    double* ms = (double*)mallocCheck((size_t)N * sizeof(double));
    double* host = (double*)mallocCheck((size_t)N * sizeof(double));
    double tokens = 0, flops = 0, total_ms = 0, peak = 0;
    t5cu_reserve(m, o->batch_size, BENCH_MAX_SRC, BENCH_MAX_TGT); // bench_batch's longest lengths
    for (int k = 0; k < W + N; k++) {
        if (k == W && !m->graphs.on) m->prof = prof_start(m->stream, o->profile == 1); // the timed steps only (eager launches)
        bench_batch(&bb, k * ranks + rank, o->batch_size, &m->config, o->ladder);
        T5Batch* b = &bb.b;
        const char* bad = t5_batch_check(&m->config, b);
        if (bad) { fprintf(stderr, "error: bench batch: %s\n", bad); free(ms); free(host); batch_free(&bb); return -1; }
        double t0 = now_ms(), fl;
        long long tok;
        uint64_t seed;
        StepIn in = bench_inputs(e, o, &b, &seed, k, &tok, &fl);
        StepOut out;
        t5cu_step(m, &in, &out);
        if (!out.skipped) e->opt_step++; // as run_after: Adafactor's next step values are for t + 1
        double dt = now_ms() - t0, mib = gpu_peak_mib(e);
        if (mib > peak) peak = mib;
        if (print) printf("bench step %d/%d | loss %.6f | %.1f ms | %.0f tok/s | MFU %.1f%%\n", k + 1, W + N, (double)out.loss, dt,
                          tok / (dt / 1e3), e->peak_tflops > 0 ? 100.0 * fl / (dt / 1e3) / 1e12 / ranks / e->peak_tflops : 0.0);
        if (k < W) continue;
        ms[k - W] = dt; host[k - W] = out.host_ms; tokens += tok; flops += fl; total_ms += dt;
    }
    qsort(ms, (size_t)N, sizeof(double), cmp_double);
    qsort(host, (size_t)N, sizeof(double), cmp_double);
    cudaCheck(cudaStreamSynchronize(m->stream));
    if (m->prof) {
        prof_collect_last(m->prof);
        if (print) prof_print(m->prof); // GPU time of each phase (and operation), mean over the timed steps
        prof_free(m->prof);
        m->prof = NULL;
    } else if (print) printf("%s\n", !PROF_BUILT ? "(no phase profile: this build has no profiler; make PROFILE=1 builds one)"
                                                 : "(no phase profile: the steps replayed CUDA graphs; --cuda-graphs 0 profiles)");
    double tok_s = tokens / (total_ms / 1e3), tflops = flops / (total_ms / 1e3) / 1e12 / ranks;
    if (print)
        printf("bench: engine=t5.c-cuda precision=%s batch=%d ranks=%d zero=%d recompute=%d attention=%s lora_r=%d steps=%d "
               "median_step_ms=%.2f real_tok_per_s=%.0f tflops=%.1f mfu=%.1f%% peak_mem_gib=%.2f median_host_ms=%.2f cuda_graphs=%d\n",
               PRECISION_NAME, o->batch_size, ranks, m->zero, m->recompute, attn_kind_name(m->attention),
               m->lora ? m->lora->config.r : 0, N, ms[(N - 1) / 2], tok_s, tflops,
               e->peak_tflops > 0 ? 100.0 * tflops / e->peak_tflops : 0.0, peak / 1024.0, host[(N - 1) / 2], m->graphs.on);
    free(ms);
    free(host);
    batch_free(&bb);
    return 0;
}

// --gen-bench N: the sources of the synthetic training batches (bench_batch; dev/bench_hf_generate.py
// draws the same), batches of --gen-batch-size (N rounded up to whole batches), eos suppressed so every
// summary has max_new_tokens tokens (HF: min_new_tokens). One untimed batch first.
static int gpu_gen_bench(Engine* e, const Options* o) {
    T5Cuda* m = gpu_model(e);
    char err[1024];
    GenConfig g = gen_config_default();
    g.max_new_tokens = o->max_new_tokens; g.num_beams = o->num_beams; g.no_repeat_ngram_size = o->no_repeat_ngram;
    g.length_penalty = o->length_penalty; g.early_stopping = o->early_stopping;
    g.min_new_tokens = o->min_new_tokens; g.repetition_penalty = o->repetition_penalty;
    g.eos_bias = -1e9f;
    int B = o->gen_batch_size, T = o->max_new_tokens, nbatch = (o->gen_bench + B - 1) / B;
    BatchBuf bb;
    memset(&bb, 0, sizeof(bb));
    int* out = (int*)mallocCheck((size_t)B * T * sizeof(int));
    int* out_len = (int*)mallocCheck((size_t)B * sizeof(int));
    const int** rows = (const int**)mallocCheck((size_t)B * sizeof(int*));
    double ms = 0.0;
    long long tokens = 0;
    int rc = 0, merged = t5cu_lora_merge(m); // LoRA: once, outside the timed calls
    for (int k = -1; k < nbatch && rc == 0; k++) {
        bench_batch(&bb, k < 0 ? 0 : k, B, &m->config, NULL);
        for (int i = 0; i < B; i++) rows[i] = bb.b.src + (size_t)i * bb.b.Ts;
        double t0 = now_ms();
        rc = t5cu_generate(m, rows, bb.b.src_len, B, &g, out, out_len, err, sizeof(err));
        double dt = now_ms() - t0;
        if (k < 0) continue;
        ms += dt;
        for (int i = 0; i < B; i++) tokens += out_len[i];
        printf("gen batch %d/%d | %d inputs | %.1f ms | %.1f summaries/s\n", k + 1, nbatch, B, dt, B / (dt / 1e3));
    }
    if (merged) t5cu_lora_unmerge(m);
    if (rc) fprintf(stderr, "error: %s\n", err);
    else printf("gen_bench: engine=t5.c-cuda precision=%s inputs=%d batch=%d beams=%d max_new_tokens=%d seconds=%.3f "
                "summaries_per_s=%.2f new_tokens_per_s=%.0f\n", PRECISION_NAME, nbatch * B, B, g.num_beams, T, ms / 1e3,
                nbatch * B / (ms / 1e3), tokens / (ms / 1e3));
    free(out); free(out_len); free(rows);
    batch_free(&bb);
    return rc;
}

// what the run leaves to say of the device: the matmul modes' and the graphs' counters
static void gpu_report_end(Engine* e, const Options* o) {
    T5Cuda* m = gpu_model(e);
    if (m->mm.tune == MM_ALGO_TIMED)
        printf("matmul tuning: %d shape classes timed, %d of them faster with another candidate than cuBLASLt's "
               "first, %.0f ms spent; %d products ran the first instead (the kept one did not fit)\n",
               m->mm.tuned_shapes, m->mm.tuned_changed, m->mm.tune_ms, m->mm.tune_misfits);
    if (m->mm.tune == MM_ALGO_CLASS)
        printf("matmul classes: %d shape classes planned; %d products ran their own first candidate instead (the "
               "class's did not fit)\n", m->mm.tuned_shapes, m->mm.tune_misfits);
    if (m->mm.plans)
        printf("matmul plans: %d exact shapes planned, %lld products reused a kept plan\n", m->mm.plans_built, m->mm.plans_hit);
    if (o->cuda_graphs)
        printf("cuda graphs: %lld captured, %lld replayed (training micro-steps, decoder steps), %lld micro-steps eager%s\n",
               m->graphs.captured, m->graphs.replayed, m->graphs.eager, m->graphs.on ? "" : "; turned off during the run");
    printf("device memory: activations %.2f GiB, weights+grads+optimizer %.2f GiB\n", m->act_bytes / 1073741824.0,
           m->state_bytes / 1073741824.0);
}

static const EngineOps GPU_ENGINE = {
    "train_t5cu", "train_t5cu (CUDA, " PRECISION_NAME ")", "device", ENGINE_GPU,
    gpu_init, gpu_finalize, gpu_max_int, gpu_sum_i64, gpu_sum_f64,
    gpu_build, gpu_print_config, gpu_free, gpu_reserve, gpu_step, gpu_eval_batch,
    gpu_gen_begin, gpu_gen_end, gpu_generate, gpu_get_state, gpu_peak_mib, gpu_step_flops,
    gpu_bench, gpu_gen_bench, gpu_plan_memory, gpu_report_end, gpu_abort,
    0, // background checkpoints: opt-in until a GPU run has checked them (--async-checkpoint 1)
};

#ifndef TESTING
// the driver around the GPU engine: the run's setup, then its steps, then what follows them
int main(int argc, char** argv) {
    Program* p = program_new();
    if (program_begin(p, argc, argv, &GPU_ENGINE) == 0)    // options, processes, model, data, run directory
        for (StepIn in; program_next(p, &in); ) {            // the step's micro-batches, seeds and lr
            StepOut out;
            gpu_step(program_engine(p), &in, &out);          // micro-steps (graphs or eager), all-reduce, AdamW
            program_after(p, &out);                          // log, evaluation, checkpoint, stop signals
        }
    return program_end(p);                                   // final eval + checkpoint, outputs, report
}
#endif
