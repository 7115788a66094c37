/* Frame assembly and parsing (docs/protocol.md §1). */
#include "cl_frame.h"

#include <string.h>

#include "cl_bytes.h"
#include "cl_cobs.h"
#include "cl_crc32.h"

void cl_rx_init(cl_rx *rx)
{
    rx->n = 0;
    rx->overflow = 0;
}

static enum cl_rx_event parse(cl_rx *rx, cl_frame *out)
{
    const long n = cl_cobs_decode(rx->enc, rx->n, rx->raw, sizeof rx->raw);
    const uint8_t *r = rx->raw;
    uint32_t crc;

    if (n < 0) {
        return CL_RX_COBS_ERROR;
    }
    if (n < CL_MIN_FRAME || n > CL_MAX_FRAME) {
        return CL_RX_LEN_ERROR;
    }
    crc = cl_crc32(0, r, (size_t)n - 4);
    if (crc != cl_rd32(r + n - 4)) {
        return CL_RX_CRC_ERROR;
    }
    if (cl_rd16(r + 8) != (uint16_t)(n - CL_MIN_FRAME)) {
        return CL_RX_LEN_ERROR;
    }
    out->version = r[0];
    out->type = r[1];
    out->flags = r[2];
    out->channel = r[3];
    out->seq = cl_rd16(r + 4);
    out->ref = cl_rd16(r + 6);
    out->len = cl_rd16(r + 8);
    out->payload = r + CL_HEADER_SIZE;
    out->crc = crc;
    return CL_RX_FRAME;
}

enum cl_rx_event cl_rx_byte(cl_rx *rx, uint8_t byte, cl_frame *out)
{
    enum cl_rx_event ev = CL_RX_NONE;

    if (byte != 0) {
        if (rx->n < sizeof rx->enc) {
            rx->enc[rx->n++] = byte;
        } else {
            rx->overflow = 1;
        }
        return CL_RX_NONE;
    }
    if (rx->overflow) {
        ev = CL_RX_LEN_ERROR;
    } else if (rx->n > 0) {
        ev = parse(rx, out);
    }
    cl_rx_init(rx);
    return ev;
}

size_t cl_frame_encode(const cl_frame *f, uint8_t wire[CL_WIRE_MAX])
{
    uint8_t raw[CL_MAX_FRAME];
    size_t n;

    if (f->len > CL_MAX_FRAME - CL_MIN_FRAME) {
        return 0;
    }
    raw[0] = f->version;
    raw[1] = f->type;
    raw[2] = f->flags;
    raw[3] = f->channel;
    cl_wr16(raw + 4, f->seq);
    cl_wr16(raw + 6, f->ref);
    cl_wr16(raw + 8, f->len);
    if (f->len) {
        memcpy(raw + CL_HEADER_SIZE, f->payload, f->len);
    }
    cl_wr32(raw + CL_HEADER_SIZE + f->len, cl_crc32(0, raw, CL_HEADER_SIZE + (size_t)f->len));
    n = cl_cobs_encode(raw, (size_t)CL_MIN_FRAME + f->len, wire, CL_MAX_ENCODED);
    wire[n] = 0;
    return n + 1;
}
