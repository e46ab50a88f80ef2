// rng.h — deterministic random numbers: a seeded generator for initialisation and shuffling,
// and a stateless hash for dropout masks, so the backward pass recomputes a mask instead of
// storing it (the mask of element i at site s is a pure function of (seed, s, i)).
#ifndef T5_RNG_H
#define T5_RNG_H

#include <stdint.h>  // defines: uint64_t, uint32_t
#include <math.h>    // defines: sqrtf, logf, cosf

typedef struct { uint64_t state; } Rng;

// splitmix64: one 64-bit mixing step; good statistical quality, trivially seekable
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void rng_init(Rng* r, uint64_t seed) { r->state = seed; }

static inline uint64_t rng_next(Rng* r) {
    r->state += 0x9e3779b97f4a7c15ULL;
    return mix64(r->state);
}

// uniform in [0, 1) with 24 random bits
static inline float rng_uniform(Rng* r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }

// standard normal (Box–Muller, one value per call)
static inline float rng_normal(Rng* r) {
    float u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

// dropout: keep element `index` of site `site` with probability 1-p; the caller scales by 1/(1-p)
static inline int dropout_keep(uint64_t seed, uint32_t site, uint64_t index, float p) {
    uint64_t h = mix64(seed ^ mix64(((uint64_t)site << 48) ^ index));
    return (float)(h >> 40) * (1.0f / 16777216.0f) >= p;
}

#endif // T5_RNG_H
