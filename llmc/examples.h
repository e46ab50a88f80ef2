// examples.h — the pre-tokenized example file: what prepro writes and the trainers read.
//
// Layout (little-endian), version 2:
//   header  int64[32]: [0] magic 0x5835544558 ("XET5X"), [1] version = 2, [2] N examples,
//           [3] total source tokens, [4] total target tokens, [5] largest token id,
//           [6] CRC-32 (zlib.crc32) of every byte after the header, rest 0
//           (version 1 is the same without [6]; it is still read, without the checksum test)
//   lengths int32[2N]: (source length, target length) of each example, each in [1, 2^20]
//   tokens  uint32[...]: example by example, its source ids then its target ids (EOS included)
// Everything is checked against the file size before use; token ids are checked against the
// model's vocabulary by the trainer (examples_check_vocab).
#ifndef T5_EXAMPLES_H
#define T5_EXAMPLES_H

#include <stdio.h>    // defines: FILE, fread, snprintf
#include <stdint.h>   // defines: int64_t, int32_t, uint32_t
#include <stdlib.h>   // defines: malloc, free
#include "fileio.h"   // defines: file_size_of, AtomicFile, atomic_open/write/close
#include "crc32.h"    // defines: Crc32Table, crc32_update

#define EXAMPLES_MAGIC 0x5835544558LL
#define EXAMPLES_VERSION 2
#define EXAMPLES_HEADER_INTS 32
#define EXAMPLES_MAX_LEN (1 << 20)

typedef struct {
    int64_t n;          // examples
    int32_t* lens;      // (n, 2) source, target lengths
    int64_t* offset;    // (n) first token of example i in tokens
    uint32_t* tokens;   // all ids
    int64_t max_id;     // largest id in the file (from the header, verified)
} ExampleFile;

static inline void examples_free(ExampleFile* e) {
    free(e->lens); free(e->offset); free(e->tokens);
    e->lens = NULL; e->offset = NULL; e->tokens = NULL; e->n = 0;
}

static inline int examples_fail(ExampleFile* e, FILE* f, char* err, size_t errlen, const char* path, const char* what) {
    snprintf(err, errlen, "%s: %s", path, what);
    if (f) fclose(f);
    examples_free(e);
    return -1;
}

// reads and validates the whole file; returns 0, or -1 with a message naming the file
static inline int examples_open(ExampleFile* e, const char* path, char* err, size_t errlen) {
    e->lens = NULL; e->offset = NULL; e->tokens = NULL; e->n = 0;
    int64_t size = file_size_of(path, err, errlen);
    if (size < 0) return -1;
    int64_t h[EXAMPLES_HEADER_INTS];
    if (size < (int64_t)sizeof(h)) return examples_fail(e, NULL, err, errlen, path, "file too short for the header");
    FILE* f = fopen(path, "rb");
    if (!f) return examples_fail(e, NULL, err, errlen, path, "cannot open");
    if (fread(h, sizeof(h), 1, f) != 1) return examples_fail(e, f, err, errlen, path, "cannot read the header");
    if (h[0] != EXAMPLES_MAGIC) return examples_fail(e, f, err, errlen, path, "not an example file (bad magic)");
    if (h[1] != 1 && h[1] != EXAMPLES_VERSION) return examples_fail(e, f, err, errlen, path, "unsupported example file version");
    int64_t n = h[2], ns = h[3], nt = h[4];
    if (n < 1 || n > (size / 8)) return examples_fail(e, f, err, errlen, path, "example count is not consistent with the file size");
    if (ns < n || nt < n || ns > size / 4 || nt > size / 4) return examples_fail(e, f, err, errlen, path, "token totals are not consistent with the file size");
    if (size != (int64_t)sizeof(h) + 8 * n + 4 * (ns + nt)) return examples_fail(e, f, err, errlen, path, "file size does not match the header (truncated or padded)");
    e->n = n;
    e->lens = (int32_t*)malloc((size_t)n * 2 * sizeof(int32_t));
    e->offset = (int64_t*)malloc((size_t)n * sizeof(int64_t));
    e->tokens = (uint32_t*)malloc((size_t)(ns + nt) * sizeof(uint32_t));
    if (!e->lens || !e->offset || !e->tokens) return examples_fail(e, f, err, errlen, path, "out of memory");
    if (fread(e->lens, sizeof(int32_t), (size_t)n * 2, f) != (size_t)n * 2) return examples_fail(e, f, err, errlen, path, "cannot read the lengths");
    int64_t sum_s = 0, sum_t = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t ls = e->lens[2 * i], lt = e->lens[2 * i + 1];
        if (ls < 1 || lt < 1 || ls > EXAMPLES_MAX_LEN || lt > EXAMPLES_MAX_LEN) return examples_fail(e, f, err, errlen, path, "an example length is out of range [1, 2^20]");
        e->offset[i] = sum_s + sum_t;
        sum_s += ls; sum_t += lt;
    }
    if (sum_s != ns || sum_t != nt) return examples_fail(e, f, err, errlen, path, "lengths do not add up to the header's token totals");
    if (fread(e->tokens, sizeof(uint32_t), (size_t)(ns + nt), f) != (size_t)(ns + nt)) return examples_fail(e, f, err, errlen, path, "cannot read the tokens");
    int64_t max_id = 0;
    for (int64_t i = 0; i < ns + nt; i++) if (e->tokens[i] > max_id) max_id = e->tokens[i];
    if (max_id != h[5]) return examples_fail(e, f, err, errlen, path, "largest token id does not match the header (corrupted tokens)");
    if (h[1] >= 2) {
        Crc32Table T;
        crc32_table_init(&T);
        uint32_t crc = crc32_update(&T, 0, e->lens, (size_t)n * 2 * sizeof(int32_t));
        crc = crc32_update(&T, crc, e->tokens, (size_t)(ns + nt) * sizeof(uint32_t));
        if ((int64_t)crc != h[6]) return examples_fail(e, f, err, errlen, path, "checksum mismatch (the file is corrupted)");
    }
    e->max_id = max_id;
    fclose(f);
    return 0;
}

// every id must index the model's embedding
static inline int examples_check_vocab(const ExampleFile* e, int vocab_size, const char* path, char* err, size_t errlen) {
    if (e->max_id >= vocab_size) {
        snprintf(err, errlen, "%s: token id %lld is outside the model's vocabulary (size %d)", path, (long long)e->max_id, vocab_size);
        return -1;
    }
    return 0;
}

static inline const uint32_t* examples_src(const ExampleFile* e, int64_t i) { return e->tokens + e->offset[i]; }
static inline const uint32_t* examples_tgt(const ExampleFile* e, int64_t i) { return e->tokens + e->offset[i] + e->lens[2 * i]; }

// writes n examples (src[i] of src_len[i] ids, tgt[i] of tgt_len[i] ids) atomically
static inline int examples_write(const char* path, int64_t n, const uint32_t* const* src, const int32_t* src_len,
                                 const uint32_t* const* tgt, const int32_t* tgt_len, char* err, size_t errlen) {
    int64_t h[EXAMPLES_HEADER_INTS] = {0};
    h[0] = EXAMPLES_MAGIC; h[1] = EXAMPLES_VERSION; h[2] = n;
    for (int64_t i = 0; i < n; i++) {
        if (src_len[i] < 1 || tgt_len[i] < 1 || src_len[i] > EXAMPLES_MAX_LEN || tgt_len[i] > EXAMPLES_MAX_LEN) {
            snprintf(err, errlen, "%s: example %lld has a length out of range", path, (long long)i); return -1;
        }
        h[3] += src_len[i]; h[4] += tgt_len[i];
        for (int j = 0; j < src_len[i]; j++) if (src[i][j] > h[5]) h[5] = src[i][j];
        for (int j = 0; j < tgt_len[i]; j++) if (tgt[i][j] > h[5]) h[5] = tgt[i][j];
    }
    Crc32Table T; // the checksum covers the bytes in write order: all lengths, then all tokens
    crc32_table_init(&T);
    uint32_t crc = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t l[2] = { src_len[i], tgt_len[i] };
        crc = crc32_update(&T, crc, l, sizeof(l));
    }
    for (int64_t i = 0; i < n; i++) {
        crc = crc32_update(&T, crc, src[i], (size_t)src_len[i] * 4);
        crc = crc32_update(&T, crc, tgt[i], (size_t)tgt_len[i] * 4);
    }
    h[6] = crc;
    AtomicFile a;
    if (atomic_open(&a, path, err, errlen)) return -1;
    int ok = atomic_write(&a, h, sizeof(h), err, errlen) == 0;
    for (int64_t i = 0; ok && i < n; i++) {
        int32_t l[2] = { src_len[i], tgt_len[i] };
        ok = atomic_write(&a, l, sizeof(l), err, errlen) == 0;
    }
    for (int64_t i = 0; ok && i < n; i++) {
        ok = atomic_write(&a, src[i], (size_t)src_len[i] * 4, err, errlen) == 0 &&
             atomic_write(&a, tgt[i], (size_t)tgt_len[i] * 4, err, errlen) == 0;
    }
    return atomic_close(&a, ok, err, errlen);
}

#endif // T5_EXAMPLES_H
