/* NumPy datasets: .npy files of every dtype and format version written
 * byte by byte, .npz archives (stored and deflated) written with libzip,
 * every kind of malformed file refused with its name, CSV files without
 * labels, and training from an .npz reaching what the same data as CSV
 * reaches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "harness.h"
#include "data/data.h"


/* n values as dtype descr ("<f4", "|u1", ...), little-endian. */
static size_t npy_values(unsigned char *out, const char *descr, const double *v, size_t n)
{
    size_t size = (size_t)(descr[2] - '0');
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        if (descr[1] == 'f' && size == 4) {
            float f = (float)v[i];
            uint32_t bits;
            memcpy(&bits, &f, 4);
            u = bits;
        } else if (descr[1] == 'f') {
            memcpy(&u, &v[i], 8);
        } else {
            u = descr[1] == 'u' ? (uint64_t)v[i] : (uint64_t)(int64_t)v[i];
        }
        for (size_t b = 0; b < size; b++)
            out[i * size + b] = (unsigned char)(u >> (8 * b));
    }
    return n * size;
}

/* A .npy image as np.save writes one: magic, version, the header dict
 * padded with spaces to a multiple of 64 bytes and ended by '\n', data. */
static size_t npy_image(unsigned char *buf, int version, const char *dict, const void *data,
                        size_t bytes)
{
    size_t start = version == 1 ? 10 : 12, len = strlen(dict) + 1;
    len += (64 - (start + len) % 64) % 64;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)version;
    buf[7] = 0;
    for (size_t b = 0; b < start - 8; b++)
        buf[8 + b] = (unsigned char)(len >> (8 * b));
    memset(buf + start, ' ', len);
    memcpy(buf + start, dict, strlen(dict));
    buf[start + len - 1] = '\n';
    memcpy(buf + start + len, data, bytes);
    return start + len + bytes;
}

/* An array of values of dtype descr and shape (a Python tuple), as a .npy
 * image in buf (of at least 64 KiB); returns its length. */
static size_t npy_array_image(unsigned char *buf, int version, const char *descr,
                              const char *shape, const double *v, size_t n)
{
    unsigned char data[32768];
    char dict[256];
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
             descr, shape);
    return npy_image(buf, version, dict, data, npy_values(data, descr, v, n));
}

static const char *write_npy(const char *name, int version, const char *descr,
                             const char *shape, const double *v, size_t n)
{
    static unsigned char buf[65536];
    const char *path = test_tmp_path(name);
    test_write_file(path, buf, npy_array_image(buf, version, descr, shape, v, n), 0);
    return path;
}

/* An .npz of members name[i].npy with the given images; deflated or stored. */
static void write_npz(const char *path, int deflate, int n, const char *const *names,
                      unsigned char *const *images, const size_t *sizes)
{
    int err = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    ck_assert_ptr_nonnull(z);
    for (int i = 0; i < n; i++) {
        char member[64];
        snprintf(member, sizeof member, "%s.npy", names[i]);
        zip_source_t *s = zip_source_buffer(z, images[i], sizes[i], 0);
        ck_assert_ptr_nonnull(s);
        zip_int64_t at = zip_file_add(z, member, s, ZIP_FL_OVERWRITE);
        ck_assert_int_ge(at, 0);
        ck_assert_int_eq(zip_set_file_compression(z, (zip_uint64_t)at,
                                                  deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0), 0);
    }
    ck_assert_int_eq(zip_close(z), 0);
}

static double sample_value(size_t i)
{
    return (double)((i * 37) % 101) / 8.0 - 6.0; /* exact in float32 */
}

/* Every dtype in every format version: values, shape (n, ...) flattened,
 * uint8 scaled to [0, 1] as IDX pixels are. */
START_TEST(npy_every_dtype_and_version_loads)
{
    static const char *const types[] = {"<f4", "<f8", "|u1", "<i8", "<i4"};
    enum { N = 7, F = 3 * 5 };
    double v[N * F];
    for (int version = 1; version <= 3; version++)
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            int whole = types[t][1] != 'f', byte = types[t][1] == 'u';
            for (size_t i = 0; i < N * F; i++)
                v[i] = byte ? (double)(i * 7 % 256) : whole ? (double)i - 50 : sample_value(i);
            const char *x = write_npy("x.npy", version, types[t], "(7, 3, 5)", v, N * F);
            dataset d;
            check_ok(data_load_npy(x, NULL, &d));
            ck_assert_uint_eq(d.count, N);
            ck_assert_uint_eq(d.features, F);
            ck_assert_uint_eq(d.targets, 1);
            ck_assert_int_eq(d.unlabelled, 1);
            ck_assert_str_eq(d.name, x);
            for (size_t i = 0; i < N * F; i++) {
                double want = byte ? v[i] / 255.0 : v[i];
                ck_assert_msg(fabs(d.x[i] - want) <= 1e-7, "version %d %s value %zu: %g, not %g",
                              version, types[t], i, (double)d.x[i], want);
            }
            data_free(&d);
        }
}
END_TEST

/* Labels: whole numbers from 0 in any dtype are class indices, fractions
 * and (n, k) arrays are targets; counts must agree. */
START_TEST(npy_labels_are_classes_or_targets)
{
    double x[5 * 2], y[5 * 3];
    for (size_t i = 0; i < 10; i++)
        x[i] = sample_value(i);
    for (size_t i = 0; i < 15; i++)
        y[i] = (double)(i % 4);
    static const char *const types[] = {"<f4", "<f8", "|u1", "<i8", "<i4"};
    char xp[512];
    snprintf(xp, sizeof xp, "%s", write_npy("x.npy", 1, "<f4", "(5, 2)", x, 10));
    dataset d;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const char *yp = write_npy("y.npy", 1, types[t], "(5,)", y, 5);
        check_ok(data_load_npy(xp, yp, &d));
        ck_assert_uint_eq(d.classes, 4);
        ck_assert_uint_eq(d.targets, 1);
        ck_assert_int_eq(d.unlabelled, 0);
        ck_assert_float_eq(d.y[4], 0.0f);
        ck_assert_float_eq(d.y[3], 3.0f);
        data_free(&d);
    }
    y[2] = 0.5;
    const char *yp = write_npy("y.npy", 1, "<f8", "(5,)", y, 5);
    check_ok(data_load_npy(xp, yp, &d));
    ck_assert_uint_eq(d.classes, 0); /* 0.5 makes them regression targets */
    ck_assert_float_eq(d.y[2], 0.5f);
    data_free(&d);
    yp = write_npy("y.npy", 2, "<f4", "(5, 3)", y, 15);
    check_ok(data_load_npy(xp, yp, &d));
    ck_assert_uint_eq(d.targets, 3);
    ck_assert_uint_eq(d.classes, 0);
    ck_assert_float_eq(d.y[14], (float)y[14]);
    data_free(&d);
    yp = write_npy("y.npy", 1, "<i8", "(4,)", y, 4);
    ck_assert_int_eq(data_load_npy(xp, yp, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "x.npy has 5 samples but") &&
                      strstr(kiln_last_error(), "y.npy has 4 labels"), "%s", kiln_last_error());
    yp = write_npy("y.npy", 1, "<f4", "(5, 1, 3)", y, 15);
    ck_assert_int_eq(data_load_npy(xp, yp, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "y.npy: labels of shape (5, 1, 3)"), "%s",
                  kiln_last_error());
}
END_TEST

/* Every malformed file is refused with its name and what was expected. */
START_TEST(malformed_npy_files_are_refused)
{
    static const struct {
        int version;
        const char *dict;
        size_t bytes;        /* of data after the header */
        const char *message; /* after "bad.npy: " */
    } bad[] = {
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
         "fortran_order is True; kiln reads C-order arrays"},
        {1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", 48,
         "dtype '<c8' is not supported; expected float32"},
        {1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24,
         "dtype '>f4' is big-endian"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20,
         "needs 24 bytes of data, but 20 follow the header (the file is truncated)"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28,
         "needs 24 bytes of data, but 28 follow the header (the file is too long)"},
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (7,), }", 48,
         "shape (7,) of '<f8' needs 56 bytes"},
        {1, "{'descr': '<f4', 'fortran_order': False}", 0, "lacks 'shape'"},
        {1, "{'fortran_order': False, 'shape': (2,)}", 8, "lacks 'descr'"},
        {2, "{'descr': '<f4', 'shape': (2,)}", 8, "lacks 'fortran_order'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8,
         "has the key 'x'"},
        {1, "{'descr': '<f4', 'descr': '<f4', 'shape': (2,)}", 8, "has 'descr' twice"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}", 8,
         "shape that is not a tuple"},
        {1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", 8,
         "structured dtypes are not supported"},
        {1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8, "not True or False"},
        {1, "['descr', '<f4']", 8, "does not start with '{'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", 4, "a scalar (shape ())"},
        {3, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3)}", 0,
         "shape (0, 3) holds no values"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8,
         "goes on after its dict"},
    };
    static unsigned char buf[4096];
    unsigned char zeros[64] = {0};
    const char *path = test_tmp_path("bad.npy");
    dataset d;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_write_file(path, buf,
                        npy_image(buf, bad[i].version, bad[i].dict, zeros, bad[i].bytes), 0);
        ck_assert_int_eq(data_load_npy(path, NULL, &d), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), path) &&
                          strstr(kiln_last_error(), bad[i].message),
                      "case %zu: %s", i, kiln_last_error());
    }
    size_t n = npy_image(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                         zeros, 8);
    static const struct {
        size_t at, len;
        unsigned char byte;
        const char *message;
    } cut[] = {
        {0, 0, 'X', "not a .npy file (expected the magic bytes"},
        {6, 0, 4, ".npy format version 4.0; kiln reads versions 1.0, 2.0 and 3.0"},
        {8, 0, 0xff, "the file ends inside the .npy header"},
        {0, 9, 0, "not a .npy file"},
        {0, 40, 0, "the file ends inside the .npy header"},
        {20, 0, 0, "the .npy header holds a zero byte"},
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        unsigned char copy[4096];
        memcpy(copy, buf, n);
        if (!cut[i].len)
            copy[cut[i].at] = cut[i].byte;
        test_write_file(path, copy, cut[i].len ? cut[i].len : n, 0);
        ck_assert_int_eq(data_load_npy(path, NULL, &d), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), path) &&
                          strstr(kiln_last_error(), cut[i].message),
                      "cut %zu: %s", i, kiln_last_error());
    }
    double nan = NAN, big = 1e300;
    path = write_npy("nan.npy", 1, "<f8", "(1,)", &nan, 1);
    ck_assert_int_eq(data_load_npy(path, NULL, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "nan.npy: value 0 is nan"), "%s", kiln_last_error());
    path = write_npy("big.npy", 1, "<f8", "(1,)", &big, 1);
    ck_assert_int_eq(data_load_npy(path, NULL, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "big.npy: value 0 is 1e+300; expected a finite "
                                            "number within float32's range"),
                  "%s", kiln_last_error());
    ck_assert_int_eq(data_load_npy(test_tmp_path("none.npy"), NULL, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "none.npy: cannot open"), "%s", kiln_last_error());
}
END_TEST

enum { NZ = 11, FZ = 3 };

/* train.npz with x (NZ x FZ float32), y (int64 classes 0..2), and a test
 * split x_test, y_test of 2 samples; names[] as given. */
static void write_train_npz(const char *path, int deflate, const char *const names[4])
{
    static unsigned char img[4][65536];
    double x[NZ * FZ], y[NZ];
    for (size_t i = 0; i < NZ * FZ; i++)
        x[i] = sample_value(i);
    for (size_t i = 0; i < NZ; i++)
        y[i] = (double)(i % 3);
    size_t sizes[4] = {
        npy_array_image(img[0], 1, "<f4", "(11, 3)", x, NZ * FZ),
        npy_array_image(img[1], 1, "<i8", "(11,)", y, NZ),
        npy_array_image(img[2], 2, "<f8", "(2, 3)", x + 3, 2 * FZ),
        npy_array_image(img[3], 3, "|u1", "(2,)", y + 1, 2),
    };
    unsigned char *images[4] = {img[0], img[1], img[2], img[3]};
    write_npz(path, deflate, 4, names, images, sizes);
}

static const char *const keras_names[4] = {"x_train", "y_train", "x_test", "y_test"};

/* Stored (np.savez) and deflated (np.savez_compressed) archives give the
 * same arrays; the test split comes from x_test and y_test. */
START_TEST(npz_stored_and_deflated_load)
{
    static const char *const plain[4] = {"x", "y", "x_test", "y_test"};
    for (int deflate = 0; deflate < 2; deflate++)
        for (int keras = 0; keras < 2; keras++) {
            const char *path = test_tmp_path("train.npz");
            write_train_npz(path, deflate, keras ? keras_names : plain);
            dataset d, t;
            check_ok(data_load_npz(path, NULL, "train", &d));
            ck_assert_uint_eq(d.count, NZ);
            ck_assert_uint_eq(d.features, FZ);
            ck_assert_uint_eq(d.classes, 3);
            ck_assert_str_eq(d.name, path);
            for (size_t i = 0; i < NZ * FZ; i++)
                ck_assert_float_eq(d.x[i], (float)sample_value(i));
            for (size_t i = 0; i < NZ; i++)
                ck_assert_float_eq(d.y[i], (float)(i % 3));
            check_ok(data_load_npz(path, "", "test", &t));
            ck_assert_uint_eq(t.count, 2);
            ck_assert_float_eq(t.x[5], (float)sample_value(8));
            ck_assert_float_eq(t.y[1], 2.0f);
            ck_assert_ptr_nonnull(strstr(t.name, "(test)"));
            data_free(&d);
            data_free(&t);
        }
}
END_TEST

/* Keys name the arrays ("images,labels", with or without .npy); missing
 * ones list what the file has; a file without test arrays has an empty
 * test split; features alone are unlabelled. */
START_TEST(npz_keys_choose_arrays_and_missing_ones_are_listed)
{
    static const char *const named[4] = {"images", "labels", "timages", "tlabels"};
    const char *path = test_tmp_path("named.npz");
    write_train_npz(path, 1, named);
    dataset d;
    check_ok(data_load_npz(path, "images,labels", "train", &d));
    ck_assert_uint_eq(d.count, NZ);
    ck_assert_uint_eq(d.classes, 3);
    data_free(&d);
    check_ok(data_load_npz(path, " images.npy , labels.npy ", "train", &d));
    ck_assert_uint_eq(d.count, NZ);
    data_free(&d);
    check_ok(data_load_npz(path, "images,labels", "test", &d));
    ck_assert_uint_eq(d.count, 0); /* two keys: no test split */
    check_ok(data_load_npz(path, "images,labels,timages,tlabels", "test", &d));
    ck_assert_uint_eq(d.count, 2);
    data_free(&d);
    check_ok(data_load_npz(path, "timages", "train", &d));
    ck_assert_int_eq(d.unlabelled, 1);
    ck_assert_uint_eq(d.count, 2);
    data_free(&d);
    static const struct {
        const char *keys, *message;
    } bad[] = {
        {NULL, "no array 'x' or 'x_train'; the file has: images, labels, timages, tlabels"},
        {"images,y", "no array 'y'; the file has: images, labels, timages, tlabels"},
        {"pixels,labels", "no array 'pixels'; the file has: images"},
        {"images,labels,timages", "npz keys \"images,labels,timages\"; expected FEATURES"},
        {"images,,labels", "npz keys"},
        {"a,b,c,d,e", "npz keys"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_ne(data_load_npz(path, bad[i].keys, "train", &d), KILN_OK);
        ck_assert_msg(strstr(kiln_last_error(), path) &&
                          strstr(kiln_last_error(), bad[i].message),
                      "case %zu: %s", i, kiln_last_error());
    }
    /* a member that is not a .npy names the archive and the member */
    unsigned char junk[16] = "not an array";
    unsigned char *images[1] = {junk};
    size_t sizes[1] = {sizeof junk};
    static const char *const x_only[1] = {"x"};
    write_npz(path, 0, 1, x_only, images, sizes);
    ck_assert_int_eq(data_load_npz(path, NULL, "train", &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "named.npz:x.npy: not a .npy file"), "%s",
                  kiln_last_error());
}
END_TEST

/* Files that are not archives, and archives whose data is damaged. */
START_TEST(damaged_npz_files_are_refused)
{
    const char *path = test_tmp_path("damaged.npz");
    test_write_file(path, "PK\3\4 not really", 16, 0);
    dataset d;
    ck_assert_int_eq(data_load_npz(path, NULL, "train", &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "damaged.npz: cannot read as an .npz (zip) archive"),
                  "%s", kiln_last_error());
    ck_assert_int_eq(data_load_npz(test_tmp_path("absent.npz"), NULL, "train", &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "absent.npz: cannot read"), "%s",
                  kiln_last_error());
    for (int deflate = 0; deflate < 2; deflate++) {
        write_train_npz(path, deflate, keras_names);
        FILE *f = fopen(path, "r+b");
        ck_assert_ptr_nonnull(f);
        unsigned char b[8];
        ck_assert_int_eq(fseek(f, 160, SEEK_SET), 0); /* inside x_train's data */
        ck_assert_uint_eq(fread(b, 1, sizeof b, f), sizeof b);
        for (size_t i = 0; i < sizeof b; i++)
            b[i] ^= 0x5a;
        ck_assert_int_eq(fseek(f, 160, SEEK_SET), 0);
        ck_assert_uint_eq(fwrite(b, 1, sizeof b, f), sizeof b);
        fclose(f);
        ck_assert_int_eq(data_load_npz(path, NULL, "train", &d), KILN_ERR_IO);
        ck_assert_msg(strstr(kiln_last_error(), "damaged.npz:x_train.npy"), "%s",
                      kiln_last_error());
    }
}
END_TEST

static kiln_status csv(const char *text, const char *label, int header, dataset *d)
{
    test_write_file(test_tmp_path("u.csv"), text, strlen(text), 0);
    return data_load_csv(test_tmp_path("u.csv"), label, header, d);
}

/* A label of "" or "none": every column is a feature, and the data is
 * unlabelled; other labels behave as before. */
START_TEST(csv_without_labels)
{
    dataset d;
    check_ok(csv("a,b,c\n1,2,3\n4,5,6\n", "", 1, &d));
    ck_assert_uint_eq(d.count, 2);
    ck_assert_uint_eq(d.features, 3);
    ck_assert_uint_eq(d.classes, 0);
    ck_assert_int_eq(d.unlabelled, 1);
    ck_assert_float_eq(d.x[5], 6.0f);
    ck_assert_float_eq(d.y[1], 0.0f);
    data_free(&d);
    check_ok(csv("7\n8\n9\n", "none", 0, &d));
    ck_assert_uint_eq(d.count, 3);
    ck_assert_uint_eq(d.features, 1);
    ck_assert_float_eq(d.x[2], 9.0f);
    data_free(&d);
    check_ok(csv("a,label\n1,2\n", "label", 1, &d));
    ck_assert_int_eq(d.unlabelled, 0);
    ck_assert_uint_eq(d.features, 1);
    ck_assert_uint_eq(d.classes, 3);
    data_free(&d);
    ck_assert_int_eq(csv("a\n1\n", "label", 1, &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "u.csv:1: 1 columns; expected 2"), "%s",
                  kiln_last_error());
}
END_TEST

/* kiln_data_load by extension: a .npy features file with its labels file
 * as label, an .npz (its test split, or an error when it has none), and
 * kiln_data_load_npz with keys. */
START_TEST(data_load_recognises_numpy_files)
{
    double x[4 * 2] = {1, 2, 3, 4, 5, 6, 7, 8}, y[4] = {0, 1, 1, 0};
    char xp[512];
    snprintf(xp, sizeof xp, "%s", write_npy("px.npy", 1, "<f4", "(4, 2)", x, 8));
    const char *yp = write_npy("py.npy", 1, "|u1", "(4,)", y, 4);
    kiln_data *d;
    check_ok(kiln_data_load(xp, NULL, yp, &d));
    ck_assert_uint_eq(kiln_data_count(d), 4);
    ck_assert_uint_eq(kiln_data_features(d), 2);
    ck_assert_uint_eq(kiln_data_classes(d), 2);
    kiln_data_free(d);
    check_ok(kiln_data_load(xp, NULL, NULL, &d));
    ck_assert_uint_eq(kiln_data_classes(d), 0);
    kiln_data_free(d);
    const char *path = test_tmp_path("api.npz");
    write_train_npz(path, 1, keras_names);
    check_ok(kiln_data_load(path, "test", NULL, &d));
    ck_assert_uint_eq(kiln_data_count(d), 2);
    kiln_data_free(d);
    check_ok(kiln_data_load_npz(path, "x_test,y_test", NULL, &d));
    ck_assert_uint_eq(kiln_data_count(d), 2);
    kiln_data_free(d);
    check_ok(kiln_data_load_npz(path, "x_train,y_train,x_test,y_test", "test", &d));
    ck_assert_uint_eq(kiln_data_count(d), 2);
    kiln_data_free(d);
    ck_assert_int_eq(kiln_data_load_npz(path, "x_train,y_train", "test", &d), KILN_ERR_IO);
    ck_assert_msg(strstr(kiln_last_error(), "api.npz: no test split"), "%s", kiln_last_error());
    ck_assert_ptr_null(d);
}
END_TEST

static const char model_text[] = "[input]\nshape = 3\n[linear]\nout = 8\n[relu]\n[linear]\n"
                                 "out = 3\n[train]\noptimizer = sgd\nlr = 0.05\nbatch = 4\n"
                                 "epochs = 3\nseed = 3\n";

/* Trains a fresh network on options o; returns its weights (count in n). */
static float *fit(const kiln_train_options *o, kiln_train_report *r, size_t *n)
{
    kiln_model *m;
    check_ok(kiln_model_parse(model_text, "npy.ini", &m));
    kiln_net *net;
    check_ok(kiln_net_create(test_ctx(), m, 4, &net));
    check_ok(kiln_net_fit(net, o, r));
    *n = 3 * 8 + 8 + 8 * 3 + 3;
    float *w = test_alloc(*n * sizeof *w);
    check_ok(kiln_net_get(net, "0.weight", w, 24));
    check_ok(kiln_net_get(net, "0.bias", w + 24, 8));
    check_ok(kiln_net_get(net, "2.weight", w + 32, 24));
    check_ok(kiln_net_get(net, "2.bias", w + 56, 3));
    kiln_net_free(net);
    kiln_model_free(m);
    return w;
}

/* The same samples as an .npz and as a CSV train to the same weights and
 * validation loss; unlabelled data is refused by name. */
START_TEST(npz_trains_as_csv_does)
{
    const char *npz = test_tmp_path("same.npz");
    static const char *const names[4] = {"x", "y", "unused_x", "unused_y"};
    write_train_npz(npz, 0, names);
    char csvp[512];
    snprintf(csvp, sizeof csvp, "%s", test_tmp_path("same.csv"));
    FILE *f = fopen(csvp, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "a,b,c,label\n");
    for (size_t i = 0; i < NZ; i++)
        fprintf(f, "%.9g,%.9g,%.9g,%zu\n", sample_value(3 * i), sample_value(3 * i + 1),
                sample_value(3 * i + 2), i % 3);
    fclose(f);
    kiln_train_options o;
    kiln_train_options_init(&o);
    kiln_train_report a, b;
    size_t n;
    o.data = csvp;
    float *wc = fit(&o, &a, &n);
    o.data = npz;
    float *wn = fit(&o, &b, &n);
    ck_assert_int_eq(a.epochs_run, 3);
    ck_assert_msg(isfinite(a.best_val_loss) && a.best_val_loss == b.best_val_loss,
                  "validation loss %.9g from CSV, %.9g from .npz", a.best_val_loss,
                  b.best_val_loss);
    ck_assert_msg(memcmp(wc, wn, n * sizeof *wc) == 0, "the weights differ");
    ck_assert_msg(isnan(b.test_loss), "no test arrays, but a test loss %g", b.test_loss);
    free(wc);
    free(wn);
    /* with x_test and y_test, the .npz has a test split */
    o.npz_keys = "x,y,unused_x,unused_y";
    free(fit(&o, &b, &n));
    ck_assert_msg(isfinite(b.test_loss), "test loss %g", b.test_loss);
    static const char *const unlabelled[2][2] = {{"same.csv", "none"}, {"px.npy", NULL}};
    for (int i = 0; i < 2; i++) {
        if (i == 1) {
            double x[NZ * FZ];
            for (size_t k = 0; k < NZ * FZ; k++)
                x[k] = sample_value(k);
            write_npy("px.npy", 1, "<f4", "(11, 3)", x, NZ * FZ);
        }
        kiln_model *m;
        check_ok(kiln_model_parse(model_text, "npy.ini", &m));
        kiln_net *net;
        check_ok(kiln_net_create(test_ctx(), m, 4, &net));
        kiln_train_options_init(&o);
        char path[512];
        snprintf(path, sizeof path, "%s", test_tmp_path(unlabelled[i][0]));
        o.data = path;
        o.label = unlabelled[i][1];
        ck_assert_int_eq(kiln_net_fit(net, &o, &a), KILN_ERR_INVALID_ARGUMENT);
        ck_assert_msg(strstr(kiln_last_error(), unlabelled[i][0]) &&
                          strstr(kiln_last_error(), "has no labels; training needs a label "
                                                    "column"),
                      "%s", kiln_last_error());
        kiln_net_free(net);
        kiln_model_free(m);
    }
}
END_TEST

/* kiln_evaluate scores an .npz's test arrays when it has them, else all of
 * it, and all of a .npy file. */
START_TEST(evaluate_scores_test_arrays_else_every_sample)
{
    static const char *const no_test[4] = {"x", "y", "other_x", "other_y"};
    const char *with = test_tmp_path("eval.npz");
    write_train_npz(with, 1, keras_names);
    char without[512], out[512], final[600];
    snprintf(without, sizeof without, "%s", test_tmp_path("eval_all.npz"));
    write_train_npz(without, 0, no_test);
    snprintf(out, sizeof out, "%s", test_tmp_path("eval_run"));
    snprintf(final, sizeof final, "%s/final.safetensors", out);
    kiln_model *m;
    check_ok(kiln_model_parse(model_text, "npy.ini", &m));
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.data = with;
    o.out_dir = out;
    kiln_train_report r;
    check_ok(kiln_train(test_ctx(), m, &o, &r));
    ck_assert_msg(isfinite(r.test_loss), "test loss %g", r.test_loss);
    kiln_eval_report e;
    check_ok(kiln_evaluate(test_ctx(), m, final, &o, &e));
    ck_assert_uint_eq(e.samples, 2);
    kiln_free(e.confusion);
    o.data = without;
    check_ok(kiln_evaluate(test_ctx(), m, final, &o, &e));
    ck_assert_uint_eq(e.samples, NZ);
    kiln_free(e.confusion);
    o.npz_keys = "x,y,other_x,other_y";
    check_ok(kiln_evaluate(test_ctx(), m, final, &o, &e));
    ck_assert_uint_eq(e.samples, 2);
    kiln_free(e.confusion);
    kiln_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("npy");
    TCase *tc = tcase_create("npy");
    tcase_add_test(tc, npy_every_dtype_and_version_loads);
    tcase_add_test(tc, npy_labels_are_classes_or_targets);
    tcase_add_test(tc, malformed_npy_files_are_refused);
    tcase_add_test(tc, npz_stored_and_deflated_load);
    tcase_add_test(tc, npz_keys_choose_arrays_and_missing_ones_are_listed);
    tcase_add_test(tc, damaged_npz_files_are_refused);
    tcase_add_test(tc, csv_without_labels);
    tcase_add_test(tc, data_load_recognises_numpy_files);
    tcase_add_test(tc, npz_trains_as_csv_does);
    tcase_add_test(tc, evaluate_scores_test_arrays_else_every_sample);
    suite_add_tcase(s, tc);
    return test_run(s);
}
