#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/check.h"
#include "core/temp_files.h"

namespace fs = std::filesystem;

namespace vi::core {

at::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::F64: return at::kDouble;
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
  }
  VI_FAIL("unknown dtype");
}

DType from_scalar_type(at::ScalarType type) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::U8, DType::BOOL}) {
    if (to_scalar_type(d) == type) return d;
  }
  VI_FAIL("safetensors: cannot store tensors of type {}", c10::toString(type));
}

// ---------------------------------------------------------------------------------------------
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    VI_CHECK(fd_ >= 0, "{}: cannot open: {}", path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      VI_FAIL("{}: not a regular file", path);
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        int err = errno;
        ::close(fd_);
        VI_FAIL("{}: cannot memory-map {} bytes: {}", path, size_, std::strerror(err));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// ---------------------------------------------------------------------------------------------
SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  map_ = std::make_shared<MappedFile>(path);
  header_ = parse_safetensors(map_->data(), map_->size(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo* info = find(name);
  VI_CHECK(info != nullptr, "{}: no tensor named '{}'", path_, name);
  const auto type = to_scalar_type(info->dtype);
  const uint8_t* ptr = map_->data() + header_.data_offset + info->begin;
  const size_t elem = dtype_size(info->dtype);
  if (info->numel() == 0) return at::empty(info->shape, at::TensorOptions().dtype(type));
  if (reinterpret_cast<uintptr_t>(ptr) % elem != 0) {
    // Misaligned for its element type: copy instead of viewing.
    at::Tensor out = at::empty(info->shape, at::TensorOptions().dtype(type));
    std::memcpy(out.data_ptr(), ptr, info->end - info->begin);
    return out;
  }
  auto keep_alive = map_;
  return at::from_blob(
      const_cast<uint8_t*>(ptr), info->shape, [keep_alive](void*) mutable { keep_alive.reset(); },
      at::TensorOptions().dtype(type));
}

// ---------------------------------------------------------------------------------------------
std::optional<std::string> WeightStore::locate(const std::string& dir) {
  for (const char* stem : {"diffusion_pytorch_model", "model"}) {
    for (const char* suffix : {".safetensors", ".safetensors.index.json"}) {
      fs::path candidate = fs::path(dir) / (std::string(stem) + suffix);
      if (fs::is_regular_file(candidate)) return candidate.string();
    }
  }
  return std::nullopt;
}

WeightStore WeightStore::open(const std::string& path) {
  std::string file = path;
  if (fs::is_directory(path)) {
    auto found = locate(path);
    VI_CHECK(found.has_value(),
             "{}: no weights found (expected diffusion_pytorch_model.safetensors, model.safetensors or a "
             "*.safetensors.index.json; .bin/.ckpt pickles are not loaded)",
             path);
    file = *found;
  }
  VI_CHECK(fs::exists(file), "{}: weights file does not exist", file);
  WeightStore store;
  store.origin_ = file;
  const std::string index_suffix = ".index.json";
  if (file.size() > index_suffix.size() &&
      file.compare(file.size() - index_suffix.size(), index_suffix.size(), index_suffix) == 0) {
    nlohmann::json index;
    try {
      std::ifstream in(file);
      VI_CHECK(in.good(), "{}: cannot open", file);
      index = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      VI_FAIL("{}: shard index is not valid JSON: {}", file, e.what());
    }
    VI_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
             "{}: shard index has no 'weight_map' object", file);
    const fs::path base = fs::path(file).parent_path();
    std::map<std::string, size_t> shard_index;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      VI_CHECK(it.value().is_string(), "{}: weight_map entry '{}' is not a file name", file, it.key());
      const std::string shard_name = it.value().get<std::string>();
      VI_CHECK(shard_name.find("..") == std::string::npos && !shard_name.empty() && shard_name[0] != '/',
               "{}: weight_map entry '{}' names '{}', which is not a file beside the index", file, it.key(),
               shard_name);
      auto [pos, inserted] = shard_index.emplace(shard_name, store.files_.size());
      if (inserted) store.files_.push_back(std::make_shared<SafetensorsFile>((base / shard_name).string()));
      const auto& shard = store.files_[pos->second];
      VI_CHECK(shard->find(it.key()) != nullptr, "{}: weight_map puts '{}' in {}, which does not contain it", file,
               it.key(), shard->path());
      store.where_.emplace(it.key(), pos->second);
    }
  } else {
    store.files_.push_back(std::make_shared<SafetensorsFile>(file));
    for (const auto& t : store.files_[0]->tensors()) store.where_.emplace(t.name, 0);
  }
  return store;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

const TensorInfo* WeightStore::find(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second]->find(name);
}

const std::string& WeightStore::file_of(const std::string& name) const {
  auto it = where_.find(name);
  VI_CHECK(it != where_.end(), "{}: no tensor named '{}'", origin_, name);
  return files_[it->second]->path();
}

at::Tensor WeightStore::get(const std::string& name, std::optional<at::ScalarType> dtype) const {
  auto it = where_.find(name);
  VI_CHECK(it != where_.end(), "{}: no tensor named '{}'", origin_, name);
  at::Tensor t = files_[it->second]->tensor(name);
  if (dtype && t.scalar_type() != *dtype) t = t.to(*dtype);
  return t;
}

// ---------------------------------------------------------------------------------------------
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> cpu;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    VI_CHECK(!name.empty() && name != "__metadata__", "{}: invalid tensor name '{}'", path, name);
    VI_CHECK(seen.insert(name).second, "{}: tensor name '{}' given twice", path, name);
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    const DType dtype = from_scalar_type(t.scalar_type());
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * dtype_size(dtype);
    header[name] = {{"dtype", dtype_name(dtype)}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(std::move(t));
  }
  std::string json = header.dump();
  while ((json.size() + 8) % 8 != 0) json.push_back(' ');  // data area 8-byte aligned

  const fs::path target(path);
  const fs::path tmp = target.parent_path() / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()));
  TempFileGuard guard(tmp.string());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    VI_CHECK(out.good(), "{}: cannot create '{}': {}", path, tmp.string(), std::strerror(errno));
    uint8_t len[8];
    uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(json.data(), static_cast<std::streamsize>(json.size()));
    // Tensors are written in header order (the order they were given), matching the offsets.
    for (const auto& t : cpu) {
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    }
    out.flush();
    if (!out.good()) {
      std::error_code ec;
      fs::remove(tmp, ec);
      VI_FAIL("{}: write failed (disk full?)", path);
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    VI_FAIL("{}: cannot rename the temporary file into place: {}", path, ec.message());
  }
}

}  // namespace vi::core
