/* Status codes, the thread-local last-error message, OpenCL error names. */
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "runtime/runtime.h"

/* Room for a message plus a build log of a few hundred lines. */
#define ERROR_CAPACITY 16384

static _Thread_local char last_error[ERROR_CAPACITY];

const char *kiln_status_str(kiln_status status)
{
    static const char *const text[] = {
#define KILN_STATUS_TEXT(name, str) str,
        KILN_STATUS_LIST(KILN_STATUS_TEXT)
#undef KILN_STATUS_TEXT
    };
    _Static_assert(sizeof text / sizeof text[0] == KILN_STATUS_COUNT,
                   "one text per status code");
    if ((unsigned)status >= KILN_STATUS_COUNT)
        return "unknown status";
    return text[status];
}

const char *kiln_last_error(void)
{
    return last_error;
}

void error_clear(void)
{
    last_error[0] = '\0';
}

kiln_status error_set(kiln_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

static void append_v(const char *fmt, va_list ap)
{
    size_t used = strlen(last_error);
    vsnprintf(last_error + used, sizeof last_error - used, fmt, ap);
}

void error_append(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    append_v(fmt, ap);
    va_end(ap);
}

kiln_status require_args(const char *call, ...)
{
    va_list ap;
    va_start(ap, call);
    kiln_status st = KILN_OK;
    for (const char *name; st == KILN_OK && (name = va_arg(ap, const char *)) != NULL;)
        if (!va_arg(ap, const void *))
            st = error_set(KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", call, name);
    va_end(ap);
    return st;
}

kiln_status error_cl(cl_int err, const char *call)
{
    kiln_status status = KILN_ERR_OPENCL;
    if (err == CL_OUT_OF_HOST_MEMORY || err == CL_MEM_OBJECT_ALLOCATION_FAILURE)
        status = KILN_ERR_OUT_OF_MEMORY;
    else if (err == CL_BUILD_PROGRAM_FAILURE)
        status = KILN_ERR_BUILD;
    return error_set(status, "%s: %s", call, cl_error_name(err));
}

kiln_status error_cl_in(cl_int err, const char *call, const char *fmt, ...)
{
    kiln_status status = error_cl(err, call);
    va_list ap;
    va_start(ap, fmt);
    error_append(" (");
    append_v(fmt, ap);
    error_append(")");
    va_end(ap);
    return status;
}

#define CL_ERRORS(X)                                                                   \
    X(CL_SUCCESS) X(CL_DEVICE_NOT_FOUND) X(CL_DEVICE_NOT_AVAILABLE)                    \
    X(CL_COMPILER_NOT_AVAILABLE) X(CL_MEM_OBJECT_ALLOCATION_FAILURE)                   \
    X(CL_OUT_OF_RESOURCES) X(CL_OUT_OF_HOST_MEMORY) X(CL_PROFILING_INFO_NOT_AVAILABLE) \
    X(CL_MEM_COPY_OVERLAP) X(CL_IMAGE_FORMAT_MISMATCH) X(CL_IMAGE_FORMAT_NOT_SUPPORTED) \
    X(CL_BUILD_PROGRAM_FAILURE) X(CL_MAP_FAILURE) X(CL_MISALIGNED_SUB_BUFFER_OFFSET)   \
    X(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) X(CL_COMPILE_PROGRAM_FAILURE)      \
    X(CL_LINKER_NOT_AVAILABLE) X(CL_LINK_PROGRAM_FAILURE)                              \
    X(CL_DEVICE_PARTITION_FAILED) X(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)                  \
    X(CL_INVALID_VALUE) X(CL_INVALID_DEVICE_TYPE) X(CL_INVALID_PLATFORM)               \
    X(CL_INVALID_DEVICE) X(CL_INVALID_CONTEXT) X(CL_INVALID_QUEUE_PROPERTIES)          \
    X(CL_INVALID_COMMAND_QUEUE) X(CL_INVALID_HOST_PTR) X(CL_INVALID_MEM_OBJECT)        \
    X(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) X(CL_INVALID_IMAGE_SIZE) X(CL_INVALID_SAMPLER) \
    X(CL_INVALID_BINARY) X(CL_INVALID_BUILD_OPTIONS) X(CL_INVALID_PROGRAM)             \
    X(CL_INVALID_PROGRAM_EXECUTABLE) X(CL_INVALID_KERNEL_NAME)                         \
    X(CL_INVALID_KERNEL_DEFINITION) X(CL_INVALID_KERNEL) X(CL_INVALID_ARG_INDEX)       \
    X(CL_INVALID_ARG_VALUE) X(CL_INVALID_ARG_SIZE) X(CL_INVALID_KERNEL_ARGS)           \
    X(CL_INVALID_WORK_DIMENSION) X(CL_INVALID_WORK_GROUP_SIZE)                         \
    X(CL_INVALID_WORK_ITEM_SIZE) X(CL_INVALID_GLOBAL_OFFSET)                           \
    X(CL_INVALID_EVENT_WAIT_LIST) X(CL_INVALID_EVENT) X(CL_INVALID_OPERATION)          \
    X(CL_INVALID_GL_OBJECT) X(CL_INVALID_BUFFER_SIZE) X(CL_INVALID_MIP_LEVEL)          \
    X(CL_INVALID_GLOBAL_WORK_SIZE) X(CL_INVALID_PROPERTY)                              \
    X(CL_INVALID_IMAGE_DESCRIPTOR) X(CL_INVALID_COMPILER_OPTIONS)                      \
    X(CL_INVALID_LINKER_OPTIONS) X(CL_INVALID_DEVICE_PARTITION_COUNT)

const char *cl_error_name(cl_int err)
{
    static _Thread_local char unknown[48];
    switch (err) {
#define CL_ERROR_CASE(name) \
    case name:              \
        return #name;
        CL_ERRORS(CL_ERROR_CASE)
#undef CL_ERROR_CASE
    case -1001:
        return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
        snprintf(unknown, sizeof unknown, "unknown OpenCL error %d", (int)err);
        return unknown;
    }
}

void writef(const kiln_writer *w, const char *fmt, ...)
{
    if (!w || !w->fn)
        return;
    char small[1024], *text = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof small && (text = malloc((size_t)n + 1)) != NULL) {
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    w->fn(w->user, text ? text : small);
    if (text != small)
        free(text);
}

void write_to_file(void *file, const char *text)
{
    fputs(text, (FILE *)file);
}
