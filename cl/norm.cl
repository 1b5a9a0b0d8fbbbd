/* Batch and layer normalization, forward and backward. Built after
 * group.cl and act.cl; every per-channel or per-row sum is one
 * work-group's tree sum, so results do not depend on scheduling.
 * batchnorm can end in an activation (ACT, from act.cl; only those with
 * ACT_FROM_OUTPUT): its backward then starts from dz = act'(y) dy,
 * computed on the fly from the output y. With
 * BN_ROWS (batchnorm1d, S = 1) elementwise kernels run over (C, N).
 *
 * batchnorm: x is (N, C, S) with S = H*W (1 for batchnorm1d); per channel
 *   c over M = N*S values: mean, biased var -> rstd = 1/sqrt(var + eps).
 * layernorm: x is (R, D); per row over its D values; gamma, beta are (D). */

/* Channel c's mean and rstd from its mean and biased variance over M
 * values; with update, the running statistics too. */
static void store_stats(uint c, float mu, float var, uint M, __global float *mean,
                        __global float *rstd, __global float *run_mean,
                        __global float *run_var, float eps, float momentum, int update)
{
    mean[c] = mu;
    rstd[c] = rsqrt(var + eps);
    if (update) {
        float unbiased = M > 1 ? var * (float)M / (float)(M - 1) : var;
        run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mu;
        run_var[c] = (1.0f - momentum) * run_var[c] + momentum * unbiased;
    }
}

/* Per channel: mean and rstd of x; with update, running stats too
 * (running = (1 - momentum) running + momentum stat, unbiased variance). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_stats(__global const float *x, __global float *mean, __global float *rstd,
              __global float *run_mean, __global float *run_var, const uint N,
              const uint C, const uint S, const float eps, const float momentum,
              const int update)
{
    __local float scratch[WG];
    uint c = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    uint M = N * S;
    float mu = group_sum(scratch, lane_channel_sum(x, 0.0f, 0, N, C, c, S)) / (float)M;
    float var = group_sum(scratch, lane_channel_sum(x, mu, 1, N, C, c, S)) / (float)M;
    if (lid == 0)
        store_stats(c, mu, var, M, mean, rstd, run_mean, run_var, eps, momentum, update);
}

/* bn_stats where work-groups run as loops, in two passes. Per plane p =
 * (n, c): its mean and the sum of squared deviations from it, part[2p] and
 * part[2p + 1] (the second pass over a plane reads it from cache). */
__kernel void bn_plane_moments(__global const float *x, __global float *part,
                               const uint planes, const uint S)
{
    FOR_EACH_PLANE(p, planes) {
        __global const float *xp = x + (size_t)p * S;
        float m = plane_sum(xp, S, 0.0f, 0) / (float)S;
        part[2 * p] = m;
        part[2 * p + 1] = plane_sum(xp, S, m, 1);
    }
}

/* Per channel, its N planes combined in order (Chan et al.: the squared
 * deviations within the planes plus S times those of the plane means). */
__kernel void bn_stats_planes(__global const float *part, __global float *mean,
                              __global float *rstd, __global float *run_mean,
                              __global float *run_var, const uint N, const uint C,
                              const uint S, const float eps, const float momentum,
                              const int update)
{
    uint c = (uint)get_global_id(0);
    if (c >= C)
        return;
    float mu = 0.0f, m2 = 0.0f;
    for (uint n = 0; n < N; n++)
        mu += part[2 * (n * C + c)];
    mu /= (float)N;
    for (uint n = 0; n < N; n++) {
        float d = part[2 * (n * C + c)] - mu;
        m2 += part[2 * (n * C + c) + 1] + (float)S * d * d;
    }
    store_stats(c, mu, m2 / (float)(N * S), N * S, mean, rstd, run_mean, run_var, eps,
                momentum, update);
}

/* bn_stats of batchnorm1d (S = 1) where work-groups run as loops, down
 * columns (group.cl): per channel the mean, then the squared deviations
 * from it. */
__kernel void bn_stats_columns(__global const float *x, __global float *mean,
                               __global float *rstd, __global float *run_mean,
                               __global float *run_var, const uint N, const uint C,
                               const float eps, const float momentum, const int update)
{
    COLUMNS_OF_ITEM(c0);
    if (c0 + 16 <= C) {
        float16 mu = column_sums16(x + c0, N, C, 0.0f, 0) / (float)N;
        float16 var = column_sums16(x + c0, N, C, mu, 1) / (float)N;
        float m[16], v[16];
        vstore16(mu, 0, m);
        vstore16(var, 0, v);
        for (uint j = 0; j < 16; j++)
            store_stats(c0 + j, m[j], v[j], N, mean, rstd, run_mean, run_var, eps, momentum,
                        update);
        return;
    }
    COLUMN_TAIL(c, c0, C) {
        float mu = column_sum(x + c, N, C, 0.0f, 0) / (float)N;
        float var = column_sum(x + c, N, C, mu, 1) / (float)N;
        store_stats(c, mu, var, N, mean, rstd, run_mean, run_var, eps, momentum, update);
    }
}

/* sync_batchnorm, before the processes combine their sums: this batch
 * part's mean and biased variance per channel. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_moments(__global const float *x, __global float *mean, __global float *var,
                const uint N, const uint C, const uint S)
{
    __local float scratch[WG];
    uint c = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    uint M = N * S;
    float mu = group_sum(scratch, lane_channel_sum(x, 0.0f, 0, N, C, c, S)) / (float)M;
    float v = group_sum(scratch, lane_channel_sum(x, mu, 1, N, C, c, S)) / (float)M;
    if (lid == 0) {
        mean[c] = mu;
        var[c] = v;
    }
}

/* sync_batchnorm, after: rstd from the whole batch's biased variance (in
 * place of it), and the running statistics over its M values per channel,
 * as bn_stats updates them. */
__kernel void bn_finish(__global const float *mean, __global float *rstd,
                        __global float *run_mean, __global float *run_var, const uint C,
                        const uint M, const float eps, const float momentum)
{
    uint c = (uint)get_global_id(0);
    if (c >= C)
        return;
    float var = rstd[c];
    float unbiased = M > 1 ? var * (float)M / (float)(M - 1) : var;
    run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mean[c];
    run_var[c] = (1.0f - momentum) * run_var[c] + momentum * unbiased;
    rstd[c] = rsqrt(var + eps);
}

/* Eval mode: mean and rstd from the running statistics. */
__kernel void bn_running(__global const float *run_mean, __global const float *run_var,
                         __global float *mean, __global float *rstd, const uint C,
                         const float eps)
{
    uint c = (uint)get_global_id(0);
    if (c < C) {
        mean[c] = run_mean[c];
        rstd[c] = rsqrt(run_var[c] + eps);
    }
}

/* Element i = (n, c, s) of the range (S, C, N), or (C, N) with BN_ROWS;
 * M = N * S, the values per channel. */
#ifdef BN_ROWS
#define BN_ELEMENT                                                             \
    uint c = get_global_id(0), i = get_global_id(1) * get_global_size(0) + c;  \
    uint M = get_global_size(1)
#else
#define BN_ELEMENT                                                             \
    uint s = get_global_id(0), c = get_global_id(1), nn = get_global_id(2);    \
    uint i = (nn * get_global_size(1) + c) * get_global_size(0) + s;           \
    uint M = get_global_size(0) * get_global_size(2)
#endif

/* y = act((x - mean[c]) rstd[c] gamma[c] + beta[c]) */
__kernel void bn_apply(__global const float *x, __global float *y, __global const float *mean,
                       __global const float *rstd, __global const float *gamma,
                       __global const float *beta, const float slope)
{
    BN_ELEMENT;
    (void)M;
    y[i] = act((x[i] - mean[c]) * rstd[c] * gamma[c] + beta[c], slope);
}

/* Per channel: dbeta = sum dz, dgamma = sum dz xhat. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void bn_grad_sums(__global const float *x, __global const float *y, __global const float *dy,
                  __global const float *mean, __global const float *rstd,
                  __global float *dgamma, __global float *dbeta, const uint N,
                  const uint C, const uint S, const float slope)
{
    __local float scratch[WG];
    uint c = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    uint M = N * S;
    float mu = mean[c], rs = rstd[c];
    lane_span l = span_of(lid, M);
    strided_walk w = walk_start(l, S);
    float4 dz4 = 0.0f, dzx4 = 0.0f;
    uint j = l.begin;
    for (; four_more(l, j); j += 4 * l.step) {
        uint4 at = walk_take4(&w, C, c, S);
        float4 yv = (float4)(y[at.s0], y[at.s1], y[at.s2], y[at.s3]);
        float4 g = (float4)(dy[at.s0], dy[at.s1], dy[at.s2], dy[at.s3]);
        float4 xv = (float4)(x[at.s0], x[at.s1], x[at.s2], x[at.s3]);
        float4 dz = (float4)(act_grad(yv.s0, yv.s0, g.s0, slope), act_grad(yv.s1, yv.s1, g.s1, slope),
                             act_grad(yv.s2, yv.s2, g.s2, slope), act_grad(yv.s3, yv.s3, g.s3, slope));
        dz4 += dz;
        dzx4 += dz * (xv - mu) * rs;
    }
    float sum_dy = sum4(dz4), sum_dy_xhat = sum4(dzx4);
    for (; j < l.end; j += l.step, walk_next(&w, S)) {
        uint at = (w.r * C + c) * S + w.s;
        float dz = act_grad(y[at], y[at], dy[at], slope);
        sum_dy += dz;
        sum_dy_xhat += dz * (x[at] - mu) * rs;
    }
    float db = group_sum(scratch, sum_dy);
    float dg = group_sum(scratch, sum_dy_xhat);
    if (lid == 0) {
        dbeta[c] = db;
        dgamma[c] = dg;
    }
}

#ifdef ACT_FROM_OUTPUT

/* bn_grad_sums where work-groups run as loops: per plane p = (n, c), the
 * sums of dz and of dz (x - mean), part[2p] and part[2p + 1]. */
__kernel void bn_plane_grads(__global const float *x, __global const float *y,
                             __global const float *dy, __global const float *mean,
                             __global float *part, const uint C, const uint planes,
                             const uint S, const float slope)
{
    FOR_EACH_PLANE(p, planes) {
        size_t at = (size_t)p * S;
        float mu = mean[p % C];
        float16 dz16 = 0.0f, dzx16 = 0.0f;
        uint j = 0;
        for (; j + 16 <= S; j += 16) {
            float16 dz = act_grad_from_output16(vload16(0, y + at + j), vload16(0, dy + at + j),
                                                slope);
            dz16 += dz;
            dzx16 += dz * (vload16(0, x + at + j) - mu);
        }
        float sum_dz = 0.0f, sum_dzx = 0.0f;
        for (; j < S; j++) {
            float dz = act_grad(y[at + j], y[at + j], dy[at + j], slope);
            sum_dz += dz;
            sum_dzx += dz * (x[at + j] - mu);
        }
        part[2 * p] = lanes_total(dz16) + sum_dz;
        part[2 * p + 1] = lanes_total(dzx16) + sum_dzx;
    }
}

/* Per channel, its planes' sums in order: dbeta, and dgamma = rstd times
 * the sum of dz (x - mean). */
__kernel void bn_grads_planes(__global const float *part, __global const float *rstd,
                              __global float *dgamma, __global float *dbeta, const uint N,
                              const uint C)
{
    uint c = (uint)get_global_id(0);
    if (c >= C)
        return;
    float db = 0.0f, dg = 0.0f;
    for (uint n = 0; n < N; n++) {
        db += part[2 * (n * C + c)];
        dg += part[2 * (n * C + c) + 1];
    }
    dbeta[c] = db;
    dgamma[c] = dg * rstd[c];
}

/* bn_grad_sums of batchnorm1d (S = 1) where work-groups run as loops, down
 * columns (group.cl). */
__kernel void bn_grads_columns(__global const float *x, __global const float *y,
                               __global const float *dy, __global const float *mean,
                               __global const float *rstd, __global float *dgamma,
                               __global float *dbeta, const uint N, const uint C,
                               const float slope)
{
    COLUMNS_OF_ITEM(c0);
    if (c0 + 16 <= C) {
        float16 mu = vload16(0, mean + c0), dz16 = 0.0f, dzx16 = 0.0f;
        for (uint n = 0; n < N; n++) {
            size_t at = (size_t)n * C + c0;
            float16 dz = act_grad_from_output16(vload16(0, y + at), vload16(0, dy + at), slope);
            dz16 += dz;
            dzx16 += dz * (vload16(0, x + at) - mu);
        }
        vstore16(dz16, 0, dbeta + c0);
        vstore16(dzx16 * vload16(0, rstd + c0), 0, dgamma + c0);
        return;
    }
    COLUMN_TAIL(c, c0, C) {
        float mu = mean[c], db = 0.0f, dg = 0.0f;
        for (uint n = 0; n < N; n++) {
            size_t at = (size_t)n * C + c;
            float dz = act_grad(y[at], y[at], dy[at], slope);
            db += dz;
            dg += dz * (x[at] - mu);
        }
        dbeta[c] = db;
        dgamma[c] = dg * rstd[c];
    }
}
#endif

/* Training: dx = gamma rstd / M (M dz - dbeta - xhat dgamma);
 * eval (batch statistics not used): dx = gamma rstd dz. */
__kernel void bn_dx(__global const float *x, __global const float *y, __global const float *dy,
                    __global const float *mean, __global const float *rstd,
                    __global const float *gamma, __global const float *dgamma,
                    __global const float *dbeta, __global float *dx, const int training,
                    const float slope)
{
    BN_ELEMENT;
    float dz = act_grad(y[i], y[i], dy[i], slope);
    float scale = gamma[c] * rstd[c];
    if (!training) {
        dx[i] = scale * dz;
        return;
    }
    float xhat = (x[i] - mean[c]) * rstd[c];
    dx[i] = scale / (float)M * ((float)M * dz - dbeta[c] - xhat * dgamma[c]);
}

/* Per row r: mean, rstd and y = xhat gamma + beta (+ 0 without beta). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void ln_forward(__global const float *x, __global float *y, __global const float *gamma,
                __global const float *beta, __global float *mean, __global float *rstd,
                const uint R, const uint D, const float eps, const int has_beta)
{ /* R: the rows, one a work-group (the signature of ln_forward_rows) */
    __local float scratch[WG];
    uint r = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    lane_span l = span_of(lid, D);
    __global const float *xr = x + r * D;
    float acc = 0.0f;
    for (uint j = l.begin; j < l.end; j += l.step)
        acc += xr[j];
    float mu = group_sum(scratch, acc) / (float)D;
    acc = 0.0f;
    for (uint j = l.begin; j < l.end; j += l.step)
        acc += (xr[j] - mu) * (xr[j] - mu);
    float rs = rsqrt(group_sum(scratch, acc) / (float)D + eps);
    for (uint j = l.begin; j < l.end; j += l.step)
        y[r * D + j] = (xr[j] - mu) * rs * gamma[j] + (has_beta ? beta[j] : 0.0f);
    if (lid == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* Per row: g = dy gamma; dx = rstd (g - mean(g) - xhat mean(g xhat)),
 * added to what dx holds where add is set (another reader's gradient:
 * each value rounded as the add op would). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void ln_dx(__global const float *x, __global const float *dy, __global const float *gamma,
           __global const float *mean, __global const float *rstd, __global float *dx,
           const uint R, const uint D, const int add)
{ /* R: the rows, one a work-group (the signature of ln_dx_rows) */
    __local float scratch[WG];
    uint r = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    lane_span l = span_of(lid, D);
    float mu = mean[r], rs = rstd[r], sum_g = 0.0f, sum_gx = 0.0f;
    for (uint j = l.begin; j < l.end; j += l.step) {
        float g = dy[r * D + j] * gamma[j];
        sum_g += g;
        sum_gx += g * (x[r * D + j] - mu) * rs;
    }
    float mean_g = group_sum(scratch, sum_g) / (float)D;
    float mean_gx = group_sum(scratch, sum_gx) / (float)D;
    for (uint j = l.begin; j < l.end; j += l.step) {
        float xhat = (x[r * D + j] - mu) * rs;
        float v = rs * (dy[r * D + j] * gamma[j] - mean_g - xhat * mean_gx);
        dx[r * D + j] = add ? dx[r * D + j] + v : v;
    }
}

/* Per column j: dgamma = sum_r dy xhat, dbeta = sum_r dy (if has_beta). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void ln_param_grads(__global const float *x, __global const float *dy,
                    __global const float *mean, __global const float *rstd,
                    __global float *dgamma, __global float *dbeta, const uint R,
                    const uint D, const int has_beta)
{
    __local float scratch[WG];
    uint j = (uint)get_group_id(0), lid = (uint)get_local_id(0);
    lane_span l = span_of(lid, R);
    float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
    for (uint r = l.begin; r < l.end; r += l.step) {
        float d = dy[r * D + j];
        sum_dy += d;
        sum_dy_xhat += d * (x[r * D + j] - mean[r]) * rstd[r];
    }
    float db = group_sum(scratch, sum_dy);
    float dg = group_sum(scratch, sum_dy_xhat);
    if (lid == 0) {
        if (has_beta)
            dbeta[j] = db;
        dgamma[j] = dg;
    }
}

/* ---- layernorm where work-groups run as loops (CPUs) ----
 * One work-item per row (FOR_EACH_PLANE), its sums in order sixteen lanes
 * at a time (plane_sum); the parameter gradients run down columns
 * (COLUMNS_OF_ITEM), each column's sum over r = 0, 1, ... in order. */
__kernel void ln_forward_rows(__global const float *x, __global float *y,
                              __global const float *gamma, __global const float *beta,
                              __global float *mean, __global float *rstd, const uint R,
                              const uint D, const float eps, const int has_beta)
{
    FOR_EACH_PLANE(r, R) {
        __global const float *xr = x + (size_t)r * D;
        __global float *yr = y + (size_t)r * D;
        float mu = plane_sum(xr, D, 0.0f, 0) / (float)D;
        float rs = rsqrt(plane_sum(xr, D, mu, 1) / (float)D + eps);
        uint j = 0;
        for (; j + 16 <= D; j += 16) {
            float16 b = has_beta ? vload16(0, beta + j) : 0.0f;
            vstore16((vload16(0, xr + j) - mu) * rs * vload16(0, gamma + j) + b, 0, yr + j);
        }
        for (; j < D; j++)
            yr[j] = (xr[j] - mu) * rs * gamma[j] + (has_beta ? beta[j] : 0.0f);
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* v into an item's partial sums at p (its first row stores). */
#define PARTIAL16(p, v, first) vstore16((first) ? (v) : vload16(0, (p)) + (v), 0, (p))
#define PARTIAL1(p, v, first) (*(p) = (first) ? (v) : *(p) + (v))

/* ln_dx by rows: g = dy gamma; dx = rstd (g - mean(g) - xhat mean(g xhat)),
 * added to what dx holds where add is set. With params, item it also sums
 * its rows' dy xhat (and dy, with has_beta) into row it of pg (and pb), in
 * row order: the parameter gradients' partial sums, which column_totals
 * adds up. */
__kernel void ln_dx_rows(__global const float *x, __global const float *dy,
                         __global const float *gamma, __global const float *mean,
                         __global const float *rstd, __global float *dx, const uint R,
                         const uint D, const int add, __global float *pg, __global float *pb,
                         const int params, const int has_beta)
{
    size_t it = get_global_id(0);
    pg += it * D;
    pb += it * D;
    FOR_EACH_PLANE(r, R) {
        int first = r == it;
        __global const float *xr = x + (size_t)r * D, *dyr = dy + (size_t)r * D;
        float mu = mean[r], rs = rstd[r];
        float16 g16 = 0.0f, gx16 = 0.0f;
        uint j = 0;
        for (; j + 16 <= D; j += 16) {
            float16 g = vload16(0, dyr + j) * vload16(0, gamma + j);
            g16 += g;
            gx16 += g * ((vload16(0, xr + j) - mu) * rs);
        }
        float sum_g = lanes_total(g16), sum_gx = lanes_total(gx16);
        for (uint t = j; t < D; t++) {
            float g = dyr[t] * gamma[t];
            sum_g += g;
            sum_gx += g * ((xr[t] - mu) * rs);
        }
        float mean_g = sum_g / (float)D, mean_gx = sum_gx / (float)D;
        __global float *dxr = dx + (size_t)r * D;
        for (j = 0; j + 16 <= D; j += 16) {
            float16 xhat = (vload16(0, xr + j) - mu) * rs, d = vload16(0, dyr + j);
            float16 g = d * vload16(0, gamma + j);
            float16 v = rs * (g - mean_g - xhat * mean_gx);
            vstore16(add ? vload16(0, dxr + j) + v : v, 0, dxr + j);
            if (params)
                PARTIAL16(pg + j, d * xhat, first);
            if (params && has_beta)
                PARTIAL16(pb + j, d, first);
        }
        for (; j < D; j++) {
            float xhat = (xr[j] - mu) * rs;
            float v = rs * (dyr[j] * gamma[j] - mean_g - xhat * mean_gx);
            dxr[j] = add ? dxr[j] + v : v;
            if (params)
                PARTIAL1(pg + j, dyr[j] * xhat, first);
            if (params && has_beta)
                PARTIAL1(pb + j, dyr[j], first);
        }
    }
}

/* ln_param_grads down columns: dgamma = sum_r dy xhat, dbeta = sum_r dy. */
__kernel void ln_param_grads_columns(__global const float *x, __global const float *dy,
                                     __global const float *mean, __global const float *rstd,
                                     __global float *dgamma, __global float *dbeta,
                                     const uint R, const uint D, const int has_beta)
{
    COLUMNS_OF_ITEM(c0);
    if (c0 + 16 <= D) {
        float16 db = 0.0f, dg = 0.0f;
        for (uint r = 0; r < R; r++) {
            size_t at = (size_t)r * D + c0;
            float16 d = vload16(0, dy + at);
            db += d;
            dg += d * ((vload16(0, x + at) - mean[r]) * rstd[r]);
        }
        if (has_beta)
            vstore16(db, 0, dbeta + c0);
        vstore16(dg, 0, dgamma + c0);
        return;
    }
    COLUMN_TAIL(c, c0, D) {
        float db = 0.0f, dg = 0.0f;
        for (uint r = 0; r < R; r++) {
            size_t at = (size_t)r * D + c;
            db += dy[at];
            dg += dy[at] * ((x[at] - mean[r]) * rstd[r]);
        }
        if (has_beta)
            dbeta[c] = db;
        dgamma[c] = dg;
    }
}

/* Eval-mode batchnorm folded into the linear or conv2d before it, over
 * (row, out) where a weight row holds row = in (* k * k) values:
 *   s = gamma / sqrt(running_var + eps)
 *   wf[o, :] = w[o, :] s[o]      bf[o] = (b[o] - running_mean[o]) s[o] + beta[o] */
__kernel void bn_fold(__global const float *w, __global const float *b, const int has_bias,
                      __global const float *gamma, __global const float *beta,
                      __global const float *run_mean, __global const float *run_var,
                      const float eps, __global float *wf, __global float *bf)
{
    uint j = get_global_id(0), o = get_global_id(1), row = get_global_size(0);
    float s = gamma[o] * rsqrt(run_var[o] + eps);
    wf[o * row + j] = w[o * row + j] * s;
    if (j == 0)
        bf[o] = ((has_bias ? b[o] : 0.0f) - run_mean[o]) * s + beta[o];
}
