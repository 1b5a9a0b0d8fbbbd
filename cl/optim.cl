/* Optimizer updates over all parameters at once: p, g and the states are
 * flat buffers holding every parameter tensor (n values). The gradient is
 * first scaled by scale[0] (1, or the clip_norm factor computed on the
 * device) and, with clip_value > 0, clamped to [-clip_value, clip_value].
 * PyTorch's formulas (torch.optim), step t from 1:
 *   sgd:   g += wd p; b = t == 1 ? g : momentum b + (1 - dampening) g;
 *          g = nesterov ? g + momentum b : b (momentum > 0); p -= lr g
 *   adam:  g += wd p (adam) or p *= 1 - lr wd (adamw);
 *          m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *          p -= lr (m / bc1) / (sqrt(v / bc2) + eps), bc = 1 - beta^t
 * With guarded, every value is kept where guard[0] is not finite (a loss:
 * the update is enqueued before the host reads it); kept by selection, as
 * llvmpipe warns of a kernel argument read after an early return. */

/* The updates run sixteen values an item (n / 16 items; the flat
 * parameters are whole multiples of the pipeline's alignment): PoCL left
 * the one-value kernels' loops over items scalar at AVX2 (the uniform
 * branches on has_decay and momentum kept them from its vectorizer; Adam
 * over the Fashion MLP's 236 k values took 0.77 ms a step there, 0.20 this
 * way). A lane computes what one value's kernel did, to the bit. */
#define STEP_LANES 16

static float16 clipped(__global const float *g, uint i, __global const float *scale,
                       float clip_value)
{
    float16 v = vload16(0, g + i) * scale[0];
    return clip_value > 0.0f ? clamp(v, -clip_value, clip_value) : v;
}

__kernel void sgd_step(__global float *p, __global const float *g, __global float *buf,
                       __global const float *scale, const float lr, const float momentum,
                       const float dampening, const float wd, const int nesterov,
                       const int first, const float clip_value, __global const float *guard,
                       const int guarded)
{
    uint i = (uint)get_global_id(0) * STEP_LANES;
    int keep = guarded && !isfinite(guard[0]);
    float16 w = vload16(0, p + i), grad = clipped(g, i, scale, clip_value) + wd * w;
    if (momentum != 0.0f) {
        float16 before = vload16(0, buf + i);
        float16 b = first ? grad : momentum * before + (1.0f - dampening) * grad;
        vstore16(keep ? before : b, 0, buf + i);
        grad = nesterov ? grad + momentum * b : b;
    }
    vstore16(keep ? w : w - lr * grad, 0, p + i);
}

__kernel void adam_step(__global float *p, __global const float *g, __global float *m,
                        __global float *v, __global const float *scale, const float lr,
                        const float b1, const float b2, const float eps, const float wd,
                        const int decoupled, const float bc1, const float bc2,
                        const float clip_value, __global const float *decay,
                        const int has_decay, __global const float *guard, const int guarded)
{
    uint i = (uint)get_global_id(0) * STEP_LANES;
    int keep = guarded && !isfinite(guard[0]);
    float16 grad = clipped(g, i, scale, clip_value), p0 = vload16(0, p + i), w = p0;
    /* decay: 1 where weight decay applies (matrices), 0 elsewhere */
    float16 wdi = has_decay ? wd * vload16(0, decay + i) : (float16)wd;
    if (decoupled)
        w *= 1.0f - lr * wdi;
    else
        grad += wdi * w;
    float16 m0 = vload16(0, m + i), v0 = vload16(0, v + i);
    float16 mi = b1 * m0 + (1.0f - b1) * grad;
    float16 vi = b2 * v0 + (1.0f - b2) * grad * grad;
    vstore16(keep ? m0 : mi, 0, m + i);
    vstore16(keep ? v0 : vi, 0, v + i);
    vstore16(keep ? p0 : w - lr * (mi / bc1) / (sqrt(vi / bc2) + eps), 0, p + i);
}

/* scale[0] = min(1, max_norm / (sqrt(sumsq[0]) + 1e-6)), as clip_grad_norm_;
 * norm[0] = the norm before clipping. */
__kernel void clip_scale(__global const float *sumsq, __global float *scale,
                         __global float *norm, const float max_norm)
{
    float total = sqrt(sumsq[0]);
    norm[0] = total;
    scale[0] = fmin(1.0f, max_norm / (total + 1e-6f));
}
