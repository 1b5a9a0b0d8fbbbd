/* Quiet builds: PoCL's clang writes its "N warnings generated." (and
 * "N errors generated.") straight to the process's stderr, outside the
 * build log, so a cold start printed compiler chatter that kiln's users
 * cannot act on. Unless KILN_VERBOSE is set, stderr points at a temporary
 * file while a program builds; afterwards clang's count lines are dropped
 * and whatever else was written there goes to the caller, which adds it to
 * the error of a failed build or writes it back to stderr. One build at a
 * time does this, under a process-wide lock, since file descriptor 2 is
 * shared by all threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define CAPTURE_MAX (64u << 10)

static pthread_mutex_t quiet_lock = PTHREAD_MUTEX_INITIALIZER;

void quiet_begin(kiln_quiet *q)
{
    q->saved = -1;
    q->file = NULL;
    if (verbose_builds())
        return;
    pthread_mutex_lock(&quiet_lock);
    fflush(stderr);
    q->file = tmpfile();
    q->saved = q->file ? dup(STDERR_FILENO) : -1;
    if (q->saved >= 0 && dup2(fileno(q->file), STDERR_FILENO) >= 0)
        return;
    if (q->saved >= 0)
        close(q->saved);
    if (q->file)
        fclose(q->file);
    q->saved = -1;
    q->file = NULL;
    pthread_mutex_unlock(&quiet_lock);
}

/* Whether line (without its '\n') is clang's count of diagnostics. */
static int is_count_line(const char *line, size_t len)
{
    static const char *const tails[] = {" warning generated.", " warnings generated.",
                                        " error generated.", " errors generated.",
                                        " warnings and 1 error generated.",
                                        " warning and 1 error generated."};
    size_t digits = strspn(line, "0123456789");
    if (digits == 0 || digits >= len)
        return 0;
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++)
        if (len - digits >= strlen(tails[i]) &&
            strncmp(line + len - strlen(tails[i]), tails[i], strlen(tails[i])) == 0)
            return 1;
    return 0;
}

/* Splits text in place: clang's count lines are dropped, the rest kept
 * in order; returns the length kept. */
static size_t drop_count_lines(char *text, size_t n)
{
    size_t kept = 0;
    for (size_t at = 0; at < n;) {
        size_t len = strcspn(text + at, "\n"), next = at + len + (at + len < n);
        if (!is_count_line(text + at, len)) {
            memmove(text + kept, text + at, next - at);
            kept += next - at;
        }
        at = next;
    }
    text[kept] = '\0';
    return kept;
}

char *quiet_end(kiln_quiet *q)
{
    if (q->saved < 0)
        return NULL;
    fflush(stderr);
    dup2(q->saved, STDERR_FILENO);
    close(q->saved);
    char *text = malloc(CAPTURE_MAX + 1);
    size_t n = 0;
    if (text && fseek(q->file, 0, SEEK_SET) == 0)
        n = fread(text, 1, CAPTURE_MAX, q->file);
    fclose(q->file);
    pthread_mutex_unlock(&quiet_lock);
    if (!text)
        return NULL;
    text[n] = '\0';
    n = drop_count_lines(text, strlen(text));
    if (n == 0) {
        free(text);
        return NULL;
    }
    return text;
}
