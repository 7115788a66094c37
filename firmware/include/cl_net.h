/* The integer LIF/ALIF network of docs/dynamics.md (`arithmetic: fixed`), bit-exact.
 *
 * State is int64 and saturates to [-2^(state_bits-1), 2^(state_bits-1) - 1] after every update;
 * divisions truncate toward zero (C99 `/`). Every synapse delays by one step. Neurons are indexed
 * hidden first (0..n_hidden-1), then output (n_hidden..n_hidden+n_out-1).
 */
#ifndef CL_NET_H
#define CL_NET_H

#include <stdint.h>

#include "cl_config.h"

enum cl_decay_kind {
    CL_DECAY_MULTIPLIER = 0, /* code d in [0, 2^q]: D(v) = trunc(v * (2^q - d) / 2^q)       */
    CL_DECAY_SHIFT = 1       /* code s in [0, 62]: D(v) = v - trunc(v / 2^s) (s = 0: D = 0)  */
};

/* Network shape and layer-wide constants. */
typedef struct {
    uint16_t n_in, n_hidden, n_out;
    uint8_t recurrent;       /* hidden_hidden weights present */
    uint8_t spiking_readout; /* 0: leaky readout, 1: threshold / reset / refractory */
    uint8_t reset_zero;      /* 1: v = 0 on a spike, 0: v -= A */
    uint8_t decay_kind;      /* enum cl_decay_kind, for every decay */
    uint8_t state_bits;      /* 2..48 */
    uint8_t decay_bits;      /* q, 1..24 */
    uint16_t refractory_steps;
    uint16_t max_spikes_per_step;       /* hidden spikes delivered per step, 0 = unlimited */
    uint16_t max_input_spikes_per_step; /* input spikes accepted per step, 0 = unlimited */
} cl_net_cfg;

/* Per-neuron constants. beta, gain and d_ada are used for hidden neurons only. */
typedef struct {
    int32_t d_mem[CL_MAX_NEURONS]; /* D_mem (hidden), D_out (output): decay codes */
    int32_t d_syn[CL_MAX_NEURONS];
    int32_t d_ada[CL_MAX_NEURONS];
    int32_t theta[CL_MAX_NEURONS];
    int32_t beta[CL_MAX_NEURONS]; /* ALIF increment, 0 for a LIF neuron */
    double gain[CL_MAX_NEURONS];  /* G(x) = trunc(gain * x) on the hidden input */
} cl_net_params;

/* Dynamic state. x and z hold the spikes of the last step, delivered at the next one. */
typedef struct {
    int64_t i[CL_MAX_NEURONS], v[CL_MAX_NEURONS], b[CL_MAX_NEURONS];
    uint16_t r[CL_MAX_NEURONS];
    uint8_t z[CL_MAX_NEURONS];
    uint8_t x[CL_MAX_INPUTS];
    uint32_t dropped; /* hidden and input events lost to the caps since the last reset */
} cl_net_state;

/* Number of weights: in_hidden [n_in, n_hidden], hidden_hidden [n_hidden, n_hidden] (if recurrent)
 * and hidden_out [n_hidden, n_out], stored back to back, each row-major [pre, post]. */
uint32_t cl_net_n_weights(const cl_net_cfg *cfg);

/* NULL if cfg fits the compile-time maxima and is well-formed, else what is wrong. */
const char *cl_net_cfg_problem(const cl_net_cfg *cfg);

/* 1 if `code` is a valid decay code for cfg's decay kind and decay_bits, else 0. */
int cl_net_decay_code_valid(const cl_net_cfg *cfg, int32_t code);

/* Parameters after CONFIG_NET: every code and threshold 0, gain 1. */
void cl_net_params_clear(cl_net_params *p);

/* Rest state: everything zero. */
void cl_net_reset(cl_net_state *s);

/* Advance one step with the input raster row x_t[0..n_in) (0/1). Afterwards s->z holds the step's
 * delivered spikes and s->v the membranes after reset. */
void cl_net_step(const cl_net_cfg *cfg, const cl_net_params *p, const int32_t *weights,
                 const uint8_t *x_t, cl_net_state *s);

#endif
