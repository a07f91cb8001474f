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

/* The helpers take a pointer to the caller's va_list, so that the
 * caller can go on reading it after them (a va_list passed by value is
 * unusable by its caller once read from, and how it is passed differs
 * between architectures). Each function walks its arguments twice, from
 * va_start each time: to count them, then to gather them. */

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

int mallocator_execl(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    ptrdiff_t n = count(arg, &ap);
    va_end(ap);
    if (n < 0) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    va_start(ap, arg);
    gather(argv, n, arg, &ap);
    va_end(ap);
    return execv(path, argv);
}

int mallocator_execlp(const char *file, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    ptrdiff_t n = count(arg, &ap);
    va_end(ap);
    if (n < 0) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    va_start(ap, arg);
    gather(argv, n, arg, &ap);
    va_end(ap);
    return execvp(file, argv);
}

/* The environment is the argument after the null pointer that ends the
 * others (read by `gather` when there are any). */
int mallocator_execle(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    ptrdiff_t n = count(arg, &ap);
    va_end(ap);
    if (n < 0) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    va_start(ap, arg);
    gather(argv, n, arg, &ap);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return execve(path, argv, envp);
}
