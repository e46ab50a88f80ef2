// engine.h — the seam between the one host-side driver (llmc/run.h) and the two engines (train_t5.c on
// the CPU, train_t5.cu on the GPU). Everything here is plain data and function pointers, readable from C
// and from CUDA C++: the options of a run, a model as the host holds it, the generation settings, and
// the small set of calls the driver makes of an engine. The driver depends on this file, never on an
// engine's types; an engine fills EngineOps and hands it to the driver (run_main).
#ifndef T5_ENGINE_H
#define T5_ENGINE_H

#include <stddef.h>        // defines: size_t
#include <stdint.h>        // defines: int64_t, uint32_t, uint64_t
#include "t5.h"            // defines: T5Config
#include "lora.h"          // defines: LoraConfig
#include "checkpoint.h"    // defines: CkptTrainState
#include "hf.h"            // defines: HfWeightsOptions, ST_F32
#include "schedule.h"      // defines: LrScheduleKind
#include "dataloader.h"    // defines: T5Batch
#include "watchdog.h"      // defines: Watchdog, watchdog_enter, watchdog_leave
#include "optim.h"         // defines: OptimKind, AdafactorStep, AdafactorConfig

#ifdef __cplusplus
extern "C" {
#endif

// which engine a flag belongs to (llmc/options.h): both, or one of them
typedef enum { ENGINE_BOTH = 0, ENGINE_CPU = 1, ENGINE_GPU = 2 } EngineKind;

// GPU attention kernels (--attention): the GPU engine's; the CPU engine computes attention one way
typedef enum { ATTN_GEMM, ATTN_FLASH, ATTN_AUTO, ATTN_CUDNN } AttnKind;

// Every flag of both trainers, filled from the one table of llmc/options.h. Fields after "GPU engine"
// are read by train_t5cu only (train_t5 refuses their flags).
typedef struct {
    const char* model;       // preset, HF directory or checkpoint file
    const char* train_file;  // pre-tokenized examples (prepro_dialogsum.py output)
    const char* val_file;    // pre-tokenized validation examples
    const char* out_dir;     // run directory: metrics.jsonl, checkpoints/, model/
    const char* resume;      // "latest" (newest valid checkpoint in out_dir/checkpoints) or a checkpoint file
    const char* save_hf;     // output HF directory (default with --out-dir: OUT/model)
    HfWeightsOptions hf_weights; // --save-hf-dtype fp32|bf16, --max-shard-size (as save_pretrained's)
    const char* save_ckpt;   // output native checkpoint
    const char* data_log;    // PREFIX: each rank writes the example ids of every step to PREFIX.rank<r>
    const char* eval_split;  // PREFIX of a prepro split (PREFIX.bin + PREFIX_refs.jsonl): summaries + scores
    const char* eval_out;    // directory for generations.jsonl, scores.json, comparison.{txt,md}
    const char* baseline_model; // the model to compare with (the original, zero-shot one)
    const char* compare_model;  // a third model in the comparison (e.g. the full fine-tune beside a LoRA --model)
    const char* compare_lora_adapter; // a peft adapter applied to compare_model (as lora_adapter to model)
    const char* summarize;   // FILE or - : print the summary of one dialogue
    const char* tokenizer;   // T5's spiece.model
    const char* prompt;      // source template with {dialogue}, as prepro_dialogsum.py's
    int num_beams, max_new_tokens, no_repeat_ngram, early_stopping, gen_batch_size, eval_limit, eval_rouge, compare_examples;
    int min_new_tokens;
    float length_penalty, eos_bias, repetition_penalty;
    int steps, schedule_steps, batch_size, grad_accum, warmup, shuffle, bucket, decay_norms, max_src_len, max_tgt_len;
    int ladder[2];           // --shape-ladder S,T: padded lengths rounded up to multiples of S / T (0: dynamic)
    float epochs;
    int eval_every, eval_batches, eval_batch_size, checkpoint_every, keep_checkpoints, max_skips;
    float lr, weight_decay, beta1, beta2, adam_eps, clip, dropout;
    int optimizer;           // OptimKind (--optimizer adamw|adafactor)
    int af_relative_step, af_scale_parameter, af_warmup_init; // transformers' Adafactor(...) switches
    double af_beta1;         // < 0: beta1=None
    double af_clip, af_decay, af_eps1, af_eps2; // clip_threshold, decay_rate, eps=(eps1, eps2)
    int lr_given, wd_given, sched_given; // --lr / --weight-decay / --schedule, --warmup or --schedule-steps were given
    int prompt_given;        // --prompt was given (else the prompt the data or the model records: llmc/prompt.h)
    const char* prompt_from; // where prompt came from: "--prompt", a record's path, or "the default" (llmc/run.h)
    LrScheduleKind schedule;
    long long seed;
    int bench, bench_src_len, bench_tgt_len, dry_run;
    int init;                // a preset's random initialisation: 0 scratch, 1 hf (llmc/model.h InitKind)
    int keep_best;           // 0 off, else 1 + the KeepMetric the best evaluated checkpoint is kept by (llmc/run.h)
    int early_stop;          // stop after this many evaluations without improvement (0 = never)
    int async_checkpoint;    // 1: checkpoints written by a background thread from a staged copy (-1: the engine's default)
    float collective_timeout; // seconds one wait for the other ranks may last (the watchdog); 0 = off
    T5Config dims;           // explicit dimensions over a preset (0 / -1 = keep the preset's)
    int lora_r;              // LoRA rank, 0 = full fine-tuning, -1 = not given (0, or the adapter's)
    float lora_alpha, lora_dropout; // -1 = not given (peft's defaults 8 and 0, or the adapter's)
    const char* lora_targets;  // "q,v" (NULL: peft's T5 default q,v, or the adapter's)
    const char* lora_adapter;  // a peft adapter directory to start from
    const char* save_lora;     // where to write the adapter (default with --out-dir: OUT/adapter)
    const char* merge_lora;    // where to write the merged model as an HF directory
    // GPU engine
    const char* nccl_init_dir; // bootstrap without MPI through a shared directory
    int gen_bench, bench_warmup, zero, recompute, plan_ranks, cuda_graphs;
    int attention;           // AttnKind
    int matmul_tune;         // 0 heuristic's first per product, 1 timed per shape class, 2 heuristic's first per class
    int matmul_plans;        // 1: cuBLASLt plans kept per exact shape
    int profile;             // with --bench in a PROFILE=1 build: 0 phases, 1 operations too
    float peak_tflops, plan_memory;
} Options;

// generation settings, with transformers generate()'s meaning (llmc/beam.h, the engines' searches)
typedef struct {
    int max_new_tokens;        // ≥ 1: tokens generated per input, eos included
    int num_beams;             // 1 = greedy search
    int no_repeat_ngram_size;  // 0 = off; n: a token that would complete an n-gram already in the sequence
                               // (start token included) is banned (score −inf)
    double length_penalty;     // beam: a finished hypothesis scores Σ log p / (its new tokens)^length_penalty;
                               // a double because HF raises to this power in Python floats
    int early_stopping;        // beam: 1 = an input is done once it has num_beams finished hypotheses (HF True);
                               // 0 = HF's default: done once the best running beam, scored at the current
                               // length, cannot beat the worst of num_beams finished ones
    float eos_bias;            // added to the eos logit before anything else; 0 = off (lets tests make random
                               // models stop: they rarely pick eos on their own)
    int min_new_tokens;        // ≥ 0: eos is banned (score −inf) until this many new tokens were generated
                               // (HF MinNewTokensLengthLogitsProcessor); 0 = off. Above max_new_tokens it
                               // bans eos at every step, as min = max does (HF warns and does the same)
    float repetition_penalty;  // > 0: HF RepetitionPenaltyLogitsProcessor: the score of every token already in
                               // the sequence (start token included) is multiplied by it when negative, else
                               // divided by it; 1 = off, > 1 discourages repeats, < 1 encourages them
} GenConfig;

static inline GenConfig gen_config_default(void) {
    GenConfig g;
    g.max_new_tokens = 128; g.num_beams = 1; g.no_repeat_ngram_size = 0; g.length_penalty = 1.0;
    g.early_stopping = 0; g.eos_bias = 0.0f; g.min_new_tokens = 0; g.repetition_penalty = 1.0f;
    return g;
}

// AdamW with the exact semantics of torch.optim.AdamW (both engines)
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int decay_norms;  // 1: decay every tensor (torch AdamW over all parameters); 0: HF Trainer's rule (t5_no_decay)
} AdamW;

// A model as the host holds it (llmc/model.h loads it; an engine is built from it). fp32, layout order.
// Under LoRA: params is the frozen base, adapter the adapter, and m, v, step the adapter's optimizer state.
typedef struct {
    T5Config config;
    float *params, *m, *v;   // m, v NULL: no optimizer state yet
    long long step;          // optimizer updates done
    char from[96];           // what it was loaded from, for the config table
    CkptTrainState train;    // from a checkpoint (zeros otherwise)
    LoraConfig lora;         // r > 0: LoRA (llmc/lora.h), the adapter below; r = 0: full fine-tuning
    float* adapter;          // (lora_layout total)
    uint32_t base_crc;       // lora_base_fingerprint of params: an adapter checkpoint names its base by it
    int opt_kind, af_beta1;  // the optimizer of the state loaded (OptimKind); Adafactor: whether M is in it
    float* af;               // (af_n) Adafactor state (llmc/optim.h layout; NULL: none yet); m, v stay NULL
    size_t af_n;
} HostModel;

// One optimizer step over A micro-batches of this rank (B = 0 possible: a rank's empty share). The driver
// has checked the batches and summed `total` (counted label tokens of the global batch) over the ranks.
typedef struct {
    T5Batch** batches;
    int A;
    long long total;         // counted label tokens of the whole step, every rank: the loss divides by it
    const uint64_t* seeds;   // (A) dropout seed of each micro-batch
    float lr, clip;          // this step's learning rate; max gradient norm (0 = off)
    AdamW opt;
    int optimizer;           // OptimKind: AdamW (opt, lr) or Adafactor (af: this step's values, t = updates done + 1)
    AdafactorStep af;
} StepIn;

typedef struct {
    float loss, grad_norm;   // mean loss over the counted tokens of every rank; the global gradient norm
    int skipped;             // a non-finite loss or norm: the update was not applied
    double host_ms;          // host time until the step's one synchronisation (GPU; 0 on the CPU)
} StepOut;

// the model's state on the host, for checkpoints and exports (rank 0; other ranks take part in gathers).
// The pointers are valid until the next call into the engine. params NULL under LoRA when the engine does
// not hold the fp32 base (the GPU keeps it in floatX): the driver reloads it from --model.
typedef struct {
    const float *params, *m, *v;   // (n) weights and AdamW moments (m, v NULL: none yet)
    size_t n;
    const float *adapter, *am, *av; // (lora_n) under LoRA: the adapter and its moments
    size_t lora_n;
    long long step;
    int opt_kind, af_beta1;  // OptimKind; Adafactor: whether its state holds M
    const float* af;         // (af_n) Adafactor state of the trainable tensors (the model, or the adapter): m, v,
    size_t af_n;             // am, av are NULL then (llmc/optim.h: the slices' states concatenated)
} EngineState;

typedef struct Engine Engine;

// what an engine does for the driver; NULL entries are what an engine does not have
typedef struct {
    const char* binary;       // "train_t5", "train_t5cu": usage text, messages
    const char* card_engine;  // the model card's engine line
    const char* memory_kind;  // what peak_mib measures: "resident", "device"
    EngineKind kind;          // which engine-specific flags it takes
    // processes (MPI, NCCL): rank, size, local_size set; collectives over them (1 process: identities)
    int (*init)(Engine* e, int* argc, char*** argv, const Options* o);
    void (*finalize)(Engine* e);
    int (*max_int)(Engine* e, int x);
    void (*sum_i64)(Engine* e, int64_t* x, int n);
    void (*sum_f64)(Engine* e, double* x, int n);
    // the model: built from host weights (h keeps ownership of its buffers unless the engine takes them
    // and sets them NULL), its rows of the config table, freed
    // solo: a model of this process alone (rank 0 evaluating another model): no communicator, no sharding
    int (*build)(Engine* e, HostModel* h, const Options* o, int solo);
    void (*print_config)(Engine* e, const Options* o);
    void (*free)(void* model);                       // frees e->self (run.h: engine_free)
    void (*reserve)(Engine* e, int B, int Ts, int Tt);  // the widest batch a run makes (NULL: grows as needed)
    void (*step)(Engine* e, const StepIn* in, StepOut* out);
    float (*eval_batch)(Engine* e, const T5Batch* b, int* counted); // mean loss, dropout off
    // generation: begin/end bracket many generate calls (LoRA merged once around them)
    void (*gen_begin)(Engine* e);
    void (*gen_end)(Engine* e);
    int (*generate)(Engine* e, const int* const* src, const int* src_len, int B, const GenConfig* g, int* out,
                    int* out_len, char* err, size_t errlen);
    int (*get_state)(Engine* e, EngineState* s);   // every rank; rank 0 gets the values
    double (*peak_mib)(Engine* e);                  // memory in use so far, MiB (the driver keeps the peak)
    double (*step_flops)(Engine* e, const T5Batch* b); // FLOPs of a micro-batch's real tokens (NULL: no MFU)
    int (*bench)(Engine* e, const Options* o);
    int (*gen_bench)(Engine* e, const Options* o);
    int (*plan_memory)(const Options* o);           // before init: no device needed
    void (*report_end)(Engine* e, const Options* o); // engine counters after the run
    void (*abort)(Engine* e, int code);             // end every rank now (the watchdog's thread: MPI_Abort, ncclCommAbort)
    int async_default;        // --async-checkpoint's default: 1 where background checkpoints have run
} EngineOps;

struct Engine {
    const EngineOps* ops;
    void* self;               // the engine's model
    void* proc;               // the engine's processes (MPI / NCCL)
    int rank, size, local_size;
    T5Config config;          // of the built model
    LoraConfig lora;          // r > 0: the adapter trains
    size_t num_params, num_trainable;
    long long opt_step;       // optimizer updates done (kept by the engine)
    double peak_tflops;       // 0: no MFU
    uint32_t base_crc;        // under LoRA: lora_base_fingerprint of the frozen base
    void* watchdog;           // the driver's Watchdog (llmc/watchdog.h): engines mark their waits for other ranks
    long long run_step;       // the step the run is at (the watchdog's messages)
    long long best_step;      // --keep-best: the run step of the best weights the engine holds (0: the last ones)
    double best_value;        //   and their metric's value
};

// an engine's wait for the other ranks (a gradient all-reduce, the step's synchronisation after NCCL work),
// marked for the stalled-rank watchdog (llmc/watchdog.h; NULL watchdog: one rank, nothing to watch)
static inline void engine_wait_begin(Engine* e, const char* op) {
    if (e->watchdog) watchdog_enter((Watchdog*)e->watchdog, op, e->run_step);
}
static inline void engine_wait_end(Engine* e) {
    if (e->watchdog) watchdog_leave((Watchdog*)e->watchdog);
}

// the program around an engine (llmc/run.h), for a trainer's main:
//   program_begin → while (program_next) { the engine's step; program_after } → program_end
typedef struct Program Program;
Program* program_new(void);
int program_begin(Program* p, int argc, char** argv, const EngineOps* ops); // 0: go on to the steps
int program_next(Program* p, StepIn* in);          // 1: a step to take (in filled)
void program_after(Program* p, const StepOut* out); // log, evaluation, checkpoint, stop signals
int program_end(Program* p);                        // outputs, evaluation; the exit code (frees p)
Engine* program_engine(Program* p);

// Exported by llmc/driver.c (the driver compiled as its own C file for the CUDA program); the C trainer
// includes the driver's headers, whose functions are static, and calls their static names.
// host pieces an engine may use
const char* t5_batch_check(const T5Config* c, const T5Batch* b);
void t5_init_weights(const T5Config* c, float* params, uint64_t seed);
// the rest of step k's inputs once batches, A and total are set: dropout seeds, lr, clip, the optimizer's
// settings and step values (the training loop's own, llmc/run.h step_settings); returns the lr to log
float t5_step_settings(const Options* o, const Engine* e, long long k, float lr, uint64_t* seeds, StepIn* in);

// beam search bookkeeping (llmc/beam.h) for an engine that computes scores elsewhere: each step, the
// caller computes for every input b the K = 2·num_beams best continuations of its beams (flat index
// beam·V + token, value = running score + log p, largest first, ties by index) and passes them here
typedef struct BeamSearch BeamSearch;
BeamSearch* beam_search_create(const T5Config* c, int B, const GenConfig* g);
void beam_search_free(BeamSearch* s);
int beam_search_width(const BeamSearch* s);           // positions per sequence: 1 + max_new_tokens
const int* beam_search_running(const BeamSearch* s);  // (B·nb, width) running sequences, start token first
const float* beam_search_scores(const BeamSearch* s); // (B·nb) their summed log-probabilities
// one step at sequence length cur_len: top (B, K) values and flat indices; parent (B·nb) receives the cache
// row each running beam continues. Returns 1 to go on.
int beam_search_step(BeamSearch* s, const float* top_val, const int* top_idx, int cur_len, int* parent);
void beam_search_result(const BeamSearch* s, int* out, int* out_len);
// a generation request checked against the model (0, or -1 with a message naming the bad input)
int gen_check(const T5Config* c, const int* const* src, const int* src_len, int B, const GenConfig* g, char* err,
              size_t errlen);

#ifdef __cplusplus
}
#endif

#endif // T5_ENGINE_H
