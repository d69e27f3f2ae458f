// _core.solve: one call into the C++ solvers, GIL released, results back as numpy arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "chita/problem.h"
#include "descriptors.h"
#include "solvers/methods.h"  // method_table

namespace chita::bindings {
namespace {

template <typename T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, heap->data(), owner);
}

}  // namespace

void bind_solve(py::module_& m) {
  m.def(
      "solve",
      [](BackendHandle& h, const MatrixView& A, std::uintptr_t b, std::uintptr_t w_bar,
         std::uintptr_t alpha, std::uintptr_t w0, std::int64_t k, double lam,
         const std::string& method, int max_iter, double tol, int power_iters,
         int max_doublings, double time_limit, const py::dict& quality) {
        Problem pb;
        pb.A = A;
        pb.b = ptr<const float>(b);
        pb.w_bar = ptr<const float>(w_bar);
        pb.alpha = alpha ? ptr<const float>(alpha) : nullptr;
        pb.lam = lam;
        pb.k = k;
        SolveOptions opt;
        opt.method = method;
        opt.max_iter = max_iter;
        opt.tol = tol;
        opt.threads = h.threads;
        opt.w0 = w0 ? ptr<const float>(w0) : nullptr;
        opt.power_iters = power_iters;
        opt.max_doublings = max_doublings;
        opt.time_limit = time_limit;
        // Options of the quality methods (docs/solvers.md), by SolveOptions field name.
        if (quality.contains("greedy_rate")) opt.greedy_rate = quality["greedy_rate"].cast<double>();
        if (quality.contains("swap_rounds")) opt.swap_rounds = quality["swap_rounds"].cast<int>();
        if (quality.contains("swap_size")) opt.swap_size = quality["swap_size"].cast<std::int64_t>();
        if (quality.contains("blocks")) opt.blocks = quality["blocks"].cast<std::vector<std::int64_t>>();
        if (quality.contains("block_size")) opt.block_size = quality["block_size"].cast<std::int64_t>();
        SolveResult res;
        {
          py::gil_scoped_release nogil;
          res = solve(*h.backend, pb, opt);
        }
        py::dict out;
        out["w"] = to_numpy(std::move(res.w));
        out["support"] = to_numpy(std::move(res.support));
        out["objective"] = res.objective;
        out["history"] = to_numpy(std::move(res.history));
        out["iterations"] = res.iterations;
        out["seconds"] = res.seconds;
        out["method"] = res.method;
        out["converged"] = res.converged;
        py::dict info;
        info["steps_opt"] = res.steps_opt;
        info["steps_chg"] = res.steps_chg;
        info["steps_lip"] = res.steps_lip;
        info["stop_reason"] = res.stop_reason;
        info["iteration_seconds"] = res.iteration_seconds;
        out["info"] = info;
        return out;
      },
      py::arg("backend"), py::arg("A"), py::arg("b"), py::arg("w_bar"), py::arg("alpha"),
      py::arg("w0"), py::arg("k"), py::arg("lam"), py::arg("method"), py::arg("max_iter"),
      py::arg("tol"), py::arg("power_iters"), py::arg("max_doublings"),
      py::arg("time_limit"), py::arg("quality") = py::dict());

  m.def("methods", [] {
    int count = 0;
    const MethodEntry* table = method_table(&count);
    std::vector<std::string> names;
    for (int i = 0; i < count; ++i) names.emplace_back(table[i].name);
    return names;
  });
}

}  // namespace chita::bindings
