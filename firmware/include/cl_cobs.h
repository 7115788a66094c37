/* Consistent Overhead Byte Stuffing (Cheshire & Baker 1999): removes every 0x00 from a frame. */
#ifndef CL_COBS_H
#define CL_COBS_H

#include <stddef.h>
#include <stdint.h>

/* Encode src[0..n) into dst (capacity cap, at most n + n/254 + 1 needed; no delimiter appended).
 * Returns the encoded length, or 0 when dst is too small. */
size_t cl_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

/* Decode src[0..n) (no delimiter) into dst (capacity cap).
 * Returns the decoded length, or -1 on a malformed encoding (a 0x00, a code running past the end)
 * or when dst is too small. */
long cl_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

#endif
