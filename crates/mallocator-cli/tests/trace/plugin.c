/* A library that leaks: tests/trace/programs.c loads it (mode plugin). */
#include <stdlib.h>

/* Not a tail call: its frame stays on the stack under malloc's. */
__attribute__((noinline)) void *plugin_leak(void) {
    void *volatile p = malloc(64);
    return p;
}
