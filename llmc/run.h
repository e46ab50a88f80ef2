// run.h — the one host-side driver of both trainers. Everything a run does besides the engine's
// arithmetic lives here, once: options (llmc/options.h), the model on the host (llmc/model.h), the data,
// the run directory (metrics, checkpoints, lock), the lr schedule and the step count, the evaluation and
// checkpoint cadence, stop signals, non-finite-step skips, evaluation with the comparison report, and the
// HF / adapter outputs. It talks to an engine only through llmc/engine.h (EngineOps), so train_t5 runs
// all of it on every commit, and train_t5cu runs it on the host with --dry-run in CI.
//
// A trainer's main reads:  run_begin → while (run_next) { engine step; run_after } → run_end.
#ifndef T5_RUN_H
#define T5_RUN_H

#include <stdio.h>       // defines: printf, fprintf, FILE
#include <stdlib.h>      // defines: free, qsort
#include <string.h>      // defines: memset, strcmp, strstr
#include <math.h>        // defines: isfinite, ceil, NAN
#include <signal.h>      // defines: signal, sig_atomic_t, SIGINT, SIGTERM, SIGUSR1, SIGHUP, SIGPIPE
#include "utils.h"       // defines: mallocCheck, callocCheck, now_ms, peak_rss_mib
#include "engine.h"      // defines: Engine, EngineOps, Options, HostModel, StepIn, StepOut, GenConfig
#include "options.h"     // defines: options_default, options_parse, options_usage, options_has_work
#include "model.h"       // defines: model_setup, load_adapted_model, host_model_free, model_source, params_crc
#include "evalset.h"     // defines: EvalSet, EvalResult, EvalAccum, evalset_open, eval_accum_*, write_generations
#include "report.h"      // defines: ReportRow, write_scores_json, write_comparison_files, print_scores_*
#include "hub.h"         // defines: HubSave, hub_save_dir, hub_write_card
#include "rundir.h"      // defines: ckpt_path, ckpt_prune, ckpt_remove_stale, metrics_start, metrics_end, rundir_lock
#include "dataloader.h"  // defines: DataLoader, BatchBuf, dataloader_*, batch_check, ladder_len
#include "schedule.h"    // defines: LrSchedule, lr_multiplier, lr_schedule_name
#include "rng.h"         // defines: mix64, Rng
#include "lora.h"        // defines: lora_save_dir, lora_merge, lora_ckpt_save, lora_describe, lora_print_trainable
#include "../tokenizer/spm.h" // defines: SpmModel, spm_load, spm_encode, spm_free
#include "async_save.h"  // defines: AsyncSaver, async_save_start/_wait/_poll, CkptJob, ckpt_job_stage
#include "watchdog.h"    // defines: Watchdog, watchdog_start/_stop/_enter/_leave/_announce
#include "prompt.h"      // defines: DEFAULT_PROMPT, PROMPT_FILE, prompt_read, prompt_data_meta, prompt_write

// ----------------------------------------------------------------------------
// the engine's processes: every rank takes the same branch (1 process: the values as they are)

// (each a wait for the other ranks, marked for the stalled-rank watchdog)
static int all_max(Engine* e, int x) {
    if (!e->ops->max_int) return x;
    engine_wait_begin(e, "an agreement of the ranks (MPI/NCCL max)");
    x = e->ops->max_int(e, x);
    engine_wait_end(e);
    return x;
}
static void all_sum_i64(Engine* e, int64_t* x, int n) {
    if (!e->ops->sum_i64) return;
    engine_wait_begin(e, "a sum over the ranks (counts)");
    e->ops->sum_i64(e, x, n);
    engine_wait_end(e);
}
static void all_sum_f64(Engine* e, double* x, int n) {
    if (!e->ops->sum_f64) return;
    engine_wait_begin(e, "a sum over the ranks (losses)");
    e->ops->sum_f64(e, x, n);
    engine_wait_end(e);
}
// this rank goes on to wait for the others while rank 0 does something alone (evaluation, a synchronous
// checkpoint): the watchdog's bound grows by `seconds` for that wait
static void all_wait_for_rank0(Engine* e, const char* phase, double seconds) {
    if (e->watchdog && e->rank != 0) watchdog_announce((Watchdog*)e->watchdog, phase, seconds);
}
#define RANK0_PHASE_S 3600.0 // the bound of rank 0's evaluation or synchronous checkpoint write
static int is_rank0(const Engine* e) { return e->rank == 0; }

static void engine_free(Engine* e) {
    if (e->self) e->ops->free(e->self);
    e->self = NULL;
}

// what the driver knows of a model before (or without) building it
static void engine_describe(Engine* e, const HostModel* h) {
    T5Layout L;
    t5_layout(&h->config, &L);
    e->config = h->config;
    e->lora = h->lora;
    e->num_params = L.total;
    e->num_trainable = h->lora.r ? host_lora_size(h) : L.total;
    e->opt_step = h->step;
    e->base_crc = h->base_crc;
}

// ----------------------------------------------------------------------------
// generation settings and the tokenizer

static GenConfig gen_config_of(const Options* o) {
    GenConfig g = gen_config_default();
    g.max_new_tokens = o->max_new_tokens; g.num_beams = o->num_beams; g.no_repeat_ngram_size = o->no_repeat_ngram;
    g.length_penalty = o->length_penalty; g.early_stopping = o->early_stopping; g.eos_bias = o->eos_bias;
    g.min_new_tokens = o->min_new_tokens; g.repetition_penalty = o->repetition_penalty;
    return g;
}

typedef struct {
    GenConfig gen;
    int batch_size;   // inputs per generate call
    int max_src;      // sources longer than this keep their first max_src - 1 tokens and </s>
    int progress;     // a progress bar on stderr
} EvalConfig;

static EvalConfig eval_config(const Options* o, int progress) {
    EvalConfig c = { gen_config_of(o), o->gen_batch_size, o->max_src_len, progress };
    return c;
}

// --tokenizer, or the model directory's spiece.model, or the default (hf_tokenizer_path)
static const char* tokenizer_path(const Options* o, char* buf, size_t n) {
    return hf_tokenizer_path(buf, n, o->tokenizer, o->model, o->baseline_model);
}

static int load_tokenizer(SpmModel* tok, const Options* o) {
    char err[1024], path[4400];
    if (spm_load(tok, tokenizer_path(o, path, sizeof(path)), err, sizeof(err)) == 0) return 0;
    fprintf(stderr, "error: tokenizer: %s\n", err);
    return -1;
}

// generates a summary for every example of s and scores them; 0, or -1 with a message
static int eval_generate(Engine* e, const SpmModel* tok, const EvalSet* s, const EvalConfig* c, const char* label,
                         EvalResult* r, char* err, size_t errlen) {
    EvalAccum acc;
    eval_accum_init(&acc, s->n);
    int Bmax = c->batch_size, T = c->gen.max_new_tokens;
    int* buf = (int*)mallocCheck((size_t)Bmax * c->max_src * sizeof(int));
    int* out = (int*)mallocCheck((size_t)Bmax * T * sizeof(int));
    int** rows = (int**)mallocCheck((size_t)Bmax * sizeof(int*));
    int* lens = (int*)mallocCheck((size_t)Bmax * 2 * sizeof(int));
    int* out_len = lens + Bmax;
    double t0 = now_ms();
    int status = 0;
    if (e->ops->gen_begin) e->ops->gen_begin(e); // LoRA merged once for the whole split
    for (int64_t lo = 0; lo < s->n && status == 0; lo += Bmax) {
        int B = (int)(s->n - lo < Bmax ? s->n - lo : Bmax);
        eval_sources(s, lo, B, c->max_src, e->config.eos_id, buf, rows, lens);
        status = e->ops->generate(e, (const int* const*)rows, lens, B, &c->gen, out, out_len, err, errlen);
        for (int b = 0; b < B && status == 0; b++) status = eval_accum_add(&acc, s, tok, lo + b, out + (size_t)b * T, out_len[b], err, errlen);
        if (c->progress) progress_bar(label, acc.r.n, s->n, (now_ms() - t0) / 1e3);
    }
    if (e->ops->gen_end) e->ops->gen_end(e);
    eval_accum_finish(&acc, (now_ms() - t0) / 1e3);
    *r = acc.r;
    free(buf); free(out); free(rows); free(lens);
    return status;
}

// prompt(dialogue) → ids + </s> (the last max_src tokens dropped past the limit, </s> kept)
static int encode_prompt(const SpmModel* tok, const char* prompt, const char* text, int max_src, int eos,
                         int** ids, int* n, char* err, size_t errlen) {
    const char* at = strstr(prompt, "{dialogue}");
    if (!at) { snprintf(err, errlen, "--prompt must contain {dialogue}"); return -1; }
    size_t len = (size_t)(at - prompt) + strlen(text) + strlen(at + 10);
    char* full = (char*)mallocCheck(len + 1);
    snprintf(full, len + 1, "%.*s%s%s", (int)(at - prompt), prompt, text, at + 10);
    SpmEncoding enc;
    memset(&enc, 0, sizeof(enc));
    int rc = spm_encode(tok, full, len, &enc, err, errlen);
    free(full);
    if (rc == 0) {
        *n = (int)(enc.n + 1 < (size_t)max_src ? enc.n + 1 : (size_t)max_src);
        *ids = (int*)mallocCheck((size_t)*n * sizeof(int));
        memcpy(*ids, enc.ids, (size_t)(*n - 1) * sizeof(int));
        (*ids)[*n - 1] = eos;
    }
    spm_encoding_free(&enc);
    return rc;
}

static char* summarize_text(Engine* e, const SpmModel* tok, const char* prompt, const char* text, const EvalConfig* c,
                            char* err, size_t errlen) {
    int *ids, n, out_len;
    if (encode_prompt(tok, prompt, text, c->max_src, e->config.eos_id, &ids, &n, err, errlen)) return NULL;
    int* out = (int*)mallocCheck((size_t)c->gen.max_new_tokens * sizeof(int));
    const int* rows[1] = { ids };
    char* s = NULL;
    if (e->ops->gen_begin) e->ops->gen_begin(e);
    if (e->ops->generate(e, rows, &n, 1, &c->gen, out, &out_len, err, errlen) == 0) s = decode_summary(tok, out, out_len, err, errlen);
    if (e->ops->gen_end) e->ops->gen_end(e);
    free(ids); free(out);
    return s;
}

// ----------------------------------------------------------------------------
// the model's state on the host: checkpoints and exports. Every rank calls (gathers); rank 0 writes.

// the fp32 base + adapter merged (peft's merge_and_unload), into a new buffer (NULL after a message). The
// base is the engine's, or --model read again (an engine that keeps it in floatX): its fingerprint must
// still be the run's.
static float* merged_params(Engine* e, const Options* o, const EngineState* st) {
    T5Layout base;
    LoraLayout L;
    t5_layout(&e->config, &base);
    lora_layout(&e->lora, &base, e->config.gated, &L);
    float* p = (float*)mallocCheck(base.total * sizeof(float));
    if (st->params) memcpy(p, st->params, base.total * sizeof(float));
    else {
        HostModel h;
        if (load_host_model(o, o->model, &h)) { free(p); return NULL; }
        int same = lora_base_fingerprint(h.params, host_model_size(&h)) == e->base_crc;
        if (same) memcpy(p, h.params, base.total * sizeof(float));
        host_model_free(&h);
        if (!same) { fprintf(stderr, "error: --model %s: its weights changed on disk since the run started\n", o->model); free(p); return NULL; }
    }
    lora_merge(p, &base, &L, st->adapter, lora_scale(&e->lora));
    return p;
}

// the optimizer state of an engine's state, as a checkpoint takes it (the adapter's under LoRA)
static CkptOpt engine_state_opt(const EngineState* st, int lora) {
    CkptOpt c = { st->opt_kind, st->af_beta1, lora ? st->am : st->m, lora ? st->av : st->v, st->af, (int64_t)st->af_n };
    return c;
}

// writes PATH (ts: the run's position; NULL for --save-checkpoint): the full model and its optimizer state
// (AdamW's or Adafactor's), or under LoRA the adapter checkpoint (llmc/lora.h: the adapter, its optimizer
// state, the base's fingerprint). phase (non-NULL): the other ranks then wait for rank 0's write, announced
// to the watchdog after get_state, whose gather (ZeRO-1 on the GPU) is a wait of its own and ends an announcement
static int save_checkpoint(Engine* e, const char* path, const CkptTrainState* ts, const char* phase) {
    char err[1024];
    EngineState st;
    int bad = e->ops->get_state(e, &st) != 0;
    if (phase) all_wait_for_rank0(e, phase, RANK0_PHASE_S);
    if (!bad && is_rank0(e)) {
        CkptOpt opt = engine_state_opt(&st, e->lora.r > 0);
        int rc = e->lora.r ? lora_ckpt_save_opt(path, &e->lora, st.adapter, &opt, (int64_t)st.lora_n, st.step,
                                                (int64_t)e->num_params, e->base_crc, (const int64_t*)ts, err, sizeof(err))
                           : ckpt_save_opt(path, &e->config, st.params, &opt, (int64_t)st.n, st.step, ts, err, sizeof(err));
        if (rc) { fprintf(stderr, "error: %s\n", err); bad = 1; }
    }
    return all_max(e, bad) ? -1 : 0;
}

// ----------------------------------------------------------------------------
// a training run

// set by SIGINT / SIGTERM / SIGUSR1 / SIGHUP, read between steps: the one piece of global state, as signal
// handlers can reach nothing else
static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL); // a second signal stops the program at once
}

typedef struct { float loss, grad_norm, lr; long long tokens; double flops, host_ms; int skipped; const char* error; } StepResult;

// --keep-best: the best evaluation so far, the checkpoint of its weights in DIR/best/ (llmc/run.h best_*)
typedef enum { KEEP_NONE, KEEP_VAL_LOSS, KEEP_ROUGE1, KEEP_ROUGE2, KEEP_ROUGEL, KEEP_ROUGELSUM } KeepMetric;
static const char* const KEEP_NAMES[] = { "none", "val_loss", "rouge1", "rouge2", "rougeL", "rougeLsum" };
typedef struct {
    double value;           // the best value so far (val_loss: lowest; ROUGE: highest)
    long long step;         // its run step; 0: none yet
    int stale;              // evaluations since then without improvement (--early-stop)
} Best;

// everything a run holds besides the model
typedef struct {
    Engine* e;
    const Options* o;
    DataLoader train, val;
    int has_val, opened;
    BatchBuf* bufs;         // (grad_accum) the micro-batches of a step
    T5Batch** batches;      // (grad_accum)
    uint64_t* seeds;        // (grad_accum)
    FILE* data_log;         // --data-log
    EvalSet rouge_set;      // --eval-rouge: the first N validation examples with their references
    SpmModel tok;           // decodes their summaries
    int has_rouge;
    BatchBuf val_buf;
    FILE* metrics;          // rank 0 with --out-dir
    long long step;         // steps run (the optimizer's count skips non-finite steps)
    long long total_steps;
    long long epoch;        // of the running step
    double t0, ms_sum, peak_mib;
    int timed, skipped, in_a_row;
    StepResult last;
    AsyncSaver saver;       // rank 0 with --async-checkpoint 1: the background checkpoint writer
    int async;              // the saver runs
    float* stage;           // its staging buffer: the state's copy it writes (run_opt_floats + the trainable count), touched
    size_t stage_n;         //   once at the start so that a checkpoint costs a copy, not page faults
    Best best;              // --keep-best
    long long last_eval;    // the step of the last evaluation (the final one is not repeated)
    long long resumed_at;   // the step the run resumed at (0: a fresh run)
} Run;

static LrSchedule run_schedule(const Options* o, const Run* r) {
    LrSchedule s = { o->schedule, o->warmup, o->schedule_steps ? o->schedule_steps : (int)r->total_steps };
    return s;
}

static void log_step_data(Run* run, long long k, int a) {
    if (!run->data_log) return;
    fprintf(run->data_log, "%lld %d", k + 1, a);
    for (int i = 0; i < run->train.idx_n; i++) fprintf(run->data_log, " %lld", (long long)run->train.idx[i]);
    fprintf(run->data_log, "\n");
}

// the rest of step k's inputs once in->batches, in->A and in->total are set: each micro-batch's dropout seed
// (ranks > 0 draw other masks than rank 0 for the same positions of their slices), the scheduled lr, clipping,
// AdamW's settings, and Adafactor's step values (t = updates done + 1: a skipped step does not advance it)
// with the scheduled lr as transformers' group lr, or its relative step (then the logged lr is that relative
// step size, before the parameter scale). seeds: in->A of them. Returns the lr to log
static float step_settings(const Options* o, const Engine* e, long long k, float lr, uint64_t* seeds, StepIn* in) {
    for (int a = 0; a < in->A; a++)
        seeds[a] = mix64((uint64_t)o->seed ^ mix64((uint64_t)k * 65536 + (uint64_t)a)) + (uint64_t)e->rank * 0x9e3779b97f4a7c15ULL;
    in->seeds = seeds;
    in->lr = lr; in->clip = o->clip;
    in->opt.lr = o->lr; in->opt.beta1 = o->beta1; in->opt.beta2 = o->beta2; in->opt.eps = o->adam_eps;
    in->opt.weight_decay = o->weight_decay; in->opt.decay_norms = o->decay_norms;
    in->optimizer = o->optimizer;
    if (o->optimizer != OPTIM_ADAFACTOR) return in->lr;
    AdafactorConfig c = adafactor_config_of(o);
    in->af = adafactor_step_values(&c, e->opt_step + 1, (double)lr);
    if (c.relative_step) in->lr = (float)in->af.rel_step;
    return in->lr;
}

// the optimizer's rows of the configuration table (and a note when schedule flags are given that do not apply)
static void print_optimizer_rows(const Options* o) {
    if (o->optimizer != OPTIM_ADAFACTOR) {
        printf("| %-22s | %-10g %-8s warmup %-17d |\n", "lr / schedule", (double)o->lr, lr_schedule_name(o->schedule), o->warmup);
        return;
    }
    AdafactorConfig c = adafactor_config_of(o);
    char row[128];
    if (c.relative_step) {
        printf("| %-22s | %-43s |\n", "lr / schedule", c.warmup_init ? "relative: min(1e-6 t, 1/sqrt t)" : "relative: min(1e-2, 1/sqrt t)");
        if (o->sched_given) fprintf(stderr, "note: --adafactor-relative-step 1: --schedule, --warmup and --schedule-steps do not apply\n");
    } else printf("| %-22s | %-10g %-8s warmup %-17d |\n", "lr / schedule", (double)o->lr, lr_schedule_name(o->schedule), o->warmup);
    snprintf(row, sizeof(row), "scale %d clip %g decay %g beta1 %s", c.scale_parameter, c.clip_threshold, c.decay_rate,
             c.has_beta1 ? "set" : "off");
    printf("| %-22s | %-43s |\n", "adafactor", row);
    snprintf(row, sizeof(row), "eps %g, %g  wd %g", c.eps1, c.eps2, c.weight_decay);
    printf("| %-22s | %-43s |\n", "adafactor eps / wd", row);
}

// the micro-batches of step k, checked and counted over every rank, their dropout seeds, the step's lr:
// everything the engine's step needs. The loss is the mean over all counted tokens of the global batch:
// with R ranks each holds 1/R of every micro-batch, the token count is summed over ranks first.
static int step_inputs(Run* run, long long k, StepIn* in, StepResult* r) {
    Engine* e = run->e;
    const Options* o = run->o;
    int A = o->grad_accum, bad_batch = 0;
    int64_t counts[3] = { 0, 0, 0 }; // counted label tokens, real tokens, FLOPs
    memset(r, 0, sizeof(*r));
    for (int a = 0; a < A; a++) { // labels of the whole step first: they fix the loss normalisation
        T5Batch* b = dataloader_next(&run->train, &run->bufs[a]);
        run->batches[a] = b;
        log_step_data(run, k, a);
        const char* bad = b->B > 0 ? batch_check(&e->config, b) : NULL; // B = 0: a rank's empty share of a short batch
        if (bad) { r->error = bad; bad_batch = 1; }
        counts[0] += batch_count_labels(b);
        counts[1] += batch_real_tokens(b);
        if (e->ops->step_flops && b->B > 0) counts[2] += (int64_t)e->ops->step_flops(e, b);
    }
    if (all_max(e, bad_batch)) { if (!r->error) r->error = "a bad batch on another rank"; return -1; } // before any compute
    all_sum_i64(e, counts, 3);
    r->tokens = counts[1];
    r->flops = (double)counts[2];
    LrSchedule sched = run_schedule(o, run);
    in->batches = run->batches; in->A = A; in->total = counts[0];
    r->lr = step_settings(o, e, k, (float)(o->lr * lr_multiplier(&sched, k)), run->seeds, in);
    return 0;
}

// mean loss over the validation file (or its first eval_batches batches), dropout off: every rank its
// slices, then the sums over ranks
static double evaluate(Run* run, long long* tokens) {
    Engine* e = run->e;
    DataLoader* v = &run->val;
    dataloader_seek(v, 0, 0);
    long long nb = run->o->eval_batches && run->o->eval_batches < v->num_batches ? run->o->eval_batches : v->num_batches;
    double sum[2] = { 0.0, 0.0 }; // loss sum, counted tokens
    for (long long i = 0; i < nb; i++) {
        T5Batch* b = dataloader_next(v, &run->val_buf);
        if (b->B == 0 || batch_check(&e->config, b)) continue;
        int counted;
        float mean = e->ops->eval_batch(e, b, &counted);
        sum[0] += (double)mean * counted;
        sum[1] += counted;
    }
    all_sum_f64(e, sum, 2);
    *tokens = (long long)sum[1];
    return *tokens ? sum[0] / sum[1] : NAN;
}

// how many of the n summaries differ from every other (a model that writes one sentence for every dialogue
// scores ROUGE too: this tells it apart)
static int64_t distinct_summaries(const EvalResult* r) {
    int64_t d = 0;
    for (int64_t i = 0; i < r->n; i++) {
        int seen = 0;
        for (int64_t j = 0; j < i && !seen; j++) seen = strcmp(r->summaries[i], r->summaries[j]) == 0;
        d += !seen;
    }
    return d;
}

// ROUGE of greedy summaries of the --eval-rouge validation examples (rank 0; 0 = fine, -1 = failed)
static int eval_rouge(Run* run, EvalResult* r) {
    char err[1024];
    EvalConfig c = eval_config(run->o, 0);
    c.gen.num_beams = 1;
    if (eval_generate(run->e, &run->tok, &run->rouge_set, &c, "rouge", r, err, sizeof(err)) == 0) return 0;
    fprintf(stderr, "warning: validation ROUGE failed: %s\n", err);
    return -1;
}

static int best_update(Run* run, double loss, const EvalResult* r, int rouge);

// the validation loss (and ROUGE), logged; --keep-best's bookkeeping. 0, or -1 when keeping the best failed
static int log_eval(Run* run) {
    double t0 = now_ms();
    run->last_eval = run->step;
    long long tokens;
    double loss = evaluate(run, &tokens);
    EvalResult r;
    memset(&r, 0, sizeof(r));
    // every rank announces it (has_rouge is rank 0's alone: it holds the references)
    if (run->o->eval_rouge) all_wait_for_rank0(run->e, "rank 0 evaluating ROUGE", RANK0_PHASE_S);
    int rouge = run->has_rouge && is_rank0(run->e) && eval_rouge(run, &r) == 0;
    printf("eval step %lld | val loss %.6f | %lld target tokens", run->step, loss, tokens);
    int64_t distinct = rouge ? distinct_summaries(&r) : 0;
    if (rouge) printf(" | ROUGE-1/2/L/Lsum %.2f/%.2f/%.2f/%.2f on %lld (%lld distinct)", 100 * r.rouge.m[ROUGE_1].fmeasure,
                      100 * r.rouge.m[ROUGE_2].fmeasure, 100 * r.rouge.m[ROUGE_L].fmeasure, 100 * r.rouge.m[ROUGE_LSUM].fmeasure,
                      (long long)r.n, (long long)distinct);
    printf(" | %.1f s\n", (now_ms() - t0) / 1e3);
    if (run->metrics) {
        fprintf(run->metrics, "{\"type\": \"eval\", \"step\": %lld", run->step);
        json_num(run->metrics, "val_loss", loss);
        for (int k = 0; rouge && k < ROUGE_NUM_METRICS; k++) json_num(run->metrics, ROUGE_NAMES[k], 100 * r.rouge.m[k].fmeasure);
        if (rouge) json_num(run->metrics, "bleu", r.bleu.score);
        if (rouge) fprintf(run->metrics, ", \"distinct\": %lld", (long long)distinct);
        fprintf(run->metrics, ", \"tokens\": %lld}\n", tokens);
        fflush(run->metrics);
    }
    int rc = run->o->keep_best ? best_update(run, loss, &r, rouge) : 0;
    eval_result_free(&r);
    return rc;
}

// --eval-rouge: the validation split's references (VAL.bin → VAL_refs.jsonl) and the tokenizer
static int open_rouge(Run* run) {
    char err[1024], prefix[4400];
    snprintf(prefix, sizeof(prefix), "%s", run->o->val_file);
    size_t l = strlen(prefix);
    if (l > 4 && strcmp(prefix + l - 4, ".bin") == 0) prefix[l - 4] = 0;
    if (evalset_open(&run->rouge_set, prefix, run->o->eval_rouge, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    if (load_tokenizer(&run->tok, run->o)) { evalset_free(&run->rouge_set); return -1; }
    run->has_rouge = 1;
    return 0;
}

// a step's line on stdout (rank 0) and its metrics.jsonl record; MFU and device memory where the engine has them
static void log_step(Run* run, const StepResult* r, long long k, double ms) {
    Engine* e = run->e;
    double avg_ms = run->ms_sum / run->timed, eta = avg_ms * (double)(run->total_steps - k - 1) / 1e3;
    printf("step %lld/%lld | loss %.6f | lr %.4e | grad norm %.4f | %.1f ms | %.0f tok/s", k + 1, run->total_steps,
           (double)r->loss, (double)r->lr, (double)r->grad_norm, ms, r->tokens / (ms / 1e3));
    if (e->peak_tflops > 0) printf(" | MFU %.1f%%", 100.0 * r->flops / (ms / 1e3) / 1e12 / e->size / e->peak_tflops);
    if (strcmp(e->ops->memory_kind, "device") == 0) printf(" | mem %.2f GiB", run->peak_mib / 1024.0);
    printf(" | eta %dm%02ds%s\n", (int)(eta / 60), (int)eta % 60, r->skipped ? " | SKIPPED: non-finite loss or gradient norm" : "");
    fflush(stdout);
    if (!run->metrics) return;
    FILE* f = run->metrics;
    fprintf(f, "{\"type\": \"train\", \"step\": %lld, \"epoch\": %lld", k + 1, run->epoch);
    json_num(f, "loss", r->loss); json_num(f, "lr", r->lr); json_num(f, "grad_norm", r->grad_norm);
    json_num(f, "ms", ms); json_num(f, "tokens_per_s", r->tokens / (ms / 1e3));
    fprintf(f, ", \"tokens\": %lld, \"skipped\": %d}\n", r->tokens, r->skipped);
    fflush(f);
}

static CkptTrainState train_state(const Run* run) {
    CkptTrainState ts = { run->o->seed, run->step, run->train.epoch, run->train.batch, run->o->batch_size, run->o->grad_accum,
                          run->e->size };
    return ts;
}

// the background writer idle, its last write reported (rank 0); 0, or -1 after the failure's message
static int run_wait_saves(Run* run) {
    char err[1024];
    if (!run->async) return 0;
    if (async_save_wait(&run->saver, err, sizeof(err)) == 0) return 0;
    fprintf(stderr, "error: checkpoint: %s\n", err);
    return -1;
}

// dst[0..n) = src[0..n) on every core (the copy is what a background checkpoint blocks the step for)
static void copy_floats(float* dst, const float* src, size_t n) {
    const size_t CHUNK = (size_t)1 << 20;
    long long chunks = (long long)((n + CHUNK - 1) / CHUNK);
    #pragma omp parallel for schedule(static)
    for (long long c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * CHUNK, len = n - lo < CHUNK ? n - lo : CHUNK;
        memcpy(dst + lo, src + lo, len * sizeof(float));
    }
}

static void stage_job_done(void* ctx) { free(ctx); } // the staging buffer is the run's, reused

// floats of the run's optimizer state over the trainable tensors: AdamW's m and v, or Adafactor's state, which
// can pass 2 x the trainable count (a (1, n) or (n, 1) slice holds 1 + n + n floats with β1: LoRA at r = 1)
static size_t run_opt_floats(const Engine* e, const Options* o) {
    size_t adamw = 2 * e->num_trainable;
    if (o->optimizer != OPTIM_ADAFACTOR) return adamw;
    T5Layout base;
    t5_layout(&e->config, &base);
    size_t af = t5_adafactor_floats(&base, o->af_beta1 >= 0.0);
    if (e->lora.r) {
        LoraLayout L;
        lora_layout(&e->lora, &base, e->config.gated, &L);
        af = lora_adafactor_floats(&L, o->af_beta1 >= 0.0);
    }
    return af > adamw ? af : adamw;
}

// the state copied into the run's staging buffer, as a job for the background writer (rank 0; the previous
// job has finished: it read the same buffer)
static CkptJob* stage_checkpoint(Run* run, const EngineState* st, const char* path, const CkptTrainState* ts) {
    Engine* e = run->e;
    CkptOpt opt = engine_state_opt(st, e->lora.r > 0);
    const float* w = e->lora.r ? st->adapter : st->params;
    size_t n = e->lora.r ? st->lora_n : st->n, nopt = (size_t)ckpt_opt_floats(&opt, (int64_t)n);
    if (n + nopt > run->stage_n) return NULL;
    CkptJob* j = (CkptJob*)callocCheck(1, sizeof(CkptJob));
    j->state = run->stage; j->n = (int64_t)n; j->has_opt = nopt > 0; j->opt_floats = (int64_t)nopt;
    copy_floats(j->state, w, n);
    if (nopt) {
        j->opt_kind = opt.kind; j->af_beta1 = opt.af_beta1;
        if (opt.kind == OPTIM_ADAFACTOR) copy_floats(j->state + n, opt.af, nopt);
        else { copy_floats(j->state + n, opt.m, n); copy_floats(j->state + 2 * n, opt.v, n); }
    }
    snprintf(j->path, sizeof(j->path), "%s", path);
    snprintf(j->out_dir, sizeof(j->out_dir), "%s", run->o->out_dir);
    j->keep = run->o->keep_checkpoints;
    j->step = st->step; j->train = *ts; j->config = e->config;
    j->lora = e->lora.r > 0; j->lora_config = e->lora; j->base_n = (int64_t)e->num_params; j->base_crc = e->base_crc;
    return j;
}

// OUT/checkpoints/ckpt_<steps run>.bin (every rank takes part), then all but the newest `keep` deleted once
// it is durable. Async: rank 0 stages the state and a background thread writes it (a failure is reported
// at a later step boundary, run_after); the previous save is waited for first.
static int run_checkpoint(Run* run) {
    char path[4400], err[1024];
    Engine* e = run->e;
    CkptTrainState ts = train_state(run);
    ckpt_path(path, sizeof(path), run->o->out_dir, run->step);
    if (!run->async) {
        double t0 = now_ms();
        if (save_checkpoint(e, path, &ts, "rank 0 writing a checkpoint")) return -1;
        if (is_rank0(e)) {
            printf("checkpoint %s (the step waited %.0f ms)\n", path, now_ms() - t0);
            ckpt_prune(run->o->out_dir, run->o->keep_checkpoints);
        }
        return 0;
    }
    double t0 = now_ms();
    int bad = is_rank0(e) && run_wait_saves(run) != 0; // one in flight: the staging buffer is free again
    EngineState st;
    bad |= e->ops->get_state(e, &st) != 0;
    if (!bad && is_rank0(e)) {
        CkptJob* j = stage_checkpoint(run, &st, path, &ts);
        if (!j) { fprintf(stderr, "error: %s: no host memory to stage the checkpoint (--async-checkpoint 0 writes without a copy)\n", path); bad = 1; }
        else {
            AsyncJob job = ckpt_job_async(j);
            job.done = stage_job_done;
            if (async_save_start(&run->saver, &job, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); bad = 1; }
            else printf("checkpoint %s (writing in the background; the step waited %.0f ms)\n", path, now_ms() - t0);
        }
    }
    return all_max(e, bad) ? -1 : 0;
}

// ----------------------------------------------------------------------------
// --keep-best: DIR/best/ckpt_<step>.bin (one, outside the rotation) and DIR/best/best.json (the metric, its
// best value and step, the evaluations since without improvement), both published durably; the older
// best checkpoint is removed only once the new one and its record are in place

static void best_path(const Options* o, long long step, char* buf, size_t n) {
    snprintf(buf, n, "%s/best/ckpt_%09lld.bin", o->out_dir, step);
}

static int best_write_record(Run* run, char* err, size_t errlen) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/best/best.json", run->o->out_dir);
    AtomicFile a;
    if (mkdir_parent(path, err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
    fprintf(a.f, "{\"metric\": \"%s\", \"step\": %lld", KEEP_NAMES[run->o->keep_best], run->best.step);
    json_num(a.f, "value", run->best.value);
    fprintf(a.f, ", \"evaluations_since\": %d}\n", run->best.stale);
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

// a resumed run's best so far (DIR/best/best.json, if its checkpoint is there and not newer than the resumed
// step); a fresh run starts with none
static void best_resume(Run* run, long long resumed_step) {
    char path[4400], err[256], ck[4400];
    JsonValue v;
    run->best.step = 0; run->best.stale = 0;
    snprintf(path, sizeof(path), "%s/best/best.json", run->o->out_dir);
    if (json_read_file(path, &v, err, sizeof(err))) return;
    const JsonValue *m = json_find(&v, "metric"), *st = json_find(&v, "step"), *val = json_find(&v, "value"), *k = json_find(&v, "evaluations_since");
    int ok = m && m->type == JSON_STRING && strcmp(m->string, KEEP_NAMES[run->o->keep_best]) == 0 && st && st->type == JSON_NUMBER &&
             val && val->type == JSON_NUMBER && st->number >= 1 && st->number <= (double)resumed_step;
    if (ok) {
        best_path(run->o, (long long)st->number, ck, sizeof(ck));
        ok = access(ck, R_OK) == 0;
    }
    if (ok) {
        run->best.step = (long long)st->number; run->best.value = val->number;
        run->best.stale = k && k->type == JSON_NUMBER ? (int)k->number : 0;
        int since = metrics_count_evals(run->o->out_dir, run->best.step, resumed_step); // as of the resumed step, not best.json's last write
        if (since >= 0) run->best.stale = since;
        printf("best so far: %s %.6f at step %lld (%d evaluation(s) since)\n", KEEP_NAMES[run->o->keep_best], run->best.value,
               run->best.step, run->best.stale);
    } else fprintf(stderr, "note: %s does not match this run (another metric, or a step past the resumed one): the best starts over\n", path);
    json_free(&v);
}

// the value an evaluation gives the kept metric (rank 0 has ROUGE)
static double best_value_of(int metric, double loss, const EvalResult* r) {
    static const int ROUGE_OF[] = { 0, 0, ROUGE_1, ROUGE_2, ROUGE_L, ROUGE_LSUM };
    return metric == KEEP_VAL_LOSS ? loss : 100 * r->rouge.m[ROUGE_OF[metric]].fmeasure;
}

// after an evaluation: rank 0 decides whether it improved (every rank learns it), the new best checkpoint is
// written (synchronously: every rank takes part), its record published, the older one removed
static int best_update(Run* run, double loss, const EvalResult* r, int rouge) {
    Engine* e = run->e;
    int metric = run->o->keep_best;
    double v = best_value_of(metric, loss, r);
    int valid = isfinite(v) && (metric == KEEP_VAL_LOSS || rouge);
    int better = is_rank0(e) && valid && (run->best.step == 0 || (metric == KEEP_VAL_LOSS ? v < run->best.value : v > run->best.value));
    if (run->best.step != 0) all_wait_for_rank0(e, "rank 0 deciding the best checkpoint", RANK0_PHASE_S);
    better = all_max(e, better);
    char path[4400], old[4400], err[1024];
    if (!better) {
        run->best.stale++;
        return is_rank0(e) && best_write_record(run, err, sizeof(err)) ? (fprintf(stderr, "error: %s\n", err), -1) : 0;
    }
    long long prev = run->best.step;
    CkptTrainState ts = train_state(run);
    best_path(run->o, run->step, path, sizeof(path));
    if (is_rank0(e) && mkdir_parent(path, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); }
    if (save_checkpoint(e, path, &ts, "rank 0 writing the best checkpoint")) return -1;
    run->best.step = run->step; run->best.value = v; run->best.stale = 0;
    if (!is_rank0(e)) return 0;
    if (best_write_record(run, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    if (prev && prev != run->step) { best_path(run->o, prev, old, sizeof(old)); unlink(old); }
    printf("best so far: %s %.6f at step %lld (%s)\n", KEEP_NAMES[metric], v, run->step, path);
    if (run->metrics) {
        fprintf(run->metrics, "{\"type\": \"best\", \"step\": %lld, \"metric\": \"%s\"", run->step, KEEP_NAMES[metric]);
        json_num(run->metrics, "value", v);
        fprintf(run->metrics, "}\n");
        fflush(run->metrics);
    }
    return 0;
}


static int open_loader(Run* run, DataLoader* dl, const char* path, int bs, int training) {
    char err[1024];
    const Options* o = run->o;
    const T5Config* c = &run->e->config;
    LoaderConfig lc = { bs, run->e->size, run->e->rank, training ? o->shuffle : 0, training ? o->bucket : 1, 64, o->max_src_len,
                        o->max_tgt_len, c->pad_id, c->decoder_start_id, (uint64_t)o->seed, o->ladder[0], o->ladder[1],
                        c->eos_id };
    if (dataloader_init(dl, path, &lc, err, sizeof(err)) == 0 && examples_check_vocab(&dl->data, c->vocab_size, path, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "error: %s %s\n", training ? "--train-file" : "--val-file", err); // the flag, then the file and its problem
    return -1;
}

// a resumed run continues with its checkpoint's data position (llmc/rundir.h ckpt_check_geometry)
static int resume_data(Run* run, const CkptTrainState* ts, const char* from) {
    const Options* o = run->o;
    if (ckpt_check_geometry(ts, o->batch_size, run->e->size, o->grad_accum, o->seed, from)) return -1;
    if (dataloader_seek(&run->train, ts->epoch, ts->batch)) {
        fprintf(stderr, "error: %s: data position (epoch %lld, batch %lld) does not fit %s\n", from,
                (long long)ts->epoch, (long long)ts->batch, o->train_file);
        return -1;
    }
    return 0;
}

// the widest batch dl makes, padded as the loader pads it (up to its --shape-ladder rung): widens *Ts, *Tt
static void loader_widest(const DataLoader* dl, const Options* o, int* Ts, int* Tt) {
    int s = 1, t = 1;
    for (int64_t i = 0; i < dl->data.n; i++) {
        int ls = clamp_len(dl->data.lens[2 * i], o->max_src_len), lt = clamp_len(dl->data.lens[2 * i + 1], o->max_tgt_len);
        if (ls > s) s = ls;
        if (lt > t) t = lt;
    }
    s = ladder_len(s, o->ladder[0], o->max_src_len);
    t = ladder_len(t, o->ladder[1], o->max_tgt_len);
    if (s > *Ts) *Ts = s;
    if (t > *Tt) *Tt = t;
}

// the data, the step count, the run directory; resumed: the checkpoint's state, checked against this run.
// dry: nothing written (no metrics, no data log)
static int run_open(Run* run, const CkptTrainState* resumed, const char* from, int dry) {
    const Options* o = run->o;
    Engine* e = run->e;
    run->opened = 1;
    if (open_loader(run, &run->train, o->train_file, o->batch_size, 1)) return -1;
    run->has_val = o->val_file != NULL;
    if (run->has_val && open_loader(run, &run->val, o->val_file, o->eval_batch_size ? o->eval_batch_size : o->batch_size, 0)) return -1;
    long long per_epoch = (run->train.num_batches + o->grad_accum - 1) / o->grad_accum;
    // --epochs is read as a float: 0.05f is 0.0500000007, so 40 batches would give 2.0000000298 steps;
    // a hundredth of a step is noise, not a step
    run->total_steps = o->steps ? o->steps : (long long)ceil((double)o->epochs * (double)per_epoch - 0.01);
    if (run->total_steps < 1) run->total_steps = 1;
    printf("train file: %lld examples, %lld batches of %d x %d ranks per epoch, %lld steps in all\n", (long long)run->train.data.n,
           (long long)run->train.num_batches, o->batch_size, e->size, run->total_steps);
    if (run->has_val) printf("val file: %lld examples\n", (long long)run->val.data.n);
    if (o->eval_rouge && is_rank0(e) && open_rouge(run)) return -1;
    if (resumed && resume_data(run, resumed, from)) return -1;
    run->step = run->resumed_at = resumed ? resumed->run_step : 0;
    if (o->keep_best && resumed) best_resume(run, run->step);
    if (o->keep_best && resumed && o->early_stop && run->best.stale >= o->early_stop) { // the run had stopped early: it is over
        printf("early stop: %d evaluations without a better %s than %.6f (step %lld): the run stopped early at step %lld\n",
               run->best.stale, KEEP_NAMES[o->keep_best], run->best.value, run->best.step, run->step);
        run->total_steps = run->step;
    }
    // the final checkpoint follows the final evaluation: a resume of a finished run finds that evaluation in the
    // log and does not repeat it (every rank agrees: the file may be rank 0's alone)
    if (resumed && run->has_val && o->out_dir && all_max(e, metrics_count_evals(o->out_dir, run->step - 1, run->step) > 0))
        run->last_eval = run->step;
    int Ts = 1, Tt = 1; // the buffers the engine sizes once (graphs hold their addresses)
    loader_widest(&run->train, o, &Ts, &Tt);
    if (run->has_val) loader_widest(&run->val, o, &Ts, &Tt);
    printf("widest batch: %d x (%d source + %d target) tokens\n", o->batch_size, Ts, Tt);
    if (!dry && e->ops->reserve) e->ops->reserve(e, o->batch_size, Ts, Tt);
    run->bufs = (BatchBuf*)callocCheck((size_t)o->grad_accum, sizeof(BatchBuf));
    run->batches = (T5Batch**)callocCheck((size_t)o->grad_accum, sizeof(T5Batch*));
    run->seeds = (uint64_t*)callocCheck((size_t)o->grad_accum, sizeof(uint64_t));
    if (dry) return 0;
    if (o->data_log) {
        char path[4400];
        snprintf(path, sizeof(path), "%s.rank%d", o->data_log, e->rank);
        if (!(run->data_log = fopen(path, resumed ? "a" : "w"))) { fprintf(stderr, "error: %s: cannot open for writing\n", path); return -1; }
    }
    if (o->out_dir && is_rank0(e) && // rank 0 writes the run directory
        !(run->metrics = metrics_start(o->out_dir, resumed != NULL, run->step, run->total_steps, e->num_params, e->num_trainable)))
        return -1;
    if (o->out_dir && is_rank0(e) && o->async_checkpoint) {
        char err[1024];
        run->stage_n = e->num_trainable + run_opt_floats(e, o);
        run->stage = (float*)malloc(run->stage_n * sizeof(float) + 1);
        if (!run->stage) { fprintf(stderr, "error: --async-checkpoint 1: no host memory for its %.2f GB staging buffer (0 writes without one)\n",
                                   run->stage_n * 4.0 / 1e9); return -1; }
        memset(run->stage, 0, run->stage_n * sizeof(float)); // its pages now, not at the first checkpoint
        if (async_saver_init(&run->saver, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        run->async = 1;
    }
    return 0;
}

static void run_close(Run* run) {
    if (!run->opened) return;
    if (run->async) { run_wait_saves(run); async_saver_free(&run->saver); run->async = 0; }
    free(run->stage);
    run->stage = NULL;
    dataloader_free(&run->train);
    if (run->has_val) dataloader_free(&run->val);
    if (run->bufs) for (int a = 0; a < run->o->grad_accum; a++) batch_free(&run->bufs[a]);
    free(run->bufs); free(run->batches); free(run->seeds);
    batch_free(&run->val_buf);
    if (run->metrics) fclose(run->metrics);
    if (run->data_log) fclose(run->data_log);
    if (run->has_rouge) { evalset_free(&run->rouge_set); spm_free(&run->tok); }
    run->opened = 0;
}

// whether this step's checkpoint is in the run directory already: a resume that ran no step (a finished run
// resumed, or stopped before its first step) finds the one it resumed from, and does not write it again
static int checkpoint_in_place(Run* run) {
    char path[4400];
    ckpt_path(path, sizeof(path), run->o->out_dir, run->step);
    return all_max(run->e, run->step == run->resumed_at && is_rank0(run->e) && access(path, R_OK) == 0);
}

// after the last step (or a stop signal): the final evaluation and checkpoint, and the log's last record
static int train_finish(Run* run, int rc) {
    Engine* e = run->e;
    const Options* o = run->o;
    if (run->skipped) printf("%d step(s) skipped for non-finite values\n", run->skipped);
    if (e->ops->peak_mib) { double mib = e->ops->peak_mib(e); if (mib > run->peak_mib) run->peak_mib = mib; }
    printf("padding: %.1f%% of the training batch tokens; peak memory %.0f MiB (%s)\n",
           100.0 * dataloader_padding_fraction(&run->train), run->peak_mib, e->ops->memory_kind);
    if (rc > 0) printf("stopped by signal %d after step %lld\n", rc, run->step);
    if (rc == 0 && run->has_val && run->last_eval != run->step && log_eval(run)) rc = -1;
    if (rc >= 0 && o->out_dir) {
        int bad = !checkpoint_in_place(run) && run_checkpoint(run) != 0;
        bad = all_max(e, bad || (is_rank0(e) && run_wait_saves(run) != 0)); // the last checkpoint is durable before the end record
        if (bad) rc = -1;
        else if (rc > 0) printf("resume with the same command and --resume latest\n");
    } else if (is_rank0(e) && run_wait_saves(run)) rc = -1;
    if (rc == 0 && o->keep_best && run->best.step && run->metrics) { // what the outputs will be (run_end reloads it)
        fprintf(run->metrics, "{\"type\": \"best_model\", \"step\": %lld, \"metric\": \"%s\"", run->best.step, KEEP_NAMES[o->keep_best]);
        json_num(run->metrics, "value", run->best.value);
        fprintf(run->metrics, ", \"of_steps\": %lld}\n", run->step);
    }
    metrics_end(run->metrics, rc == 0, run->step, dataloader_padding_fraction(&run->train), run->peak_mib, e->ops->memory_kind);
    return rc;
}

// ----------------------------------------------------------------------------
// the evaluation (--eval-split): every model's summaries and scores, and the comparison report

static void eval_path(const Options* o, const char* file, char* buf, size_t len) {
    const char* dir = o->eval_out ? o->eval_out : (o->out_dir ? NULL : "out/eval");
    if (dir) snprintf(buf, len, "%s/%s", dir, file);
    else snprintf(buf, len, "%s/eval/%s", o->out_dir, file);
}

// a row's generations{tag}.jsonl and scores{tag}.json in the eval directory
static int write_row_files(const Options* o, const EvalSet* s, const ReportRow* w) {
    char err[1024], file[256], path[4400];
    snprintf(file, sizeof(file), "generations%s.jsonl", w->tag);
    eval_path(o, file, path, sizeof(path));
    int rc = write_generations(path, s, &w->r, err, sizeof(err));
    snprintf(file, sizeof(file), "scores%s.json", w->tag);
    eval_path(o, file, path, sizeof(path));
    if (rc == 0) rc = write_scores_json(path, w, err, sizeof(err));
    if (rc) fprintf(stderr, "error: %s\n", err);
    return rc;
}

// one model over the split, its files written
static int eval_model(Engine* e, const Options* o, const SpmModel* tok, const EvalSet* s, ReportRow* w) {
    char err[1024], label[32];
    EvalConfig c = eval_config(o, 1);
    snprintf(label, sizeof(label), "%-14s", KIND_NAMES[w->kind]);
    if (eval_generate(e, tok, s, &c, label, &w->r, err, sizeof(err))) {
        fprintf(stderr, "error: %s: %s\n", w->spec, err);
        return -1;
    }
    return write_row_files(o, s, w);
}

// the trivial baselines (LEAD-2, LONGEST-3) over the split, their files written: rows[0..TRIVIAL_NUM)
static int eval_trivial_rows(const Options* o, const EvalSet* s, ReportRow* rows) {
    char err[1024];
    for (int k = 0; k < TRIVIAL_NUM; k++) {
        trivial_row(&rows[k], (TrivialKind)k);
        if (eval_trivial(s, (TrivialKind)k, &rows[k].r, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        if (write_row_files(o, s, &rows[k])) return -1;
    }
    return 0;
}

// the run directory a model given as SPEC (+ an adapter DIR) came from: the adapter's run, else the
// model's (llmc/rundir.h rundir_of); NULL for a preset alone or a model outside any run directory
static const char* spec_run_dir(const char* spec, const char* adapter, char* buf, size_t n) {
    const char* path = adapter ? adapter : model_source(spec) != SRC_PRESET ? spec : NULL;
    return path && rundir_of(path, buf, n) == 0 ? buf : NULL;
}

// describe_row for an engine's model: its adapter (if any) and whether this process trained it
static void describe_model_row(ReportRow* w, const Engine* e, const char* run_dir, int trained_here) {
    describe_row(w, run_dir, e->lora.r || trained_here ? (long long)e->num_trainable : -1, e->lora.r > 0);
}

// a model besides --model (the baseline, the compare model): loaded, built by a second engine of this
// process alone (rank 0 evaluates), described, run over the split, freed
static int eval_other(Engine* e, const Options* o, const SpmModel* tok, const EvalSet* s, ReportRow* w) {
    HostModel h;
    char dir[4400];
    if (load_adapted_model(o, w->spec, w->adapter, &h)) return -1;
    Engine b = *e;
    b.self = NULL;
    engine_describe(&b, &h);
    int rc = e->ops->build(&b, &h, o, 1);
    host_model_free(&h);
    if (rc) return -1;
    describe_model_row(w, &b, w->kind == KIND_ZERO_SHOT ? NULL : spec_run_dir(w->spec, w->adapter, dir, sizeof(dir)), 0);
    rc = eval_model(&b, o, tok, s, w);
    engine_free(&b);
    return rc;
}

// the score table on stdout and, with two models or more (baselines aside), comparison.txt / comparison.md
static int report(const Options* o, const EvalSet* s, ReportRow* rows, int n, int models) {
    char err[1024], path[4400];
    order_rows(rows, n);
    print_scores_header(stdout, 0);
    for (int k = 0; k < n; k++) print_scores_row(stdout, &rows[k], 0);
    print_legend(stdout, 0, rows, n);
    eval_path(o, "", path, sizeof(path));
    printf("wrote generations and scores to %s\n", path);
    if (models < 2) return 0;
    if (write_comparison_files(path, s, rows, n, o->compare_examples, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    printf("wrote the side-by-side comparison to %scomparison.txt and comparison.md\n", path);
    return 0;
}

// a model the evaluation loads later names something there (a typo shows before any training or summary)
static int check_model_spec(const char* flag, const char* spec, const char* adapter) {
    T5Config c;
    struct stat st;
    if (spec && model_source(spec) == SRC_PRESET && t5_config_preset(&c, spec)) {
        fprintf(stderr, "error: %s %s is not a directory, a file, or a preset\n", flag, spec);
        return -1;
    }
    if (!adapter || (stat(adapter, &st) == 0 && S_ISDIR(st.st_mode))) return 0;
    fprintf(stderr, "error: --compare-lora-adapter %s: not a directory (a peft adapter: adapter_config.json + "
            "adapter_model.safetensors)\n", adapter);
    return -1;
}

// --eval-split's examples and references, checked against the model's vocabulary, and the tokenizer;
// the output directory is created first, so that a bad --eval-out shows before any summary is generated
static int open_eval_inputs(const T5Config* c, const Options* o, EvalSet* s, SpmModel* tok) {
    char err[1024] = "", out[4400];
    if (check_model_spec("--baseline-model", o->baseline_model, NULL) ||
        check_model_spec("--compare-model", o->compare_model, o->compare_lora_adapter)) return -1;
    eval_path(o, "generations.jsonl", out, sizeof(out));
    if ((!o->dry_run && mkdir_parent(out, err, sizeof(err))) || evalset_open(s, o->eval_split, o->eval_limit, err, sizeof(err))) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    if (examples_check_vocab(&s->ex, c->vocab_size, o->eval_split, err, sizeof(err)) || load_tokenizer(tok, o)) {
        if (err[0]) fprintf(stderr, "error: %s\n", err);
        evalset_free(s);
        return -1;
    }
    return 0;
}

// before training: the evaluation that follows it can open its inputs (not only after hours of training)
static int check_eval_inputs(const T5Config* c, const Options* o) {
    EvalSet s;
    SpmModel tok;
    if (open_eval_inputs(c, o, &s, &tok)) return -1;
    evalset_free(&s);
    spm_free(&tok);
    return 0;
}

// summaries for --eval-split with the model (and --baseline-model, --compare-model), scores, and the
// comparison report. `name` is scores.json's "model": "fine-tuned" when this process trained it
static int run_eval(Engine* e, const Options* o, const char* name) {
    char dir[4400];
    EvalSet s;
    SpmModel tok;
    if (open_eval_inputs(&e->config, o, &s, &tok)) return -1;
    printf("evaluating on %s: %lld dialogues, %s, up to %d new tokens\n", o->eval_split, (long long)s.n,
           o->num_beams > 1 ? "beam search" : "greedy", o->max_new_tokens);
    ReportRow rows[3 + TRIVIAL_NUM];
    memset(rows, 0, sizeof(rows));
    int n = 0, rc = 0, trained = o->train_file != NULL;
    if (o->baseline_model) {
        ReportRow* w = &rows[n++];
        w->spec = w->name = o->baseline_model; w->tag = "_baseline"; w->kind = KIND_ZERO_SHOT;
        rc = eval_other(e, o, &tok, &s, w);
    }
    if (rc == 0) { // a model trained here: its run is --out-dir, and --lora-adapter was only where it started
        ReportRow* w = &rows[n++];
        w->spec = o->model; w->adapter = trained ? NULL : o->lora_adapter; w->name = name; w->tag = "";
        w->kind = KIND_TUNED; w->trained = trained;
        describe_model_row(w, e, trained ? o->out_dir : spec_run_dir(o->model, o->lora_adapter, dir, sizeof(dir)), trained);
        rc = eval_model(e, o, &tok, &s, w);
    }
    if (rc == 0 && o->compare_model) {
        ReportRow* w = &rows[n++];
        w->spec = w->name = o->compare_model; w->adapter = o->compare_lora_adapter; w->tag = "_compare"; w->kind = KIND_TUNED;
        rc = eval_other(e, o, &tok, &s, w);
    }
    int models = n;
    if (rc == 0 && (rc = eval_trivial_rows(o, &s, rows + n)) == 0) n += TRIVIAL_NUM;
    if (rc == 0) rc = report(o, &s, rows, n, models);
    for (int k = 0; k < (int)(sizeof(rows) / sizeof(rows[0])); k++) eval_result_free(&rows[k].r); // zeroed or filled
    spm_free(&tok);
    evalset_free(&s);
    return rc;
}

// the offset of the first byte of s[0..n) that starts no well-formed UTF-8 sequence, or -1 (prepro refuses
// such text too; sentencepiece would read each bad byte as U+FFFD, which no Python caller can pass)
static long long utf8_bad_at(const char* s, size_t n) {
    for (size_t i = 0, k; i < n; i += k)
        if ((k = spm_utf8_len((const uint8_t*)s + i, n - i)) == 0) return (long long)i;
    return -1;
}

// the whole of FILE (or stdin) as one dialogue → its summary on stdout
static int run_summarize(Engine* e, const Options* o) {
    char err[1024];
    FILE* f = strcmp(o->summarize, "-") == 0 ? stdin : fopen(o->summarize, "rb");
    if (!f) { fprintf(stderr, "error: %s: cannot open\n", o->summarize); return -1; }
    size_t len = 0, cap = 1 << 16;
    char* text = (char*)mallocCheck(cap);
    for (size_t got; (got = fread(text + len, 1, cap - 1 - len, f)) > 0; ) {
        len += got;
        if (len + 1 == cap) text = (char*)reallocCheck(text, cap *= 2);
    }
    if (f != stdin) fclose(f);
    text[len] = 0;
    int blank = 1;
    for (size_t i = 0; i < len && blank; i++) blank = text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r';
    long long bad = blank || strlen(text) != len ? -1 : utf8_bad_at(text, len);
    if (blank || strlen(text) != len || bad >= 0) {
        const char* name = strcmp(o->summarize, "-") == 0 ? "standard input" : o->summarize;
        if (bad >= 0) fprintf(stderr, "error: %s: not valid UTF-8 at byte %lld (0x%02x); save the text as UTF-8\n", name, bad,
                              (unsigned)(uint8_t)text[bad]);
        else fprintf(stderr, "error: %s: %s\n", name, blank ? "empty dialogue" : "the text contains a NUL byte");
        free(text);
        return -1;
    }
    SpmModel tok;
    if (load_tokenizer(&tok, o)) { free(text); return -1; }
    EvalConfig c = eval_config(o, 0);
    char* summary = summarize_text(e, &tok, o->prompt, text, &c, err, sizeof(err));
    if (summary) printf("%s\n", summary);
    else fprintf(stderr, "error: %s\n", err);
    free(summary); free(text);
    spm_free(&tok);
    return summary ? 0 : -1;
}

// ----------------------------------------------------------------------------
// outputs: the HF directory (hub-ready), the peft adapter, the native checkpoint, the model card

// the HF directory this run writes of its model (--save-hf, else OUT/model), or NULL; under LoRA the merged
// model goes to --merge-lora and --save-hf instead (save_lora_outputs), and OUT/model is not written
static const char* hf_out_dir(const Options* o, char* buf, size_t n) {
    if (o->save_hf) return o->save_hf;
    if (!o->out_dir) return NULL;
    snprintf(buf, n, "%s/model", o->out_dir);
    return buf;
}

// what the HF directory holds besides the weights (llmc/hub.h); buffers for the paths it points to.
// `evaluated`: the run's evaluation has written its scores (the card then carries them)
typedef struct { char tok[4400], scores[4400], baseline[4400], lora[256]; } HubPaths;

static HubSave hub_save_of(const Engine* e, const Options* o, int evaluated, HubPaths* p) {
    HubSave s;
    memset(&s, 0, sizeof(s));
    s.weights = o->hf_weights;
    s.spm_path = tokenizer_path(o, p->tok, sizeof(p->tok));
    HubGeneration g = { o->num_beams, o->max_new_tokens, o->no_repeat_ngram, o->early_stopping, o->length_penalty,
                        o->min_new_tokens, o->repetition_penalty };
    s.gen = g;
    eval_path(o, "scores.json", p->scores, sizeof(p->scores));
    eval_path(o, "scores_baseline.json", p->baseline, sizeof(p->baseline));
    p->lora[0] = 0;
    if (e->lora.r) snprintf(p->lora, sizeof(p->lora), "LoRA rank %d, alpha %g, merged into the weights", e->lora.r, (double)e->lora.alpha);
    HubCard* c = &s.card;
    c->engine = e->ops->card_engine; c->base_model = o->model; c->random_init = model_source(o->model) == SRC_PRESET;
    c->train_file = o->train_file; c->steps = e->opt_step; c->batch_size = o->batch_size; c->grad_accum = o->grad_accum;
    c->ranks = e->size; c->warmup = o->warmup; c->max_src_len = o->max_src_len; c->max_tgt_len = o->max_tgt_len;
    c->lr = o->lr; c->weight_decay = o->weight_decay; c->dropout = e->config.dropout; c->clip = o->clip;
    c->schedule = lr_schedule_name(o->schedule); c->seed = o->seed;
    c->eval_split = evaluated ? o->eval_split : NULL; c->scores_json = p->scores;
    c->baseline_json = o->baseline_model ? p->baseline : NULL; c->lora = e->lora.r ? p->lora : NULL;
    c->prompt = o->prompt; c->gen = g;
    if (e->best_step) { c->best_metric = KEEP_NAMES[o->keep_best]; c->best_value = e->best_value; c->best_step = e->best_step; c->run_steps = e->run_step; }
    return s;
}

// one hub-ready HF directory of the weights `params` (the model's own, or merged with its adapter)
static int save_hub_dir(const Engine* e, const float* params, const char* dir, const Options* o) {
    char err[1024];
    HubPaths paths;
    HubSave s = hub_save_of(e, o, 0, &paths);
    int tokjson;
    if (hub_save_dir(dir, &e->config, params, &s, &tokjson, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    printf("saved HF directory %s (%s, %s)\n", dir, o->hf_weights.dtype == ST_BF16 ? "bf16" : "fp32",
           tokjson ? "with tokenizer.json" : "no tokenizer.json at hand: AutoTokenizer converts spiece.model, "
           "which needs pip install sentencepiece protobuf");
    const char* note = hf_head_4x_note(&e->config);
    if (note) printf("note: %s\n", note);
    return 0;
}

// under LoRA: the adapter (--save-lora, else OUT/adapter) as peft writes it, and the merged model as an
// HF directory where --merge-lora or --save-hf asks for one (OUT/model is not written: the base is
// --model, unchanged). Rank 0; st is the engine's state
static int save_lora_outputs(Engine* e, const Options* o, const EngineState* st) {
    char err[1024], dir[4400];
    const char* ad = o->save_lora;
    if (!ad && o->out_dir) { snprintf(dir, sizeof(dir), "%s/adapter", o->out_dir); ad = dir; }
    if (ad) {
        T5Layout base;
        LoraLayout L;
        t5_layout(&e->config, &base);
        lora_layout(&e->lora, &base, e->config.gated, &L);
        if (lora_save_dir(ad, &e->lora, &base, &L, st->adapter, o->model, err, sizeof(err)) ||
            prompt_write(ad, o->prompt, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        printf("saved LoRA adapter %s (peft format)\n", ad);
    }
    const char* dirs[2] = { o->merge_lora, o->save_hf };
    for (int k = 0; k < 2; k++) {
        if (!dirs[k]) continue;
        float* p = merged_params(e, o, st);
        int rc = p ? save_hub_dir(e, p, dirs[k], o) : -1;
        free(p);
        if (rc) return -1;
        printf("(the merged model: base + LoRA)\n");
    }
    return 0;
}

// every rank takes part (gathers); rank 0 writes; the outcome is agreed over ranks
static int save_outputs(Engine* e, const Options* o) {
    char dir[4400];
    const char* hf = e->lora.r ? NULL : hf_out_dir(o, dir, sizeof(dir));
    int bad = 0;
    if (e->lora.r || hf) {
        EngineState st;
        bad = e->ops->get_state(e, &st) != 0;
        if (!bad && is_rank0(e)) bad = e->lora.r ? save_lora_outputs(e, o, &st) != 0 : save_hub_dir(e, st.params, hf, o) != 0;
    }
    if (all_max(e, bad)) return -1;
    if (o->save_ckpt) {
        if (save_checkpoint(e, o->save_ckpt, NULL, NULL)) return -1;
        if (is_rank0(e)) printf("saved checkpoint %s\n", o->save_ckpt);
    }
    return 0;
}

// after the evaluation: the model cards of this run's HF directories get its scores
static int update_card(const Engine* e, const Options* o) {
    char err[1024], dir[4400];
    const char* dirs[2] = { e->lora.r ? o->merge_lora : hf_out_dir(o, dir, sizeof(dir)), e->lora.r ? o->save_hf : NULL };
    for (int k = 0; k < 2; k++) {
        if (!dirs[k]) continue;
        HubPaths paths;
        HubSave s = hub_save_of(e, o, 1, &paths);
        if (hub_write_card(dirs[k], &s.card, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
        printf("model card %s/README.md: the evaluation's scores added\n", dirs[k]);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the prompt (llmc/prompt.h). A run trains on its data's tokens, made with the prompt in the meta.json beside
// --train-file; the prompt it holds is what the model card's snippet, the exports' prompt.json and --summarize
// use, so it is that one unless --prompt is given (then a warning if the two differ). Without training, the
// prompt the model records (--lora-adapter's, then --model's prompt.json); nothing recorded: the default.

// the record that applies (path, its prompt in *rec); 1 when none exists, -1 after a message
static int read_prompt_record(const Options* o, char** rec, char* path, size_t n) {
    char err[4600];
    int rc = 1;
    if (o->train_file) {
        if (prompt_data_meta(o->train_file, path, n) == 0) rc = prompt_read(path, rec, err, sizeof(err));
    } else {
        const char* dirs[2] = { o->lora_adapter, o->model };
        for (int k = 0; k < 2 && rc == 1; k++)
            if (dirs[k] && model_source(dirs[k]) == SRC_HF_DIR && snprintf(path, n, "%s/" PROMPT_FILE, dirs[k]) < (int)n)
                rc = prompt_read(path, rec, err, sizeof(err));
    }
    if (rc < 0) fprintf(stderr, "error: %s (the record of the prompt: fix the file, or remove it for the default prompt)\n", err);
    return rc;
}

// "warning: A \"x\" (from) is not B \"y\" (from): what follows" on stderr, the prompts as JSON strings
static void warn_prompts(const char* a, const char* a_from, const char* b, const char* b_from, const char* what) {
    fputs("warning: the prompt ", stderr);
    json_put_string(stderr, a);
    fprintf(stderr, " (%s) differs from the prompt ", a_from);
    json_put_string(stderr, b);
    fprintf(stderr, " (%s): %s\n", b_from, what);
}

// --eval-split: its sources were tokenized with the prompt in the meta.json beside it; a warning when that is
// not the run's. 0, or -1 after a message (a malformed meta.json)
static int check_split_prompt(const Options* o, int speak) {
    char path[4400], err[4600];
    char* split = NULL;
    if (!o->eval_split || prompt_data_meta(o->eval_split, path, sizeof(path)) || strcmp(path, o->prompt_from) == 0) return 0;
    int rc = prompt_read(path, &split, err, sizeof(err));
    if (rc < 0) { fprintf(stderr, "error: --eval-split: %s\n", err); return -1; }
    if (rc == 0 && speak && strcmp(split, o->prompt) != 0)
        warn_prompts(split, path, o->prompt, o->prompt_from, "--eval-split's sources are evaluated as they were tokenized");
    free(split);
    return 0;
}

// o->prompt and o->prompt_from as the rule above says (rec: the record's prompt, owned by the caller, or
// NULL; from: a buffer for the record's path). speak: this process prints the warnings. 0, or -1 after a message
static int resolve_prompt(Options* o, char** rec, char* from, size_t n, int speak) {
    int rc = read_prompt_record(o, rec, from, n);
    if (rc < 0) return -1;
    if (o->prompt_given) {
        if (rc == 0 && speak && strcmp(*rec, o->prompt) != 0)
            warn_prompts(o->prompt, "--prompt", *rec, from, o->train_file ? "training reads the data's tokens as they are; "
                         "the model card, prompt.json and --summarize get --prompt's" : "--prompt's is used");
        o->prompt_from = "--prompt";
    } else {
        o->prompt = rc == 0 ? *rec : DEFAULT_PROMPT;
        o->prompt_from = rc == 0 ? from : "the default";
    }
    return check_split_prompt(o, speak);
}

// ----------------------------------------------------------------------------
// the program: run_begin → while (run_next) { step; run_after } → run_end

struct Program {
    Engine engine;
    Options opts;
    Run run;
    HostModel host;         // until the engine is built
    Watchdog watchdog;      // with several ranks and --collective-timeout: the stalled-rank watchdog
    CkptTrainState resumed; // the checkpoint's training state (resume)
    char from[4400];        // where the model came from
    char* prompt;           // the recorded prompt the run uses (resolve_prompt), or NULL
    char prompt_from[4400]; // its file
    int is_resumed, built, training, status; // status: 0, -1 on error, or the signal that stopped training
};

// peft's print_trainable_parameters: the adapter against base + adapter (everything, full fine-tuning)
static void print_config(Engine* e, const Options* o, const char* from) {
    const T5Config* c = &e->config;
    char row[128];
    printf("+------------------------+---------------------------------------------+\n");
    printf("| %-22s | %-43s |\n", "model", from);
    printf("| %-22s | %-43zu |\n", "parameters", e->num_params);
    snprintf(row, sizeof(row), "V=%d C=%d H=%d D=%d F=%d L=%d/%d", c->vocab_size, c->d_model, c->num_heads, c->d_kv, c->d_ff,
             c->num_layers, c->num_decoder_layers);
    printf("| %-22s | %-43s |\n", "shape", row);
    printf("| %-22s | %-43s |\n", "ffn / head", t5_head_desc(c));
    printf("| %-22s | %-43s |\n", "train file", o->train_file ? o->train_file : "(none)");
    printf("| %-22s | %-43s |\n", "val file", o->val_file ? o->val_file : "(none)");
    printf("| %-22s | %-43s |\n", "prompt from", o->prompt_from);
    printf("| %-22s | %-43s |\n", "run directory", o->out_dir ? o->out_dir : "(none)");
    printf("| %-22s | %d x %d x %-35d |\n", "batch x accum x ranks", o->batch_size, o->grad_accum, e->size);
    printf("| %-22s | shuffle %d bucket %d src<=%-6d tgt<=%-10d |\n", "batches", o->shuffle, o->bucket, o->max_src_len, o->max_tgt_len);
    if (o->ladder[0] > 1 || o->ladder[1] > 1) printf("| %-22s | multiples of %-4d / %-4d (capped at the maxima) |\n", "shape ladder", o->ladder[0], o->ladder[1]);
    print_optimizer_rows(o);
    printf("| %-22s | wd %-8g clip %-8g dropout %-14g |\n", "regularisation", (double)o->weight_decay, (double)o->clip, (double)c->dropout);
    printf("| %-22s | %-43s |\n", "LoRA", lora_describe(&e->lora, row, sizeof(row)));
    if (e->ops->print_config && e->self) e->ops->print_config(e, o); // (a dry run has no engine model)
    printf("+------------------------+---------------------------------------------+\n");
    lora_print_trainable(e->num_trainable, e->num_params + (e->lora.r ? e->num_trainable : 0));
}

// rank 0 of a training run holds its run directory's lock until the process ends (llmc/rundir.h)
static int lock_run_dir(Engine* e, const Options* o) {
    char err[1024];
    if (!o->train_file || !o->out_dir || !is_rank0(e) || o->dry_run || rundir_lock(o->out_dir, err, sizeof(err)) == 0) return 0;
    fprintf(stderr, "error: %s\n", err);
    return -1;
}

// the model of this run on every rank, the same on every rank (a CRC over the parameters)
static int setup_host_model(Program* p) {
    Engine* e = &p->engine;
    const Options* o = &p->opts;
    if (all_max(e, lock_run_dir(e, o) != 0)) return -1; // before anything reads or cleans the directory
    int bad = model_setup(o, &p->host, &p->is_resumed, p->from, sizeof(p->from)) != 0;
    if (all_max(e, bad)) { if (!bad) host_model_free(&p->host); return -1; } // all ranks or none
    p->resumed = p->host.train;
    engine_describe(e, &p->host);
    int64_t crc[2] = { params_crc(&p->host), 0 };
    crc[1] = crc[0];
    all_sum_i64(e, crc, 1);
    if (all_max(e, (int)(crc[0] != crc[1] * e->size))) { // Σ crc = size · crc on every rank
        if (is_rank0(e)) fprintf(stderr, "error: the ranks loaded different models from --model %s\n", o->model);
        return -1;
    }
    if (p->is_resumed)
        printf("resuming from %s at step %lld (epoch %lld, batch %lld)\n", p->from, (long long)p->resumed.run_step,
               (long long)p->resumed.epoch, (long long)p->resumed.batch);
    if (all_max(e, o->train_file && o->eval_split && !o->bench && check_eval_inputs(&e->config, o) != 0)) return -1;
    return 0;
}

// --dry-run: everything the run would do up to the engine, then a summary; nothing written
static int dry_run(Program* p) {
    const Options* o = &p->opts;
    Engine* e = &p->engine;
    print_config(e, o, p->from);
    int rc = 0;
    if (o->train_file) {
        p->run.e = e; p->run.o = o;
        rc = run_open(&p->run, p->is_resumed ? &p->resumed : NULL, p->from, 1);
        run_close(&p->run);
    }
    if (rc == 0 && o->eval_split && !o->train_file) rc = check_eval_inputs(&e->config, o);
    if (rc == 0) printf("dry run: %s host side ready (model %s from %s, %zu parameters, %zu trainable); stopping before "
                        "the engine is built\n", e->ops->binary, o->model, p->host.from, e->num_params, e->num_trainable);
    return rc;
}

// the commands that need no training loop: summarize, bench, generation bench. 1 when one ran (status set)
static int run_command(Program* p) {
    Engine* e = &p->engine;
    const Options* o = &p->opts;
    if (o->summarize) { p->status = run_summarize(e, o); return 1; } // stdout carries the summary alone
    print_config(e, o, p->from);
    if (o->gen_bench && e->ops->gen_bench) { p->status = is_rank0(e) ? e->ops->gen_bench(e, o) : 0; return 1; }
    if (o->bench) { p->status = e->ops->bench(e, o); return 1; }
    return 0;
}

// the watchdog fired (on its own thread): the run's last record says so, then every rank ends
static void on_watchdog(void* ctx, const char* what) {
    Program* p = (Program*)ctx;
    FILE* f = p->run.metrics;
    if (f) { // one write(2) of a whole line: the training thread may be inside stdio, stuck
        char line[1400];
        int n = snprintf(line, sizeof(line), "{\"type\": \"watchdog\", \"step\": %lld, \"rank\": %d, \"message\": ", p->run.step, p->engine.rank);
        for (const char* c = what; *c && n < (int)sizeof(line) - 8; c++) {
            if (*c == '"' || *c == '\\') line[n++] = '\\';
            line[n++] = *c == '\n' ? ' ' : *c;
        }
        n += snprintf(line + n, sizeof(line) - (size_t)n, "\"}\n");
        if (write(fileno(f), line, (size_t)n) < 0) { /* the abort goes on */ }
        fsync(fileno(f));
    }
    if (p->engine.ops->abort) p->engine.ops->abort(&p->engine, WATCHDOG_EXIT_CODE);
}

// with several ranks: the watchdog over every wait for the others (--collective-timeout)
static int start_watchdog(Program* p) {
    Engine* e = &p->engine;
    if (e->size < 2 || p->opts.collective_timeout <= 0.0f) return 0;
    char err[256];
    WatchdogConfig c;
    memset(&c, 0, sizeof(c));
    c.timeout_s = p->opts.collective_timeout; c.rank = e->rank; c.on_timeout = on_watchdog; c.ctx = p;
    if (watchdog_start(&p->watchdog, &c, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    e->watchdog = &p->watchdog;
    return 0;
}

static void stop_watchdog(Program* p) {
    if (!p->engine.watchdog) return;
    watchdog_stop(&p->watchdog);
    p->engine.watchdog = NULL;
}

// options → processes → model → (dry run | command | training run opened); 0 to go on with run_next
// (p->training), or the exit code's sign in p->status
static inline int run_begin(Program* p, int argc, char** argv, const EngineOps* ops) {
    memset(p, 0, sizeof(*p));
    Engine* e = &p->engine;
    e->ops = ops; e->size = 1; e->local_size = 1;
    p->opts = options_default();
    Options* o = &p->opts;
    int rc = options_parse(argc, argv, o, ops->kind, ops->binary);
    if (rc) { p->status = rc > 0 ? 0 : -1; return -1; }
    if (o->async_checkpoint < 0) o->async_checkpoint = ops->async_default;
    if (o->resume && strcmp(o->resume, "auto") == 0) { // a requeued job's one command: latest if there is one
        char dir[4400];
        long long steps[1];
        snprintf(dir, sizeof(dir), "%s/checkpoints", o->out_dir);
        o->resume = ckpt_list(dir, steps, 1) > 0 ? "latest" : NULL;
        if (!o->resume) printf("--resume auto: no checkpoint in %s yet: a fresh run\n", dir);
    }
    if (!options_has_work(o)) {
        fprintf(stderr, "error: nothing to do: give --train-file, --eval-split, --summarize, --bench, --save-hf, --save-checkpoint, "
                "--save-lora or --merge-lora%s\n  (to fine-tune on DialogSum: python3 prepro_dialogsum.py, then ./%s --model "
                "DIR|PRESET --train-file out/dialogsum/train.bin; the README's first command, make dialogsum, runs the whole job)\n",
                ops->kind == ENGINE_GPU ? " (or --gen-bench, --plan-memory)" : "", ops->binary);
        p->status = -1;
        return -1;
    }
    if (o->plan_memory > 0.0f && ops->plan_memory) { p->status = ops->plan_memory(o); return -1; } // no device needed
    if (ops->init && ops->init(e, &argc, &argv, o)) { p->status = -1; return -1; }
    if (e->rank > 0 && !freopen("/dev/null", "w", stdout)) { p->status = -1; return -1; } // rank 0 speaks for all
    if (e->size > 1) printf("data parallel: %d ranks\n", e->size);
    if (resolve_prompt(o, &p->prompt, p->prompt_from, sizeof(p->prompt_from), is_rank0(e))) { p->status = -1; return -1; }
    if (!o->dry_run && start_watchdog(p)) { p->status = -1; return -1; }
    if (setup_host_model(p)) { p->status = -1; return -1; }
    if (o->dry_run) { p->status = dry_run(p); return -1; }
    if (ops->build(e, &p->host, o, 0)) { p->status = -1; return -1; }
    p->built = 1;
    host_model_free(&p->host);
    if (o->out_dir && is_rank0(e) && o->train_file) ckpt_remove_stale(o->out_dir);
    if (run_command(p)) return -1;
    if (!o->train_file) return 0;
    Run* run = &p->run;
    run->e = e; run->o = o;
    if (all_max(e, run_open(run, p->is_resumed ? &p->resumed : NULL, p->from, 0) != 0)) { p->status = -1; return -1; } // all ranks or none
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    signal(SIGUSR1, on_stop_signal); // what Slurm's --signal and mpirun forward (docs/durability.md)
    signal(SIGHUP, on_stop_signal);  // the SSH session to a rented machine dropped: stop with a checkpoint
    signal(SIGPIPE, SIG_IGN);        // a reader of stdout gone (| tee, | head): metrics.jsonl still records every step
    p->training = 1;
    return 0;
}

// the next step's inputs (StepIn), or 0 when training is over (or failed: p->status)
static inline int run_next(Program* p, StepIn* in) {
    Run* run = &p->run;
    if (!p->training || p->status || run->step >= run->total_steps) return 0;
    run->t0 = now_ms();
    run->epoch = run->train.epoch;
    p->engine.run_step = run->step + 1;
    if (step_inputs(run, run->step, in, &run->last) == 0) return 1;
    fprintf(stderr, "error: %s (rank %d): %s\n", p->opts.train_file, p->engine.rank, run->last.error);
    p->status = -1;
    return 0;
}

// after the engine's step: the log, skips, evaluation and checkpoint cadence, stop signals
static inline void run_after(Program* p, const StepOut* out) {
    Run* run = &p->run;
    Engine* e = &p->engine;
    const Options* o = &p->opts;
    StepResult* r = &run->last;
    r->loss = out->loss; r->grad_norm = out->grad_norm; r->skipped = out->skipped; r->host_ms = out->host_ms;
    if (!r->skipped) e->opt_step++;
    double ms = now_ms() - run->t0;
    long long k = run->step;
    run->ms_sum += ms; run->timed++;
    run->skipped += r->skipped;
    run->in_a_row = r->skipped ? run->in_a_row + 1 : 0;
    run->step = k + 1;
    if (e->ops->peak_mib) { double mib = e->ops->peak_mib(e); if (mib > run->peak_mib) run->peak_mib = mib; }
    if (is_rank0(e)) log_step(run, r, k, ms);
    if (run->in_a_row >= o->max_skips) { // the weights never saw these steps; the data or the model is broken
        fprintf(stderr, "error: %d consecutive steps had a non-finite loss or gradient norm (last: step %lld); stopping "
                "(--max-skips)\n", run->in_a_row, k + 1);
        p->status = -1;
        return;
    }
    int last = k + 1 == run->total_steps;
    if (run->has_val && o->eval_every && (k + 1) % o->eval_every == 0 && !last) {
        if (log_eval(run)) { p->status = -1; return; }
        if (o->early_stop && run->best.stale >= o->early_stop) { // the steps end here; what follows a last step follows
            printf("early stop: %d evaluations without a better %s than %.6f (step %lld)\n", run->best.stale, KEEP_NAMES[o->keep_best],
                   run->best.value, run->best.step);
            run->total_steps = run->step;
            last = 1; // its checkpoint is the final one (train_finish), not a second write of the same step
        }
    }
    if (o->checkpoint_every && (k + 1) % o->checkpoint_every == 0 && !last && run_checkpoint(run)) { p->status = -1; return; }
    // every rank stops after the same step: on a stop signal, or when rank 0's background checkpoint
    // write failed (reported here, at the first step boundary after it, as a failed write is)
    char err[1024];
    int failed = run->async && async_save_poll(&run->saver, err, sizeof(err)) != 0;
    if (failed) fprintf(stderr, "error: checkpoint: %s\n", err);
    int sig = all_max(e, failed ? 1000 : (int)g_stop_signal);
    if (sig) p->status = sig >= 1000 ? -1 : sig;
}

// --keep-best after training: the engine rebuilt from the best checkpoint (unless the last weights are the
// best), for the outputs and the evaluation that follow, as HF's load_best_model_at_end
static int reload_best(Program* p) {
    Run* run = &p->run;
    Engine* e = &p->engine;
    const Options* o = &p->opts;
    if (!o->keep_best || run->best.step == 0) return 0;
    e->best_step = run->best.step; e->best_value = run->best.value; e->run_step = run->step;
    if (run->best.step == run->step) return 0;
    char path[4400], err[1024];
    best_path(o, run->best.step, path, sizeof(path));
    HostModel h;
    int bad = load_resumed(o, path, &h, err, sizeof(err)) != 0;
    if (bad) fprintf(stderr, "error: the best checkpoint: %s\n", err);
    if (all_max(e, bad)) return -1;
    engine_free(e);
    p->built = 0;
    long long best = e->best_step;
    double value = e->best_value;
    engine_describe(e, &h);
    e->best_step = best; e->best_value = value; e->run_step = run->step;
    bad = e->ops->build(e, &h, o, 0) != 0;
    host_model_free(&h);
    if (all_max(e, bad)) return -1;
    p->built = 1;
    printf("the outputs and the evaluation use the best weights: %s %.6f at step %lld of %lld (%s)\n", KEEP_NAMES[o->keep_best],
           value, best, run->step, path);
    return 0;
}

// after training (or a command): the final evaluation and checkpoint, the outputs, the evaluation with
// its report, the model card; the process exit code
static inline int run_end(Program* p) {
    Engine* e = &p->engine;
    const Options* o = &p->opts;
    int rc = p->status;
    if (p->training) rc = train_finish(&p->run, rc);
    run_close(&p->run);
    stop_watchdog(p); // what follows is rank 0's alone (evaluation) or ends with the process
    if (rc == 0 && p->training) rc = reload_best(p);
    int trains_or_exports = p->built && !o->summarize && !o->bench && !o->gen_bench;
    if (rc == 0 && trains_or_exports) rc = save_outputs(e, o);
    if (rc == 0 && trains_or_exports && o->eval_split && is_rank0(e)) rc = run_eval(e, o, o->train_file ? "fine-tuned" : p->from);
    if (rc == 0 && trains_or_exports && o->eval_split && is_rank0(e)) rc = update_card(e, o);
    if (p->built && e->ops->report_end && is_rank0(e)) e->ops->report_end(e, o);
    if (p->built) engine_free(e);
    host_model_free(&p->host);
    free(p->prompt);
    if (e->ops->finalize) e->ops->finalize(e);
    if (rc > 0) return 128 + rc; // stopped by a signal, checkpoint written: the shell's convention
    return rc ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif // T5_RUN_H
