#include "pipeline/checkpoint_layout.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/check.h"
#include "core/safetensors_format.h"

namespace fs = std::filesystem;

namespace vi::pipeline {

std::string step_dir_name(int64_t steps_done) { return fmt::format("step-{:06d}", steps_done); }

int64_t parse_step_dir(const std::string& name) {
  if (name.size() != 11 || name.rfind("step-", 0) != 0) return -1;
  int64_t v = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::optional<CheckpointLayout> read_checkpoint_layout(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  std::vector<std::pair<int64_t, fs::path>> steps;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int64_t s = parse_step_dir(entry.path().filename().string());
    if (s >= 0 && entry.is_directory(ec)) steps.emplace_back(s, entry.path());
  }
  std::sort(steps.rbegin(), steps.rend());  // newest first
  for (const auto& [s, step_path] : steps) {
    std::vector<std::string> files;  // complete clip files (temporaries end in .partial-PID)
    for (const auto& entry : fs::directory_iterator(step_path, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("clip-", 0) == 0 && entry.path().extension() == ".safetensors") files.push_back(entry.path());
    }
    if (files.empty()) continue;
    const std::string file = *std::min_element(files.begin(), files.end());
    const auto meta = core::read_safetensors_header(file).metadata;
    auto format = meta.find("format");
    auto settings = meta.find("settings");
    if (format == meta.end() || format->second != kCheckpointFormat || settings == meta.end()) return std::nullopt;
    const nlohmann::json saved = nlohmann::json::parse(settings->second, nullptr, /*allow_exceptions=*/false);
    auto number = [&](const char* key, bool required) -> int64_t {
      const bool has = saved.is_object() && saved.contains(key);
      VI_CHECK(has || !required, "checkpoint {}: its settings lack '{}' (the clip layout)", file, key);
      if (!has) return 0;
      VI_CHECK(saved[key].is_number_integer(), "checkpoint {}: setting '{}' is not an integer", file, key);
      return saved[key].get<int64_t>();
    };
    CheckpointLayout layout{number("clips", true), number("frames", true), number("frames_per_clip", false), file};
    VI_CHECK(layout.clips >= 1 && layout.frames >= layout.clips, "checkpoint {}: {} frames in {} clips is no layout",
             file, layout.frames, layout.clips);
    return layout;
  }
  return std::nullopt;
}

void apply_checkpoint_layout(GenerationConfig& cfg, int world_size) {
  if (!cfg.resume || cfg.checkpoint_dir.empty()) return;
  const auto layout = read_checkpoint_layout(cfg.checkpoint_dir);
  if (!layout) return;
  const int64_t clips = layout->clips;
  const std::string written = fmt::format("--clips {} --frames {}", clips, layout->frames);
  // What the user gave that the checkpoints contradict (0: not given).
  std::vector<std::string> given;
  std::string needed;
  auto compare = [&](const char* flag, int64_t value, int64_t saved) {
    if (value == 0 || saved == 0 || value == saved) return;
    given.push_back(fmt::format("{} {}", flag, value));
    needed += fmt::format("{}{} {}", needed.empty() ? "" : " ", flag, saved);
  };
  compare("--clips", cfg.clips, clips);
  compare("--frames", cfg.frames, layout->frames);
  compare("--frames-per-clip", cfg.frames_per_clip, layout->frames_per_clip);
  VI_CHECK(given.empty(),
           "--resume: the checkpoints in {} were written with {}; drop {} (a resumed job takes its clip layout from "
           "its checkpoints), or give {}; to change the layout, start afresh with another --checkpoint-dir",
           cfg.checkpoint_dir, written, join_list(given, " and "), needed);
  if (clips % world_size != 0) {
    std::vector<std::string> counts;
    for (int64_t n = 1; n <= clips && counts.size() < 12; ++n) {
      if (clips % n == 0) counts.push_back(std::to_string(n));
    }
    VI_FAIL("--resume: the checkpoints in {} were written with {}: {} clips cannot be shared by {} ranks; resume on "
            "a rank count that divides {}: {} ranks{}",
            cfg.checkpoint_dir, written, clips, world_size, clips, join_list(counts), counts.size() == 12 ? ", ..." : "");
  }
  cfg.clips = clips;
  if (cfg.frames == 0) cfg.frames = layout->frames;
  const int64_t per_rank = clips / world_size;
  spdlog::info("--resume: clip layout {} from the checkpoints in {} ({} rank{} {} {} clip{}{})", written,
               cfg.checkpoint_dir, world_size, world_size == 1 ? "" : "s", world_size == 1 ? "runs" : "run", per_rank,
               per_rank == 1 ? "" : "s", world_size == 1 ? "" : " each");
}

}  // namespace vi::pipeline
