/* Network commands of docs/protocol.md §4: configuration, parameters, weights, input, run, output. */
#include <math.h>
#include <string.h>

#include "board_state.h"
#include "cl_bytes.h"
#include "cl_crc32.h"

#define WEIGHTS_HEAD 8 /* <BBHI matrix, dtype, generation, offset */
#define OUTPUT_HEAD 5  /* <BI buffer, offset */

/* WRITE_PARAM gain arrives as f64: this port needs a 64-bit IEEE double (not AVR). */
typedef char cl_double_is_64_bits[sizeof(double) == 8 ? 1 : -1];

static uint8_t raster[CL_MAX_INPUTS]; /* one tick of input, unpacked */

static uint32_t ceil8(uint32_t n)
{
    return (n + 7u) / 8u;
}

static int dtype_size(uint8_t dtype)
{
    static const int sizes[] = {0, 1, 2, 4, 4, 8};
    return dtype <= CL_F64 ? sizes[dtype] : 0;
}

/* Element k of a little-endian integer array of the given dtype (i8, i16, i32). */
static int32_t int_element(const uint8_t *data, uint8_t dtype, uint32_t k)
{
    switch (dtype) {
    case CL_I8: return (int8_t)data[k];
    case CL_I16: return (int16_t)cl_rd16(data + 2 * k);
    default: return (int32_t)cl_rd32(data + 4 * k);
    }
}

/* Element k of a little-endian f64 array (IEEE 754 binary64, as the host sends it). */
static double f64_element(const uint8_t *data, uint32_t k)
{
    const uint64_t bits = (uint64_t)cl_rd32(data + 8 * k) | (uint64_t)cl_rd32(data + 8 * k + 4) << 32;
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Start element and size of a weight matrix in the weight array; 0 if absent from this network. */
static int matrix_span(uint8_t matrix, uint32_t *start, uint32_t *size)
{
    int slot;
    switch (matrix) {
    case CL_M_IN_HIDDEN: slot = CL_W_IN_HIDDEN; break;
    case CL_M_HIDDEN_HIDDEN: slot = CL_W_HIDDEN_HIDDEN; break;
    case CL_M_HIDDEN_OUT: slot = CL_W_HIDDEN_OUT; break;
    case CL_M_IN_HIDDEN_2: slot = CL_W_IN_HIDDEN_2; break;
    case CL_M_HIDDEN_HIDDEN_2: slot = CL_W_HIDDEN_HIDDEN_2; break;
    default: slot = matrix - CL_M_LAYERS + 2; /* layer k >= 1: ids 5 + 2(k - 1), 6 + 2(k - 1) */
    }
    return slot < CL_W_HIDDEN_OUT || matrix < CL_M_LAYERS ? cl_net_matrix_extent(&cl_board.cfg, slot, start, size)
                                                          : 0;
}

/* Make cfg the configuration (CONFIG_NET, CONFIG_LAYERS, CONFIG_RULES): weights, parameters and state
 * cleared. */
static void configure(const cl_net_cfg *cfg, cl_reply *rep)
{
    const char *problem = cl_net_cfg_problem(cfg);
    if (!problem && cfg->state_bits > 32) {
        problem = "state_bits above 32 (membranes travel as i32)";
    }
    if (problem) {
        cl_refuse(rep, CL_NAK_CAPABILITY, problem);
        return;
    }
    cl_board.cfg = *cfg;
    cl_board.configured = 1;
    memset(cl_board.weights, 0, sizeof cl_board.weights);
    cl_board.generation = 0;
    cl_board.shadow_gen = 0;
    cl_net_params_clear(&cl_board.params);
    cl_net_reset(&cl_board.state);
    cl_board.tick = 0;
    memset(cl_board.out_size, 0, sizeof cl_board.out_size);
    rep->type = CL_ACK;
}

/* 1 if elements [offset, offset + count) lie inside [0, size). */
static int span_ok(uint32_t offset, uint32_t count, uint32_t size)
{
    return offset <= size && count <= size - offset;
}

void cl_cmd_config(const cl_frame *req, cl_reply *rep)
{
    const uint8_t *p = req->payload;
    cl_net_cfg cfg;

    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = cl_rd16(p);
    cfg.n_hidden = cl_rd16(p + 2);
    cfg.n_out = cl_rd16(p + 4);
    cfg.recurrent = (p[6] & CL_CFG_RECURRENT) != 0;
    cfg.spiking_readout = (p[6] & CL_CFG_SPIKING_READOUT) != 0;
    cfg.reset_zero = (p[6] & CL_CFG_RESET_ZERO) != 0;
    cfg.decay_kind = p[7];
    cfg.state_bits = p[8];
    cfg.decay_bits = p[9];
    cfg.refractory_steps = cl_rd16(p + 10);
    cfg.max_spikes_per_step = cl_rd16(p + 12);
    cfg.max_input_spikes_per_step = cl_rd16(p + 14);
    cl_net_cfg_defaults(&cfg);
    if (p[6] & CL_CFG_FLOAT) {
        cl_refuse(rep, CL_NAK_CAPABILITY, "float arithmetic not supported (fixed only)");
        return;
    }
    configure(&cfg, rep);
}

void cl_cmd_config_layers(const cl_frame *req, cl_reply *rep)
{
    const uint8_t *p = req->payload;
    cl_net_cfg cfg = cl_board.cfg;
    int k;

    if (p[0] < 1 || p[0] > CL_MAX_LAYERS) {
        cl_refuse(rep, CL_NAK_CAPABILITY, "n_layers exceeds max_layers");
        return;
    }
    if (req->len != 2u + 2u * p[0]) {
        cl_refuse(rep, CL_NAK_BAD_LEN, "CONFIG_LAYERS: 2 bytes + 2 per layer");
        return;
    }
    cfg.n_layers = p[0];
    cfg.recurrent = p[1];
    for (k = 0; k < p[0]; k++) {
        cfg.layer_size[k] = cl_rd16(p + 2 + 2 * k);
    }
    configure(&cfg, rep);
}

void cl_cmd_config_rules(const cl_frame *req, cl_reply *rep)
{
    const uint8_t *p = req->payload;
    cl_net_cfg cfg = cl_board.cfg;

    cfg.input_delay = p[0];
    cfg.add_then_decay = p[1];
    cfg.decay_rounding = p[2];
    cfg.per_addition = p[3];
    cfg.wrap_current = p[4];
    cfg.symmetric_membrane = p[5];
    cfg.fractional_bits = p[6];
    cfg.strict_threshold = p[7];
    cfg.max_spike_count = p[8];
    cfg.synapses = p[9];
    configure(&cfg, rep);
}

void cl_cmd_write_param(const cl_frame *req, cl_reply *rep)
{
    const cl_net_cfg *c = &cl_board.cfg;
    cl_net_params *par = &cl_board.params;
    const uint8_t vec = req->payload[0], dtype = req->payload[1];
    const int hidden = vec <= CL_V_HID_GAIN || vec == CL_V_HID_D_SYN2 || vec == CL_V_HID_BIAS;
    const int is_code = vec == CL_V_HID_D_MEM || vec == CL_V_HID_D_SYN || vec == CL_V_HID_D_ADA ||
                        vec == CL_V_OUT_D_MEM || vec == CL_V_OUT_D_SYN || vec == CL_V_HID_D_SYN2;
    const uint32_t offset = cl_rd16(req->payload + 2);
    const uint8_t *data = req->payload + 4;
    const uint32_t bytes = req->len - 4u;
    const int is_gain = vec == CL_V_HID_GAIN;
    uint32_t count, length, base, k;
    cl_param *target = NULL;

    if (vec >= CL_N_VECTORS) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "unknown parameter vector");
        return;
    }
    if (dtype != (is_gain ? CL_F64 : CL_I32)) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, is_gain ? "gain takes dtype f64" : "vector takes dtype i32");
        return;
    }
    if (bytes % (uint32_t)dtype_size(dtype)) {
        cl_refuse(rep, CL_NAK_BAD_LEN, "data is not whole elements");
        return;
    }
    count = bytes / (uint32_t)dtype_size(dtype);
    length = hidden ? c->n_hidden : c->n_out;
    base = hidden ? 0u : c->n_hidden;
    if (!span_ok(offset, count, length)) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "elements beyond the vector");
        return;
    }
    switch (vec) {
    case CL_V_HID_D_MEM: case CL_V_OUT_D_MEM: target = par->d_mem; break;
    case CL_V_HID_D_SYN: case CL_V_OUT_D_SYN: target = par->d_syn; break;
    case CL_V_HID_D_ADA: target = par->d_ada; break;
    case CL_V_HID_BETA: target = par->beta; break;
    case CL_V_HID_THRESHOLD: case CL_V_OUT_THRESHOLD: target = par->theta; break;
    case CL_V_HID_D_SYN2: target = par->d_syn2; break;
    case CL_V_HID_BIAS: case CL_V_OUT_BIAS: target = par->bias; break;
    default: break;
    }
    for (k = 0; k < count; k++) { /* validate everything before changing anything */
        if (is_gain) {
            if (!isfinite(f64_element(data, k))) {
                cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "gain must be finite");
                return;
            }
        } else if (is_code && !cl_net_decay_code_valid(c, int_element(data, CL_I32, k))) {
            cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "decay code outside the decay kind's range");
            return;
        }
    }
    for (k = 0; k < count; k++) {
        if (is_gain) {
            par->gain[base + offset + k] = f64_element(data, k);
        } else {
            target[base + offset + k] = int_element(data, CL_I32, k);
        }
    }
    rep->type = CL_ACK;
}

void cl_cmd_write_weights(const cl_frame *req, cl_reply *rep)
{
    const uint8_t matrix = req->payload[0], dtype = req->payload[1];
    const uint16_t gen = cl_rd16(req->payload + 2);
    const uint32_t offset = cl_rd32(req->payload + 4), bytes = req->len - (uint32_t)WEIGHTS_HEAD;
    uint32_t start, size, count, k;
    int32_t *shadow;

    if (!matrix_span(matrix, &start, &size)) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "matrix not in this network");
        return;
    }
    if (dtype < CL_I8 || dtype > CL_I32) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "weight dtype must be i8, i16 or i32");
        return;
    }
    if (gen == 0) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "generation 0 is reserved");
        return;
    }
    if (bytes % (uint32_t)dtype_size(dtype)) {
        cl_refuse(rep, CL_NAK_BAD_LEN, "data is not whole elements");
        return;
    }
    count = bytes / (uint32_t)dtype_size(dtype);
    if (!span_ok(offset, count, size)) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "elements beyond the matrix");
        return;
    }
    shadow = cl_board.weights[!cl_board.active];
    if (cl_board.shadow_gen != gen) { /* first write of a generation: start from the active weights */
        memcpy(shadow, cl_board.weights[cl_board.active], sizeof(int32_t) * cl_net_n_weights(&cl_board.cfg));
        cl_board.shadow_gen = gen;
    }
    for (k = 0; k < count; k++) {
        shadow[start + offset + k] = int_element(req->payload + WEIGHTS_HEAD, dtype, k);
    }
    rep->type = CL_ACK;
}

void cl_cmd_read_weights(const cl_frame *req, cl_reply *rep)
{
    const uint8_t matrix = req->payload[0], dtype = req->payload[1];
    const uint32_t offset = cl_rd32(req->payload + 2), count = cl_rd16(req->payload + 6);
    const int32_t *w = cl_board.weights[cl_board.active];
    const int size_of = dtype_size(dtype);
    const int32_t lo = dtype == CL_I8 ? -128 : (dtype == CL_I16 ? -32768 : INT32_MIN);
    const int32_t hi = dtype == CL_I8 ? 127 : (dtype == CL_I16 ? 32767 : INT32_MAX);
    uint32_t start, size, k;
    uint8_t *out = rep->payload + WEIGHTS_HEAD;

    if (!matrix_span(matrix, &start, &size)) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "matrix not in this network");
        return;
    }
    if (dtype < CL_I8 || dtype > CL_I32) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "weight dtype must be i8, i16 or i32");
        return;
    }
    if (count * (uint32_t)size_of > CL_MAX_PAYLOAD - WEIGHTS_HEAD) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "count does not fit one payload");
        return;
    }
    if (!span_ok(offset, count, size)) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "elements beyond the matrix");
        return;
    }
    for (k = 0; k < count; k++) {
        const int32_t v = w[start + offset + k];
        if (v < lo || v > hi) {
            cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "weights do not fit the requested dtype");
            return;
        }
        if (size_of == 1) {
            out[k] = (uint8_t)v;
        } else if (size_of == 2) {
            cl_wr16(out + 2 * k, (uint16_t)v);
        } else {
            cl_wr32(out + 4 * k, (uint32_t)v);
        }
    }
    rep->payload[0] = matrix;
    rep->payload[1] = dtype;
    cl_wr16(rep->payload + 2, cl_board.generation);
    cl_wr32(rep->payload + 4, offset);
    rep->type = CL_WEIGHTS;
    rep->len = (uint16_t)(WEIGHTS_HEAD + count * (uint32_t)size_of);
}

void cl_cmd_commit(const cl_frame *req, cl_reply *rep)
{
    const uint16_t gen = cl_rd16(req->payload);
    const uint32_t want = cl_rd32(req->payload + 2), n = cl_net_n_weights(&cl_board.cfg);
    const int32_t *shadow = cl_board.weights[!cl_board.active];
    uint32_t crc = 0, k;
    uint8_t le[4];

    if (cl_board.shadow_gen == 0 || cl_board.shadow_gen != gen) {
        cl_refuse(rep, CL_NAK_CRC_MISMATCH, "no shadow weights of this generation");
        return;
    }
    for (k = 0; k < n; k++) { /* the blob: every weight as i32 LE, matrices in id order */
        cl_wr32(le, (uint32_t)shadow[k]);
        crc = cl_crc32(crc, le, 4);
    }
    if (crc != want) {
        cl_refuse(rep, CL_NAK_CRC_MISMATCH, "blob crc differs from the COMMIT crc");
        return;
    }
    cl_board.active = (uint8_t)!cl_board.active; /* the swap: one byte store */
    cl_board.generation = gen;
    cl_board.shadow_gen = 0;
    cl_board.counters[CL_C_COMMITS]++;
    rep->type = CL_ACK;
}

void cl_cmd_input(const cl_frame *req, cl_reply *rep)
{
    const uint32_t offset = cl_rd32(req->payload), bytes = req->len - 4u;
    const uint32_t size = (uint32_t)CL_MAX_TICKS * ceil8(cl_board.cfg.n_in);

    if (!span_ok(offset, bytes, size)) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "bytes beyond the input buffer");
        return;
    }
    memcpy(cl_board.input + offset, req->payload + 4, bytes);
    rep->type = CL_ACK;
}

static void pack_bits(uint8_t *dst, const uint8_t *z, uint32_t n)
{
    uint32_t k;
    memset(dst, 0, ceil8(n));
    for (k = 0; k < n; k++) {
        dst[k >> 3] |= (uint8_t)((z[k] != 0) << (k & 7u));
    }
}

void cl_cmd_run(const cl_frame *req, cl_reply *rep)
{
    cl_board_t *b = &cl_board;
    const cl_net_cfg *c = &b->cfg;
    const uint32_t n = cl_rd16(req->payload), record_v = req->payload[2] & 1u;
    const uint32_t in_b = ceil8(c->n_in), h_b = ceil8(c->n_hidden), o_b = ceil8(c->n_out);
    const uint32_t counts = c->max_spike_count > 1 ? c->n_hidden : 0u;
    const uint32_t per_tick = in_b + h_b + o_b + (record_v ? 4u * (c->n_hidden + c->n_out) : 0u) + counts;
    const uint32_t dropped_before = b->state.dropped;
    uint32_t t, k, spikes = 0;

    if (n < 1 || n > CL_MAX_TICKS || n * per_tick > (uint32_t)CL_OUTPUT_BYTES) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "RUN exceeds max_ticks or buffer_bytes");
        return;
    }
    b->out_size[CL_B_HIDDEN_SPIKES] = n * h_b;
    b->out_size[CL_B_OUT_SPIKES] = n * o_b;
    b->out_size[CL_B_HIDDEN_V] = record_v ? 4u * n * c->n_hidden : 0u;
    b->out_size[CL_B_OUT_V] = record_v ? 4u * n * c->n_out : 0u;
    b->out_size[CL_B_HIDDEN_COUNTS] = n * counts;
    b->out_at[0] = 0;
    for (k = 1; k < CL_N_BUFFERS; k++) {
        b->out_at[k] = b->out_at[k - 1] + b->out_size[k - 1];
    }
    for (t = 0; t < n; t++) {
        const uint8_t *row = b->input + t * in_b;
        for (k = 0; k < c->n_in; k++) {
            raster[k] = (uint8_t)((row[k >> 3] >> (k & 7u)) & 1u);
        }
        cl_net_step(c, &b->params, b->weights[b->active], NULL, raster, &b->state);
        for (k = 0; k < c->n_hidden; k++) {
            spikes += b->state.z[k];
        }
        pack_bits(b->output + b->out_at[CL_B_HIDDEN_SPIKES] + t * h_b, b->state.z, c->n_hidden);
        if (counts) {
            memcpy(b->output + b->out_at[CL_B_HIDDEN_COUNTS] + t * counts, b->state.z, counts);
        }
        pack_bits(b->output + b->out_at[CL_B_OUT_SPIKES] + t * o_b, b->state.z + c->n_hidden, c->n_out);
        if (record_v) {
            uint8_t *hv = b->output + b->out_at[CL_B_HIDDEN_V] + 4u * t * c->n_hidden;
            uint8_t *ov = b->output + b->out_at[CL_B_OUT_V] + 4u * t * c->n_out;
            for (k = 0; k < c->n_hidden; k++) {
                cl_wr32(hv + 4 * k, (uint32_t)(int32_t)b->state.v[k]);
            }
            for (k = 0; k < c->n_out; k++) {
                cl_wr32(ov + 4 * k, (uint32_t)(int32_t)b->state.v[c->n_hidden + k]);
            }
        }
    }
    b->tick += n;
    b->counters[CL_C_TICKS] += n;
    b->counters[CL_C_SPIKES] += spikes;
    b->counters[CL_C_DROPPED_SPIKES] += b->state.dropped - dropped_before;
    cl_wr32(rep->payload, b->tick);
    cl_wr16(rep->payload + 4, (uint16_t)n);
    cl_wr32(rep->payload + 6, b->state.dropped);
    rep->type = CL_DONE;
    rep->len = 10;
}

void cl_cmd_read_output(const cl_frame *req, cl_reply *rep)
{
    const uint8_t buf = req->payload[0];
    const uint32_t offset = cl_rd32(req->payload + 1), count = cl_rd16(req->payload + 5);

    if (buf >= CL_N_BUFFERS || cl_board.out_size[buf] == 0) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "output buffer empty (no RUN, or RUN without record_v)");
        return;
    }
    if (count > CL_MAX_PAYLOAD - OUTPUT_HEAD) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "count does not fit one payload");
        return;
    }
    if (!span_ok(offset, count, cl_board.out_size[buf])) {
        cl_refuse(rep, CL_NAK_OUT_OF_RANGE, "bytes beyond the output buffer");
        return;
    }
    rep->payload[0] = buf;
    cl_wr32(rep->payload + 1, offset);
    memcpy(rep->payload + OUTPUT_HEAD, cl_board.output + cl_board.out_at[buf] + offset, count);
    rep->type = CL_OUTPUT;
    rep->len = (uint16_t)(OUTPUT_HEAD + count);
}
