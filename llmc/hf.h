// hf.h — Hugging Face model directories in and out, in C:
//   config.json (T5Config fields)  +  model.safetensors, or model.safetensors.index.json + shards.
// Tensors may be F32, BF16 or F16 (converted to fp32). Names and shapes come from the one layout
// table in t5.h. Loaders return 0 or -1 with a message naming the file and the problem.
#ifndef T5_HF_H
#define T5_HF_H

#include <stdio.h>        // defines: snprintf, FILE
#include <stdlib.h>       // defines: malloc, free
#include <string.h>       // defines: strcmp, strncmp
#include <math.h>         // defines: floor
#include <errno.h>        // defines: errno
#include <sys/stat.h>     // defines: mkdir, stat
#include <strings.h>      // defines: strcasecmp
#include <dirent.h>       // defines: opendir, readdir (stale shards)
#include "t5.h"           // defines: T5Config, T5Layout, t5_layout, t5_tensor_name, t5_config_check
#include "json.h"         // defines: JsonValue, json_read_file, json_find, json_free
#include "safetensors.h"  // defines: StSet, stset_open_dir, stset_find, st_read_f32, st_write_f32
#include "fileio.h"       // defines: AtomicFile

// ----------------------------------------------------------------------------
// config.json

// integer field: 0 ok (absent or null: *out = def, as transformers' defaults), -1 error
static inline int hf_int_field(const JsonValue* root, const char* key, int def, int* out,
                               const char* path, char* err, size_t errlen) {
    const JsonValue* v = json_find(root, key);
    if (v && v->type == JSON_ARRAY && v->count > 0) v = &v->items[0]; // eos_token_id may be a list
    if (v == NULL || v->type == JSON_NULL) { *out = def; return 0; }
    if (v->type != JSON_NUMBER || v->number != floor(v->number) || fabs(v->number) > 2147483647.0) {
        snprintf(err, errlen, "%s: field '%s' must be an integer", path, key); return -1;
    }
    *out = (int)v->number;
    return 0;
}

static inline int hf_float_field(const JsonValue* root, const char* key, float def, float* out,
                                 const char* path, char* err, size_t errlen) {
    const JsonValue* v = json_find(root, key);
    if (v == NULL || v->type == JSON_NULL) { *out = def; return 0; }
    if (v->type != JSON_NUMBER) { snprintf(err, errlen, "%s: field '%s' must be a number", path, key); return -1; }
    *out = (float)v->number;
    return 0;
}

// an activation by its ACT2FN name: gelu_new, gelu_fast and gelu_pytorch_tanh are the same tanh formula;
// gelu_python is gelu's erf formula written out; swish is silu. 0, or -1 for a name the engine lacks
static inline int hf_act_by_name(const char* a, T5Act* act) {
    if (strcmp(a, "relu") == 0) *act = ACT_RELU;
    else if (strcmp(a, "gelu") == 0 || strcmp(a, "gelu_python") == 0) *act = ACT_GELU;
    else if (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_fast") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0) *act = ACT_GELU_TANH;
    else if (strcmp(a, "silu") == 0 || strcmp(a, "swish") == 0) *act = ACT_SILU;
    else return -1;
    return 0;
}
#define HF_ACT_NAMES "relu, gelu, gelu_python, gelu_new, gelu_fast, gelu_pytorch_tanh, silu, swish"

// feed_forward_proj as T5Config reads it: "[gated-]ACT", ACT an ACT2FN name; exactly "gated-gelu" means
// the tanh approximation (T5Config sets dense_act_fn "gelu_new" for it)
static inline int hf_parse_ffn(const char* s, T5Config* c) {
    c->gated = strncmp(s, "gated-", 6) == 0;
    if (strcmp(s, "gated-gelu") == 0) { c->act = ACT_GELU_TANH; return 0; }
    return hf_act_by_name(c->gated ? s + 6 : s, &c->act);
}

// dense_act_fn and is_gated_act, when config.json holds them, win over what feed_forward_proj says: T5Config
// derives both from feed_forward_proj, then sets every stored field over them (transformers 4 and 5 alike).
static inline int hf_act_fields(const JsonValue* root, T5Config* c, const char* path, char* err, size_t errlen) {
    const JsonValue* act = json_find(root, "dense_act_fn");
    const JsonValue* gated = json_find(root, "is_gated_act");
    if (gated && gated->type != JSON_NULL) {
        if (gated->type != JSON_BOOL) { snprintf(err, errlen, "%s: field 'is_gated_act' must be true or false", path); return -1; }
        c->gated = gated->boolean;
    }
    if (!act || act->type == JSON_NULL) return 0;
    const char* a = act->type == JSON_STRING ? act->string : "";
    if (hf_act_by_name(a, &c->act)) {
        snprintf(err, errlen, "%s: unsupported dense_act_fn '%s' (" HF_ACT_NAMES "); it overrides feed_forward_proj in "
                 "transformers", path, a);
        return -1;
    }
    return 0;
}

// the head, as transformers 5 reads T5Config: scale_decoder_outputs when present, else "tie_word_embeddings
// is not false" (absent or null: scaled, the original T5 default). transformers 5 then forces
// tie_word_embeddings = true and lets the weights decide tying (t5_load_hf_dir); from the config alone
// `tied` is the flag as written (absent: true), which is also what transformers 4 did.
static inline int hf_head_fields(const JsonValue* root, T5Config* c, const char* path, char* err, size_t errlen) {
    const JsonValue* tie = json_find(root, "tie_word_embeddings");
    const JsonValue* scale = json_find(root, "scale_decoder_outputs");
    if (tie && tie->type != JSON_BOOL && tie->type != JSON_NULL) {
        snprintf(err, errlen, "%s: field 'tie_word_embeddings' must be true, false or null", path); return -1;
    }
    if (scale && scale->type != JSON_BOOL && scale->type != JSON_NULL) {
        snprintf(err, errlen, "%s: field 'scale_decoder_outputs' must be true, false or null", path); return -1;
    }
    int tie_false = tie && tie->type == JSON_BOOL && !tie->boolean;
    c->tied = !tie_false;
    c->scale_out = scale && scale->type == JSON_BOOL ? scale->boolean : !tie_false;
    return 0;
}

// what transformers puts where config.json is silent: T5Config's defaults (the t5-small shape) and
// MT5Config's (mt5-small's: a 250,112-token vocabulary, gated-GELU)
typedef struct { int vocab_size, d_model, d_kv, d_ff, num_layers, num_heads; const char* ffn; } HfDefaults;
static const HfDefaults HF_T5_DEFAULTS = { 32128, 512, 64, 2048, 6, 8, "relu" };
static const HfDefaults HF_MT5_DEFAULTS = { 250112, 512, 64, 1024, 8, 6, "gated-gelu" };

// eos_token_id as a list: transformers ends generation at any of its ids (and min_new_tokens bans them all);
// the engines keep one end id, the first. Said once, on stderr, when the list holds another id
static inline void hf_eos_list_note(const JsonValue* root, const T5Config* c, const char* path) {
    const JsonValue* v = json_find(root, "eos_token_id");
    if (!v || v->type != JSON_ARRAY) return;
    for (size_t i = 1; i < v->count; i++)
        if (v->items[i].type != JSON_NUMBER || v->items[i].number != (double)c->eos_id) {
            fprintf(stderr, "warning: %s: eos_token_id lists %zu ids; t5.c ends generation at the first (%d) only, "
                    "transformers' generate() at any of them\n", path, (size_t)v->count, c->eos_id);
            return;
        }
}

static inline int t5_config_from_json(const JsonValue* root, T5Config* c, const char* path, char* err, size_t errlen) {
    if (root->type != JSON_OBJECT) { snprintf(err, errlen, "%s: not a JSON object", path); return -1; }
    const JsonValue* mt = json_find(root, "model_type");
    if (mt && (mt->type != JSON_STRING || (strcmp(mt->string, "t5") != 0 && strcmp(mt->string, "mt5") != 0))) {
        snprintf(err, errlen, "%s: model_type must be \"t5\" (or \"mt5\")", path); return -1;
    }
    int mt5 = mt && strcmp(mt->string, "mt5") == 0;
    const HfDefaults* d = mt5 ? &HF_MT5_DEFAULTS : &HF_T5_DEFAULTS;
    memset(c, 0, sizeof(*c));
    if (hf_int_field(root, "vocab_size", d->vocab_size, &c->vocab_size, path, err, errlen) ||
        hf_int_field(root, "d_model", d->d_model, &c->d_model, path, err, errlen) ||
        hf_int_field(root, "d_kv", d->d_kv, &c->d_kv, path, err, errlen) ||
        hf_int_field(root, "num_heads", d->num_heads, &c->num_heads, path, err, errlen) ||
        hf_int_field(root, "d_ff", d->d_ff, &c->d_ff, path, err, errlen) ||
        hf_int_field(root, "num_layers", d->num_layers, &c->num_layers, path, err, errlen)) return -1;
    if (hf_int_field(root, "num_decoder_layers", c->num_layers, &c->num_decoder_layers, path, err, errlen) ||
        hf_int_field(root, "relative_attention_num_buckets", 32, &c->num_buckets, path, err, errlen) ||
        hf_int_field(root, "relative_attention_max_distance", 128, &c->max_distance, path, err, errlen) ||
        hf_int_field(root, "pad_token_id", 0, &c->pad_id, path, err, errlen) ||
        hf_int_field(root, "eos_token_id", 1, &c->eos_id, path, err, errlen) ||
        hf_int_field(root, "decoder_start_token_id", 0, &c->decoder_start_id, path, err, errlen) ||
        hf_float_field(root, "layer_norm_epsilon", 1e-6f, &c->eps, path, err, errlen) ||
        hf_float_field(root, "dropout_rate", 0.1f, &c->dropout, path, err, errlen)) return -1;
    const JsonValue* ffn = json_find(root, "feed_forward_proj");
    if (ffn && ffn->type != JSON_STRING) { snprintf(err, errlen, "%s: field 'feed_forward_proj' must be a string", path); return -1; }
    if (hf_parse_ffn(ffn ? ffn->string : d->ffn, c)) {
        snprintf(err, errlen, "%s: unsupported feed_forward_proj '%s' ([gated-]ACT, ACT one of " HF_ACT_NAMES ")", path, ffn->string);
        return -1;
    }
    if (hf_act_fields(root, c, path, err, errlen) || hf_head_fields(root, c, path, err, errlen)) return -1;
    if (mt5) c->scale_out = 0; // MT5ForConditionalGeneration never scales the decoder output
    const char* bad = t5_config_check(c);
    if (bad) { snprintf(err, errlen, "%s: invalid config: %s", path, bad); return -1; }
    hf_eos_list_note(root, c, path);
    return 0;
}

static inline int t5_config_read(const char* path, T5Config* c, char* err, size_t errlen) {
    JsonValue root;
    if (json_read_file(path, &root, err, errlen)) return -1;
    int rc = t5_config_from_json(&root, c, path, err, errlen);
    json_free(&root);
    return rc;
}

// dense_act_fn's name of the activation
static inline const char* hf_act_name(T5Act a) {
    return a == ACT_RELU ? "relu" : a == ACT_GELU ? "gelu" : a == ACT_SILU ? "silu" : "gelu_new";
}

static inline const char* hf_ffn_name(const T5Config* c) {
    if (c->gated) return c->act == ACT_RELU ? "gated-relu" : c->act == ACT_SILU ? "gated-silu" : "gated-gelu";
    return hf_act_name(c->act);
}

// the shortest decimal that reads back as the same float (1e-06, not 9.99999997e-07)
static inline void hf_format_float(char* buf, size_t n, float x) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) return;
    }
}

// What config.json says of the head, so that transformers 4 and 5 both load the model this engine holds:
//   tie_word_embeddings = scale_out   (4.x reads the flag as "tied and scaled"; 5.x as "scaled" when
//                                      scale_decoder_outputs is absent)
//   scale_decoder_outputs = scale_out (5.x reads it first; 4.x ignores it)
//   lm_head.weight in the weights unless tied and scaled (hf_writes_head): a tied, unscaled model gets
//   a copy of the embedding, which 4.x keeps as an untied equal head and 5.x ties again (equal values).
// One combination has no 4.x form: an untied head under a scaled output (5.x reads it back exactly;
// 4.x would tie the head to the embedding) — hf_head_4x_note says so.
static inline int hf_writes_head(const T5Config* c) { return !(c->tied && c->scale_out); }
static inline const char* hf_head_4x_note(const T5Config* c) {
    return !c->tied && c->scale_out ? "an untied head with a scaled decoder output has no transformers 4 form: "
                                      "transformers 5 loads this directory exactly, transformers 4 would tie the head" : NULL;
}

static inline int t5_config_write(const char* path, const T5Config* c, char* err, size_t errlen) {
    // (a gated exact-GELU FFN is "gated-gelu" with dense_act_fn "gelu": the stored field wins, hf_act_fields)
    char buf[2048], eps[32], drop[32];
    hf_format_float(eps, sizeof(eps), c->eps);
    hf_format_float(drop, sizeof(drop), c->dropout);
    int n = snprintf(buf, sizeof(buf),
        "{\n  \"architectures\": [\"T5ForConditionalGeneration\"],\n  \"model_type\": \"t5\",\n"
        "  \"vocab_size\": %d,\n  \"d_model\": %d,\n  \"d_kv\": %d,\n  \"d_ff\": %d,\n  \"num_heads\": %d,\n"
        "  \"num_layers\": %d,\n  \"num_decoder_layers\": %d,\n  \"relative_attention_num_buckets\": %d,\n"
        "  \"relative_attention_max_distance\": %d,\n  \"layer_norm_epsilon\": %s,\n  \"dropout_rate\": %s,\n"
        "  \"feed_forward_proj\": \"%s\",\n  \"dense_act_fn\": \"%s\",\n  \"is_gated_act\": %s,\n"
        "  \"tie_word_embeddings\": %s,\n  \"scale_decoder_outputs\": %s,\n  \"initializer_factor\": 1.0,\n  \"is_encoder_decoder\": true,\n"
        "  \"use_cache\": true,\n  \"pad_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"decoder_start_token_id\": %d\n}\n",
        c->vocab_size, c->d_model, c->d_kv, c->d_ff, c->num_heads, c->num_layers, c->num_decoder_layers,
        c->num_buckets, c->max_distance, eps, drop, hf_ffn_name(c),
        hf_act_name(c->act), c->gated ? "true" : "false",
        c->scale_out ? "true" : "false", c->scale_out ? "true" : "false", c->pad_id, c->eos_id, c->decoder_start_id);
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) return -1;
    int ok = atomic_write(&a, buf, (size_t)n, err, errlen) == 0;
    return atomic_close(&a, ok, err, errlen);
}

// ----------------------------------------------------------------------------
// weights

static inline int hf_join(char* out, size_t n, const char* dir, const char* name, char* err, size_t errlen) {
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n) { snprintf(err, errlen, "%s: path too long", dir); return -1; }
    return 0;
}

// reads one stacked copy of a layout tensor, checking its shape
static inline int hf_read_tensor(StSet* set, const char* name, const T5Tensor* t, float* dst, const char* dir,
                                 char* err, size_t errlen) {
    StFile* file = NULL;
    const StTensor* st = stset_find(set, name, &file);
    if (st == NULL) { snprintf(err, errlen, "%s: missing tensor '%s'", dir, name); return -1; }
    int ok = t->cols > 0 ? (st->ndim == 2 && st->shape[0] == t->rows && st->shape[1] == t->cols)
                         : (st->ndim == 1 && st->shape[0] == t->rows);
    if (!ok) {
        snprintf(err, errlen, "%s: tensor '%s' has shape [%lld%s%lld] in %s, the config needs [%d%s%d]", dir, name,
                 (long long)st->shape[0], st->ndim > 1 ? ", " : "", st->ndim > 1 ? (long long)st->shape[1] : 0LL,
                 file->path, t->rows, t->cols > 0 ? ", " : "", t->cols);
        return -1;
    }
    return st_read_f32(file, st, dst, err, errlen);
}

// the shared embedding may be stored under any of the names HF ties to it; when none is there but
// lm_head.weight is, transformers ties the embedding to the head (tying is symmetric on load)
static const char* const HF_EMBED_NAMES[3] = { "shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight" };

static inline const char* hf_shared_name(StSet* set) {
    StFile* f;
    for (int i = 0; i < 3; i++) if (stset_find(set, HF_EMBED_NAMES[i], &f)) return HF_EMBED_NAMES[i];
    return stset_find(set, "lm_head.weight", &f) ? "lm_head.weight" : HF_EMBED_NAMES[0];
}

// torch.equal of two (V, C) tables: NaN equals nothing, -0 equals 0
static inline int hf_same_values(const float* a, const float* b, size_t n) {
    for (size_t i = 0; i < n; i++) if (!(a[i] == b[i])) return 0;
    return 1;
}

// every other copy of the embedding in the files must hold the same values as the one read: transformers
// would keep a differing copy as a separate matrix, which this engine's one embedding cannot represent
static inline int hf_check_embed_copies(StSet* set, const char* used, const T5Tensor* t, const float* shared,
                                        const char* dir, char* err, size_t errlen) {
    StFile* f;
    float* tmp = NULL;
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (strcmp(HF_EMBED_NAMES[i], used) == 0 || !stset_find(set, HF_EMBED_NAMES[i], &f)) continue;
        if (!tmp && !(tmp = (float*)malloc(t->size * sizeof(float)))) { snprintf(err, errlen, "%s: out of memory", dir); return -1; }
        rc = hf_read_tensor(set, HF_EMBED_NAMES[i], t, tmp, dir, err, errlen);
        if (rc == 0 && !hf_same_values(tmp, shared, t->size)) {
            snprintf(err, errlen, "%s: '%s' and '%s' hold different values: transformers would keep two embeddings, this "
                     "engine has one (save the model again from transformers, or drop one copy)", dir, used, HF_EMBED_NAMES[i]);
            rc = -1;
        }
    }
    free(tmp);
    return rc;
}

// loads DIR/config.json and its weights into a freshly malloc'd flat buffer (*params).
// Tying as transformers 5 decides it on load: the head is the embedding unless the files hold an
// lm_head.weight whose values differ from it (then it stays a matrix of its own, whatever config.json
// says). The untied layout is the tied one plus lm_head at the end, so the head is read into that last
// slot, compared, and dropped when tied.
static inline int t5_load_hf_dir(const char* dir, T5Config* c, float** params, char* err, size_t errlen) {
    *params = NULL;
    char path[4096];
    if (hf_join(path, sizeof(path), dir, "config.json", err, errlen) || t5_config_read(path, c, err, errlen)) return -1;
    StSet set;
    if (stset_open_dir(&set, dir, err, errlen)) return -1;
    StFile* hf;
    const char* embed = hf_shared_name(&set);
    int has_head = strcmp(embed, "lm_head.weight") != 0 && stset_find(&set, "lm_head.weight", &hf) != NULL;
    c->tied = 0;
    T5Layout L;
    t5_layout(c, &L);
    float* p = (float*)malloc(L.total * sizeof(float));
    if (!p) { snprintf(err, errlen, "%s: out of memory for %zu parameters", dir, L.total); stset_close(&set); return -1; }
    int rc = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS && rc == 0; i++) {
        const T5Tensor* t = &L.t[i];
        for (int l = 0; l < t->layers && t->size && rc == 0; l++) {
            char name[128];
            if (i == P_SHARED) snprintf(name, sizeof(name), "%s", embed);
            else if (i == P_LM_HEAD && !has_head) break;
            else t5_tensor_name(&L, i, l, name, sizeof(name));
            rc = hf_read_tensor(&set, name, t, p + t->offset + (size_t)l * t5_tensor_copy_size(t), dir, err, errlen);
        }
    }
    const T5Tensor* emb = &L.t[P_SHARED];
    if (rc == 0) rc = hf_check_embed_copies(&set, embed, emb, p + emb->offset, dir, err, errlen);
    stset_close(&set);
    if (rc) { free(p); return -1; }
    c->tied = !has_head || hf_same_values(p + L.t[P_LM_HEAD].offset, p + emb->offset, emb->size);
    if (c->tied) { // the head's slot is the last one: the tied layout is everything before it
        float* q = (float*)realloc(p, L.t[P_LM_HEAD].offset * sizeof(float));
        if (q) p = q;
    }
    *params = p;
    return 0;
}

// how the weights are written, as save_pretrained(dtype, max_shard_size) writes them
typedef struct {
    StDtype dtype;             // ST_F32 (default) or ST_BF16
    uint64_t max_shard_bytes;  // 0: transformers 5's default, 50 GB ("50GB" = 50·10^9 bytes)
} HfWeightsOptions;
#define HF_DEFAULT_SHARD_BYTES 50000000000ull

// "5GB", "500MB", "100KB" (10^3 units, as huggingface_hub's parse_size_to_int), or plain bytes; 0 = bad
static inline uint64_t hf_parse_size(const char* s) {
    char* end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) return 0;
    double mult = 1;
    if (strcasecmp(end, "TB") == 0) mult = 1e12;
    else if (strcasecmp(end, "GB") == 0) mult = 1e9;
    else if (strcasecmp(end, "MB") == 0) mult = 1e6;
    else if (strcasecmp(end, "KB") == 0) mult = 1e3;
    else if (*end != 0 || v != floor(v)) return 0;
    return v * mult >= 1.0 && v * mult < 1.8e19 ? (uint64_t)(v * mult) : 0;
}

// the tensors in the order of HF's state_dict (shared, encoder block by block, decoder, lm_head): the
// order save_pretrained fills its shards in. One block's tensors, in module order:
static const int HF_ENC_BLOCK[] = { P_ENC_Q, P_ENC_K, P_ENC_V, P_ENC_O, P_ENC_RELB, P_ENC_LN1, P_ENC_WI0, P_ENC_WI1,
                                    P_ENC_WO, P_ENC_LN2 };
static const int HF_DEC_BLOCK[] = { P_DEC_Q, P_DEC_K, P_DEC_V, P_DEC_O, P_DEC_RELB, P_DEC_LN1, P_DEC_CQ, P_DEC_CK,
                                    P_DEC_CV, P_DEC_CO, P_DEC_LN2, P_DEC_WI0, P_DEC_WI1, P_DEC_WO, P_DEC_LN3 };

// one tensor to write: layout tensor i, copy l, under its HF name
static inline void hf_put_tensor(StWriteTensor* w, char (*name)[128], const T5Layout* L, int i, int l, const float* params) {
    const T5Tensor* t = &L->t[i];
    t5_tensor_name(L, i, l, *name, 128);
    w->name = *name;
    w->ndim = t->cols > 0 ? 2 : 1;
    w->shape[0] = t->rows;
    w->shape[1] = t->cols;
    w->data = params + t->offset + (size_t)l * t5_tensor_copy_size(t);
}

// fills ts/names (room for every layout copy + 1) in state_dict order; returns the count
static inline int hf_state_order(const T5Config* c, const T5Layout* L, const float* params, StWriteTensor* ts, char (*names)[128]) {
    int k = 0;
    hf_put_tensor(&ts[k], &names[k], L, P_SHARED, 0, params); k++;
    for (int stack = 0; stack < 2; stack++) {
        const int* kinds = stack ? HF_DEC_BLOCK : HF_ENC_BLOCK;
        int nk = stack ? (int)(sizeof(HF_DEC_BLOCK) / sizeof(int)) : (int)(sizeof(HF_ENC_BLOCK) / sizeof(int));
        int blocks = stack ? c->num_decoder_layers : c->num_layers;
        for (int l = 0; l < blocks; l++)
            for (int j = 0; j < nk; j++) {
                const T5Tensor* t = &L->t[kinds[j]];
                if (t->size && l < t->layers) { hf_put_tensor(&ts[k], &names[k], L, kinds[j], l, params); k++; }
            }
        hf_put_tensor(&ts[k], &names[k], L, stack ? P_DEC_LNF : P_ENC_LNF, 0, params); k++;
    }
    if (hf_writes_head(c)) { // the head's own matrix, or a copy of the embedding (see t5_config_write)
        hf_put_tensor(&ts[k], &names[k], L, c->tied ? P_SHARED : P_LM_HEAD, 0, params);
        snprintf(names[k], 128, "lm_head.weight");
        k++;
    }
    return k;
}

// removes DIR/model-XXXXX-of-YYYYY.safetensors not named in keep[0..nkeep) (left by an earlier export)
static inline void hf_remove_stale_shards(const char* dir, char (*keep)[64], int nkeep) {
    DIR* d = opendir(dir);
    if (!d) return;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        unsigned a, b;
        char tail[32];
        if (sscanf(e->d_name, "model-%5u-of-%5u.%31s", &a, &b, tail) != 3 || strcmp(tail, "safetensors") != 0) continue;
        int kept = 0;
        for (int i = 0; i < nkeep && !kept; i++) kept = strcmp(keep[i], e->d_name) == 0;
        char path[4096];
        if (!kept && snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path)) remove(path);
    }
    closedir(d);
}

// DIR/model.safetensors.index.json: {"metadata": {"total_parameters", "total_size"}, "weight_map": {name: shard}}
static inline int hf_write_index(const char* dir, const StWriteTensor* ts, const int* shard_of, int n, char (*files)[64],
                                 uint64_t params, uint64_t bytes, char* err, size_t errlen) {
    char path[4096];
    if (hf_join(path, sizeof(path), dir, "model.safetensors.index.json", err, errlen)) return -1;
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) return -1;
    fprintf(a.f, "{\n  \"metadata\": {\n    \"total_parameters\": %llu,\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
            (unsigned long long)params, (unsigned long long)bytes);
    for (int i = 0; i < n; i++) fprintf(a.f, "    \"%s\": \"%s\"%s\n", ts[i].name, files[shard_of[i]], i + 1 < n ? "," : "");
    fputs("  }\n}\n", a.f);
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

// the weights as save_pretrained writes them: tensors taken in state_dict order into the current shard
// until the next would push it past max_shard_bytes (a tensor larger than that gets a shard of its
// own); one shard is DIR/model.safetensors, several are model-0000i-of-0000n.safetensors + the index.
// Files of an earlier export that the new one does not use are removed once the new ones are in place.
static inline int hf_write_weights(const char* dir, const StWriteTensor* ts, int n, const HfWeightsOptions* o,
                                   char* err, size_t errlen) {
    uint64_t esize = o->dtype == ST_BF16 ? 2 : 4, cap = o->max_shard_bytes ? o->max_shard_bytes : HF_DEFAULT_SHARD_BYTES;
    int* shard_of = (int*)malloc((size_t)n * sizeof(int));
    if (!shard_of) { snprintf(err, errlen, "%s: out of memory", dir); return -1; }
    StWriteTensor* group = (StWriteTensor*)malloc((size_t)n * sizeof(StWriteTensor));
    if (!group) { free(shard_of); snprintf(err, errlen, "%s: out of memory", dir); return -1; }
    // shard numbers are given as shards close, as huggingface_hub's split does: a lone big tensor's
    // shard is numbered while the open shard (marked -1) is still filling
    int nshards = 0, open = 0;
    uint64_t cur = 0, total = 0, params = 0;
    for (int i = 0; i <= n; i++) {
        uint64_t bytes = i < n ? (uint64_t)st_write_numel(&ts[i]) * esize : 0;
        if (i < n) { params += bytes / esize; total += bytes; }
        if (i < n && bytes > cap) { shard_of[i] = nshards++; continue; }
        if (open && (i == n || cur + bytes > cap)) {
            for (int j = 0; j < i; j++) if (shard_of[j] == -1) shard_of[j] = nshards;
            nshards++; open = 0; cur = 0;
        }
        if (i < n) { shard_of[i] = -1; open = 1; cur += bytes; }
    }
    char (*files)[64] = (char (*)[64])calloc((size_t)nshards, 64);
    int rc = files ? 0 : -1;
    if (!files) snprintf(err, errlen, "%s: out of memory", dir);
    char path[4096];
    for (int s = 0; s < nshards && rc == 0; s++) {
        if (nshards == 1) snprintf(files[s], 64, "model.safetensors");
        else snprintf(files[s], 64, "model-%05d-of-%05d.safetensors", s + 1, nshards);
        int count = 0;
        for (int i = 0; i < n; i++) if (shard_of[i] == s) group[count++] = ts[i];
        rc = hf_join(path, sizeof(path), dir, files[s], err, errlen);
        if (rc == 0) rc = st_write(path, group, count, NULL, 0, o->dtype, err, errlen);
    }
    if (rc == 0 && nshards > 1) rc = hf_write_index(dir, ts, shard_of, n, files, params, total, err, errlen);
    if (rc == 0) { // the other form's files would shadow (model.safetensors wins on load) or confuse
        if (nshards > 1 && hf_join(path, sizeof(path), dir, "model.safetensors", err, errlen) == 0) remove(path);
        if (nshards == 1 && hf_join(path, sizeof(path), dir, "model.safetensors.index.json", err, errlen) == 0) remove(path);
        hf_remove_stale_shards(dir, files, nshards == 1 ? 0 : nshards);
    }
    free(files); free(shard_of); free(group);
    return rc;
}

// writes DIR/config.json and the weights (HfWeightsOptions; NULL = F32, one file up to 50 GB) that
// transformers 4 and 5 load as this model (see t5_config_write for the head)
static inline int t5_save_hf_weights(const char* dir, const T5Config* c, const float* params, const HfWeightsOptions* opt,
                                     char* err, size_t errlen) {
    HfWeightsOptions def = { ST_F32, 0 };
    if (!opt) opt = &def;
    if (mkdir_p(dir, err, errlen)) return -1;
    T5Layout L;
    t5_layout(c, &L);
    int count = 1;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) if (L.t[i].size) count += L.t[i].layers;
    StWriteTensor* ts = (StWriteTensor*)calloc((size_t)count, sizeof(StWriteTensor));
    char (*names)[128] = (char (*)[128])calloc((size_t)count, 128);
    if (!ts || !names) { free(ts); free(names); snprintf(err, errlen, "%s: out of memory", dir); return -1; }
    int n = hf_state_order(c, &L, params, ts, names);
    char path[4096];
    int rc = hf_write_weights(dir, ts, n, opt, err, errlen);
    if (rc == 0) rc = hf_join(path, sizeof(path), dir, "config.json", err, errlen);
    if (rc == 0) rc = t5_config_write(path, c, err, errlen);
    free(ts); free(names);
    return rc;
}

// F32, unsharded: config.json + model.safetensors
static inline int t5_save_hf_dir(const char* dir, const T5Config* c, const float* params, char* err, size_t errlen) {
    return t5_save_hf_weights(dir, c, params, NULL, err, errlen);
}

// ----------------------------------------------------------------------------
// the tokenizer beside the weights: a hub download of google/flan-t5-* holds spiece.model, and so
// does an HF directory this project writes (hf_save_tokenizer), so a model directory is self-contained

#define T5_DEFAULT_TOKENIZER "../shared/data/t5/spiece.model"

// the SentencePiece model to use: `given` (--tokenizer) when set; else DIR/spiece.model of the first
// model spec that is a directory holding one (dir1, dir2 may be NULL or presets); else the default
static inline const char* hf_tokenizer_path(char* out, size_t n, const char* given, const char* dir1, const char* dir2) {
    const char* dirs[2] = { dir1, dir2 };
    struct stat st;
    if (given) { snprintf(out, n, "%s", given); return out; }
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || stat(dirs[i], &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        snprintf(out, n, "%s/spiece.model", dirs[i]);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) return out;
    }
    snprintf(out, n, "%s", T5_DEFAULT_TOKENIZER);
    return out;
}

// DIR/spiece.model = a copy of the tokenizer `path`; nothing to do where that file does not exist
// (a training run that never needed one) or is DIR's own
static inline int hf_save_tokenizer(const char* dir, const char* path, char* err, size_t errlen) {
    char dst[4096];
    struct stat a, b;
    if (stat(path, &a) != 0 || !S_ISREG(a.st_mode)) return 0;
    if (hf_join(dst, sizeof(dst), dir, "spiece.model", err, errlen)) return -1;
    if (stat(dst, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) return 0;
    return file_copy(path, dst, err, errlen);
}

#endif // T5_HF_H
