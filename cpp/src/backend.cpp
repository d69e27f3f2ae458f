// The single device-dispatch point: which Backend serves a DeviceRef.
#include "chita/backend.h"

#include "chita/cuda_backend.h"  // cuda_impl::make_backend (or its not-compiled stub)
#include "cpu/cpu_backend.h"     // cpu::make_cpu_backend

namespace chita {

std::unique_ptr<Backend> make_backend(const DeviceRef& device, int threads) {
  if (device.kind == Device::cuda) return cuda_impl::make_backend(device);
  return cpu::make_cpu_backend(threads);
}

int cuda_device_count() { return cuda_impl::device_count(); }

}  // namespace chita
