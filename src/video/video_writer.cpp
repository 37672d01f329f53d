// Frame validation shared by the writers; the MP4 entry point when built without ffmpeg.
#include "video_infinity/video_writer.h"

#include <ATen/ATen.h>

#include "core/check.h"
#include "core/safetensors.h"
#include "video/video_internal.h"

namespace vi::video {

VideoWriter::~VideoWriter() = default;

#ifndef VI_HAVE_FFMPEG
bool mp4_supported() { return false; }

std::vector<std::string> video_extensions(const Mp4Options&) { return {}; }

void check_video_output(const std::string& path, const Mp4Options&, const char* flag) {
  VI_FAIL("{}: cannot write '{}': this build has no video support (no ffmpeg); use --save-frames for PNG frames",
          flag, path);
}

std::unique_ptr<VideoWriter> open_mp4_writer(const std::string& path, int width, int height,
                                             double fps, const Mp4Options& options) {
  VI_FAIL("cannot write '{}': this build has no MP4 support (configured without libavformat/"
          "libavcodec/libswscale; install the ffmpeg development packages and reconfigure with "
          "-DVI_WITH_FFMPEG=ON), use --save-frames for PNG frames",
          path);
}
#endif

namespace detail {

at::Tensor check_frames(const at::Tensor& frames, int expected_height, int expected_width,
                        const std::string& what) {
  VI_CHECK(frames.defined(), "{}: the frames tensor is undefined", what);
  VI_CHECK(frames.scalar_type() == at::kByte, "{}: frames must be uint8 RGB, got {}", what,
           c10::toString(frames.scalar_type()));
  at::Tensor f = frames.dim() == 3 ? frames.unsqueeze(0) : frames;  // [N, H, W, 3]
  VI_CHECK(f.dim() == 4 && f.size(3) == 3, "{}: frames must be [N, H, W, 3] RGB, got {}", what,
           core::shape_str(frames.sizes().vec()));
  if (expected_height >= 0) {
    VI_CHECK(f.size(1) == expected_height && f.size(2) == expected_width,
             "{}: frames are {}x{} (width x height) but the writer was opened for {}x{}", what,
             f.size(2), f.size(1), expected_width, expected_height);
  }
  return f.to(at::kCPU).contiguous();
}

}  // namespace detail
}  // namespace vi::video
