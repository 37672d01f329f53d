#include "video_infinity/generation_config.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/check.h"
#include "core/json_config.h"
#include "pipeline/checkpoint_layout.h"
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

// clips (default: one per rank), frames and frames per clip from whichever were given. Frames
// that clips do not divide make clips of two lengths, frames per clip being the longer.
void resolve_geometry(GenerationConfig& cfg, int world_size) {
  using pipeline::kMaxClips, pipeline::kMaxFramesPerClip;
  if (cfg.clips == 0) cfg.clips = world_size;
  VI_CHECK(cfg.clips <= kMaxClips, "{} ranks: more than the {} clips a job may have", world_size, kMaxClips);
  VI_CHECK(cfg.clips % world_size == 0, "--clips {} is not a multiple of the number of ranks ({})", cfg.clips,
           world_size);
  if (cfg.frames > 0) {
    VI_CHECK(cfg.frames >= cfg.clips, "--frames {} is fewer than the {} clips (one per rank unless --clips says)",
             cfg.frames, cfg.clips);
    const int64_t per_clip = (cfg.frames + cfg.clips - 1) / cfg.clips;
    VI_CHECK(cfg.frames_per_clip == 0 || cfg.frames_per_clip == per_clip,
             "--frames {} in {} clips makes clips of {} frames{}, but --frames-per-clip is {}; give one of the two",
             cfg.frames, cfg.clips, per_clip, cfg.frames % cfg.clips == 0 ? "" : " at most", cfg.frames_per_clip);
    VI_CHECK(per_clip <= kMaxFramesPerClip, "--frames {} / --clips {} = {} frames per clip, more than the {} allowed",
             cfg.frames, cfg.clips, per_clip, kMaxFramesPerClip);
    cfg.frames_per_clip = per_clip;
  } else {
    if (cfg.frames_per_clip == 0) cfg.frames_per_clip = 24;  // the reference's num_frames
    cfg.frames = cfg.frames_per_clip * cfg.clips;
  }
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
  const int64_t shortest = cfg.frames / cfg.clips;
  VI_CHECK(shortest >= s.attn_padding, "clips of {} frames are shorter than the attention halo --attn-padding {}",
           shortest, s.attn_padding);
  VI_CHECK(shortest >= s.conv_padding, "clips of {} frames are shorter than the temporal-conv halo --conv-padding {}",
           shortest, s.conv_padding);
  VI_CHECK(s.enabled || cfg.frames % cfg.clips == 0,
           "--no-dual-scope runs clips of equal length: --frames {} is not a multiple of the {} clips", cfg.frames,
           cfg.clips);
  VI_CHECK(s.enabled || !s.loop,
           "--loop needs the clips to see each other: it cannot run with --no-dual-scope (every clip alone)");
  VI_CHECK(!cfg.karras || schedulers::scheduler_for_flag(cfg.scheduler).karras,
           "--karras applies to schedulers with Karras sigmas, not {}", cfg.scheduler);
  VI_CHECK(cfg.checkpoint_every == 0 || !cfg.checkpoint_dir.empty(),
           "--checkpoint-every {} needs --checkpoint-dir", cfg.checkpoint_every);
  VI_CHECK(!cfg.resume || !cfg.checkpoint_dir.empty(), "--resume needs --checkpoint-dir (where the checkpoints are)");
  VI_CHECK(!cfg.probe || cfg.dry_run, "--probe needs --dry-run (it times steps instead of running the job)");
  for (size_t i = 0; i < cfg.frame_prompts.size(); ++i) {
    const FramePrompt& fp = cfg.frame_prompts[i];
    VI_CHECK(fp.first_frame < cfg.frames, "prompts file: range starting at frame {} lies beyond the video's {} frames",
             fp.first_frame, cfg.frames);
    // A prompts file is sorted as it is read; frame_prompts from a JSON config must be in order.
    VI_CHECK(i > 0 ? fp.first_frame >= cfg.frame_prompts[i - 1].first_frame : fp.first_frame == 0,
             "frame_prompts: the ranges must be in frame order, the first starting at frame 0 (range {} starts at {})",
             i, fp.first_frame);
  }
}

// The reference's examples/config.json: pipe_configs and plugin_configs (its top-level dtype and
// seed are our keys too, read by the table).
void apply_reference_config(GenerationConfig& cfg, const core::JsonConfig& c) {
  // Launch details of the reference's own multiprocessing; mpirun decides these here.
  if (c.has("devices")) {
    const nlohmann::json& devices = c.json().at("devices");
    spdlog::warn("{}: devices {}: ignored; launch one rank per GPU with mpirun -np {} (the node-local rank picks the GPU)",
                 c.origin(), devices.dump(), devices.is_array() ? devices.size() : 1);
  }
  if (c.has("master_port")) {
    spdlog::warn("{}: master_port {}: ignored; mpirun starts the ranks and MPI hands NCCL its id (no port to choose)",
                 c.origin(), c.json().at("master_port").dump());
  }
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
  const bool sidecar = json.is_object() && json.contains("settings") && json.at("settings").is_object();
  // A sidecar's settings replay the run; the rest (date, versions, times, ...) describes it and
  // is not a setting. Only at the top: a "settings" inside them is an unknown key.
  core::JsonConfig c(sidecar ? json.at("settings") : json, sidecar ? origin + ": settings" : origin);
  apply_reference_config(cfg, c);
  pipeline::read_settings(c, cfg);  // our keys, named like the flags
  c.warn_unread();
}

void drop_overridden(GenerationConfig& cfg, const GenerationConfig& flags, const std::set<std::string>& given) {
  auto on = [&](const char* key) { return given.count(key) > 0; };
  if (on("prompts") || on("prompts_file")) {
    cfg.prompts.clear();
    cfg.frame_prompts.clear();
    cfg.prompts_file.clear();
  }
  // frames = clips x frames per clip: a file's value that the flags given determine would
  // contradict them (the reference's num_frames 24 against --frames 16 on 2 ranks).
  const bool frames = on("frames"), per_clip = on("frames_per_clip"), clips = on("clips");
  if (frames) cfg.frames_per_clip = 0;
  if (per_clip) cfg.frames = 0;
  if (clips && !frames && !per_clip && cfg.frames > 0) cfg.frames_per_clip = 0;
  if (frames && per_clip && !clips && flags.frames != flags.frames_per_clip * cfg.clips) cfg.clips = 0;
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
  if (!cfg.prompts_file.empty()) {
    VI_CHECK(cfg.prompts.empty() && cfg.frame_prompts.empty(),
             "--prompt and --prompts-file {} are both given (on the command line or in --config); keep one: "
             "--prompts-file for its prompts or frame ranges, or --prompt (repeatable) without it",
             cfg.prompts_file);
    read_prompts_file(cfg, cfg.prompts_file);
    cfg.prompts_file.clear();  // read: resolving again must not read it twice
  }
  VI_CHECK(!cfg.prompts.empty() || !cfg.frame_prompts.empty(), "--prompt: no prompt given (use --prompt or --prompts-file)");
  VI_CHECK(cfg.prompts.empty() || cfg.frame_prompts.empty(),
           "--config: both prompts and frame_prompts given; keep one (frame_prompts: frame ranges and their prompts)");
  pipeline::check_settings(cfg);  // each setting's own rule (the table)
  pipeline::apply_checkpoint_layout(cfg, world_size);  // --resume: clips and frames of the checkpoints
  resolve_geometry(cfg, world_size);
  check_combinations(cfg);
  if (!cfg.checkpoint_dir.empty() && cfg.checkpoint_every == 0) cfg.checkpoint_every = 5;
}

std::vector<int64_t> clip_frame_counts(const GenerationConfig& cfg) {
  VI_CHECK(cfg.clips > 0 && cfg.frames >= cfg.clips, "clip_frame_counts: {} frames in {} clips (resolve the config first)",
           cfg.frames, cfg.clips);
  const int64_t base = cfg.frames / cfg.clips, longer = cfg.frames % cfg.clips;
  std::vector<int64_t> out;
  for (int64_t c = 0; c < cfg.clips; ++c) out.push_back(base + (c < longer ? 1 : 0));
  return out;
}

std::vector<int64_t> clip_first_frames(const GenerationConfig& cfg) {
  std::vector<int64_t> out;
  int64_t first = 0;
  for (int64_t n : clip_frame_counts(cfg)) {
    out.push_back(first);
    first += n;
  }
  return out;
}

namespace {

// Which prompt each clip takes: an index into frame_prompts when there are frame ranges, else
// into prompts. `first_frames`: each clip's first frame.
std::vector<size_t> clip_prompt_indices(const GenerationConfig& cfg, const std::vector<int64_t>& first_frames) {
  const size_t clips = first_frames.size();
  std::vector<size_t> out(clips, 0);
  for (size_t c = 0; c < clips; ++c) {
    if (!cfg.frame_prompts.empty()) {
      // The last range starting at or before the clip's first frame (ranges are in order).
      for (size_t i = 0; i < cfg.frame_prompts.size(); ++i) {
        if (cfg.frame_prompts[i].first_frame <= first_frames[c]) out[c] = i;
      }
    } else if (!cfg.prompts.empty()) {
      // Ref: inference.py prompt_id = int(rank / world_size * len(prompts)), clips for ranks. In
      // integers: the reference's floats fall just below an integer now and then (1 / 49 * 49).
      out[c] = std::min(c * cfg.prompts.size() / clips, cfg.prompts.size() - 1);
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> clip_prompts(const GenerationConfig& cfg) {
  const auto indices = clip_prompt_indices(cfg, clip_first_frames(cfg));
  std::vector<std::string> out;
  for (size_t index : indices) {
    out.push_back(cfg.frame_prompts.empty() ? cfg.prompts.at(index) : cfg.frame_prompts.at(index).text);
  }
  return out;
}

ClipPromptReport clip_prompt_report(const GenerationConfig& cfg) {
  const auto counts = clip_frame_counts(cfg);
  const auto first = clip_first_frames(cfg);
  const auto indices = clip_prompt_indices(cfg, first);
  const bool ranges = !cfg.frame_prompts.empty();
  auto text_of = [&](size_t i) { return ranges ? cfg.frame_prompts[i].text : cfg.prompts[i]; };
  ClipPromptReport report;
  for (size_t c = 0; c < indices.size();) {
    size_t end = c + 1;  // clips [c, end) take the same prompt
    while (end < indices.size() && indices[end] == indices[c]) ++end;
    const int64_t last_frame = first[end - 1] + counts[end - 1] - 1;
    report.lines.push_back(end == c + 1 ? fmt::format("clip {} (frames {}-{}): \"{}\"", c, first[c], last_frame,
                                                      text_of(indices[c]))
                                        : fmt::format("clips {}-{} (frames {}-{}): \"{}\"", c, end - 1, first[c],
                                                      last_frame, text_of(indices[c])));
    c = end;
  }
  const size_t choices = ranges ? cfg.frame_prompts.size() : cfg.prompts.size();
  std::vector<bool> used(choices, false);
  for (size_t index : indices) used[index] = true;
  std::string unused;
  size_t unused_count = 0;
  for (size_t i = 0; i < choices; ++i) {
    if (used[i]) continue;
    if (unused_count++ > 0) unused += ", ";
    if (ranges) {
      const FramePrompt& fp = cfg.frame_prompts[i];
      unused += fmt::format("{}-{}: \"{}\"", fp.first_frame, fp.last_frame < 0 ? "" : std::to_string(fp.last_frame),
                            fp.text);
    } else {
      unused += fmt::format("prompt {} \"{}\"", i, text_of(i));
    }
  }
  if (!unused.empty() && ranges) {
    report.warnings.push_back(fmt::format(
        "prompts file: no clip starts in frame range {} (each clip takes the prompt of the range its first frame lies "
        "in), so no clip uses {}",
        unused, unused_count == 1 ? "it" : "them"));
  } else if (!unused.empty()) {
    report.warnings.push_back(fmt::format(
        "{} prompts for {} clips: no clip takes {} (clip c of C takes prompt floor(c / C x P)); give at least as many "
        "clips as prompts (--clips) to use every prompt",
        choices, indices.size(), unused));
  }
  return report;
}

nlohmann::json config_to_json(const GenerationConfig& cfg) {
  return pipeline::settings_to_json(cfg, pipeline::Record::kRun);
}

}  // namespace vi
