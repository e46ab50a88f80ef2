// report.h — the score table and the side-by-side comparison of the models of an evaluation: each
// row's kind (zero-shot, full fine-tune, LoRA, ...), its scores, and its training run's cost as that
// run's metrics.jsonl says it (llmc/rundir.h); scores{tag}.json, comparison.txt / comparison.md.
#ifndef T5_REPORT_H
#define T5_REPORT_H

#include <stdio.h>      // defines: FILE, fprintf
#include <string.h>     // defines: strcmp, strlen
#include <math.h>       // defines: isfinite
#include "evalset.h"    // defines: EvalSet, EvalResult, write_generations
#include "rundir.h"     // defines: RunInfo, run_info_unknown, metrics_run_info, rundir_of
#include "lora.h"       // defines: lora_count_string

// What a row of the report is: the original (zero-shot) model, a full fine-tune, a LoRA adapter (on its
// base, or merged into it), or a fine-tuned model whose training is unknown; or no model at all, a trivial
// baseline cut from the dialogue (llmc/evalset.h trivial_summary), in every evaluation. The report orders
// them so, as the lab's table does: original → full fine-tune → PEFT, then the baselines, labelled
// "(baseline)", as the floor a score is read against.
typedef enum { KIND_ZERO_SHOT, KIND_FULL, KIND_TUNED, KIND_LORA, KIND_MODEL, KIND_LEAD2, KIND_LONGEST3 } ModelKind;
static const char* const KIND_NAMES[] = { "zero-shot", "full fine-tune", "fine-tuned", "LoRA", "model", "LEAD-2", "LONGEST-3" };
static int kind_is_trivial(ModelKind k) { return k == KIND_LEAD2 || k == KIND_LONGEST3; }
static int kind_rank(ModelKind k) { return k == KIND_ZERO_SHOT ? 0 : k == KIND_LORA ? 2 : kind_is_trivial(k) ? 3 : 1; }

#define REPORT_NA "–" // an unknown cell: 3 bytes, 1 column

// one model of the report: what it is, what its training run's log says, its summaries and scores
typedef struct {
    const char* spec;     // the model as given: --model, --compare-model or --baseline-model; a baseline's rule
    const char* adapter;  // the LoRA adapter directory applied to it, or NULL
    const char* name;     // its scores.json's "model" (the spec; "fine-tuned" for a model trained by this process)
    const char* tag;      // its files: generations{tag}.jsonl, scores{tag}.json ("", "_compare", "_baseline",
                          // "_lead2", "_longest3")
    ModelKind kind;
    int trained;          // 1: trained by this process, from spec (its run: --out-dir)
    char label[40];       // the kind, made unique within the report
    char run[4400];       // the run directory its info was read from ("": none)
    RunInfo info;         // trainable parameters (0 for zero-shot), median step ms, peak MiB (-1 / NAN: unknown)
    EvalResult r;
} ReportRow;

// the run columns of a row as text: trainable parameters, median step ms, peak MiB (REPORT_NA: unknown)
static void run_cells(const RunInfo* i, char cells[3][32]) {
    if (i->trainable >= 0) lora_count_string(cells[0], 32, (unsigned long long)i->trainable);
    else snprintf(cells[0], 32, REPORT_NA);
    if (isfinite(i->step_ms)) snprintf(cells[1], 32, "%.1f", i->step_ms);
    else snprintf(cells[1], 32, REPORT_NA);
    if (isfinite(i->peak_mib)) snprintf(cells[2], 32, "%.0f", i->peak_mib);
    else snprintf(cells[2], 32, REPORT_NA);
}

// text: right-aligned in `width` columns (the dash counts one column, not its three bytes); markdown: a cell
static void put_cell(FILE* f, int md, int width, const char* cell) {
    if (md) fprintf(f, " %s |", cell);
    else fprintf(f, " %*s", width + (strcmp(cell, REPORT_NA) == 0 ? 2 : 0), cell);
}

// a row: its scores, then summaries/s ("–" for a baseline: no model ran) and the run cells
static void print_scores_row(FILE* f, const ReportRow* w, int md) {
    const EvalResult* r = &w->r;
    const char* fmt = md ? "| %s | %lld | %.2f | %.2f | %.2f | %.2f | %.2f |" : "%-24s %6lld %8.2f %8.2f %8.2f %10.2f %8.2f";
    fprintf(f, fmt, w->label, (long long)r->n, 100 * r->rouge.m[ROUGE_1].fmeasure, 100 * r->rouge.m[ROUGE_2].fmeasure,
            100 * r->rouge.m[ROUGE_L].fmeasure, 100 * r->rouge.m[ROUGE_LSUM].fmeasure, r->bleu.score);
    char speed[32], cells[3][32];
    if (kind_is_trivial(w->kind)) snprintf(speed, sizeof(speed), REPORT_NA);
    else snprintf(speed, sizeof(speed), "%.2f", r->n / r->seconds);
    put_cell(f, md, 8, speed);
    run_cells(&w->info, cells);
    int widths[3] = { 12, 9, 9 };
    for (int k = 0; k < 3; k++) put_cell(f, md, widths[k], cells[k]);
    fputc('\n', f);
}

static void print_scores_header(FILE* f, int md) {
    if (md) fprintf(f, "| model | examples | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | BLEU | summaries/s | trainable params "
                       "| step ms | peak MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    else fprintf(f, "%-24s %6s %8s %8s %8s %10s %8s %8s %12s %9s %9s\n", "model", "n", "ROUGE-1", "ROUGE-2", "ROUGE-L",
                 "ROUGE-Lsum", "BLEU", "summ/s", "trainable", "step ms", "peak MiB");
}

// under the table: each row's model (spec, adapter) and the run its last three columns come from
static void print_legend(FILE* f, int md, const ReportRow* rows, int n) {
    fprintf(f, md ? "\nModels:\n\n" : "models:\n");
    for (int k = 0; k < n; k++) {
        const ReportRow* w = &rows[k];
        if (kind_is_trivial(w->kind)) { fprintf(f, md ? "- **%s**: %s (no model)\n" : "  %-24s %s (no model)\n", w->label, w->spec); continue; }
        fprintf(f, md ? "- **%s**: `%s`" : "  %-24s %s", w->label, w->spec);
        if (w->adapter) fprintf(f, md ? " + LoRA adapter `%s`" : " + LoRA adapter %s", w->adapter);
        if (w->trained) fprintf(f, ", trained by this process");
        if (w->kind == KIND_ZERO_SHOT) fprintf(f, " (as it is: nothing trained)\n");
        else if (w->run[0]) fprintf(f, md ? " (run `%s`: %lld steps%s%s)\n" : " (run %s: %lld steps%s%s)\n", w->run, w->info.steps,
                                    w->info.peak_memory[0] ? ", peak memory: " : "", w->info.peak_memory);
        else fprintf(f, " (no run directory with a metrics.jsonl: its run columns are unknown)\n");
    }
    fprintf(f, md ? "\nROUGE: mean per-example F1 x 100 against every human summary (best one counts); BLEU: corpus sacrebleu "
                    "(13a, exp smoothing). Trainable params, step ms (median training step) and peak MiB (resident memory "
                    "of a CPU run, device memory of a GPU run) come from each model's training run (its metrics.jsonl).\n"
                  : "(ROUGE: mean per-example F1 x 100, best over the human references; BLEU: corpus sacrebleu; step ms: "
                    "median training step; peak MiB: the run's peak memory)\n");
}

static int write_scores_json(const char* path, const ReportRow* w, char* err, size_t errlen) {
    const EvalResult* r = &w->r;
    AtomicFile a;
    if (mkdir_parent(path, err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
    fputs("{\"model\": ", a.f); json_put_string(a.f, w->name);
    fprintf(a.f, ", \"examples\": %lld", (long long)r->n);
    for (int k = 0; k < ROUGE_NUM_METRICS; k++) fprintf(a.f, ", \"%s\": %.6f", ROUGE_NAMES[k], 100 * r->rouge.m[k].fmeasure);
    fprintf(a.f, ", \"bleu\": %.6f, \"bleu_bp\": %.6f, \"summaries_per_s\": %.4f, \"note\": \"ROUGE: mean of per-example F1 x 100 "
            "(rouge_score, use_stemmer, best over the references), not a bootstrap median\"", r->bleu.score, r->bleu.bp, r->n / r->seconds);
    fprintf(a.f, ", \"kind\": \"%s\"", KIND_NAMES[w->kind]);
    if (kind_is_trivial(w->kind)) { fputs(", \"trivial_baseline\": true, \"rule\": ", a.f); json_put_string(a.f, w->spec); }
    if (w->adapter) { fputs(", \"lora_adapter\": ", a.f); json_put_string(a.f, w->adapter); }
    if (w->run[0]) { fputs(", \"run_dir\": ", a.f); json_put_string(a.f, w->run); }
    if (w->info.trainable >= 0) fprintf(a.f, ", \"trainable_params\": %lld", w->info.trainable);
    if (isfinite(w->info.step_ms)) fprintf(a.f, ", \"step_ms\": %.3f", w->info.step_ms);
    if (isfinite(w->info.peak_mib)) {
        fprintf(a.f, ", \"peak_mib\": %.1f, \"peak_memory\": ", w->info.peak_mib);
        json_put_string(a.f, w->info.peak_memory); // as the log said it: "resident", "device"
    }
    fputs("}\n", a.f);
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

// the side-by-side report: every row's scores (ordered zero-shot, full fine-tune, LoRA, baselines), then the
// first `examples` dialogues with the human summary and each model's (a baseline's is the dialogue's own
// lines, shown above it: left out); as text and as markdown
static void write_comparison(FILE* f, int md, const EvalSet* s, const ReportRow* rows, int n, int examples) {
    int width = 5; // "human"
    fprintf(f, md ? "# Summaries: human" : "SUMMARIES: human");
    for (int k = 0; k < n; k++) {
        if (kind_is_trivial(rows[k].kind)) continue;
        fprintf(f, " vs %s", rows[k].label);
        if ((int)strlen(rows[k].label) > width) width = (int)strlen(rows[k].label);
    }
    fprintf(f, "\n\n");
    print_scores_header(f, md);
    for (int k = 0; k < n; k++) print_scores_row(f, &rows[k], md);
    print_legend(f, md, rows, n);
    for (int64_t i = 0; i < s->n && i < examples; i++) {
        fprintf(f, md ? "\n## %s\n\n```\n%s\n```\n\n" : "\n=== %s\n%s\n\n", s->ids[i], s->dialogues[i]);
        if (md) fprintf(f, "- **human**: %s\n", s->refs[s->ref_start[i]]);
        else fprintf(f, "  %-*s : %s\n", width, "human", s->refs[s->ref_start[i]]);
        for (int k = 0; k < n; k++) {
            if (kind_is_trivial(rows[k].kind)) continue;
            if (md) fprintf(f, "- **%s**: %s\n", rows[k].label, rows[k].r.summaries[i]);
            else fprintf(f, "  %-*s : %s\n", width, rows[k].label, rows[k].r.summaries[i]);
        }
    }
}

static int write_comparison_files(const char* dir, const EvalSet* s, const ReportRow* rows, int n, int examples,
                                  char* err, size_t errlen) {
    const char* names[2] = { "comparison.txt", "comparison.md" };
    for (int md = 0; md < 2; md++) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, names[md]);
        AtomicFile a;
        if (mkdir_parent(path, err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
        write_comparison(a.f, md, s, rows, n, examples);
        if (atomic_close(&a, !ferror(a.f), err, errlen)) return -1;
    }
    return 0;
}

// what a row's model is, from what is known: its run's log in run_dir (NULL: none); `own` = the model's
// trainable count when it is known without the log (the attached adapter's size, or every weight of a
// model this process fully fine-tuned), else -1; `adapter` = an adapter is attached. Kind: an adapter, or a
// run that trained fewer weights than the model has (a merged LoRA model), is LoRA; a run that trained
// them all, or a full fine-tune here, full fine-tune; a run directory that does not say, "fine-tuned"; no
// run directory at all (a model evaluated as it is, e.g. a hub checkpoint), just "model".
static void describe_row(ReportRow* w, const char* run_dir, long long own, int adapter) {
    char log[4500];
    w->info = run_info_unknown();
    w->run[0] = '\0';
    if (w->kind == KIND_ZERO_SHOT) { w->info.trainable = 0; return; }
    snprintf(log, sizeof(log), "%s/metrics.jsonl", run_dir ? run_dir : "");
    if (run_dir && metrics_run_info(log, &w->info) == 0) {
        snprintf(w->run, sizeof(w->run), "%s", run_dir);
        if (w->info.bad_lines) fprintf(stderr, "warning: %s: %lld line(s) that are not JSON records skipped\n", log, w->info.bad_lines);
    }
    const RunInfo* i = &w->info;
    if (i->trainable < 0) w->info.trainable = own;
    w->kind = adapter ? KIND_LORA
            : i->trainable > 0 && i->params > 0 ? (i->trainable < i->params ? KIND_LORA : KIND_FULL)
            : own >= 0 ? KIND_FULL : w->run[0] ? KIND_TUNED : KIND_MODEL;
}

// a trivial baseline's row (llmc/evalset.h): nothing trained, no run; its files generations_lead2.jsonl,
// scores_lead2.json (_longest3)
static void trivial_row(ReportRow* w, TrivialKind k) {
    memset(w, 0, sizeof(*w));
    w->kind = k == TRIVIAL_LEAD2 ? KIND_LEAD2 : KIND_LONGEST3;
    w->name = KIND_NAMES[w->kind];
    w->tag = k == TRIVIAL_LEAD2 ? "_lead2" : "_longest3";
    w->spec = k == TRIVIAL_LEAD2 ? "the dialogue's first two lines, speaker tags without their colon"
                                 : "the dialogue's three longest lines (in words), in its order, tags as LEAD-2";
    w->info = run_info_unknown();
}

// the rows in the report's order (zero-shot, full fine-tune, LoRA; stable), each labelled with its kind,
// and the compare model's with "(compare)" after it when another row has the same kind
static void order_rows(ReportRow* rows, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && kind_rank(rows[j].kind) < kind_rank(rows[j - 1].kind); j--) {
            ReportRow t = rows[j]; rows[j] = rows[j - 1]; rows[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        int twin = 0;
        for (int j = 0; j < n; j++) twin |= j != i && rows[j].kind == rows[i].kind;
        snprintf(rows[i].label, sizeof(rows[i].label), "%s%s", KIND_NAMES[rows[i].kind],
                 kind_is_trivial(rows[i].kind) ? " (baseline)" : twin && strcmp(rows[i].tag, "_compare") == 0 ? " (compare)" : "");
    }
}

#endif // T5_REPORT_H
