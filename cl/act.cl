/* Activations, forward and backward, and the bias + activation epilogue of
 * linear and conv2d. ACT selects the function at compile time; the host's
 * act_options() defines it with ACT_<ID> for every row of KILN_ACT_LIST
 * (src/ops/ops.h) and ACT_FROM_OUTPUT where the row says from_output.
 * An activation is its three cases below: act_of (which act is at
 * compile time, with the list of the activations it knows), act_grad
 * and, if its gradient follows from its output, act_grad_from_output16.
 * A row without its case fails to build, and act_of gives NaN for one it
 * does not know (linear_chain's layers choose theirs at run time).
 * Every kernel is one work-item per element and bounds-checked, and the
 * math is plain arithmetic (math.cl, which programs join before this
 * source), so that drivers running a work-group as a loop vectorize it. */
#if !defined(ACT) || !defined(ACT_NONE)
#error "act.cl is built with the options of act_options()"
#endif

#define SQRT_2_OVER_PI 0.7978845608028654f

static float sigmoid(float x)
{
    /* exp of a non-positive number only: no overflow for any x */
    float e = exp_nonpositive(-fabs(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

#if ACT != ACT_NONE && ACT != ACT_RELU && ACT != ACT_LEAKY_RELU && ACT != ACT_SIGMOID &&        \
    ACT != ACT_TANH && ACT != ACT_GELU && ACT != ACT_GELU_TANH && ACT != ACT_SILU
#error "act.cl: no forward for this activation"
#endif

/* The activation `id` (an ACT_<ID> value) of x: ACT's at compile time
 * (act), or each layer's own in linear_chain. */
static float act_of(int id, float x, float slope)
{
    if (id == ACT_RELU)
        return fmax(x, 0.0f);
    if (id == ACT_LEAKY_RELU)
        return x > 0.0f ? x : slope * x;
    if (id == ACT_SIGMOID)
        return sigmoid(x);
    if (id == ACT_TANH)
        return tanh_fast(x);
    float x_half = 0.5f * x;
    if (id == ACT_GELU)
        return fma(x_half, erf_fast(x * INV_SQRT_2), x_half);
    if (id == ACT_GELU_TANH)
        return fma(x_half, tanh_fast(SQRT_2_OVER_PI * fma(0.044715f * x, x * x, x)), x_half);
    if (id == ACT_SILU)
        return x * sigmoid(x);
    return id == ACT_NONE ? x : NAN;
}

static float act(float x, float slope)
{
    return act_of(ACT, x, slope);
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

/* The sum of row (k long) times x as a one-sample layer takes it: in
 * sixteen lanes summed in a fixed order, then the tail of k (x and row in
 * any address space). */
#define ROW_DOT(ROW, X, K, SUM)                                                              \
    do {                                                                                     \
        float16 acc_ = 0.0f;                                                                 \
        uint i_ = 0;                                                                         \
        for (; i_ + 16 <= (K); i_ += 16)                                                     \
            acc_ = fma(vload16(0, (ROW) + i_), vload16(0, (X) + i_), acc_);                  \
        float8 h8_ = acc_.lo + acc_.hi;                                                      \
        float4 h4_ = h8_.lo + h8_.hi;                                                        \
        float2 h2_ = h4_.lo + h4_.hi;                                                        \
        SUM = h2_.x + h2_.y;                                                                 \
        for (; i_ < (K); i_++)                                                               \
            SUM = fma((ROW)[i_], (X)[i_], SUM);                                              \
    } while (0)

/* y[j] = act(x . w[j] + b[j]) for j < n: a linear layer on one sample,
 * in one launch (CPUs, kiln's GEMM), the rows of w (n, k) read in place
 * (packing them at every call would move w twice for one pass of
 * arithmetic), an item per output. */
__kernel void linear_one(__global const float *x, __global const float *w,
                         __global const float *b, const int has_bias, __global float *y,
                         const uint n, const uint k, const float slope)
{
    uint j = (uint)get_global_id(0);
    if (j >= n)
        return;
    float sum;
    ROW_DOT(w + (size_t)j * k, x, k, sum);
    y[j] = act(has_bias ? sum + b[j] : sum, slope);
}

/* A layer of linear_chain: its weights W (D.x rows of D.y) and bias B,
 * its own activation (D.z) and whether it has the bias (D.w), from FROM
 * (global or local memory) into TO, the items taking rows in turn. */
#define CHAIN_LAYER(W, B, D, SLOPE, FROM, TO)                                                \
    for (uint j = get_local_id(0); j < (D).x; j += get_local_size(0)) {                      \
        float sum;                                                                           \
        ROW_DOT((W) + (size_t)j * (D).y, FROM, (D).y, sum);                                  \
        TO[j] = act_of((int)(D).z, (D).w ? sum + (B)[j] : sum, SLOPE);                       \
    }

/* Up to four consecutive linear layers of one sample in one
 * work-group (CPUs, kiln's GEMM), where each is too small for its own
 * launch to pay: x through `layers` of them into y, each layer's outputs
 * in local memory for the next (at most CHAIN_WIDTH), each row summed as
 * linear_one sums it, so the same bits. Layer l: weights wl (n, k), bias
 * bl, dl = (n, k, activation, has bias), slope sl. */
#define CHAIN_WIDTH 1024
__kernel void linear_chain(__global const float *x, __global float *y, const uint layers,
                           __global const float *w0, __global const float *b0, const uint4 d0,
                           const float s0, __global const float *w1, __global const float *b1,
                           const uint4 d1, const float s1, __global const float *w2,
                           __global const float *b2, const uint4 d2, const float s2,
                           __global const float *w3, __global const float *b3, const uint4 d3,
                           const float s3)
{
    __local float h[2][CHAIN_WIDTH];
    if (layers == 1) {
        CHAIN_LAYER(w0, b0, d0, s0, x, y)
        return;
    }
    CHAIN_LAYER(w0, b0, d0, s0, x, h[0])
    barrier(CLK_LOCAL_MEM_FENCE);
    if (layers == 2) {
        CHAIN_LAYER(w1, b1, d1, s1, h[0], y)
        return;
    }
    CHAIN_LAYER(w1, b1, d1, s1, h[0], h[1])
    barrier(CLK_LOCAL_MEM_FENCE);
    if (layers == 3) {
        CHAIN_LAYER(w2, b2, d2, s2, h[1], y)
        return;
    }
    CHAIN_LAYER(w2, b2, d2, s2, h[1], h[0])
    barrier(CLK_LOCAL_MEM_FENCE);
    CHAIN_LAYER(w3, b3, d3, s3, h[0], y)
}

/* y = act(a + b); all (n): a residual sum with the activation after it */
__kernel void add(__global const float *a, __global const float *b, __global float *y,
                  const uint n, const float slope)
{
    uint i = (uint)get_global_id(0);
    if (IN_RANGE(i, n))
        y[i] = act(a[i] + b[i], slope);
}
