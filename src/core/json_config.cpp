#include "core/json_config.h"

#include <spdlog/spdlog.h>

#include <cctype>
#include <cmath>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <limits>

namespace vi::core {

namespace {

std::string short_value(const nlohmann::json& value) {
  std::string s = value.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

// Stands for a non-finite number while nlohmann parses the text (it has no syntax for them).
constexpr const char* kNonFinite = "\x01vi-non-finite:";

bool token_boundary(char c) { return !(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'); }

void restore_non_finite(nlohmann::json& j) {
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s.rfind(kNonFinite, 0) != 0) return;
    const std::string token = s.substr(std::char_traits<char>::length(kNonFinite));
    const double inf = std::numeric_limits<double>::infinity();
    j = token == "NaN" ? std::numeric_limits<double>::quiet_NaN() : token == "Infinity" ? inf : -inf;
  } else if (j.is_structured()) {
    for (auto& child : j) restore_non_finite(child);
  }
}

}  // namespace

nlohmann::json parse_python_json(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false, replaced = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool matched = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(token);
      if (text.compare(i, n, token) == 0 && (i == 0 || token_boundary(text[i - 1])) &&
          (i + n == text.size() || token_boundary(text[i + n]))) {
        out += "\"\\u0001vi-non-finite:";  // the marker, JSON-escaped
        out += token;
        out += '"';
        i += n - 1;
        matched = replaced = true;
        break;
      }
    }
    if (!matched) out += c;
  }
  nlohmann::json json = nlohmann::json::parse(out);
  if (replaced) restore_non_finite(json);
  return json;
}

JsonConfig JsonConfig::load(const std::string& path) {
  VI_CHECK(std::filesystem::exists(path), "{}: file not found", path);
  std::ifstream in(path);
  VI_CHECK(in.good(), "{}: cannot open", path);
  nlohmann::json json;
  try {
    json = parse_python_json(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
  } catch (const nlohmann::json::exception& e) {
    VI_FAIL("{}: invalid JSON: {}", path, e.what());
  }
  VI_CHECK(json.is_object(), "{}: expected a JSON object at the top level, got {}", path, json.type_name());
  return JsonConfig(std::move(json), path);
}

JsonConfig::JsonConfig(nlohmann::json json, std::string origin) : json_(std::move(json)), origin_(std::move(origin)) {
  VI_CHECK(json_.is_object(), "{}: expected a JSON object, got {}", origin_, json_.type_name());
}

bool JsonConfig::has(const std::string& key) const { return json_.contains(key) && !json_.at(key).is_null(); }
bool JsonConfig::contains(const std::string& key) const { return json_.contains(key); }

JsonConfig JsonConfig::object(const std::string& key) const {
  mark(key);
  VI_CHECK(json_.contains(key), "{}: missing required key '{}'", origin_, key);
  const auto& value = json_.at(key);
  if (!value.is_object()) type_error(key, value, "object");
  return JsonConfig(value, origin_ + ": " + key);
}

void JsonConfig::ignore(std::initializer_list<const char*> keys) const {
  for (const char* k : keys) mark(k);
}

std::vector<std::string> JsonConfig::unread_keys() const {
  std::vector<std::string> out;
  for (auto it = json_.begin(); it != json_.end(); ++it) {
    if (!it.key().empty() && it.key()[0] == '_') continue;
    if (!read_.count(it.key())) out.push_back(it.key());
  }
  return out;
}

void JsonConfig::warn_unread() const {
  for (const auto& key : unread_keys()) spdlog::warn("{}: unknown key '{}' ignored", origin_, key);
}

void JsonConfig::type_error(const std::string& key, const nlohmann::json& value, const char* expected) const {
  VI_FAIL("{}: key '{}': expected {}, got {} ({})", origin_, key, expected, value.type_name(), short_value(value));
}

namespace {

bool integral(const nlohmann::json& v) {
  if (v.is_number_integer()) return true;
  if (v.is_number_float()) {
    double d = v.get<double>();
    return std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15;
  }
  return false;
}

}  // namespace

template <>
bool JsonConfig::convert<bool>(const std::string& key, const nlohmann::json& v) const {
  if (!v.is_boolean()) type_error(key, v, "a boolean");
  return v.get<bool>();
}

template <>
int64_t JsonConfig::convert<int64_t>(const std::string& key, const nlohmann::json& v) const {
  if (!integral(v)) type_error(key, v, "an integer");
  return v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
}

template <>
int JsonConfig::convert<int>(const std::string& key, const nlohmann::json& v) const {
  int64_t x = convert<int64_t>(key, v);
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) type_error(key, v, "a 32-bit integer");
  return static_cast<int>(x);
}

template <>
double JsonConfig::convert<double>(const std::string& key, const nlohmann::json& v) const {
  if (!v.is_number()) type_error(key, v, "a number");
  return v.get<double>();
}

template <>
float JsonConfig::convert<float>(const std::string& key, const nlohmann::json& v) const {
  return static_cast<float>(convert<double>(key, v));
}

template <>
std::string JsonConfig::convert<std::string>(const std::string& key, const nlohmann::json& v) const {
  if (!v.is_string()) type_error(key, v, "a string");
  return v.get<std::string>();
}

template <>
nlohmann::json JsonConfig::convert<nlohmann::json>(const std::string& key, const nlohmann::json& v) const {
  return v;
}

#define VI_JSON_VECTOR(T, what)                                                                     \
  template <>                                                                                       \
  std::vector<T> JsonConfig::convert<std::vector<T>>(const std::string& key, const nlohmann::json& v) \
      const {                                                                                       \
    if (!v.is_array()) type_error(key, v, "an array of " what);                                     \
    std::vector<T> out;                                                                             \
    for (size_t i = 0; i < v.size(); ++i) out.push_back(convert<T>(key + "[" + std::to_string(i) + "]", v[i])); \
    return out;                                                                                     \
  }
VI_JSON_VECTOR(int, "integers")
VI_JSON_VECTOR(int64_t, "integers")
VI_JSON_VECTOR(double, "numbers")
VI_JSON_VECTOR(std::string, "strings")
#undef VI_JSON_VECTOR

}  // namespace vi::core
