// crc32.h — CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum of the example
// files and checkpoints. The same value as Python's zlib.crc32, so prepro can write it.
// Slicing-by-8: eight table lookups per 8 input bytes (~2 GB/s on one core), no dependency.
#ifndef T5_CRC32_H
#define T5_CRC32_H

#include <stdint.h>  // defines: uint32_t, uint64_t
#include <stddef.h>  // defines: size_t
#include <string.h>  // defines: memcpy

typedef struct { uint32_t t[8][256]; } Crc32Table;

// t[0] is the classic byte table; t[k][b] = crc of byte b followed by k zero bytes
static inline void crc32_table_init(Crc32Table* T) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        T->t[0][b] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int b = 0; b < 256; b++) T->t[k][b] = (T->t[k - 1][b] >> 8) ^ T->t[0][T->t[k - 1][b] & 0xFF];
}

// continues a running crc (start with 0) over n more bytes
static inline uint32_t crc32_update(const Crc32Table* T, uint32_t crc, const void* data, size_t n) {
    const unsigned char* p = (const unsigned char*)data;
    uint32_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4); memcpy(&hi, p + 4, 4); // little-endian hosts (the file formats are LE)
        lo ^= c;
        c = T->t[7][lo & 0xFF] ^ T->t[6][(lo >> 8) & 0xFF] ^ T->t[5][(lo >> 16) & 0xFF] ^ T->t[4][lo >> 24] ^
            T->t[3][hi & 0xFF] ^ T->t[2][(hi >> 8) & 0xFF] ^ T->t[1][(hi >> 16) & 0xFF] ^ T->t[0][hi >> 24];
    }
    while (n--) c = (c >> 8) ^ T->t[0][(c ^ *p++) & 0xFF];
    return ~c;
}

// one-shot convenience (builds the 8 KB table each call: use crc32_update for many buffers)
static inline uint32_t crc32_of(const void* data, size_t n) {
    Crc32Table T;
    crc32_table_init(&T);
    return crc32_update(&T, 0, data, n);
}

#endif // T5_CRC32_H
