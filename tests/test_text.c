/* Corpora for language models: UTF-8 decoding against every code point,
 * character vocabularies and nanoGPT's 90/10 split, nanoGPT's uint16
 * .bin files (mapped) and .bin shards read as one corpus, .npy token
 * arrays, random windows, and every bad input
 * (non-UTF-8 bytes with their offset, empty and short corpora, ids beyond
 * the vocabulary) refused with a message that says so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "data/data.h"
#include "data/text.h"


static void write_u16(const char *path, const unsigned *ids, size_t n)
{
    unsigned char *b = test_alloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        b[2 * i] = (unsigned char)(ids[i] & 0xFF), b[2 * i + 1] = (unsigned char)(ids[i] >> 8);
    test_write_file(path, b, 2 * n, 0);
    free(b);
}

static void expect_error(kiln_status st, kiln_status want, const char *needle)
{
    ck_assert_msg(st == want, "expected %s, got %s: %s", kiln_status_str(want),
                  kiln_status_str(st), kiln_last_error());
    ck_assert_msg(strstr(kiln_last_error(), needle), "\"%s\" not in: %s", needle,
                  kiln_last_error());
}

START_TEST(utf8_round_trips_every_code_point)
{
    /* every code point below U+1000, then a prime stride and each length's ends */
    for (uint32_t cp = 0; cp < 0x110000; cp += cp < 0x1000 ? 1 : 61) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        char buf[4];
        uint32_t back = 0xFFFFFFFF;
        size_t n = utf8_encode(cp, buf);
        ck_assert_uint_eq(n, cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4);
        ck_assert_uint_eq(utf8_decode((const unsigned char *)buf, n, &back), n);
        ck_assert_uint_eq(back, cp);
        ck_assert_uint_eq(utf8_decode((const unsigned char *)buf, n - 1, &back), 0);
    }
    static const uint32_t ends[] = {0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x10000,
                                    0x10FFFF};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        char buf[4];
        uint32_t back = 0;
        size_t n = utf8_encode(ends[i], buf);
        ck_assert_uint_eq(utf8_decode((const unsigned char *)buf, n, &back), n);
        ck_assert_uint_eq(back, ends[i]);
    }
    /* overlong, surrogate, beyond U+10FFFF, lone continuation, cut short, bad lead */
    static const char *const bad[] = {"\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xED\xA0\x80",
                                      "\xF4\x90\x80\x80", "\x80", "\xE2\x82", "\xF8\x88\x80\x80",
                                      "\xE2\x28\xA1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t cp;
        ck_assert_msg(utf8_decode((const unsigned char *)bad[i], strlen(bad[i]), &cp) == 0,
                      "sequence %zu decoded", i);
    }
}
END_TEST

START_TEST(text_becomes_sorted_characters_split_as_nanogpt)
{
    /* multi-byte characters of every length, in no order */
    const char *text = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x82\xAC\xF0\x9D\x84\x9E\nzebra \xC3\xA9t\xC3\xA9";
    const char *path = test_tmp_path("mixed.txt");
    test_write_file(path, text, strlen(text), 0);
    corpus c;
    check_ok(corpus_load(path, &c));
    /* the reference: code points of the text, sorted and made distinct */
    uint32_t cps[64], sorted[64];
    size_t n = 0, distinct = 0;
    for (size_t at = 0, step; at < strlen(text); at += step)
        step = utf8_decode((const unsigned char *)text + at, strlen(text) - at, &cps[n++]);
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < distinct && sorted[j] != cps[i])
            j++;
        if (j == distinct)
            sorted[distinct++] = cps[i];
    }
    for (size_t i = 1; i < distinct; i++)
        for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            uint32_t t = sorted[j];
            sorted[j] = sorted[j - 1], sorted[j - 1] = t;
        }
    ck_assert_uint_eq(c.vocab_size, distinct);
    uint32_t *chars;
    size_t nv;
    check_ok(vocab_chars(c.vocab, "vocab", &chars, &nv));
    ck_assert_uint_eq(nv, distinct);
    for (size_t i = 0; i < distinct; i++)
        ck_assert_uint_eq(chars[i], sorted[i]);
    /* nanoGPT: train = data[:int(n * 0.9)], val = the rest; ids map back to the text */
    ck_assert_uint_eq(c.train.count, (size_t)((double)n * 0.9));
    ck_assert_uint_eq(c.train.count + c.val.count, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t id = i < c.train.count ? c.train.ids[i] : c.val.ids[i - c.train.count];
        ck_assert_uint_eq(chars[id], cps[i]);
    }
    ck_assert_ptr_nonnull(strstr(c.train.name, "training split"));
    free(chars);
    corpus_free(&c);
}
END_TEST

START_TEST(repository_sonnets_load)
{
    corpus c;
    check_ok(corpus_load(KILN_SOURCE_DIR "/tests/data/sonnets.txt", &c));
    ck_assert_uint_eq(c.vocab_size, 56);
    ck_assert_uint_eq(c.train.count + c.val.count, 5604);
    ck_assert_uint_eq(c.val.count, 5604 - (size_t)(5604 * 0.9));
    ck_assert_str_eq(c.vocab, "\n !',-.:;?ABCDFHILMNOPRSTUVWXYabcdefghijklmnopqrstuvwxyz");
    check_ok(corpus_check(&c, 56, 64));
    expect_error(corpus_check(&c, 50, 64), KILN_ERR_INVALID_ARGUMENT,
                 "56 distinct characters, more than the model's vocabulary of 50");
    corpus_free(&c);
}
END_TEST

START_TEST(bad_text_is_refused_with_what_and_where)
{
    corpus c;
    const char *path = test_tmp_path("latin1.txt");
    test_write_file(path, "caf\xC3\xA9 and na\xEFve", 15, 0);
    expect_error(corpus_load(path, &c), KILN_ERR_IO, "byte offset 12 is not UTF-8 (bytes 0xEF 0x76");
    ck_assert_ptr_null(c.vocab); /* nothing is left behind */
    path = test_tmp_path("empty.txt");
    test_write_file(path, "", 0, 0);
    expect_error(corpus_load(path, &c), KILN_ERR_IO, "the corpus is empty");
    expect_error(corpus_load(test_tmp_path("missing.txt"), &c), KILN_ERR_IO,
                 "missing.txt\": no such file; a token model trains on a UTF-8 text");
    /* 100 characters: the validation split (10) is shorter than a window */
    char text[101];
    for (int i = 0; i < 100; i++)
        text[i] = (char)('a' + i % 7);
    path = test_tmp_path("short.txt");
    test_write_file(path, text, 100, 0);
    check_ok(corpus_load(path, &c));
    check_ok(corpus_check(&c, 7, 8));
    expect_error(corpus_check(&c, 7, 16), KILN_ERR_INVALID_ARGUMENT,
                 "(validation split): 10 tokens, shorter than one window of block + 1 = 17");
    corpus_free(&c);
}
END_TEST

START_TEST(nanogpt_bin_files_load)
{
    unsigned train[300], val[40];
    for (size_t i = 0; i < 300; i++)
        train[i] = (unsigned)(i * 7 % 65);
    for (size_t i = 0; i < 40; i++)
        val[i] = (unsigned)(i * 3 % 60);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/nano", test_tmpdir());
    mkdir(dir, 0755);
    write_u16(test_tmp_path("nano/train.bin"), train, 300);
    write_u16(test_tmp_path("nano/val.bin"), val, 40);
    corpus c;
    for (int by_file = 0; by_file < 2; by_file++) { /* the directory, or train.bin itself */
        check_ok(corpus_load(by_file ? test_tmp_path("nano/train.bin") : dir, &c));
        ck_assert_ptr_null(c.vocab);
        ck_assert_ptr_null(c.train.ids); /* mapped, not read */
        ck_assert_uint_eq(c.vocab_size, 0);
        ck_assert_uint_eq(c.train.count, 300);
        ck_assert_uint_eq(c.val.count, 40);
        uint32_t id;
        for (size_t i = 0; i < 300; i++) {
            check_ok(token_get(&c.train, i, 65, &id));
            ck_assert_uint_eq(id, train[i]);
        }
        for (size_t i = 0; i < 40; i++) {
            check_ok(token_get(&c.val, i, 65, &id));
            ck_assert_uint_eq(id, val[i]);
        }
        check_ok(corpus_check(&c, 65, 32));
        check_ok(corpus_check(&c, 64, 32)); /* mapped ids are checked as they are read */
        expect_error(token_get(&c.train, 37, 64, &id), KILN_ERR_INVALID_ARGUMENT,
                     "train.bin: the token id at byte offset 74 is 64, at or beyond the "
                     "model's vocabulary of 64");
        corpus_free(&c);
    }
    test_write_file(test_tmp_path("nano/val.bin"), "abc", 3, 0);
    expect_error(corpus_load(dir, &c), KILN_ERR_IO, "3 bytes is not a whole number of uint16");
    remove(test_tmp_path("nano/val.bin"));
    expect_error(corpus_load(dir, &c), KILN_ERR_IO, "no val.bin beside it");
}
END_TEST

/* A 1-d .npy of n ids as dtype descr. */
static void write_npy_ids(const char *path, const char *descr, const unsigned *ids, size_t n)
{
    size_t size = (size_t)(descr[2] - '0');
    char dict[128];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }",
                       descr, n);
    size_t header = 10 + (size_t)len + 1, pad = (64 - header % 64) % 64;
    size_t total = header + pad + n * size;
    unsigned char *b = test_alloc(total);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)((len + 1 + pad) & 0xFF), b[9] = (unsigned char)((len + 1 + pad) >> 8);
    memcpy(b + 10, dict, (size_t)len);
    memset(b + 10 + len, ' ', pad);
    b[header + pad - 1] = '\n';
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < size; k++)
            b[header + pad + i * size + k] = (unsigned char)((uint64_t)ids[i] >> (8 * k));
    test_write_file(path, b, total, 0);
    free(b);
}

START_TEST(npy_token_arrays_load_and_split)
{
    unsigned ids[200];
    for (size_t i = 0; i < 200; i++)
        ids[i] = (unsigned)(i * 11 % 300);
    static const char *const types[] = {"<u2", "<i4", "<i8"};
    for (int k = 0; k < 3; k++) {
        const char *path = test_tmp_path("ids.npy");
        write_npy_ids(path, types[k], ids, 200);
        corpus c;
        check_ok(corpus_load(path, &c));
        ck_assert_uint_eq(c.train.count, 180);
        ck_assert_uint_eq(c.val.count, 20);
        ck_assert_uint_eq(c.vocab_size, 300);
        for (size_t i = 0; i < 200; i++)
            ck_assert_uint_eq(i < 180 ? c.train.ids[i] : c.val.ids[i - 180], ids[i]);
        corpus_free(&c);
    }
    corpus c;
    write_npy_ids(test_tmp_path("floats.npy"), "<f4", ids, 200);
    expect_error(corpus_load(test_tmp_path("floats.npy"), &c), KILN_ERR_IO,
                 "token ids are a 1-d integer array");
}
END_TEST

START_TEST(windows_are_seeded_slices_with_shifted_targets)
{
    token_stream s = {.count = 50};
    s.ids = test_alloc(50 * sizeof *s.ids);
    for (uint32_t i = 0; i < 50; i++)
        s.ids[i] = 1000 + i;
    size_t block = 8, n = 400;
    float *x = test_alloc(n * block * sizeof *x), *y = test_alloc(n * block * sizeof *y);
    float *x2 = test_alloc(n * block * sizeof *x2), *y2 = test_alloc(n * block * sizeof *y2);
    kiln_rng a, b;
    rng_seed(&a, 7);
    rng_seed(&b, 7);
    check_ok(token_windows(&s, 2000, block, n, &a, x, y));
    check_ok(token_windows(&s, 2000, block, n, &b, x2, y2));
    ck_assert_int_eq(memcmp(x, x2, n * block * sizeof *x), 0);
    ck_assert_int_eq(memcmp(y, y2, n * block * sizeof *y), 0);
    int seen[50] = {0};
    for (size_t i = 0; i < n; i++) {
        size_t start = (size_t)x[i * block] - 1000;
        ck_assert_uint_lt(start, 50 - block); /* the last window ends at the last token */
        seen[start] = 1;
        for (size_t t = 0; t < block; t++) {
            ck_assert_float_eq(x[i * block + t], (float)(1000 + start + t));
            ck_assert_float_eq(y[i * block + t], (float)(1000 + start + t + 1));
        }
    }
    for (size_t k = 0; k < 50 - block; k++) /* every start is drawn */
        ck_assert_msg(seen[k], "start %zu never drawn in %zu windows", k, n);
    free(s.ids), free(x), free(y), free(x2), free(y2);
}
END_TEST

/* The windows of seed 11 from a stream, n of block tokens. */
static void windows_of(const token_stream *s, size_t block, size_t n, float *x, float *y)
{
    kiln_rng rng;
    rng_seed(&rng, 11);
    check_ok(token_windows(s, 700, block, n, &rng, x, y));
}

/* Mapped train.bin and .bin shards give the windows of the same ids in
 * memory (the reading before files were mapped), shards as one file. */
START_TEST(bin_shards_read_as_one_corpus)
{
    enum { N = 1000, BLOCK = 9, WINDOWS = 300 };
    static unsigned ids[N];
    for (size_t i = 0; i < N; i++)
        ids[i] = (unsigned)(i * 37 % 691);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/tok", test_tmpdir());
    mkdir(dir, 0755);
    static const size_t cuts[] = {0, 1, 8, 10, 507, 899, 900, N}; /* shards of 1, 7, 2, ... */
    char list[8192] = "";
    for (size_t k = 0; k + 1 < sizeof cuts / sizeof *cuts; k++) {
        char name[64];
        snprintf(name, sizeof name, "tok/part-%02zu.bin", k);
        write_u16(test_tmp_path(name), ids + cuts[k], cuts[k + 1] - cuts[k]);
    }
    snprintf(list, sizeof list, "%s/tok/part-0[0-2].bin,%s/tok/part-03.bin,%s/tok/part-0[4-6].bin",
             test_tmpdir(), test_tmpdir(), test_tmpdir());
    write_u16(test_tmp_path("tok/train.bin"), ids, 900);
    write_u16(test_tmp_path("tok/val.bin"), ids + 900, 100);
    token_stream mem = {.count = 900};
    mem.ids = test_alloc(N * sizeof *mem.ids);
    for (size_t i = 0; i < N; i++)
        mem.ids[i] = ids[i];
    size_t size = WINDOWS * BLOCK * sizeof(float);
    float *x = test_alloc(size), *y = test_alloc(size), *x2 = test_alloc(size),
          *y2 = test_alloc(size);
    windows_of(&mem, BLOCK, WINDOWS, x, y);
    corpus c;
    for (int shards = 0; shards < 2; shards++) {
        check_ok(shards ? corpus_load_shards(list, &c)
                        : corpus_load(test_tmp_path("tok/train.bin"), &c));
        ck_assert_uint_eq(c.file_count, shards ? 7 : 2);
        ck_assert_uint_eq(c.train.count, 900); /* shards: 90% of 1000 */
        ck_assert_uint_eq(c.val.count, 100);
        windows_of(&c.train, BLOCK, WINDOWS, x2, y2);
        ck_assert_int_eq(memcmp(x, x2, size), 0);
        ck_assert_int_eq(memcmp(y, y2, size), 0);
        for (size_t i = 0; i < 100; i++) {
            uint32_t id;
            check_ok(token_get(&c.val, i, 700, &id));
            ck_assert_uint_eq(id, ids[900 + i]);
        }
        corpus_free(&c);
    }
    free(mem.ids), free(x), free(y), free(x2), free(y2);
}
END_TEST

START_TEST(bad_bin_shards_are_refused_naming_the_file)
{
    char dir[600], list[2048];
    snprintf(dir, sizeof dir, "%s/bad", test_tmpdir());
    mkdir(dir, 0755);
    unsigned ids[40];
    for (size_t i = 0; i < 40; i++)
        ids[i] = i == 33 ? 500 : (unsigned)i;
    write_u16(test_tmp_path("bad/a.bin"), ids, 40);
    test_write_file(test_tmp_path("bad/odd.bin"), "abc", 3, 0);
    test_write_file(test_tmp_path("bad/empty.bin"), "", 0, 0);
    corpus c;
    snprintf(list, sizeof list, "%s/a.bin,%s/odd.bin", dir, dir);
    expect_error(corpus_load_shards(list, &c), KILN_ERR_IO,
                 "bad/odd.bin: 3 bytes is not a whole number of uint16 token ids");
    snprintf(list, sizeof list, "%s/a.bin,%s/empty.bin", dir, dir);
    expect_error(corpus_load_shards(list, &c), KILN_ERR_IO, "bad/empty.bin: the corpus is empty");
    snprintf(list, sizeof list, "%s/a.bin,%s/none-*.bin", dir, dir);
    expect_error(corpus_load_shards(list, &c), KILN_ERR_IO, "no file matches");
    snprintf(list, sizeof list, "%s/a.bin,%s/missing.bin", dir, dir);
    expect_error(corpus_load_shards(list, &c), KILN_ERR_IO, "bad/missing.bin: cannot open it");
    snprintf(list, sizeof list, "%s/a.bin,%s/a.npy", dir, dir);
    expect_error(corpus_load_shards(list, &c), KILN_ERR_INVALID_ARGUMENT,
                 "a.npy is not a .bin file or pattern");
    snprintf(list, sizeof list, "%s/a.bin,%s/a.bin", dir, dir); /* ids 33 and 73 are 500 */
    check_ok(corpus_load_shards(list, &c));
    ck_assert_uint_eq(c.train.count, 72);
    float x[8 * 20], y[8 * 20];
    kiln_rng rng;
    rng_seed(&rng, 1);
    expect_error(token_windows(&c.train, 100, 8, 20, &rng, x, y), KILN_ERR_INVALID_ARGUMENT,
                 "bad/a.bin: the token id at byte offset 66 is 500, at or beyond the model's "
                 "vocabulary of 100");
    corpus_free(&c);
}
END_TEST

START_TEST(prompts_encode_with_a_vocabulary)
{
    uint32_t *chars, *ids;
    size_t n, count;
    check_ok(vocab_chars("\n abc\xC3\xA9", "vocab", &chars, &n));
    ck_assert_uint_eq(n, 6);
    check_ok(vocab_encode(chars, n, "ab\xC3\xA9 c\n", 7, "prompt", &ids, &count));
    ck_assert_uint_eq(count, 6);
    const uint32_t want[] = {2, 3, 5, 1, 4, 0};
    for (size_t i = 0; i < 6; i++)
        ck_assert_uint_eq(ids[i], want[i]);
    free(ids);
    expect_error(vocab_encode(chars, n, "abz", 3, "prompt", &ids, &count),
                 KILN_ERR_INVALID_ARGUMENT, "prompt: the character 'z' (U+007A) at byte offset 2 is not in the vocabulary of 6");
    free(chars);
    expect_error(vocab_chars("ba", "ckpt", &chars, &n), KILN_ERR_IO,
                 "ckpt: the vocabulary is not distinct characters in order");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("text");
    TCase *tc = tcase_create("text");
    tcase_add_test(tc, utf8_round_trips_every_code_point);
    tcase_add_test(tc, text_becomes_sorted_characters_split_as_nanogpt);
    tcase_add_test(tc, repository_sonnets_load);
    tcase_add_test(tc, bad_text_is_refused_with_what_and_where);
    tcase_add_test(tc, nanogpt_bin_files_load);
    tcase_add_test(tc, npy_token_arrays_load_and_split);
    tcase_add_test(tc, windows_are_seeded_slices_with_shifted_targets);
    tcase_add_test(tc, bin_shards_read_as_one_corpus);
    tcase_add_test(tc, bad_bin_shards_are_refused_naming_the_file);
    tcase_add_test(tc, prompts_encode_with_a_vocabulary);
    suite_add_tcase(s, tc);
    return test_run(s);
}
