// bso: the exact ridge solution on a fixed support (from w0 if given, else from mp).
#include "solvers/common.h"
#include "solvers/methods.h"

namespace chita {

SolveResult solve_bso(Backend& be, const Problem& pb, const SolveOptions& opt) {
  Stopwatch clock;
  SparseIterate it(be, pb.k);
  be.topk_abs(opt.w0 ? opt.w0 : pb.w_bar, pb.A.p, pb.k, it.idx.data());
  backsolve(be, pb, it.idx.data(), it.k, it.val.data(), opt.threads);
  ObjectiveEvaluator eval(be, pb);
  auto r = be.alloc_f64(pb.A.n);
  const double f = eval.evaluate(it.idx.data(), it.val.data(), it.k, r.data());
  SolveResult res;
  finish_result(be, pb, it, f, res);
  res.history = {f};
  res.method = "bso";
  res.converged = true;
  res.seconds = clock.seconds();
  return res;
}

}  // namespace chita
