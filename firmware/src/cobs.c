/* COBS encoder and decoder, byte-compatible with the Python package `cobs` (cobs.cobs). */
#include "cl_cobs.h"

size_t cl_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    size_t out = 1, code_at = 0, i;
    uint8_t code = 1;

    if (cap == 0) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (src[i] != 0) {
            if (out >= cap) {
                return 0;
            }
            dst[out++] = src[i];
            code++;
        }
        if (src[i] == 0 || code == 0xFF) {
            dst[code_at] = code;
            code = 1;
            code_at = out;
            if (src[i] == 0 || i + 1 < n) {
                if (out >= cap) {
                    return 0;
                }
                out++; /* reserve the next block's code byte */
            }
        }
    }
    if (code_at < out) {
        dst[code_at] = code; /* close the last block (not when a full block ended the input) */
    }
    return out;
}

long cl_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    size_t in = 0, out = 0;

    while (in < n) {
        uint8_t code = src[in++];
        uint8_t k;

        if (code == 0) {
            return -1;
        }
        for (k = 1; k < code; k++) {
            if (in >= n || src[in] == 0 || out >= cap) {
                return -1;
            }
            dst[out++] = src[in++];
        }
        if (code != 0xFF && in < n) {
            if (out >= cap) {
                return -1;
            }
            dst[out++] = 0;
        }
    }
    return (long)out;
}
