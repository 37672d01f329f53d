#include "pipeline/frame_sink.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "core/check.h"
#include "core/run_record.h"
#include "core/temp_files.h"
#include "pipeline/prompt_travel.h"

namespace fs = std::filesystem;

namespace vi::pipeline {

FileSink::FileSink(const GenerationConfig& config) : config_(config), frames_dir_(config.save_frames) {
  while (frames_dir_.size() > 1 && frames_dir_.back() == '/') frames_dir_.pop_back();
}

FileSink::~FileSink() {
  pngs_.reset();
  if (!frames_partial_.empty()) {
    std::error_code ec;
    fs::remove_all(frames_partial_, ec);
  }
}

video::Mp4Options FileSink::mp4_options() const {
  video::Mp4Options options;
  options.codec = config_.codec;
  options.crf = static_cast<int>(config_.crf);
  options.preset = config_.preset;
  return options;
}

std::vector<std::pair<std::string, std::string>> mp4_metadata(const GenerationConfig& cfg) {
  const auto lines = prompt_report(cfg).lines;
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
  if (video::mp4_supported()) {
    core::check_new_output(config_.output, "--output", config_.overwrite);
    video::check_video_output(config_.output, mp4_options(), "--output");
    core::check_writable(config_.output, "--output");
    core::check_new_output(config_.output + ".json", "--output (its sidecar)", config_.overwrite);
    core::remove_stale_temporaries(config_.output);  // of a rank 0 SIGKILLed while writing
  }
  if (!config_.save_frames.empty()) {
    core::check_creatable_dir(frames_dir_, "--save-frames");
    std::error_code ec;
    VI_CHECK(config_.overwrite || !fs::is_directory(frames_dir_) || fs::is_empty(frames_dir_, ec),
             "--save-frames: '{}' is not empty (-y/--overwrite replaces it)", config_.save_frames);
    core::remove_stale_temporaries(frames_dir_);
  }
}

void FileSink::open() {
  if (video::mp4_supported()) {
    video::Mp4Options options = mp4_options();
    options.metadata = mp4_metadata(config_);
    mp4_ = video::open_mp4_writer(config_.output, static_cast<int>(config_.width), static_cast<int>(config_.height),
                                  config_.export_fps, options);
  } else {
    spdlog::warn("built without ffmpeg: no MP4, frames go to {}", config_.save_frames);
  }
  if (!config_.save_frames.empty()) {
    frames_partial_ = core::temporary_path(frames_dir_);
    frames_guard_.reset(frames_partial_, /*directory=*/true);
    pngs_ = video::open_png_writer(frames_partial_);
  }
}

void FileSink::write(const at::Tensor& frames) {
  if (mp4_) mp4_->write(frames);
  if (pngs_) pngs_->write(frames);
}

void FileSink::finish() {
  if (mp4_) mp4_->finish();
  if (pngs_) {
    pngs_->finish();
    std::error_code ec;
    if (config_.overwrite && fs::is_directory(frames_dir_, ec) && !fs::is_empty(frames_dir_, ec)) {
      fs::remove_all(frames_dir_, ec);
    }
    fs::rename(frames_partial_, frames_dir_, ec);  // replaces an empty directory
    VI_CHECK(!ec, "--save-frames: cannot rename '{}' to '{}': {}", frames_partial_, frames_dir_, ec.message());
    frames_guard_.release();
    frames_partial_.clear();
  }
}

std::string FileSink::description() const { return mp4_ ? mp4_->description() : "none (PNG frames only)"; }

std::string FileSink::sidecar_path() const { return (mp4_ ? config_.output : config_.save_frames + "/video") + ".json"; }

std::string FileSink::summary() const {
  if (!mp4_) return {};
  return fmt::format("{} ({} frames, {})", config_.output, config_.frames, mp4_->description());
}

}  // namespace vi::pipeline
