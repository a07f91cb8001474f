/* A program that defines `getenv`, `setenv` and `unsetenv` as bash does
 * (which keeps its environment in a table of shell variables, and builds
 * each child's environment from it): before `main` runs, `getenv` reads
 * `environ` and `unsetenv` and `setenv` change nothing. Its definitions
 * come before the C library's for every caller, the preload library
 * included. tests/trace_cli.rs traces it.
 *
 * With no argument: leaks 1 x 501, says on standard output whether its
 * environment still holds the tracer's variables, then runs itself
 * ("child") by fork and exec with that environment, as bash runs a
 * command, and waits for it. "child": leaks 1 x 502 and ends. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "shell_like: %s failed\n", what);
        exit(99);
    }
}

char *getenv(const char *name) {
    size_t len = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, name, len) && (*e)[len] == '=') return *e + len + 1;
    return NULL;
}

/* As bash's before its main: there is no table of shell variables yet
 * to change (and this program changes none later). */
int unsetenv(const char *name) {
    (void)name;
    return 0;
}

int setenv(const char *name, const char *value, int overwrite) {
    (void)name, (void)value, (void)overwrite;
    return 0;
}

__attribute__((noinline)) static void leak(size_t size) {
    char *volatile p = malloc(size);
    check(p != NULL, "malloc");
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "child")) {
        leak(502);
        return 0;
    }
    leak(501);
    for (char **e = environ; *e; e++)
        if (!strncmp(*e, "LD_PRELOAD=", 11) || !strncmp(*e, "MALLOCATOR_LOG", 14))
            printf("still set: %s\n", *e);
    fflush(stdout);
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
        execle("/proc/self/exe", "shell_like", "child", (char *)NULL, environ);
        _exit(98);
    }
    int status;
    check(waitpid(pid, &status, 0) == pid, "waitpid");
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended well");
    return 0;
}
