// _core.RidgePath: exact ridge solutions on one fixed support for many lam (the lam search
// of prune()), sharing the Gram matrix and every other lam-independent piece.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <memory>
#include <vector>

#include "chita/problem.h"
#include "descriptors.h"
#include "solvers/common.h"            // ObjectiveEvaluator, Stopwatch
#include "solvers/ridge_on_support.h"  // RidgeOnSupport

namespace chita::bindings {
namespace {

// Owns the problem (views into arrays the Python side keeps alive), the evaluator and the
// prepared support system. Not copyable: the members refer to pb_.
class RidgePath {
 public:
  RidgePath(BackendHandle& h, const MatrixView& A, std::uintptr_t b, std::uintptr_t w_bar,
            std::uintptr_t alpha, std::uintptr_t support, std::int64_t k)
      : be_(*h.backend) {
    pb_.A = A;
    pb_.b = ptr<const float>(b);
    pb_.w_bar = ptr<const float>(w_bar);
    pb_.alpha = alpha ? ptr<const float>(alpha) : nullptr;
    pb_.k = k;
    CHITA_THROW_IF_NOT(k >= 1 && k <= A.p, "k=", k, " must be in [1, p=", A.p, "]");
    py::gil_scoped_release nogil;
    Stopwatch clock;
    ridge_ = std::make_unique<RidgeOnSupport>(be_, pb_, ptr<const std::int64_t>(support), k,
                                              h.threads);
    eval_ = std::make_unique<ObjectiveEvaluator>(be_, pb_);
    vals_ = be_.alloc_f32(k);
    r_ = be_.alloc_f64(A.n);
    setup_seconds_ = clock.seconds();
  }

  // (values on the support as float32 numpy, objective, seconds) for this lam.
  py::tuple solve(double lam) {
    CHITA_THROW_IF_NOT(std::isfinite(lam) && lam >= 0, "lam=", lam, " must be a finite number >= 0");
    double f = 0.0, seconds = 0.0;
    std::vector<float> host(static_cast<std::size_t>(pb_.k));
    {
      py::gil_scoped_release nogil;
      Stopwatch clock;
      pb_.lam = lam;  // the evaluator reads pb_.lam
      ridge_->solve(lam, vals_.data());
      f = eval_->evaluate(ridge_->support(), vals_.data(), pb_.k, r_.data());
      be_.to_host(host.data(), vals_.data(), pb_.k * 4);
      seconds = clock.seconds();
    }
    py::array_t<float> out(static_cast<py::ssize_t>(host.size()));
    std::copy(host.begin(), host.end(), out.mutable_data());
    return py::make_tuple(out, f, seconds);
  }

  double setup_seconds() const { return setup_seconds_; }

 private:
  Backend& be_;
  Problem pb_;
  std::unique_ptr<RidgeOnSupport> ridge_;
  std::unique_ptr<ObjectiveEvaluator> eval_;
  Buffer<float> vals_;
  Buffer<double> r_;
  double setup_seconds_ = 0.0;
};

}  // namespace

void bind_ridge_path(py::module_& m) {
  py::class_<RidgePath>(m, "RidgePath", "Ridge solutions on a fixed support for many lam")
      .def(py::init<BackendHandle&, const MatrixView&, std::uintptr_t, std::uintptr_t,
                    std::uintptr_t, std::uintptr_t, std::int64_t>(),
           py::arg("backend"), py::arg("A"), py::arg("b"), py::arg("w_bar"), py::arg("alpha"),
           py::arg("support"), py::arg("k"), py::keep_alive<1, 2>())
      .def("solve", &RidgePath::solve, py::arg("lam"))
      .def_property_readonly("setup_seconds", &RidgePath::setup_seconds);
}

}  // namespace chita::bindings
