/* Temporary files for the readers that take a path; one per tag and
 * process, under $TMPDIR, removed at exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

#define MAX_FILES 4

static char paths[MAX_FILES][512];
static int registered;

static void remove_all(void)
{
    for (int i = 0; i < MAX_FILES; i++)
        if (paths[i][0])
            unlink(paths[i]);
}

const char *fuzz_file(const char *tag, const uint8_t *data, size_t size)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/kiln-fuzz-%ld-%s", dir, (long)getpid(), tag);
    int slot = 0;
    while (slot < MAX_FILES && paths[slot][0] && strcmp(paths[slot], path) != 0)
        slot++;
    if (slot == MAX_FILES)
        return NULL;
    snprintf(paths[slot], sizeof paths[slot], "%s", path);
    if (!registered)
        registered = atexit(remove_all) == 0;
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    int ok = fwrite(data, 1, size, f) == size;
    ok = fclose(f) == 0 && ok;
    return ok ? paths[slot] : NULL;
}
