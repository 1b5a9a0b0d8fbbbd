/* Float64 references of the sequence operators: token and position
 * embeddings and causal multi-head self-attention, written from their
 * definitions (the attention with its whole T x T score matrix). */
#ifndef KILN_REF_GPT_H
#define KILN_REF_GPT_H

#include <stddef.h>

/* ids (N) whole numbers in [0, V); W (V, C); out (N, C); dW (V, C). */
void ref_embedding(const double *ids, size_t N, const double *W, size_t C, double *out);
void ref_embedding_backward(const double *ids, size_t N, const double *dy, size_t V, size_t C,
                            double *dW);

/* x (B, T, C), P (rows, C), T <= rows; out = x + P[t]; dP (rows, C). */
void ref_position(const double *x, size_t B, size_t T, size_t C, const double *P, double *out);
void ref_position_backward(const double *dy, size_t B, size_t T, size_t C, size_t rows,
                           double *dP);

/* qkv (B, T, 3C) -> y (B, T, C), heads of C / H; dqkv from dy. */
void ref_attention(const double *qkv, size_t B, size_t T, size_t C, size_t H, double *y);
void ref_attention_backward(const double *qkv, const double *dy, size_t B, size_t T, size_t C,
                            size_t H, double *dqkv);

#endif
