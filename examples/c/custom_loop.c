/* A training loop of one's own: kiln_net_train_step on batches of a
 * regression problem (y = sum of the inputs' squares), with the loss of
 * every step, a short last batch, and the learning rate lowered by hand.
 * Build: cc custom_loop.c $(pkg-config --cflags --libs kiln) */
#include <kiln.h>
#include <stdio.h>
#include <stdlib.h>

#define N 500
#define BATCH 64

int main(void)
{
    static float x[N * 4], y[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        y[i] = 0;
        for (int j = 0; j < 4; j++) {
            x[i * 4 + j] = (float)rand() / RAND_MAX * 2 - 1;
            y[i] += x[i * 4 + j] * x[i * 4 + j];
        }
    }
    const char *text = "[input]\nshape = 4\n[linear]\nout = 32\n[relu]\n[linear]\nout = 1\n"
                       "[train]\nloss = mse\noptimizer = adam\nlr = 0.01\n";
    kiln_ctx *ctx;
    kiln_model *m;
    kiln_net *net;
    if (kiln_ctx_create(NULL, &ctx) || kiln_model_parse(text, "regression", &m) ||
        kiln_net_create(ctx, m, BATCH, &net)) {
        fprintf(stderr, "setup: %s\n", kiln_last_error());
        return 1;
    }
    float first = 0, loss = 0;
    for (int epoch = 0; epoch < 40; epoch++) {
        if (epoch == 30)
            kiln_net_set_lr(net, 0.001);
        for (int at = 0; at < N; at += BATCH) { /* 7 full batches and one of 52 */
            int n = N - at < BATCH ? N - at : BATCH;
            if (kiln_net_train_step(net, x + at * 4, y + at, (size_t)n, &loss)) {
                fprintf(stderr, "step: %s\n", kiln_last_error());
                return 1;
            }
            if (epoch == 0 && at == 0)
                first = loss;
        }
        if (epoch % 10 == 0 || epoch == 39)
            printf("epoch %2d  step %3llu  loss %.5f\n", epoch + 1,
                   (unsigned long long)kiln_net_steps(net), loss);
    }
    kiln_net_free(net);
    kiln_model_free(m);
    kiln_ctx_free(ctx);
    return loss < first / 4 ? 0 : 1;
}
