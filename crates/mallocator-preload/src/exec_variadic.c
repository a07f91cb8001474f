/* execl, execle and execlp as the C library defines them (the arguments,
 * up to the null pointer that ends them, gathered into an array on the
 * stack), over execv, execve and execvp, which the preload library
 * defines to end its log first (exec.rs). Rust cannot define a function
 * with C variadic arguments; exec.rs exports each of these under its C
 * name as a jump here. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

/* The helpers take pointers to the caller's va_lists, so that a list can
 * go on being read after them (a va_list passed by value is unusable by
 * its caller once read from, and how it is passed differs between
 * architectures). Each function walks its arguments twice, through two
 * lists started at the same place: to count them, then to gather them. */

/* The number of arguments from `arg` to the null pointer that ends them
 * (not counted; `arg` may be it), reading those after `arg` from `ap`;
 * -1 when there are more than an array may hold (INT_MAX, as glibc). */
static ptrdiff_t count(const char *arg, va_list *ap) {
    ptrdiff_t n = 0;
    for (const char *a = arg; a != NULL; a = va_arg(*ap, const char *))
        if (++n == INT_MAX) return -1;
    return n;
}

/* Fills argv[0..n] with `arg` and the n - 1 arguments after it, read from
 * `ap` with the null pointer after them, and argv[n] with that null. */
static void gather(char **argv, ptrdiff_t n, const char *arg, va_list *ap) {
    argv[0] = (char *)arg;
    for (ptrdiff_t i = 1; i <= n; i++) argv[i] = va_arg(*ap, char *);
    argv[n] = NULL;
}

/* Which function exec_list calls. */
enum exec_with { WITH_PATH, SEARCHING_PATH, WITH_ENVIRONMENT };

/* Gathers the arguments from `arg` (those after it read from `counted`
 * to count them, and from `gathered`, a second walk from the same start,
 * to gather them) and calls execv, execvp or execve (`with`) on `target`
 * with them; for execve, the environment is the argument after the null
 * pointer that ends them, read from `gathered`. */
static int exec_list(enum exec_with with, const char *target, const char *arg, va_list *counted,
                     va_list *gathered) {
    ptrdiff_t n = count(arg, counted);
    if (n < 0) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    gather(argv, n, arg, gathered);
    switch (with) {
    case WITH_PATH: return execv(target, argv);
    case SEARCHING_PATH: return execvp(target, argv);
    default: return execve(target, argv, va_arg(*gathered, char *const *));
    }
}

int mallocator_execl(const char *path, const char *arg, ...) {
    va_list counted, gathered;
    va_start(counted, arg);
    va_start(gathered, arg);
    int result = exec_list(WITH_PATH, path, arg, &counted, &gathered);
    va_end(gathered);
    va_end(counted);
    return result;
}

int mallocator_execlp(const char *file, const char *arg, ...) {
    va_list counted, gathered;
    va_start(counted, arg);
    va_start(gathered, arg);
    int result = exec_list(SEARCHING_PATH, file, arg, &counted, &gathered);
    va_end(gathered);
    va_end(counted);
    return result;
}

int mallocator_execle(const char *path, const char *arg, ...) {
    va_list counted, gathered;
    va_start(counted, arg);
    va_start(gathered, arg);
    int result = exec_list(WITH_ENVIRONMENT, path, arg, &counted, &gathered);
    va_end(gathered);
    va_end(counted);
    return result;
}
