// lora.h — LoRA (peft's LoraConfig / lora.Linear) as an adapter over the one parameter layout of
// t5.h: its config, the adapter layout (which layout tensors get A and B, where in one flat buffer),
// peft's key names and file format (adapter_config.json + adapter_model.safetensors), the merge,
// and the adapter checkpoint. Both engines include it; nothing here is CPU- or GPU-specific.
//
// The math is peft's (tuners/lora/layer.py, Linear.forward, get_delta_weight):
//   y = W x + s · B (A dropout(x))       A (r, in), B (out, r), s = α/r (α/√r with use_rslora)
//   merged: W' = W + s · (B A)
// peft matches target names against module names: "q" matches every module whose name ends in ".q".
// On T5 the names are q, k, v, o (encoder self-attention, decoder self- and cross-attention alike),
// wi (ReLU FFN) or wi_0 / wi_1 (gated FFN), and wo.
#ifndef T5_LORA_H
#define T5_LORA_H

#include <stdio.h>       // defines: snprintf, FILE
#include <stdint.h>      // defines: int64_t, uint32_t
#include <stdlib.h>      // defines: malloc, calloc, free
#include <string.h>      // defines: strcmp, strlen, memcpy
#include <math.h>        // defines: sqrtf, floor
#include <regex.h>       // defines: regex_t, regcomp, regexec, regfree, regerror (POSIX)
#include "t5.h"          // defines: T5Config, T5Layout, t5_layout, t5_tensor_name, P_* tensor ids
#include "optim.h"       // defines: OptSlice, adafactor_layout_floats, OPTIM_ADAMW, OPTIM_ADAFACTOR
#include "checkpoint.h"  // defines: CkptOpt, ckpt_opt_floats, ckpt_pack_opt, ckpt_write_file
#include "json.h"        // defines: JsonValue, json_read_file, json_find, json_free
#include "safetensors.h" // defines: StFile, st_open, st_find, st_read_f32, st_write_f32, st_close
#include "fileio.h"      // defines: mkdir_p, AtomicFile, atomic_open, atomic_write, atomic_close, file_size_of, disk_space_check_for
#include "crc32.h"       // defines: Crc32Table, crc32_table_init, crc32_update
#include "rng.h"         // defines: Rng, rng_init, rng_uniform, mix64

// ----------------------------------------------------------------------------
// configuration

// peft's T5 module names, in the order adapter_config.json lists them when this code writes it
enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_WI, LORA_WI_0, LORA_WI_1, LORA_WO, LORA_NUM_TARGETS };
static const char* const LORA_TARGET_NAMES[LORA_NUM_TARGETS] = { "q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo" };
#define LORA_DEFAULT_TARGETS ((1u << LORA_Q) | (1u << LORA_V)) // peft's default for T5

typedef struct {
    int r;            // rank; 0 = LoRA off (full fine-tuning)
    float alpha;      // lora_alpha
    float dropout;    // lora_dropout on each targeted Linear's input
    unsigned targets; // bit LORA_* set: that module name is targeted
    int rslora;       // use_rslora: scale α/√r instead of α/r
} LoraConfig;

static inline float lora_scale(const LoraConfig* c) {
    return c->rslora ? c->alpha / sqrtf((float)c->r) : c->alpha / (float)c->r;
}

// the peft module name of layout tensor i, or -1 for tensors LoRA never wraps (norms, embeddings, head)
static inline int lora_target_of(int i, int gated) {
    switch (i) {
        case P_ENC_Q: case P_DEC_Q: case P_DEC_CQ: return LORA_Q;
        case P_ENC_K: case P_DEC_K: case P_DEC_CK: return LORA_K;
        case P_ENC_V: case P_DEC_V: case P_DEC_CV: return LORA_V;
        case P_ENC_O: case P_DEC_O: case P_DEC_CO: return LORA_O;
        case P_ENC_WI0: case P_DEC_WI0: return gated ? LORA_WI_0 : LORA_WI;
        case P_ENC_WI1: case P_DEC_WI1: return gated ? LORA_WI_1 : -1;
        case P_ENC_WO: case P_DEC_WO: return LORA_WO;
        default: return -1;
    }
}

static inline int lora_target_index(const char* name) {
    for (int t = 0; t < LORA_NUM_TARGETS; t++) if (strcmp(name, LORA_TARGET_NAMES[t]) == 0) return t;
    return -1;
}

// peft's "all-linear": every Linear but the output layer; resolved against a model by lora_resolve_targets
#define LORA_ALL_LINEAR (1u << 31)

// the names that wrap some Linear of a model of config m (peft matches "wi" only in a ReLU FFN and
// "wi_0"/"wi_1" only in a gated one)
static inline unsigned lora_model_targets(const T5Config* m) {
    unsigned matched = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        int t = lora_target_of(i, m->gated);
        if (t >= 0) matched |= 1u << t;
    }
    return matched;
}

// a mask with LORA_ALL_LINEAR: that bit replaced by every name the model has
static inline unsigned lora_resolve_targets(unsigned mask, const T5Config* m) {
    return mask & LORA_ALL_LINEAR ? (mask & ~LORA_ALL_LINEAR) | lora_model_targets(m) : mask;
}

// "q,v" (or "all-linear") -> bit mask; 0, or -1 with a message naming the unknown entry
static inline int lora_parse_targets(const char* list, unsigned* mask, char* err, size_t errlen) {
    *mask = 0;
    const char* p = list;
    while (1) {
        const char* end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[32];
        if (n == 0 || n >= sizeof(name)) { snprintf(err, errlen, "--lora-targets '%s': empty or overlong entry", list); return -1; }
        memcpy(name, p, n); name[n] = 0;
        int t = lora_target_index(name);
        if (t < 0 && strcmp(name, "all-linear") != 0) {
            snprintf(err, errlen, "--lora-targets: unknown module name '%s' (T5's are q, k, v, o, wi, wi_0, wi_1, wo, or all-linear)", name);
            return -1;
        }
        *mask |= t < 0 ? LORA_ALL_LINEAR : 1u << t;
        if (!end) return 0;
        p = end + 1;
    }
}

// "q,v": the targets as a comma-separated list in LORA_* order
static inline void lora_targets_string(unsigned mask, char* buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (mask & (1u << t)) len += (size_t)snprintf(buf + len, len < n ? n - len : 0, "%s%s", len ? "," : "", LORA_TARGET_NAMES[t]);
}

// the config fits the model: rank and alpha in range, every target name wraps some Linear of it
// (peft matches "wi" only in a ReLU FFN and "wi_0"/"wi_1" only in a gated one). NULL or a message.
static inline const char* lora_config_check(const LoraConfig* c, const T5Config* m, char* buf, size_t n) {
    if (c->r < 1 || c->r > 65536) return "LoRA rank must be in [1, 65536]";
    if (!(c->alpha > 0.0f && c->alpha < 1e6f)) return "lora_alpha must be in (0, 1e6)";
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) return "lora_dropout must be in [0, 1)";
    if (c->targets == 0 || c->targets >= (1u << LORA_NUM_TARGETS)) return "no (or unknown) LoRA target modules";
    unsigned matched = lora_model_targets(m);
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if ((c->targets & (1u << t)) && !(matched & (1u << t))) {
            snprintf(buf, n, "LoRA target '%s' matches no module of this model (%s FFN: its names are q, k, v, o, %s, wo)",
                     LORA_TARGET_NAMES[t], m->gated ? "a gated" : "a ReLU", m->gated ? "wi_0, wi_1" : "wi");
            return buf;
        }
    return NULL;
}

// ----------------------------------------------------------------------------
// the LoRA flags of both trainers: --lora-r, --lora-alpha, --lora-dropout, --lora-targets, --lora-adapter

typedef struct {
    int r;                // --lora-r: rank, 0 = full fine-tuning, -1 = not given (0, or the adapter's)
    float alpha, dropout; // -1 = not given (peft's defaults 8 and 0, or the adapter's)
    const char* targets;  // "q,v" (NULL: peft's T5 default q,v, or the adapter's)
    const char* adapter;  // a peft adapter directory to start from (NULL: none)
} LoraFlags;

static inline int lora_flags_on(const LoraFlags* f) { return f->r > 0 || f->adapter != NULL; }

// the flags among themselves, before any file is read (the adapter and the model are checked once
// loaded). resume: --resume is given (a LoRA checkpoint brings its own config); outputs: --save-lora or
// --merge-lora is. NULL, or a message (in buf when it needs one)
static inline const char* lora_flags_check(const LoraFlags* f, int resume, int outputs, char* buf, size_t n) {
    unsigned mask;
    if (f->adapter && f->r == 0) return "--lora-r 0 (full fine-tuning) contradicts --lora-adapter: an adapter has rank >= 1";
    if (!lora_flags_on(f) && (f->alpha >= 0.0f || f->dropout >= 0.0f || f->targets))
        return "--lora-alpha / --lora-dropout / --lora-targets need --lora-r R (R > 0) or --lora-adapter DIR";
    if (!lora_flags_on(f) && !resume && outputs) return "--save-lora / --merge-lora need LoRA: --lora-r R or --lora-adapter DIR";
    if (f->targets && lora_parse_targets(f->targets, &mask, buf, n)) return buf;
    return NULL;
}

// a flag given with --lora-adapter must say what the adapter (config c, for a model of config m) says;
// NULL or a message in buf
static inline const char* lora_flags_contradict(const LoraFlags* f, const LoraConfig* c, const T5Config* m, char* buf, size_t n) {
    unsigned mask = 0;
    if (f->targets) lora_parse_targets(f->targets, &mask, buf, n); // checked in lora_flags_check
    mask = lora_resolve_targets(mask, m);
    const char* what = f->r > 0 && f->r != c->r ? "--lora-r"
                     : f->alpha >= 0.0f && f->alpha != c->alpha ? "--lora-alpha"
                     : f->dropout >= 0.0f && f->dropout != c->dropout ? "--lora-dropout"
                     : f->targets && mask != c->targets ? "--lora-targets" : NULL;
    if (!what) return NULL;
    char targets[128];
    lora_targets_string(c->targets, targets, sizeof(targets));
    snprintf(buf, n, "%s contradicts %s/adapter_config.json (r %d, lora_alpha %g, lora_dropout %g, target_modules %s): "
             "drop the flag, or give a matching value", what, f->adapter, c->r, (double)c->alpha, (double)c->dropout, targets);
    return buf;
}

// a resumed checkpoint (an adapter checkpoint of rank ckpt_r > 0, or a full one: ckpt_r = 0) against the
// flags: they must ask for LoRA exactly when it is an adapter checkpoint, and not for another rank.
// NULL or a message in buf naming the checkpoint `path`
static inline const char* lora_flags_resume(const LoraFlags* f, int ckpt_r, const char* path, char* buf, size_t n) {
    if (lora_flags_on(f) == (ckpt_r > 0) && !(f->r > 0 && f->r != ckpt_r)) return NULL;
    snprintf(buf, n, "%s is a %s checkpoint%s; the LoRA flags ask for %s", path, ckpt_r ? "LoRA" : "full fine-tuning",
             ckpt_r ? " (its rank, alpha and targets apply)" : "", lora_flags_on(f) ? "LoRA" : "full fine-tuning");
    return buf;
}

// a fresh adapter of rank --lora-r (> 0): peft's defaults where a flag is not given (alpha 8, dropout 0,
// targets q,v), checked against the model m; NULL or a message in buf
static inline const char* lora_flags_config(const LoraFlags* f, const T5Config* m, LoraConfig* c, char* buf, size_t n) {
    c->r = f->r;
    c->alpha = f->alpha >= 0.0f ? f->alpha : 8.0f;
    c->dropout = f->dropout >= 0.0f ? f->dropout : 0.0f;
    c->targets = LORA_DEFAULT_TARGETS;
    c->rslora = 0;
    if (f->targets && lora_parse_targets(f->targets, &c->targets, buf, n)) return buf;
    c->targets = lora_resolve_targets(c->targets, m);
    return lora_config_check(c, m, buf, n);
}

// the seed of a fresh adapter's init (lora_init): the run's seed, salted ("LoRA") so that A is not drawn
// from the base initialisation's stream
static inline uint64_t lora_init_seed(uint64_t run_seed) { return mix64(run_seed ^ 0x4c6f5241ULL); }

// the dropout site of the adapter input of layout tensor i, copy `layer`: the engines' base sites are
// (decoder << 20) | (layer << 4) | kind (bits 0–11 and 20 up); the adapter's add 1 + i at bit 12, so
// every wrapped Linear draws its own mask (peft applies lora_dropout to each module's input separately)
static inline uint32_t lora_drop_site(int i, int layer) {
    return ((uint32_t)(i >= P_DEC_RELB) << 20) | ((uint32_t)layer << 4) | ((uint32_t)(1 + i) << 12);
}

// "r 32 alpha 64 dropout 0.05 q,v" (" rslora" after), or "off (full fine-tuning)" for r = 0: the trainers' tables
static inline const char* lora_describe(const LoraConfig* c, char* buf, size_t n) {
    char targets[64];
    lora_targets_string(c->targets, targets, sizeof(targets));
    if (c->r == 0) snprintf(buf, n, "off (full fine-tuning)");
    else snprintf(buf, n, "r %d alpha %g dropout %g %s%s", c->r, (double)c->alpha, (double)c->dropout, targets,
                  c->rslora ? " rslora" : "");
    return buf;
}

// x with thousands separators, as peft prints its counts
static inline const char* lora_count_string(char* buf, size_t n, unsigned long long x) {
    char digits[32];
    int len = snprintf(digits, sizeof(digits), "%llu", x), k = 0;
    for (int i = 0; i < len && (size_t)k + 2 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = 0;
    return buf;
}

// peft's print_trainable_parameters: what trains (the adapter, or everything) against base + adapter
static inline void lora_print_trainable(size_t trainable, size_t all) {
    char a[32], b[32];
    printf("trainable params: %s of %s (%.2f%%)\n", lora_count_string(a, sizeof(a), trainable),
           lora_count_string(b, sizeof(b), all), 100.0 * (double)trainable / (double)all);
}

// ----------------------------------------------------------------------------
// the adapter layout: for every targeted layout tensor, A (layers, r, in) then B (layers, out, r),
// in the order of t5.h's table, in one flat buffer

typedef struct {
    int on;              // 1: this layout tensor is wrapped
    int layers, in, out; // stacked copies; in = the Linear's columns, out = its rows
    size_t a, b;         // offsets of A and B in the adapter buffer
} LoraTensor;

typedef struct {
    LoraTensor t[NUM_PARAM_TENSORS];
    int r;
    size_t total;        // floats in the adapter buffer
    int modules;         // wrapped Linear modules (copies)
} LoraLayout;

static inline void lora_layout(const LoraConfig* c, const T5Layout* base, int gated, LoraLayout* L) {
    memset(L, 0, sizeof(*L));
    L->r = c->r;
    size_t off = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* bt = &base->t[i];
        int t = lora_target_of(i, gated);
        if (t < 0 || !(c->targets & (1u << t)) || bt->size == 0) continue;
        LoraTensor* x = &L->t[i];
        x->on = 1; x->layers = bt->layers; x->in = bt->cols; x->out = bt->rows;
        x->a = off; off += (size_t)x->layers * c->r * x->in;
        x->b = off; off += (size_t)x->layers * x->out * c->r;
        L->modules += x->layers;
    }
    L->total = off;
}

// A and B of copy `layer` of tensor i
static inline float* lora_A(const LoraLayout* L, float* buf, int i, int layer) {
    return buf + L->t[i].a + (size_t)layer * L->r * L->t[i].in;
}
static inline float* lora_B(const LoraLayout* L, float* buf, int i, int layer) {
    return buf + L->t[i].b + (size_t)layer * L->t[i].out * L->r;
}

// the adapter's tensors as Adafactor updates them (llmc/optim.h), in buffer order: every copy of A (r, in),
// then every copy of B (out, r), per wrapped tensor; all are nn.Linear weights in peft, so all factored
static inline int lora_opt_slices(const LoraLayout* L, OptSlice* out) {
    int n = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const LoraTensor* t = &L->t[i];
        if (!t->on) continue;
        for (int l = 0; l < t->layers; l++, n++)
            if (out) { OptSlice s = { t->a + (size_t)l * L->r * t->in, L->r, t->in, 1, 0 }; out[n] = s; }
        for (int l = 0; l < t->layers; l++, n++)
            if (out) { OptSlice s = { t->b + (size_t)l * t->out * L->r, t->out, L->r, 1, 0 }; out[n] = s; }
    }
    return n;
}

static inline int lora_opt_slicer(const void* L, OptSlice* out) { return lora_opt_slices((const LoraLayout*)L, out); }

static inline size_t lora_adafactor_floats(const LoraLayout* L, int has_beta1) {
    return adafactor_layout_floats(lora_opt_slicer, L, has_beta1);
}

// peft's key: base_model.model.<module>.lora_A.weight, <module> = the HF name without ".weight"
static inline void lora_key(const T5Layout* base, int i, int layer, char which, char* buf, size_t n) {
    char name[160];
    t5_tensor_name(base, i, layer, name, sizeof(name));
    size_t len = strlen(name);
    if (len > 7 && strcmp(name + len - 7, ".weight") == 0) name[len - 7] = 0;
    snprintf(buf, n, "base_model.model.%s.lora_%c.weight", name, which);
}

// peft's init (reset_lora_parameters, init_lora_weights=True): A = kaiming_uniform_(a=√5), i.e.
// U(−b, b) with b = gain·√3/√fan_in, gain = √(2/(1+a²)) = √(1/3), so b = 1/√in; B = 0.
// (Same distribution, not torch's random stream.)
static inline void lora_init(const LoraLayout* L, float* buf, uint64_t seed) {
    Rng rng;
    rng_init(&rng, seed);
    memset(buf, 0, L->total * sizeof(float));
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const LoraTensor* t = &L->t[i];
        if (!t->on) continue;
        float bound = 1.0f / sqrtf((float)t->in);
        size_t n = (size_t)t->layers * L->r * t->in;
        for (size_t j = 0; j < n; j++) buf[t->a + j] = bound * (2.0f * rng_uniform(&rng) - 1.0f);
    }
}

// ----------------------------------------------------------------------------
// the merge (peft get_delta_weight + merge):  W (out, in) += s · (B A)

static inline void lora_merge_one(float* w, const float* A, const float* B, int out, int in, int r, float s) {
    // delta[o][i] = Σ_k B[o][k] A[k][i], rounded to fp32 like the product, then scaled and added
    float* row = (float*)malloc((size_t)in * sizeof(float));
    if (!row) { fprintf(stderr, "error: out of memory in lora_merge_one\n"); exit(EXIT_FAILURE); }
    for (int o = 0; o < out; o++) {
        for (int i = 0; i < in; i++) row[i] = 0.0f;
        for (int k = 0; k < r; k++) {
            float b = B[(size_t)o * r + k];
            const float* a = A + (size_t)k * in;
            for (int i = 0; i < in; i++) row[i] += b * a[i];
        }
        float* wo = w + (size_t)o * in;
        for (int i = 0; i < in; i++) wo[i] += row[i] * s;
    }
    free(row);
}

// every wrapped tensor of the flat base buffer `params` (t5.h layout) gets its adapter merged in
static inline void lora_merge(float* params, const T5Layout* base, const LoraLayout* L, const float* adapter, float s) {
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const LoraTensor* t = &L->t[i];
        for (int l = 0; t->on && l < t->layers; l++)
            lora_merge_one(params + base->t[i].offset + (size_t)l * t->out * t->in, lora_A(L, (float*)adapter, i, l),
                           lora_B(L, (float*)adapter, i, l), t->out, t->in, L->r, s);
    }
}

// ----------------------------------------------------------------------------
// adapter_config.json: what peft writes and reads (LoraConfig.to_dict / from_pretrained)

// the shortest decimal that reads back as the same float
static inline void lora_format_float(char* buf, size_t n, float x) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) return;
    }
}

static inline int lora_config_write(const char* path, const LoraConfig* c, const char* base_name, char* err, size_t errlen) {
    char alpha[32], drop[32], targets[128] = "", base[1024] = "null";
    lora_format_float(alpha, sizeof(alpha), c->alpha);
    lora_format_float(drop, sizeof(drop), c->dropout);
    size_t len = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (c->targets & (1u << t)) len += (size_t)snprintf(targets + len, sizeof(targets) - len, "%s\"%s\"", len ? ", " : "", LORA_TARGET_NAMES[t]);
    if (base_name) { // a JSON string: the name as given, quotes and backslashes escaped
        size_t k = 0;
        base[k++] = '"';
        for (const char* p = base_name; *p && k + 3 < sizeof(base); p++) {
            if (*p == '"' || *p == '\\') base[k++] = '\\';
            base[k++] = (unsigned char)*p < 0x20 ? ' ' : *p;
        }
        base[k++] = '"'; base[k] = 0;
    }
    char buf[4096];
    int n = snprintf(buf, sizeof(buf),
        "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"SEQ_2_SEQ_LM\",\n  \"base_model_name_or_path\": %s,\n"
        "  \"r\": %d,\n  \"lora_alpha\": %s,\n  \"lora_dropout\": %s,\n  \"target_modules\": [%s],\n"
        "  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"use_rslora\": %s,\n  \"use_dora\": false,\n"
        "  \"modules_to_save\": null,\n  \"init_lora_weights\": true,\n  \"layers_to_transform\": null,\n"
        "  \"layers_pattern\": null,\n  \"rank_pattern\": {},\n  \"alpha_pattern\": {},\n  \"inference_mode\": true,\n"
        "  \"revision\": null\n}\n",
        base, c->r, alpha, drop, targets, c->rslora ? "true" : "false");
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) return -1;
    int ok = atomic_write(&a, buf, (size_t)n, err, errlen) == 0;
    return atomic_close(&a, ok, err, errlen);
}

// a field that must be absent or hold its "off" value (null, false, "", {} or []); peft options
// this engine does not implement are refused by name rather than silently ignored
static inline int lora_field_off(const JsonValue* v) {
    if (v == NULL || v->type == JSON_NULL) return 1;
    if (v->type == JSON_BOOL) return !v->boolean;
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT) return v->count == 0;
    if (v->type == JSON_STRING) return v->string[0] == 0;
    return 0;
}

#define LORA_SUPPORTED "supported: peft_type LORA, r, lora_alpha, lora_dropout, use_rslora, target_modules (names q/k/v/o/wi/wi_0/wi_1/wo, module-name suffixes, \"all-linear\" or a pattern), exclude_modules, layers_to_transform, layers_pattern, each selection taking all modules of a name; rank_pattern / alpha_pattern only where they repeat r / lora_alpha"

// options that only take their "off" value here. bias: T5's Linears have no bias, so peft's "all" and
// "lora_only" train and save nothing more than "none" (a bias tensor in the file is refused by name);
// fan_in_fan_out: peft turns it off for nn.Linear, which every T5 Linear is
static inline int lora_config_refuse(const JsonValue* root, const char* path, char* err, size_t errlen) {
    static const char* const off[] = { "use_dora", "modules_to_save", "lora_bias", "trainable_token_indices",
                                       "layer_replication", "target_parameters", "use_qalora", "megatron_config",
                                       "alora_invocation_tokens", "use_bdlora", "arrow_config", "velora_config",
                                       "monteclora_config", "kasa_config" };
    for (size_t k = 0; k < sizeof(off) / sizeof(off[0]); k++)
        if (!lora_field_off(json_find(root, off[k]))) {
            snprintf(err, errlen, "%s: peft option '%s' is set; this engine does not support it (%s)", path, off[k], LORA_SUPPORTED);
            return -1;
        }
    const JsonValue* bias = json_find(root, "bias");
    if (bias && !(bias->type == JSON_STRING && (strcmp(bias->string, "none") == 0 || strcmp(bias->string, "all") == 0 ||
                                                strcmp(bias->string, "lora_only") == 0))) {
        snprintf(err, errlen, "%s: bias must be \"none\", \"all\" or \"lora_only\" (the same on T5, whose Linears have no bias)", path);
        return -1;
    }
    // PiSSA, OLoRA, LoftQ, CorDA, ... change the base weights too: such an adapter only fits the base it was
    // made with after peft's conversion. "gaussian", "orthogonal" and "eva" only draw A and B
    const JsonValue* init = json_find(root, "init_lora_weights");
    if (init && init->type == JSON_STRING && strcmp(init->string, "gaussian") != 0 && strcmp(init->string, "orthogonal") != 0 &&
        strcmp(init->string, "eva") != 0) {
        snprintf(err, errlen, "%s: init_lora_weights \"%s\" changes the base weights; not supported (%s)", path, init->string, LORA_SUPPORTED);
        return -1;
    }
    return 0;
}

// Python's re syntax as POSIX extended syntax, for patterns peft matches whole (re.fullmatch, or re.match
// ending in $): (?: is (, \d \w \s and their capitals are classes, and a lazy quantifier (*? +? ?? }?) is
// greedy, which decides the same whole match. Anything else of Python's own ((?=, (?P, \b, \A, ...) is
// refused rather than read with another meaning. 0, or -1 with the offending piece in err
static inline int lora_regex_posix(const char* py, char* out, size_t n, char* err, size_t errlen) {
    static const char* const cls[][2] = { { "d", "0-9" }, { "D", "^0-9" }, { "w", "A-Za-z0-9_" }, { "W", "^A-Za-z0-9_" },
                                          { "s", "[:space:]" }, { "S", "^[:space:]" } };
    size_t k = 0;
    int bracket = 0;
    for (const char* p = py; *p; p++) {
        char piece[24] = { *p, 0 };
        if (*p == '\\' && p[1]) {
            const char* c = NULL;
            for (size_t j = 0; j < sizeof(cls) / sizeof(cls[0]); j++) if (p[1] == cls[j][0][0]) c = cls[j][1];
            if (c && bracket && c[0] == '^') { snprintf(err, errlen, "%.2s inside [...]", p); return -1; }
            if (c) snprintf(piece, sizeof(piece), bracket ? "%s" : "[%s]", c);
            else if (strchr("bBAZ", p[1]) || (p[1] >= '0' && p[1] <= '9')) { snprintf(err, errlen, "%.2s", p); return -1; }
            else if (bracket && strchr("]^-\\", p[1])) { snprintf(err, errlen, "%.2s inside [...]", p); return -1; }
            else snprintf(piece, sizeof(piece), bracket ? "%c" : "\\%c", p[1]); // an escaped literal
            p++;
        } else if (!bracket && p[0] == '(' && p[1] == '?') {
            if (p[2] != ':') { snprintf(err, errlen, "%.3s", p); return -1; }
            p += 2;
            piece[0] = '(';
        } else if (!bracket && p[0] == '?' && p > py && strchr("*+?}", p[-1]) && !(p - 1 > py && p[-2] == '\\')) {
            piece[0] = 0; // the lazy mark of a quantifier
        } else if (*p == '[' && !bracket) {
            bracket = 1;
            if (p[1] == '^') { strcpy(piece, "[^"); p++; }
            if (p[1] == ']') { strcat(piece, "]"); p++; }
        } else if (*p == ']' && bracket) bracket = 0;
        size_t len = strlen(piece);
        if (k + len + 1 > n) { snprintf(err, errlen, "too long"); return -1; }
        memcpy(out + k, piece, len);
        k += len;
    }
    out[k] = 0;
    return 0;
}

// a Python pattern compiled as POSIX "^(<prefix>(pattern)<suffix>)$"-style: fmt holds one %s for the
// translated pattern. 0, or -1 with a message naming `what` in the file at path
static inline int lora_regcomp(regex_t* re, const char* fmt, const char* pat, const char* what, const char* path, char* err, size_t errlen) {
    char posix[1024], full[1200], bad[64];
    if (lora_regex_posix(pat, posix, sizeof(posix), bad, sizeof(bad))) {
        snprintf(err, errlen, "%s: %s '%.200s' uses regular expression syntax this engine does not read (%s): write it "
                 "as a list of module names", path, what, pat, bad);
        return -1;
    }
    snprintf(full, sizeof(full), fmt, posix);
    // (a failed regcomp leaves *re partly unwritten, and regerror may read it: MemorySanitizer's
    // interceptor reads all of it, though glibc's does not)
    memset(re, 0, sizeof(*re));
    int rc = regcomp(re, full, REG_EXTENDED);
    if (rc != 0) {
        char msg[128];
        regerror(rc, re, msg, sizeof(msg));
        snprintf(err, errlen, "%s: %s '%.200s' is not a regular expression this engine reads: %s", path, what, pat, msg);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// which modules peft wraps (BaseTuner's check_target_module_exists): a module is excluded when
// exclude_modules names it (a list entry equal to the name or a suffix after "."; a string: re.fullmatch);
// else target_modules selects it: a string is re.fullmatch'ed ("all-linear": every Linear but lm_head);
// a list entry equal to the module's name selects it, and an entry that is a suffix after "." selects
// it when layers_to_transform (an index or a list of them) is not given or holds the module's layer
// index: the number after the first "<layers_pattern>." (no pattern: after the first ".<segment>.", which
// on T5 is the block). The adapter layout wraps every module of a name (q, k, ...) or none, so a
// selection that takes some of a name's modules and not others is refused, as is one that takes lm_head.

typedef struct {
    const JsonValue* items; size_t count; // target_modules as a list
    regex_t* re;                          // target_modules as a pattern (full match)
    const JsonValue* ex_items; size_t ex_count; regex_t* ex_re; // exclude_modules
    const JsonValue* layers;              // layers_to_transform: a number or a list (NULL: every layer)
    regex_t* lpat; size_t nlpat;          // layers_pattern, each compiled as "^(P)\.([0-9]+)\." (0: none)
} LoraMatcher;

static inline int lora_suffix_match(const char* module, const char* entry) {
    size_t n = strlen(module), e = strlen(entry);
    return strcmp(module, entry) == 0 || (n > e && module[n - e - 1] == '.' && strcmp(module + n - e, entry) == 0);
}

static inline int lora_list_match(const JsonValue* items, size_t count, const char* module) {
    for (size_t k = 0; k < count; k++) if (items[k].type == JSON_STRING && lora_suffix_match(module, items[k].string)) return 1;
    return 0;
}

// the layer index of `module` as peft reads it, or -1: the first start (a "." before it; with a pattern, the
// name's start too) where the pattern (default: one segment) is followed by ".<digits>."
static inline long lora_layer_index(const LoraMatcher* w, const char* module) {
    for (const char* s = module; *s; s++) {
        if (s == module ? w->nlpat == 0 : s[-1] != '.') continue;
        if (w->nlpat == 0) {
            const char* d = strchr(s, '.');
            if (d && d[1] >= '0' && d[1] <= '9') {
                char* end;
                long idx = strtol(d + 1, &end, 10);
                if (*end == '.') return idx;
            }
            continue;
        }
        for (size_t k = 0; k < w->nlpat; k++) {
            regmatch_t g[3];
            if (regexec(&w->lpat[k], s, 3, g, 0) == 0) return strtol(s + g[2].rm_so, NULL, 10);
        }
    }
    return -1;
}

static inline int lora_layer_selected(const LoraMatcher* w, const char* module) {
    if (!w->layers) return 1;
    long idx = lora_layer_index(w, module);
    if (idx < 0) return 0;
    if (w->layers->type == JSON_NUMBER) return (double)idx == w->layers->number;
    for (size_t k = 0; k < w->layers->count; k++)
        if (w->layers->items[k].type == JSON_NUMBER && (double)idx == w->layers->items[k].number) return 1;
    return 0;
}

static inline int lora_matches(const LoraMatcher* w, const char* module) {
    if (w->ex_re ? regexec(w->ex_re, module, 0, NULL, 0) == 0 : lora_list_match(w->ex_items, w->ex_count, module)) return 0;
    if (w->re) return regexec(w->re, module, 0, NULL, 0) == 0;
    for (size_t k = 0; k < w->count; k++) if (w->items[k].type == JSON_STRING && strcmp(module, w->items[k].string) == 0) return 1;
    return lora_list_match(w->items, w->count, module) && lora_layer_selected(w, module);
}

// calls fn(ctx, name bit, module name) for every copy of every Linear LoRA can wrap whose name is in `names`
typedef void (*LoraModuleVisit)(void* ctx, int t, const char* module);
static inline void lora_visit_modules(const T5Config* m, unsigned names, LoraModuleVisit fn, void* ctx) {
    T5Layout base;
    t5_layout(m, &base);
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        int t = lora_target_of(i, m->gated);
        for (int l = 0; t >= 0 && ((names >> t) & 1) && base.t[i].size && l < base.t[i].layers; l++) {
            char name[160];
            t5_tensor_name(&base, i, l, name, sizeof(name));
            name[strlen(name) - 7] = 0; // ".weight"
            fn(ctx, t, name);
        }
    }
}

typedef struct {
    const LoraMatcher* w;
    unsigned any, all;
    char ex_in[LORA_NUM_TARGETS][160], ex_out[LORA_NUM_TARGETS][160];
} LoraSelection;

static inline void lora_select_visit(void* ctx, int t, const char* name) {
    LoraSelection* s = (LoraSelection*)ctx;
    if (lora_matches(s->w, name)) { s->any |= 1u << t; snprintf(s->ex_in[t], 160, "%s", name); }
    else { s->all &= ~(1u << t); snprintf(s->ex_out[t], 160, "%s", name); }
}

// the selection of w into *mask (every module of a name, or none), or -1 with a message naming `what`
static inline int lora_select_into(const LoraMatcher* w, const char* what, const T5Config* m, unsigned* mask,
                                   const char* path, char* err, size_t errlen) {
    LoraSelection s;
    memset(&s, 0, sizeof(s));
    s.w = w; s.all = ~0u;
    lora_visit_modules(m, ~0u, lora_select_visit, &s);
    unsigned whole = s.any & s.all, part = s.any & ~s.all;
    if (lora_matches(w, "lm_head")) {
        snprintf(err, errlen, "%s: %s selects lm_head: LoRA on the output layer is not supported (%s)", path, what, "supported: q, k, v, o, wi, wi_0, wi_1, wo");
        return -1;
    }
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if ((part >> t) & 1) {
            snprintf(err, errlen, "%s: %s selects some of the modules of a name and not others (it takes %s but not %s): this "
                     "engine wraps every module of a name or none (list names: q, k, v, o, wi, wi_0, wi_1, wo)", path, what,
                     s.ex_in[t], s.ex_out[t]);
            return -1;
        }
    if (!whole) { snprintf(err, errlen, "%s: %s matches no module of this model", path, what); return -1; }
    *mask = whole;
    return 0;
}

// layers_pattern (a string or a list of them) compiled into w; 0 or -1 with a message
static inline int lora_layers_patterns(const JsonValue* lp, LoraMatcher* w, const char* path, char* err, size_t errlen) {
    int list = lp->type == JSON_ARRAY;
    size_t n = list ? lp->count : 1;
    w->lpat = (regex_t*)calloc(n ? n : 1, sizeof(regex_t));
    for (size_t k = 0; k < n; k++) {
        const JsonValue* e = list ? &lp->items[k] : lp;
        if (e->type != JSON_STRING) { snprintf(err, errlen, "%s: layers_pattern must be a string or a list of strings", path); return -1; }
        if (lora_regcomp(&w->lpat[k], "^(%s)\\.([0-9]+)\\.", e->string, "layers_pattern", path, err, errlen)) return -1;
        w->nlpat = k + 1;
    }
    return 0;
}

static inline void lora_matcher_free(LoraMatcher* w) {
    if (w->re) regfree(w->re);
    if (w->ex_re) regfree(w->ex_re);
    for (size_t k = 0; k < w->nlpat; k++) regfree(&w->lpat[k]);
    free(w->lpat);
}

// target_modules, exclude_modules, layers_to_transform and layers_pattern of the config into w (re and ex_re
// point at the caller's storage); 0, or -1 with a message
static inline int lora_matcher_build(const JsonValue* root, LoraMatcher* w, regex_t* re, regex_t* ex_re, const char* path,
                                     char* err, size_t errlen) {
    const JsonValue* tm = json_find(root, "target_modules");
    const JsonValue* ex = json_find(root, "exclude_modules");
    const JsonValue* lt = json_find(root, "layers_to_transform");
    const JsonValue* lp = json_find(root, "layers_pattern");
    memset(w, 0, sizeof(*w));
    if (tm && tm->type == JSON_STRING) { // "all-linear": every Linear but lm_head, that is every name LoRA wraps
        const char* pat = strcmp(tm->string, "all-linear") == 0 ? ".*\\.(q|k|v|o|wi|wi_0|wi_1|wo)" : tm->string;
        if (lora_regcomp(re, "^(%s)$", pat, "target_modules pattern", path, err, errlen)) return -1;
        w->re = re;
    } else if (tm && tm->type == JSON_ARRAY) {
        for (size_t k = 0; k < tm->count; k++)
            if (tm->items[k].type != JSON_STRING) { snprintf(err, errlen, "%s: target_modules entry %zu is not a string", path, k); return -1; }
        w->items = tm->items; w->count = tm->count;
        if (!lora_field_off(lt)) { // peft reads the layer options with a list only
            if (lt->type != JSON_NUMBER && lt->type != JSON_ARRAY) { snprintf(err, errlen, "%s: layers_to_transform must be an index or a list", path); return -1; }
            w->layers = lt;
            if (!lora_field_off(lp) && lora_layers_patterns(lp, w, path, err, errlen)) return -1;
        }
    } else {
        snprintf(err, errlen, "%s: target_modules must be a list of module names or a pattern string", path);
        return -1;
    }
    if (ex && ex->type == JSON_STRING && ex->string[0]) {
        if (lora_regcomp(ex_re, "^(%s)$", ex->string, "exclude_modules pattern", path, err, errlen)) return -1;
        w->ex_re = ex_re;
    } else if (ex && ex->type == JSON_ARRAY) { w->ex_items = ex->items; w->ex_count = ex->count; }
    return 0;
}

static inline int lora_config_targets(const JsonValue* root, const T5Config* m, unsigned* mask, const char* path, char* err, size_t errlen) {
    const JsonValue* tm = json_find(root, "target_modules");
    int pattern = tm && tm->type == JSON_STRING;
    char what[300];
    snprintf(what, sizeof(what), "target_modules %s%.200s%s%s%s", pattern ? "pattern '" : "list", pattern ? tm->string : "",
             pattern ? "'" : "", lora_field_off(json_find(root, "exclude_modules")) ? "" : " with exclude_modules",
             lora_field_off(json_find(root, "layers_to_transform")) ? "" : " with layers_to_transform");
    LoraMatcher w;
    regex_t re, ex_re;
    *mask = 0;
    int rc = lora_matcher_build(root, &w, &re, &ex_re, path, err, errlen);
    if (rc == 0) rc = lora_select_into(&w, what, m, mask, path, err, errlen);
    lora_matcher_free(&w);
    return rc;
}

// rank_pattern / alpha_pattern: peft gives a module the value of the first key k with re.match("(.*\.)?(k)$")
// of its name. The layout has one rank and one scale, so each wrapped module's value must be r (lora_alpha)
typedef struct { const JsonValue* pat; regex_t* re; double want; const char* bad; } LoraPatternCheck;

static inline void lora_pattern_visit(void* ctx, int t, const char* name) {
    LoraPatternCheck* p = (LoraPatternCheck*)ctx;
    (void)t;
    for (size_t k = 0; k < p->pat->count && p->re; k++)
        if (regexec(&p->re[k], name, 0, NULL, 0) == 0) {
            if (p->pat->items[k].type != JSON_NUMBER || p->pat->items[k].number != p->want) p->bad = p->pat->keys[k];
            return;
        }
}

static inline int lora_patterns_check(const JsonValue* root, const T5Config* m, const LoraConfig* c, const char* path,
                                      char* err, size_t errlen) {
    const char* keys[2] = { "rank_pattern", "alpha_pattern" };
    for (int j = 0; j < 2; j++) {
        const JsonValue* pat = json_find(root, keys[j]);
        if (lora_field_off(pat)) continue;
        if (pat->type != JSON_OBJECT) { snprintf(err, errlen, "%s: %s must be an object", path, keys[j]); return -1; }
        LoraPatternCheck p = { pat, (regex_t*)calloc(pat->count, sizeof(regex_t)), j ? (double)c->alpha : (double)c->r, NULL };
        size_t built = 0;
        int rc = 0;
        for (; built < pat->count && rc == 0; built++)
            rc = lora_regcomp(&p.re[built], "^(.*\\.)?(%s)$", pat->keys[built], keys[j], path, err, errlen);
        if (rc) built--;
        // only the wrapped modules count: a key matching modules LoRA does not wrap changes nothing
        if (rc == 0) lora_visit_modules(m, c->targets, lora_pattern_visit, &p);
        for (size_t k = 0; k < built; k++) regfree(&p.re[k]);
        free(p.re);
        if (rc) return -1;
        if (p.bad) {
            snprintf(err, errlen, "%s: %s gives '%s' another %s than %s %g: this engine has one rank and one alpha for "
                     "every module (%s)", path, keys[j], p.bad, j ? "alpha" : "rank", j ? "lora_alpha" : "r", p.want, LORA_SUPPORTED);
            return -1;
        }
    }
    return 0;
}

static inline int lora_config_from_json(const JsonValue* root, const T5Config* m, LoraConfig* c, const char* path, char* err,
                                        size_t errlen) {
    memset(c, 0, sizeof(*c));
    if (root->type != JSON_OBJECT) { snprintf(err, errlen, "%s: not a JSON object", path); return -1; }
    const JsonValue* pt = json_find(root, "peft_type");
    if (!pt || pt->type != JSON_STRING || strcmp(pt->string, "LORA") != 0) {
        snprintf(err, errlen, "%s: peft_type is %s%s%s, not \"LORA\" (only LoRA adapters are supported)", path,
                 pt && pt->type == JSON_STRING ? "\"" : "", pt && pt->type == JSON_STRING ? pt->string : "missing", pt && pt->type == JSON_STRING ? "\"" : "");
        return -1;
    }
    const JsonValue* r = json_find(root, "r");
    const JsonValue* alpha = json_find(root, "lora_alpha");
    const JsonValue* drop = json_find(root, "lora_dropout");
    const JsonValue* rs = json_find(root, "use_rslora");
    if (!r || r->type != JSON_NUMBER || r->number != floor(r->number) || r->number < 0 || r->number > 65536) {
        snprintf(err, errlen, "%s: 'r' must be an integer in [1, 65536]", path); return -1;
    }
    if (r->number == 0) { snprintf(err, errlen, "%s: rank r = 0: an adapter needs r >= 1", path); return -1; }
    if (alpha && alpha->type != JSON_NUMBER) { snprintf(err, errlen, "%s: 'lora_alpha' must be a number", path); return -1; }
    if (drop && drop->type != JSON_NUMBER) { snprintf(err, errlen, "%s: 'lora_dropout' must be a number", path); return -1; }
    if (rs && rs->type != JSON_BOOL) { snprintf(err, errlen, "%s: 'use_rslora' must be true or false", path); return -1; }
    c->r = (int)r->number;
    c->alpha = alpha ? (float)alpha->number : 8.0f; // peft's defaults
    c->dropout = drop ? (float)drop->number : 0.0f;
    c->rslora = rs ? rs->boolean : 0;
    if (lora_config_refuse(root, path, err, errlen) || lora_config_targets(root, m, &c->targets, path, err, errlen)) return -1;
    return lora_patterns_check(root, m, c, path, err, errlen);
}

static inline int lora_config_read(const char* path, const T5Config* m, LoraConfig* c, char* err, size_t errlen) {
    JsonValue root;
    if (json_read_file(path, &root, err, errlen)) return -1;
    int rc = lora_config_from_json(&root, m, c, path, err, errlen);
    json_free(&root);
    return rc;
}

// ----------------------------------------------------------------------------
// adapter directories: DIR/adapter_config.json + DIR/adapter_model.safetensors (F32)

static inline int lora_save_dir(const char* dir, const LoraConfig* c, const T5Layout* base, const LoraLayout* L,
                                const float* adapter, const char* base_name, char* err, size_t errlen) {
    if (mkdir_p(dir, err, errlen)) return -1;
    StWriteTensor* ts = (StWriteTensor*)calloc((size_t)2 * L->modules + 1, sizeof(StWriteTensor));
    char (*names)[200] = (char (*)[200])calloc((size_t)2 * L->modules + 1, 200);
    if (!ts || !names) { free(ts); free(names); snprintf(err, errlen, "%s: out of memory", dir); return -1; }
    int k = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const LoraTensor* t = &L->t[i];
        for (int l = 0; t->on && l < t->layers; l++)
            for (int ab = 0; ab < 2; ab++, k++) {
                lora_key(base, i, l, ab ? 'B' : 'A', names[k], 200);
                ts[k].name = names[k];
                ts[k].ndim = 2;
                ts[k].shape[0] = ab ? t->out : L->r;
                ts[k].shape[1] = ab ? L->r : t->in;
                ts[k].data = ab ? lora_B(L, (float*)adapter, i, l) : lora_A(L, (float*)adapter, i, l);
            }
    }
    char path[4096];
    int rc = snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir) >= (int)sizeof(path) ? -1 : 0;
    if (rc) snprintf(err, errlen, "%s: path too long", dir);
    if (rc == 0) rc = st_write_f32(path, ts, k, NULL, 0, err, errlen);
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    if (rc == 0) rc = lora_config_write(path, c, base_name, err, errlen);
    free(ts); free(names);
    return rc;
}

// adapter matrix `key` must be in the file with shape (rows, cols); returns it or NULL with a message
static inline const StTensor* lora_find_matrix(StFile* st, const char* key, int rows, int cols, char* err, size_t errlen) {
    const StTensor* t = st_find(st, key);
    if (!t) { snprintf(err, errlen, "%s: missing tensor '%s' (the adapter does not fit this base model or its targets)", st->path, key); return NULL; }
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        snprintf(err, errlen, "%s: tensor '%s' has shape [%lld, %lld], the base model and r need [%d, %d] (an adapter made "
                 "for another base shape?)", st->path, key, (long long)t->shape[0], t->ndim > 1 ? (long long)t->shape[1] : 0LL, rows, cols);
        return NULL;
    }
    return t;
}

// every A and B of the layout: checked (buf NULL), or read into buf
static inline int lora_read_all(StFile* st, const T5Layout* base, const LoraLayout* L, float* buf, char* err, size_t errlen) {
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const LoraTensor* t = &L->t[i];
        for (int l = 0; t->on && l < t->layers; l++)
            for (int ab = 0; ab < 2; ab++) {
                char key[200];
                lora_key(base, i, l, ab ? 'B' : 'A', key, sizeof(key));
                const StTensor* x = lora_find_matrix(st, key, ab ? t->out : L->r, ab ? L->r : t->in, err, errlen);
                if (!x) return -1;
                if (buf && st_read_f32(st, x, ab ? lora_B(L, buf, i, l) : lora_A(L, buf, i, l), err, errlen)) return -1;
            }
    }
    return 0;
}

// every tensor of the file must be one this layout reads: a key the model does not have (another
// base's layers, a module name this code does not wrap) is an error, not silently dropped
static inline int lora_check_keys(StFile* st, const T5Layout* base, const LoraLayout* L, char* err, size_t errlen) {
    for (int k = 0; k < st->n; k++) {
        int found = 0;
        for (int i = 0; i < NUM_PARAM_TENSORS && !found; i++)
            for (int l = 0; L->t[i].on && l < L->t[i].layers && !found; l++)
                for (int ab = 0; ab < 2 && !found; ab++) {
                    char key[200];
                    lora_key(base, i, l, ab ? 'B' : 'A', key, sizeof(key));
                    found = strcmp(key, st->tensors[k].name) == 0;
                }
        if (!found) {
            snprintf(err, errlen, "%s: tensor '%s' matches no LoRA module of this base model and config (an adapter made for another base shape, or for other targets?)", st->path, st->tensors[k].name);
            return -1;
        }
    }
    return 0;
}

// loads DIR into *c and a freshly malloc'd adapter buffer laid out for `base` (a T5 of config m)
static inline int lora_load_dir(const char* dir, const T5Config* m, LoraConfig* c, float** adapter, char* err, size_t errlen) {
    *adapter = NULL;
    char path[4096], msg[256];
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    if (lora_config_read(path, m, c, err, errlen)) return -1;
    const char* bad = lora_config_check(c, m, msg, sizeof(msg));
    if (bad) { snprintf(err, errlen, "%s: %s", path, bad); return -1; }
    T5Layout base;
    t5_layout(m, &base);
    LoraLayout L;
    lora_layout(c, &base, m->gated, &L);
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir);
    StFile st;
    if (st_open(&st, path, err, errlen)) return -1;
    // names and shapes first: the buffer is allocated only for an adapter the file really holds
    int rc = lora_check_keys(&st, &base, &L, err, errlen) || lora_read_all(&st, &base, &L, NULL, err, errlen) ? -1 : 0;
    float* buf = rc == 0 ? (float*)malloc(L.total * sizeof(float) + 1) : NULL;
    if (rc == 0 && !buf) { snprintf(err, errlen, "%s: out of memory", path); rc = -1; }
    if (rc == 0) rc = lora_read_all(&st, &base, &L, buf, err, errlen);
    st_close(&st);
    if (rc) { free(buf); return -1; }
    *adapter = buf;
    return 0;
}

// ----------------------------------------------------------------------------
// the adapter checkpoint: the adapter and its optimizer state, and a fingerprint of the base weights
// (their CRC-32 and count) instead of a second copy of them. Little-endian, version 2:
//   header int64[32]: [0] magic 0x4c354350 ("PC5L"), [1] version, [2] n adapter floats, [3] has
//     optimizer state, [4] optimizer step, [5] r, [6] alpha (float bits), [7] dropout (float bits),
//     [8] targets, [9] rslora, [10] base floats, [11] base CRC-32, [12..18] the trainer's 7-slot
//     training state (CkptTrainState), [19] CRC-32 of every byte after the header, [20] optimizer
//     (OptimKind), [21] Adafactor state floats, [22] Adafactor's state holds M (version 1: AdamW, no [20..22])
//   adapter float[n], then when [3] = 1: AdamW m float[n], v float[n]; Adafactor float[[21]] (the
//     adapter's slices, lora_opt_slices, their states concatenated)

#define LORA_CKPT_MAGIC 0x4c354350LL
#define LORA_CKPT_HEADER_INTS 32

static inline uint32_t lora_base_fingerprint(const float* params, size_t n) {
    Crc32Table T;
    crc32_table_init(&T);
    return crc32_update(&T, 0, params, n * sizeof(float));
}

static inline int64_t lora_float_bits(float x) { int32_t b; memcpy(&b, &x, 4); return b; }
static inline float lora_bits_float(int64_t v) { int32_t b = (int32_t)v; float x; memcpy(&x, &b, 4); return x; }

// is PATH an adapter checkpoint (by its magic)?
static inline int lora_ckpt_is(const char* path) {
    FILE* f = fopen(path, "rb");
    int64_t magic = 0;
    int ok = f && fread(&magic, sizeof(magic), 1, f) == 1 && magic == LORA_CKPT_MAGIC;
    if (f) fclose(f);
    return ok;
}

// train: 7 int64 (the trainer's CkptTrainState) or NULL; opt NULL or without buffers: no optimizer state
static inline int lora_ckpt_save_opt(const char* path, const LoraConfig* c, const float* adapter, const CkptOpt* opt,
                                     int64_t n, int64_t step, int64_t base_n, uint32_t base_crc, const int64_t* train,
                                     char* err, size_t errlen) {
    int64_t h[LORA_CKPT_HEADER_INTS] = {0};
    int64_t nopt = ckpt_opt_floats(opt, n);
    h[0] = LORA_CKPT_MAGIC; h[1] = 2; h[2] = n; h[3] = nopt > 0; h[4] = step;
    h[5] = c->r; h[6] = lora_float_bits(c->alpha); h[7] = lora_float_bits(c->dropout); h[8] = c->targets; h[9] = c->rslora;
    h[10] = base_n; h[11] = base_crc;
    if (train) memcpy(h + 12, train, 7 * sizeof(int64_t));
    ckpt_pack_opt(h + 20, opt, nopt);
    return ckpt_write_file(path, h, LORA_CKPT_HEADER_INTS, 19, adapter, n, opt, nopt, err, errlen);
}

// with AdamW's state (m, v may be NULL: none)
static inline int lora_ckpt_save(const char* path, const LoraConfig* c, const float* adapter, const float* m, const float* v,
                                 int64_t n, int64_t step, int64_t base_n, uint32_t base_crc, const int64_t* train,
                                 char* err, size_t errlen) {
    CkptOpt o = { OPTIM_ADAMW, 0, m, v, NULL, 0 };
    return lora_ckpt_save_opt(path, c, adapter, &o, n, step, base_n, base_crc, train, err, errlen);
}

typedef struct {
    LoraConfig config;
    int64_t n, step, base_n;
    int has_opt;
    uint32_t base_crc;
    int64_t train[7];
    int opt_kind, af_beta1;  // OptimKind (AdamW in version 1); Adafactor: M in its state
    int64_t opt_floats;      // floats of optimizer state in the file
} LoraCkptInfo;

// loads PATH into fresh buffers (*m, *v NULL without AdamW state, *af NULL without Adafactor state; af NULL:
// an Adafactor state is dropped, has_opt 0 then), checking it against the base model it is meant for
// (config m5, fingerprint of its weights)
static inline int lora_ckpt_load_opt(const char* path, const T5Config* m5, int64_t base_n, uint32_t base_crc, LoraCkptInfo* info,
                                     float** adapter, float** m, float** v, float** af, char* err, size_t errlen) {
    float* dropped = NULL;
    if (!af) af = &dropped;
    *adapter = *m = *v = *af = NULL;
    int64_t size = file_size_of(path, err, errlen), h[LORA_CKPT_HEADER_INTS];
    if (size < 0) return -1;
    FILE* f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open", path); return -1; }
    int ok = size >= (int64_t)sizeof(h) && fread(h, sizeof(h), 1, f) == 1;
    const char* bad = !ok ? "file too short for an adapter checkpoint header" : h[0] != LORA_CKPT_MAGIC ? "not a t5.c adapter checkpoint (bad magic)"
                    : (h[1] != 1 && h[1] != 2) ? "unsupported adapter checkpoint version" : (h[3] != 0 && h[3] != 1) ? "corrupted header (optimizer flag)"
                    : (h[1] >= 2 && (h[20] < 0 || h[20] > 1 || h[22] < 0 || h[22] > 1)) ? "corrupted header (optimizer kind)" : NULL;
    char msg[256];
    if (!bad) {
        info->config = (LoraConfig){ (int)h[5], lora_bits_float(h[6]), lora_bits_float(h[7]), (unsigned)h[8], (int)h[9] };
        bad = lora_config_check(&info->config, m5, msg, sizeof(msg));
    }
    if (!bad) {
        T5Layout base;
        LoraLayout L;
        t5_layout(m5, &base);
        lora_layout(&info->config, &base, m5->gated, &L);
        info->opt_kind = h[1] >= 2 ? (int)h[20] : OPTIM_ADAMW;
        info->af_beta1 = h[1] >= 2 ? (int)h[22] : 0;
        info->opt_floats = !h[3] ? 0 : info->opt_kind == OPTIM_ADAFACTOR ? h[21] : 2 * h[2];
        if (h[2] != (int64_t)L.total) bad = "adapter size does not match its config and the base model";
        else if (h[3] && info->opt_kind == OPTIM_ADAFACTOR && h[21] != (int64_t)lora_adafactor_floats(&L, info->af_beta1))
            bad = "Adafactor state length does not match the adapter";
        else if (size != (int64_t)sizeof(h) + 4 * (h[2] + info->opt_floats)) bad = "file size does not match the header (truncated or padded)";
        else if (h[10] != base_n || (uint32_t)h[11] != base_crc) bad = "made for other base weights (their fingerprint differs): resume with the --model it was trained on";
    }
    if (bad) { snprintf(err, errlen, "%s: %s", path, bad); fclose(f); return -1; }
    info->n = h[2]; info->has_opt = (int)h[3]; info->step = h[4]; info->base_n = h[10]; info->base_crc = (uint32_t)h[11];
    memcpy(info->train, h + 12, sizeof(info->train));
    float** dst[3] = { adapter, m, v };
    size_t lens[3] = { (size_t)info->n, (size_t)info->n, (size_t)info->n };
    int nb = 1;
    if (info->has_opt && info->opt_kind == OPTIM_ADAFACTOR) { dst[1] = af; lens[1] = (size_t)info->opt_floats; nb = 2; }
    else if (info->has_opt) nb = 3;
    Crc32Table T;
    crc32_table_init(&T);
    uint32_t crc = 0;
    for (int i = 0; i < nb && ok; i++) {
        *dst[i] = (float*)malloc(lens[i] * sizeof(float) + 1);
        ok = *dst[i] && fread(*dst[i], sizeof(float), lens[i], f) == lens[i];
        if (ok) crc = crc32_update(&T, crc, *dst[i], lens[i] * sizeof(float));
    }
    fclose(f);
    if (ok && (int64_t)crc != h[19]) { ok = 0; snprintf(err, errlen, "%s: checksum mismatch (the checkpoint is corrupted)", path); }
    else if (!ok) snprintf(err, errlen, "%s: cannot read the adapter data", path);
    if (!ok) for (int i = 0; i < nb; i++) { free(*dst[i]); *dst[i] = NULL; }
    if (ok && dropped) { free(dropped); info->has_opt = 0; info->opt_floats = 0; }
    return ok ? 0 : -1;
}

static inline int lora_ckpt_load(const char* path, const T5Config* m5, int64_t base_n, uint32_t base_crc, LoraCkptInfo* info,
                                 float** adapter, float** m, float** v, char* err, size_t errlen) {
    return lora_ckpt_load_opt(path, m5, base_n, base_crc, info, adapter, m, v, NULL, err, errlen);
}

#endif // T5_LORA_H
