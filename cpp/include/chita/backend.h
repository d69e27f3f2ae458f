// The kernel interface: every hot operation the solvers need, implemented once per device.
//
// Solvers (cpp/src/solvers) are written against this class only; the CPU backend lives in
// cpp/src/cpu, the CUDA one in cuda/. All pointers given to a backend point into memory of
// that backend's device (allocated with alloc_*), except where a parameter says "host".
// Conventions:
//   * p-length vectors (weights, gradients) are float32; n-length vectors are float64
//     except the residual handed to atr*, which is float32 (it is streamed against A).
//   * every reduction accumulates in float64 and is deterministic for a given backend:
//     results may differ across thread counts only by float rounding.
//   * index arrays are int64, sorted ascending, without duplicates.
#pragma once
#include <cstdint>
#include <memory>

#include "chita/matrix_view.h"

namespace chita {

// Owning device buffer; freed by the backend that made it.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(T* ptr, std::int64_t size, void (*deleter)(void*))
      : ptr_(ptr, deleter), size_(size) {}
  T* data() const { return static_cast<T*>(ptr_.get()); }
  std::int64_t size() const { return size_; }

 private:
  std::unique_ptr<void, void (*)(void*)> ptr_{nullptr, [](void*) {}};
  std::int64_t size_ = 0;
};

// The terms of the objective's gradient besides -A^T r: g = -A^T r + lam (w - w_bar) + alpha.
struct GradientTerms {
  float lam = 0.0f;
  const float* w = nullptr;      // length p
  const float* w_bar = nullptr;  // length p; null reads as zero
  const float* alpha = nullptr;  // length p; null reads as zero
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceRef device() const = 0;

  // ---- memory ---------------------------------------------------------------------
  virtual Buffer<float> alloc_f32(std::int64_t count) = 0;
  virtual Buffer<double> alloc_f64(std::int64_t count) = 0;
  virtual Buffer<std::int64_t> alloc_i64(std::int64_t count) = 0;
  virtual Buffer<std::uint8_t> alloc_u8(std::int64_t count) = 0;
  // Copies between host memory and this device (plain memcpy on the CPU).
  virtual void to_device(void* dst, const void* host_src, std::int64_t bytes) = 0;
  virtual void to_host(void* host_dst, const void* src, std::int64_t bytes) = 0;
  virtual void synchronize() = 0;

  // ---- products with A --------------------------------------------------------------
  // out[j] = sum_i A(i, j) r[i] for all j < p.                          (the full pass)
  virtual void atr(const MatrixView& A, const float* r, float* out) = 0;
  // out[t] = sum_i A(i, idx[t]) r[i] for t < k.
  virtual void atr_subset(const MatrixView& A, const float* r, const std::int64_t* idx,
                          std::int64_t k, float* out) = 0;
  // out[i] = sum_t A(i, idx[t]) x[t] for i < n (overwrites out).
  virtual void ax_sparse(const MatrixView& A, const std::int64_t* idx, const float* x,
                         std::int64_t k, double* out) = 0;
  // out[i] = sum_j A(i, j) x[j] for i < n (overwrites out).
  virtual void ax_dense(const MatrixView& A, const float* x, double* out) = 0;
  // The IHT gradient with its product on the support idx (length k):
  //   g = -A^T r + lam (w - w_bar) + alpha (length p), g_s[t] = g[idx[t]],
  //   a_g_s = A_S g_s (float64, length n; overwritten).
  // The default runs atr, the vector ops, gather and ax_sparse in turn; the CPU backend
  // fuses them so that the support's columns are read from memory once, not twice.
  virtual void gradient_on_support(const MatrixView& A, const float* r,
                                   const GradientTerms& terms, const std::int64_t* idx,
                                   std::int64_t k, float* g, float* g_s, double* a_g_s);
  // host_out (n x n, row-major, float64, host memory) = A_S A_S^T = sum_t a_t a_t^T.
  virtual void gram_rows(const MatrixView& A, const std::int64_t* idx, std::int64_t k,
                         double* host_out) = 0;
  // host_out (k x k, row-major, float64, host memory) = A_S^T A_S.
  virtual void gram_cols(const MatrixView& A, const std::int64_t* idx, std::int64_t k,
                         double* host_out) = 0;

  // ---- selection ----------------------------------------------------------------------
  // idx_out[0..k) = indices of the k largest |x[j]|, sorted ascending. Ties in |x| go to
  // the smaller index, so the result is unique. 1 <= k <= m.
  virtual void topk_abs(const float* x, std::int64_t m, std::int64_t k,
                        std::int64_t* idx_out) = 0;

  // ---- vector ops (float32 storage, float64 accumulation) -----------------------------
  virtual double dot(const float* x, const float* y, std::int64_t m) = 0;
  virtual double dot_f64(const double* x, const double* y, std::int64_t m) = 0;
  // sum_j (x[j] - y[j])^2
  virtual double sq_dist(const float* x, const float* y, std::int64_t m) = 0;
  // out = a * x + b * y (out may alias x or y)
  virtual void axpby(float a, const float* x, float b, const float* y, float* out,
                     std::int64_t m) = 0;
  // out = a * x + b * y in float64 (out may alias x or y)
  virtual void axpby_f64(double a, const double* x, double b, const double* y, double* out,
                         std::int64_t m) = 0;
  virtual void fill(float* x, std::int64_t m, float value) = 0;
  virtual void fill_u8(std::uint8_t* x, std::int64_t m, std::uint8_t value) = 0;
  virtual void f64_to_f32(const double* x, float* out, std::int64_t m) = 0;
  // dst[t] = src[idx[t]]
  virtual void gather(const float* src, const std::int64_t* idx, std::int64_t k,
                      float* dst) = 0;
  // dst[idx[t]] = src[t]  (other entries untouched)
  virtual void scatter(const float* src, const std::int64_t* idx, std::int64_t k,
                       float* dst) = 0;
  // mask[idx[t]] = value
  virtual void scatter_u8(std::uint8_t value, const std::int64_t* idx, std::int64_t k,
                          std::uint8_t* mask) = 0;
  // x[t] = scale * x[t], or 0 where mask[idx[t]] != 0. Keeps only the entries of a trial
  // support that are new (symmetric difference with the current one).
  virtual void scale_unmarked(float scale, const std::int64_t* idx, std::int64_t k,
                              const std::uint8_t* mask, float* x) = 0;

  // ---- IHT step-size pieces -----------------------------------------------------------
  // max_{j : mask[j] == 0} |g[j]|  (0 when every entry is masked).
  virtual double max_abs_unmasked(const float* g, const std::uint8_t* mask,
                                  std::int64_t m) = 0;
  // The largest step that keeps the support: min over t of |w_t| / (M + sign(w_t) g_t)
  // over the t with a positive denominator and w_t != 0; +inf if none. w_s, g_s are the
  // support's values (length k).
  virtual double support_change_step(const float* w_s, const float* g_s, std::int64_t k,
                                     double M) = 0;
};

// The single device-dispatch point (cpp/src/backend.cpp). threads: CPU threads, capped at
// the CPUs available; <= 0: the default (CHITA_NUM_THREADS, OMP_NUM_THREADS or those CPUs).
std::unique_ptr<Backend> make_backend(const DeviceRef& device, int threads);

// CUDA devices visible to this build (0 when built without CUDA or with no driver).
int cuda_device_count();

}  // namespace chita
