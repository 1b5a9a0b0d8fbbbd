/* The runtime (src/runtime/): errors, devices, contexts (OpenCL context,
 * in-order queue, kernel cache), kernel programs and launches, tensors and
 * shapes, launch profiles, and the host helpers (files.c, rng.c).
 *
 * It is kiln's bottom layer: it may call OpenCL and the C library, and
 * nothing else of kiln. It knows nothing of GEMM engines, tuning, layers or
 * training; the layers above keep their per-context state in the context's
 * attachment slots (ctx_attach). Not installed. */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <CL/cl.h>

#include <stdio.h>

#include "kiln.h"
#include "kiln_tools.h"

/* ---- errors (error.c) --------------------------------------------------- */

/* Sets the thread's last-error message (printf-style) and returns status. */
kiln_status error_set(kiln_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Fails with KILN_ERR_OPENCL (or KILN_ERR_OUT_OF_MEMORY for allocation
 * errors) naming the call and the error: "clCreateBuffer: CL_INVALID_VALUE". */
kiln_status error_cl(cl_int err, const char *call);

/* error_cl followed by " (context)", the context printf-style:
 * "clCreateKernel: CL_INVALID_KERNEL_NAME (kernel \"fill\" of tensor.cl)". */
kiln_status error_cl_in(cl_int err, const char *call, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends printf-style text to the last-error message (e.g. a build log). */
void error_append(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Clears the last-error message. */
void error_clear(void);

/* "CL_OUT_OF_RESOURCES" for -5; "unknown OpenCL error -9999" otherwise. */
const char *cl_error_name(cl_int err);

/* ---- devices (device.c) ------------------------------------------------ */

/* Finds the cl_device_id of a listed device. */
kiln_status device_id(const kiln_device_info *info, cl_device_id *out);

/* ---- kernel programs (program.c) --------------------------------------- */

/* Creates a directory and its parents, like mkdir -p; 0 on success
 * (files.c). */
int make_dirs(const char *dir);

/* The directory part of path into dir ("." for a bare name, "/" for a
 * file at the root). */
void dir_of(const char *path, char *dir, size_t size);

/* Writes all n bytes to fd, retrying short writes; 0 on success. */
int write_all(int fd, const void *data, size_t n);

/* What a file written whole holds: fill writes it to fd and returns
 * KILN_OK, or a status with its own message (fail_write for a write that
 * failed). path is the file's final name, for messages. */
typedef kiln_status (*file_fill)(int fd, const char *path, void *user);

/* Writes path whole or not at all: fill writes a temporary file beside it
 * (mode 0644), which is fsync'd, renamed over path (whatever stood
 * there), and the directory fsync'd; on failure path is as it was and the
 * temporary file is gone. Errors are KILN_ERR_IO naming path and the
 * system's reason (files.c). */
kiln_status write_file_atomic(const char *path, file_fill fill, void *user);

/* write_file_atomic for a file the user named: a directory there is an
 * error, and a path that exists and is not a regular file (/dev/stdout, a
 * pipe, /dev/full) is written in place, as a rename would replace it. */
kiln_status write_output(const char *path, file_fill fill, void *user);

/* write_file_atomic and write_output of n bytes. */
kiln_status write_bytes_atomic(const char *path, const void *data, size_t n);
kiln_status write_bytes_output(const char *path, const void *data, size_t n);

/* KILN_ERR_INVALID_ARGUMENT "CALL: NAME is NULL" for the first NULL of
 * the arguments, else KILN_OK: require_args(call, ARG(out), ARG(count),
 * NULL) names them as the header does (error.c). */
#define ARG(p) #p, (const void *)(p)
kiln_status require_args(const char *call, ...);

/* KILN_ERR_IO: "PATH: cannot write (REASON)", the reason from errno err. */
kiln_status fail_write(const char *path, int err);

/* The index of the first NaN or infinity of x[0 .. n), or n if none. */
size_t first_nonfinite(const float *x, size_t n);

/* FNV-1a, 64 bits, for cache file names (program.c). */
uint64_t fnv1a64(const void *data, size_t n);

/* Whether KILN_VERBOSE asks for a line per program build (program.c). */
int verbose_builds(void);

/* Keeps what an OpenCL driver prints to stderr during a build (quiet.c):
 * quiet_begin points stderr at a temporary file (not when verbose),
 * quiet_end restores it and returns what was written there, less
 * clang's "N warnings generated." lines (malloc'd; NULL: nothing). */
typedef struct {
    int saved;  /* the original stderr, or -1 when not capturing */
    FILE *file;
} kiln_quiet;

void quiet_begin(kiln_quiet *q);
char *quiet_end(kiln_quiet *q);

/* Monotonic wall-clock seconds. */
double now_seconds(void);

typedef struct kiln_program_cache kiln_program_cache;
typedef struct kiln_deferred kiln_deferred;

/* The kernel cache of one device of ctx's OpenCL context. */
kiln_status program_cache_create(kiln_ctx *ctx, cl_device_id device, kiln_program_cache **out);
void program_cache_free(kiln_program_cache *cache);

/* Returns a kernel of an embedded source built with options, in a program
 * that holds that kernel alone (or the kernels a batch asked for together,
 * see launch.c); the kernel is owned by the context's cache (do not release
 * it). Within a batch, a kernel not built yet is a placeholder that only
 * the launches below take. */
kiln_status kernel_get(kiln_ctx *ctx, const char *source, const char *options,
                            const char *kernel, cl_kernel *out);

/* While held, binaries of newly compiled programs wait for the last
 * release (or the context's end) to be written to the disk cache, so that
 * a network's first batch does not wait for them (see save_unsaved in
 * program.c). Holds nest. */
void programs_hold(kiln_ctx *ctx);
void programs_release(kiln_ctx *ctx);

/* Builds (or finds) the program of source and options holding the kernels
 * named in a space-separated list. */
kiln_status program_group(kiln_ctx *ctx, const char *source, const char *options,
                          const char *kernels);
/* Of n requests, each a source, options and a space-separated list of
 * its kernels, builds those whose sources and options fit together as one
 * program each (program.c); a request that fits with no other, or whose
 * bundle does not build, is left to program_group. Fails only when out of
 * memory. */
kiln_status program_bundle_build(kiln_ctx *ctx, size_t n, const char *const *sources,
                                 const char *const *options, const char *const *kernels);
/* Whether kernel's program is in the memory cache. */
int program_built(const kiln_ctx *ctx, const char *source, const char *options,
                  const char *kernel);

/* Whether a network holds the cache (programs_hold). */
int programs_held(const kiln_ctx *ctx);

/* While the cache is held, kernels whose programs are not built wait, with
 * every launch after the first of them, until programs_flush builds them
 * (one program per source and options) and enqueues the launches in order
 * (launch.c). Anything that enqueues on the queue, waits for it or reads
 * from it outside launch.c flushes first. */
kiln_status programs_flush(kiln_ctx *ctx);
/* programs_flush where no caller can be told of a failure: the next
 * programs_flush returns it. */
void programs_flush_quietly(kiln_ctx *ctx);
/* Releases buf, after the waiting launches when there are some. */
void programs_release_buffer(kiln_ctx *ctx, cl_mem buf);
int defer_wanted(kiln_ctx *ctx);
kiln_status defer_kernel(kiln_ctx *ctx, const char *source, const char *options,
                         const char *kernel, cl_kernel *out);
void deferred_free(kiln_ctx *ctx);

/* The embedded kernel sources (generated from cl/ at build time). */
typedef struct {
    const char *name; /* "tensor.cl" */
    const char *text; /* starts with #line 1 "cl/tensor.cl" */
} kiln_cl_source;

extern const kiln_cl_source kiln_cl_sources[];
extern const size_t kiln_cl_source_count;

/* ---- context ------------------------------------------------------------ */

typedef struct kiln_profile kiln_profile;

/* Per-context state of a layer above the runtime, freed with the context
 * by its free function. Each layer owns one slot (blas/blas.h:
 * KILN_SLOT_BLAS). */
#define KILN_CTX_SLOTS 4
typedef struct {
    void *state;
    void (*free_fn)(void *state);
} kiln_ctx_slot;

/* Where a printing call writes (kiln_write_fn and its user pointer). */
typedef struct {
    kiln_write_fn fn;
    void *user;
} kiln_writer;

/* printf-style text to w; nothing when w or its fn is NULL (error.c). */
void writef(const kiln_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A kiln_write_fn that writes to the FILE * given as user. */
void write_to_file(void *file, const char *text);

/* Buffers of freed tensors, kept for the next tensor of the same size
 * (tensor.c): a training step creates and frees the same temporaries every
 * step, and a new buffer costs the driver an allocation and fresh pages at
 * its first use. The context's one in-order queue makes reuse safe. */
#define KILN_SPARE_BUFFERS 32
typedef struct {
    cl_mem buf[KILN_SPARE_BUFFERS]; /* oldest first */
    size_t bytes[KILN_SPARE_BUFFERS];
    int count;
    size_t total;
} kiln_spares;

#define ATTN_ROWS_MAX 64 /* attention's rows per work-item (CPUs) or work-group (GPUs): 1 to this */

/* One device's part of a context: its in-order queue, its kernel cache and
 * the launches waiting for their programs. */
typedef struct {
    cl_device_id device;
    cl_command_queue queue;
    kiln_program_cache *programs;
    kiln_deferred *deferred;
} kiln_lane;

struct kiln_ctx {
    kiln_device_info info;
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    kiln_program_cache *programs;
    kiln_deferred *deferred; /* launches waiting for their programs (launch.c) */
    kiln_cache_stats stats;
    uint64_t launches; /* kernels, CLBlast calls and copies enqueued */
    kiln_writer trace; /* when its fn is set, every launch is written there */
    kiln_profile *profile;   /* recording launches when set (profile.c) */
    uint64_t fail_launch;    /* tests: the launch (counted from 1) that fails as a lost
                                device would, with CL_OUT_OF_RESOURCES; 0: none */
    char label[64];          /* the layer being enqueued, for profiles and traces */
    kiln_ctx_slot slots[KILN_CTX_SLOTS]; /* upper layers' state (ctx_attach) */
    size_t attn_rows;        /* attention's rows per work-item (CPUs: lanes) or local tile
                                (GPUs) from the device's tuning record (blas/tune.c);
                                0: the device's default */
    kiln_spares spares;
    /* PoCL's basic device beside the pthread device kiln runs on: it runs
     * commands on the thread that waits for them, which a small forward
     * wants (ctx_enter_inline). Its device is NULL where there is none. */
    kiln_lane inline_lane;
    int inlined;             /* device, queue, programs and deferred are
                                inline_lane's until ctx_leave_inline */
    int program_holds;       /* programs_hold calls not yet released */
    uint64_t inline_runs;    /* ctx_enter_inline calls that switched lanes */
};

/* Whether ctx has an inline lane (KILN_INLINE=0 turns it off). */
int ctx_has_inline(const kiln_ctx *ctx);
/* Runs what follows on the inline lane: enqueues the launches waiting on
 * the device's own queue and waits for that queue, then swaps the lanes.
 * Kernels, decompositions and so bits are those of the device's own
 * queue (ctx->info stays its). */
kiln_status ctx_enter_inline(kiln_ctx *ctx);
/* Back to the device's own queue, after whatever ran inline is read back
 * or finished. */
void ctx_leave_inline(kiln_ctx *ctx);

/* Releases the spare buffers (kiln_ctx_free, after the queue finished). */
void spares_free(kiln_ctx *ctx);

/* The runtime's part of kiln_ctx_create (which blas/ completes): the
 * device, its OpenCL context, in-order queue and kernel cache, with every
 * slot empty. Errors name kiln_ctx_create, the call users make. */
kiln_status ctx_open_device(const char *selector, kiln_ctx **out);

/* Attaches state to slot of ctx (freeing what was there); kiln_ctx_free
 * calls free_fn(state) after the queue has finished and before the OpenCL
 * context is released. */
void ctx_attach(kiln_ctx *ctx, int slot, void *state, void (*free_fn)(void *state));
/* What slot holds, or NULL. */
void *ctx_attached(const kiln_ctx *ctx, int slot);

/* ---- profiles (profile.c) ----------------------------------------------- */

/* Names the layer whose launches follow (only kept while profiling or
 * tracing). */
void ctx_set_label(kiln_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The event pointer to pass to an enqueue: slot while profiling, else NULL. */
cl_event *profile_slot(kiln_ctx *ctx, cl_event *slot);
/* Records the event of a launch named kernel under the current label. */
void profile_add(kiln_ctx *ctx, cl_event event, const char *kernel);
void profile_discard(kiln_ctx *ctx);

/* A kernel argument: KARG(x) is sizeof x and &x. The launches below take
 * their arguments as a list of KARG(...) and count it themselves. */
typedef struct {
    size_t size;
    const void *value;
} kiln_karg;
#define KARG(v) ((kiln_karg){sizeof(v), (const void *)&(v)})
/* The arguments of a launch as an array and its length. */
#define KARGS(...)                                                                        \
    (const kiln_karg[]){__VA_ARGS__},                                                     \
        (int)(sizeof((const kiln_karg[]){__VA_ARGS__}) / sizeof(kiln_karg))

/* Sets the kernel's arguments, KARG(a), KARG(b), ..., and launches a 1-d
 * range of global items rounded up to a multiple of local (0: driver's
 * choice). Kernels check their own bounds. */
#define launch_1d(ctx, kernel, name, global, local, ...)                             \
    launch_1d_args(ctx, kernel, name, global, local, KARGS(__VA_ARGS__))
kiln_status launch_1d_args(kiln_ctx *ctx, cl_kernel kernel, const char *name,
                                size_t global, size_t local, const kiln_karg *args, int nargs);

/* The same over an exact x * y * z range, work-group sizes left to the
 * driver: kernels then read their indices without dividing. */
#define launch_3d(ctx, kernel, name, x, y, z, ...)                                   \
    launch_3d_args(ctx, kernel, name, x, y, z, KARGS(__VA_ARGS__))
kiln_status launch_3d_args(kiln_ctx *ctx, cl_kernel kernel, const char *name, size_t x,
                                size_t y, size_t z, const kiln_karg *args, int nargs);

/* An x * y * z range in work-groups of (lx, 1, 1) items, x rounded up to
 * a multiple of lx: kernels that share local memory across a group. */
kiln_status launch_groups_args(kiln_ctx *ctx, cl_kernel kernel, const char *name, size_t x,
                               size_t y, size_t z, size_t lx, const kiln_karg *args,
                               int nargs);

/* Whether a device runs each work-group as a loop on one core, as PoCL's
 * CPU driver does: kiln's GEMM and the CPU-shaped kernels are written for
 * that. Mesa's rusticl (llvmpipe) runs work-items side by side in SIMD
 * lanes like a GPU and launches every work-group separately, so it gets
 * the GPU-shaped path (measured: kiln's GEMM 10x slower than CLBlast
 * there). */
int device_loops_work_groups(const kiln_device_info *d);
/* The device's compute units, 1 where the driver does not say. */
size_t device_units(const kiln_device_info *d);

/* An x * y range of work-groups of one item each, for kernels written for
 * CPUs (one item runs a whole tile in vector registers). */
#define launch_tiles(ctx, kernel, name, x, y, ...)                                   \
    launch_tiles_args(ctx, kernel, name, x, y, KARGS(__VA_ARGS__))
kiln_status launch_tiles_args(kiln_ctx *ctx, cl_kernel kernel, const char *name, size_t x,
                                   size_t y, const kiln_karg *args, int nargs);

/* ---- tensors and shapes (tensor.c) ------------------------------------ */

typedef struct {
    int ndim;
    size_t d[KILN_MAX_DIMS];
} kiln_shape;

size_t shape_numel(const kiln_shape *s);
/* "2x3x4" into buf (at most size bytes). */
const char *shape_str(const kiln_shape *s, char *buf, size_t size);
int shape_eq(const kiln_shape *a, const kiln_shape *b);
kiln_shape shape_make(int ndim, size_t d0, size_t d1, size_t d2, size_t d3);
/* A per-sample shape with a batch dimension in front, and back. */
kiln_shape shape_with_batch(const kiln_shape *sample, size_t batch);
kiln_shape shape_without_batch(const kiln_shape *batched);

struct kiln_tensor {
    kiln_ctx *ctx;
    cl_mem buf;
    int view; /* buf is a sub-buffer of another tensor's */
    int ndim;
    size_t shape[KILN_MAX_DIMS];
    size_t numel;
};

kiln_shape shape_of(const kiln_tensor *t);

/* Upload and download that may return at once (blocking = 0): the host
 * memory must then stay untouched until the queue has passed the copy,
 * which any later blocking call on the queue guarantees. */
kiln_status tensor_write(kiln_tensor *t, const float *src, size_t count, int blocking);
kiln_status tensor_read(const kiln_tensor *t, float *dst, size_t count, int blocking);
/* A read that the host waits for on its own, while the queue goes on with
 * what is enqueued after it: tensor_read_begin enqueues it (and flushes),
 * tensor_read_end waits for it (done NULL: nothing to wait for). Every
 * begin, whatever it returned, needs its end before dst is read or goes
 * away. */
kiln_status tensor_read_begin(const kiln_tensor *t, float *dst, size_t count, cl_event *done);
kiln_status tensor_read_end(cl_event done);

/* A tensor over bytes [offset, offset + size) of a parent buffer (a view;
 * freeing it leaves the parent). offset must satisfy the device's
 * CL_DEVICE_MEM_BASE_ADDR_ALIGN. */
kiln_status tensor_view(kiln_ctx *ctx, cl_mem parent, size_t offset, int ndim,
                             const size_t *shape, kiln_tensor **out);

#endif /* KILN_RUNTIME_H */
