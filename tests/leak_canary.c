/* Proves that the sanitizer pass still catches kiln's own leaks while the
 * OpenCL driver's are suppressed: it loads a driver, builds and runs a
 * kernel (so the driver makes its own process-lifetime allocations) and
 * then forgets a tensor on purpose. tests/check_leak_canary.py runs it
 * and passes only if LeakSanitizer reports that tensor's allocation in
 * kiln_tensor_create. Built and run only with -Db_sanitize=address. */
#include <stdio.h>

#include "kiln.h"

int main(void)
{
    kiln_ctx *ctx;
    if (kiln_ctx_create(NULL, &ctx) != KILN_OK) {
        fprintf(stderr, "leak canary: %s\n", kiln_last_error());
        return 2;
    }
    size_t shape[1] = {1000};
    kiln_tensor *kept, *forgotten;
    if (kiln_tensor_create(ctx, 1, shape, &kept) != KILN_OK ||
        kiln_tensor_fill(kept, 1.0f) != KILN_OK ||
        kiln_tensor_create(ctx, 1, shape, &forgotten) != KILN_OK) {
        fprintf(stderr, "leak canary: %s\n", kiln_last_error());
        return 2;
    }
    kiln_tensor_free(kept);
    forgotten = NULL; /* the leak: never freed */
    kiln_ctx_free(ctx);
    return 0;
}
