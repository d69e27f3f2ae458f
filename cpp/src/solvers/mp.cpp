// mp: keep the k largest |w_bar| at their values. The baseline.
#include "solvers/common.h"
#include "solvers/methods.h"

namespace chita {

SolveResult solve_mp(Backend& be, const Problem& pb, const SolveOptions&) {
  Stopwatch clock;
  SparseIterate it(be, pb.k);
  top_k_of(be, pb.w_bar, pb.A.p, it);
  ObjectiveEvaluator eval(be, pb);
  auto r = be.alloc_f64(pb.A.n);
  const double f = eval.evaluate(it.idx.data(), it.val.data(), it.k, r.data());
  SolveResult res;
  finish_result(be, pb, it, f, res);
  res.history = {f};
  res.method = "mp";
  res.converged = true;
  res.seconds = clock.seconds();
  return res;
}

}  // namespace chita
