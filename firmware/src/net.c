/* Integer LIF/ALIF network step: see docs/dynamics.md, "One step t" and "Decays". */
#include "cl_net.h"

#include <string.h>

#define INPUT_LIMIT 2305843009213693952.0 /* 2^61: |G(x)| bound, keeps every sum inside int64 */

static int64_t acc[CL_MAX_NEURONS]; /* synaptic input of the current step (static: small stacks) */

static int64_t saturate(int64_t x, uint8_t bits)
{
    const int64_t hi = ((int64_t)1 << (bits - 1)) - 1;
    const int64_t lo = -hi - 1;
    return x > hi ? hi : (x < lo ? lo : x);
}

/* trunc(v * m / 2^q) exactly, without a 128-bit product: |v| = hi * 2^q + lo. */
static int64_t mul_trunc(int64_t v, uint64_t m, uint8_t q)
{
    const uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    const uint64_t r = (a >> q) * m + (((a & (((uint64_t)1 << q) - 1)) * m) >> q);
    return v < 0 ? -(int64_t)r : (int64_t)r;
}

static int64_t decay(const cl_net_cfg *cfg, int64_t v, int32_t code)
{
    if (cfg->decay_kind == CL_DECAY_MULTIPLIER) {
        return mul_trunc(v, ((uint64_t)1 << cfg->decay_bits) - (uint64_t)code, cfg->decay_bits);
    }
    return v - v / ((int64_t)1 << code);
}

uint32_t cl_net_n_weights(const cl_net_cfg *cfg)
{
    const uint32_t h = cfg->n_hidden;
    return (uint32_t)cfg->n_in * h + (cfg->recurrent ? h * h : 0u) + h * cfg->n_out;
}

const char *cl_net_cfg_problem(const cl_net_cfg *cfg)
{
    if (cfg->n_in < 1 || cfg->n_hidden < 1 || cfg->n_out < 1) {
        return "n_in, n_hidden and n_out must be >= 1";
    }
    if (cfg->n_in > CL_MAX_INPUTS) {
        return "n_in exceeds max_inputs";
    }
    if ((uint32_t)cfg->n_hidden + cfg->n_out > CL_MAX_NEURONS) {
        return "n_hidden + n_out exceeds max_neurons";
    }
    if ((uint64_t)cfg->n_in * cfg->n_hidden + (cfg->recurrent ? (uint64_t)cfg->n_hidden * cfg->n_hidden : 0) +
            (uint64_t)cfg->n_hidden * cfg->n_out > CL_MAX_SYNAPSES) {
        return "weights exceed max_synapses";
    }
    if (cfg->state_bits < 2 || cfg->state_bits > 48) {
        return "state_bits must be in 2..48";
    }
    if (cfg->decay_bits < 1 || cfg->decay_bits > 24) {
        return "decay_bits must be in 1..24";
    }
    if (cfg->decay_kind > CL_DECAY_SHIFT) {
        return "decay_kind must be 0 (multiplier) or 1 (shift)";
    }
    return NULL;
}

int cl_net_decay_code_valid(const cl_net_cfg *cfg, int32_t code)
{
    if (cfg->decay_kind == CL_DECAY_MULTIPLIER) {
        return code >= 0 && code <= ((int32_t)1 << cfg->decay_bits);
    }
    return code >= 0 && code <= 62;
}

void cl_net_params_clear(cl_net_params *p)
{
    int k;
    memset(p, 0, sizeof *p);
    for (k = 0; k < CL_MAX_NEURONS; k++) {
        p->gain[k] = 1.0;
    }
}

void cl_net_reset(cl_net_state *s)
{
    memset(s, 0, sizeof *s);
}

/* acc[post] += W[pre, post] for every pre with a spike (W row-major, n_post columns). */
static void accumulate(int64_t *out, const int32_t *w, const uint8_t *z, int n_pre, int n_post)
{
    int i, j;
    for (i = 0; i < n_pre; i++) {
        if (z[i]) {
            const int32_t *row = w + (long)i * n_post;
            for (j = 0; j < n_post; j++) {
                out[j] += row[j];
            }
        }
    }
}

/* Keep the first `cap` ones of z[0..n) (0 = no cap); return how many were dropped. */
static uint32_t apply_cap(uint8_t *z, int n, uint16_t cap)
{
    uint32_t kept = 0, dropped = 0;
    int i;
    for (i = 0; i < n; i++) {
        if (z[i]) {
            if (cap && kept >= cap) {
                z[i] = 0;
                dropped++;
            } else {
                kept++;
            }
        }
    }
    return dropped;
}

/* G(x) = trunc(gain * x), bounded so that the cast is defined. */
static int64_t gain_of(double gain, int64_t x)
{
    double g;
    if (gain == 1.0) {
        return x;
    }
    g = gain * (double)x;
    if (g > INPUT_LIMIT) {
        g = INPUT_LIMIT;
    } else if (g < -INPUT_LIMIT) {
        g = -INPUT_LIMIT;
    }
    return (int64_t)g; /* the cast truncates toward zero */
}

/* Threshold, reset and refractory of neuron k whose membrane is already updated; returns z. */
static int fire(const cl_net_cfg *cfg, cl_net_state *s, int k, int64_t a, int ref)
{
    const int z = !ref && s->v[k] >= a;
    if (z) {
        s->v[k] = cfg->reset_zero ? 0 : saturate(s->v[k] - a, cfg->state_bits);
        s->r[k] = cfg->refractory_steps;
    } else if (s->r[k] > 0) {
        s->r[k]--;
    }
    return z;
}

void cl_net_step(const cl_net_cfg *cfg, const cl_net_params *p, const int32_t *weights,
                 const uint8_t *x_t, cl_net_state *s)
{
    const int n_in = cfg->n_in, nh = cfg->n_hidden, no = cfg->n_out;
    const uint8_t bits = cfg->state_bits;
    const int32_t *w_in = weights;
    const int32_t *w_rec = w_in + (long)n_in * nh;
    const int32_t *w_out = w_rec + (cfg->recurrent ? (long)nh * nh : 0);
    int k;

    /* Synaptic input: the spikes delivered at the previous step. */
    memset(acc, 0, sizeof(int64_t) * (size_t)(nh + no));
    accumulate(acc, w_in, s->x, n_in, nh);
    if (cfg->recurrent) {
        accumulate(acc, w_rec, s->z, nh, nh);
    }
    accumulate(acc + nh, w_out, s->z, nh, no);

    /* Hidden layer (LIF, ALIF where beta != 0). */
    for (k = 0; k < nh; k++) {
        const int64_t a = (int64_t)p->theta[k] + s->b[k];
        const int ref = s->r[k] > 0;
        int z;

        s->i[k] = saturate(decay(cfg, s->i[k], p->d_syn[k]) + gain_of(p->gain[k], acc[k]), bits);
        if (!ref) {
            s->v[k] = saturate(decay(cfg, s->v[k], p->d_mem[k]) + s->i[k], bits);
        }
        z = fire(cfg, s, k, a, ref);
        s->b[k] = saturate(decay(cfg, s->b[k], p->d_ada[k]) + (z ? p->beta[k] : 0), bits);
        s->z[k] = (uint8_t)z;
    }
    s->dropped += apply_cap(s->z, nh, cfg->max_spikes_per_step);

    /* Output layer: leaky integrator, or spiking with the hidden layer's threshold rule. */
    for (k = nh; k < nh + no; k++) {
        const int ref = cfg->spiking_readout && s->r[k] > 0;

        s->i[k] = saturate(decay(cfg, s->i[k], p->d_syn[k]) + acc[k], bits);
        if (!ref) {
            s->v[k] = saturate(decay(cfg, s->v[k], p->d_mem[k]) + s->i[k], bits);
        }
        s->z[k] = (uint8_t)(cfg->spiking_readout ? fire(cfg, s, k, p->theta[k], ref) : 0);
    }

    /* This step's input, delivered at the next step. */
    for (k = 0; k < n_in; k++) {
        s->x[k] = (uint8_t)(x_t[k] != 0);
    }
    s->dropped += apply_cap(s->x, n_in, cfg->max_input_spikes_per_step);
}
