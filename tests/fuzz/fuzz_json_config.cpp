// Any text as a --config file (the reference's format and ours): applied and resolved, or
// refused with vi::Error. Invalid JSON is the JSON parser's to refuse.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>

#include "core/check.h"
#include "core/json_config.h"
#include "video_infinity/generation_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = (spdlog::set_level(spdlog::level::off), true);
  (void)quiet;
  nlohmann::json json;
  try {
    // Python's NaN / Infinity tokens as --config files may have them.
    json = vi::core::parse_python_json(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  try {
    vi::GenerationConfig config;
    vi::apply_config_json(config, json, "fuzz.json");
    // Files named in the input are not opened: a fuzzer that found "/dev/stdin" would hang.
    // The prompts-file format has its own target.
    config.prompts_file.clear();
    vi::resolve_config(config, 1 + static_cast<int>(size % 4));
    (void)vi::clip_prompts(config);
    (void)vi::config_to_json(config).dump();
  } catch (const vi::Error&) {
  }
  return 0;
}
