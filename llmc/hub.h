// hub.h — what makes an HF model directory hub-ready beside its weights and config.json (llmc/hf.h):
//   generation_config.json   start, EOS and pad ids + the generation settings the run evaluates with
//   spiece.model, tokenizer.json (when one lies beside the SentencePiece model in use),
//   tokenizer_config.json, special_tokens_map.json — what AutoTokenizer needs in transformers 4 and 5
//   README.md                a model card: base model, dataset, training settings, and the scores of the
//                            run's evaluation in the hub's model-index metadata
//   prompt.json              the prompt the model was trained with (llmc/prompt.h), for --summarize
// Used by both trainers (hub_save_dir). Every file is written to a temporary and renamed.
#ifndef T5_HUB_H
#define T5_HUB_H

#include <stdio.h>     // defines: FILE, fprintf, snprintf
#include <string.h>    // defines: strrchr, strcmp
#include <sys/stat.h>  // defines: stat
#include "hf.h"        // defines: t5_save_hf_weights, HfWeightsOptions, hf_save_tokenizer, hf_join, hf_format_float
#include "json.h"      // defines: json_read_file, json_find, json_put_string
#include "fileio.h"    // defines: AtomicFile, file_copy
#include "prompt.h"    // defines: prompt_write

// the generation settings a run evaluates and summarizes with (train_t5's GenConfig, in HF's names)
typedef struct {
    int num_beams, max_new_tokens, no_repeat_ngram_size, early_stopping;
    double length_penalty;
    int min_new_tokens;
    float repetition_penalty;
} HubGeneration;

// what the model card says of the run
typedef struct {
    const char* engine;       // "train_t5 (CPU, fp32)", "train_t5cu (CUDA, bf16 mixed precision)"
    const char* base_model;   // --model of the run: a preset name, an HF directory or a checkpoint
    int random_init;          // base_model is a preset: randomly initialised, not pretrained
    const char* train_file;   // NULL: no training in this run (an export)
    long long steps;          // optimizer steps the weights have taken in all
    const char* best_metric;  // --keep-best: the metric the exported weights were the best by (NULL: the last weights)
    double best_value;
    long long best_step, run_steps; // their step of the run's run_steps
    int batch_size, grad_accum, ranks, warmup, max_src_len, max_tgt_len;
    double lr, weight_decay, dropout, clip;
    const char* schedule;
    long long seed;
    const char* eval_split;   // PREFIX the scores are from, or NULL
    const char* scores_json;  // that evaluation's scores.json (fine-tuned model), or NULL
    const char* baseline_json;// scores_baseline.json (the zero-shot model), or NULL
    const char* lora;         // "LoRA rank r, alpha a, merged into the weights", or NULL
    const char* prompt;       // the source template, with {dialogue} (--prompt): the card's usage snippet
    HubGeneration gen;        // the generation settings (generation_config.json's): the snippet passes them
} HubCard;

typedef struct {
    HfWeightsOptions weights;
    HubGeneration gen;
    const char* spm_path;     // the SentencePiece model in use (copied; tokenizer.json beside it too)
    HubCard card;
} HubSave;

// ----------------------------------------------------------------------------
// generation_config.json

// v as a float literal of JSON and Python: "1.0", not "1" (HF refuses an int penalty)
static inline void hub_float_literal(char* buf, size_t n, float v) {
    hf_format_float(buf, n, v);
    if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL && strchr(buf, 'n') == NULL) strncat(buf, ".0", n - strlen(buf) - 1);
}

static inline int hub_write_generation_config(const char* dir, const T5Config* c, const HubGeneration* g, char* err, size_t errlen) {
    char path[4096], lp[32], rp[32];
    if (hf_join(path, sizeof(path), dir, "generation_config.json", err, errlen)) return -1;
    hub_float_literal(lp, sizeof(lp), (float)g->length_penalty);
    hub_float_literal(rp, sizeof(rp), g->repetition_penalty);
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) return -1;
    fprintf(a.f, "{\n  \"decoder_start_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n"
            "  \"do_sample\": false,\n  \"num_beams\": %d,\n  \"max_new_tokens\": %d,\n  \"min_new_tokens\": %d,\n"
            "  \"length_penalty\": %s,\n  \"no_repeat_ngram_size\": %d,\n  \"repetition_penalty\": %s,\n"
            "  \"early_stopping\": %s\n}\n",
            c->decoder_start_id, c->eos_id, c->pad_id, g->num_beams, g->max_new_tokens, g->min_new_tokens, lp,
            g->no_repeat_ngram_size, rp, g->early_stopping ? "true" : "false");
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

// ----------------------------------------------------------------------------
// the tokenizer files. T5's vocabulary: 32,000 SentencePiece pieces (<pad> 0, </s> 1, <unk> 2) and 100
// sentinels <extra_id_0> = 32099 ... <extra_id_99> = 32000 (T5Tokenizer's extra_ids). tokenizer_config.json
// is written in the form the hub's google/flan-t5-* carry, which transformers 4 and 5 both read:
// legacy = true (the hub tokenizer's behaviour, which the C tokenizer and sentencepiece share), and no
// clean-up of spaces on decode (sentencepiece's decoding, which train_t5's summaries use).

static inline void hub_put_special_tokens(FILE* f) {
    fputs("  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n  \"pad_token\": \"<pad>\",\n"
          "  \"additional_special_tokens\": [", f);
    for (int i = 0; i < 100; i++) fprintf(f, "%s\"<extra_id_%d>\"", i ? ", " : "", i);
    fputs("]", f);
}

static inline int hub_write_tokenizer_json_files(const char* dir, char* err, size_t errlen) {
    char path[4096];
    AtomicFile a;
    if (hf_join(path, sizeof(path), dir, "tokenizer_config.json", err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
    fputs("{\n  \"tokenizer_class\": \"T5Tokenizer\",\n  \"extra_ids\": 100,\n  \"legacy\": true,\n"
          "  \"model_max_length\": 512,\n  \"clean_up_tokenization_spaces\": false,\n  \"sp_model_kwargs\": {},\n", a.f);
    hub_put_special_tokens(a.f);
    fputs("\n}\n", a.f);
    if (atomic_close(&a, !ferror(a.f), err, errlen)) return -1;
    if (hf_join(path, sizeof(path), dir, "special_tokens_map.json", err, errlen) || atomic_open(&a, path, err, errlen)) return -1;
    fputs("{\n", a.f);
    hub_put_special_tokens(a.f);
    fputs("\n}\n", a.f);
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

// spiece.model (a copy of spm_path), tokenizer.json when one lies beside spm_path (the data folder's, or
// the source model directory's), and the two JSON files. *with_json: whether tokenizer.json was written.
// Without a spiece.model there is no tokenizer to describe: nothing is written.
static inline int hub_write_tokenizer(const char* dir, const char* spm_path, int* with_json, char* err, size_t errlen) {
    struct stat st;
    char src[4096], dst[4096];
    *with_json = 0;
    if (!spm_path || stat(spm_path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    if (hf_save_tokenizer(dir, spm_path, err, errlen)) return -1;
    const char* slash = strrchr(spm_path, '/');
    int n = slash ? (int)(slash - spm_path) : 1;
    snprintf(src, sizeof(src), "%.*s/tokenizer.json", n, slash ? spm_path : ".");
    if (stat(src, &st) == 0 && S_ISREG(st.st_mode)) {
        if (hf_join(dst, sizeof(dst), dir, "tokenizer.json", err, errlen)) return -1;
        struct stat d;
        int same = stat(dst, &d) == 0 && d.st_dev == st.st_dev && d.st_ino == st.st_ino;
        if (!same && file_copy(src, dst, err, errlen)) return -1;
        *with_json = 1;
    }
    return hub_write_tokenizer_json_files(dir, err, errlen);
}

// ----------------------------------------------------------------------------
// README.md: the model card

// the hub id of a base model, when it can be told: "_name_or_path" in its config.json, else a directory
// or preset named like a published checkpoint (flan-t5-base -> google/flan-t5-base, t5-small ->
// google-t5/t5-small); NULL when unknown (a checkpoint file, a renamed directory)
static inline const char* hub_base_id(const char* spec, char* out, size_t n) {
    char path[4096], err[256];
    JsonValue root;
    snprintf(path, sizeof(path), "%s/config.json", spec);
    if (json_read_file(path, &root, err, sizeof(err)) == 0) {
        const JsonValue* v = json_find(&root, "_name_or_path");
        int ok = v && v->type == JSON_STRING && strchr(v->string, '/') && v->string[0] != '/' && v->string[0] != '.';
        if (ok) snprintf(out, n, "%s", v->string);
        json_free(&root);
        if (ok) return out;
    }
    size_t len = strlen(spec);
    while (len > 1 && spec[len - 1] == '/') len--;
    const char* base = spec + len;
    while (base > spec && base[-1] != '/') base--;
    int blen = (int)(spec + len - base);
    for (int i = 0; i < T5_NUM_PRESETS; i++) {
        const char* p = T5_PRESETS[i].name;
        if ((int)strlen(p) != blen || strncmp(p, base, (size_t)blen) != 0) continue;
        snprintf(out, n, "%s/%s", T5_PRESETS[i].flan ? "google" : "google-t5", p);
        return out;
    }
    return NULL;
}

// a scores.json (write_scores_json's): its ROUGE and BLEU values, 0 if it could be read
typedef struct { double rouge1, rouge2, rougeL, rougeLsum, bleu; long long examples; } HubScores;

static inline int hub_read_scores(const char* path, HubScores* s) {
    JsonValue root;
    char err[256];
    if (!path || json_read_file(path, &root, err, sizeof(err))) return -1;
    const char* keys[6] = { "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "examples" };
    double v[6];
    int ok = root.type == JSON_OBJECT;
    for (int i = 0; i < 6 && ok; i++) {
        const JsonValue* x = json_find(&root, keys[i]);
        ok = x && x->type == JSON_NUMBER;
        if (ok) v[i] = x->number;
    }
    json_free(&root);
    if (!ok) return -1;
    *s = (HubScores){ v[0], v[1], v[2], v[3], v[4], (long long)v[5] };
    return 0;
}

static inline void hub_card_metadata(FILE* f, const char* name, const char* base_id, const HubCard* c, const HubScores* s) {
    fputs("---\n", f);
    if (base_id) fprintf(f, "base_model: %s\n", base_id);
    fputs("library_name: transformers\npipeline_tag: summarization\nlanguage:\n- en\n", f);
    if (c->train_file || c->eval_split) fputs("datasets:\n- knkarthick/dialogsum\n", f);
    fputs("tags:\n- t5\n- summarization\n- dialogsum\n- t5.c\n", f);
    if (c->lora) fputs("- lora\n", f);
    if (s) {
        const char* types[5] = { "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu" };
        const char* names[5] = { "ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum", "BLEU" };
        double vals[5] = { s->rouge1, s->rouge2, s->rougeL, s->rougeLsum, s->bleu };
        const char* split = strrchr(c->eval_split, '/') ? strrchr(c->eval_split, '/') + 1 : c->eval_split;
        fputs("model-index:\n- name: ", f);
        json_put_string(f, name);
        fputs("\n  results:\n  - task:\n      type: summarization\n      name: Summarization\n"
              "    dataset:\n      name: DialogSum\n      type: knkarthick/dialogsum\n      split: ", f);
        json_put_string(f, split);
        fputs("\n    metrics:\n", f);
        for (int i = 0; i < 5; i++) fprintf(f, "    - type: %s\n      value: %.4f\n      name: %s\n", types[i], vals[i], names[i]);
    }
    fputs("---\n\n", f);
}

// "## Use": a Python snippet for transformers 4.x and 5.x (5.x has no "summarization" pipeline): the
// tokenizer with the prompt the model was trained with, then AutoModelForSeq2SeqLM.generate() with the
// run's generation settings. Its first part, down to HUB_SNIPPET_MODEL_LINE, needs no PyTorch (CI runs it:
// dev/check_card_snippet.py; the whole snippet runs there where PyTorch is installed)
#define HUB_SNIPPET_MODEL_LINE "# the model (needs PyTorch)"
#define HUB_SNIPPET_DIALOGUE "#Person1#: Hi, Mike. Are you coming to the meeting at three?\n#Person2#: I can't. My car broke down " \
    "and I'm waiting for the mechanic.\n#Person1#: OK. I'll tell the team and send you the notes."

// the card's prompt; none given: the dialogue alone
static inline const char* hub_prompt(const HubCard* c) { return c->prompt ? c->prompt : "{dialogue}"; }

static inline void hub_card_usage(FILE* f, const HubCard* c) {
    const HubGeneration* g = &c->gen;
    char x[32];
    fputs("## Use\n\nWith transformers 4.x or 5.x: the prompt the model was trained with and the generation settings "
          "it was evaluated with (generation_config.json holds them too). The tokenizer part needs no PyTorch.\n\n"
          "```python\nfrom transformers import AutoTokenizer\n\nmodel_dir = \"PATH/TO/THIS/DIR\"  # this directory, or its id on the hub\n"
          "prompt = ", f);
    json_put_string(f, hub_prompt(c)); // a JSON string is a Python string literal
    fputs("\ndialogue = ", f);
    json_put_string(f, HUB_SNIPPET_DIALOGUE);
    fprintf(f, "\n\ntokenizer = AutoTokenizer.from_pretrained(model_dir)\n"
            "# the source as the model was trained on it: no trailing whitespace (sentencepiece drops it, transformers 4's\n"
            "# fast tokenizer would keep a token for it), at most %d tokens with </s> last\n"
            "source = prompt.replace(\"{dialogue}\", dialogue).rstrip()\n"
            "input_ids = tokenizer(source, max_length=%d, truncation=True).input_ids\n\n"
            HUB_SNIPPET_MODEL_LINE "\nfrom transformers import AutoModelForSeq2SeqLM\n\n"
            "model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)\n"
            "inputs = tokenizer(source, max_length=%d, truncation=True, return_tensors=\"pt\")\n"
            "summary_ids = model.generate(**inputs, num_beams=%d, max_new_tokens=%d",
            c->max_src_len, c->max_src_len, c->max_src_len, g->num_beams, g->max_new_tokens);
    if (g->min_new_tokens > 0) fprintf(f, ", min_new_tokens=%d", g->min_new_tokens);
    if (g->no_repeat_ngram_size > 0) fprintf(f, ", no_repeat_ngram_size=%d", g->no_repeat_ngram_size);
    if (g->repetition_penalty != 1.0f) { hub_float_literal(x, sizeof(x), g->repetition_penalty); fprintf(f, ", repetition_penalty=%s", x); }
    if (g->num_beams > 1) { // beam search only: greedy search ignores them (and transformers warns of them)
        hub_float_literal(x, sizeof(x), (float)g->length_penalty);
        fprintf(f, ",\n                             length_penalty=%s, early_stopping=%s", x, g->early_stopping ? "True" : "False");
    }
    fputs(")\nprint(tokenizer.decode(summary_ids[0], skip_special_tokens=True))\n```\n", f);
}

// trivial[k]: the evaluation's LEAD-2 / LONGEST-3 scores (scores_lead2.json, scores_longest3.json beside
// scores.json), NULL where not read
static inline void hub_card_body(FILE* f, const char* name, const char* base_id, const HubCard* c, const HubScores* s,
                                 const HubScores* base, const HubScores* const trivial[2]) {
    fprintf(f, "# %s\n\n", name);
    if (c->random_init) fprintf(f, "A %s-shaped T5 **randomly initialised** (seed %lld), not pretrained weights", c->base_model, c->seed);
    else fprintf(f, "Weights from `%s`%s%s%s", c->base_model, base_id ? " (" : "", base_id ? base_id : "", base_id ? ")" : "");
    if (c->train_file) fprintf(f, ", fine-tuned to summarize dialogues (DialogSum) with t5.c's %s%s%s.\n\n", c->engine,
                               c->lora ? "; " : "", c->lora ? c->lora : "");
    else fprintf(f, ", exported by t5.c's %s%s%s.\n\n", c->engine, c->lora ? "; " : "", c->lora ? c->lora : "");
    if (c->train_file) {
        fputs("## Training\n\n| setting | value |\n|---|---|\n", f);
        fprintf(f, "| train file | `%s` |\n| optimizer steps | %lld |\n| batch | %d x %d accumulation x %d rank%s |\n",
                c->train_file, c->steps, c->batch_size, c->grad_accum, c->ranks, c->ranks == 1 ? "" : "s");
        fprintf(f, "| learning rate | %g, %s schedule, %d warmup steps |\n| AdamW weight decay | %g |\n", c->lr, c->schedule,
                c->warmup, c->weight_decay);
        fprintf(f, "| gradient clipping | %g |\n| dropout | %g |\n| max source / target tokens | %d / %d |\n| seed | %lld |\n",
                c->clip, c->dropout, c->max_src_len, c->max_tgt_len, c->seed);
        if (c->best_metric) fprintf(f, "| weights | the best evaluation by %s (%.4f) at step %lld of %lld (--keep-best) |\n",
                                    c->best_metric, c->best_value, c->best_step, c->run_steps);
        fputs("\n", f);
    }
    if (s) {
        fprintf(f, "## Evaluation\n\n%lld dialogues of `%s`; ROUGE as rouge_score (stemmer, best over the human references, "
                "mean of per-example F1 x 100), BLEU as corpus sacrebleu.\n\n| model | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | BLEU |\n"
                "|---|---:|---:|---:|---:|---:|\n", s->examples, c->eval_split);
        if (base) fprintf(f, "| zero-shot (before fine-tuning) | %.2f | %.2f | %.2f | %.2f | %.2f |\n", base->rouge1, base->rouge2,
                          base->rougeL, base->rougeLsum, base->bleu);
        fprintf(f, "| this model | %.2f | %.2f | %.2f | %.2f | %.2f |\n", s->rouge1, s->rouge2, s->rougeL, s->rougeLsum, s->bleu);
        const char* rules[2] = { "LEAD-2 (baseline: the dialogue's first two lines)", "LONGEST-3 (baseline: its three longest lines)" };
        for (int k = 0; k < 2; k++)
            if (trivial[k]) fprintf(f, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", rules[k], trivial[k]->rouge1, trivial[k]->rouge2,
                                    trivial[k]->rougeL, trivial[k]->rougeLsum, trivial[k]->bleu);
        fputc('\n', f);
    }
    hub_card_usage(f, c);
}

// the card's title: DIR's last component, or RUN-model for a run directory's RUN/model
static inline void hub_card_name(const char* dir, char* out, size_t n) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    const char* nm = dir + len;
    while (nm > dir && nm[-1] != '/') nm--;
    int nlen = (int)(dir + len - nm);
    if (nlen == 5 && strncmp(nm, "model", 5) == 0 && nm > dir + 1) {
        const char* end = nm - 1;
        while (end > dir && end[-1] == '/') end--;
        const char* pm = end;
        while (pm > dir && pm[-1] != '/') pm--;
        if (end > pm && !(end - pm == 1 && *pm == '.')) { snprintf(out, n, "%.*s-model", (int)(end - pm), pm); return; }
    }
    snprintf(out, n, "%.*s", nlen, nm);
}

static inline int hub_write_card(const char* dir, const HubCard* c, char* err, size_t errlen) {
    char path[4096], idbuf[512], name[512];
    hub_card_name(dir, name, sizeof(name));
    const char* base_id = c->random_init ? NULL : hub_base_id(c->base_model, idbuf, sizeof(idbuf));
    HubScores s, b;
    int have = c->eval_split && hub_read_scores(c->scores_json, &s) == 0;
    int have_base = have && hub_read_scores(c->baseline_json, &b) == 0;
    HubScores tv[2];
    const HubScores* trivial[2] = { NULL, NULL };
    const char* files[2] = { "scores_lead2.json", "scores_longest3.json" };
    for (int k = 0; have && k < 2; k++) { // beside scores.json
        const char* slash = strrchr(c->scores_json, '/');
        snprintf(path, sizeof(path), "%.*s%s", slash ? (int)(slash - c->scores_json + 1) : 0, c->scores_json, files[k]);
        if (hub_read_scores(path, &tv[k]) == 0) trivial[k] = &tv[k];
    }
    if (hf_join(path, sizeof(path), dir, "README.md", err, errlen)) return -1;
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) return -1;
    hub_card_metadata(a.f, name, base_id, c, have ? &s : NULL);
    hub_card_body(a.f, name, base_id, c, have ? &s : NULL, have_base ? &b : NULL, trivial);
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

// ----------------------------------------------------------------------------
// the whole directory

// weights + config.json (llmc/hf.h), generation_config.json, the tokenizer files, the model card and prompt.json
static inline int hub_save_dir(const char* dir, const T5Config* c, const float* params, const HubSave* s, int* tokenizer_json,
                               char* err, size_t errlen) {
    int with_json = 0;
    int rc = t5_save_hf_weights(dir, c, params, &s->weights, err, errlen);
    if (rc == 0) rc = hub_write_generation_config(dir, c, &s->gen, err, errlen);
    if (rc == 0) rc = hub_write_tokenizer(dir, s->spm_path, &with_json, err, errlen);
    if (rc == 0) rc = hub_write_card(dir, &s->card, err, errlen);
    if (rc == 0) rc = prompt_write(dir, hub_prompt(&s->card), err, errlen);
    if (tokenizer_json) *tokenizer_json = with_json;
    return rc;
}

#endif // T5_HUB_H
