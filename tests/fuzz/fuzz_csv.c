/* The CSV reader: the first byte chooses the header flag and the label
 * column (by name or index, or none with bit 3); the rest is the file. */
#include "data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const labels[] = {"label", "0", "1", "y"};
    int header = data[0] & 1;
    const char *label = data[0] & 8 ? "none" : labels[(data[0] >> 1) & 3];
    const char *path = fuzz_file("csv", data + 1, size - 1);
    if (!path)
        return 0;
    dataset d = {0};
    if (data_load_csv(path, label, header, &d) == KILN_OK)
        data_free(&d);
    return 0;
}
