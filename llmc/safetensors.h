/*
llmc/safetensors.h — read and write the safetensors format, header-only.

defines: StDtype, StTensor, StFile, st_open, st_find, st_metadata, st_read_f32, st_read_i32, st_close,
         StSet, stset_open_dir, stset_find, stset_close, StWriteTensor, st_write_f32

The format (https://github.com/huggingface/safetensors):
    bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
    bytes [8, 8+N)      the header: a UTF-8 JSON object
                          "<tensor name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
                          "__metadata__":  {"<key>": "<value>", ...}        (optional, strings only)
    bytes [8+N, EOF)    the data; a tensor's bytes are [8+N+begin, 8+N+end), little-endian, row-major
Writers (the Python library, and st_write_f32 here) pad the header with spaces to a multiple of 8.

Loaders return 0 on success or nonzero with a message in err that names the file and the problem;
they never exit or abort. Everything read from the file is checked before use, so a corrupt or
hostile file gets an error, not a crash or an oversized allocation:
    file shorter than 8 bytes; N > 100 MB (the reference implementation's limit) or N > file size - 8;
    header not JSON / not an object / with a duplicate key; tensor entry not an object; dtype, shape or
    data_offsets missing or of the wrong type; a dim that is negative, fractional or above 2^53;
    more than 8 dims; numel * dtype size overflowing int64; end < begin; end - begin != numel * size;
    data running past the end of the file; __metadata__ not an object of strings.
Dtypes: F32, F16, BF16, I32, I64 are read; F64, I8, U8, I16, U16, U32, U64, BOOL, F8_E4M3, F8_E5M2
are accepted at open as ST_OTHER (listed, sizes checked) and refused by st_read_*; any other dtype
is an error at open.
Offsets are 64-bit (fseeko/ftello): on 32-bit systems compile with -D_FILE_OFFSET_BITS=64.
Reads convert through a 32 KiB stack buffer, so a tensor needs no memory beyond its output.
*/
#ifndef LLMC_SAFETENSORS_H
#define LLMC_SAFETENSORS_H

#include <inttypes.h>   // PRIu64, PRId64
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>  // off_t
#include <unistd.h>     // fsync, access, close
#include "json.h"       // defines: json_parse, json_free, json_find, json_read_file, json_utf8_len
#include "fileio.h"     // defines: fsync_parent_dir, disk_space_check_for

#define ST_MAX_HEADER_BYTES 100000000ull   // 100 MB, as in the reference Rust implementation
#define ST_MAX_DIMS 8
#define ST_MAX_EXACT_INT 9007199254740992.0 // 2^53: JSON numbers above this are not exact integers
#define ST_CHUNK_BYTES (1 << 15)           // conversion buffer for st_read_*

// fseeko/ftello take off_t; this fails to compile when off_t cannot hold a 64-bit offset
typedef char st_off_t_must_be_64_bit[sizeof(off_t) >= 8 ? 1 : -1];

typedef enum { ST_F32, ST_F16, ST_BF16, ST_I32, ST_I64, ST_OTHER } StDtype;

typedef struct {
    char* name;
    StDtype dtype;
    int ndim;                  // 0 (a scalar) .. 8
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;             // product of shape (1 for a scalar)
    uint64_t begin, end;       // absolute byte offsets in the file
} StTensor;

typedef struct {
    char* path;
    FILE* f;
    uint64_t file_size;
    int n;                     // tensors, in header order
    StTensor* tensors;
    int nmeta;                 // __metadata__ pairs, in header order
    char** meta_keys;
    char** meta_values;
} StFile;

// ----------------------------------------------------------------------------
// small helpers: errors, strings, little-endian bytes, dtypes

#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
static inline int st_fail(char* err, size_t errlen, const char* fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static inline char* st_strdup(const char* s) {
    size_t n = strlen(s) + 1;
    char* d = (char*)malloc(n);
    if (d != NULL) { memcpy(d, s, n); }
    return d;
}

// "dir" + "/" + "name" (no doubled slash), malloc'd; NULL when out of memory
static inline char* st_path_join(const char* dir, const char* name) {
    size_t a = strlen(dir), b = strlen(name);
    char* s = (char*)malloc(a + b + 2);
    if (s == NULL) { return NULL; }
    memcpy(s, dir, a);
    if (a > 0 && dir[a - 1] != '/') { s[a++] = '/'; }
    memcpy(s + a, name, b + 1);
    return s;
}

static inline uint16_t st_le16(const unsigned char* b) { return (uint16_t)(b[0] | (b[1] << 8)); }
static inline uint32_t st_le32(const unsigned char* b) {
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static inline uint64_t st_le64(const unsigned char* b) {
    return (uint64_t)st_le32(b) | ((uint64_t)st_le32(b + 4) << 32);
}
static inline void st_put_le64(unsigned char* b, uint64_t x) {
    for (int i = 0; i < 8; i++) { b[i] = (unsigned char)(x >> (8 * i)); }
}
static inline int st_host_is_little_endian(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}
// reverses each 4-byte word in place (F32 / I32 on a big-endian host)
static inline void st_swap32(void* data, size_t n) {
    unsigned char* b = (unsigned char*)data;
    for (size_t i = 0; i < n; i++, b += 4) {
        unsigned char t0 = b[0], t1 = b[1];
        b[0] = b[3]; b[1] = b[2]; b[2] = t1; b[3] = t0;
    }
}

static inline float st_bits_to_f32(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// IEEE binary16: sign 1 | exponent 5 (bias 15) | mantissa 10. Every F16 value is exact in F32:
//   exp 31        -> inf / nan (mantissa kept as the top of the F32 payload)
//   exp 1..30     -> rebias the exponent (+112 = 127 - 15), widen the mantissa by 13 bits
//   exp 0, m != 0 -> subnormal m * 2^-24: shift m up to the implicit bit, lower the exponent to match
static inline float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0x1F) { return st_bits_to_f32(sign | 0x7F800000u | (mant << 13)); }
    if (exp != 0) { return st_bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13)); }
    if (mant == 0) { return st_bits_to_f32(sign); }
    uint32_t shift = 0;
    while ((mant & 0x400u) == 0) { mant <<= 1; shift++; }
    return st_bits_to_f32(sign | ((113 - shift) << 23) | ((mant & 0x3FFu) << 13));
}

// bfloat16 is the top half of an F32: sign 1 | exponent 8 | mantissa 7
static inline float st_bf16_to_f32(uint16_t h) { return st_bits_to_f32((uint32_t)h << 16); }

// dtype name -> enum and element size in bytes; 0 if the name is unknown
static inline int st_dtype_parse(const char* s, StDtype* dtype, int* size) {
    static const struct { const char* name; StDtype dtype; int size; } table[] = {
        {"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2}, {"I32", ST_I32, 4},
        {"I64", ST_I64, 8}, {"F64", ST_OTHER, 8}, {"I8", ST_OTHER, 1}, {"U8", ST_OTHER, 1},
        {"I16", ST_OTHER, 2}, {"U16", ST_OTHER, 2}, {"U32", ST_OTHER, 4}, {"U64", ST_OTHER, 8},
        {"BOOL", ST_OTHER, 1}, {"F8_E4M3", ST_OTHER, 1}, {"F8_E5M2", ST_OTHER, 1},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(s, table[i].name) == 0) {
            *dtype = table[i].dtype;
            *size = table[i].size;
            return 1;
        }
    }
    return 0;
}

static inline const char* st_dtype_name(StDtype d) {
    switch (d) {
        case ST_F32: return "F32";
        case ST_F16: return "F16";
        case ST_BF16: return "BF16";
        case ST_I32: return "I32";
        case ST_I64: return "I64";
        default: return "other (not F32/F16/BF16/I32/I64)";
    }
}

// a JSON number that is an exact non-negative integer <= 2^53
static inline int st_json_uint(const JsonValue* v, uint64_t* out) {
    if (v == NULL || v->type != JSON_NUMBER) { return 0; }
    double x = v->number;
    if (!(x >= 0.0 && x <= ST_MAX_EXACT_INT) || floor(x) != x) { return 0; }
    *out = (uint64_t)x;
    return 1;
}

static inline int st_cmp_cstr(const void* a, const void* b) {
    return strcmp(*(const char* const*)a, *(const char* const*)b);
}

// the first name that occurs twice in names[0, n) (sorted copy), or NULL; *oom set if malloc fails
static inline const char* st_find_duplicate(const char* const* names, size_t n, int* oom) {
    *oom = 0;
    if (n < 2) { return NULL; }
    const char** sorted = (const char**)malloc(n * sizeof(char*));
    if (sorted == NULL) { *oom = 1; return NULL; }
    memcpy(sorted, names, n * sizeof(char*));
    qsort(sorted, n, sizeof(char*), st_cmp_cstr);
    const char* dup = NULL;
    for (size_t i = 1; i < n && dup == NULL; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) { dup = sorted[i]; }
    }
    free(sorted);
    return dup;
}

// every object key must be unique (JSON allows repeats; the safetensors header must not have them)
static inline int st_check_unique_keys(const JsonValue* obj, const char* where, const char* path,
                                       char* err, size_t errlen) {
    int oom;
    const char* dup = st_find_duplicate((const char* const*)obj->keys, obj->count, &oom);
    if (oom) { return st_fail(err, errlen, "%s: out of memory", path); }
    if (dup != NULL) { return st_fail(err, errlen, "%s: duplicate key '%s' in %s", path, dup, where); }
    return 0;
}

// ----------------------------------------------------------------------------
// reading: open = check size, read + parse the header, validate every entry

static inline void st_close(StFile* st) {
    if (st == NULL) { return; }
    if (st->f != NULL) { fclose(st->f); }
    for (int i = 0; i < st->n; i++) { free(st->tensors[i].name); }
    for (int i = 0; i < st->nmeta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->path);
    memset(st, 0, sizeof(*st));
}

static inline int st_open_file(StFile* st, const char* path, char* err, size_t errlen) {
    st->path = st_strdup(path);
    if (st->path == NULL) { return st_fail(err, errlen, "%s: out of memory", path); }
    st->f = fopen(path, "rb");
    if (st->f == NULL) { return st_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno)); }
    if (fseeko(st->f, 0, SEEK_END) != 0) {
        return st_fail(err, errlen, "%s: cannot seek: %s", path, strerror(errno));
    }
    off_t size = ftello(st->f);
    if (size < 0) { return st_fail(err, errlen, "%s: cannot get the size: %s", path, strerror(errno)); }
    st->file_size = (uint64_t)size;
    return 0;
}

// N from bytes [0, 8), checked against the limit and the file size, then the header parsed as JSON
static inline int st_read_header(StFile* st, JsonValue* root, uint64_t* data_start, char* err, size_t errlen) {
    const char* path = st->path;
    unsigned char len8[8];
    if (st->file_size < 8) {
        return st_fail(err, errlen, "%s: file is %" PRIu64 " bytes, too short for the 8-byte header length",
                       path, st->file_size);
    }
    if (fseeko(st->f, 0, SEEK_SET) != 0 || fread(len8, 1, 8, st->f) != 8) {
        return st_fail(err, errlen, "%s: cannot read the header length", path);
    }
    uint64_t n = st_le64(len8);
    if (n > ST_MAX_HEADER_BYTES) {
        return st_fail(err, errlen, "%s: header length %" PRIu64 " exceeds the 100 MB limit", path, n);
    }
    if (n > st->file_size - 8) {
        return st_fail(err, errlen, "%s: header length %" PRIu64 " is larger than the %" PRIu64
                       " bytes after the length field", path, n, st->file_size - 8);
    }
    char* text = (char*)malloc(n > 0 ? (size_t)n : 1);
    if (text == NULL) { return st_fail(err, errlen, "%s: out of memory for a %" PRIu64 "-byte header", path, n); }
    if (fread(text, 1, (size_t)n, st->f) != (size_t)n) {
        free(text);
        return st_fail(err, errlen, "%s: cannot read the %" PRIu64 "-byte header", path, n);
    }
    char jerr[256];
    int rc = json_parse(text, (size_t)n, root, jerr, sizeof(jerr));
    free(text);
    if (rc != 0) { return st_fail(err, errlen, "%s: header is not valid JSON: %s (counted from the header start)", path, jerr); }
    if (root->type != JSON_OBJECT) { return st_fail(err, errlen, "%s: header is not a JSON object", path); }
    *data_start = 8 + n;
    return 0;
}

// "__metadata__": {"key": "value", ...}, strings only
static inline int st_parse_metadata(StFile* st, const JsonValue* m, char* err, size_t errlen) {
    const char* path = st->path;
    if (m->type != JSON_OBJECT) { return st_fail(err, errlen, "%s: __metadata__ is not an object", path); }
    if (st_check_unique_keys(m, "__metadata__", path, err, errlen) != 0) { return -1; }
    if (m->count > (size_t)INT32_MAX) { return st_fail(err, errlen, "%s: too many metadata entries", path); }
    size_t n = m->count > 0 ? m->count : 1;
    st->meta_keys = (char**)calloc(n, sizeof(char*));
    st->meta_values = (char**)calloc(n, sizeof(char*));
    if (st->meta_keys == NULL || st->meta_values == NULL) { return st_fail(err, errlen, "%s: out of memory", path); }
    for (size_t i = 0; i < m->count; i++) {
        if (m->items[i].type != JSON_STRING) {
            return st_fail(err, errlen, "%s: __metadata__ value for '%s' is not a string", path, m->keys[i]);
        }
        st->meta_keys[i] = st_strdup(m->keys[i]);
        st->meta_values[i] = st_strdup(m->items[i].string);
        st->nmeta = (int)i + 1; // counted before the check so that st_close frees a partial pair
        if (st->meta_keys[i] == NULL || st->meta_values[i] == NULL) {
            return st_fail(err, errlen, "%s: out of memory", path);
        }
    }
    return 0;
}

// "shape": [d0, ...]: at most 8 exact integers in [0, 2^53]; numel = product, checked for overflow
static inline int st_parse_shape(StTensor* t, const JsonValue* shape, const char* path, char* err, size_t errlen) {
    if (shape == NULL || shape->type != JSON_ARRAY) {
        return st_fail(err, errlen, "%s: tensor '%s' has no \"shape\" array", path, t->name);
    }
    if (shape->count > ST_MAX_DIMS) {
        return st_fail(err, errlen, "%s: tensor '%s' has %zu dims, more than %d", path, t->name,
                       shape->count, ST_MAX_DIMS);
    }
    t->ndim = (int)shape->count;
    int overflow = 0, zero = 0;
    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d;
        if (!st_json_uint(&shape->items[i], &d)) {
            return st_fail(err, errlen, "%s: tensor '%s' shape[%d] is not a non-negative integer <= 2^53",
                           path, t->name, i);
        }
        t->shape[i] = (int64_t)d;
        if (d == 0) { zero = 1; }
        else if (numel > INT64_MAX / (int64_t)d) { overflow = 1; }
        else { numel *= (int64_t)d; }
    }
    if (zero) { numel = 0; overflow = 0; }
    if (overflow) { return st_fail(err, errlen, "%s: tensor '%s' has too many elements", path, t->name); }
    t->numel = numel;
    return 0;
}

// "data_offsets": [begin, end] relative to data_start; must span exactly numel * size bytes in the file
static inline int st_parse_offsets(StTensor* t, const JsonValue* offs, int size, uint64_t data_start,
                                   uint64_t file_size, const char* path, char* err, size_t errlen) {
    uint64_t begin, end;
    if (offs == NULL || offs->type != JSON_ARRAY || offs->count != 2 ||
        !st_json_uint(&offs->items[0], &begin) || !st_json_uint(&offs->items[1], &end)) {
        return st_fail(err, errlen, "%s: tensor '%s' has no \"data_offsets\" [begin, end] of two integers",
                       path, t->name);
    }
    if (t->numel > INT64_MAX / size) {
        return st_fail(err, errlen, "%s: tensor '%s' is too large (%" PRId64 " elements)", path, t->name, t->numel);
    }
    uint64_t nbytes = (uint64_t)t->numel * (uint64_t)size;
    if (end < begin) {
        return st_fail(err, errlen, "%s: tensor '%s' data_offsets end %" PRIu64 " < begin %" PRIu64,
                       path, t->name, end, begin);
    }
    if (end - begin != nbytes) {
        return st_fail(err, errlen, "%s: tensor '%s' (%s, %" PRId64 " elements) needs %" PRIu64
                       " bytes but data_offsets span %" PRIu64, path, t->name, st_dtype_name(t->dtype),
                       t->numel, nbytes, end - begin);
    }
    if (end > file_size - data_start) { // data_start <= file_size was checked with the header length
        return st_fail(err, errlen, "%s: tensor '%s' data [%" PRIu64 ", %" PRIu64 ") runs past the end of the"
                       " file (%" PRIu64 " data bytes)", path, t->name, begin, end, file_size - data_start);
    }
    t->begin = data_start + begin;
    t->end = data_start + end;
    return 0;
}

// one "<name>": {"dtype": ..., "shape": [...], "data_offsets": [b, e]} entry (other keys are ignored)
static inline int st_parse_tensor(StFile* st, StTensor* t, const JsonValue* v, uint64_t data_start,
                                  char* err, size_t errlen) {
    const char* path = st->path;
    if (v->type != JSON_OBJECT) { return st_fail(err, errlen, "%s: entry for tensor '%s' is not an object", path, t->name); }
    if (st_check_unique_keys(v, "a tensor entry", path, err, errlen) != 0) { return -1; }
    const JsonValue* dtype = json_find(v, "dtype");
    if (dtype == NULL || dtype->type != JSON_STRING) {
        return st_fail(err, errlen, "%s: tensor '%s' has no \"dtype\" string", path, t->name);
    }
    int size;
    if (!st_dtype_parse(dtype->string, &t->dtype, &size)) {
        return st_fail(err, errlen, "%s: unknown dtype '%s' for tensor '%s'", path, dtype->string, t->name);
    }
    if (st_parse_shape(t, json_find(v, "shape"), path, err, errlen) != 0) { return -1; }
    return st_parse_offsets(t, json_find(v, "data_offsets"), size, data_start, st->file_size, path, err, errlen);
}

static inline int st_parse_entries(StFile* st, const JsonValue* root, uint64_t data_start, char* err, size_t errlen) {
    if (st_check_unique_keys(root, "the header", st->path, err, errlen) != 0) { return -1; }
    if (root->count > (size_t)INT32_MAX) { return st_fail(err, errlen, "%s: too many tensors", st->path); }
    st->tensors = (StTensor*)calloc(root->count > 0 ? root->count : 1, sizeof(StTensor));
    if (st->tensors == NULL) { return st_fail(err, errlen, "%s: out of memory", st->path); }
    for (size_t i = 0; i < root->count; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0) {
            if (st_parse_metadata(st, &root->items[i], err, errlen) != 0) { return -1; }
            continue;
        }
        StTensor* t = &st->tensors[st->n++]; // counted first: st_close frees the name on error
        t->name = st_strdup(root->keys[i]);
        if (t->name == NULL) { return st_fail(err, errlen, "%s: out of memory", st->path); }
        if (st_parse_tensor(st, t, &root->items[i], data_start, err, errlen) != 0) { return -1; }
    }
    return 0;
}

// opens and validates PATH; on failure *st is left empty (st_close on it is harmless)
static inline int st_open(StFile* st, const char* path, char* err, size_t errlen) {
    memset(st, 0, sizeof(*st));
    JsonValue root;
    memset(&root, 0, sizeof(root));
    uint64_t data_start = 0;
    int rc = st_open_file(st, path, err, errlen)
          || st_read_header(st, &root, &data_start, err, errlen)
          || st_parse_entries(st, &root, data_start, err, errlen);
    json_free(&root);
    if (rc != 0) { st_close(st); return -1; }
    return 0;
}

static inline const StTensor* st_find(const StFile* st, const char* name) {
    for (int i = 0; i < st->n; i++) {
        if (strcmp(st->tensors[i].name, name) == 0) { return &st->tensors[i]; }
    }
    return NULL;
}

static inline const char* st_metadata(const StFile* st, const char* key) {
    for (int i = 0; i < st->nmeta; i++) {
        if (strcmp(st->meta_keys[i], key) == 0) { return st->meta_values[i]; }
    }
    return NULL;
}

// seeks to the tensor's first byte, after re-checking that its range lies in this file
static inline int st_seek_tensor(StFile* st, const StTensor* t, char* err, size_t errlen) {
    if (st->f == NULL) { return st_fail(err, errlen, "%s: file is not open", st->path ? st->path : "(null)"); }
    if (t->end < t->begin || t->end > st->file_size || t->numel < 0) {
        return st_fail(err, errlen, "%s: tensor '%s' does not belong to this file", st->path, t->name);
    }
    if (fseeko(st->f, (off_t)t->begin, SEEK_SET) != 0) {
        return st_fail(err, errlen, "%s: cannot seek to tensor '%s': %s", st->path, t->name, strerror(errno));
    }
    return 0;
}

// reads count elements of elsize bytes straight into out (F32 -> float, I32 -> int32)
static inline int st_read_direct(StFile* st, const StTensor* t, void* out, size_t elsize, char* err, size_t errlen) {
    uint64_t nbytes = (uint64_t)t->numel * elsize;
    if (nbytes > (uint64_t)SIZE_MAX) { return st_fail(err, errlen, "%s: tensor '%s' too large for memory", st->path, t->name); }
    if (nbytes == 0) { return 0; } // out may be NULL for an empty tensor
    if (fread(out, 1, (size_t)nbytes, st->f) != (size_t)nbytes) {
        return st_fail(err, errlen, "%s: short read in tensor '%s'", st->path, t->name);
    }
    if (!st_host_is_little_endian()) { st_swap32(out, (size_t)t->numel); }
    return 0;
}

// F32 / F16 / BF16 -> float. F16 and BF16 convert through a stack buffer, ST_CHUNK_BYTES at a time
static inline int st_read_f32(StFile* st, const StTensor* t, float* out, char* err, size_t errlen) {
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
        return st_fail(err, errlen, "%s: tensor '%s' has dtype %s; st_read_f32 reads F32, F16 and BF16 only",
                       st->path, t->name, st_dtype_name(t->dtype));
    }
    if (st_seek_tensor(st, t, err, errlen) != 0) { return -1; }
    if (t->dtype == ST_F32) { return st_read_direct(st, t, out, 4, err, errlen); }
    unsigned char buf[ST_CHUNK_BYTES];
    uint64_t done = 0, total = (uint64_t)t->numel;
    while (done < total) {
        size_t n = total - done < ST_CHUNK_BYTES / 2 ? (size_t)(total - done) : ST_CHUNK_BYTES / 2;
        if (fread(buf, 2, n, st->f) != n) {
            return st_fail(err, errlen, "%s: short read in tensor '%s'", st->path, t->name);
        }
        for (size_t i = 0; i < n; i++) {
            uint16_t h = st_le16(buf + 2 * i);
            out[done + i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
        done += n;
    }
    return 0;
}

// I32, or I64 narrowed to int32 with a range check (token ids, lengths)
static inline int st_read_i32(StFile* st, const StTensor* t, int32_t* out, char* err, size_t errlen) {
    if (t->dtype != ST_I32 && t->dtype != ST_I64) {
        return st_fail(err, errlen, "%s: tensor '%s' has dtype %s; st_read_i32 reads I32 and I64 only",
                       st->path, t->name, st_dtype_name(t->dtype));
    }
    if (st_seek_tensor(st, t, err, errlen) != 0) { return -1; }
    if (t->dtype == ST_I32) { return st_read_direct(st, t, out, 4, err, errlen); }
    unsigned char buf[ST_CHUNK_BYTES];
    uint64_t done = 0, total = (uint64_t)t->numel;
    while (done < total) {
        size_t n = total - done < ST_CHUNK_BYTES / 8 ? (size_t)(total - done) : ST_CHUNK_BYTES / 8;
        if (fread(buf, 8, n, st->f) != n) {
            return st_fail(err, errlen, "%s: short read in tensor '%s'", st->path, t->name);
        }
        for (size_t i = 0; i < n; i++) {
            int64_t x = (int64_t)st_le64(buf + 8 * i);
            if (x < INT32_MIN || x > INT32_MAX) {
                return st_fail(err, errlen, "%s: tensor '%s' element %" PRIu64 " = %" PRId64
                               " does not fit in int32", st->path, t->name, done + i, x);
            }
            out[done + i] = (int32_t)x;
        }
        done += n;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// a Hugging Face model directory:
//   DIR/model.safetensors                     one file, or else
//   DIR/model.safetensors.index.json          {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>"}}
//   DIR/<shard file> ...                      e.g. model-00001-of-00002.safetensors
// Every shard named in the index is opened, and every tensor in weight_map must be in its shard.

typedef struct {
    int nfiles;
    StFile* files;
} StSet;

static inline void stset_close(StSet* set) {
    if (set == NULL) { return; }
    for (int i = 0; i < set->nfiles; i++) { st_close(&set->files[i]); }
    free(set->files);
    memset(set, 0, sizeof(*set));
}

// a shard name must be a plain file name in DIR: no '/', not "" / "." / ".."
static inline int st_shard_name_ok(const char* s) {
    return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static inline int stset_open_file(StSet* set, const char* path, const char* index, char* err, size_t errlen) {
    char serr[1024];
    if (st_open(&set->files[set->nfiles], path, serr, sizeof(serr)) != 0) {
        if (index != NULL) { return st_fail(err, errlen, "%s (shard listed in %s)", serr, index); }
        return st_fail(err, errlen, "%s", serr);
    }
    set->nfiles++;
    return 0;
}

// index of shard `name` among the opened files (compared as DIR/name), -1 if not opened
static inline int stset_shard_index(const StSet* set, const char* dir, const char* name) {
    for (int i = 0; i < set->nfiles; i++) {
        char* p = st_path_join(dir, name);
        int same = p != NULL && strcmp(p, set->files[i].path) == 0;
        free(p);
        if (same) { return i; }
    }
    return -1;
}

// opens each distinct shard of weight_map (in order of first mention), then checks every mapping
static inline int stset_open_shards(StSet* set, const char* dir, const JsonValue* wm, const char* index,
                                    char* err, size_t errlen) {
    set->files = (StFile*)calloc(wm->count, sizeof(StFile));
    if (set->files == NULL) { return st_fail(err, errlen, "%s: out of memory", index); }
    for (size_t i = 0; i < wm->count; i++) {
        const JsonValue* v = &wm->items[i];
        if (v->type != JSON_STRING || !st_shard_name_ok(v->string)) {
            return st_fail(err, errlen, "%s: weight_map entry for '%s' is not a plain file name", index, wm->keys[i]);
        }
        if (stset_shard_index(set, dir, v->string) >= 0) { continue; }
        char* path = st_path_join(dir, v->string);
        if (path == NULL) { return st_fail(err, errlen, "%s: out of memory", index); }
        int rc = stset_open_file(set, path, index, err, errlen);
        free(path);
        if (rc != 0) { return -1; }
    }
    for (size_t i = 0; i < wm->count; i++) {
        int k = stset_shard_index(set, dir, wm->items[i].string);
        if (k < 0 || st_find(&set->files[k], wm->keys[i]) == NULL) {
            return st_fail(err, errlen, "%s: tensor '%s' is mapped to %s, which has no such tensor",
                           index, wm->keys[i], wm->items[i].string);
        }
    }
    return 0;
}

static inline int stset_open_index(StSet* set, const char* dir, const char* index, char* err, size_t errlen) {
    JsonValue root;
    if (json_read_file(index, &root, err, errlen) != 0) { return -1; }
    const JsonValue* wm = json_find(&root, "weight_map");
    int rc = 0;
    if (wm == NULL || wm->type != JSON_OBJECT) {
        rc = st_fail(err, errlen, "%s: no \"weight_map\" object", index);
    } else if (wm->count == 0) {
        rc = st_fail(err, errlen, "%s: \"weight_map\" is empty", index);
    } else {
        rc = st_check_unique_keys(wm, "weight_map", index, err, errlen);
        if (rc == 0) { rc = stset_open_shards(set, dir, wm, index, err, errlen); }
    }
    json_free(&root);
    return rc;
}

// DIR/model.safetensors if it exists, else DIR/model.safetensors.index.json and its shards
static inline int stset_open_dir(StSet* set, const char* dir, char* err, size_t errlen) {
    memset(set, 0, sizeof(*set));
    char* single = st_path_join(dir, "model.safetensors");
    char* index = st_path_join(dir, "model.safetensors.index.json");
    int rc;
    if (single == NULL || index == NULL) {
        rc = st_fail(err, errlen, "%s: out of memory", dir);
    } else if (access(single, F_OK) == 0) {
        set->files = (StFile*)calloc(1, sizeof(StFile));
        rc = set->files == NULL ? st_fail(err, errlen, "%s: out of memory", dir)
                                : stset_open_file(set, single, NULL, err, errlen);
    } else if (access(index, F_OK) == 0) {
        rc = stset_open_index(set, dir, index, err, errlen);
    } else {
        rc = st_fail(err, errlen, "%s: neither model.safetensors nor model.safetensors.index.json found", dir);
    }
    free(single);
    free(index);
    if (rc != 0) { stset_close(set); }
    return rc;
}

// the tensor called name in any file of the set (and that file in *file, when file != NULL)
static inline const StTensor* stset_find(StSet* set, const char* name, StFile** file) {
    for (int i = 0; i < set->nfiles; i++) {
        const StTensor* t = st_find(&set->files[i], name);
        if (t != NULL) {
            if (file != NULL) { *file = &set->files[i]; }
            return t;
        }
    }
    if (file != NULL) { *file = NULL; }
    return NULL;
}

// ----------------------------------------------------------------------------
// writing: fp32 data, stored as F32 or as BF16 (rounded to nearest even, as torch's .to(bfloat16)). The header is
//   {"__metadata__":{"format":"pt",<extra pairs>},"<name>":{"dtype":"F32","shape":[...],"data_offsets":[b,e]},...}
// padded with spaces to a multiple of 8; the data follows in the given order, contiguous.
// The file is written to PATH.tmp, fsync'ed, then renamed over PATH, and PATH's directory fsync'ed (llmc/fileio.h):
// a failure leaves PATH as it was. A disk without room for the whole file is refused before a byte is written.

typedef struct {
    const char* name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float* data;         // numel floats; may be NULL when numel == 0
} StWriteTensor;

typedef struct {
    char* p;
    size_t len, cap;
    int oom;
} StBuf;

static inline void st_buf_put(StBuf* b, const char* s, size_t n) {
    if (b->oom) { return; }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) { cap *= 2; }
        char* p = (char*)realloc(b->p, cap);
        if (p == NULL) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void st_buf_puts(StBuf* b, const char* s) { st_buf_put(b, s, strlen(s)); }

static inline void st_buf_u64(StBuf* b, uint64_t x) {
    char s[32];
    snprintf(s, sizeof(s), "%" PRIu64, x);
    st_buf_puts(b, s);
}

// a JSON string literal: '"' and '\' escaped, control characters as \n, \t, ... or \u00XX
static inline void st_buf_json_string(StBuf* b, const char* s) {
    st_buf_put(b, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; st_buf_put(b, esc, 2); }
        else if (c == '\n') { st_buf_put(b, "\\n", 2); }
        else if (c == '\t') { st_buf_put(b, "\\t", 2); }
        else if (c == '\r') { st_buf_put(b, "\\r", 2); }
        else if (c < 0x20) { snprintf(esc, sizeof(esc), "\\u%04x", c); st_buf_put(b, esc, 6); }
        else { st_buf_put(b, (const char*)&c, 1); }
    }
    st_buf_put(b, "\"", 1);
}

static inline int st_utf8_ok(const char* s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = json_utf8_len((const unsigned char*)s + i, n - i);
        if (k == 0) { return 0; }
        i += k;
    }
    return 1;
}

// numel of a tensor to write, -1 on a bad shape or overflow
static inline int64_t st_write_numel(const StWriteTensor* t) {
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) { return -1; }
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) { return -1; }
        if (t->shape[d] == 0) { numel = 0; }
        else if (numel > (INT64_MAX / 4) / t->shape[d]) { return -1; }
        else { numel *= t->shape[d]; }
    }
    return numel;
}

// everything the reader would reject is refused before a byte is written
static inline int st_write_validate(const char* path, const StWriteTensor* ts, int n, const char* const* kv,
                                    int nmeta, char* err, size_t errlen) {
    if (n < 0 || nmeta < 0 || (n > 0 && ts == NULL) || (nmeta > 0 && kv == NULL)) {
        return st_fail(err, errlen, "%s: bad arguments to st_write_f32", path);
    }
    for (int i = 0; i < n; i++) {
        const char* name = ts[i].name;
        if (name == NULL || strcmp(name, "__metadata__") == 0 || !st_utf8_ok(name)) {
            return st_fail(err, errlen, "%s: tensor %d has a missing, reserved or non-UTF-8 name", path, i);
        }
        int64_t numel = st_write_numel(&ts[i]);
        if (numel < 0) { return st_fail(err, errlen, "%s: tensor '%s' has a bad shape", path, name); }
        if (numel > 0 && ts[i].data == NULL) { return st_fail(err, errlen, "%s: tensor '%s' has no data", path, name); }
    }
    for (int i = 0; i < 2 * nmeta; i++) {
        if (kv[i] == NULL || !st_utf8_ok(kv[i]) || (i % 2 == 0 && strcmp(kv[i], "format") == 0)) {
            return st_fail(err, errlen, "%s: metadata entry %d is missing, not UTF-8, or the reserved key "
                           "\"format\"", path, i / 2);
        }
    }
    size_t nnames = (size_t)(n > nmeta ? n : nmeta);
    const char** names = (const char**)malloc((nnames > 0 ? nnames : 1) * sizeof(char*));
    if (names == NULL) { return st_fail(err, errlen, "%s: out of memory", path); }
    for (int i = 0; i < n; i++) { names[i] = ts[i].name; }
    int oom1, oom2;
    const char* dup = st_find_duplicate(names, (size_t)n, &oom1);
    for (int i = 0; i < nmeta; i++) { names[i] = kv[2 * i]; }
    const char* dupk = st_find_duplicate(names, (size_t)nmeta, &oom2);
    free(names);
    if (oom1 || oom2) { return st_fail(err, errlen, "%s: out of memory", path); }
    if (dup != NULL) { return st_fail(err, errlen, "%s: duplicate tensor name '%s'", path, dup); }
    if (dupk != NULL) { return st_fail(err, errlen, "%s: duplicate metadata key '%s'", path, dupk); }
    return 0;
}

// fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN
static inline uint16_t st_f32_to_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) { return (uint16_t)((b >> 16) | 0x40u); }
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

// the JSON header, padded with spaces to a multiple of 8; dtype ST_F32 or ST_BF16
static inline void st_build_header(StBuf* b, const StWriteTensor* ts, int n, const char* const* kv, int nmeta, StDtype dtype) {
    int esize = dtype == ST_BF16 ? 2 : 4;
    st_buf_puts(b, "{\"__metadata__\":{\"format\":\"pt\"");
    for (int i = 0; i < nmeta; i++) {
        st_buf_puts(b, ",");
        st_buf_json_string(b, kv[2 * i]);
        st_buf_puts(b, ":");
        st_buf_json_string(b, kv[2 * i + 1]);
    }
    st_buf_puts(b, "}");
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nbytes = (uint64_t)st_write_numel(&ts[i]) * (uint64_t)esize;
        st_buf_puts(b, ",");
        st_buf_json_string(b, ts[i].name);
        st_buf_puts(b, dtype == ST_BF16 ? ":{\"dtype\":\"BF16\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < ts[i].ndim; d++) {
            if (d > 0) { st_buf_puts(b, ","); }
            st_buf_u64(b, (uint64_t)ts[i].shape[d]);
        }
        st_buf_puts(b, "],\"data_offsets\":[");
        st_buf_u64(b, offset);
        st_buf_puts(b, ",");
        st_buf_u64(b, offset + nbytes);
        st_buf_puts(b, "]}");
        offset += nbytes;
    }
    st_buf_puts(b, "}");
    while (!b->oom && b->len % 8 != 0) { st_buf_puts(b, " "); }
}

// floats as little-endian bytes: straight out on a little-endian host, else swapped through a buffer
static inline int st_write_floats(FILE* f, const float* data, uint64_t numel) {
    if (numel == 0) { return 0; } // data may be NULL
    if (st_host_is_little_endian()) { return fwrite(data, 4, (size_t)numel, f) == (size_t)numel ? 0 : -1; }
    unsigned char buf[ST_CHUNK_BYTES];
    for (uint64_t done = 0; done < numel;) {
        size_t n = numel - done < ST_CHUNK_BYTES / 4 ? (size_t)(numel - done) : ST_CHUNK_BYTES / 4;
        memcpy(buf, data + done, n * 4);
        st_swap32(buf, n);
        if (fwrite(buf, 4, n, f) != n) { return -1; }
        done += n;
    }
    return 0;
}

// floats rounded to bf16, as little-endian 16-bit words, through a buffer
static inline int st_write_bf16(FILE* f, const float* data, uint64_t numel) {
    unsigned char buf[ST_CHUNK_BYTES];
    for (uint64_t done = 0; done < numel;) {
        size_t n = numel - done < ST_CHUNK_BYTES / 2 ? (size_t)(numel - done) : ST_CHUNK_BYTES / 2;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = st_f32_to_bf16(data[done + i]);
            buf[2 * i] = (unsigned char)(h & 0xff);
            buf[2 * i + 1] = (unsigned char)(h >> 8);
        }
        if (fwrite(buf, 2, n, f) != n) { return -1; }
        done += n;
    }
    return 0;
}

static inline int st_write_body(FILE* f, const StBuf* header, const StWriteTensor* ts, int n, StDtype dtype) {
    unsigned char len8[8];
    st_put_le64(len8, header->len);
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(header->p, 1, header->len, f) != header->len) { return -1; }
    for (int i = 0; i < n; i++) {
        uint64_t numel = (uint64_t)st_write_numel(&ts[i]);
        int rc = dtype == ST_BF16 ? st_write_bf16(f, ts[i].data, numel) : st_write_floats(f, ts[i].data, numel);
        if (rc != 0) { return -1; }
    }
    return fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -1;
}

// bytes of the whole file: the 8-byte length, the header, the data
static inline uint64_t st_file_bytes(const StBuf* header, const StWriteTensor* ts, int n, StDtype dtype) {
    uint64_t bytes = 8 + header->len;
    for (int i = 0; i < n; i++) bytes += (uint64_t)st_write_numel(&ts[i]) * (dtype == ST_BF16 ? 2u : 4u);
    return bytes;
}

// PATH.tmp written and fsync'ed, renamed over PATH, PATH's directory fsync'ed (llmc/fileio.h); 0 or -1
static inline int st_publish(const char* path, const char* tmp, const StBuf* header, const StWriteTensor* ts, int n,
                             StDtype dtype, char* err, size_t errlen) {
    FILE* f = fopen(tmp, "wb");
    if (f == NULL) { return st_fail(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno)); }
    int wrc = st_write_body(f, header, ts, n, dtype);
    int saved = errno;
    if (fclose(f) != 0 && wrc == 0) { wrc = -1; saved = errno; }
    if (wrc == 0 && rename(tmp, path) != 0) { wrc = -1; saved = errno; }
    if (wrc != 0) {
        remove(tmp);
        return st_fail(err, errlen, "%s: write failed: %s", path, strerror(saved));
    }
    return fsync_parent_dir(path, err, errlen);
}

// dtype: ST_F32 or ST_BF16 (the data is fp32 either way)
static inline int st_write(const char* path, const StWriteTensor* ts, int n, const char* const* meta_kv,
                           int nmeta, StDtype dtype, char* err, size_t errlen) {
    if (dtype != ST_F32 && dtype != ST_BF16) { return st_fail(err, errlen, "%s: can only write F32 or BF16", path); }
    if (st_write_validate(path, ts, n, meta_kv, nmeta, err, errlen) != 0) { return -1; }
    StBuf header = { NULL, 0, 0, 0 };
    st_build_header(&header, ts, n, meta_kv, nmeta, dtype);
    size_t plen = strlen(path);
    char* tmp = (char*)malloc(plen + 5); // PATH + ".tmp"
    if (header.oom || tmp == NULL) {
        free(header.p);
        free(tmp);
        return st_fail(err, errlen, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int rc = 0;
    if (header.len > ST_MAX_HEADER_BYTES) {
        rc = st_fail(err, errlen, "%s: header would be %zu bytes, over the 100 MB limit", path, header.len);
    } else if (disk_space_check_for(path, st_file_bytes(&header, ts, n, dtype), err, errlen) == 0) {
        rc = st_publish(path, tmp, &header, ts, n, dtype, err, errlen);
    } else {
        rc = -1;
    }
    free(header.p);
    free(tmp);
    return rc;
}

static inline int st_write_f32(const char* path, const StWriteTensor* ts, int n, const char* const* meta_kv,
                               int nmeta, char* err, size_t errlen) {
    return st_write(path, ts, n, meta_kv, nmeta, ST_F32, err, errlen);
}

#endif // LLMC_SAFETENSORS_H
