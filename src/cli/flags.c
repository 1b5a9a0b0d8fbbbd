/* The commands' flags as tables: one table per command drives its parsing
 * (getopt_long), `kiln help CMD`, `kiln CMD --help` and the kiln(1) man
 * page, so that a flag and its description cannot drift apart. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define MAX_FLAGS 40

/* getopt_long's tables for one command, built on its first call. */
static struct option long_options[MAX_FLAGS + 2];
static char short_options[3 * MAX_FLAGS + 4];
static const cli_command *built;

static void build_options(const cli_command *cmd)
{
    size_t n = 0, s = 0;
    short_options[s++] = ':'; /* a missing value is reported as such */
    for (const cli_flag *f = cmd->flags; f && f->name && n < MAX_FLAGS; f++, n++) {
        long_options[n] = (struct option){f->name, f->arg ? required_argument : no_argument,
                                          NULL, f->key};
        short_options[s++] = (char)f->key;
        if (f->arg)
            short_options[s++] = ':';
    }
    long_options[n++] = (struct option){"help", no_argument, NULL, 'h'};
    long_options[n] = (struct option){NULL, 0, NULL, 0};
    short_options[s++] = 'h';
    short_options[s] = '\0';
    built = cmd;
    optind = 1;
    opterr = 0;
}

int cli_usage_error(const cli_command *cmd)
{
    fprintf(stderr, "usage: kiln %s%s%s%s\nrun \"kiln help %s\" for every flag\n", cmd->name,
            cmd->args ? " " : "", cmd->args ? cmd->args : "", cmd->flags ? " [flags]" : "",
            cmd->name);
    return 2;
}

int cli_next_flag(int argc, char **argv, const cli_command *cmd)
{
    if (built != cmd)
        build_options(cmd);
    int opt = getopt_long(argc, argv, short_options, long_options, NULL);
    if (opt == 'h') {
        cli_print_help(cmd, stdout);
        return CLI_HELP;
    }
    if (opt == '?' || opt == ':') {
        const char *arg = argv[optind - 1];
        if (opt == ':')
            fprintf(stderr, "kiln %s: %s needs a value\n", cmd->name, arg);
        else
            fprintf(stderr, "kiln %s: unknown flag %s\n", cmd->name, arg);
        cli_usage_error(cmd);
        return CLI_BAD;
    }
    return opt;
}

/* Writes text folded at width columns, every line after the first
 * indented by indent spaces (the first continues where the caller is,
 * at column col). */
static void print_folded(FILE *f, const char *text, int col, int indent, int width)
{
    const char *p = text;
    while (*p) {
        if (*p == '\n') {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
            p++;
            continue;
        }
        size_t word = strcspn(p, " \n");
        if (col > indent && col + 1 + (int)word > width) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", (int)word, p);
        col += (int)word;
        p += word;
        while (*p == ' ')
            p++;
    }
    fputc('\n', f);
}

void cli_print_help(const cli_command *cmd, FILE *f)
{
    fprintf(f, "usage: kiln %s%s%s%s\n\n", cmd->name, cmd->args ? " " : "",
            cmd->args ? cmd->args : "", cmd->flags ? " [flags]" : "");
    print_folded(f, cmd->text ? cmd->text : cmd->summary, 0, 0, 78);
    if (!cmd->flags)
        return;
    fprintf(f, "\nflags:\n");
    for (const cli_flag *fl = cmd->flags; fl->name; fl++) {
        if (!fl->help)
            continue;
        char head[64];
        int n = snprintf(head, sizeof head, "  --%s%s%s", fl->name, fl->arg ? " " : "",
                         fl->arg ? fl->arg : "");
        fprintf(f, "%s", head);
        char text[1024];
        snprintf(text, sizeof text, "%s%s%s%s", fl->help, fl->def ? " (default: " : "",
                 fl->def ? fl->def : "", fl->def ? ")" : "");
        if (n >= 24) {
            fprintf(f, "\n%*s", 26, "");
            n = 26;
        } else {
            fprintf(f, "%*s", 26 - n, "");
            n = 26;
        }
        print_folded(f, text, n, 26, 78);
    }
    fprintf(f, "  --help                  print this help\n");
}

/* ---- the man page ------------------------------------------------------- */

/* Text in roff: backslashes and hyphens escaped, and a line never starts
 * with a control character. Blank lines in text become paragraph breaks. */
static void roff_escape(FILE *f, const char *s)
{
    int line_start = 1;
    for (; *s; s++) {
        if (line_start && (*s == '.' || *s == '\''))
            fputs("\\&", f);
        line_start = 0;
        if (*s == '\\')
            fputs("\\e", f);
        else if (*s == '-')
            fputs("\\-", f);
        else if (*s == '\n') {
            fputs(s[1] == '\n' ? "\n.PP\n" : "\n.br\n", f);
            s += s[1] == '\n';
            line_start = 1;
        } else
            fputc(*s, f);
    }
}

static void roff_text(FILE *f, const char *s)
{
    roff_escape(f, s);
    fputc('\n', f);
}

static void man_command(FILE *f, const cli_command *cmd)
{
    fprintf(f, ".SS \"kiln %s", cmd->name);
    if (cmd->args) {
        fputc(' ', f);
        roff_escape(f, cmd->args);
    }
    fprintf(f, "\"\n");
    roff_text(f, cmd->text ? cmd->text : cmd->summary);
    for (const cli_flag *fl = cmd->flags; fl && fl->name; fl++) {
        if (!fl->help)
            continue;
        fprintf(f, ".TP\n\\fB\\-\\-");
        roff_escape(f, fl->name);
        fprintf(f, "\\fR");
        if (fl->arg) {
            fprintf(f, " \\fI");
            roff_escape(f, fl->arg);
            fprintf(f, "\\fR");
        }
        fprintf(f, "\n");
        roff_text(f, fl->help);
        if (fl->def) {
            fprintf(f, ".br\nDefault: ");
            roff_text(f, fl->def);
        }
    }
}

void cli_print_man(FILE *f, const cli_command *const *cmds, size_t n, const cli_env *env,
                   const char *date)
{
    fprintf(f, ".TH KILN 1 \"%s\" \"kiln %s\" \"User Commands\"\n", date, kiln_version());
    fprintf(f, ".SH NAME\nkiln \\- train neural networks on any OpenCL device\n");
    fprintf(f, ".SH SYNOPSIS\n");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, ".B kiln %s\n", cmds[i]->name);
        if (cmds[i]->args) {
            fprintf(f, ".I ");
            roff_text(f, cmds[i]->args);
        }
        fprintf(f, "%s.br\n", cmds[i]->flags ? ".RI [ flags ]\n" : "");
    }
    fprintf(f, ".SH DESCRIPTION\n");
    roff_text(f, "kiln trains neural networks described as layers in a model file on any "
                 "OpenCL 1.2 device: GPUs from AMD, Intel and NVIDIA, and CPUs through PoCL "
                 "or Mesa's rusticl. Every command takes --help; \"kiln help COMMAND\" "
                 "prints the same text.");
    fprintf(f, ".SH COMMANDS\n");
    for (size_t i = 0; i < n; i++)
        man_command(f, cmds[i]);
    fprintf(f, ".SH ENVIRONMENT\n");
    for (; env->name; env++) {
        fprintf(f, ".TP\n.B %s\n", env->name);
        roff_text(f, env->help);
    }
    fprintf(f, ".SH EXIT STATUS\n0 on success, 1 when the work failed (the message names the "
               "file, tensor or OpenCL call), 2 for a usage error, 130 when training was "
               "interrupted and its state saved.\n");
    fprintf(f, ".SH SEE ALSO\nThe README and docs/ of kiln's source tree.\n");
}
