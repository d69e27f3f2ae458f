// Arrays cross the binding as (pointer, shape, dtype, device) descriptors built by the
// Python layer (python/chita_ext/_arrays.py), which has already checked them: that keeps
// numpy, numpy.memmap, CPU and CUDA torch tensors on one zero-copy path, with no libtorch.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "chita/backend.h"
#include "chita/errors.h"

namespace chita::bindings {

namespace py = pybind11;

inline DType parse_dtype(const std::string& s) {
  if (s == "float32") return DType::f32;
  if (s == "bfloat16") return DType::bf16;
  throw InvalidArgument("A has dtype " + s + "; pass float32 or bfloat16");
}

inline Layout parse_layout(const std::string& s) {
  if (s == "col") return Layout::col_major;
  if (s == "row") return Layout::row_major;
  throw InvalidArgument("layout must be 'col' or 'row', got '" + s + "'");
}

inline DeviceRef parse_device(const std::string& kind, int index, std::uintptr_t stream) {
  if (kind == "cpu") return DeviceRef{Device::cpu, 0, 0};
  if (kind == "cuda") return DeviceRef{Device::cuda, index, stream};
  throw InvalidArgument("device must be 'cpu' or 'cuda', got '" + kind + "'");
}

template <typename T>
T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

// A Backend plus the device it serves, owned by a Python object.
struct BackendHandle {
  std::unique_ptr<Backend> backend;
  int threads = 0;
};

void bind_descriptors(py::module_& m);
void bind_kernels(py::module_& m);
void bind_solve(py::module_& m);
void bind_ridge_path(py::module_& m);
void bind_build_info(py::module_& m);

}  // namespace chita::bindings
