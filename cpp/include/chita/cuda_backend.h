// Declarations of the CUDA backend's entry points (implemented in cuda/ when CUDA is on).
// When it is off, inline stubs say how to rebuild; nothing above the dispatch point
// (cpp/src/backend.cpp) knows which variant it got.
#pragma once
#include <memory>

#include "chita/backend.h"
#include "chita/errors.h"

namespace chita::cuda_impl {

#if defined(CHITA_WITH_CUDA)
std::unique_ptr<Backend> make_backend(const DeviceRef& device);
int device_count();
const char* architectures();  // e.g. "80;90" as compiled
#else
inline constexpr const char* kNotCompiled =
    "chita_ext was built without CUDA; reinstall with "
    "`pip install . -Ccmake.define.CHITA_CUDA=ON` (needs nvcc), or pass CPU arrays";
inline std::unique_ptr<Backend> make_backend(const DeviceRef&) { throw NotCompiled(kNotCompiled); }
inline int device_count() { return 0; }
inline const char* architectures() { return ""; }
#endif

}  // namespace chita::cuda_impl
