// generate.cuh — the kernels of GPU generation (train_t5cu's greedy and beam search with a key/value
// cache): one decoder position per step for R rows (R = inputs · beams). The search itself (which
// hypotheses go on, finish, stop) stays on the host, as the CPU engine's t5_generate runs it.
//
//   decode attention:  ctx (R, H·D) = softmax(q·kᵀ + bias + mask) · v over the cached keys of each row
//                      (T5: no 1/sqrt(D)); the query of row r is position t, so self-attention sees keys
//                      0..t with the causal bias bucket(j − t); cross-attention the source of its input
//   logits:            x[eos] += eos_bias; (beam) x ← log_softmax(x); then generate()'s processors in its
//                      order: repetition penalty, banned n-grams → −inf, eos → −inf below min_new_tokens;
//                      (beam) + running score (a ban is −inf before or after that add)
//   top-k:             the K largest of a group in the order (value desc, index asc), exactly the order
//                      of the CPU engine's topk_indices, so equal scores pick the same hypotheses
//   cache reorder:     row r continues the hypothesis of row parent[r]: it takes over that row's cache
#ifndef T5_GENERATE_CUH
#define T5_GENERATE_CUH

#include "cuda_common.cuh"  // defines: floatX, to_float, from_float, block_reduce, warp_sum, cudaCheck

// ----------------------------------------------------------------------------
// attention of one new query per row over a key/value cache

typedef struct {
    int R, H, D;
    const floatX* k;      // row r's keys at k + seq(r)·stride + j·H·D (j < key count)
    const floatX* v;
    size_t stride;        // elements between the sequences of the cache
    const int* seq;       // (R) device: the cache sequence row r reads, or NULL (row r reads sequence r)
    const int* key_len;   // (R) device: keys each row attends to, or NULL: fixed_len for every row
    int fixed_len;
    const float* relb;    // (NB, H) causal relative bias, or NULL (cross-attention)
    const int* buckets;   // bucket of rel j − t at buckets[j − t + bucket_mid]
    int t, bucket_mid;
    const int* pos;       // device, or NULL: the query position t read there, keys 0..t (a decoder step
                          //   replayed as a CUDA graph reads its position; t and fixed_len are then unused)
} DecodeAttn;

// one block per (row, head): scores (fp32, kept in att), block softmax, then ctx = Σ_j p_j v_j
__global__ void decode_attention_kernel(floatX* ctx, float* att, const floatX* q, DecodeAttn s, int att_stride) {
    __shared__ float scratch[32];
    int r = blockIdx.x, h = blockIdx.y, HD = s.H * s.D;
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    size_t base = (size_t)(s.seq ? s.seq[r] : r) * s.stride + (size_t)h * s.D;
    const floatX* qh = q + (size_t)r * HD + (size_t)h * s.D;
    float* a = att + ((size_t)r * s.H + h) * att_stride;
    if (s.pos) { s.t = *s.pos; s.fixed_len = s.t + 1; }
    int n = s.key_len ? s.key_len[r] : s.fixed_len;
    for (int j = warp; j < n; j += warps) { // one warp per key: lanes split the head dimension
        const floatX* kj = s.k + base + (size_t)j * HD;
        float dot = 0.0f;
        for (int d = lane; d < s.D; d += 32) dot += to_float(qh[d]) * to_float(kj[d]);
        dot = warp_sum(dot);
        if (lane == 0) a[j] = dot + (s.relb ? s.relb[s.buckets[j - s.t + s.bucket_mid] * s.H + h] : 0.0f);
    }
    __syncthreads();
    float maxv = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) maxv = fmaxf(maxv, a[j]);
    maxv = block_reduce(maxv, scratch, true);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) { float e = expf(a[j] - maxv); a[j] = e; sum += e; }
    sum = block_reduce(sum, scratch, false); // its trailing barrier also publishes the exponentials
    float inv = 1.0f / sum;
    for (int d = threadIdx.x; d < s.D; d += blockDim.x) {
        float o = 0.0f;
        for (int j = 0; j < n; j++) o += a[j] * inv * to_float(s.v[base + (size_t)j * HD + d]);
        ctx[(size_t)r * HD + (size_t)h * s.D + d] = from_float<floatX>(o);
    }
}

// att: (R, H, att_stride) fp32 scratch, att_stride ≥ every key count
static inline void decode_attention(floatX* ctx, float* att, int att_stride, const floatX* q, const DecodeAttn* s,
                                    cudaStream_t stream) {
    dim3 grid(s->R, s->H);
    decode_attention_kernel<<<grid, 128, 0, stream>>>(ctx, att, q, *s, att_stride);
    cudaCheckLaunch();
}

// rows (R, HD) into a cache at the position *pos: row r at cache + r·row_stride + pos·HD (the key or
// value of the new position, computed into a fixed buffer first so that a replayed step writes where
// its position says)
__global__ void cache_put_kernel(floatX* cache, const floatX* rows, const int* pos, size_t row_stride, int HD) {
    int r = blockIdx.x;
    floatX* d = cache + (size_t)r * row_stride + (size_t)*pos * HD;
    for (int i = threadIdx.x; i < HD; i += blockDim.x) d[i] = rows[(size_t)r * HD + i];
}

static inline void cache_put(floatX* cache, const floatX* rows, const int* pos, int R, size_t row_stride, int HD,
                             cudaStream_t stream) {
    cache_put_kernel<<<R, 128, 0, stream>>>(cache, rows, pos, row_stride, HD);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// scores of the next token

// the scores of one step (gen_scores): what the search sets once per call, and where the step's position
// and sequences are on the device (a replayed CUDA graph reads them there)
typedef struct {
    int V, eos;
    float eos_bias;        // added to the eos logit first
    int log_probs;         // 1 (beam): x ← log_softmax(x) before the processors, + score[r] after them
    const float* score;    // (R) running beam scores, or NULL
    const int* seq;        // (R, seq_stride) the sequences so far, start token first (penalty, n-gram ban)
    int seq_stride;
    int len;               // their length, start token included, or (pos set) *pos + 1 read on the device
    const int* pos;
    float penalty;         // repetition penalty, 1 = off
    float* gathered;       // (R, seq_stride) scratch of the penalty (the scores before it), or NULL when off
    int ngram;             // no_repeat_ngram_size, 0 = off
    int min_new;           // eos → −inf while len − 1 < min_new (new tokens after the start token)
} GenScores;

// one block per row: x[eos] += eos_bias; (log_probs) x ← x − max − log Σ exp(x − max) (the sum in fp64 as
// the CPU engine's log_softmax_forward); RepetitionPenaltyLogitsProcessor: the scores of the tokens in
// the row's sequence gathered first, then s < 0 ? s·penalty : s/penalty scattered back (a token that
// occurs twice gets the same value twice, as torch's gather/scatter); the min_new_tokens eos ban; + score
__global__ void gen_scores_kernel(float* logits, GenScores p) {
    __shared__ float scratch[32];
    __shared__ double part[32];
    int V = p.V;
    float* x = logits + (size_t)blockIdx.x * V;
    int len = p.pos ? *p.pos + 1 : p.len;
    if (threadIdx.x == 0) x[p.eos] += p.eos_bias;
    __syncthreads();
    if (p.log_probs) {
        float maxv = -INFINITY;
        for (int i = threadIdx.x; i < V; i += blockDim.x) maxv = fmaxf(maxv, x[i]);
        maxv = block_reduce(maxv, scratch, true);
        double sum = 0.0;
        for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(x[i] - maxv);
        sum = warp_sum_double(sum);
        if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = sum;
        __syncthreads();
        double all = 0.0;
        for (int w = 0; w < (int)blockDim.x / 32; w++) all += part[w];
        float lse = (float)log(all);
        for (int i = threadIdx.x; i < V; i += blockDim.x) x[i] = x[i] - maxv - lse;
        __syncthreads();
    }
    if (p.penalty != 1.0f) {
        const int* s = p.seq + (size_t)blockIdx.x * p.seq_stride;
        float* g = p.gathered + (size_t)blockIdx.x * p.seq_stride;
        for (int i = threadIdx.x; i < len; i += blockDim.x) g[i] = x[s[i]];
        __syncthreads();
        for (int i = threadIdx.x; i < len; i += blockDim.x) x[s[i]] = g[i] < 0.0f ? g[i] * p.penalty : g[i] / p.penalty;
        __syncthreads();
    }
    float add = p.score ? p.score[blockIdx.x] : 0.0f;
    if (p.score) for (int i = threadIdx.x; i < V; i += blockDim.x) x[i] = x[i] + add;
    __syncthreads();
    if (threadIdx.x == 0 && len - 1 < p.min_new) x[p.eos] = -INFINITY;
}

// HF's NoRepeatNGramLogitsProcessor: row r's last n−1 tokens (of len, start token included) matched
// against every earlier window; each match bans the token that followed it. One block per row. pos:
// NULL, or where the step's position t is on the device (then len = t + 1)
__global__ void gen_ban_ngrams_kernel(float* logits, int V, const int* seq, int seq_stride, int len, int n, const int* pos) {
    if (pos) len = *pos + 1;
    if (len < n) return;
    const int* s = seq + (size_t)blockIdx.x * seq_stride;
    const int* prefix = s + len - (n - 1);
    for (int i = threadIdx.x; i + n <= len; i += blockDim.x) {
        int match = 1;
        for (int j = 0; j < n - 1 && match; j++) match = s[i + j] == prefix[j];
        if (match) logits[(size_t)blockIdx.x * V + s[i + n - 1]] = -INFINITY;
    }
}

// the processed scores of R rows in place (see GenScores)
static inline void gen_scores(float* logits, int R, const GenScores* p, cudaStream_t stream) {
    gen_scores_kernel<<<R, 1024, 0, stream>>>(logits, *p);
    cudaCheckLaunch();
    if (p->ngram <= 0 || (!p->pos && p->len < p->ngram)) return;
    gen_ban_ngrams_kernel<<<R, 128, 0, stream>>>(logits, p->V, p->seq, p->seq_stride, p->len, p->ngram, p->pos);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// top-k per group: K rounds of a block-wide arg-max over the elements that come after the last pick

__device__ __forceinline__ bool topk_before(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

// one block per group of n values (group g at x + g·n): val/idx (G, K), idx relative to the group
__global__ void topk_kernel(const float* x, int n, int K, float* val, int* idx) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ float last_v;
    __shared__ int last_i;
    const float* g = x + (size_t)blockIdx.x * n;
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    for (int k = 0; k < K; k++) {
        float bv = -INFINITY; int bi = -1;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float v = g[i];
            if (v != v) continue; // NaN never wins
            if (k > 0 && !topk_before(last_v, last_i, v, i)) continue; // picked already
            if (bi < 0 || topk_before(v, i, bv, bi)) { bv = v; bi = i; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi >= 0 && (bi < 0 || topk_before(ov, oi, bv, bi))) { bv = ov; bi = oi; }
        }
        if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < warps; w++)
                if (si[w] >= 0 && (si[0] < 0 || topk_before(sv[w], si[w], sv[0], si[0]))) { sv[0] = sv[w]; si[0] = si[w]; }
            last_v = sv[0]; last_i = si[0];
            val[(size_t)blockIdx.x * K + k] = sv[0];
            idx[(size_t)blockIdx.x * K + k] = si[0];
        }
        __syncthreads();
    }
}

static inline void topk(const float* x, int groups, int n, int K, float* val, int* idx, cudaStream_t stream) {
    topk_kernel<<<groups, 1024, 0, stream>>>(x, n, K, val, idx);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// beam search: dst row r (positions < len) ← src row parent[r], for `layers` caches of R rows

__global__ void cache_reorder_kernel(floatX* dst, const floatX* src, const int* parent, int R, size_t row, size_t len_elems) {
    int r = blockIdx.x, l = blockIdx.y;
    const floatX* s = src + ((size_t)l * R + parent[r]) * row;
    floatX* d = dst + ((size_t)l * R + r) * row;
    for (size_t i = threadIdx.x; i < len_elems; i += blockDim.x) d[i] = s[i];
}

static inline void cache_reorder(floatX* dst, const floatX* src, const int* parent, int layers, int R, size_t row,
                                 size_t len_elems, cudaStream_t stream) {
    dim3 grid(R, layers);
    cache_reorder_kernel<<<grid, 256, 0, stream>>>(dst, src, parent, R, row, len_elems);
    cudaCheckLaunch();
}

#endif // T5_GENERATE_CUH
