/*
llmc/bleu.h — BLEU exactly as sacrebleu computes it with its defaults: corpus_bleu(hyps, [refs1,
refs2, ...]) and sentence_bleu(hyp, [ref1, ...]). Header-only; checked against sacrebleu by
dev/test_metrics.py.

defines: BLEU_MAX_ORDER, BleuStats, BleuScore, bleu_tokenize_13a, bleu_segment_stats, bleu_add,
         bleu_compute, bleu_sentence_score

Use: BleuStats corpus = {0}; for each example: BleuStats seg = bleu_add(&corpus, hyp, refs, nrefs);
bleu_sentence_score(&seg) is that example's sentence BLEU; at the end bleu_compute(&corpus).

sacrebleu's defaults, as implemented here:
- tokenizer "13a" (mteval-v13a): rstrip the line (Unicode whitespace, as Python's str.rstrip), drop
  "<skipped>", join "-\n" line breaks, '\n' → ' ', unescape &quot; &amp; &lt; &gt; (in that order,
  each a left-to-right pass like str.replace), pad with spaces, then four regex rewrites:
  ASCII punctuation other than ' - . , is split off; '.' and ',' are split off unless next to a digit
  on the relevant side; a '-' after a digit is split off; finally split on Unicode whitespace.
  The rewrites work on bytes: every pattern is ASCII and its negated classes ([^0-9]) can match
  only one character, so byte-level matching gives the same text for any valid UTF-8.
- max n-gram order 4; for each n-gram, hypothesis counts are clipped by its largest count in any one
  reference; the reference length is the reference length closest to the hypothesis length, the
  shorter one on ties; NULL references are skipped (sacrebleu's None), with none left ref_len is 0
- brevity penalty BP = exp(1 - ref_len / hyp_len) when hyp_len < ref_len (0 if hyp_len = 0), else 1
- "exp" smoothing: the k-th order with 0 matches gets precision 100 / (2^k · total); if no n-gram
  matches at all, BLEU is 0; BLEU = BP · exp(mean of log precisions), log 0 taken as -9999999999
- corpus BLEU uses all 4 orders (an order with no n-grams ends the loop, its precision stays 0);
  sentence BLEU uses the "effective order": the mean runs only over orders that have n-grams.
*/
#ifndef LLMC_BLEU_H
#define LLMC_BLEU_H

#include <math.h>       // defines: exp, log
#include <stdlib.h>     // defines: free
#include <string.h>     // defines: strlen, memcpy, memcmp, memchr, memset
#include "utils.h"      // defines: mallocCheck, callocCheck
#include "ngram.h"      // defines: NgramSeq, NgramExample, ngram_example_build, ngram_split_ids, ngram_take_matches

#define BLEU_MAX_ORDER 4

// sufficient statistics; sums over segments give the corpus statistics
typedef struct {
    long long hyp_len, ref_len;
    long long correct[BLEU_MAX_ORDER];   // clipped matching n-grams of order k+1
    long long total[BLEU_MAX_ORDER];     // hypothesis n-grams of order k+1
} BleuStats;

typedef struct {
    double score;                        // 0..100
    double precisions[BLEU_MAX_ORDER];   // 0..100
    double bp, ratio;                    // brevity penalty; hyp_len / ref_len (0 if ref_len is 0)
    BleuStats stats;
} BleuScore;

// ----------------------------------------------------------------------------
// 13a tokenizer

typedef struct { char* s; size_t n; } BleuText;  // a malloc'd byte string rewritten pass by pass

// byte length of the Unicode whitespace character (Python's str.isspace) at s[i], else 0
static inline int bleu_space_at(const unsigned char* s, size_t i, size_t n) {
    unsigned char c = s[i];
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) { return 1; }
    if (c == 0xC2 && i + 1 < n && (s[i + 1] == 0x85 || s[i + 1] == 0xA0)) { return 2; }    // U+0085 U+00A0
    if (i + 2 >= n) { return 0; }
    unsigned char b = s[i + 1], d = s[i + 2];
    if (c == 0xE1 && b == 0x9A && d == 0x80) { return 3; }                                    // U+1680
    if (c == 0xE2 && b == 0x80 && ((d >= 0x80 && d <= 0x8A) || d == 0xA8 || d == 0xA9 || d == 0xAF)) { return 3; }  // U+2000..200A 2028 2029 202F
    if (c == 0xE2 && b == 0x81 && d == 0x9F) { return 3; }                                    // U+205F
    if (c == 0xE3 && b == 0x80 && d == 0x80) { return 3; }                                    // U+3000
    return 0;
}

// str.rstrip(): drop whitespace characters from the end
static inline void bleu_rstrip(BleuText* t) {
    const unsigned char* s = (const unsigned char*)t->s;
    for (int again = 1; again;) {
        again = 0;
        for (size_t k = 1; k <= 3 && k <= t->n; k++) {
            if (bleu_space_at(s, t->n - k, t->n) == (int)k) { t->n -= k; again = 1; break; }
        }
    }
}

// str.replace(from, to) for len(to) <= len(from): one left-to-right pass, non-overlapping
static inline void bleu_replace(BleuText* t, const char* from, const char* to) {
    size_t nf = strlen(from), nt = strlen(to), k = 0;
    for (size_t i = 0; i < t->n;) {
        if (i + nf <= t->n && memcmp(t->s + i, from, nf) == 0) { memcpy(t->s + k, to, nt); k += nt; i += nf; }
        else { t->s[k++] = t->s[i++]; }
    }
    t->n = k;
}

// re.sub(r'([\{-\~\[-\` -\&\(-\+\:-\@\/])', r' \1 ', line): ASCII punctuation except ' - . ,
static inline int bleu_is_split_punct(unsigned char c) {
    return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
           (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == 0x2F;
}

static inline void bleu_split_punct(BleuText* t) {
    char* out = (char*)mallocCheck(3 * t->n + 1);
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (bleu_is_split_punct((unsigned char)t->s[i])) { out[k++] = ' '; out[k++] = t->s[i]; out[k++] = ' '; }
        else { out[k++] = t->s[i]; }
    }
    free(t->s);
    t->s = out;
    t->n = k;
}

static inline int bleu_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int bleu_is_not_digit(unsigned char c) { return !bleu_is_digit(c); }
static inline int bleu_is_dot_comma(unsigned char c) { return c == '.' || c == ','; }
static inline int bleu_is_hyphen(unsigned char c) { return c == '-'; }

// re.sub of a two-character pattern (A)(B): every non-overlapping match, left to right, becomes
// "a b " (space_first = 0) or " a b" (space_first = 1)
static inline void bleu_split_pair(BleuText* t, int (*first)(unsigned char), int (*second)(unsigned char), int space_first) {
    char* out = (char*)mallocCheck(2 * t->n + 1);
    size_t k = 0;
    for (size_t i = 0; i < t->n;) {
        if (i + 1 < t->n && first((unsigned char)t->s[i]) && second((unsigned char)t->s[i + 1])) {
            if (space_first) { out[k++] = ' '; }
            out[k++] = t->s[i];
            out[k++] = ' ';
            out[k++] = t->s[i + 1];
            if (!space_first) { out[k++] = ' '; }
            i += 2;
        } else {
            out[k++] = t->s[i++];
        }
    }
    free(t->s);
    t->s = out;
    t->n = k;
}

// ' '.join(line.split()): tokens separated by single ASCII spaces
static inline void bleu_squeeze_spaces(BleuText* t) {
    const unsigned char* s = (const unsigned char*)t->s;
    size_t k = 0;
    for (size_t i = 0; i < t->n;) {
        int w = bleu_space_at(s, i, t->n);
        if (w > 0) { i += (size_t)w; continue; }
        if (k > 0) { t->s[k++] = ' '; }
        while (i < t->n && bleu_space_at(s, i, t->n) == 0) { t->s[k++] = t->s[i++]; }
    }
    t->n = k;
}

// sacrebleu's Tokenizer13a()(line.rstrip()); returns the tokenized line (malloc'd, NUL-terminated,
// tokens separated by single spaces) and its length in *len
static inline char* bleu_tokenize_13a(const char* line, size_t* len) {
    size_t n = strlen(line);
    BleuText t = {(char*)mallocCheck(n + 3), n + 2};
    t.s[0] = ' ';  // the padding of f' {line} ', added up front; the replacements below never
    memcpy(t.s + 1, line, n);  // touch it and rstrip runs on the line alone
    t.n = n + 1;
    BleuText body = {t.s + 1, n};
    bleu_rstrip(&body);
    bleu_replace(&body, "<skipped>", "");
    bleu_replace(&body, "-\n", "");
    bleu_replace(&body, "\n", " ");
    if (memchr(body.s, '&', body.n) != NULL) {
        bleu_replace(&body, "&quot;", "\"");
        bleu_replace(&body, "&amp;", "&");
        bleu_replace(&body, "&lt;", "<");
        bleu_replace(&body, "&gt;", ">");
    }
    t.n = 1 + body.n;
    t.s[t.n++] = ' ';
    bleu_split_punct(&t);
    bleu_split_pair(&t, bleu_is_not_digit, bleu_is_dot_comma, 0);  // ([^0-9])([\.,]) → '\1 \2 '
    bleu_split_pair(&t, bleu_is_dot_comma, bleu_is_not_digit, 1);  // ([\.,])([^0-9]) → ' \1 \2'
    bleu_split_pair(&t, bleu_is_digit, bleu_is_hyphen, 0);         // ([0-9])(-)      → '\1 \2 '
    bleu_squeeze_spaces(&t);
    t.s[t.n] = 0;
    *len = t.n;
    return t.s;
}

// the 13a tokens of text as ids in v, with the ids of their n-grams up to BLEU_MAX_ORDER
static inline void bleu_tokenize_ids(NgramVocab* v, const char* text, NgramSeq* out) {
    size_t n;
    char* tok = bleu_tokenize_13a(text, &n);
    int* ids = (int*)mallocCheck((n / 2 + 1) * sizeof(int));
    int count = ngram_split_ids(v, tok, n, ids, NULL);
    free(tok);
    ngram_seq_build(v, ids, count, BLEU_MAX_ORDER, out);
}

// ----------------------------------------------------------------------------
// statistics and scores

// the reference length closest to hyp_len; the shorter one on ties
static inline long long bleu_closest_ref_len(long long hyp_len, const long long* ref_lens, int n) {
    long long best = 0, best_diff = -1;
    for (int k = 0; k < n; k++) {
        long long diff = hyp_len > ref_lens[k] ? hyp_len - ref_lens[k] : ref_lens[k] - hyp_len;
        if (best_diff < 0 || diff < best_diff || (diff == best_diff && ref_lens[k] < best)) {
            best_diff = diff;
            best = ref_lens[k];
        }
    }
    return best;
}

// one segment: correct[n] = Σ_ngram min(count in hyp, max over refs of count in ref)
static inline BleuStats bleu_segment_stats(const char* hyp, const char* const* refs, int nrefs) {
    BleuStats st;
    memset(&st, 0, sizeof(st));
    NgramExample ex;
    ngram_example_build(&ex, hyp, refs, nrefs, bleu_tokenize_ids);
    long long* ref_lens = (long long*)mallocCheck((size_t)(ex.nrefs > 0 ? ex.nrefs : 1) * sizeof(long long));
    for (int k = 0; k < ex.nrefs; k++) { ref_lens[k] = ex.refs[k].len; }
    st.hyp_len = ex.hyp.len;
    st.ref_len = bleu_closest_ref_len(ex.hyp.len, ref_lens, ex.nrefs);
    free(ref_lens);
    int* max_counts = (int*)callocCheck((size_t)ex.vocab.count + 1, sizeof(int));
    int* scratch = (int*)callocCheck((size_t)ex.vocab.count + 1, sizeof(int));
    for (int n = 1; n <= BLEU_MAX_ORDER; n++) {
        for (int k = 0; k < ex.nrefs; k++) {
            ngram_add_max_counts(max_counts, scratch, ex.refs[k].ids[n - 1], ngram_count(ex.refs[k].len, n));
        }
        st.total[n - 1] = ngram_count(ex.hyp.len, n);
        st.correct[n - 1] = ngram_take_matches(max_counts, ex.hyp.ids[n - 1], ngram_count(ex.hyp.len, n));
        for (int k = 0; k < ex.nrefs; k++) {
            ngram_clear_counts(max_counts, ex.refs[k].ids[n - 1], ngram_count(ex.refs[k].len, n));
        }
    }
    free(max_counts);
    free(scratch);
    ngram_example_free(&ex);
    return st;
}

// adds one segment to the corpus statistics and returns the segment's own statistics
static inline BleuStats bleu_add(BleuStats* corpus, const char* hyp, const char* const* refs, int nrefs) {
    BleuStats seg = bleu_segment_stats(hyp, refs, nrefs);
    corpus->hyp_len += seg.hyp_len;
    corpus->ref_len += seg.ref_len;
    for (int n = 0; n < BLEU_MAX_ORDER; n++) {
        corpus->correct[n] += seg.correct[n];
        corpus->total[n] += seg.total[n];
    }
    return seg;
}

// sacrebleu's BLEU.compute_bleu with smooth_method="exp"
static inline BleuScore bleu_score_from_stats(const BleuStats* st, int effective_order) {
    BleuScore b;
    memset(&b, 0, sizeof(b));
    b.stats = *st;
    b.bp = 1.0;
    if (st->hyp_len < st->ref_len) { b.bp = st->hyp_len > 0 ? exp(1.0 - (double)st->ref_len / (double)st->hyp_len) : 0.0; }
    b.ratio = st->ref_len != 0 ? (double)st->hyp_len / (double)st->ref_len : 0.0;
    int any_correct = 0;
    for (int n = 0; n < BLEU_MAX_ORDER; n++) { any_correct |= st->correct[n] != 0; }
    if (!any_correct) { return b; }
    double smooth = 1.0;
    int orders = BLEU_MAX_ORDER;
    for (int n = 0; n < BLEU_MAX_ORDER; n++) {
        if (st->total[n] == 0) { break; }
        if (effective_order) { orders = n + 1; }
        if (st->correct[n] == 0) {
            smooth *= 2;
            b.precisions[n] = 100.0 / (smooth * (double)st->total[n]);
        } else {
            b.precisions[n] = 100.0 * (double)st->correct[n] / (double)st->total[n];
        }
    }
    double log_sum = 0.0;
    for (int n = 0; n < orders; n++) { log_sum += b.precisions[n] == 0.0 ? -9999999999.0 : log(b.precisions[n]); }
    b.score = b.bp * exp(log_sum / orders);
    return b;
}

// corpus BLEU (sacrebleu.corpus_bleu)
static inline BleuScore bleu_compute(const BleuStats* corpus) { return bleu_score_from_stats(corpus, 0); }

// sentence BLEU (sacrebleu.sentence_bleu: effective order on) from one segment's statistics
static inline BleuScore bleu_sentence_score(const BleuStats* segment) { return bleu_score_from_stats(segment, 1); }

#endif // LLMC_BLEU_H
