// Frame validation and atomic file helpers shared by the writers; the MP4 entry point when
// built without ffmpeg.
#include "video_infinity/video_writer.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "core/temp_files.h"
#include "core/safetensors.h"
#include "video/video_internal.h"

namespace vi::video {

VideoWriter::~VideoWriter() = default;

#ifndef VI_HAVE_FFMPEG
bool mp4_supported() { return false; }

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

std::string temporary_path(const std::string& path) {
  return path + ".partial-" + std::to_string(::getpid());
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = temporary_path(path);
  core::TempFileGuard guard(tmp);
  std::FILE* file = std::fopen(tmp.c_str(), "wb");
  VI_CHECK(file != nullptr, "cannot create '{}' (for '{}'): {}", tmp, path, std::strerror(errno));
  size_t written = std::fwrite(bytes.data(), 1, bytes.size(), file);
  int err = written == bytes.size() ? 0 : (errno != 0 ? errno : EIO);
  if (std::fclose(file) != 0 && err == 0) err = errno;  // buffered data may fail only here
  if (err != 0) {
    std::remove(tmp.c_str());
    VI_FAIL("cannot write '{}' ({} of {} bytes written): {}", tmp, written, bytes.size(),
            std::strerror(err));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    VI_FAIL("cannot rename '{}' to '{}': {}", tmp, path, ec.message());
  }
}

}  // namespace detail
}  // namespace vi::video
