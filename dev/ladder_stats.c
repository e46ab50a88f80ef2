// ladder_stats.c — what a shape ladder costs in padding on a real example file: one shuffled, bucketed
// epoch per (batch size, ladder) through the trainers' own data loader, as train_t5 and train_t5cu run it.
//
//   make build/ladder_stats && ./build/ladder_stats out/dialogsum/train.bin [max_src max_tgt]
//
// Per row: padded batch tokens beyond the real ones (as a share of the real tokens: the extra compute),
// the padding share of all batch tokens (what the trainers print), and how many distinct (Ts, Tt) batch
// shapes an epoch has (what per-shape plans and CUDA graphs must be built for).
#include <stdio.h>                // defines: printf
#include <stdlib.h>               // defines: atoi
#include "../llmc/dataloader.h"   // defines: DataLoader, LoaderConfig, dataloader_init, dataloader_next

#define MAX_SHAPES 4096

typedef struct { double extra, padding; int shapes; } LadderCost;

static int run_epoch(const char* path, int bs, int src_step, int tgt_step, int max_src, int max_tgt, LadderCost* out) {
    LoaderConfig c = { bs, 1, 0, 1, 1, 64, max_src, max_tgt, 0, 0, 42, src_step, tgt_step, 1 };
    DataLoader dl;
    char err[1024];
    if (dataloader_init(&dl, path, &c, err, sizeof(err))) { fprintf(stderr, "error: %s\n", err); return -1; }
    BatchBuf bb = {0};
    static int seen_s[MAX_SHAPES], seen_t[MAX_SHAPES];
    int nshapes = 0;
    for (int64_t k = 0; k < dl.num_batches; k++) {
        T5Batch* b = dataloader_next(&dl, &bb);
        int known = 0;
        for (int i = 0; i < nshapes && !known; i++) known = seen_s[i] == b->Ts && seen_t[i] == b->Tt;
        if (!known && nshapes < MAX_SHAPES) { seen_s[nshapes] = b->Ts; seen_t[nshapes] = b->Tt; nshapes++; }
    }
    out->extra = (double)(dl.padded_tokens - dl.real_tokens) / (double)dl.real_tokens;
    out->padding = dataloader_padding_fraction(&dl);
    out->shapes = nshapes;
    batch_free(&bb);
    dataloader_free(&dl);
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s EXAMPLES.bin [max_src max_tgt]\n", argv[0]); return 2; }
    int max_src = argc > 3 ? atoi(argv[2]) : 512, max_tgt = argc > 3 ? atoi(argv[3]) : 128;
    int batches[3] = { 16, 64, 128 };
    int ladders[6][2] = { { 0, 0 }, { 16, 8 }, { 32, 8 }, { 32, 16 }, { 64, 16 }, { 128, 32 } };
    printf("%-6s %-12s %12s %10s %8s\n", "batch", "ladder", "extra/real", "padding", "shapes");
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 6; j++) {
            LadderCost r;
            if (run_epoch(argv[1], batches[i], ladders[j][0], ladders[j][1], max_src, max_tgt, &r)) return 1;
            char name[32];
            if (ladders[j][0]) snprintf(name, sizeof(name), "%d / %d", ladders[j][0], ladders[j][1]);
            else snprintf(name, sizeof(name), "dynamic");
            printf("%-6d %-12s %11.1f%% %9.1f%% %8d\n", batches[i], name, 100 * r.extra, 100 * r.padding, r.shapes);
        }
    return 0;
}
