// Matrix and Backend objects for Python.
#include <pybind11/pybind11.h>

#include "descriptors.h"

namespace chita::bindings {

void bind_descriptors(py::module_& m) {
  py::class_<MatrixView>(m, "Matrix", "Descriptor of an n x p gradient matrix (no copy)")
      .def(py::init([](std::uintptr_t data, std::int64_t n, std::int64_t p,
                       const std::string& dtype, const std::string& layout,
                       const std::string& device, int device_index, std::uintptr_t stream) {
             CHITA_THROW_IF_NOT(data != 0, "A has a null data pointer");
             CHITA_THROW_IF_NOT(n >= 1 && p >= 1, "A must have n >= 1 and p >= 1");
             MatrixView v;
             v.data = ptr<const void>(data);
             v.n = n;
             v.p = p;
             v.dtype = parse_dtype(dtype);
             v.layout = parse_layout(layout);
             v.device = parse_device(device, device_index, stream);
             return v;
           }),
           py::arg("data"), py::arg("n"), py::arg("p"), py::arg("dtype"), py::arg("layout"),
           py::arg("device") = "cpu", py::arg("device_index") = 0, py::arg("stream") = 0)
      .def_readonly("n", &MatrixView::n)
      .def_readonly("p", &MatrixView::p);

  py::class_<BackendHandle>(m, "Backend", "Kernels of one device")
      .def(py::init([](const std::string& device, int device_index, std::uintptr_t stream,
                       int threads) {
             BackendHandle h;
             h.backend = make_backend(parse_device(device, device_index, stream), threads);
             h.threads = threads;
             return h;
           }),
           py::arg("device") = "cpu", py::arg("device_index") = 0, py::arg("stream") = 0,
           py::arg("threads") = 0);
}

}  // namespace chita::bindings
