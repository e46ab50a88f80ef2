// t5.h — the ONE definition of the T5 model configuration and its flat parameter layout.
// Included by the CPU trainer (train_t5.c), the CUDA trainer, the checkpoint code and the
// Hugging Face importer/exporter: every one of them walks the same table below.
//
// Covers both families (see ../shared/DESIGN.md):
//   T5 v1.1 / FLAN-T5: gated FFN  wo(act(wi_0 x) * wi_1 x), act = GELU tanh approx, untied lm_head
//   original T5:       ReLU FFN   wo(relu(wi x)), lm_head tied to `shared`, decoder output * C^-0.5
// Tying and output scaling are two settings (`tied`, `scale_out`): transformers >= 5 makes a tied,
// unscaled FLAN-shaped model from a config, and keeps a checkpoint's own lm_head untied under a
// scaled config; llmc/hf.h reads both from config.json and the weights as transformers does.
#ifndef T5_H
#define T5_H

#include <stddef.h>  // defines: size_t
#include <stdio.h>   // defines: snprintf
#include <string.h>  // defines: strcmp
#include <assert.h>  // defines: static_assert (compile time only)
#include <math.h>    // defines: log, logf

// ----------------------------------------------------------------------------
// configuration

typedef enum { ACT_RELU = 0, ACT_GELU = 1 /* exact, erf */, ACT_GELU_TANH = 2 /* HF "gelu_new" */,
               ACT_SILU = 3 /* HF "silu" = "swish": UL2's gated-silu */ } T5Act;

// the few functions both engines evaluate element by element are compiled for the host and, under
// nvcc, for the device too: one definition, the same arithmetic
#ifdef __CUDACC__
#define T5_HOST_DEVICE __host__ __device__
#else
#define T5_HOST_DEVICE
#endif

// activations and their derivatives: relu, gelu (erf), gelu_new (tanh approximation, T5 v1.1 / FLAN),
// silu (x·σ(x), torch's SiLU: x / (1 + e^−x) in fp32).
// tanh: CUDA's tanhf on the device; on the host t5_tanhf (llmc/vmath.h, within 3 ulp of tanhf), which
// lets the CPU engine's activation loops vectorise
#ifdef __CUDA_ARCH__
#define T5_TANHF tanhf
#else
#include "vmath.h"  // defines: t5_tanhf
#define T5_TANHF t5_tanhf
#endif
#define GELU_K 0.7978845608028654f  // sqrt(2/π)
static inline T5_HOST_DEVICE float act_value(T5Act a, float x) {
    switch (a) {
        case ACT_RELU: return x > 0.0f ? x : 0.0f;
        case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case ACT_SILU: return x / (1.0f + expf(-x));
        default: return 0.5f * x * (1.0f + T5_TANHF(GELU_K * (x + 0.044715f * x * x * x)));
    }
}
static inline T5_HOST_DEVICE float act_grad(T5Act a, float x) {
    switch (a) {
        case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
        case ACT_GELU: return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.3989422804014327f * expf(-0.5f * x * x);
        case ACT_SILU: { float s = 1.0f / (1.0f + expf(-x)); return s * (1.0f + x * (1.0f - s)); } // σ + x·σ(1 − σ)
        default: {
            float t = T5_TANHF(GELU_K * (x + 0.044715f * x * x * x));
            return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        }
    }
}

typedef struct {
    int vocab_size;         // V: embedding rows (32128 for the T5 vocabulary)
    int d_model;            // C
    int d_kv;               // D: per-head width; inner width H*D need not equal C
    int num_heads;          // H
    int d_ff;               // F
    int num_layers;         // Le: encoder blocks
    int num_decoder_layers; // Ld: decoder blocks
    int num_buckets;        // NB: relative position buckets
    int max_distance;       // relative distance where buckets stop growing
    float eps;              // RMSNorm epsilon
    float dropout;          // dropout rate at T5's sites (0 = off)
    T5Act act;              // FFN activation
    int gated;              // 1: wi_0/wi_1 gated FFN (T5 v1.1, FLAN); 0: single wi
    int tied;               // 1: lm_head = shared (no lm_head tensor in the layout)
    int scale_out;          // 1: decoder output scaled by C^-0.5 before the head (HF scale_decoder_outputs)
    int pad_id, eos_id, decoder_start_id;
} T5Config;

// validate a config; returns NULL if fine, else a static message naming the bad field
static inline const char* t5_config_check(const T5Config* c) {
    if (c->vocab_size < 2 || c->vocab_size > (1 << 24)) return "vocab_size must be in [2, 16777216]";
    if (c->d_model < 1 || c->d_model > 65536) return "d_model must be in [1, 65536]";
    if (c->d_kv < 1 || c->d_kv > 4096) return "d_kv must be in [1, 4096]";
    if (c->num_heads < 1 || c->num_heads > 1024) return "num_heads must be in [1, 1024]";
    if ((long long)c->num_heads * c->d_kv > 65536) return "num_heads * d_kv must be <= 65536";
    if (c->d_ff < 1 || c->d_ff > (1 << 20)) return "d_ff must be in [1, 1048576]";
    if (c->num_layers < 1 || c->num_layers > 256) return "num_layers must be in [1, 256]";
    if (c->num_decoder_layers < 1 || c->num_decoder_layers > 256) return "num_decoder_layers must be in [1, 256]";
    // the encoder's buckets split in two halves whose exact part, NB/4, must hold at least distance 0:
    // below 4, t5_relative_bucket divides a log by log(max_distance / 0) (HF's formula fails the same way)
    if (c->num_buckets < 4 || c->num_buckets > 4096) return "relative_attention_num_buckets must be in [4, 4096]";
    // the logarithmic buckets divide by log(max_distance / max_exact), max_exact = NB/2 (causal)
    if (c->max_distance <= c->num_buckets / 2) return "relative_attention_max_distance must exceed num_buckets/2";
    if (!(c->eps > 0.0f && c->eps < 1.0f)) return "layer_norm_epsilon must be in (0, 1)";
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) return "dropout_rate must be in [0, 1)";
    if (c->act != ACT_RELU && c->act != ACT_GELU && c->act != ACT_GELU_TANH && c->act != ACT_SILU) return "unknown activation";
    if ((c->tied != 0 && c->tied != 1) || (c->scale_out != 0 && c->scale_out != 1)) return "tied and scale_out must be 0 or 1";
    if (c->pad_id < 0 || c->pad_id >= c->vocab_size) return "pad_token_id out of range";
    if (c->eos_id < 0 || c->eos_id >= c->vocab_size) return "eos_token_id out of range";
    if (c->decoder_start_id < 0 || c->decoder_start_id >= c->vocab_size) return "decoder_start_token_id out of range";
    return NULL;
}

// "gated FFN, tied head, output scaled": the table line both trainers print
static inline const char* t5_head_desc(const T5Config* c) {
    static const char* d[8] = { "plain FFN, untied head", "plain FFN, untied head, output scaled",
                                "plain FFN, tied head", "plain FFN, tied head, output scaled",
                                "gated FFN, untied head", "gated FFN, untied head, output scaled",
                                "gated FFN, tied head", "gated FFN, tied head, output scaled" };
    return d[(c->gated ? 4 : 0) + (c->tied ? 2 : 0) + (c->scale_out ? 1 : 0)];
}

// named presets: the published shapes of google/flan-t5-* and t5-* (vocab rows 32128)
typedef struct { const char* name; int d_model, d_kv, num_heads, d_ff, layers; int flan; } T5Preset;
static const T5Preset T5_PRESETS[] = {
    {"flan-t5-small", 512, 64, 6, 1024, 8, 1},
    {"flan-t5-base", 768, 64, 12, 2048, 12, 1},
    {"flan-t5-large", 1024, 64, 16, 2816, 24, 1},
    {"flan-t5-xl", 2048, 64, 32, 5120, 24, 1},
    {"flan-t5-xxl", 4096, 64, 64, 10240, 24, 1},
    {"t5-small", 512, 64, 8, 2048, 6, 0},
    {"t5-base", 768, 64, 12, 3072, 12, 0},
    {"t5-large", 1024, 64, 16, 4096, 24, 0},
    {"t5-3b", 1024, 128, 32, 16384, 24, 0},
    {"t5-11b", 1024, 128, 128, 65536, 24, 0},
};
#define T5_NUM_PRESETS ((int)(sizeof(T5_PRESETS) / sizeof(T5_PRESETS[0])))

// fills *c from a preset name; returns 0, or -1 if the name is unknown
static inline int t5_config_preset(T5Config* c, const char* name) {
    for (int i = 0; i < T5_NUM_PRESETS; i++) {
        const T5Preset* p = &T5_PRESETS[i];
        if (strcmp(p->name, name) != 0) continue;
        *c = (T5Config){ .vocab_size = 32128, .d_model = p->d_model, .d_kv = p->d_kv, .num_heads = p->num_heads,
                         .d_ff = p->d_ff, .num_layers = p->layers, .num_decoder_layers = p->layers,
                         .num_buckets = 32, .max_distance = 128, .eps = 1e-6f, .dropout = 0.1f,
                         .act = p->flan ? ACT_GELU_TANH : ACT_RELU, .gated = p->flan, .tied = !p->flan, .scale_out = !p->flan,
                         .pad_id = 0, .eos_id = 1, .decoder_start_id = 0 };
        return 0;
    }
    return -1;
}

// ----------------------------------------------------------------------------
// the flat parameter layout: one buffer, tensors in this order, per-layer tensors stacked (L, ...)
// Linear weights keep the PyTorch (out, in) layout, so import/export is a straight copy.

typedef struct {
    float* shared;      // (V, C)        token embedding, shared by encoder and decoder
    float* enc_relb;    // (NB, H)       encoder relative position bias (block 0, used by all blocks)
    float* enc_ln1;     // (Le, C)       RMSNorm before self-attention
    float* enc_q;       // (Le, HD, C)
    float* enc_k;       // (Le, HD, C)
    float* enc_v;       // (Le, HD, C)
    float* enc_o;       // (Le, C, HD)
    float* enc_ln2;     // (Le, C)       RMSNorm before the FFN
    float* enc_wi0;     // (Le, F, C)    wi_0 (gated) or wi (ReLU)
    float* enc_wi1;     // (Le, F, C)    wi_1, gated only (else empty)
    float* enc_wo;      // (Le, C, F)
    float* enc_lnf;     // (C)           encoder final RMSNorm
    float* dec_relb;    // (NB, H)       decoder relative position bias (causal buckets)
    float* dec_ln1;     // (Ld, C)
    float* dec_q;       // (Ld, HD, C)
    float* dec_k;       // (Ld, HD, C)
    float* dec_v;       // (Ld, HD, C)
    float* dec_o;       // (Ld, C, HD)
    float* dec_ln2;     // (Ld, C)       RMSNorm before cross-attention
    float* dec_cq;      // (Ld, HD, C)   cross-attention: no relative bias
    float* dec_ck;      // (Ld, HD, C)
    float* dec_cv;      // (Ld, HD, C)
    float* dec_co;      // (Ld, C, HD)
    float* dec_ln3;     // (Ld, C)       RMSNorm before the FFN
    float* dec_wi0;     // (Ld, F, C)
    float* dec_wi1;     // (Ld, F, C)    gated only
    float* dec_wo;      // (Ld, C, F)
    float* dec_lnf;     // (C)           decoder final RMSNorm
    float* lm_head;     // (V, C)        untied only (else empty: the head is `shared`)
} T5Params;

enum {
    P_SHARED, P_ENC_RELB, P_ENC_LN1, P_ENC_Q, P_ENC_K, P_ENC_V, P_ENC_O, P_ENC_LN2, P_ENC_WI0, P_ENC_WI1,
    P_ENC_WO, P_ENC_LNF, P_DEC_RELB, P_DEC_LN1, P_DEC_Q, P_DEC_K, P_DEC_V, P_DEC_O, P_DEC_LN2, P_DEC_CQ,
    P_DEC_CK, P_DEC_CV, P_DEC_CO, P_DEC_LN3, P_DEC_WI0, P_DEC_WI1, P_DEC_WO, P_DEC_LNF, P_LM_HEAD,
    NUM_PARAM_TENSORS
};
static_assert(sizeof(T5Params) == NUM_PARAM_TENSORS * sizeof(float*), "T5Params and the tensor enum disagree");

typedef struct {
    char name[96];   // Hugging Face name; "%d" stands for the block index of stacked tensors
    int layers;      // stacked copies (1 for tensors outside the blocks)
    int rows, cols;  // shape of one copy; cols = 0 for a vector
    size_t size;     // floats in all copies; 0 when the tensor is absent in this config
    size_t offset;   // floats from the start of the flat buffer
} T5Tensor;

typedef struct {
    T5Tensor t[NUM_PARAM_TENSORS];
    size_t total;    // floats in the flat buffer
} T5Layout;

static inline void t5_set_tensor(T5Tensor* t, const char* name, int layers, int rows, int cols, int present) {
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->layers = layers; t->rows = rows; t->cols = cols;
    t->size = present ? (size_t)layers * rows * (cols > 0 ? cols : 1) : 0;
}

// the table: HF names and shapes for a config, then offsets in table order
static inline void t5_layout(const T5Config* c, T5Layout* L) {
    int V = c->vocab_size, C = c->d_model, HD = c->num_heads * c->d_kv, F = c->d_ff, NB = c->num_buckets;
    int H = c->num_heads, Le = c->num_layers, Ld = c->num_decoder_layers, g = c->gated;
    const char* wi0 = g ? "wi_0" : "wi";
    char n[96];
    T5Tensor* t = L->t;
    t5_set_tensor(&t[P_SHARED], "shared.weight", 1, V, C, 1);
    t5_set_tensor(&t[P_ENC_RELB], "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 1, NB, H, 1);
    t5_set_tensor(&t[P_ENC_LN1], "encoder.block.%d.layer.0.layer_norm.weight", Le, C, 0, 1);
    t5_set_tensor(&t[P_ENC_Q], "encoder.block.%d.layer.0.SelfAttention.q.weight", Le, HD, C, 1);
    t5_set_tensor(&t[P_ENC_K], "encoder.block.%d.layer.0.SelfAttention.k.weight", Le, HD, C, 1);
    t5_set_tensor(&t[P_ENC_V], "encoder.block.%d.layer.0.SelfAttention.v.weight", Le, HD, C, 1);
    t5_set_tensor(&t[P_ENC_O], "encoder.block.%d.layer.0.SelfAttention.o.weight", Le, C, HD, 1);
    t5_set_tensor(&t[P_ENC_LN2], "encoder.block.%d.layer.1.layer_norm.weight", Le, C, 0, 1);
    snprintf(n, sizeof(n), "encoder.block.%%d.layer.1.DenseReluDense.%s.weight", wi0);
    t5_set_tensor(&t[P_ENC_WI0], n, Le, F, C, 1);
    t5_set_tensor(&t[P_ENC_WI1], "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", Le, F, C, g);
    t5_set_tensor(&t[P_ENC_WO], "encoder.block.%d.layer.1.DenseReluDense.wo.weight", Le, C, F, 1);
    t5_set_tensor(&t[P_ENC_LNF], "encoder.final_layer_norm.weight", 1, C, 0, 1);
    t5_set_tensor(&t[P_DEC_RELB], "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 1, NB, H, 1);
    t5_set_tensor(&t[P_DEC_LN1], "decoder.block.%d.layer.0.layer_norm.weight", Ld, C, 0, 1);
    t5_set_tensor(&t[P_DEC_Q], "decoder.block.%d.layer.0.SelfAttention.q.weight", Ld, HD, C, 1);
    t5_set_tensor(&t[P_DEC_K], "decoder.block.%d.layer.0.SelfAttention.k.weight", Ld, HD, C, 1);
    t5_set_tensor(&t[P_DEC_V], "decoder.block.%d.layer.0.SelfAttention.v.weight", Ld, HD, C, 1);
    t5_set_tensor(&t[P_DEC_O], "decoder.block.%d.layer.0.SelfAttention.o.weight", Ld, C, HD, 1);
    t5_set_tensor(&t[P_DEC_LN2], "decoder.block.%d.layer.1.layer_norm.weight", Ld, C, 0, 1);
    t5_set_tensor(&t[P_DEC_CQ], "decoder.block.%d.layer.1.EncDecAttention.q.weight", Ld, HD, C, 1);
    t5_set_tensor(&t[P_DEC_CK], "decoder.block.%d.layer.1.EncDecAttention.k.weight", Ld, HD, C, 1);
    t5_set_tensor(&t[P_DEC_CV], "decoder.block.%d.layer.1.EncDecAttention.v.weight", Ld, HD, C, 1);
    t5_set_tensor(&t[P_DEC_CO], "decoder.block.%d.layer.1.EncDecAttention.o.weight", Ld, C, HD, 1);
    t5_set_tensor(&t[P_DEC_LN3], "decoder.block.%d.layer.2.layer_norm.weight", Ld, C, 0, 1);
    snprintf(n, sizeof(n), "decoder.block.%%d.layer.2.DenseReluDense.%s.weight", wi0);
    t5_set_tensor(&t[P_DEC_WI0], n, Ld, F, C, 1);
    t5_set_tensor(&t[P_DEC_WI1], "decoder.block.%d.layer.2.DenseReluDense.wi_1.weight", Ld, F, C, g);
    t5_set_tensor(&t[P_DEC_WO], "decoder.block.%d.layer.2.DenseReluDense.wo.weight", Ld, C, F, 1);
    t5_set_tensor(&t[P_DEC_LNF], "decoder.final_layer_norm.weight", 1, C, 0, 1);
    t5_set_tensor(&t[P_LM_HEAD], "lm_head.weight", 1, V, C, !c->tied);
    size_t off = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) { t[i].offset = off; off += t[i].size; }
    L->total = off;
}

// floats in one stacked copy of tensor i
static inline size_t t5_tensor_copy_size(const T5Tensor* t) { return (size_t)t->rows * (t->cols > 0 ? t->cols : 1); }

// the HF name of copy `layer` of tensor i
static inline void t5_tensor_name(const T5Layout* L, int i, int layer, char* buf, size_t n) {
    const char* name = L->t[i].name;
    const char* at = strstr(name, "%d");
    if (at == NULL) { snprintf(buf, n, "%s", name); return; }
    snprintf(buf, n, "%.*s%d%s", (int)(at - name), name, layer, at + 2);
}

// point the struct at the flat buffer; absent tensors get NULL
static inline void t5_point_params(T5Params* p, float* base, const T5Layout* L) {
    float** ptrs = (float**)p;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) ptrs[i] = L->t[i].size ? base + L->t[i].offset : NULL;
}

// is tensor i an RMSNorm weight (initialised to 1)
static inline int t5_is_rmsnorm(int i) {
    return i == P_ENC_LN1 || i == P_ENC_LN2 || i == P_ENC_LNF || i == P_DEC_LN1 || i == P_DEC_LN2 ||
           i == P_DEC_LN3 || i == P_DEC_LNF;
}

// is tensor i in HF Trainer's group without weight decay (--decay-norms 0). Trainer.get_decay_parameter_names
// drops every parameter whose name matches "bias" or "_norm(.|$)": the RMSNorm weights (…layer_norm.weight)
// and the relative attention bias tables (…relative_attention_bias.weight), though the latter are weights.
static inline int t5_no_decay(int i) { return t5_is_rmsnorm(i) || i == P_ENC_RELB || i == P_DEC_RELB; }

// the older name of t5_no_decay, still read by the GPU's decay runs (llmc/zero.cuh)
static inline int t5_is_norm(int i) { return t5_no_decay(i); }

// ----------------------------------------------------------------------------
// relative position buckets (HF T5Attention._relative_position_bucket), rel = key pos - query pos.
// Bidirectional (encoder): half the buckets for rel > 0. Causal (decoder): only rel ≤ 0 counts.
// The first NB'/2 distances get a bucket each, the rest share logarithmic buckets up to max_distance.
// The log term is computed in fp32 like PyTorch does, then truncated toward zero: the float log is
// taken in double and rounded (the correctly rounded value, what host logf gives), so the same
// function runs on the GPU (llmc/attention.cuh) with the same results.
static inline T5_HOST_DEVICE int t5_relative_bucket(int rel, int bidirectional, int num_buckets, int max_distance) {
    int bucket = 0, n;
    if (bidirectional) {
        num_buckets /= 2;
        if (rel > 0) bucket += num_buckets;
        n = rel < 0 ? -rel : rel;
    } else {
        n = rel < 0 ? -rel : 0;
    }
    int max_exact = num_buckets / 2;
    if (n < max_exact) return bucket + n;
    float scale = (float)log((double)max_distance / (double)max_exact);
    float lg = (float)log((double)((float)n / (float)max_exact));
    float large = lg / scale * (float)(num_buckets - max_exact);
    int v = max_exact + (int)large;
    return bucket + (v < num_buckets - 1 ? v : num_buckets - 1);
}

#endif // T5_H
