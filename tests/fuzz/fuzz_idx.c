/* The IDX reader (plain or gzipped): the input is split into an images
 * and a labels file at the point its first two bytes name. */
#include "data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t cut = 2 + ((size_t)data[0] << 8 | data[1]);
    cut = cut < size ? cut : size;
    const char *images = fuzz_file("images", data + 2, cut - 2);
    const char *labels = fuzz_file("labels", data + cut, size - cut);
    if (!images || !labels)
        return 0;
    dataset d = {0};
    if (data_load_idx(images, labels, &d) == KILN_OK)
        data_free(&d);
    dataset only = {0};
    if (data_load_idx_images(images, &only) == KILN_OK)
        data_free(&only);
    return 0;
}
