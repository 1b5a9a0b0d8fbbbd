/* Runs a harness over files and directories of inputs (the seed corpus
 * and every crash reproducer in tests/fuzz/corpus), for builds without
 * libFuzzer: `meson test` replays them all, the sanitizer build too. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
    int ok = data && fread(data, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (ok)
        LLVMFuzzerTestOneInput(data, (size_t)n);
    free(data);
    return ok;
}

static int replay(const char *path, size_t *count)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "%s: not found\n", path);
        return 0;
    }
    if (!S_ISDIR(sb.st_mode)) {
        (*count)++;
        return replay_file(path);
    }
    DIR *dir = opendir(path);
    struct dirent *e;
    int ok = dir != NULL;
    while (ok && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        ok = replay(child, count);
    }
    if (dir)
        closedir(dir);
    return ok;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    for (int i = 1; i < argc; i++)
        if (!replay(argv[i], &count))
            return 1;
    printf("replayed %zu inputs\n", count);
    return count > 0 ? 0 : 1;
}
