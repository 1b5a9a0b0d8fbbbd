/* safetensors checkpoints: the round trip and every kind of bad file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/checkpoint.h"
#include "harness.h"
#include "graph/graph.h"

/* ---- checkpoints ---- */

static pipeline *small_pipeline(kiln_model **m, const char *text)
{
    check_ok(kiln_model_parse(text, "ckpt.ini", m));
    pipeline *p;
    check_ok(pipeline_create(test_ctx(), *m, 2, (pipe_options){.fuse = 1, .plan = 1}, 9, &p));
    return p;
}

static const char net_a[] = "[input]\nshape = 4\n[linear]\nout = 3\n[batchnorm]\n[relu]\n"
                            "[linear]\nout = 2\nname = head\n";

static float *download_flat(pipeline *p)
{
    float *v = test_alloc(p->params->numel * sizeof *v);
    check_ok(kiln_tensor_download(p->params, v, p->params->numel));
    return v;
}

START_TEST(checkpoint_round_trip)
{
    kiln_model *m;
    pipeline *a = small_pipeline(&m, net_a), *b;
    check_ok(pipeline_create(test_ctx(), m, 2, (pipe_options){.fuse = 1}, 77, &b));
    float stats[3] = {0.5f, -1.0f, 2.0f};
    check_ok(kiln_tensor_upload(a->steps[1].buffer[0], stats, 3));
    checkpoint_meta meta = {0};
    checkpoint_meta_set(&meta, "epoch", "7");
    char path[512];
    snprintf(path, sizeof path, "%s", test_tmp_path("model.safetensors"));
    check_ok(checkpoint_save(a, path, &meta, 12));
    checkpoint_meta back = {0};
    check_ok(checkpoint_load(b, path, &back));
    ck_assert_str_eq(checkpoint_meta_get(&back, "epoch"), "7");
    float *x = download_flat(a), *y = download_flat(b);
    ck_assert(memcmp(x, y, a->params->numel * sizeof *x) == 0);
    float got[3];
    check_ok(kiln_tensor_download(b->steps[1].buffer[0], got, 3));
    ck_assert(memcmp(got, stats, sizeof got) == 0);
    /* names as PyTorch's state_dict: index, or name = */
    FILE *f = fopen(path, "rb");
    char header[2048] = {0};
    ck_assert_uint_gt(fread(header, 1, sizeof header - 1, f), 8);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(header + 8, "\"0.weight\""));
    ck_assert_ptr_nonnull(strstr(header + 8, "\"1.running_var\""));
    ck_assert_ptr_nonnull(strstr(header + 8, "\"1.num_batches_tracked\""));
    ck_assert_ptr_nonnull(strstr(header + 8, "\"head.bias\""));
    free(x);
    free(y);
    pipeline_free(a);
    pipeline_free(b);
    kiln_model_free(m);
}
END_TEST

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *d = test_alloc(*n);
    ck_assert_uint_eq(fread(d, 1, *n, f), *n);
    fclose(f);
    return d;
}

/* Two tensors whose bytes overlap are refused, whatever their names. */
START_TEST(overlapping_tensors_are_refused)
{
    static const char header[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    unsigned char file[8 + sizeof header + 16] = {0};
    size_t hlen = sizeof header - 1;
    file[0] = (unsigned char)hlen;
    memcpy(file + 8, header, hlen);
    checkpoint_entry e[2] = {{.name = "a", .shape = shape_make(1, 2, 0, 0, 0), .bytes = 8},
                             {.name = "b", .shape = shape_make(1, 2, 0, 0, 0), .bytes = 8}};
    size_t begins[2];
    ck_assert_int_eq(checkpoint_parse("o.safetensors", file, 8 + hlen + 16, e, 2, begins, NULL),
                     KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "overlap"), "%s", kiln_last_error());
}
END_TEST

START_TEST(bad_checkpoints_are_refused_with_reasons)
{
    kiln_model *m, *other;
    pipeline *p = small_pipeline(&m, net_a);
    pipeline *q = small_pipeline(&other, "[input]\nshape = 4\n[linear]\nout = 5\n[batchnorm]\n"
                                         "[relu]\n[linear]\nout = 2\nname = head\n");
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s", test_tmp_path("good.safetensors"));
    snprintf(bad, sizeof bad, "%s", test_tmp_path("bad.safetensors"));
    checkpoint_meta meta = {0};
    check_ok(checkpoint_save(p, good, &meta, 0));
    size_t n;
    unsigned char *d = read_all(good, &n);
    /* another model: the first tensor whose shape differs is named */
    ck_assert_int_eq(checkpoint_load(q, good, NULL), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "tensor 0.weight has shape [3,4]; the model expects "
                                            "5x4"), "%s", kiln_last_error());
    /* truncated in the data, in the header, before the header */
    size_t cuts[] = {n - 5, 40, 5};
    for (int i = 0; i < 3; i++) {
        test_write_file(bad, d, cuts[i], 0);
        ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
    }
    /* header length larger than the file */
    unsigned char *e = test_alloc(n);
    memcpy(e, d, n);
    e[6] = 0x7f;
    test_write_file(bad, e, n, 0);
    ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "runs past the end"), "%s", kiln_last_error());
    /* invalid JSON */
    memcpy(e, d, n);
    e[8] = '[';
    test_write_file(bad, e, n, 0);
    ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "not a JSON object"), "%s", kiln_last_error());
    /* unknown dtype, out-of-range offsets */
    static const struct {
        const char *from, *to, *message;
    } edits[] = {
        {"\"F32\"", "\"F64\"", "has dtype F64; expected F32"},
        {"\"data_offsets\":[0,", "\"data_offsets\":[9,", "data_offsets"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(e, d, n);
        char *at = strstr((char *)e + 8, edits[i].from);
        ck_assert_ptr_nonnull(at);
        ck_assert_uint_eq(strlen(edits[i].from), strlen(edits[i].to));
        memcpy(at, edits[i].to, strlen(edits[i].to));
        test_write_file(bad, e, n, 0);
        ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), edits[i].message), "edit %zu: %s", i,
                      kiln_last_error());
    }
    /* a name the model does not have */
    memcpy(e, d, n);
    char *at = strstr((char *)e + 8, "\"head.bias\"");
    memcpy(at, "\"head.bian\"", 11);
    test_write_file(bad, e, n, 0);
    ck_assert_int_eq(checkpoint_load(p, bad, NULL), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "tensor head.bias is missing"), "%s",
                  kiln_last_error());
    free(d);
    free(e);
    pipeline_free(p);
    pipeline_free(q);
    kiln_model_free(m);
    kiln_model_free(other);
}
END_TEST


int main(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_test(tc, checkpoint_round_trip);
    tcase_add_test(tc, overlapping_tensors_are_refused);
    tcase_add_test(tc, bad_checkpoints_are_refused_with_reasons);
    suite_add_tcase(s, tc);
    return test_run(s);
}
