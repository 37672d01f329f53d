// The safetensors format without LibTorch: dtypes, the header, and its strict validation
// (fuzzed on its own: tests/fuzz).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vi::core {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, U8, BOOL };

const char* dtype_name(DType dtype);                 // "F32"
std::optional<DType> parse_dtype(std::string_view name);
size_t dtype_size(DType dtype);
bool dtype_is_floating(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets within the data area
  uint64_t end = 0;
  int64_t numel() const;
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[2, 3]"

// The parsed, validated header. Torch-free so that fuzzers and tools can use it alone.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order (sorted by begin)
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length
};

// Validates `size` bytes of a whole file. `origin` names the file in error messages.
SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& origin);

// Reads and validates only the header of a file (fast on multi-GB files: no mapping of the data).
SafetensorsHeader read_safetensors_header(const std::string& path);

}  // namespace vi::core
