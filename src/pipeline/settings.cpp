#include "pipeline/settings.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/json_config.h"
#include "pipeline/progress.h"
#include "schedulers/registry.h"

namespace vi::pipeline {

namespace {

#define VI_FIELD(expr) +[](GenerationConfig& c) -> auto& { return c.expr; }


const Choices kDtypes{"dtype",
                      [] { return std::vector<std::string>{"auto", "fp32", "fp16", "bf16"}; },
                      {{"torch.float16", "fp16"}, {"float16", "fp16"}, {"half", "fp16"},
                       {"torch.bfloat16", "bf16"}, {"bfloat16", "bf16"},
                       {"torch.float32", "fp32"}, {"float32", "fp32"}, {"float", "fp32"}}};
const Choices kDevices{"device", [] { return std::vector<std::string>{"auto", "cpu", "cuda"}; }, {}};
const Choices kSchedulers{"scheduler", schedulers::scheduler_flags, {}};
const Choices kProgressModes{"progress mode", progress_modes, {}};
const Choices kCodecs{"codec", [] { return std::vector<std::string>{"auto", "h264", "mpeg4"}; }, {}};
const Choices kPresets{"preset", [] {
                         return std::vector<std::string>{"ultrafast", "superfast", "veryfast", "faster", "fast",
                                                          "medium",    "slow",      "slower",   "veryslow", "placebo"};
                       }, {}};

Rule at_least(double min, const char* says = nullptr) { return Rule{min, std::nullopt, false, 0, says}; }
Rule positive(const char* says = "positive") { return Rule{0.0, std::nullopt, true, 0, says}; }
Rule side() {
  const char* says = "a positive multiple of 8 up to 16384";
  return Rule{0.0, double(kMaxSide), true, 8, says, says};
}
Rule choice(const Choices& c) {
  Rule r;
  r.choices = &c;
  return r;
}

constexpr auto R = Record::kResult, Run = Record::kRun, None = Record::kNone;
// scheduler_flags_help() reads a function-local static: safe during static initialisation.
const std::string kSchedulerHelp = "Sampler: " + schedulers::scheduler_flags_help();

// The table. Order: --help's.
const std::vector<Setting> kSettings = {
  // Model
  {"model", "--model", "Model directory (diffusers layout or HF cache entry)", Run, VI_FIELD(model_dir)},
  {"unet", "--unet", "Separate UNet directory (unet/ inside, or config + weights at its root)", Run,
   VI_FIELD(unet_dir)},
  // Prompts
  {"prompts", "-p,--prompt", "Prompt, one per flag (quote it; repeat the flag for several: clip c of C takes prompt floor(c / C x P))", R, VI_FIELD(prompts),
   {}, "prompt"},
  {"prompts_file", "--prompts-file", "One prompt per line, or 'FIRST-LAST: prompt' frame ranges", None,
   VI_FIELD(prompts_file)},
  {"frame_prompts", "", "Frame ranges and their prompts (what a prompts file with ranges holds)", R,
   VI_FIELD(frame_prompts)},
  {"negative_prompt", "-n,--negative-prompt", "Negative prompt for classifier-free guidance", R,
   VI_FIELD(negative_prompt)},
  {"prompt_blend", "--prompt-blend",
   "Prompt travel: each frame takes the prompt of its frame range (or its clip's -p prompt), text states blended "
   "linearly over N frames centred on each prompt change, not across the ends with --loop (0: a hard switch; -1: "
   "one prompt per clip)",
   R, VI_FIELD(prompt_blend), at_least(-1, ">= -1 (-1: one prompt per clip)")},
  // Video geometry
  {"frames", "--frames,--num-frames", "Total frames, any count (clips differ by one frame when --clips does not divide it; 0: frames-per-clip x clips)", R, VI_FIELD(frames),
   at_least(0, "positive")},
  {"frames_per_clip", "--frames-per-clip", "Frames per clip, the longest clip's (0: --frames / --clips rounded up, else 24)", R,
   VI_FIELD(frames_per_clip), {0.0, double(kMaxFramesPerClip), false, 0, "positive"}},
  {"clips", "--clips", "Clips (a multiple of the ranks; 0: one per rank)", R, VI_FIELD(clips),
   {0.0, double(kMaxClips), false, 0, "positive"}},
  {"height", "-H,--height", "Height in pixels (multiple of 8)", R, VI_FIELD(height), side()},
  {"width", "-W,--width", "Width in pixels (multiple of 8)", R, VI_FIELD(width), side()},
  // Sampling
  {"steps", "--steps,--num-inference-steps", "Denoising steps", R, VI_FIELD(steps),
   {1.0, 1000.0, false, 0, "at least 1", "at most 1000 (the training schedule)"}},
  {"guidance", "--guidance,--cfg-scale", "Classifier-free guidance scale", R, VI_FIELD(guidance), at_least(0)},
  {"fps", "--fps", "Frame-rate conditioning of the UNet", R, VI_FIELD(fps), positive()},
  {"export_fps", "--export-fps", "Frame rate of the MP4", Run, VI_FIELD(export_fps), positive()},
  {"seed", "-s,--seed", "Seed; clip c's noise uses seed + c", R, VI_FIELD(seed)},
  {"scheduler", "--scheduler", kSchedulerHelp.c_str(), R, VI_FIELD(scheduler), choice(kSchedulers)},
  {"karras", "--karras", "Karras sigmas for the schedulers that have them", R, VI_FIELD(karras)},
  // Execution
  {"dtype", "--dtype", "auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16", R, VI_FIELD(dtype),
   choice(kDtypes)},
  {"device", "--device", "auto, cpu or cuda (the GPU is picked by the node-local rank)", Run, VI_FIELD(device),
   choice(kDevices)},
  {"frame_chunk", "--frame-chunk", "Frames per call of the per-frame layers (0: all; bounds memory)", Run,
   VI_FIELD(frame_chunk), at_least(0)},
  {"vae_chunk", "--vae-chunk", "Frames per VAE decode call", Run, VI_FIELD(vae_chunk), at_least(1)},
  {"cfg_serial", "--cfg-serial",
   "Guidance branches as two UNet calls instead of one batch: half the activation memory, a bit slower", Run,
   VI_FIELD(cfg_serial)},
  {"channels_last", "--channels-last",
   "UNet 2D convolutions in channels-last layout (faster with cuDNN tensor cores; slower on the CPU)", Run,
   VI_FIELD(channels_last)},
  // Video-Infinity
  {"attn_padding", "--attn-padding", "Temporal attention halo P (frames each side)", R,
   VI_FIELD(dual_scope.attn_padding), at_least(0)},
  {"attn_top_k", "--attn-top-k", "Global frames K shared by every clip", R, VI_FIELD(dual_scope.top_k),
   at_least(0)},
  {"conv_padding", "--conv-padding", "Temporal conv halo Pc (frames each side)", R,
   VI_FIELD(dual_scope.conv_padding), at_least(0)},
  {"", "--phase-t", "Phase threshold: local bias below it, global bias from it", None,
   VI_FIELD(dual_scope.local_phase.t), {}, nullptr, false,
   [](GenerationConfig& c) { c.dual_scope.global_phase.t = c.dual_scope.local_phase.t; }},
  {"", "--local-bias", "Bias on local frames when t < phase-t", None,
   VI_FIELD(dual_scope.local_phase.local_bias)},
  {"", "--global-bias", "Bias on global frames when t >= the global phase threshold", None,
   VI_FIELD(dual_scope.global_phase.global_bias)},
  {"local_phase", "", "Phase biases below the threshold: {t, local_bias, global_bias}", R,
   VI_FIELD(dual_scope.local_phase)},
  {"global_phase", "", "Phase biases from the threshold on: {t, local_bias, global_bias}", R,
   VI_FIELD(dual_scope.global_phase)},
  {"dynamic_scale", "", "Phase biases on or off", R, VI_FIELD(dual_scope.dynamic_scale)},
  {"attn_scale", "--attn-scale", "Multiplies the temporal attention's 1/sqrt(d)", R,
   VI_FIELD(dual_scope.attn_scale), positive("a positive number")},
  {"token_num_scale", "--token-num-scale", "Scale rows by ln(keys)/ln(16)", R,
   VI_FIELD(dual_scope.token_num_scale)},
  {"sync_groupnorm", "--sync-groupnorm", "Temporal GroupNorm statistics over the whole video", R,
   VI_FIELD(dual_scope.sync_groupnorm)},
  {"mask_edge_halos", "--mask-edge-halos", "Mask the zero halos at the video's ends", R,
   VI_FIELD(dual_scope.mask_edge_halos)},
  {"loop", "--loop",
   "Seamless loop: the clips form a ring (the last clip is the first one's neighbour in the temporal layers), so "
   "the video's end flows into its start",
   R, VI_FIELD(dual_scope.loop)},
  {"dual_scope", "--no-dual-scope", "Run every clip alone (plain diffusers per clip; ablation)", R,
   VI_FIELD(dual_scope.enabled), {}, nullptr, true},
  // Output
  {"output", "-o,--output",
   "Video path; the extension picks the container (.mp4, .mov, .mkv); written to a temporary file, renamed at "
   "the end",
   Run, VI_FIELD(output), Rule{std::nullopt, std::nullopt, false, 0, nullptr, nullptr, nullptr, true}},
  {"codec", "--codec", "auto (H.264 when libx264 is there, else MPEG-4 part 2), h264 or mpeg4", Run, VI_FIELD(codec),
   choice(kCodecs)},
  {"crf", "--crf", "H.264 constant rate factor, 0 (lossless) .. 51 (18: visually lossless)", Run, VI_FIELD(crf),
   {0.0, 51.0, false, 0, "in 0..51", "in 0..51"}},
  {"preset", "--preset", "H.264 speed/size preset: ultrafast .. veryslow, placebo", Run, VI_FIELD(preset),
   choice(kPresets)},
  {"", "-y,--overwrite", "Replace existing outputs (video, sidecar, latents, frames); without it they are refused",
   None, VI_FIELD(overwrite)},
  {"save_frames", "--save-frames", "Directory for lossless PNG frames", Run, VI_FIELD(save_frames)},
  {"init_latents", "--init-latents", "safetensors with 'latents' [1, 4, frames, H/8, W/8] fp32", Run,
   VI_FIELD(init_latents)},
  {"save_latents", "--save-latents", "Write the final latents as safetensors ('latents')", Run,
   VI_FIELD(save_latents)},
  // The -q/--quiet flag is global (cli/main.cpp): one meaning before or after the subcommand.
  {"quiet", "", "Warnings and errors only, no progress or summary (the -q flag)", None, VI_FIELD(quiet)},
  {"progress", "--progress",
   "auto (bar on a terminal, else log), bar (one updating line), log (a line per step), json (one JSON object per "
   "event on stdout, nothing else there) or none",
   None, VI_FIELD(progress), choice(kProgressModes)},
  {"", "--dry-run",
   "Check the settings and outputs, print the plan (clips per rank, estimated peak memory per stage, bytes "
   "exchanged per step, warnings) and exit without loading weights",
   None, VI_FIELD(dry_run)},
  {"", "--probe",
   "With --dry-run: also load the model and run two real denoising steps and one VAE decode to time them and "
   "extrapolate the whole job",
   None, VI_FIELD(probe)},
  {"", "--plan-json", "Write the plan (and with --probe its timings) as JSON to this file", None,
   VI_FIELD(plan_json)},
  {"preview_every", "--preview-every",
   "Every K steps rank 0 replaces <output>.preview.mp4 with the current estimate of the whole video (a cheap "
   "latent-to-RGB projection at half size; the last one stays; 0: none)",
   Run, VI_FIELD(preview_every), at_least(0)},
  {"seam_threshold", "--seam-threshold",
   "Seam report: flag a clip boundary whose change exceeds this many times the median change between frames "
   "inside clips",
   Run, VI_FIELD(seam_threshold), positive("a positive number")},
  // Reliability
  {"checkpoint_dir", "--checkpoint-dir",
   "Directory for checkpoints (per clip: latents, sampler history, noise generator state)", Run,
   VI_FIELD(checkpoint_dir)},
  {"checkpoint_every", "--checkpoint-every",
   "Steps between checkpoints (0: 5 when --checkpoint-dir is given); one is also written after the last step",
   Run, VI_FIELD(checkpoint_every), at_least(0)},
  {"resume", "--resume",
   "Continue from the newest checkpoint in --checkpoint-dir that every clip has (any rank count; starts afresh "
   "when there is none)",
   Run, VI_FIELD(resume)},
  {"comm_timeout", "--comm-timeout",
   "Seconds a rank waits for another before ending the whole job, naming the rank (0: wait forever)", Run,
   VI_FIELD(comm_timeout), at_least(0, ">= 0 seconds (0: wait forever)")},
};

// --- values <-> JSON -----------------------------------------------------------------------------

nlohmann::json to_json_value(const parallel::Phase& p) {
  return {{"t", p.t}, {"local_bias", p.local_bias}, {"global_bias", p.global_bias}};
}
nlohmann::json to_json_value(const std::vector<FramePrompt>& prompts) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& fp : prompts) {
    out.push_back({{"first_frame", fp.first_frame}, {"last_frame", fp.last_frame}, {"prompt", fp.text}});
  }
  return out;
}
template <typename T>
nlohmann::json to_json_value(const T& v) {
  return v;
}

template <typename T>
T read_value(const core::JsonConfig& c, const std::string& key) {
  return c.get<T>(key);
}
template <>
std::vector<std::string> read_value(const core::JsonConfig& c, const std::string& key) {
  if (c.json().at(key).is_string()) return {c.get<std::string>(key)};
  return c.get<std::vector<std::string>>(key);
}
template <>
parallel::Phase read_value(const core::JsonConfig& c, const std::string& key) {
  const core::JsonConfig o = c.object(key);
  parallel::Phase p;
  p.t = o.get_or("t", p.t);
  p.local_bias = o.get_or("local_bias", p.local_bias);
  p.global_bias = o.get_or("global_bias", p.global_bias);
  o.warn_unread();
  return p;
}
template <>
std::vector<FramePrompt> read_value(const core::JsonConfig& c, const std::string& key) {
  c.ignore({key.c_str()});  // read here, not through get(): not an unknown key
  const auto& array = c.json().at(key);
  VI_CHECK(array.is_array(), "{}: key '{}': expected an array of {{first_frame, last_frame, prompt}}", c.origin(),
           key);
  std::vector<FramePrompt> out;
  for (size_t i = 0; i < array.size(); ++i) {
    const core::JsonConfig item(array[i], fmt::format("{}: {}[{}]", c.origin(), key, i));
    VI_CHECK(array[i].is_object(), "{}: expected an object", item.origin());
    FramePrompt fp;
    fp.first_frame = item.get<int64_t>("first_frame");
    fp.last_frame = item.get_or<int64_t>("last_frame", -1);
    fp.text = item.get<std::string>("prompt");
    item.warn_unread();
    out.push_back(std::move(fp));
  }
  return out;
}

// The rule of one number; empty when kept.
std::string broken_number(const Setting& s, double v, const std::string& shown) {
  const Rule& r = s.rule;
  const bool low = !std::isfinite(v) || (r.min && (r.exclusive_min ? v <= *r.min : v < *r.min)) ||
                   (r.multiple_of > 0 && std::fmod(v, static_cast<double>(r.multiple_of)) != 0);
  const bool high = r.max && v > *r.max;
  if (!low && !high) return {};
  std::string says;
  if (low) {
    says = r.min_says ? r.min_says
           : r.min    ? fmt::format("{} {}", r.exclusive_min ? ">" : ">=", *r.min)
                      : std::string("a finite number");
  } else {
    says = r.max_says ? r.max_says : fmt::format("at most {}", *r.max);
  }
  return fmt::format("{} must be {}, got {}", s.name(), says, shown);
}

std::string broken_rule(const Setting& s, GenerationConfig& config) {
  return std::visit(
      [&](auto field) -> std::string {
        using T = std::decay_t<decltype(field(config))>;
        const T& v = field(config);
        if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
          if (!s.rule.min && !s.rule.max) return {};  // no bounds (phases: a rule of their own)
          return broken_number(s, static_cast<double>(v), fmt::format("{}", v));
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (s.rule.non_empty && v.empty()) return fmt::format("{}: empty", s.name());
          if (s.rule.choices == nullptr) return {};
          const auto values = s.rule.choices->values();
          if (std::find(values.begin(), values.end(), v) != values.end()) return {};
          return fmt::format("{}: unknown {} '{}' (expected {})", s.name(), s.rule.choices->noun, v,
                             join_list(values));
        } else {
          return {};
        }
      },
      s.field);
}

}  // namespace

std::string Setting::name() const {
  const std::string f = flags;
  const auto dashes = f.find("--");
  if (dashes == std::string::npos) return key;
  return f.substr(dashes, f.find(',', dashes) - dashes);
}

const std::vector<Setting>& generation_settings() { return kSettings; }

const Setting& setting(const std::string& key) {
  for (const auto& s : generation_settings()) {
    if (key == s.key) return s;
  }
  VI_FAIL("no generation setting '{}'", key);
}

nlohmann::json settings_to_json(const GenerationConfig& config, Record up_to) {
  nlohmann::json out = nlohmann::json::object();
  // The accessors serve readers and writers alike; here they only read.
  auto& c = const_cast<GenerationConfig&>(config);
  for (const auto& s : generation_settings()) {
    if (*s.key == '\0' || s.record == Record::kNone || static_cast<int>(s.record) > static_cast<int>(up_to)) continue;
    out[s.key] = std::visit([&](auto field) { return to_json_value(field(c)); }, s.field);
  }
  return out;
}

std::string canonical_choice(const Setting& s, const std::string& value) {
  if (s.rule.choices == nullptr) return value;
  for (const auto& [alias, canonical] : s.rule.choices->aliases) {
    if (value == alias) return canonical;
  }
  return value;
}

void read_settings(const core::JsonConfig& json, GenerationConfig& config) {
  for (const auto& s : generation_settings()) {
    for (const char* key : {s.key, s.json_alias}) {
      if (key == nullptr || *key == '\0' || !json.has(key)) continue;
      std::visit(
          [&](auto field) {
            using T = std::decay_t<decltype(field(config))>;
            T value = read_value<T>(json, key);
            if constexpr (std::is_same_v<T, std::string>) {
              value = canonical_choice(s, value);
              if (s.rule.choices != nullptr) {
                const auto values = s.rule.choices->values();
                VI_CHECK(std::find(values.begin(), values.end(), value) != values.end(),
                         "{}: key '{}': unknown {} '{}' (expected {})", json.origin(), key, s.rule.choices->noun,
                         json.get<std::string>(key), join_list(values));
              }
            }
            field(config) = std::move(value);
          },
          s.field);
    }
  }
}

void check_settings(const GenerationConfig& config) {
  auto& c = const_cast<GenerationConfig&>(config);  // read only, as above
  std::string errors;
  for (const auto& s : generation_settings()) {
    const std::string e = broken_rule(s, c);
    if (!e.empty()) errors += (errors.empty() ? "" : "\n  ") + e;
  }
  VI_CHECK(errors.empty(), "{}", errors);
}

}  // namespace vi::pipeline
