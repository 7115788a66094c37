/* Frames of docs/protocol.md §1: COBS( header[10] | payload | crc32 ) | 0x00. */
#ifndef CL_FRAME_H
#define CL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define CL_VERSION 0x13 /* protocol 1.3: major << 4 | minor */
#define CL_HEADER_SIZE 10
#define CL_MIN_FRAME 14
#define CL_MAX_FRAME 254   /* 10 + 240 + 4, before COBS */
#define CL_MAX_ENCODED 255 /* after COBS, without the delimiter */
#define CL_WIRE_MAX 256    /* with the delimiter */
#define CL_NO_REF 0xFFFFu

enum cl_flag { CL_F_RESPONSE = 1, CL_F_ERROR = 2, CL_F_UNRELIABLE = 4 };

typedef struct {
    uint8_t version, type, flags, channel;
    uint16_t seq, ref, len;
    const uint8_t *payload; /* len bytes, inside the receiver's buffer */
    uint32_t crc;           /* the frame's CRC-32 (over header and payload) */
} cl_frame;

/* What a delimiter completed. */
enum cl_rx_event { CL_RX_NONE, CL_RX_FRAME, CL_RX_COBS_ERROR, CL_RX_LEN_ERROR, CL_RX_CRC_ERROR };

/* Streaming receiver: holds at most one encoded frame; an over-long one is dropped up to 0x00. */
typedef struct {
    uint8_t enc[CL_MAX_ENCODED];
    uint8_t raw[CL_MAX_ENCODED];
    size_t n;
    int overflow;
} cl_rx;

void cl_rx_init(cl_rx *rx);

/* Feed one received byte. On CL_RX_FRAME, *out holds the frame (valid until the next call).
 * The version is not checked here: the caller decides (a foreign HELLO gets NAK(VERSION)). */
enum cl_rx_event cl_rx_byte(cl_rx *rx, uint8_t byte, cl_frame *out);

/* Encode a frame (version, type, flags, channel, seq, ref, payload of len bytes) into wire[] with
 * its trailing 0x00. Returns the wire length (<= CL_WIRE_MAX), or 0 if len exceeds 240. */
size_t cl_frame_encode(const cl_frame *f, uint8_t wire[CL_WIRE_MAX]);

#endif
