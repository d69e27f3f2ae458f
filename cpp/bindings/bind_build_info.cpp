// build_info(): what this build compiled in, for users and bug reports; and the thread
// count resolution (chita_ext._threads).
#include <pybind11/pybind11.h>

#include "chita/cuda_backend.h"  // cuda_impl::architectures
#include "cpu/columns_avx2.h"     // cpu::avx2::available
#include "cpu/thread_count.h"     // default_threads, available_cpus, cgroup_cpu_quota
#include "descriptors.h"

namespace chita::bindings {

void bind_build_info(py::module_& m) {
  m.def("build_info", [] {
    py::dict info;
    info["version"] = CHITA_VERSION;
    const auto t = cpu::default_threads();
    info["threads"] = t.threads;
    info["threads_source"] = t.source;
    info["available_cpus"] = cpu::available_cpus();
    info["thread_pool"] = "chita (blocking workers; no OpenMP runtime)";
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

  auto t = m.def_submodule("threads", "CPU thread counts (see chita_ext._threads)");
  t.def("affinity_cpus", &cpu::affinity_cpus);
  t.def("available_cpus", &cpu::available_cpus);
  t.def("cgroup_cpu_quota", &cpu::cgroup_cpu_quota, py::arg("proc_cgroup") = "/proc/self/cgroup",
        py::arg("mountinfo") = "/proc/self/mountinfo", py::arg("root") = "");
  t.def("parse_thread_count", [](const std::string& text) {
    return cpu::parse_thread_count(text.c_str());
  });
  t.def("default_threads", [] {
    const auto d = cpu::default_threads();
    return py::make_tuple(d.threads, d.source);
  });
  t.def("resolve_threads", &cpu::resolve_threads, py::arg("requested"));
}

}  // namespace chita::bindings
