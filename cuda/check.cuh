// Every CUDA runtime call goes through CHITA_CUDA_CHECK; every launch is followed by
// CHITA_CUDA_CHECK_LAUNCH(). A failure throws std::runtime_error (-> Python RuntimeError)
// naming the call, the CUDA error and where it happened (file name only, no build paths).
#pragma once
#include <cuda_runtime_api.h>  // cudaError_t, cudaGetErrorString, cudaGetLastError

#include <stdexcept>  // std::runtime_error
#include <string>

#include "chita/errors.h"  // detail::file_name

namespace chita::cuda_impl {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file,
                                          int line) {
  throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(err) + " (" +
                           cudaGetErrorName(err) + ") in `" + what + "` at " +
                           ::chita::detail::file_name(file) + ":" + std::to_string(line));
}

}  // namespace chita::cuda_impl

#define CHITA_CUDA_CHECK(call)                                                  \
  do {                                                                          \
    const cudaError_t chita_err_ = (call);                                      \
    if (chita_err_ != cudaSuccess)                                              \
      ::chita::cuda_impl::throw_cuda_error(chita_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: configuration errors surface here, execution errors at the
// next synchronising call (which is checked too).
#define CHITA_CUDA_CHECK_LAUNCH() CHITA_CUDA_CHECK(cudaGetLastError())
