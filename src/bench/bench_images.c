/* kiln bench --images: how fast an image folder decodes for a model. */
#include "net/net.h"

kiln_status kiln_bench_images(kiln_model *m, const char *dir, double *images_per_s,
                              size_t *images, int *workers)
{
    if (!m || !dir || !images_per_s || !images || !workers)
        return error_set(KILN_ERR_INVALID_ARGUMENT, "kiln_bench_images: a model, a folder and "
                                                    "three outputs are required");
    train_config c;
    kiln_status st = train_config_read(m, &c);
    const kiln_shape *in = &m->input;
    if (st == KILN_OK && (in->ndim != 3 || (in->d[0] != 1 && in->d[0] != 3)))
        st = error_set(KILN_ERR_SHAPE, "kiln_bench_images: the model's input is not CxHxW with "
                                       "1 or 3 channels");
    if (st != KILN_OK)
        return st;
    folder_spec s = {.channels = (int)in->d[0], .height = (int)in->d[1], .width = (int)in->d[2],
                     .cfg = c.images, .seed = c.seed};
    *workers = s.cfg.workers ? s.cfg.workers : pool_cores();
    return folder_decode_rate(dir, &s, images, images_per_s);
}
