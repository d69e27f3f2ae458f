// Every `method=` of solve(): one function each, all with the same signature.
#pragma once
#include "chita/backend.h"
#include "chita/problem.h"

namespace chita {

using SolverFn = SolveResult (*)(Backend&, const Problem&, const SolveOptions&);

SolveResult solve_mp(Backend& be, const Problem& pb, const SolveOptions& opt);
SolveResult solve_bso(Backend& be, const Problem& pb, const SolveOptions& opt);
SolveResult solve_iht(Backend& be, const Problem& pb, const SolveOptions& opt);

struct MethodEntry {
  const char* name;
  SolverFn fn;
};

// The method table (solve.cpp); the names are what Python's `method=` accepts.
const MethodEntry* method_table(int* count);

}  // namespace chita
