// The table of generation settings: one entry per setting with its JSON key, its flags, its help,
// whether it decides the result, and its rule. The command line (cli/cmd_generate.cpp), the JSON
// --config reader, the sidecar's "settings", the checkpoints' fingerprint and the checks before
// any work are all driven by it. Defaults are GenerationConfig's member initialisers.
// A new setting is a field in GenerationConfig, one entry in settings.cpp, and the code that uses it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "video_infinity/generation_config.h"

namespace vi::core {
class JsonConfig;
}

namespace vi::pipeline {

// Bounds far past any real job (the paper's longest video is 2,300 frames in 8 clips) that keep
// frames = clips x frames per clip and the per-clip bookkeeping from overflowing.
inline constexpr int64_t kMaxClips = 1 << 16, kMaxFramesPerClip = 1 << 16, kMaxSide = 1 << 14;

// What a setting is recorded in.
enum class Record {
  kResult,  // decides the numbers: the sidecar's settings and the checkpoints' fingerprint
  kRun,     // how or where it ran (paths, memory, device): the sidecar's settings only
  kNone,    // not recorded (a flag that sets fields other entries record, --quiet, ...)
};

// Where a setting lives in GenerationConfig.
template <typename T>
using FieldOf = T& (*)(GenerationConfig&);
using Field = std::variant<FieldOf<int64_t>, FieldOf<double>, FieldOf<bool>, FieldOf<std::string>,
                           FieldOf<std::vector<std::string>>, FieldOf<std::vector<FramePrompt>>,
                           FieldOf<parallel::Phase>>;

// A string setting's allowed values; `aliases` are accepted spellings (the reference's
// "torch.float16") read as the value they name.
struct Choices {
  const char* noun;                      // "dtype": "unknown dtype 'x' (expected ...)"
  std::vector<std::string> (*values)();
  std::vector<std::pair<std::string, std::string>> aliases;
};

// A number's bounds, checked before any work: "<flag> must be <says>, got <value>". Non-finite
// doubles break any bound.
struct Rule {
  std::optional<double> min, max;  // inclusive, unless exclusive_min
  bool exclusive_min = false;
  int64_t multiple_of = 0;         // 0: any
  const char* min_says = nullptr;  // default ">= min" ("> min" when exclusive)
  const char* max_says = nullptr;  // default "at most max"
  const Choices* choices = nullptr;
  bool non_empty = false;          // strings
};

struct Setting {
  const char* key;    // our JSON config's and the sidecar's key; "" for a flag only
  const char* flags;  // CLI11 option names; "" for a config key only
  const char* help;
  Record record;
  Field field;
  Rule rule = {};
  const char* json_alias = nullptr;           // another key the JSON config accepts
  bool inverted = false;                      // a flag that sets a bool to false (--no-dual-scope)
  void (*also)(GenerationConfig&) = nullptr;  // after a flag sets the field (--phase-t: both phases)

  // The name in messages: the first long flag, else the JSON key.
  std::string name() const;
};

// Every setting, in --help order.
const std::vector<Setting>& generation_settings();
// The entry with JSON key `key`; throws when there is none.
const Setting& setting(const std::string& key);

// The recorded settings (record kResult, or kResult and kRun) as a JSON object keyed like
// --config files.
nlohmann::json settings_to_json(const GenerationConfig& config, Record up_to);
// Reads every key of the table from `json` (our --config format); wrong types and unknown
// choices are errors naming the origin and the key. Marks what it read (unknown keys warn).
void read_settings(const core::JsonConfig& json, GenerationConfig& config);
// Every entry's rule on `config`; one error listing each broken rule.
void check_settings(const GenerationConfig& config);
// The value a choice alias stands for (dtype "torch.float16" -> "fp16"), else `value`.
std::string canonical_choice(const Setting& setting, const std::string& value);

}  // namespace vi::pipeline
