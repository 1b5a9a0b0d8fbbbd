/* Elementwise tensor kernels: one work-item per element, bounds-checked so
 * the global size may be rounded up to the work-group size.
 *
 *   fill:  x[i] = value           x is (n)
 *   scale_matrix: x[offset + r*ld + c] *= alpha for r < rows, c < cols;
 *                 alpha == 0 writes exact zeros (BLAS's beta == 0 rule)
 */

__kernel void fill(__global float *x, const float value, const ulong n)
{
    size_t i = get_global_id(0);
    if (get_group_id(0) + 1 < get_num_groups(0) || i < n) /* math.cl's IN_RANGE */
        x[i] = value;
}

__kernel void scale_matrix(__global float *x, const float alpha, const ulong offset,
                           const ulong ld, const ulong rows, const ulong cols)
{
    size_t i = get_global_id(0);
    if (i >= rows * cols)
        return;
    size_t at = offset + (i / cols) * ld + i % cols;
    x[at] = alpha == 0.0f ? 0.0f : alpha * x[at];
}

/* The bandwidth yardstick of kiln bench: y[i] = x[i], one item an element
 * as kiln's elementwise kernels are written. */
__kernel void copy(__global const float *x, __global float *y, const ulong n)
{
    size_t i = get_global_id(0);
    if (get_group_id(0) + 1 < get_num_groups(0) || i < n) /* math.cl's IN_RANGE */
        y[i] = x[i];
}
