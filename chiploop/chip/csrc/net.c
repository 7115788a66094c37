/* The network step: see docs/dynamics.md ("One step", "Decays", "Rules") and cl_net.h. */
#include "cl_net.h"

#include <math.h>
#include <string.h>

#ifdef CL_FLOAT_STATE
#define CL_FIXED 0
#else
#define CL_FIXED 1
#define INPUT_LIMIT 2305843009213693952.0 /* 2^61: |G(x)| bound, keeps every sum inside int64 */
#endif

static cl_value acc[CL_MAX_NEURONS];  /* synaptic input of the step (first current) */
static cl_value acc2[CL_MAX_NEURONS]; /* ... of the second current */
static uint8_t arriving[CL_MAX_INPUTS]; /* the input spikes reaching the hidden layer this step */

/* ---------------------------------------------------------------- bounds and rounding */

static cl_value saturate(const cl_net_cfg *cfg, cl_value x, int symmetric)
{
#if CL_FIXED
    const cl_value hi = ((int64_t)1 << (cfg->state_bits - 1)) - 1, lo = symmetric ? -hi : -hi - 1;
    return x > hi ? hi : (x < lo ? lo : x);
#else
    (void)cfg;
    (void)symmetric;
    return x;
#endif
}

/* The synaptic current's bound: saturate, or Loihi's single wrap into (-2^(b-1), 2^(b-1)]. */
static cl_value bound_current(const cl_net_cfg *cfg, cl_value x)
{
#if CL_FIXED
    if (cfg->wrap_current) {
        const cl_value half = (cl_value)1 << (cfg->state_bits - 1);
        return x > half ? x - 2 * half : (x <= -half ? x + 2 * half : x);
    }
#endif
    return saturate(cfg, x, 0);
}

#if CL_FIXED
/* v * m / 2^q rounded toward zero (floor: toward minus infinity), exactly, without a 128-bit
 * product: |v| = hi * 2^q + lo. */
static int64_t mul_round(int64_t v, uint64_t m, uint8_t q, int floor_rounding)
{
    const uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    const uint64_t mask = ((uint64_t)1 << q) - 1, low = (a & mask) * m;
    const uint64_t r = (a >> q) * m + (low >> q);
    if (v >= 0) {
        return (int64_t)r;
    }
    return -(int64_t)r - (floor_rounding && (low & mask) != 0);
}

/* v / 2^s rounded toward zero or toward minus infinity. */
static int64_t div_pow2(int64_t v, int32_t s, int floor_rounding)
{
    const int64_t d = (int64_t)1 << s, t = v / d;
    return floor_rounding && v < 0 && t * d != v ? t - 1 : t;
}
#endif

/* D(v) of docs/dynamics.md with the decay constant `code` (float: the factor). */
static cl_value decay(const cl_net_cfg *cfg, cl_value v, cl_param code)
{
#if CL_FIXED
    const int floor_rounding = cfg->decay_rounding != CL_ROUND_TRUNCATE;
    int64_t step;
    if (cfg->decay_kind == CL_DECAY_MULTIPLIER) {
        return mul_round(v, ((uint64_t)1 << cfg->decay_bits) - (uint64_t)code, cfg->decay_bits, floor_rounding);
    }
    step = div_pow2(v, code, floor_rounding);
    if (cfg->decay_rounding == CL_ROUND_FLOOR_MIN_STEP && step == 0) {
        step = (v > 0) - (v < 0);
    }
    return v - step;
#else
    (void)cfg;
    return v * code;
#endif
}

/* G(x): trunc(gain * x) for integers (bounded so that the cast is defined), gain * x for doubles. */
static cl_value gain_of(double gain, cl_value x)
{
#if CL_FIXED
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
    return (cl_value)g; /* the cast truncates toward zero */
#else
    return gain * x;
#endif
}

/* The synaptic input scaled into state units: x * 2^fractional_bits. */
static cl_value to_state(const cl_net_cfg *cfg, cl_value x)
{
#if CL_FIXED
    return x * ((cl_value)1 << cfg->fractional_bits);
#else
    (void)cfg;
    return x;
#endif
}

/* ---------------------------------------------------------------- synaptic input */

/* Hidden layers, the size of layer k and whether it is recurrent. */
static int layers(const cl_net_cfg *cfg)
{
    return cfg->n_layers > 1 ? cfg->n_layers : 1;
}

static int layer_size(const cl_net_cfg *cfg, int k)
{
    return cfg->n_layers > 1 ? cfg->layer_size[k] : cfg->n_hidden;
}

static int layer_recurrent(const cl_net_cfg *cfg, int k)
{
    return (cfg->recurrent >> k) & 1;
}

/* Shape [pre, post] of the matrix in slot m; 0 if the network has none there. */
static int matrix_shape(const cl_net_cfg *cfg, int m, int *pre, int *post)
{
    const int n_layers = layers(cfg), two = cfg->synapses == 2;
    if (m < CL_W_HIDDEN_OUT) {
        const int k = m / 2;
        if (k >= n_layers || (m % 2 && !layer_recurrent(cfg, k))) {
            return 0;
        }
        *post = layer_size(cfg, k);
        *pre = m % 2 ? *post : (k == 0 ? cfg->n_in : layer_size(cfg, k - 1));
        return 1;
    }
    if (m == CL_W_HIDDEN_OUT) {
        *pre = layer_size(cfg, n_layers - 1);
        *post = cfg->n_out;
        return 1;
    }
    *pre = m == CL_W_IN_HIDDEN_2 ? cfg->n_in : cfg->n_hidden;
    *post = cfg->n_hidden;
    return two && (m == CL_W_IN_HIDDEN_2 || layer_recurrent(cfg, 0));
}

uint32_t cl_net_n_weights(const cl_net_cfg *cfg)
{
    uint32_t n = 0;
    int m, pre, post;
    for (m = 0; m < CL_N_MATRICES; m++) {
        if (matrix_shape(cfg, m, &pre, &post)) {
            n += (uint32_t)pre * (uint32_t)post;
        }
    }
    return n;
}

int cl_net_matrix_extent(const cl_net_cfg *cfg, int m, uint32_t *start, uint32_t *size)
{
    int k, pre, post;
    *start = 0;
    for (k = 0; k < m; k++) {
        if (matrix_shape(cfg, k, &pre, &post)) {
            *start += (uint32_t)pre * (uint32_t)post;
        }
    }
    if (m < 0 || m >= CL_N_MATRICES || !matrix_shape(cfg, m, &pre, &post)) {
        return 0;
    }
    *size = (uint32_t)pre * (uint32_t)post;
    return 1;
}

/* One weight matrix as stored: dense [pre, post] row-major, or CSR rows (ptr, idx). */
typedef struct {
    const cl_weight *w;
    const int32_t *ptr, *idx;
    int n_pre, n_post;
} matrix;

/* Where matrix m starts in the weights (the matrices before it, dense or sparse). */
static matrix matrix_at(const cl_net_cfg *cfg, const cl_weight *weights, const cl_net_sparsity *sp, int m)
{
    matrix out;
    int k, pre, post;
    out.w = weights;
    for (k = 0; k < m; k++) {
        if (matrix_shape(cfg, k, &pre, &post)) {
            out.w += sp && sp->ptr[k] ? sp->ptr[k][pre] : (long)pre * post;
        }
    }
    (void)matrix_shape(cfg, m, &out.n_pre, &out.n_post);
    out.ptr = sp ? sp->ptr[m] : NULL;
    out.idx = sp ? sp->idx[m] : NULL;
    return out;
}

/* out[post] += count(pre) * W[pre, post] for every pre that spiked; with per-addition saturation,
 * each addition saturates (a count k adds k*w at once: the same as k saturating additions of w). */
static void deliver(const cl_net_cfg *cfg, cl_value *out, matrix m, const uint8_t *z, int per_addition)
{
    int i, j, q;
    for (i = 0; i < m.n_pre; i++) {
        if (z[i]) {
            const cl_value k = (cl_value)z[i];
            if (m.ptr) {
                for (q = m.ptr[i]; q < m.ptr[i + 1]; q++) {
                    cl_value *target = out + m.idx[q];
                    *target = per_addition ? saturate(cfg, *target + to_state(cfg, k * (cl_value)m.w[q]), 0)
                                           : *target + k * (cl_value)m.w[q];
                }
            } else {
                const cl_weight *row = m.w + (long)i * m.n_post;
                if (per_addition) {
                    for (j = 0; j < m.n_post; j++) {
                        out[j] = saturate(cfg, out[j] + to_state(cfg, k * (cl_value)row[j]), 0);
                    }
                } else {
                    for (j = 0; j < m.n_post; j++) {
                        out[j] += k * (cl_value)row[j];
                    }
                }
            }
        }
    }
}

/* Keep the first `cap` non-zero entries of z[0..n) (0 = no cap); return how many were dropped. */
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

/* ---------------------------------------------------------------- neurons */

/* One synaptic current of neuron k: I <- bound(D(I) + G(s)), or I <- D(bound(I + G(s))); under
 * per-addition saturation the inputs were already added (to I, or to D(I)) one by one. */
static cl_value current(const cl_net_cfg *cfg, cl_value i, cl_value s, cl_param code, double gain,
                        int added)
{
    if (!added) {
        const cl_value start = cfg->add_then_decay ? i : decay(cfg, i, code);
        i = bound_current(cfg, start + to_state(cfg, gain_of(gain, s)));
    }
    return cfg->add_then_decay ? decay(cfg, i, code) : i;
}

/* Membrane update of neuron k from its total current: v <- bound(D(v) + I + bias), or Xylo's
 * dv = sat(D(v) - v + I); dv = sat(dv + bias); v = sat(v + dv). Refractory neurons hold v. */
static void membrane(const cl_net_cfg *cfg, cl_net_state *s, const cl_net_params *p, int k, cl_value total)
{
    const int sym = cfg->symmetric_membrane;
    const cl_value v = s->v[k];
    if (cfg->per_addition) {
        cl_value leak = decay(cfg, v, p->d_mem[k]) - v; /* a state-width register: -(-2^(b-1)) wraps */
        cl_value dv;
#if CL_FIXED
        const cl_value hi = ((int64_t)1 << (cfg->state_bits - 1)) - 1;
        leak = leak > hi ? leak - 2 * (hi + 1) : leak;
#endif
        dv = saturate(cfg, leak + total, sym);
        dv = saturate(cfg, dv + p->bias[k], sym);
        s->v[k] = saturate(cfg, v + dv, sym);
    } else {
        s->v[k] = saturate(cfg, decay(cfg, v, p->d_mem[k]) + total + p->bias[k], sym);
    }
}

/* Spikes of neuron k this step (its membrane already updated), with reset and refractoriness. */
static int fire(const cl_net_cfg *cfg, cl_net_state *s, int k, cl_value a, int ref, int max_count)
{
    const cl_value v = s->v[k];
    int n = 0;
    if (!ref) {
        if (max_count == 1) {
            n = cfg->strict_threshold ? v > a : v >= a;
        } else if (v > 0) {
#if CL_FIXED
            const int64_t q = cfg->strict_threshold ? (v - 1) / a : v / a; /* v > 0, a > 0 */
#else
            const double q = cfg->strict_threshold ? ceil(v / a) - 1.0 : floor(v / a);
#endif
            n = q > max_count ? max_count : (int)q;
        }
    }
    if (n) {
        s->v[k] = cfg->reset_zero ? 0 : v - (cl_value)n * a;
        s->r[k] = cfg->refractory_steps;
    } else if (s->r[k] > 0) {
        s->r[k]--;
    }
    return n;
}

/* ---------------------------------------------------------------- configuration */

void cl_net_cfg_defaults(cl_net_cfg *cfg)
{
    cfg->input_delay = 1;
    cfg->add_then_decay = 0;
    cfg->decay_rounding = CL_ROUND_TRUNCATE;
    cfg->per_addition = 0;
    cfg->wrap_current = 0;
    cfg->symmetric_membrane = 0;
    cfg->fractional_bits = 0;
    cfg->strict_threshold = 0;
    cfg->max_spike_count = 1;
    cfg->synapses = 1;
}

const char *cl_net_cfg_problem(const cl_net_cfg *cfg)
{
    if (cfg->n_in < 1 || cfg->n_hidden < 1 || cfg->n_out < 1) {
        return "n_in, n_hidden and n_out must be >= 1";
    }
    if (cfg->n_layers > CL_MAX_LAYERS) {
        return "n_layers exceeds max_layers";
    }
    if (cfg->n_layers > 1) {
        uint32_t total = 0;
        int k;
        for (k = 0; k < cfg->n_layers; k++) {
            if (cfg->layer_size[k] < 1) {
                return "every hidden layer needs >= 1 neuron";
            }
            total += cfg->layer_size[k];
        }
        if (total != cfg->n_hidden) {
            return "layer sizes must add up to n_hidden";
        }
        if (cfg->synapses == 2) {
            return "2 synaptic currents need one hidden layer";
        }
    }
    if (cfg->recurrent >> layers(cfg)) {
        return "recurrent flags beyond the hidden layers";
    }
    if (cfg->n_in > CL_MAX_INPUTS) {
        return "n_in exceeds max_inputs";
    }
    if ((uint32_t)cfg->n_hidden + cfg->n_out > CL_MAX_NEURONS) {
        return "n_hidden + n_out exceeds max_neurons";
    }
    if (cfg->synapses < 1 || cfg->synapses > 2) {
        return "synapses must be 1 or 2";
    }
    if ((uint64_t)cl_net_n_weights(cfg) > CL_MAX_SYNAPSES) {
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
    if (cfg->input_delay > 1 || cfg->add_then_decay > 1 || cfg->per_addition > 1 || cfg->wrap_current > 1 ||
        cfg->symmetric_membrane > 1 || cfg->strict_threshold > 1) {
        return "rule flags must be 0 or 1";
    }
    if (cfg->decay_rounding > CL_ROUND_FLOOR_MIN_STEP ||
        (cfg->decay_rounding == CL_ROUND_FLOOR_MIN_STEP && cfg->decay_kind != CL_DECAY_SHIFT)) {
        return "decay_rounding must be 0, 1, or 2 with shift decays";
    }
    if (cfg->fractional_bits + 1 >= cfg->state_bits) {
        return "fractional_bits must be < state_bits - 1";
    }
    if (cfg->max_spike_count < 1 || (cfg->max_spike_count > 1 && cfg->reset_zero)) {
        return "max_spike_count must be >= 1, and 1 with reset to zero";
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

/* ---------------------------------------------------------------- the step */

/* Where the step's synaptic input is summed: from 0, or, under per-addition saturation, into the
 * current itself (after its decay when the order is decay-then-add). */
static void start_sums(const cl_net_cfg *cfg, int n, const cl_value *state, const cl_param *code, cl_value *out)
{
    int k;
    for (k = 0; k < n; k++) {
        out[k] = !cfg->per_addition ? 0 : (cfg->add_then_decay ? state[k] : decay(cfg, state[k], code[k]));
    }
}

void cl_net_step(const cl_net_cfg *cfg, const cl_net_params *p, const cl_weight *weights,
                 const cl_net_sparsity *sparsity, const uint8_t *x_t, cl_net_state *s)
{
    const int n_in = cfg->n_in, nh = cfg->n_hidden, no = cfg->n_out, pa = cfg->per_addition;
    const int two = cfg->synapses == 2, n_layers = layers(cfg);
    int k, layer, first;

    /* The spikes arriving this step: this step's input (delay 0) or the last one's, and every
     * layer's spikes of the last step. */
    if (cfg->input_delay) {
        memcpy(arriving, s->x, (size_t)n_in);
    } else {
        for (k = 0; k < n_in; k++) {
            arriving[k] = (uint8_t)(x_t[k] != 0);
        }
        s->dropped += apply_cap(arriving, n_in, cfg->max_input_spikes_per_step);
    }
    start_sums(cfg, nh + no, s->i, p->d_syn, acc);
    if (two) {
        start_sums(cfg, nh, s->i2, p->d_syn2, acc2);
    }
    for (layer = 0, first = 0; layer < n_layers; first += layer_size(cfg, layer), layer++) {
        const uint8_t *below = layer == 0 ? arriving : s->z + first - layer_size(cfg, layer - 1);
        deliver(cfg, acc + first, matrix_at(cfg, weights, sparsity, 2 * layer), below, pa);
        if (layer_recurrent(cfg, layer)) {
            deliver(cfg, acc + first, matrix_at(cfg, weights, sparsity, 2 * layer + 1), s->z + first, pa);
        }
    }
    deliver(cfg, acc + nh, matrix_at(cfg, weights, sparsity, CL_W_HIDDEN_OUT),
            s->z + nh - layer_size(cfg, n_layers - 1), pa);
    if (two) {
        deliver(cfg, acc2, matrix_at(cfg, weights, sparsity, CL_W_IN_HIDDEN_2), arriving, pa);
        if (layer_recurrent(cfg, 0)) {
            deliver(cfg, acc2, matrix_at(cfg, weights, sparsity, CL_W_HIDDEN_HIDDEN_2), s->z, pa);
        }
    }

    /* Hidden layers (LIF, ALIF where beta != 0). */
    for (k = 0; k < nh; k++) {
        const cl_value a = (cl_value)p->theta[k] + s->b[k];
        cl_value total;
        int n;
        s->i[k] = current(cfg, pa ? acc[k] : s->i[k], acc[k], p->d_syn[k], p->gain[k], pa);
        total = s->i[k];
        if (two) {
            s->i2[k] = current(cfg, pa ? acc2[k] : s->i2[k], acc2[k], p->d_syn2[k], p->gain[k], pa);
            total += s->i2[k];
        }
        if (s->r[k] == 0) {
            membrane(cfg, s, p, k, total);
        }
        n = fire(cfg, s, k, a, s->r[k] > 0, cfg->max_spike_count);
        if (p->beta[k] != 0 || s->b[k] != 0) {
            s->b[k] = saturate(cfg, decay(cfg, s->b[k], p->d_ada[k]) + (cl_value)n * p->beta[k], 0);
        }
        s->z[k] = (uint8_t)n;
    }
    for (layer = 0, first = 0; layer < n_layers; first += layer_size(cfg, layer), layer++) {
        s->dropped += apply_cap(s->z + first, layer_size(cfg, layer), cfg->max_spikes_per_step);
    }

    /* Output layer: leaky integrator, or spiking (one spike at most) with the hidden layer's rule. */
    for (k = nh; k < nh + no; k++) {
        const int ref = cfg->spiking_readout && s->r[k] > 0;
        s->i[k] = current(cfg, pa ? acc[k] : s->i[k], acc[k], p->d_syn[k], 1.0, pa);
        if (!ref) {
            membrane(cfg, s, p, k, s->i[k]);
        }
        s->z[k] = (uint8_t)(cfg->spiking_readout ? fire(cfg, s, k, (cl_value)p->theta[k], ref, 1) : 0);
    }

    /* This step's input, delivered at the next step. */
    if (cfg->input_delay) {
        for (k = 0; k < n_in; k++) {
            s->x[k] = (uint8_t)(x_t[k] != 0);
        }
        s->dropped += apply_cap(s->x, n_in, cfg->max_input_spikes_per_step);
    }
}
