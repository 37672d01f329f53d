// Video output: a video file encoded clip by clip as frames arrive (the container from the
// path's extension: .mp4, .mov, .mkv), or a directory of lossless PNGs.
// Writers never leave a half-written file behind: an MP4 goes to "<path>.partial-<pid>" and is
// renamed to <path> only by finish(); a writer destroyed without finish() (an exception, an
// aborted run) removes its temporary file, so neither it nor <path> appears, and a <path>
// that existed before stays untouched. Each PNG is written to a temporary name and renamed,
// so a frame file is either complete or absent.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vi::video {

struct Mp4Options {
  // "auto": H.264 through libx264 when this libavcodec has it, else MPEG-4 part 2.
  // "h264": libx264 or an error. "mpeg4": libavcodec's native MPEG-4 part 2 encoder.
  std::string codec = "auto";
  int crf = 18;               // libx264 constant rate factor, 0..51 (18: visually lossless)
  std::string preset = "medium";  // libx264 preset (ultrafast .. veryslow)
  int mpeg4_qscale = 2;       // MPEG-4 fixed quantiser, 1..31 (2: visually lossless)
  // Container tags (libavformat keys the MP4 muxer writes: "comment", "description", "title", ...).
  std::vector<std::pair<std::string, std::string>> metadata;
  // No "writing" / "wrote" lines at info (the live preview rewrites its file every few steps).
  bool quiet = false;
};

class VideoWriter {
 public:
  virtual ~VideoWriter();

  // Appends frames: uint8 [N, H, W, 3] RGB (or one frame [H, W, 3]), H and W those the
  // writer was opened with. Any device and layout; copied to contiguous CPU memory.
  virtual void write(const at::Tensor& frames) = 0;
  // Flushes the encoder, closes the file and renames the temporary file to the final path.
  // Must be called once after the last write(); write() afterwards is an error.
  virtual void finish() = 0;
  // What is written, e.g. "H.264 (libx264) yuv420p, crf 18, preset medium".
  virtual std::string description() const = 0;
  virtual int64_t frames_written() const = 0;
};

// The containers open_mp4_writer can write with `options`, as file extensions ("mp4", "mov",
// "mkv"): those libavformat muxes the chosen codec into. Empty without ffmpeg.
std::vector<std::string> video_extensions(const Mp4Options& options = {});

// Throws vi::Error starting with `flag` when `path` cannot be written with `options`: no or an
// unsupported extension (the message lists the supported ones), an unknown codec, H.264 without
// libx264, a build without ffmpeg. Cheap: call it before any work.
void check_video_output(const std::string& path, const Mp4Options& options, const char* flag);

// A video (yuv420p) at `path`, in the container its extension names (check_video_output). Width and height must be even (4:2:0 chroma halves both; we
// refuse odd sizes rather than pad or crop silently). fps > 0, may be fractional.
// Logs the chosen codec at info. Throws vi::Error naming the path and the libav error
// when the file cannot be created, and when built without ffmpeg (VI_HAVE_FFMPEG unset).
std::unique_ptr<VideoWriter> open_mp4_writer(const std::string& path, int width, int height,
                                             double fps, const Mp4Options& options = {});

// True when this build can write MP4 (linked against libavformat/libavcodec/libswscale).
bool mp4_supported();

// Lossless RGB PNGs dir/frame_000000.png, frame_000001.png, ... numbered from start_index;
// creates dir if needed. Encoded by libavcodec's PNG encoder (deflate-compressed) when built
// with ffmpeg, else by a built-in encoder writing uncompressed ("stored") deflate blocks.
// Frames may have any size (odd too).
std::unique_ptr<VideoWriter> open_png_writer(const std::string& dir, int start_index = 0);

}  // namespace vi::video
