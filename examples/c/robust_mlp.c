/* The chapter's RobustMLP trained on data held in arrays: fit with a
 * validation split, predictions into an array, weights saved and loaded.
 * Build: cc robust_mlp.c $(pkg-config --cflags --libs kiln) -lm
 * Run from the source tree: ./a.out examples/robust_mlp.ini */
#include <kiln.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define N 600
#define FEATURES 10

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, kiln_last_error());
    return 1;
}

/* Three classes by the sign pattern of two weighted sums of the features. */
static void make_data(float *x, float *y, size_t n, unsigned seed)
{
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        double a = 0, b = 0;
        for (int j = 0; j < FEATURES; j++) {
            x[i * FEATURES + j] = (float)rand() / RAND_MAX * 2 - 1;
            a += x[i * FEATURES + j] * (j % 2 ? 1 : -0.5);
            b += x[i * FEATURES + j] * (j < 5 ? 1 : -1);
        }
        y[i] = a > 0 ? 0.0f : b > 0 ? 1.0f : 2.0f;
    }
}

int main(int argc, char **argv)
{
    static float x[N * FEATURES], y[N], xt[N * FEATURES], yt[N], p[N * 3];
    make_data(x, y, N, 1);
    make_data(xt, yt, N, 2);
    kiln_ctx *ctx;
    kiln_model *m;
    kiln_net *net;
    kiln_data *train, *test;
    if (kiln_ctx_create(NULL, &ctx) || kiln_model_load(argc > 1 ? argv[1] : "robust_mlp.ini", &m))
        return fail("setup");
    kiln_model_set_train(m, "lr", "0.01");
    if (kiln_net_create(ctx, m, 32, &net) || kiln_data_from_arrays(x, y, N, FEATURES, 1, &train) ||
        kiln_data_from_arrays(xt, yt, N, FEATURES, 1, &test))
        return fail("network");
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.train_data = train;
    o.test_data = test;
    o.epochs = 30;
    kiln_train_report r;
    if (kiln_net_fit(net, &o, &r))
        return fail("fit");
    printf("test accuracy %.1f%% after %d epochs\n", 100 * r.test_accuracy, r.epochs_run);
    if (kiln_net_forward(net, xt, N, p) || kiln_net_save(net, "robust_mlp.safetensors"))
        return fail("predict");
    int right = 0;
    for (int i = 0; i < N; i++) {
        int best = p[i * 3 + 1] > p[i * 3] ? 1 : 0;
        best = p[i * 3 + 2] > p[i * 3 + best] ? 2 : best;
        right += best == (int)yt[i];
    }
    kiln_net *again; /* a fresh network with the saved weights predicts the same */
    float q[3];
    if (kiln_net_create(ctx, m, 1, &again) || kiln_net_load(again, "robust_mlp.safetensors") ||
        kiln_net_forward(again, xt, 1, q))
        return fail("reload");
    printf("predicted %d of %d right; reloaded weights agree: %s\n", right, N,
           fabsf(q[0] - p[0]) < 1e-5f ? "yes" : "no");
    kiln_net_free(again);
    kiln_net_free(net);
    kiln_data_free(train);
    kiln_data_free(test);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return r.test_accuracy > 0.8 && fabsf(q[0] - p[0]) < 1e-5f ? 0 : 1;
}
