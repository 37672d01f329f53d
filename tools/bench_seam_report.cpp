// Benchmark: what the seam report costs, beside the MP4 encode it rides along. The pixel side
// (PixelSeamMeter fed uint8 clips as the writer gets them) and the MP4 encode of the same clips
// per frame, and the latent side (latent_changes over one rank's clips, a local communicator:
// the all-gather of a few frames is left out) per latent frame.
//   bench_seam_report [--height 320] [--width 512] [--clip 24] [--clips 4] [--latent-frames 288]
//                     [--latent-clips 1] [--codec auto] [--preset medium] [--reps 3]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "parallel/clip_parallel.h"
#include "pipeline/seam_report.h"
#include "tool_main.h"
#include "video_infinity/video_writer.h"

using namespace vi;

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// uint8 [frames, H, W, 3]: a wave drifting across the frame plus mild noise, so that neither the
// encoder nor the differences see a trivial picture.
at::Tensor test_video(int64_t frames, int64_t H, int64_t W) {
  at::manual_seed(0);
  auto d = at::TensorOptions().dtype(at::kFloat);
  at::Tensor f = at::arange(frames, d).view({frames, 1, 1, 1});
  at::Tensor y = at::arange(H, d).view({1, H, 1, 1});
  at::Tensor x = at::arange(W, d).view({1, 1, W, 1});
  at::Tensor ch = at::arange(3, d).view({1, 1, 1, 3});
  at::Tensor v = 128 + 80 * at::sin(0.05 * x + 0.03 * y + 0.15 * f + ch) + 4 * at::randn({frames, H, W, 3});
  return v.round().clamp(0, 255).to(at::kByte);
}

int run(int argc, char** argv) {
  int64_t H = 320, W = 512, clip = 24, clips = 4, latent_frames = 288, latent_clips = 1, reps = 3;
  std::string codec = "auto", preset = "medium";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--height" && has_value) H = std::stoll(argv[++i]);
    else if (a == "--width" && has_value) W = std::stoll(argv[++i]);
    else if (a == "--clip" && has_value) clip = std::stoll(argv[++i]);
    else if (a == "--clips" && has_value) clips = std::stoll(argv[++i]);
    else if (a == "--latent-frames" && has_value) latent_frames = std::stoll(argv[++i]);
    else if (a == "--latent-clips" && has_value) latent_clips = std::stoll(argv[++i]);
    else if (a == "--codec" && has_value) codec = argv[++i];
    else if (a == "--preset" && has_value) preset = argv[++i];
    else if (a == "--reps" && has_value) reps = std::stoll(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: %s [--height 320] [--width 512] [--clip 24] [--clips 4] [--latent-frames 288] "
                   "[--latent-clips 1] [--codec auto] [--preset medium] [--reps 3]\n",
                   argv[0]);
      return 2;
    }
  }
  c10::InferenceMode guard;
  const int64_t frames = clip * clips;
  const std::vector<int64_t> lengths(static_cast<size_t>(clips), clip);
  at::Tensor video = test_video(frames, H, W);

  // Pixel side, as the pipeline feeds it: every clip in order (best of `reps` passes).
  double seam_ms = 1e30;
  for (int64_t r = 0; r < reps; ++r) {
    pipeline::PixelSeamMeter meter(lengths, /*loop=*/true);
    auto t0 = Clock::now();
    for (int64_t c = 0; c < clips; ++c) meter.add_clip(video.narrow(0, c * clip, clip));
    seam_ms = std::min(seam_ms, ms_since(t0));
  }

  // The MP4 encode of the same frames (one pass: the encoder's own lookahead makes a pass the unit).
  double encode_ms = 0;
  std::string description = "no MP4 (built without ffmpeg)";
  if (video::mp4_supported()) {
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("bench_seam_report_" + std::to_string(::getpid()) + ".mp4")).string();
    video::Mp4Options options;
    options.codec = codec;
    options.preset = preset;
    auto t0 = Clock::now();
    auto writer = video::open_mp4_writer(path, static_cast<int>(W), static_cast<int>(H), 8.0, options);
    for (int64_t c = 0; c < clips; ++c) writer->write(video.narrow(0, c * clip, clip));
    writer->finish();
    encode_ms = ms_since(t0);
    description = writer->description();
    std::filesystem::remove(path);
  }

  // Latent side: [Cl, 4, F, H/8, W/8] fp32, one rank's clips.
  auto comm = parallel::make_local_communicator();
  const std::vector<int64_t> latent_lengths(static_cast<size_t>(latent_clips), latent_frames);
  const parallel::ClipLayout layout = parallel::ClipLayout::make(latent_lengths, *comm);
  at::Tensor latents = at::randn({latent_clips, 4, latent_frames, H / 8, W / 8});
  double latent_ms = 1e30;
  for (int64_t r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    pipeline::latent_changes(latents, layout, /*loop=*/true, *comm);
    latent_ms = std::min(latent_ms, ms_since(t0));
  }

  const double n = static_cast<double>(frames);
  const double nl = static_cast<double>(latent_frames * latent_clips);
  std::printf("seam report vs MP4 encode, %lldx%lld, %lld clips x %lld frames, %d threads; MP4: %s\n",
              (long long)W, (long long)H, (long long)clips, (long long)clip, at::get_num_threads(),
              description.c_str());
  std::printf("| part | ms/frame | ms total |\n|---|---|---|\n");
  std::printf("| seam report, pixels (%lld frames) | %.3f | %.1f |\n", (long long)frames, seam_ms / n, seam_ms);
  if (encode_ms > 0) std::printf("| MP4 encode (%lld frames) | %.3f | %.1f |\n", (long long)frames, encode_ms / n, encode_ms);
  std::printf("| seam report, latents (%lld x %lld frames of 4x%lldx%lld) | %.4f | %.1f |\n", (long long)latent_clips,
              (long long)latent_frames, (long long)(H / 8), (long long)(W / 8), latent_ms / nl, latent_ms);
  if (encode_ms > 0) std::printf("pixel side / encode: %.2f%%\n", 100.0 * seam_ms / encode_ms);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return vi::tools::run_main(argc, argv, run); }
