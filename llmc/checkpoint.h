// checkpoint.h — the native checkpoint: config + flat parameters (+ optimizer state), fast to save/load.
//
// Layout (little-endian), version 4:
//   header int64[64]: [0] magic 0x54354350 ("PC5T"), [1] version, [2] n floats per buffer,
//     [3] has optimizer state (0/1), [4] optimizer step, [5..21] config (see ckpt_pack_config),
//     [22..28] training state (CkptTrainState: seed, steps run, data position, batch geometry),
//     [29] CRC-32 of every byte after the header, [30] scale_out (the decoder output scaling;
//     versions 1 and 2 had none: it went with `tied`, as in transformers 4),
//     [31] optimizer (OptimKind: 0 AdamW, 1 Adafactor), [32] Adafactor state floats, [33] Adafactor's
//     state holds M (beta1 set) — versions 1 to 3 had none of [31..33]: their state is AdamW's
//   params float[n]  — in the order of llmc/t5.h's layout table
//   optimizer state, only when [3] = 1:
//     AdamW:     m float[n], v float[n]
//     Adafactor: float[[32]], the slices' states of llmc/optim.h concatenated ([32] must equal that
//                length for the stored config and [33])
// The file size must equal exactly 512 + 4n + 4·(state floats); n must equal the layout's total for
// the stored config; the checksum must match. Written durably (llmc/fileio.h: PATH.tmp, fsync, rename,
// fsync of the directory), after a check that the disk has room for the whole file.
// Versions 1 (no training state, no checksum), 2 (no [30]) and 3 (AdamW only) are still read.
#ifndef T5_CHECKPOINT_H
#define T5_CHECKPOINT_H

#include <stdio.h>    // defines: FILE, fread, snprintf
#include <stdint.h>   // defines: int64_t
#include <stdlib.h>   // defines: malloc, free
#include <string.h>   // defines: memcpy
#include "t5.h"       // defines: T5Config, T5Layout, t5_layout, t5_config_check
#include "fileio.h"   // defines: file_size_of, AtomicFile, disk_space_check_for
#include "crc32.h"    // defines: Crc32Table, crc32_update
#include "optim.h"    // defines: OPTIM_ADAMW, OPTIM_ADAFACTOR, t5_adafactor_floats

#define CKPT_MAGIC 0x54354350LL
#define CKPT_VERSION 4
#define CKPT_HEADER_INTS 64

// what a training run needs besides the weights to continue exactly where it stopped: the data
// position (epoch, next global batch) and the settings that give that position its meaning
typedef struct {
    int64_t seed;                  // --seed: data order and dropout masks derive from it and the step
    int64_t run_step;              // steps run (≥ optimizer updates: a non-finite step is skipped)
    int64_t epoch, batch;          // the data loader's next batch
    int64_t batch_size, grad_accum, num_ranks;
} CkptTrainState;
static_assert(sizeof(CkptTrainState) == 7 * sizeof(int64_t), "the header holds 7 training-state slots [22..28]");

// the optimizer state of a checkpoint: AdamW's m, v (n each) or Adafactor's flat state (af_n)
typedef struct {
    int kind;             // OptimKind
    int af_beta1;         // Adafactor: its state holds M
    const float *m, *v;   // AdamW
    const float* af;      // Adafactor
    int64_t af_n;
} CkptOpt;

// floats of optimizer state o holds for n parameters (0: none)
static inline int64_t ckpt_opt_floats(const CkptOpt* o, int64_t n) {
    if (!o) return 0;
    if (o->kind == OPTIM_ADAFACTOR) return o->af ? o->af_n : 0;
    return o->m && o->v ? 2 * n : 0;
}

typedef struct {
    T5Config config;
    int64_t n;        // floats per buffer
    int has_opt;
    int opt_kind, af_beta1; // OptimKind of the state (AdamW before version 4); Adafactor: M in it
    int64_t opt_floats;     // floats of optimizer state in the file (0 without)
    int64_t step;
    CkptTrainState train; // zeros in version 1 files
    int64_t crc;          // stored checksum, -1 in version 1 files
} CkptInfo;

static inline int64_t ckpt_float_bits(float x) { int32_t b; memcpy(&b, &x, 4); return b; }
static inline float ckpt_bits_float(int64_t v) { int32_t b = (int32_t)v; float x; memcpy(&x, &b, 4); return x; }

static inline void ckpt_pack_config(int64_t* h, const T5Config* c) {
    int64_t v[] = { c->vocab_size, c->d_model, c->d_kv, c->num_heads, c->d_ff, c->num_layers, c->num_decoder_layers,
                    c->num_buckets, c->max_distance, ckpt_float_bits(c->eps), ckpt_float_bits(c->dropout), c->act,
                    c->gated, c->tied, c->pad_id, c->eos_id, c->decoder_start_id };
    memcpy(h + 5, v, sizeof(v));
    h[30] = c->scale_out;
}

// version: the file's; before 3 the output scaling went with tying
static inline void ckpt_unpack_config(const int64_t* h, int64_t version, T5Config* c) {
    const int64_t* v = h + 5;
    *c = (T5Config){ .vocab_size = (int)v[0], .d_model = (int)v[1], .d_kv = (int)v[2], .num_heads = (int)v[3],
                     .d_ff = (int)v[4], .num_layers = (int)v[5], .num_decoder_layers = (int)v[6], .num_buckets = (int)v[7],
                     .max_distance = (int)v[8], .eps = ckpt_bits_float(v[9]), .dropout = ckpt_bits_float(v[10]),
                     .act = (T5Act)v[11], .gated = (int)v[12], .tied = (int)v[13],
                     .scale_out = version >= 3 ? (int)h[30] : (int)v[13],
                     .pad_id = (int)v[14], .eos_id = (int)v[15], .decoder_start_id = (int)v[16] };
}

// the optimizer's three header slots (kind, Adafactor's state floats, Adafactor's M) at h, when nopt > 0
static inline void ckpt_pack_opt(int64_t* h, const CkptOpt* opt, int64_t nopt) {
    if (!nopt) return;
    h[0] = opt->kind;
    h[1] = opt->kind == OPTIM_ADAFACTOR ? opt->af_n : 0;
    h[2] = opt->kind == OPTIM_ADAFACTOR && opt->af_beta1;
}

// a checkpoint file of either kind (this one, and lora.h's adapter checkpoint): the header h (hints
// int64), then the weights w[n], then the optimizer's buffers (AdamW: m[n], v[n]; Adafactor: af[af_n]).
// h[crc_at] gets the CRC-32 of everything after the header. Returns once the file is durable
// (fileio.h), or -1 with a message and PATH untouched (a full disk is found up front)
static inline int ckpt_write_file(const char* path, int64_t* h, int hints, int crc_at, const float* w, int64_t n,
                                  const CkptOpt* opt, int64_t nopt, char* err, size_t errlen) {
    // the buffers after the header, in file order
    const float* bufs[3] = { w, NULL, NULL };
    int64_t lens[3] = { n, 0, 0 };
    int nb = 1;
    if (nopt && opt->kind == OPTIM_ADAFACTOR) { bufs[1] = opt->af; lens[1] = opt->af_n; nb = 2; }
    else if (nopt) { bufs[1] = opt->m; bufs[2] = opt->v; lens[1] = lens[2] = n; nb = 3; }
    Crc32Table T;
    crc32_table_init(&T);
    uint32_t crc = 0;
    for (int i = 0; i < nb; i++) crc = crc32_update(&T, crc, bufs[i], (size_t)lens[i] * sizeof(float));
    h[crc_at] = crc;
    size_t hbytes = (size_t)hints * sizeof(int64_t);
    uint64_t bytes = hbytes + (uint64_t)(n + nopt) * sizeof(float);
    AtomicFile a;
    if (mkdir_parent(path, err, errlen) || disk_space_check_for(path, bytes, err, errlen) ||
        atomic_open(&a, path, err, errlen)) return -1;
    int ok = atomic_write(&a, h, hbytes, err, errlen) == 0;
    for (int i = 0; ok && i < nb; i++) ok = atomic_write(&a, bufs[i], (size_t)lens[i] * sizeof(float), err, errlen) == 0;
    return atomic_close(&a, ok, err, errlen);
}

// opt may be NULL or hold no buffers (no optimizer state saved); ts may be NULL (no training state). Returns
// once the file is durable, or -1 with a message and PATH untouched
static inline int ckpt_save_opt(const char* path, const T5Config* c, const float* params, const CkptOpt* opt, int64_t n,
                                int64_t step, const CkptTrainState* ts, char* err, size_t errlen) {
    int64_t h[CKPT_HEADER_INTS] = {0};
    int64_t nopt = ckpt_opt_floats(opt, n);
    h[0] = CKPT_MAGIC; h[1] = CKPT_VERSION; h[2] = n; h[3] = nopt > 0; h[4] = step;
    ckpt_pack_config(h, c);
    if (ts) memcpy(h + 22, ts, sizeof(*ts));
    ckpt_pack_opt(h + 31, opt, nopt);
    return ckpt_write_file(path, h, CKPT_HEADER_INTS, 29, params, n, opt, nopt, err, errlen);
}

// AdamW's state (m and v may be NULL: none saved)
static inline int ckpt_save(const char* path, const T5Config* c, const float* params, const float* m, const float* v,
                            int64_t n, int64_t step, const CkptTrainState* ts, char* err, size_t errlen) {
    CkptOpt o = { OPTIM_ADAMW, 0, m, v, NULL, 0 };
    return ckpt_save_opt(path, c, params, &o, n, step, ts, err, errlen);
}

static inline int ckpt_fail(FILE* f, char* err, size_t errlen, const char* path, const char* what) {
    snprintf(err, errlen, "%s: %s", path, what);
    if (f) fclose(f);
    return -1;
}

// reads and checks the header; leaves the file positioned at the parameters
static inline int ckpt_read_info(FILE* f, const char* path, CkptInfo* info, char* err, size_t errlen) {
    int64_t size = file_size_of(path, err, errlen);
    if (size < 0) return -1;
    int64_t h[CKPT_HEADER_INTS];
    if (size < (int64_t)sizeof(h) || fread(h, sizeof(h), 1, f) != 1) return ckpt_fail(NULL, err, errlen, path, "file too short for a checkpoint header");
    if (h[0] != CKPT_MAGIC) return ckpt_fail(NULL, err, errlen, path, "not a t5.c checkpoint (bad magic)");
    if (h[1] < 1 || h[1] > CKPT_VERSION) return ckpt_fail(NULL, err, errlen, path, "unsupported checkpoint version");
    if (h[3] != 0 && h[3] != 1) return ckpt_fail(NULL, err, errlen, path, "corrupted header (optimizer flag)");
    ckpt_unpack_config(h, h[1], &info->config);
    const char* bad = t5_config_check(&info->config);
    if (bad) { snprintf(err, errlen, "%s: invalid model config in header: %s", path, bad); return -1; }
    T5Layout L;
    t5_layout(&info->config, &L);
    if (h[2] != (int64_t)L.total) return ckpt_fail(NULL, err, errlen, path, "parameter count does not match the stored config");
    info->opt_kind = h[1] >= 4 ? (int)h[31] : OPTIM_ADAMW;
    info->af_beta1 = h[1] >= 4 ? (int)h[33] : 0;
    if (info->opt_kind != OPTIM_ADAMW && info->opt_kind != OPTIM_ADAFACTOR) return ckpt_fail(NULL, err, errlen, path, "corrupted header (optimizer kind)");
    if (h[1] >= 4 && h[3] && info->opt_kind == OPTIM_ADAFACTOR &&
        (h[33] < 0 || h[33] > 1 || h[32] != (int64_t)t5_adafactor_floats(&L, (int)h[33])))
        return ckpt_fail(NULL, err, errlen, path, "Adafactor state length does not match the stored config");
    info->opt_floats = !h[3] ? 0 : info->opt_kind == OPTIM_ADAFACTOR ? h[32] : 2 * h[2];
    if (size != (int64_t)sizeof(h) + 4 * (h[2] + info->opt_floats)) return ckpt_fail(NULL, err, errlen, path, "file size does not match the header (truncated or padded)");
    info->n = h[2]; info->has_opt = (int)h[3]; info->step = h[4];
    memset(&info->train, 0, sizeof(info->train));
    if (h[1] >= 2) memcpy(&info->train, h + 22, sizeof(info->train));
    info->crc = h[1] >= 2 ? h[29] : -1;
    return 0;
}

// loads a checkpoint into freshly malloc'd buffers: AdamW state into *m, *v, Adafactor's into *af (af NULL:
// an Adafactor state is read past and dropped, has_opt then 0); what the file lacks stays NULL
static inline int ckpt_load_opt(const char* path, CkptInfo* info, float** params, float** m, float** v, float** af,
                                char* err, size_t errlen) {
    float* dropped = NULL;
    if (!af) af = &dropped;
    *params = NULL; *m = NULL; *v = NULL; *af = NULL;
    FILE* f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open", path); return -1; }
    if (ckpt_read_info(f, path, info, err, errlen)) { fclose(f); return -1; }
    size_t n = (size_t)info->n;
    float** dst[3] = { params, m, v };
    size_t lens[3] = { n, n, n };
    int bufs = 1;
    if (info->has_opt && info->opt_kind == OPTIM_ADAFACTOR) { dst[1] = af; lens[1] = (size_t)info->opt_floats; bufs = 2; }
    else if (info->has_opt) bufs = 3;
    Crc32Table T;
    crc32_table_init(&T);
    uint32_t crc = 0;
    for (int i = 0; i < bufs; i++) {
        *dst[i] = (float*)malloc(lens[i] * sizeof(float) + 1);
        if (!*dst[i] || fread(*dst[i], sizeof(float), lens[i], f) != lens[i]) {
            for (int j = 0; j <= i; j++) { free(*dst[j]); *dst[j] = NULL; }
            return ckpt_fail(f, err, errlen, path, "cannot read the parameter data");
        }
        crc = crc32_update(&T, crc, *dst[i], lens[i] * sizeof(float));
    }
    fclose(f);
    if (info->crc >= 0 && (int64_t)crc != info->crc) {
        for (int i = 0; i < bufs; i++) { free(*dst[i]); *dst[i] = NULL; }
        return ckpt_fail(NULL, err, errlen, path, "checksum mismatch (the checkpoint is corrupted)");
    }
    if (dropped) { free(dropped); info->has_opt = 0; info->opt_floats = 0; }
    return 0;
}

// the weights and AdamW's state (*m, *v NULL without it, or when the state is Adafactor's: has_opt 0 then)
static inline int ckpt_load(const char* path, CkptInfo* info, float** params, float** m, float** v, char* err, size_t errlen) {
    return ckpt_load_opt(path, info, params, m, v, NULL, err, errlen);
}

#endif // T5_CHECKPOINT_H
