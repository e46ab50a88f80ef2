// fuzz.c — coverage-guided fuzz targets for every reader of outside input, one per format, and two
// that drive the engine itself:
//
//   json         llmc/json.h: any bytes → json_parse
//   jsonout      any UTF-8 text → json_put_string (the evaluation's JSON writer) → json_parse: the same text
//   config       config.json → t5_config_from_json; an accepted config is written back and must
//                read back identical but for tying, which the weights decide (t5_config_write)
//   safetensors  any file → st_open; every tensor of a readable dtype is read
//   hfdir        "config.json bytes" NUL "model.safetensors bytes" → t5_load_hf_dir; a loaded model
//                is saved (t5_save_hf_dir) and must load back bit-identical
//   hfindex      model.safetensors.index.json beside the sharded fixture's shards ($FUZZ_SHARDED,
//                default dev/fixtures/flan_gated/model_sharded) → t5_load_hf_dir, the same round trip
//   checkpoint   native checkpoint → ckpt_load; a loaded one is saved and must load back identical
//   lora         "adapter_config.json bytes" NUL "adapter_model.safetensors bytes" → lora_load_dir for
//                the flan_gated fixture's shape; an accepted adapter is saved (lora_save_dir) and must
//                load back identical
//   lora_ckpt    adapter checkpoint → lora_ckpt_load for the same shape (the base fingerprint taken from
//                the file's own header, so the checks behind it are reached); saved, loaded back identical
//   examples     pre-tokenized example file → dataloader_init, then two epochs of batches: each
//                example once per epoch, every id within the file's largest id
//   refs         PREFIX_refs.jsonl → evalset_read_refs (the first byte picks how many records), and the
//                trivial baselines of each dialogue read (trivial_summary)
//   metrics_log  metrics.jsonl → metrics_run_info (the comparison report's reader: never fails on a file
//                that opens, counts within bounds), then metrics_truncate: the rewrite keeps whole lines
//                at or before the step
//   spm          a SentencePiece model → spm_load_bytes; a loaded model encodes and decodes samples
//   tokenize     any text → spm_encode / spm_decode with the real T5 model ($FUZZ_SPM, default
//                ../shared/data/t5/spiece.model): ids in range, spans inside the normalized text
//   decode       any id sequence with the real T5 model: ids outside the vocabulary refused, the rest
//                decode to well-formed UTF-8 (as every piece of a fuzzed model must, in `spm`)
//   scores       hypothesis NUL reference NUL ... → ROUGE and BLEU: scores within [0, 1] / [0, 100],
//                a hypothesis scored against itself gets F = 1
//   generate     a random tiny model and generation settings drawn from the input → t5_generate: ids in
//                the vocabulary, lengths within max_new_tokens, padding after them
//   train        a random tiny model and padded batch → two forward/backward/AdamW steps: all finite
// For the file formats whose header carries a CRC-32 (checkpoint, examples), an odd first byte
// makes the harness write the right checksum into the mutated file, so the fuzzer gets past the
// checksum to the checks behind it; an even one leaves the file as mutated.
// Every rejection must come with a message that names the file; any crash, sanitizer report, leak
// or broken property aborts.
//
// Two builds of this one file:
//   libFuzzer (clang): make fuzz FUZZ_TARGET=examples FUZZ_SECONDS=60    (the corpus grows in
//                      build/fuzz/corpus/<target>, seeded by dev/fuzz_seeds.py with real files)
//   replay (any cc):   build/asan/fuzz_replay TARGET FILE|DIR ...   runs each input once; `make test`
//                      replays the seeds and dev/fuzz_regressions/<target>/ under the sanitizers
#define _GNU_SOURCE   // memmem, open_memstream
#define TESTING
#include "train_t5.c"
#include <dirent.h>   // defines: opendir, readdir, closedir

#define FUZZ_FAIL(...) do { fprintf(stderr, "fuzz: "); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); abort(); } while (0)

// the one process-wide state: libFuzzer's entry point takes no context argument
typedef struct { char dir[256]; char spm_path[4096]; SpmModel t5; int t5_loaded; long accepted; } FuzzCtx;
static FuzzCtx fz;

// ----------------------------------------------------------------------------
// helpers

// a path in this process's scratch directory
static void fuzz_path(char* out, size_t n, const char* name) { snprintf(out, n, "%s/%s", fz.dir, name); }

static void fuzz_write(const char* path, const uint8_t* d, size_t n) {
    FILE* f = fopen(path, "wb");
    if (!f || (n && fwrite(d, 1, n, f) != n) || fclose(f)) FUZZ_FAIL("cannot write %s", path);
}

// a rejection must say what was rejected
static void expect_named(const char* err, const char* path) {
    if (!strstr(err, path)) FUZZ_FAIL("error without the file's name: '%s' (file %s)", err, path);
}

// the CRC-32 of bytes [from, n) written as int64 slot `slot` of the header (when the input has it)
static void fix_crc(uint8_t* d, size_t n, int slot, size_t from) {
    if (n < from) return;
    Crc32Table T;
    crc32_table_init(&T);
    int64_t crc = crc32_update(&T, 0, d + from, n - from);
    memcpy(d + 8 * slot, &crc, 8);
}

// copies d[1..n) to path, with the CRC fixed when d[0] is odd; false for empty input
static int fuzz_write_crc_file(const char* path, const uint8_t* d, size_t n, int slot, size_t header_bytes) {
    if (n < 1) return 0;
    uint8_t* body = (uint8_t*)mallocCheck(n);
    memcpy(body, d + 1, n - 1);
    if (d[0] & 1) fix_crc(body, n - 1, slot, header_bytes);
    fuzz_write(path, body, n - 1);
    free(body);
    return 1;
}

// NUL-separated pieces of d as malloc'd strings (at most max)
static int fuzz_split(const uint8_t* d, size_t n, char** out, int max) {
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n && k < max; i++) {
        if (i == n || d[i] == 0) {
            out[k] = (char*)mallocCheck(i - start + 1);
            memcpy(out[k], d + start, i - start);
            out[k][i - start] = 0;
            k++;
            start = i + 1;
        }
    }
    return k;
}

static uint8_t* fuzz_read_file(const char* path, size_t* n) {
    FILE* f = fopen(path, "rb");
    if (!f) FUZZ_FAIL("cannot open %s", path);
    size_t cap = 1 << 16, len = 0;
    uint8_t* b = (uint8_t*)mallocCheck(cap);
    for (size_t got; (got = fread(b + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) b = (uint8_t*)reallocCheck(b, cap *= 2);
    }
    fclose(f);
    *n = len;
    return b;
}

static int same_floats(const float* a, const float* b, size_t n) { return n == 0 || memcmp(a, b, n * sizeof(float)) == 0; }

// ----------------------------------------------------------------------------
// targets

static void fuzz_json(const uint8_t* d, size_t n) {
    JsonValue v;
    char err[256] = "";
    if (json_parse((const char*)d, n, &v, err, sizeof(err)) == 0) { fz.accepted++; json_free(&v); }
    else if (!strstr(err, "json: ")) FUZZ_FAIL("json error without its prefix: '%s'", err);
}

// jsonout: any well-formed UTF-8 text without NUL, written as the evaluation writes its JSON strings
// (json_put_string), parses back to the same text
static void fuzz_jsonout(const uint8_t* d, size_t n) {
    if (memchr(d, 0, n) || !spm_utf8_valid(d, n)) return;
    char* text = (char*)mallocCheck(n + 1);
    memcpy(text, d, n);
    text[n] = 0;
    char* buf = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    if (!f) FUZZ_FAIL("open_memstream failed");
    json_put_string(f, text);
    fclose(f);
    JsonValue v;
    char err[256];
    if (json_parse(buf, len, &v, err, sizeof(err))) FUZZ_FAIL("json_put_string wrote what json_parse refuses: %s", err);
    if (v.type != JSON_STRING || strcmp(v.string, text) != 0) FUZZ_FAIL("a string changed in a JSON write/read round trip");
    fz.accepted++;
    json_free(&v);
    free(buf);
    free(text);
}

static void fuzz_config(const uint8_t* d, size_t n) {
    char path[400], back[400], err[1024] = "";
    fuzz_path(path, sizeof(path), "config.json");
    fuzz_path(back, sizeof(back), "config_back.json");
    fuzz_write(path, d, n);
    T5Config c, c2;
    if (t5_config_read(path, &c, err, sizeof(err))) { expect_named(err, path); return; }
    fz.accepted++;
    if (t5_config_write(back, &c, err, sizeof(err)) || t5_config_read(back, &c2, err, sizeof(err))) FUZZ_FAIL("config round trip: %s", err);
    // config.json alone cannot say "tied" for a tied, unscaled model, nor "untied" for an untied, scaled
    // one: the writer puts tie_word_embeddings = scale_out and lets the weights tell (t5_config_write)
    c.tied = c.scale_out;
    if (memcmp(&c, &c2, sizeof(c)) != 0) FUZZ_FAIL("config changed in a write/read round trip");
}

// reads every tensor whose dtype the engine reads
static void read_all_tensors(StFile* st) {
    for (int i = 0; i < st->n; i++) {
        const StTensor* t = &st->tensors[i];
        if (t->end > st->file_size || t->end < t->begin) FUZZ_FAIL("tensor '%s' outside its file", t->name);
        int as_float = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16;
        int as_int = t->dtype == ST_I32 || t->dtype == ST_I64;
        if (!as_float && !as_int) continue;
        char err[512];
        void* buf = mallocCheck((size_t)t->numel * 4 + 4); // numel ≤ the file's size: its bytes are checked at open
        int rc = as_float ? st_read_f32(st, t, (float*)buf, err, sizeof(err)) : st_read_i32(st, t, (int32_t*)buf, err, sizeof(err));
        if (rc) expect_named(err, st->path);
        free(buf);
    }
}

static void fuzz_safetensors(const uint8_t* d, size_t n) {
    char path[400], err[1024] = "";
    fuzz_path(path, sizeof(path), "fuzz.safetensors");
    fuzz_write(path, d, n);
    StFile st;
    if (st_open(&st, path, err, sizeof(err))) { expect_named(err, path); return; }
    fz.accepted++;
    read_all_tensors(&st);
    st_close(&st);
}

// configs larger than this are not loaded (the fuzzer's memory limit; real models are larger, and
// their sizes are checked the same way)
#define FUZZ_MAX_PARAMS (1 << 22)

// loads the HF directory; a loaded model must save (t5_save_hf_dir) and load back bit-identical
static void load_hf_roundtrip(const char* dir) {
    char back[400], err[1024] = "";
    fuzz_path(back, sizeof(back), "model_back");
    T5Config c, c2;
    float *p = NULL, *p2 = NULL;
    if (t5_load_hf_dir(dir, &c, &p, err, sizeof(err))) { expect_named(err, dir); return; }
    fz.accepted++;
    if (t5_save_hf_dir(back, &c, p, err, sizeof(err)) || t5_load_hf_dir(back, &c2, &p2, err, sizeof(err))) FUZZ_FAIL("HF round trip: %s", err);
    T5Layout L;
    t5_layout(&c, &L);
    if (memcmp(&c, &c2, sizeof(c)) != 0 || !same_floats(p, p2, L.total)) FUZZ_FAIL("model changed in an HF save/load round trip");
    free(p); free(p2);
}

static void fuzz_hfdir(const uint8_t* d, size_t n) {
    char dir[400], path[500], err[1024] = "";
    fuzz_path(dir, sizeof(dir), "model");
    mkdir_p(dir, err, sizeof(err));
    const uint8_t* nul = (const uint8_t*)memchr(d, 0, n);
    size_t nc = nul ? (size_t)(nul - d) : n;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    fuzz_write(path, d, nc);
    T5Config c;
    if (t5_config_read(path, &c, err, sizeof(err)) == 0) {
        T5Layout L;
        t5_layout(&c, &L);
        if (L.total > FUZZ_MAX_PARAMS) return;
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if (nul) fuzz_write(path, nul + 1, n - nc - 1);
    else unlink(path);
    load_hf_roundtrip(dir);
}

// the sharded fixture's config and shards, copied once into the scratch directory (setup)
static void copy_sharded_fixture(const char* from) {
    static const char* names[] = { "config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                   "model-00003-of-00003.safetensors" };
    char dir[400], src[4400], dst[500], err[1024];
    fuzz_path(dir, sizeof(dir), "sharded");
    if (mkdir_p(dir, err, sizeof(err))) FUZZ_FAIL("%s", err);
    for (int i = 0; i < 4; i++) {
        size_t n;
        snprintf(src, sizeof(src), "%s/%s", from, names[i]);
        snprintf(dst, sizeof(dst), "%s/%s", dir, names[i]);
        uint8_t* d = fuzz_read_file(src, &n);
        fuzz_write(dst, d, n);
        free(d);
    }
}

// model.safetensors.index.json beside the sharded fixture's three shards
static void fuzz_hfindex(const uint8_t* d, size_t n) {
    char dir[400], path[500];
    fuzz_path(dir, sizeof(dir), "sharded");
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    fuzz_write(path, d, n);
    load_hf_roundtrip(dir);
}

// the base the LoRA targets load against: dev/fixtures/flan_gated's shape (gated, untied)
static T5Config fuzz_lora_base(void) {
    return (T5Config){ .vocab_size = 128, .d_model = 32, .d_kv = 8, .num_heads = 4, .d_ff = 64, .num_layers = 2,
                       .num_decoder_layers = 2, .num_buckets = 16, .max_distance = 32, .eps = 1e-6f, .dropout = 0.0f,
                       .act = ACT_GELU_TANH, .gated = 1, .tied = 0, .pad_id = 0, .eos_id = 1, .decoder_start_id = 0 };
}

static void fuzz_lora(const uint8_t* d, size_t n) {
    char dir[400], back[400], path[500], err[1024] = "";
    fuzz_path(dir, sizeof(dir), "adapter");
    fuzz_path(back, sizeof(back), "adapter_back");
    mkdir_p(dir, err, sizeof(err));
    const uint8_t* nul = (const uint8_t*)memchr(d, 0, n);
    size_t nc = nul ? (size_t)(nul - d) : n;
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    fuzz_write(path, d, nc);
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir);
    if (nul) fuzz_write(path, nul + 1, n - nc - 1);
    else unlink(path);
    T5Config m = fuzz_lora_base();
    LoraConfig c, c2;
    float *a = NULL, *a2 = NULL;
    if (lora_load_dir(dir, &m, &c, &a, err, sizeof(err))) { expect_named(err, dir); return; }
    fz.accepted++;
    T5Layout L;
    LoraLayout LL;
    t5_layout(&m, &L);
    lora_layout(&c, &L, m.gated, &LL);
    if (lora_save_dir(back, &c, &L, &LL, a, "fuzz", err, sizeof(err)) || lora_load_dir(back, &m, &c2, &a2, err, sizeof(err)))
        FUZZ_FAIL("adapter round trip: %s", err);
    if (memcmp(&c, &c2, sizeof(c)) != 0 || !same_floats(a, a2, LL.total)) FUZZ_FAIL("adapter changed in a save/load round trip");
    free(a); free(a2);
}

static void fuzz_lora_ckpt(const uint8_t* d, size_t n) {
    char path[400], back[400], err[1024] = "";
    fuzz_path(path, sizeof(path), "fuzz_lora.ckpt");
    fuzz_path(back, sizeof(back), "fuzz_lora_back.ckpt");
    if (!fuzz_write_crc_file(path, d, n, 19, 8 * LORA_CKPT_HEADER_INTS)) return;
    T5Config m = fuzz_lora_base();
    T5Layout L;
    t5_layout(&m, &L);
    int64_t crc = 0;
    if (n > 1 + 8 * 12) memcpy(&crc, d + 1 + 8 * 11, 8);
    LoraCkptInfo info, info2;
    float *a, *mm, *vv, *a2, *mm2, *vv2;
    if (lora_ckpt_load(path, &m, (int64_t)L.total, (uint32_t)crc, &info, &a, &mm, &vv, err, sizeof(err))) { expect_named(err, path); return; }
    fz.accepted++;
    if (lora_ckpt_save(back, &info.config, a, mm, vv, info.n, info.step, info.base_n, info.base_crc, info.train, err, sizeof(err)) ||
        lora_ckpt_load(back, &m, info.base_n, info.base_crc, &info2, &a2, &mm2, &vv2, err, sizeof(err))) FUZZ_FAIL("adapter checkpoint round trip: %s", err);
    int same = memcmp(&info.config, &info2.config, sizeof(info.config)) == 0 && info.n == info2.n && info.has_opt == info2.has_opt &&
               info.step == info2.step && memcmp(info.train, info2.train, sizeof(info.train)) == 0 && same_floats(a, a2, (size_t)info.n) &&
               (!info.has_opt || (same_floats(mm, mm2, (size_t)info.n) && same_floats(vv, vv2, (size_t)info.n)));
    if (!same) FUZZ_FAIL("adapter checkpoint changed in a save/load round trip");
    free(a); free(mm); free(vv); free(a2); free(mm2); free(vv2);
}

static void fuzz_checkpoint(const uint8_t* d, size_t n) {
    char path[400], back[400], err[1024] = "";
    fuzz_path(path, sizeof(path), "fuzz.ckpt");
    fuzz_path(back, sizeof(back), "fuzz_back.ckpt");
    if (!fuzz_write_crc_file(path, d, n, 29, 8 * CKPT_HEADER_INTS)) return;
    CkptInfo info, info2;
    float *p, *m, *v, *p2, *m2, *v2;
    if (ckpt_load(path, &info, &p, &m, &v, err, sizeof(err))) { expect_named(err, path); return; }
    fz.accepted++;
    if (ckpt_save(back, &info.config, p, m, v, info.n, info.step, &info.train, err, sizeof(err)) ||
        ckpt_load(back, &info2, &p2, &m2, &v2, err, sizeof(err))) FUZZ_FAIL("checkpoint round trip: %s", err);
    int same = memcmp(&info.config, &info2.config, sizeof(info.config)) == 0 && info.n == info2.n &&
               info.has_opt == info2.has_opt && info.step == info2.step &&
               memcmp(&info.train, &info2.train, sizeof(info.train)) == 0 && same_floats(p, p2, (size_t)info.n) &&
               (!info.has_opt || (same_floats(m, m2, (size_t)info.n) && same_floats(v, v2, (size_t)info.n)));
    if (!same) FUZZ_FAIL("checkpoint changed in a save/load round trip");
    free(p); free(m); free(v); free(p2); free(m2); free(v2);
}

// two epochs of batches: each example exactly once per epoch, ids within the file's largest id
static void check_epochs(DataLoader* dl) {
    int64_t n = dl->data.n;
    int* seen = (int*)callocCheck((size_t)n, sizeof(int));
    BatchBuf bb;
    memset(&bb, 0, sizeof(bb));
    for (int64_t k = 0; k < 2 * dl->num_batches; k++) {
        T5Batch* b = dataloader_next(dl, &bb);
        for (int i = 0; i < dl->idx_n; i++) seen[dl->idx[i]]++;
        for (int i = 0; i < b->B * b->Ts; i++) if (b->src[i] < 0 || b->src[i] > dl->data.max_id) FUZZ_FAIL("source id %d out of range", b->src[i]);
        for (int i = 0; i < b->B * b->Tt; i++) if (b->labels[i] != IGNORE_INDEX && (b->labels[i] < 0 || b->labels[i] > dl->data.max_id)) FUZZ_FAIL("label out of range");
        const LoaderConfig* c = &dl->cfg; // the shape ladder: a rung (multiple of the step or the cap), never past the cap
        int src_ok = b->Ts <= c->max_src && (c->src_step <= 1 || b->Ts % c->src_step == 0 || b->Ts == c->max_src);
        int tgt_ok = b->Tt <= c->max_tgt && (c->tgt_step <= 1 || b->Tt % c->tgt_step == 0 || b->Tt == c->max_tgt);
        if (b->B > 0 && (!src_ok || !tgt_ok)) FUZZ_FAIL("batch shape %dx%d off the ladder (%d, %d; caps %d, %d)", b->Ts, b->Tt,
                                                       c->src_step, c->tgt_step, c->max_src, c->max_tgt);
    }
    for (int64_t i = 0; i < n; i++) if (seen[i] != 2) FUZZ_FAIL("example %lld seen %d times in two epochs", (long long)i, seen[i]);
    free(seen);
    batch_free(&bb);
}

static void fuzz_examples(const uint8_t* d, size_t n) {
    char path[400], err[1024] = "";
    fuzz_path(path, sizeof(path), "fuzz.bin");
    if (!fuzz_write_crc_file(path, d, n, 6, 8 * EXAMPLES_HEADER_INTS)) return;
    // the first byte also picks the loader's geometry
    LoaderConfig cfg = { 1 + d[0] % 5, 1, 0, (d[0] >> 3) & 1, (d[0] >> 4) & 1, 2, 1 + d[0] % 7, 1 + d[0] % 11, 0, 0, d[0],
                         (d[0] >> 5) & 3, (d[0] >> 6) & 3, 1 }; // ladder steps 0..3: padding past the examples, capped; eos 1
    DataLoader dl;
    if (dataloader_init(&dl, path, &cfg, err, sizeof(err))) { expect_named(err, path); return; }
    fz.accepted++;
    // as in the trainers: the ids are checked against the model's vocabulary (at most 2^24 rows,
    // t5_config_check) before any batch is made
    if (examples_check_vocab(&dl.data, 1 << 24, path, err, sizeof(err))) expect_named(err, path);
    else if (dl.data.n <= 4096) check_epochs(&dl);
    dataloader_free(&dl);
}

static void fuzz_refs(const uint8_t* d, size_t n) {
    if (n < 1) return;
    char path[400], err[1024] = "";
    fuzz_path(path, sizeof(path), "fuzz_refs.jsonl");
    fuzz_write(path, d + 1, n - 1);
    EvalSet s;
    memset(&s, 0, sizeof(s));
    s.n = 1 + d[0] % 8;
    s.ids = (char**)callocCheck((size_t)s.n, sizeof(char*));
    s.dialogues = (char**)callocCheck((size_t)s.n, sizeof(char*));
    s.ref_start = (int*)callocCheck((size_t)s.n + 1, sizeof(int));
    if (evalset_read_refs(&s, path, err, sizeof(err)) == 0) {
        fz.accepted++;
        for (int64_t i = 0; i < s.n; i++) {
            if (!s.ids[i] || !s.dialogues[i] || s.ref_start[i + 1] <= s.ref_start[i]) FUZZ_FAIL("record %lld accepted incomplete", (long long)i);
            for (int k = 0; k < TRIVIAL_NUM; k++) { // the baselines cut from any dialogue: never longer than it
                char* t = trivial_summary(s.dialogues[i], (TrivialKind)k);
                if (strlen(t) > strlen(s.dialogues[i])) FUZZ_FAIL("record %lld: a baseline summary longer than its dialogue", (long long)i);
                free(t);
            }
        }
    } else {
        expect_named(err, path);
    }
    evalset_free(&s);
}

// every kept line is whole, one of the input's lines, in order, and not past the step
static void check_truncated(const uint8_t* in, size_t n, const char* path, long long step) {
    FILE* f = fopen(path, "rb");
    if (!f) FUZZ_FAIL("metrics log gone after truncation");
    char line[8192];
    size_t pos = 0;
    while (fgets(line, sizeof(line), f)) {
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n') FUZZ_FAIL("a kept line is torn");
        const char* s = strstr(line, "\"step\": ");
        if (s && strtoll(s + 8, NULL, 10) > step) FUZZ_FAIL("a line past the step was kept");
        const uint8_t* at = pos < n ? (const uint8_t*)memmem(in + pos, n - pos, line, len) : NULL;
        if (!at) FUZZ_FAIL("a kept line is not an input line, in order");
        pos = (size_t)(at - in) + len;
    }
    fclose(f);
}

static void fuzz_metrics_log(const uint8_t* d, size_t n) {
    if (n < 1) return;
    char path[400], err[1024] = "";
    fuzz_path(path, sizeof(path), "metrics.jsonl");
    fuzz_write(path, d + 1, n - 1);
    long long step = d[0];
    RunInfo info;
    if (metrics_run_info(path, &info)) FUZZ_FAIL("metrics_run_info could not read %s", path);
    if (info.steps < 0 || info.bad_lines < 0 || info.steps + info.bad_lines > (long long)n || info.step_ms < 0 ||
        info.peak_mib < 0 || strlen(info.peak_memory) >= sizeof(info.peak_memory))
        FUZZ_FAIL("metrics_run_info: counts or values out of bounds");
    if (metrics_truncate(path, step, err, sizeof(err))) { expect_named(err, path); return; }
    fz.accepted++;
    check_truncated(d + 1, n - 1, path, step);
}

// ids in range, spans inside the normalized text, and the ids decode
static void check_encoding(const SpmModel* m, const char* text, size_t len) {
    SpmEncoding e;
    memset(&e, 0, sizeof(e));
    char err[256];
    if (spm_encode(m, text, len, &e, err, sizeof(err))) FUZZ_FAIL("encode failed: %s", err);
    for (size_t i = 0; i < e.n; i++) {
        if (e.ids[i] < 0 || e.ids[i] >= m->n_pieces) FUZZ_FAIL("id %d outside the vocabulary", e.ids[i]);
        if ((size_t)e.span_start[i] + e.span_len[i] > e.normalized_len) FUZZ_FAIL("span outside the normalized text");
    }
    char* back = spm_decode(m, e.ids, e.n, SPM_SKIP_SPECIAL, NULL, err, sizeof(err));
    if (!back) FUZZ_FAIL("decode of encoded ids failed: %s", err);
    free(back);
    spm_encoding_free(&e);
}

// text that sentencepiece's decode may give back: well-formed UTF-8 (generations.jsonl holds it)
static void check_utf8(const char* s, size_t n, const char* what) {
    if (!spm_utf8_valid((const uint8_t*)s, n)) FUZZ_FAIL("%s: %zu bytes, not valid UTF-8", what, n);
}

// every piece of a model, decoded alone and all together, in both special-token modes
static void check_decode_pieces(const SpmModel* m) {
    int* ids = (int*)mallocCheck((size_t)m->vocab_size * sizeof(int) + 1);
    for (int i = 0; i < m->vocab_size; i++) ids[i] = i;
    char err[256];
    for (int mode = 0; mode < 2; mode++) {
        size_t len;
        char* all = spm_decode(m, ids, (size_t)m->vocab_size, (SpmSpecial)mode, &len, err, sizeof(err));
        if (!all) FUZZ_FAIL("decode of every piece failed: %s", err);
        check_utf8(all, len, "decode of every piece");
        free(all);
    }
    free(ids);
}

static void fuzz_spm(const uint8_t* d, size_t n) {
    SpmModel m;
    char err[1024] = "";
    if (spm_load_bytes(&m, d, n, "fuzz.model", err, sizeof(err))) { expect_named(err, "fuzz.model"); return; }
    fz.accepted++;
    static const char* texts[] = { "Hello world", " #Person1#: Hi, Mr. Smith.\n\tI'm Dr. Hawkins! ", "\xef\xbc\xa1\xc3\xa9 e\xcc\x81 \xf0\x9f\x98\x80 \xff", "" };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) check_encoding(&m, texts[i], strlen(texts[i]));
    check_decode_pieces(&m);
    spm_free(&m);
}

static void fuzz_tokenize(const uint8_t* d, size_t n) {
    if (!fz.t5_loaded) FUZZ_FAIL("the T5 model %s did not load ($FUZZ_SPM)", fz.spm_path);
    check_encoding(&fz.t5, (const char*)d, n);
    fz.accepted++;
}

// BLEU is exp(mean log precision) as in sacrebleu, so a perfect match can round to 100 + a few ulp
// decode: any id sequence (2 bytes an id, some outside the vocabulary) with the real T5 model: ids
// outside [0, V) refused with the id in the message, all others decode to well-formed UTF-8
static void fuzz_decode(const uint8_t* d, size_t n) {
    if (!fz.t5_loaded) FUZZ_FAIL("the T5 model %s did not load ($FUZZ_SPM)", fz.spm_path);
    const SpmModel* m = &fz.t5;
    size_t k = n / 2;
    int* ids = (int*)mallocCheck(k * sizeof(int) + 1);
    int outside = 0;
    for (size_t i = 0; i < k; i++) {
        ids[i] = (int)((d[2 * i] | d[2 * i + 1] << 8) % (m->vocab_size + 64)) - 32;
        outside |= ids[i] < 0 || ids[i] >= m->vocab_size;
    }
    char err[256] = "";
    size_t len = 0;
    char* text = spm_decode(m, ids, k, n % 2 ? SPM_KEEP_SPECIAL : SPM_SKIP_SPECIAL, &len, err, sizeof(err));
    if (outside != (text == NULL)) FUZZ_FAIL("decode %s ids outside the vocabulary", outside ? "accepted" : "refused");
    if (text) { check_utf8(text, len, "decode"); fz.accepted++; }
    else if (!strstr(err, "outside")) FUZZ_FAIL("refusal without the reason: %s", err);
    free(text);
    free(ids);
}

static void check_unit(double x, double hi, const char* what) {
    if (!(x >= 0.0 && x <= hi * (1.0 + 1e-12))) FUZZ_FAIL("%s = %.17g outside [0, %g]", what, x, hi);
}

static void fuzz_scores(const uint8_t* d, size_t n) {
    char* parts[9];
    int k = fuzz_split(d, n, parts, 9);
    const char* const* refs = (const char* const*)parts + 1;
    int nrefs = k - 1;
    RougeScores r = rouge_score_multi(parts[0], refs, nrefs);
    RougeScores self = rouge_score_pair(parts[0], parts[0]);
    for (int i = 0; i < ROUGE_NUM_METRICS; i++) {
        check_unit(r.m[i].precision, 1.0, "ROUGE precision");
        check_unit(r.m[i].recall, 1.0, "ROUGE recall");
        check_unit(r.m[i].fmeasure, 1.0, "ROUGE F");
    }
    // a text with a word scores ROUGE-1 F = 1 against itself
    size_t norm_len = 0;
    char* tokens = rouge_token_string(parts[0], &norm_len);
    int has_word = 0;
    for (size_t i = 0; i < norm_len; i++) has_word |= tokens[i] != ' ' && tokens[i] != '\n';
    free(tokens);
    if (has_word && fabs(self.m[ROUGE_1].fmeasure - 1.0) > 1e-12) FUZZ_FAIL("ROUGE-1 of a text against itself is %g", self.m[ROUGE_1].fmeasure);
    BleuStats corpus;
    memset(&corpus, 0, sizeof(corpus));
    BleuStats seg = bleu_add(&corpus, parts[0], refs, nrefs);
    check_unit(bleu_compute(&corpus).score, 100.0, "corpus BLEU");
    check_unit(bleu_sentence_score(&seg).score, 100.0, "sentence BLEU");
    for (int i = 0; i < k; i++) free(parts[i]);
    fz.accepted++;
}

// a tiny model's config from 13 bytes: shapes down to one head of width 1 and a vocabulary of 2, any
// activation, gating, tying and output scaling, any eos / pad / start ids
static T5Config fuzz_tiny_config(const uint8_t* b) {
    T5Config c = { 2 + b[0] % 40, 1 + b[1] % 16, 1 + b[2] % 8, 1 + b[3] % 3, 1 + b[4] % 16, 1 + b[5] % 2, 1 + b[6] % 2,
                   4 + b[7] % 8, 0, 1e-6f, 0.0f, (T5Act)(b[9] % 3), (b[9] >> 2) & 1, (b[9] >> 3) & 1, (b[9] >> 4) & 1, 0, 0, 0 };
    c.max_distance = c.num_buckets / 2 + 1 + b[8] % 16;
    c.eos_id = b[10] % c.vocab_size;
    c.pad_id = b[11] % c.vocab_size;
    c.decoder_start_id = b[12] % c.vocab_size;
    if (t5_config_check(&c)) FUZZ_FAIL("harness config refused: %s", t5_config_check(&c));
    return c;
}

// the model of fuzz_tiny_config(b), its weights drawn with the seed in b[20..28)
static void fuzz_tiny_model(T5* m, const uint8_t* b) {
    T5Config c = fuzz_tiny_config(b);
    uint64_t seed;
    memcpy(&seed, b + 20, sizeof(seed));
    t5_build_from_config(m, &c);
    t5_init_random(m, seed);
}

// generate: a random tiny model and generation settings drawn from the input (beams wider than the
// vocabulary included): every generated id in the vocabulary, every length within max_new_tokens,
// pad after the length
static void fuzz_generate(const uint8_t* d, size_t n) {
    uint8_t b[32] = {0};
    memcpy(b, d, n < sizeof(b) ? n : sizeof(b));
    T5 m;
    fuzz_tiny_model(&m, b);
    const T5Config c = m.config;
    GenConfig g = { 1 + b[13] % 10, 1 + b[14] % 6, b[15] % 4, (b[16] - 128) / 32.0, b[17] & 1, (float)(b[18] % 8),
                    b[28] % 12, b[29] % 4 == 0 ? 1.0f : 0.25f + (float)(b[29] % 16) / 8.0f };
    int B = 1 + b[19] % 3, len[3], *rows[3];
    size_t at = sizeof(b);
    for (int i = 0; i < B; i++) {
        len[i] = 1 + (at < n ? d[at++] : i) % 12;
        rows[i] = (int*)mallocCheck((size_t)len[i] * sizeof(int));
        for (int j = 0; j < len[i]; j++) rows[i][j] = (at < n ? d[at++] : j) % c.vocab_size;
    }
    int* out = (int*)mallocCheck((size_t)B * g.max_new_tokens * sizeof(int));
    int out_len[3];
    char err[256];
    if (t5_generate(&m, (const int* const*)rows, len, B, &g, out, out_len, err, sizeof(err))) FUZZ_FAIL("generate refused: %s", err);
    for (int i = 0; i < B; i++) {
        if (out_len[i] < 0 || out_len[i] > g.max_new_tokens) FUZZ_FAIL("length %d outside [0, %d]", out_len[i], g.max_new_tokens);
        for (int j = 0; j < g.max_new_tokens; j++) {
            int id = out[(size_t)i * g.max_new_tokens + j];
            if (id < 0 || id >= c.vocab_size || (j >= out_len[i] && id != c.pad_id)) FUZZ_FAIL("id %d at %d (length %d)", id, j, out_len[i]);
        }
    }
    fz.accepted++;
    free(out);
    for (int i = 0; i < B; i++) free(rows[i]);
    t5_free(&m);
}

// train: a random tiny model and a random padded batch (any source lengths, ignored labels anywhere,
// dropout up to 0.9) through two forward/backward/AdamW steps: loss, gradient norm and every
// parameter finite (std-1 weights on a handful of dimensions cannot overflow fp32)
static void fuzz_train(const uint8_t* d, size_t n) {
    uint8_t b[32] = {0};
    memcpy(b, d, n < sizeof(b) ? n : sizeof(b));
    T5 m;
    fuzz_tiny_model(&m, b);
    m.config.dropout = (float)(b[13] % 10) / 10.0f;
    int V = m.config.vocab_size;
    BatchBuf bb;
    memset(&bb, 0, sizeof(bb));
    int B = 1 + b[14] % 3, Ts = 1 + b[15] % 9, Tt = 1 + b[16] % 7;
    batch_reserve(&bb, B, Ts, Tt);
    T5Batch* t = &bb.b;
    t->B = B; t->Ts = Ts; t->Tt = Tt;
    size_t at = sizeof(b);
    for (int i = 0; i < B; i++) {
        t->src_len[i] = 1 + (at < n ? d[at++] : i) % Ts;
        for (int j = 0; j < Ts; j++) t->src[i * Ts + j] = j < t->src_len[i] ? (at < n ? d[at++] : j) % V : m.config.pad_id;
        for (int j = 0; j < Tt; j++) {
            int x = at < n ? d[at++] : j;
            t->labels[i * Tt + j] = x >= 200 ? IGNORE_INDEX : x % V;
        }
        for (int j = 0; j < Tt; j++) t->dec_in[i * Tt + j] = dec_input(j == 0 ? m.config.decoder_start_id : t->labels[i * Tt + j - 1], m.config.pad_id);
    }
    const char* bad = t5_check_batch(&m, t);
    if (bad) FUZZ_FAIL("harness batch refused: %s", bad);
    AdamW opt = { 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 0 };
    for (int step = 0; step < 2; step++) {
        t5_zero_grad(&m);
        float loss = t5_forward(&m, t, 1, (uint64_t)step + b[17]);
        t5_backward(&m, t, 1, m.num_counted ? 1.0f / (float)m.num_counted : 0.0f);
        float norm = t5_grad_norm(&m);
        if (!isfinite(loss) || !isfinite(norm)) FUZZ_FAIL("step %d: loss %g, gradient norm %g", step, (double)loss, (double)norm);
        t5_clip_grads(&m, norm, 1.0f);
        t5_update(&m, &opt, opt.lr);
    }
    for (size_t i = 0; i < m.layout.total; i++) if (!isfinite(m.params_memory[i])) FUZZ_FAIL("parameter %zu not finite", i);
    fz.accepted++;
    batch_free(&bb);
    t5_free(&m);
}

typedef struct { const char* name; void (*run)(const uint8_t*, size_t); } FuzzTarget;
static const FuzzTarget FUZZ_TARGETS[] = {
    {"json", fuzz_json}, {"jsonout", fuzz_jsonout}, {"config", fuzz_config}, {"safetensors", fuzz_safetensors}, {"hfdir", fuzz_hfdir}, {"hfindex", fuzz_hfindex},
    {"checkpoint", fuzz_checkpoint}, {"lora", fuzz_lora}, {"lora_ckpt", fuzz_lora_ckpt}, {"examples", fuzz_examples}, {"refs", fuzz_refs},
    {"metrics_log", fuzz_metrics_log}, {"spm", fuzz_spm}, {"tokenize", fuzz_tokenize}, {"scores", fuzz_scores},
    {"decode", fuzz_decode}, {"generate", fuzz_generate}, {"train", fuzz_train},
};
#define NUM_FUZZ_TARGETS ((int)(sizeof(FUZZ_TARGETS) / sizeof(FUZZ_TARGETS[0])))

static const FuzzTarget* fuzz_find(const char* name) {
    for (int i = 0; name && i < NUM_FUZZ_TARGETS; i++) if (strcmp(FUZZ_TARGETS[i].name, name) == 0) return &FUZZ_TARGETS[i];
    return NULL;
}

static void fuzz_list_targets(void) {
    fprintf(stderr, "targets:");
    for (int i = 0; i < NUM_FUZZ_TARGETS; i++) fprintf(stderr, " %s", FUZZ_TARGETS[i].name);
    fprintf(stderr, "\n");
}

// the scratch directory (removed at exit) and, for `tokenize`, the real T5 model
static void fuzz_setup(const char* target) {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz.dir, sizeof(fz.dir), "%s/t5fuzz.XXXXXX", base);
    if (!mkdtemp(fz.dir)) FUZZ_FAIL("cannot create a scratch directory in %s", base);
    if (strcmp(target, "hfindex") == 0) {
        const char* p = getenv("FUZZ_SHARDED");
        copy_sharded_fixture(p ? p : "dev/fixtures/flan_gated/model_sharded");
    }
    if (strcmp(target, "tokenize") == 0 || strcmp(target, "decode") == 0) {
        const char* p = getenv("FUZZ_SPM");
        snprintf(fz.spm_path, sizeof(fz.spm_path), "%s", p ? p : "../shared/data/t5/spiece.model");
        char err[1024];
        fz.t5_loaded = spm_load(&fz.t5, fz.spm_path, err, sizeof(err)) == 0;
        if (!fz.t5_loaded) FUZZ_FAIL("%s", err);
    }
}

static void fuzz_cleanup(void) {
    if (!fz.dir[0]) return;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fz.dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fz.dir);
    if (fz.t5_loaded) spm_free(&fz.t5);
}

#ifdef FUZZ_REPLAY
// ----------------------------------------------------------------------------
// replay: each file (or each file of each directory) once

static int replay_file(const FuzzTarget* t, const char* path) {
    size_t n;
    uint8_t* d = fuzz_read_file(path, &n);
    t->run(d, n);
    free(d);
    return 1;
}

static int replay_path(const FuzzTarget* t, const char* path) {
    struct stat sb;
    if (stat(path, &sb) != 0) FUZZ_FAIL("no such file or directory: %s", path);
    if (!S_ISDIR(sb.st_mode)) return replay_file(t, path);
    DIR* dir = opendir(path);
    if (!dir) FUZZ_FAIL("cannot open directory %s", path);
    int count = 0;
    for (struct dirent* e; (e = readdir(dir)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char p[4400];
        snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
        count += replay_file(t, p);
    }
    closedir(dir);
    return count;
}

int main(int argc, char** argv) {
    const FuzzTarget* t = argc >= 3 ? fuzz_find(argv[1]) : NULL;
    if (!t) {
        fprintf(stderr, "usage: fuzz_replay TARGET FILE|DIR ...\n");
        fuzz_list_targets();
        return 2;
    }
    fuzz_setup(t->name);
    int count = 0;
    for (int i = 2; i < argc; i++) count += replay_path(t, argv[i]);
    fuzz_cleanup();
    printf("fuzz replay %-12s %5d inputs, %5ld accepted: no crash, every property held\n", t->name, count, fz.accepted);
    return 0;
}
#else
// ----------------------------------------------------------------------------
// libFuzzer: the target comes from $FUZZ_TARGET

static const FuzzTarget* fuzz_target;

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    (void)argc; (void)argv;
    fuzz_target = fuzz_find(getenv("FUZZ_TARGET"));
    if (!fuzz_target) {
        fprintf(stderr, "set FUZZ_TARGET to one of the targets\n");
        fuzz_list_targets();
        exit(2);
    }
    fuzz_setup(fuzz_target->name);
    atexit(fuzz_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
    fuzz_target->run(d, n);
    return 0;
}
#endif
