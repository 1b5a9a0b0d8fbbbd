/* The safetensors loader's checks (checkpoint_parse) against the
 * state_dict of a small model: linear(3 -> 4) + batchnorm(4). */
#include <string.h>

#include "net/checkpoint.h"
#include "fuzz.h"

static checkpoint_entry entry(const char *name, int ndim, size_t d0, size_t d1, int is_int64)
{
    checkpoint_entry e = {.is_int64 = is_int64};
    strncpy(e.name, name, sizeof e.name - 1);
    e.shape = shape_make(ndim, d0, d1, 0, 0);
    e.bytes = is_int64 ? 8 : shape_numel(&e.shape) * sizeof(float);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    checkpoint_entry e[] = {
        entry("0.weight", 2, 4, 3, 0),        entry("0.bias", 1, 4, 0, 0),
        entry("1.weight", 1, 4, 0, 0),        entry("1.bias", 1, 4, 0, 0),
        entry("1.running_mean", 1, 4, 0, 0), entry("1.running_var", 1, 4, 0, 0),
        entry("1.num_batches_tracked", 0, 0, 0, 1),
    };
    size_t n = sizeof e / sizeof e[0], begins[sizeof e / sizeof e[0]];
    checkpoint_meta meta;
    if (checkpoint_parse("fuzz.safetensors", data, size, e, n, begins, &meta) == KILN_OK) {
        volatile float sink = 0; /* touch every tensor's bytes: they must be inside */
        for (size_t i = 0; i < n; i++)
            for (size_t b = 0; b < e[i].bytes; b++)
                sink += data[begins[i] + b];
        (void)sink;
    }
    checkpoint_meta_free(&meta);
    return 0;
}
