// Device synchronisation and peak memory for benchmarks: CUDA through LibTorch's caching
// allocator when LibTorch has CUDA, else the process's peak RSS.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

#include "core/memory_stats.h"

#ifdef VI_TORCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace vi::tools {

#ifdef VI_TORCH_HAS_CUDA
// c10::Device("cuda") has index -1 ("the current device"); the allocator's statistics want a real one.
inline c10::DeviceIndex cuda_index(c10::Device device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
#endif

inline void synchronize(c10::Device device) {
#ifdef VI_TORCH_HAS_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#endif
}

inline void reset_peak_memory(c10::Device device) {
#ifdef VI_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(device));
    return;
  }
#endif
  core::reset_peak_rss();
}

inline double peak_memory_bytes(c10::Device device) {
#ifdef VI_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index(device));
    return static_cast<double>(stats.allocated_bytes[0].peak);
  }
#endif
  return static_cast<double>(core::peak_rss_bytes());
}

}  // namespace vi::tools
