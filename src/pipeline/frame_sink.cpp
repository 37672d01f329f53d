#include "pipeline/frame_sink.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/check.h"
#include "core/run_record.h"
#include "core/temp_files.h"

namespace vi::pipeline {

FileSink::FileSink(const GenerationConfig& config) : config_(config) {}

std::vector<std::pair<std::string, std::string>> mp4_metadata(const GenerationConfig& cfg) {
  const auto lines = clip_prompt_report(cfg).lines;
  std::string prompts = lines.size() == 1 ? clip_prompts(cfg).front() : std::string();
  for (size_t i = 0; lines.size() > 1 && i < lines.size(); ++i) prompts += (i == 0 ? "" : "\n") + lines[i];
  return {{"description", prompts},
          {"comment", fmt::format("seed {}, {} steps of {}, guidance {:g}{}; video-infinity {} ({})", cfg.seed, cfg.steps,
                                  cfg.scheduler, cfg.guidance,
                                  cfg.negative_prompt.empty() ? "" : ", negative prompt \"" + cfg.negative_prompt + "\"",
                                  VI_VERSION, core::git_describe())}};
}

void FileSink::prepare() {
  VI_CHECK(video::mp4_supported() || !config_.save_frames.empty(),
           "this binary has no ffmpeg: use --save-frames DIR to write PNG frames");
  core::check_writable(config_.output, "--output");
  core::remove_stale_temporaries(config_.output);  // of a rank 0 SIGKILLed while writing
  if (!config_.save_frames.empty()) core::check_creatable_dir(config_.save_frames, "--save-frames");
}

void FileSink::open() {
  if (video::mp4_supported()) {
    video::Mp4Options options;
    options.metadata = mp4_metadata(config_);
    mp4_ = video::open_mp4_writer(config_.output, static_cast<int>(config_.width), static_cast<int>(config_.height),
                                  config_.export_fps, options);
  } else {
    spdlog::warn("built without ffmpeg: no MP4, frames go to {}", config_.save_frames);
  }
  if (!config_.save_frames.empty()) pngs_ = video::open_png_writer(config_.save_frames);
}

void FileSink::write(const at::Tensor& frames) {
  if (mp4_) mp4_->write(frames);
  if (pngs_) pngs_->write(frames);
}

void FileSink::finish() {
  if (mp4_) mp4_->finish();
  if (pngs_) pngs_->finish();
}

std::string FileSink::description() const { return mp4_ ? mp4_->description() : "none (PNG frames only)"; }

std::string FileSink::sidecar_path() const { return (mp4_ ? config_.output : config_.save_frames + "/video") + ".json"; }

std::string FileSink::summary() const {
  if (!mp4_) return {};
  return fmt::format("{} ({} frames, {})", config_.output, config_.frames, mp4_->description());
}

}  // namespace vi::pipeline
