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
#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(KILN_BUILDING_LIBRARY)
#define KILN_API __declspec(dllexport)
#elif defined(_WIN32)
#define KILN_API __declspec(dllimport)
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

/* kiln's version: the macros are the header's, kiln_version() the
 * library's ("MAJOR.MINOR.PATCH"); a program can compare the two. */
#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 2
#define KILN_VERSION_PATCH 0
KILN_API const char *kiln_version(void);

/* Where kiln's printing calls write: fn gets each piece of text, in order,
 * with user passed back (a FILE *, a string builder, a Python callback).
 * A NULL fn writes nothing. */
typedef void (*kiln_write_fn)(void *user, const char *text);

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

/* Profiles, traces, the kernel cache's statistics, GEMM tuning and engines,
 * and benchmarks are tooling calls: kiln_tools.h. */

/* ---- matrix products ---------------------------------------------------- */

typedef enum { KILN_NO_TRANS = 0, KILN_TRANS = 1 } kiln_transpose;

/* C = alpha * op(A) * op(B) + beta * C for 2-d row-major tensors, where
 * op(X) is X or its transpose. op(A) is m x k, op(B) is k x n, C is m x n;
 * shapes that disagree are KILN_ERR_SHAPE naming all three. */
KILN_API kiln_status kiln_gemm(kiln_ctx *ctx, kiln_transpose trans_a, kiln_transpose trans_b,
                               float alpha, const kiln_tensor *a, const kiln_tensor *b,
                               float beta, kiln_tensor *c);

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
 *     const char *input[] = {"shape", "784", NULL};
 *     const char *hidden[] = {"out", "256", NULL};
 *     kiln_model_add(m, "input", input);
 *     kiln_model_add(m, "linear", hidden);
 * The layer's shape is checked at once; errors name "layer N [kind]". */
KILN_API kiln_status kiln_model_add(kiln_model *m, const char *layer, const char *const *kv);

/* Writes the model as model-file text: every section as it was added
 * (from a file or by kiln_model_add), then [train] with the settings as
 * they are now (kiln_model_set_train's and kiln_net_configure's
 * included). kiln_model_parse of the text gives the same model. Values
 * are one line each: kiln_model_add refuses line breaks. */
KILN_API kiln_status kiln_model_text(const kiln_model *m, kiln_write_fn fn, void *user);

/* The model a checkpoint carries: kiln_net_save and kiln train write the
 * model's text into the safetensors metadata (key "model"), so the file
 * alone gives back the model, to load the weights into. A checkpoint
 * without it (an older kiln's, PyTorch's) is KILN_ERR_MODEL saying so. */
KILN_API kiln_status kiln_model_from_checkpoint(const char *path, kiln_model **out);

KILN_API void kiln_model_free(kiln_model *m);

KILN_API size_t kiln_model_layer_count(const kiln_model *m);

/* Trainable parameters and buffer values, as PyTorch counts them. */
KILN_API uint64_t kiln_model_param_count(const kiln_model *m);
KILN_API uint64_t kiln_model_buffer_count(const kiln_model *m);

/* A sequence model ([input] tokens = V, block = T) takes samples of T
 * token ids, each a whole number in [0, V) stored as a float: inputs and
 * targets are (n, T) arrays, outputs (n, T, V). These give V and T, and 0
 * for a model of another input. */
KILN_API size_t kiln_model_vocab(const kiln_model *m);
KILN_API size_t kiln_model_block(const kiln_model *m);

/* A value of the [train] section, or NULL. */
KILN_API const char *kiln_model_train_setting(const kiln_model *m, const char *key);

/* Checks every key and value of the [train] section as training would
 * read them; an error names the file, the line and what was expected. */
KILN_API kiln_status kiln_model_check_train(const kiln_model *m);

/* Every [train] key with the value training uses: the model's, else the
 * default; one "key = value\n" per key. Keys that do not apply (momentum
 * of adam) are written too. An error in the section is its error. */
KILN_API kiln_status kiln_model_train_settings(const kiln_model *m, kiln_write_fn fn,
                                               void *user);

/* Prints a table of the layers (name, kind, input, output shape,
 * parameters) and the totals, like PyTorch's and Keras's summaries. */
KILN_API kiln_status kiln_model_summary(kiln_model *m, kiln_write_fn fn, void *user);

/* Device memory of one training step at a batch size: values, gradients
 * and saved tensors in the planned arena against one buffer each, and the
 * parameters with their gradients and buffers. Needs no device. */
KILN_API kiln_status kiln_model_memory(kiln_model *m, size_t batch, kiln_write_fn fn,
                                       void *user);

/* The lowered graph, with fused layers merged, in Graphviz's dot. */
KILN_API kiln_status kiln_model_dot(kiln_model *m, kiln_write_fn fn, void *user);

/* ---- networks in memory ------------------------------------------------------ */

/* A network is a model compiled onto a context: its pipeline, parameters,
 * buffers, optimizer state and mode, working on host arrays. Any batch of
 * 1 to max_batch samples works: a batch smaller than the largest runs on a
 * pipeline of its own size that shares the same weights, so a short batch
 * means what it means in PyTorch (its own batch statistics, a mean loss
 * over its samples).
 *
 * Threads: a network belongs to one thread at a time, as does its context;
 * networks on distinct contexts may train in distinct threads at once.
 * The model must outlive the network. */
typedef struct kiln_net kiln_net;

/* Compiles m for batches of up to max_batch samples (0: the batch of the
 * model's [train] section), with parameters initialised from its seed and
 * the optimizer and schedule of its [train] section. */
KILN_API kiln_status kiln_net_create(kiln_ctx *ctx, kiln_model *m, size_t max_batch,
                                     kiln_net **out);
/* Frees the network and its device memory; NULL is ignored. */
KILN_API void kiln_net_free(kiln_net *net);

KILN_API size_t kiln_net_input_size(const kiln_net *net);  /* floats per sample */
KILN_API size_t kiln_net_output_size(const kiln_net *net); /* floats per sample */
KILN_API size_t kiln_net_max_batch(const kiln_net *net);

/* The mode kiln_net_forward runs in: 0, eval (the default: running
 * batchnorm statistics, no dropout), or 1, training (batch statistics,
 * dropout; running statistics are updated as PyTorch's train() does). */
KILN_API kiln_status kiln_net_set_training(kiln_net *net, int training);

/* The network's outputs for n samples (x: n * input_size floats) into y
 * (n * output_size floats): probabilities when the model ends in a
 * softmax, or in a sigmoid trained with bce; the last layer's values
 * otherwise. Any n from 1 works; more than max_batch runs in pieces.
 * Inputs are normalized as the network's normalization says. */
KILN_API kiln_status kiln_net_forward(kiln_net *net, const float *x, size_t n, float *y);

/* One optimizer step on n samples (1 <= n <= max_batch) in training mode.
 * y holds n class indices (as floats) for cross_entropy, and
 * n * output_size targets for mse and bce. *loss (may be NULL) gets the
 * batch's mean loss. The learning rate is the current one (see
 * kiln_net_set_lr); schedules advance only in kiln_net_fit. The update
 * is made only when the loss is finite (and, with anomaly detection, every
 * gradient): a step that fails (KILN_ERR_NUMERIC) leaves the weights and
 * the optimizer's state as they were; batchnorm's running statistics have
 * seen the batch, as in PyTorch. */
KILN_API kiln_status kiln_net_train_step(kiln_net *net, const float *x, const float *y, size_t n,
                                         float *loss);

/* Data parallelism over MPI: mpi_comm points to an MPI_Comm (const void *
 * keeps mpi.h out of this header). Every rank of it calls this together,
 * each with a network of the same model; the network takes rank 0's
 * weights and buffers. Then kiln_net_train_step, called by every rank with
 * its own part of the global batch (any n up to max_batch, 0 included),
 * takes the step of the whole batch on each, gradients averaged across
 * the ranks, and *loss is the whole batch's; with [train] sync_batchnorm,
 * batchnorm normalizes with the whole batch's statistics. kiln_net_fit
 * splits each batch among the ranks, and rank 0 writes the files. NULL:
 * alone again. KILN_ERR_UNSUPPORTED from a kiln built without MPI. */
KILN_API kiln_status kiln_net_set_comm(kiln_net *net, const void *mpi_comm);

/* Where this process stands in a job started by a launcher: Open MPI's
 * mpirun (OMPI_COMM_WORLD_RANK, _LOCAL_RANK, _SIZE), else Slurm's srun
 * (SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS, else SLURM_NTASKS
 * where SLURM_STEP_ID is set: a batch script itself is one process),
 * else PMI (PMI_RANK, PMI_SIZE). lookup is getenv's signature (NULL:
 * the process's environment), so a program or test can hand it another. */
typedef struct {
    int rank;             /* 0 to size - 1 */
    int local_rank;       /* among the job's processes on this node: picks the device */
    int size;             /* 1 when not started by a launcher */
    const char *launcher; /* "mpirun", "slurm", "pmi" or "none" */
} kiln_job;

KILN_API void kiln_job_place(const char *(*lookup)(const char *name), kiln_job *out);

/* Loss and accuracy of n samples in eval mode, without training (y as in
 * kiln_net_train_step). accuracy is NaN for mse. Either output may be NULL. */
KILN_API kiln_status kiln_net_evaluate(kiln_net *net, const float *x, const float *y, size_t n,
                                       double *loss, double *accuracy);

/* The character vocabulary of a network trained on a text: UTF-8, its
 * characters in code-point order, each once (token i is the i-th); NULL
 * for none. kiln_net_fit sets it from a text corpus, checkpoints keep it
 * (metadata "vocab"), and kiln_net_load takes it from a file when the
 * network has none, or refuses a file of another vocabulary. At most
 * [input] tokens characters; NULL clears it. */
KILN_API const char *kiln_net_vocab(const kiln_net *net);
KILN_API kiln_status kiln_net_set_vocab(kiln_net *net, const char *vocab);

/* Text from a token model with a vocabulary: prompt (UTF-8; a character
 * outside the vocabulary is an error naming it) cropped to its last block
 * of tokens, then `tokens` characters, each written to out as it is
 * sampled from the last position's distribution: temperature 0 is greedy,
 * above 0 divides the logits; top_k keeps the k likeliest (0: all, at
 * most the vocabulary). The same seed gives the same text on the same
 * device. Beyond the block the window slides. It runs in eval mode with a
 * KV cache: until the context fills the block, each token costs one
 * position's work; once the window slides, each token runs the whole
 * window (every position moves). An empty prompt starts from a newline. */
KILN_API kiln_status kiln_net_generate(kiln_net *net, const char *prompt, size_t tokens,
                                       double temperature, size_t top_k, uint64_t seed,
                                       kiln_write_fn out, void *user);

/* The weights and buffers as a safetensors file with PyTorch's state_dict
 * names (written to a temporary file, synced and renamed), and back.
 * kiln_net_load reads the weights and buffers only (a file written by
 * PyTorch's safetensors works); a file of another model is refused with
 * every missing or extra tensor and every shape mismatch named. The
 * input normalization kiln stored in the file is restored with it. */
KILN_API kiln_status kiln_net_save(kiln_net *net, const char *path);
KILN_API kiln_status kiln_net_load(kiln_net *net, const char *path);

/* Writes the network as an ONNX model (opset 17, standard operators, its
 * weights inside) that ONNX Runtime and other ONNX readers run: the graph
 * in eval mode (dropout removed, batchnorm with its running statistics),
 * the input normalization as a first Sub and Div, so that it takes raw
 * inputs as kiln_net_forward does, and a symbolic batch dimension. Its
 * output "output" is what `kiln predict` gives: probabilities for a
 * softmax or sigmoid head, and also for a classifier trained with
 * cross_entropy on logits (a Softmax is added); the last layer's values
 * otherwise. The input is "input", of the model's per-sample shape
 * (batch, 1, 28, 28 for shape = 1x28x28). The file is written to a
 * temporary file beside path, synced and renamed: never half a file. A
 * layer with no ONNX form is KILN_ERR_UNSUPPORTED naming it, and nothing
 * is written. */
KILN_API kiln_status kiln_net_export_onnx(kiln_net *net, const char *path);

/* What the network's last layer is as a prediction head. */
typedef enum {
    KILN_HEAD_NONE = 0,    /* outputs are the last layer's values */
    KILN_HEAD_SOFTMAX = 1, /* a trailing softmax: outputs are class probabilities, and
                              cross_entropy trains on the logits before it */
    KILN_HEAD_SIGMOID = 2  /* a trailing sigmoid: outputs are probabilities per label, and
                              bce trains on the logits before it (BCEWithLogitsLoss) */
} kiln_head;
KILN_API kiln_head kiln_net_head(const kiln_net *net);

/* ---- weights by name (state_dict) ---- */

/* One named tensor of a network, as PyTorch's state_dict lists it. */
typedef struct {
    const char *name;            /* "0.weight", "3.running_mean", "fc.bias" */
    int ndim;
    size_t shape[KILN_MAX_DIMS];
    size_t numel;
    int trainable;               /* 1: a parameter; 0: a buffer */
    int is_int64;                /* num_batches_tracked: an int64 scalar in PyTorch */
} kiln_param_info;

/* How many named tensors the network has, and the i-th of them (in
 * state_dict order); the name stays valid while the network lives. */
KILN_API size_t kiln_net_param_count(const kiln_net *net);
KILN_API kiln_status kiln_net_param_info(const kiln_net *net, size_t i, kiln_param_info *out);

/* Reads or writes the named tensor; count must be its element count
 * (an int64 scalar moves as one float). Unknown names are
 * KILN_ERR_INVALID_ARGUMENT naming the tensors there are; non-finite
 * values are refused. */
KILN_API kiln_status kiln_net_get(kiln_net *net, const char *name, float *dst, size_t count);
KILN_API kiln_status kiln_net_set(kiln_net *net, const char *name, const float *src,
                                  size_t count);

/* The gradient of a parameter from the last training step (count: its
 * element count); after a frozen parameter's step, zeros. Buffers have
 * none (KILN_ERR_INVALID_ARGUMENT). */
KILN_API kiln_status kiln_net_grad(kiln_net *net, const char *name, float *dst, size_t count);

/* Freezes (1) or unfreezes (0) a parameter, as requires_grad_(False) does
 * in PyTorch: training steps leave it as it is (no update, no weight
 * decay) and gradient clipping leaves it out. The optimizer's moments of
 * a frozen parameter decay while it is frozen. kiln_net_frozen: 1, 0, or
 * -1 for a name the network does not have. */
KILN_API kiln_status kiln_net_set_frozen(kiln_net *net, const char *name, int frozen);
KILN_API int kiln_net_frozen(const kiln_net *net, const char *name);

/* The optimizer's state, to carry a network to another device or
 * process: how many slots it keeps (sgd with momentum 1, adam and adamw
 * 2, plain sgd 0), each of *count floats in the order of the parameters;
 * a slot read, and written back with the step count (Adam's bias
 * correction follows it). */
KILN_API size_t kiln_net_optimizer_slots(const kiln_net *net, size_t *count);
KILN_API kiln_status kiln_net_get_optimizer_state(kiln_net *net, int slot, float *dst,
                                                  size_t count);
KILN_API kiln_status kiln_net_set_optimizer_state(kiln_net *net, int slot, const float *src,
                                                  size_t count, uint64_t steps);

/* ---- training settings ---- */

/* Sets a [train] key of the network as the model file would ("lr",
 * "optimizer", "momentum", "loss", "clip_norm", "epochs", ...): the value
 * is checked at once. Changing the optimizer resets its state. */
KILN_API kiln_status kiln_net_configure(kiln_net *net, const char *key, const char *value);

/* The learning rate of the next kiln_net_train_step, and the number of
 * optimizer steps taken. */
KILN_API double kiln_net_lr(const kiln_net *net);
KILN_API kiln_status kiln_net_set_lr(kiln_net *net, double lr);
KILN_API uint64_t kiln_net_steps(const kiln_net *net);

/* The input normalization forward and train_step apply, x = (x - mean) /
 * std: count is 1 (one value for every feature) or input_size (one per
 * feature); std values must be above 0. kiln_net_fit sets it from the
 * training data when [train] normalize says so; none is mean 0, std 1. */
KILN_API kiln_status kiln_net_set_normalization(kiln_net *net, const float *mean,
                                                const float *std, size_t count);
/* The normalization in use: *count values each (1 for none: mean 0, std
 * 1) into mean and std, which hold cap values; both NULL: the count only. */
KILN_API kiln_status kiln_net_normalization(const kiln_net *net, float *mean, float *std,
                                            size_t cap, size_t *count);

/* Inputs of forward, train_step and evaluate are always checked for NaN
 * and Inf (KILN_ERR_NUMERIC naming the sample and value). With on, every
 * value and gradient on the device is checked too as it is made (slow),
 * naming the first layer that made one (kiln train --detect-anomaly). */
KILN_API kiln_status kiln_net_set_detect_anomaly(kiln_net *net, int on);

/* Sets a [train] key of a model before it is compiled; the value is
 * checked at once, naming the key and what was expected. */
KILN_API kiln_status kiln_model_set_train(kiln_model *m, const char *key, const char *value);

/* ---- datasets ---- */

/* A dataset in host memory: samples of features floats, each with targets
 * floats (1 for class indices). */
typedef struct kiln_data kiln_data;

/* Copies n samples from arrays: x is n * features floats, y is n * targets
 * floats (class indices 0, 1, ... as floats when targets is 1 and every
 * value is a whole number from 0; NULL for unlabelled data). Non-finite
 * values are refused, naming the sample and feature. */
KILN_API kiln_status kiln_data_from_arrays(const float *x, const float *y, size_t n,
                                           size_t features, size_t targets, kiln_data **out);
/* Reads a dataset: "fashion-mnist", "mnist", a directory of IDX files (split
 * "train" or "test"), an IDX images file alone (unlabelled), a CSV file
 * with a header row (label: the label column's name or index, NULL for
 * "label", "" or "none" for a file without labels; split is ignored), a
 * NumPy .npy features file (label: the labels .npy file, NULL for none;
 * split is ignored), or an .npz archive with its arrays x and y (else
 * x_train and y_train; x_test and y_test for split "test"; label is
 * ignored). NumPy files: float32, float64, uint8, int32 or int64, little-
 * endian, C order; features (n, ...) flattened per sample, uint8 features
 * scaled to [0, 1] as IDX pixels are; labels (n,) of whole numbers from 0
 * are class indices, other labels (n,) or (n, k) targets. An image folder
 * (one folder per class, or train/ and val/ holding them; split "test"
 * reads val/ or test/): PNG and JPEG files at the first image's size and
 * channels, values in [0, 1], labels the classes in sorted folder order. */
KILN_API kiln_status kiln_data_load(const char *source, const char *split, const char *label,
                                    kiln_data **out);
/* An .npz archive's arrays by name: keys is "FEATURES", "FEATURES,LABELS"
 * or "FEATURES,LABELS,TEST_FEATURES,TEST_LABELS" (NULL: as kiln_data_load);
 * split "train" (NULL) or "test". A missing array is an error that lists
 * the arrays the file has. */
KILN_API kiln_status kiln_data_load_npz(const char *path, const char *keys, const char *split,
                                        kiln_data **out);
KILN_API void kiln_data_free(kiln_data *d);
KILN_API size_t kiln_data_count(const kiln_data *d);
KILN_API size_t kiln_data_features(const kiln_data *d);
KILN_API size_t kiln_data_targets(const kiln_data *d);
/* 1 + the largest class index for class labels; 0 otherwise. */
KILN_API size_t kiln_data_classes(const kiln_data *d);
/* 0 for data without labels (features only; its targets read as 0), else 1. */
KILN_API int kiln_data_labelled(const kiln_data *d);
/* Copies the features (count * features floats) or the targets (count *
 * targets floats) of samples first .. first + count - 1 into dst. */
KILN_API kiln_status kiln_data_copy_features(const kiln_data *d, size_t first, size_t count,
                                             float *dst);
KILN_API kiln_status kiln_data_copy_targets(const kiln_data *d, size_t first, size_t count,
                                            float *dst);

/* Images for a network (kiln predict): an image folder (its val/ or test/
 * folder if it has one, else every class), a folder of PNG and JPEG files
 * or one such file (unlabelled), each converted to the network's input
 * channels and resized and center-cropped to its height and width as its
 * [train] resize says. Needs an input of shape CxHxW, C 1 or 3. */
KILN_API kiln_status kiln_net_load_images(const kiln_net *net, const char *path,
                                          kiln_data **out);
/* The name of class i when the network was trained on (or loaded from a
 * checkpoint of) an image folder: its class folder's name; else NULL. */
KILN_API const char *kiln_net_class_name(const kiln_net *net, size_t i);
/* The file sample i of images in memory came from (kiln_net_load_images,
 * kiln_data_load of an image folder); NULL for other data. */
KILN_API const char *kiln_data_file(const kiln_data *d, size_t i);

/* ---- training --------------------------------------------------------------- */

/* What a training run reports as it goes, to kiln_train_options' on_step
 * (after each batch) and on_epoch (after each epoch's validation). */
typedef struct {
    int epoch, epochs;      /* from 1 */
    size_t batch, batches;  /* batches done in this epoch (from 1), and in all */
    uint64_t step;          /* optimizer steps taken */
    double loss;            /* on_step: the batch's loss; on_epoch: the epoch's mean */
    double accuracy;        /* the same for accuracy; NaN for mse */
    double val_loss;        /* on_epoch; NaN without validation data */
    double val_accuracy;
    double lr;
    double seconds;         /* on_epoch: the epoch's time */
    int best;               /* on_epoch: 1 when its validation loss is the best so far */
    double val_mae, val_r2; /* on_epoch, mse: the validation data's mean absolute error and
                               R² (per output, averaged); NaN otherwise */
} kiln_progress;

/* Returns 0 to go on; anything else stops training after this batch, as a
 * stop request does (the state is saved and the run reports interrupted). */
typedef int (*kiln_progress_fn)(void *user, const kiln_progress *p);

/* Options of a training run. Initialise with kiln_train_options_init, then
 * set fields: fields added in later versions keep their defaults for
 * programs built against this header. */
typedef struct {
    size_t size;           /* set by kiln_train_options_init */
    const char *data;      /* "fashion-mnist", "mnist", a directory of IDX files, a CSV, a
                              .npy features file or an .npz (see kiln_data_load) */
    const char *label;     /* CSV: the label column's name or index (default "label");
                              .npy: the labels .npy file */
    const kiln_data *train_data; /* in-memory data instead of data (val_data, test_data */
    const kiln_data *val_data;   /* optional; without val_data the [train] val share of */
    const kiln_data *test_data;  /* train_data is held out) */
    const char *out_dir;   /* best/last/final.safetensors, log.csv; NULL: none */
    const char *resume;    /* the out_dir of an earlier run to go on from exactly */
    int epochs;            /* these override the model's [train] section when > 0 */
    int batch;
    double lr;
    size_t limit;          /* > 0: use at most this many samples of each split */
    size_t stop_after;     /* > 0: stop as a stop request would after this many batches */
    int detect_anomaly;    /* check every value and gradient for NaN/Inf as it is made (slow) */
    const char *profile;   /* write a Chrome trace of training steps 2 to 6 here, and print
                              device time per layer to log */
    int progress;          /* redraw a progress line (for terminals) */
    kiln_write_fn log;     /* human-readable progress; NULL: quiet */
    void *log_user;
    kiln_progress_fn on_step, on_epoch; /* NULL: none */
    void *user;                         /* handed to on_step and on_epoch */
    volatile sig_atomic_t *stop; /* when it becomes nonzero, training stops after the current
                                    batch and saves its state (set it from a signal handler
                                    or another thread); NULL: none */
    const char *npz_keys;  /* .npz: the arrays, as kiln_data_load_npz's keys; NULL: x and y
                              (else x_train and y_train), with x_test and y_test as the
                              test split when the file has them */
    int keep_last;         /* 0 (the default): end on the weights of the epoch with the best
                              validation loss; 1: keep the last epoch's */
    int steps;             /* > 0: overrides [train] steps (token models train by steps) */
} kiln_train_options;

KILN_API void kiln_train_options_init(kiln_train_options *o);

typedef struct {
    int epochs_run;
    int best_epoch;        /* from 1 */
    int stopped_early;
    int interrupted;       /* a stop request or a callback ended it */
    double best_val_loss;
    double test_loss, test_accuracy; /* on the test split, with the best weights; NaN
                                        without test data */
    double seconds;
    double samples_per_second;       /* training samples per second of training */
    /* token models, trained by steps: */
    uint64_t steps_run;              /* optimizer steps taken in all (a resumed run's too) */
    uint64_t best_step;              /* the evaluation with the lowest validation loss */
    double tokens_per_second;        /* training tokens (batch x block) per second */
} kiln_train_report;

/* Trains the network in place as its [train] settings say (loss,
 * optimizer, schedule, clipping, early stopping, seed) on the chosen data,
 * keeps the weights of the best validation loss (unless keep_last is
 * set), and evaluates them on the test data. Every batch trains, the last
 * short one included. The batch is the options', else [train]'s; a
 * [train] batch above the network's max_batch trains at max_batch and the
 * log says so, an options' batch above it is an error. */
KILN_API kiln_status kiln_net_fit(kiln_net *net, const kiln_train_options *o,
                                  kiln_train_report *report);

/* kiln_net_fit on a network made for the model's [train] batch and freed
 * afterwards: what `kiln train` runs. */
KILN_API kiln_status kiln_train(kiln_ctx *ctx, kiln_model *m, const kiln_train_options *o,
                                kiln_train_report *report);

/* Draws a run's per-epoch log as an SVG image: loss, accuracy (for mse,
 * validation MAE and R²) and learning rate against epoch, the best epoch
 * (lowest validation loss) marked. run is a run directory holding log.csv,
 * or a log.csv path; svg_path NULL writes curves.svg beside the log. The
 * file is replaced atomically, so it can be viewed while a run writes it
 * (kiln_net_fit redraws OUT_DIR/curves.svg after each epoch). A malformed
 * or empty log is KILN_ERR_IO naming the file and line. Needs no context;
 * any thread. */
KILN_API kiln_status kiln_plot(const char *run, const char *svg_path);

/* Writes the file path whole or not at all, as kiln writes its own files:
 * fill writes the contents to f, a temporary file beside path, which is
 * then flushed to disk, renamed over path, and its directory synced. A
 * path that exists and is not a regular file (/dev/stdout, a pipe) is
 * written in place. fill returns KILN_OK, or a status (with
 * kiln_last_error's text) to give up; path is then as it was. A write that
 * fails is KILN_ERR_IO naming path and the system's reason (a full disk:
 * "No space left on device"). Any thread. */
typedef kiln_status (*kiln_fill_fn)(void *user, FILE *f);
KILN_API kiln_status kiln_write_file_atomic(const char *path, kiln_fill_fn fill, void *user);

/* Loss and accuracy of a checkpoint on the test split of a dataset
 * directory, or on every row of a CSV file (or the options' test_data),
 * with the normalization stored in the checkpoint; with confusion (classes
 * x classes, row = true class), the confusion matrix. Accuracy is NaN for
 * mse, which reports the mean absolute error and R² (per output, averaged)
 * instead. */
typedef struct {
    size_t samples, classes;
    double loss, accuracy;
    size_t *confusion;     /* classes x classes, to kiln_free */
    double mae, r2;        /* mse; NaN otherwise */
} kiln_eval_report;

KILN_API kiln_status kiln_evaluate(kiln_ctx *ctx, kiln_model *m, const char *checkpoint,
                                   const kiln_train_options *o, kiln_eval_report *report);


#ifdef __cplusplus
}
#endif

#endif /* KILN_H */
