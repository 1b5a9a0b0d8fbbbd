/* Plain-arithmetic math for the kernels: no calls to the driver's exp, erf
 * or tanh, so that drivers that run a work-group as a loop (PoCL) vectorize
 * it. A helper source: programs join it before their own
 * ("math.cl+act.cl"). */

/* i < n in a one-dimensional launch rounded up to its work-group size, where
 * only the last group holds items past n. PoCL vectorizes a work-group's
 * loop only where the test is the same for all of the group's items: a
 * plain i < n ran the elementwise kernels at half their speed. */
#define IN_RANGE(i, n) (get_group_id(0) + 1 < get_num_groups(0) || (i) < (n))

/* GELU's constants (act.cl, gemm.cl's epilogues). */
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

/* e^x for x <= 0 (larger x are not asked for), to 2 ulp: Cody and Waite's
 * reduction by k ln 2, Cephes' polynomial, and 2^k built in the exponent
 * bits. Arguments below -87 give e^-87 (1.6e-38), never a denormal.
 * MATH_EXP(name, T, IT) defines it for float type T and int type IT:
 * exp_nonpositive on float, exp_nonpositive16 on float16 (the same
 * operations lane by lane, so the same bits). */
#define MATH_AS_(T, x) as_##T(x)
#define MATH_AS(T, x) MATH_AS_(T, x) /* T may be a macro naming the type */
#define MATH_EXP(name, T, IT)                                                       \
    static T name(T x)                                                              \
    {                                                                               \
        x = fmax(x, -87.0f);                                                        \
        T shifted = fma(x, 1.44269504f, 12582912.0f); /* 1.5 * 2^23: k in the low bits */ \
        IT k = MATH_AS(IT, shifted) - 0x4B400000;                                   \
        T kf = shifted - 12582912.0f;                                               \
        T r = fma(kf, -0.693359375f, x);                                            \
        r = fma(kf, 2.12194440e-4f, r);                                             \
        T p = fma(1.9875691500e-4f, r, 1.3981999507e-3f);                           \
        p = fma(p, r, 8.3334519073e-3f);                                            \
        p = fma(p, r, 4.1665795894e-2f);                                            \
        p = fma(p, r, 1.6666665459e-1f);                                            \
        p = fma(p, r, 5.0000001201e-1f);                                            \
        return (fma(p, r * r, r) + 1.0f) * MATH_AS(T, (k + 127) << 23);             \
    }
MATH_EXP(exp_nonpositive, float, int)
MATH_EXP(exp_nonpositive16, float16, int16)

/* erf(x) to 4.5e-7, relatively to 4e-7 for |x| < 3: Eigen's (and XLA's)
 * rational form in x^2 on [-4, 4], beyond which erf is +-1 in floats. PoCL's
 * erf is some thirty times slower, and Abramowitz and Stegun's 7.1.26 needs
 * an exp besides its division. erf_fast on float, erf_fast16 on float16. */
#define MATH_ERF(name, T)                                                           \
    static T name(T x)                                                              \
    {                                                                               \
        x = fmin(fmax(x, -4.0f), 4.0f);                                             \
        T x2 = x * x;                                                               \
        T p = fma(x2, -2.72614225801306e-10f, 2.77068142495902e-08f);               \
        p = fma(x2, p, -2.10102402082508e-06f);                                     \
        p = fma(x2, p, -5.69250639462346e-05f);                                     \
        p = fma(x2, p, -7.34990630326855e-04f);                                     \
        p = fma(x2, p, -2.95459980854025e-03f);                                     \
        p = fma(x2, p, -1.60960333262415e-02f);                                     \
        T q = fma(x2, -1.45660718464996e-05f, -2.13374055278905e-04f);              \
        q = fma(x2, q, -1.68282697438203e-03f);                                     \
        q = fma(x2, q, -7.37332916720468e-03f);                                     \
        q = fma(x2, q, -1.42647390514189e-02f);                                     \
        return x * p / q;                                                           \
    }
MATH_ERF(erf_fast, float)
MATH_ERF(erf_fast16, float16)

/* tanh(x) to 3.5e-7 relatively: Eigen's rational form in x^2 on
 * [-7.9, 7.9], no exp; beyond it exactly +-1 (as tanh is in floats), which
 * keeps 1 - tanh^2, and so the gradient, at 0 there. */
static float tanh_fast(float x)
{
    const float edge = 7.90531110763549805f;
    float c = fmin(fmax(x, -edge), edge), c2 = c * c;
    float p = fma(c2, -2.76076847742355e-16f, 2.00018790482477e-13f);
    p = fma(c2, p, -8.60467152213735e-11f);
    p = fma(c2, p, 5.12229709037114e-08f);
    p = fma(c2, p, 1.48572235717979e-05f);
    p = fma(c2, p, 6.37261928875436e-04f);
    p = fma(c2, p, 4.89352455891786e-03f);
    float q = fma(c2, 1.19825839466702e-06f, 1.18534705686654e-04f);
    q = fma(c2, q, 2.26843463243900e-03f);
    q = fma(c2, q, 4.89352518554385e-03f);
    return fabs(x) < edge ? c * p / q : copysign(1.0f, x);
}
