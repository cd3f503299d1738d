// The check macro and test runner shared by the C++ op tests (test_ops.cpp,
// test_linear_rows.cpp): EXPECT counts a check and prints where and why one failed; run()
// runs one test function, catching what it throws. Exit status of a test: g_failures != 0.
#pragma once

#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <string>

namespace cospec_test {

inline int g_failures = 0;
inline int g_checks = 0;

inline int run(const char* name, void (*fn)()) {
  const int before = g_failures;
  try {
    fn();
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "FAIL %s: unexpected exception: %s\n", name, e.what());
  }
  std::printf("[%s] %s\n", g_failures == before ? "ok  " : "FAIL", name);
  return g_failures - before;
}

}  // namespace cospec_test

#define EXPECT(cond, ...)                                                                \
  do {                                                                                   \
    ++cospec_test::g_checks;                                                             \
    if (!(cond)) {                                                                       \
      ++cospec_test::g_failures;                                                         \
      std::fprintf(stderr, "FAIL %s:%d: %s -- %s\n", __FILE__, __LINE__, #cond,          \
                   std::string(c10::str(__VA_ARGS__)).c_str());                          \
    }                                                                                    \
  } while (0)
