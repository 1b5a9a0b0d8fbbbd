/* Text from a token model trained on a text: the prompt encoded with the
 * network's vocabulary, then one token at a time, sampled from the
 * distribution at the last position (temperature, top-k) and written out
 * as it comes, as nanoGPT's sample.py does, in eval mode. The context is
 * the last block of tokens; a shorter one sits at positions 0 .. L-1.
 *
 * A KV cache (pipeline_create_decode): until the context fills the block,
 * each token runs one position through a decoding pipeline whose attention
 * layers keep the keys and values of the positions before it, so a token
 * costs one position's work. Once the window slides, every token sits at
 * another position than before and the learned positions change every
 * cached key: from then on each token runs the whole window (nanoGPT's
 * crop), and the logits are those of the window either way. Without the
 * cache (net_generate's cache = 0) every token runs the window, padded
 * after position L-1 where causal attention never lets it see. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/text.h"
#include "net/net.h"

/* Probabilities at position `at` of one window's output, with the
 * temperature applied (a softmax head's outputs are probabilities, other
 * heads' logits). */
static void distribution(const kiln_net *net, const float *out, size_t V, double temperature,
                         double *p)
{
    int probs = kiln_net_head(net) == KILN_HEAD_SOFTMAX;
    double top = -INFINITY, sum = 0;
    for (size_t v = 0; v < V; v++) {
        double z = probs ? log(fmax((double)out[v], 1e-38)) : (double)out[v];
        p[v] = z / temperature;
        top = fmax(top, p[v]);
    }
    for (size_t v = 0; v < V; v++)
        sum += p[v] = exp(p[v] - top);
    for (size_t v = 0; v < V; v++)
        p[v] /= sum;
}

static size_t argmax(const float *out, size_t V)
{
    size_t best = 0;
    for (size_t v = 1; v < V; v++)
        if (out[v] > out[best])
            best = v;
    return best;
}

/* Samples from p keeping its top_k largest (0: all). */
static size_t sample(double *p, size_t V, size_t top_k, kiln_rng *rng)
{
    if (top_k && top_k < V) { /* the k-th largest: zero what is below it */
        double *sorted = malloc(V * sizeof *sorted);
        if (sorted) {
            memcpy(sorted, p, V * sizeof *sorted);
            for (size_t i = 0; i < top_k; i++) /* partial selection: V is small */
                for (size_t j = i + 1; j < V; j++)
                    if (sorted[j] > sorted[i]) {
                        double t = sorted[i];
                        sorted[i] = sorted[j], sorted[j] = t;
                    }
            double kth = sorted[top_k - 1], kept = 0;
            size_t above = 0, ties = 0;
            for (size_t v = 0; v < V; v++)
                above += p[v] > kth;
            for (size_t v = 0; v < V; v++) { /* k of them, ties by index */
                int keep = p[v] > kth || (p[v] == kth && ties++ < top_k - above);
                p[v] = keep ? p[v] : 0;
                kept += p[v];
            }
            for (size_t v = 0; v < V; v++)
                p[v] /= kept;
            free(sorted);
        }
    }
    double u = rng_uniform(rng, 0, 1), run = 0;
    for (size_t v = 0; v < V; v++) {
        run += p[v];
        if (u < run && p[v] > 0)
            return v;
    }
    size_t last = V - 1;
    while (last > 0 && p[last] == 0)
        last--;
    return last;
}

static kiln_status check_generate(const kiln_net *net, const char *prompt, double temperature,
                                  size_t top_k, size_t V)
{
    if (V == 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_generate: the model takes no "
                                                    "tokens ([input] tokens and block)");
    if (!net->vocab)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_generate: the network has no "
                                                    "vocabulary (load a checkpoint of kiln "
                                                    "train --data TEXT, or set one)");
    if (!prompt)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_generate: the prompt is NULL");
    if (!(temperature >= 0) || !isfinite(temperature))
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_generate: temperature %g; "
                                                    "expected 0 (greedy) or more", temperature);
    if (top_k > V)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_net_generate: top_k %zu is larger "
                                                    "than the vocabulary of %zu", top_k, V);
    return KILN_OK;
}

/* The window x[0..len) and how it runs. */
typedef struct {
    kiln_net *net;
    pipeline *dec;  /* the cache; NULL: every token runs the window */
    size_t cached;  /* positions of x held in dec's caches */
    int slid;       /* the window has slid: positions no longer match the cache */
    float *x, *y;   /* the window (T) and one output (T x V) */
    size_t T, V, len;
} window;

/* The output at the window's last position: through the cache, one
 * position at a time from the first not cached, or the whole window. */
static kiln_status window_last(window *w, const float **last)
{
    if (!w->dec || w->slid) {
        kiln_status st = kiln_net_forward(w->net, w->x, 1, w->y);
        *last = w->y + (w->len - 1) * w->V;
        return st;
    }
    kiln_status st = net_runs_inline(w->net, w->dec) ? ctx_enter_inline(w->net->ctx) : KILN_OK;
    for (; st == KILN_OK && w->cached < w->len; w->cached++) {
        w->dec->at = w->cached;
        st = tensor_write(w->dec->input, &w->x[w->cached], 1, 0);
        if (st == KILN_OK)
            st = pipeline_forward(w->dec, 0);
    }
    if (st == KILN_OK)
        st = tensor_read(pipeline_output(w->dec), w->y, w->V, 1);
    if (st != KILN_OK)
        kiln_ctx_finish(w->net->ctx); /* nothing of this call still queued */
    ctx_leave_inline(w->net->ctx);
    *last = w->y;
    return st;
}

/* Appends a token, sliding the window once it is full. */
static void window_push(window *w, size_t next)
{
    if (w->len == w->T) {
        memmove(w->x, w->x + 1, (w->T - 1) * sizeof *w->x);
        w->slid = 1;
    } else {
        w->len++;
    }
    w->x[w->len - 1] = (float)next;
}

kiln_status kiln_net_generate(kiln_net *net, const char *prompt, size_t tokens,
                              double temperature, size_t top_k, uint64_t seed,
                              kiln_write_fn out, void *user)
{
    return net_generate(net, prompt, tokens, temperature, top_k, seed, 1, out, user);
}

kiln_status net_generate(kiln_net *net, const char *prompt, size_t tokens, double temperature,
                         size_t top_k, uint64_t seed, int cache, kiln_write_fn out, void *user)
{
    kiln_status st = net_check(net, "kiln_net_generate");
    size_t V = st == KILN_OK ? kiln_model_vocab(net->m) : 0;
    size_t T = st == KILN_OK ? kiln_model_block(net->m) : 0;
    if (st == KILN_OK)
        st = check_generate(net, prompt, temperature, top_k, V);
    uint32_t *chars = NULL, *ids = NULL;
    size_t n_chars = 0, n = 0;
    if (st == KILN_OK)
        st = vocab_chars(net->vocab, "the network's vocabulary", &chars, &n_chars);
    if (st == KILN_OK)
        st = vocab_encode(chars, n_chars, prompt, strlen(prompt), "the prompt", &ids, &n);
    float *x = st == KILN_OK ? calloc(T, sizeof *x) : NULL, *y = NULL;
    double *p = st == KILN_OK ? malloc(V * sizeof *p) : NULL;
    if (st == KILN_OK)
        y = malloc(T * V * sizeof *y);
    if (st == KILN_OK && (!x || !y || !p))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "kiln_net_generate: out of memory");
    /* the context: the prompt's last block of tokens (an empty prompt starts
     * from a newline where the vocabulary has one, as nanoGPT's sample.py) */
    size_t len = n < T ? n : T;
    for (size_t i = 0; i < len; i++)
        x[i] = (float)ids[n - len + i];
    for (size_t i = 0; st == KILN_OK && len == 0 && i < n_chars; i++)
        if (chars[i] == '\n')
            x[0] = (float)i;
    if (st == KILN_OK && len == 0)
        len = 1;
    window w = {net, NULL, 0, 0, x, y, T, V, len};
    if (st == KILN_OK && cache)
        st = pipeline_create_decode(net->main.p, &w.dec);
    int training = net->training;
    net->training = 0; /* as sample.py's model.eval() */
    kiln_rng rng;
    rng_seed(&rng, seed);
    for (size_t k = 0; k < tokens && st == KILN_OK; k++) {
        const float *last = NULL;
        st = window_last(&w, &last);
        if (st != KILN_OK)
            break;
        size_t next;
        if (temperature == 0) {
            next = argmax(last, V);
        } else {
            distribution(net, last, V, temperature, p);
            next = sample(p, V, top_k, &rng);
        }
        char text[5] = "";
        if (next < n_chars)
            text[utf8_encode(chars[next], text)] = '\0';
        if (out)
            out(user, text);
        window_push(&w, next);
    }
    net->training = training;
    pipeline_free(w.dec);
    free(chars);
    free(ids);
    free(x);
    free(y);
    free(p);
    return st;
}
