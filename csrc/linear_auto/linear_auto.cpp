// cospec::linear_auto: y = x W^T + b through linear_packed (over W's packed copy) from
// `packed_rows_min` rows of x on, else linear_rows (over W), the choice made when the op runs.
//
// For a compiled graph whose row count is a symbol (a prefill dynamic in the prompt length):
// a choice by rows in Python would guard on the count and split the graph in two, so such a
// graph used linear_rows for every count, which costs 1.3-2.1x linear_packed's time at 20-32
// rows over the demo target's projections on EPYC-32 (bench/RESULTS.md). No kernel of its own:
// it calls the two ops through the dispatcher, so their CPU or CUDA kernels run, with their
// own argument checks.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "../common.h"

#ifndef COSPEC_WITH_CUDA
#define COSPEC_WITH_CUDA 0
#endif

namespace cospec {
namespace {

using at::Tensor;

Tensor linear_auto(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& packed,
                   const std::optional<Tensor>& bias, int64_t packed_rows_min) {
  constexpr const char* op = "linear_auto";
  COSPEC_CHECK_DIM(op, x, 2);
  COSPEC_CHECK_DIM(op, weight, 2);
  COSPEC_CHECK(op, packed_rows_min >= 1, "`packed_rows_min` must be >= 1, got ", packed_rows_min);
  if (packed.has_value() && x.scalar_type() == at::kFloat && x.size(0) >= packed_rows_min) {
    static const auto packed_op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("cospec::linear_packed", "")
            .typed<Tensor(const Tensor&, const Tensor&, int64_t, const std::optional<Tensor>&)>();
    return packed_op.call(x, *packed, weight.size(0), bias);
  }
  static const auto rows_op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cospec::linear_rows", "")
          .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&)>();
  return rows_op.call(x, weight, bias);
}

}  // namespace

// The same function for both devices (no CUDA code here: it calls the ops that have it); for
// CUDA only in a CUDA build, where linear_rows and linear_packed have their CUDA kernels.
TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("linear_auto", &linear_auto); }
#if COSPEC_WITH_CUDA
TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("linear_auto", &linear_auto); }
#endif

}  // namespace cospec
