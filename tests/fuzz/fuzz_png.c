/* The PNG reader, from memory, through the image harnesses' body
 * (fuzz_image.c). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image(data, size, "fuzz.png");
}
