// flops.h — the FLOP table of MFU: training FLOPs of a batch's real tokens (full fine-tuning and LoRA)
// and the bf16 dense peak of known cards. Host arithmetic, read by the GPU engine (train_t5.cu) and its
// test; MFU counts real (non-padding) tokens only, as DESIGN.md asks.
#ifndef T5_FLOPS_H
#define T5_FLOPS_H

#include <string.h>      // defines: strstr
#include "t5.h"          // defines: T5Config
#include "lora.h"        // defines: LoraConfig, LORA_NUM_TARGETS, LORA_Q, LORA_K, LORA_V, LORA_O
#include "dataloader.h"  // defines: T5Batch, IGNORE_INDEX

// training FLOPs of one batch, counting real tokens only (model FLOPs: --recompute's second forward is not
// counted). Every Linear is 2·in·out per token, attention 2·2·H·D per (query, key) pair (causal pairs only).
// Full fine-tuning: forward + backward = 3 × forward. LoRA (lora not NULL): the frozen Linears have no
// weight gradient, 2 × their forward; attention's products of activations keep 3 ×; each wrapped Linear
// adds its adapter, 3 × 2·r·(in + out) per token (u = x·Aᵀ and u·Bᵀ forward; dB, du, dA, dx backward).

// the adapter's FLOPs per token (3 × forward) over the names in `mask` among those of one stack's layer
static inline double lora_token_flops(const LoraConfig* lora, unsigned mask, const T5Config* c) {
    double C = c->d_model, HD = (double)c->num_heads * c->d_kv, F = c->d_ff, f = 0.0;
    const double in[LORA_NUM_TARGETS] = { C, C, C, HD, C, C, C, F }, out[LORA_NUM_TARGETS] = { HD, HD, HD, C, F, F, F, C };
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if ((lora->targets & mask) & (1u << t)) f += 3.0 * 2.0 * lora->r * (in[t] + out[t]);
    return f;
}

static inline double t5_batch_flops(const T5Config* c, const T5Batch* b, const LoraConfig* lora) {
    double C = c->d_model, HD = (double)c->num_heads * c->d_kv, F = c->d_ff, V = c->vocab_size;
    double ffn = 2.0 * C * F * (c->gated ? 3 : 2), attn_proj = 2.0 * 4 * C * HD;
    double dense = 0.0, att = 0.0, adapter = 0.0;
    // the adapters' FLOPs per token: every name (encoder; decoder self-attention and FFN), cross-attention's
    // q, o (on target tokens) and k, v (on source tokens)
    const unsigned KV = (1u << LORA_K) | (1u << LORA_V), QO = (1u << LORA_Q) | (1u << LORA_O);
    double per_all = lora ? lora_token_flops(lora, ~0u, c) : 0.0, per_qo = lora ? lora_token_flops(lora, QO, c) : 0.0;
    double per_kv = lora ? lora_token_flops(lora, KV, c) : 0.0;
    for (int i = 0; i < b->B; i++) {
        double ls = b->src_len[i], lt = 0;
        for (int j = 0; j < b->Tt; j++) lt += b->labels[(size_t)i * b->Tt + j] != IGNORE_INDEX;
        dense += c->num_layers * ls * (attn_proj + ffn);
        att += c->num_layers * 4.0 * HD * ls * ls;
        dense += c->num_decoder_layers * (lt * (2 * attn_proj + ffn - 2.0 * 2 * C * HD) + ls * 2.0 * 2 * C * HD);
        att += c->num_decoder_layers * (4.0 * HD * lt * (lt + 1) / 2 + 4.0 * HD * lt * ls);
        dense += lt * 2.0 * C * V;
        adapter += c->num_layers * ls * per_all + c->num_decoder_layers * (lt * (per_all + per_qo) + ls * per_kv);
    }
    return lora ? 2.0 * dense + 3.0 * att + adapter : 3.0 * (dense + att);
}

// bf16 dense tensor-core peak (TFLOP/s) of known cards by name, else 0 (MFU not printed)
static inline double card_peak_tflops(const char* name) {
    struct { const char* key; double tflops; } cards[] = {
        {"H100 SXM", 989.4}, {"H100 80GB HBM3", 989.4}, {"H200", 989.4}, {"GH200", 989.4}, {"H100 NVL", 835.0},
        {"H100 PCIe", 756.0}, {"H100", 756.0}, {"A100", 312.0}, {"A10G", 70.0}, {"L40S", 362.0}, {"L4", 121.0},
        {"RTX 4090", 165.2}, {"RTX 3090", 71.0},
    };
    for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++) if (strstr(name, cards[i].key)) return cards[i].tflops;
    return 0.0;
}

#endif // T5_FLOPS_H
