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
#include <sys/stat.h>     // defines: mkdir
#include "t5.h"           // defines: T5Config, T5Layout, t5_layout, t5_tensor_name, t5_config_check
#include "json.h"         // defines: JsonValue, json_read_file, json_find, json_free
#include "safetensors.h"  // defines: StSet, stset_open_dir, stset_find, st_read_f32, st_write_f32
#include "fileio.h"       // defines: AtomicFile

// ----------------------------------------------------------------------------
// config.json

// integer field: 0 ok (or absent with a default: *out = def), -1 error
static inline int hf_int_field(const JsonValue* root, const char* key, int required, int def, int* out,
                               const char* path, char* err, size_t errlen) {
    const JsonValue* v = json_find(root, key);
    if (v && v->type == JSON_ARRAY && v->count > 0) v = &v->items[0]; // eos_token_id may be a list
    if (v == NULL || v->type == JSON_NULL) {
        if (required) { snprintf(err, errlen, "%s: missing field '%s'", path, key); return -1; }
        *out = def; return 0;
    }
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

// feed_forward_proj as T5Config reads it: "[gated-]ACT"; "gated-gelu" means the tanh approximation
static inline int hf_parse_ffn(const char* s, T5Config* c) {
    c->gated = strncmp(s, "gated-", 6) == 0;
    const char* act = c->gated ? s + 6 : s;
    if (strcmp(act, "relu") == 0) c->act = ACT_RELU;
    else if (strcmp(act, "gelu_new") == 0 || (c->gated && strcmp(act, "gelu") == 0)) c->act = ACT_GELU_TANH;
    else if (strcmp(act, "gelu") == 0) c->act = ACT_GELU;
    else return -1;
    return 0;
}

static inline int t5_config_from_json(const JsonValue* root, T5Config* c, const char* path, char* err, size_t errlen) {
    if (root->type != JSON_OBJECT) { snprintf(err, errlen, "%s: not a JSON object", path); return -1; }
    const JsonValue* mt = json_find(root, "model_type");
    if (mt && (mt->type != JSON_STRING || (strcmp(mt->string, "t5") != 0 && strcmp(mt->string, "mt5") != 0))) {
        snprintf(err, errlen, "%s: model_type must be \"t5\" (or \"mt5\")", path); return -1;
    }
    memset(c, 0, sizeof(*c));
    if (hf_int_field(root, "vocab_size", 1, 0, &c->vocab_size, path, err, errlen) ||
        hf_int_field(root, "d_model", 1, 0, &c->d_model, path, err, errlen) ||
        hf_int_field(root, "d_kv", 1, 0, &c->d_kv, path, err, errlen) ||
        hf_int_field(root, "num_heads", 1, 0, &c->num_heads, path, err, errlen) ||
        hf_int_field(root, "d_ff", 1, 0, &c->d_ff, path, err, errlen) ||
        hf_int_field(root, "num_layers", 1, 0, &c->num_layers, path, err, errlen)) return -1;
    if (hf_int_field(root, "num_decoder_layers", 0, c->num_layers, &c->num_decoder_layers, path, err, errlen) ||
        hf_int_field(root, "relative_attention_num_buckets", 0, 32, &c->num_buckets, path, err, errlen) ||
        hf_int_field(root, "relative_attention_max_distance", 0, 128, &c->max_distance, path, err, errlen) ||
        hf_int_field(root, "pad_token_id", 0, 0, &c->pad_id, path, err, errlen) ||
        hf_int_field(root, "eos_token_id", 0, 1, &c->eos_id, path, err, errlen) ||
        hf_int_field(root, "decoder_start_token_id", 0, 0, &c->decoder_start_id, path, err, errlen) ||
        hf_float_field(root, "layer_norm_epsilon", 1e-6f, &c->eps, path, err, errlen) ||
        hf_float_field(root, "dropout_rate", 0.1f, &c->dropout, path, err, errlen)) return -1;
    const JsonValue* ffn = json_find(root, "feed_forward_proj");
    if (ffn && ffn->type != JSON_STRING) { snprintf(err, errlen, "%s: field 'feed_forward_proj' must be a string", path); return -1; }
    if (hf_parse_ffn(ffn ? ffn->string : "relu", c)) {
        snprintf(err, errlen, "%s: unsupported feed_forward_proj '%s' (relu, gelu, gelu_new, gated-gelu, gated-relu)", path, ffn->string);
        return -1;
    }
    const JsonValue* tie = json_find(root, "tie_word_embeddings");
    if (tie && tie->type != JSON_BOOL) { snprintf(err, errlen, "%s: field 'tie_word_embeddings' must be true or false", path); return -1; }
    c->tied = tie ? tie->boolean : 1;
    const char* bad = t5_config_check(c);
    if (bad) { snprintf(err, errlen, "%s: invalid config: %s", path, bad); return -1; }
    return 0;
}

static inline int t5_config_read(const char* path, T5Config* c, char* err, size_t errlen) {
    JsonValue root;
    if (json_read_file(path, &root, err, errlen)) return -1;
    int rc = t5_config_from_json(&root, c, path, err, errlen);
    json_free(&root);
    return rc;
}

static inline const char* hf_ffn_name(const T5Config* c) {
    if (c->gated) return c->act == ACT_RELU ? "gated-relu" : "gated-gelu";
    return c->act == ACT_RELU ? "relu" : c->act == ACT_GELU ? "gelu" : "gelu_new";
}

// the shortest decimal that reads back as the same float (1e-06, not 9.99999997e-07)
static inline void hf_format_float(char* buf, size_t n, float x) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) return;
    }
}

static inline int t5_config_write(const char* path, const T5Config* c, char* err, size_t errlen) {
    if (c->gated && c->act == ACT_GELU) { snprintf(err, errlen, "%s: a gated exact-GELU FFN has no HF config name", path); return -1; }
    char buf[2048], eps[32], drop[32];
    hf_format_float(eps, sizeof(eps), c->eps);
    hf_format_float(drop, sizeof(drop), c->dropout);
    int n = snprintf(buf, sizeof(buf),
        "{\n  \"architectures\": [\"T5ForConditionalGeneration\"],\n  \"model_type\": \"t5\",\n"
        "  \"vocab_size\": %d,\n  \"d_model\": %d,\n  \"d_kv\": %d,\n  \"d_ff\": %d,\n  \"num_heads\": %d,\n"
        "  \"num_layers\": %d,\n  \"num_decoder_layers\": %d,\n  \"relative_attention_num_buckets\": %d,\n"
        "  \"relative_attention_max_distance\": %d,\n  \"layer_norm_epsilon\": %s,\n  \"dropout_rate\": %s,\n"
        "  \"feed_forward_proj\": \"%s\",\n  \"dense_act_fn\": \"%s\",\n  \"is_gated_act\": %s,\n"
        "  \"tie_word_embeddings\": %s,\n  \"initializer_factor\": 1.0,\n  \"is_encoder_decoder\": true,\n"
        "  \"use_cache\": true,\n  \"pad_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"decoder_start_token_id\": %d\n}\n",
        c->vocab_size, c->d_model, c->d_kv, c->d_ff, c->num_heads, c->num_layers, c->num_decoder_layers,
        c->num_buckets, c->max_distance, eps, drop, hf_ffn_name(c),
        c->act == ACT_RELU ? "relu" : c->act == ACT_GELU ? "gelu" : "gelu_new", c->gated ? "true" : "false",
        c->tied ? "true" : "false", c->pad_id, c->eos_id, c->decoder_start_id);
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

// the shared embedding may be stored under any of the names HF ties to it
static inline const char* hf_shared_name(StSet* set) {
    static const char* names[] = { "shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight" };
    StFile* f;
    for (int i = 0; i < 3; i++) if (stset_find(set, names[i], &f)) return names[i];
    return names[0];
}

// loads DIR/config.json and its weights into a freshly malloc'd flat buffer (*params)
static inline int t5_load_hf_dir(const char* dir, T5Config* c, float** params, char* err, size_t errlen) {
    *params = NULL;
    char path[4096];
    if (hf_join(path, sizeof(path), dir, "config.json", err, errlen) || t5_config_read(path, c, err, errlen)) return -1;
    StSet set;
    if (stset_open_dir(&set, dir, err, errlen)) return -1;
    T5Layout L;
    t5_layout(c, &L);
    float* p = (float*)malloc(L.total * sizeof(float));
    if (!p) { snprintf(err, errlen, "%s: out of memory for %zu parameters", dir, L.total); stset_close(&set); return -1; }
    int rc = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS && rc == 0; i++) {
        const T5Tensor* t = &L.t[i];
        for (int l = 0; l < t->layers && t->size && rc == 0; l++) {
            char name[128];
            if (i == P_SHARED) snprintf(name, sizeof(name), "%s", hf_shared_name(&set));
            else t5_tensor_name(&L, i, l, name, sizeof(name));
            rc = hf_read_tensor(&set, name, t, p + t->offset + (size_t)l * t5_tensor_copy_size(t), dir, err, errlen);
        }
    }
    stset_close(&set);
    if (rc) { free(p); return -1; }
    *params = p;
    return 0;
}

// writes DIR/config.json and DIR/model.safetensors (F32) that transformers' from_pretrained loads
static inline int t5_save_hf_dir(const char* dir, const T5Config* c, const float* params, char* err, size_t errlen) {
    if (mkdir_p(dir, err, errlen)) return -1;
    T5Layout L;
    t5_layout(c, &L);
    int count = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) if (L.t[i].size) count += L.t[i].layers;
    StWriteTensor* ts = (StWriteTensor*)calloc((size_t)count, sizeof(StWriteTensor));
    char (*names)[128] = (char (*)[128])calloc((size_t)count, 128);
    if (!ts || !names) { free(ts); free(names); snprintf(err, errlen, "%s: out of memory", dir); return -1; }
    int k = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const T5Tensor* t = &L.t[i];
        for (int l = 0; l < t->layers && t->size; l++, k++) {
            t5_tensor_name(&L, i, l, names[k], 128);
            ts[k].name = names[k];
            ts[k].ndim = t->cols > 0 ? 2 : 1;
            ts[k].shape[0] = t->rows;
            ts[k].shape[1] = t->cols;
            ts[k].data = params + t->offset + (size_t)l * t5_tensor_copy_size(t);
        }
    }
    char path[4096];
    int rc = hf_join(path, sizeof(path), dir, "model.safetensors", err, errlen);
    if (rc == 0) rc = st_write_f32(path, ts, count, NULL, 0, err, errlen);
    if (rc == 0) rc = hf_join(path, sizeof(path), dir, "config.json", err, errlen);
    if (rc == 0) rc = t5_config_write(path, c, err, errlen);
    free(ts); free(names);
    return rc;
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
