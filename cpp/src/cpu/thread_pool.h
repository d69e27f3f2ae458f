// The CPU kernels' own fork-join thread pool (no OpenMP runtime): persistent workers that
// block after a short bounded spin, chunks handed out by an atomic counter, the calling
// thread working too. Why not libgomp: it spin-waits for milliseconds after every region
// (on a busy machine that burnt 6x the CPU of the work itself) and a second copy of it
// ships inside torch.
#pragma once
#include <cstdint>
#include <type_traits>

namespace chita::cpu {

using ChunkFn = void (*)(void* context, std::int64_t chunk);

// Runs fn(context, c) once for every c in [0, chunks) on up to `threads` threads, the
// calling thread included, and returns when every chunk has completed. A worker that wakes
// late finds no chunk left and is not waited for. Runs inline, waking nobody, when
// threads <= 1, chunks <= 1, or when called from inside a region (nested regions are
// serial). One top-level region runs at a time; a second caller waits for it. The first
// exception thrown by a chunk is re-thrown here; chunks not yet started are then skipped.
void run_chunks(std::int64_t chunks, int threads, ChunkFn fn, void* context);

// body(c) for every chunk c in [0, chunks): run_chunks with any callable.
template <typename Body>
void parallel_chunks(std::int64_t chunks, int threads, Body&& body) {
  using B = std::remove_reference_t<Body>;
  run_chunks(chunks, threads,
             [](void* ctx, std::int64_t c) { (*static_cast<B*>(ctx))(c); },
             const_cast<void*>(static_cast<const void*>(&body)));
}

// True on a pool worker, and on a caller while its region runs (then regions run inline).
bool inside_parallel_region();

// Workers started so far (they are started on first need, up to threads - 1).
int pool_workers();

}  // namespace chita::cpu
