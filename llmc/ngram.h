/*
llmc/ngram.h — words and n-grams as dense integer ids, and clipped n-gram counts: the counting
machinery shared by ROUGE (llmc/rouge.h) and BLEU (llmc/bleu.h). Header-only.

defines: NgramVocab, ngram_vocab_init, ngram_vocab_free, ngram_word_id, ngram_split_ids, NgramSeq, ngram_seq_build,
         ngram_seq_free, NgramExample, ngram_example_build, ngram_example_free, ngram_add_max_counts,
         ngram_take_matches, ngram_clear_counts

A vocabulary lives for one scoring call (one hypothesis and its references). Ids run 0..count-1.
A word's id comes from its bytes; an n-gram's id (n >= 2) is the id of the pair (id of its first
n-1 tokens, id of its last token). So every n-gram of every order is one int, two n-grams are equal
exactly when their ids are, and count arrays indexed by id replace hash maps of tuples.
No global state: everything a call needs is in its NgramVocab.
*/
#ifndef LLMC_NGRAM_H
#define LLMC_NGRAM_H

#include <stdint.h>     // defines: uint64_t
#include <stdlib.h>     // defines: free
#include <string.h>     // defines: memcpy, memcmp, memset
#include "utils.h"      // defines: mallocCheck, callocCheck

typedef struct { uint64_t hash; size_t off; int len; int id; } NgramSlot;  // id < 0: empty slot

typedef struct {
    NgramSlot* slots;   // open addressing with linear probing; cap a power of two, at most half full
    size_t cap;
    char* keys;         // all keys back to back: a tag byte ('w' word, 'p' pair) then the key bytes
    size_t keys_len, keys_cap;
    int count;          // ids handed out so far
} NgramVocab;

static inline void ngram_vocab_init(NgramVocab* v) {
    v->cap = 64;
    v->slots = (NgramSlot*)mallocCheck(v->cap * sizeof(NgramSlot));
    for (size_t i = 0; i < v->cap; i++) { v->slots[i].id = -1; }
    v->keys_cap = 1024;
    v->keys = (char*)mallocCheck(v->keys_cap);
    v->keys_len = 0;
    v->count = 0;
}

static inline void ngram_vocab_free(NgramVocab* v) {
    free(v->slots);
    free(v->keys);
    v->slots = NULL;
    v->keys = NULL;
}

// FNV-1a over the tag and the key bytes
static inline uint64_t ngram_hash(char tag, const char* key, int len) {
    uint64_t h = 1469598103934665603ull;
    h = (h ^ (unsigned char)tag) * 1099511628211ull;
    for (int i = 0; i < len; i++) { h = (h ^ (unsigned char)key[i]) * 1099511628211ull; }
    return h;
}

static inline void ngram_vocab_grow(NgramVocab* v) {
    size_t cap = v->cap * 2;
    NgramSlot* slots = (NgramSlot*)mallocCheck(cap * sizeof(NgramSlot));
    for (size_t i = 0; i < cap; i++) { slots[i].id = -1; }
    for (size_t i = 0; i < v->cap; i++) {
        if (v->slots[i].id < 0) { continue; }
        size_t j = (size_t)v->slots[i].hash & (cap - 1);
        while (slots[j].id >= 0) { j = (j + 1) & (cap - 1); }
        slots[j] = v->slots[i];
    }
    free(v->slots);
    v->slots = slots;
    v->cap = cap;
}

// copies tag + key into the key store and returns its offset
static inline size_t ngram_store_key(NgramVocab* v, char tag, const char* key, int len) {
    size_t need = v->keys_len + 1 + (size_t)len;
    if (need > v->keys_cap) {
        while (need > v->keys_cap) { v->keys_cap *= 2; }
        char* keys = (char*)mallocCheck(v->keys_cap);
        memcpy(keys, v->keys, v->keys_len);
        free(v->keys);
        v->keys = keys;
    }
    size_t off = v->keys_len;
    v->keys[off] = tag;
    memcpy(v->keys + off + 1, key, (size_t)len);
    v->keys_len = need;
    return off;
}

// the id of (tag, key), handing out the next id the first time a key is seen
static inline int ngram_intern(NgramVocab* v, char tag, const char* key, int len) {
    uint64_t h = ngram_hash(tag, key, len);
    size_t j = (size_t)h & (v->cap - 1);
    for (; v->slots[j].id >= 0; j = (j + 1) & (v->cap - 1)) {
        const NgramSlot* s = &v->slots[j];
        if (s->hash == h && s->len == len && v->keys[s->off] == tag &&
            memcmp(v->keys + s->off + 1, key, (size_t)len) == 0) {
            return s->id;
        }
    }
    NgramSlot* s = &v->slots[j];
    s->hash = h;
    s->off = ngram_store_key(v, tag, key, len);
    s->len = len;
    s->id = v->count++;
    if ((size_t)v->count * 2 > v->cap) { ngram_vocab_grow(v); }
    return v->count - 1;
}

static inline int ngram_word_id(NgramVocab* v, const char* word, int len) {
    return ngram_intern(v, 'w', word, len);
}

static inline int ngram_pair_id(NgramVocab* v, int prefix, int last) {
    int key[2] = {prefix, last};
    return ngram_intern(v, 'p', (const char*)key, (int)sizeof(key));
}

// the ids of the tokens of s[0, n), tokens separated by single ' ' or '\n' bytes, into ids[]
// (room for n / 2 + 1); line[i] (if line is not NULL) counts the '\n' separators before token i.
// Returns the number of tokens.
static inline int ngram_split_ids(NgramVocab* v, const char* s, size_t n, int* ids, int* line) {
    int count = 0, lines = 0;
    for (size_t i = 0; i < n;) {
        size_t start = i;
        while (i < n && s[i] != ' ' && s[i] != '\n') { i++; }
        if (line != NULL) { line[count] = lines; }
        ids[count++] = ngram_word_id(v, s + start, (int)(i - start));
        if (i < n) { lines += s[i] == '\n'; }
        i++;  // the separator
    }
    return count;
}

// ----------------------------------------------------------------------------
// a token sequence and the ids of its n-grams of orders 1..max_order

#define NGRAM_MAX_ORDER 4

typedef struct {
    int len;                         // tokens
    int max_order;
    int* ids[NGRAM_MAX_ORDER];       // ids[k][i]: the (k+1)-gram starting at token i, i < count(k+1)
    int* line;                       // line[i]: the text line token i came from, or NULL if not tracked
} NgramSeq;

// number of n-grams of order n in a sequence of len tokens
static inline int ngram_count(int len, int n) { return len >= n ? len - n + 1 : 0; }

// takes ownership of tokens (malloc'd word ids, len of them) as ids[0]
static inline void ngram_seq_build(NgramVocab* v, int* tokens, int len, int max_order, NgramSeq* out) {
    if (max_order < 1) { max_order = 1; }
    if (max_order > NGRAM_MAX_ORDER) { max_order = NGRAM_MAX_ORDER; }
    out->len = len;
    out->max_order = max_order;
    out->ids[0] = tokens;
    out->line = NULL;
    // id(w[i..i+n)) = pair(id(w[i..i+n-1)), id(w[i+n-1]))
    for (int k = 1; k < max_order; k++) {
        int c = ngram_count(len, k + 1);
        out->ids[k] = (int*)mallocCheck((size_t)(c > 0 ? c : 1) * sizeof(int));
        for (int i = 0; i < c; i++) { out->ids[k][i] = ngram_pair_id(v, out->ids[k - 1][i], tokens[i + k]); }
    }
}

static inline void ngram_seq_free(NgramSeq* s) {
    for (int k = 0; k < s->max_order; k++) { free(s->ids[k]); s->ids[k] = NULL; }
    free(s->line);
    s->line = NULL;
}

// one example: a hypothesis and its references (NULL ones left out), tokenized into one vocabulary
typedef void (*NgramTokenizer)(NgramVocab* v, const char* text, NgramSeq* out);
typedef struct { NgramVocab vocab; NgramSeq hyp; NgramSeq* refs; int nrefs; } NgramExample;

static inline void ngram_example_build(NgramExample* ex, const char* hyp, const char* const* refs, int nrefs,
                                       NgramTokenizer tokenize) {
    ngram_vocab_init(&ex->vocab);
    tokenize(&ex->vocab, hyp != NULL ? hyp : "", &ex->hyp);
    ex->refs = (NgramSeq*)mallocCheck((size_t)(nrefs > 0 ? nrefs : 1) * sizeof(NgramSeq));
    ex->nrefs = 0;
    for (int k = 0; k < nrefs; k++) {
        if (refs[k] != NULL) { tokenize(&ex->vocab, refs[k], &ex->refs[ex->nrefs++]); }
    }
}

static inline void ngram_example_free(NgramExample* ex) {
    for (int k = 0; k < ex->nrefs; k++) { ngram_seq_free(&ex->refs[k]); }
    free(ex->refs);
    ngram_seq_free(&ex->hyp);
    ngram_vocab_free(&ex->vocab);
}

// ----------------------------------------------------------------------------
// clipped counts. max_counts and scratch are arrays of vocab count ints, zero between uses.

// max_counts[id] = max(max_counts[id], occurrences of id in ids[0, n))
static inline void ngram_add_max_counts(int* max_counts, int* scratch, const int* ids, int n) {
    for (int i = 0; i < n; i++) { scratch[ids[i]]++; }
    for (int i = 0; i < n; i++) {
        if (scratch[ids[i]] > max_counts[ids[i]]) { max_counts[ids[i]] = scratch[ids[i]]; }
    }
    for (int i = 0; i < n; i++) { scratch[ids[i]] = 0; }
}

// sum over distinct ids of min(occurrences in ids[0, n), max_counts[id]); uses up max_counts
static inline long long ngram_take_matches(int* max_counts, const int* ids, int n) {
    long long matches = 0;
    for (int i = 0; i < n; i++) {
        if (max_counts[ids[i]] > 0) { max_counts[ids[i]]--; matches++; }
    }
    return matches;
}

static inline void ngram_clear_counts(int* counts, const int* ids, int n) {
    for (int i = 0; i < n; i++) { counts[ids[i]] = 0; }
}

#endif // LLMC_NGRAM_H
