// Where the decoded video goes. The pipeline hands every frame, clip by clip in video order, to
// the sink of the rank that writes (rank 0); the other ranks' sinks are never called. Files:
// an MP4 and/or a directory of PNGs (FileSink); a preview or a pipe would be other sinks.
#pragma once

#include <ATen/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/temp_files.h"
#include "video_infinity/generation_config.h"
#include "video_infinity/video_writer.h"

namespace vi::pipeline {

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // At the start of the job, before any compute: refuse what open() would fail on (paths).
  virtual void prepare() {}
  // After denoising: a job that dies before that leaves no partial output.
  virtual void open() = 0;
  // uint8 [F, H, W, 3] on the CPU: the next clip's frames.
  virtual void write(const at::Tensor& frames) = 0;
  // After the last clip; a sink destroyed without finish() leaves nothing half-written.
  virtual void finish() = 0;
  // What was written (the sidecar's "video") and where the sidecar JSON goes ("" for none).
  virtual std::string description() const = 0;
  virtual std::string sidecar_path() const = 0;
  // For the summary line "wrote <this> and <sidecar>"; "" when nothing worth naming was written.
  virtual std::string summary() const { return {}; }
};

// The MP4's tags: "description" the prompt (several: which clips take which), "comment" the
// seed and sampling settings.
std::vector<std::pair<std::string, std::string>> mp4_metadata(const GenerationConfig& config);

// The video at --output (when this build has ffmpeg) and PNGs in --save-frames (when given).
// Existing outputs are refused by prepare() unless --overwrite. The PNGs go to
// "<dir>.partial-<pid>", renamed to <dir> by finish(); a sink destroyed before that (an error)
// or a termination signal removes it.
class FileSink final : public FrameSink {
 public:
  explicit FileSink(const GenerationConfig& config);
  ~FileSink() override;
  void prepare() override;
  void open() override;
  void write(const at::Tensor& frames) override;
  void finish() override;
  std::string description() const override;
  std::string sidecar_path() const override;
  std::string summary() const override;

 private:
  video::Mp4Options mp4_options() const;

  const GenerationConfig& config_;
  std::string frames_dir_;      // --save-frames without a trailing '/'
  std::string frames_partial_;  // where the PNGs go until finish()
  core::TempFileGuard frames_guard_;
  std::unique_ptr<video::VideoWriter> mp4_, pngs_;
};

}  // namespace vi::pipeline
