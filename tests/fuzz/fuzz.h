/* What the fuzz harnesses share: libFuzzer's entry point, and the input
 * written to a file of this process's own when a reader takes a path. */
#ifndef KILN_FUZZ_H
#define KILN_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes size bytes to a temporary file named after tag; returns its path
 * (valid until the next call with the same tag), or NULL. */
const char *fuzz_file(const char *tag, const uint8_t *data, size_t size);

/* Decodes an image file's bytes (name: for messages) and renders what
 * decodes as training would; always 0, as libFuzzer wants. */
int fuzz_image(const uint8_t *data, size_t size, const char *name);

#endif /* KILN_FUZZ_H */
