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

// example e's generated ids: decoded, scored against its references, added to the corpus sums
static int eval_accum_add(EvalAccum* a, const EvalSet* s, const SpmModel* tok, int64_t e, const int* ids, int n,
                          char* err, size_t errlen) {
    if (e < 0 || e >= s->n || a->r.summaries[e]) { snprintf(err, errlen, "evaluation: example %lld out of range or given twice", (long long)e); return -1; }
    a->r.summaries[e] = decode_summary(tok, ids, n, err, errlen);
    if (!a->r.summaries[e]) return -1;
    const char* const* refs = (const char* const*)s->refs + s->ref_start[e];
    int nrefs = s->ref_start[e + 1] - s->ref_start[e];
    a->r.each[e] = rouge_score_multi(a->r.summaries[e], refs, nrefs);
    rouge_corpus_add(&a->rouge, &a->r.each[e]);
    bleu_add(&a->bleu, a->r.summaries[e], refs, nrefs);
    a->r.n++;
    return 0;
}

static void eval_accum_finish(EvalAccum* a, double seconds) {
    a->r.seconds = seconds;
    a->r.rouge = rouge_corpus_mean(&a->rouge);
    a->r.bleu = bleu_compute(&a->bleu);
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
