// graphs.cuh — CUDA graphs of training steps (--cuda-graphs 1): capture once, replay after, fall back to
// eager launches when a capture cannot be made. The engine (train_t5.cu) hands over its bodies — a
// function and its context that queue a micro-step (forward + backward of one micro-batch) or a step end
// (gradient reduction, norm, skip decision, clipping, AdamW, the floatX copy) on one stream — and says
// whether graphs may be used now (usable) and whether a shape's first run may be captured at once
// (capture_first); this file keeps the graphs, decides eager / capture / replay and counts.
//
// A training step is queued as A micro-steps and one step end. Each is captured once as a CUDA graph, per
// shape (B, Ts, Tt, reduce) for micro-steps, and replayed: one launch instead of hundreds, and no cuBLASLt
// planning on the host. What changes from step to step is not in the graphs but in device memory, written
// by the engine before each replay (its StepDev: the dropout seed, the loss scale, the AdamW values of the
// step); the batch goes to fixed device buffers. Eager runs launch the same kernels with the same device
// values, so replay and eager runs are bit-identical. A shape is captured the first time it is seen, or,
// where that first time synchronises the host (capture_first 0), run eagerly then and captured the second
// time. Graphs hold device pointers: the engine drops them all (graphs_drop) before it frees or grows a
// buffer they read.
#ifndef T5_GRAPHS_CUH
#define T5_GRAPHS_CUH

#include <stdio.h>          // defines: fprintf
#include <cuda_runtime.h>   // defines: cudaGraphExec_t, cudaStream_t, cudaStreamBeginCapture, cudaGraphLaunch
#include "cuda_common.cuh"  // defines: cudaCheck, g_capture_errors (checked calls that fail softly while capturing)

#define GRAPH_SLOTS 256 // micro-step shapes kept (a --shape-ladder run meets a few dozen)
typedef struct { int B, Ts, Tt, reduce; cudaGraphExec_t exec; } StepGraph; // exec NULL: seen once, not captured
typedef struct {
    int on;                     // --cuda-graphs 1, and no capture has failed (a failure turns graphs off for the run)
    StepGraph micro[GRAPH_SLOTS];
    int n;
    cudaGraphExec_t end[2];     // the step end without [0] and with [1] the gradient reduction
    int end_seen[2];            // that step end ran once (eagerly, where capture_first says so)
    int cudnn_epoch;            // the generation of cuDNN's workspace the graphs were captured with (graphs_epoch)
    long long captured, replayed, eager;
} StepGraphs;

// what a graph holds: the work a body queues on one stream. A body may run twice (graph_capture_launch), so it
// starts from the host state it needs (kept in ctx), not from what a first run left
typedef void (*GraphBody)(void* ctx);

// body(ctx) captured into *exec and launched; when the capture cannot be made (an operation a graph cannot
// hold: the body's checked calls fail softly meanwhile, cuda_common.cuh), body(ctx) runs eagerly and graphs
// are off for the rest of the run
static void graph_capture_launch(StepGraphs* gs, cudaStream_t stream, GraphBody body, void* ctx, cudaGraphExec_t* exec) {
    cudaGraph_t g = NULL;
    cudaCheck(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    g_capture_errors.on = 1; g_capture_errors.failed = 0;
    body(ctx);
    g_capture_errors.on = 0;
    cudaError_t e = cudaStreamEndCapture(stream, &g);
    if (e == cudaSuccess && g_capture_errors.failed) e = cudaErrorStreamCaptureInvalidated;
    if (e == cudaSuccess) e = cudaGraphInstantiate(exec, g, 0);
    if (g) cudaCheck(cudaGraphDestroy(g));
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *exec = NULL;
        fprintf(stderr, "warning: a CUDA graph could not be captured (%s%s%s): this run continues with eager launches\n",
                cudaGetErrorString(e), g_capture_errors.failed ? "; first: " : "", g_capture_errors.failed ? g_capture_errors.first : "");
        gs->on = 0;
        body(ctx);
        return;
    }
    gs->captured++;
    cudaCheck(cudaGraphLaunch(*exec, stream));
}

// every captured graph (they hold pointers into buffers about to be freed or grown)
static void graphs_drop(StepGraphs* g) {
    for (int i = 0; i < g->n; i++) if (g->micro[i].exec) cudaCheck(cudaGraphExecDestroy(g->micro[i].exec));
    for (int r = 0; r < 2; r++) {
        if (g->end[r]) cudaCheck(cudaGraphExecDestroy(g->end[r]));
        g->end[r] = NULL; g->end_seen[r] = 0;
    }
    g->n = 0;
}

// the graphs were captured with a workspace of generation g->cudnn_epoch; when it moved (epoch differs), they
// hold the old one: dropped (after the stream has finished with them)
static void graphs_epoch(StepGraphs* g, cudaStream_t stream, int epoch) {
    if (epoch == g->cudnn_epoch) return;
    if (g->n || g->end[0] || g->end[1]) {
        cudaCheck(cudaStreamSynchronize(stream));
        graphs_drop(g);
    }
    g->cudnn_epoch = epoch;
}

// one micro-step of shape (B, Ts, Tt, reduce): captured the first time its shape is seen (or run eagerly then
// and captured the second time, capture_first 0), replayed after that; eager when graphs are not usable.
// 1 when it replayed: no host code of the body ran, and the caller advances its host state as the body would have
static int graphs_micro_step(StepGraphs* g, cudaStream_t stream, int usable, int capture_first, int B, int Ts, int Tt,
                             int reduce, GraphBody body, void* ctx) {
    StepGraph* e = NULL;
    for (int i = 0; i < g->n && !e; i++)
        if (g->micro[i].B == B && g->micro[i].Ts == Ts && g->micro[i].Tt == Tt && g->micro[i].reduce == reduce)
            e = &g->micro[i];
    if (usable && !e && g->n < GRAPH_SLOTS) {
        e = &g->micro[g->n++];
        *e = StepGraph{ B, Ts, Tt, reduce, NULL };
        if (!capture_first) e = NULL; // this time eagerly
    }
    if (!usable || !e) {
        g->eager++;
        body(ctx);
        return 0;
    }
    if (!e->exec) { graph_capture_launch(g, stream, body, ctx, &e->exec); return 0; }
    cudaCheck(cudaGraphLaunch(e->exec, stream));
    g->replayed++;
    return 1;
}

// the step end, with ([1]) or without ([0]) the gradient reduction, as one graph when its content is the usual
// one (usual 0: it runs eagerly); its first run is eager where capture_first says so
static void graphs_step_end(StepGraphs* g, cudaStream_t stream, int usable, int capture_first, int reduce, int usual,
                            GraphBody body, void* ctx) {
    int first = 0;
    if (usual && !g->end_seen[reduce] && usable) { g->end_seen[reduce] = 1; first = 1; }
    if (!usable || !usual || (first && !capture_first)) {
        body(ctx);
        return;
    }
    if (!g->end[reduce]) { graph_capture_launch(g, stream, body, ctx, &g->end[reduce]); return; }
    cudaCheck(cudaGraphLaunch(g->end[reduce], stream));
}

#endif // T5_GRAPHS_CUH
