// Shared by the writers: frame validation, the PNG encoders (temporary names: core/temp_files.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace vi::video::detail {

// Checks frames are uint8 [N, H, W, 3] (or [H, W, 3]) and returns them as contiguous CPU
// [N, H, W, 3]. expected_height/width < 0 accept any size. `what` names the writer in errors.
at::Tensor check_frames(const at::Tensor& frames, int expected_height, int expected_width,
                        const std::string& what);

// A PNG (8-bit RGB, no interlace) of rgb [height, width, 3] row-major, built-in encoder:
// zlib stream of stored deflate blocks, CRC-32 and Adler-32 computed here. No dependency.
std::string encode_png_stored(const uint8_t* rgb, int width, int height);

#ifdef VI_HAVE_FFMPEG
// The same through libavcodec's PNG encoder (compressed). Throws with the libav error.
std::string encode_png_libav(const uint8_t* rgb, int width, int height);
#endif

}  // namespace vi::video::detail
