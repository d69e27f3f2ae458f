// Each Backend kernel, callable from Python on raw device pointers (for tests and benches).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "cpu/kernels.h"   // cpu::all_finite
#include "cpu/thread_count.h"  // cpu::resolve_threads
#include "descriptors.h"

namespace chita::bindings {

using u = std::uintptr_t;
using i64 = std::int64_t;

void bind_kernels(py::module_& m) {
  auto k = m.def_submodule("kernels", "Backend kernels on raw pointers (see chita_ext.kernels)");
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  k.def("atr", [](BackendHandle& h, const MatrixView& A, u r, u out) {
    h.backend->atr(A, ptr<const float>(r), ptr<float>(out));
  }, nogil);
  k.def("atr_subset", [](BackendHandle& h, const MatrixView& A, u r, u idx, i64 kk, u out) {
    h.backend->atr_subset(A, ptr<const float>(r), ptr<const i64>(idx), kk, ptr<float>(out));
  }, nogil);
  k.def("ax_sparse", [](BackendHandle& h, const MatrixView& A, u idx, u x, i64 kk, u out) {
    h.backend->ax_sparse(A, ptr<const i64>(idx), ptr<const float>(x), kk, ptr<double>(out));
  }, nogil);
  k.def("ax_dense", [](BackendHandle& h, const MatrixView& A, u x, u out) {
    h.backend->ax_dense(A, ptr<const float>(x), ptr<double>(out));
  }, nogil);
  k.def("gram_rows", [](BackendHandle& h, const MatrixView& A, u idx, i64 kk, u host_out) {
    h.backend->gram_rows(A, ptr<const i64>(idx), kk, ptr<double>(host_out));
  }, nogil);
  k.def("gram_cols", [](BackendHandle& h, const MatrixView& A, u idx, i64 kk, u host_out) {
    h.backend->gram_cols(A, ptr<const i64>(idx), kk, ptr<double>(host_out));
  }, nogil);
  k.def("topk_abs", [](BackendHandle& h, u x, i64 mm, i64 kk, u out) {
    CHITA_THROW_IF_NOT(kk >= 1 && kk <= mm, "k=", kk, " must be in [1, ", mm, "]");
    h.backend->topk_abs(ptr<const float>(x), mm, kk, ptr<i64>(out));
  }, nogil);
  k.def("dot", [](BackendHandle& h, u x, u y, i64 mm) {
    return h.backend->dot(ptr<const float>(x), ptr<const float>(y), mm);
  }, nogil);
  k.def("sq_dist", [](BackendHandle& h, u x, u y, i64 mm) {
    return h.backend->sq_dist(ptr<const float>(x), ptr<const float>(y), mm);
  }, nogil);
  k.def("max_abs_unmasked", [](BackendHandle& h, u g, u mask, i64 mm) {
    return h.backend->max_abs_unmasked(ptr<const float>(g), ptr<const std::uint8_t>(mask), mm);
  }, nogil);
  k.def("support_change_step", [](BackendHandle& h, u w, u g, i64 kk, double M) {
    return h.backend->support_change_step(ptr<const float>(w), ptr<const float>(g), kk, M);
  }, nogil);
  k.def("synchronize", [](BackendHandle& h) { h.backend->synchronize(); }, nogil);
  k.def("all_finite_cpu", [](const MatrixView& A, int threads) {
    CHITA_THROW_IF_NOT(A.device.kind == Device::cpu, "all_finite_cpu needs a CPU matrix");
    return cpu::all_finite(A, cpu::resolve_threads(threads));
  }, nogil);
}

}  // namespace chita::bindings
