// flash_attention.cuh — T5 attention as fused tiled kernels that never write the (B, H, Tq, Tk)
// probability matrix to global memory (FlashAttention-2's scheme, with T5's relative bias, masks and
// the trainer's dropout hash). The same math as llmc/attention.cuh, whose AttnSpec it takes:
//
//   out (B, Tq, H·D) = dropout(softmax(q·kᵀ + bias[bucket(j−i), h] + mask)) · v      — T5: NO 1/sqrt(D)
//   lse (B, H, Tq)   = log Σ_j exp(s_ij)   (fp32, the row's logsumexp, kept for the backward pass)
//
// Forward: one block per (64 queries, h, b); key tiles of 64 stream through shared memory; each warp
// owns 16 query rows and keeps their running max m, running sum l and output in registers (online
// softmax in fp32: on a new tile max m', the old sum and output are scaled by exp(m − m')). Key tiles
// past the sequence's key length (padding) or above the diagonal (causal) are never loaded.
// Backward (gradient rule: dq, dk, dv written; drelb accumulated), recomputing p tile by tile:
//   Δ_i = Σ_d dout_id · out_id                       (= Σ_j p'_ij dp'_ij: one dot per row, first)
//   p_ij = exp(s_ij − lse_i)   p' = dropout(p)   dp' = dout·vᵀ   dp = dropout'(dp')   ds = p (dp − Δ)
//   dv = p'ᵀ·dout    dk = dsᵀ·q    (one block per 64 keys, looping over query tiles)
//   dq = ds·k                      (one block per 64 queries, looping over key tiles)
//   drelb[bucket(r), h] += Σ_{b, j − i = r} ds_ij    (diagonal sums per tile, then a fixed-order reduction)
// Splitting dq from dk/dv recomputes q·kᵀ and dout·vᵀ once more but needs no atomics: every sum has
// a fixed order, so two runs are bit-identical. Dropout draws the mask of llmc/attention.cuh (index
// ((b·H + h)·Tq + i)·Tk + j of site drop), which is the CPU engine's.
//
// Precision: bf16 build: q, k, v, dout and the probabilities enter tensor-core mma.sync m16n8k16
// (bf16 in, fp32 accumulate); softmax, lse, Δ, ds and every sum are fp32. The unnormalised
// probabilities exp(s − m) are rounded to bf16 for p'·v (the gemm path rounds the normalised ones).
// Δ is taken from the stored floatX output, as FlashAttention-2 does: in the bf16 build it carries
// 2^-9·|dout·out| of rounding, which ds = p (dp − Δ) keeps even where the exact ds is 0 (a row with a
// single key under dropout; the gemm path gets 0 there), so dk and drelb sit a little further from
// the fp32 reference than the gemm path's (dev/cuda/attention.cu states the bound).
// fp32 build: the same kernels with each mma replaced by fp32 FMAs in the same fragment layout.
// Head size: D = 64 (every FLAN-T5 preset) and D = 128 (t5-3b / t5-11b); other D use the gemm path
// (flash_attention_check says so). q, k, v and dout must be 16-byte aligned (whole-row vector loads).
#ifndef T5_FLASH_ATTENTION_CUH
#define T5_FLASH_ATTENTION_CUH

#include <stdio.h>            // defines: snprintf, fprintf
#include <stdint.h>           // defines: uint32_t, uint64_t, uintptr_t
#include "cuda_common.cuh"    // defines: floatX, from_float, to_float, dropout_apply_dev, warp_sum, block_reduce
#include "attention.cuh"      // defines: AttnSpec, attn_keys_dev, attention_bias_bucket_kernel

// one tile: 64 queries (4 warps × 16 rows) by 64 keys; every shared-memory row is padded by 16 bytes,
// which staggers rows by 4 banks (fragment loads hit 32 different banks)
#define FLASH_TILE 64
#define FLASH_THREADS 128
#define FLASH_PAD (16 / (int)sizeof(floatX))
#define FLASH_LDP (FLASH_TILE + FLASH_PAD)   // row stride of a (64, 64) floatX probability tile
#define FLASH_LDS (FLASH_TILE + 4)           // row stride of a (64, 64) fp32 tile (= FLASH_LDP in the fp32 build)
#define FLASH_DIAG 128                        // per tile: 127 diagonals j − i ∈ [−63, 63], padded

// scratch of one backward call (sizes: flash_attention_part_floats)
typedef struct {
    float* delta;   // (B, H, Tq)         Δ_i
    float* part;    // (B, H, nkb, nqb, FLASH_DIAG) diagonal sums of ds per tile pair (self-attention)
    float* diag;    // (H, Tq + Tk − 1)   diagonal sums of ds (attention_bias_bucket_kernel's input)
} FlashScratch;

// ----------------------------------------------------------------------------
// warp-level tile products. acc[n] is a 16×8 tile in the accumulator layout of mma.m16n8k16:
// with g = lane / 4, t = lane % 4, acc[n][0..1] = row g, columns 8n + 2t + {0, 1}; acc[n][2..3] = row
// g + 8, same columns.

// this thread in the mma tiles: its warp, g = lane / 4, t = lane % 4
struct FlashLane { int warp, g, t; };
__device__ __forceinline__ FlashLane flash_lane() {
    int lane = threadIdx.x % 32;
    return FlashLane{ (int)threadIdx.x / 32, lane / 4, lane % 4 };
}

#ifndef ENABLE_FP32
__device__ __forceinline__ uint32_t flash_ld2(const floatX* p) { return *(const uint32_t*)p; }
__device__ __forceinline__ uint32_t flash_pack2(floatX lo, floatX hi) {
    return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}
// d (16×8, fp32) += a (16×16, bf16, row-major) · b (16×8, bf16, column-major): the PTX fragment layout
__device__ __forceinline__ void flash_mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap(); // bf16 mma needs sm_80 or newer
#endif
}
#endif

// acc (16 × 8·NT) += A (16 × K) · B (K × 8·NT) for one warp.
//   A: element (m, k) at a[m·lda + k]
//   B: element (k, n) at b[n·ldb + k] when B_NK (stored as (N, K), k contiguous), else at b[k·ldb + n]
// Shared-memory row strides are ≡ 4 words (mod 32), so every load below is free of bank conflicts.
template <int NT, int K, bool B_NK>
__device__ __forceinline__ void flash_warp_mma(float (&acc)[NT][4], const floatX* a, int lda, const floatX* b, int ldb) {
    FlashLane ln = flash_lane();
    int g = ln.g, t = ln.t;
#ifdef ENABLE_FP32
    // fp32: the same tile, one FMA per product, k in order
    for (int k = 0; k < K; k++) {
        float a0 = a[g * lda + k], a1 = a[(g + 8) * lda + k];
#pragma unroll
        for (int n = 0; n < NT; n++) {
            int c = 8 * n + 2 * t;
            float b0 = B_NK ? b[c * ldb + k] : b[k * ldb + c];
            float b1 = B_NK ? b[(c + 1) * ldb + k] : b[k * ldb + c + 1];
            acc[n][0] = fmaf(a0, b0, acc[n][0]);
            acc[n][1] = fmaf(a0, b1, acc[n][1]);
            acc[n][2] = fmaf(a1, b0, acc[n][2]);
            acc[n][3] = fmaf(a1, b1, acc[n][3]);
        }
    }
#else
#pragma unroll
    for (int k0 = 0; k0 < K; k0 += 16) {
        // A fragment: rows g and g + 8, columns k0 + 2t (+1) and k0 + 8 + 2t (+1)
        const floatX* ar = a + g * lda + k0 + 2 * t;
        uint32_t af[4] = { flash_ld2(ar), flash_ld2(ar + 8 * lda), flash_ld2(ar + 8), flash_ld2(ar + 8 * lda + 8) };
#pragma unroll
        for (int n = 0; n < NT; n++) {
            // B fragment: column 8n + g, rows k0 + 2t (+1) and k0 + 8 + 2t (+1)
            int c = 8 * n + g, r = k0 + 2 * t;
            uint32_t bf[2];
            if (B_NK) {
                bf[0] = flash_ld2(b + c * ldb + r);
                bf[1] = flash_ld2(b + c * ldb + r + 8);
            } else {
                bf[0] = flash_pack2(b[r * ldb + c], b[(r + 1) * ldb + c]);
                bf[1] = flash_pack2(b[(r + 8) * ldb + c], b[(r + 9) * ldb + c]);
            }
            flash_mma_bf16(acc[n], af, bf);
        }
    }
#endif
}

template <int NT> __device__ __forceinline__ void flash_zero(float (&acc)[NT][4]) {
#pragma unroll
    for (int n = 0; n < NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// ----------------------------------------------------------------------------
// tiles, masks, exp

// the softmax's exp: expf in the fp32 build (tight checks); in the bf16 build the SFU's __expf
// (relative error ~1e-6 here, far below bf16's 4e-3), which keeps the per-score work short
__device__ __forceinline__ float flash_exp(float x) {
#ifdef ENABLE_FP32
    return expf(x);
#else
    return __expf(x);
#endif
}

// rows [r0, r0 + 64) of a head view (row r at src + r·ld, D wide) into a (64, D + PAD) tile; rows at or
// past `rows` are zero (so masked keys multiply finite values)
template <int D>
__device__ __forceinline__ void flash_load_tile(floatX* dst, const floatX* src, int64_t ld, int r0, int rows) {
    constexpr int VEC = 16 / (int)sizeof(floatX), CH = D / VEC, LD = D + FLASH_PAD;
    for (int x = threadIdx.x; x < FLASH_TILE * CH; x += FLASH_THREADS) {
        int r = x / CH, c = (x % CH) * VEC;
        int4 val = make_int4(0, 0, 0, 0);
        if (r0 + r < rows) val = *(const int4*)(src + (int64_t)(r0 + r) * ld + c);
        *(int4*)(dst + r * LD + c) = val;
    }
}

// bias of the tile whose key and query offsets differ by off = j0 − i0: bias_s[jl − il + 63] for the
// local positions jl, il ∈ [0, 64) (0 without a bias table or outside the bucket range)
__device__ __forceinline__ void flash_bias_fill(float* bias_s, const AttnSpec& s, int h, int off) {
    int d = threadIdx.x;
    if (d >= 2 * FLASH_TILE - 1) return;
    int rel = off + d - (FLASH_TILE - 1);
    float v = 0.0f;
    if (s.relb && rel > -s.Tq && rel < s.Tk) v = s.relb[s.buckets[rel + s.Tq - 1] * s.H + h];
    bias_s[d] = v;
}

// keys any row of sequence b may see (the key-padding length), and those row i sees
__device__ __forceinline__ int flash_keys_max(const AttnSpec& s, int b) {
    int n = s.key_len ? s.key_len[b] : s.Tk;
    return n < s.Tk ? n : s.Tk;
}
__device__ __forceinline__ int flash_keys_row(const AttnSpec& s, int b, int i) {
    if (i >= s.Tq) return 0;
    int n = attn_keys_dev(s, b, i);
    return n < s.Tk ? n : s.Tk;
}

// the keys the query tile at i0 may see: up to the padding, and up to the tile's last row when causal
__device__ __forceinline__ int flash_key_end(const AttnSpec& s, int b, int i0) {
    int n = flash_keys_max(s, b);
    return s.causal && n > i0 + FLASH_TILE ? i0 + FLASH_TILE : n;
}

// row 0 of head h of sequence b in a (B, T, H·D) tensor; row r is at + r·H·D
template <int D> __device__ __forceinline__ const floatX* flash_head(const floatX* x, const AttnSpec& s, int b, int h, int T) {
    return x + (int64_t)b * T * s.H * D + h * D;
}

// one key tile of the query-major kernels (forward, dq): rows [j0, j0 + 64) of k and v (zero from
// kend on) and the bias of the tile pair, between the barriers that retire the previous tile
template <int D>
__device__ __forceinline__ void flash_stage_keys(floatX* Ks, floatX* Vs, float* bias_s, const floatX* kh, const floatX* vh,
                                                 const AttnSpec& s, int h, int i0, int j0, int kend) {
    __syncthreads();
    flash_load_tile<D>(Ks, kh, (int64_t)s.H * D, j0, kend);
    flash_load_tile<D>(Vs, vh, (int64_t)s.H * D, j0, kend);
    flash_bias_fill(bias_s, s, h, j0 - i0);
    __syncthreads();
}

// the block of a query-major kernel (forward, dq): query tile i0 of head h of sequence b, the keys it
// sees (kend), and this thread's two rows: local il = 16·warp + g + 8r, keys nk, dropout row base drow
struct FlashRows {
    int i0, h, b, kend, il[2], nk[2];
    uint64_t drow[2];
};
__device__ __forceinline__ FlashRows flash_rows(const AttnSpec& s) {
    FlashRows R;
    FlashLane ln = flash_lane();
    R.i0 = blockIdx.x * FLASH_TILE; R.h = blockIdx.y; R.b = blockIdx.z;
    R.kend = flash_key_end(s, R.b, R.i0);
#pragma unroll
    for (int r = 0; r < 2; r++) {
        R.il[r] = ln.warp * 16 + ln.g + 8 * r;
        int i = R.i0 + R.il[r];
        R.nk[r] = flash_keys_row(s, R.b, i);
        R.drow[r] = (((uint64_t)R.b * s.H + R.h) * s.Tq + (uint64_t)i) * (uint64_t)s.Tk;
    }
    return R;
}

// two consecutive outputs (an even column: 4- or 8-byte aligned), rounded as from_float
__device__ __forceinline__ void flash_store2(floatX* p, float a, float b) {
#ifdef ENABLE_FP32
    *(float2*)p = make_float2(a, b);
#else
    *(__nv_bfloat162*)p = __floats2bfloat162_rn(a, b);
#endif
}

// ----------------------------------------------------------------------------
// forward: grid (⌈Tq/64⌉, H, B)

template <int D>
__global__ void __launch_bounds__(FLASH_THREADS)
flash_attention_forward_kernel(floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v, AttnSpec s) {
    s.drop = dropout_resolve(s.drop); // the seed read once, not per probability
    constexpr int LD = D + FLASH_PAD, NO = D / 8;
    extern __shared__ __align__(16) unsigned char flash_smem[];
    floatX* Qs = (floatX*)flash_smem;           // (64, LD) this block's queries
    floatX* Ks = Qs + FLASH_TILE * LD;          // (64, LD) a key tile
    floatX* Vs = Ks + FLASH_TILE * LD;          // (64, LD)
    floatX* Ps = Vs + FLASH_TILE * LD;          // (64, LDP) dropped unnormalised probabilities (rows per warp)
    float* bias_s = (float*)(Ps + FLASH_TILE * FLASH_LDP); // (128)
    FlashRows R = flash_rows(s);
    int i0 = R.i0, h = R.h, b = R.b, t = flash_lane().t, warp = flash_lane().warp;
    int64_t HD = (int64_t)s.H * D;
    const floatX *kh = flash_head<D>(k, s, b, h, s.Tk), *vh = flash_head<D>(v, s, b, h, s.Tk);
    flash_load_tile<D>(Qs, flash_head<D>(q, s, b, h, s.Tq), HD, i0, s.Tq);
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f }, o[NO][4];
    flash_zero(o);
    for (int j0 = 0; j0 < R.kend; j0 += FLASH_TILE) {
        flash_stage_keys<D>(Ks, Vs, bias_s, kh, vh, s, h, i0, j0, R.kend);
        float sc[8][4];
        flash_zero(sc);
        flash_warp_mma<8, D, true>(sc, Qs + warp * 16 * LD, LD, Ks, LD);   // s = q·kᵀ
        float mt[2] = { m[0], m[1] };
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = e / 2, jl = 8 * n + 2 * t + (e & 1);
                float x = j0 + jl < R.nk[r] ? sc[n][e] + bias_s[jl - R.il[r] + FLASH_TILE - 1] : -INFINITY;
                sc[n][e] = x;
                mt[r] = fmaxf(mt[r], x);
            }
        float mref[2];
        for (int r = 0; r < 2; r++) { // the row's four lanes agree on the new max; rescale by exp(m − m')
            mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
            mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
            mref[r] = mt[r] == -INFINITY ? 0.0f : mt[r]; // nothing seen yet: exp(−inf − 0) = 0 everywhere
            float alpha = flash_exp(m[r] - mref[r]);
            l[r] *= alpha;
#pragma unroll
            for (int n = 0; n < NO; n++) { o[n][2 * r] *= alpha; o[n][2 * r + 1] *= alpha; }
            m[r] = mt[r];
        }
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = e / 2, jl = 8 * n + 2 * t + (e & 1);
                float p = flash_exp(sc[n][e] - mref[r]);
                l[r] += p;
                if (p != 0.0f) p = dropout_apply_dev(p, s.drop, R.drow[r] + (uint64_t)(j0 + jl));
                Ps[R.il[r] * FLASH_LDP + jl] = from_float<floatX>(p);
            }
        __syncwarp(); // the warp's rows of Ps are written
        flash_warp_mma<NO, FLASH_TILE, false>(o, Ps + warp * 16 * FLASH_LDP, FLASH_LDP, Vs, LD); // o += p'·v
    }
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        int i = i0 + R.il[r];
        if (i >= s.Tq) continue;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f; // a row without keys: output 0 (as the gemm path)
        floatX* orow = out + ((int64_t)b * s.Tq + i) * HD + h * D + 2 * t;
#pragma unroll
        for (int n = 0; n < NO; n++) flash_store2(orow + 8 * n, o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
        if (t == 0) lse[((int64_t)b * s.H + h) * s.Tq + i] = l[r] > 0.0f ? m[r] + logf(l[r]) : INFINITY;
    }
}

// ----------------------------------------------------------------------------
// backward

// Δ[(b·H + h)·Tq + i] = Σ_d dout · out over one head row: one warp per row (b, i, h)
__global__ void flash_attention_delta_kernel(float* delta, const floatX* dout, const floatX* out, AttnSpec s) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= s.B * s.Tq * s.H) return;
    int h = row % s.H, i = (row / s.H) % s.Tq, b = row / (s.H * s.Tq);
    const floatX *g = dout + (int64_t)row * s.D, *o = out + (int64_t)row * s.D; // (b·Tq + i)·H·D + h·D
    float sum = 0.0f;
    for (int d = lane; d < s.D; d += 32) sum += to_float(g[d]) * to_float(o[d]);
    sum = warp_sum(sum);
    if (lane == 0) delta[((int64_t)b * s.H + h) * s.Tq + i] = sum;
}

// dk, dv of 64 keys: grid (⌈Tk/64⌉, H, B); each warp owns 16 keys and loops over the query tiles.
// With a bias table, part[b, h, kb, qb, 63 + jl − il] = Σ ds over that diagonal of tile (kb, qb).
template <int D>
__global__ void __launch_bounds__(FLASH_THREADS)
flash_attention_backward_kv_kernel(floatX* dk, floatX* dv, float* part, const floatX* dout, const floatX* q,
                                   const floatX* k, const floatX* v, const float* lse, const float* delta, AttnSpec s) {
    s.drop = dropout_resolve(s.drop); // the seed read once, not per probability
    constexpr int LD = D + FLASH_PAD, NO = D / 8;
    constexpr bool X_F32 = sizeof(floatX) == sizeof(float);
    extern __shared__ __align__(16) unsigned char flash_smem[];
    floatX* Ks = (floatX*)flash_smem;           // (64, LD) this block's keys
    floatX* Vs = Ks + FLASH_TILE * LD;          // (64, LD)
    floatX* Qs = Vs + FLASH_TILE * LD;          // (64, LD) a query tile
    floatX* Gs = Qs + FLASH_TILE * LD;          // (64, LD) its dout
    floatX* Pt = Gs + FLASH_TILE * LD;          // (64 keys, LDP) p'ᵀ
    floatX* St = Pt + FLASH_TILE * FLASH_LDP;   // (64 keys, LDP) dsᵀ
    float* after = (float*)(St + FLASH_TILE * FLASH_LDP);
    float* ds32 = X_F32 ? (float*)St : after;   // (64, LDS) fp32 dsᵀ (St itself in the fp32 build)
    float* lse_s = X_F32 ? after : after + FLASH_TILE * FLASH_LDS; // (64)
    float* delta_s = lse_s + FLASH_TILE;        // (64)
    int* nk_s = (int*)(delta_s + FLASH_TILE);   // (64) keys each query row sees
    float* bias_s = (float*)(nk_s + FLASH_TILE); // (128)
    int kb = blockIdx.x, h = blockIdx.y, b = blockIdx.z, j0 = kb * FLASH_TILE;
    int nkb = gridDim.x, nqb = CEIL_DIV(s.Tq, FLASH_TILE);
    FlashLane ln = flash_lane();
    int warp = ln.warp, t = ln.t;
    int64_t HD = (int64_t)s.H * D;
    const floatX *qh = flash_head<D>(q, s, b, h, s.Tq), *gh = flash_head<D>(dout, s, b, h, s.Tq);
    int kmax = flash_keys_max(s, b);
    int q_start = s.causal ? kb : 0; // causal: query tiles before this one see none of its keys
    if (j0 >= kmax) q_start = nqb;   // keys past the padding: no gradient, zeros written below
    float* mypart = s.relb ? part + (((int64_t)b * s.H + h) * nkb + kb) * nqb * FLASH_DIAG : NULL;
    if (mypart)
        for (int x = threadIdx.x; x < q_start * FLASH_DIAG; x += FLASH_THREADS) mypart[x] = 0.0f;
    flash_load_tile<D>(Ks, flash_head<D>(k, s, b, h, s.Tk), HD, j0, kmax);
    flash_load_tile<D>(Vs, flash_head<D>(v, s, b, h, s.Tk), HD, j0, kmax);
    int jl[2] = { warp * 16 + ln.g, warp * 16 + ln.g + 8 };
    float dka[NO][4], dva[NO][4];
    flash_zero(dka);
    flash_zero(dva);
    for (int qb = q_start; qb < nqb; qb++) {
        int i0 = qb * FLASH_TILE;
        __syncthreads(); // the previous query tile (and its diagonal sums) are consumed
        flash_load_tile<D>(Qs, qh, HD, i0, s.Tq);
        flash_load_tile<D>(Gs, gh, HD, i0, s.Tq);
        if (threadIdx.x < FLASH_TILE) {
            int i = i0 + threadIdx.x;
            int64_t at = ((int64_t)b * s.H + h) * s.Tq + i;
            lse_s[threadIdx.x] = i < s.Tq ? lse[at] : INFINITY;
            delta_s[threadIdx.x] = i < s.Tq ? delta[at] : 0.0f;
            nk_s[threadIdx.x] = flash_keys_row(s, b, i);
        }
        flash_bias_fill(bias_s, s, h, j0 - i0);
        __syncthreads();
        float st[8][4], dpt[8][4];
        flash_zero(st);
        flash_zero(dpt);
        flash_warp_mma<8, D, true>(st, Ks + warp * 16 * LD, LD, Qs, LD);   // sᵀ = k·qᵀ
        flash_warp_mma<8, D, true>(dpt, Vs + warp * 16 * LD, LD, Gs, LD);  // dp'ᵀ = v·doutᵀ
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = e / 2, il = 8 * n + 2 * t + (e & 1), i = i0 + il, j = j0 + jl[r];
                float pd = 0.0f, ds = 0.0f;
                if (j < nk_s[il]) {
                    uint64_t idx = (((uint64_t)b * s.H + h) * s.Tq + (uint64_t)i) * (uint64_t)s.Tk + (uint64_t)j;
                    float p = flash_exp(st[n][e] + bias_s[jl[r] - il + FLASH_TILE - 1] - lse_s[il]);
                    pd = dropout_apply_dev(p, s.drop, idx);
                    ds = p * (dropout_apply_dev(dpt[n][e], s.drop, idx) - delta_s[il]);
                }
                Pt[jl[r] * FLASH_LDP + il] = from_float<floatX>(pd);
                St[jl[r] * FLASH_LDP + il] = from_float<floatX>(ds);
                if (!X_F32) ds32[jl[r] * FLASH_LDS + il] = ds;
            }
        __syncwarp(); // the warp's rows of Pt and St are written
        flash_warp_mma<NO, FLASH_TILE, false>(dva, Pt + warp * 16 * FLASH_LDP, FLASH_LDP, Gs, LD); // dv += p'ᵀ·dout
        flash_warp_mma<NO, FLASH_TILE, false>(dka, St + warp * 16 * FLASH_LDP, FLASH_LDP, Qs, LD); // dk += dsᵀ·q
        if (!mypart) continue;
        __syncthreads(); // every warp's ds is in ds32
        int d = threadIdx.x, off = d - (FLASH_TILE - 1); // diagonal jl − il = off, summed in order of jl
        float sum = 0.0f;
        if (d < 2 * FLASH_TILE - 1)
            for (int a = off > 0 ? off : 0; a < FLASH_TILE && a - off < FLASH_TILE; a++) sum += ds32[a * FLASH_LDS + a - off];
        mypart[qb * FLASH_DIAG + d] = sum; // d = 127 (no diagonal) gets 0
    }
    for (int r = 0; r < 2; r++) {
        int j = j0 + jl[r];
        if (j >= s.Tk) continue;
        int64_t at = ((int64_t)b * s.Tk + j) * HD + h * D + 2 * t;
#pragma unroll
        for (int n = 0; n < NO; n++) {
            flash_store2(dk + at + 8 * n, dka[n][2 * r], dka[n][2 * r + 1]);
            flash_store2(dv + at + 8 * n, dva[n][2 * r], dva[n][2 * r + 1]);
        }
    }
}

// dq of 64 queries: grid (⌈Tq/64⌉, H, B); the key tiles of the forward pass, ds recomputed
template <int D>
__global__ void __launch_bounds__(FLASH_THREADS)
flash_attention_backward_q_kernel(floatX* dq, const floatX* dout, const floatX* q, const floatX* k, const floatX* v,
                                  const float* lse, const float* delta, AttnSpec s) {
    s.drop = dropout_resolve(s.drop); // the seed read once, not per probability
    constexpr int LD = D + FLASH_PAD, NO = D / 8;
    extern __shared__ __align__(16) unsigned char flash_smem[];
    floatX* Qs = (floatX*)flash_smem;           // (64, LD) this block's queries
    floatX* Gs = Qs + FLASH_TILE * LD;          // (64, LD) their dout
    floatX* Ks = Gs + FLASH_TILE * LD;          // (64, LD) a key tile
    floatX* Vs = Ks + FLASH_TILE * LD;          // (64, LD)
    floatX* Ss = Vs + FLASH_TILE * LD;          // (64, LDP) ds (rows per warp)
    float* bias_s = (float*)(Ss + FLASH_TILE * FLASH_LDP); // (128)
    FlashRows R = flash_rows(s);
    int i0 = R.i0, h = R.h, b = R.b, t = flash_lane().t, warp = flash_lane().warp;
    flash_load_tile<D>(Qs, flash_head<D>(q, s, b, h, s.Tq), (int64_t)s.H * D, i0, s.Tq);
    flash_load_tile<D>(Gs, flash_head<D>(dout, s, b, h, s.Tq), (int64_t)s.H * D, i0, s.Tq);
    float lse_r[2], delta_r[2]; // the rows' logsumexp and Δ (rows past Tq: p = 0)
    for (int r = 0; r < 2; r++) {
        int i = i0 + R.il[r];
        int64_t at = ((int64_t)b * s.H + h) * s.Tq + i;
        lse_r[r] = i < s.Tq ? lse[at] : INFINITY;
        delta_r[r] = i < s.Tq ? delta[at] : 0.0f;
    }
    float dqa[NO][4];
    flash_zero(dqa);
    const floatX *kh = flash_head<D>(k, s, b, h, s.Tk), *vh = flash_head<D>(v, s, b, h, s.Tk);
    for (int j0 = 0; j0 < R.kend; j0 += FLASH_TILE) {
        flash_stage_keys<D>(Ks, Vs, bias_s, kh, vh, s, h, i0, j0, R.kend);
        float sc[8][4], dp[8][4];
        flash_zero(sc);
        flash_zero(dp);
        flash_warp_mma<8, D, true>(sc, Qs + warp * 16 * LD, LD, Ks, LD);  // s = q·kᵀ
        flash_warp_mma<8, D, true>(dp, Gs + warp * 16 * LD, LD, Vs, LD);  // dp' = dout·vᵀ
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = e / 2, jl = 8 * n + 2 * t + (e & 1), j = j0 + jl;
                float ds = 0.0f;
                if (j < R.nk[r]) {
                    float p = flash_exp(sc[n][e] + bias_s[jl - R.il[r] + FLASH_TILE - 1] - lse_r[r]);
                    ds = p * (dropout_apply_dev(dp[n][e], s.drop, R.drow[r] + (uint64_t)j) - delta_r[r]);
                }
                Ss[R.il[r] * FLASH_LDP + jl] = from_float<floatX>(ds);
            }
        __syncwarp(); // the warp's rows of Ss are written
        flash_warp_mma<NO, FLASH_TILE, false>(dqa, Ss + warp * 16 * FLASH_LDP, FLASH_LDP, Ks, LD); // dq += ds·k
    }
    for (int r = 0; r < 2; r++) {
        int i = i0 + R.il[r];
        if (i >= s.Tq) continue;
        floatX* row = dq + ((int64_t)b * s.Tq + i) * s.H * D + h * D + 2 * t;
#pragma unroll
        for (int n = 0; n < NO; n++) flash_store2(row + 8 * n, dqa[n][2 * r], dqa[n][2 * r + 1]);
    }
}

// diag[h, r] = Σ ds over the diagonal j − i = r − (Tq − 1): one block per (r, h), the tile pairs in a
// fixed order. Diagonal rel lies in tile pair (kb, qb) at d = rel + 63 − 64·(kb − qb) ∈ [0, 126]:
// kb − qb is ⌊(rel + 63) / 64⌋ or one less.
__global__ void flash_attention_bias_diag_kernel(float* diag, const float* part, AttnSpec s, int nqb, int nkb) {
    __shared__ float scratch[32];
    int R = s.Tq + s.Tk - 1, h = blockIdx.y;
    int u = (int)blockIdx.x - (s.Tq - 1) + (FLASH_TILE - 1);
    int hi = u >= 0 ? u / FLASH_TILE : -((-u + FLASH_TILE - 1) / FLASH_TILE); // ⌊u / 64⌋
    float sum = 0.0f;
    for (int x = threadIdx.x; x < s.B * nqb * 2; x += blockDim.x) {
        int b = x / (2 * nqb), qb = (x / 2) % nqb, dk = hi - x % 2, kb = qb + dk, d = u - FLASH_TILE * dk;
        if (kb >= 0 && kb < nkb && d < 2 * FLASH_TILE - 1)
            sum += part[((((int64_t)b * s.H + h) * nkb + kb) * nqb + qb) * FLASH_DIAG + d];
    }
    sum = block_reduce(sum, scratch, false);
    if (threadIdx.x == 0) diag[(int64_t)h * R + blockIdx.x] = sum;
}

// ----------------------------------------------------------------------------
// launchers

static inline int flash_attention_supports(int D) { return D == 64 || D == 128; }

// dynamic shared memory of the three tiled kernels for head size D
static inline size_t flash_smem_forward(int D) {
    return (3 * (size_t)FLASH_TILE * (D + FLASH_PAD) + FLASH_TILE * FLASH_LDP) * sizeof(floatX) + 2 * FLASH_TILE * sizeof(float);
}
static inline size_t flash_smem_backward_kv(int D) {
    size_t x = (4 * (size_t)FLASH_TILE * (D + FLASH_PAD) + 2 * FLASH_TILE * FLASH_LDP) * sizeof(floatX);
    if (sizeof(floatX) != sizeof(float)) x += (size_t)FLASH_TILE * FLASH_LDS * sizeof(float); // fp32 copy of dsᵀ
    return x + 3 * FLASH_TILE * sizeof(float) + 2 * FLASH_TILE * sizeof(float);
}
static inline size_t flash_smem_backward_q(int D) {
    return (4 * (size_t)FLASH_TILE * (D + FLASH_PAD) + FLASH_TILE * FLASH_LDP) * sizeof(floatX) + 2 * FLASH_TILE * sizeof(float);
}

// 0 when this device runs the kernels for head size D, else -1 and a message naming the reason
static inline int flash_attention_check(int D, char* err, size_t errlen) {
    if (!flash_attention_supports(D)) {
        snprintf(err, errlen, "--attention flash has kernels for d_kv 64 and 128 only, this model has d_kv %d "
                 "(use --attention gemm)", D);
        return -1;
    }
    int dev, optin;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    size_t need = flash_smem_backward_kv(D);
    if (need > (size_t)optin) {
        snprintf(err, errlen, "--attention flash with d_kv %d needs %zu bytes of shared memory per block, this device "
                 "allows %d (" PRECISION_NAME " build; use --attention gemm)", D, need, optin);
        return -1;
    }
    return 0;
}

// floats of FlashScratch.part for one call (0 without a bias table); delta needs B·H·Tq, diag H·(Tq + Tk − 1)
static inline size_t flash_attention_part_floats(int B, int H, int Tq, int Tk) {
    return (size_t)B * H * CEIL_DIV(Tq, FLASH_TILE) * CEIL_DIV(Tk, FLASH_TILE) * FLASH_DIAG;
}

static inline void flash_require_aligned(const void* p, const char* what) {
    if ((uintptr_t)p % 16 == 0) return;
    fprintf(stderr, "error: flash attention: %s is not 16-byte aligned\n", what);
    exit(EXIT_FAILURE);
}

static inline void flash_require_head(const AttnSpec* s) {
    if (flash_attention_supports(s->D)) return;
    fprintf(stderr, "error: flash attention called with D = %d (kernels for 64 and 128 only)\n", s->D);
    exit(EXIT_FAILURE);
}

template <typename K> static void flash_set_smem(K kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int D>
static void flash_forward_launch(floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v,
                                 const AttnSpec* s, cudaStream_t stream) {
    size_t smem = flash_smem_forward(D);
    flash_set_smem(flash_attention_forward_kernel<D>, smem);
    dim3 grid(CEIL_DIV(s->Tq, FLASH_TILE), s->H, s->B);
    flash_attention_forward_kernel<D><<<grid, FLASH_THREADS, smem, stream>>>(out, lse, q, k, v, *s);
    cudaCheckLaunch();
}

// out (B, Tq, H·D) from q (B, Tq, H·D), k, v (B, Tk, H·D); lse (B, H, Tq) for the backward pass
static inline void flash_attention_forward(floatX* out, float* lse, const floatX* q, const floatX* k, const floatX* v,
                                           const AttnSpec* s, cudaStream_t stream) {
    flash_require_head(s);
    flash_require_aligned(q, "q"); flash_require_aligned(k, "k"); flash_require_aligned(v, "v");
    if ((int64_t)s->B * s->Tq * s->H == 0) return;
    if (s->D == 64) flash_forward_launch<64>(out, lse, q, k, v, s, stream);
    else flash_forward_launch<128>(out, lse, q, k, v, s, stream);
}

template <int D>
static void flash_backward_launch(floatX* dq, floatX* dk, floatX* dv, FlashScratch w, const floatX* dout,
                                  const floatX* q, const floatX* k, const floatX* v, const float* lse,
                                  const AttnSpec* s, cudaStream_t stream) {
    size_t kv_smem = flash_smem_backward_kv(D), q_smem = flash_smem_backward_q(D);
    flash_set_smem(flash_attention_backward_kv_kernel<D>, kv_smem);
    flash_set_smem(flash_attention_backward_q_kernel<D>, q_smem);
    dim3 kv_grid(CEIL_DIV(s->Tk, FLASH_TILE), s->H, s->B), q_grid(CEIL_DIV(s->Tq, FLASH_TILE), s->H, s->B);
    flash_attention_backward_kv_kernel<D><<<kv_grid, FLASH_THREADS, kv_smem, stream>>>(dk, dv, w.part, dout, q, k, v,
                                                                                       lse, w.delta, *s);
    cudaCheckLaunch();
    flash_attention_backward_q_kernel<D><<<q_grid, FLASH_THREADS, q_smem, stream>>>(dq, dout, q, k, v, lse, w.delta, *s);
    cudaCheckLaunch();
}

// dq, dk, dv written from dout and the forward's out and lse; drelb (NB, H) accumulated when s->relb is set
// (and drelb is: NULL when the table is frozen, under LoRA)
static inline void flash_attention_backward(floatX* dq, floatX* dk, floatX* dv, float* drelb, int num_buckets,
                                            FlashScratch w, const floatX* dout, const floatX* q, const floatX* k,
                                            const floatX* v, const floatX* out, const float* lse, const AttnSpec* s,
                                            cudaStream_t stream) {
    flash_require_head(s);
    flash_require_aligned(q, "q"); flash_require_aligned(k, "k"); flash_require_aligned(v, "v");
    flash_require_aligned(dout, "dout");
    if ((int64_t)s->B * s->Tq * s->H == 0) return;
    int rows = s->B * s->Tq * s->H, warps = 8;
    flash_attention_delta_kernel<<<CEIL_DIV(rows, warps), warps * 32, 0, stream>>>(w.delta, dout, out, *s);
    cudaCheckLaunch();
    if (s->D == 64) flash_backward_launch<64>(dq, dk, dv, w, dout, q, k, v, lse, s, stream);
    else flash_backward_launch<128>(dq, dk, dv, w, dout, q, k, v, lse, s, stream);
    if (!s->relb || !drelb) return;
    int nqb = CEIL_DIV(s->Tq, FLASH_TILE), nkb = CEIL_DIV(s->Tk, FLASH_TILE);
    dim3 grid(s->Tq + s->Tk - 1, s->H);
    flash_attention_bias_diag_kernel<<<grid, 128, 0, stream>>>(w.diag, w.part, *s, nqb, nkb);
    cudaCheckLaunch();
    attention_bias_bucket_kernel<<<CEIL_DIV(num_buckets * s->H, 128), 128, 0, stream>>>(drelb, w.diag, *s, num_buckets);
    cudaCheckLaunch();
}

#endif // T5_FLASH_ATTENTION_CUH
