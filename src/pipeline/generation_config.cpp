#include "video_infinity/generation_config.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/check.h"
#include "core/json_config.h"
#include "pipeline/settings.h"
#include "schedulers/registry.h"

namespace fs = std::filesystem;

namespace vi {

namespace {

// Reads `key` into `target` when present (null = absent).
template <typename T>
void read(const core::JsonConfig& c, const char* key, T& target) {
  if (auto v = c.get_optional<T>(key)) target = *v;
}

// One "FIRST-LAST: prompt" line (LAST may be empty) split into its parts, or nothing when the
// line is a plain prompt. Hand-written rather than std::regex: libstdc++'s regex matcher
// recurses once per character and overflowed the stack on long prompt lines.
struct RangedLine {
  std::string first, last, text;
};

std::optional<RangedLine> split_ranged_line(const std::string& line) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' || c == '\n'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  size_t i = 0;
  const size_t n = line.size();
  auto skip = [&](auto pred) {
    const size_t from = i;
    while (i < n && pred(line[i])) ++i;
    return line.substr(from, i - from);
  };
  RangedLine r;
  skip(space);
  r.first = skip(digit);
  if (r.first.empty()) return std::nullopt;
  skip(space);
  if (i == n || line[i] != '-') return std::nullopt;
  ++i;
  skip(space);
  r.last = skip(digit);
  skip(space);
  if (i == n || line[i] != ':') return std::nullopt;
  ++i;
  skip(space);
  r.text = line.substr(i);
  return r;
}

void read_phase(const core::JsonConfig& c, const char* key, parallel::Phase& phase) {
  if (!c.has(key)) {
    c.ignore({key});
    return;
  }
  core::JsonConfig p = c.object(key);
  read(p, "t", phase.t);
  read(p, "local_biase", phase.local_bias);   // the reference's spelling
  read(p, "global_biase", phase.global_bias);
  read(p, "local_bias", phase.local_bias);
  read(p, "global_bias", phase.global_bias);
  p.warn_unread();
}

// clips (default: one per rank), frames and frames per clip from whichever were given.
void resolve_geometry(GenerationConfig& cfg, int world_size) {
  using pipeline::kMaxClips, pipeline::kMaxFramesPerClip;
  if (cfg.clips == 0) cfg.clips = world_size;
  VI_CHECK(cfg.clips <= kMaxClips, "{} ranks: more than the {} clips a job may have", world_size, kMaxClips);
  VI_CHECK(cfg.clips % world_size == 0, "--clips {} is not a multiple of the number of ranks ({})", cfg.clips,
           world_size);
  if (cfg.frames > 0) {
    VI_CHECK(cfg.frames % cfg.clips == 0, "--frames {} is not divisible by --clips {} (each clip has as many frames)",
             cfg.frames, cfg.clips);
    const int64_t per_clip = cfg.frames / cfg.clips;
    VI_CHECK(cfg.frames_per_clip == 0 || cfg.frames_per_clip == per_clip,
             "--frames {} / --clips {} = {} frames per clip, but --frames-per-clip is {}", cfg.frames, cfg.clips,
             per_clip, cfg.frames_per_clip);
    VI_CHECK(per_clip <= kMaxFramesPerClip, "--frames {} / --clips {} = {} frames per clip, more than the {} allowed",
             cfg.frames, cfg.clips, per_clip, kMaxFramesPerClip);
    cfg.frames_per_clip = per_clip;
  }
  if (cfg.frames_per_clip == 0) cfg.frames_per_clip = 24;  // the reference's num_frames
  cfg.frames = cfg.frames_per_clip * cfg.clips;
}

// Rules that tie settings together (each setting's own rule is in the table).
void check_combinations(const GenerationConfig& cfg) {
  const auto& s = cfg.dual_scope;
  // NaN or infinite settings (a JSON config may hold Python's NaN / Infinity) would poison the
  // attention silently.
  for (const auto* phase : {&s.local_phase, &s.global_phase}) {
    VI_CHECK(std::isfinite(phase->t) && std::isfinite(phase->local_bias) && std::isfinite(phase->global_bias),
             "--phase-t / --local-bias / --global-bias must be finite numbers, got t {}, local {}, global {}",
             phase->t, phase->local_bias, phase->global_bias);
  }
  VI_CHECK(cfg.frames_per_clip >= s.attn_padding,
           "--frames-per-clip {} is smaller than the attention halo --attn-padding {}", cfg.frames_per_clip,
           s.attn_padding);
  VI_CHECK(cfg.frames_per_clip >= s.conv_padding,
           "--frames-per-clip {} is smaller than the temporal-conv halo --conv-padding {}", cfg.frames_per_clip,
           s.conv_padding);
  VI_CHECK(!cfg.karras || schedulers::scheduler_for_flag(cfg.scheduler).karras,
           "--karras applies to schedulers with Karras sigmas, not {}", cfg.scheduler);
  VI_CHECK(cfg.checkpoint_every == 0 || !cfg.checkpoint_dir.empty(),
           "--checkpoint-every {} needs --checkpoint-dir", cfg.checkpoint_every);
  VI_CHECK(!cfg.resume || !cfg.checkpoint_dir.empty(), "--resume needs --checkpoint-dir (where the checkpoints are)");
  VI_CHECK(!cfg.probe || cfg.dry_run, "--probe needs --dry-run (it times steps instead of running the job)");
  for (const auto& fp : cfg.frame_prompts) {
    VI_CHECK(fp.first_frame < cfg.frames, "prompts file: range starting at frame {} lies beyond the video's {} frames",
             fp.first_frame, cfg.frames);
  }
}

// The reference's examples/config.json: pipe_configs and plugin_configs (its top-level dtype and
// seed are our keys too, read by the table).
void apply_reference_config(GenerationConfig& cfg, const core::JsonConfig& c) {
  // Launch details of the reference's own multiprocessing; mpirun decides these here.
  c.ignore({"devices", "master_port"});
  std::string base_path;
  read(c, "base_path", base_path);
  if (c.has("pipe_configs")) {
    core::JsonConfig p = c.object("pipe_configs");
    read(p, "prompts", cfg.prompts);
    read(p, "steps", cfg.steps);
    read(p, "guidance_scale", cfg.guidance);
    read(p, "fps", cfg.fps);
    read(p, "num_frames", cfg.frames_per_clip);  // per rank in the reference
    read(p, "height", cfg.height);
    read(p, "width", cfg.width);
    read(p, "export_fps", cfg.export_fps);
    if (auto name = p.get_optional<std::string>("file_name")) {
      cfg.output = (fs::path(base_path.empty() ? "." : base_path) / *name).string();
      if (fs::path(cfg.output).extension() != ".mp4") cfg.output += ".mp4";
    } else if (!base_path.empty()) {
      cfg.output = (fs::path(base_path) / "video-infinity.mp4").string();
    }
    p.ignore({"base_path"});
    p.warn_unread();
  }
  if (c.has("plugin_configs")) {
    core::JsonConfig plugins = c.object("plugin_configs");
    if (plugins.has("attn")) {
      core::JsonConfig a = plugins.object("attn");
      auto& s = cfg.dual_scope;
      read(a, "padding", s.attn_padding);
      read(a, "top_k", s.top_k);
      read(a, "attn_scale", s.attn_scale);
      read(a, "token_num_scale", s.token_num_scale);
      read(a, "dynamic_scale", s.dynamic_scale);
      read_phase(a, "local_phase", s.local_phase);
      read_phase(a, "global_phase", s.global_phase);
      // The reference declares but never uses top_k_chunk_size.
      a.ignore({"top_k_chunk_size"});
      a.warn_unread();
    }
    if (plugins.has("conv_layer")) {
      core::JsonConfig conv = plugins.object("conv_layer");
      read(conv, "padding", cfg.dual_scope.conv_padding);
      conv.warn_unread();
    }
    // conv_3d is the reference's alternative temporal-conv plugin, mounted off by default.
    plugins.ignore({"conv_3d", "group_norm"});
    plugins.warn_unread();
  }
}

}  // namespace

void apply_config_json(GenerationConfig& cfg, const nlohmann::json& json, const std::string& origin) {
  core::JsonConfig c(json, origin);
  apply_reference_config(cfg, c);
  pipeline::read_settings(c, cfg);  // our keys, named like the flags
  c.warn_unread();
}

void apply_config_file(GenerationConfig& cfg, const std::string& path) {
  core::JsonConfig file = core::JsonConfig::load(path);
  apply_config_json(cfg, file.json(), path);
}

void read_prompts_file(GenerationConfig& cfg, const std::string& path) {
  std::ifstream in(path);
  VI_CHECK(in.good(), "--prompts-file: cannot read '{}'", path);
  read_prompts(cfg, in, path);
}

void read_prompts(GenerationConfig& cfg, std::istream& in, const std::string& path) {
  std::vector<std::string> plain;
  std::vector<FramePrompt> ranges;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    if (auto ranged = split_ranged_line(line)) {
      FramePrompt fp;
      auto frame = [&](const std::string& digits) {
        VI_CHECK(digits.size() <= 12, "{}:{}: frame number '{}' is out of range", path, line_no, digits);
        return std::stoll(digits);
      };
      fp.first_frame = frame(ranged->first);
      fp.last_frame = ranged->last.empty() ? -1 : frame(ranged->last);
      fp.text = std::move(ranged->text);
      VI_CHECK(fp.last_frame < 0 || fp.last_frame >= fp.first_frame, "{}:{}: frame range {}-{} is reversed", path,
               line_no, fp.first_frame, fp.last_frame);
      ranges.push_back(std::move(fp));
    } else {
      plain.push_back(line.substr(first));
    }
  }
  VI_CHECK(ranges.empty() || plain.empty(),
           "{}: mixes plain prompt lines with 'FIRST-LAST: prompt' lines; use one form", path);
  VI_CHECK(!ranges.empty() || !plain.empty(), "{}: no prompts in the file", path);
  cfg.prompts = plain;
  cfg.frame_prompts = ranges;
  if (!ranges.empty()) {
    std::sort(cfg.frame_prompts.begin(), cfg.frame_prompts.end(),
              [](const FramePrompt& a, const FramePrompt& b) { return a.first_frame < b.first_frame; });
    VI_CHECK(cfg.frame_prompts.front().first_frame == 0, "{}: the first frame range must start at frame 0", path);
  }
}

void resolve_config(GenerationConfig& cfg, int world_size) {
  VI_CHECK(world_size >= 1, "world size {} is invalid", world_size);
  if (!cfg.prompts_file.empty() && cfg.prompts.empty() && cfg.frame_prompts.empty()) {
    read_prompts_file(cfg, cfg.prompts_file);
  }
  VI_CHECK(!cfg.prompts.empty() || !cfg.frame_prompts.empty(), "--prompt: no prompt given (use --prompt or --prompts-file)");
  pipeline::check_settings(cfg);  // each setting's own rule (the table)
  resolve_geometry(cfg, world_size);
  check_combinations(cfg);
  if (!cfg.checkpoint_dir.empty() && cfg.checkpoint_every == 0) cfg.checkpoint_every = 5;
}

std::vector<std::string> clip_prompts(const GenerationConfig& cfg) {
  std::vector<std::string> out;
  for (int64_t c = 0; c < cfg.clips; ++c) {
    if (!cfg.frame_prompts.empty()) {
      const int64_t first = c * cfg.frames_per_clip;
      const FramePrompt* chosen = &cfg.frame_prompts.front();
      for (const auto& fp : cfg.frame_prompts) {
        if (fp.first_frame <= first) chosen = &fp;
      }
      out.push_back(chosen->text);
    } else {
      // Ref: inference.py prompt_id = int(rank / world_size * len(prompts)), clips for ranks.
      const auto n = static_cast<int64_t>(cfg.prompts.size());
      const auto index = static_cast<int64_t>(static_cast<double>(c) / static_cast<double>(cfg.clips) * n);
      out.push_back(cfg.prompts[static_cast<size_t>(std::min(index, n - 1))]);
    }
  }
  return out;
}

std::vector<int64_t> clip_frame_counts(const GenerationConfig& cfg) {
  return std::vector<int64_t>(static_cast<size_t>(cfg.clips), cfg.frames_per_clip);
}

nlohmann::json config_to_json(const GenerationConfig& cfg) {
  return pipeline::settings_to_json(cfg, pipeline::Record::kRun);
}

}  // namespace vi
