// The CPU implementation of chita::Backend: memory is host memory, kernels run on the
// thread pool (parallel.h).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "chita/backend.h"
#include "chita/errors.h"
#include "cpu/cpu_backend.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "solvers/step_size.h"  // support_change_tau

namespace chita::cpu {
namespace {

constexpr std::int64_t kElementChunk = 1 << 14;  // indices per chunk of element-wise loops

template <typename T>
Buffer<T> host_alloc(std::int64_t count) {
  const std::size_t bytes = static_cast<std::size_t>(count > 0 ? count : 1) * sizeof(T);
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return Buffer<T>(static_cast<T*>(p), count, std::free);
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(resolve_threads(threads)) {}

  DeviceRef device() const override { return DeviceRef{}; }
  Buffer<float> alloc_f32(std::int64_t c) override { return host_alloc<float>(c); }
  Buffer<double> alloc_f64(std::int64_t c) override { return host_alloc<double>(c); }
  Buffer<std::int64_t> alloc_i64(std::int64_t c) override { return host_alloc<std::int64_t>(c); }
  Buffer<std::uint8_t> alloc_u8(std::int64_t c) override { return host_alloc<std::uint8_t>(c); }
  void to_device(void* dst, const void* src, std::int64_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, static_cast<std::size_t>(bytes));
  }
  void to_host(void* dst, const void* src, std::int64_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, static_cast<std::size_t>(bytes));
  }
  void synchronize() override {}

  void atr(const MatrixView& A, const float* r, float* out) override {
    cpu::atr(A, r, out, threads_);
  }
  void atr_subset(const MatrixView& A, const float* r, const std::int64_t* idx,
                  std::int64_t k, float* out) override {
    cpu::atr_subset(A, r, idx, k, out, threads_);
  }
  void ax_sparse(const MatrixView& A, const std::int64_t* idx, const float* x, std::int64_t k,
                 double* out) override {
    cpu::ax(A, idx, x, k, out, threads_);
  }
  void gradient_on_support(const MatrixView& A, const float* r, const GradientTerms& terms,
                           const std::int64_t* idx, std::int64_t k, float* g, float* g_s,
                           double* a_g_s) override {
    // Row-major A has no column blocks to reuse: the unfused default is all there is.
    if (A.layout != Layout::col_major)
      return Backend::gradient_on_support(A, r, terms, idx, k, g, g_s, a_g_s);
    cpu::gradient_on_support(A, r, terms, idx, k, g, g_s, a_g_s, threads_);
  }
  void ax_dense(const MatrixView& A, const float* x, double* out) override {
    cpu::ax(A, nullptr, x, A.p, out, threads_);
  }
  void gram_rows(const MatrixView& A, const std::int64_t* idx, std::int64_t k,
                 double* out) override {
    cpu::gram_rows(A, idx, k, out, threads_);
  }
  void gram_cols(const MatrixView& A, const std::int64_t* idx, std::int64_t k,
                 double* out) override {
    cpu::gram_cols(A, idx, k, out, threads_);
  }
  void topk_abs(const float* x, std::int64_t m, std::int64_t k, std::int64_t* idx) override {
    cpu::topk_abs(x, m, k, idx, threads_);
  }

  double dot(const float* x, const float* y, std::int64_t m) override {
    return ordered_sum(m, threads_, 8, [&](std::int64_t b, std::int64_t e) {
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (std::int64_t j = b; j < e; ++j) s += static_cast<double>(x[j]) * y[j];
      return s;
    });
  }
  double dot_f64(const double* x, const double* y, std::int64_t m) override {
    return ordered_sum(m, threads_, 16, [&](std::int64_t b, std::int64_t e) {
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (std::int64_t j = b; j < e; ++j) s += x[j] * y[j];
      return s;
    });
  }
  double sq_dist(const float* x, const float* y, std::int64_t m) override {
    return ordered_sum(m, threads_, 8, [&](std::int64_t b, std::int64_t e) {
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (std::int64_t j = b; j < e; ++j) {
        const double d = static_cast<double>(x[j]) - y[j];
        s += d * d;
      }
      return s;
    });
  }
  void axpby(float a, const float* x, float b, const float* y, float* out,
             std::int64_t m) override {
    elementwise(m, 12, [&](std::int64_t begin, std::int64_t end) {
#pragma omp simd
      for (std::int64_t j = begin; j < end; ++j) out[j] = a * x[j] + b * y[j];
    });
  }
  void axpby_f64(double a, const double* x, double b, const double* y, double* out,
                 std::int64_t m) override {
    for (std::int64_t j = 0; j < m; ++j) out[j] = a * x[j] + b * y[j];
  }
  void fill(float* x, std::int64_t m, float value) override {
    elementwise(m, 4, [&](std::int64_t begin, std::int64_t end) {
#pragma omp simd
      for (std::int64_t j = begin; j < end; ++j) x[j] = value;
    });
  }
  void fill_u8(std::uint8_t* x, std::int64_t m, std::uint8_t value) override {
    std::memset(x, value, static_cast<std::size_t>(m));
  }
  void f64_to_f32(const double* x, float* out, std::int64_t m) override {
    for (std::int64_t j = 0; j < m; ++j) out[j] = static_cast<float>(x[j]);
  }
  void gather(const float* src, const std::int64_t* idx, std::int64_t k, float* dst) override {
    elementwise(k, 16, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t t = begin; t < end; ++t) dst[t] = src[idx[t]];
    });
  }
  void scatter(const float* src, const std::int64_t* idx, std::int64_t k, float* dst) override {
    elementwise(k, 16, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t t = begin; t < end; ++t) dst[idx[t]] = src[t];
    });
  }
  void scatter_u8(std::uint8_t value, const std::int64_t* idx, std::int64_t k,
                  std::uint8_t* mask) override {
    for (std::int64_t t = 0; t < k; ++t) mask[idx[t]] = value;
  }

  void scale_unmarked(float scale, const std::int64_t* idx, std::int64_t k,
                      const std::uint8_t* mask, float* x) override {
    elementwise(k, 17, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t t = begin; t < end; ++t) x[t] = mask[idx[t]] ? 0.0f : scale * x[t];
    });
  }

  double max_abs_unmasked(const float* g, const std::uint8_t* mask, std::int64_t m) override {
    // The max of the chunks' maxima: exact, whatever the order.
    const std::int64_t chunks = (m + kElementChunk - 1) / kElementChunk;
    std::vector<float> partial(static_cast<std::size_t>(chunks), 0.0f);
    elementwise(m, 5, [&](std::int64_t begin, std::int64_t end) {
      float best = 0.0f;
      for (std::int64_t j = begin; j < end; ++j)
        if (!mask[j]) best = std::max(best, std::fabs(g[j]));
      partial[begin / kElementChunk] = best;
    });
    float best = 0.0f;
    for (float v : partial) best = std::max(best, v);
    return best;
  }
  double support_change_step(const float* w_s, const float* g_s, std::int64_t k,
                             double M) override {
    double best = std::numeric_limits<double>::infinity();
    for (std::int64_t t = 0; t < k; ++t)
      best = std::min(best, support_change_tau(w_s[t], g_s[t], M));
    return best;
  }

 private:
  // body(begin, end) over [0, m) in chunks of kElementChunk; bytes_per_item: the memory
  // traffic of one index (for the work rule in parallel.h).
  template <typename Body>
  void elementwise(std::int64_t m, double bytes_per_item, Body body) {
    parallel_ranges(m, kElementChunk, threads_, bytes_per_item * m, body);
  }

  int threads_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace chita::cpu
