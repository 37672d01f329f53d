// PNG frames: one lossless RGB file per frame, each written atomically. The built-in encoder
// needs no library: deflate's "stored" block type carries the bytes uncompressed, so a PNG is
// just the chunk framing, CRC-32 and Adler-32 (files are ~W*H*3 bytes).
// Ref: PNG spec (RFC 2083, ISO/IEC 15948), zlib format RFC 1950, deflate RFC 1951 section 3.2.4.
#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/temp_files.h"
#include "video/video_internal.h"
#include "video_infinity/video_writer.h"

namespace vi::video {
namespace detail {
namespace {

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t adler32(const uint8_t* data, size_t size) {
  constexpr uint32_t kMod = 65521;
  uint32_t a = 1, b = 0;
  while (size > 0) {
    size_t n = std::min<size_t>(size, 5552);  // largest run before b can overflow 32 bits
    size -= n;
    for (; n > 0; --n) {
      a += *data++;
      b += a;
    }
    a %= kMod;
    b %= kMod;
  }
  return (b << 16) | a;
}

void put_u32_be(std::string& out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(bytes, 4);
}

// length, type, data, CRC over type + data.
void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  out += body;
  put_u32_be(out, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

}  // namespace

std::string encode_png_stored(const uint8_t* rgb, int width, int height) {
  VI_CHECK(width > 0 && height > 0, "PNG: invalid size {}x{}", width, height);
  const size_t row = static_cast<size_t>(width) * 3;
  // Image data: each row prefixed by filter type 0 (None).
  std::string raw;
  raw.reserve((row + 1) * height);
  for (int y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(rgb) + y * row, row);
  }
  VI_CHECK(raw.size() < (size_t{1} << 31) - 64, "PNG: a {}x{} frame is too large for one IDAT",
           width, height);

  // zlib stream: CMF/FLG (deflate, 32K window, no dictionary; 0x7801 % 31 == 0), stored blocks
  // of at most 65535 bytes each with LEN and its complement NLEN (little-endian), Adler-32.
  std::string z = {'\x78', '\x01'};
  z.reserve(raw.size() + raw.size() / 65535 * 5 + 16);
  size_t pos = 0;
  do {
    size_t n = std::min<size_t>(raw.size() - pos, 65535);
    bool last = pos + n == raw.size();
    const char header[5] = {static_cast<char>(last ? 1 : 0), static_cast<char>(n & 0xFF),
                            static_cast<char>(n >> 8), static_cast<char>(~n & 0xFF),
                            static_cast<char>((~n >> 8) & 0xFF)};
    z.append(header, 5);
    z.append(raw, pos, n);
    pos += n;
  } while (pos < raw.size());
  put_u32_be(z, adler32(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));

  std::string ihdr;
  put_u32_be(ihdr, static_cast<uint32_t>(width));
  put_u32_be(ihdr, static_cast<uint32_t>(height));
  ihdr += std::string{'\x08', '\x02', '\0', '\0', '\0'};  // 8 bit, RGB, deflate, filter 0, no interlace

  std::string png = "\x89PNG\r\n\x1a\n";
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", "");
  return png;
}

}  // namespace detail

namespace {

class PngWriter final : public VideoWriter {
 public:
  PngWriter(std::string dir, int start_index) : dir_(std::move(dir)), next_index_(start_index) {}
  PngWriter(const PngWriter&) = delete;
  PngWriter& operator=(const PngWriter&) = delete;

  // Destroyed before finish() (an exception, a rank failure seen by the watchdog): the frames of
  // this run are removed, so a failed job leaves no partial frame sequence. Other files in the
  // directory stay.
  ~PngWriter() override {
    if (finished_) return;
    for (const auto& path : written_paths_) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  }

  void write(const at::Tensor& frames) override {
    VI_CHECK(!finished_, "PNG writer for '{}': write() after finish()", dir_);
    at::Tensor f = detail::check_frames(frames, -1, -1, "PNG writer for '" + dir_ + "'");
    const int height = static_cast<int>(f.size(1)), width = static_cast<int>(f.size(2));
    for (int64_t i = 0; i < f.size(0); ++i) {
      const uint8_t* rgb = f[i].data_ptr<uint8_t>();
#ifdef VI_HAVE_FFMPEG
      std::string png = detail::encode_png_libav(rgb, width, height);
#else
      std::string png = detail::encode_png_stored(rgb, width, height);
#endif
      const std::string path = frame_path(next_index_);
      written_paths_.push_back(path);  // before the write: a failed write leaves nothing either
      core::write_file_atomically(path, png);
      ++next_index_;
      ++written_;
    }
  }

  void finish() override {
    VI_CHECK(!finished_, "PNG writer for '{}': finish() called twice", dir_);
    finished_ = true;
  }

  std::string description() const override {
#ifdef VI_HAVE_FFMPEG
    return "PNG rgb24, lossless (libavcodec)";
#else
    return "PNG rgb24, lossless (built-in encoder, uncompressed)";
#endif
  }

  int64_t frames_written() const override { return written_; }

 private:
  std::string frame_path(int64_t index) const {
    return (std::filesystem::path(dir_) / fmt::format("frame_{:06d}.png", index)).string();
  }

  std::string dir_;
  int64_t next_index_;
  int64_t written_ = 0;
  std::vector<std::string> written_paths_;
  bool finished_ = false;
};

}  // namespace

std::unique_ptr<VideoWriter> open_png_writer(const std::string& dir, int start_index) {
  VI_CHECK(start_index >= 0, "PNG writer for '{}': negative start index {}", dir, start_index);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  VI_CHECK(!ec && std::filesystem::is_directory(dir), "cannot create the frame directory '{}': {}",
           dir, ec ? ec.message() : "exists and is not a directory");
  auto writer = std::make_unique<PngWriter>(dir, start_index);
  spdlog::info("writing frames to {}/frame_{:06d}.png ...: {}", dir, start_index,
               writer->description());
  return writer;
}

}  // namespace vi::video
