/* CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320): the same value as Python's zlib.crc32. */
#ifndef CL_CRC32_H
#define CL_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC over data[0..n); start with crc = 0 (as zlib.crc32(data, 0)). */
uint32_t cl_crc32(uint32_t crc, const uint8_t *data, size_t n);

#endif
