// The single device-dispatch point: which Backend serves a DeviceRef.
#include "chita/backend.h"

#include "chita/cuda_backend.h"  // cuda_impl::make_backend (or its not-compiled stub)
#include "cpu/cpu_backend.h"     // cpu::make_cpu_backend

namespace chita {

std::unique_ptr<Backend> make_backend(const DeviceRef& device, int threads) {
  if (device.kind == Device::cuda) return cuda_impl::make_backend(device);
  return cpu::make_cpu_backend(threads);
}

void Backend::gradient_on_support(const MatrixView& A, const float* r,
                                  const GradientTerms& terms, const std::int64_t* idx,
                                  std::int64_t k, float* g, float* g_s, double* a_g_s) {
  atr(A, r, g);
  axpby(-1.0f, g, terms.lam, terms.w, g, A.p);
  if (terms.lam > 0 && terms.w_bar) axpby(1.0f, g, -terms.lam, terms.w_bar, g, A.p);
  if (terms.alpha) axpby(1.0f, g, 1.0f, terms.alpha, g, A.p);
  gather(g, idx, k, g_s);
  ax_sparse(A, idx, g_s, k, a_g_s);
}

int cuda_device_count() { return cuda_impl::device_count(); }

}  // namespace chita
