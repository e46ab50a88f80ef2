// prompt.h — the prompt: the source template, with {dialogue}, that turns a dialogue into the text a
// model reads (prepro_dialogsum.py --prompt). A model only works well on text made with the prompt it was
// trained with, so that prompt travels with the data and with the model:
//   DATA/meta.json       prepro_dialogsum.py's record beside its shards: "prompt" is what the tokens hold
//   DIR/prompt.json      {"prompt": ...}: t5.c writes it into every HF directory it exports (llmc/hub.h)
//                        and beside a LoRA adapter, for --summarize and a later export to find
// Both are read by prompt_read. Which record a run follows is the driver's rule (llmc/run.h resolve_prompt).
#ifndef T5_PROMPT_H
#define T5_PROMPT_H

#include <stdio.h>     // defines: snprintf
#include <stdlib.h>    // defines: free
#include <string.h>    // defines: strdup, strstr
#include <errno.h>     // defines: errno, ENOENT
#include <sys/stat.h>  // defines: stat
#include "json.h"      // defines: json_read_file, json_find, json_free, json_put_string
#include "fileio.h"    // defines: AtomicFile, atomic_open, atomic_close, dir_of

#define DEFAULT_PROMPT "Summarize the following conversation.\n\n{dialogue}\n\nSummary: " // prepro_dialogsum.py's
#define PROMPT_FILE "prompt.json"

// the prompt recorded in PATH (a JSON object's "prompt") into *out, malloc'd. 0; 1 when PATH does not
// exist (*out = NULL: nothing recorded); -1 with "PATH: problem" when it cannot be read, is not a JSON
// object, or its "prompt" is missing, not a string or without {dialogue}
static inline int prompt_read(const char* path, char** out, char* err, size_t errlen) {
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0 && errno == ENOENT) return 1;
    JsonValue root;
    if (json_read_file(path, &root, err, errlen)) return -1;
    const JsonValue* v = json_find(&root, "prompt");
    const char* why = root.type != JSON_OBJECT ? "not a JSON object"
                    : !v ? "no \"prompt\" (the source template, a string with {dialogue})"
                    : v->type != JSON_STRING ? "\"prompt\" is not a string"
                    : !strstr(v->string, "{dialogue}") ? "\"prompt\" has no {dialogue}" : NULL;
    if (why) snprintf(err, errlen, "%s: %s", path, why);
    else *out = strdup(v->string);
    json_free(&root);
    return why ? -1 : 0;
}

// the meta.json beside a data file (prepro_dialogsum.py writes one per output directory); 0, or -1 when too long
static inline int prompt_data_meta(const char* data_file, char* path, size_t n) {
    char dir[4096];
    if (dir_of(data_file, dir, sizeof(dir))) return -1;
    return snprintf(path, n, "%s/meta.json", dir) < (int)n ? 0 : -1;
}

// DIR/prompt.json = {"prompt": prompt}, written to a temporary and renamed
static inline int prompt_write(const char* dir, const char* prompt, char* err, size_t errlen) {
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/" PROMPT_FILE, dir) >= (int)sizeof(path)) {
        snprintf(err, errlen, "%s: path too long", dir);
        return -1;
    }
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) return -1;
    fputs("{\"prompt\": ", a.f);
    json_put_string(a.f, prompt);
    fputs("}\n", a.f);
    return atomic_close(&a, !ferror(a.f), err, errlen);
}

#endif // T5_PROMPT_H
