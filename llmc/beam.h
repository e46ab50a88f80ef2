// beam.h — the bookkeeping of transformers' beam search (GenerationMixin._beam_search, 5.24) over
// scores computed elsewhere: by the CPU engine (train_t5.c gen_beam) or the GPU engine (train_t5.cu,
// through llmc/driver.c's beam_search_* functions). Each step, the engine computes for every input b the
// K = 2·num_beams best continuations of its beams; the state here picks the running beams, the finished
// hypotheses and whether to go on, in HF's fp32 arithmetic. Also the checks of a generation request.
#ifndef T5_BEAM_H
#define T5_BEAM_H

#include <stdio.h>    // defines: snprintf
#include <stdlib.h>   // defines: free
#include <string.h>   // defines: memcpy, memset
#include <math.h>     // defines: pow, isfinite
#include "utils.h"    // defines: mallocCheck
#include "t5.h"       // defines: T5Config
#include "engine.h"   // defines: GenConfig

#define GEN_NEG 1.0e9f  // HF's penalty for hypotheses that must not be picked (exact in fp32: 15625000·2^6)

// idx[0..k) = positions of the k largest x[0..n), largest first; equal values keep index order
static void topk_indices(const float* x, int n, int k, int* idx) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (count == k && !(x[i] > x[idx[k - 1]])) continue;
        int at = count < k ? count++ : k - 1;
        while (at > 0 && x[i] > x[idx[at - 1]]) { idx[at] = idx[at - 1]; at--; }
        idx[at] = i;
    }
}

// beam search state, named after the tensors of HF's _beam_search. K = 2·num_beams candidates per step
// (one eos token: HF keeps max(2, 1 + #eos)·num_beams), L = 1 + max_new_tokens positions
typedef struct {
    int B, nb, K, L;
    int* run_seq;            // (B, nb, L) running hypotheses, start token first (running_sequences)
    float* run_score;        // (B, nb) their summed log-probabilities (running_beam_scores)
    int* cand_seq;           // (B, K, L) this step's candidates
    float* cand_score;       // (B, K) summed log-probabilities, best first
    int* cand_beam;          // (B, K) the running beam a candidate extends
    unsigned char* cand_hit; // (B, K) candidate ends here: eos, or the maximum length
    int* fin_seq;            // (B, nb, L) finished hypotheses, best first (sequences)
    float* fin_score;        // (B, nb) length-normalised scores; −1e9 while a slot is empty (beam_scores)
    int* fin_len;            // (B, nb) new tokens of each, eos included (the filled part of beam_indices)
    unsigned char* fin_done; // (B, nb) is_sent_finished
    unsigned char* open;     // (B) is_early_stop_heuristic_unsatisfied: an input can still improve
    int* parent;             // (R) the cache row each running beam continues
    int* scratch;            // (B, nb + K) merge staging: indices, then sequences below
    int* stage_seq;          // (B, nb, L)
    void* owned[16]; int n_owned; // every buffer above, for beam_free
} BeamState;

static void* beam_alloc(BeamState* s, size_t bytes) {
    void* p = mallocCheck(bytes + 1);
    s->owned[s->n_owned++] = p;
    return p;
}

// B inputs, nb beams each, up to max_new new tokens; beam_free releases it
static void beam_build(BeamState* s, const T5Config* c, int B, int nb, int max_new) {
    memset(s, 0, sizeof(*s));
    s->B = B; s->nb = nb; s->K = 2 * nb; s->L = 1 + max_new;
    size_t nL = (size_t)B * nb * s->L, KL = (size_t)B * s->K * s->L, BK = (size_t)B * s->K, Bn = (size_t)B * nb;
    s->run_seq = beam_alloc(s, nL * sizeof(int)); s->run_score = beam_alloc(s, Bn * sizeof(float));
    s->cand_seq = beam_alloc(s, KL * sizeof(int)); s->cand_score = beam_alloc(s, BK * sizeof(float));
    s->cand_beam = beam_alloc(s, BK * sizeof(int)); s->cand_hit = beam_alloc(s, BK);
    s->fin_seq = beam_alloc(s, nL * sizeof(int)); s->fin_score = beam_alloc(s, Bn * sizeof(float));
    s->fin_len = beam_alloc(s, Bn * sizeof(int)); s->fin_done = beam_alloc(s, Bn); s->open = beam_alloc(s, B);
    s->parent = beam_alloc(s, Bn * sizeof(int)); s->scratch = beam_alloc(s, (size_t)B * (nb + s->K) * sizeof(int));
    s->stage_seq = beam_alloc(s, nL * sizeof(int));
    // HF: only beam 0 starts live (the others at −1e9, so step 0 does not pick the same token nb times)
    for (size_t i = 0; i < nL; i++) s->run_seq[i] = s->fin_seq[i] = c->eos_id; // HF's fill value (see t5_generate)
    for (size_t r = 0; r < Bn; r++) {
        s->run_seq[r * s->L] = s->fin_seq[r * s->L] = c->decoder_start_id;
        s->run_score[r] = (r % nb) == 0 ? 0.0f : -GEN_NEG;
        s->fin_score[r] = -GEN_NEG; s->fin_len[r] = 0; s->fin_done[r] = 0;
    }
    for (int b = 0; b < B; b++) s->open[b] = 1;
}

static void beam_free(BeamState* s) {
    for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
    memset(s, 0, sizeof(*s));
}

// step 1, second half: the candidate sequences of input b from its top K (value, index) pairs, index =
// beam·V + token; cand_hit when a candidate ends in eos or reaches L tokens (also driven with a GPU's
// top-k, llmc/t5_cpu.c)
static void beam_candidates_given(BeamState* s, const T5Config* c, int b, int cur_len, const float* val, const int* idx) {
    int V = c->vocab_size;
    for (int k = 0; k < s->K; k++) {
        size_t ck = (size_t)b * s->K + k;
        int beam = idx[k] / V, tok = idx[k] % V;
        s->cand_score[ck] = val[k];
        s->cand_beam[ck] = beam;
        s->cand_hit[ck] = tok == c->eos_id || cur_len + 1 >= s->L;
        int* cs = s->cand_seq + ck * s->L;
        memcpy(cs, s->run_seq + ((size_t)b * s->nb + beam) * s->L, (size_t)s->L * sizeof(int));
        cs[cur_len] = tok;
    }
}

// step 2 (_get_running_beams_for_next_iteration): the nb best candidates that did not end go on;
// ended ones are pushed down by 1e9 (their penalised score is what the running beam keeps)
static void beam_next_running(BeamState* s, int b) {
    int nb = s->nb, K = s->K, L = s->L;
    float pen[K];
    memset(pen, 0, sizeof(pen)); // (every entry is written below; GCC cannot see K ≥ 1 in every build)
    int* idx = s->scratch + (size_t)b * (nb + K);
    for (int k = 0; k < K; k++) pen[k] = s->cand_score[(size_t)b * K + k] + (s->cand_hit[(size_t)b * K + k] ? -GEN_NEG : -0.0f);
    topk_indices(pen, K, nb, idx);
    for (int j = 0; j < nb; j++) {
        size_t ck = (size_t)b * K + idx[j], r = (size_t)b * nb + j;
        memcpy(s->run_seq + r * L, s->cand_seq + ck * L, (size_t)L * sizeof(int));
        s->run_score[r] = pen[idx[j]];
        s->parent[r] = b * nb + s->cand_beam[ck];
    }
}

// step 3 (_update_finished_beams): candidates among the top nb that just ended enter the finished set
// with score / (new tokens)^length_penalty; the nb best of old ∪ new stay. Candidates that did not end,
// and all candidates once the input is full (early_stopping) or cannot improve, get −1e9 (in this order,
// as fp32 adds, like HF)
static void beam_update_finished(BeamState* s, const GenConfig* cfg, int b, int cur_len) {
    int nb = s->nb, K = s->K, L = s->L;
    float merged[nb + K];
    int full = cfg->early_stopping;
    for (int j = 0; j < nb; j++) { merged[j] = s->fin_score[(size_t)b * nb + j]; full &= s->fin_done[(size_t)b * nb + j]; }
    float denom = (float)pow((double)cur_len, cfg->length_penalty);
    for (int k = 0; k < K; k++) {
        size_t ck = (size_t)b * K + k;
        int did = s->cand_hit[ck] && k < nb;
        float sc = s->cand_score[ck] / denom;
        sc += full ? -GEN_NEG : -0.0f;
        sc += s->open[b] ? -0.0f : -GEN_NEG;
        sc += did ? -0.0f : -GEN_NEG;
        merged[nb + k] = sc;
    }
    int* idx = s->scratch + (size_t)b * (nb + K);
    topk_indices(merged, nb + K, nb, idx);
    float score[nb];
    int len[nb];
    unsigned char done[nb];
    for (int j = 0; j < nb; j++) { // staged: the new set may take slots of the old one
        int i = idx[j];
        const int* src = i < nb ? s->fin_seq + ((size_t)b * nb + i) * L : s->cand_seq + ((size_t)b * K + i - nb) * L;
        memcpy(s->stage_seq + ((size_t)b * nb + j) * L, src, (size_t)L * sizeof(int));
        score[j] = merged[i];
        len[j] = i < nb ? s->fin_len[(size_t)b * nb + i] : cur_len;
        done[j] = i < nb ? s->fin_done[(size_t)b * nb + i] : (s->cand_hit[(size_t)b * K + i - nb] && i - nb < nb);
    }
    memcpy(s->fin_seq + (size_t)b * nb * L, s->stage_seq + (size_t)b * nb * L, (size_t)nb * L * sizeof(int));
    for (int j = 0; j < nb; j++) {
        s->fin_score[(size_t)b * nb + j] = score[j]; s->fin_len[(size_t)b * nb + j] = len[j];
        s->fin_done[(size_t)b * nb + j] = done[j];
    }
}

// step 4 (_check_early_stop_heuristic, after cur_len grew): an input stays open while its best running
// beam, scored at the current length, beats the worst finished score in some slot (an empty slot
// counts as −1e9, so an input with fewer than nb finished hypotheses stays open)
static void beam_check_open(BeamState* s, const GenConfig* cfg, int b, int cur_len) {
    int nb = s->nb;
    const float* fs = s->fin_score + (size_t)b * nb;
    float best = s->run_score[(size_t)b * nb] / (float)pow((double)(cur_len - 1), cfg->length_penalty);
    float worst = fs[0];
    for (int j = 1; j < nb; j++) if (fs[j] < worst) worst = fs[j];
    int any = 0;
    for (int j = 0; j < nb; j++) any |= best > (s->fin_done[(size_t)b * nb + j] ? worst : -GEN_NEG);
    s->open[b] = s->open[b] && any;
}

// _beam_search_has_unfinished_sequences: go on while some input can improve, some input has a slot
// left (early_stopping only), and some candidate did not end
static int beam_go_on(const BeamState* s, const GenConfig* cfg, int B) {
    int improvable = 0, all_done = 1, all_hit = 1;
    for (int b = 0; b < B; b++) improvable |= s->open[b];
    for (int i = 0; i < B * s->nb; i++) all_done &= s->fin_done[i];
    for (int i = 0; i < B * s->K; i++) all_hit &= s->cand_hit[i];
    return improvable && !(all_done && cfg->early_stopping) && !all_hit;
}

// validates a generation request; returns 0, or -1 with a message naming the bad input
static int gen_request_check(const T5Config* c, const int* const* src, const int* src_len, int B, const GenConfig* g,
                     char* err, size_t errlen) {
    int V = c->vocab_size;
    const char* bad = NULL;
    if (B < 1) bad = "batch size must be >= 1";
    else if (g->max_new_tokens < 1 || g->max_new_tokens > (1 << 16)) bad = "max_new_tokens must be in [1, 65536]";
    else if (g->num_beams < 1 || g->num_beams > 1024) bad = "num_beams must be in [1, 1024]";
    else if (g->no_repeat_ngram_size < 0) bad = "no_repeat_ngram_size must be >= 0";
    else if (!isfinite(g->length_penalty) || !isfinite(g->eos_bias)) bad = "length_penalty and eos_bias must be finite";
    else if (g->min_new_tokens < 0 || g->min_new_tokens > (1 << 16)) bad = "min_new_tokens must be in [0, 65536]";
    // HF RepetitionPenaltyLogitsProcessor: "`penalty` has to be a strictly positive float"
    else if (!(g->repetition_penalty > 0.0f) || !isfinite(g->repetition_penalty))
        bad = "repetition_penalty must be a finite number > 0 (1 = off)";
    if (bad) { snprintf(err, errlen, "generate: %s", bad); return -1; }
    for (int b = 0; b < B; b++) {
        if (src[b] == NULL || src_len[b] < 1 || src_len[b] > (1 << 20)) {
            snprintf(err, errlen, "generate: input %d: length %d outside [1, 1048576]", b, src_len[b]);
            return -1;
        }
        for (int j = 0; j < src_len[b]; j++)
            if (src[b][j] < 0 || src[b][j] >= V) {
                snprintf(err, errlen, "generate: input %d: token id %d at position %d outside the vocabulary [0, %d)",
                         b, src[b][j], j, V);
                return -1;
            }
    }
    return 0;
}

#endif // T5_BEAM_H
