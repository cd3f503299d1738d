// The Python module that carries the kernels: importing cospec_ext._C runs the
// TORCH_LIBRARY registrations of every translation unit linked into it. It also
// reports how it was built, so tests can check what must be registered.
#include <pybind11/pybind11.h>

#ifndef COSPEC_WITH_CUDA
#define COSPEC_WITH_CUDA 0
#endif
#ifndef COSPEC_CUDA_ARCHS
#define COSPEC_CUDA_ARCHS ""
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "cospec_ext kernels (registered as torch.ops.cospec.*)";
  m.attr("with_cuda") = static_cast<bool>(COSPEC_WITH_CUDA);
  m.attr("cuda_archs") = COSPEC_CUDA_ARCHS;
}
