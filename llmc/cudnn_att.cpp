// cudnn_att.cpp — the cuDNN frontend graphs behind llmc/cudnn_att.h. Compiled on its own (the
// frontend is a large header-only C++ library; train_t5.cu sees only the plain interface) and linked
// into train_t5cu / test_t5cu when the build has USE_CUDNN=1.
//
// One graph per shape and direction, built on first use and cached:
//   forward : sdpa(q, k, v; bias, padding mask, causal band, dropout, scale 1) → out, stats
//   backward: sdpa_backward(q, k, v, out, dout, stats; the same options) → dq, dk, dv, dbias
// Every tensor is bf16 except the stats (fp32) and the lengths (int32); softmax, the products'
// accumulation and dbias's batch sum run in fp32 inside cuDNN (intermediate and compute type FLOAT).
#include <stdio.h>          // defines: fprintf, snprintf
#include <stdlib.h>         // defines: exit
#include <string.h>         // defines: memcpy
#include <string>           // defines: std::string (cuDNN messages)
#include <map>              // defines: std::map (the graph cache)
#include <memory>           // defines: std::shared_ptr
#include <tuple>            // defines: std::tuple (the cache key)
#include <unordered_map>    // defines: std::unordered_map (variant packs)
#include <cudnn.h>          // defines: cudnnHandle_t, cudnnCreate, cudnnGetVersion, cudnnSetStream
#include <cudnn_frontend.h> // defines: cudnn_frontend::graph::Graph, SDPA_attributes, SDPA_backward_attributes
#include "cudnn_att.h"      // defines: CudnnAttnSpec, CudnnAttn

namespace fe = cudnn_frontend;
typedef std::shared_ptr<fe::graph::Tensor_attributes> TensorPtr;
typedef std::shared_ptr<fe::graph::Graph> GraphPtr;

// tensor uids of the variant packs
enum { U_Q = 1, U_K, U_V, U_O, U_STATS, U_BIAS, U_QLEN, U_KLEN, U_SEED, U_OFFSET, U_DO, U_DQ, U_DK, U_DV, U_DBIAS };

// B, H, Tq, Tk, D, causal, bias, padded, dropout (its bits), backward
typedef std::tuple<int, int, int, int, int, int, int, int, uint32_t, int> GraphKey;

struct CudnnAttn {
    cudnnHandle_t handle;
    std::map<GraphKey, GraphPtr> graphs;
    void* workspace;
    int64_t workspace_bytes;
    int workspace_epoch; // bumped each time the workspace moves (captured CUDA graphs hold its address)
    int deterministic; // 1 while every backward graph runs the deterministic algorithm
};

static void attn_fail(const char* what, const CudnnAttnSpec* s, const char* msg) {
    fprintf(stderr, "error: cuDNN attention: %s (B=%d H=%d Tq=%d Tk=%d D=%d causal=%d bias=%d padded=%d dropout=%g): %s\n",
            what, s->B, s->H, s->Tq, s->Tk, s->D, s->causal, s->bias, s->key_len != NULL, (double)s->dropout, msg);
    exit(EXIT_FAILURE);
}

CudnnAttn* cudnn_attn_create(char* err, int n) {
    size_t v = cudnnGetVersion();
    if (v < 90500) { // dbias together with a padding mask needs cuDNN 9.5
        snprintf(err, (size_t)n, "cuDNN %zu found; --attention cudnn needs cuDNN 9.5 or newer", v);
        return NULL;
    }
    cudnnHandle_t h;
    cudnnStatus_t st = cudnnCreate(&h);
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(err, (size_t)n, "cudnnCreate: %s", cudnnGetErrorString(st));
        return NULL;
    }
    CudnnAttn* a = new CudnnAttn();
    a->handle = h;
    a->workspace = NULL;
    a->workspace_bytes = 0;
    a->deterministic = 1;
    return a;
}

void cudnn_attn_free(CudnnAttn* a) {
    if (!a) return;
    if (a->workspace) cudaFree(a->workspace);
    cudnnDestroy(a->handle);
    delete a;
}

int cudnn_attn_deterministic(const CudnnAttn* a) { return a->deterministic; }
int cudnn_attn_epoch(const CudnnAttn* a) { return a->workspace_epoch; }

// ----------------------------------------------------------------------------
// graph pieces

static GraphPtr new_graph(void) {
    GraphPtr g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    return g;
}

// a (B, T, H·D) row-major tensor seen as (B, H, T, D): strides (T·H·D, D, H·D, 1)
static fe::graph::Tensor_attributes& heads_view(fe::graph::Tensor_attributes& t, const CudnnAttnSpec* s, int T) {
    int64_t HD = (int64_t)s->H * s->D;
    return t.set_dim({s->B, s->H, T, s->D}).set_stride({(int64_t)T * HD, s->D, HD, 1});
}

static TensorPtr heads_input(GraphPtr& g, const char* name, int64_t uid, const CudnnAttnSpec* s, int T) {
    fe::graph::Tensor_attributes t;
    t.set_name(name).set_uid(uid);
    return g->tensor(heads_view(t, s, T));
}

static void heads_output(const TensorPtr& t, int64_t uid, const CudnnAttnSpec* s, int T) {
    t->set_output(true).set_uid(uid);
    heads_view(*t, s, T);
}

// (1, H, Tq, Tk) bf16, packed: the bias and its gradient
static TensorPtr bias_tensor(GraphPtr& g, const char* name, int64_t uid, const CudnnAttnSpec* s) {
    int64_t TT = (int64_t)s->Tq * s->Tk;
    return g->tensor(fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim({1, s->H, s->Tq, s->Tk})
                         .set_stride({s->H * TT, TT, s->Tk, 1}));
}

// (B, H, Tq, 1) fp32: the row logsumexp, laid out as (B, H, Tq)
static fe::graph::Tensor_attributes& stats_view(fe::graph::Tensor_attributes& t, const CudnnAttnSpec* s) {
    return t.set_dim({s->B, s->H, s->Tq, 1}).set_stride({(int64_t)s->H * s->Tq, s->Tq, 1, 1}).set_data_type(fe::DataType_t::FLOAT);
}

static TensorPtr lengths(GraphPtr& g, const char* name, int64_t uid, const CudnnAttnSpec* s) {
    return g->tensor(fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim({s->B, 1, 1, 1})
                         .set_stride({1, 1, 1, 1}).set_data_type(fe::DataType_t::INT32));
}

// one int64 in device memory (the dropout seed and offset: device tensors, as cuDNN's RNG node reads them)
static TensorPtr device_int64(GraphPtr& g, const char* name, int64_t uid) {
    return g->tensor(fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim({1, 1, 1, 1})
                         .set_stride({1, 1, 1, 1}).set_data_type(fe::DataType_t::INT64));
}

// T5's options, the same in both directions: scale 1, causal band, padding mask, dropout, bias
template <typename Attr> static void t5_options(GraphPtr& g, Attr& o, const CudnnAttnSpec* s) {
    o.set_attn_scale(1.0f);
    if (s->causal) o.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
    if (s->key_len)
        o.set_padding_mask(true).set_seq_len_q(lengths(g, "q_len", U_QLEN, s)).set_seq_len_kv(lengths(g, "key_len", U_KLEN, s));
    if (s->dropout > 0.0f) o.set_dropout(s->dropout, device_int64(g, "seed", U_SEED), device_int64(g, "offset", U_OFFSET));
    if (s->bias) o.set_bias(bias_tensor(g, "bias", U_BIAS, s));
}

static GraphPtr forward_graph(const CudnnAttnSpec* s) {
    GraphPtr g = new_graph();
    TensorPtr q = heads_input(g, "q", U_Q, s, s->Tq), k = heads_input(g, "k", U_K, s, s->Tk),
              v = heads_input(g, "v", U_V, s, s->Tk);
    fe::graph::SDPA_attributes o;
    o.set_name("t5_attention").set_generate_stats(true);
    t5_options(g, o, s);
    auto [out, stats] = g->sdpa(q, k, v, o);
    heads_output(out, U_O, s, s->Tq);
    stats->set_output(true).set_uid(U_STATS);
    stats_view(*stats, s);
    return g;
}

static GraphPtr backward_graph(const CudnnAttnSpec* s, int deterministic) {
    GraphPtr g = new_graph();
    TensorPtr q = heads_input(g, "q", U_Q, s, s->Tq), k = heads_input(g, "k", U_K, s, s->Tk),
              v = heads_input(g, "v", U_V, s, s->Tk), out = heads_input(g, "out", U_O, s, s->Tq),
              dout = heads_input(g, "dout", U_DO, s, s->Tq);
    fe::graph::Tensor_attributes st;
    st.set_name("stats").set_uid(U_STATS);
    TensorPtr stats = g->tensor(stats_view(st, s));
    fe::graph::SDPA_backward_attributes o;
    o.set_name("t5_attention_backward").set_deterministic_algorithm(deterministic != 0);
    t5_options(g, o, s);
    if (s->bias) o.set_dbias(bias_tensor(g, "dbias", U_DBIAS, s));
    auto [dq, dk, dv] = g->sdpa_backward(q, k, v, out, dout, stats, o);
    heads_output(dq, U_DQ, s, s->Tq);
    heads_output(dk, U_DK, s, s->Tk);
    heads_output(dv, U_DV, s, s->Tk);
    return g;
}

static int build(CudnnAttn* a, GraphPtr& g, std::string* msg) {
    fe::error_t e = g->build(a->handle, {fe::HeurMode_t::A});
    if (!e.is_good()) { *msg = e.get_message(); return 0; }
    return 1;
}

// the cached graph of this shape and direction; a new one is built, and the workspace grown to fit it
static GraphPtr& graph_for(CudnnAttn* a, const CudnnAttnSpec* s, int backward, cudaStream_t stream) {
    uint32_t pbits;
    memcpy(&pbits, &s->dropout, sizeof(pbits));
    GraphKey key(s->B, s->H, s->Tq, s->Tk, s->D, s->causal, s->bias, s->key_len != NULL, pbits, backward);
    auto it = a->graphs.find(key);
    if (it != a->graphs.end()) return it->second;
    std::string msg;
    GraphPtr g;
    if (!backward) {
        g = forward_graph(s);
        if (!build(a, g, &msg)) attn_fail("building the forward graph", s, msg.c_str());
    } else {
        // the deterministic algorithm first (fixed-order dq accumulation); where cuDNN has none for this
        // shape, the default one, and cudnn_attn_deterministic() says so from then on
        g = backward_graph(s, 1);
        if (!build(a, g, &msg)) {
            std::string first = msg;
            g = backward_graph(s, 0);
            if (!build(a, g, &msg)) attn_fail("building the backward graph", s, (first + " / " + msg).c_str());
            if (a->deterministic)
                fprintf(stderr, "warning: cuDNN attention: no deterministic backward for this shape (%s); reruns are not "
                        "bit-identical\n", first.c_str());
            a->deterministic = 0;
        }
    }
    int64_t ws = 0;
    if (!g->get_workspace_size(ws).is_good()) attn_fail("querying the workspace size", s, "");
    if (ws > a->workspace_bytes) {
        cudaStreamSynchronize(stream); // the old workspace may still be in use by queued work
        if (a->workspace) cudaFree(a->workspace);
        if (cudaMalloc(&a->workspace, (size_t)ws) != cudaSuccess) attn_fail("allocating the workspace", s, "out of memory");
        a->workspace_bytes = ws;
        a->workspace_epoch++;
    }
    return a->graphs.emplace(key, g).first->second;
}

static void run(CudnnAttn* a, const CudnnAttnSpec* s, GraphPtr& g, std::unordered_map<int64_t, void*>& pack,
                cudaStream_t stream, const char* what) {
    if (s->dropout > 0.0f) { pack[U_SEED] = (void*)s->rng; pack[U_OFFSET] = (void*)(s->rng + 1); }
    if (s->key_len) { pack[U_QLEN] = (void*)s->q_len; pack[U_KLEN] = (void*)s->key_len; }
    cudnnSetStream(a->handle, stream);
    fe::error_t e = g->execute(a->handle, pack, a->workspace);
    if (!e.is_good()) attn_fail(what, s, e.get_message().c_str());
}

void cudnn_attn_forward(CudnnAttn* a, const CudnnAttnSpec* s, void* out, float* stats, const void* q, const void* k,
                        const void* v, const void* bias, cudaStream_t stream) {
    GraphPtr& g = graph_for(a, s, 0, stream);
    std::unordered_map<int64_t, void*> pack = {
        {U_Q, (void*)q}, {U_K, (void*)k}, {U_V, (void*)v}, {U_O, out}, {U_STATS, (void*)stats},
    };
    if (s->bias) pack[U_BIAS] = (void*)bias;
    run(a, s, g, pack, stream, "running the forward graph");
}

void cudnn_attn_backward(CudnnAttn* a, const CudnnAttnSpec* s, void* dq, void* dk, void* dv, void* dbias,
                         const void* dout, const void* q, const void* k, const void* v, const void* out,
                         const float* stats, const void* bias, cudaStream_t stream) {
    GraphPtr& g = graph_for(a, s, 1, stream);
    std::unordered_map<int64_t, void*> pack = {
        {U_Q, (void*)q}, {U_K, (void*)k}, {U_V, (void*)v}, {U_O, (void*)out}, {U_DO, (void*)dout},
        {U_STATS, (void*)stats}, {U_DQ, dq}, {U_DK, dk}, {U_DV, dv},
    };
    if (s->bias) { pack[U_BIAS] = (void*)bias; pack[U_DBIAS] = dbias; }
    run(a, s, g, pack, stream, "running the backward graph");
}
