// options.h — the command line of both trainers from ONE table: every flag with its type, range,
// default, help text and the engine it belongs to. options_default, options_parse and options_usage
// all read the table, so train_t5 --help and train_t5cu --help cannot drift (dev/test_cli_flags.sh
// compares them). A flag of one engine is listed by both, marked; the other binary refuses it by name.
#ifndef T5_OPTIONS_H
#define T5_OPTIONS_H

#include <stdio.h>      // defines: fprintf, snprintf
#include <stdlib.h>     // defines: strtoll, strtod, getenv
#include <stddef.h>     // defines: offsetof
#include <string.h>     // defines: strcmp, strchr, strstr
#include <errno.h>      // defines: errno
#include "engine.h"     // defines: Options, EngineKind, AttnKind
#include "hf.h"         // defines: hf_parse_size, hf_parse_ffn, ST_BF16
#include "schedule.h"   // defines: lr_schedule_parse, lr_schedule_name
#include "dataloader.h" // defines: ladder_parse
#include "lora.h"       // defines: LoraFlags, lora_flags_check
#include "prompt.h"     // defines: DEFAULT_PROMPT

typedef enum { OPT_SECTION, OPT_INT, OPT_LL, OPT_FLOAT, OPT_STR, OPT_CHOICE, OPT_SPECIAL, OPT_DOUBLE } OptType;

// a flag: its value lands at `offset` in Options. def: the default as it would be typed (NULL: zero /
// NULL); shown: what --help says the default is when that is not def ("" = say nothing)
typedef struct {
    const char* flag;
    const char* metavar;
    OptType type;
    size_t offset;
    double lo, hi;
    const char* def;
    const char* shown;
    EngineKind engine;
    const char* help;      // '\n' continues on the next line of the help column
    const char* choices;   // OPT_CHOICE: "a|b|c", stored as the index; OPT_SPECIAL: what a value must be
    int (*parse)(const char* v, void* dst); // OPT_SPECIAL: 0, or -1 when v is not valid
} OptSpec;

static int opt_ladder(const char* v, void* dst) { return ladder_parse(v, (int*)dst); }
static int opt_schedule(const char* v, void* dst) { return lr_schedule_parse(v, (LrScheduleKind*)dst); }
static int opt_dtype(const char* v, void* dst) {
    if (strcmp(v, "fp32") != 0 && strcmp(v, "bf16") != 0) return -1;
    ((HfWeightsOptions*)dst)->dtype = strcmp(v, "bf16") == 0 ? ST_BF16 : ST_F32;
    return 0;
}
static int opt_shard(const char* v, void* dst) { return (((HfWeightsOptions*)dst)->max_shard_bytes = hf_parse_size(v)) ? 0 : -1; }
static int opt_ffn(const char* v, void* dst) {
    T5Config t, *d = (T5Config*)dst;
    if (hf_parse_ffn(v, &t)) return -1;
    d->gated = t.gated; d->act = t.act;
    return 0;
}

#define OFS(field) offsetof(Options, field)
#define SECTION(title) { NULL, NULL, OPT_SECTION, 0, 0, 0, NULL, NULL, ENGINE_BOTH, title, NULL, NULL }
#define INT(f, mv, field, lo, hi, def, eng, help) { f, mv, OPT_INT, OFS(field), lo, hi, def, NULL, eng, help, NULL, NULL }
#define INTS(f, mv, field, lo, hi, def, shown, eng, help) { f, mv, OPT_INT, OFS(field), lo, hi, def, shown, eng, help, NULL, NULL }
#define FLT(f, mv, field, lo, hi, def, eng, help) { f, mv, OPT_FLOAT, OFS(field), lo, hi, def, NULL, eng, help, NULL, NULL }
#define FLTS(f, mv, field, lo, hi, def, shown, eng, help) { f, mv, OPT_FLOAT, OFS(field), lo, hi, def, shown, eng, help, NULL, NULL }
#define DBL(f, mv, field, lo, hi, def, shown, eng, help) { f, mv, OPT_DOUBLE, OFS(field), lo, hi, def, shown, eng, help, NULL, NULL }
#define STR(f, mv, field, def, shown, eng, help) { f, mv, OPT_STR, OFS(field), 0, 0, def, shown, eng, help, NULL, NULL }
#define CHOICE(f, field, choices, def, eng, help) { f, choices, OPT_CHOICE, OFS(field), 0, 0, def, NULL, eng, help, choices, NULL }
#define SPECIAL(f, mv, field, fn, expect, def, eng, help) { f, mv, OPT_SPECIAL, OFS(field), 0, 0, def, NULL, eng, help, expect, fn }

#define NEVER 1000000000
static const OptSpec OPTIONS[] = {
    SECTION("model"),
    STR("--model", "SPEC", model, "flan-t5-small", NULL, ENGINE_BOTH,
        "preset name, HF model directory (config.json + *.safetensors), or native\ncheckpoint file. Presets: "
        "t5-small t5-base t5-large t5-3b t5-11b flan-t5-small flan-t5-base\nflan-t5-large flan-t5-xl flan-t5-xxl (a preset is RANDOMLY initialised)"),
    FLT("--dropout", "X", dropout, -1.0, 0.99, "-1", ENGINE_BOTH, "dropout rate, -1 = the model config's"),
    CHOICE("--init", init, "scratch|hf", "scratch", ENGINE_BOTH,
           "a preset's random initialisation: scratch (HF's, but an untied lm_head with std\nd_model^-0.5: the first "
           "loss near ln(vocab)), or hf (transformers' _init_weights exactly)"),
    SECTION("data"),
    STR("--train-file", "PATH", train_file, NULL, "", ENGINE_BOTH, "pre-tokenized training examples (prepro_dialogsum.py / llmc/examples.h)"),
    STR("--val-file", "PATH", val_file, NULL, "", ENGINE_BOTH, "pre-tokenized validation examples: validation loss"),
    INT("--batch-size", "N", batch_size, 1, 65536, "4", ENGINE_BOTH, "examples per micro-batch and rank"),
    INT("--grad-accum", "N", grad_accum, 1, 65536, "1", ENGINE_BOTH, "micro-batches per optimizer step"),
    INT("--shuffle", "0|1", shuffle, 0, 1, "1", ENGINE_BOTH, "shuffle examples each epoch; 0 = file order"),
    INT("--bucket", "0|1", bucket, 0, 1, "1", ENGINE_BOTH, "group examples of similar length into batches"),
    SPECIAL("--shape-ladder", "S,T", ladder, opt_ladder, "S,T: two steps in [0, 4096] (e.g. 64,16; 0,0 = dynamic padding)", "0,0", ENGINE_BOTH,
            "pad each batch's sources / targets up to a multiple of S / T (capped at the\nmaximum lengths): a small "
            "fixed set of shapes; 0,0: to the longest"),
    INT("--max-src-len", "N", max_src_len, 1, 1 << 20, "512", ENGINE_BOTH, "truncate sources to N tokens (a cut example keeps </s> last, as the T5 tokenizer)"),
    INT("--max-tgt-len", "N", max_tgt_len, 1, 1 << 20, "128", ENGINE_BOTH, "truncate targets to N tokens (likewise)"),
    STR("--data-log", "PREFIX", data_log, NULL, "", ENGINE_BOTH, "each rank writes the example ids of every step to PREFIX.rank<r>"),
    SECTION("schedule and optimizer"),
    FLT("--epochs", "X", epochs, 1e-6, 1e6, "1", ENGINE_BOTH, "passes over the training file, used when --steps is 0"),
    INT("--steps", "N", steps, 0, NEVER, "0", ENGINE_BOTH, "optimizer steps in all, 0 = from --epochs"),
    FLT("--lr", "X", lr, 0.0, 10.0, "3e-4", ENGINE_BOTH, "peak learning rate"),
    SPECIAL("--schedule", "S", schedule, opt_schedule, "constant, linear or cosine", "linear", ENGINE_BOTH, "constant | linear | cosine"),
    INT("--warmup", "N", warmup, 0, NEVER, "0", ENGINE_BOTH, "linear warmup steps"),
    INT("--schedule-steps", "N", schedule_steps, 0, NEVER, "0", ENGINE_BOTH, "length of the lr schedule, 0 = the run's steps"),
    FLT("--weight-decay", "X", weight_decay, 0.0, 10.0, "0.01", ENGINE_BOTH, "decoupled weight decay (AdamW; Adafactor: 0 unless given)"),
    INT("--decay-norms", "0|1", decay_norms, 0, 1, "0", ENGINE_BOTH, "also decay RMSNorm weights and relative bias tables (0: HF Trainer's rule)"),
    FLT("--beta1", "X", beta1, 0.0, 0.999999, "0.9", ENGINE_BOTH, "AdamW beta1"),
    FLT("--beta2", "X", beta2, 0.0, 0.999999999, "0.999", ENGINE_BOTH, "AdamW beta2"),
    FLT("--adam-eps", "X", adam_eps, 1e-30, 1.0, "1e-8", ENGINE_BOTH, "AdamW epsilon"),
    FLT("--clip", "X", clip, 0.0, 1e9, "1", ENGINE_BOTH, "max global gradient norm, 0 = off"),
    CHOICE("--optimizer", optimizer, "adamw|adafactor", "adamw", ENGINE_BOTH,
           "adamw: torch.optim.AdamW; adafactor: transformers.optimization.Adafactor\n(llmc/adafactor.h; "
           "docs/adafactor.md), options below, weight decay 0 unless\n--weight-decay is given.\n"
           "train_t5cu: opt-in, never run on a GPU yet, not with --zero 1"),
    INT("--adafactor-relative-step", "0|1", af_relative_step, 0, 1, "1", ENGINE_BOTH,
        "step size min(1e-2, 1/sqrt(t)) (x RMS(p) with the parameter scale): --lr,\n--schedule, --warmup do "
        "not apply; 0: the scheduled --lr"),
    INT("--adafactor-scale-parameter", "0|1", af_scale_parameter, 0, 1, "1", ENGINE_BOTH,
        "the step size scales with max(eps2, RMS(p)) of each tensor"),
    INT("--adafactor-warmup-init", "0|1", af_warmup_init, 0, 1, "0", ENGINE_BOTH,
        "relative step min(1e-6 t, 1/sqrt(t)) (needs --adafactor-relative-step 1)"),
    DBL("--adafactor-beta1", "X", af_beta1, 0.0, 0.999999, "-1", "off", ENGINE_BOTH,
        "first moment of the update (beta1=None when not given: no extra state)"),
    DBL("--adafactor-clip", "X", af_clip, 1e-30, 1e9, "1", NULL, ENGINE_BOTH, "clip_threshold: the update's RMS is clipped to X"),
    DBL("--adafactor-decay", "X", af_decay, -1e9, 0.0, "-0.8", NULL, ENGINE_BOTH, "decay_rate: beta2_t = 1 - t^X"),
    DBL("--adafactor-eps1", "X", af_eps1, 0.0, 1.0, "1e-30", NULL, ENGINE_BOTH, "eps[0]: added to the squared gradient"),
    DBL("--adafactor-eps2", "X", af_eps2, 0.0, 1.0, "1e-3", NULL, ENGINE_BOTH, "eps[1]: the floor of RMS(p) in the parameter scale"),
    INT("--max-skips", "N", max_skips, 1, NEVER, "10", ENGINE_BOTH,
        "stop after N consecutive steps with a non-finite loss or gradient norm"),
    { "--seed", "N", OPT_LL, OFS(seed), 0, 4611686018427387904.0, "42", NULL, ENGINE_BOTH,
      "seed for init, data order and dropout", NULL, NULL },
    SECTION("run directory, evaluation, checkpoints"),
    STR("--out-dir", "DIR", out_dir, NULL, "", ENGINE_BOTH,
        "write DIR/metrics.jsonl, DIR/checkpoints/ and the final model to DIR/model; a\nfresh run refuses a "
        "directory that holds another run's checkpoints"),
    INT("--eval-every", "N", eval_every, 0, NEVER, "0", ENGINE_BOTH, "validation loss every N steps, 0 = at the end only"),
    INT("--eval-batches", "N", eval_batches, 0, NEVER, "0", ENGINE_BOTH, "validation batches per evaluation, 0 = the whole file"),
    INT("--eval-batch-size", "N", eval_batch_size, 0, 65536, "0", ENGINE_BOTH, "validation batch size, 0 = --batch-size"),
    INT("--eval-rouge", "N", eval_rouge, 0, NEVER, "0", ENGINE_BOTH,
        "at each evaluation, also ROUGE of greedy summaries of the first N validation\nexamples (rank 0)"),
    INT("--checkpoint-every", "N", checkpoint_every, 0, NEVER, "0", ENGINE_BOTH,
        "checkpoint every N steps into DIR/checkpoints, 0 = at the end (and on a stop signal)"),
    INT("--keep-checkpoints", "K", keep_checkpoints, 1, 1000000, "3", ENGINE_BOTH, "keep the newest K checkpoints"),
    CHOICE("--keep-best", keep_best, "none|val_loss|rouge1|rouge2|rougeL|rougeLsum", "none", ENGINE_BOTH,
           "keep the best evaluated checkpoint in DIR/best/ (outside the rotation); the\nexported model (or adapter) and "
           "the evaluation after training are then the best\none (HF's load_best_model_at_end). rouge*: needs --eval-rouge"),
    INT("--early-stop", "N", early_stop, 0, NEVER, "0", ENGINE_BOTH,
        "stop after N evaluations without improvement of --keep-best's metric, 0 = never"),
    STR("--resume", "latest|auto|PATH", resume, NULL, "", ENGINE_BOTH,
        "continue the run in --out-dir from its newest valid checkpoint (or PATH; auto:\nlatest when DIR has a checkpoint, "
        "else a fresh run, for requeued jobs):\nweights, optimizer state, "
        "steps run and data position (same global batch,\naccumulation and seed). SIGINT / SIGTERM finish the "
        "current step, write a\ncheckpoint and exit with 130 / 143 / 138 (SIGUSR1: what Slurm's --signal sends)."),
    STR("--save-hf", "DIR", save_hf, NULL, "", ENGINE_BOTH,
        "write the trained model as an HF directory (weights, config, generation config,\ntokenizer files, "
        "model card; default with --out-dir: OUT/model)"),
    SPECIAL("--save-hf-dtype", "fp32|bf16", hf_weights, opt_dtype, "fp32 or bf16", "fp32", ENGINE_BOTH, "the HF directory's weights' dtype"),
    { "--max-shard-size", "SIZE", OPT_SPECIAL, OFS(hf_weights), 0, 0, NULL, "50GB", ENGINE_BOTH,
      "shards above SIZE (\"5GB\", \"500MB\" or bytes), as save_pretrained",
      "a size like 5GB, 500MB, 100KB or a byte count", opt_shard },
    INTS("--async-checkpoint", "0|1", async_checkpoint, 0, 1, "-1", "1 in train_t5; 0 in train_t5cu until a GPU has run it", ENGINE_BOTH,
         "write checkpoints on a background thread from a staged host copy of the state\n(params + optimizer: 12 bytes "
         "per parameter of host memory, 2.97 GB for\nflan-t5-base); 0: the training thread writes them"),
    FLT("--collective-timeout", "SECONDS", collective_timeout, 0.0, 1e7, "300", ENGINE_BOTH,
        "with several ranks: a wait for the other ranks (a collective, the step boundary)\nlonger than this ends the "
        "job naming the rank, step and operation (exit 124); 0 = off"),
    STR("--save-checkpoint", "PATH", save_ckpt, NULL, "", ENGINE_BOTH, "write a native checkpoint (params + optimizer state)"),
    SECTION("summaries and scores (ROUGE as rouge_score, BLEU as sacrebleu)"),
    STR("--eval-split", "PREFIX", eval_split, NULL, "", ENGINE_BOTH,
        "summarize PREFIX.bin (prepro output, e.g. out/dialogsum/test) and score against\nPREFIX_refs.jsonl; "
        "after training when --train-file is given"),
    STR("--eval-out", "DIR", eval_out, NULL, "OUT/eval, or out/eval", ENGINE_BOTH,
        "generations.jsonl + scores.json (+ comparison.txt/.md)"),
    STR("--baseline-model", "SPEC", baseline_model, NULL, "", ENGINE_BOTH,
        "also summarize with SPEC (the original model): the side-by-side comparison"),
    STR("--compare-model", "SPEC", compare_model, NULL, "", ENGINE_BOTH,
        "also summarize with SPEC (e.g. the full fine-tune beside a LoRA --model): a\nthird model in the "
        "comparison, generations_compare.jsonl + scores_compare.json"),
    STR("--compare-lora-adapter", "DIR", compare_lora_adapter, NULL, "", ENGINE_BOTH,
        "a peft adapter applied to --compare-model, as --lora-adapter to --model"),
    INT("--compare-examples", "N", compare_examples, 0, 1000000, "5", ENGINE_BOTH, "dialogues shown side by side in the comparison"),
    INT("--eval-limit", "N", eval_limit, 0, NEVER, "0", ENGINE_BOTH, "only the first N examples of the split, 0 = all"),
    STR("--summarize", "FILE|-", summarize, NULL, "", ENGINE_BOTH, "print the summary of the dialogue in FILE (- = stdin)"),
    STR("--tokenizer", "PATH", tokenizer, NULL, "the model directory's spiece.model, else " T5_DEFAULT_TOKENIZER, ENGINE_BOTH,
        "T5's spiece.model; the HF directory written after training gets a copy"),
    STR("--prompt", "TEXT", prompt, DEFAULT_PROMPT, "the data's or the model's, else prepro_dialogsum.py's FLAN prompt", ENGINE_BOTH,
        "source template with {dialogue}; not given: the one the training data was\nmade with (meta.json beside "
        "--train-file), else the one --lora-adapter's or\n--model's directory records (prompt.json)"),
    INT("--num-beams", "N", num_beams, 1, 64, "1", ENGINE_BOTH, "1 = greedy search"),
    INT("--max-new-tokens", "N", max_new_tokens, 1, 4096, "128", ENGINE_BOTH, "tokens generated per summary, eos included"),
    FLT("--length-penalty", "X", length_penalty, -100.0, 100.0, "1", ENGINE_BOTH, "beam score / length^X"),
    INT("--early-stopping", "0|1", early_stopping, 0, 1, "0", ENGINE_BOTH, "beam: stop an input at num_beams finished hypotheses"),
    INT("--no-repeat-ngram", "N", no_repeat_ngram, 0, 64, "0", ENGINE_BOTH, "ban repeated N-grams, 0 = off"),
    INT("--min-new-tokens", "N", min_new_tokens, 0, 4096, "0", ENGINE_BOTH, "eos banned until N tokens were generated, 0 = off;\nat most --max-new-tokens"),
    FLT("--repetition-penalty", "X", repetition_penalty, 0.0, 1e6, "1", ENGINE_BOTH,
        "scores of tokens already generated: / X (positive) or * X (negative), as\ntransformers; 1 = off, > 0"),
    INT("--gen-batch-size", "N", gen_batch_size, 1, 4096, "8", ENGINE_BOTH, "inputs per generation batch"),
    FLT("--eos-bias", "X", eos_bias, -1e9, 1e9, "0", ENGINE_BOTH, "added to the eos logit (tests, benchmarks)"),
    SECTION("LoRA (peft's math and files; llmc/lora.h)"),
    INTS("--lora-r", "N", lora_r, 0, 65536, "-1", "0", ENGINE_BOTH, "adapter rank; 0 = full fine-tuning"),
    FLTS("--lora-alpha", "X", lora_alpha, 1e-6, 1e6, "-1", "8, peft's", ENGINE_BOTH, "scale alpha/r"),
    FLTS("--lora-dropout", "X", lora_dropout, 0.0, 0.99, "-1", "0", ENGINE_BOTH, "dropout on each adapter's input"),
    STR("--lora-targets", "LIST", lora_targets, NULL, "q,v", ENGINE_BOTH,
        "peft's T5 module names: q,k,v,o,wi,wi_0,wi_1,wo, or all-linear; encoder and\ndecoder self- and "
        "cross-attention alike"),
    STR("--lora-adapter", "DIR", lora_adapter, NULL, "", ENGINE_BOTH,
        "start from a peft adapter directory (its r, alpha, dropout and targets apply;\nthe flags may repeat "
        "them, not contradict them); also for --eval-split / --summarize"),
    STR("--save-lora", "DIR", save_lora, NULL, "", ENGINE_BOTH,
        "write the adapter as peft does (default with --out-dir: OUT/adapter; OUT/model\nis not written under LoRA)"),
    STR("--merge-lora", "DIR", merge_lora, NULL, "", ENGINE_BOTH,
        "write base + adapter merged (peft's merge_and_unload) as an HF directory;\n--save-hf DIR does the same under LoRA"),
    SECTION("explicit dimensions over a preset (0 = the preset's)"),
    INT("--vocab-size", "N", dims.vocab_size, 2, 1 << 24, NULL, ENGINE_BOTH, "embedding rows"),
    INT("--d-model", "N", dims.d_model, 1, 65536, NULL, ENGINE_BOTH, "model width"),
    INT("--d-kv", "N", dims.d_kv, 1, 4096, NULL, ENGINE_BOTH, "width of one attention head"),
    INT("--num-heads", "N", dims.num_heads, 1, 1024, NULL, ENGINE_BOTH, "attention heads"),
    INT("--d-ff", "N", dims.d_ff, 1, 1 << 20, NULL, ENGINE_BOTH, "FFN width"),
    INT("--num-layers", "N", dims.num_layers, 1, 256, NULL, ENGINE_BOTH, "encoder (and decoder) blocks"),
    INT("--num-decoder-layers", "N", dims.num_decoder_layers, 1, 256, NULL, ENGINE_BOTH, "decoder blocks"),
    INT("--num-buckets", "N", dims.num_buckets, 4, 4096, NULL, ENGINE_BOTH, "relative position buckets"),
    INT("--max-distance", "N", dims.max_distance, 2, 1 << 20, NULL, ENGINE_BOTH, "relative position max distance"),
    SPECIAL("--ffn", "ACT", dims, opt_ffn, "relu, gelu, gelu_new, silu, gated-gelu, gated-relu or gated-silu", NULL, ENGINE_BOTH,
            "relu|gelu|gelu_new|silu|gated-gelu|gated-relu|gated-silu (T5Config's feed_forward_proj)"),
    INTS("--tied", "0|1", dims.tied, 0, 1, "-1", "", ENGINE_BOTH,
         "lm_head = embedding; also sets the output scaling, as transformers 4 did"),
    INTS("--scale-output", "0|1", dims.scale_out, 0, 1, "-1", "", ENGINE_BOTH,
         "decoder output * d_model^-0.5 before the head (HF scale_decoder_outputs)"),
    SECTION("other"),
    INT("--dry-run", "0|1", dry_run, 0, 1, "0", ENGINE_BOTH,
        "everything up to the engine and stop: options, model and data loaded on the host,\nresume, run "
        "directory checks, plans; no device is touched (CI runs train_t5cu so)"),
    INT("--bench", "N", bench, 0, 1000000, "0", ENGINE_BOTH,
        "time N training passes on synthetic batches and exit (CPU: forward + backward of\none "
        "full-length batch; GPU: whole steps on DialogSum-shaped batches, MFU)"),
    INT("--bench-src-len", "N", bench_src_len, 1, 1 << 16, "256", ENGINE_CPU, "source length of the CPU bench batch"),
    INT("--bench-tgt-len", "N", bench_tgt_len, 1, 1 << 16, "64", ENGINE_CPU, "target length of the CPU bench batch"),
    SECTION("GPU engine (train_t5cu)"),
    INT("--bench-warmup", "N", bench_warmup, 0, 1000000, "3", ENGINE_GPU, "untimed steps before the timed ones"),
    INT("--gen-bench", "N", gen_bench, 0, 1000000, "0", ENGINE_GPU,
        "time generation of N synthetic DialogSum-shaped inputs (eos suppressed) and exit"),
    FLT("--peak-tflops", "X", peak_tflops, 0.0, 1e6, "0", ENGINE_GPU, "bf16 dense peak for MFU, 0 = from the card's name"),
    INT("--zero", "0|1", zero, 0, 1, "0", ENGINE_GPU, "ZeRO-1: shard fp32 master weights and AdamW moments over the ranks"),
    INT("--recompute", "0|1", recompute, 0, 1, "0", ENGINE_GPU,
        "recompute block internals in the backward pass (less memory, ~1/3 more compute)"),
    CHOICE("--attention", attention, "gemm|flash|auto|cudnn", "auto", ENGINE_GPU,
           "flash: fused kernels (d_kv 64 or 128); gemm: cuBLASLt products and a softmax\nkernel; cudnn: "
           "cuDNN's fused SDPA (USE_CUDNN=1 builds); auto: flash where d_kv\nallows, else gemm"),
    INT("--cuda-graphs", "0|1", cuda_graphs, 0, 1, "0", ENGINE_GPU,
        "replay each training step as CUDA graphs captured once per shape; bit-identical\nto eager launches. "
        "Never run on a GPU yet: off by default"),
    CHOICE("--matmul-tune", matmul_tune, "0|1|class", "0", ENGINE_GPU,
           "cuBLASLt algorithm of each product: 0 the heuristic's first per product; 1 the\nfastest candidate "
           "per shape class, timed once; class the heuristic's first per\nshape class (was T5_MATMUL_TUNE)"),
    INT("--matmul-plans", "0|1", matmul_plans, 0, 1, "0", ENGINE_GPU,
        "keep each product's cuBLASLt plan per exact shape (never run on a GPU yet;\nwas T5_MATMUL_PLANS)"),
    CHOICE("--profile", profile, "phases|ops", "phases", ENGINE_GPU,
           "with --bench: GPU time per phase, or per operation too (was T5_PROFILE=ops)"),
    STR("--nccl-init-dir", "DIR", nccl_init_dir, NULL, "", ENGINE_GPU,
        "bootstrap without MPI: ranks from RANK/WORLD_SIZE/LOCAL_RANK (or SLURM_*), the\nNCCL id through DIR "
        "on a shared filesystem (fresh per run)"),
    FLT("--plan-memory", "GIB", plan_memory, 0.0, 1e6, "0", ENGINE_GPU,
        "print the memory plan of every preset for a GIB GiB device and exit (no GPU needed)"),
    INT("--plan-ranks", "N", plan_ranks, 1, 1 << 20, "8", ENGINE_GPU, "ranks for the ZeRO-1 column of --plan-memory"),
};
#define NUM_OPTIONS ((int)(sizeof(OPTIONS) / sizeof(OPTIONS[0])))

static const char* const ENGINE_TAGS[] = { "", " [train_t5 only]", " [train_t5cu only]" };

// index of `v` in "a|b|c", or -1
static int opt_choice_index(const char* choices, const char* v) {
    int k = 0;
    size_t n = strlen(v);
    for (const char* p = choices; ; k++) {
        const char* bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return k;
        if (!bar) return -1;
        p = bar + 1;
    }
}

// one value into o; `checked` = 0 for the table's own defaults (which may lie outside a flag's range,
// e.g. -1 = "not given"). 0, or -1 after a message
static int opt_set(const OptSpec* s, const char* v, Options* o, int checked) {
    void* dst = (char*)o + s->offset;
    char* end = NULL;
    errno = 0;
    switch (s->type) {
        case OPT_INT: case OPT_LL: {
            long long x = strtoll(v, &end, 10);
            if (errno || *end || end == v || (checked && (x < (long long)s->lo || x > (long long)s->hi))) {
                fprintf(stderr, "error: %s needs an integer in [%lld, %lld], got '%s'\n", s->flag, (long long)s->lo, (long long)s->hi, v);
                return -1;
            }
            if (s->type == OPT_INT) *(int*)dst = (int)x;
            else *(long long*)dst = x;
            return 0;
        }
        case OPT_FLOAT: case OPT_DOUBLE: {
            double x = strtod(v, &end);
            if (errno || *end || end == v || (checked && !(x >= s->lo && x <= s->hi))) {
                fprintf(stderr, "error: %s needs a number in [%g, %g], got '%s'\n", s->flag, s->lo, s->hi, v);
                return -1;
            }
            if (s->type == OPT_FLOAT) *(float*)dst = (float)x;
            else *(double*)dst = x;
            return 0;
        }
        case OPT_STR: *(const char**)dst = v; return 0;
        case OPT_CHOICE: {
            int k = opt_choice_index(s->choices, v);
            if (k < 0) { fprintf(stderr, "error: %s must be one of %s, got '%s'\n", s->flag, s->choices, v); return -1; }
            *(int*)dst = k;
            return 0;
        }
        case OPT_SPECIAL:
            if (s->parse(v, dst) == 0) return 0;
            fprintf(stderr, "error: %s must be %s, got '%s'\n", s->flag, s->choices, v);
            return -1;
        default: return -1;
    }
}

static Options options_default(void) {
    Options o;
    memset(&o, 0, sizeof(o));
    o.dims.act = ACT_RELU; // (overwritten below: -1 = not given)
    for (int i = 0; i < NUM_OPTIONS; i++)
        if (OPTIONS[i].type != OPT_SECTION && OPTIONS[i].def) opt_set(&OPTIONS[i], OPTIONS[i].def, &o, 0);
    o.dims.gated = -1; o.dims.act = (T5Act)-1; // --ffn not given
    o.attention = ATTN_AUTO;
    return o;
}

static const OptSpec* opt_find(const char* flag) {
    for (int i = 0; i < NUM_OPTIONS; i++)
        if (OPTIONS[i].type != OPT_SECTION && strcmp(OPTIONS[i].flag, flag) == 0) return &OPTIONS[i];
    return NULL;
}

// the help text of a flag, its continuation lines under the help column
static void opt_print_help(FILE* f, const OptSpec* s) {
    for (const char* p = s->help; ; ) {
        const char* nl = strchr(p, '\n');
        fprintf(f, "%.*s", nl ? (int)(nl - p) : (int)strlen(p), p);
        if (!nl) break;
        fprintf(f, "\n%29s", "");
        p = nl + 1;
    }
}

// the usage text: every flag of the table, grouped, with its default; flags of one engine are marked.
// The same text from both binaries but for the first line (dev/test_cli_flags.sh checks so).
static void options_usage(FILE* f, const char* binary) {
    fprintf(f, "usage: %s [options]      (mpirun -np N %s [options]: one process per rank)\n", binary, binary);
    for (int i = 0; i < NUM_OPTIONS; i++) {
        const OptSpec* s = &OPTIONS[i];
        if (s->type == OPT_SECTION) { fprintf(f, " %s\n", s->help); continue; }
        char head[64];
        snprintf(head, sizeof(head), "%s %s", s->flag, s->metavar);
        fprintf(f, "  %-26s ", head);
        opt_print_help(f, s);
        const char* d = s->shown ? s->shown : s->def;
        if (d && d[0] && s->type == OPT_STR && strchr(d, '\n')) d = NULL; // a multi-line default is named in `shown`
        if (d && d[0]) fprintf(f, " (default %s)", d);
        fprintf(f, "%s\n", ENGINE_TAGS[s->engine]);
    }
}

// transformers' Adafactor(...) arguments from the flags: lr only without relative steps (the scheduled lr is
// what it gets each step); weight decay 0, Adafactor's default, unless --weight-decay is given
static AdafactorConfig adafactor_config_of(const Options* o) {
    AdafactorConfig c = adafactor_defaults();
    c.relative_step = o->af_relative_step; c.scale_parameter = o->af_scale_parameter; c.warmup_init = o->af_warmup_init;
    c.has_lr = o->lr_given || !o->af_relative_step;
    c.lr = o->lr;
    c.has_beta1 = o->af_beta1 >= 0.0;
    c.beta1 = c.has_beta1 ? o->af_beta1 : 0.0;
    c.clip_threshold = o->af_clip; c.decay_rate = o->af_decay; c.eps1 = o->af_eps1; c.eps2 = o->af_eps2;
    c.weight_decay = o->wd_given ? o->weight_decay : 0.0;
    return c;
}

// --optimizer adafactor: the combinations transformers refuses (adafactor_check: --lr with relative steps,
// warmup init without them) and values its formulas cannot take
static const char* options_check_adafactor(const Options* o, char* msg, size_t n) {
    AdafactorConfig c = adafactor_config_of(o);
    char err[512];
    if (adafactor_check(&c, err, sizeof(err))) {
        snprintf(msg, n, "--optimizer %s [--lr %s, --adafactor-relative-step %d, --adafactor-warmup-init %d]", err,
                 o->lr_given ? "given" : "not given", o->af_relative_step, o->af_warmup_init);
        return msg;
    }
    return NULL;
}

// combinations the flags alone cannot rule out
static const char* options_check(const Options* o) {
    static char msg[1100];
    if (o->resume && !o->out_dir) return "--resume needs --out-dir (the run directory to continue)";
    if (o->resume && !o->train_file) return "--resume needs --train-file";
    if ((o->eval_every || o->eval_batches) && !o->val_file) return "--eval-every / --eval-batches need --val-file";
    if (o->checkpoint_every && !o->out_dir) return "--checkpoint-every needs --out-dir";
    if (o->eval_rouge && !o->val_file) return "--eval-rouge needs --val-file (and its _refs.jsonl beside it)";
    if (o->keep_best && (!o->val_file || !o->out_dir)) return "--keep-best needs --val-file (what is evaluated) and --out-dir (where the best is kept)";
    if (o->keep_best > 1 && !o->eval_rouge) return "--keep-best rouge*: needs --eval-rouge N (ROUGE on the first N validation examples)";
    if (o->early_stop && !o->keep_best) return "--early-stop needs --keep-best (the metric that must improve)";
    if (o->baseline_model && !o->eval_split) return "--baseline-model needs --eval-split";
    if (o->compare_lora_adapter && !o->compare_model) return "--compare-lora-adapter needs --compare-model (the base it adapts)";
    if (o->compare_model && !o->eval_split) return "--compare-model needs --eval-split (it adds a model to the comparison report)";
    if (!strstr(o->prompt, "{dialogue}")) return "--prompt must contain {dialogue}";
    if (!(o->repetition_penalty > 0.0f)) return "--repetition-penalty must be > 0, as transformers requires (1 = off)";
    if (o->min_new_tokens > o->max_new_tokens) {
        snprintf(msg, sizeof(msg), "--min-new-tokens %d exceeds --max-new-tokens %d: no summary could end with eos, "
                 "which --min-new-tokens %d already says", o->min_new_tokens, o->max_new_tokens, o->max_new_tokens);
        return msg;
    }
    if (o->optimizer == OPTIM_ADAFACTOR) {
        const char* bad = options_check_adafactor(o, msg, sizeof(msg));
        if (bad) return bad;
    }
    LoraFlags f = { o->lora_r, o->lora_alpha, o->lora_dropout, o->lora_targets, o->lora_adapter };
    return lora_flags_check(&f, o->resume != NULL, o->save_lora || o->merge_lora, msg, sizeof(msg));
}

// whether the command line asks for anything
static int options_has_work(const Options* o) {
    return o->train_file || o->eval_split || o->summarize || o->bench || o->gen_bench || o->save_hf || o->save_ckpt ||
           o->save_lora || o->merge_lora || o->plan_memory > 0.0f;
}

// the settings that were environment variables (one release: still read, with a note, when their flag
// was not given); given: which table entries the command line set
static int options_from_env(Options* o, const unsigned char* given, EngineKind engine) {
    static const char* const VARS[][2] = { { "T5_MATMUL_TUNE", "--matmul-tune" }, { "T5_MATMUL_PLANS", "--matmul-plans" },
                                           { "T5_PROFILE", "--profile" } };
    for (int k = 0; k < 3; k++) {
        const char* v = getenv(VARS[k][0]);
        const OptSpec* s = opt_find(VARS[k][1]);
        if (!v || engine != ENGINE_GPU || given[s - OPTIONS]) continue;
        fprintf(stderr, "note: %s is read for one more release; use %s %s\n", VARS[k][0], VARS[k][1], v);
        if (opt_set(s, v, o, 1)) return -1;
    }
    return 0;
}

// argv → o (o holds the defaults); 0, 1 after --help (printed), or -1 after a message
static int options_parse(int argc, char** argv, Options* o, EngineKind engine, const char* binary) {
    unsigned char given[NUM_OPTIONS];
    memset(given, 0, sizeof(given));
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) { options_usage(stdout, binary); return 1; }
        const OptSpec* s = opt_find(f);
        if (!s) { fprintf(stderr, "error: unknown option %s (see --help)\n", f); return -1; }
        if (s->engine != ENGINE_BOTH && s->engine != engine) {
            fprintf(stderr, "error: %s belongs to %s; %s does not take it (see --help)\n", f,
                    s->engine == ENGINE_GPU ? "the GPU trainer, train_t5cu" : "the CPU trainer, train_t5", binary);
            return -1;
        }
        if (i + 1 >= argc) { fprintf(stderr, "error: %s needs a value (see --help)\n", f); return -1; }
        if (opt_set(s, argv[++i], o, 1)) return -1;
        given[s - OPTIONS] = 1;
    }
    if (options_from_env(o, given, engine)) return -1;
    o->lr_given = given[opt_find("--lr") - OPTIONS];
    o->wd_given = given[opt_find("--weight-decay") - OPTIONS];
    o->prompt_given = given[opt_find("--prompt") - OPTIONS];
    o->sched_given = given[opt_find("--schedule") - OPTIONS] || given[opt_find("--warmup") - OPTIONS] ||
                     given[opt_find("--schedule-steps") - OPTIONS];
    const char* bad = options_check(o);
    if (bad) { fprintf(stderr, "error: %s\n", bad); return -1; }
    return 0;
}

#endif // T5_OPTIONS_H
