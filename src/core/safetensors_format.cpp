#include "core/safetensors_format.h"

#include <nlohmann/json.hpp>

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
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
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
bool dtype_is_floating(DType dtype) {
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return std::nullopt;
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

}  // namespace vi::core
