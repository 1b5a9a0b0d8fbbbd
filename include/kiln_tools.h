/* kiln's tooling calls: what the `kiln` command's bench, tune, profile and
 * trace commands are built on (launch counts and traces, the kernel cache's
 * statistics, profiles, GEMM tuning records and engines, the step traces
 * and GEMM shapes of a model, and benchmarks). A program that trains
 * networks needs only kiln.h; these calls may change between minor
 * versions. */
#ifndef KILN_TOOLS_H
#define KILN_TOOLS_H

#include "kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How many kernels, CLBlast calls and device copies the context has
 * enqueued; differences count the launches of a piece of work. */
KILN_API uint64_t kiln_ctx_launches(const kiln_ctx *ctx);

/* Writes every launch (kernel and its range, CLBlast GEMM and its sizes,
 * copy) to fn as it is enqueued; a NULL fn stops. */
KILN_API void kiln_ctx_set_trace(kiln_ctx *ctx, kiln_write_fn fn, void *user);

/* Statistics of the kernel-program cache, for tests and `kiln devices -v`. */
typedef struct {
    unsigned memory_hits; /* program found in this context's memory cache */
    unsigned disk_hits;   /* program loaded from a cached binary */
    unsigned builds;      /* program compiled from source */
    unsigned disk_rejects; /* cache files found unusable and rebuilt */
    unsigned bundles_split; /* programs of several sources that did not build as one,
                               and were built apart */
} kiln_cache_stats;

KILN_API kiln_cache_stats kiln_ctx_cache_stats(const kiln_ctx *ctx);

/* Builds (or loads from cache) the program of an embedded kernel source,
 * e.g. "tensor.cl", with build options such as "-DVEC=4" and all of its
 * kernels, to check that it builds. Operators build each kernel they use
 * on first use, as a program of its own. */
KILN_API kiln_status kiln_program_prepare(kiln_ctx *ctx, const char *source,
                                          const char *options);

/* The directory of the on-disk kernel cache: $KILN_CACHE_DIR, else
 * $XDG_CACHE_HOME/kiln, else ~/.cache/kiln. Writes at most size bytes. */
KILN_API kiln_status kiln_cache_dir(char *buf, size_t size);

/* Profiles: between begin and end every launch on ctx is recorded with the
 * layer that made it; end waits for the queue, then writes a Chrome trace
 * (chrome://tracing, Perfetto) to trace_path when given, and device time
 * per layer, divided by steps, to totals when given, then each layer's
 * backward time against its forward. */
KILN_API kiln_status kiln_ctx_profile_begin(kiln_ctx *ctx);
KILN_API kiln_status kiln_ctx_profile_end(kiln_ctx *ctx, const char *trace_path, size_t steps,
                                          kiln_write_fn totals, void *user);

/* Tuning: what `kiln tune` found best for a device, kept as one record per
 * device (name, driver, platform and CLBlast version) in kiln's cache
 * directory and applied by kiln_ctx_create unless $KILN_TUNE is "off". A
 * stale or corrupt record is ignored with a warning. */
/* CLBlast's Xgemm parameters, in the order CLBlast's OverrideParameters
 * takes them: KILN_XGEMM_<NAME> indexes kiln_tuning.xgemm. */
#define KILN_XGEMM_PARAM_LIST(X)                                                          \
    X(GEMMK) X(KREG) X(KWG) X(KWI) X(MDIMA) X(MDIMC) X(MWG) X(NDIMB) X(NDIMC) X(NWG) X(SA)  \
    X(SB) X(STRM) X(STRN) X(VWM) X(VWN)
enum {
#define KILN_XGEMM_ENUM(name) KILN_XGEMM_##name,
    KILN_XGEMM_PARAM_LIST(KILN_XGEMM_ENUM)
#undef KILN_XGEMM_ENUM
    KILN_XGEMM_PARAMS
};
typedef struct {
    int has_xgemm;
    size_t xgemm[KILN_XGEMM_PARAMS]; /* CLBlast's Xgemm parameters, named below */
    int has_min_indirect;
    size_t min_indirect;             /* CLBlast's XGEMM_MIN_INDIRECT_SIZE */
    int engine;                      /* a kiln_gemm_engine; AUTO leaves the default */
    int has_kiln_tile;               /* kiln's own GEMM (CPU devices): */
    int kiln_mr, kiln_nr;            /* its register tile, MR rows x NR columns */
    size_t kiln_kc;                  /* and its k block */
    size_t attn_rows;                /* attention's rows per work-item (CPUs) or
                                        work-group sharing a local tile (GPUs),
                                        1 to 64; 0: not measured (the default) */
} kiln_tuning;

/* "GEMMK", "KREG", "KWG", ...: the names of kiln_tuning.xgemm, in order. */
KILN_API const char *kiln_xgemm_param_name(int i);
/* Hands a tuning to CLBlast for ctx's device, picks its engine and sets the
 * tile of kiln's GEMM and attention's query rows. */
KILN_API kiln_status kiln_tuning_apply(kiln_ctx *ctx, const kiln_tuning *t);
/* 1 and *t if device d has a valid record, else 0. */
KILN_API int kiln_tuning_load(const kiln_device_info *d, kiln_tuning *t);
/* Writes d's record atomically, with measured (JSON text, may be NULL)
 * kept beside it; the file's path goes to path. */
KILN_API kiln_status kiln_tuning_save(const kiln_device_info *d, const kiln_tuning *t,
                                      const char *measured, char *path, size_t size);
/* Where the record of device d is (or would be) kept. */
KILN_API kiln_status kiln_tuning_path(const kiln_device_info *d, char *path, size_t size);

/* Which implementation runs matrix products on a context. AUTO (the
 * default) is kiln's own GEMM on CPU devices whose driver runs a
 * work-group as a loop on one core (PoCL), where it measures ten times
 * faster than CLBlast's kernels, and CLBlast elsewhere (GPUs, Mesa's
 * rusticl); the environment variable KILN_GEMM=clblast|kiln and a tuning
 * record override AUTO. */
typedef enum { KILN_GEMM_AUTO = 0, KILN_GEMM_CLBLAST = 1, KILN_GEMM_KILN = 2 } kiln_gemm_engine;

KILN_API void kiln_ctx_set_gemm(kiln_ctx *ctx, kiln_gemm_engine engine);
/* The engine in use (never AUTO). */
KILN_API kiln_gemm_engine kiln_ctx_gemm(const kiln_ctx *ctx);
KILN_API const char *kiln_gemm_engine_str(kiln_gemm_engine engine);

/* Runs one training step (forward, loss, backward) of a batch of random
 * data on ctx and prints every launch under the layer it belongs to;
 * fused selects the fused pipeline. */
KILN_API kiln_status kiln_model_trace_step(kiln_model *m, kiln_ctx *ctx, size_t batch,
                                           int fused, kiln_write_fn fn, void *user);

/* Runs `steps` training steps of random data (after a warm-up step) and
 * prints the device time of each layer per step, largest first, then each
 * layer's backward time against its forward. */
KILN_API kiln_status kiln_model_profile_steps(kiln_model *m, kiln_ctx *ctx, size_t batch,
                                              int steps, kiln_write_fn fn, void *user);

/* A matrix product: C (m x n) = op(A) (m x k) op(B) (k x n). */
typedef struct {
    kiln_transpose ta, tb;
    size_t m, n, k;
} kiln_gemm_shape;

/* The distinct matrix products of one training step of m at this batch
 * size (at most cap of them) into out. */
KILN_API kiln_status kiln_model_gemm_shapes(kiln_model *m, kiln_ctx *ctx, size_t batch,
                                            kiln_gemm_shape *out, size_t cap, size_t *count);

/* ---- benchmarks ------------------------------------------------------------- */

#define KILN_BENCH_GEMMS 12
#define KILN_BENCH_KERNELS 8

/* One device's numbers; every time is the best of several repetitions, and
 * every ratio is taken within one run. A rate of 0 was not measured. */
typedef struct {
    size_t gemm_count;
    kiln_gemm_shape gemm[KILN_BENCH_GEMMS]; /* squares, then the examples' shapes */
    double gemm_default[KILN_BENCH_GEMMS];  /* GFLOPS: CLBlast with its own parameters */
    double gemm_tuned[KILN_BENCH_GEMMS];    /* CLBlast with the device's tuning record */
    double gemm_kiln[KILN_BENCH_GEMMS];     /* kiln's GEMM (CPU devices) */
    double gemm_host[KILN_BENCH_GEMMS];     /* the host's BLAS, filled in by the caller */
    double copy_gbs;                        /* a plain copy kernel, bytes read + written */
    size_t kernel_count;
    const char *kernel_name[KILN_BENCH_KERNELS];
    double kernel_gbs[KILN_BENCH_KERNELS];  /* the bytes each must move, per second */
    double launch_us;                       /* one small kernel, enqueue to finish */
    double upload_gbs, download_gbs;
} kiln_bench_result;

/* Measures a device (opened without its tuning record, which is applied
 * halfway); quick uses small sizes (for tests). */
KILN_API kiln_status kiln_bench(const char *selector, int quick, kiln_bench_result *out);

/* GFLOPS of one product on ctx's engine: the best of five timed runs after
 * a warm-up that builds the kernels. */
KILN_API kiln_status kiln_bench_gemm(kiln_ctx *ctx, const kiln_gemm_shape *g, double *gflops);

/* Fused attention (forward, and forward + backward) on random data of
 * batch B, block T and H heads of D channels, with `rows` query rows per
 * work-item on CPUs, or per work-group sharing a tile of keys in local
 * memory on GPUs (1 to 64): the best of five timed runs in ms, after a warm-up
 * that builds the kernels. */
KILN_API kiln_status kiln_bench_attention(kiln_ctx *ctx, size_t B, size_t T, size_t H,
                                          size_t D, size_t rows, double *forward_ms,
                                          double *step_ms);
/* The KILN_ATTN_CHOICES rows `kiln tune` times on ctx's device: query rows
 * per work-item where work-groups run as loops (CPUs: 1, 2, 4, 8), else
 * rows of a work-group's local tile (GPUs: 1, that is none, 16, 32, 64). */
#define KILN_ATTN_CHOICES 4
KILN_API const size_t *kiln_attention_choices(const kiln_ctx *ctx);

/* Training throughput of model m (random data, batch from its [train]
 * section unless batch > 0): samples per second over a few steps. */
KILN_API kiln_status kiln_bench_training(kiln_ctx *ctx, kiln_model *m, size_t batch,
                                         double *samples_per_s);

/* The library API's own costs for model m at a batch size (0: [train]'s):
 * the time of kiln_net_forward on one sample, warm, and the samples per
 * second of a loop of kiln_net_train_step on full batches from host arrays
 * (to compare with kiln_bench_training, which runs the pipeline alone). */
KILN_API kiln_status kiln_bench_net(kiln_ctx *ctx, kiln_model *m, size_t batch,
                                    double *forward_ms, double *step_samples_per_s);

/* A token model (GPT) at a batch size (0: [train]'s), random weights and
 * tokens: training tokens per second through kiln_net_train_step (the
 * best of three steps), the share of a step the attention kernels take
 * (each attention layer's forward and backward timed alone at the step's
 * shapes), and kiln_net_generate's tokens per second for block - 1 tokens
 * from an empty prompt, with its KV cache and with every token running
 * the whole window. */
typedef struct {
    size_t batch, block, generated;
    double step_ms, train_tokens_per_s, attention_share;
    double generate_tokens_per_s, window_tokens_per_s;
} kiln_bench_gpt_result;
KILN_API kiln_status kiln_bench_gpt(kiln_ctx *ctx, kiln_model *m, size_t batch,
                                    kiln_bench_gpt_result *r);

/* Images per second that an image folder's training split decodes on
 * *workers threads (the model's [train] workers), each converted and
 * resized to model m's input: the pass kiln_net_fit makes before training
 * (images: how many files it read). */
KILN_API kiln_status kiln_bench_images(kiln_model *m, const char *dir, double *images_per_s,
                                       size_t *images, int *workers);

/* Under mpirun with 2 or more ranks (*ranks gets their number; 1
 * otherwise, and nothing is measured), every rank calling it: allreduce
 * times and bandwidth, and for each model file a training step of its
 * batch split across the ranks and its gradient exchange alone, written
 * by rank 0 through fn. */
KILN_API kiln_status kiln_bench_dist(const char *selector, const char *const *models,
                                     size_t n_models, kiln_write_fn fn, void *user, int *ranks);

#ifdef __cplusplus
}
#endif

#endif /* KILN_TOOLS_H */
