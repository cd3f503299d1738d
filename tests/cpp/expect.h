// The check macro and helpers shared by the C++ op tests (test_ops.cpp, test_linear_rows.cpp,
// test_linear_packed.cpp): EXPECT counts a check and prints where and why one failed; run()
// runs one test function, catching what it throws; registered() checks an op's kernels;
// throws_naming() checks a bad-input error. Exit status of a test: g_failures != 0.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <functional>
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

namespace cospec_test {

// Whether cospec::`op` has a CPU kernel (else a message: the library was not linked in); in a
// CUDA build also checks (EXPECT) its CUDA kernel, registered when the library loads, no GPU needed.
inline bool registered(const std::string& op) {
  const auto h = c10::Dispatcher::singleton().findOp({"cospec::" + op, ""});
  if (!h || !h->hasKernelForDispatchKey(c10::DispatchKey::CPU)) {
    std::fprintf(stderr, "cospec::%s has no CPU kernel: was libcospec_kernels linked with --no-as-needed?\n",
                 op.c_str());
    return false;
  }
#if defined(COSPEC_WITH_CUDA) && COSPEC_WITH_CUDA
  EXPECT(h->hasKernelForDispatchKey(c10::DispatchKey::CUDA), "cospec::", op,
         " has no CUDA kernel in a COSPEC_WITH_CUDA build");
#endif
  return true;
}

// Whether f() throws a c10::Error whose message names both `op` and `what` (the argument).
inline bool throws_naming(const std::function<void()>& f, const std::string& op, const std::string& what) {
  try {
    f();
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    return msg.find(op) != std::string::npos && msg.find(what) != std::string::npos;
  }
  return false;
}

}  // namespace cospec_test
