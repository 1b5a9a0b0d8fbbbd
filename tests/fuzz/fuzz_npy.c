/* The NumPy readers: an input whose first byte is 'P' (as a zip archive's
 * is) is an .npz, read for its train and test splits; any other is split
 * into a features and a labels .npy at the point its first two bytes name. */
#include "data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    dataset d = {0};
    if (data[0] == 'P') {
        const char *npz = fuzz_file("npz", data, size);
        if (npz && data_load_npz(npz, NULL, "train", &d) == KILN_OK)
            data_free(&d);
        if (npz && data_load_npz(npz, NULL, "test", &d) == KILN_OK)
            data_free(&d);
        return 0;
    }
    size_t cut = 2 + ((size_t)data[0] << 8 | data[1]);
    cut = cut < size ? cut : size;
    const char *x = fuzz_file("x.npy", data + 2, cut - 2);
    const char *y = fuzz_file("y.npy", data + cut, size - cut);
    if (!x || !y)
        return 0;
    if (data_load_npy(x, y, &d) == KILN_OK)
        data_free(&d);
    if (data_load_npy(x, NULL, &d) == KILN_OK)
        data_free(&d);
    return 0;
}
