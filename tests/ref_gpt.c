/* Float64 references of the sequence operators (see ref_gpt.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_gpt.h"

/* The row of an id (nearest whole number: finite differences nudge ids). */
static size_t row_of(double id)
{
    return (size_t)floor(id + 0.5);
}

void ref_embedding(const double *ids, size_t N, const double *W, size_t C, double *out)
{
    for (size_t n = 0; n < N; n++)
        memcpy(out + n * C, W + row_of(ids[n]) * C, C * sizeof *out);
}

void ref_embedding_backward(const double *ids, size_t N, const double *dy, size_t V, size_t C,
                            double *dW)
{
    memset(dW, 0, V * C * sizeof *dW);
    for (size_t n = 0; n < N; n++)
        for (size_t c = 0; c < C; c++)
            dW[row_of(ids[n]) * C + c] += dy[n * C + c];
}

void ref_position(const double *x, size_t B, size_t T, size_t C, const double *P, double *out)
{
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t c = 0; c < C; c++)
                out[(b * T + t) * C + c] = x[(b * T + t) * C + c] + P[t * C + c];
}

void ref_position_backward(const double *dy, size_t B, size_t T, size_t C, size_t rows,
                           double *dP)
{
    memset(dP, 0, rows * C * sizeof *dP);
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t c = 0; c < C; c++)
                dP[t * C + c] += dy[(b * T + t) * C + c];
}

/* The probabilities p[i, j] of one (batch, head): softmax over j <= i of
 * q_i . k_j / sqrt(D), zero above the diagonal. */
static void attention_probs(const double *qkv, size_t b, size_t h, size_t T, size_t C, size_t H,
                            double *p)
{
    size_t D = C / H;
    double scale = 1.0 / sqrt((double)D);
    for (size_t i = 0; i < T; i++) {
        const double *q = qkv + (b * T + i) * 3 * C + h * D;
        double m = -INFINITY, sum = 0;
        for (size_t j = 0; j <= i; j++) {
            const double *k = qkv + (b * T + j) * 3 * C + C + h * D;
            double s = 0;
            for (size_t d = 0; d < D; d++)
                s += q[d] * k[d];
            p[i * T + j] = s * scale;
            m = fmax(m, s * scale);
        }
        for (size_t j = 0; j <= i; j++)
            sum += p[i * T + j] = exp(p[i * T + j] - m);
        for (size_t j = 0; j < T; j++)
            p[i * T + j] = j <= i ? p[i * T + j] / sum : 0;
    }
}

void ref_attention(const double *qkv, size_t B, size_t T, size_t C, size_t H, double *y)
{
    size_t D = C / H;
    double *p = malloc(T * T * sizeof *p);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++) {
            attention_probs(qkv, b, h, T, C, H, p);
            for (size_t i = 0; i < T; i++)
                for (size_t d = 0; d < D; d++) {
                    double s = 0;
                    for (size_t j = 0; j < T; j++)
                        s += p[i * T + j] * qkv[(b * T + j) * 3 * C + 2 * C + h * D + d];
                    y[(b * T + i) * C + h * D + d] = s;
                }
        }
    free(p);
}

/* dv_j = sum_i p_ij dy_i; dp_ij = dy_i . v_j; ds_ij = p_ij (dp_ij - sum_k p_ik dp_ik);
 * dq_i = scale sum_j ds_ij k_j; dk_j = scale sum_i ds_ij q_i. */
void ref_attention_backward(const double *qkv, const double *dy, size_t B, size_t T, size_t C,
                            size_t H, double *dqkv)
{
    size_t D = C / H;
    double scale = 1.0 / sqrt((double)D);
    double *p = malloc(T * T * sizeof *p), *ds = malloc(T * T * sizeof *ds);
    memset(dqkv, 0, B * T * 3 * C * sizeof *dqkv);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++) {
            attention_probs(qkv, b, h, T, C, H, p);
            const double *base = qkv + b * T * 3 * C;
            double *dbase = dqkv + b * T * 3 * C;
            for (size_t i = 0; i < T; i++) {
                const double *g = dy + (b * T + i) * C + h * D;
                double dot = 0;
                for (size_t j = 0; j < T; j++) {
                    double dp = 0;
                    for (size_t d = 0; d < D; d++)
                        dp += g[d] * base[j * 3 * C + 2 * C + h * D + d];
                    ds[i * T + j] = dp;
                    dot += p[i * T + j] * dp;
                }
                for (size_t j = 0; j < T; j++)
                    ds[i * T + j] = p[i * T + j] * (ds[i * T + j] - dot);
                for (size_t j = 0; j < T; j++)
                    for (size_t d = 0; d < D; d++)
                        dbase[j * 3 * C + 2 * C + h * D + d] += p[i * T + j] * g[d];
            }
            for (size_t i = 0; i < T; i++)
                for (size_t j = 0; j < T; j++)
                    for (size_t d = 0; d < D; d++) {
                        dbase[i * 3 * C + h * D + d] +=
                            scale * ds[i * T + j] * base[j * 3 * C + C + h * D + d];
                        dbase[j * 3 * C + C + h * D + d] +=
                            scale * ds[i * T + j] * base[i * 3 * C + h * D + d];
                    }
        }
    free(p);
    free(ds);
}
