/*
dev/test_io.c — tests for llmc/json.h and llmc/safetensors.h: one line per check, exit code = verdict.

build and run from the repo root:
    gcc -O2 -Wall -Wextra -Werror -std=gnu11 dev/test_io.c -o /tmp/test_io -lm && /tmp/test_io
with the sanitizers (the fuzz loop is meant to run under them):
    gcc -O1 -g -Wall -Wextra -Werror -std=gnu11 -fsanitize=address,undefined -fno-sanitize-recover=all \
        dev/test_io.c -o /tmp/test_io_asan -lm && /tmp/test_io_asan

Files are written into a fresh mkdtemp() directory under /tmp, removed at the end.
*/
#include <dirent.h>     // opendir, readdir (removing the temp dir)
#include <sys/stat.h>   // mkdir, lstat
#include "../llmc/safetensors.h" // defines: st_open, st_read_f32, st_read_i32, st_write_f32, stset_open_dir, json_parse, ...

// ----------------------------------------------------------------------------
// test context (no globals): counts, the temp dir, a scratch buffer for paths

typedef struct {
    int passed, failed;
    char dir[256];
} TestCtx;

static void check(TestCtx* tc, const char* name, int ok, const char* detail) {
    printf("%-58s ... %s", name, ok ? "OK" : "FAIL");
    if (detail != NULL && detail[0] != '\0') { printf("  (%s)", detail); }
    printf("\n");
    if (ok) { tc->passed++; } else { tc->failed++; }
}

static void tmp_path(const TestCtx* tc, char* out, size_t n, const char* name) {
    snprintf(out, n, "%s/%s", tc->dir, name);
}

static int write_bytes(const char* path, const void* data, size_t len) {
    FILE* f = fopen(path, "wb");
    if (f == NULL) { return -1; }
    size_t w = len > 0 ? fwrite(data, 1, len, f) : 0;
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

static unsigned char* read_bytes(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) { return NULL; }
    fseeko(f, 0, SEEK_END);
    *len = (size_t)ftello(f);
    fseeko(f, 0, SEEK_SET);
    unsigned char* b = (unsigned char*)malloc(*len + 1);
    if (b != NULL && fread(b, 1, *len, f) != *len) { free(b); b = NULL; }
    fclose(f);
    return b;
}

// a safetensors file by hand: le64(strlen(header)) + header + data
static int write_raw_st(const char* path, const char* header, const void* data, size_t datalen) {
    size_t hn = strlen(header);
    unsigned char* b = (unsigned char*)malloc(8 + hn + datalen + 1);
    st_put_le64(b, hn);
    memcpy(b + 8, header, hn);
    if (datalen > 0) { memcpy(b + 8 + hn, data, datalen); }
    int rc = write_bytes(path, b, 8 + hn + datalen);
    free(b);
    return rc;
}

// rm -r of the temp dir (only what this program created: files and plain subdirectories)
static void rm_tree(const char* path) {
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        DIR* d = opendir(path);
        struct dirent* e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) { continue; }
            char child[1024];
            snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
            rm_tree(child);
        }
        if (d != NULL) { closedir(d); }
    }
    remove(path);
}

// xorshift64*: deterministic randomness, state passed explicitly
static uint64_t rng_next(uint64_t* s) {
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}
static uint32_t rng_below(uint64_t* s, uint32_t n) { return (uint32_t)(rng_next(s) >> 33) % n; }

// ----------------------------------------------------------------------------
// json

// parses a copy in a buffer of exactly len bytes, so that ASan catches any read past the end
static int parse_exact(const char* s, size_t len, JsonValue* v, char* err, size_t errlen) {
    char* b = (char*)malloc(len > 0 ? len : 1);
    memcpy(b, s, len);
    int rc = json_parse(b, len, v, err, errlen);
    free(b);
    return rc;
}

static void json_expect_fail(TestCtx* tc, const char* name, const char* text) {
    JsonValue v;
    char err[256] = "", line[128];
    int rc = parse_exact(text, strlen(text), &v, err, sizeof(err));
    snprintf(line, sizeof(line), "json rejects %s", name);
    check(tc, line, rc != 0 && strstr(err, "at byte") != NULL && v.type == JSON_NULL, err);
    json_free(&v);
}

// parses text that must be one string, compares its decoded bytes
static void json_expect_string(TestCtx* tc, const char* name, const char* text, const char* want) {
    JsonValue v;
    char err[256] = "", line[128];
    int rc = parse_exact(text, strlen(text), &v, err, sizeof(err));
    snprintf(line, sizeof(line), "json string %s", name);
    check(tc, line, rc == 0 && v.type == JSON_STRING && strcmp(v.string, want) == 0, err);
    json_free(&v);
}

static void json_expect_number(TestCtx* tc, const char* text, double want, int want_signbit) {
    JsonValue v;
    char err[256] = "", line[128];
    int rc = parse_exact(text, strlen(text), &v, err, sizeof(err));
    snprintf(line, sizeof(line), "json number %s", text);
    check(tc, line, rc == 0 && v.type == JSON_NUMBER && v.number == want &&
          (signbit(v.number) != 0) == want_signbit, err);
    json_free(&v);
}

static void test_json_strings(TestCtx* tc) {
    json_expect_string(tc, "simple escapes", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "a\"b\\c/d\b\f\n\r\t");
    json_expect_string(tc, "\\u00e9 \\u20AC -> UTF-8", "\"\\u00e9\\u20AC\"", "\xC3\xA9\xE2\x82\xAC");
    json_expect_string(tc, "surrogate pair -> U+1F600", "\"\\ud83d\\ude00\"", "\xF0\x9F\x98\x80");
    json_expect_string(tc, "raw UTF-8 passes through", "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"", "caf\xC3\xA9 \xF0\x9F\x98\x80");
    json_expect_string(tc, "empty", "\"\"", "");
    json_expect_fail(tc, "lone high surrogate", "\"\\ud83d\"");
    json_expect_fail(tc, "lone low surrogate", "\"\\ude00\"");
    json_expect_fail(tc, "high surrogate + non-low", "\"\\ud83d\\u0041\"");
    json_expect_fail(tc, "invalid escape \\x", "\"\\x41\"");
    json_expect_fail(tc, "short \\u escape", "\"\\u12\"");
    json_expect_fail(tc, "bad hex in \\u", "\"\\u12G4\"");
    json_expect_fail(tc, "\\u0000", "\"a\\u0000b\"");
    json_expect_fail(tc, "raw control char", "\"a\x01z\"");
    json_expect_fail(tc, "raw tab in string", "\"a\tb\"");
    json_expect_fail(tc, "invalid UTF-8 (C3 28)", "\"\xC3\x28\"");
    json_expect_fail(tc, "overlong UTF-8 (C0 AF)", "\"\xC0\xAF\"");
    json_expect_fail(tc, "UTF-8-encoded surrogate", "\"\xED\xA0\x80\"");
    json_expect_fail(tc, "unterminated string", "\"abc");
    json_expect_fail(tc, "string ending in backslash", "\"abc\\");
}

static void test_json_numbers(TestCtx* tc) {
    json_expect_number(tc, "1e-6", 1e-6, 0);
    json_expect_number(tc, "-0", 0.0, 1);
    json_expect_number(tc, "32128", 32128.0, 0);
    json_expect_number(tc, "-12.5E+2", -1250.0, 1);
    json_expect_number(tc, "0.5", 0.5, 0);
    json_expect_number(tc, " 7 ", 7.0, 0);
    const char* bad[] = { "01", "1.", ".5", "+1", "-", "1e", "1e+", "NaN", "Infinity", "-Infinity", "1e999", "0x10" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) { json_expect_fail(tc, bad[i], bad[i]); }
}

// "[[[...]]]" with depth levels
static void json_nest(char* buf, int depth) {
    for (int i = 0; i < depth; i++) { buf[i] = '['; buf[2 * depth - 1 - i] = ']'; }
    buf[2 * depth] = '\0';
}

static void test_json_structure(TestCtx* tc) {
    char err[256] = "";
    JsonValue v;
    const char* doc = " {\"a\": [1, true, false, null, \"x\"], \"b\": {\"c\": -2}, \"a\": 3} ";
    int rc = parse_exact(doc, strlen(doc), &v, err, sizeof(err));
    const JsonValue* a = json_find(&v, "a");
    const JsonValue* c = json_find(json_find(&v, "b"), "c");
    int ok = rc == 0 && v.type == JSON_OBJECT && v.count == 3 && a != NULL && a->type == JSON_ARRAY &&
             a->count == 5 && a->items[0].number == 1.0 && a->items[1].boolean == 1 &&
             a->items[2].type == JSON_BOOL && a->items[2].boolean == 0 && a->items[3].type == JSON_NULL &&
             strcmp(a->items[4].string, "x") == 0 && c != NULL && c->number == -2.0 &&
             json_find(&v, "zz") == NULL && json_find(a, "a") == NULL;
    check(tc, "json object/array/literals, json_find (first of repeated key)", ok, err);
    json_free(&v);

    char deep[200];
    json_nest(deep, 64);
    rc = parse_exact(deep, strlen(deep), &v, err, sizeof(err));
    check(tc, "json nesting depth 64 accepted", rc == 0, err);
    json_free(&v);
    json_nest(deep, 65);
    json_expect_fail(tc, "nesting depth 65", deep);

    // the buffer holds "[1,2]xyz" but len says 5: only [0, 5) may be read
    rc = parse_exact("[1,2]xyz", 5, &v, err, sizeof(err));
    check(tc, "json respects len (input not NUL-terminated)", rc == 0 && v.count == 2, err);
    json_free(&v);

    rc = parse_exact("[1,2,x]", 7, &v, err, sizeof(err));
    check(tc, "json error names the byte offset", rc != 0 && strstr(err, "at byte 5") != NULL, err);

    json_expect_fail(tc, "trailing garbage", "{} x");
    json_expect_fail(tc, "two values", "1 2");
    json_expect_fail(tc, "trailing comma in array", "[1,]");
    json_expect_fail(tc, "trailing comma in object", "{\"a\":1,}");
    json_expect_fail(tc, "missing colon", "{\"a\" 1}");
    json_expect_fail(tc, "non-string key", "{1:2}");
    json_expect_fail(tc, "missing comma", "[1 2]");
    json_expect_fail(tc, "empty input", "");
    json_expect_fail(tc, "only whitespace", "  \n ");
    json_expect_fail(tc, "truncated literal", "tru");
    json_expect_fail(tc, "unclosed array", "[1, 2");
    json_expect_fail(tc, "unclosed object", "{\"a\": 1");
    json_expect_fail(tc, "comment", "[1] // no");
}

static void test_json_file(TestCtx* tc) {
    char path[512], err[1024] = "";
    JsonValue v;
    tmp_path(tc, path, sizeof(path), "ok.json");
    write_bytes(path, "{\"k\": [1.5]}\n", 13);
    int rc = json_read_file(path, &v, err, sizeof(err));
    const JsonValue* k = json_find(&v, "k");
    check(tc, "json_read_file reads a file", rc == 0 && k != NULL && k->items[0].number == 1.5, err);
    json_free(&v);
    tmp_path(tc, path, sizeof(path), "bad.json");
    write_bytes(path, "{\"k\": [1.5}\n", 12);
    rc = json_read_file(path, &v, err, sizeof(err));
    check(tc, "json_read_file error names file and byte", rc != 0 && strstr(err, path) && strstr(err, "byte"), err);
    tmp_path(tc, path, sizeof(path), "missing.json");
    rc = json_read_file(path, &v, err, sizeof(err));
    check(tc, "json_read_file missing file names it", rc != 0 && strstr(err, path) != NULL, err);
}

// ----------------------------------------------------------------------------
// safetensors: writer -> reader round trip

static int floats_equal_bits(const float* a, const float* b, size_t n) { return n == 0 || memcmp(a, b, n * sizeof(float)) == 0; }

// reads tensor name from st into a fresh buffer and compares bit-for-bit with want
static int st_tensor_matches(StFile* st, const char* name, int ndim, const int64_t* shape, const float* want,
                             char* err, size_t errlen) {
    const StTensor* t = st_find(st, name);
    if (t == NULL || t->dtype != ST_F32 || t->ndim != ndim) { snprintf(err, errlen, "%s: missing or wrong meta", name); return 0; }
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (t->shape[d] != shape[d]) { snprintf(err, errlen, "%s: shape[%d] differs", name, d); return 0; }
        numel *= shape[d];
    }
    if (t->numel != numel) { return 0; }
    float* got = (float*)malloc((size_t)(numel > 0 ? numel : 1) * sizeof(float));
    int ok = st_read_f32(st, t, got, err, errlen) == 0 && floats_equal_bits(got, want, (size_t)numel);
    free(got);
    return ok;
}

static void test_roundtrip(TestCtx* tc) {
    char path[512], err[1024] = "";
    tmp_path(tc, path, sizeof(path), "roundtrip.safetensors");
    uint64_t rng = 42;
    float w[15], scalar = 3.25f, vec[1000];
    for (int i = 0; i < 15; i++) { w[i] = (float)(int32_t)rng_next(&rng) / 1e9f; }
    for (int i = 0; i < 1000; i++) { vec[i] = (float)i * 0.001f - 0.5f; }
    vec[0] = -0.0f; vec[1] = INFINITY; vec[2] = -INFINITY; vec[3] = NAN; vec[4] = 1e-45f; // subnormal
    StWriteTensor ts[4] = {
        { "encoder.block.0.layer.0.SelfAttention.q.weight", 2, {3, 5}, w },
        { "scalar", 0, {0}, &scalar },
        { "empty", 2, {0, 4}, NULL },
        { "vec", 1, {1000}, vec },
    };
    const char* kv[] = { "step", "100", "note", "quote \" backslash \\ newline \n tab \t bell \a caf\xC3\xA9" };
    int rc = st_write_f32(path, ts, 4, kv, 2, err, sizeof(err));
    check(tc, "st_write_f32 writes 4 tensors + metadata", rc == 0, err);

    StFile st;
    rc = st_open(&st, path, err, sizeof(err));
    check(tc, "st_open reads the written file", rc == 0 && st.n == 4 && st.nmeta == 3, err);
    if (rc != 0) { return; }
    int ok = 1;
    for (int i = 0; i < 4 && ok; i++) {
        ok = st_tensor_matches(&st, ts[i].name, ts[i].ndim, ts[i].shape, ts[i].data, err, sizeof(err));
    }
    check(tc, "round trip: names, shapes, values bit-exact (-0, inf, nan, subnormal)", ok, err);
    const char* fmt = st_metadata(&st, "format");
    const char* step = st_metadata(&st, "step");
    const char* note = st_metadata(&st, "note");
    check(tc, "round trip: metadata format=pt + escaped extras", fmt && strcmp(fmt, "pt") == 0 && step &&
          strcmp(step, "100") == 0 && note && strcmp(note, kv[3]) == 0 && st_metadata(&st, "nope") == NULL, "");

    size_t len;
    unsigned char* bytes = read_bytes(path, &len);
    uint64_t n = st_le64(bytes);
    int contiguous = st.tensors[0].begin == 8 + n && st.tensors[st.n - 1].end == st.file_size;
    for (int i = 1; i < st.n; i++) { contiguous &= st.tensors[i].begin == st.tensors[i - 1].end; }
    int order = st.n == 4 && strcmp(st.tensors[1].name, "scalar") == 0 && strcmp(st.tensors[3].name, "vec") == 0;
    check(tc, "round trip: header length multiple of 8, space padded", n % 8 == 0 && bytes[8 + n - 1] != '\0' &&
          (bytes[8 + n - 1] == '}' || bytes[8 + n - 1] == ' '), "");
    check(tc, "round trip: data contiguous, in the given order", contiguous && order, "");
    free(bytes);
    st_close(&st);
}

// a failed write must leave an existing PATH intact and no PATH.tmp behind
static void test_writer_refusals(TestCtx* tc) {
    char path[512], tmp[600], err[1024] = "";
    tmp_path(tc, path, sizeof(path), "keep.safetensors");
    float a[2] = { 1.0f, 2.0f };
    StWriteTensor good[1] = { { "a", 1, {2}, a } };
    st_write_f32(path, good, 1, NULL, 0, err, sizeof(err));

    StWriteTensor dup[2] = { { "a", 1, {2}, a }, { "a", 1, {1}, a } };
    int rc = st_write_f32(path, dup, 2, NULL, 0, err, sizeof(err));
    check(tc, "writer refuses duplicate tensor names", rc != 0 && strstr(err, path) != NULL, err);
    StWriteTensor deep[1] = { { "a", 9, {1, 1, 1, 1, 1, 1, 1, 1}, a } };
    rc = st_write_f32(path, deep, 1, NULL, 0, err, sizeof(err));
    check(tc, "writer refuses ndim 9", rc != 0 && strstr(err, path) != NULL, err);
    StWriteTensor neg[1] = { { "a", 1, {-2}, a } };
    rc = st_write_f32(path, neg, 1, NULL, 0, err, sizeof(err));
    check(tc, "writer refuses a negative dim", rc != 0, err);
    const char* kv[] = { "format", "np" };
    rc = st_write_f32(path, good, 1, kv, 1, err, sizeof(err));
    check(tc, "writer refuses reserved metadata key 'format'", rc != 0, err);
    StWriteTensor reserved[1] = { { "__metadata__", 1, {2}, a } };
    rc = st_write_f32(path, reserved, 1, NULL, 0, err, sizeof(err));
    check(tc, "writer refuses tensor name __metadata__", rc != 0, err);

    StFile st;
    float back[2] = { 0, 0 };
    err[0] = '\0';
    rc = st_open(&st, path, err, sizeof(err));
    int ok = rc == 0 && st.n == 1 && st_read_f32(&st, &st.tensors[0], back, err, sizeof(err)) == 0 &&
             back[0] == 1.0f && back[1] == 2.0f;
    st_close(&st);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    check(tc, "failed writes leave the existing file intact, no .tmp", ok && access(tmp, F_OK) != 0, err);

    tmp_path(tc, path, sizeof(path), "no_such_dir/x.safetensors");
    rc = st_write_f32(path, good, 1, NULL, 0, err, sizeof(err));
    check(tc, "writer into a missing directory fails, names the path", rc != 0 && strstr(err, path) != NULL, err);
}

// ----------------------------------------------------------------------------
// safetensors: dtype decoding

// independent reference decoders (arithmetic instead of bit surgery)
static float ref_f16(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    double x = exp == 0 ? ldexp(mant, -24) : exp == 31 ? (mant ? NAN : INFINITY) : ldexp(1024 + mant, exp - 25);
    return (float)(sign ? -x : x);
}
static float ref_bf16(uint16_t h) {
    int sign = h >> 15, exp = (h >> 7) & 255, mant = h & 127;
    double x = exp == 0 ? ldexp(mant, -133) : exp == 255 ? (mant ? NAN : INFINITY) : ldexp(128 + mant, exp - 134);
    return (float)(sign ? -x : x);
}

static int same_float(float got, float want) {
    if (isnan(want)) { return isnan(got); }
    return got == want && signbit(got) == signbit(want);
}

static void test_half_values(TestCtx* tc) {
    char path[512], err[1024] = "", detail[256] = "";
    tmp_path(tc, path, sizeof(path), "half.safetensors");
    // 1.0, -2.5, smallest subnormal, largest subnormal, max finite, inf, nan, -0.0
    const uint16_t f16[8] = { 0x3C00, 0xC100, 0x0001, 0x03FF, 0x7BFF, 0x7C00, 0x7E00, 0x8000 };
    const float f16_want[8] = { 1.0f, -2.5f, ldexpf(1, -24), ldexpf(1023, -24), 65504.0f, INFINITY, NAN, -0.0f };
    const uint16_t bf16[8] = { 0x3F80, 0xC020, 0x0001, 0x007F, 0x7F7F, 0x7F80, 0x7FC0, 0x8000 };
    const float bf16_want[8] = { 1.0f, -2.5f, ldexpf(1, -133), ldexpf(127, -133), ldexpf(255, 120), INFINITY, NAN, -0.0f };
    // plus every one of the 65536 bit patterns of each type (crosses the 32 KiB conversion chunks)
    unsigned char* data = (unsigned char*)malloc(32 + 2 * 65536 * 2);
    for (int i = 0; i < 8; i++) {
        data[2 * i] = (unsigned char)(f16[i] & 0xFF); data[2 * i + 1] = (unsigned char)(f16[i] >> 8);
        data[16 + 2 * i] = (unsigned char)(bf16[i] & 0xFF); data[16 + 2 * i + 1] = (unsigned char)(bf16[i] >> 8);
    }
    for (int i = 0; i < 65536; i++) {
        data[32 + 2 * i] = (unsigned char)(i & 0xFF); data[32 + 2 * i + 1] = (unsigned char)(i >> 8);
        data[32 + 131072 + 2 * i] = (unsigned char)(i & 0xFF); data[32 + 131072 + 2 * i + 1] = (unsigned char)(i >> 8);
    }
    const char* header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[16,32]},"
                         "\"hall\":{\"dtype\":\"F16\",\"shape\":[256,256],\"data_offsets\":[32,131104]},"
                         "\"ball\":{\"dtype\":\"BF16\",\"shape\":[65536],\"data_offsets\":[131104,262176]}}";
    write_raw_st(path, header, data, 32 + 262144);
    free(data);

    StFile st;
    int rc = st_open(&st, path, err, sizeof(err));
    check(tc, "open hand-written F16/BF16 file", rc == 0 && st.n == 4, err);
    if (rc != 0) { return; }
    float got[8];
    rc = st_read_f32(&st, st_find(&st, "h"), got, err, sizeof(err));
    int ok = rc == 0;
    for (int i = 0; i < 8 && ok; i++) { ok = same_float(got[i], f16_want[i]); }
    snprintf(detail, sizeof(detail), "got %g %g %g %g %g %g %g %g", got[0], got[1], got[2], got[3], got[4], got[5], got[6], got[7]);
    check(tc, "F16: 1, -2.5, 2^-24, 1023*2^-24, 65504, inf, nan, -0", ok, detail);
    rc = st_read_f32(&st, st_find(&st, "b"), got, err, sizeof(err));
    ok = rc == 0;
    for (int i = 0; i < 8 && ok; i++) { ok = same_float(got[i], bf16_want[i]); }
    snprintf(detail, sizeof(detail), "got %g %g %g %g %g %g %g %g", got[0], got[1], got[2], got[3], got[4], got[5], got[6], got[7]);
    check(tc, "BF16: 1, -2.5, 2^-133, 127*2^-133, max finite, inf, nan, -0", ok, detail);

    float* all = (float*)malloc(65536 * sizeof(float));
    int bad = -1;
    rc = st_read_f32(&st, st_find(&st, "hall"), all, err, sizeof(err));
    for (int i = 0; i < 65536 && rc == 0 && bad < 0; i++) { if (!same_float(all[i], ref_f16((uint16_t)i))) { bad = i; } }
    snprintf(detail, sizeof(detail), "first mismatch at bits %d", bad);
    check(tc, "F16: all 65536 bit patterns match the reference", rc == 0 && bad < 0, bad >= 0 ? detail : err);
    bad = -1;
    rc = st_read_f32(&st, st_find(&st, "ball"), all, err, sizeof(err));
    for (int i = 0; i < 65536 && rc == 0 && bad < 0; i++) { if (!same_float(all[i], ref_bf16((uint16_t)i))) { bad = i; } }
    snprintf(detail, sizeof(detail), "first mismatch at bits %d", bad);
    check(tc, "BF16: all 65536 bit patterns match the reference", rc == 0 && bad < 0, bad >= 0 ? detail : err);
    free(all);
    st_close(&st);
}

static void put_i64(unsigned char* b, int64_t x) { st_put_le64(b, (uint64_t)x); }

static void test_int_values(TestCtx* tc) {
    char path[512], err[1024] = "";
    tmp_path(tc, path, sizeof(path), "ints.safetensors");
    unsigned char data[88];
    const int64_t ok64[4] = { 0, -1, INT32_MAX, INT32_MIN };
    for (int i = 0; i < 4; i++) { put_i64(data + 8 * i, ok64[i]); }
    put_i64(data + 32, (int64_t)INT32_MAX + 1);
    put_i64(data + 40, (int64_t)INT32_MIN - 1);
    const int32_t i32[3] = { 7, -7, 32127 };
    for (int i = 0; i < 3; i++) { uint32_t u = (uint32_t)i32[i]; for (int k = 0; k < 4; k++) { data[48 + 4 * i + k] = (unsigned char)(u >> (8 * k)); } }
    memset(data + 60, 0, 28); // F32 zeros [60,64) + F64 [64,72) + U8 [72,88)
    const char* header =
        "{\"ok\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[0,32]},"
        "\"hi\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[32,40]},"
        "\"lo\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[40,48]},"
        "\"i32\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[48,60]},"
        "\"f\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[60,64]},"
        "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[64,72]},"
        "\"u\":{\"dtype\":\"U8\",\"shape\":[4,4],\"data_offsets\":[72,88]}}";
    write_raw_st(path, header, data, sizeof(data));
    StFile st;
    int rc = st_open(&st, path, err, sizeof(err));
    check(tc, "open I64/I32/F64/U8 file (F64, U8 listed as ST_OTHER)", rc == 0 && st.n == 7 &&
          st_find(&st, "d")->dtype == ST_OTHER && st_find(&st, "u")->numel == 16 && st_find(&st, "f")->ndim == 0 &&
          st_find(&st, "f")->numel == 1, err);
    if (rc != 0) { return; }
    int32_t got[4];
    float fgot[16];
    rc = st_read_i32(&st, st_find(&st, "ok"), got, err, sizeof(err));
    check(tc, "I64 -> I32: 0, -1, INT32_MAX, INT32_MIN", rc == 0 && got[0] == 0 && got[1] == -1 &&
          got[2] == INT32_MAX && got[3] == INT32_MIN, err);
    rc = st_read_i32(&st, st_find(&st, "i32"), got, err, sizeof(err));
    check(tc, "I32 read", rc == 0 && got[0] == 7 && got[1] == -7 && got[2] == 32127, err);
    rc = st_read_i32(&st, st_find(&st, "hi"), got, err, sizeof(err));
    check(tc, "I64 2^31 refused as int32", rc != 0 && strstr(err, path) && strstr(err, "'hi'"), err);
    rc = st_read_i32(&st, st_find(&st, "lo"), got, err, sizeof(err));
    check(tc, "I64 -2^31-1 refused as int32", rc != 0 && strstr(err, path) && strstr(err, "'lo'"), err);
    rc = st_read_i32(&st, st_find(&st, "f"), got, err, sizeof(err));
    check(tc, "st_read_i32 refuses F32", rc != 0 && strstr(err, path) != NULL, err);
    rc = st_read_f32(&st, st_find(&st, "ok"), fgot, err, sizeof(err));
    check(tc, "st_read_f32 refuses I64", rc != 0 && strstr(err, path) != NULL, err);
    rc = st_read_f32(&st, st_find(&st, "d"), fgot, err, sizeof(err));
    check(tc, "st_read_f32 refuses F64", rc != 0 && strstr(err, path) != NULL, err);
    rc = st_read_i32(&st, st_find(&st, "u"), got, err, sizeof(err));
    check(tc, "st_read_i32 refuses U8", rc != 0 && strstr(err, path) != NULL, err);
    st_close(&st);
}

// ----------------------------------------------------------------------------
// safetensors: Hugging Face directories (single file, sharded with an index)

static void make_dir(const TestCtx* tc, char* out, size_t n, const char* name) {
    tmp_path(tc, out, n, name);
    mkdir(out, 0700);
}

static void write_shards(const char* dir) {
    char path[600], err[1024];
    float a[2] = { 1, 2 }, b[3] = { 3, 4, 5 }, c[1] = { 6 };
    StWriteTensor s1[2] = { { "a", 1, {2}, a }, { "b", 1, {3}, b } };
    StWriteTensor s2[1] = { { "c", 2, {1, 1}, c } };
    snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", dir);
    st_write_f32(path, s1, 2, NULL, 0, err, sizeof(err));
    snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", dir);
    st_write_f32(path, s2, 1, NULL, 0, err, sizeof(err));
}

static void write_index(const char* dir, const char* weight_map) {
    char path[600], text[1024];
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    snprintf(text, sizeof(text), "{\"metadata\": {\"total_size\": 24}, \"weight_map\": %s}\n", weight_map);
    write_bytes(path, text, strlen(text));
}

static void test_sharded(TestCtx* tc) {
    char dir[512], err[1024] = "";
    const char* map2 = "{\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
                       " \"c\": \"model-00002-of-00002.safetensors\"}";
    make_dir(tc, dir, sizeof(dir), "sharded");
    write_shards(dir);
    write_index(dir, map2);
    StSet set;
    StFile* file = NULL;
    int rc = stset_open_dir(&set, dir, err, sizeof(err));
    check(tc, "stset_open_dir: index + 2 shards", rc == 0 && set.nfiles == 2, err);
    if (rc == 0) {
        const StTensor* c = stset_find(&set, "c", &file);
        float v = 0;
        int ok = c != NULL && file == &set.files[1] && st_read_f32(file, c, &v, err, sizeof(err)) == 0 && v == 6.0f;
        const StTensor* a = stset_find(&set, "a", &file);
        ok = ok && a != NULL && file == &set.files[0] && stset_find(&set, "zz", &file) == NULL && file == NULL;
        check(tc, "stset_find locates tensors in the right shard", ok, err);
        stset_close(&set);
    }

    make_dir(tc, dir, sizeof(dir), "missing_shard");
    write_shards(dir);
    write_index(dir, "{\"a\": \"model-00001-of-00002.safetensors\", \"z\": \"model-00003-of-00003.safetensors\"}");
    rc = stset_open_dir(&set, dir, err, sizeof(err));
    check(tc, "sharded: missing shard file is an error naming it", rc != 0 &&
          strstr(err, "model-00003-of-00003.safetensors") != NULL && strstr(err, dir) != NULL, err);

    make_dir(tc, dir, sizeof(dir), "missing_tensor");
    write_shards(dir);
    write_index(dir, "{\"a\": \"model-00001-of-00002.safetensors\", \"d\": \"model-00001-of-00002.safetensors\"}");
    rc = stset_open_dir(&set, dir, err, sizeof(err));
    check(tc, "sharded: tensor missing from its shard is an error", rc != 0 && strstr(err, "'d'") != NULL &&
          strstr(err, dir) != NULL, err);

    make_dir(tc, dir, sizeof(dir), "escape");
    write_shards(dir);
    write_index(dir, "{\"a\": \"../sharded/model-00001-of-00002.safetensors\"}");
    rc = stset_open_dir(&set, dir, err, sizeof(err));
    check(tc, "sharded: shard name with a '/' is refused", rc != 0 && strstr(err, dir) != NULL, err);

    make_dir(tc, dir, sizeof(dir), "single");
    char path[600];
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    float x[2] = { 9, 8 };
    StWriteTensor one[1] = { { "shared.weight", 2, {1, 2}, x } };
    st_write_f32(path, one, 1, NULL, 0, err, sizeof(err));
    err[0] = '\0';
    rc = stset_open_dir(&set, dir, err, sizeof(err));
    check(tc, "stset_open_dir: single model.safetensors", rc == 0 && set.nfiles == 1 &&
          stset_find(&set, "shared.weight", NULL) != NULL, err);
    stset_close(&set);

    make_dir(tc, dir, sizeof(dir), "empty");
    rc = stset_open_dir(&set, dir, err, sizeof(err));
    check(tc, "stset_open_dir: empty directory is an error naming it", rc != 0 && strstr(err, dir) != NULL, err);
}

// ----------------------------------------------------------------------------
// safetensors: malformed files, one per validation rule

static void expect_open_fail(TestCtx* tc, const char* name, const char* path, const char* must_contain) {
    StFile st;
    char err[1024] = "", line[128];
    int rc = st_open(&st, path, err, sizeof(err));
    snprintf(line, sizeof(line), "malformed: %s", name);
    check(tc, line, rc != 0 && strstr(err, path) != NULL && strstr(err, must_contain) != NULL && st.f == NULL, err);
    st_close(&st); // harmless on a failed open
}

// a file with the given header and `datalen` zero bytes of data
static void malformed_header(TestCtx* tc, const char* name, const char* header, size_t datalen, const char* must_contain) {
    char path[512];
    unsigned char zeros[64] = { 0 };
    tmp_path(tc, path, sizeof(path), "malformed.safetensors");
    write_raw_st(path, header, zeros, datalen);
    expect_open_fail(tc, name, path, must_contain);
}

static void test_malformed(TestCtx* tc) {
    char path[512];
    unsigned char b[64] = { 0 };
    tmp_path(tc, path, sizeof(path), "short.safetensors");
    write_bytes(path, b, 5);
    expect_open_fail(tc, "file shorter than 8 bytes", path, "too short");
    tmp_path(tc, path, sizeof(path), "biglen.safetensors");
    st_put_le64(b, 1000);
    memcpy(b + 8, "{}", 2);
    write_bytes(path, b, 10);
    expect_open_fail(tc, "header length larger than the file", path, "larger than");
    st_put_le64(b, 200000000);
    write_bytes(path, b, 10);
    expect_open_fail(tc, "header length over 100 MB", path, "100 MB");
    st_put_le64(b, UINT64_MAX);
    write_bytes(path, b, 10);
    expect_open_fail(tc, "header length 2^64-1", path, "100 MB");
    tmp_path(tc, path, sizeof(path), "does_not_exist.safetensors");
    expect_open_fail(tc, "missing file", path, "cannot open");

    const char* T = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char h[512];
    malformed_header(tc, "bad JSON", "{\"t\":{\"dtype\":\"F32\",", 0, "not valid JSON");
    malformed_header(tc, "header not an object", "[1,2]", 0, "not a JSON object");
    malformed_header(tc, "tensor entry not an object", "{\"t\":5}", 0, "not an object");
    malformed_header(tc, "unknown dtype", "{\"t\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'Q4'");
    malformed_header(tc, "dtype not a string", "{\"t\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    malformed_header(tc, "missing dtype", "{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    malformed_header(tc, "missing shape", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "shape");
    malformed_header(tc, "shape not an array", "{\"t\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape");
    malformed_header(tc, "negative dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]");
    malformed_header(tc, "fractional dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 10, "shape[0]");
    malformed_header(tc, "string dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "shape[0]");
    malformed_header(tc, "huge dim (1e300)", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, "shape[0]");
    malformed_header(tc, "ndim 9", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "more than 8");
    malformed_header(tc, "numel overflow (2^32 * 2^32 * 2)", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,8]}}", 8, "too many elements");
    malformed_header(tc, "numel * dtype size overflow", "{\"t\":{\"dtype\":\"I64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}}", 8, "too large");
    malformed_header(tc, "missing data_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets");
    malformed_header(tc, "data_offsets of 3 numbers", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "data_offsets");
    malformed_header(tc, "negative offset", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "data_offsets");
    malformed_header(tc, "end < begin", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "< begin");
    malformed_header(tc, "size mismatch (end - begin != numel*4)", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12 bytes");
    malformed_header(tc, "offsets past EOF", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the end");
    malformed_header(tc, "huge offsets past EOF", "{\"t\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[9007199254740984,9007199254740992]}}", 8, "past the end");
    snprintf(h, sizeof(h), "{%s,%s}", T, T);
    malformed_header(tc, "duplicate tensor name", h, 8, "duplicate key 't'");
    malformed_header(tc, "duplicate key inside a tensor entry", "{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "duplicate key 'dtype'");
    snprintf(h, sizeof(h), "{\"__metadata__\":{\"format\":1},%s}", T);
    malformed_header(tc, "metadata value not a string", h, 8, "not a string");
    snprintf(h, sizeof(h), "{\"__metadata__\":[],%s}", T);
    malformed_header(tc, "metadata not an object", h, 8, "__metadata__");
    snprintf(h, sizeof(h), "{%s} x", T);
    malformed_header(tc, "trailing garbage after the header", h, 8, "trailing");
}

// ----------------------------------------------------------------------------
// fuzz: mutate a valid file (mostly its header) and open + read whatever opens. Must never crash;
// run under -fsanitize=address,undefined. Every rejection must name the file.

static size_t mutate(uint64_t* rng, unsigned char* b, size_t len, size_t cap, size_t header_end) {
    static const char interesting[] = "{}[]\":,-.0123456789eE \\u";
    int ops = 1 + (int)rng_below(rng, 4);
    for (int k = 0; k < ops && len > 0; k++) {
        size_t at = rng_below(rng, 4) != 0 ? rng_below(rng, (uint32_t)header_end) : rng_below(rng, (uint32_t)len);
        if (at >= len) { at = len - 1; }
        if (rng_below(rng, 3) == 0) { // a digit in the header becomes another digit: valid JSON, odd sizes
            while (at + 1 < header_end && at + 1 < len && (b[at] < '0' || b[at] > '9')) { at++; }
            if (b[at] >= '0' && b[at] <= '9') { b[at] = (unsigned char)('0' + rng_below(rng, 10)); }
            continue;
        }
        switch (rng_below(rng, 6)) {
            case 0: b[at] ^= (unsigned char)(1u << rng_below(rng, 8)); break;
            case 1: b[at] = (unsigned char)rng_below(rng, 256); break;
            case 2: b[at] = (unsigned char)interesting[rng_below(rng, sizeof(interesting) - 1)]; break;
            case 3: len = rng_below(rng, (uint32_t)len + 1); break;                      // truncate
            case 4: memmove(b + at, b + at + 1, len - at - 1); len--; break;              // delete a byte
            default:                                                                      // insert a byte
                if (len < cap) { memmove(b + at + 1, b + at, len - at); b[at] = (unsigned char)interesting[rng_below(rng, sizeof(interesting) - 1)]; len++; }
        }
    }
    return len;
}

// open, then read every tensor with both readers; returns 1 if it opened
static int fuzz_one(const char* path, int* unnamed) {
    StFile st;
    char err[1024] = "";
    if (st_open(&st, path, err, sizeof(err)) != 0) {
        if (strstr(err, path) == NULL) { (*unnamed)++; }
        return 0;
    }
    for (int i = 0; i < st.n; i++) {
        const StTensor* t = &st.tensors[i];
        if (t->end > st.file_size || t->begin < 8) { (*unnamed)++; } // an invariant the reader promises
        float* f = (float*)malloc((size_t)t->numel * sizeof(float) + 8);
        st_read_f32(&st, t, f, err, sizeof(err));
        st_read_i32(&st, t, (int32_t*)f, err, sizeof(err));
        free(f);
    }
    st_close(&st);
    return 1;
}

static void test_fuzz(TestCtx* tc) {
    char path[512], detail[256];
    tmp_path(tc, path, sizeof(path), "fuzz_base.safetensors");
    unsigned char data[64];
    for (int i = 0; i < 64; i++) { data[i] = (unsigned char)(i * 37); }
    const char* header =
        "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\\u00e9\"},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[32,40]},"
        "\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[40,56]},"
        "\"j\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[56,60]},"
        "\"u\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[60,64]}}";
    write_raw_st(path, header, data, sizeof(data));
    size_t base_len;
    unsigned char* base = read_bytes(path, &base_len);
    size_t header_end = 8 + strlen(header), cap = base_len + 64;
    unsigned char* buf = (unsigned char*)malloc(cap);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int opened = 0, rejected = 0, unnamed = 0, json_ok = 0;
    tmp_path(tc, path, sizeof(path), "fuzz.safetensors");
    for (int it = 0; it < 2000; it++) {
        memcpy(buf, base, base_len);
        size_t len = mutate(&rng, buf, base_len, cap, header_end);
        write_bytes(path, buf, len);
        if (fuzz_one(path, &unnamed)) { opened++; } else { rejected++; }
        // and the JSON parser alone on the mutated header bytes, from an exact-size buffer
        JsonValue v;
        char err[256];
        size_t hl = len > 8 ? (len - 8 < header_end - 8 ? len - 8 : header_end - 8) : 0;
        if (parse_exact((const char*)buf + 8, hl, &v, err, sizeof(err)) == 0) { json_ok++; }
        json_free(&v);
    }
    snprintf(detail, sizeof(detail), "%d opened, %d rejected, %d json parsed, %d messages without the path",
             opened, rejected, json_ok, unnamed);
    check(tc, "fuzz: 2000 mutated files, no crash, every error names the file", unnamed == 0 && opened > 0 &&
          rejected > 0, detail);
    free(buf);
    free(base);
}

// ----------------------------------------------------------------------------

int main(void) {
    TestCtx tc = { 0, 0, "/tmp/t5c_test_io_XXXXXX" };
    if (mkdtemp(tc.dir) == NULL) { perror("mkdtemp"); return 1; }
    test_json_strings(&tc);
    test_json_numbers(&tc);
    test_json_structure(&tc);
    test_json_file(&tc);
    test_roundtrip(&tc);
    test_writer_refusals(&tc);
    test_half_values(&tc);
    test_int_values(&tc);
    test_sharded(&tc);
    test_malformed(&tc);
    test_fuzz(&tc);
    rm_tree(tc.dir);
    printf("%d passed, %d failed\n", tc.passed, tc.failed);
    return tc.failed == 0 ? 0 : 1;
}
