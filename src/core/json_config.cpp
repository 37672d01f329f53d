#include "core/json_config.h"

#include <spdlog/spdlog.h>

#include <cmath>
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

}  // namespace

JsonConfig JsonConfig::load(const std::string& path) {
  VI_CHECK(std::filesystem::exists(path), "{}: file not found", path);
  std::ifstream in(path);
  VI_CHECK(in.good(), "{}: cannot open", path);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
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
