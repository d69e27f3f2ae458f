// Hot kernels on a matrix far larger than the caches, as a fraction of the copy bandwidth
// measured in the same run (bytes read + written by a parallel copy of A's size), and of
// the read bandwidth (the fastest plain read of A we know: the floor for a kernel that only
// reads A).
//
//   chita_bench_kernels [--n=256] [--p=2000000] [--sparsity=0.9] [benchmark flags]
#include <benchmark/benchmark.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "chita/backend.h"
#include "chita/problem.h"
#include "cpu/thread_count.h"  // resolve_threads: the kernels' default thread count
#include "cpu/thread_pool.h"   // parallel_chunks: the baselines run on the kernels' pool

namespace {

std::int64_t g_n = 256, g_p = 2000000;
double g_sparsity = 0.9;
double g_copy_gbs = 0.0;       // the faster of memcpy and the stream copy
double g_loop_copy_gbs = 0.0;  // plain loop
double g_read_gbs = 0.0;       // read-only pass over A
int g_threads = 1;             // the kernels' default thread count

// body(c) for c in [0, chunks) on the kernels' thread pool and thread count.
template <typename Body>
void on_pool(std::int64_t chunks, Body body) {
  chita::cpu::parallel_chunks(chunks, g_threads, body);
}

struct Data {
  std::vector<float> a32, r, w, x;
  std::vector<std::uint16_t> a16;
  std::vector<std::int64_t> support;
  std::vector<double> out_n;
  std::vector<float> out_p;
  Data() {
    const std::int64_t np = g_n * g_p;
    a32.resize(np);
    a16.resize(np);
    constexpr std::int64_t kFill = 1 << 22;  // one random stream per chunk of A
    on_pool((np + kFill - 1) / kFill, [&](std::int64_t c) {
      std::mt19937 gen(1234 + c);
      std::normal_distribution<float> normal;
      for (std::int64_t i = c * kFill; i < std::min(np, (c + 1) * kFill); ++i) {
        a32[i] = normal(gen);
        std::uint32_t bits;
        std::memcpy(&bits, &a32[i], 4);
        a16[i] = static_cast<std::uint16_t>(bits >> 16);
      }
    });
    std::mt19937 gen(7);
    std::normal_distribution<float> normal;
    r.resize(g_n);
    for (auto& v : r) v = normal(gen);
    w.resize(g_p);
    for (auto& v : w) v = normal(gen);
    const std::int64_t k = static_cast<std::int64_t>((1.0 - g_sparsity) * g_p);
    for (std::int64_t j = 0; j < g_p && static_cast<std::int64_t>(support.size()) < k; ++j)
      if (j % (g_p / k) == 0) support.push_back(j);
    x.assign(support.size(), 0.5f);
    out_n.resize(g_n);
    out_p.resize(g_p);
  }
  chita::MatrixView view(bool bf16) const {
    chita::MatrixView A;
    A.data = bf16 ? static_cast<const void*>(a16.data()) : a32.data();
    A.n = g_n;
    A.p = g_p;
    A.dtype = bf16 ? chita::DType::bf16 : chita::DType::f32;
    return A;
  }
};

Data& data() {
  static Data d;
  return d;
}

// glibc memcpy over one contiguous share per thread: each share is far above glibc's
// non-temporal threshold, so it streams with non-temporal stores.
void parallel_memcpy(const float* src, float* dst, std::int64_t m) {
  const std::int64_t threads = g_threads;
  on_pool(threads, [=](std::int64_t t) {
    const std::int64_t b = m * t / threads, e = m * (t + 1) / threads;
    std::memcpy(dst + b, src + b, static_cast<std::size_t>(e - b) * 4);
  });
}

#if defined(__x86_64__)
// The kernels' two-tier prefetch for the 128 bytes at a: into L1 8 KB ahead, into L2 16 KB
// ahead. always_inline: GCC drops calls to a prefetch-only function it does not inline.
__attribute__((always_inline)) inline void prefetch_two_tier(const float* a) {
  _mm_prefetch(reinterpret_cast<const char*>(a + 2048), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(a + 2064), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(a + 4096), _MM_HINT_T1);
  _mm_prefetch(reinterpret_cast<const char*>(a + 4112), _MM_HINT_T1);
}

// Copy of one chunk with the two-tier prefetch and non-temporal stores.
__attribute__((target("avx2"))) void stream_copy_chunk(const float* src, float* dst,
                                                       std::int64_t m) {
  std::int64_t i = 0;
  for (; i < m && reinterpret_cast<std::uintptr_t>(dst + i) % 32 != 0; ++i) dst[i] = src[i];
  for (; i + 32 <= m; i += 32) {  // non-temporal stores need 32-byte aligned dst
    prefetch_two_tier(src + i);
    for (int j = 0; j < 32; j += 8) _mm256_stream_ps(dst + i + j, _mm256_loadu_ps(src + i + j));
  }
  for (; i < m; ++i) dst[i] = src[i];
  _mm_sfence();
}
#else
void stream_copy_chunk(const float* src, float* dst, std::int64_t m) {
  std::memcpy(dst, src, static_cast<std::size_t>(m) * 4);
}
#endif

// body(begin, end) over [0, m) floats in 1 MB chunks handed out dynamically, as the kernels
// hand out their columns: a thread the hypervisor delays does not hold the others up.
template <typename Body>
void for_each_chunk(std::int64_t m, Body body) {
  constexpr std::int64_t kChunk = 1 << 18;
  on_pool((m + kChunk - 1) / kChunk,
          [&](std::int64_t c) { body(c * kChunk, std::min(m, (c + 1) * kChunk)); });
}

// The copy balanced like the kernels (glibc's memcpy would use ordinary stores at this
// chunk size, so the stream copy is written out).
void parallel_stream_copy(const float* src, float* dst, std::int64_t m) {
  for_each_chunk(m, [=](std::int64_t b, std::int64_t e) { stream_copy_chunk(src + b, dst + b, e - b); });
}

// Copy bandwidth (bytes read + written per second) of one copy of A's float32 bytes.
double copy_gbs(double copy_seconds) {
  return 2.0 * static_cast<double>(data().a32.size()) * sizeof(float) / copy_seconds / 1e9;
}

enum class Copy { memcpy_shares, stream_chunks, plain_loop };

void parallel_copy(Copy how, const float* src, float* dst, std::int64_t m) {
  if (how == Copy::memcpy_shares) return parallel_memcpy(src, dst, m);
  if (how == Copy::stream_chunks) return parallel_stream_copy(src, dst, m);
  // Ordinary stores (read-for-ownership on dst), one contiguous share per thread.
  const std::int64_t threads = g_threads;
  on_pool(threads, [=](std::int64_t t) {
    for (std::int64_t i = m * t / threads; i < m * (t + 1) / threads; ++i) dst[i] = src[i];
  });
}

// Parallel copy of A's float32 bytes, bytes read + written per second (best of 5).
double measure_copy_gbs(Copy how) {
  const auto& src = data().a32;
  std::vector<float> dst(src.size());
  const std::int64_t m = static_cast<std::int64_t>(src.size());
  double best = 1e30;
  for (int rep = 0; rep < 6; ++rep) {  // first rep warms (page faults on dst)
    const auto t0 = std::chrono::steady_clock::now();
    parallel_copy(how, src.data(), dst.data(), m);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0 && s < best) best = s;
  }
  benchmark::DoNotOptimize(dst.data());
  return copy_gbs(best);
}

// The best time of each fast copy of A's float32 bytes, run next to the kernel iterations
// (outside their time) so that kernel and copy share a window: this VM's bandwidth drifts
// by ~20% over minutes, which start-up baselines cannot follow.
struct PairedCopies {
  double memcpy_seconds = 1e30, stream_seconds = 1e30;
  void run() {
    const auto& src = data().a32;
    static std::vector<float> dst(src.size());
    for (Copy how : {Copy::memcpy_shares, Copy::stream_chunks}) {
      const auto t0 = std::chrono::steady_clock::now();
      parallel_copy(how, src.data(), dst.data(), static_cast<std::int64_t>(src.size()));
      benchmark::DoNotOptimize(dst.data());
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double& best = how == Copy::memcpy_shares ? memcpy_seconds : stream_seconds;
      best = std::min(best, s);
    }
  }
  double fastest_seconds() const { return std::min(memcpy_seconds, stream_seconds); }
};

#if defined(__x86_64__)
// Sum of floats with four AVX2 accumulators and the kernels' two-tier software prefetch
// (L1 8 KB ahead, L2 16 KB ahead): the fastest plain read of A we know on this machine.
__attribute__((target("avx2"))) float read_sum(const float* a, std::int64_t m) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  std::int64_t i = 0;
  for (; i + 32 <= m; i += 32) {
    prefetch_two_tier(a + i);
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  float total = 0.0f;
  for (float v : lanes) total += v;
  for (; i < m; ++i) total += a[i];
  return total;
}
#else
float read_sum(const float* a, std::int64_t m) {
  float total = 0.0f;
  for (std::int64_t i = 0; i < m; ++i) total += a[i];
  return total;
}
#endif

// Bytes of A read per second by read_sum over A's float32 values in 1 MB chunks handed out
// dynamically, as the kernels' columns are (best of 5).
double measure_read_gbs() {
  const auto& src = data().a32;
  const std::int64_t m = static_cast<std::int64_t>(src.size());
  double best = 1e30;
  for (int rep = 0; rep < 6; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for_each_chunk(m, [&](std::int64_t b, std::int64_t e) {
      benchmark::DoNotOptimize(read_sum(src.data() + b, e - b));
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0 && s < best) best = s;
  }
  return m * sizeof(float) / best / 1e9;
}

// GB/s over the mean time and fractions of the baselines measured at start-up; the
// baselines are best-of-5, so best_frac_copy_bw (best iteration) compares like with like.
// paired_frac_{memcpy,stream}_bw: best iteration against the best copy of each kind run
// beside the iterations.
void report_bandwidth(benchmark::State& state, double bytes_per_iter, double total, double best,
                      const PairedCopies& copies) {
  const double gbs = bytes_per_iter * state.iterations() / total / 1e9;
  const double best_gbs = bytes_per_iter / best / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["frac_copy_bw"] = gbs / g_copy_gbs;
  state.counters["best_frac_copy_bw"] = best_gbs / g_copy_gbs;
  state.counters["paired_frac_memcpy_bw"] = best_gbs / copy_gbs(copies.memcpy_seconds);
  state.counters["paired_frac_stream_bw"] = best_gbs / copy_gbs(copies.stream_seconds);
  state.counters["frac_loop_copy_bw"] = gbs / g_loop_copy_gbs;
  state.counters["frac_read_bw"] = gbs / g_read_gbs;
}

// Times `body` per iteration with a wall clock (the kernels are multi-threaded); the paired
// copies of A run before each iteration, outside the reported time.
template <typename Body>
void timed(benchmark::State& state, double bytes_per_iter, Body body) {
  double total = 0.0, best = 1e30;
  PairedCopies copies;
  for (auto _ : state) {
    copies.run();
    const auto t0 = std::chrono::steady_clock::now();
    body();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(s);
    total += s;
    best = std::min(best, s);
  }
  report_bandwidth(state, bytes_per_iter, total, best, copies);
}

void BM_Atr(benchmark::State& state) {
  const bool bf16 = state.range(0);
  auto& d = data();
  const auto A = d.view(bf16);
  auto be = chita::make_backend(chita::DeviceRef{}, 0);
  timed(state, static_cast<double>(A.bytes()), [&] { be->atr(A, d.r.data(), d.out_p.data()); });
}

void BM_AxSparse(benchmark::State& state) {
  const bool bf16 = state.range(0);
  auto& d = data();
  const auto A = d.view(bf16);
  auto be = chita::make_backend(chita::DeviceRef{}, 0);
  const std::int64_t k = d.support.size();
  timed(state, static_cast<double>(k * g_n * A.element_bytes()),
        [&] { be->ax_sparse(A, d.support.data(), d.x.data(), k, d.out_n.data()); });
}

void BM_TopkAbs(benchmark::State& state) {
  auto& d = data();
  auto be = chita::make_backend(chita::DeviceRef{}, 0);
  std::vector<std::int64_t> idx(d.support.size());
  timed(state, static_cast<double>(g_p * sizeof(float)),
        [&] { be->topk_abs(d.w.data(), g_p, idx.size(), idx.data()); });
}

// One IHT iteration, timed inside the real solver's loop (set-up and backsolve excluded).
void BM_IhtIteration(benchmark::State& state) {
  const bool bf16 = state.range(0);
  auto& d = data();
  const auto A = d.view(bf16);
  auto be = chita::make_backend(chita::DeviceRef{}, 0);
  std::vector<double> b64(g_n);
  be->ax_dense(A, d.w.data(), b64.data());
  std::vector<float> b(b64.begin(), b64.end());
  for (auto& v : b) v *= 1.01f;  // b != A w_bar: the first iterations keep moving
  chita::Problem pb;
  pb.A = A;
  pb.b = b.data();
  pb.w_bar = d.w.data();
  pb.lam = 1.0;
  pb.k = static_cast<std::int64_t>(d.support.size());
  chita::SolveOptions opt;
  opt.method = "iht";
  opt.tol = 0.0;
  opt.max_iter = 10;
  double total = 0.0, best = 1e30;
  PairedCopies copies;
  int steps_chg = 0, steps = 0;
  for (auto _ : state) {
    copies.run();
    const auto res = chita::solve(*be, pb, opt);
    const double s = res.iteration_seconds / std::max(res.iterations, 1);
    state.SetIterationTime(s);
    total += s;
    best = std::min(best, s);
    steps_chg += res.steps_chg;
    steps += res.iterations;
  }
  state.counters["support_changing_steps"] = static_cast<double>(steps_chg) / std::max(steps, 1);
  // Bytes of A over the iteration time: frac 1.0 would mean the iteration costs exactly one
  // pass over A at that baseline's speed. x_read_pass = iteration time / one read-only pass
  // over A; paired_x_copy_rate = best iteration / A's bytes at the faster paired copy's
  // rate (read + written), the strict reading of "the time of streaming A once".
  const double bytes = static_cast<double>(A.bytes());
  report_bandwidth(state, bytes, total, best, copies);
  state.counters["x_read_pass"] = (total / state.iterations()) * g_read_gbs * 1e9 / bytes;
  state.counters["paired_x_copy_rate"] = best * copy_gbs(copies.fastest_seconds()) * 1e9 / bytes;
}

}  // namespace

BENCHMARK(BM_Atr)->Arg(0)->Arg(1)->ArgName("bf16")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AxSparse)->Arg(0)->Arg(1)->ArgName("bf16")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TopkAbs)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_IhtIteration)->Arg(0)->Arg(1)->ArgName("bf16")->UseManualTime()->Iterations(2)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--n=", 0) == 0) g_n = std::stoll(a.substr(4));
    else if (a.rfind("--p=", 0) == 0) g_p = std::stoll(a.substr(4));
    else if (a.rfind("--sparsity=", 0) == 0) g_sparsity = std::stod(a.substr(11));
    else rest.push_back(argv[i]);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  g_threads = chita::cpu::resolve_threads(0);
  data();
  const double memcpy_gbs = measure_copy_gbs(Copy::memcpy_shares);
  const double stream_gbs = measure_copy_gbs(Copy::stream_chunks);
  g_copy_gbs = std::max(memcpy_gbs, stream_gbs);
  g_loop_copy_gbs = measure_copy_gbs(Copy::plain_loop);
  g_read_gbs = measure_read_gbs();
  std::printf("n=%lld p=%lld sparsity=%.3f threads=%d A(f32)=%.2f GB copy bandwidth (read + "
              "written): memcpy %.2f GB/s, stream copy %.2f GB/s, plain loop %.2f GB/s; read-only "
              "%.2f GB/s\n",
              static_cast<long long>(g_n), static_cast<long long>(g_p), g_sparsity,
              g_threads, g_n * g_p * 4 / 1e9, memcpy_gbs, stream_gbs, g_loop_copy_gbs,
              g_read_gbs);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
