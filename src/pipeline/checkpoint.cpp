#include "pipeline/checkpoint.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "core/check.h"
#include "core/safetensors.h"
#include "video_infinity/communicator.h"

namespace fs = std::filesystem;

namespace vi::pipeline {

namespace {

constexpr const char* kFormat = kCheckpointFormat;
constexpr const char* kTensorPrefix = "scheduler.";

int64_t meta_int(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& file) {
  auto it = meta.find(key);
  VI_CHECK(it != meta.end(), "checkpoint {}: metadata '{}' is missing", file, key);
  try {
    size_t used = 0;
    const int64_t v = std::stoll(it->second, &used);
    if (used == it->second.size()) return v;
  } catch (const std::exception&) {
  }
  VI_FAIL("checkpoint {}: metadata '{}' = '{}' is not an integer", file, key, it->second);
}

schedulers::SchedulerRecord read_scheduler_record(const core::SafetensorsFile& file, const std::string& path) {
  const auto& meta = file.metadata();
  schedulers::SchedulerRecord r;
  auto name = meta.find("scheduler");
  auto counters = meta.find("scheduler_counters");
  VI_CHECK(name != meta.end() && counters != meta.end(),
           "checkpoint {}: metadata 'scheduler' and 'scheduler_counters' are needed", path);
  r.scheduler = name->second;
  const nlohmann::json c = nlohmann::json::parse(counters->second, nullptr, /*allow_exceptions=*/false);
  VI_CHECK(c.is_object(), "checkpoint {}: metadata 'scheduler_counters' is not a JSON object", path);
  for (const auto& [k, v] : c.items()) {
    VI_CHECK(v.is_number_integer(), "checkpoint {}: scheduler counter '{}' is not an integer", path, k);
    r.counters[k] = v.get<int64_t>();
  }
  const std::string prefix = kTensorPrefix;
  for (const auto& t : file.tensors()) {
    if (t.name.rfind(prefix, 0) == 0) r.tensors[t.name.substr(prefix.size())] = file.tensor(t.name).clone();
  }
  return r;
}

}  // namespace

CheckpointDir::CheckpointDir(std::string dir, nlohmann::json fingerprint)
    : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)) {}

std::string CheckpointDir::step_dir(int64_t steps_done) const {
  return (fs::path(dir_) / step_dir_name(steps_done)).string();
}

std::string CheckpointDir::clip_file(int64_t steps_done, int64_t clip) const {
  return (fs::path(step_dir(steps_done)) / fmt::format("clip-{:05d}.safetensors", clip)).string();
}

void CheckpointDir::write(const ClipCheckpoint& clip) const {
  std::error_code ec;
  fs::create_directories(step_dir(clip.steps_done), ec);
  VI_CHECK(!ec, "--checkpoint-dir: cannot create '{}': {}", step_dir(clip.steps_done), ec.message());
  std::vector<std::pair<std::string, at::Tensor>> tensors = {{"latents", clip.latents.to(at::kFloat)},
                                                              {"generator_state", clip.generator_state}};
  for (const auto& [name, t] : clip.scheduler.tensors) tensors.emplace_back(kTensorPrefix + name, t);
  core::save_safetensors(clip_file(clip.steps_done, clip.clip), tensors,
                         {{"format", kFormat},
                          {"clip", std::to_string(clip.clip)},
                          {"steps_done", std::to_string(clip.steps_done)},
                          {"scheduler", clip.scheduler.scheduler},
                          {"scheduler_counters", nlohmann::json(clip.scheduler.counters).dump()},
                          {"settings", fingerprint_.dump()}});
}

std::vector<int64_t> CheckpointDir::complete_steps(const std::vector<int64_t>& clips) const {
  std::vector<int64_t> steps;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return steps;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const int64_t s = parse_step_dir(entry.path().filename().string());
    if (s < 0 || !entry.is_directory()) continue;
    const bool all = std::all_of(clips.begin(), clips.end(), [&](int64_t c) {
      std::error_code e;
      return fs::is_regular_file(clip_file(s, c), e);
    });
    if (all) steps.push_back(s);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

ClipCheckpoint CheckpointDir::read(int64_t steps_done, int64_t clip) const {
  const std::string path = clip_file(steps_done, clip);
  core::SafetensorsFile file(path);  // strict: a damaged file is an error naming it
  const auto& meta = file.metadata();
  auto format = meta.find("format");
  VI_CHECK(format != meta.end() && format->second.rfind("video-infinity checkpoint", 0) == 0,
           "checkpoint {}: not a video-infinity checkpoint", path);
  VI_CHECK(format->second == kFormat,
           "checkpoint {}: format '{}' of another video-infinity version, this one reads '{}' (resume with that "
           "version, or start afresh with another --checkpoint-dir)",
           path, format->second, kFormat);
  check_fingerprint(meta, path);

  ClipCheckpoint out;
  out.clip = clip;
  out.steps_done = meta_int(meta, "steps_done", path);
  const int64_t saved_clip = meta_int(meta, "clip", path);
  VI_CHECK(out.steps_done == steps_done && saved_clip == clip,
           "checkpoint {}: holds clip {} after {} steps, its name says clip {} after {}", path, saved_clip,
           out.steps_done, clip, steps_done);
  VI_CHECK(file.find("latents") && file.find("generator_state"),
           "checkpoint {}: needs tensors 'latents' and 'generator_state'", path);
  out.latents = file.tensor("latents").to(at::kFloat).clone();
  out.generator_state = file.tensor("generator_state").clone();
  VI_CHECK(out.generator_state.scalar_type() == at::kByte && out.generator_state.dim() == 1,
           "checkpoint {}: 'generator_state' must be a 1-d uint8 tensor", path);
  out.scheduler = read_scheduler_record(file, path);
  VI_CHECK(file.tensors().size() == 2 + out.scheduler.tensors.size(), "checkpoint {}: {} tensors, expected {}",
           path, file.tensors().size(), 2 + out.scheduler.tensors.size());
  return out;
}

void CheckpointDir::check_fingerprint(const std::map<std::string, std::string>& meta, const std::string& path) const {
  // The settings that decide the result must be those of this run.
  auto settings = meta.find("settings");
  VI_CHECK(settings != meta.end(), "checkpoint {}: metadata 'settings' is missing", path);
  nlohmann::json saved = nlohmann::json::parse(settings->second, nullptr, /*allow_exceptions=*/false);
  VI_CHECK(saved.is_object(), "checkpoint {}: metadata 'settings' is not a JSON object", path);
  std::set<std::string> keys;
  for (const auto& [k, v] : saved.items()) keys.insert(k);
  for (const auto& [k, v] : fingerprint_.items()) keys.insert(k);
  std::string differences;
  for (const auto& k : keys) {
    const auto a = saved.contains(k) ? saved[k].dump() : "(unset)";
    const auto b = fingerprint_.contains(k) ? fingerprint_[k].dump() : "(unset)";
    if (a != b) differences += fmt::format("\n  {}: checkpoint {}, this run {}", k, a, b);
  }
  VI_CHECK(differences.empty(),
           "--resume: checkpoint {} was made with other settings (use the same settings, or another "
           "--checkpoint-dir):{}",
           path, differences);
}

void CheckpointDir::remove_older_than(int64_t steps_done, const std::vector<int64_t>& clips) const {
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return;
  std::vector<fs::path> old;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const int64_t s = parse_step_dir(entry.path().filename().string());
    if (s >= 0 && s < steps_done) old.push_back(entry.path());
  }
  std::vector<std::string> names;  // "clip-00003.safetensors"; a temporary is ".clip-00003.safetensors.tmp-PID"
  for (int64_t c : clips) names.push_back(fs::path(clip_file(0, c)).filename().string());
  for (const auto& step : old) {
    std::vector<fs::path> mine;
    for (const auto& entry : fs::directory_iterator(step, ec)) {
      const std::string name = entry.path().filename().string();
      for (const auto& n : names) {
        if (name == n || name.rfind("." + n + ".tmp-", 0) == 0) mine.push_back(entry.path());
      }
    }
    // Best effort: a leftover is only disk space. The directory goes once no rank has a file in it.
    for (const auto& p : mine) fs::remove(p, ec);
    fs::remove(step, ec);
  }
}

std::optional<int64_t> agree_newest_step(const std::vector<int64_t>& complete, int64_t max_steps,
                                         parallel::Communicator& comm) {
  // votes[s] = how many ranks have step s complete; exact in int64.
  at::Tensor votes = at::zeros({max_steps + 1}, at::kLong);
  for (int64_t s : complete) {
    if (s >= 1 && s <= max_steps) votes[s] = 1;
  }
  votes = votes.to(comm.device());
  comm.all_reduce_sum(votes);
  votes = votes.cpu();
  const auto* v = votes.data_ptr<int64_t>();
  for (int64_t s = max_steps; s >= 1; --s) {
    if (v[s] == comm.world_size()) return s;
  }
  return std::nullopt;
}

}  // namespace vi::pipeline
