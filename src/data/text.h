/* Corpora for language models (text.c): a UTF-8 text read as characters
 * (its vocabulary: the sorted distinct characters), nanoGPT's train.bin and
 * val.bin (uint16 token ids) and NumPy arrays of token ids; split as
 * nanoGPT splits them, and cut into random windows of block + 1 tokens. */
#ifndef KILN_TEXT_H
#define KILN_TEXT_H

#include "runtime/runtime.h"
#include "runtime/rng.h"

/* A memory-mapped uint16 token file (nanoGPT's .bin): only the pages of
 * the windows read are touched. */
typedef struct {
    char *path;
    const unsigned char *bytes; /* mapped, little-endian uint16 ids */
    size_t count;               /* ids */
    size_t first;               /* its first id in the corpus's sequence of files */
} token_file;

/* Token ids of one split: in memory (ids), or ids start .. start + count
 * of the sequence of mapped files (files, file_count), which a window
 * reads across, as one file holding them all. */
typedef struct {
    char name[288];  /* "corpus.txt (training split)", for messages */
    uint32_t *ids;   /* NULL when mapped */
    const token_file *files;
    size_t file_count;
    size_t start;
    size_t count;
} token_stream;

/* A corpus: its training and validation splits and, for a text, its
 * character vocabulary as UTF-8 (the characters in code-point order, each
 * once; token i is the i-th). Token files have none (vocab NULL). */
typedef struct {
    char name[256];     /* where it came from */
    token_stream train, val;
    char *vocab;
    size_t vocab_size;  /* characters of vocab, 1 + the largest id of a .npy; 0 for
                           mapped files (their ids are checked as windows read them) */
    token_file *files;  /* mapped .bin files, or NULL */
    size_t file_count;
} corpus;

/* Reads a corpus: "shakespeare" (tools/shakespeare.sh's file:
 * $KILN_DATA_DIR/shakespeare.txt, else
 * ${XDG_DATA_HOME:-~/.local/share}/kiln/shakespeare.txt), a directory
 * holding train.bin and val.bin, a train.bin (val.bin beside it), a .npy
 * array of token ids, or any other file as UTF-8 text. A text and a .npy
 * array are split as nanoGPT splits: the first 90% trains, the rest
 * validates. Non-UTF-8 bytes are an error naming the byte offset. */
kiln_status corpus_load(const char *source, corpus *out);

/* A corpus of .bin shards (shard = true): list names uint16 token files as
 * .npy shards are named (comma-separated files or glob patterns). They are
 * one sequence in list order, split as a text is: the first 90% of all ids
 * trains, the rest validates. Each file is mapped; an empty file or one
 * of an odd number of bytes is refused naming it. */
kiln_status corpus_load_shards(const char *list, corpus *out);
void corpus_free(corpus *c);

/* Whether source names a corpus by its form (a .txt, .bin or the name
 * "shakespeare"): for messages and for choosing a reader. */
int corpus_is_text_source(const char *source);

/* Checks a corpus against a model of vocabulary V and block T: every id
 * below V (ids in memory; mapped ids as they are read), and each split at
 * least one window (T + 1 tokens) long. */
kiln_status corpus_check(const corpus *c, size_t vocab, size_t block);

/* n windows of block + 1 tokens at random starts (uniform, from rng):
 * x gets tokens [s, s + block), y tokens [s + 1, s + block + 1), as
 * floats, n x block each. The stream holds at least block + 1 tokens. An
 * id at or beyond vocab is an error naming the file and byte offset. */
kiln_status token_windows(const token_stream *s, size_t vocab, size_t block, size_t n,
                          kiln_rng *rng, float *x, float *y);

/* Token i of a stream into *id, checked below vocab. */
kiln_status token_get(const token_stream *s, size_t i, size_t vocab, uint32_t *id);

/* ---- vocabularies --------------------------------------------------------------- */

/* Decodes one UTF-8 character of s (n bytes left) into *cp; returns its
 * length in bytes, or 0 for an invalid sequence (overlong forms,
 * surrogates, beyond U+10FFFF, a cut-off sequence). */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Writes cp as UTF-8 into out (4 bytes at most); returns the length. */
size_t utf8_encode(uint32_t cp, char *out);

/* The code points of a vocabulary string (to free), checked: valid UTF-8,
 * strictly increasing; what names the vocabulary in messages. */
kiln_status vocab_chars(const char *vocab, const char *what, uint32_t **chars, size_t *n);

/* Encodes UTF-8 text with a vocabulary's characters into ids (to free); a
 * character outside it is an error naming the character and its offset. */
kiln_status vocab_encode(const uint32_t *chars, size_t n, const char *text, size_t len,
                         const char *what, uint32_t **ids, size_t *count);

#endif /* KILN_TEXT_H */
