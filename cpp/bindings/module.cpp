// chita_ext._core: the pybind11 module. Every long call releases the GIL.
#include <pybind11/pybind11.h>

#include "descriptors.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "chita_ext compiled core (kernels and solvers); use the chita_ext package API";
  namespace b = chita::bindings;
  pybind11::register_exception<chita::NotCompiled>(m, "NotCompiledError", PyExc_RuntimeError);
  b::bind_descriptors(m);
  b::bind_kernels(m);
  b::bind_solve(m);
  b::bind_ridge_path(m);
  b::bind_build_info(m);
}
