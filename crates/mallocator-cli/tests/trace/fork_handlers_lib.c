/* A library whose fork handlers allocate and free, registered from its
 * constructor: it runs before the preload library's, so its handlers
 * run while the tracker's hold every tracker lock (`prepare` handlers
 * in reverse order of registration, the others in order). Its first
 * `prepare` leaks 77 bytes. */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

static void *held;
/* Volatile: the compiler may not drop the allocation as unused. */
static void *volatile leaked;
static int forks;
/* A block the program makes before its first fork, and how many
 * `prepare` calls found its size answered by glibc (rounded up) rather
 * than by the tracker: the tracker cannot read its record while its fork
 * handlers hold every lock, so this counts the calls made inside that
 * window. */
static void *probe;
static int inside;

__attribute__((noinline)) static void before_fork(void) {
    if (malloc_usable_size(probe) != 90) inside++;
    held = malloc(100);
    if (forks++ == 0) leaked = malloc(77);
}

static void after_fork(void) { free(held); }

__attribute__((constructor)) static void install(void) {
    pthread_atfork(before_fork, after_fork, after_fork);
}

void fork_handlers_probe(void) { probe = malloc(90); }
int fork_handlers_linked(void) { return forks; }
int fork_handlers_inside(void) { return inside; }
