/*
llmc/rouge.h — ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum exactly as Google's rouge_score package
computes them with RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True).
Header-only; checked against the package by dev/test_metrics.py.

defines: RougeMetric, ROUGE_NAMES, RougeScore, RougeScores, rouge_score_multi, rouge_score_pair,
         RougeCorpus, rouge_corpus_add, rouge_corpus_mean, rouge_token_string, rouge_tokenize

Tokens (rouge_score.tokenize): Python's str.lower(), every run of characters other than [a-z0-9]
becomes a separator, tokens longer than 3 characters go through the Porter stemmer (llmc/porter.h,
NLTK's default mode), empty tokens are dropped. Of all of Unicode only two non-ASCII characters
lowercase to something containing [a-z0-9]: U+212A KELVIN SIGN → "k" and U+0130 (capital I with dot)
→ "i" + U+0307 (a separator); both are handled, every other non-ASCII character is a separator.
Bytes that are not valid UTF-8 are separators too (as U+FFFD would be), so no input can crash this.

Scores (P = precision against the hypothesis, R = recall against the reference):
- ROUGE-N: clipped n-gram overlap; P = overlap / max(hyp n-grams, 1), R = overlap / max(ref n-grams, 1)
- ROUGE-L: LCS of the token sequences; 0 if either text has no tokens
- ROUGE-Lsum: texts split into sentences on '\n'; for each reference sentence, the union of the
  reference tokens that one LCS with each hypothesis sentence picks (rouge_score's backtrack and its
  tie rule), each token counted at most as often as it occurs in both texts; 0 if either is empty
- F = 2PR / (P + R), 0 when P + R = 0
- several references (rouge_score's score_multi): per metric, the score (P, R, F) of the reference
  with the highest F; the first such reference on ties. A NULL reference is skipped; with no
  references every score is 0 (rouge_score raises instead).
Corpus figures are plain means over examples (rouge_corpus_mean). HF `evaluate`'s rouge reports the
median of a random bootstrap instead, so its numbers move from run to run; ours do not.

Cost: time O(hyp tokens × ref tokens) for ROUGE-L and Lsum (dynamic-programming LCS, as rouge_score);
memory O(tokens) per text, plus one bit per (reference sentence token × hypothesis sentence token)
pair for the Lsum backtrack.
*/
#ifndef LLMC_ROUGE_H
#define LLMC_ROUGE_H

#include <stdlib.h>     // defines: free
#include <string.h>     // defines: strlen, memset, memmove
#include <stdint.h>     // defines: uint64_t
#include "utils.h"      // defines: mallocCheck, callocCheck
#include "porter.h"     // defines: porter_stem
#include "ngram.h"      // defines: NgramSeq, NgramExample, ngram_example_build, ngram_split_ids, ngram_take_matches

typedef enum { ROUGE_1, ROUGE_2, ROUGE_L, ROUGE_LSUM, ROUGE_NUM_METRICS } RougeMetric;
static const char* const ROUGE_NAMES[ROUGE_NUM_METRICS] = {"rouge1", "rouge2", "rougeL", "rougeLsum"};

typedef struct { double precision, recall, fmeasure; } RougeScore;
typedef struct { RougeScore m[ROUGE_NUM_METRICS]; } RougeScores;  // indexed by RougeMetric

// ----------------------------------------------------------------------------
// tokenizer

// text → lowercase [a-z0-9] with separators (' ') and line breaks ('\n') kept; returns its length.
// out holds strlen(text) bytes: no character grows.
static inline size_t rouge_normalize(const char* text, size_t len, char* out) {
    const unsigned char* s = (const unsigned char*)text;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c >= 'A' && c <= 'Z') { out[k++] = (char)(c + ('a' - 'A')); i++; }
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) { out[k++] = (char)c; i++; }
        else if (c == 0xC4 && i + 1 < len && s[i + 1] == 0xB0) { out[k++] = 'i'; out[k++] = ' '; i += 2; }  // U+0130
        else if (c == 0xE2 && i + 2 < len && s[i + 1] == 0x84 && s[i + 2] == 0xAA) { out[k++] = 'k'; i += 3; }  // U+212A
        else { out[k++] = c == '\n' ? '\n' : ' '; i++; }
    }
    return k;
}

// rouge_score's tokens of text, stemmed when longer than 3 characters, separated by ' ', or by '\n'
// where a line break came between them; malloc'd and NUL-terminated, its length in *len
static inline char* rouge_token_string(const char* text, size_t* len) {
    size_t n0 = strlen(text);
    char* buf = (char*)mallocCheck(n0 + 1);
    size_t n = rouge_normalize(text, n0, buf), k = 0;
    char sep = 0;  // the separator owed before the next token (0 before the first)
    for (size_t i = 0; i < n;) {
        if (buf[i] == ' ' || buf[i] == '\n') {
            if (k > 0 && sep != '\n') { sep = buf[i]; }
            i++;
            continue;
        }
        size_t start = i;
        while (i < n && buf[i] != ' ' && buf[i] != '\n') { i++; }
        int tok_len = (int)(i - start);
        if (tok_len > 3) { tok_len = porter_stem(buf + start, tok_len); }
        if (sep) { buf[k++] = sep; sep = 0; }
        memmove(buf + k, buf + start, (size_t)tok_len);  // k <= start: the text only shrinks
        k += (size_t)tok_len;
    }
    buf[k] = 0;
    *len = k;
    return buf;
}

// tokens of text as word ids in v, with their line numbers, and the ids of their bigrams
static inline void rouge_tokenize(NgramVocab* v, const char* text, NgramSeq* out) {
    size_t n;
    char* tok = rouge_token_string(text, &n);
    int* ids = (int*)mallocCheck((n / 2 + 1) * sizeof(int));
    int* line = (int*)mallocCheck((n / 2 + 1) * sizeof(int));
    int count = ngram_split_ids(v, tok, n, ids, line);
    free(tok);
    ngram_seq_build(v, ids, count, 2, out);
    out->line = line;
}

// ----------------------------------------------------------------------------
// scores

static inline double rouge_fmeasure(double precision, double recall) {
    return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

static inline RougeScore rouge_make_score(double precision, double recall) {
    RougeScore s = {precision, recall, rouge_fmeasure(precision, recall)};
    return s;
}

// scratch arrays of vocab count ints, zero on entry and on exit
typedef struct { int* counts; int* scratch; int* counts2; } RougeScratch;

// ROUGE-N: overlap = Σ_gram min(count_ref, count_hyp)
static inline RougeScore rouge_ngram(const NgramSeq* hyp, const NgramSeq* ref, int n, RougeScratch* w) {
    int nh = ngram_count(hyp->len, n), nr = ngram_count(ref->len, n);
    ngram_add_max_counts(w->counts, w->scratch, ref->ids[n - 1], nr);
    long long overlap = ngram_take_matches(w->counts, hyp->ids[n - 1], nh);
    ngram_clear_counts(w->counts, ref->ids[n - 1], nr);
    return rouge_make_score((double)overlap / (nh > 0 ? nh : 1), (double)overlap / (nr > 0 ? nr : 1));
}

// length of the longest common subsequence, two rolling rows:
// t[i][j] = a[i-1] == b[j-1] ? t[i-1][j-1] + 1 : max(t[i-1][j], t[i][j-1])
static inline int rouge_lcs_length(const int* a, int na, const int* b, int nb) {
    int* prev = (int*)callocCheck((size_t)nb + 1, sizeof(int));
    int* cur = (int*)callocCheck((size_t)nb + 1, sizeof(int));
    for (int i = 1; i <= na; i++) {
        for (int j = 1; j <= nb; j++) {
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
        }
        int* t = prev; prev = cur; cur = t;
    }
    int lcs = prev[nb];
    free(prev);
    free(cur);
    return lcs;
}

static inline RougeScore rouge_l(const NgramSeq* hyp, const NgramSeq* ref) {
    int nh = hyp->len, nr = ref->len;
    if (nh == 0 || nr == 0) { return rouge_make_score(0.0, 0.0); }
    int lcs = rouge_lcs_length(ref->ids[0], nr, hyp->ids[0], nh);
    return rouge_make_score((double)lcs / nh, (double)lcs / nr);
}

// marks in picked[] the positions of ref[0, nr) on the one LCS with can[0, nc) that rouge_score's
// backtrack reads out: from (nr, nc), a match steps diagonally, else it steps left (j-1) when
// t[i][j-1] > t[i-1][j] and up (i-1) otherwise. The table keeps one bit per cell: "step left".
static inline void rouge_lcs_mark(const int* ref, int nr, const int* can, int nc, unsigned char* picked) {
    if (nr == 0 || nc == 0) { return; }
    size_t row_words = ((size_t)nc + 63) / 64;
    uint64_t* left = (uint64_t*)callocCheck((size_t)nr * row_words, sizeof(uint64_t));
    int* prev = (int*)callocCheck((size_t)nc + 1, sizeof(int));
    int* cur = (int*)callocCheck((size_t)nc + 1, sizeof(int));
    for (int i = 1; i <= nr; i++) {
        uint64_t* row = left + (size_t)(i - 1) * row_words;
        for (int j = 1; j <= nc; j++) {
            if (ref[i - 1] == can[j - 1]) { cur[j] = prev[j - 1] + 1; continue; }
            int go_left = cur[j - 1] > prev[j];
            cur[j] = go_left ? cur[j - 1] : prev[j];
            row[(j - 1) / 64] |= (uint64_t)go_left << ((j - 1) % 64);
        }
        int* t = prev; prev = cur; cur = t;
    }
    for (int i = nr, j = nc; i > 0 && j > 0;) {
        if (ref[i - 1] == can[j - 1]) { picked[i - 1] = 1; i--; j--; }
        else if ((left[(size_t)(i - 1) * row_words + (size_t)(j - 1) / 64] >> ((j - 1) % 64)) & 1) { j--; }
        else { i--; }
    }
    free(left);
    free(prev);
    free(cur);
}

// [start, end) of the next run of tokens sharing a line (a sentence), from *pos; 0 when done
static inline int rouge_next_sentence(const NgramSeq* t, int* pos, int* start, int* end) {
    if (*pos >= t->len) { return 0; }
    *start = *pos;
    while (*pos < t->len && t->line[*pos] == t->line[*start]) { (*pos)++; }
    *end = *pos;
    return 1;
}

// ROUGE-Lsum, summary-level LCS: hits = Σ_ref sentence |∪_hyp sentence LCS tokens|, with each token
// counted at most min(count in ref, count in hyp) times over the whole summary
static inline RougeScore rouge_lsum(const NgramSeq* hyp, const NgramSeq* ref, RougeScratch* w) {
    int nh = hyp->len, nr = ref->len;
    if (nh == 0 || nr == 0) { return rouge_make_score(0.0, 0.0); }
    const int* h = hyp->ids[0];
    const int* r = ref->ids[0];
    int* count_r = w->counts;
    int* count_h = w->counts2;
    for (int i = 0; i < nr; i++) { count_r[r[i]]++; }
    for (int i = 0; i < nh; i++) { count_h[h[i]]++; }
    unsigned char* picked = (unsigned char*)mallocCheck((size_t)nr);
    long long hits = 0;
    int rpos = 0, rs, re;
    while (rouge_next_sentence(ref, &rpos, &rs, &re)) {
        memset(picked, 0, (size_t)(re - rs));
        int hpos = 0, hs, he;
        while (rouge_next_sentence(hyp, &hpos, &hs, &he)) { rouge_lcs_mark(r + rs, re - rs, h + hs, he - hs, picked); }
        for (int i = rs; i < re; i++) {
            if (picked[i - rs] && count_h[r[i]] > 0 && count_r[r[i]] > 0) { hits++; count_h[r[i]]--; count_r[r[i]]--; }
        }
    }
    free(picked);
    ngram_clear_counts(count_r, r, nr);
    ngram_clear_counts(count_h, h, nh);
    return rouge_make_score((double)hits / nh, (double)hits / nr);
}

static inline RougeScores rouge_pair_scores(const NgramSeq* hyp, const NgramSeq* ref, RougeScratch* w) {
    RougeScores s;
    s.m[ROUGE_1] = rouge_ngram(hyp, ref, 1, w);
    s.m[ROUGE_2] = rouge_ngram(hyp, ref, 2, w);
    s.m[ROUGE_L] = rouge_l(hyp, ref);
    s.m[ROUGE_LSUM] = rouge_lsum(hyp, ref, w);
    return s;
}

// all four metrics of hyp against the best of refs[0, nrefs) per metric (NULL refs skipped)
static inline RougeScores rouge_score_multi(const char* hyp, const char* const* refs, int nrefs) {
    RougeScores best;
    memset(&best, 0, sizeof(best));
    NgramExample ex;
    ngram_example_build(&ex, hyp, refs, nrefs, rouge_tokenize);
    RougeScratch w;
    w.counts = (int*)callocCheck((size_t)ex.vocab.count + 1, sizeof(int));
    w.scratch = (int*)callocCheck((size_t)ex.vocab.count + 1, sizeof(int));
    w.counts2 = (int*)callocCheck((size_t)ex.vocab.count + 1, sizeof(int));
    for (int k = 0; k < ex.nrefs; k++) {
        RougeScores s = rouge_pair_scores(&ex.hyp, &ex.refs[k], &w);
        for (int m = 0; m < ROUGE_NUM_METRICS; m++) {
            if (k == 0 || s.m[m].fmeasure > best.m[m].fmeasure) { best.m[m] = s.m[m]; }  // numpy argmax: first max
        }
    }
    free(w.counts);
    free(w.scratch);
    free(w.counts2);
    ngram_example_free(&ex);
    return best;
}

static inline RougeScores rouge_score_pair(const char* hyp, const char* ref) {
    return rouge_score_multi(hyp, &ref, 1);
}

// ----------------------------------------------------------------------------
// corpus: plain means over examples (not HF evaluate's bootstrap median)

typedef struct { RougeScores sum; long long n; } RougeCorpus;  // zero-initialise before use

static inline void rouge_corpus_add(RougeCorpus* c, const RougeScores* s) {
    for (int m = 0; m < ROUGE_NUM_METRICS; m++) {
        c->sum.m[m].precision += s->m[m].precision;
        c->sum.m[m].recall += s->m[m].recall;
        c->sum.m[m].fmeasure += s->m[m].fmeasure;
    }
    c->n++;
}

// means; all 0 for an empty corpus
static inline RougeScores rouge_corpus_mean(const RougeCorpus* c) {
    RougeScores mean = c->sum;
    double n = c->n > 0 ? (double)c->n : 1.0;
    for (int m = 0; m < ROUGE_NUM_METRICS; m++) {
        mean.m[m].precision /= n;
        mean.m[m].recall /= n;
        mean.m[m].fmeasure /= n;
    }
    return mean;
}

#endif // LLMC_ROUGE_H
