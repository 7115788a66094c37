/* Board session layer: frames in, duplicate suppression, dispatch, counters, frames out. */
#include "cl_board.h"

#include <stddef.h>
#include <string.h>

#include "board_state.h"
#include "cl_bytes.h"

#define NAK_DETAIL_MAX 64

cl_board_t cl_board;

/* Per channel: the last executed request (seq, crc) and the response frame sent for it. */
static struct {
    int valid;
    uint16_t seq;
    uint32_t crc;
    size_t len;
    uint8_t wire[CL_WIRE_MAX];
} cache[CL_N_CHANNELS];

static cl_rx rx;
static cl_reply reply;
static int nak_drops; /* the host asked for NAK(DROPPED) in its HELLO */

void cl_refuse(cl_reply *rep, uint8_t code, const char *detail)
{
    rep->nak = code;
    rep->detail = detail;
}

void cl_unconfigure(void)
{
    cl_board.configured = 0;
    cl_board.generation = 0;
    cl_board.shadow_gen = 0;
    memset(cl_board.out_size, 0, sizeof cl_board.out_size);
}

void cl_board_init(uint32_t board_id)
{
    memset(cl_board.counters, 0, sizeof cl_board.counters);
    memset(cache, 0, sizeof cache);
    cl_board.board_id = board_id;
    nak_drops = 0;
    cl_unconfigure();
    cl_rx_init(&rx);
}

static void hello(const cl_frame *req, cl_reply *rep)
{
    const cl_board_t *b = &cl_board;
    uint8_t *p = rep->payload;
    const uint32_t caps = CL_CAP_FIXED | CL_CAP_RECURRENT | CL_CAP_SPIKING_READOUT | CL_CAP_ALIF |
                          CL_CAP_MEMBRANE | CL_CAP_DECAY_SHIFT | CL_CAP_DECAY_MULTIPLIER | CL_CAP_W_I8 |
                          CL_CAP_W_I16 | CL_CAP_W_I32 | CL_CAP_GAIN | CL_CAP_SPIKE_CAP | CL_CAP_RULES | CL_CAP_LAYERS |
                          CL_CAP_DROP_NAK;

    nak_drops = req->len > 2 && (req->payload[2] & CL_HELLO_NAK_DROPPED);
    memset(p, 0, 40);
    p[0] = CL_FW_MAJOR;
    p[1] = CL_FW_MINOR;
    cl_wr32(p + 2, b->board_id);
    cl_wr32(p + 6, caps);
    cl_wr16(p + 10, CL_MAX_PAYLOAD);
    p[12] = 1; /* window */
    p[13] = CL_N_CHANNELS;
    cl_wr16(p + 14, CL_MAX_NEURONS);
    cl_wr16(p + 16, CL_MAX_INPUTS);
    cl_wr32(p + 18, CL_MAX_SYNAPSES);
    p[22] = 32; /* max_state_bits: membranes travel as i32 */
    p[23] = 24; /* max_decay_bits */
    cl_wr16(p + 24, CL_MAX_TICKS);
    cl_wr32(p + 26, (uint32_t)CL_OUTPUT_BYTES);
    cl_wr32(p + 30, 0); /* tick_ns: as fast as possible */
    cl_wr16(p + 34, b->generation);
    p[36] = (uint8_t)((b->configured ? 1 : 0) | (b->generation ? 2 : 0));
    rep->type = CL_HELLO_ACK;
    rep->len = 40;
}

static void reset(const cl_frame *req, cl_reply *rep)
{
    cl_board.counters[CL_C_RESETS]++;
    if (req->payload[0] == 1) {
        cl_unconfigure();
    } else if (req->payload[0] == 0) {
        cl_net_reset(&cl_board.state);
        cl_board.tick = 0;
    } else {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "reset kind must be 0 (state) or 1 (full)");
        return;
    }
    rep->type = CL_ACK;
}

static void read_counters(cl_reply *rep)
{
    int k;
    for (k = 0; k < CL_N_COUNTERS; k++) {
        cl_wr32(rep->payload + 4 * k, cl_board.counters[k]);
    }
    rep->type = CL_COUNTERS;
    rep->len = 4 * CL_N_COUNTERS;
}

/* Smallest payload of each request type, and whether it needs CONFIG_NET first. */
static int request_shape(uint8_t type, uint16_t *min_len, int *needs_config)
{
    static const struct {
        uint8_t type;
        uint8_t min_len;
        uint8_t needs_config;
    } shapes[] = {
        {CL_HELLO, 2, 0},         {CL_PING, 0, 0},          {CL_RESET, 1, 0},
        {CL_CONFIG_NET, 16, 0},   {CL_READ_COUNTERS, 0, 0}, {CL_WRITE_PARAM, 4, 1},
        {CL_WRITE_WEIGHTS, 8, 1}, {CL_READ_WEIGHTS, 8, 1},  {CL_COMMIT, 6, 1},
        {CL_INPUT, 4, 1},         {CL_RUN, 3, 1},           {CL_READ_OUTPUT, 7, 1},
        {CL_CONFIG_RULES, 10, 1}, {CL_CONFIG_LAYERS, 2, 1},
    };
    size_t k;
    for (k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        if (shapes[k].type == type) {
            *min_len = shapes[k].min_len;
            *needs_config = shapes[k].needs_config;
            return 1;
        }
    }
    return 0;
}

static void dispatch(const cl_frame *req, cl_reply *rep)
{
    uint16_t min_len;
    int needs_config;

    if (!request_shape(req->type, &min_len, &needs_config)) {
        cl_refuse(rep, CL_NAK_UNKNOWN_TYPE, "message type not implemented");
    } else if (needs_config && !cl_board.configured) {
        cl_refuse(rep, CL_NAK_NOT_CONFIGURED, "send CONFIG_NET first");
    } else if (req->len < min_len) {
        cl_refuse(rep, CL_NAK_BAD_LEN, "payload shorter than its message type needs");
    } else {
        switch (req->type) {
        case CL_HELLO: hello(req, rep); break;
        case CL_PING:
            memcpy(rep->payload, req->payload, req->len);
            rep->type = CL_PONG;
            rep->len = req->len;
            break;
        case CL_RESET: reset(req, rep); break;
        case CL_READ_COUNTERS: read_counters(rep); break;
        case CL_CONFIG_NET: cl_cmd_config(req, rep); break;
        case CL_CONFIG_RULES: cl_cmd_config_rules(req, rep); break;
        case CL_CONFIG_LAYERS: cl_cmd_config_layers(req, rep); break;
        case CL_WRITE_PARAM: cl_cmd_write_param(req, rep); break;
        case CL_WRITE_WEIGHTS: cl_cmd_write_weights(req, rep); break;
        case CL_READ_WEIGHTS: cl_cmd_read_weights(req, rep); break;
        case CL_COMMIT: cl_cmd_commit(req, rep); break;
        case CL_INPUT: cl_cmd_input(req, rep); break;
        case CL_RUN: cl_cmd_run(req, rep); break;
        default: cl_cmd_read_output(req, rep); break;
        }
    }
}

/* Turn a reply into a response frame to req: the specific type, or NAK(code, type, detail). */
static size_t respond(const cl_frame *req, cl_reply *rep, uint8_t wire[CL_WIRE_MAX])
{
    cl_frame out;

    out.version = CL_VERSION;
    out.flags = CL_F_RESPONSE;
    out.channel = req->channel;
    out.seq = req->seq;
    out.ref = req->seq;
    if (rep->nak) {
        size_t n = rep->detail ? strlen(rep->detail) : 0;
        n = n > NAK_DETAIL_MAX ? NAK_DETAIL_MAX : n;
        rep->payload[0] = rep->nak;
        rep->payload[1] = req->type;
        if (n) {
            memcpy(rep->payload + 2, rep->detail, n);
        }
        rep->type = CL_NAK;
        rep->len = (uint16_t)(2 + n);
        out.flags |= CL_F_ERROR;
        cl_board.counters[CL_C_NAKS_SENT]++;
    }
    out.type = rep->type;
    out.len = rep->len;
    out.payload = rep->payload;
    return cl_frame_encode(&out, wire);
}

static void on_frame(const cl_frame *req)
{
    static uint8_t wire[CL_WIRE_MAX];
    const int reliable = !(req->flags & CL_F_UNRELIABLE);
    size_t n;

    if ((req->flags & CL_F_RESPONSE) || req->channel >= CL_N_CHANNELS) {
        return;
    }
    if (reliable && req->type != CL_HELLO && cache[req->channel].valid &&
        cache[req->channel].seq == req->seq && cache[req->channel].crc == req->crc) {
        cl_board.counters[CL_C_DUPLICATES]++;
        cl_port_write(cache[req->channel].wire, cache[req->channel].len);
        return;
    }
    memset(&reply, 0, offsetof(cl_reply, payload));
    dispatch(req, &reply);
    n = respond(req, &reply, wire);
    if (req->type == CL_HELLO) {
        memset(cache, 0, sizeof cache);
    }
    if (!reliable) {
        return;
    }
    cache[req->channel].valid = 1;
    cache[req->channel].seq = req->seq;
    cache[req->channel].crc = req->crc;
    cache[req->channel].len = n;
    memcpy(cache[req->channel].wire, wire, n);
    cl_port_write(wire, n);
}

/* An unsolicited NAK(code, type, detail) on the board channel (ref 0xFFFF). */
static void unsolicited_nak(uint8_t code, uint8_t type, const char *detail)
{
    uint8_t wire[CL_WIRE_MAX];
    uint8_t payload[2 + NAK_DETAIL_MAX];
    size_t n = strlen(detail);
    cl_frame out;

    n = n > NAK_DETAIL_MAX ? NAK_DETAIL_MAX : n;
    payload[0] = code;
    payload[1] = type;
    memcpy(payload + 2, detail, n);
    out.version = CL_VERSION;
    out.type = CL_NAK;
    out.flags = CL_F_RESPONSE | CL_F_ERROR;
    out.channel = CL_BOARD_CHANNEL;
    out.seq = 0;
    out.ref = CL_NO_REF;
    out.len = (uint16_t)(2 + n);
    out.payload = payload;
    cl_board.counters[CL_C_NAKS_SENT]++;
    cl_port_write(wire, cl_frame_encode(&out, wire));
}

/* A frame of another major version: dropped, except that a HELLO learns our version. */
static void on_foreign(const cl_frame *req)
{
    cl_board.counters[CL_C_RX_VERSION_ERRORS]++;
    if (req->type == CL_HELLO) {
        unsolicited_nak(CL_NAK_VERSION, CL_HELLO, "unknown protocol version");
    }
}

/* A frame dropped as damaged: counted, and NAK(DROPPED) in its place if the host asked for it. */
static void on_dropped(int counter, const char *reason)
{
    cl_board.counters[counter]++;
    if (nak_drops) {
        unsolicited_nak(CL_NAK_DROPPED, 0, reason);
    }
}

void cl_board_rx(const uint8_t *data, size_t n)
{
    size_t k;
    cl_frame req;

    for (k = 0; k < n; k++) {
        switch (cl_rx_byte(&rx, data[k], &req)) {
        case CL_RX_FRAME:
            if (req.version >> 4 != CL_VERSION >> 4) {
                on_foreign(&req);
            } else {
                cl_board.counters[CL_C_RX_FRAMES]++;
                on_frame(&req);
            }
            break;
        case CL_RX_COBS_ERROR: on_dropped(CL_C_RX_COBS_ERRORS, "cobs"); break;
        case CL_RX_LEN_ERROR: on_dropped(CL_C_RX_LEN_ERRORS, "len"); break;
        case CL_RX_CRC_ERROR: on_dropped(CL_C_RX_CRC_ERRORS, "crc"); break;
        default: break;
        }
    }
}
