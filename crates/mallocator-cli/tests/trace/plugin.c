/* A library that leaks: tests/trace/programs.c loads it (mode plugin). */
#include <stdlib.h>

__attribute__((noinline)) void *plugin_leak(void) { return malloc(64); }
