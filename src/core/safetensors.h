// Strict reader and writer of the safetensors format (https://huggingface.co/docs/safetensors):
// u64 little-endian header length N, N bytes of JSON header, then the data area.
// The reader memory-maps the file and validates everything before handing out a tensor:
// header inside the file, JSON object, known dtypes, byte spans equal to shape x element size,
// inside the data area, not overlapping and covering it exactly.
#pragma once

#include <ATen/Tensor.h>

#include "core/safetensors_format.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace vi::core {

at::ScalarType to_scalar_type(DType dtype);
DType from_scalar_type(at::ScalarType type);  // throws for types safetensors cannot hold here

class MappedFile;

// One memory-mapped .safetensors file. Tensors returned by tensor() are CPU views into the
// mapping (read-only memory: clone before writing into them) and keep the mapping alive.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> map_;
  SafetensorsHeader header_;
  std::unordered_map<std::string, size_t> index_;
};

// The weights of one model component: a single .safetensors file or a sharded checkpoint
// (*.safetensors.index.json with a weight_map).
class WeightStore {
 public:
  // `path`: a .safetensors file, a .safetensors.index.json, or a directory holding one
  // checkpoint (diffusion_pytorch_model / model, sharded or not).
  static WeightStore open(const std::string& path);
  // The checkpoint file a directory would open, or nullopt when it holds none.
  static std::optional<std::string> locate(const std::string& dir);

  const std::string& origin() const { return origin_; }
  std::vector<std::string> names() const;  // sorted
  const TensorInfo* find(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;
  // The tensor, converted to `dtype` when given (a view into the mapping when no conversion
  // is needed). Throws naming the tensor and the file when it is absent.
  at::Tensor get(const std::string& name, std::optional<at::ScalarType> dtype = std::nullopt) const;
  size_t size() const { return where_.size(); }

 private:
  std::string origin_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, size_t> where_;  // tensor name -> index in files_
};

// Writes tensors (any device, contiguous or not) atomically: a temporary file beside `path`,
// renamed over it once complete. Names must be unique.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace vi::core
