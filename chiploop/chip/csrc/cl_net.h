/* The network of docs/dynamics.md, written once in C: the board's firmware and the Brian2 emulator
 * (which compiles this file into its project) both run it.
 *
 * Integer arithmetic by default (`arithmetic: fixed`): state is int64_t and is bounded after every
 * update by the configured rules (saturate, Loihi's wrap, Xylo's per-addition saturation); divisions
 * truncate toward zero unless a rule says floor. Compiled with CL_FLOAT_STATE the same steps run in
 * double precision (`arithmetic: float`: decay factors, no rounding, no bounds). Neurons are indexed
 * hidden first, layer by layer (0..n_hidden-1), then output (n_hidden..n_hidden+n_out-1). Spikes
 * cross from one layer to the next, and to the output, one step after they are emitted.
 */
#ifndef CL_NET_H
#define CL_NET_H

#include <stdint.h>

#include "cl_config.h"

#ifdef CL_FLOAT_STATE
typedef double cl_value;  /* state: currents, membranes, adaptation */
typedef double cl_weight; /* a weight */
typedef double cl_param;  /* a per-neuron constant: decay factor, threshold, beta, bias */
#else
typedef int64_t cl_value;
typedef int32_t cl_weight;
typedef int64_t cl_param; /* decay code (see below), threshold, beta, bias in state units */
#endif

/* Weight matrices, in the order they are stored (see cl_net_n_weights): slot 2k holds the
 * feed-forward weights into hidden layer k (from the inputs for k = 0, else from layer k - 1),
 * slot 2k + 1 layer k's recurrence, then the output's weights (from the last hidden layer) and the
 * second synaptic current's (one hidden layer only). Absent matrices take no storage. */
enum cl_net_matrix { CL_W_IN_HIDDEN = 0, CL_W_HIDDEN_HIDDEN = 1, CL_W_HIDDEN_OUT = 2 * CL_MAX_LAYERS,
                     CL_W_IN_HIDDEN_2, CL_W_HIDDEN_HIDDEN_2, CL_N_MATRICES };

/* Optional sparse storage: a matrix with row pointers stores only the weights of its synapses, row
 * by row (CSR: the synapses of pre i are idx[ptr[i]..ptr[i+1]), their weights in the same order). */
typedef struct {
    const int32_t *ptr[CL_N_MATRICES]; /* n_pre + 1 row pointers, or NULL: dense [pre, post] */
    const int32_t *idx[CL_N_MATRICES]; /* post-synaptic neuron of each stored weight */
} cl_net_sparsity;

enum cl_decay_kind {
    CL_DECAY_MULTIPLIER = 0, /* code d in [0, 2^q]: D(v) = round(v * (2^q - d) / 2^q)       */
    CL_DECAY_SHIFT = 1       /* code s in [0, 62]: D(v) = v - round(v / 2^s) (s = 0: D = 0)  */
};

enum cl_decay_rounding {
    CL_ROUND_TRUNCATE = 0,       /* toward zero (C99 division) */
    CL_ROUND_FLOOR = 1,          /* toward minus infinity (arithmetic shift) */
    CL_ROUND_FLOOR_MIN_STEP = 2  /* shift: floor, but a non-zero state moves by at least 1 (Xylo) */
};

/* Network shape and layer-wide rules. */
typedef struct {
    uint16_t n_in, n_hidden, n_out; /* n_hidden: neurons of all hidden layers */
    uint8_t n_layers;                /* hidden layers; 0 or 1: one layer of n_hidden */
    uint16_t layer_size[CL_MAX_LAYERS]; /* with n_layers > 1: each layer's neurons (sum n_hidden) */
    uint8_t recurrent;       /* bit k: hidden layer k has recurrent weights */
    uint8_t spiking_readout; /* 0: leaky readout, 1: threshold / reset / refractory */
    uint8_t reset_zero;      /* 1: v = 0 on a spike, 0: v -= count * A */
    uint8_t decay_kind;      /* enum cl_decay_kind, for every decay */
    uint8_t state_bits;      /* 2..48 */
    uint8_t decay_bits;      /* q, 1..24 */
    uint16_t refractory_steps;
    uint16_t max_spikes_per_step;       /* neurons of a hidden layer delivering per step, 0 = unlimited */
    uint16_t max_input_spikes_per_step; /* input spikes accepted per step, 0 = unlimited */
    /* The rules chips differ on (docs/dynamics.md "Rules"); cl_net_cfg_defaults gives chiploop's. */
    uint8_t input_delay;        /* 0: an input spike reaches the current in its own step; 1: next */
    uint8_t add_then_decay;     /* 1: I <- D(I + s); 0: I <- D(I) + s */
    uint8_t decay_rounding;     /* enum cl_decay_rounding */
    uint8_t per_addition;       /* 1: saturate after every single addition (Xylo) */
    uint8_t wrap_current;       /* 1: the current wraps once by 2^state_bits (Loihi), else saturates */
    uint8_t symmetric_membrane; /* 1: v saturates to +-(2^(state_bits-1) - 1) (Loihi) */
    uint8_t fractional_bits;    /* synaptic input and thresholds enter shifted left by this */
    uint8_t strict_threshold;   /* 1: spike when v > A, 0: v >= A */
    uint8_t max_spike_count;    /* spikes a hidden neuron may emit per step (>= 1) */
    uint8_t synapses;           /* synaptic currents per hidden neuron: 1 or 2 */
} cl_net_cfg;

/* Per-neuron constants. gain, d_ada, beta, d_syn2 are used for hidden neurons only. */
typedef struct {
    cl_param d_mem[CL_MAX_NEURONS]; /* D_mem (hidden), D_out (output) */
    cl_param d_syn[CL_MAX_NEURONS];
    cl_param d_syn2[CL_MAX_NEURONS];
    cl_param d_ada[CL_MAX_NEURONS];
    cl_param theta[CL_MAX_NEURONS]; /* state units (x 2^fractional_bits) */
    cl_param beta[CL_MAX_NEURONS];  /* ALIF increment, 0 for a LIF neuron */
    cl_param bias[CL_MAX_NEURONS];  /* added to the membrane every step */
    double gain[CL_MAX_NEURONS];    /* G(x) = trunc(gain * x) on the hidden input */
} cl_net_params;

/* Dynamic state. x and z hold the spikes of the last step (z: counts), delivered at the next one. */
typedef struct {
    cl_value i[CL_MAX_NEURONS], i2[CL_MAX_NEURONS], v[CL_MAX_NEURONS], b[CL_MAX_NEURONS];
    uint16_t r[CL_MAX_NEURONS];
    uint8_t z[CL_MAX_NEURONS];
    uint8_t x[CL_MAX_INPUTS];
    uint32_t dropped; /* hidden and input events lost to the caps since the last reset */
} cl_net_state;

/* Number of weights of every matrix present, stored back to back in slot order (enum
 * cl_net_matrix), each row-major [pre, post]; one hidden layer: in_hidden [n_in, n_hidden],
 * hidden_hidden [n_hidden, n_hidden] (if recurrent), hidden_out [n_hidden, n_out], then with 2
 * synaptic currents in_hidden_2 and hidden_hidden_2 (if recurrent). */
uint32_t cl_net_n_weights(const cl_net_cfg *cfg);

/* Start element and size of the matrix in slot m (enum cl_net_matrix) in the dense weight array;
 * returns 0 if the network has no matrix there. */
int cl_net_matrix_extent(const cl_net_cfg *cfg, int m, uint32_t *start, uint32_t *size);

/* chiploop's rules (one step delays, decay then add, truncation, saturation, v >= A, one spike). */
void cl_net_cfg_defaults(cl_net_cfg *cfg);

/* NULL if cfg fits the compile-time maxima and is well-formed, else what is wrong. */
const char *cl_net_cfg_problem(const cl_net_cfg *cfg);

/* 1 if `code` is a valid decay code for cfg's decay kind and decay_bits, else 0. */
int cl_net_decay_code_valid(const cl_net_cfg *cfg, int32_t code);

/* Parameters after CONFIG_NET: every code, threshold, beta and bias 0, gain 1. */
void cl_net_params_clear(cl_net_params *p);

/* Rest state: everything zero. */
void cl_net_reset(cl_net_state *s);

/* Advance one step with the input raster row x_t[0..n_in) (0/1). Afterwards s->z holds the step's
 * delivered spike counts and s->v the membranes after reset. sparsity: NULL (every matrix dense) or
 * which matrices are stored sparse. */
void cl_net_step(const cl_net_cfg *cfg, const cl_net_params *p, const cl_weight *weights,
                 const cl_net_sparsity *sparsity, const uint8_t *x_t, cl_net_state *s);

#endif
