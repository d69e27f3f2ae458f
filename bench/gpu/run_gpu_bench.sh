#!/usr/bin/env bash
# One command on a GPU machine: build chita_ext with the CUDA backend, check every kernel and
# method against the CPU backend (tests/test_cuda.py), then time the kernels and write the
# table to bench/results/gpu_kernels_<gpu>.md.
#
#   bench/gpu/run_gpu_bench.sh [bench_kernels.py options, e.g. --n 1024 --p 1048576]
#
# Environment: PYTHON (default: python3), PIP_ARGS (extra pip options, e.g.
# "--no-build-isolation" on a machine without network access). Needs nvcc (on PATH or in
# /usr/local/cuda/bin), a CUDA driver, and torch with CUDA.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
command -v nvcc >/dev/null 2>&1 || { echo "run_gpu_bench: nvcc not found" >&2; exit 2; }

echo "== build (CHITA_CUDA=ON)"
# shellcheck disable=SC2086  # PIP_ARGS is a list of options
"$PYTHON" -m pip install ${PIP_ARGS:-} . -Ccmake.define.CHITA_CUDA=ON

echo "== build info"
(cd /tmp && "$PYTHON" - <<'PY'
import chita_ext, torch
info = chita_ext.build_info()
print(info)
assert info["cuda"], "the build has no CUDA backend"
assert chita_ext.cuda_device_count() > 0, "chita_ext sees no CUDA device"
assert torch.cuda.is_available(), "torch sees no CUDA device (install a CUDA build of torch)"
PY
)

echo "== check every kernel and method against the CPU backend"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_kernels.py tests/test_solve.py

echo "== time the kernels"
"$PYTHON" bench/gpu/bench_kernels.py --out bench/results "$@"
