// Video output: MP4 written in chunks is checked with ffprobe (frame count, size, rate, codec)
// and decoded with ffmpeg (PSNR against the input); failures and abandoned writers leave no
// file; PNG frames decode bit-exactly, from both the libavcodec and the built-in encoder.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include "common/test_util.h"
#include "core/check.h"
#include "video/video_internal.h"
#include "video_infinity/video_writer.h"

#ifdef VI_HAVE_FFMPEG
extern "C" {
#include <libavformat/avformat.h>
}
#endif

namespace fs = std::filesystem;
using vi::test::run_command;

namespace {

bool have_tool(const std::string& name) {
  return run_command("command -v " + name).status == 0;
}

#define REQUIRE_FFMPEG_CLI()                                                   \
  do {                                                                         \
    if (!have_tool("ffmpeg") || !have_tool("ffprobe"))                         \
      GTEST_SKIP() << "ffmpeg/ffprobe command-line tools not installed";       \
  } while (0)

#define REQUIRE_MP4()                                                          \
  do {                                                                         \
    REQUIRE_FFMPEG_CLI();                                                      \
    if (!vi::video::mp4_supported()) GTEST_SKIP() << "built without ffmpeg";   \
  } while (0)

using vi::test::error_of;

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// Smooth moving colour gradients: [n, h, w, 3] uint8. Lossy codecs reproduce these well.
at::Tensor smooth_frames(int64_t n, int64_t h, int64_t w) {
  auto t = at::arange(n, at::kFloat).view({n, 1, 1});
  auto y = at::arange(h, at::kFloat).view({1, h, 1}) / h;
  auto x = at::arange(w, at::kFloat).view({1, 1, w}) / w;
  auto r = 128 + 90 * at::sin(2 * M_PI * x + 0.3 * t) * at::ones({1, h, 1});
  auto g = 128 + 90 * at::cos(2 * M_PI * y - 0.2 * t) * at::ones({1, 1, w});
  auto b = 128 + 60 * at::sin(M_PI * (x + y) + 0.1 * t);
  return at::stack({r, g, b}, -1).round().clamp(0, 255).to(at::kByte);  // [n, h, w, 3]
}

at::Tensor noise_frames(int64_t n, int64_t h, int64_t w, int64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randint(0, 256, {n, h, w, 3}, gen, at::TensorOptions().dtype(at::kByte));
}

// ffprobe's key=value lines for the first video stream, frames counted by decoding.
std::map<std::string, std::string> probe(const std::string& path) {
  auto r = run_command("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                       "stream=codec_name,width,height,avg_frame_rate,nb_read_frames,pix_fmt,"
                       "color_space,color_range,color_primaries "
                       "-of default=noprint_wrappers=1 '" + path + "'");
  EXPECT_EQ(r.status, 0) << r.output;
  std::map<std::string, std::string> values;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos) values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return values;
}

// Decodes a video or image to rgb24 bytes [n, h, w, 3] with the ffmpeg CLI.
at::Tensor decode_rgb(const std::string& path, int64_t h, int64_t w) {
  const std::string raw = path + ".rgb";
  auto r = run_command("ffmpeg -v error -y -i '" + path + "' -f rawvideo -pix_fmt rgb24 '" + raw + "'");
  EXPECT_EQ(r.status, 0) << r.output;
  std::string bytes = vi::test::read_file(raw);
  fs::remove(raw);
  const int64_t frame_bytes = h * w * 3;
  EXPECT_EQ(bytes.size() % frame_bytes, 0u) << "decoded " << bytes.size() << " bytes";
  auto out = at::empty({static_cast<int64_t>(bytes.size()) / frame_bytes, h, w, 3}, at::kByte);
  std::memcpy(out.data_ptr<uint8_t>(), bytes.data(), out.numel());
  return out;
}

// Lowest per-frame PSNR in dB.
double min_psnr(const at::Tensor& a, const at::Tensor& b) {
  auto diff = a.to(at::kDouble) - b.to(at::kDouble);
  auto mse = diff.pow(2).flatten(1).mean(1);  // [n]
  return (10 * at::log10(255.0 * 255.0 / mse.clamp_min(1e-10))).min().item<double>();
}

bool ffmpeg_has_libx264() {
  return run_command("ffmpeg -hide_banner -encoders").output.find(" libx264 ") != std::string::npos;
}

struct TempDir {
  std::string path = vi::test::make_temp_dir("video");
  ~TempDir() { fs::remove_all(path); }
};

// Writes 17 frames 64x48 at 8 fps in chunks of 6, 6, 5 and checks the file.
void check_chunked_mp4(const vi::video::Mp4Options& options, const std::string& expected_codec) {
  TempDir dir;
  const std::string path = dir.path + "/out.mp4";
  at::Tensor frames = smooth_frames(17, 48, 64);
  auto writer = vi::video::open_mp4_writer(path, 64, 48, 8.0, options);
  std::cout << "writer: " << writer->description() << "\n";
  writer->write(frames.slice(0, 0, 6));
  writer->write(frames.slice(0, 6, 12));
  EXPECT_FALSE(fs::exists(path)) << "final file must appear only at finish()";
  writer->write(frames.slice(0, 12, 17));
  writer->finish();
  EXPECT_EQ(writer->frames_written(), 17);
  EXPECT_EQ(list_dir(dir.path), std::vector<std::string>{"out.mp4"}) << "temporary file left";

  auto info = probe(path);
  EXPECT_EQ(info["codec_name"], expected_codec);
  EXPECT_EQ(info["width"], "64");
  EXPECT_EQ(info["height"], "48");
  EXPECT_EQ(info["pix_fmt"], "yuv420p");
  EXPECT_EQ(info["avg_frame_rate"], "8/1");
  EXPECT_EQ(info["nb_read_frames"], "17");
  // Tagged as converted (limited-range BT.709), so players pick the matching matrix.
  EXPECT_EQ(info["color_space"], "bt709");
  EXPECT_EQ(info["color_range"], "tv");
  EXPECT_EQ(info["color_primaries"], "bt709");

  at::Tensor decoded = decode_rgb(path, 48, 64);
  ASSERT_EQ(decoded.size(0), 17);
  double psnr = min_psnr(decoded, frames);
  std::cout << "min PSNR over frames: " << psnr << " dB (threshold 30 dB)\n";
  EXPECT_GT(psnr, 30.0);
}

TEST(Mp4Writer, ChunkedWriteAutoCodec) {
  REQUIRE_MP4();
  const bool x264 = ffmpeg_has_libx264();
  std::cout << "libx264 available to the ffmpeg CLI: " << x264 << "\n";
  check_chunked_mp4({}, x264 ? "h264" : "mpeg4");
}

TEST(Mp4Writer, ChunkedWriteMpeg4) {
  REQUIRE_MP4();
  vi::video::Mp4Options options;
  options.codec = "mpeg4";
  check_chunked_mp4(options, "mpeg4");
}

TEST(Mp4Writer, FractionalFrameRate) {
  REQUIRE_MP4();
  TempDir dir;
  const std::string path = dir.path + "/ntsc.mp4";
  auto writer = vi::video::open_mp4_writer(path, 32, 16, 30000.0 / 1001.0);
  writer->write(smooth_frames(10, 16, 32));
  writer->finish();
  auto info = probe(path);
  EXPECT_EQ(info["avg_frame_rate"], "30000/1001");
  EXPECT_EQ(info["nb_read_frames"], "10");
}

TEST(Mp4Writer, TagsReadBackWithLibavformat) {
#ifdef VI_HAVE_FFMPEG
  TempDir dir;
  const std::string path = dir.path + "/tagged.mp4";
  vi::video::Mp4Options options;
  options.metadata = {{"description", "clip 0 (frames 0-4): \"a cat\"\nclip 1 (frames 5-9): \"a dog\""},
                      {"comment", "seed 7, 30 steps"}};
  auto writer = vi::video::open_mp4_writer(path, 32, 16, 8, options);
  writer->write(smooth_frames(10, 16, 32));
  writer->finish();
  AVFormatContext* format = nullptr;
  ASSERT_EQ(avformat_open_input(&format, path.c_str(), nullptr, nullptr), 0);
  auto tag = [&](const char* key) {
    const AVDictionaryEntry* e = av_dict_get(format->metadata, key, nullptr, 0);
    return e == nullptr ? std::string("(none)") : std::string(e->value);
  };
  EXPECT_EQ(tag("description"), "clip 0 (frames 0-4): \"a cat\"\nclip 1 (frames 5-9): \"a dog\"");
  EXPECT_EQ(tag("comment"), "seed 7, 30 steps");
  avformat_close_input(&format);
#else
  GTEST_SKIP() << "built without ffmpeg";
#endif
}

TEST(Mp4Writer, AbandonedWriterLeavesNoFile) {
  REQUIRE_MP4();
  TempDir dir;
  const std::string path = dir.path + "/out.mp4";
  {
    auto writer = vi::video::open_mp4_writer(path, 64, 48, 8.0);
    writer->write(smooth_frames(5, 48, 64));
    EXPECT_EQ(list_dir(dir.path).size(), 1u) << "the temporary file exists while writing";
  }
  EXPECT_TRUE(list_dir(dir.path).empty()) << "neither temporary nor final file may remain";

  // An older file at the path survives an abandoned run untouched.
  vi::test::write_file(path, "previous video");
  {
    auto writer = vi::video::open_mp4_writer(path, 64, 48, 8.0);
    writer->write(smooth_frames(3, 48, 64));
  }
  EXPECT_EQ(list_dir(dir.path), std::vector<std::string>{"out.mp4"});
  EXPECT_EQ(vi::test::read_file(path), "previous video");
}

TEST(Mp4Writer, RejectedFramesAndEmptyVideoLeaveNoFile) {
  REQUIRE_MP4();
  TempDir dir;
  const std::string path = dir.path + "/out.mp4";
  {
    auto writer = vi::video::open_mp4_writer(path, 64, 48, 8.0);
    std::string e = error_of([&] { writer->write(smooth_frames(2, 48, 62)); });
    std::cout << e << "\n";
    EXPECT_NE(e.find("62x48"), std::string::npos) << e;
    EXPECT_NE(e.find(path), std::string::npos) << e;
    e = error_of([&] { writer->write(smooth_frames(2, 48, 64).to(at::kFloat)); });
    EXPECT_NE(e.find("uint8"), std::string::npos) << e;
    e = error_of([&] { writer->write(at::zeros({2, 48, 64, 4}, at::kByte)); });
    EXPECT_NE(e.find("[2, 48, 64, 4]"), std::string::npos) << e;
    e = error_of([&] { writer->finish(); });
    EXPECT_NE(e.find("no frames"), std::string::npos) << e;
    e = error_of([&] { writer->write(smooth_frames(1, 48, 64)); });
    EXPECT_NE(e.find("earlier error"), std::string::npos) << e;
  }
  EXPECT_TRUE(list_dir(dir.path).empty());
}

TEST(Mp4Writer, UnwritablePathIsNamed) {
  REQUIRE_MP4();
  TempDir dir;
  vi::test::write_file(dir.path + "/file", "x");
  for (const std::string& path : {dir.path + "/file/out.mp4", dir.path + "/missing/out.mp4"}) {
    std::string e = error_of([&] { vi::video::open_mp4_writer(path, 64, 48, 8.0); });
    std::cout << e << "\n";
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_TRUE(e.find("Not a directory") != std::string::npos ||
                e.find("No such file or directory") != std::string::npos)
        << "libav's error string expected: " << e;
  }
  EXPECT_EQ(list_dir(dir.path), std::vector<std::string>{"file"});
}

TEST(Mp4Writer, RejectsOddSizeAndBadOptions) {
  REQUIRE_MP4();
  TempDir dir;
  const std::string path = dir.path + "/out.mp4";
  std::string e = error_of([&] { vi::video::open_mp4_writer(path, 63, 48, 8.0); });
  EXPECT_NE(e.find("even"), std::string::npos) << e;
  EXPECT_NE(e.find("63x48"), std::string::npos) << e;
  e = error_of([&] { vi::video::open_mp4_writer(path, 64, 48, 0.0); });
  EXPECT_NE(e.find("fps"), std::string::npos) << e;
  vi::video::Mp4Options options;
  options.codec = "vp9";
  e = error_of([&] { vi::video::open_mp4_writer(path, 64, 48, 8.0, options); });
  EXPECT_NE(e.find("unknown codec 'vp9'"), std::string::npos) << e;
  options = {};
  options.codec = "mpeg4";
  options.mpeg4_qscale = 0;
  e = error_of([&] { vi::video::open_mp4_writer(path, 64, 48, 8.0, options); });
  EXPECT_NE(e.find("qscale 0"), std::string::npos) << e;
  if (ffmpeg_has_libx264()) {
    options = {};
    options.codec = "h264";
    options.preset = "warp-speed";
    e = error_of([&] { vi::video::open_mp4_writer(path, 64, 48, 8.0, options); });
    std::cout << e << "\n";
    EXPECT_NE(e.find("warp-speed"), std::string::npos) << e;
  }
  EXPECT_TRUE(list_dir(dir.path).empty());
}

TEST(Mp4Writer, ClearErrorWhenBuiltWithoutFfmpeg) {
  if (vi::video::mp4_supported()) GTEST_SKIP() << "this build writes MP4";
  TempDir dir;
  const std::string path = dir.path + "/out.mp4";
  std::string e = error_of([&] { vi::video::open_mp4_writer(path, 64, 48, 8.0); });
  std::cout << e << "\n";
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("no MP4 support"), std::string::npos) << e;
  EXPECT_TRUE(list_dir(dir.path).empty());
}

// Each frame file decodes (ffmpeg's PNG decoder, CRCs checked) to exactly the input bytes.
void expect_png_exact(const std::string& file, const at::Tensor& frame) {
  auto r = run_command("ffmpeg -v error -err_detect crccheck+explode -y -i '" + file +
                       "' -f rawvideo -pix_fmt rgb24 '" + file + ".rgb'");
  ASSERT_EQ(r.status, 0) << file << ": " << r.output;
  std::string bytes = vi::test::read_file(file + ".rgb");
  fs::remove(file + ".rgb");
  ASSERT_EQ(bytes.size(), static_cast<size_t>(frame.numel())) << file;
  EXPECT_EQ(std::memcmp(bytes.data(), frame.contiguous().data_ptr<uint8_t>(), bytes.size()), 0)
      << file << " does not decode to the input";
}

TEST(PngWriter, FramesDecodeBitExactly) {
  REQUIRE_FFMPEG_CLI();
  TempDir dir;
  const std::string out = dir.path + "/frames";  // created by the writer
  at::Tensor frames = noise_frames(3, 23, 37, 1);  // odd sizes are fine for PNG
  auto writer = vi::video::open_png_writer(out, 5);
  std::cout << "writer: " << writer->description() << "\n";
  writer->write(frames.slice(0, 0, 2));
  writer->write(frames[2]);  // a single [H, W, 3] frame
  writer->finish();
  EXPECT_EQ(writer->frames_written(), 3);
  ASSERT_EQ(list_dir(out), (std::vector<std::string>{"frame_000005.png", "frame_000006.png",
                                                     "frame_000007.png"}));
  for (int i = 0; i < 3; ++i) {
    expect_png_exact(out + "/frame_00000" + std::to_string(5 + i) + ".png", frames[i]);
  }
  EXPECT_NE(error_of([&] { writer->write(frames); }).find("after finish"), std::string::npos);
}

TEST(PngWriter, BuiltInEncoderDecodesBitExactly) {
  REQUIRE_FFMPEG_CLI();
  TempDir dir;
  // 201x120: 72,480 bytes of filtered rows, more than one 65,535-byte stored block; 1x1 minimal.
  for (auto [w, h] : {std::pair<int, int>{201, 120}, {1, 1}, {64, 48}}) {
    at::Tensor frame = noise_frames(1, h, w, w)[0];
    std::string png = vi::video::detail::encode_png_stored(frame.data_ptr<uint8_t>(), w, h);
    const size_t raw = static_cast<size_t>(w * 3 + 1) * h;
    const size_t blocks = (raw + 65534) / 65535;
    // signature + IHDR + IDAT(zlib header, block headers, data, Adler-32) + IEND
    EXPECT_EQ(png.size(), 8 + 25 + (12 + 2 + 5 * blocks + raw + 4) + 12) << w << "x" << h;
    const std::string file = dir.path + "/builtin_" + std::to_string(w) + ".png";
    vi::test::write_file(file, png);
    expect_png_exact(file, frame);
    // zlib itself verifies the stream and its Adler-32, and every chunk CRC.
    auto r = run_command(
        "python3 -c \"import sys, struct, zlib\n"
        "d = open(sys.argv[1], 'rb').read(); p = 8; idat = b''\n"
        "while p < len(d):\n"
        "    n, t = struct.unpack('>I4s', d[p:p+8]); body = d[p+4:p+8+n]\n"
        "    assert struct.unpack('>I', d[p+8+n:p+12+n])[0] == zlib.crc32(body), t\n"
        "    idat += body[4:] if t == b'IDAT' else b''; p += 12 + n\n"
        "print(len(zlib.decompress(idat)))\" '" + file + "'");
    if (r.status == 127) continue;  // no python3: ffmpeg's check above stands
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(std::stoul(r.output), raw) << r.output;
  }
}

TEST(PngWriter, UnfinishedWriterRemovesItsFramesOnly) {
  TempDir dir;
  const std::string out = dir.path + "/frames";
  std::filesystem::create_directories(out);
  vi::test::write_file(out + "/notes.txt", "kept");
  vi::test::write_file(out + "/frame_000009.png", "an earlier run's frame");
  at::Tensor frames = noise_frames(3, 8, 8, 2);
  {
    auto writer = vi::video::open_png_writer(out);
    writer->write(frames);
    EXPECT_EQ(list_dir(out).size(), 5u);
  }  // destroyed without finish(), as on an exception while decoding
  EXPECT_EQ(list_dir(out), (std::vector<std::string>{"frame_000009.png", "notes.txt"}));
  {
    auto writer = vi::video::open_png_writer(out);
    writer->write(frames);
    writer->finish();
  }
  EXPECT_EQ(list_dir(out), (std::vector<std::string>{"frame_000000.png", "frame_000001.png", "frame_000002.png",
                                                     "frame_000009.png", "notes.txt"}));
}

TEST(PngWriter, UncreatableDirectoryIsNamed) {
  TempDir dir;
  vi::test::write_file(dir.path + "/file", "x");
  const std::string out = dir.path + "/file/frames";
  std::string e = error_of([&] { vi::video::open_png_writer(out); });
  std::cout << e << "\n";
  EXPECT_NE(e.find(out), std::string::npos) << e;
}

}  // namespace
