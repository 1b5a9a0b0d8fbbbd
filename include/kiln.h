/*
 * kiln — a deep-learning framework in C on OpenCL.
 *
 * Public C API. Every fallible call returns a kiln_status; KILN_OK is zero.
 * On failure, kiln_last_error() returns a message for the calling thread
 * that names what failed: the OpenCL or CLBlast call and its error by name
 * ("clBuildProgram: CL_BUILD_PROGRAM_FAILURE" followed by the build log),
 * or the tensor, shape or file that was wrong. The library never exits or
 * aborts on bad input.
 *
 * A typical program:
 *
 *     kiln_ctx *ctx;
 *     if (kiln_ctx_create(NULL, &ctx) != KILN_OK) {   // KILN_DEVICE or default
 *         fprintf(stderr, "%s\n", kiln_last_error());
 *         return 1;
 *     }
 *     size_t shape[2] = {128, 784};
 *     kiln_tensor *x;
 *     kiln_tensor_create(ctx, 2, shape, &x);
 *     kiln_tensor_upload(x, host_data, 128 * 784);
 *     ...
 *     kiln_tensor_free(x);
 *     kiln_ctx_free(ctx);
 *
 * Handles are opaque. A context and everything made from it belong to one
 * thread at a time; distinct contexts may be used from distinct threads.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define KILN_API __declspec(dllexport)
#else
#define KILN_API __attribute__((visibility("default")))
#endif

/* ---- status codes ------------------------------------------------------ */

#define KILN_STATUS_LIST(X)                                                   \
    X(KILN_OK, "ok")                                                          \
    X(KILN_ERR_INVALID_ARGUMENT, "invalid argument")                          \
    X(KILN_ERR_NO_PLATFORM, "no OpenCL platform")                             \
    X(KILN_ERR_NO_DEVICE, "no such OpenCL device")                            \
    X(KILN_ERR_OPENCL, "OpenCL error")                                        \
    X(KILN_ERR_BUILD, "kernel build failed")                                  \
    X(KILN_ERR_BLAS, "CLBlast error")                                         \
    X(KILN_ERR_OUT_OF_MEMORY, "out of memory")                                \
    X(KILN_ERR_TOO_LARGE, "size exceeds a device limit")                      \
    X(KILN_ERR_SHAPE, "shape mismatch")                                       \
    X(KILN_ERR_IO, "file error")                                              \
    X(KILN_ERR_MODEL, "invalid model")                                        \
    X(KILN_ERR_NUMERIC, "not a finite number")                                \
    X(KILN_ERR_UNSUPPORTED, "not supported")

typedef enum {
#define KILN_STATUS_ENUM(name, text) name,
    KILN_STATUS_LIST(KILN_STATUS_ENUM)
#undef KILN_STATUS_ENUM
    KILN_STATUS_COUNT
} kiln_status;

/* A short fixed description of a status code ("invalid argument"). */
KILN_API const char *kiln_status_str(kiln_status status);

/* The detailed message of the last failure on this thread ("" if none). */
KILN_API const char *kiln_last_error(void);

/* kiln's version, "MAJOR.MINOR.PATCH". */
KILN_API const char *kiln_version(void);

/* ---- devices ----------------------------------------------------------- */

typedef enum {
    KILN_DEVICE_CPU = 1,
    KILN_DEVICE_GPU = 2,
    KILN_DEVICE_ACCELERATOR = 4,
    KILN_DEVICE_OTHER = 8
} kiln_device_type;

/* What kiln knows of one OpenCL device; every field is read from the driver. */
typedef struct {
    unsigned platform_index;  /* position of the platform in the ICD list */
    unsigned device_index;    /* position of the device in its platform */
    unsigned global_index;    /* position among all devices ("--device N") */
    char platform[128];
    char platform_version[128];
    char name[128];
    char vendor[128];
    char driver_version[128];
    char device_version[128]; /* "OpenCL 3.0 PoCL ..." */
    char opencl_c_version[64];
    kiln_device_type type;
    unsigned compute_units;
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_alloc_bytes;
    size_t max_work_group_size;
    unsigned mem_base_align_bits;
    int fp64;
    int fp16;
} kiln_device_info;

/* Lists every device of every platform. On success *out is an array of
 * *count entries, to be released with kiln_free(). Platforms that expose no
 * device are skipped; no platform at all is KILN_ERR_NO_PLATFORM with a
 * message on how to install an OpenCL driver. */
KILN_API kiln_status kiln_devices(kiln_device_info **out, size_t *count);

/* Picks a device from a selector: NULL or "" means $KILN_DEVICE, and when
 * that is unset too, the first GPU, else the first CPU, else the first
 * device. A selector is an index among all devices ("1"), a platform:device
 * pair ("1:0"), or a case-insensitive substring of the platform, device or
 * vendor name or of the type ("pocl", "nvidia", "gpu", "cpu"). */
KILN_API kiln_status kiln_device_select(const char *selector, kiln_device_info *out);

/* "CPU", "GPU", "accelerator" or "other". */
KILN_API const char *kiln_device_type_str(kiln_device_type type);

/* Releases memory returned by kiln (device lists). */
KILN_API void kiln_free(void *ptr);

/* ---- context ----------------------------------------------------------- */

typedef struct kiln_ctx kiln_ctx;

/* Opens a context and an in-order queue on the device the selector picks
 * (see kiln_device_select). */
KILN_API kiln_status kiln_ctx_create(const char *selector, kiln_ctx **out);
KILN_API void kiln_ctx_free(kiln_ctx *ctx);
KILN_API const kiln_device_info *kiln_ctx_device(const kiln_ctx *ctx);

/* Waits for all queued work on the context's queue. */
KILN_API kiln_status kiln_ctx_finish(kiln_ctx *ctx);

/* How many kernels, CLBlast calls and device copies the context has
 * enqueued; differences count the launches of a piece of work. */
KILN_API uint64_t kiln_ctx_launches(const kiln_ctx *ctx);

/* Prints every launch (kernel and its range, CLBlast GEMM and its sizes,
 * copy) to out as it is enqueued; NULL stops. */
KILN_API void kiln_ctx_set_trace(kiln_ctx *ctx, FILE *out);

/* Statistics of the kernel-program cache, for tests and `kiln devices -v`. */
typedef struct {
    unsigned memory_hits; /* program found in this context's memory cache */
    unsigned disk_hits;   /* program loaded from a cached binary */
    unsigned builds;      /* program compiled from source */
    unsigned disk_rejects; /* cache files found unusable and rebuilt */
} kiln_cache_stats;

KILN_API kiln_cache_stats kiln_ctx_cache_stats(const kiln_ctx *ctx);

/* Builds (or loads from cache) the program of an embedded kernel source,
 * e.g. "tensor.cl", with build options such as "-DVEC=4". Exposed so tools
 * can warm the cache; operators do this on first use by themselves. */
KILN_API kiln_status kiln_program_prepare(kiln_ctx *ctx, const char *source,
                                          const char *options);

/* The directory of the on-disk kernel cache: $KILN_CACHE_DIR, else
 * $XDG_CACHE_HOME/kiln, else ~/.cache/kiln. Writes at most size bytes. */
KILN_API kiln_status kiln_cache_dir(char *buf, size_t size);

/* ---- tensors ----------------------------------------------------------- */

#define KILN_MAX_DIMS 4

typedef struct kiln_tensor kiln_tensor;

/* A float32 device tensor of ndim (1..4) dimensions, row-major (NCHW).
 * Contents are undefined until written. Every dimension must be >= 1. */
KILN_API kiln_status kiln_tensor_create(kiln_ctx *ctx, int ndim, const size_t *shape,
                                        kiln_tensor **out);
KILN_API void kiln_tensor_free(kiln_tensor *t);

KILN_API int kiln_tensor_ndim(const kiln_tensor *t);
KILN_API size_t kiln_tensor_dim(const kiln_tensor *t, int axis);
KILN_API size_t kiln_tensor_numel(const kiln_tensor *t);

/* Writes "2x3x4" into buf (at most size bytes), for messages. */
KILN_API const char *kiln_tensor_shape_str(const kiln_tensor *t, char *buf, size_t size);

/* Copies count floats between host memory and the tensor; count must equal
 * the tensor's element count. Upload returns once the host memory may be
 * reused; download returns once the data is on the host. */
KILN_API kiln_status kiln_tensor_upload(kiln_tensor *t, const float *src, size_t count);
KILN_API kiln_status kiln_tensor_download(const kiln_tensor *t, float *dst, size_t count);

/* Sets every element to value. */
KILN_API kiln_status kiln_tensor_fill(kiln_tensor *t, float value);

/* Copies src into dst; both must have the same element count. */
KILN_API kiln_status kiln_tensor_copy(kiln_tensor *dst, const kiln_tensor *src);

/* ---- matrix products ---------------------------------------------------- */

typedef enum { KILN_NO_TRANS = 0, KILN_TRANS = 1 } kiln_transpose;

/* C = alpha * op(A) * op(B) + beta * C for 2-d row-major tensors, where
 * op(X) is X or its transpose. op(A) is m x k, op(B) is k x n, C is m x n;
 * shapes that disagree are KILN_ERR_SHAPE naming all three. */
KILN_API kiln_status kiln_gemm(kiln_ctx *ctx, kiln_transpose trans_a, kiln_transpose trans_b,
                               float alpha, const kiln_tensor *a, const kiln_tensor *b,
                               float beta, kiln_tensor *c);

/* Profiles: between begin and end every launch on ctx is recorded with the
 * layer that made it; end waits for the queue, then writes a Chrome trace
 * (chrome://tracing, Perfetto) to trace_path when given, and device time
 * per layer, divided by steps, to totals when given. */
KILN_API kiln_status kiln_ctx_profile_begin(kiln_ctx *ctx);
KILN_API kiln_status kiln_ctx_profile_end(kiln_ctx *ctx, const char *trace_path, size_t steps,
                                          FILE *totals);

/* Tuning: what `kiln tune` found best for a device, kept as one record per
 * device (name, driver, platform and CLBlast version) in kiln's cache
 * directory and applied by kiln_ctx_create unless $KILN_TUNE is "off". A
 * stale or corrupt record is ignored with a warning. */
#define KILN_XGEMM_PARAMS 16
typedef struct {
    int has_xgemm;
    size_t xgemm[KILN_XGEMM_PARAMS]; /* CLBlast's Xgemm parameters, named below */
    int has_min_indirect;
    size_t min_indirect;             /* CLBlast's XGEMM_MIN_INDIRECT_SIZE */
    int engine;                      /* a kiln_gemm_engine; AUTO leaves the default */
} kiln_tuning;

/* "GEMMK", "KREG", "KWG", ...: the names of kiln_tuning.xgemm, in order. */
KILN_API const char *kiln_xgemm_param_name(int i);
/* Hands a tuning to CLBlast for ctx's device and picks its engine. */
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

/* ---- models -------------------------------------------------------------- */

/* A model is an ordered list of layers, from a model file or built here.
 * Both ways go through the same code, so they give the same model. */
typedef struct kiln_model kiln_model;

/* Reads a model file (INI: [input] shape = ..., then one section per
 * layer). Every mistake is KILN_ERR_MODEL with a message that names the
 * file, the line, the key and what was expected. */
KILN_API kiln_status kiln_model_load(const char *path, kiln_model **out);

/* The same from text in memory; name stands for the file in messages. */
KILN_API kiln_status kiln_model_parse(const char *text, const char *name, kiln_model **out);

/* An empty model, to be built with kiln_model_add. */
KILN_API kiln_status kiln_model_create(kiln_model **out);

/* Adds a layer as a model file's section would: layer is "input",
 * "linear", "relu", ..., or "train"; kv is NULL or a NULL-terminated list
 * of key, value strings:
 *     kiln_model_add(m, "input", (const char *[]){"shape", "784", NULL});
 *     kiln_model_add(m, "linear", (const char *[]){"out", "256", NULL});
 * The layer's shape is checked at once; errors name "layer N [kind]". */
KILN_API kiln_status kiln_model_add(kiln_model *m, const char *layer, const char *const *kv);

KILN_API void kiln_model_free(kiln_model *m);

KILN_API size_t kiln_model_layer_count(const kiln_model *m);

/* Trainable parameters and buffer values, as PyTorch counts them. */
KILN_API uint64_t kiln_model_param_count(const kiln_model *m);
KILN_API uint64_t kiln_model_buffer_count(const kiln_model *m);

/* A value of the [train] section, or NULL. */
KILN_API const char *kiln_model_train_setting(const kiln_model *m, const char *key);

/* Prints a table of the layers (name, kind, input, output shape,
 * parameters) and the totals, like PyTorch's and Keras's summaries. */
KILN_API kiln_status kiln_model_summary(kiln_model *m, FILE *out);

/* Device memory of one training step at a batch size: values, gradients
 * and saved tensors in the planned arena against one buffer each, and the
 * parameters with their gradients and buffers. Needs no device. */
KILN_API kiln_status kiln_model_memory(kiln_model *m, size_t batch, FILE *out);

/* The lowered graph, with fused layers merged, in Graphviz's dot. */
KILN_API kiln_status kiln_model_dot(kiln_model *m, FILE *out);

/* Runs one training step (forward, loss, backward) of a batch of random
 * data on ctx and prints every launch under the layer it belongs to;
 * fused selects the fused pipeline. */
KILN_API kiln_status kiln_model_trace_step(kiln_model *m, kiln_ctx *ctx, size_t batch,
                                           int fused, FILE *out);

/* Runs `steps` training steps of random data (after a warm-up step) and
 * prints the device time of each layer per step, largest first. */
KILN_API kiln_status kiln_model_profile_steps(kiln_model *m, kiln_ctx *ctx, size_t batch,
                                              int steps, FILE *out);

/* A matrix product: C (m x n) = op(A) (m x k) op(B) (k x n). */
typedef struct {
    kiln_transpose ta, tb;
    size_t m, n, k;
} kiln_gemm_shape;

/* The distinct matrix products of one training step of m at this batch
 * size (at most cap of them) into out. */
KILN_API kiln_status kiln_model_gemm_shapes(kiln_model *m, kiln_ctx *ctx, size_t batch,
                                            kiln_gemm_shape *out, size_t cap, size_t *count);

/* ---- training --------------------------------------------------------------- */

typedef struct {
    const char *data;      /* "fashion-mnist", "mnist", a directory of IDX files, or a CSV */
    const char *label;     /* CSV: the label column's name or index (default "label") */
    const char *out_dir;   /* best/last/final.safetensors, log.csv; NULL: none */
    const char *resume;    /* the out_dir of an earlier run to go on from exactly */
    int epochs;            /* these override the model's [train] section when > 0 */
    int batch;
    double lr;
    size_t limit;          /* > 0: use at most this many samples of each split */
    size_t stop_after;     /* > 0: stop as kiln_request_stop() would after this many batches */
    int detect_anomaly;    /* check every value and gradient for NaN/Inf as it is made (slow) */
    const char *profile;   /* write a Chrome trace of training steps 2 to 6 here, and print
                              device time per layer to log */
    int progress;          /* redraw a progress line (for terminals) */
    FILE *log;             /* human-readable progress; NULL: quiet */
} kiln_train_options;

typedef struct {
    int epochs_run;
    int best_epoch;        /* from 1 */
    int stopped_early;
    int interrupted;       /* kiln_request_stop() ended it */
    double best_val_loss;
    double test_loss, test_accuracy; /* on the test split, with the best weights */
    double seconds;
    double samples_per_second;       /* training samples per second of training */
} kiln_train_report;

/* Trains the model as its [train] section says (loss, optimizer, schedule,
 * clipping, early stopping, seed) on the chosen data, keeps the weights of
 * the best validation loss, and evaluates them on the test split. */
KILN_API kiln_status kiln_train(kiln_ctx *ctx, kiln_model *m, const kiln_train_options *o,
                                kiln_train_report *report);

/* Asks a running kiln_train to stop after its current batch and save a
 * checkpoint; safe to call from a signal handler. */
KILN_API void kiln_request_stop(void);

/* Loss and accuracy of a checkpoint on the test split of data; with
 * confusion (classes x classes, row = true class), the confusion matrix. */
typedef struct {
    size_t samples, classes;
    double loss, accuracy;
    size_t *confusion;     /* classes x classes, to kiln_free */
} kiln_eval_report;

KILN_API kiln_status kiln_evaluate(kiln_ctx *ctx, kiln_model *m, const char *checkpoint,
                                   const kiln_train_options *o, kiln_eval_report *report);

/* Prints the predictions of a checkpoint for the first count samples of
 * input (an IDX images file, gzipped or not, or a CSV file with a header
 * row; label names a column to leave out): the class and the probability
 * of each class for classifiers, the outputs otherwise. */
KILN_API kiln_status kiln_predict(kiln_ctx *ctx, kiln_model *m, const char *checkpoint,
                                  const char *input, const char *label, size_t count, FILE *out);

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

/* Training throughput of model m (random data, batch from its [train]
 * section unless batch > 0): samples per second over a few steps. */
KILN_API kiln_status kiln_bench_training(kiln_ctx *ctx, kiln_model *m, size_t batch,
                                         double *samples_per_s);

#ifdef __cplusplus
}
#endif

#endif /* KILN_H */
