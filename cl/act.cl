/* Activations, forward and backward, and the bias + activation epilogue of
 * linear and conv2d. ACT selects the function at compile time:
 *   0 none, 1 relu, 2 leaky_relu (slope), 3 sigmoid, 4 tanh,
 *   5 gelu (x Φ(x), erf to 1.5e-7), 6 gelu with PyTorch's tanh approximation.
 * Every kernel is one work-item per element and bounds-checked. */
#ifndef ACT
#define ACT 0
#endif

#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

/* erf(x) to within 1.5e-7 (Abramowitz and Stegun 7.1.26): PoCL's erf is
 * some thirty times slower than this rational form around one exp. */
static float erf_fast(float x)
{
    float a = fabs(x), t = 1.0f / (1.0f + 0.3275911f * a);
    float poly = t * (0.254829592f +
                      t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    return copysign(1.0f - poly * exp(-a * a), x);
}

static float sigmoid(float x)
{
    /* exp of a non-positive number only: no overflow for any x */
    float e = exp(-fabs(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static float act(float x, float slope)
{
#if ACT == 1
    return fmax(x, 0.0f);
#elif ACT == 2
    return x > 0.0f ? x : slope * x;
#elif ACT == 3
    return sigmoid(x);
#elif ACT == 4
    return tanh(x);
#elif ACT == 5
    return 0.5f * x * (1.0f + erf_fast(x * INV_SQRT_2));
#elif ACT == 6
    return 0.5f * x * (1.0f + tanh(SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
#else
    return x;
#endif
}

/* dL/dx from dL/dy, the input x and the output y = act(x). */
static float act_grad(float x, float y, float dy, float slope)
{
#if ACT == 1
    return x > 0.0f ? dy : 0.0f;
#elif ACT == 2
    return x > 0.0f ? dy : slope * dy;
#elif ACT == 3
    return dy * y * (1.0f - y);
#elif ACT == 4
    return dy * (1.0f - y * y);
#elif ACT == 5
    float cdf = 0.5f * (1.0f + erf_fast(x * INV_SQRT_2));
    float pdf = INV_SQRT_2PI * exp(-0.5f * x * x);
    return dy * (cdf + x * pdf);
#elif ACT == 6
    float u = SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
    float t = tanh(u);
    float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
    return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
#else
    return dy;
#endif
}

/* y = act(x); x, y are (n) */
__kernel void act_forward(__global const float *x, __global float *y, const uint n,
                          const float slope)
{
    uint i = (uint)get_global_id(0);
    if (i < n)
        y[i] = act(x[i], slope);
}

/* dx = act'(x) dy; x, y, dy, dx are (n) */
__kernel void act_backward(__global const float *x, __global const float *y,
                           __global const float *dy, __global float *dx, const uint n,
                           const float slope)
{
    uint i = (uint)get_global_id(0);
    if (i < n)
        dx[i] = act_grad(x[i], y[i], dy[i], slope);
}

/* y = act(y + b[c]) in place over the range (inner, cols, rows) of y
 * (rows, cols, inner). Linear: inner = 1; conv2d: cols = channels,
 * inner = H*W. b may be absent (has_bias = 0). */
__kernel void bias_act(__global float *y, __global const float *b, const int has_bias,
                       const float slope)
{
    uint s = get_global_id(0), c = get_global_id(1), r = get_global_id(2);
    uint at = (r * get_global_size(1) + c) * get_global_size(0) + s;
    float v = y[at];
    if (has_bias)
        v += b[c];
    y[at] = act(v, slope);
}

/* The same for inner = 1 (linear), over (cols, rows). */
__kernel void bias_act_rows(__global float *y, __global const float *b, const int has_bias,
                            const float slope)
{
    uint c = get_global_id(0), at = get_global_id(1) * get_global_size(0) + c;
    float v = y[at];
    if (has_bias)
        v += b[c];
    y[at] = act(v, slope);
}

/* y = a + b; all (n) */
__kernel void add(__global const float *a, __global const float *b, __global float *y,
                  const uint n)
{
    uint i = (uint)get_global_id(0);
    if (i < n)
        y[i] = a[i] + b[i];
}
