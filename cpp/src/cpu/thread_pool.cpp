// The pool behind run_chunks (thread_pool.h).
//
// A region is a Job shared (shared_ptr) by the caller and the workers posted to it. Chunks
// are claimed with one fetch_add each; the thread that completes the last chunk signals
// the caller. A worker that wakes after the job is finished claims nothing, and since the
// job is reference-counted it never touches freed memory, so the caller never waits for
// workers to wake, only for chunks to complete. Each worker has its own slot, so a region
// wakes exactly the helpers it needs; a busy worker's stale job is simply replaced.
#include "cpu/thread_pool.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace chita::cpu {
namespace {

// Spin this long before blocking: enough to catch the next region of a solver iteration
// (they follow each other within microseconds) without burning a busy machine's CPU.
constexpr auto kSpin = std::chrono::microseconds(50);

thread_local bool t_inside_region = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until ready() or kSpin has passed; true if ready() became true.
template <typename Ready>
bool spin_until(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

struct Job {
  Job(std::int64_t c, ChunkFn f, void* ctx) : chunks(c), fn(f), context(ctx) {}
  const std::int64_t chunks;
  const ChunkFn fn;
  void* const context;
  std::atomic<std::int64_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // written once, by the thread that set `failed`
  std::mutex mutex;          // guards finished (the caller's wait after its spin)
  std::condition_variable finished_cv;
  bool finished = false;

  // Claims and runs chunks until none is left. Never throws.
  void work() noexcept {
    for (;;) {
      const std::int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          fn(context, c);
        } catch (...) {
          if (!failed.exchange(true)) error = std::current_exception();
        }
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          finished = true;
        }
        finished_cv.notify_one();
      }
    }
  }

  void wait() {
    if (spin_until([&] { return done.load(std::memory_order_acquire) == chunks; })) return;
    std::unique_lock<std::mutex> lock(mutex);
    finished_cv.wait(lock, [&] { return finished; });
  }
};

class Worker {
 public:
  Worker() : thread_([this] { loop(); }) { thread_.detach(); }

  void post(std::shared_ptr<Job> job) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = std::move(job);
      posted_.store(true, std::memory_order_release);
      wake = sleeping_;
    }
    if (wake) cv_.notify_one();
  }

 private:
  void loop() {
    t_inside_region = true;  // regions started from a worker run inline
    for (;;) take()->work();
  }

  std::shared_ptr<Job> take() {
    spin_until([&] { return posted_.load(std::memory_order_acquire); });
    std::unique_lock<std::mutex> lock(mutex_);
    while (!job_) {
      sleeping_ = true;
      cv_.wait(lock);
      sleeping_ = false;
    }
    posted_.store(false, std::memory_order_relaxed);
    return std::move(job_);
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::shared_ptr<Job> job_;  // guarded by mutex_
  std::atomic<bool> posted_{false};
  bool sleeping_ = false;     // guarded by mutex_
  std::thread thread_;
};

class Pool {
 public:
  void run(std::int64_t chunks, int threads, ChunkFn fn, void* context) {
    std::lock_guard<std::mutex> region(region_mutex_);  // one top-level region at a time
    const int helpers = grow(static_cast<int>(std::min<std::int64_t>(threads, chunks)) - 1);
    auto job = std::make_shared<Job>(chunks, fn, context);
    for (int i = 0; i < helpers; ++i) workers_[i]->post(job);
    t_inside_region = true;
    job->work();
    job->wait();
    if (job->error) std::rethrow_exception(job->error);
  }

  int size() {
    std::lock_guard<std::mutex> region(region_mutex_);
    return static_cast<int>(workers_.size());
  }

 private:
  // Starts workers up to `wanted`; returns how many there are, at most `wanted` (fewer
  // when the system refuses new threads: the region then runs on those it has).
  int grow(int wanted) {
    while (static_cast<int>(workers_.size()) < wanted) {
      try {
        workers_.push_back(std::make_unique<Worker>());
      } catch (const std::system_error&) {
        break;
      }
    }
    return std::min(wanted, static_cast<int>(workers_.size()));
  }

  std::mutex region_mutex_;
  std::vector<std::unique_ptr<Worker>> workers_;  // never destroyed (detached threads)
};

Pool*& pool_slot() {
  static Pool* pool = [] {
    // A forked child has none of the parent's workers: give it a fresh pool. The old one
    // is leaked on purpose (its mutexes may have been held at the fork).
    pthread_atfork(nullptr, nullptr, [] { pool_slot() = new Pool; });
    return new Pool;
  }();
  return pool;
}

}  // namespace

void run_chunks(std::int64_t chunks, int threads, ChunkFn fn, void* context) {
  if (threads <= 1 || chunks <= 1 || t_inside_region) {
    for (std::int64_t c = 0; c < chunks; ++c) fn(context, c);
    return;
  }
  struct Reset {  // t_inside_region is cleared even if the region throws
    ~Reset() { t_inside_region = false; }
  } reset;
  pool_slot()->run(chunks, threads, fn, context);
}

bool inside_parallel_region() { return t_inside_region; }

int pool_workers() { return pool_slot()->size(); }

}  // namespace chita::cpu
