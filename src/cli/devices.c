/* kiln devices [--json]: every OpenCL device, one line each. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cli_fail(const char *cmd)
{
    kiln_job job;
    kiln_job_place(NULL, &job);
    if (job.size > 1) /* main then ends the job */
        fprintf(stderr, "kiln %s: rank %d of %d: %s\n", cmd, job.rank, job.size,
                kiln_last_error());
    else
        fprintf(stderr, "kiln %s: %s\n", cmd, kiln_last_error());
    return 1;
}

const char *cli_bytes(uint64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

void cli_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_json(const kiln_device_info *list, size_t n, unsigned chosen)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        const kiln_device_info *d = &list[i];
        printf("%s\n  {\"index\": %u, \"platform_index\": %u, \"device_index\": %u, "
               "\"default\": %s, \"platform\": ",
               i ? "," : "", d->global_index, d->platform_index, d->device_index,
               d->global_index == chosen ? "true" : "false");
        cli_json_string(d->platform);
        printf(", \"name\": ");
        cli_json_string(d->name);
        printf(", \"vendor\": ");
        cli_json_string(d->vendor);
        printf(", \"type\": ");
        cli_json_string(kiln_device_type_str(d->type));
        printf(", \"driver_version\": ");
        cli_json_string(d->driver_version);
        printf(", \"device_version\": ");
        cli_json_string(d->device_version);
        printf(", \"opencl_c_version\": ");
        cli_json_string(d->opencl_c_version);
        printf(", \"compute_units\": %u, \"global_mem_bytes\": %llu, \"local_mem_bytes\": "
               "%llu, \"max_alloc_bytes\": %llu, \"max_work_group_size\": %zu, "
               "\"fp64\": %s, \"fp16\": %s}",
               d->compute_units, (unsigned long long)d->global_mem_bytes,
               (unsigned long long)d->local_mem_bytes, (unsigned long long)d->max_alloc_bytes,
               d->max_work_group_size, d->fp64 ? "true" : "false", d->fp16 ? "true" : "false");
    }
    printf("\n]\n");
}

static void print_table(const kiln_device_info *list, size_t n, unsigned chosen)
{
    for (size_t i = 0; i < n; i++) {
        const kiln_device_info *d = &list[i];
        char g[32], l[32], a[32];
        printf("%c %u (%u:%u)  %-4s %s / %s\n", d->global_index == chosen ? '*' : ' ',
               d->global_index, d->platform_index, d->device_index,
               kiln_device_type_str(d->type), d->platform, d->name);
        printf("    driver %s, %s, %u compute units, memory %s, local %s, max alloc %s, "
               "work-group %zu, fp64 %s, fp16 %s\n",
               d->driver_version, d->opencl_c_version, d->compute_units,
               cli_bytes(d->global_mem_bytes, g, sizeof g),
               cli_bytes(d->local_mem_bytes, l, sizeof l),
               cli_bytes(d->max_alloc_bytes, a, sizeof a), d->max_work_group_size,
               d->fp64 ? "yes" : "no", d->fp16 ? "yes" : "no");
    }
    printf("* the device kiln picks by default (--device or KILN_DEVICE to choose)\n");
}

static const cli_flag flags[] = {
    {"json", 'j', NULL, NULL, "print the devices as a JSON array"},
    {NULL, 0, NULL, NULL, NULL}};

const cli_command cli_devices_cmd = {
    "devices", cli_devices, NULL, "list every OpenCL device",
    "Lists every OpenCL platform and device with its memory, work-group size and "
    "precisions, and marks the one kiln picks by default (--device or KILN_DEVICE "
    "choose another).",
    flags};

int cli_devices(int argc, char **argv)
{
    int json = 0, opt;
    while ((opt = cli_next_flag(argc, argv, &cli_devices_cmd)) != CLI_DONE) {
        if (opt < 0)
            return CLI_EXIT(opt);
        json = 1;
    }
    if (optind != argc)
        return cli_usage_error(&cli_devices_cmd);
    kiln_device_info *list, chosen;
    size_t n;
    if (kiln_devices(&list, &n) != KILN_OK)
        return cli_fail("devices");
    unsigned pick = kiln_device_select(NULL, &chosen) == KILN_OK ? chosen.global_index : ~0u;
    if (json)
        print_json(list, n, pick);
    else
        print_table(list, n, pick);
    kiln_free(list);
    return 0;
}
