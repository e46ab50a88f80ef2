// evalset.h — a split to summarize and score: what prepro_dialogsum.py wrote, PREFIX.bin (sources:
// prompt + dialogue + </s>) and PREFIX_refs.jsonl (one line per example, in the same order: id,
// dialogue, summaries, topic); the summaries a model writes for it, decoded as sentencepiece decodes
// and scored with ROUGE (rouge_score's, use_stemmer=True; best F over the references, plain mean over
// examples: HF `evaluate` reports a bootstrap median instead) and corpus BLEU (sacrebleu's defaults);
// generations.jsonl. Engine-free: the driver (llmc/run.h) feeds it what an engine generated.
#ifndef T5_EVALSET_H
#define T5_EVALSET_H

#include <stdio.h>              // defines: FILE, getline, fprintf
#include <stdlib.h>             // defines: free
#include <string.h>             // defines: strdup, memset
#include "utils.h"              // defines: mallocCheck, callocCheck, reallocCheck
#include "json.h"               // defines: JsonValue, json_parse, json_find, json_free, json_put_string
#include "fileio.h"             // defines: AtomicFile, atomic_open, atomic_close, mkdir_parent
#include "examples.h"           // defines: ExampleFile, examples_open, examples_src
#include "rouge.h"              // defines: RougeScores, RougeCorpus, rouge_score_multi, ROUGE_NAMES
#include "bleu.h"               // defines: BleuStats, BleuScore, bleu_add, bleu_compute
#include "../tokenizer/spm.h"   // defines: SpmModel, spm_decode

//
// A split is what prepro_dialogsum.py wrote: PREFIX.bin (sources: prompt + dialogue + </s>) and
// PREFIX_refs.jsonl (one line per example, in the same order: id, dialogue, summaries, topic).
// Summaries are decoded as sentencepiece decodes (special tokens dropped) and scored with ROUGE
// (rouge_score's, use_stemmer=True; best F over the references, plain mean over examples: HF
// `evaluate` reports a bootstrap median instead) and corpus BLEU (sacrebleu's defaults).

typedef struct {
    ExampleFile ex;        // the sources
    int64_t n;             // examples used (≤ ex.n with a limit)
    char** ids;            // (n)
    char** dialogues;      // (n)
    char** refs;           // all references, example by example
    int* ref_start;        // (n + 1) example i's references are refs[ref_start[i] .. ref_start[i+1])
} EvalSet;

static void evalset_free(EvalSet* s) {
    examples_free(&s->ex);
    for (int64_t i = 0; i < s->n; i++) { free(s->ids[i]); free(s->dialogues[i]); }
    for (int64_t r = 0; s->ref_start && r < s->ref_start[s->n]; r++) free(s->refs[r]);
    free(s->ids); free(s->dialogues); free(s->refs); free(s->ref_start);
    memset(s, 0, sizeof(*s));
}

static char* json_dup_string(const JsonValue* obj, const char* key) {
    const JsonValue* v = json_find(obj, key);
    return v && v->type == JSON_STRING ? strdup(v->string) : NULL;
}

// one line of PREFIX_refs.jsonl into example i; 0, or -1 with "file:line: problem"
static int evalset_parse_line(EvalSet* s, int64_t i, const char* line, size_t len, const char* path, char* err, size_t errlen) {
    JsonValue v;
    char why[256];
    s->ref_start[i + 1] = s->ref_start[i]; // no references yet: evalset_free sees exactly what was added
    if (json_parse(line, len, &v, why, sizeof(why))) { snprintf(err, errlen, "%s:%lld: %s", path, (long long)i + 1, why); return -1; }
    const JsonValue* sums = json_find(&v, "summaries");
    s->ids[i] = json_dup_string(&v, "id");
    s->dialogues[i] = json_dup_string(&v, "dialogue");
    int ok = s->ids[i] && s->dialogues[i] && sums && sums->type == JSON_ARRAY && sums->count >= 1;
    for (size_t k = 0; ok && k < sums->count; k++) ok = sums->items[k].type == JSON_STRING;
    if (ok) {
        int r0 = s->ref_start[i];
        s->refs = (char**)reallocCheck(s->refs, (size_t)(r0 + sums->count) * sizeof(char*));
        for (size_t k = 0; k < sums->count; k++) s->refs[r0 + k] = strdup(sums->items[k].string);
        s->ref_start[i + 1] = r0 + (int)sums->count;
    } else {
        snprintf(err, errlen, "%s:%lld: a record needs string fields id and dialogue and a non-empty array of string summaries",
                 path, (long long)i + 1);
    }
    json_free(&v);
    return ok ? 0 : -1;
}

static int evalset_read_refs(EvalSet* s, const char* path, char* err, size_t errlen) {
    FILE* f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open (written by prepro_dialogsum.py next to the .bin)", path); return -1; }
    char* line = NULL;
    size_t cap = 0;
    int64_t i = 0;
    int rc = 0;
    for (ssize_t len; rc == 0 && i < s->n && (len = getline(&line, &cap, f)) > 0; i++) {
        s->ids[i] = s->dialogues[i] = NULL;
        rc = evalset_parse_line(s, i, line, (size_t)len, path, err, errlen); // on failure, i still moves past the line
    }
    if (rc == 0 && i < s->n) { snprintf(err, errlen, "%s: %lld records for %lld examples in the .bin", path, (long long)i, (long long)s->ex.n); rc = -1; }
    s->n = i; // what was filled, so evalset_free releases exactly that
    free(line);
    fclose(f);
    return rc;
}

// PREFIX.bin + PREFIX_refs.jsonl, the first `limit` examples (0 = all)
static int evalset_open(EvalSet* s, const char* prefix, int64_t limit, char* err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    char bin[4400], refs[4400];
    snprintf(bin, sizeof(bin), "%s.bin", prefix);
    snprintf(refs, sizeof(refs), "%s_refs.jsonl", prefix);
    if (examples_open(&s->ex, bin, err, errlen)) return -1;
    s->n = limit > 0 && limit < s->ex.n ? limit : s->ex.n;
    s->ids = (char**)callocCheck((size_t)s->n, sizeof(char*));
    s->dialogues = (char**)callocCheck((size_t)s->n, sizeof(char*));
    s->ref_start = (int*)callocCheck((size_t)s->n + 1, sizeof(int));
    if (evalset_read_refs(s, refs, err, errlen)) { evalset_free(s); return -1; }
    return 0;
}

typedef struct {
    char** summaries;    // (n) generated, decoded
    RougeScores* each;   // (n) per-example ROUGE (best over the references)
    RougeScores rouge;   // means over examples, F in [0, 1]
    BleuScore bleu;      // corpus BLEU, 0..100
    double seconds;
    int64_t n;           // summaries made
    int64_t cap;         // slots of summaries / each (the split's size)
} EvalResult;

static void eval_result_free(EvalResult* r) {
    for (int64_t i = 0; r->summaries && i < r->cap; i++) free(r->summaries[i]);
    free(r->summaries); free(r->each);
    memset(r, 0, sizeof(*r));
}

static void progress_bar(const char* label, int64_t done, int64_t total, double seconds) {
    int width = 30, filled = (int)(width * done / (total > 0 ? total : 1));
    fprintf(stderr, "\r%s [%.*s%.*s] %lld/%lld  %.2f summaries/s", label, filled, "##############################",
            width - filled, "..............................", (long long)done, (long long)total, done / (seconds > 0 ? seconds : 1e-9));
    if (done == total) fprintf(stderr, "\n");
}

// generated ids → text as sentencepiece decodes (special tokens dropped). Ids past the tokenizer's
// vocabulary (T5's embedding has 28 padding rows after the 32,100 tokens) are not tokens: dropped too,
// as HF's fast tokenizer drops them.
static char* decode_summary(const SpmModel* tok, const int* ids, int n, char* err, size_t errlen) {
    int* kept = (int*)mallocCheck((size_t)(n > 0 ? n : 1) * sizeof(int));
    int k = 0;
    for (int i = 0; i < n; i++) if (ids[i] >= 0 && ids[i] < tok->vocab_size) kept[k++] = ids[i];
    char* s = spm_decode(tok, kept, (size_t)k, SPM_SKIP_SPECIAL, NULL, err, errlen);
    free(kept);
    return s;
}

// an evaluation in progress: summaries as they come, their scores, the corpus sums
typedef struct { EvalResult r; RougeCorpus rouge; BleuStats bleu; } EvalAccum;

static void eval_accum_init(EvalAccum* a, int64_t n) {
    memset(a, 0, sizeof(*a));
    a->r.summaries = (char**)callocCheck((size_t)n, sizeof(char*));
    a->r.each = (RougeScores*)callocCheck((size_t)n, sizeof(RougeScores));
    a->r.cap = n;
}

// example e's summary `text` (the accumulator takes it: freed with the result) scored against its
// references and added to the corpus sums
static int eval_accum_add_text(EvalAccum* a, const EvalSet* s, int64_t e, char* text, char* err, size_t errlen) {
    if (e < 0 || e >= s->n || a->r.summaries[e]) {
        free(text);
        snprintf(err, errlen, "evaluation: example %lld out of range or given twice", (long long)e);
        return -1;
    }
    a->r.summaries[e] = text;
    const char* const* refs = (const char* const*)s->refs + s->ref_start[e];
    int nrefs = s->ref_start[e + 1] - s->ref_start[e];
    a->r.each[e] = rouge_score_multi(a->r.summaries[e], refs, nrefs);
    rouge_corpus_add(&a->rouge, &a->r.each[e]);
    bleu_add(&a->bleu, a->r.summaries[e], refs, nrefs);
    a->r.n++;
    return 0;
}

// example e's generated ids: decoded, then as eval_accum_add_text
static int eval_accum_add(EvalAccum* a, const EvalSet* s, const SpmModel* tok, int64_t e, const int* ids, int n,
                          char* err, size_t errlen) {
    char* text = decode_summary(tok, ids, n, err, errlen);
    return text ? eval_accum_add_text(a, s, e, text, err, errlen) : -1;
}

static void eval_accum_finish(EvalAccum* a, double seconds) {
    a->r.seconds = seconds;
    a->r.rouge = rouge_corpus_mean(&a->rouge);
    a->r.bleu = bleu_compute(&a->bleu);
}

// ----------------------------------------------------------------------------
// trivial baselines (issue 25): summaries cut from the dialogue itself, scored as the models' are, so that
// a reader sees what a score is worth (on the DialogSum test split, rouge_score: LEAD-2 ROUGE-1 32.2,
// LONGEST-3 28.2; dev/trivial_baselines.py computes them in Python).
//   utterance  a line of the dialogue ('\n'-separated, as *_refs.jsonl writes line breaks) with ASCII
//              whitespace trimmed at both ends, if anything is left. A speaker tag keeps its name and
//              loses its colon: "#Person1#: Hi." → "#Person1# Hi." (the human summaries name speakers
//              "#Person1#"; ROUGE reads the colon as a separator anyway, BLEU counts it as a token)
//   LEAD-2     the first two utterances
//   LONGEST-3  the three utterances with the most words (runs of non-whitespace), the earlier on ties, in
//              dialogue order (the DialogSum paper's baseline)
// The utterances are joined by one space; a dialogue with fewer utterances gives all it has.

typedef enum { TRIVIAL_LEAD2, TRIVIAL_LONGEST3, TRIVIAL_NUM } TrivialKind;

static int ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// the utterances of a dialogue as (start, length) spans of it; returns how many (spans: malloc'd, ≥ 1 slot)
static int utterance_spans(const char* d, int (**spans)[2]) {
    int n = 0, cap = 16;
    *spans = (int (*)[2])mallocCheck((size_t)cap * sizeof(**spans));
    for (int lo = 0; d[lo];) {
        int end = lo;
        while (d[end] && d[end] != '\n') end++;
        int a = lo, b = end;
        while (a < b && ascii_space(d[a])) a++;
        while (b > a && ascii_space(d[b - 1])) b--;
        if (b > a) {
            if (n == cap) *spans = (int (*)[2])reallocCheck(*spans, (size_t)(cap *= 2) * sizeof(**spans));
            (*spans)[n][0] = a; (*spans)[n][1] = b - a; n++;
        }
        lo = d[end] ? end + 1 : end;
    }
    return n;
}

static int count_words(const char* s, int len) {
    int words = 0;
    for (int i = 0; i < len; i++) words += !ascii_space(s[i]) && (i == 0 || ascii_space(s[i - 1]));
    return words;
}

// utterance u appended to out at *k: "#Name#: text" → "#Name# text", "#Name#:" → "#Name#", else as it is
static void put_utterance(const char* u, int len, char* out, size_t* k) {
    int tag = 0; // the tag's length, closing '#' included, when a colon follows it
    if (len > 1 && u[0] == '#') {
        const char* close = (const char*)memchr(u + 1, '#', (size_t)len - 1);
        if (close && close + 1 < u + len && close[1] == ':') tag = (int)(close - u) + 1;
    }
    if (tag) {
        memcpy(out + *k, u, (size_t)tag);
        *k += (size_t)tag;
        int rest = tag + 1;
        while (rest < len && ascii_space(u[rest])) rest++;
        if (rest == len) return;
        out[(*k)++] = ' ';
        u += rest; len -= rest;
    }
    memcpy(out + *k, u, (size_t)len);
    *k += (size_t)len;
}

// the baseline summary of a dialogue (malloc'd)
static char* trivial_summary(const char* dialogue, TrivialKind kind) {
    int (*sp)[2];
    int n = utterance_spans(dialogue, &sp), want = kind == TRIVIAL_LEAD2 ? 2 : 3;
    char* pick = (char*)callocCheck((size_t)n + 1, 1);
    if (kind == TRIVIAL_LEAD2) for (int i = 0; i < n && i < want; i++) pick[i] = 1;
    else for (int got = 0; got < want && got < n; got++) {
        int best = -1, best_words = -1;
        for (int i = 0; i < n; i++) {
            int w = count_words(dialogue + sp[i][0], sp[i][1]);
            if (!pick[i] && w > best_words) { best = i; best_words = w; }
        }
        if (best < 0) break; // never: got < n leaves one unpicked
        pick[best] = 1;
    }
    char* out = (char*)mallocCheck(strlen(dialogue) + 1); // never longer: trimmed lines, a ':' per tag dropped
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (!pick[i]) continue;
        if (k) out[k++] = ' ';
        put_utterance(dialogue + sp[i][0], sp[i][1], out, &k);
    }
    out[k] = '\0';
    free(pick); free(sp);
    return out;
}

// a baseline over every example of s, scored as eval_generate scores a model's summaries
static int eval_trivial(const EvalSet* s, TrivialKind kind, EvalResult* r, char* err, size_t errlen) {
    EvalAccum acc;
    eval_accum_init(&acc, s->n);
    double t0 = now_ms();
    int status = 0;
    for (int64_t e = 0; e < s->n && status == 0; e++) status = eval_accum_add_text(&acc, s, e, trivial_summary(s->dialogues[e], kind), err, errlen);
    eval_accum_finish(&acc, (now_ms() - t0) / 1e3);
    *r = acc.r;
    return status;
}

// sources of examples [lo, lo+B) as int rows (truncated to max_src with </s> kept last)
static void eval_sources(const EvalSet* s, int64_t lo, int B, int max_src, int eos, int* buf, int** rows, int* lens) {
    for (int b = 0; b < B; b++) {
        int64_t e = lo + b;
        int len = s->ex.lens[2 * e];
        const uint32_t* src = examples_src(&s->ex, e);
        rows[b] = buf + (size_t)b * max_src;
        lens[b] = len < max_src ? len : max_src;
        for (int j = 0; j < lens[b]; j++) rows[b][j] = (int)src[j];
        if (len > max_src) rows[b][max_src - 1] = eos;
    }
}

// (id, dialogue, human summaries, generated summary, its ROUGE F1 x 100) per line; written to PATH.tmp,
// then renamed
static int write_generations(const char* path, const EvalSet* s, const EvalResult* r, char* err, size_t errlen) {
    AtomicFile a;
    if (mkdir_parent(path, err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
    for (int64_t i = 0; i < r->n; i++) {
        fputs("{\"id\": ", a.f); json_put_string(a.f, s->ids[i]);
        fputs(", \"dialogue\": ", a.f); json_put_string(a.f, s->dialogues[i]);
        fputs(", \"human\": [", a.f);
        for (int k = s->ref_start[i]; k < s->ref_start[i + 1]; k++) {
            if (k > s->ref_start[i]) fputs(", ", a.f);
            json_put_string(a.f, s->refs[k]);
        }
        fputs("], \"generated\": ", a.f); json_put_string(a.f, r->summaries[i]);
        for (int k = 0; k < ROUGE_NUM_METRICS; k++) fprintf(a.f, ", \"%s\": %.6f", ROUGE_NAMES[k], 100 * r->each[i].m[k].fmeasure);
        fputs("}\n", a.f);
    }
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

#endif // T5_EVALSET_H
