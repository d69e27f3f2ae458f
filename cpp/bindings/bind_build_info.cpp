// build_info(): what this build compiled in, for users and bug reports.
#include <omp.h>
#include <pybind11/pybind11.h>

#include "chita/cuda_backend.h"  // cuda_impl::architectures
#include "cpu/columns_avx2.h"     // cpu::avx2::available
#include "descriptors.h"

namespace chita::bindings {

void bind_build_info(py::module_& m) {
  m.def("build_info", [] {
    py::dict info;
    info["version"] = CHITA_VERSION;
    info["openmp_threads"] = omp_get_max_threads();
    info["openmp_version"] = _OPENMP;
    // Hot loops are compiled for the x86-64 baseline plus AVX2 + FMA code picked at run time
    // (off when the CPU lacks it or CHITA_NO_AVX2=1 is set).
    info["simd"] = cpu::avx2::available() ? "avx2+fma (runtime dispatch; baseline sse2)"
                                          : "sse2 baseline (AVX2 + FMA not in use)";
#if defined(CHITA_WITH_CUDA)
    info["cuda"] = true;
#else
    info["cuda"] = false;
#endif
    info["cuda_architectures"] = cuda_impl::architectures();
    info["cuda_device_count"] = cuda_device_count();
    info["compiler"] = __VERSION__;
    return info;
  });
  m.def("cuda_device_count", &cuda_device_count);
}

}  // namespace chita::bindings
