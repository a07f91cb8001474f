/*
 * test_tracker_cpp.cc: the leak tracker (mallocator.h) from C++. A leak
 * made in a function of a namespace, overloaded on its parameter, is
 * reported under the name the program wrote, demangled with its
 * parameter types (shapes::make(mlc_valloc, int)), not the linker's
 * _ZN6shapes4makeE10mlc_valloci.
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "check.h"
#include "mallocator.h"

namespace shapes {
/* Out of line, so that it has a frame of its own in the leak's stack. */
__attribute__((noinline)) void *make(mlc_valloc_t h, int size) {
  return mlc_valloc_malloc(h, 16, (size_t)size);
}
__attribute__((noinline)) void *make(mlc_valloc_t h, double) {
  return mlc_valloc_malloc(h, 16, 8);
}
}  // namespace shapes

/* The text report, read back through a temporary file. */
static std::string report_text(const mlc_tracker_t *t) {
  std::FILE *f = std::tmpfile();
  CHECK(f != NULL);
  if (f == NULL) return std::string();
  CHECK_EQ(mlc_tracker_report(t, fileno(f), 0), MLC_OK);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

int main() {
  mlc_tracker_t *t = mlc_tracker_new(mlc_libc_valloc());
  CHECK(t != NULL);
  if (t == NULL) return CHECK_DONE();
  mlc_valloc_t h = mlc_tracker_valloc(t);
  void *a = shapes::make(h, 48);
  void *b = shapes::make(h, 1.5);
  CHECK(a != NULL && b != NULL);
  /* The errors reach C++ as they reach C. */
  CHECK_FAILS(mlc_valloc_malloc(h, 12, 8) == NULL, "align");
  std::string report = report_text(t);
  /* A typedef's struct is named by its tag in a C++ signature. */
  CHECK(report.find("shapes::make(mlc_valloc, int)") != std::string::npos);
  CHECK(report.find("shapes::make(mlc_valloc, double)") != std::string::npos);
  CHECK(report.find("_ZN6shapes") == std::string::npos);
  if (check_failed_) std::fputs(report.c_str(), stderr);
  mlc_valloc_free(h, a);
  mlc_valloc_free(h, b);
  mlc_tracker_delete(t);
  return CHECK_DONE();
}
