// The seam report on synthetic videos streamed in clips of unequal length (18 frames in clips of
// 5, 5, 4, 4, as clip_frame_counts cuts them): a smooth wave moving through the frames has no
// flagged boundary; the same wave with a brightness jump planted at one clip's first frame has
// exactly that boundary flagged. Every MAD and PSNR is checked against a direct computation.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/test_util.h"
#include "pipeline/seam_report.h"

using namespace vi::pipeline;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int64_t kH = 24, kW = 32, kh = 6, kw = 8;

std::vector<int64_t> lengths_of(int64_t frames, int64_t clips) {
  vi::GenerationConfig cfg;
  cfg.frames = frames;
  cfg.clips = clips;
  return vi::clip_frame_counts(cfg);
}

// A wave that moves by 2 pi / period per frame (periodic in `period` frames), plus `jump` from
// frame `jump_at` on: [frames, size, size2, channels] fp64, values about 100 +- 60 (+ jump).
at::Tensor wave(int64_t frames, int64_t rows, int64_t cols, int64_t channels, double period, int64_t jump_at,
                double jump) {
  auto d = at::TensorOptions().dtype(at::kDouble);
  at::Tensor f = at::arange(frames, d).view({frames, 1, 1, 1});
  at::Tensor y = at::arange(rows, d).view({1, rows, 1, 1});
  at::Tensor x = at::arange(cols, d).view({1, 1, cols, 1});
  at::Tensor ch = at::arange(channels, d).view({1, 1, 1, channels});
  return 100 + 60 * at::sin(2 * kPi * f / period + 0.3 * x + 0.2 * y + ch) + (f >= jump_at).to(at::kDouble) * jump;
}

// uint8 [frames, kH, kW, 3].
at::Tensor pixel_video(int64_t frames, double period, int64_t jump_at = 1 << 30, double jump = 0) {
  return wave(frames, kH, kW, 3, period, jump_at, jump).round().clamp(0, 255).to(at::kByte);
}

// The same wave as latents in clip slots: [C, 4, longest, kh, kw] fp32, about +-1 (jump / 60);
// slot padding after each clip's frames holds 1000 (it must be ignored).
at::Tensor latent_slots(const std::vector<int64_t>& lengths, double period, int64_t jump_at = 1 << 30,
                        double jump = 0) {
  int64_t frames = 0, longest = 0;
  for (int64_t f : lengths) {
    frames += f;
    longest = std::max(longest, f);
  }
  at::Tensor video = ((wave(frames, kh, kw, 4, period, jump_at, jump) - 100) / 60).permute({3, 0, 1, 2});  // [4, F, h, w]
  at::Tensor slots = at::full({static_cast<int64_t>(lengths.size()), 4, longest, kh, kw}, 1000.0);
  int64_t first = 0;
  for (size_t c = 0; c < lengths.size(); ++c) {
    slots[static_cast<int64_t>(c)].narrow(1, 0, lengths[c]).copy_(video.narrow(1, first, lengths[c]));
    first += lengths[c];
  }
  return slots;
}

FrameChanges pixel_changes(const at::Tensor& video, const std::vector<int64_t>& lengths, bool loop) {
  PixelSeamMeter meter(lengths, loop);
  int64_t first = 0;
  for (int64_t f : lengths) {
    meter.add_clip(video.narrow(0, first, f));
    first += f;
  }
  return meter.changes();
}

FrameChanges latent_changes_of(const at::Tensor& slots, const std::vector<int64_t>& lengths, bool loop) {
  auto comm = vi::parallel::make_local_communicator();
  return latent_changes(slots, vi::parallel::ClipLayout::make(lengths, *comm), loop, *comm);
}

SeamReport report_of(const at::Tensor& pixels, const at::Tensor& latents, const std::vector<int64_t>& lengths,
                     bool loop, double threshold = 3.0) {
  return make_seam_report(latent_changes_of(latents, lengths, loop), pixel_changes(pixels, lengths, loop), lengths,
                          loop, threshold);
}

double direct_mad(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().mean().item<double>();
}
double direct_psnr(const at::Tensor& a, const at::Tensor& b) {
  const double mse = (a.to(at::kDouble) - b.to(at::kDouble)).pow(2).mean().item<double>();
  return 10 * std::log10(255.0 * 255.0 / mse);
}
// Latent frame `frame` of the video in slots.
at::Tensor latent_frame(const at::Tensor& slots, const std::vector<int64_t>& lengths, int64_t frame) {
  int64_t c = 0;
  while (frame >= lengths[static_cast<size_t>(c)]) frame -= lengths[static_cast<size_t>(c++)];
  return slots[c].select(1, frame);
}

}  // namespace

TEST(PixelChange, KnownDifferences) {
  std::vector<uint8_t> a(100, 7), b = a;
  PixelChange same = pixel_change(a.data(), b.data(), 100);
  EXPECT_EQ(same.mad, 0.0);
  EXPECT_TRUE(std::isinf(same.psnr) && same.psnr > 0);
  for (int i = 0; i < 10; ++i) b[static_cast<size_t>(i * 10)] = 17;  // 10 of 100 bytes off by 10: MSE 10
  PixelChange ten = pixel_change(a.data(), b.data(), 100);
  EXPECT_DOUBLE_EQ(ten.mad, 1.0);
  EXPECT_NEAR(ten.psnr, 10 * std::log10(65025.0 / 10.0), 1e-12);  // 38.131 dB
  EXPECT_NEAR(ten.psnr, 38.131, 1e-3);
  // The largest difference, over more than one 4096-byte chunk (the 32-bit partial sums).
  std::vector<uint8_t> black(10000, 0), white(10000, 255);
  PixelChange most = pixel_change(black.data(), white.data(), 10000);
  EXPECT_DOUBLE_EQ(most.mad, 255.0);
  EXPECT_NEAR(most.psnr, 0.0, 1e-12);
  // Signed differences count by magnitude, both directions alike.
  PixelChange back = pixel_change(white.data(), black.data(), 10000);
  EXPECT_DOUBLE_EQ(back.mad, 255.0);
}

TEST(SeamReport, SmoothVideoHasNoFlaggedBoundary) {
  const auto lengths = lengths_of(18, 4);
  ASSERT_EQ(lengths, (std::vector<int64_t>{5, 5, 4, 4}));
  at::Tensor pixels = pixel_video(18, 18.0);
  at::Tensor latents = latent_slots(lengths, 18.0);
  SeamReport r = report_of(pixels, latents, lengths, false);
  EXPECT_EQ(r.inside_pairs, 14);
  ASSERT_EQ(r.seams.size(), 3u);
  const int64_t frames[] = {5, 10, 14};
  for (size_t i = 0; i < 3; ++i) {
    const Seam& s = r.seams[i];
    EXPECT_EQ(s.from_clip, static_cast<int64_t>(i));
    EXPECT_EQ(s.to_clip, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(s.frame, frames[i]);
    EXPECT_FALSE(s.loop);
    EXPECT_FALSE(s.flagged) << "seam " << i;
    // A boundary pair is a pair like any other here: ratios near 1.
    EXPECT_GT(s.pixel_ratio, 0.5);
    EXPECT_LT(s.pixel_ratio, 1.6);
    EXPECT_GT(s.latent_ratio, 0.5);
    EXPECT_LT(s.latent_ratio, 1.6);
    EXPECT_NEAR(s.pixel_mad, direct_mad(pixels[s.frame - 1], pixels[s.frame]), 1e-12);
    EXPECT_NEAR(s.pixel_psnr, direct_psnr(pixels[s.frame - 1], pixels[s.frame]), 1e-9);
    EXPECT_NEAR(s.latent_mad,
                direct_mad(latent_frame(latents, lengths, s.frame - 1), latent_frame(latents, lengths, s.frame)), 1e-6);
  }
  // The wave moves 2 pi / 18 a frame at amplitude 60: about 60 x 0.349 x 2/pi = 13.3 per pixel.
  EXPECT_NEAR(r.pixel_median, 13.3, 1.5);
  EXPECT_NEAR(r.latent_median, 13.3 / 60, 0.03);
  EXPECT_NE(seam_summary(r).find("seams: 3 boundaries, worst clip"), std::string::npos) << seam_summary(r);
  EXPECT_NE(seam_summary(r).find("; none flagged"), std::string::npos) << seam_summary(r);
  EXPECT_TRUE(seam_warnings(r).empty());
}

TEST(SeamReport, PlantedJumpIsFlaggedAtItsBoundaryOnly) {
  const auto lengths = lengths_of(18, 4);
  // +70 from clip 2's first frame (frame 10) on: the wave stays in 0..255, so frames inside
  // clips change as before and only the pair 9 -> 10 jumps.
  at::Tensor pixels = pixel_video(18, 18.0, 10, 70.0);
  at::Tensor latents = latent_slots(lengths, 18.0, 10, 70.0);
  ASSERT_LT(pixels.max().item<int>(), 255);  // nothing clipped
  SeamReport r = report_of(pixels, latents, lengths, false);
  ASSERT_EQ(r.seams.size(), 3u);
  EXPECT_FALSE(r.seams[0].flagged);
  EXPECT_TRUE(r.seams[1].flagged);
  EXPECT_FALSE(r.seams[2].flagged);
  const Seam& s = r.seams[1];
  EXPECT_EQ(s.frame, 10);
  EXPECT_GT(s.pixel_ratio, 4.0);   // about 70 / 13.3
  EXPECT_GT(s.latent_ratio, 4.0);
  EXPECT_NEAR(s.pixel_mad, direct_mad(pixels[9], pixels[10]), 1e-12);
  EXPECT_NEAR(s.pixel_psnr, direct_psnr(pixels[9], pixels[10]), 1e-9);
  EXPECT_LT(s.pixel_psnr, 12.0);
  EXPECT_NEAR(s.latent_mad, direct_mad(latent_frame(latents, lengths, 9), latent_frame(latents, lengths, 10)), 1e-6);
  // The medians are those of the pairs inside clips, which the jump does not touch.
  SeamReport smooth = report_of(pixel_video(18, 18.0), latent_slots(lengths, 18.0), lengths, false);
  EXPECT_NEAR(r.pixel_median, smooth.pixel_median, 0.5);
  // A threshold above the jump's ratio flags nothing.
  SeamReport lenient = report_of(pixels, latents, lengths, false, 1.01 * std::max(s.pixel_ratio, s.latent_ratio));
  EXPECT_FALSE(lenient.seams[1].flagged);

  const std::string summary = seam_summary(r);
  EXPECT_NE(summary.find("worst clip 1->2 at frame 10:"), std::string::npos) << summary;
  EXPECT_NE(summary.find("; 1 flagged (above 3x)"), std::string::npos) << summary;
  ASSERT_EQ(seam_warnings(r).size(), 1u);
  EXPECT_NE(seam_warnings(r)[0].find("seam flagged at clip 1->2 at frame 10"), std::string::npos) << seam_warnings(r)[0];

  nlohmann::json j = seam_report_json(r);
  EXPECT_EQ(j["threshold"], 3.0);
  EXPECT_EQ(j["boundaries"], 3);
  EXPECT_EQ(j["flagged"], 1);
  EXPECT_EQ(j["inside_pairs"], 14);
  EXPECT_DOUBLE_EQ(j["median_inside"]["pixel_mad"].get<double>(), r.pixel_median);
  ASSERT_EQ(j["seams"].size(), 3u);
  EXPECT_EQ(j["seams"][1]["frame"], 10);
  EXPECT_EQ(j["seams"][1]["flagged"], true);
  EXPECT_DOUBLE_EQ(j["seams"][1]["pixel_psnr_db"].get<double>(), s.pixel_psnr);
}

TEST(SeamReport, LoopSeamOnlyWithLoop) {
  const auto lengths = lengths_of(18, 4);
  // Periodic in 18 frames: the last frame flows into the first like any other pair.
  at::Tensor periodic = pixel_video(18, 18.0);
  SeamReport ring = report_of(periodic, latent_slots(lengths, 18.0), lengths, true);
  ASSERT_EQ(ring.seams.size(), 4u);
  const Seam& seam = ring.seams[3];
  EXPECT_TRUE(seam.loop);
  EXPECT_EQ(seam.from_clip, 3);
  EXPECT_EQ(seam.to_clip, 0);
  EXPECT_EQ(seam.frame, 0);
  EXPECT_NEAR(seam.pixel_mad, direct_mad(periodic[17], periodic[0]), 1e-12);
  EXPECT_FALSE(seam.flagged);
  EXPECT_NE(seam_summary(ring).find("seams: 4 boundaries (with the loop seam)"), std::string::npos);
  EXPECT_TRUE(seam_report_json(ring)["seams"][3]["loop"].get<bool>());
  // Period 72: a quarter turn, so the end does not meet the start; the loop seam is flagged.
  at::Tensor open = pixel_video(18, 72.0);
  SeamReport open_ring = report_of(open, latent_slots(lengths, 72.0), lengths, true);
  ASSERT_EQ(open_ring.seams.size(), 4u);
  EXPECT_TRUE(open_ring.seams[3].flagged);
  for (size_t i = 0; i < 3; ++i) EXPECT_FALSE(open_ring.seams[i].flagged) << i;
  EXPECT_NE(seam_summary(open_ring).find("worst the loop seam (clip 3->0)"), std::string::npos)
      << seam_summary(open_ring);
  // Without --loop the same video has no loop seam.
  EXPECT_EQ(report_of(open, latent_slots(lengths, 72.0), lengths, false).seams.size(), 3u);
}

TEST(SeamReport, DegenerateVideos) {
  // One clip: no boundary, unless it loops onto itself.
  SeamReport one = report_of(pixel_video(5, 18.0), latent_slots({5}, 18.0), {5}, false);
  EXPECT_TRUE(one.seams.empty());
  EXPECT_EQ(seam_summary(one), "seams: one clip, no boundary");
  EXPECT_EQ(seam_report_json(one)["boundaries"], 0);
  EXPECT_EQ(report_of(pixel_video(5, 18.0), latent_slots({5}, 18.0), {5}, true).seams.size(), 1u);

  // Clips of one frame: nothing inside clips to compare with; a jump is not flagged, the
  // medians and ratios are null in the JSON.
  const std::vector<int64_t> singles = {1, 1, 1};
  SeamReport none = report_of(pixel_video(3, 18.0, 1, 80.0), latent_slots(singles, 18.0, 1, 80.0), singles, false);
  EXPECT_EQ(none.inside_pairs, 0);
  ASSERT_EQ(none.seams.size(), 2u);
  EXPECT_FALSE(none.seams[0].flagged);
  EXPECT_TRUE(std::isnan(none.pixel_median));
  nlohmann::json j = seam_report_json(none);
  EXPECT_TRUE(j["median_inside"]["pixel_mad"].is_null());
  EXPECT_TRUE(j["seams"][0]["pixel_ratio"].is_null());
  EXPECT_GT(j["seams"][0]["pixel_mad"].get<double>(), 70.0);
  EXPECT_NE(seam_summary(none).find("no change inside clips"), std::string::npos) << seam_summary(none);

  // A still video: median 0. Still boundaries have ratio 1; a boundary that changes has an
  // infinite ratio (null in the JSON) and is flagged.
  const auto lengths = lengths_of(12, 3);
  at::Tensor still = at::full({12, kH, kW, 3}, 90, at::kByte);
  // An infinite period: the same latent every frame, exactly.
  at::Tensor still_latents = latent_slots(lengths, std::numeric_limits<double>::infinity());
  SeamReport calm = report_of(still, still_latents, lengths, false);
  EXPECT_EQ(calm.pixel_median, 0.0);
  for (const Seam& s : calm.seams) {
    EXPECT_EQ(s.pixel_ratio, 1.0);
    EXPECT_FALSE(s.flagged);
    EXPECT_TRUE(std::isinf(s.pixel_psnr));
  }
  EXPECT_TRUE(seam_report_json(calm)["seams"][0]["pixel_psnr_db"].is_null());
  at::Tensor stepped = still.clone();
  stepped.narrow(0, 8, 4).fill_(100);
  SeamReport step = report_of(stepped, still_latents, lengths, false);
  EXPECT_FALSE(step.seams[0].flagged);
  EXPECT_TRUE(step.seams[1].flagged);
  EXPECT_TRUE(std::isinf(step.seams[1].pixel_ratio));
  EXPECT_DOUBLE_EQ(step.seams[1].pixel_mad, 10.0);
  EXPECT_TRUE(seam_report_json(step)["seams"][1]["pixel_ratio"].is_null());
  EXPECT_NE(seam_summary(step).find("a change in pixels where there is none inside clips"), std::string::npos)
      << seam_summary(step);
}

TEST(SeamReport, RefusesClipsThatDoNotMatchTheLayout) {
  PixelSeamMeter meter({5, 4}, false);
  EXPECT_NE(vi::test::error_of([&] { meter.add_clip(pixel_video(4, 18.0)); }).find("clip 0 must be uint8 [5, H, W, 3]"),
            std::string::npos);
  meter.add_clip(pixel_video(5, 18.0));
  EXPECT_NE(vi::test::error_of([&] { meter.changes(); }).find("1 of 2 clips"), std::string::npos);
  EXPECT_NE(vi::test::error_of([&] { meter.add_clip(at::zeros({4, 8, 8, 3}, at::kByte)); }).find("frames of 8x8"),
            std::string::npos);
  meter.add_clip(pixel_video(4, 18.0));
  EXPECT_EQ(meter.changes().inside.size(), 7u);
  EXPECT_NE(vi::test::error_of([&] { meter.add_clip(pixel_video(4, 18.0)); }).find("added to a video of 2 clips"),
            std::string::npos);
}
