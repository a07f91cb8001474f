/* A library that leaks: tests/trace/programs.c loads it (modes plugin and
 * replugin). Built twice: libplugin.so, and libplugin2.so with SECOND
 * defined, whose leak is one byte larger, made on another line, in a frame
 * of another size. */
#include <stdlib.h>

/* Not a tail call: its frame stays on the stack under malloc's. */
__attribute__((noinline)) void *plugin_leak(void) {
#ifndef SECOND
    void *volatile p = malloc(64);
#else
    /* A frame of another size: the first library's call-frame rules
     * would find this one's caller in the wrong place. */
    volatile char pad[4096];
    pad[0] = 1;
    void *volatile p = malloc(65);
    pad[1] = pad[0];
#endif
    return p;
}
