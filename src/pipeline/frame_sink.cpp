#include "pipeline/frame_sink.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/check.h"
#include "core/temp_files.h"

namespace vi::pipeline {

FileSink::FileSink(const GenerationConfig& config) : config_(config) {}

void FileSink::prepare() {
  VI_CHECK(video::mp4_supported() || !config_.save_frames.empty(),
           "this binary has no ffmpeg: use --save-frames DIR to write PNG frames");
  core::check_writable(config_.output, "--output");
  core::remove_stale_temporaries(config_.output);  // of a rank 0 SIGKILLed while writing
  if (!config_.save_frames.empty()) core::check_creatable_dir(config_.save_frames, "--save-frames");
}

void FileSink::open() {
  if (video::mp4_supported()) {
    mp4_ = video::open_mp4_writer(config_.output, static_cast<int>(config_.width), static_cast<int>(config_.height),
                                  config_.export_fps);
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
