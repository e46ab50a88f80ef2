/*
tokenizer/test_spm.c — tests of tokenizer/spm.h that need no Python: the real T5 model's ids and
special tokens, hand-made malformed models (each refused with the expected message), and a
mutation loop (the real model truncated at many offsets and with flipped bytes) that must only ever
load or refuse, never crash. One line per check; the exit code is the verdict.

    make build/test_spm && ./build/test_spm --model ../shared/data/t5/spiece.model
    make asan   (runs it under AddressSanitizer + UndefinedBehaviorSanitizer)
*/
#include <unistd.h>  // mkdtemp is in stdlib.h; rmdir, unlink
#include "spm.h"     // defines: SpmModel, spm_load, spm_load_bytes, spm_encode, spm_decode, spm_piece_to_id, ...

typedef struct {
    int passed, failed;
} TestCtx;

static void check(TestCtx* tc, const char* name, int ok, const char* detail) {
    printf("%-62s ... %s", name, ok ? "OK" : "FAIL");
    if (detail != NULL && detail[0] != '\0') { printf("  (%s)", detail); }
    printf("\n");
    if (ok) { tc->passed++; } else { tc->failed++; }
}

static uint8_t* read_file(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) { return NULL; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t* b = n >= 0 ? (uint8_t*)malloc((size_t)n + 1) : NULL;
    if (b != NULL && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

// ----------------------------------------------------------------------------
// the real model: ids, pieces, special tokens

static int encode_equals(const SpmModel* m, SpmEncoding* e, const char* text, const int* want, size_t n_want, char* detail, size_t dlen) {
    char err[256];
    if (spm_encode(m, text, strlen(text), e, err, sizeof(err)) != 0) {
        snprintf(detail, dlen, "%s", err);
        return 0;
    }
    int ok = e->n == n_want;
    for (size_t i = 0; ok && i < n_want; i++) { ok = e->ids[i] == want[i]; }
    snprintf(detail, dlen, "%zu ids, first %d", e->n, e->n > 0 ? e->ids[0] : -1);
    return ok;
}

static int decode_equals(const SpmModel* m, const int* ids, size_t n, SpmSpecial mode, const char* want, char* detail, size_t dlen) {
    char err[256];
    size_t len = 0;
    char* text = spm_decode(m, ids, n, mode, &len, err, sizeof(err));
    int ok = text != NULL && len == strlen(want) && strcmp(text, want) == 0;
    snprintf(detail, dlen, "'%s'", text != NULL ? text : err);
    free(text);
    return ok;
}

static void test_real_model(TestCtx* tc, const SpmModel* m) {
    char d[256];
    snprintf(d, sizeof(d), "%d pieces, vocab %d, unk %d eos %d pad %d bos %d, %s", m->n_pieces, m->vocab_size, m->unk_id,
             m->eos_id, m->pad_id, m->bos_id, m->norm.name);
    check(tc, "T5 model: sizes and special ids", m->n_pieces == 32000 && m->vocab_size == 32100 && m->unk_id == 2 &&
          m->eos_id == 1 && m->pad_id == 0 && m->bos_id == -1 && strcmp(m->norm.name, "nmt_nfkc") == 0, d);
    check(tc, "T5 model: normalizer flags, map present, no denormalizer", m->norm.add_dummy_prefix && m->norm.remove_extra_whitespaces &&
          m->norm.escape_whitespaces && m->norm.units != NULL && !m->has_denorm && !m->byte_fallback, "");

    SpmEncoding e;
    memset(&e, 0, sizeof(e));
    const int hello[] = {8774, 296};
    const int prompt[] = {12198, 1635, 1737, 8, 826, 3634, 5};
    const int unk_run[] = {3, 9, 2, 115};  // "a😀😀b": the two unknown characters merge into one <unk>
    check(tc, "encode 'Hello world' -> 8774 296", encode_equals(m, &e, "Hello world", hello, 2, d, sizeof(d)), d);
    check(tc, "encode the T5 prompt sentence", encode_equals(m, &e, "Summarize the following conversation.", prompt, 7, d, sizeof(d)), d);
    check(tc, "encode '  Hello \\n world  ' (whitespace collapsed)", encode_equals(m, &e, "  Hello \n world  ", hello, 2, d, sizeof(d)), d);
    check(tc, "encode '' and '   ' -> no ids", encode_equals(m, &e, "", NULL, 0, d, sizeof(d)) && encode_equals(m, &e, "   ", NULL, 0, d, sizeof(d)), d);
    check(tc, "encode 'a\\xF0\\x9F\\x98\\x80\\xF0\\x9F\\x98\\x80b': one merged <unk>", encode_equals(m, &e, "a\xF0\x9F\x98\x80\xF0\x9F\x98\x80" "b", unk_run, 4, d, sizeof(d)), d);
    size_t plen = 0;
    const char* p = e.n == 4 ? spm_encoding_piece(m, &e, 2, &plen) : "";
    check(tc, "the merged <unk> shows its text as its piece", plen == 8 && memcmp(p, "\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 8) == 0, "");
    spm_encoding_free(&e);

    check(tc, "id_to_piece / piece_to_id: 8774 <-> '\xe2\x96\x81Hello'", strcmp(spm_id_to_piece(m, 8774), "\xe2\x96\x81Hello") == 0 &&
          spm_piece_to_id(m, "\xe2\x96\x81Hello") == 8774, "");
    check(tc, "sentinels: 32099 <-> <extra_id_0>, 32000 <-> <extra_id_99>", strcmp(spm_id_to_piece(m, 32099), "<extra_id_0>") == 0 &&
          spm_piece_to_id(m, "<extra_id_99>") == 32000 && spm_piece_to_id(m, "</s>") == 1, "");
    check(tc, "unknown piece -> unk id; ids outside the vocabulary -> NULL", spm_piece_to_id(m, "no such piece") == 2 &&
          spm_id_to_piece(m, -1) == NULL && spm_id_to_piece(m, 32100) == NULL, "");

    const int specials[] = {0, 8774, 296, 1, 0};
    const int sentinels[] = {32099, 8774, 32098, 296, 2};
    const int leading_ws[] = {3, 3, 8774};
    check(tc, "decode keeping specials: '<pad> Hello world</s><pad>'", decode_equals(m, specials, 5, SPM_KEEP_SPECIAL, "<pad> Hello world</s><pad>", d, sizeof(d)), d);
    check(tc, "decode skipping specials: 'Hello world'", decode_equals(m, specials, 5, SPM_SKIP_SPECIAL, "Hello world", d, sizeof(d)), d);
    check(tc, "decode sentinels and <unk>, kept", decode_equals(m, sentinels, 5, SPM_KEEP_SPECIAL, "<extra_id_0> Hello<extra_id_1> world<unk>", d, sizeof(d)), d);
    check(tc, "decode sentinels and <unk>, skipped", decode_equals(m, sentinels, 5, SPM_SKIP_SPECIAL, "Hello world \xe2\x81\x87 ", d, sizeof(d)), d);
    check(tc, "decode drops every leading space piece (sentencepiece)", decode_equals(m, leading_ws, 3, SPM_SKIP_SPECIAL, "Hello", d, sizeof(d)), d);
    check(tc, "decode keeping specials drops the first token's space only (HF)", decode_equals(m, leading_ws, 3, SPM_KEEP_SPECIAL, "  Hello", d, sizeof(d)), d);
    const int only_special[] = {1, 0};
    int empty = decode_equals(m, NULL, 0, SPM_SKIP_SPECIAL, "", d, sizeof(d)) && decode_equals(m, NULL, 0, SPM_KEEP_SPECIAL, "", d, sizeof(d));
    check(tc, "decode of no ids: '' (a string, not the buffer's unwritten bytes)", empty, d);
    check(tc, "decode of </s><pad>, specials skipped: ''", decode_equals(m, only_special, 2, SPM_SKIP_SPECIAL, "", d, sizeof(d)), d);
    const int bad[] = {8774, 32100};
    char err[256] = "";
    char* t = spm_decode(m, bad, 2, SPM_SKIP_SPECIAL, NULL, err, sizeof(err));
    check(tc, "decode refuses id 32100", t == NULL && strstr(err, "32100") != NULL, err);
    free(t);
}

// ----------------------------------------------------------------------------
// hand-made malformed models: a little protobuf writer

typedef struct {
    uint8_t b[4096];
    size_t n;
} Pb;

static void pb_byte(Pb* p, uint8_t v) {
    if (p->n < sizeof(p->b)) { p->b[p->n++] = v; }
}
static void pb_varint(Pb* p, uint64_t v) {
    do {
        pb_byte(p, (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0)));
        v >>= 7;
    } while (v != 0);
}
static void pb_bytes(Pb* p, uint32_t field, const void* s, size_t n) {
    pb_varint(p, (uint64_t)field << 3 | SPM_WIRE_LEN);
    pb_varint(p, n);
    for (size_t i = 0; i < n; i++) { pb_byte(p, ((const uint8_t*)s)[i]); }
}
static void pb_uint(Pb* p, uint32_t field, uint64_t v) {
    pb_varint(p, (uint64_t)field << 3 | SPM_WIRE_VARINT);
    pb_varint(p, v);
}
// ModelProto.pieces entry (score 0)
static void pb_piece(Pb* p, const char* s, int type) {
    Pb sp = {{0}, 0};
    pb_bytes(&sp, 1, s, strlen(s));
    pb_uint(&sp, 3, (uint64_t)type);
    pb_bytes(p, 1, sp.b, sp.n);
}
// the smallest valid model: <unk>, two normal pieces
static void pb_minimal(Pb* p) {
    p->n = 0;
    pb_piece(p, "<unk>", SPM_UNKNOWN);
    pb_piece(p, "\xe2\x96\x81" "a", SPM_NORMAL);
    pb_piece(p, "b", SPM_NORMAL);
}
// a trainer_spec holding one varint field (protobuf merges it into the model's trainer_spec)
static void pb_trainer_uint(Pb* p, uint32_t field, uint64_t v) {
    Pb ts = {{0}, 0};
    pb_uint(&ts, field, v);
    pb_bytes(p, 2, ts.b, ts.n);
}
// normalizer_spec with this precompiled_charsmap
static void pb_charsmap(Pb* p, const uint8_t* map, size_t n) {
    Pb ns = {{0}, 0};
    pb_bytes(&ns, 2, map, n);
    pb_bytes(p, 3, ns.b, ns.n);
}

static void expect_refused(TestCtx* tc, const char* name, const Pb* p, const char* want) {
    SpmModel m;
    char err[512] = "";
    int rc = spm_load_bytes(&m, p->b, p->n, "crafted.model", err, sizeof(err));
    check(tc, name, rc != 0 && strstr(err, want) != NULL && strstr(err, "crafted.model") != NULL, err);
    if (rc == 0) { spm_free(&m); }
}

static void test_malformed(TestCtx* tc) {
    Pb p;
    pb_minimal(&p);
    SpmModel m;
    char err[512] = "";
    int rc = spm_load_bytes(&m, p.b, p.n, "crafted.model", err, sizeof(err));
    check(tc, "a minimal hand-made model loads", rc == 0 && m.n_pieces == 3 && m.norm.units == NULL, err);
    if (rc == 0) { spm_free(&m); }

    Pb q = {{0}, 0};
    expect_refused(tc, "refused: empty file", &q, "no pieces");
    pb_uint(&q, 2, 1);  // trainer_spec as a varint
    expect_refused(tc, "refused: known field with the wrong wire type", &q, "wrong wire type");
    q.n = 0;
    pb_trainer_uint(&q, 3, 1);  // model_type UNIGRAM, and no pieces
    expect_refused(tc, "refused: zero pieces", &q, "no pieces");
    q = p;
    q.n -= 1;
    expect_refused(tc, "refused: truncated inside a piece", &q, "truncated");
    q = p;
    pb_piece(&q, "c\xff", SPM_NORMAL);  // sentencepiece loads it, then decodes to bytes that are not text
    expect_refused(tc, "refused: a piece that is not UTF-8", &q, "piece 3 is not valid UTF-8");
    q.n = 0;
    for (int i = 0; i < 11; i++) { pb_byte(&q, 0xFF); }
    expect_refused(tc, "refused: varint longer than 10 bytes", &q, "bad varint");
    q.n = 0;
    pb_byte(&q, 0x0B);  // field 1, wire type 3 (start group)
    expect_refused(tc, "refused: group wire type", &q, "unsupported wire type");
    q.n = 0;
    pb_byte(&q, 0x0E);  // field 1, wire type 6
    expect_refused(tc, "refused: wire type 6", &q, "invalid wire type");
    q.n = 0;
    pb_byte(&q, 0x02);  // field 0
    expect_refused(tc, "refused: field number 0", &q, "bad field number");

    // the minimal model plus one bad piece
    static const struct { const char* name; const char* piece; int type; const char* want; } extra[] = {
        {"refused: a piece defined twice", "b", SPM_NORMAL, "already defined"},
        {"refused: two <unk> pieces", "<unk2>", SPM_UNKNOWN, "two <unk>"},
        {"refused: unknown piece type 9", "c", 9, "unknown type 9"},
        {"refused: empty piece", "", SPM_NORMAL, "is empty"},
        {"refused: byte piece without byte_fallback", "<0x41>", SPM_BYTE, "byte_fallback is false"},
    };
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        q = p;
        pb_piece(&q, extra[i].piece, extra[i].type);
        expect_refused(tc, extra[i].name, &q, extra[i].want);
    }
    q.n = 0;
    pb_piece(&q, "a", SPM_NORMAL);
    expect_refused(tc, "refused: no <unk> piece", &q, "no <unk>");
    q = p;
    pb_trainer_uint(&q, 35, 1);  // byte_fallback
    pb_piece(&q, "<0x41>", SPM_BYTE);
    expect_refused(tc, "refused: byte_fallback without all 256 byte pieces", &q, "missing");
    pb_piece(&q, "<0x4g>", SPM_BYTE);
    expect_refused(tc, "refused: malformed byte piece <0x4g>", &q, "<0xNN>");
    q = p;
    pb_trainer_uint(&q, 3, 2);  // model_type BPE
    expect_refused(tc, "refused: model_type BPE", &q, "not supported");

    // character maps: <u32 trie bytes><units><strings>
    q = p;
    const uint8_t tiny[3] = {4, 0, 0};
    pb_charsmap(&q, tiny, 3);
    expect_refused(tc, "refused: charsmap too short", &q, "too short");
    q = p;
    const uint8_t odd[9] = {3, 0, 0, 0, 0, 0, 0, 0, 0};
    pb_charsmap(&q, odd, 9);
    expect_refused(tc, "refused: charsmap trie size not a multiple of 4", &q, "multiple of 4");
    q = p;
    const uint8_t over[9] = {8, 0, 0, 0, 0, 0, 0, 0, 0};
    pb_charsmap(&q, over, 9);
    expect_refused(tc, "refused: charsmap trie longer than the map", &q, "only 5 follow");
    q = p;
    const uint8_t far_root[9] = {4, 0, 0, 0, 0x00, 0xFC, 0xFF, 0x7F, 0};  // root offset far outside
    pb_charsmap(&q, far_root, 9);
    expect_refused(tc, "refused: charsmap root outside the trie", &q, "inconsistent");
    q = p;
    // root (offset 1) -> unit 1 ^ 'a' = 0x60: label 'a', has a leaf, offset 0x70 -> its value unit is
    // 0x60 ^ 0x70 = 0x10, holding value 0x7FFF, far beyond the 2 bytes of strings
    uint8_t bad_value[4 + 4 * 256 + 2];
    memset(bad_value, 0, sizeof(bad_value));
    bad_value[1] = 4;  // 1024 bytes of trie = 256 units
    uint32_t units[256] = {0};
    units[0] = 1u << 10;                              // root: offset 1
    units[0x60] = 'a' | (1u << 8) | (0x70u << 10);    // label 'a', has leaf, offset 0x70
    units[0x10] = 0x80007FFFu;                        // the value unit: 0x7FFF
    for (int i = 0; i < 256; i++) {
        for (int k = 0; k < 4; k++) { bad_value[4 + 4 * i + k] = (uint8_t)(units[i] >> (8 * k)); }
    }
    bad_value[4 + 1024] = 'x';  // strings "x\0"
    pb_charsmap(&q, bad_value, sizeof(bad_value));
    expect_refused(tc, "refused: charsmap value outside the strings", &q, "outside the 2 bytes");
    q = p;
    bad_value[4 + 1024 + 1] = 'y';  // strings "xy" without a NUL
    pb_charsmap(&q, bad_value, sizeof(bad_value));
    expect_refused(tc, "refused: charsmap strings not NUL-terminated", &q, "NUL");
    q = p;
    bad_value[4 + 1024 + 1] = 0;
    units[0x10] = 0x80000000u;  // value 0 -> "x": the map now says a -> x
    for (int k = 0; k < 4; k++) { bad_value[4 + 4 * 0x10 + k] = (uint8_t)(units[0x10] >> (8 * k)); }
    pb_charsmap(&q, bad_value, sizeof(bad_value));
    rc = spm_load_bytes(&m, q.b, q.n, "crafted.model", err, sizeof(err));
    SpmBuf nb = {NULL, 0, 0};
    int ok = rc == 0 && spm_normalize(&m, "ab", 2, &nb) == 0 && strcmp(nb.data, "\xe2\x96\x81xb") == 0;
    check(tc, "a hand-made charsmap a -> x loads and applies", ok, rc == 0 ? (nb.data ? nb.data : "") : err);
    free(nb.data);
    if (rc == 0) { spm_free(&m); }
}

// ----------------------------------------------------------------------------
// files: missing, a directory

static void test_files(TestCtx* tc) {
    char dir[] = "/tmp/test_spm_XXXXXX";
    SpmModel m;
    char err[512] = "";
    if (mkdtemp(dir) == NULL) {
        check(tc, "mkdtemp", 0, "cannot create a temp dir");
        return;
    }
    int rc = spm_load(&m, dir, err, sizeof(err));
    check(tc, "refused: a directory as the model", rc != 0 && strstr(err, "not a regular file") != NULL && strstr(err, dir) != NULL, err);
    char path[300];
    snprintf(path, sizeof(path), "%s/missing.model", dir);
    rc = spm_load(&m, path, err, sizeof(err));
    check(tc, "refused: a missing file", rc != 0 && strstr(err, "cannot open") != NULL && strstr(err, "missing.model") != NULL, err);
    rmdir(dir);
}

// ----------------------------------------------------------------------------
// mutation loop: every mutant loads or is refused with a message; the loaded ones encode/decode

static uint64_t xorshift(uint64_t* s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

// try one mutant; returns 1 if it loaded, 0 if refused, -1 if refused without a message
static int try_mutant(const uint8_t* data, size_t len, uint64_t* rng) {
    SpmModel m;
    char err[512] = "";
    if (spm_load_bytes(&m, data, len, "mutant.model", err, sizeof(err)) != 0) {
        return strstr(err, "mutant.model") != NULL ? 0 : -1;
    }
    static const char* texts[] = {"Hello world", "  caf\xc3\xa9 \xef\xac\x81 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xff\xfe x  ",
                                  "#Person1#: Hi!\n#Person2#: \tBye.", ""};
    SpmEncoding e;
    memset(&e, 0, sizeof(e));
    for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
        if (spm_encode(&m, texts[t], strlen(texts[t]), &e, err, sizeof(err)) == 0) {
            free(spm_decode(&m, e.ids, e.n, SPM_KEEP_SPECIAL, NULL, err, sizeof(err)));
        }
    }
    int ids[16];
    for (int i = 0; i < 16; i++) { ids[i] = (int)(xorshift(rng) % (uint64_t)m.vocab_size); }
    free(spm_decode(&m, ids, 16, SPM_SKIP_SPECIAL, NULL, err, sizeof(err)));
    spm_encoding_free(&e);
    spm_free(&m);
    return 1;
}

static void test_mutants(TestCtx* tc, const uint8_t* data, size_t len, int n_truncations, int n_flips) {
    uint8_t* buf = (uint8_t*)malloc(len);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int loaded = 0, refused = 0, silent = 0;
    for (int i = 0; i < n_truncations; i++) {  // the first 64 offsets, then spread over the file
        size_t cut = i < 64 ? (size_t)i : (size_t)(xorshift(&rng) % len);
        int r = try_mutant(data, cut, &rng);
        loaded += r == 1;
        refused += r == 0;
        silent += r == -1;
    }
    char d[200];
    snprintf(d, sizeof(d), "%d truncations: %d loaded, %d refused, %d without a message", n_truncations, loaded, refused, silent);
    check(tc, "truncated models: each loads or is refused with a message", silent == 0 && refused > 0, d);
    loaded = refused = silent = 0;
    for (int i = 0; i < n_flips; i++) {  // 1..4 random bytes changed, half of them in the first 64 KiB
        memcpy(buf, data, len);
        int k = 1 + (int)(xorshift(&rng) % 4);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)(xorshift(&rng) % (i % 2 ? len : (len < 65536 ? len : 65536)));
            buf[at] ^= (uint8_t)(1 + xorshift(&rng) % 255);
        }
        int r = try_mutant(buf, len, &rng);
        loaded += r == 1;
        refused += r == 0;
        silent += r == -1;
    }
    snprintf(d, sizeof(d), "%d mutants: %d loaded, %d refused, %d without a message", n_flips, loaded, refused, silent);
    check(tc, "byte-flipped models: each loads (and encodes) or is refused", silent == 0 && refused > 0 && loaded > 0, d);
    free(buf);
}

// random byte strings (valid UTF-8 pieces mixed with arbitrary bytes, short and 100 kB long):
// encode must succeed with every id in range and every span inside the normalized text, and
// decode must take the ids back; returns the number of bad results
static int fuzz_inputs(const SpmModel* m, uint64_t* rng, int n_texts, char* detail, size_t dlen) {
    static const char* atoms[] = {"a", "b", " ", "  ", "\t", "\n", "\r", "\xc3\xa9", "e\xcc\x81", "\xef\xac\x81",
                                  "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "\xe2\x96\x81", "#", "Hello", "\xff", "\x80", "\xed\xa0\x80"};
    size_t n_atoms = sizeof(atoms) / sizeof(atoms[0]);
    SpmBuf text = {NULL, 0, 0};
    SpmEncoding e;
    memset(&e, 0, sizeof(e));
    char err[256];
    int bad = 0;
    size_t tokens = 0;
    for (int t = 0; t < n_texts; t++) {
        size_t n = t < 3 ? 100000 : (size_t)(xorshift(rng) % 300);
        text.len = 0;
        while (text.len < n) {
            uint64_t r = xorshift(rng);
            if (r % 4 == 0) {
                uint8_t byte = (uint8_t)(r >> 8);
                spm_buf_append(&text, &byte, 1);
            } else {
                const char* a = atoms[(r >> 8) % n_atoms];
                spm_buf_append(&text, a, strlen(a));
            }
        }
        if (spm_encode(m, text.data, text.len, &e, err, sizeof(err)) != 0) {
            bad++;
            continue;
        }
        for (size_t i = 0; i < e.n; i++) {
            bad += e.ids[i] < 0 || e.ids[i] >= m->n_pieces || (size_t)e.span_start[i] + e.span_len[i] > e.normalized_len;
        }
        tokens += e.n;
        char* back = spm_decode(m, e.ids, e.n, SPM_SKIP_SPECIAL, NULL, err, sizeof(err));
        bad += back == NULL;
        free(back);
    }
    snprintf(detail, dlen, "%d texts, %zu tokens, %d bad", n_texts, tokens, bad);
    free(text.data);
    spm_encoding_free(&e);
    return bad;
}

// the real model plus 256 byte pieces and byte_fallback: unknown characters become their bytes,
// and decoding puts the bytes back (invalid sequences as U+FFFD, as sentencepiece)
static void test_byte_fallback(TestCtx* tc, const uint8_t* data, size_t len, uint64_t* rng) {
    Pb extra = {{0}, 0};
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof(piece), "<0x%02X>", b);
        pb_piece(&extra, piece, SPM_BYTE);
    }
    pb_trainer_uint(&extra, 35, 1);
    uint8_t* buf = (uint8_t*)malloc(len + extra.n);
    memcpy(buf, data, len);
    memcpy(buf + len, extra.b, extra.n);
    SpmModel m;
    char err[512] = "", d[200] = "";
    int rc = spm_load_bytes(&m, buf, len + extra.n, "byte_fallback.model", err, sizeof(err));
    check(tc, "byte_fallback model (T5 + 256 byte pieces) loads", rc == 0 && m.byte_fallback && m.byte_id[0xF0] == 32000 + 0xF0, err);
    free(buf);
    if (rc != 0) { return; }
    SpmEncoding e;
    memset(&e, 0, sizeof(e));
    const char* text = "a\xf0\x9f\x98\x80" "b";  // "a😀b": the emoji becomes <0xF0> <0x9F> <0x98> <0x80>
    const int want[] = {3, 9, 32000 + 0xF0, 32000 + 0x9F, 32000 + 0x98, 32000 + 0x80, 115};
    check(tc, "byte_fallback: an unknown character becomes its UTF-8 bytes", encode_equals(&m, &e, text, want, 7, d, sizeof(d)), d);
    const int ids[] = {32000 + 0xF0, 32000 + 0x9F, 8774, 32000 + 0xC3, 32000 + 0xA9};
    check(tc, "byte_fallback: decode bytes, a cut sequence gives U+FFFD", decode_equals(&m, ids, 5, SPM_SKIP_SPECIAL,
          "\xef\xbf\xbd\xef\xbf\xbd Hello\xc3\xa9", d, sizeof(d)), d);
    int bad = fuzz_inputs(&m, rng, 500, d, sizeof(d));
    check(tc, "byte_fallback: random byte strings encode and decode", bad == 0, d);
    spm_encoding_free(&e);
    spm_free(&m);
}

int main(int argc, char** argv) {
    const char* path = "../shared/data/t5/spiece.model";
    int n_trunc = 200, n_flips = 300;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) { path = argv[++i]; }
        else if (strcmp(argv[i], "--mutants") == 0 && i + 1 < argc) { n_trunc = n_flips = atoi(argv[++i]); }
        else {
            fprintf(stderr, "usage: test_spm [--model PATH (default %s)] [--mutants N (default 200 truncations, 300 flips)]\n", path);
            return 2;
        }
    }
    TestCtx tc = {0, 0};
    size_t len = 0;
    uint8_t* data = read_file(path, &len);
    SpmModel m;
    char err[512] = "";
    int rc = data != NULL ? spm_load_bytes(&m, data, len, path, err, sizeof(err)) : -1;
    check(&tc, "load the T5 model", rc == 0, rc == 0 ? path : (data ? err : "cannot read the file"));
    if (rc == 0) {
        test_real_model(&tc, &m);
        uint64_t rng = 42;
        char d[200];
        int bad = fuzz_inputs(&m, &rng, 1500, d, sizeof(d));
        check(&tc, "random byte strings (3 of 100 kB): encode, ids in range, decode", bad == 0, d);
        spm_free(&m);
        test_byte_fallback(&tc, data, len, &rng);
        test_mutants(&tc, data, len, n_trunc, n_flips);
    }
    test_malformed(&tc);
    test_files(&tc);
    free(data);
    printf("%s: %d passed, %d failed\n", tc.failed ? "FAIL" : "OK", tc.passed, tc.failed);
    return tc.failed ? 1 : 0;
}
