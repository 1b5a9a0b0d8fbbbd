/* The model-file front end: INI parsing, layer construction and shape
 * inference, on arbitrary text. Errors are fine; crashes, leaks and
 * undefined behaviour are not. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kiln.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    kiln_model *m = NULL;
    if (kiln_model_parse(text, "fuzz.ini", &m) == KILN_OK)
        kiln_model_free(m);
    free(text);
    return 0;
}
