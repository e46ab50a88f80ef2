/*
tokenizer/t5tok.c — T5's SentencePiece tokenizer on the command line (tokenizer/spm.h).

build:  make build/t5tok
usage:  build/t5tok [--model PATH] [--null] [--pieces] [--stats] encode   < text
        build/t5tok [--model PATH] [--null] [--skip-special] [--stats] decode   < ids

encode: one record per input line (or per NUL-terminated record with --null, for texts that hold
        newlines); prints one line per record: the ids separated by spaces, or with --pieces the
        pieces as sentencepiece's encode(out_type=str) shows them. An empty record gives an empty
        line. No EOS is appended (sentencepiece's default).
decode: one line of space-separated ids per record; prints the text, one line per record (with
        --null each text ends with a NUL byte instead, so texts may hold newlines). Special tokens
        (<pad>, </s>, <unk>, <extra_id_N>) print as their names; --skip-special gives exactly
        sentencepiece's decode (drops them, <unk> -> " ⁇ "). See tokenizer/spm.h.
Exit status: 0 ok, 1 bad model or bad input (the message names the line), 2 bad usage.
*/
#include <errno.h>  // errno, ERANGE (id parsing)
#include <time.h>   // clock_gettime (--stats)
#include "spm.h"    // defines: SpmModel, SpmEncoding, SpmBuf, spm_load, spm_encode, spm_decode, spm_buf_append, ...

#define DEFAULT_MODEL "../shared/data/t5/spiece.model"

typedef enum { CMD_NONE, CMD_ENCODE, CMD_DECODE } Command;

typedef struct {
    const char* model;   // --model
    Command cmd;         // encode | decode
    int null_records;    // --null: records end with NUL instead of newline
    int pieces;          // --pieces (encode)
    SpmSpecial special;  // --skip-special (decode)
    int stats;           // --stats: timing on stderr
} Options;

typedef struct {
    size_t records, bytes, tokens;
    double seconds;  // inside spm_encode / spm_decode only
} Stats;

static void usage(FILE* f) {
    fprintf(f,
            "usage: t5tok [options] encode|decode\n"
            "  encode                read text records from stdin, print token ids (one line per record)\n"
            "  decode                read lines of token ids from stdin, print text (one line per record)\n"
            "  --model PATH          SentencePiece model (default %s)\n"
            "  --null                records end with NUL instead of newline (encode: input; decode: output)\n"
            "  --pieces              encode: print pieces instead of ids (off)\n"
            "  --skip-special        decode: drop <pad>, </s>, sentinels; <unk> as \" \xe2\x81\x87 \" (off: print their names)\n"
            "  --stats               print records, tokens and encode/decode time to stderr (off)\n"
            "  --help                this text\n",
            DEFAULT_MODEL);
}

// returns 0 to run, 1 after --help, -1 on a usage error (message in err)
static int parse_args(int argc, char** argv, Options* o, char* err, size_t errlen) {
    *o = (Options){DEFAULT_MODEL, CMD_NONE, 0, 0, SPM_KEEP_SPECIAL, 0};
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { return 1; }
        if (strcmp(a, "--model") == 0) {
            if (i + 1 >= argc) { return spm_errf(err, errlen, "--model needs a path"); }
            o->model = argv[++i];
        } else if (strcmp(a, "--null") == 0) { o->null_records = 1; }
        else if (strcmp(a, "--pieces") == 0) { o->pieces = 1; }
        else if (strcmp(a, "--skip-special") == 0) { o->special = SPM_SKIP_SPECIAL; }
        else if (strcmp(a, "--stats") == 0) { o->stats = 1; }
        else if (strcmp(a, "encode") == 0 || strcmp(a, "decode") == 0) {
            if (o->cmd != CMD_NONE) { return spm_errf(err, errlen, "give one command, encode or decode"); }
            o->cmd = a[0] == 'e' ? CMD_ENCODE : CMD_DECODE;
        } else {
            return spm_errf(err, errlen, "unknown argument '%s'", a);
        }
    }
    if (o->cmd == CMD_NONE) { return spm_errf(err, errlen, "missing command: encode or decode"); }
    if (o->pieces && o->cmd != CMD_ENCODE) { return spm_errf(err, errlen, "--pieces applies to encode only"); }
    if (o->special == SPM_SKIP_SPECIAL && o->cmd != CMD_DECODE) { return spm_errf(err, errlen, "--skip-special applies to decode only"); }
    return 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int append_int(SpmBuf* b, int v) {
    char s[16];
    int n = snprintf(s, sizeof(s), "%d", v);
    return spm_buf_append(b, s, (size_t)n);
}

// one encoded record as a line: ids (or pieces) separated by spaces
static int format_tokens(const SpmModel* m, const SpmEncoding* e, int pieces, SpmBuf* line) {
    line->len = 0;
    int rc = 0;
    for (size_t i = 0; i < e->n && rc == 0; i++) {
        if (i > 0) { rc = spm_buf_append(line, " ", 1); }
        if (rc == 0 && pieces) {
            size_t n;
            const char* p = spm_encoding_piece(m, e, i, &n);
            rc = spm_buf_append(line, p, n);
        } else if (rc == 0) {
            rc = append_int(line, e->ids[i]);
        }
    }
    return rc == 0 ? spm_buf_append(line, "\n", 1) : -1;
}

static int encode_stream(const SpmModel* m, const Options* o, FILE* in, FILE* out, Stats* st) {
    char* rec = NULL;
    size_t rec_cap = 0;
    SpmEncoding e;
    memset(&e, 0, sizeof(e));
    SpmBuf line = {NULL, 0, 0};
    char err[256];
    int rc = 0;
    ssize_t got;
    while (rc == 0 && (got = getdelim(&rec, &rec_cap, o->null_records ? '\0' : '\n', in)) >= 0) {
        size_t len = (size_t)got;
        if (len > 0 && rec[len - 1] == (o->null_records ? '\0' : '\n')) { len--; }
        double t0 = now_seconds();
        rc = spm_encode(m, rec, len, &e, err, sizeof(err));
        st->seconds += now_seconds() - t0;
        if (rc != 0) {
            fprintf(stderr, "t5tok: record %zu: %s\n", st->records + 1, err);
            break;
        }
        st->records++;
        st->bytes += len;
        st->tokens += e.n;
        rc = format_tokens(m, &e, o->pieces, &line);
        if (rc == 0 && fwrite(line.data, 1, line.len, out) != line.len) { rc = -1; }
        if (rc != 0) { fprintf(stderr, "t5tok: out of memory or cannot write the output\n"); }
    }
    free(rec);
    free(line.data);
    spm_encoding_free(&e);
    return rc;
}

// parse one line of ids ("12 7 1") into *ids; -1 with a message naming the line and the token
static int parse_ids(const SpmModel* m, char* s, size_t lineno, int** ids, size_t* n, size_t* cap) {
    *n = 0;
    for (char* tok = strtok(s, " \t\r"); tok != NULL; tok = strtok(NULL, " \t\r")) {
        char* end;
        errno = 0;
        long v = strtol(tok, &end, 10);
        if (end == tok || *end != '\0') {
            fprintf(stderr, "t5tok: line %zu: '%s' is not a token id\n", lineno, tok);
            return -1;
        }
        if (errno == ERANGE || v < 0 || v >= m->vocab_size) {
            fprintf(stderr, "t5tok: line %zu: token id %s is outside [0, %d)\n", lineno, tok, m->vocab_size);
            return -1;
        }
        if (*n == *cap) {
            size_t c = *cap ? 2 * *cap : 256;
            int* p = (int*)realloc(*ids, c * sizeof(int));
            if (p == NULL) {
                fprintf(stderr, "t5tok: out of memory\n");
                return -1;
            }
            *ids = p;
            *cap = c;
        }
        (*ids)[(*n)++] = (int)v;
    }
    return 0;
}

static int decode_stream(const SpmModel* m, const Options* o, FILE* in, FILE* out, Stats* st) {
    char* rec = NULL;
    size_t rec_cap = 0, n = 0, cap = 0;
    int* ids = NULL;
    char err[256];
    int rc = 0;
    ssize_t got;
    while (rc == 0 && (got = getline(&rec, &rec_cap, in)) >= 0) {
        size_t len = (size_t)got;
        if (len > 0 && rec[len - 1] == '\n') { rec[--len] = '\0'; }
        if (strlen(rec) != len) {  // strtok would silently stop at it
            fprintf(stderr, "t5tok: line %zu: contains a NUL byte\n", st->records + 1);
            rc = -1;
            break;
        }
        rc = parse_ids(m, rec, st->records + 1, &ids, &n, &cap);
        if (rc != 0) { break; }
        size_t text_len = 0;
        double t0 = now_seconds();
        char* text = spm_decode(m, ids, n, o->special, &text_len, err, sizeof(err));
        st->seconds += now_seconds() - t0;
        if (text == NULL) {
            fprintf(stderr, "t5tok: line %zu: %s\n", st->records + 1, err);
            rc = -1;
            break;
        }
        st->records++;
        st->tokens += n;
        st->bytes += text_len;
        char end = o->null_records ? '\0' : '\n';
        if (fwrite(text, 1, text_len, out) != text_len || fwrite(&end, 1, 1, out) != 1) {
            fprintf(stderr, "t5tok: cannot write the output\n");
            rc = -1;
        }
        free(text);
    }
    free(rec);
    free(ids);
    return rc;
}

int main(int argc, char** argv) {
    Options o;
    char err[512];
    int a = parse_args(argc, argv, &o, err, sizeof(err));
    if (a != 0) {
        if (a < 0) { fprintf(stderr, "t5tok: %s\n", err); }
        usage(a < 0 ? stderr : stdout);
        return a < 0 ? 2 : 0;
    }
    SpmModel m;
    if (spm_load(&m, o.model, err, sizeof(err)) != 0) {
        fprintf(stderr, "t5tok: %s\n", err);
        return 1;
    }
    Stats st = {0, 0, 0, 0.0};
    int rc = o.cmd == CMD_ENCODE ? encode_stream(&m, &o, stdin, stdout, &st) : decode_stream(&m, &o, stdin, stdout, &st);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "t5tok: cannot write the output\n");
        rc = -1;
    }
    if (o.stats) {
        fprintf(stderr, "t5tok: %s %zu records, %zu text bytes, %zu tokens in %.3f s (%.1f MB/s of text)\n",
                o.cmd == CMD_ENCODE ? "encoded" : "decoded", st.records, st.bytes, st.tokens, st.seconds,
                st.seconds > 0 ? (double)st.bytes / st.seconds / 1e6 : 0.0);
    }
    spm_free(&m);
    return rc == 0 ? 0 : 1;
}
