/* Work-group helpers, compiled before the kernels that use them
 * ("group.cl+reduce.cl"). WG is the work-group size, a power of two. */
#ifndef WG
#define WG 64
#endif

/* Tree sum of one value per work-item, returned to every work-item; safe
 * to call again at once with the same scratch. */
static float group_sum(__local float *scratch, float v)
{
    size_t lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t step = WG / 2; step > 0; step /= 2) {
        if (lid < step)
            scratch[lid] += scratch[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

