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

/* The number of arguments from `first` to the null pointer that ends
 * them (not counted), read from `ap`, which holds those after `first`;
 * -1 when there are too many for an array. */
static ptrdiff_t count(const char *first, va_list ap) {
    ptrdiff_t n = 0;
    for (const char *arg = first; arg != NULL; arg = va_arg(ap, const char *)) {
        if (n == INT_MAX) return -1;
        n++;
    }
    return n;
}

/* Fills argv[0..n] with `first` and the n - 1 arguments after it in `ap`,
 * and argv[n] with the null pointer. */
static void gather(char **argv, ptrdiff_t n, const char *first, va_list ap) {
    argv[0] = (char *)first;
    for (ptrdiff_t i = 1; i < n; i++) argv[i] = va_arg(ap, char *);
    argv[n] = NULL;
}

int mallocator_execl(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    ptrdiff_t n = count(arg, ap);
    va_end(ap);
    if (n < 0) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    va_start(ap, arg);
    gather(argv, n, arg, ap);
    va_end(ap);
    return execv(path, argv);
}

int mallocator_execlp(const char *file, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    ptrdiff_t n = count(arg, ap);
    va_end(ap);
    if (n < 0) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    va_start(ap, arg);
    gather(argv, n, arg, ap);
    va_end(ap);
    return execvp(file, argv);
}

/* The environment comes after the null pointer that ends the arguments. */
int mallocator_execle(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    ptrdiff_t n = count(arg, ap);
    char *const *envp = n < 0 ? NULL : va_arg(ap, char *const *);
    va_end(ap);
    if (n < 0) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    va_start(ap, arg);
    gather(argv, n, arg, ap);
    va_end(ap);
    return execve(path, argv, envp);
}
