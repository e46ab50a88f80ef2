// test_dataloader.c — the data loader (llmc/dataloader.h) and the example file checks, on example
// files written here with random lengths. No model, no PyTorch.
//   make build/test_dataloader && ./build/test_dataloader
// Checks: every example exactly once per epoch (any batch size, ranks, shuffle/bucketing), the same
// order for the same seed and another for another epoch or seed, rank slices disjoint and covering
// the global batch, shift/padding/labels of a batch, exact restore of a position, the padding
// fraction with and without bucketing, and refusal of truncated or corrupted files.
#include <stdio.h>             // defines: printf, fopen
#include <stdlib.h>            // defines: malloc, free, mkdtemp
#include <string.h>            // defines: strstr, memcmp
#include "llmc/dataloader.h"   // defines: DataLoader, dataloader_init, dataloader_next, batch_make

static int g_pass = 0, g_fail = 0;

static void check(const char* name, int ok) {
    printf("%-72s %s\n", name, ok ? "OK" : "FAIL");
    if (ok) g_pass++; else g_fail++;
}

// n examples, source lengths in [1, 60], target lengths in [1, 20]; token j of example i is
// 3 + (i * 31 + j) % 500 so a batch can be checked against the file
static void write_random_file(const char* path, int n, uint64_t seed) {
    Rng r;
    rng_init(&r, seed);
    uint32_t** src = (uint32_t**)mallocCheck((size_t)n * sizeof(uint32_t*));
    uint32_t** tgt = (uint32_t**)mallocCheck((size_t)n * sizeof(uint32_t*));
    int32_t* ls = (int32_t*)mallocCheck((size_t)n * sizeof(int32_t));
    int32_t* lt = (int32_t*)mallocCheck((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        ls[i] = 1 + (int32_t)(rng_next(&r) % 60);
        lt[i] = 1 + (int32_t)(rng_next(&r) % 20);
        src[i] = (uint32_t*)mallocCheck((size_t)ls[i] * 4);
        tgt[i] = (uint32_t*)mallocCheck((size_t)lt[i] * 4);
        for (int j = 0; j < ls[i]; j++) src[i][j] = 3 + (uint32_t)((i * 31 + j) % 500);
        for (int j = 0; j < lt[i]; j++) tgt[i][j] = 3 + (uint32_t)((i * 17 + j) % 500);
    }
    char err[1024];
    if (examples_write(path, n, (const uint32_t* const*)src, ls, (const uint32_t* const*)tgt, lt, err, sizeof(err))) {
        printf("%s\n", err); exit(EXIT_FAILURE);
    }
    for (int i = 0; i < n; i++) { free(src[i]); free(tgt[i]); }
    free(src); free(tgt); free(ls); free(lt);
}

static LoaderConfig cfg(int bs, int ranks, int rank, int shuffle, int bucket, uint64_t seed) {
    return (LoaderConfig){ bs, ranks, rank, shuffle, bucket, 4, 1 << 20, 1 << 20, 0, 0, seed, 0, 0, -1 };
}

static void open_or_die(DataLoader* dl, const char* path, LoaderConfig c) {
    char err[1024];
    if (dataloader_init(dl, path, &c, err, sizeof(err))) { printf("%s\n", err); exit(EXIT_FAILURE); }
}

// one epoch of rank r: appends the example ids it yields to out, returns how many
static int epoch_ids(DataLoader* dl, int64_t* out) {
    int k = 0;
    BatchBuf bb = {0};
    for (int64_t b = 0; b < dl->num_batches; b++) {
        dataloader_next(dl, &bb);
        for (int i = 0; i < dl->idx_n; i++) out[k++] = dl->idx[i];
    }
    batch_free(&bb);
    return k;
}

static int covers_once(const int64_t* ids, int k, int n) {
    if (k != n) return 0;
    char* seen = (char*)callocCheck((size_t)n, 1);
    int ok = 1;
    for (int i = 0; i < k; i++) { if (ids[i] < 0 || ids[i] >= n || seen[ids[i]]) ok = 0; else seen[ids[i]] = 1; }
    free(seen);
    return ok;
}

static void test_coverage(const char* path, int n) {
    int sizes[] = { 1, 7, 8, 64, 1000 };
    int64_t* ids = (int64_t*)mallocCheck((size_t)n * sizeof(int64_t));
    for (int s = 0; s < 5; s++)
        for (int mode = 0; mode < 4; mode++) {
            DataLoader dl;
            open_or_die(&dl, path, cfg(sizes[s], 1, 0, mode & 1, mode >> 1, 7));
            int ok = 1;
            for (int e = 0; e < 3; e++) ok &= covers_once(ids, epoch_ids(&dl, ids), n); // epochs 0..2
            char name[128];
            snprintf(name, sizeof(name), "every example once per epoch (batch %d, shuffle %d, bucket %d, 3 epochs)", sizes[s], mode & 1, mode >> 1);
            check(name, ok && dl.epoch == 3 && dl.batch == 0);
            dataloader_free(&dl);
        }
    free(ids);
}

static void test_order(const char* path, int n) {
    int64_t *a = (int64_t*)mallocCheck((size_t)n * 8), *b = (int64_t*)mallocCheck((size_t)n * 8), *c = (int64_t*)mallocCheck((size_t)n * 8);
    DataLoader x, y, z;
    open_or_die(&x, path, cfg(8, 1, 0, 1, 1, 7));
    open_or_die(&y, path, cfg(8, 1, 0, 1, 1, 7));
    open_or_die(&z, path, cfg(8, 1, 0, 1, 1, 8));
    epoch_ids(&x, a); epoch_ids(&y, b); epoch_ids(&z, c);
    check("same seed: the same order", memcmp(a, b, (size_t)n * 8) == 0);
    check("another seed: another order", memcmp(a, c, (size_t)n * 8) != 0);
    epoch_ids(&x, b);
    check("the next epoch: another order", memcmp(a, b, (size_t)n * 8) != 0);
    DataLoader f;
    open_or_die(&f, path, cfg(8, 1, 0, 0, 0, 7));
    epoch_ids(&f, a);
    int in_order = 1;
    for (int i = 0; i < n; i++) in_order &= a[i] == i;
    check("shuffle off, bucketing off: file order", in_order);
    dataloader_free(&x); dataloader_free(&y); dataloader_free(&z); dataloader_free(&f);
    free(a); free(b); free(c);
}

// R ranks: the slices of each global batch are disjoint, in rank order they are the single-process
// batch of size R·B, and over an epoch they cover every example once
static void test_ranks(const char* path, int n) {
    for (int R = 2; R <= 4; R++) {
        DataLoader one, r[4];
        open_or_die(&one, path, cfg(5 * R, 1, 0, 1, 1, 11));
        for (int k = 0; k < R; k++) open_or_die(&r[k], path, cfg(5, R, k, 1, 1, 11));
        int64_t* all = (int64_t*)mallocCheck((size_t)n * 8);
        int ok = 1, k_all = 0;
        BatchBuf bb = {0};
        for (int64_t b = 0; b < one.num_batches; b++) {
            dataloader_next(&one, &bb);
            int pos = 0;
            for (int k = 0; k < R; k++) {
                dataloader_next(&r[k], &bb);
                for (int i = 0; i < r[k].idx_n; i++, pos++) { ok &= pos < one.idx_n && r[k].idx[i] == one.idx[pos]; all[k_all++] = r[k].idx[i]; }
            }
            ok &= pos == one.idx_n;
        }
        char name[128];
        snprintf(name, sizeof(name), "%d ranks: slices in rank order = the single-process batch; epoch covered once", R);
        check(name, ok && one.num_batches == r[0].num_batches && covers_once(all, k_all, n));
        batch_free(&bb);
        free(all);
        dataloader_free(&one);
        for (int k = 0; k < R; k++) dataloader_free(&r[k]);
    }
}

// src = ids then pad; labels = target then -100; dec_in = [start, labels[:-1]] with -100 → pad;
// padded to the longest example of the batch
static void test_batch_layout(const char* path) {
    DataLoader dl;
    LoaderConfig c = cfg(6, 1, 0, 1, 0, 3);
    c.pad_id = 0; c.start_id = 0; c.max_src = 40; c.max_tgt = 12;
    open_or_die(&dl, path, c);
    BatchBuf bb = {0};
    int ok = 1, dyn = 1;
    for (int step = 0; step < 20; step++) {
        T5Batch* b = dataloader_next(&dl, &bb);
        int max_s = 1, max_t = 1;
        for (int i = 0; i < b->B; i++) {
            int64_t e = dl.idx[i];
            int ls = clamp_len(dl.data.lens[2 * e], 40), lt = clamp_len(dl.data.lens[2 * e + 1], 12);
            max_s = ls > max_s ? ls : max_s; max_t = lt > max_t ? lt : max_t;
            const uint32_t *s = examples_src(&dl.data, e), *t = examples_tgt(&dl.data, e);
            ok &= b->src_len[i] == ls;
            for (int j = 0; j < b->Ts; j++) ok &= b->src[i * b->Ts + j] == (j < ls ? (int)s[j] : 0);
            for (int j = 0; j < b->Tt; j++) {
                ok &= b->labels[i * b->Tt + j] == (j < lt ? (int)t[j] : IGNORE_INDEX);
                ok &= b->dec_in[i * b->Tt + j] == (j == 0 ? 0 : (j - 1 < lt ? (int)t[j - 1] : 0));
            }
        }
        dyn &= b->Ts == max_s && b->Tt == max_t;
    }
    check("batch: sources padded, labels -100 after the target, decoder input shifted right", ok);
    check("batch: padded to its longest example (truncated to the maximum lengths)", dyn);
    batch_free(&bb);
    dataloader_free(&dl);
}

// the shape ladder: every batch's lengths are rungs (multiples of the step, or the cap), and the batch is
// the dynamically padded one with more padding (batch_repad of it), so the real positions are the same
static void test_ladder(const char* path) {
    DataLoader lad, dyn;
    LoaderConfig c = cfg(6, 1, 0, 1, 1, 3);
    c.max_src = 40; c.max_tgt = 12;
    open_or_die(&dyn, path, c);
    c.src_step = 16; c.tgt_step = 8;
    open_or_die(&lad, path, c);
    BatchBuf a = {0}, b = {0}, r = {0};
    int rungs = 1, same = 1, shapes_seen[3][2] = {{0}};
    for (int64_t k = 0; k < lad.num_batches; k++) {
        T5Batch* x = dataloader_next(&lad, &a);
        T5Batch* y = dataloader_next(&dyn, &b);
        rungs &= (x->Ts == 16 || x->Ts == 32 || x->Ts == 40) && (x->Tt == 8 || x->Tt == 12) && x->Ts >= y->Ts && x->Tt >= y->Tt;
        shapes_seen[x->Ts / 16 - 1][x->Tt / 8 - 1] = 1;
        T5Batch* z = batch_repad(&r, y, x->Ts, x->Tt, 0);
        same &= x->B == z->B && memcmp(x->src, z->src, (size_t)x->B * x->Ts * sizeof(int)) == 0 &&
                memcmp(x->src_len, z->src_len, (size_t)x->B * sizeof(int)) == 0 &&
                memcmp(x->labels, z->labels, (size_t)x->B * x->Tt * sizeof(int)) == 0 &&
                memcmp(x->dec_in, z->dec_in, (size_t)x->B * x->Tt * sizeof(int)) == 0;
    }
    int nshapes = 0;
    for (int i = 0; i < 3; i++) nshapes += shapes_seen[i][0] + shapes_seen[i][1];
    printf("ladder 16/8 under caps 40/12: %d shapes in an epoch, padding %.1f%% vs %.1f%% dynamic\n", nshapes,
           100 * dataloader_padding_fraction(&lad), 100 * dataloader_padding_fraction(&dyn));
    check("ladder: every batch's lengths are rungs (16, 32, cap 40 / 8, cap 12) at least the dynamic ones", rungs);
    check("ladder: each batch is the dynamic batch padded further (pad ids, -100 labels)", same);
    check("ladder: ladder_len rounds up, caps, and leaves lengths alone for steps 0 and 1",
          ladder_len(1, 64, 512) == 64 && ladder_len(64, 64, 512) == 64 && ladder_len(65, 64, 512) == 128 &&
          ladder_len(500, 64, 500) == 500 && ladder_len(449, 64, 500) == 500 && ladder_len(37, 0, 512) == 37 &&
          ladder_len(37, 1, 512) == 37);
    batch_free(&a); batch_free(&b); batch_free(&r);
    dataloader_free(&lad); dataloader_free(&dyn);
}

// a position saved mid-epoch and restored in a fresh loader yields the same batches as continuing
static void test_seek(const char* path) {
    DataLoader a, b;
    open_or_die(&a, path, cfg(7, 1, 0, 1, 1, 5));
    open_or_die(&b, path, cfg(7, 1, 0, 1, 1, 5));
    BatchBuf bb = {0};
    for (int i = 0; i < (int)a.num_batches + 9; i++) dataloader_next(&a, &bb); // into epoch 1
    int ok = dataloader_seek(&b, a.epoch, a.batch) == 0;
    for (int i = 0; i < 2 * (int)a.num_batches && ok; i++) {
        dataloader_next(&a, &bb);
        dataloader_next(&b, &bb);
        ok = a.idx_n == b.idx_n && memcmp(a.idx, b.idx, (size_t)a.idx_n * 8) == 0;
    }
    check("restored position (epoch 1, batch 9) continues with identical batches for 2 epochs", ok);
    check("a position outside the epoch is refused", dataloader_seek(&b, 0, b.num_batches) != 0 && dataloader_seek(&b, -1, 0) != 0);
    batch_free(&bb);
    dataloader_free(&a); dataloader_free(&b);
}

static double epoch_padding(const char* path, int bucket) {
    DataLoader dl;
    open_or_die(&dl, path, cfg(16, 1, 0, 1, bucket, 5));
    int64_t* ids = (int64_t*)mallocCheck((size_t)dl.data.n * 8);
    epoch_ids(&dl, ids);
    double f = dataloader_padding_fraction(&dl);
    free(ids);
    dataloader_free(&dl);
    return f;
}

static void test_padding(const char* path) {
    double plain = epoch_padding(path, 0), bucketed = epoch_padding(path, 1);
    printf("padding fraction over an epoch, batch 16: %.1f%% shuffled, %.1f%% bucketed\n", 100 * plain, 100 * bucketed);
    // these targets are independent of their sources, so only the source padding can go away
    check("length bucketing cuts padding by more than 40%", bucketed < 0.6 * plain);
}

static int file_error(const char* path, const char* want) {
    DataLoader dl;
    char err[1024];
    LoaderConfig c = cfg(4, 1, 0, 1, 1, 1);
    int rc = dataloader_init(&dl, path, &c, err, sizeof(err));
    if (rc == 0) { dataloader_free(&dl); return 0; }
    printf("  -> %s\n", err);
    return strstr(err, want) != NULL && strstr(err, path) != NULL;
}

static void patch_file(const char* path, long off, int whence, unsigned char xor_mask) {
    FILE* f = fopenCheck(path, "r+b");
    fseek(f, off, whence);
    int c = fgetc(f);
    fseek(f, -1, SEEK_CUR);
    fputc(c ^ xor_mask, f);
    fclose(f);
}

static void test_bad_files(const char* dir) {
    char path[512], cmd[1200];
    snprintf(path, sizeof(path), "%s/bad.bin", dir);
    write_random_file(path, 50, 9);
    patch_file(path, -3, SEEK_END, 0x01); // a token id changes, still inside the vocabulary
    check("a flipped bit in a token: checksum mismatch, naming the file", file_error(path, "checksum mismatch"));
    write_random_file(path, 50, 9);
    patch_file(path, 32 * 8 + 4, SEEK_SET, 0x02); // a length changes
    check("a flipped bit in a length: refused", file_error(path, "lengths do not add up") || file_error(path, "checksum"));
    write_random_file(path, 50, 9);
    snprintf(cmd, sizeof(cmd), "truncate -s -7 '%s'", path);
    check("truncated file: refused with the size", system(cmd) == 0 && file_error(path, "truncated"));
    write_random_file(path, 50, 9);
    patch_file(path, 0, SEEK_SET, 0xFF);
    check("bad magic: refused", file_error(path, "bad magic"));
    snprintf(path, sizeof(path), "%s/missing.bin", dir);
    check("missing file: refused naming it", file_error(path, "cannot open"));
}

// a cut keeps </s> last, as the T5 tokenizer's truncation (max_length - 1 ids, then </s>): examples that end in
// eos (1) and are longer than the caps end in eos at the cap; one that does not end in eos is cut plainly;
// the decoder input is the shifted cut labels
static void test_cut_keeps_eos(const char* dir) {
    char path[512], err[1024];
    snprintf(path, sizeof(path), "%s/eos.bin", dir);
    uint32_t s0[] = { 5, 6, 7, 8, 9, 1 }, t0[] = { 20, 21, 22, 23, 1 }; // both cut (caps 4 and 3)
    uint32_t s1[] = { 5, 6, 1 },          t1[] = { 30, 1 };             // both shorter than the caps
    uint32_t s2[] = { 5, 6, 7, 8, 9 },    t2[] = { 40, 41, 42, 43 };    // cut, no eos to keep
    const uint32_t* src[] = { s0, s1, s2 };
    const uint32_t* tgt[] = { t0, t1, t2 };
    int32_t ls[] = { 6, 3, 5 }, lt[] = { 5, 2, 4 };
    if (examples_write(path, 3, src, ls, tgt, lt, err, sizeof(err))) { printf("%s\n", err); exit(EXIT_FAILURE); }
    DataLoader dl;
    LoaderConfig c = cfg(3, 1, 0, 0, 0, 1);
    c.pad_id = 0; c.start_id = 0; c.max_src = 4; c.max_tgt = 3; c.eos_id = 1;
    open_or_die(&dl, path, c);
    BatchBuf bb = {0};
    T5Batch* b = dataloader_next(&dl, &bb);
    int want_src[3][4] = { { 5, 6, 7, 1 }, { 5, 6, 1, 0 }, { 5, 6, 7, 8 } };
    int want_lab[3][3] = { { 20, 21, 1 }, { 30, 1, IGNORE_INDEX }, { 40, 41, 42 } };
    int want_din[3][3] = { { 0, 20, 21 }, { 0, 30, 1 }, { 0, 40, 41 } };
    int ok = b->B == 3 && b->Ts == 4 && b->Tt == 3, kept = ok, plain = ok;
    for (int i = 0; ok && i < 3; i++) {
        int* row_ok = i == 2 ? &plain : &kept;
        *row_ok &= b->src_len[i] == (i == 1 ? 3 : 4);
        for (int j = 0; j < 4; j++) *row_ok &= b->src[i * 4 + j] == want_src[i][j];
        for (int j = 0; j < 3; j++) *row_ok &= b->labels[i * 3 + j] == want_lab[i][j] && b->dec_in[i * 3 + j] == want_din[i][j];
    }
    check("a cut source and target keep </s> last (as the T5 tokenizer truncates); short ones unchanged", kept);
    check("a cut example that does not end in </s> is cut plainly", plain);
    batch_free(&bb);
    dataloader_free(&dl);
}

int main(void) {
    char dir[] = "/tmp/test_dataloader_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return EXIT_FAILURE; }
    char path[512];
    snprintf(path, sizeof(path), "%s/ex.bin", dir);
    int n = 1003; // a prime-ish count: no batch size divides it
    write_random_file(path, n, 1);
    test_coverage(path, n);
    test_order(path, n);
    test_ranks(path, n);
    test_batch_layout(path);
    test_ladder(path);
    test_seek(path);
    test_padding(path);
    test_bad_files(dir);
    test_cut_keeps_eos(dir);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    printf("\n%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? EXIT_FAILURE : EXIT_SUCCESS;
}
