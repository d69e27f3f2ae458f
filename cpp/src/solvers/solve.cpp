// solve(): checks the problem once, then runs the method from the table.
#include <cmath>
#include <string>

#include "chita/errors.h"
#include "chita/problem.h"
#include "solvers/common.h"   // ObjectiveEvaluator
#include "solvers/methods.h"
#include "solvers/quality_methods.h"  // greedy, swap, active, block, auto

namespace chita {
namespace {

// The method table: every `method=` of chita_ext.solve.
const MethodEntry kMethods[] = {
    {"mp", solve_mp},
    {"bso", solve_bso},
    {"iht", solve_iht},
    {"greedy", solve_greedy},
    {"swap", solve_swap},
    {"active", solve_active},
    {"block", solve_block},
    {"auto", solve_auto},
};

std::string method_names() {
  std::string names;
  for (const auto& m : kMethods) names += (names.empty() ? "" : ", ") + std::string(m.name);
  return names;
}

void check_problem(const Problem& pb, const SolveOptions& opt) {
  const auto& A = pb.A;
  CHITA_THROW_IF_NOT(A.data && A.n >= 1 && A.p >= 1, "A must be a non-empty n x p matrix");
  CHITA_THROW_IF_NOT(pb.b && pb.w_bar, "b and w_bar must be given");
  CHITA_THROW_IF_NOT(pb.k >= 1 && pb.k <= A.p, "k=", pb.k, " must be in [1, p=", A.p, "]");
  CHITA_THROW_IF_NOT(std::isfinite(pb.lam) && pb.lam >= 0,
                     "lam=", pb.lam, " must be a finite number >= 0");
  CHITA_THROW_IF_NOT(opt.max_iter >= 0, "max_iter=", opt.max_iter, " must be >= 0");
  CHITA_THROW_IF_NOT(std::isfinite(opt.tol) && opt.tol >= 0, "tol=", opt.tol, " must be >= 0");
  CHITA_THROW_IF_NOT(opt.power_iters >= 1, "power_iters must be >= 1");
  CHITA_THROW_IF_NOT(opt.max_doublings >= 0, "max_doublings must be >= 0");
}

}  // namespace

const MethodEntry* method_table(int* count) {
  *count = static_cast<int>(sizeof(kMethods) / sizeof(kMethods[0]));
  return kMethods;
}

SolveResult solve(Backend& backend, const Problem& problem, const SolveOptions& options) {
  check_problem(problem, options);
  for (const auto& m : kMethods)
    if (options.method == m.name) return m.fn(backend, problem, options);
  throw InvalidArgument("unknown method '" + options.method + "'; choose one of " +
                        method_names());
}

double objective(Backend& backend, const Problem& problem, const std::int64_t* support,
                 const float* values, std::int64_t k) {
  Problem pb = problem;
  pb.k = k;  // the evaluator's scratch is sized by k
  ObjectiveEvaluator eval(backend, pb);
  auto r = backend.alloc_f64(pb.A.n);
  return eval.evaluate(support, values, k, r.data());
}

}  // namespace chita
