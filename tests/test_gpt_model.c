/* A GPT (nanoGPT's architecture) in kiln against PyTorch, as llm.c's
 * test_gpt2 checks its trainer: tests/data/gpt_tiny.safetensors, written
 * by tools/gpt_reference.py, holds a tiny GPT's weights, one batch, the
 * logits, the loss, every gradient, and the losses and weights of 5 AdamW
 * steps. Also: the model file's names, shapes and parameter count are
 * nanoGPT's, and bad token ids are refused with the sample named. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "compiler/pipeline.h"
#include "net/net.h"

#define REFERENCE KILN_SOURCE_DIR "/tests/data/gpt_tiny.safetensors"
#define MODEL KILN_SOURCE_DIR "/tests/data/gpt_tiny.ini"

/* A safetensors file of float32 tensors, read whole. */
typedef struct {
    unsigned char *bytes;
    size_t size, header;
    cJSON *json;
} tensors;

static tensors tensors_read(const char *path)
{
    tensors t = {0};
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    t.size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    t.bytes = test_alloc(t.size + 1);
    ck_assert(fread(t.bytes, 1, t.size, f) == t.size);
    fclose(f);
    for (int i = 7; i >= 0; i--)
        t.header = t.header << 8 | t.bytes[i];
    char save = (char)t.bytes[8 + t.header];
    t.bytes[8 + t.header] = '\0';
    t.json = cJSON_Parse((const char *)t.bytes + 8);
    t.bytes[8 + t.header] = (unsigned char)save;
    ck_assert_msg(t.json != NULL, "%s: bad header", path);
    return t;
}

static void tensors_free(tensors *t)
{
    cJSON_Delete(t->json);
    free(t->bytes);
}

/* The values of a named tensor (a copy to free) and how many. */
static float *tensor_get(const tensors *t, const char *name, size_t *count)
{
    cJSON *e = cJSON_GetObjectItemCaseSensitive(t->json, name);
    ck_assert_msg(e != NULL, "the reference has no tensor %s", name);
    cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    size_t begin = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
    size_t end = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    float *v = test_alloc(end - begin + sizeof(float));
    memcpy(v, t->bytes + 8 + t->header + begin, end - begin);
    *count = (end - begin) / sizeof(float);
    return v;
}

/* The largest |got - want| over the tensor, relative to max |want|. */
static double rel_error(const float *got, const float *want, size_t n)
{
    double scale = 1e-30, worst = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - want[i]));
    return worst / scale;
}

/* ||got - want|| / ||want|| (Euclidean norms over the tensor). */
static double norm_error(const float *got, const float *want, size_t n)
{
    double diff = 0, size = 1e-60;
    for (size_t i = 0; i < n; i++) {
        diff += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        size += (double)want[i] * want[i];
    }
    return sqrt(diff / size);
}

static kiln_net *tiny_net(size_t batch)
{
    kiln_model *m;
    check_ok(kiln_model_load(MODEL, &m));
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, batch, &net));
    return net;
}

/* The network and its model (the caller's, in the API). */
static void tiny_free(kiln_net *net)
{
    kiln_model *m = net->m;
    kiln_net_free(net);
    kiln_model_free(m);
}

/* Every weight of the reference under prefix ("w.", "after.") into or
 * against the network. */
static double weights_against(kiln_net *net, const tensors *ref, const char *prefix, int set)
{
    double worst = 0;
    for (size_t i = 0; i < kiln_net_param_count(net); i++) {
        kiln_param_info p;
        check_ok(kiln_net_param_info(net, i, &p));
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, p.name);
        size_t n;
        float *want = tensor_get(ref, name, &n);
        ck_assert_msg(n == p.numel, "%s: %zu values in kiln, %zu in the reference", p.name,
                      p.numel, n);
        if (set) {
            check_ok(kiln_net_set(net, p.name, want, n));
        } else {
            float *got = test_alloc(n * sizeof *got);
            check_ok(kiln_net_get(net, p.name, got, n));
            if (strstr(p.name, "c_attn.bias")) {
                /* The key bias adds q . b to every score of a row, which the
                 * softmax cancels: its gradient is 0 in exact arithmetic, and
                 * Adam turns each framework's rounding noise into full steps
                 * of its own. Compare the query and value biases. */
                memcpy(got + n / 3, got + 2 * n / 3, n / 3 * sizeof *got);
                memcpy(want + n / 3, want + 2 * n / 3, n / 3 * sizeof *want);
                n = 2 * n / 3;
            }
            /* Adam divides each gradient by its own running size, so a
             * float32 rounding of a small gradient moves its weight by a
             * fraction of lr: the tensor as a whole must agree to 1e-5,
             * its worst value to 1e-4 of the tensor's largest */
            double e = norm_error(got, want, n), m = rel_error(got, want, n);
            printf("  %-40s %.2e (worst value %.2e)\n", name, e, m);
            worst = fmax(worst, e);
            ck_assert_msg(e <= 1e-5 && m <= 1e-4, "%s: relative error %.3g (worst value %.3g) "
                          "after 5 steps", p.name, e, m);
            free(got);
        }
        free(want);
    }
    return worst;
}

/* The gradient of every parameter after a step, from the pipeline's
 * gradient tensors (a tied weight's is its owner's, where they add). */
static void gradients_against(kiln_net *net, const tensors *ref)
{
    const pipeline *p = net->main.p;
    for (size_t i = 0; i < p->count; i++) {
        const pipe_step *s = &p->steps[i];
        for (int k = 0; k < s->shapes.n_params; k++) {
            char name[160];
            snprintf(name, sizeof name, "g.%s.%s", p->model->nodes[s->node].name,
                     k ? "bias" : "weight");
            const kiln_tensor *g = s->tied_to >= 0 && k == 0 ? p->steps[s->tied_to].dparam[0]
                                                             : s->dparam[k];
            size_t n;
            float *want = tensor_get(ref, name, &n), *got = test_alloc(n * sizeof *got);
            check_ok(kiln_tensor_download(g, got, n));
            double e = rel_error(got, want, n);
            printf("  %-40s %.2e\n", name, e);
            ck_assert_msg(e <= 1e-4, "%s: relative error %.3g", name, e);
            free(want);
            free(got);
        }
    }
}

START_TEST(tiny_gpt_trains_as_pytorch)
{
    tensors ref = tensors_read(REFERENCE);
    kiln_net *net = tiny_net(4);
    weights_against(net, &ref, "w.", 1);
    size_t nx, ny, nz, nl;
    float *x = tensor_get(&ref, "x", &nx), *y = tensor_get(&ref, "y", &ny);
    float *logits = tensor_get(&ref, "logits", &nz), *loss = tensor_get(&ref, "loss", &nl);
    float *losses = tensor_get(&ref, "losses", &nl), *lrs = tensor_get(&ref, "lrs", &nl);
    ck_assert_uint_eq(nx, 4 * 16);
    ck_assert_uint_eq(kiln_net_output_size(net), 16 * 13);

    float *z = test_alloc(nz * sizeof *z);
    check_ok(kiln_net_forward(net, x, 4, z));
    double e = rel_error(z, logits, nz);
    printf("logits %.2e\n", e);
    ck_assert_msg(e <= 1e-5, "logits: relative error %.3g", e);
    check_ok(kiln_net_forward(net, x, 3, z)); /* a short batch: a pipeline sharing the weights */
    e = rel_error(z, logits, 3 * 16 * 13);
    ck_assert_msg(e <= 1e-5, "logits of a batch of 3: relative error %.3g", e);

    for (size_t step = 0; step < 5; step++) {
        float got;
        check_ok(kiln_net_set_lr(net, lrs[step]));
        check_ok(kiln_net_train_step(net, x, y, 4, &got));
        printf("step %zu: loss %.7f, PyTorch %.7f\n", step, (double)got, (double)losses[step]);
        ck_assert_msg(fabs(got - losses[step]) <= 1e-5 * fabs(losses[step]),
                      "step %zu: loss %.7f, PyTorch's %.7f", step, (double)got,
                      (double)losses[step]);
        if (step == 0) {
            ck_assert_msg(fabs(got - loss[0]) <= 1e-5 * loss[0], "first loss %g, PyTorch's %g",
                          (double)got, (double)loss[0]);
            gradients_against(net, &ref);
        }
    }
    printf("after 5 steps, worst tensor %.2e\n", weights_against(net, &ref, "after.", 0));
    free(x);
    free(y);
    free(z);
    free(logits);
    free(loss);
    free(losses);
    free(lrs);
    tiny_free(net);
    tensors_free(&ref);
}
END_TEST

/* Two networks from the same weights take the same steps to the bit: every
 * sum of the GPT runs in a fixed order. */
START_TEST(training_steps_repeat_to_the_bit)
{
    tensors ref = tensors_read(REFERENCE);
    size_t nx, ny, nw;
    float *x = tensor_get(&ref, "x", &nx), *y = tensor_get(&ref, "y", &ny);
    float loss[2][3], *w[2];
    for (int run = 0; run < 2; run++) {
        kiln_net *net = tiny_net(4);
        weights_against(net, &ref, "w.", 1);
        for (int step = 0; step < 3; step++)
            check_ok(kiln_net_train_step(net, x, y, 4, &loss[run][step]));
        nw = 4 * 16 * 13; /* the logits after three steps */
        w[run] = test_alloc(nw * sizeof(float));
        check_ok(kiln_net_forward(net, x, 4, w[run]));
        tiny_free(net);
    }
    ck_assert_msg(memcmp(loss[0], loss[1], sizeof loss[0]) == 0, "losses differ: %.9g %.9g",
                  (double)loss[0][2], (double)loss[1][2]);
    ck_assert_msg(memcmp(w[0], w[1], nw * sizeof(float)) == 0, "logits differ between runs");
    free(w[0]);
    free(w[1]);
    free(x);
    free(y);
    tensors_free(&ref);
}
END_TEST

/* The state_dict has nanoGPT's names and shapes, and kiln counts the
 * parameters as PyTorch's sum of p.numel() over model.parameters() does
 * (the tied lm_head.weight once). */
START_TEST(names_and_counts_are_nanogpts)
{
    tensors ref = tensors_read(REFERENCE);
    kiln_net *net = tiny_net(2);
    size_t listed = 0;
    for (cJSON *e = ref.json->child; e; e = e->next)
        listed += strncmp(e->string, "w.", 2) == 0;
    ck_assert_uint_eq(kiln_net_param_count(net), listed);
    weights_against(net, &ref, "w.", 1); /* every name and size is found */
    ck_assert_uint_eq(kiln_model_param_count(net->m), 26400);
    ck_assert_uint_eq(kiln_model_vocab(net->m), 13);
    ck_assert_uint_eq(kiln_model_block(net->m), 16);
    tiny_free(net);
    tensors_free(&ref);
}
END_TEST

/* The reference's initial weights as PyTorch's save_model writes a
 * nanoGPT state_dict: plain names, one of the tied pair left out. */
static void write_state_dict(const tensors *ref, const char *path, const char *left_out)
{
    cJSON *h = cJSON_CreateObject();
    size_t offset = 0, count = 0, n;
    float *body[64];
    size_t sizes[64];
    for (cJSON *e = ref->json->child; e; e = e->next) {
        if (strncmp(e->string, "w.", 2) != 0 || strcmp(e->string + 2, left_out) == 0)
            continue;
        body[count] = tensor_get(ref, e->string, &n);
        sizes[count] = n * sizeof(float);
        cJSON *t = cJSON_AddObjectToObject(h, e->string + 2);
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON_AddItemToObject(t, "shape", cJSON_Duplicate(cJSON_GetObjectItem(e, "shape"), 1));
        cJSON *o = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(offset + sizes[count])));
        offset += sizes[count++];
    }
    char *json = cJSON_PrintUnformatted(h);
    uint64_t len = strlen(json);
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    fwrite(&len, 8, 1, f); /* little-endian hosts */
    fwrite(json, 1, len, f);
    for (size_t i = 0; i < count; i++) {
        fwrite(body[i], 1, sizes[i], f);
        free(body[i]);
    }
    fclose(f);
    free(json);
    cJSON_Delete(h);
}

/* A nanoGPT state_dict loads, whichever name of the tied weight it keeps;
 * kiln's checkpoint holds both, as nanoGPT's state_dict() does. */
START_TEST(nanogpt_state_dicts_load)
{
    tensors ref = tensors_read(REFERENCE);
    const char *left_out[] = {"lm_head.weight", "transformer.wte.weight"};
    char path[512];
    snprintf(path, sizeof path, "%s/nanogpt.safetensors", test_tmpdir());
    size_t nx, nz;
    float *x = tensor_get(&ref, "x", &nx), *logits = tensor_get(&ref, "logits", &nz);
    float *z = test_alloc(nz * sizeof *z);
    for (int i = 0; i < 2; i++) {
        write_state_dict(&ref, path, left_out[i]);
        kiln_net *net = tiny_net(4);
        check_ok(kiln_net_load(net, path));
        check_ok(kiln_net_forward(net, x, 4, z));
        double e = rel_error(z, logits, nz);
        ck_assert_msg(e <= 1e-5, "without %s: logits off by %.3g", left_out[i], e);
        check_ok(kiln_net_save(net, path));
        tensors back = tensors_read(path);
        ck_assert(cJSON_GetObjectItem(back.json, "lm_head.weight") &&
                  cJSON_GetObjectItem(back.json, "transformer.wte.weight"));
        tensors_free(&back);
        tiny_free(net);
    }
    free(x);
    free(z);
    free(logits);
    tensors_free(&ref);
}
END_TEST

START_TEST(bad_token_ids_are_refused)
{
    kiln_net *net = tiny_net(2);
    float x[32] = {0}, y[32] = {0}, z[2 * 16 * 13], loss;
    x[20] = 13;
    ck_assert_int_eq(kiln_net_forward(net, x, 2, z), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "input token 4 of sample 1 is 13"), "%s",
                  kiln_last_error());
    x[20] = 0;
    y[3] = 2.5f;
    ck_assert_int_eq(kiln_net_train_step(net, x, y, 2, &loss), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "target token 3 of sample 0 is 2.5"), "%s",
                  kiln_last_error());
    float mean = 3, std = 2;
    ck_assert_int_eq(kiln_net_set_normalization(net, &mean, &std, 1), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "token ids"), "%s", kiln_last_error());
    tiny_free(net);

    kiln_model *m;
    const char *text = "[input]\ntokens = 13\nblock = 32\n[embedding]\nout = 8\n"
                       "[position]\npositions = 16\n";
    ck_assert_int_eq(kiln_model_parse(text, "long.ini", &m), KILN_ERR_MODEL);
    ck_assert_msg(strstr(kiln_last_error(), "long.ini:6 [position]") &&
                      strstr(kiln_last_error(), "32 tokens"),
                  "%s", kiln_last_error());
}
END_TEST

/* Attention keeps one value per query row, not the T x T scores: the
 * planned memory of a training step grows linearly with the block. */
START_TEST(memory_grows_linearly_with_the_block)
{
    size_t bytes[2];
    for (int i = 0; i < 2; i++) {
        char text[512];
        snprintf(text, sizeof text, "[input]\ntokens = 65\nblock = %d\n[embedding]\nout = 64\n"
                 "[position]\n[transformer_block]\ncount = 2\nheads = 4\n[layernorm]\n"
                 "[linear]\nout = 65\n", i ? 1024 : 512);
        kiln_model *m;
        check_ok(kiln_model_parse(text, "long.ini", &m));
        check_ok(graph_finish(m));
        pipeline *p;
        check_ok(pipeline_lower(m, 4, (pipe_options){.fuse = 1, .plan = 1}, &p));
        bytes[i] = p->arena_bytes;
        pipeline_free(p);
        kiln_model_free(m);
    }
    double ratio = (double)bytes[1] / (double)bytes[0];
    printf("planned memory at block 1024 / block 512: %.3f\n", ratio);
    ck_assert_msg(ratio <= 2.1, "block 1024 plans %.3f x the memory of block 512", ratio);
}
END_TEST

/* The KV cache: one position at a time through the decoding pipeline gives
 * the logits of the whole window at every position. */
START_TEST(decoding_gives_the_window_logits)
{
    kiln_net *net = tiny_net(1);
    size_t T = kiln_model_block(net->m), V = kiln_model_vocab(net->m);
    float *x = test_alloc(T * sizeof *x), *full = test_alloc(T * V * sizeof *full);
    float *one = test_alloc(V * sizeof *one);
    for (size_t t = 0; t < T; t++)
        x[t] = (float)(rng_next(test_rng()) % V);
    check_ok(kiln_net_set_training(net, 0));
    check_ok(kiln_net_forward(net, x, 1, full));
    pipeline *dec;
    check_ok(pipeline_create_decode(net->main.p, &dec));
    double worst = 0;
    for (size_t t = 0; t < T; t++) {
        dec->at = t;
        check_ok(kiln_tensor_upload(dec->input, &x[t], 1));
        check_ok(pipeline_forward(dec, 0));
        check_ok(kiln_tensor_download(pipeline_output(dec), one, V));
        worst = fmax(worst, rel_error(one, full + t * V, V));
    }
    printf("decoding against the window: worst relative error %.2e over %zu positions\n",
           worst, T);
    ck_assert_msg(worst < 1e-5, "decoded logits differ from the window's by %g", worst);
    /* past the block, training and backward are refused */
    dec->at = T;
    ck_assert_int_eq(pipeline_forward(dec, 0), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(kiln_last_error(), "past the table"), "%s", kiln_last_error());
    dec->at = 0;
    ck_assert_int_eq(pipeline_forward(dec, 1), KILN_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(pipeline_backward(dec, 0), KILN_ERR_INVALID_ARGUMENT);
    pipeline_free(dec);
    free(x);
    free(full);
    free(one);
    tiny_free(net);
}
END_TEST

static void append(void *user, const char *text)
{
    strcat(user, text);
}

/* Generation with the cache writes the text the whole window writes,
 * greedy and sampled, within the block and after the window slides. */
START_TEST(generation_with_the_cache_writes_the_same_text)
{
    kiln_net *net = tiny_net(1);
    check_ok(kiln_net_set_vocab(net, "\nabcdefghijkl"));
    static const struct {
        const char *prompt;
        double temperature;
        size_t top_k;
    } runs[] = {{"", 0, 0}, {"abcab", 0, 0}, {"lkj", 1.0, 0}, {"abc", 0.8, 5}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char with[64] = "", without[64] = "";
        check_ok(net_generate(net, runs[i].prompt, 40, runs[i].temperature, runs[i].top_k, 7,
                              1, append, with));
        check_ok(net_generate(net, runs[i].prompt, 40, runs[i].temperature, runs[i].top_k, 7,
                              0, append, without));
        ck_assert_uint_eq(strlen(with), 40);
        ck_assert_msg(strcmp(with, without) == 0, "run %zu: with the cache \"%s\", without "
                      "\"%s\"", i, with, without);
    }
    tiny_free(net);
}
END_TEST

/* Mistakes in a GPT's model file name the file, the line and the layer. */
START_TEST(model_file_mistakes_are_named)
{
    static const struct {
        const char *text, *expect;
    } cases[] = {
        {"[input]\ntokens = 13\n[embedding]\nout = 8\n", "needs both tokens"},
        {"[input]\nshape = 4\ntokens = 13\nblock = 4\n", "shape cannot be given"},
        {"[input]\nshape = 4\n[embedding]\nout = 8\n", "t.ini:3 [embedding]: the vocabulary"},
        {"[input]\ntokens = 13\nblock = 4\n[embedding]\nout = 8\n[transformer_block]\n",
         "t.ini:6 [transformer_block]: the key heads is required"},
        {"[input]\ntokens = 13\nblock = 4\n[embedding]\nout = 8\n[transformer_block]\n"
         "heads = 3\n",
         "do not split into q, k and v of 3 heads"},
        {"[input]\ntokens = 13\nblock = 4\n[embedding]\nout = 8\n[transformer_block]\n"
         "heads = 2\ncount = 0\n",
         "count = 0: expected a whole number from 1 to 1000"},
        {"[input]\ntokens = 13\nblock = 4\n[embedding]\nout = 8\n[transformer_block]\n"
         "heads = 2\ndropout = 1\n",
         "t.ini:8 [transformer_block]: dropout = 1: expected a probability"},
        {"[input]\ntokens = 13\nblock = 4\n[embedding]\nname = e\nout = 8\n[linear]\n"
         "out = 12\ntie = e\n",
         "tie = e: its weight is 13x8; this layer's is 12x8"},
        {"[input]\ntokens = 13\nblock = 4\n[embedding]\nout = 8\n[linear]\nout = 13\n"
         "tie = nothing\n",
         "tie = nothing names no layer above"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_model *m = NULL;
        ck_assert_int_eq(kiln_model_parse(cases[i].text, "t.ini", &m), KILN_ERR_MODEL);
        ck_assert_msg(strstr(kiln_last_error(), cases[i].expect), "case %zu: %s", i,
                      kiln_last_error());
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gpt_model");
    TCase *tc = tcase_create("gpt_model");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, tiny_gpt_trains_as_pytorch);
    tcase_add_test(tc, names_and_counts_are_nanogpts);
    tcase_add_test(tc, training_steps_repeat_to_the_bit);
    tcase_add_test(tc, nanogpt_state_dicts_load);
    tcase_add_test(tc, bad_token_ids_are_refused);
    tcase_add_test(tc, model_file_mistakes_are_named);
    tcase_add_test(tc, memory_grows_linearly_with_the_block);
    tcase_add_test(tc, decoding_gives_the_window_logits);
    tcase_add_test(tc, generation_with_the_cache_writes_the_same_text);
    suite_add_tcase(s, tc);
    return test_run(s);
}
