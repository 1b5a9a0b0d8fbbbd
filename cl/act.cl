/* Activations, forward and backward, and the bias + activation epilogue of
 * linear and conv2d. ACT selects the function at compile time; the host's
 * act_options() defines it with ACT_<ID> for every row of KILN_ACT_LIST
 * (src/ops/ops.h) and ACT_FROM_OUTPUT where the row says from_output.
 * An activation is its three cases below: act, act_grad and, if its
 * gradient follows from its output, act_grad_from_output16. A row without
 * its case fails to build.
 * Every kernel is one work-item per element and bounds-checked, and the
 * math is plain arithmetic (math.cl, which programs join before this
 * source), so that drivers running a work-group as a loop vectorize it. */
#if !defined(ACT) || !defined(ACT_NONE)
#error "act.cl is built with the options of act_options()"
#endif

#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

static float sigmoid(float x)
{
    /* exp of a non-positive number only: no overflow for any x */
    float e = exp_nonpositive(-fabs(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static float act(float x, float slope)
{
#if ACT == ACT_NONE
    return x;
#elif ACT == ACT_RELU
    return fmax(x, 0.0f);
#elif ACT == ACT_LEAKY_RELU
    return x > 0.0f ? x : slope * x;
#elif ACT == ACT_SIGMOID
    return sigmoid(x);
#elif ACT == ACT_TANH
    return tanh_fast(x);
#elif ACT == ACT_GELU
    float x_half = 0.5f * x;
    return fma(x_half, erf_fast(x * INV_SQRT_2), x_half);
#elif ACT == ACT_GELU_TANH
    float x_half = 0.5f * x;
    return fma(x_half, tanh_fast(SQRT_2_OVER_PI * fma(0.044715f * x, x * x, x)), x_half);
#elif ACT == ACT_SILU
    return x * sigmoid(x);
#else
#error "act.cl: no forward for this activation"
#endif
}

/* dL/dx from dL/dy, the input x and the output y = act(x). Where the
 * gradient follows from the output (ACT_FROM_OUTPUT), fused epilogues
 * pass y for x: it must then read x only through its sign. */
static float act_grad(float x, float y, float dy, float slope)
{
#if ACT == ACT_NONE
    return dy;
#elif ACT == ACT_RELU
    return x > 0.0f ? dy : 0.0f;
#elif ACT == ACT_LEAKY_RELU
    return x > 0.0f ? dy : slope * dy;
#elif ACT == ACT_SIGMOID
    return dy * y * (1.0f - y);
#elif ACT == ACT_TANH
    return dy * (1.0f - y * y);
#elif ACT == ACT_GELU
    float cdf = fma(0.5f, erf_fast(x * INV_SQRT_2), 0.5f);
    float pdf = INV_SQRT_2PI * exp_nonpositive(-0.5f * x * x);
    return dy * (cdf + x * pdf);
#elif ACT == ACT_GELU_TANH
    float u = SQRT_2_OVER_PI * fma(0.044715f * x, x * x, x);
    float t = tanh_fast(u);
    float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
    return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
#elif ACT == ACT_SILU
    float s = sigmoid(x); /* (x s)' = s (1 + x (1 - s)) */
    return dy * s * fma(x, 1.0f - s, 1.0f);
#else
#error "act.cl: no gradient for this activation"
#endif
}

#ifdef ACT_FROM_OUTPUT
/* act_grad(y, y, dy) sixteen at a time, for the activations whose
 * gradient follows from y alone (the batchnorm epilogue's sums on CPUs). */
static float16 act_grad_from_output16(float16 y, float16 dy, float slope)
{
#if ACT == ACT_NONE
    return dy;
#elif ACT == ACT_RELU
    return select((float16)0.0f, dy, y > 0.0f);
#elif ACT == ACT_LEAKY_RELU
    return select(slope * dy, dy, y > 0.0f);
#elif ACT == ACT_SIGMOID
    return dy * y * (1.0f - y);
#elif ACT == ACT_TANH
    return dy * (1.0f - y * y);
#else
#error "act.cl: no gradient from the output for this activation"
#endif
}
#endif

/* y = act(x); x, y are (n) */
__kernel void act_forward(__global const float *x, __global float *y, const uint n,
                          const float slope)
{
    uint i = (uint)get_global_id(0);
    if (IN_RANGE(i, n))
        y[i] = act(x[i], slope);
}

/* y = act(x) and d = act'(x) (act_grad with dy = 1: the derivative a
 * linear that absorbed the activation keeps for its backward); y may be x */
__kernel void act_forward_grad(__global const float *x, __global float *y, __global float *d,
                               const uint n, const float slope)
{
    uint i = (uint)get_global_id(0);
    if (IN_RANGE(i, n)) {
        float v = x[i], out = act(v, slope);
        d[i] = act_grad(v, out, 1.0f, slope);
        y[i] = out;
    }
}

/* y = a b, elementwise (n); y may be a or b */
__kernel void times(__global const float *a, __global const float *b, __global float *y,
                    const uint n)
{
    uint i = (uint)get_global_id(0);
    if (IN_RANGE(i, n))
        y[i] = a[i] * b[i];
}

#if ACT == ACT_GELU
/* GELU's gradient, as act_grad computes it, sixteen values at a time. */
static float16 gelu_grad16(float16 x, float16 dy)
{
    float16 cdf = fma(0.5f, erf_fast16(x * INV_SQRT_2), 0.5f);
    float16 pdf = INV_SQRT_2PI * exp_nonpositive16(-0.5f * x * x);
    return dy * (cdf + x * pdf);
}

/* act_backward for GELU, sixteen values an item (ceil(n / 16) items):
 * PoCL vectorized act_backward's loop over items poorly for GELU's
 * gradient, with its exp and erf together (5.7 ms against the forward's
 * 1.1 ms for 6.4 M values on an AVX-512 Xeon; 1.4 ms this way). The
 * lanes compute what act_grad does, so the tail gives the same bits. */
__kernel void gelu_backward16(__global const float *x, __global const float *dy,
                              __global float *dx, const uint n)
{
    uint i = (uint)get_global_id(0) * 16u;
    if (i + 16u <= n) {
        vstore16(gelu_grad16(vload16(0, x + i), vload16(0, dy + i)), 0, dx + i);
        return;
    }
    for (; i < n; i++)
        dx[i] = act_grad(x[i], 0.0f, dy[i], 0.0f);
}
#endif

/* dx = act'(x) dy; x, y, dy, dx are (n) */
__kernel void act_backward(__global const float *x, __global const float *y,
                           __global const float *dy, __global float *dx, const uint n,
                           const float slope)
{
    uint i = (uint)get_global_id(0);
    if (IN_RANGE(i, n))
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

/* y[j] = act(x . w[j] + b[j]) for j < n: a linear layer on one sample,
 * in one launch (CPUs, kiln's GEMM), the rows of w (n, k) read in place
 * (packing them at every call would move w twice for one pass of
 * arithmetic), an item per output. The product runs in sixteen lanes
 * summed in a fixed order, then the tail of k. */
__kernel void linear_one(__global const float *x, __global const float *w,
                         __global const float *b, const int has_bias, __global float *y,
                         const uint n, const uint k, const float slope)
{
    uint j = (uint)get_global_id(0);
    if (j >= n)
        return;
    __global const float *row = w + (size_t)j * k;
    float16 acc = 0.0f;
    uint i = 0;
    for (; i + 16 <= k; i += 16)
        acc = fma(vload16(0, row + i), vload16(0, x + i), acc);
    float8 h8 = acc.lo + acc.hi;
    float4 h4 = h8.lo + h8.hi;
    float2 h2 = h4.lo + h4.hi;
    float sum = h2.x + h2.y;
    for (; i < k; i++)
        sum = fma(row[i], x[i], sum);
    y[j] = act(has_bias ? sum + b[j] : sum, slope);
}

/* y = act(a + b); all (n): a residual sum with the activation after it */
__kernel void add(__global const float *a, __global const float *b, __global float *y,
                  const uint n, const float slope)
{
    uint i = (uint)get_global_id(0);
    if (IN_RANGE(i, n))
        y[i] = act(a[i] + b[i], slope);
}
