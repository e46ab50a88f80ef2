/*
tokenizer/spm.h — SentencePiece (unigram) tokenizer for T5 / FLAN-T5, header-only C, no global state.

defines: SpmModel, SpmPieceType, SpmSpecial, SpmEncoding, SpmBuf, spm_load, spm_load_bytes, spm_free,
         spm_encode, spm_encoding_free, spm_encoding_piece, spm_decode, spm_piece_to_id,
         spm_id_to_piece, spm_normalize, spm_buf_append, SPM_T5_EXTRA_IDS

Use:  SpmModel m; char err[256];
      if (spm_load(&m, "../shared/data/t5/spiece.model", err, sizeof(err)) != 0) { fail(err); }
      SpmEncoding e = {0};  spm_encode(&m, text, strlen(text), &e, err, sizeof(err));  // e.ids, e.n
      char* s = spm_decode(&m, e.ids, e.n, SPM_SKIP_SPECIAL, NULL, err, sizeof(err));   // free(s)
      spm_encoding_free(&e); spm_free(&m);

What it reads: T5's `spiece.model`, a serialized protobuf ModelProto (sentencepiece_model.proto):
  1 pieces (repeated SentencePiece: 1 piece, 2 score (float), 3 type), 2 trainer_spec,
  3 normalizer_spec (1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
  5 escape_whitespaces), 5 denormalizer_spec. Unknown fields are skipped; a field met twice follows
  protobuf's rules (scalars: the last wins; messages: merged), so a file with appended fields reads
  as sentencepiece reads it. Everything is copied out of the file bytes: the model owns its memory.

Encoding is sentencepiece's, step by step (sentencepiece_processor.cc, normalizer.cc, unigram_model.cc):
  1. normalize: at each position, the longest user-defined piece that prefixes the raw input is kept
     as is; otherwise the longest match in the precompiled character map (a Darts double-array trie
     followed by NUL-terminated replacement strings; T5 carries nmt_nfkc this way) is replaced;
     otherwise one UTF-8 character is copied, and a byte that does not start a valid UTF-8 character
     becomes U+FFFD (one byte consumed). Around that: leading spaces dropped, runs of spaces
     collapsed, trailing spaces dropped (remove_extra_whitespaces), one space prepended
     (add_dummy_prefix), spaces written as U+2581 "▁" (escape_whitespaces).
  2. unigram Viterbi over the normalized bytes, walking one character at a time (the character's
     length comes from its first byte, as sentencepiece's OneCharLen): every NORMAL piece that
     starts there scores its log-probability, a USER_DEFINED piece scores length*max_score - 0.1,
     UNUSED pieces are skipped, and a character that no single piece covers gets <unk> with score
     min_score - 10. Sums and comparisons are in float and a later candidate must score strictly
     more, so exact ties ("m"+"mm" vs "mm"+"m") break as in sentencepiece (checked: comparing in
     double instead gave 36 differences on DialogSum).
  3. consecutive <unk> tokens merge into one (one id); with byte_fallback an <unk> becomes the
     <0xNN> pieces of its UTF-8 bytes instead.
  T5's sentinels are not in spiece.model and are never produced by encoding (sentencepiece would
  not either; Hugging Face's tokenizer splits "<extra_id_N>" / "</s>" text out first, this does not).

Ids: [0, n_pieces) are the file's pieces; [n_pieces, vocab_size) are Hugging Face's T5 sentinels
  <extra_id_99> .. <extra_id_0> (id = n_pieces + 99 - N for SPM_T5_EXTRA_IDS = 100), so T5's
  vocab_size is 32100 (its embedding has 32128 rows, the last 28 unused).

Decoding (spm_decode):
  SPM_SKIP_SPECIAL is sentencepiece's DecodeIds exactly: control pieces (<pad>, </s>) are dropped,
  <unk> becomes unk_surface (" ⁇ " for T5), runs of <0xNN> byte pieces become their bytes (a byte
  that is not valid UTF-8 becomes U+FFFD), "▁" becomes a space, and while nothing has been written
  yet each piece loses one leading "▁" (only the first piece if remove_extra_whitespaces is off);
  then the denormalizer map, if the model has one. Sentinels are dropped too (sentencepiece rejects
  ids >= n_pieces).
  SPM_KEEP_SPECIAL renders <pad>, </s>, <unk> and sentinels as their names ("</s>", "<unk>",
  "<extra_id_0>") and, as Hugging Face's Metaspace decoder, drops a leading "▁" from the first
  token only, so [3, 8774] ("▁", "▁Hello") -> " Hello" and [1, 3] -> "</s> ". This equals Hugging
  Face's T5TokenizerFast.decode(ids, skip_special_tokens=False), e.g. [0, 8774, 296, 1] -> "<pad>
  Hello world</s>", [32099, 8774] -> "<extra_id_0> Hello" (checked with transformers 5.24 and 5.25;
  dev/sweep_text.py compares it on random ids).
  Differences from Hugging Face's decode that remain: with skip_special_tokens=True HF drops <unk>
  (here: " ⁇ ", as sentencepiece), and HF strips the leading space of the first piece only, so
  ids [3, 3, 8774] ("▁", "▁", "▁Hello") give "Hello" here and in sentencepiece, "  Hello" in HF.

Refused (spm_load returns -1 and a message naming the file and the problem): unreadable or
  non-regular files, files over 1 GiB, truncated messages, bad varints, wrong or unsupported wire
  types, zero pieces, empty pieces, pieces with NUL bytes, a piece defined twice, no or two <unk>
  pieces, unknown piece types, byte pieces without byte_fallback or malformed (only "<0xNN>",
  uppercase hex, as sentencepiece), byte_fallback without all 256 byte pieces, model types other
  than UNIGRAM, treat_whitespace_as_suffix, and a character map that is too short, has a bad trie
  size, a trie whose nodes point outside it, values outside the replacement strings, or
  replacement strings that do not end in NUL. Every node of the map's trie is visited at load, so
  lookups at encode time stay inside the arrays (they check anyway).

All functions are static inline (a unit may include this and use part of it); mallocs are cast so
the header also compiles as C++.
*/
#ifndef TOKENIZER_SPM_H
#define TOKENIZER_SPM_H

#include <float.h>     // FLT_MAX, FLT_MIN
#include <stdarg.h>    // va_list (error messages)
#include <stdint.h>    // uint8_t, uint32_t, uint64_t, int32_t
#include <stdio.h>     // FILE, fopen, fread, snprintf, vsnprintf
#include <stdlib.h>    // malloc, calloc, realloc, free
#include <string.h>    // memcpy, memcmp, memset, strlen
#include <sys/stat.h>  // fstat, S_ISREG (refuse directories and devices)

#define SPM_T5_EXTRA_IDS 100                // sentinels appended after the file's pieces (T5)
#define SPM_MAX_FILE_BYTES ((size_t)1 << 30) // spm_load refuses bigger files
#define SPM_MAX_PIECES (1 << 22)            // more pieces than this is not a tokenizer
#define SPM_MAX_PIECE_TEXT ((size_t)1 << 23) // total bytes of all pieces (trie node ids fit 24 bits)
#define SPM_MAX_INPUT_BYTES ((size_t)1 << 28) // spm_encode refuses longer texts (offsets are int32)
#define SPM_UNK_PENALTY 10.0f               // <unk> scores min_score - 10 (unigram_model.h)

// piece types: the values of ModelProto.SentencePiece.Type, plus SENTINEL for T5's extra ids
typedef enum {
    SPM_NORMAL = 1,
    SPM_UNKNOWN = 2,
    SPM_CONTROL = 3,
    SPM_USER_DEFINED = 4,
    SPM_UNUSED = 5,
    SPM_BYTE = 6,
    SPM_SENTINEL = 7  // not in the file: <extra_id_N>
} SpmPieceType;

typedef enum { SPM_KEEP_SPECIAL = 0, SPM_SKIP_SPECIAL = 1 } SpmSpecial;

// a normalizer_spec (or denormalizer_spec) with its character map unpacked
typedef struct {
    char name[64];                // e.g. "nmt_nfkc" (informational: the rules are in the map)
    int add_dummy_prefix;         // protobuf defaults: all three true
    int remove_extra_whitespaces;
    int escape_whitespaces;
    uint32_t* units;              // Darts double-array units; NULL when the model has no map
    size_t n_units;
    char* repl;                   // replacement strings, each NUL-terminated, indexed by unit values
    size_t repl_len;
} SpmNormalizer;

// the pieces' trie for Viterbi: byte edges in a hash table, the root's edges in a direct table
typedef struct {
    uint32_t key;   // (parent << 8 | byte) + 1; 0 marks an empty slot
    int32_t child;  // the node this edge leads to
} SpmEdge;

typedef struct {
    int32_t* value;       // (n_nodes) id of the piece that ends at this node, or -1
    SpmEdge* edges;       // (edge_cap) open addressing, linear probing
    uint32_t edge_mask;   // edge_cap - 1 (a power of two)
    int edge_shift;       // 32 - log2(edge_cap), for the multiplicative hash
    int32_t root[256];    // child of the root for each first byte, or -1
    int n_nodes;
} SpmTrie;

typedef struct {
    int n_pieces;          // pieces in the file (T5: 32000)
    int vocab_size;        // n_pieces + SPM_T5_EXTRA_IDS: valid ids are [0, vocab_size)
    char* text;            // every piece's bytes, NUL-terminated, sentinels included
    uint32_t* piece_off;   // (vocab_size) offset of each piece in text
    uint32_t* piece_len;   // (vocab_size) its length in bytes
    float* score;          // (vocab_size) log-probability (sentinels: 0)
    uint8_t* type;         // (vocab_size) SpmPieceType
    int32_t* lookup;       // piece string -> id, open addressing, -1 empty
    uint32_t lookup_mask;
    SpmTrie trie;          // NORMAL, USER_DEFINED and UNUSED pieces (sentencepiece's pieces_)
    SpmNormalizer norm;    // applied before encoding
    SpmNormalizer denorm;  // applied after decoding when has_denorm
    int has_denorm;
    int n_user_defined;    // > 0: user-defined pieces are matched before the character map
    int byte_fallback;
    int byte_id[256];      // id of piece <0xNN>, or -1
    float min_score;       // over NORMAL pieces (FLT_MAX if none), as sentencepiece
    float max_score;       // over NORMAL pieces, starting from FLT_MIN, as sentencepiece
    char* unk_surface;     // what decode writes for <unk> (T5: " ⁇ ")
    int unk_id;            // the UNKNOWN piece (T5: 2)
    int bos_id, eos_id, pad_id; // CONTROL pieces named by trainer_spec, or -1 (T5: -1, 1, 0)
} SpmModel;

// the result of spm_encode; reuse one across calls, release with spm_encoding_free
typedef struct {
    int* ids;              // (n) token ids
    size_t n;
    uint32_t* span_start;  // (n) where each token's surface starts in `normalized`
    uint32_t* span_len;    // (n) its length (merged <unk> runs: the whole run)
    char* normalized;      // the normalized text (NUL-terminated), normalized_len bytes
    size_t normalized_len;
    size_t normalized_cap;
    size_t cap;            // capacity of ids / span_start / span_len
    void* lattice;         // Viterbi scratch (SpmBestPath), lattice_cap entries
    size_t lattice_cap;
} SpmEncoding;

// ----------------------------------------------------------------------------
// small helpers: messages, a growable byte buffer, UTF-8

#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
static inline int spm_errf(char* err, size_t errlen, const char* fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

typedef struct {
    char* data;
    size_t len, cap;
} SpmBuf;

// make room for `extra` more bytes plus a NUL; returns -1 when out of memory. Once allocated the data is
// always a string: a buffer nothing was appended to (the decode of no ids) reads as ""
static inline int spm_buf_reserve(SpmBuf* b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) { return 0; }
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < b->len + extra + 1) { cap *= 2; }
    char* d = (char*)realloc(b->data, cap);
    if (d == NULL) { return -1; }
    d[b->len] = '\0';
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline int spm_buf_append(SpmBuf* b, const void* s, size_t n) {
    if (spm_buf_reserve(b, n) != 0) { return -1; }
    if (n > 0) { memcpy(b->data + b->len, s, n); }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static const char SPM_SPACE_SYMBOL[] = "\xe2\x96\x81";  // U+2581, how pieces spell a space
static const char SPM_REPLACEMENT[] = "\xef\xbf\xbd";   // U+FFFD, for bytes that are not UTF-8

// bytes of the character that starts with byte b, from its first byte only (sentencepiece's
// OneCharLen: continuation bytes and 0xF8..0xFF count as 1 and 4, no validation)
static inline size_t spm_one_char_len(uint8_t b) {
    static const uint8_t len_by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len_by_high_nibble[b >> 4];
}

// length of the valid UTF-8 character at s[0..n) (1..4), or 0 if it is not one: overlong forms,
// surrogates, code points above U+10FFFF and truncated sequences are invalid (sentencepiece's
// IsValidDecodeUTF8)
static inline size_t spm_utf8_len(const uint8_t* s, size_t n) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) { return 1; }
    if ((b0 & 0xE0) == 0xC0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) { return 0; }
        uint32_t cp = ((uint32_t)(b0 & 0x1F) << 6) | (s[1] & 0x3F);
        return cp >= 0x80 ? 2 : 0;
    }
    if ((b0 & 0xF0) == 0xE0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) { return 0; }
        uint32_t cp = ((uint32_t)(b0 & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) ? 3 : 0;
    }
    if ((b0 & 0xF8) == 0xF0) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) { return 0; }
        uint32_t cp = ((uint32_t)(b0 & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
                      ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return (cp >= 0x10000 && cp <= 0x10FFFF) ? 4 : 0;
    }
    return 0;
}

// whether s[0..n) is well-formed UTF-8
static inline int spm_utf8_valid(const uint8_t* s, size_t n) {
    for (size_t i = 0, k; i < n; i += k)
        if ((k = spm_utf8_len(s + i, n - i)) == 0) { return 0; }
    return 1;
}

// "<0xNN>" (two uppercase hex digits, exactly as sentencepiece writes byte pieces) -> NN, else -1
static inline int spm_piece_byte(const char* p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') { return -1; }
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        if (c >= '0' && c <= '9') { v = v * 16 + (c - '0'); }
        else if (c >= 'A' && c <= 'F') { v = v * 16 + (c - 'A' + 10); }
        else { return -1; }
    }
    return v;
}

// ----------------------------------------------------------------------------
// protobuf wire format: a cursor over one message's bytes. Keys are varints (field << 3 | wire
// type); wire types: 0 varint, 1 fixed 8 bytes, 2 length-delimited, 5 fixed 4 bytes (3/4 are the
// deprecated groups, refused; 6/7 do not exist).

enum { SPM_WIRE_VARINT = 0, SPM_WIRE_I64 = 1, SPM_WIRE_LEN = 2, SPM_WIRE_I32 = 5 };

typedef struct {
    const uint8_t* base;  // first byte of the file (messages give offsets from it)
    const uint8_t* p;     // next byte to read
    const uint8_t* end;   // end of the current message
    const char* name;     // the file, for messages
    char* err;
    size_t errlen;
} SpmPb;

static inline int spm_pb_fail(SpmPb* r, const char* what) {
    return spm_errf(r->err, r->errlen, "%s: %s at byte %zu", r->name, what, (size_t)(r->p - r->base));
}

// a varint of at most 10 bytes whose value fits 64 bits
static inline int spm_pb_varint(SpmPb* r, uint64_t* out) {
    uint64_t v = 0;
    *out = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) { return spm_pb_fail(r, "truncated protobuf (varint runs past the end)"); }
        uint8_t b = *r->p++;
        if (i == 9 && b > 1) { return spm_pb_fail(r, "bad varint (more than 64 bits)"); }
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return spm_pb_fail(r, "bad varint");  // not reached: the 10th byte always ends it above
}

static inline int spm_pb_key(SpmPb* r, uint32_t* field, uint32_t* wire) {
    uint64_t key = 0;
    *field = 0;
    *wire = 0;
    if (spm_pb_varint(r, &key) != 0) { return -1; }
    if ((key >> 3) == 0 || (key >> 3) > 0x1FFFFFFF) { return spm_pb_fail(r, "bad field number"); }
    *field = (uint32_t)(key >> 3);
    *wire = (uint32_t)(key & 7);
    if (*wire == 3 || *wire == 4) { return spm_pb_fail(r, "unsupported wire type (group)"); }
    if (*wire != SPM_WIRE_VARINT && *wire != SPM_WIRE_I64 && *wire != SPM_WIRE_LEN && *wire != SPM_WIRE_I32) {
        return spm_pb_fail(r, "invalid wire type");
    }
    return 0;
}

// the payload of a length-delimited field: [*s, *s + *n), checked against the message's end
static inline int spm_pb_bytes(SpmPb* r, const uint8_t** s, size_t* n) {
    uint64_t len = 0;
    *s = NULL;
    *n = 0;
    if (spm_pb_varint(r, &len) != 0) { return -1; }
    if (len > (uint64_t)(r->end - r->p)) { return spm_pb_fail(r, "truncated protobuf (a field is longer than what is left)"); }
    *s = r->p;
    *n = (size_t)len;
    r->p += len;
    return 0;
}

static inline int spm_pb_fixed(SpmPb* r, size_t width, uint64_t* out) {
    *out = 0;
    if ((size_t)(r->end - r->p) < width) { return spm_pb_fail(r, "truncated protobuf (fixed-size field)"); }
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++) { v |= (uint64_t)r->p[i] << (8 * i); }
    r->p += width;
    *out = v;
    return 0;
}

static inline int spm_pb_skip(SpmPb* r, uint32_t wire) {
    uint64_t v;
    const uint8_t* s;
    size_t n;
    if (wire == SPM_WIRE_VARINT) { return spm_pb_varint(r, &v); }
    if (wire == SPM_WIRE_I64) { return spm_pb_fixed(r, 8, &v); }
    if (wire == SPM_WIRE_I32) { return spm_pb_fixed(r, 4, &v); }
    return spm_pb_bytes(r, &s, &n);
}

// a known field must come with its declared wire type
static inline int spm_pb_expect(SpmPb* r, uint32_t wire, uint32_t want, const char* field) {
    if (wire == want) { return 0; }
    char what[160];
    snprintf(what, sizeof(what), "wrong wire type %u for %s (expected %u)", wire, field, want);
    return spm_pb_fail(r, what);
}

// a sub-reader over a length-delimited field (an embedded message)
static inline int spm_pb_sub(SpmPb* r, SpmPb* sub) {
    const uint8_t* s;
    size_t n;
    if (spm_pb_bytes(r, &s, &n) != 0) { return -1; }
    *sub = *r;
    sub->p = s;
    sub->end = s + n;
    return 0;
}

// ----------------------------------------------------------------------------
// ModelProto -> raw fields (pointers into the file bytes), before validation

typedef struct {
    const uint8_t* s;  // piece bytes (in the file)
    size_t n;
    float score;
    uint64_t type;     // as read; validated later
} SpmRawPiece;

typedef struct {
    const uint8_t* name; size_t name_len;
    const uint8_t* map; size_t map_len;
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} SpmRawNormalizer;

typedef struct {
    SpmRawPiece* pieces;
    size_t n_pieces, cap_pieces;
    uint64_t model_type;             // 1 = UNIGRAM (default)
    int byte_fallback, ws_suffix;
    const uint8_t* unk_surface; size_t unk_surface_len; int has_unk_surface;
    const uint8_t* names[4]; size_t name_lens[4]; // unk, bos, eos, pad piece names (45..48)
    SpmRawNormalizer norm, denorm;
} SpmRawModel;

static inline int spm_read_bool(SpmPb* r, uint32_t wire, const char* field, int* out) {
    uint64_t v;
    if (spm_pb_expect(r, wire, SPM_WIRE_VARINT, field) != 0 || spm_pb_varint(r, &v) != 0) { return -1; }
    *out = v != 0;
    return 0;
}

static inline int spm_read_string(SpmPb* r, uint32_t wire, const char* field, const uint8_t** s, size_t* n) {
    if (spm_pb_expect(r, wire, SPM_WIRE_LEN, field) != 0) { return -1; }
    return spm_pb_bytes(r, s, n);
}

// ModelProto.SentencePiece: 1 piece, 2 score, 3 type
static inline int spm_parse_piece(SpmPb* r, SpmRawPiece* out) {
    out->s = NULL;
    out->n = 0;
    out->score = 0.0f;
    out->type = SPM_NORMAL;
    while (r->p < r->end) {
        uint32_t field, wire;
        uint64_t v;
        if (spm_pb_key(r, &field, &wire) != 0) { return -1; }
        if (field == 1) {
            if (spm_read_string(r, wire, "SentencePiece.piece", &out->s, &out->n) != 0) { return -1; }
        } else if (field == 2) {
            if (spm_pb_expect(r, wire, SPM_WIRE_I32, "SentencePiece.score") != 0 || spm_pb_fixed(r, 4, &v) != 0) { return -1; }
            uint32_t bits = (uint32_t)v;
            memcpy(&out->score, &bits, 4);
        } else if (field == 3) {
            if (spm_pb_expect(r, wire, SPM_WIRE_VARINT, "SentencePiece.type") != 0 || spm_pb_varint(r, &out->type) != 0) { return -1; }
        } else if (spm_pb_skip(r, wire) != 0) {
            return -1;
        }
    }
    return 0;
}

// TrainerSpec: only what encoding and decoding need
static inline int spm_parse_trainer(SpmPb* r, SpmRawModel* m) {
    while (r->p < r->end) {
        uint32_t field, wire;
        int rc = 0;
        if (spm_pb_key(r, &field, &wire) != 0) { return -1; }
        if (field == 3) {
            rc = spm_pb_expect(r, wire, SPM_WIRE_VARINT, "TrainerSpec.model_type");
            if (rc == 0) { rc = spm_pb_varint(r, &m->model_type); }
        } else if (field == 24) {
            rc = spm_read_bool(r, wire, "TrainerSpec.treat_whitespace_as_suffix", &m->ws_suffix);
        } else if (field == 35) {
            rc = spm_read_bool(r, wire, "TrainerSpec.byte_fallback", &m->byte_fallback);
        } else if (field == 44) {
            rc = spm_read_string(r, wire, "TrainerSpec.unk_surface", &m->unk_surface, &m->unk_surface_len);
            m->has_unk_surface = 1;
        } else if (field >= 45 && field <= 48) {  // unk_piece, bos_piece, eos_piece, pad_piece
            rc = spm_read_string(r, wire, "TrainerSpec.*_piece", &m->names[field - 45], &m->name_lens[field - 45]);
        } else {
            rc = spm_pb_skip(r, wire);
        }
        if (rc != 0) { return -1; }
    }
    return 0;
}

// NormalizerSpec: 1 name, 2 precompiled_charsmap, 3..5 the whitespace flags
static inline int spm_parse_normalizer(SpmPb* r, SpmRawNormalizer* ns) {
    while (r->p < r->end) {
        uint32_t field, wire;
        int rc;
        if (spm_pb_key(r, &field, &wire) != 0) { return -1; }
        if (field == 1) { rc = spm_read_string(r, wire, "NormalizerSpec.name", &ns->name, &ns->name_len); }
        else if (field == 2) { rc = spm_read_string(r, wire, "NormalizerSpec.precompiled_charsmap", &ns->map, &ns->map_len); }
        else if (field == 3) { rc = spm_read_bool(r, wire, "NormalizerSpec.add_dummy_prefix", &ns->add_dummy_prefix); }
        else if (field == 4) { rc = spm_read_bool(r, wire, "NormalizerSpec.remove_extra_whitespaces", &ns->remove_extra_whitespaces); }
        else if (field == 5) { rc = spm_read_bool(r, wire, "NormalizerSpec.escape_whitespaces", &ns->escape_whitespaces); }
        else { rc = spm_pb_skip(r, wire); }
        if (rc != 0) { return -1; }
    }
    return 0;
}

static inline int spm_raw_add_piece(SpmRawModel* m, SpmPb* r) {
    if (m->n_pieces == (size_t)SPM_MAX_PIECES) { return spm_pb_fail(r, "too many pieces"); }
    if (m->n_pieces == m->cap_pieces) {
        size_t cap = m->cap_pieces ? 2 * m->cap_pieces : 1024;
        SpmRawPiece* p = (SpmRawPiece*)realloc(m->pieces, cap * sizeof(SpmRawPiece));
        if (p == NULL) { return spm_errf(r->err, r->errlen, "%s: out of memory", r->name); }
        m->pieces = p;
        m->cap_pieces = cap;
    }
    SpmPb sub;
    if (spm_pb_sub(r, &sub) != 0 || spm_parse_piece(&sub, &m->pieces[m->n_pieces]) != 0) { return -1; }
    m->n_pieces++;
    return 0;
}

// ModelProto: 1 pieces, 2 trainer_spec, 3 normalizer_spec, 5 denormalizer_spec
static inline int spm_parse_model(SpmPb* r, SpmRawModel* m) {
    while (r->p < r->end) {
        uint32_t field, wire;
        SpmPb sub;
        int rc;
        if (spm_pb_key(r, &field, &wire) != 0) { return -1; }
        if (field == 1) {
            rc = spm_pb_expect(r, wire, SPM_WIRE_LEN, "ModelProto.pieces");
            if (rc == 0) { rc = spm_raw_add_piece(m, r); }
        } else if (field == 2 || field == 3 || field == 5) {
            const char* what = field == 2 ? "ModelProto.trainer_spec" : field == 3 ? "ModelProto.normalizer_spec"
                                                                                 : "ModelProto.denormalizer_spec";
            rc = spm_pb_expect(r, wire, SPM_WIRE_LEN, what);
            if (rc == 0) { rc = spm_pb_sub(r, &sub); }
            if (rc == 0) {
                rc = field == 2 ? spm_parse_trainer(&sub, m)
                                : spm_parse_normalizer(&sub, field == 3 ? &m->norm : &m->denorm);
            }
        } else {
            rc = spm_pb_skip(r, wire);
        }
        if (rc != 0) { return -1; }
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the precompiled character map: <u32 trie bytes><Darts double-array units><replacement strings>
// A unit packs: bits 0..7 label, bit 8 "has leaf", bit 9 "offset is shifted by 8", bits 10..31
// offset; a value unit has bit 31 set and the value in bits 0..30. From a node at index `base`,
// byte c leads to unit base ^ c if that unit's label is c (a value unit never matches: bit 31).

static inline uint32_t spm_unit_label(uint32_t u) { return u & 0x800000FFu; }
static inline uint32_t spm_unit_has_leaf(uint32_t u) { return (u >> 8) & 1u; }
static inline uint32_t spm_unit_value(uint32_t u) { return u & 0x7FFFFFFFu; }
static inline size_t spm_unit_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

static inline uint32_t spm_le32(const uint8_t* p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// visit every node reachable from the root once: all indices inside the array and every value
// inside the replacement strings. darts-clone builds the array from a DAWG, so shared suffixes make
// several paths lead to one node; nodes are deduplicated by base, which also ends the walk on a
// hostile file with cycles (lookups are bounded by the input length anyway).
static inline int spm_charsmap_check(const SpmNormalizer* nm, char* what, size_t whatlen) {
    size_t n = nm->n_units;
    uint8_t* seen = (uint8_t*)calloc(n, 1);  // seen[base]: node with this base already queued
    size_t* stack = (size_t*)malloc((n + 1) * sizeof(size_t));
    int rc = (seen == NULL || stack == NULL) ? spm_errf(what, whatlen, "out of memory") : 0;
    size_t top = 0, root = spm_unit_offset(nm->units[0]);
    if (rc == 0 && root >= n) { rc = spm_errf(what, whatlen, "its trie is inconsistent (the root points to unit %zu of %zu)", root, n); }
    if (rc == 0) {
        seen[root] = 1;
        stack[top++] = root;
    }
    while (top > 0 && rc == 0) {
        size_t base = stack[--top];
        for (uint32_t c = 0; c < 256 && rc == 0; c++) {
            size_t child = base ^ c;
            if (child >= n || spm_unit_label(nm->units[child]) != c) { continue; }
            size_t next = child ^ spm_unit_offset(nm->units[child]);
            if (next >= n) {
                rc = spm_errf(what, whatlen, "its trie is inconsistent (unit %zu points to unit %zu of %zu)", child, next, n);
            } else if (spm_unit_has_leaf(nm->units[child]) && spm_unit_value(nm->units[next]) >= nm->repl_len) {
                rc = spm_errf(what, whatlen, "its trie has value %u outside the %zu bytes of replacement strings",
                              spm_unit_value(nm->units[next]), nm->repl_len);
            } else if (!seen[next]) {
                seen[next] = 1;
                stack[top++] = next;
            }
        }
    }
    free(seen);
    free(stack);
    return rc;
}

// unpack a precompiled_charsmap (an empty one means: no map)
static inline int spm_charsmap_load(SpmNormalizer* nm, const uint8_t* blob, size_t len, char* what, size_t whatlen) {
    if (len == 0) { return 0; }
    if (len <= 4) { return spm_errf(what, whatlen, "it is too short (%zu bytes)", len); }
    size_t trie_bytes = spm_le32(blob);
    if (trie_bytes == 0 || trie_bytes % 4 != 0) {
        return spm_errf(what, whatlen, "its trie size %zu is not a positive multiple of 4", trie_bytes);
    }
    if (trie_bytes > len - 4) {
        return spm_errf(what, whatlen, "its trie claims %zu bytes but only %zu follow", trie_bytes, len - 4);
    }
    nm->n_units = trie_bytes / 4;
    nm->repl_len = len - 4 - trie_bytes;
    nm->units = (uint32_t*)malloc(trie_bytes);
    nm->repl = (char*)malloc(nm->repl_len + 1);
    if (nm->units == NULL || nm->repl == NULL) { return spm_errf(what, whatlen, "out of memory"); }
    for (size_t i = 0; i < nm->n_units; i++) { nm->units[i] = spm_le32(blob + 4 + 4 * i); }
    if (nm->repl_len > 0) { memcpy(nm->repl, blob + 4 + trie_bytes, nm->repl_len); }
    nm->repl[nm->repl_len] = '\0';
    if (nm->repl_len > 0 && nm->repl[nm->repl_len - 1] != '\0') {
        return spm_errf(what, whatlen, "its replacement strings do not end with a NUL byte");
    }
    return spm_charsmap_check(nm, what, whatlen);
}

// longest key of the map that prefixes s[0..n): its length (0: none) and replacement (*repl)
static inline size_t spm_charsmap_match(const SpmNormalizer* nm, const uint8_t* s, size_t n, const char** repl) {
    if (nm->units == NULL) { return 0; }
    size_t id = spm_unit_offset(nm->units[0]);
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        id ^= s[i];
        if (id >= nm->n_units) { break; }
        uint32_t u = nm->units[id];
        if (spm_unit_label(u) != s[i]) { break; }
        id ^= spm_unit_offset(u);
        if (spm_unit_has_leaf(u) && id < nm->n_units) {
            best = i + 1;
            *repl = nm->repl + spm_unit_value(nm->units[id]);
        }
    }
    return best;
}

static inline int spm_normalizer_load(SpmNormalizer* nm, const SpmRawNormalizer* raw, const char* file,
                                      const char* which, char* err, size_t errlen) {
    size_t nn = raw->name_len < sizeof(nm->name) - 1 ? raw->name_len : sizeof(nm->name) - 1;
    if (nn > 0) { memcpy(nm->name, raw->name, nn); }
    nm->name[nn] = '\0';
    nm->add_dummy_prefix = raw->add_dummy_prefix;
    nm->remove_extra_whitespaces = raw->remove_extra_whitespaces;
    nm->escape_whitespaces = raw->escape_whitespaces;
    char what[200];
    if (spm_charsmap_load(nm, raw->map, raw->map_len, what, sizeof(what)) != 0) {
        return spm_errf(err, errlen, "%s: %s precompiled_charsmap is refused: %s", file, which, what);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the pieces' trie (Viterbi) and the string -> id table

static inline uint32_t spm_edge_hash(const SpmTrie* t, uint32_t key) { return (key * 0x9E3779B1u) >> t->edge_shift; }

static inline int32_t spm_trie_child(const SpmTrie* t, int32_t node, uint8_t c) {
    if (node == 0) { return t->root[c]; }
    uint32_t key = (((uint32_t)node << 8) | c) + 1;
    for (uint32_t h = spm_edge_hash(t, key);; h = (h + 1) & t->edge_mask) {
        if (t->edges[h].key == key) { return t->edges[h].child; }
        if (t->edges[h].key == 0) { return -1; }
    }
}

static inline int spm_trie_init(SpmTrie* t, size_t max_nodes) {
    size_t cap = 16;
    int bits = 4;
    while (cap < 2 * max_nodes) { cap *= 2; bits++; }
    t->value = (int32_t*)malloc(max_nodes * sizeof(int32_t));
    t->edges = (SpmEdge*)calloc(cap, sizeof(SpmEdge));
    if (t->value == NULL || t->edges == NULL) { return -1; }
    t->edge_mask = (uint32_t)(cap - 1);
    t->edge_shift = 32 - bits;
    for (int c = 0; c < 256; c++) { t->root[c] = -1; }
    t->value[0] = -1;
    t->n_nodes = 1;
    return 0;
}

// add piece s[0..n) with this id (the caller has rejected duplicates and sized the trie)
static inline void spm_trie_insert(SpmTrie* t, const uint8_t* s, size_t n, int32_t id) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t child = spm_trie_child(t, node, s[i]);
        if (child < 0) {
            child = t->n_nodes++;
            t->value[child] = -1;
            if (node == 0) {
                t->root[s[i]] = child;
            } else {
                uint32_t key = (((uint32_t)node << 8) | s[i]) + 1;
                uint32_t h = spm_edge_hash(t, key);
                while (t->edges[h].key != 0) { h = (h + 1) & t->edge_mask; }
                t->edges[h].key = key;
                t->edges[h].child = child;
            }
        }
        node = child;
    }
    t->value[node] = id;
}

static inline void spm_trie_free(SpmTrie* t) {
    free(t->value);
    free(t->edges);
    memset(t, 0, sizeof(*t));
}

// sentencepiece keeps two maps: reserved pieces (CONTROL, UNKNOWN, BYTE) and the others; a string
// may appear once in each. PieceToId looks in the reserved map first. Sentinels come last.
static inline int spm_piece_class(uint8_t type) {
    if (type == SPM_CONTROL || type == SPM_UNKNOWN || type == SPM_BYTE) { return 0; }
    return type == SPM_SENTINEL ? 2 : 1;
}

static inline uint32_t spm_str_hash(const char* s, size_t n) {
    uint32_t h = 2166136261u;  // FNV-1a
    for (size_t i = 0; i < n; i++) { h = (h ^ (uint8_t)s[i]) * 16777619u; }
    return h;
}

// id of the piece s[0..n) in class cls, or -1
static inline int spm_lookup(const SpmModel* m, const char* s, size_t n, int cls) {
    for (uint32_t h = spm_str_hash(s, n) & m->lookup_mask;; h = (h + 1) & m->lookup_mask) {
        int32_t id = m->lookup[h];
        if (id < 0) { return -1; }
        if (m->piece_len[id] == n && spm_piece_class(m->type[id]) == cls && memcmp(m->text + m->piece_off[id], s, n) == 0) {
            return id;
        }
    }
}

static inline void spm_lookup_insert(SpmModel* m, int id) {
    uint32_t h = spm_str_hash(m->text + m->piece_off[id], m->piece_len[id]) & m->lookup_mask;
    while (m->lookup[h] >= 0) { h = (h + 1) & m->lookup_mask; }
    m->lookup[h] = id;
}

// ----------------------------------------------------------------------------
// building the model from the raw fields

static inline void spm_free(SpmModel* m) {
    free(m->text);
    free(m->piece_off);
    free(m->piece_len);
    free(m->score);
    free(m->type);
    free(m->lookup);
    spm_trie_free(&m->trie);
    free(m->norm.units);
    free(m->norm.repl);
    free(m->denorm.units);
    free(m->denorm.repl);
    free(m->unk_surface);
    memset(m, 0, sizeof(*m));
}

// the checks sentencepiece's ModelInterface::InitializePieces makes, and ours (types, NUL bytes)
static inline int spm_check_pieces(const SpmRawModel* raw, const char* file, size_t* text_bytes, char* err, size_t errlen) {
    if (raw->n_pieces == 0) { return spm_errf(err, errlen, "%s: the model has no pieces", file); }
    if (raw->model_type != 1) {
        return spm_errf(err, errlen, "%s: model_type %llu is not supported (only UNIGRAM = 1)", file, (unsigned long long)raw->model_type);
    }
    if (raw->ws_suffix) { return spm_errf(err, errlen, "%s: treat_whitespace_as_suffix is not supported", file); }
    size_t total = 0;
    for (size_t i = 0; i < raw->n_pieces; i++) {
        const SpmRawPiece* p = &raw->pieces[i];
        if (p->type < SPM_NORMAL || p->type > SPM_BYTE) {
            return spm_errf(err, errlen, "%s: piece %zu has unknown type %llu", file, i, (unsigned long long)p->type);
        }
        if (p->n == 0) { return spm_errf(err, errlen, "%s: piece %zu is empty", file, i); }
        if (memchr(p->s, 0, p->n) != NULL) { return spm_errf(err, errlen, "%s: piece %zu contains a NUL byte", file, i); }
        // sentencepiece loads such a model, then decodes to bytes its own Python API cannot read
        if (!spm_utf8_valid(p->s, p->n)) { return spm_errf(err, errlen, "%s: piece %zu is not valid UTF-8", file, i); }
        if (p->type == SPM_BYTE && !raw->byte_fallback) {
            return spm_errf(err, errlen, "%s: byte piece %zu is found although byte_fallback is false", file, i);
        }
        if (p->type == SPM_BYTE && spm_piece_byte((const char*)p->s, p->n) < 0) {
            return spm_errf(err, errlen, "%s: byte piece %zu is not of the form <0xNN>", file, i);
        }
        total += p->n + 1;
        if (total > SPM_MAX_PIECE_TEXT) { return spm_errf(err, errlen, "%s: the pieces are too long in total", file); }
    }
    *text_bytes = total;
    return 0;
}

// copy the pieces and sentinels into the model: text, offsets, scores, types
static inline int spm_copy_pieces(SpmModel* m, const SpmRawModel* raw, size_t text_bytes) {
    size_t v = (size_t)m->vocab_size;
    m->text = (char*)malloc(text_bytes + (size_t)SPM_T5_EXTRA_IDS * 16);
    m->piece_off = (uint32_t*)malloc(v * sizeof(uint32_t));
    m->piece_len = (uint32_t*)malloc(v * sizeof(uint32_t));
    m->score = (float*)malloc(v * sizeof(float));
    m->type = (uint8_t*)malloc(v);
    if (m->text == NULL || m->piece_off == NULL || m->piece_len == NULL || m->score == NULL || m->type == NULL) { return -1; }
    size_t off = 0;
    for (size_t i = 0; i < v; i++) {
        m->piece_off[i] = (uint32_t)off;
        if (i < raw->n_pieces) {
            memcpy(m->text + off, raw->pieces[i].s, raw->pieces[i].n);
            m->piece_len[i] = (uint32_t)raw->pieces[i].n;
            m->score[i] = raw->pieces[i].score;
            m->type[i] = (uint8_t)raw->pieces[i].type;
        } else {  // sentinel: the last id is <extra_id_0>
            int k = snprintf(m->text + off, 16, "<extra_id_%d>", (int)(v - 1 - i));
            m->piece_len[i] = (uint32_t)k;
            m->score[i] = 0.0f;
            m->type[i] = SPM_SENTINEL;
        }
        off += m->piece_len[i];
        m->text[off++] = '\0';
    }
    return 0;
}

// the string table (duplicates refused), the Viterbi trie, unk/byte ids, score range
static inline int spm_index_pieces(SpmModel* m, const char* file, char* err, size_t errlen) {
    size_t cap = 16;
    while (cap < 2 * (size_t)m->vocab_size) { cap *= 2; }
    m->lookup = (int32_t*)malloc(cap * sizeof(int32_t));
    size_t trie_nodes = 1;
    for (int i = 0; i < m->n_pieces; i++) {
        if (spm_piece_class(m->type[i]) == 1) { trie_nodes += m->piece_len[i]; }
    }
    if (m->lookup == NULL || spm_trie_init(&m->trie, trie_nodes) != 0) { return spm_errf(err, errlen, "%s: out of memory", file); }
    memset(m->lookup, 0xFF, cap * sizeof(int32_t));
    m->lookup_mask = (uint32_t)(cap - 1);
    m->unk_id = -1;
    m->min_score = FLT_MAX;
    m->max_score = FLT_MIN;
    for (int b = 0; b < 256; b++) { m->byte_id[b] = -1; }
    for (int i = 0; i < m->vocab_size; i++) {
        const char* s = m->text + m->piece_off[i];
        int cls = spm_piece_class(m->type[i]);
        int prev = spm_lookup(m, s, m->piece_len[i], cls);
        if (prev >= 0 && cls != 2) { return spm_errf(err, errlen, "%s: piece %d '%s' is already defined (piece %d)", file, i, s, prev); }
        if (prev < 0) { spm_lookup_insert(m, i); }
        if (cls == 1) { spm_trie_insert(&m->trie, (const uint8_t*)s, m->piece_len[i], i); }
        if (m->type[i] == SPM_UNKNOWN) {
            if (m->unk_id >= 0) { return spm_errf(err, errlen, "%s: two <unk> pieces (%d and %d)", file, m->unk_id, i); }
            m->unk_id = i;
        }
        if (m->type[i] == SPM_BYTE) { m->byte_id[spm_piece_byte(s, m->piece_len[i])] = i; }
        if (m->type[i] == SPM_USER_DEFINED) { m->n_user_defined++; }
        if (m->type[i] == SPM_NORMAL) {
            m->min_score = m->score[i] < m->min_score ? m->score[i] : m->min_score;
            m->max_score = m->score[i] > m->max_score ? m->score[i] : m->max_score;
        }
    }
    if (m->unk_id < 0) { return spm_errf(err, errlen, "%s: the model has no <unk> piece (type UNKNOWN)", file); }
    for (int b = 0; m->byte_fallback && b < 256; b++) {
        if (m->byte_id[b] < 0) { return spm_errf(err, errlen, "%s: byte_fallback is on but piece <0x%02X> is missing", file, b); }
    }
    return 0;
}

// the id of a CONTROL (or, for unk, UNKNOWN) piece named by trainer_spec, or -1 (sentencepiece's
// bos_id() etc.: PieceToId(name), kept only if the piece has the right type)
static inline int spm_special_id(const SpmModel* m, const uint8_t* name, size_t n, const char* dflt, uint8_t want) {
    if (n == 0) {
        name = (const uint8_t*)dflt;
        n = strlen(dflt);
    }
    int id = spm_lookup(m, (const char*)name, n, 0);
    if (id < 0) { id = spm_lookup(m, (const char*)name, n, 1); }
    return (id >= 0 && m->type[id] == want) ? id : -1;
}

static inline int spm_build(SpmModel* m, const SpmRawModel* raw, const char* file, char* err, size_t errlen) {
    size_t text_bytes = 0;
    if (spm_check_pieces(raw, file, &text_bytes, err, errlen) != 0) { return -1; }
    m->n_pieces = (int)raw->n_pieces;
    m->vocab_size = m->n_pieces + SPM_T5_EXTRA_IDS;
    m->byte_fallback = raw->byte_fallback;
    if (spm_copy_pieces(m, raw, text_bytes) != 0) { return spm_errf(err, errlen, "%s: out of memory", file); }
    if (spm_index_pieces(m, file, err, errlen) != 0) { return -1; }
    if (spm_normalizer_load(&m->norm, &raw->norm, file, "normalizer_spec", err, errlen) != 0) { return -1; }
    if (spm_normalizer_load(&m->denorm, &raw->denorm, file, "denormalizer_spec", err, errlen) != 0) { return -1; }
    m->has_denorm = m->denorm.units != NULL;  // sentencepiece: only when the map is not empty
    const char* surface = raw->has_unk_surface ? (const char*)raw->unk_surface : " \xe2\x81\x87 ";
    size_t surface_len = raw->has_unk_surface ? raw->unk_surface_len : strlen(surface);
    m->unk_surface = (char*)malloc(surface_len + 1);
    if (m->unk_surface == NULL) { return spm_errf(err, errlen, "%s: out of memory", file); }
    if (surface_len > 0) { memcpy(m->unk_surface, surface, surface_len); }
    m->unk_surface[surface_len] = '\0';
    m->bos_id = spm_special_id(m, raw->names[1], raw->name_lens[1], "<s>", SPM_CONTROL);
    m->eos_id = spm_special_id(m, raw->names[2], raw->name_lens[2], "</s>", SPM_CONTROL);
    m->pad_id = spm_special_id(m, raw->names[3], raw->name_lens[3], "<pad>", SPM_CONTROL);
    return 0;
}

// parse a model from memory; `file` names it in messages. On failure *m is left empty.
static inline int spm_load_bytes(SpmModel* m, const uint8_t* data, size_t len, const char* file, char* err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    SpmRawModel raw;
    memset(&raw, 0, sizeof(raw));
    raw.model_type = 1;
    raw.norm.add_dummy_prefix = raw.norm.remove_extra_whitespaces = raw.norm.escape_whitespaces = 1;
    raw.denorm = raw.norm;
    SpmPb r = {data, data, data + len, file, err, errlen};
    int rc = spm_parse_model(&r, &raw);
    if (rc == 0) { rc = spm_build(m, &raw, file, err, errlen); }
    free(raw.pieces);
    if (rc != 0) { spm_free(m); }
    return rc;
}

static inline int spm_load(SpmModel* m, const char* path, char* err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    FILE* f = fopen(path, "rb");
    if (f == NULL) { return spm_errf(err, errlen, "%s: cannot open the tokenizer model", path); }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return spm_errf(err, errlen, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SPM_MAX_FILE_BYTES) {
        fclose(f);
        return spm_errf(err, errlen, "%s: %lld bytes is too big for a tokenizer model", path, (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    uint8_t* data = (uint8_t*)malloc(len + 1);
    size_t got = data != NULL ? fread(data, 1, len, f) : 0;
    fclose(f);
    if (data == NULL || got != len) {
        free(data);
        return spm_errf(err, errlen, "%s: cannot read the file", path);
    }
    int rc = spm_load_bytes(m, data, len, path, err, errlen);
    free(data);
    return rc;
}

// ----------------------------------------------------------------------------
// lookups

// the piece of an id (sentinels: "<extra_id_N>"), or NULL outside [0, vocab_size)
static inline const char* spm_id_to_piece(const SpmModel* m, int id) {
    if (id < 0 || id >= m->vocab_size) { return NULL; }
    return m->text + m->piece_off[id];
}

// the id of a piece; as sentencepiece's PieceToId, an unknown string gives unk_id
static inline int spm_piece_to_id(const SpmModel* m, const char* piece) {
    size_t n = strlen(piece);
    for (int cls = 0; cls < 3; cls++) {
        int id = spm_lookup(m, piece, n, cls);
        if (id >= 0) { return id; }
    }
    return m->unk_id;
}

// ----------------------------------------------------------------------------
// normalization (sentencepiece's Normalizer::Normalize / NormalizePrefix)

// longest user-defined piece that prefixes s[0..n), walking the pieces' trie; 0 if none
static inline size_t spm_user_defined_prefix(const SpmModel* m, const uint8_t* s, size_t n) {
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        node = spm_trie_child(&m->trie, node, s[i]);
        if (node < 0) { break; }
        int32_t id = m->trie.value[node];
        if (id >= 0 && m->type[id] == SPM_USER_DEFINED) { best = i + 1; }
    }
    return best;
}

// normalize the first characters of s[0..n): returns the bytes consumed (>= 1), sets the text
// they become (*out, *out_len)
static inline size_t spm_normalize_prefix(const SpmModel* m, const SpmNormalizer* nm, int user_defined,
                                          const uint8_t* s, size_t n, const char** out, size_t* out_len) {
    size_t k = user_defined ? spm_user_defined_prefix(m, s, n) : 0;
    if (k > 0) {
        *out = (const char*)s;
        *out_len = k;
        return k;
    }
    k = spm_charsmap_match(nm, s, n, out);
    if (k > 0) {
        *out_len = strlen(*out);
        return k;
    }
    k = spm_utf8_len(s, n);
    if (k == 0) {  // not UTF-8: U+FFFD for one byte
        *out = SPM_REPLACEMENT;
        *out_len = 3;
        return 1;
    }
    *out = (const char*)s;
    *out_len = k;
    return k;
}

static inline int spm_is_single_space(const char* s, size_t n) { return n == 1 && s[0] == ' '; }

// normalize text[0..len) with nm into out (replaced, NUL-terminated); user_defined: match the
// model's user-defined pieces first (the encoder does, the denormalizer does not)
static inline int spm_normalize_with(const SpmModel* m, const SpmNormalizer* nm, int user_defined,
                                     const char* text, size_t len, SpmBuf* out) {
    const uint8_t* s = (const uint8_t*)text;
    size_t pos = 0;
    out->len = 0;
    if (spm_buf_reserve(out, len + 3) != 0) { return -1; }
    out->data[0] = '\0';
    const char *piece;
    size_t piece_len;
    if (nm->remove_extra_whitespaces) {  // leading spaces
        while (pos < len) {
            size_t used = spm_normalize_prefix(m, nm, user_defined, s + pos, len - pos, &piece, &piece_len);
            if (!spm_is_single_space(piece, piece_len)) { break; }
            pos += used;
        }
    }
    if (pos == len) { return 0; }
    const char* space = nm->escape_whitespaces ? SPM_SPACE_SYMBOL : " ";
    size_t space_len = strlen(space);
    if (nm->add_dummy_prefix && spm_buf_append(out, space, space_len) != 0) { return -1; }
    int prev_space = nm->remove_extra_whitespaces;
    while (pos < len) {
        pos += spm_normalize_prefix(m, nm, user_defined, s + pos, len - pos, &piece, &piece_len);
        while (prev_space && piece_len > 0 && piece[0] == ' ') {  // collapse runs of spaces
            piece++;
            piece_len--;
        }
        if (piece_len > 0) {
            for (size_t i = 0; i < piece_len; i++) {
                int rc = piece[i] == ' ' ? spm_buf_append(out, space, space_len) : spm_buf_append(out, piece + i, 1);
                if (rc != 0) { return -1; }
            }
            prev_space = piece[piece_len - 1] == ' ';
        }
        if (!nm->remove_extra_whitespaces) { prev_space = 0; }
    }
    while (nm->remove_extra_whitespaces && out->len >= space_len &&  // trailing spaces (even the dummy prefix)
           memcmp(out->data + out->len - space_len, space, space_len) == 0) {
        out->len -= space_len;
    }
    out->data[out->len] = '\0';
    return 0;
}

// the model's normalization of text (what the Viterbi search sees), into out
static inline int spm_normalize(const SpmModel* m, const char* text, size_t len, SpmBuf* out) {
    return spm_normalize_with(m, &m->norm, m->n_user_defined > 0, text, len, out);
}

// ----------------------------------------------------------------------------
// encoding: Viterbi over the normalized bytes (sentencepiece's unigram Model::EncodeOptimized)

typedef struct {
    float score;    // best total score of a segmentation of normalized[0, this position)
    int32_t start;  // where the last piece of that segmentation starts (-1: not reached yet)
    int32_t id;     // that piece
} SpmBestPath;

static inline void spm_encoding_free(SpmEncoding* e) {
    free(e->ids);
    free(e->span_start);
    free(e->span_len);
    free(e->normalized);
    free(e->lattice);
    memset(e, 0, sizeof(*e));
}

static inline int spm_encoding_reserve(SpmEncoding* e, size_t n_tokens, size_t n_positions) {
    if (n_tokens > e->cap) {
        int* ids = (int*)realloc(e->ids, n_tokens * sizeof(int));
        if (ids != NULL) { e->ids = ids; }
        uint32_t* st = (uint32_t*)realloc(e->span_start, n_tokens * sizeof(uint32_t));
        if (st != NULL) { e->span_start = st; }
        uint32_t* ln = (uint32_t*)realloc(e->span_len, n_tokens * sizeof(uint32_t));
        if (ln != NULL) { e->span_len = ln; }
        if (ids == NULL || st == NULL || ln == NULL) { return -1; }
        e->cap = n_tokens;
    }
    if (n_positions > e->lattice_cap) {
        void* l = realloc(e->lattice, n_positions * sizeof(SpmBestPath));
        if (l == NULL) { return -1; }
        e->lattice = l;
        e->lattice_cap = n_positions;
    }
    return 0;
}

// candidate for best[end]: keep it if that position has none yet or it scores strictly more
static inline void spm_relax(SpmBestPath* best, size_t end, float cand, size_t start, int id) {
    if (best[end].start == -1 || cand > best[end].score) {
        best[end].score = cand;
        best[end].start = (int32_t)start;
        best[end].id = id;
    }
}

// best[i] for i in [0, L]: the best segmentation of norm[0, i).
// For each character start s (reached by construction), every trie piece p = norm[s, k) gives
// best[k] the candidate best[s].score + score(p), all in float, where score(p) is:
//   NORMAL:       the piece's log-probability
//   USER_DEFINED: (k - s) * max_score - 0.1   (a bonus that makes them win, as sentencepiece)
//   UNUSED:       skipped
// and if no piece covers exactly the one character at s: <unk> with min_score - 10.
static inline void spm_viterbi(const SpmModel* m, const uint8_t* norm, size_t L, SpmBestPath* best) {
    for (size_t i = 0; i <= L; i++) {
        best[i].score = 0.0f;
        best[i].start = -1;
        best[i].id = -1;
    }
    const float unk_score = m->min_score - SPM_UNK_PENALTY;
    size_t mblen;
    for (size_t s = 0; s < L; s += mblen) {
        mblen = spm_one_char_len(norm[s]);
        if (mblen > L - s) { mblen = L - s; }
        const float here = best[s].score;
        int single = 0;
        int32_t node = 0;
        for (size_t k = s; k < L;) {
            node = spm_trie_child(&m->trie, node, norm[k++]);
            if (node < 0) { break; }
            int32_t id = m->trie.value[node];
            if (id < 0 || m->type[id] == SPM_UNUSED) { continue; }
            size_t length = k - s;
            float score = m->type[id] == SPM_USER_DEFINED ? (float)length * m->max_score - 0.1f : m->score[id];
            spm_relax(best, k, score + here, s, id);
            if (length == mblen) { single = 1; }
        }
        if (!single) {
            spm_relax(best, s + mblen, unk_score + here, s, m->unk_id);
        }
    }
}

// append one token with its span in the normalized text
static inline void spm_push_token(SpmEncoding* e, int id, size_t start, size_t len) {
    e->ids[e->n] = id;
    e->span_start[e->n] = (uint32_t)start;
    e->span_len[e->n] = (uint32_t)len;
    e->n++;
}

// walk back from best[L], then emit left to right: runs of <unk> merge into one token, or with
// byte_fallback become one <0xNN> token per byte (sentencepiece's PopulateSentencePieceText)
static inline void spm_emit(const SpmModel* m, SpmEncoding* e, const SpmBestPath* best, size_t L) {
    size_t count = 0;
    for (size_t end = L; end > 0; end = (size_t)best[end].start) { count++; }
    // reuse the tail of span_start as the list of segment ends, then emit forward
    uint32_t* ends = e->span_start + (e->cap - count);
    size_t k = count;
    for (size_t end = L; end > 0; end = (size_t)best[end].start) { ends[--k] = (uint32_t)end; }
    e->n = 0;
    int prev_unk = 0;
    for (size_t i = 0; i < count; i++) {
        size_t end = ends[i];
        size_t start = (size_t)best[end].start;
        int id = best[end].id;
        int is_unk = m->type[id] == SPM_UNKNOWN;
        if (is_unk && m->byte_fallback) {
            for (size_t b = start; b < end; b++) { spm_push_token(e, m->byte_id[(uint8_t)e->normalized[b]], start, end - start); }
        } else if (is_unk && prev_unk) {
            e->span_len[e->n - 1] = (uint32_t)(end - e->span_start[e->n - 1]);
        } else {
            spm_push_token(e, id, start, end - start);
        }
        prev_unk = is_unk;
    }
}

// encode text[0..len) (any bytes) into e->ids / e->n. No BOS/EOS are added (append m->eos_id
// yourself, as T5 does). Returns -1 with a message for texts over 256 MiB or out of memory.
static inline int spm_encode(const SpmModel* m, const char* text, size_t len, SpmEncoding* e, char* err, size_t errlen) {
    e->n = 0;
    if (len > SPM_MAX_INPUT_BYTES) { return spm_errf(err, errlen, "spm_encode: text of %zu bytes is too long", len); }
    SpmBuf nb = {e->normalized, e->normalized_len, e->normalized_cap};
    int rc = spm_normalize(m, text, len, &nb);
    e->normalized = nb.data;
    e->normalized_len = nb.len;
    e->normalized_cap = nb.cap;
    if (rc != 0) { return spm_errf(err, errlen, "spm_encode: out of memory"); }
    size_t L = nb.len;
    if (L == 0) { return 0; }
    if (L >= ((size_t)1 << 31) || spm_encoding_reserve(e, 2 * L, L + 1) != 0) {
        return spm_errf(err, errlen, "spm_encode: out of memory");
    }
    SpmBestPath* best = (SpmBestPath*)e->lattice;
    spm_viterbi(m, (const uint8_t*)e->normalized, L, best);
    spm_emit(m, e, best, L);
    return 0;
}

// token i as sentencepiece's encode(out_type=str) shows it: the vocabulary piece, except that an
// <unk> token shows the normalized text it covers; *len gets its length
static inline const char* spm_encoding_piece(const SpmModel* m, const SpmEncoding* e, size_t i, size_t* len) {
    int id = e->ids[i];
    if (m->type[id] == SPM_UNKNOWN) {
        *len = e->span_len[i];
        return e->normalized + e->span_start[i];
    }
    *len = m->piece_len[id];
    return m->text + m->piece_off[id];
}

// ----------------------------------------------------------------------------
// decoding (sentencepiece's SentencePieceProcessor::Decode, plus T5's sentinels)

// pending byte pieces -> their bytes, each byte that does not start a valid character -> U+FFFD
static inline int spm_flush_bytes(SpmBuf* out, const uint8_t* bytes, size_t n) {
    size_t off = 0;
    while (off < n) {
        size_t k = spm_utf8_len(bytes + off, n - off);
        int rc = k == 0 ? spm_buf_append(out, SPM_REPLACEMENT, 3) : spm_buf_append(out, bytes + off, k);
        if (rc != 0) { return -1; }
        off += k == 0 ? 1 : k;
    }
    return 0;
}

// one ordinary piece: "▁" -> " ", and while nothing has been written (*at_bos) one leading "▁"
// is dropped. Returns whether that counts as the dummy prefix having been seen.
static inline int spm_decode_piece(const SpmModel* m, const char* p, size_t n, int at_bos, SpmBuf* out, int* bos_ws_seen) {
    *bos_ws_seen = 0;
    if (at_bos && (m->norm.add_dummy_prefix || m->norm.remove_extra_whitespaces) && n >= 3 && memcmp(p, SPM_SPACE_SYMBOL, 3) == 0) {
        p += 3;
        n -= 3;
        *bos_ws_seen = !m->norm.remove_extra_whitespaces;  // with it on, all leading spaces go
    }
    size_t i = 0;
    while (i < n) {
        int rc;
        if (n - i >= 3 && memcmp(p + i, SPM_SPACE_SYMBOL, 3) == 0) {
            rc = spm_buf_append(out, " ", 1);
            i += 3;
        } else {
            rc = spm_buf_append(out, p + i, 1);
            i += 1;
        }
        if (rc != 0) { return -1; }
    }
    return 0;
}

// what a special token writes: its name (SPM_KEEP_SPECIAL) or sentencepiece's text
static inline const char* spm_special_text(const SpmModel* m, int id, SpmSpecial mode) {
    if (mode == SPM_KEEP_SPECIAL) { return m->text + m->piece_off[id]; }
    return m->type[id] == SPM_UNKNOWN ? m->unk_surface : "";
}

// decode ids[0..n) into a malloc'd NUL-terminated string (length in *out_len if not NULL); NULL
// with a message if an id is outside [0, vocab_size) or memory runs out. See the top of the file.
static inline char* spm_decode(const SpmModel* m, const int* ids, size_t n, SpmSpecial mode, size_t* out_len, char* err, size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->vocab_size) {
            spm_errf(err, errlen, "token id %d (position %zu) is outside [0, %d)", ids[i], i, m->vocab_size);
            return NULL;
        }
    }
    SpmBuf out = {NULL, 0, 0}, bytes = {NULL, 0, 0};
    int rc = spm_buf_reserve(&out, 16);
    int at_bos = 1, bos_ws_seen = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int id = ids[i];
        uint8_t t = m->type[id];
        const char* p = m->text + m->piece_off[id];
        if (t == SPM_BYTE) {
            uint8_t b = (uint8_t)spm_piece_byte(p, m->piece_len[id]);
            rc = spm_buf_append(&bytes, &b, 1);
            continue;
        }
        rc = spm_flush_bytes(&out, (const uint8_t*)bytes.data, bytes.len);
        bytes.len = 0;
        // sentencepiece: leading "▁"s go until text is written; Hugging Face (KEEP): the first token's only
        if (bos_ws_seen || out.len > 0 || (mode == SPM_KEEP_SPECIAL && i > 0)) { at_bos = 0; }
        if (rc != 0) { break; }
        if (t == SPM_CONTROL || t == SPM_UNKNOWN || t == SPM_SENTINEL) {
            const char* s = spm_special_text(m, id, mode);
            rc = spm_buf_append(&out, s, strlen(s));
            bos_ws_seen = 0;
        } else {
            rc = spm_decode_piece(m, p, m->piece_len[id], at_bos, &out, &bos_ws_seen);
        }
    }
    if (rc == 0) { rc = spm_flush_bytes(&out, (const uint8_t*)bytes.data, bytes.len); }
    free(bytes.data);
    if (rc == 0 && m->has_denorm) {
        SpmBuf d = {NULL, 0, 0};
        rc = spm_normalize_with(m, &m->denorm, 0, out.data, out.len, &d);
        free(out.data);
        out = d;
    }
    if (rc != 0) {
        free(out.data);
        spm_errf(err, errlen, "spm_decode: out of memory");
        return NULL;
    }
    if (out_len != NULL) { *out_len = out.len; }
    return out.data;
}

#endif  // TOKENIZER_SPM_H
