// Every setting of one generation: what the command line, a JSON --config file (ours or the
// reference implementation's examples/config.json format) and the sidecar JSON speak about.
// Flags, JSON keys, help and rules of each field: the table in src/pipeline/settings.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "video_infinity/dual_scope_settings.h"

namespace vi {

// A prompt for a range of frames [first_frame, last_frame] (inclusive), from a prompts file.
struct FramePrompt {
  int64_t first_frame = 0;
  int64_t last_frame = -1;  // -1: to the end
  std::string text;
};

struct GenerationConfig {
  // Model
  std::string model_dir;
  std::string unet_dir;            // a separate UNet (unet/ inside or config + weights at its root)
  // Prompts
  std::vector<std::string> prompts;
  std::string prompts_file;
  std::vector<FramePrompt> frame_prompts;  // from a prompts file with frame ranges
  std::string negative_prompt;
  int64_t prompt_blend = -1;       // per-frame prompts blended over this many frames at each boundary (-1: per clip)
  // Video geometry
  int64_t frames = 0;              // total frames (0: frames_per_clip x clips)
  int64_t frames_per_clip = 0;     // the longest clip's frames (0: ceil(frames / clips))
  int64_t clips = 0;               // 0: one per rank
  int64_t height = 320;
  int64_t width = 512;
  // Sampling
  int64_t steps = 30;
  double guidance = 12.0;
  double fps = 24.0;               // fps conditioning of the UNet
  double export_fps = 8.0;         // frame rate of the MP4
  int64_t seed = 123;
  std::string scheduler = "dpmpp-2m-sde";  // a --scheduler value (schedulers/registry.h)
  bool karras = false;
  // Execution
  std::string dtype = "auto";      // auto | fp32 | fp16 | bf16
  std::string device = "auto";     // auto | cpu | cuda
  int64_t frame_chunk = 0;         // spatial layers over this many frames at a time (0: all)
  int64_t vae_chunk = 8;           // frames per VAE decode call
  bool channels_last = false;      // UNet 2D convs in channels-last layout (cuDNN tensor cores)
  bool cfg_serial = false;         // the two guidance branches as two UNet calls (half the activations)
  // Video-Infinity
  parallel::DualScopeSettings dual_scope;
  // Output
  std::string output = "video-infinity.mp4";
  std::string save_frames;         // directory for lossless PNG frames
  std::string init_latents;        // safetensors with "latents" [1, 4, frames, H/8, W/8]
  std::string save_latents;
  bool quiet = false;              // warnings and errors only, no progress or summary (-q)
  bool overwrite = false;          // replace existing outputs (-y); else they are refused
  std::string codec = "auto";      // auto | h264 | mpeg4 (video::Mp4Options)
  int64_t crf = 18;                // libx264 constant rate factor 0..51
  std::string preset = "medium";   // libx264 preset
  std::string progress = "auto";   // auto | bar | log | json | none (pipeline/progress.h)
  bool dry_run = false;            // plan only: checks, the plan, exit before loading weights
  bool probe = false;              // with dry_run: time real steps to extrapolate the job
  std::string plan_json;           // the plan as JSON (dry runs and real runs)
  int64_t preview_every = 0;       // steps between live previews <output>.preview.mp4 (0: none)
  double seam_threshold = 3.0;     // seam report: flag boundaries above this x the median change inside clips
  // Reliability
  std::string checkpoint_dir;      // per-clip checkpoints go here (empty: none)
  int64_t checkpoint_every = 0;    // steps between checkpoints (0 with a directory: 5)
  bool resume = false;             // continue from the newest complete checkpoint in checkpoint_dir
  double comm_timeout = 600;       // seconds a rank waits for another before ending the job (0: forever)
};

// Each clip's frame count, in video order (a resolved config): frames / clips each, and one
// more for the first frames % clips clips when clips do not divide frames.
std::vector<int64_t> clip_frame_counts(const GenerationConfig& config);
// The first frame of each clip in the video, in video order.
std::vector<int64_t> clip_first_frames(const GenerationConfig& config);

// Applies a JSON config (`origin` names it in messages). Accepts the reference's format
// (dtype "torch.float16", seed, pipe_configs{prompts, steps, guidance_scale, fps, num_frames
// (frames per clip), height, width, export_fps, file_name}, plugin_configs{attn{padding, top_k,
// attn_scale, token_num_scale, dynamic_scale, local_phase, global_phase}, conv_layer{padding}})
// and our own flat keys named like the flags (frames, clips, scheduler, attn_padding, ...).
// Wrong types are errors naming the key; unknown keys are warnings.
// A sidecar (OUT.mp4.json: an object with "settings") is read too: its "settings" are the config,
// the rest describes the run and is skipped. Reference keys this tool cannot honour (devices,
// master_port) are warnings saying what to do instead.
void apply_config_json(GenerationConfig& config, const nlohmann::json& json, const std::string& origin);
void apply_config_file(GenerationConfig& config, const std::string& path);

// Flags override a --config file. Called between the two on the file's settings (`from_file`)
// with the command line's values (`flags`) and the JSON keys of the settings it gave (`given`):
// drops the file's values that the flags would contradict rather than replace. Prompts: --prompt
// or --prompts-file drops every prompt of the file. Geometry (frames = clips x frames per clip):
// --frames drops the file's frames per clip, --frames-per-clip its frames, --clips alone its
// frames per clip when it also has frames (a sidecar: the length stays), --frames with
// --frames-per-clip its clips unless they agree.
void drop_overridden(GenerationConfig& from_file, const GenerationConfig& flags, const std::set<std::string>& given);

// Reads a prompts file: one prompt per line, or lines "FIRST-LAST: prompt" / "FIRST-: prompt"
// giving frame ranges. Blank lines and lines starting with '#' are skipped.
void read_prompts_file(GenerationConfig& config, const std::string& path);
// The same from a stream; `origin` names it in messages.
void read_prompts(GenerationConfig& config, std::istream& in, const std::string& origin);

// Fills derived values (clips default = world size, frames <-> frames_per_clip) and checks every
// setting before any compute; errors name the flag. `world_size` = number of ranks.
void resolve_config(GenerationConfig& config, int world_size);

// The prompt of each clip: the frame ranges of a prompts file mapped to clips (the range its
// first frame lies in), else the reference's rule: clip c of C takes prompt floor(c / C * P).
std::vector<std::string> clip_prompts(const GenerationConfig& config);

// Which prompt each clip takes, for the log: lines `clip 3 (frames 864-1151): "..."`, consecutive
// clips with the same prompt on one line (`clips 0-2 (frames 0-863): "..."`); and one warning
// for the prompts and one for the frame ranges that no clip takes.
struct ClipPromptReport {
  std::vector<std::string> lines;
  std::vector<std::string> warnings;
};
ClipPromptReport clip_prompt_report(const GenerationConfig& config);

// Every recorded setting (the table's kResult and kRun entries), for the sidecar JSON.
nlohmann::json config_to_json(const GenerationConfig& config);

}  // namespace vi
