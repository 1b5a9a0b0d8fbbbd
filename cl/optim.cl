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

static float clipped(__global const float *g, uint i, __global const float *scale,
                     float clip_value)
{
    float v = g[i] * scale[0];
    return clip_value > 0.0f ? clamp(v, -clip_value, clip_value) : v;
}

__kernel void sgd_step(__global float *p, __global const float *g, __global float *buf,
                       __global const float *scale, const float lr, const float momentum,
                       const float dampening, const float wd, const int nesterov,
                       const int first, const float clip_value, __global const float *guard,
                       const int guarded)
{
    uint i = get_global_id(0);
    int keep = guarded && !isfinite(guard[0]);
    float grad = clipped(g, i, scale, clip_value) + wd * p[i];
    if (momentum != 0.0f) {
        float b = first ? grad : momentum * buf[i] + (1.0f - dampening) * grad;
        buf[i] = keep ? buf[i] : b;
        grad = nesterov ? grad + momentum * b : b;
    }
    p[i] = keep ? p[i] : p[i] - lr * grad;
}

__kernel void adam_step(__global float *p, __global const float *g, __global float *m,
                        __global float *v, __global const float *scale, const float lr,
                        const float b1, const float b2, const float eps, float wd,
                        const int decoupled, const float bc1, const float bc2,
                        const float clip_value, __global const float *decay,
                        const int has_decay, __global const float *guard, const int guarded)
{
    uint i = get_global_id(0);
    int keep = guarded && !isfinite(guard[0]);
    float grad = clipped(g, i, scale, clip_value), w = p[i];
    if (has_decay) /* 1 where weight decay applies (matrices), 0 elsewhere */
        wd *= decay[i];
    if (decoupled)
        w *= 1.0f - lr * wd;
    else
        grad += wd * w;
    float mi = b1 * m[i] + (1.0f - b1) * grad;
    float vi = b2 * v[i] + (1.0f - b2) * grad * grad;
    m[i] = keep ? m[i] : mi;
    v[i] = keep ? v[i] : vi;
    p[i] = keep ? p[i] : w - lr * (mi / bc1) / (sqrt(vi / bc2) + eps);
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
