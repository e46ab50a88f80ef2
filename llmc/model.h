// model.h — the model of a run on the host, whatever the engine: a preset (T5's own random
// initialisation), an HF directory, a native checkpoint, a peft adapter over any of them, or the
// checkpoint a run resumes from (a full one, or an adapter checkpoint over --model). Everything lands
// in a HostModel (llmc/engine.h), from which an engine builds itself. Loaders print what went wrong
// and return -1; only main exits.
#ifndef T5_MODEL_H
#define T5_MODEL_H

#include <stdio.h>       // defines: fprintf, snprintf
#include <stdlib.h>      // defines: free
#include <string.h>      // defines: memset, strcmp
#include <math.h>        // defines: sqrtf
#include <sys/stat.h>    // defines: stat, S_ISDIR
#include "utils.h"       // defines: mallocCheck
#include "engine.h"      // defines: HostModel, Options
#include "t5.h"          // defines: T5Config, T5Layout, t5_layout, t5_config_preset, t5_is_rmsnorm
#include "rng.h"         // defines: Rng, rng_init, rng_normal
#include "hf.h"          // defines: t5_load_hf_dir
#include "checkpoint.h"  // defines: ckpt_load, CkptInfo
#include "lora.h"        // defines: LoraFlags, lora_load_dir, lora_ckpt_load, lora_init, lora_base_fingerprint
#include "rundir.h"      // defines: ckpt_list, ckpt_path, check_fresh_run_dir
#include "crc32.h"       // defines: Crc32Table, crc32_update

// from a preset name, an HF directory (config.json + safetensors) or a native checkpoint file
typedef enum { SRC_PRESET, SRC_HF_DIR, SRC_CHECKPOINT } ModelSource;

static ModelSource model_source(const char* spec) {
    struct stat st;
    if (stat(spec, &st) == 0) return S_ISDIR(st.st_mode) ? SRC_HF_DIR : SRC_CHECKPOINT;
    return SRC_PRESET;
}

// T5's own initialisation (transformers T5PreTrainedModel._init_weights, factor 1.0):
//   shared, untied lm_head ~ N(0, 1)  ·  q ~ N(0, (C·D)^-0.5)
//   k, v ~ N(0, C^-0.5)  ·  o ~ N(0, (H·D)^-0.5)  ·  wi ~ N(0, C^-0.5)  ·  wo ~ N(0, F^-0.5)
//   relative_attention_bias ~ N(0, C^-0.5)  ·  RMSNorm weights = 1
static float t5_init_std(const T5Config* c, int i) {
    float C = (float)c->d_model, D = (float)c->d_kv, HD = (float)(c->num_heads * c->d_kv), F = (float)c->d_ff;
    switch (i) {
        case P_SHARED: case P_LM_HEAD: return 1.0f;
        case P_ENC_Q: case P_DEC_Q: case P_DEC_CQ: return 1.0f / sqrtf(C * D);
        case P_ENC_O: case P_DEC_O: case P_DEC_CO: return 1.0f / sqrtf(HD);
        case P_ENC_WO: case P_DEC_WO: return 1.0f / sqrtf(F);
        default: return 1.0f / sqrtf(C); // k, v, wi, relative bias
    }
}

// For training from scratch (--init scratch, the default of a preset): the same, except an untied lm_head
// drawn with std d_model^-0.5 instead of 1.0. HF's 1.0 assumes weights that will be overwritten by a
// pretrained checkpoint; trained from it, the head's logits start with std ≈ sqrt(d_model) (16 for
// d_model 256), the first loss is ~68 nats instead of ln(vocab) ≈ 10.4, and the first hundreds of steps
// only shrink the head. With std d_model^-0.5 the logits start with std ≈ 1: loss ≈ ln(V) + 1/2. (A tied
// head already has this scale: the decoder output is multiplied by d_model^-0.5.)
typedef enum { INIT_SCRATCH = 0, INIT_HF = 1 } InitKind;

// params (layout order) drawn as above from one stream, tensor by tensor
static void t5_init_params_as(const T5Config* c, float* params, uint64_t seed, int kind) {
    T5Layout L;
    t5_layout(c, &L);
    Rng rng;
    rng_init(&rng, seed);
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &L.t[i];
        float* p = params + t->offset;
        if (t5_is_rmsnorm(i)) { for (size_t j = 0; j < t->size; j++) p[j] = 1.0f; continue; }
        float std = kind == INIT_SCRATCH && i == P_LM_HEAD ? 1.0f / sqrtf((float)c->d_model) : t5_init_std(c, i);
        for (size_t j = 0; j < t->size; j++) p[j] = std * rng_normal(&rng);
    }
}

// transformers' own initialisation exactly (the parity tests' models)
static void t5_init_params(const T5Config* c, float* params, uint64_t seed) { t5_init_params_as(c, params, seed, INIT_HF); }

// a preset with the explicitly given dimensions replacing its own
static int config_from_preset(const Options* o, const char* spec, T5Config* c) {
    if (t5_config_preset(c, spec)) {
        fprintf(stderr, "error: model '%s' is not a directory, a file, or a preset (see --help)\n", spec);
        return -1;
    }
    const T5Config* d = &o->dims;
    if (d->vocab_size) c->vocab_size = d->vocab_size;
    if (d->d_model) c->d_model = d->d_model;
    if (d->d_kv) c->d_kv = d->d_kv;
    if (d->num_heads) c->num_heads = d->num_heads;
    if (d->d_ff) c->d_ff = d->d_ff;
    if (d->num_layers) { c->num_layers = d->num_layers; c->num_decoder_layers = d->num_layers; }
    if (d->num_decoder_layers) c->num_decoder_layers = d->num_decoder_layers;
    if (d->num_buckets) c->num_buckets = d->num_buckets;
    if (d->max_distance) c->max_distance = d->max_distance;
    if (d->tied >= 0) c->tied = c->scale_out = d->tied;
    if (d->scale_out >= 0) c->scale_out = d->scale_out;
    if (d->gated >= 0) { c->gated = d->gated; c->act = d->act; }
    const char* bad = t5_config_check(c);
    if (bad) { fprintf(stderr, "error: invalid model dimensions: %s\n", bad); return -1; }
    return 0;
}

// whether any of --vocab-size, --d-model, ..., --tied, --scale-output, --ffn was given (they shape a preset)
static int dims_given(const T5Config* d) {
    return d->vocab_size || d->d_model || d->d_kv || d->num_heads || d->d_ff || d->num_layers || d->num_decoder_layers ||
           d->num_buckets || d->max_distance || d->tied >= 0 || d->scale_out >= 0 || d->gated >= 0;
}

// the parts of a config that fix the parameter layout and the computation
static int same_shape(const T5Config* a, const T5Config* b) {
    return a->vocab_size == b->vocab_size && a->d_model == b->d_model && a->d_kv == b->d_kv && a->num_heads == b->num_heads &&
           a->d_ff == b->d_ff && a->num_layers == b->num_layers && a->num_decoder_layers == b->num_decoder_layers &&
           a->num_buckets == b->num_buckets && a->max_distance == b->max_distance && a->act == b->act &&
           a->gated == b->gated && a->tied == b->tied && a->scale_out == b->scale_out;
}

static size_t host_model_size(const HostModel* h) {
    T5Layout L;
    t5_layout(&h->config, &L);
    return L.total;
}

static void host_model_free(HostModel* h) {
    free(h->params); free(h->m); free(h->v); free(h->adapter); free(h->af);
    h->params = h->m = h->v = h->adapter = h->af = NULL;
}

// a checkpoint's optimizer state must be the run's optimizer's (kind, and Adafactor's β1 on or off: its
// state differs); 0, or -1 with a message naming PATH
static int host_opt_match(const Options* o, const HostModel* h, const char* path, char* err, size_t errlen) {
    int has = h->m || h->af;
    if (!has) return 0;
    if (h->opt_kind != o->optimizer) {
        snprintf(err, errlen, "%s holds %s state; the run asks for --optimizer %s (resume with the optimizer it was trained with)",
                 path, optim_name(h->opt_kind), optim_name(o->optimizer));
        return -1;
    }
    if (h->opt_kind == OPTIM_ADAFACTOR && h->af_beta1 != (o->af_beta1 >= 0.0)) {
        snprintf(err, errlen, "%s holds Adafactor state %s a first moment; the run %s --adafactor-beta1", path,
                 h->af_beta1 ? "with" : "without", h->af_beta1 ? "lacks" : "gives");
        return -1;
    }
    return 0;
}

// the LoRA layout of h's adapter (h->lora.r > 0)
static size_t host_lora_size(const HostModel* h) {
    T5Layout base;
    LoraLayout L;
    t5_layout(&h->config, &base);
    lora_layout(&h->lora, &base, h->config.gated, &L);
    return L.total;
}

// SPEC (--model, --baseline-model, --compare-model) into h: a preset gets the dimension flags and --seed
static int load_host_model(const Options* o, const char* spec, HostModel* h) {
    char err[1024];
    memset(h, 0, sizeof(*h));
    switch (model_source(spec)) {
        case SRC_HF_DIR:
            if (t5_load_hf_dir(spec, &h->config, &h->params, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
            snprintf(h->from, sizeof(h->from), "HF directory");
            break;
        case SRC_CHECKPOINT: {
            if (lora_ckpt_is(spec)) { // it holds no base weights: name what to do instead
                fprintf(stderr, "error: %s is a LoRA adapter checkpoint, not a model: give its base as --model (and --resume it, "
                        "or use the run's adapter directory with --lora-adapter)\n", spec);
                return -1;
            }
            CkptInfo info;
            if (ckpt_load_opt(spec, &info, &h->params, &h->m, &h->v, &h->af, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
            h->config = info.config; h->step = info.step; h->train = info.train;
            h->opt_kind = info.opt_kind; h->af_beta1 = info.af_beta1; h->af_n = (size_t)(h->af ? info.opt_floats : 0);
            if (host_opt_match(o, h, spec, err, sizeof(err))) { // a start (or an evaluated model), not a resume
                fprintf(stderr, "note: %s; its optimizer state is not used\n", err);
                free(h->m); free(h->v); free(h->af);
                h->m = h->v = h->af = NULL;
                h->af_n = 0; h->step = 0;
            }
            snprintf(h->from, sizeof(h->from), "checkpoint");
            break;
        }
        default:
            if (config_from_preset(o, spec, &h->config)) return -1;
            h->params = (float*)mallocCheck(host_model_size(h) * sizeof(float));
            t5_init_params_as(&h->config, h->params, (uint64_t)o->seed, o->init);
            snprintf(h->from, sizeof(h->from), "random init (%s, seed %lld)", o->init == INIT_HF ? "hf" : "scratch", o->seed);
            fprintf(stderr, "note: model %s: RANDOMLY INITIALISED %s-shaped T5 (seed %lld), not pretrained weights\n", spec, spec, o->seed);
    }
    if (o->dropout >= 0.0f) h->config.dropout = o->dropout;
    return 0;
}

// h's base as it is before LoRA: no optimizer state of its own, its fingerprint for adapter checkpoints
static void host_freeze_base(HostModel* h) {
    free(h->m); free(h->v); free(h->af); // a full checkpoint as the base: its optimizer state was the base's
    h->m = h->v = h->af = NULL;
    h->af_n = 0;
    h->step = 0;
    h->base_crc = lora_base_fingerprint(h->params, host_model_size(h));
}

// the peft adapter in DIR onto h, its config and weights as the files say; `f` (NULL: none) holds LoRA
// flags that may repeat the adapter's config, not contradict it
static int host_attach_adapter(HostModel* h, const char* dir, const LoraFlags* f) {
    char err[5000];
    const char* bad = NULL;
    if (lora_load_dir(dir, &h->config, &h->lora, &h->adapter, err, sizeof(err))) bad = err;
    else if (f) bad = lora_flags_contradict(f, &h->lora, &h->config, err, sizeof(err));
    if (bad) { fprintf(stderr, "error: %s\n", bad); h->lora.r = 0; return -1; }
    host_freeze_base(h);
    return 0;
}

// a model of the evaluation (--compare-model, --baseline-model): SPEC with the peft adapter in DIR (NULL: none)
static int load_adapted_model(const Options* o, const char* spec, const char* adapter, HostModel* h) {
    if (load_host_model(o, spec, h)) return -1;
    if (!adapter || host_attach_adapter(h, adapter, NULL) == 0) return 0;
    host_model_free(h);
    return -1;
}

static LoraFlags lora_flags_of(const Options* o) {
    LoraFlags f = { o->lora_r, o->lora_alpha, o->lora_dropout, o->lora_targets, o->lora_adapter };
    return f;
}

// LoRA as the flags ask, once the base is loaded: --lora-adapter's config and weights (the flags may repeat
// them, not contradict them), or a fresh adapter of rank --lora-r with peft's init and defaults (alpha 8,
// dropout 0, q,v). 0, or -1 after a message
static int lora_host_setup(const Options* o, HostModel* h) {
    char err[1400];
    LoraFlags f = lora_flags_of(o);
    if (f.adapter) return host_attach_adapter(h, f.adapter, &f);
    if (f.r <= 0) return 0;
    const char* bad = lora_flags_config(&f, &h->config, &h->lora, err, sizeof(err));
    if (bad) { fprintf(stderr, "error: %s\n", bad); h->lora.r = 0; return -1; }
    T5Layout base;
    LoraLayout L;
    t5_layout(&h->config, &base);
    lora_layout(&h->lora, &base, h->config.gated, &L);
    h->adapter = (float*)mallocCheck(L.total * sizeof(float) + 1);
    lora_init(&L, h->adapter, lora_init_seed((uint64_t)o->seed));
    host_freeze_base(h);
    return 0;
}

// a checkpoint to resume: a full one, or an adapter checkpoint (llmc/lora.h) over --model, the base it was
// trained on (its fingerprint must match); 0, or -1 with a message in err
static int load_resumed(const Options* o, const char* path, HostModel* h, char* err, size_t errlen) {
    if (!lora_ckpt_is(path)) {
        CkptInfo info;
        memset(h, 0, sizeof(*h));
        if (ckpt_load_opt(path, &info, &h->params, &h->m, &h->v, &h->af, err, errlen)) return -1;
        h->config = info.config; h->step = info.step; h->train = info.train;
        h->opt_kind = info.opt_kind; h->af_beta1 = info.af_beta1; h->af_n = (size_t)(h->af ? info.opt_floats : 0);
        if (host_opt_match(o, h, path, err, errlen)) { host_model_free(h); return -1; }
        snprintf(h->from, sizeof(h->from), "checkpoint");
        if (o->dropout >= 0.0f) h->config.dropout = o->dropout;
        return 0;
    }
    if (load_host_model(o, o->model, h)) { snprintf(err, errlen, "%s: cannot load its base model --model %s", path, o->model); return -1; }
    host_freeze_base(h);
    LoraCkptInfo info;
    if (lora_ckpt_load_opt(path, &h->config, (int64_t)host_model_size(h), h->base_crc, &info, &h->adapter, &h->m, &h->v, &h->af,
                           err, errlen)) {
        host_model_free(h);
        return -1;
    }
    h->lora = info.config; h->step = info.step;
    h->opt_kind = info.opt_kind; h->af_beta1 = info.af_beta1; h->af_n = (size_t)(h->af ? info.opt_floats : 0);
    if (host_opt_match(o, h, path, err, errlen)) { host_model_free(h); return -1; }
    memcpy(&h->train, info.train, sizeof(h->train));
    snprintf(h->from, sizeof(h->from), "LoRA adapter checkpoint (base: --model)");
    return 0;
}

// the checkpoint to resume: --resume PATH as given, or the newest one in OUT/checkpoints that loads and
// checks out (a corrupted newer one is reported and skipped, never deleted); `used` names it. 0 on success
static int resume_model(const Options* o, HostModel* h, char* used, size_t usedlen) {
    char err[1024], dir[4096];
    if (strcmp(o->resume, "latest") != 0) {
        snprintf(used, usedlen, "%s", o->resume);
        if (load_resumed(o, o->resume, h, err, sizeof(err)) == 0) return 0;
        fprintf(stderr, "error: cannot resume: %s\n", err);
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s/checkpoints", o->out_dir);
    long long steps[CKPT_MAX_LISTED];
    int n = ckpt_list(dir, steps, CKPT_MAX_LISTED);
    for (int i = 0; i < n; i++) {
        ckpt_path(used, usedlen, o->out_dir, steps[i]);
        if (load_resumed(o, used, h, err, sizeof(err)) == 0) return 0;
        fprintf(stderr, "warning: skipping checkpoint: %s\n", err);
    }
    fprintf(stderr, "error: cannot resume: no valid checkpoint in %s\n", dir);
    return -1;
}

// a resumed model checked against the flags: explicit dimensions must describe the checkpoint's model (not
// be silently dropped); LoRA flags must ask for LoRA exactly when it is an adapter checkpoint
static int check_resumed(const Options* o, const HostModel* h, const char* from) {
    T5Config want;
    if (model_source(o->model) == SRC_PRESET && dims_given(&o->dims) &&
        (config_from_preset(o, o->model, &want) || !same_shape(&want, &h->config))) {
        const T5Config* c = &h->config;
        fprintf(stderr, "error: %s holds a V=%d C=%d H=%d D=%d F=%d L=%d/%d model, not the one --model %s and the dimension "
                "flags describe\n", from, c->vocab_size, c->d_model, c->num_heads, c->d_kv, c->d_ff, c->num_layers,
                c->num_decoder_layers, o->model);
        return -1;
    }
    char msg[5000];
    LoraFlags f = lora_flags_of(o);
    const char* mismatch = lora_flags_resume(&f, h->lora.r, from, msg, sizeof(msg));
    if (mismatch) { fprintf(stderr, "error: %s\n", mismatch); return -1; }
    return 0;
}

// the model of this run: a resumed checkpoint (*resumed = 1, `from` names it), or --model with LoRA as the
// flags ask. A fresh training run refuses a run directory that holds checkpoints. 0, or -1 after a message
static int model_setup(const Options* o, HostModel* h, int* resumed, char* from, size_t fromlen) {
    *resumed = 0;
    memset(h, 0, sizeof(*h));
    snprintf(from, fromlen, "%s", o->model);
    if (dims_given(&o->dims) && model_source(o->model) != SRC_PRESET &&
        !(o->baseline_model && model_source(o->baseline_model) == SRC_PRESET)) {
        fprintf(stderr, "error: the dimension flags (--d-model, ...) shape a preset, and neither --model nor --baseline-model "
                "is one (%s brings its own shape)\n", o->model);
        return -1;
    }
    if (o->resume) {
        if (resume_model(o, h, from, fromlen)) return -1;
        if (check_resumed(o, h, from)) { host_model_free(h); return -1; }
        *resumed = 1;
        return 0;
    }
    if (o->out_dir && o->train_file && check_fresh_run_dir(o->out_dir)) return -1;
    if (load_host_model(o, o->model, h)) return -1;
    if (lora_host_setup(o, h) == 0) return 0;
    host_model_free(h);
    return -1;
}

// CRC-32 of the host parameters: every rank must start from the same model
static int64_t params_crc(const HostModel* h) {
    Crc32Table T;
    crc32_table_init(&T);
    return (int64_t)crc32_update(&T, 0, h->params, host_model_size(h) * sizeof(float));
}

#endif // T5_MODEL_H
