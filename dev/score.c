/*
dev/score.c — ROUGE and BLEU of a file of hypotheses against one or more files of references,
with the C metrics of llmc/rouge.h and llmc/bleu.h (checked against rouge_score and sacrebleu by
dev/test_metrics.py).

build: make build/score
usage: build/score --hyp FILE --ref FILE [--ref FILE ...] [--json] [--unescape-newlines]
       build/score --print-tokens rouge|13a --hyp FILE [--unescape-newlines]

Files hold one text per line ('\n'-separated; a last line without '\n' counts; a trailing '\r' is
kept: both metrics treat it as whitespace). Every file must have the same number of lines.
Line i of each --ref file is a reference for line i of --hyp; ROUGE takes the best reference per
metric and example, BLEU uses all of them (sacrebleu's multi-reference BLEU).
A line holds one text, so ROUGE-Lsum sees one sentence per text unless --unescape-newlines is given:
then the two characters '\' 'n' inside a line stand for a newline (a sentence break for Lsum) and
'\' '\' for one backslash, in every file.
The table shows means over examples of ROUGE F1 x 100 (plain means, not HF evaluate's bootstrap
median) and corpus BLEU. --json prints the corpus numbers and every example's scores instead.
--print-tokens prints each --hyp line's tokens as ROUGE (stemmed) or BLEU's 13a tokenizer sees them.
*/
#include <stdio.h>          // defines: printf, fprintf
#include <stdlib.h>         // defines: free, exit
#include <string.h>         // defines: strcmp, strchr, memchr, strerror
#include <errno.h>          // defines: errno
#include "llmc/utils.h"     // defines: mallocCheck
#include "llmc/json.h"      // defines: json_slurp (whole-file read)
#include "llmc/rouge.h"     // defines: rouge_token_string, RougeScores, rouge_score_multi, RougeCorpus, rouge_corpus_add, rouge_corpus_mean
#include "llmc/bleu.h"      // defines: bleu_tokenize_13a, BleuStats, BleuScore, bleu_add, bleu_compute, bleu_sentence_score

#define SCORE_MAX_REFS 16

typedef struct {
    const char* hyp_path;
    const char* ref_paths[SCORE_MAX_REFS];
    int nrefs;
    int json;
    int unescape;             // --unescape-newlines
    const char* print_tokens; // NULL, "rouge" or "13a"
} ScoreArgs;

// the lines of one file: NUL-terminated texts inside one buffer
typedef struct { char* buf; char** lines; long n; } LineFile;

static void usage(const char* prog) {
    fprintf(stderr,
        "usage: %s --hyp FILE --ref FILE [--ref FILE ...] [--json] [--unescape-newlines]\n"
        "       %s --print-tokens rouge|13a --hyp FILE [--unescape-newlines]\n"
        "  --hyp FILE              hypotheses, one per line (required)\n"
        "  --ref FILE              references, one per line, same line count; repeat for more (1 to %d)\n"
        "  --json                  print corpus and per-example scores as JSON (default: a table)\n"
        "  --unescape-newlines     in every line, \\n stands for a newline and \\\\ for a backslash (default: off)\n"
        "  --print-tokens KIND     print the tokens of each --hyp line: rouge (stemmed) or 13a (BLEU)\n",
        prog, prog, SCORE_MAX_REFS);
}

// 0 ok; -1 with a message in err
static int parse_args(int argc, char** argv, ScoreArgs* a, char* err, size_t errlen) {
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(f, "--json") == 0) { a->json = 1; continue; }
        if (strcmp(f, "--unescape-newlines") == 0) { a->unescape = 1; continue; }
        if (strcmp(f, "--hyp") != 0 && strcmp(f, "--ref") != 0 && strcmp(f, "--print-tokens") != 0) {
            snprintf(err, errlen, "unknown flag '%s'", f); return -1;
        }
        if (!has_value) { snprintf(err, errlen, "%s needs a value", f); return -1; }
        const char* value = argv[++i];
        if (strcmp(f, "--hyp") == 0) { a->hyp_path = value; }
        else if (strcmp(f, "--print-tokens") == 0) {
            if (strcmp(value, "rouge") != 0 && strcmp(value, "13a") != 0) {
                snprintf(err, errlen, "--print-tokens must be rouge or 13a, not '%s'", value); return -1;
            }
            a->print_tokens = value;
        } else {
            if (a->nrefs == SCORE_MAX_REFS) { snprintf(err, errlen, "at most %d --ref files", SCORE_MAX_REFS); return -1; }
            a->ref_paths[a->nrefs++] = value;
        }
    }
    if (a->hyp_path == NULL) { snprintf(err, errlen, "--hyp is required"); return -1; }
    if (a->print_tokens == NULL && a->nrefs == 0) { snprintf(err, errlen, "at least one --ref is required"); return -1; }
    return 0;
}

// decodes \n and \\ in place
static void unescape_line(char* s) {
    char* out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] == 'n') { *out++ = '\n'; s++; }
        else if (s[0] == '\\' && s[1] == '\\') { *out++ = '\\'; s++; }
        else { *out++ = *s; }
    }
    *out = 0;
}

// reads PATH into lines; 0 ok, -1 with "PATH: problem" in err
static int read_lines(const char* path, int unescape, LineFile* lf, char* err, size_t errlen) {
    memset(lf, 0, sizeof(*lf));
    FILE* f = fopen(path, "rb");
    if (f == NULL) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    size_t len = 0;
    const char* why = NULL;
    int rc = json_slurp(f, &lf->buf, &len, &why);
    fclose(f);
    if (rc != 0) { snprintf(err, errlen, "%s: %s", path, why); return -1; }
    if (memchr(lf->buf, 0, len) != NULL) {
        snprintf(err, errlen, "%s: contains a NUL byte (texts must be NUL-free)", path);
        free(lf->buf); lf->buf = NULL; return -1;
    }
    char* buf = (char*)mallocCheck(len + 1);  // room for the terminator
    memcpy(buf, lf->buf, len);
    buf[len] = 0;
    free(lf->buf);
    lf->buf = buf;
    long n = 0;
    for (size_t i = 0; i < len; i++) { n += buf[i] == '\n'; }
    if (len > 0 && buf[len - 1] != '\n') { n++; }
    lf->lines = (char**)mallocCheck((size_t)(n > 0 ? n : 1) * sizeof(char*));
    char* s = buf;
    for (long i = 0; i < n; i++) {
        lf->lines[i] = s;
        char* nl = strchr(s, '\n');
        if (nl != NULL) { *nl = 0; s = nl + 1; }
        if (unescape) { unescape_line(lf->lines[i]); }
    }
    lf->n = n;
    return 0;
}

static void free_lines(LineFile* lf) {
    free(lf->buf);
    free(lf->lines);
}

// each line's tokens separated by spaces (ROUGE's line breaks shown as spaces too)
static void print_tokens(const LineFile* hyp, const char* kind) {
    for (long i = 0; i < hyp->n; i++) {
        size_t len;
        char* tok = strcmp(kind, "13a") == 0 ? bleu_tokenize_13a(hyp->lines[i], &len) : rouge_token_string(hyp->lines[i], &len);
        for (size_t k = 0; k < len; k++) { if (tok[k] == '\n') { tok[k] = ' '; } }
        printf("%s\n", tok);
        free(tok);
    }
}

static void print_json_bleu(const BleuScore* b) {
    printf("{\"score\": %.17g, \"precisions\": [%.17g, %.17g, %.17g, %.17g], \"bp\": %.17g, \"ratio\": %.17g, "
           "\"hyp_len\": %lld, \"ref_len\": %lld, \"counts\": [%lld, %lld, %lld, %lld], \"totals\": [%lld, %lld, %lld, %lld]}",
           b->score, b->precisions[0], b->precisions[1], b->precisions[2], b->precisions[3], b->bp, b->ratio,
           b->stats.hyp_len, b->stats.ref_len, b->stats.correct[0], b->stats.correct[1], b->stats.correct[2],
           b->stats.correct[3], b->stats.total[0], b->stats.total[1], b->stats.total[2], b->stats.total[3]);
}

static void print_json_rouge(const RougeScores* s) {
    for (int m = 0; m < ROUGE_NUM_METRICS; m++) {
        printf("%s\"%s\": [%.17g, %.17g, %.17g]", m ? ", " : "", ROUGE_NAMES[m],
               s->m[m].precision, s->m[m].recall, s->m[m].fmeasure);
    }
}

static void print_table(long n, int nrefs, const RougeScores* mean, const BleuScore* b) {
    static const char* const labels[ROUGE_NUM_METRICS] = {"ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum"};
    printf("%ld examples, %d reference%s each\n", n, nrefs, nrefs == 1 ? "" : "s");
    printf("%-11s %9s\n", "metric", "score");
    for (int m = 0; m < ROUGE_NUM_METRICS; m++) { printf("%-11s %9.4f\n", labels[m], 100.0 * mean->m[m].fmeasure); }
    printf("%-11s %9.4f   %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)\n", "BLEU",
           b->score, b->precisions[0], b->precisions[1], b->precisions[2], b->precisions[3], b->bp, b->ratio,
           b->stats.hyp_len, b->stats.ref_len);
    printf("ROUGE: mean F1 x 100 over examples (best reference per example; rouge_score, Porter stemmer).\n");
    printf("BLEU: corpus BLEU as sacrebleu (13a tokenizer, exp smoothing, closest reference length).\n");
}

// scores every example; prints JSON per example as it goes when json is set
static void score_all(const LineFile* hyp, const LineFile* refs, int nrefs, int json) {
    RougeCorpus rouge;
    memset(&rouge, 0, sizeof(rouge));
    BleuStats bleu;
    memset(&bleu, 0, sizeof(bleu));
    if (json) { printf("{\"examples\": ["); }
    for (long i = 0; i < hyp->n; i++) {
        const char* r[SCORE_MAX_REFS];
        for (int k = 0; k < nrefs; k++) { r[k] = refs[k].lines[i]; }
        RougeScores s = rouge_score_multi(hyp->lines[i], r, nrefs);
        rouge_corpus_add(&rouge, &s);
        BleuStats seg = bleu_add(&bleu, hyp->lines[i], r, nrefs);
        if (json) {
            BleuScore sb = bleu_sentence_score(&seg);
            printf("%s\n{", i ? "," : "");
            print_json_rouge(&s);
            printf(", \"bleu\": %.17g}", sb.score);
        }
    }
    RougeScores mean = rouge_corpus_mean(&rouge);
    BleuScore b = bleu_compute(&bleu);
    if (!json) { print_table(hyp->n, nrefs, &mean, &b); return; }
    printf("],\n\"count\": %ld, \"references\": %d,\n\"mean\": {", hyp->n, nrefs);
    print_json_rouge(&mean);
    printf("},\n\"bleu\": ");
    print_json_bleu(&b);
    printf("}\n");
}

int main(int argc, char** argv) {
    char err[1024];
    ScoreArgs a;
    if (parse_args(argc, argv, &a, err, sizeof(err)) != 0) {
        fprintf(stderr, "error: %s\n", err);
        usage(argv[0]);
        return 1;
    }
    LineFile hyp, refs[SCORE_MAX_REFS];
    if (read_lines(a.hyp_path, a.unescape, &hyp, err, sizeof(err)) != 0) { fprintf(stderr, "error: %s\n", err); return 1; }
    if (a.print_tokens != NULL) { print_tokens(&hyp, a.print_tokens); free_lines(&hyp); return 0; }
    for (int k = 0; k < a.nrefs; k++) {
        if (read_lines(a.ref_paths[k], a.unescape, &refs[k], err, sizeof(err)) != 0) { fprintf(stderr, "error: %s\n", err); return 1; }
        if (refs[k].n != hyp.n) {
            fprintf(stderr, "error: %s has %ld lines but %s has %ld: every file needs one line per example\n",
                    a.ref_paths[k], refs[k].n, a.hyp_path, hyp.n);
            return 1;
        }
    }
    score_all(&hyp, refs, a.nrefs, a.json);
    for (int k = 0; k < a.nrefs; k++) { free_lines(&refs[k]); }
    free_lines(&hyp);
    return 0;
}
