// Reading config.json files: typed access with errors that name the file, the key, the
// expected and the actual type; keys that were never read can be reported as warnings so
// that a config field we silently ignore cannot go unnoticed.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/check.h"

namespace vi::core {

// Parses JSON as Python's json module writes it: besides standard JSON, the bare tokens NaN,
// Infinity and -Infinity (diffusers saves e.g. "lambda_min_clipped": -Infinity) become
// non-finite numbers. Throws nlohmann::json::exception like nlohmann::json::parse (parse_error, or out_of_range
// for a number beyond double such as 3e333).
nlohmann::json parse_python_json(const std::string& text);

class JsonConfig {
 public:
  // Reads and parses `path`; errors name the file (missing, unreadable, invalid JSON with the
  // parser's position, not an object).
  static JsonConfig load(const std::string& path);
  JsonConfig(nlohmann::json json, std::string origin);

  const std::string& origin() const { return origin_; }
  const nlohmann::json& json() const { return json_; }
  bool has(const std::string& key) const;            // present and not null
  bool contains(const std::string& key) const;       // present, maybe null

  // Required value; throws "<file>: key '<key>': expected <type>, got <json type> (<value>)".
  template <typename T>
  T get(const std::string& key) const {
    mark(key);
    VI_CHECK(json_.contains(key), "{}: missing required key '{}'", origin_, key);
    return convert<T>(key, json_.at(key));
  }
  // Value, or `fallback` when absent or null.
  template <typename T>
  T get_or(const std::string& key, const T& fallback) const {
    mark(key);
    if (!has(key)) return fallback;
    return convert<T>(key, json_.at(key));
  }
  template <typename T>
  std::optional<T> get_optional(const std::string& key) const {
    mark(key);
    if (!has(key)) return std::nullopt;
    return convert<T>(key, json_.at(key));
  }
  // A sub-object as its own config (origin "<file>: <key>").
  JsonConfig object(const std::string& key) const;

  // Marks keys as understood without reading them (documentation-only fields).
  void ignore(std::initializer_list<const char*> keys) const;
  // Keys never read, except those starting with '_' (diffusers' _class_name, _diffusers_version).
  std::vector<std::string> unread_keys() const;
  // Logs one warning per unread key: "<file>: unknown key 'x' ignored".
  void warn_unread() const;

 private:
  void mark(const std::string& key) const { read_.insert(key); }
  template <typename T>
  T convert(const std::string& key, const nlohmann::json& value) const;
  [[noreturn]] void type_error(const std::string& key, const nlohmann::json& value, const char* expected) const;

  nlohmann::json json_;
  std::string origin_;
  mutable std::set<std::string> read_;
};

#define VI_JSON_CONVERT_DECL(T) \
  template <>              \
  T JsonConfig::convert<T>(const std::string& key, const nlohmann::json& value) const;
VI_JSON_CONVERT_DECL(bool)
VI_JSON_CONVERT_DECL(int)
VI_JSON_CONVERT_DECL(int64_t)
VI_JSON_CONVERT_DECL(double)
VI_JSON_CONVERT_DECL(float)
VI_JSON_CONVERT_DECL(std::string)
VI_JSON_CONVERT_DECL(nlohmann::json)
VI_JSON_CONVERT_DECL(std::vector<int>)
VI_JSON_CONVERT_DECL(std::vector<int64_t>)
VI_JSON_CONVERT_DECL(std::vector<double>)
VI_JSON_CONVERT_DECL(std::vector<std::string>)
#undef VI_JSON_CONVERT_DECL

// Supported T: bool, int, int64_t, double, float, std::string, std::vector<int>,
// std::vector<int64_t>, std::vector<double>, std::vector<std::string>, nlohmann::json.
// Integers are accepted for doubles; doubles with no fractional part are accepted for integers.

}  // namespace vi::core
