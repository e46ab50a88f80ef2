/*
llmc/json.h — a small, strict JSON parser (RFC 8259), header-only.

defines: JsonType, JsonValue, json_parse, json_free, json_find, json_read_file

What "strict" means here:
- exactly one value, optionally surrounded by whitespace (space, \t, \n, \r); anything after it is
  an error ("trailing characters")
- no comments, no trailing commas, no single quotes, no NaN / Infinity, no '+1', '01', '.5', '1.'
- strings: valid UTF-8 only (no overlong forms, no encoded surrogates, nothing above U+10FFFF), no
  raw control characters (< 0x20); escapes are \" \\ \/ \b \f \n \r \t and \uXXXX, where a surrogate
  pair becomes one code point and a lone surrogate is an error
- arrays/objects nested deeper than JSON_MAX_DEPTH (64) are an error
- a number whose magnitude overflows a double (1e999) is an error; underflow rounds toward 0
Deliberate choices:
- \u0000 is rejected: strings are handed out NUL-terminated, and an embedded NUL would silently
  truncate them (a key "a\u0000b" would be found as "a")
- duplicate object keys are kept (RFC 8259 says they SHOULD be unique); json_find returns the first.
  Callers that need uniqueness (the safetensors header) check it themselves.
The parser never reads text[len] or beyond, so the input need not be NUL-terminated.
Numbers go through strtod, which follows LC_NUMERIC: keep the default "C" locale.
All functions are `static inline` so that a translation unit may include this header and use only
part of it without -Wunused-function warnings; the code is also valid C++ (nvcc includes it).
*/
#ifndef LLMC_JSON_H
#define LLMC_JSON_H

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64                    // nesting limit for arrays + objects
#define JSON_MAX_FILE_BYTES (1u << 30)       // json_read_file refuses files above 1 GiB

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue {
    JsonType type;
    int boolean;             // JSON_BOOL
    double number;           // JSON_NUMBER
    char* string;            // JSON_STRING, NUL-terminated, escapes decoded to UTF-8
    size_t count;            // number of items (ARRAY) or members (OBJECT)
    char** keys;             // OBJECT: member names (decoded), count of them
    struct JsonValue* items; // ARRAY items or OBJECT member values, count of them
} JsonValue;

// ----------------------------------------------------------------------------
// parser state: a cursor over text[0, len) and where to write the first error

typedef struct {
    const char* text;
    size_t len;
    size_t pos;   // next byte to read
    int depth;    // arrays + objects currently open
    char* err;
    size_t errlen;
} JsonParser;

static inline int json_parse_value(JsonParser* p, JsonValue* v); // recursion: array/object -> value

// writes "json: <what> at byte <pos>" and returns -1, so that callers can `return json_fail(...)`
static inline int json_fail(JsonParser* p, const char* what) {
    if (p->err != NULL && p->errlen > 0) {
        snprintf(p->err, p->errlen, "json: %s at byte %zu", what, p->pos);
    }
    return -1;
}

// the byte under the cursor, or -1 at the end of the input
static inline int json_peek(const JsonParser* p) {
    return p->pos < p->len ? (unsigned char)p->text[p->pos] : -1;
}

static inline int json_is_digit(int c) { return c >= '0' && c <= '9'; }

// RFC 8259 whitespace: space, tab, line feed, carriage return (nothing else)
static inline void json_skip_ws(JsonParser* p) {
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') { break; }
        p->pos++;
    }
}

// ----------------------------------------------------------------------------
// literals and numbers

// true / false / null: the whole word must be there (within len)
static inline int json_parse_literal(JsonParser* p, const char* word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) {
        return json_fail(p, "invalid literal (expected true, false or null)");
    }
    p->pos += n;
    return 0;
}

// number = [ "-" ] ( "0" / [1-9] *digit ) [ "." 1*digit ] [ ( "e" / "E" ) [ "+" / "-" ] 1*digit ]
static inline int json_scan_number(JsonParser* p) {
    if (json_peek(p) == '-') { p->pos++; }
    if (json_peek(p) == '0') {
        p->pos++;
        if (json_is_digit(json_peek(p))) { return json_fail(p, "leading zeros are not allowed"); }
    } else if (json_is_digit(json_peek(p))) {
        while (json_is_digit(json_peek(p))) { p->pos++; }
    } else {
        return json_fail(p, "invalid number");
    }
    if (json_peek(p) == '.') {
        p->pos++;
        if (!json_is_digit(json_peek(p))) { return json_fail(p, "expected a digit after '.'"); }
        while (json_is_digit(json_peek(p))) { p->pos++; }
    }
    if (json_peek(p) == 'e' || json_peek(p) == 'E') {
        p->pos++;
        if (json_peek(p) == '+' || json_peek(p) == '-') { p->pos++; }
        if (!json_is_digit(json_peek(p))) { return json_fail(p, "expected a digit in the exponent"); }
        while (json_is_digit(json_peek(p))) { p->pos++; }
    }
    return 0;
}

static inline int json_parse_number(JsonParser* p, JsonValue* v) {
    size_t start = p->pos;
    if (json_scan_number(p) != 0) { return -1; }
    // strtod needs a NUL-terminated copy: the input itself may end right after the digits
    size_t n = p->pos - start;
    char small[64];
    char* buf = n < sizeof(small) ? small : (char*)malloc(n + 1);
    if (buf == NULL) { return json_fail(p, "out of memory"); }
    memcpy(buf, p->text + start, n);
    buf[n] = '\0';
    double x = strtod(buf, NULL);
    if (buf != small) { free(buf); }
    if (isinf(x)) {
        p->pos = start;
        return json_fail(p, "number out of range of a double");
    }
    v->type = JSON_NUMBER;
    v->number = x;
    return 0;
}

// ----------------------------------------------------------------------------
// strings

// length of the valid UTF-8 sequence at s[0, n) (RFC 3629, table 3-7 of Unicode), 0 if invalid:
//   U+0080..U+07FF     C2..DF 80..BF
//   U+0800..U+0FFF     E0 A0..BF 80..BF
//   U+1000..U+CFFF     E1..EC 80..BF 80..BF
//   U+D000..U+D7FF     ED 80..9F 80..BF          (ED A0..BF would be a surrogate)
//   U+E000..U+FFFF     EE..EF 80..BF 80..BF
//   U+10000..U+3FFFF   F0 90..BF 80..BF 80..BF
//   U+40000..U+FFFFF   F1..F3 80..BF 80..BF 80..BF
//   U+100000..U+10FFFF F4 80..8F 80..BF 80..BF
static inline size_t json_utf8_len(const unsigned char* s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) { return 1; }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) { len = 2; }
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }
    else if (c >= 0xE1 && c <= 0xEF) { len = 3; }
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) { len = 4; }
    else if (c == 0xF4) { len = 4; hi = 0x8F; }
    else { return 0; }
    if (n < len || s[1] < lo || s[1] > hi) { return 0; }
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) { return 0; }
    }
    return len;
}

// writes code point cp (<= U+10FFFF, not a surrogate) as UTF-8, returns the number of bytes
static inline size_t json_utf8_put(char* out, unsigned long cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// reads the 4 hex digits after "\u" at p->pos (which points at the backslash); end bounds the string
static inline int json_read_hex4(JsonParser* p, size_t end, unsigned long* out) {
    if (end - p->pos < 6 || p->text[p->pos + 1] != 'u') {
        return json_fail(p, "truncated \\u escape");
    }
    unsigned long x = 0;
    for (size_t i = 2; i < 6; i++) {
        char c = p->text[p->pos + i];
        int d = (c >= '0' && c <= '9') ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) { return json_fail(p, "invalid hex digit in \\u escape"); }
        x = x * 16 + (unsigned long)d;
    }
    *out = x;
    return 0;
}

// \uXXXX, or a surrogate pair \uD8xx\uDCxx = U+10000 + ((hi - D800) << 10) + (lo - DC00)
static inline int json_decode_unicode(JsonParser* p, size_t end, char* out, size_t* n) {
    unsigned long cp = 0;
    if (json_read_hex4(p, end, &cp) != 0) { return -1; }
    if (cp == 0) { return json_fail(p, "\\u0000 is not supported (strings are NUL-terminated)"); }
    if (cp >= 0xDC00 && cp <= 0xDFFF) { return json_fail(p, "unpaired low surrogate"); }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        p->pos += 6;
        unsigned long lo = 0;
        if (end - p->pos < 2 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u') {
            return json_fail(p, "high surrogate not followed by a \\u low surrogate");
        }
        if (json_read_hex4(p, end, &lo) != 0) { return -1; }
        if (lo < 0xDC00 || lo > 0xDFFF) {
            return json_fail(p, "high surrogate not followed by a low surrogate");
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    p->pos += 6;
    *n += json_utf8_put(out + *n, cp);
    return 0;
}

// one escape sequence at p->pos (the backslash); appends the decoded bytes to out
static inline int json_decode_escape(JsonParser* p, size_t end, char* out, size_t* n) {
    char c = p->text[p->pos + 1]; // exists: the closing quote scan skipped it
    char d;
    switch (c) {
        case '"': d = '"'; break;
        case '\\': d = '\\'; break;
        case '/': d = '/'; break;
        case 'b': d = '\b'; break;
        case 'f': d = '\f'; break;
        case 'n': d = '\n'; break;
        case 'r': d = '\r'; break;
        case 't': d = '\t'; break;
        case 'u': return json_decode_unicode(p, end, out, n);
        default: return json_fail(p, "invalid escape sequence");
    }
    out[(*n)++] = d;
    p->pos += 2;
    return 0;
}

// finds the closing quote of the string whose opening quote is at p->pos (skipping escaped bytes)
static inline int json_find_string_end(JsonParser* p, size_t* end) {
    size_t i = p->pos + 1;
    while (i < p->len) {
        char c = p->text[i];
        if (c == '"') { *end = i; return 0; }
        i += (c == '\\') ? 2 : 1;
    }
    return json_fail(p, "unterminated string");
}

// string at p->pos (opening quote) -> malloc'd, NUL-terminated, decoded UTF-8 in *out.
// The decoded form is never longer than the raw form, so one allocation of the raw length suffices.
static inline int json_parse_string(JsonParser* p, char** out) {
    size_t end;
    if (json_find_string_end(p, &end) != 0) { return -1; }
    char* s = (char*)malloc(end - p->pos);
    if (s == NULL) { return json_fail(p, "out of memory"); }
    size_t n = 0;
    p->pos++; // opening quote
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->text[p->pos];
        int rc = 0;
        if (c == '\\') {
            rc = json_decode_escape(p, end, s, &n);
        } else if (c < 0x20) {
            rc = json_fail(p, "control character in string (must be escaped)");
        } else {
            size_t k = json_utf8_len((const unsigned char*)p->text + p->pos, end - p->pos);
            if (k == 0) {
                rc = json_fail(p, "invalid UTF-8 in string");
            } else {
                memcpy(s + n, p->text + p->pos, k);
                n += k;
                p->pos += k;
            }
        }
        if (rc != 0) { free(s); return -1; }
    }
    s[n] = '\0';
    p->pos = end + 1; // closing quote
    *out = s;
    return 0;
}

// ----------------------------------------------------------------------------
// arrays and objects
// The tree stays free-able at every step: a slot is zeroed and counted before it is filled, so on
// error json_free(root) releases exactly what was built.

// grows items (and keys, for objects) so that one more member fits; *cap is the current capacity
static inline int json_grow(JsonParser* p, JsonValue* v, size_t* cap) {
    if (v->count < *cap) { return 0; }
    size_t newcap = *cap ? *cap * 2 : 4;
    if (newcap > ((size_t)-1) / sizeof(JsonValue)) { return json_fail(p, "too many items"); }
    if (v->type == JSON_OBJECT) {
        char** keys = (char**)realloc(v->keys, newcap * sizeof(char*));
        if (keys == NULL) { return json_fail(p, "out of memory"); }
        v->keys = keys;
    }
    JsonValue* items = (JsonValue*)realloc(v->items, newcap * sizeof(JsonValue));
    if (items == NULL) { return json_fail(p, "out of memory"); }
    v->items = items;
    *cap = newcap;
    return 0;
}

// after an item: ',' continues (returns 1), the closing bracket ends (returns 0), anything else fails
static inline int json_next_or_close(JsonParser* p, char close, const char* what) {
    json_skip_ws(p);
    int c = json_peek(p);
    if (c == ',') { p->pos++; return 1; }
    if (c == close) { p->pos++; return 0; }
    return json_fail(p, what);
}

static inline int json_enter(JsonParser* p) {
    if (++p->depth > JSON_MAX_DEPTH) { return json_fail(p, "nesting deeper than 64 levels"); }
    p->pos++; // '[' or '{'
    json_skip_ws(p);
    return 0;
}

static inline int json_parse_array(JsonParser* p, JsonValue* v) {
    v->type = JSON_ARRAY;
    if (json_enter(p) != 0) { return -1; }
    size_t cap = 0;
    int more = 1;
    if (json_peek(p) == ']') { p->pos++; more = 0; }
    while (more == 1) {
        if (json_grow(p, v, &cap) != 0) { return -1; }
        JsonValue* item = &v->items[v->count++];
        memset(item, 0, sizeof(*item));
        if (json_parse_value(p, item) != 0) { return -1; }
        more = json_next_or_close(p, ']', "expected ',' or ']' in array");
    }
    p->depth--;
    return more; // 0, or -1 from json_next_or_close
}

static inline int json_parse_member(JsonParser* p, JsonValue* v, size_t* cap) {
    json_skip_ws(p);
    if (json_peek(p) != '"') { return json_fail(p, "expected a string key in object"); }
    if (json_grow(p, v, cap) != 0) { return -1; }
    char* key;
    if (json_parse_string(p, &key) != 0) { return -1; }
    v->keys[v->count] = key;
    JsonValue* item = &v->items[v->count++];
    memset(item, 0, sizeof(*item));
    json_skip_ws(p);
    if (json_peek(p) != ':') { return json_fail(p, "expected ':' after object key"); }
    p->pos++;
    return json_parse_value(p, item);
}

static inline int json_parse_object(JsonParser* p, JsonValue* v) {
    v->type = JSON_OBJECT;
    if (json_enter(p) != 0) { return -1; }
    size_t cap = 0;
    int more = 1;
    if (json_peek(p) == '}') { p->pos++; more = 0; }
    while (more == 1) {
        if (json_parse_member(p, v, &cap) != 0) { return -1; }
        more = json_next_or_close(p, '}', "expected ',' or '}' in object");
    }
    p->depth--;
    return more;
}

static inline int json_parse_value(JsonParser* p, JsonValue* v) {
    json_skip_ws(p);
    int c = json_peek(p);
    switch (c) {
        case -1: return json_fail(p, "unexpected end of input (expected a value)");
        case '{': return json_parse_object(p, v);
        case '[': return json_parse_array(p, v);
        case '"': v->type = JSON_STRING; return json_parse_string(p, &v->string);
        case 't': v->type = JSON_BOOL; v->boolean = 1; return json_parse_literal(p, "true");
        case 'f': v->type = JSON_BOOL; v->boolean = 0; return json_parse_literal(p, "false");
        case 'n': v->type = JSON_NULL; return json_parse_literal(p, "null");
        default:
            if (c == '-' || json_is_digit(c)) { return json_parse_number(p, v); }
            return json_fail(p, "unexpected character (expected a value)");
    }
}

// ----------------------------------------------------------------------------
// public API

// frees everything v owns (not v itself) and leaves it as JSON_NULL
static inline void json_free(JsonValue* v) {
    if (v == NULL) { return; }
    for (size_t i = 0; i < v->count; i++) {
        if (v->keys != NULL) { free(v->keys[i]); }
        if (v->items != NULL) { json_free(&v->items[i]); }
    }
    free(v->keys);
    free(v->items);
    free(v->string);
    memset(v, 0, sizeof(*v));
}

// parses text[0, len) into *out. Returns 0, or nonzero with "json: <problem> at byte <offset>" in err
// (out is then empty: nothing to free, though json_free on it is harmless)
static inline int json_parse(const char* text, size_t len, JsonValue* out, char* err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    JsonParser p = { text, len, 0, 0, err, errlen };
    if (text == NULL && len > 0) { return json_fail(&p, "NULL input"); }
    int rc = json_parse_value(&p, out);
    if (rc == 0) {
        json_skip_ws(&p);
        if (p.pos != p.len) { rc = json_fail(&p, "trailing characters after the JSON value"); }
    }
    if (rc != 0) { json_free(out); }
    return rc;
}

// the value of member `key` of an object (the first one if repeated); NULL if absent or not an object
static inline const JsonValue* json_find(const JsonValue* obj, const char* key) {
    if (obj == NULL || obj->type != JSON_OBJECT) { return NULL; }
    for (size_t i = 0; i < obj->count; i++) {
        if (strcmp(obj->keys[i], key) == 0) { return &obj->items[i]; }
    }
    return NULL;
}

// reads all of f into a malloc'd buffer (*buf, *len); 0 ok, else an errno-style reason in *why
static inline int json_slurp(FILE* f, char** buf, size_t* len, const char** why) {
    size_t cap = 1 << 16, n = 0;
    char* b = (char*)malloc(cap);
    if (b == NULL) { *why = "out of memory"; return -1; }
    for (;;) {
        n += fread(b + n, 1, cap - n, f);
        if (ferror(f)) { free(b); *why = "read error"; return -1; }
        if (n < cap) { break; } // feof
        if (cap >= JSON_MAX_FILE_BYTES) { free(b); *why = "file larger than 1 GiB"; return -1; }
        char* nb = (char*)realloc(b, cap * 2);
        if (nb == NULL) { free(b); *why = "out of memory"; return -1; }
        b = nb;
        cap *= 2;
    }
    *buf = b;
    *len = n;
    return 0;
}

// reads and parses a whole file; errors read "<path>: <problem>"
static inline int json_read_file(const char* path, JsonValue* out, char* err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        if (err != NULL && errlen > 0) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); }
        return -1;
    }
    char* buf = NULL;
    size_t len = 0;
    const char* why = NULL;
    int rc = json_slurp(f, &buf, &len, &why);
    fclose(f);
    if (rc != 0) {
        if (err != NULL && errlen > 0) { snprintf(err, errlen, "%s: %s", path, why); }
        return -1;
    }
    char jerr[256];
    rc = json_parse(buf, len, out, jerr, sizeof(jerr));
    free(buf);
    if (rc != 0) {
        if (err != NULL && errlen > 0) { snprintf(err, errlen, "%s: %s", path, jerr); }
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// writing: a string as a JSON literal (quote and backslash escaped, control characters as \n, \t, \r or \u00XX);
// the text must be UTF-8 (what json_parse reads back as the same text)
static inline void json_put_string(FILE* f, const char* s) {
    fputc('"', f);
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

#endif // LLMC_JSON_H
