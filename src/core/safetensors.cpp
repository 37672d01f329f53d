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
#include <limits>
#include <set>

#include "core/check.h"

namespace fs = std::filesystem;

namespace vi::core {

namespace {

// A header beyond this is not a weight file (the real UNet's header is ~150 KB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
  at::ScalarType scalar;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8, at::kDouble}, {DType::F32, "F32", 4, at::kFloat},
    {DType::F16, "F16", 2, at::kHalf},   {DType::BF16, "BF16", 2, at::kBFloat16},
    {DType::I64, "I64", 8, at::kLong},   {DType::I32, "I32", 4, at::kInt},
    {DType::U8, "U8", 1, at::kByte},     {DType::BOOL, "BOOL", 1, at::kBool},
};

const DTypeEntry& entry(DType dtype) { return kDTypes[static_cast<int>(dtype)]; }

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Rejects duplicate keys at the top level and inside each tensor entry (nlohmann silently
// keeps the last one, which would hide a corrupt or hand-edited header).
nlohmann::json parse_header_json(const char* begin, size_t size, const std::string& origin) {
  std::vector<std::set<std::string>> keys_at_depth;
  std::string duplicate;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      if (keys_at_depth.size() <= static_cast<size_t>(depth)) keys_at_depth.resize(depth + 1);
      keys_at_depth[depth].clear();
    } else if (event == E::key && depth >= 1 && static_cast<size_t>(depth - 1) < keys_at_depth.size()) {
      auto& seen = keys_at_depth[depth - 1];
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(begin, begin + size, callback);
  } catch (const nlohmann::json::exception& e) {
    VI_FAIL("{}: safetensors header is not valid JSON: {}", origin, e.what());
  }
  VI_CHECK(duplicate.empty(), "{}: safetensors header has the key '{}' twice", origin, duplicate);
  return header;
}

uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& origin, const std::string& name) {
  VI_CHECK(b == 0 || a <= std::numeric_limits<uint64_t>::max() / b,
           "{}: tensor '{}': shape overflows 64 bits", origin, name);
  return a * b;
}

}  // namespace

const char* dtype_name(DType dtype) { return entry(dtype).name; }
size_t dtype_size(DType dtype) { return entry(dtype).size; }
at::ScalarType to_scalar_type(DType dtype) { return entry(dtype).scalar; }
bool dtype_is_floating(DType dtype) {
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return std::nullopt;
}

DType from_scalar_type(at::ScalarType type) {
  for (const auto& e : kDTypes) {
    if (e.scalar == type) return e.dtype;
  }
  VI_FAIL("safetensors: cannot store tensors of type {}", c10::toString(type));
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

// `data` holds at least the length field and the header (`available` bytes); `size` is the
// whole file's size, against which the tensor spans are checked.
SafetensorsHeader parse_impl(const uint8_t* data, size_t available, size_t size, const std::string& origin) {
  VI_CHECK(size >= 8 && available >= 8, "{}: file is {} bytes, too short for a safetensors header length", origin, size);
  const uint64_t header_len = read_u64_le(data);
  VI_CHECK(header_len <= kMaxHeaderBytes, "{}: safetensors header length {} is not sane (limit {} bytes)", origin,
           header_len, kMaxHeaderBytes);
  VI_CHECK(header_len <= size - 8, "{}: safetensors header length {} runs past the end of the file ({} bytes)",
           origin, header_len, size);
  VI_CHECK(header_len <= available - 8, "{}: truncated safetensors header", origin);
  VI_CHECK(header_len >= 2 && data[8] == '{', "{}: safetensors header does not start with '{{'", origin);

  nlohmann::json header = parse_header_json(reinterpret_cast<const char*>(data + 8), header_len, origin);
  VI_CHECK(header.is_object(), "{}: safetensors header is not a JSON object", origin);

  SafetensorsHeader result;
  result.data_offset = 8 + header_len;
  const uint64_t data_size = size - result.data_offset;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& value = it.value();
    if (name == "__metadata__") {
      VI_CHECK(value.is_object(), "{}: __metadata__ is not an object", origin);
      for (auto m = value.begin(); m != value.end(); ++m) {
        VI_CHECK(m.value().is_string(), "{}: __metadata__ value '{}' is not a string", origin, m.key());
        result.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    VI_CHECK(value.is_object(), "{}: tensor '{}': entry is not an object", origin, name);
    for (auto f = value.begin(); f != value.end(); ++f) {
      VI_CHECK(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets",
               "{}: tensor '{}': unknown field '{}'", origin, name, f.key());
    }
    VI_CHECK(value.contains("dtype") && value["dtype"].is_string(), "{}: tensor '{}': missing or non-string dtype",
             origin, name);
    VI_CHECK(value.contains("shape") && value["shape"].is_array(), "{}: tensor '{}': missing or non-array shape",
             origin, name);
    VI_CHECK(value.contains("data_offsets") && value["data_offsets"].is_array() && value["data_offsets"].size() == 2,
             "{}: tensor '{}': data_offsets must be an array of two integers", origin, name);

    TensorInfo info;
    info.name = name;
    const std::string dtype = value["dtype"].get<std::string>();
    auto parsed = parse_dtype(dtype);
    VI_CHECK(parsed.has_value(), "{}: tensor '{}': unsupported dtype '{}' (supported: F64 F32 F16 BF16 I64 I32 U8 BOOL)",
             origin, name, dtype);
    info.dtype = *parsed;

    uint64_t bytes = dtype_size(info.dtype);
    for (const auto& d : value["shape"]) {
      VI_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
               "{}: tensor '{}': shape entries must be non-negative integers", origin, name);
      uint64_t dim = d.get<uint64_t>();
      VI_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "{}: tensor '{}': dimension too large",
               origin, name);
      info.shape.push_back(static_cast<int64_t>(dim));
      bytes = checked_mul(bytes, dim, origin, name);
    }
    for (const auto& o : value["data_offsets"]) {
      VI_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0),
               "{}: tensor '{}': data_offsets must be non-negative integers", origin, name);
    }
    info.begin = value["data_offsets"][0].get<uint64_t>();
    info.end = value["data_offsets"][1].get<uint64_t>();
    VI_CHECK(info.begin <= info.end, "{}: tensor '{}': data_offsets [{}, {}] are reversed", origin, name, info.begin,
             info.end);
    VI_CHECK(info.end <= data_size, "{}: tensor '{}': data_offsets [{}, {}] lie outside the data area of {} bytes",
             origin, name, info.begin, info.end, data_size);
    VI_CHECK(info.end - info.begin == bytes,
             "{}: tensor '{}': {} bytes in the file but shape {} of {} needs {} bytes", origin, name,
             info.end - info.begin, shape_str(info.shape), dtype, bytes);
    result.tensors.push_back(std::move(info));
  }

  // Spans must tile the data area: no overlap, no hole, nothing after the last tensor.
  std::sort(result.tensors.begin(), result.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const TensorInfo* previous = nullptr;
  for (const auto& t : result.tensors) {
    VI_CHECK(t.begin >= cursor, "{}: tensors '{}' and '{}' overlap (bytes [{}, {}) and [{}, {}))", origin,
             previous ? previous->name : "", t.name, previous ? previous->begin : 0, cursor, t.begin, t.end);
    VI_CHECK(t.begin == cursor, "{}: {} unused bytes before tensor '{}' (offset {})", origin, t.begin - cursor, t.name,
             t.begin);
    cursor = t.end;
    previous = &t;
  }
  VI_CHECK(cursor == data_size, "{}: {} bytes after the last tensor are not described by the header", origin,
           data_size - cursor);
  return result;
}

}  // namespace

SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& origin) {
  return parse_impl(data, size, size, origin);
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

SafetensorsHeader read_safetensors_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VI_CHECK(in.good(), "{}: cannot open", path);
  const uint64_t file_size = fs::file_size(path);
  uint8_t len_bytes[8] = {};
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  VI_CHECK(in.gcount() == 8, "{}: file is {} bytes, too short for a safetensors header length", path, file_size);
  const uint64_t header_len = read_u64_le(len_bytes);
  VI_CHECK(header_len <= kMaxHeaderBytes && header_len <= file_size - 8,
           "{}: safetensors header length {} is not sane for a file of {} bytes", path, header_len, file_size);
  std::vector<uint8_t> buffer(8 + header_len);
  std::memcpy(buffer.data(), len_bytes, 8);
  in.read(reinterpret_cast<char*>(buffer.data() + 8), static_cast<std::streamsize>(header_len));
  VI_CHECK(static_cast<uint64_t>(in.gcount()) == header_len, "{}: truncated safetensors header", path);
  return parse_impl(buffer.data(), buffer.size(), static_cast<size_t>(file_size), path);
}

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
