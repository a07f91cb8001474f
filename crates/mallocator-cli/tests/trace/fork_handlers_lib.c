/* A library whose fork handlers allocate and free, registered from its
 * constructor: it runs before the preload library's, so its handlers
 * run while the tracker's hold every tracker lock (`prepare` handlers
 * in reverse order of registration, the others in order). Its first
 * `prepare` leaks 77 bytes. */
#include <pthread.h>
#include <stdlib.h>

static void *held;
/* Volatile: the compiler may not drop the allocation as unused. */
static void *volatile leaked;
static int forks;

__attribute__((noinline)) static void before_fork(void) {
    held = malloc(100);
    if (forks++ == 0) leaked = malloc(77);
}

static void after_fork(void) { free(held); }

__attribute__((constructor)) static void install(void) {
    pthread_atfork(before_fork, after_fork, after_fork);
}

int fork_handlers_linked(void) { return forks; }
