// Shared by the writers: frame validation, temporary names, the PNG encoders.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace vi::video::detail {

// Checks frames are uint8 [N, H, W, 3] (or [H, W, 3]) and returns them as contiguous CPU
// [N, H, W, 3]. expected_height/width < 0 accept any size. `what` names the writer in errors.
at::Tensor check_frames(const at::Tensor& frames, int expected_height, int expected_width,
                        const std::string& what);

// "<path>.partial-<pid>": same directory as path, so the final rename is atomic.
std::string temporary_path(const std::string& path);

// Writes bytes to temporary_path(path) and renames it to path; throws naming path.
void write_file_atomically(const std::string& path, const std::string& bytes);

// A PNG (8-bit RGB, no interlace) of rgb [height, width, 3] row-major, built-in encoder:
// zlib stream of stored deflate blocks, CRC-32 and Adler-32 computed here. No dependency.
std::string encode_png_stored(const uint8_t* rgb, int width, int height);

#ifdef VI_HAVE_FFMPEG
// The same through libavcodec's PNG encoder (compressed). Throws with the libav error.
std::string encode_png_libav(const uint8_t* rgb, int width, int height);
#endif

}  // namespace vi::video::detail
