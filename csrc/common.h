// Argument checks shared by the CPU and CUDA launchers. Every message names the
// argument and says what was expected, so the Python user sees e.g.
//   RuntimeError: cospec::kv_rollback: `path` must be int64, got Float
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#define COSPEC_CHECK(op, cond, ...) \
  TORCH_CHECK((cond), "cospec::", op, ": ", __VA_ARGS__)

#define COSPEC_CHECK_DTYPE(op, t, dt)                                            \
  COSPEC_CHECK(op, (t).scalar_type() == (dt), "`" #t "` must be ", (dt), ", got ", \
               (t).scalar_type())

#define COSPEC_CHECK_DIM(op, t, d)                                              \
  COSPEC_CHECK(op, (t).dim() == (d), "`" #t "` must have ", (d), " dims, got ", \
               (t).dim(), " (shape ", (t).sizes(), ")")

#define COSPEC_CHECK_SIZE(op, t, i, n)                                             \
  COSPEC_CHECK(op, (t).size(i) == (n), "`" #t "`.size(", (i), ") must be ", (n), \
               ", got ", (t).size(i), " (shape ", (t).sizes(), ")")

#define COSPEC_CHECK_CONTIGUOUS(op, t) \
  COSPEC_CHECK(op, (t).is_contiguous(), "`" #t "` must be contiguous")

#define COSPEC_CHECK_DEVICE(op, t, dev)                                        \
  COSPEC_CHECK(op, (t).device() == (dev), "`" #t "` must be on ", (dev), \
               ", got ", (t).device())

#define COSPEC_CHECK_FLOAT_LIKE(op, t)                                          \
  COSPEC_CHECK(op,                                                             \
               (t).scalar_type() == at::kFloat || (t).scalar_type() == at::kHalf || \
                   (t).scalar_type() == at::kBFloat16,                         \
               "`" #t "` must be float32, float16 or bfloat16, got ", (t).scalar_type())

#include <ATen/Dispatch.h>

// Dispatch over the dtypes the ops take for logits, features and caches.
#define COSPEC_DISPATCH_FLOAT_LIKE(TYPE, NAME, ...)            \
  AT_DISPATCH_SWITCH(TYPE, NAME,                               \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))
