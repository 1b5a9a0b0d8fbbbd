/* Corpora for language models (see text.h): UTF-8 texts as characters,
 * nanoGPT's uint16 .bin files and .npy arrays of token ids. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "data/text.h"

#define TEXT_MAX_BYTES (4ull << 30) /* a corpus kiln reads into memory at once */
#define CODE_POINTS 0x110000u
#define TRAIN_SHARE 0.9             /* nanoGPT: data[:int(n * 0.9)] trains */

/* ---- UTF-8 --------------------------------------------------------------------- */

size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0)
        len = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        len = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3Fu);
    }
    if (v < min || v >= CODE_POINTS || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

size_t utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80)
        return o[0] = (unsigned char)cp, 1;
    if (cp < 0x800)
        return o[0] = (unsigned char)(0xC0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 0x3F)),
               2;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A character for messages: itself when printable, with its code point. */
static const char *char_name(uint32_t cp, char *buf, size_t size)
{
    char c[5] = "";
    if (cp >= 0x20 && cp != 0x7F)
        c[utf8_encode(cp, c)] = '\0';
    if (c[0])
        snprintf(buf, size, "'%s' (U+%04X)", c, (unsigned)cp);
    else
        snprintf(buf, size, "U+%04X", (unsigned)cp);
    return buf;
}

/* The error for a byte that starts no valid UTF-8 character. */
static kiln_status not_utf8(const char *name, const unsigned char *s, size_t n, size_t at)
{
    char bytes[32] = "";
    for (size_t i = 0, used = 0; i < 4 && at + i < n; i++)
        used += (size_t)snprintf(bytes + used, sizeof bytes - used, "%s0x%02X", i ? " " : "",
                                 s[at + i]);
    return error_set(KILN_ERR_IO, "%s: byte offset %zu is not UTF-8 (bytes %s); kiln reads "
                                  "text as UTF-8 (convert it, e.g. iconv -f latin1 -t utf-8)",
                     name, at, bytes);
}

static int by_code_point(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

kiln_status vocab_chars(const char *vocab, const char *what, uint32_t **chars, size_t *n)
{
    size_t len = strlen(vocab), count = 0;
    uint32_t *c = malloc((len ? len : 1) * sizeof *c);
    if (!c)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    for (size_t at = 0, step; at < len; at += step) {
        uint32_t cp = 0;
        step = utf8_decode((const unsigned char *)vocab + at, len - at, &cp);
        if (step == 0 || (count && cp <= c[count - 1])) {
            free(c);
            return error_set(KILN_ERR_IO, "%s: the vocabulary is not distinct characters in "
                                          "order (at byte %zu)", what, at);
        }
        c[count++] = cp;
    }
    if (count == 0) {
        free(c);
        return error_set(KILN_ERR_IO, "%s: the vocabulary is empty", what);
    }
    *chars = c;
    *n = count;
    return KILN_OK;
}

kiln_status vocab_encode(const uint32_t *chars, size_t n, const char *text, size_t len,
                         const char *what, uint32_t **ids, size_t *count)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t *out = malloc((len ? len : 1) * sizeof *out);
    size_t k = 0;
    if (!out)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "text: out of memory for %zu bytes", len);
    for (size_t at = 0, step; at < len; at += step) {
        uint32_t cp = 0;
        step = utf8_decode(s + at, len - at, &cp);
        const uint32_t *hit = step ? bsearch(&cp, chars, n, sizeof *chars, by_code_point) : NULL;
        if (!hit) {
            char name[48];
            free(out);
            if (!step)
                return not_utf8(what, s, len, at);
            return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: the character %s at byte offset "
                                                        "%zu is not in the vocabulary of %zu "
                                                        "characters", what,
                             char_name(cp, name, sizeof name), at, n);
        }
        out[k++] = (uint32_t)(hit - chars);
    }
    *ids = out;
    *count = k;
    return KILN_OK;
}

/* ---- files ----------------------------------------------------------------------- */


static kiln_status stream_take(token_stream *s, const char *source, const char *split,
                               const uint32_t *ids, size_t count)
{
    snprintf(s->name, sizeof s->name, "%s (%s split)", source, split);
    s->count = count;
    s->ids = malloc((count ? count : 1) * sizeof *s->ids);
    if (!s->ids)
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", source);
    memcpy(s->ids, ids, count * sizeof *ids);
    return KILN_OK;
}

/* The first 90% trains, the rest validates. */
static kiln_status split_ids(const char *source, const uint32_t *ids, size_t count, corpus *c)
{
    size_t cut = (size_t)((double)count * TRAIN_SHARE);
    kiln_status st = stream_take(&c->train, source, "training", ids, cut);
    return st == KILN_OK ? stream_take(&c->val, source, "validation", ids + cut, count - cut)
                         : st;
}

/* A UTF-8 text: its sorted distinct characters, then every character's id. */
static kiln_status load_text(const char *path, corpus *c)
{
    unsigned char *s = NULL, *seen = NULL;
    size_t n = 0, distinct = 0, count = 0;
    uint32_t *ids = NULL, *chars = NULL;
    kiln_status st = data_read_file(path, TEXT_MAX_BYTES, "corpora", &s, &n);
    if (st == KILN_OK && n == 0)
        st = error_set(KILN_ERR_IO, "%s: the corpus is empty", path);
    if (st == KILN_OK && !(seen = calloc(CODE_POINTS / 8, 1)))
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    for (size_t at = 0, step; st == KILN_OK && at < n; at += step) {
        uint32_t cp = 0;
        if ((step = utf8_decode(s + at, n - at, &cp)) == 0)
            st = not_utf8(path, s, n, at);
        else if (!(seen[cp / 8] & 1u << cp % 8))
            seen[cp / 8] |= (unsigned char)(1u << cp % 8), distinct++;
    }
    char *vocab = st == KILN_OK ? malloc(4 * distinct + 1) : NULL;
    if (st == KILN_OK && !vocab)
        st = error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    size_t used = 0;
    for (uint32_t cp = 0; st == KILN_OK && cp < CODE_POINTS; cp++)
        if (seen[cp / 8] & 1u << cp % 8)
            used += utf8_encode(cp, vocab + used);
    if (st == KILN_OK) {
        vocab[used] = '\0';
        st = vocab_chars(vocab, path, &chars, &c->vocab_size);
    }
    if (st == KILN_OK)
        st = vocab_encode(chars, c->vocab_size, (const char *)s, n, path, &ids, &count);
    if (st == KILN_OK)
        st = split_ids(path, ids, count, c);
    if (st == KILN_OK)
        c->vocab = vocab;
    else
        free(vocab);
    free(s);
    free(seen);
    free(ids);
    free(chars);
    return st;
}

/* ---- mapped token files ---------------------------------------------------------- */

/* The checks of a token file before it is mapped: a regular, non-empty
 * file of whole uint16 ids. */
static kiln_status check_bin(const char *path, int fd, size_t *size)
{
    struct stat info;
    if (fstat(fd, &info) != 0)
        return error_set(KILN_ERR_IO, "%s: cannot read its size (%s)", path, strerror(errno));
    if (!S_ISREG(info.st_mode))
        return error_set(KILN_ERR_IO, "%s: not a file of uint16 token ids", path);
    *size = (size_t)info.st_size;
    if (*size == 0)
        return error_set(KILN_ERR_IO, "%s: the corpus is empty", path);
    if (*size % 2)
        return error_set(KILN_ERR_IO, "%s: %zu bytes is not a whole number of uint16 token ids",
                         path, *size);
    return KILN_OK;
}

/* nanoGPT's .bin: uint16 token ids, little-endian, nothing else; mapped
 * (as nanoGPT's np.memmap), its ids first .. first + count of the corpus. */
static kiln_status map_bin(const char *path, size_t first, token_file *f)
{
    size_t size = 0;
    void *m = MAP_FAILED;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set(KILN_ERR_IO, "%s: cannot open it (%s)", path, strerror(errno));
    kiln_status st = check_bin(path, fd, &size);
    if (st == KILN_OK && (m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
        st = error_set(KILN_ERR_IO, "%s: cannot map it (%s)", path, strerror(errno));
    close(fd);
    if (st != KILN_OK)
        return st;
    posix_madvise(m, size, POSIX_MADV_RANDOM); /* windows are read at random starts */
    if (!(f->path = strdup(path))) {
        munmap(m, size);
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    f->bytes = m, f->count = size / 2, f->first = first;
    return KILN_OK;
}

/* Maps paths in order into c->files, one sequence; *total: its ids. */
static kiln_status map_all(char *const *paths, size_t n, corpus *c, size_t *total)
{
    if (!(c->files = calloc(n, sizeof *c->files)))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", c->name);
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        kiln_status st = map_bin(paths[i], *total, &c->files[i]);
        if (st != KILN_OK)
            return st;
        c->file_count = i + 1;
        *total += c->files[i].count;
    }
    return KILN_OK;
}

/* Split s: ids start .. start + count of c's mapped files. */
static void stream_map(token_stream *s, const corpus *c, const char *source, const char *split,
                       size_t start, size_t count)
{
    snprintf(s->name, sizeof s->name, "%.250s (%s split)", source, split);
    s->files = c->files, s->file_count = c->file_count;
    s->start = start, s->count = count;
}

/* train.bin and val.bin (or their directory). */
static kiln_status load_bins(const char *train, const char *val, corpus *c)
{
    char *paths[] = {(char *)train, (char *)val};
    size_t total = 0;
    kiln_status st = map_all(paths, 2, c, &total);
    if (st != KILN_OK)
        return st;
    stream_map(&c->train, c, train, "training", 0, c->files[0].count);
    stream_map(&c->val, c, val, "validation", c->files[1].first, c->files[1].count);
    return KILN_OK;
}

kiln_status corpus_load_shards(const char *list, corpus *out)
{
    memset(out, 0, sizeof *out);
    char **paths = NULL;
    size_t n = 0, total = 0;
    snprintf(out->name, sizeof out->name, "%s", list ? list : "");
    kiln_status st = data_expand_paths(list, ".bin", &paths, &n);
    if (st == KILN_OK)
        st = map_all(paths, n, out, &total);
    if (st == KILN_OK) {
        size_t cut = (size_t)((double)total * TRAIN_SHARE);
        stream_map(&out->train, out, list, "training", 0, cut);
        stream_map(&out->val, out, list, "validation", cut, total - cut);
    }
    if (paths)
        data_free_paths(paths, n);
    if (st != KILN_OK)
        corpus_free(out);
    return st;
}

static kiln_status load_npy(const char *path, corpus *c)
{
    uint32_t *ids = NULL;
    size_t count = 0;
    kiln_status st = data_load_npy_tokens(path, &ids, &count);
    if (st == KILN_OK)
        st = split_ids(path, ids, count, c);
    free(ids);
    return st;
}

static int is_dir(const char *path)
{
    struct stat info;
    return stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

/* Where tools/shakespeare.sh writes its corpus. */
static void shakespeare_path(char *buf, size_t size)
{
    const char *dir = getenv("KILN_DATA_DIR"), *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (dir && *dir)
        snprintf(buf, size, "%s/shakespeare.txt", dir);
    else if (xdg && *xdg)
        snprintf(buf, size, "%s/kiln/shakespeare.txt", xdg);
    else
        snprintf(buf, size, "%s/.local/share/kiln/shakespeare.txt", home ? home : ".");
}

int corpus_is_text_source(const char *source)
{
    return source && (strcmp(source, "shakespeare") == 0 || data_has_ext(source, ".txt") ||
                      data_has_ext(source, ".bin"));
}

static kiln_status load_any(const char *source, corpus *c)
{
    char path[4096], val[4200];
    if (strcmp(source, "shakespeare") == 0) {
        shakespeare_path(path, sizeof path);
        if (access(path, R_OK) != 0)
            return error_set(KILN_ERR_IO, "data \"shakespeare\": %s does not exist; "
                                          "tools/shakespeare.sh downloads it there", path);
        return load_text(path, c);
    }
    if (data_has_ext(source, ".bin") && strpbrk(source, ",*?[") && access(source, F_OK) != 0)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: a list or pattern of .bin files is "
                                                    "read as shards: set shard = true in "
                                                    "[train] (or --shard)", source);
    if (access(source, F_OK) != 0)
        return error_set(KILN_ERR_IO, "data \"%s\": no such file; a token model trains on a "
                                      "UTF-8 text, nanoGPT's train.bin and val.bin (or their "
                                      "directory), a .npy of token ids, or shakespeare "
                                      "(tools/shakespeare.sh)", source);
    if (data_has_ext(source, ".npy"))
        return load_npy(source, c);
    int dir = is_dir(source), bin = data_has_ext(source, ".bin");
    if (!dir && !bin)
        return load_text(source, c);
    if (dir)
        snprintf(path, sizeof path, "%s/train.bin", source);
    else
        snprintf(path, sizeof path, "%s", source);
    dir_of(path, val, sizeof val);
    snprintf(val + strlen(val), sizeof val - strlen(val), "/val.bin");
    if (dir && access(path, R_OK) != 0)
        return error_set(KILN_ERR_IO, "%s: a directory without train.bin; expected nanoGPT's "
                                      "train.bin and val.bin", source);
    if (access(val, R_OK) != 0)
        return error_set(KILN_ERR_IO, "%s: no val.bin beside it (nanoGPT's prepare.py writes "
                                      "both)", path);
    return load_bins(path, val, c);
}

static size_t largest(const token_stream *s)
{
    uint32_t top = 0;
    for (size_t i = 0; i < s->count; i++)
        top = s->ids[i] > top ? s->ids[i] : top;
    return s->count ? (size_t)top + 1 : 0;
}

kiln_status corpus_load(const char *source, corpus *out)
{
    memset(out, 0, sizeof *out);
    if (!source || !*source)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "no corpus named");
    snprintf(out->name, sizeof out->name, "%s", source);
    kiln_status st = load_any(source, out);
    if (st == KILN_OK && !out->vocab && !out->files) {
        size_t t = largest(&out->train), v = largest(&out->val);
        out->vocab_size = t > v ? t : v;
    }
    if (st != KILN_OK)
        corpus_free(out);
    return st;
}

void corpus_free(corpus *c)
{
    if (!c)
        return;
    free(c->train.ids);
    free(c->val.ids);
    free(c->vocab);
    for (size_t i = 0; i < c->file_count; i++) {
        munmap((void *)c->files[i].bytes, 2 * c->files[i].count);
        free(c->files[i].path);
    }
    free(c->files);
    memset(c, 0, sizeof *c);
}

static kiln_status check_split(const token_stream *s, size_t vocab, size_t block)
{
    for (size_t i = 0; s->ids && i < s->count; i++) /* mapped ids: as windows read them */
        if (s->ids[i] >= vocab)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: token %zu is %u, at or beyond the "
                                                        "model's vocabulary of %zu ([input] "
                                                        "tokens)", s->name, i,
                             (unsigned)s->ids[i], vocab);
    if (s->count < block + 1)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: %zu tokens, shorter than one window "
                                                    "of block + 1 = %zu tokens (a text's last "
                                                    "10%% validates: it needs at least %zu "
                                                    "characters)", s->name, s->count,
                         block + 1, (size_t)((double)(block + 1) / (1 - TRAIN_SHARE)) + 1);
    return KILN_OK;
}

kiln_status corpus_check(const corpus *c, size_t vocab, size_t block)
{
    if (c->vocab && c->vocab_size > vocab)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: %zu distinct characters, more than the "
                                                    "model's vocabulary of %zu ([input] tokens "
                                                    "= %zu would fit them)", c->name,
                         c->vocab_size, vocab, c->vocab_size);
    kiln_status st = check_split(&c->train, vocab, block);
    return st == KILN_OK ? check_split(&c->val, vocab, block) : st;
}

/* The mapped file holding id g of the sequence (the last whose first <= g). */
static const token_file *file_at(const token_stream *s, size_t g)
{
    size_t lo = 0, hi = s->file_count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->files[mid].first <= g)
            lo = mid;
        else
            hi = mid;
    }
    return &s->files[lo];
}

kiln_status token_get(const token_stream *s, size_t i, size_t vocab, uint32_t *id)
{
    if (s->ids) {
        if (s->ids[i] >= vocab)
            return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: token %zu is %u, at or beyond the "
                                                        "model's vocabulary of %zu", s->name, i,
                             (unsigned)s->ids[i], vocab);
        *id = s->ids[i];
        return KILN_OK;
    }
    const token_file *f = file_at(s, s->start + i);
    size_t k = s->start + i - f->first;
    uint32_t v = (uint32_t)f->bytes[2 * k] | (uint32_t)f->bytes[2 * k + 1] << 8;
    if (v >= vocab)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "%s: the token id at byte offset %zu is %u, "
                                                    "at or beyond the model's vocabulary of %zu "
                                                    "([input] tokens)", f->path, 2 * k,
                         (unsigned)v, vocab);
    *id = v;
    return KILN_OK;
}

kiln_status token_windows(const token_stream *s, size_t vocab, size_t block, size_t n,
                          kiln_rng *rng, float *x, float *y)
{
    size_t starts = s->count - block; /* nanoGPT: randint(len(data) - block_size) */
    for (size_t i = 0; i < n; i++) {
        size_t at = (size_t)(rng_next(rng) % starts);
        uint32_t prev = 0, next = 0;
        kiln_status st = token_get(s, at, vocab, &prev);
        for (size_t t = 0; t < block && st == KILN_OK; t++, prev = next) {
            st = token_get(s, at + t + 1, vocab, &next);
            x[i * block + t] = (float)prev;
            y[i * block + t] = (float)next;
        }
        if (st != KILN_OK)
            return st;
    }
    return KILN_OK;
}
