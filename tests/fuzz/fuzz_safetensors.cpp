// Any byte string as a safetensors file: parsed and validated, or refused with vi::Error.
#include <cstddef>
#include <cstdint>

#include "core/check.h"
#include "core/safetensors_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto header = vi::core::parse_safetensors(data, size, "fuzz.safetensors");
    // What was accepted must be self-consistent.
    uint64_t end = 0;
    for (const auto& t : header.tensors) {
      if (t.begin < end || t.end - t.begin != static_cast<uint64_t>(t.numel()) * vi::core::dtype_size(t.dtype)) {
        __builtin_trap();
      }
      end = t.end;
    }
    if (header.data_offset + end != size) __builtin_trap();
  } catch (const vi::Error&) {
  }
  return 0;
}
