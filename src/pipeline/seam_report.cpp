#include "pipeline/seam_report.h"

#include <ATen/ATen.h>
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/check.h"
#include "core/safetensors_format.h"

namespace vi::pipeline {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// NaN for an empty sample; the mean of the two middle values for an even one.
double median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  const double upper = v[mid];
  if (v.size() % 2 == 1) return upper;
  const double lower = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
  return upper == kInf && lower == kInf ? kInf : (lower + upper) / 2;
}

double ratio(double boundary, double median_inside) {
  if (std::isnan(median_inside)) return kNaN;
  if (median_inside == 0) return boundary == 0 ? 1.0 : kInf;
  return boundary / median_inside;
}

nlohmann::json finite_or_null(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

// "1.8x the median change in pixels" ("1.8x in pixels" when `brief`), or what an infinite ratio means.
std::string ratio_phrase(double r, const char* where, bool brief = false) {
  if (std::isinf(r)) return fmt::format("a change in {} where there is none inside clips", where);
  if (brief) return fmt::format("{:.1f}x in {}", r, where);
  return fmt::format("{:.1f}x the median change in {}", r, where);
}

std::string psnr_phrase(double psnr) {
  return std::isinf(psnr) ? std::string("identical frames") : fmt::format("PSNR {:.1f} dB", psnr);
}

std::string seam_name(const Seam& s) {
  return s.loop ? fmt::format("the loop seam (clip {}->{})", s.from_clip, s.to_clip)
                : fmt::format("clip {}->{} at frame {}", s.from_clip, s.to_clip, s.frame);
}

// The larger of the two ratios; NaN (nothing to compare with) below every number.
double worse_ratio(const Seam& s) {
  const double l = std::isnan(s.latent_ratio) ? -kInf : s.latent_ratio;
  const double p = std::isnan(s.pixel_ratio) ? -kInf : s.pixel_ratio;
  return std::max(l, p);
}

}  // namespace

int64_t seam_count(int64_t clips, bool loop) { return clips - 1 + (loop ? 1 : 0); }

PixelChange pixel_change(const uint8_t* a, const uint8_t* b, int64_t bytes) {
  VI_CHECK(bytes > 0, "seam report: frames of {} bytes", bytes);
  // 32-bit sums over chunks of 4096 bytes (4096 x 255^2 < 2^32): the inner loop vectorises.
  constexpr int64_t kChunk = 4096;
  uint64_t sum_abs = 0, sum_sq = 0;
  for (int64_t start = 0; start < bytes; start += kChunk) {
    const int64_t end = std::min(bytes, start + kChunk);
    uint32_t abs32 = 0, sq32 = 0;
    for (int64_t i = start; i < end; ++i) {
      const int32_t d = static_cast<int32_t>(a[i]) - static_cast<int32_t>(b[i]);
      abs32 += static_cast<uint32_t>(std::abs(d));
      sq32 += static_cast<uint32_t>(d * d);
    }
    sum_abs += abs32;
    sum_sq += sq32;
  }
  const double n = static_cast<double>(bytes);
  PixelChange out;
  out.mad = static_cast<double>(sum_abs) / n;
  out.psnr = sum_sq == 0 ? kInf : 10.0 * std::log10(255.0 * 255.0 * n / static_cast<double>(sum_sq));
  return out;
}

PixelSeamMeter::PixelSeamMeter(std::vector<int64_t> clip_lengths, bool loop)
    : lengths_(std::move(clip_lengths)), loop_(loop) {
  VI_CHECK(!lengths_.empty(), "seam report: a video without clips");
  for (int64_t f : lengths_) VI_CHECK(f > 0, "seam report: a clip of {} frames", f);
}

void PixelSeamMeter::add_clip(const at::Tensor& frames) {
  const auto t0 = Clock::now();
  VI_CHECK(clips_added_ < lengths_.size(), "seam report: clip {} added to a video of {} clips", clips_added_,
           lengths_.size());
  const int64_t F = lengths_[clips_added_];
  VI_CHECK(frames.defined() && frames.device().is_cpu() && frames.scalar_type() == at::kByte && frames.dim() == 4 &&
               frames.size(0) == F && frames.size(3) == 3,
           "seam report: clip {} must be uint8 [{}, H, W, 3] on the CPU, got {} {}", clips_added_, F,
           frames.defined() ? c10::toString(frames.scalar_type()) : "undefined",
           frames.defined() ? core::shape_str(frames.sizes().vec()) : "");
  const std::vector<int64_t> shape = {frames.size(1), frames.size(2), 3};
  if (clips_added_ == 0) frame_shape_ = shape;
  VI_CHECK(shape == frame_shape_, "seam report: clip {} has frames of {}x{}, the first clip {}x{}", clips_added_,
           shape[1], shape[0], frame_shape_[1], frame_shape_[0]);

  const at::Tensor x = frames.contiguous();  // what the sink gets is contiguous already: no copy
  const uint8_t* p = x.data_ptr<uint8_t>();
  const int64_t n = shape[0] * shape[1] * 3;
  auto record = [](std::vector<double>& mads, std::vector<double>& psnrs, const PixelChange& c) {
    mads.push_back(c.mad);
    psnrs.push_back(c.psnr);
  };
  if (clips_added_ == 0) {
    if (loop_) first_.assign(p, p + n);
  } else {
    record(changes_.boundary, changes_.boundary_psnr, pixel_change(previous_.data(), p, n));
  }
  for (int64_t f = 1; f < F; ++f) {
    record(changes_.inside, changes_.inside_psnr, pixel_change(p + (f - 1) * n, p + f * n, n));
  }
  previous_.assign(p + (F - 1) * n, p + F * n);
  ++clips_added_;
  if (clips_added_ == lengths_.size() && loop_) {
    record(changes_.boundary, changes_.boundary_psnr, pixel_change(previous_.data(), first_.data(), n));
  }
  seconds_ += seconds_since(t0);
}

const FrameChanges& PixelSeamMeter::changes() const {
  VI_CHECK(clips_added_ == lengths_.size(), "seam report: {} of {} clips were decoded", clips_added_,
           lengths_.size());
  return changes_;
}

FrameChanges latent_changes(const at::Tensor& latents, const parallel::ClipLayout& layout, bool loop,
                            parallel::Communicator& comm) {
  VI_CHECK(latents.dim() == 5 && latents.size(0) == layout.local_clips && latents.size(2) == layout.frames,
           "seam report: latents must be [{}, C, {}, h, w] (local clips, slot frames), got {}", layout.local_clips,
           layout.frames, core::shape_str(latents.sizes().vec()));
  const int64_t Cl = layout.local_clips, F = layout.frames;
  at::Tensor x = latents.to(at::kFloat);                                            // [Cl, 4, F, h, w]
  at::Tensor inside = (x.narrow(2, 1, F - 1) - x.narrow(2, 0, F - 1)).abs().mean({1, 3, 4});  // [Cl, F-1]
  std::vector<at::Tensor> last;
  for (int64_t j = 0; j < Cl; ++j) last.push_back(x[j].select(1, layout.local_frames(j) - 1).flatten());
  at::Tensor first = x.select(2, 0).flatten(1);                                      // [Cl, 4*h*w]
  const int64_t D = first.size(1);
  // One collective: [C, F-1 + 2 D] = each clip's inside MADs (its slot's), first and last frame.
  at::Tensor packed = at::cat({inside, first, at::stack(last)}, 1).contiguous().to(comm.device());
  at::Tensor all = comm.all_gather(packed).cpu();

  FrameChanges out;
  const int64_t C = layout.clips;
  for (int64_t c = 0; c < C; ++c) {
    const auto pairs = all[c].narrow(0, 0, layout.clip_frames(c) - 1).to(at::kDouble).contiguous();
    out.inside.insert(out.inside.end(), pairs.data_ptr<double>(), pairs.data_ptr<double>() + pairs.numel());
  }
  auto first_of = [&](int64_t c) { return all[c].narrow(0, F - 1, D); };
  auto last_of = [&](int64_t c) { return all[c].narrow(0, F - 1 + D, D); };
  for (int64_t c = 0; c + 1 < C; ++c) out.boundary.push_back((last_of(c) - first_of(c + 1)).abs().mean().item<double>());
  if (loop) out.boundary.push_back((last_of(C - 1) - first_of(0)).abs().mean().item<double>());
  return out;
}

SeamReport make_seam_report(const FrameChanges& latents, const FrameChanges& pixels,
                            const std::vector<int64_t>& clip_lengths, bool loop, double threshold) {
  const auto C = static_cast<int64_t>(clip_lengths.size());
  const auto seams = static_cast<size_t>(seam_count(C, loop));
  int64_t pairs = 0;
  for (int64_t f : clip_lengths) pairs += f - 1;
  VI_CHECK(latents.boundary.size() == seams && pixels.boundary.size() == seams && pixels.boundary_psnr.size() == seams,
           "seam report: {} boundaries expected, latents have {}, pixels {}", seams, latents.boundary.size(),
           pixels.boundary.size());
  VI_CHECK(static_cast<int64_t>(latents.inside.size()) == pairs && static_cast<int64_t>(pixels.inside.size()) == pairs,
           "seam report: {} pairs inside clips expected, latents have {}, pixels {}", pairs, latents.inside.size(),
           pixels.inside.size());
  SeamReport report;
  report.threshold = threshold;
  report.inside_pairs = pairs;
  report.latent_median = median(latents.inside);
  report.pixel_median = median(pixels.inside);
  report.pixel_median_psnr = median(pixels.inside_psnr);
  int64_t next_first = 0;
  for (size_t i = 0; i < seams; ++i) {
    Seam s;
    s.loop = static_cast<int64_t>(i) == C - 1;
    s.from_clip = static_cast<int64_t>(i);
    s.to_clip = s.loop ? 0 : s.from_clip + 1;
    next_first += clip_lengths[i];
    s.frame = s.loop ? 0 : next_first;
    s.latent_mad = latents.boundary[i];
    s.pixel_mad = pixels.boundary[i];
    s.pixel_psnr = pixels.boundary_psnr[i];
    s.latent_ratio = ratio(s.latent_mad, report.latent_median);
    s.pixel_ratio = ratio(s.pixel_mad, report.pixel_median);
    s.flagged = s.latent_ratio > threshold || s.pixel_ratio > threshold;  // NaN compares false
    report.seams.push_back(s);
  }
  return report;
}

nlohmann::json seam_report_json(const SeamReport& report) {
  nlohmann::json seams = nlohmann::json::array();
  int64_t flagged = 0;
  for (const Seam& s : report.seams) {
    flagged += s.flagged ? 1 : 0;
    seams.push_back({{"from_clip", s.from_clip},
                     {"to_clip", s.to_clip},
                     {"frame", s.frame},
                     {"loop", s.loop},
                     {"latent_mad", s.latent_mad},
                     {"latent_ratio", finite_or_null(s.latent_ratio)},
                     {"pixel_mad", s.pixel_mad},
                     {"pixel_ratio", finite_or_null(s.pixel_ratio)},
                     {"pixel_psnr_db", finite_or_null(s.pixel_psnr)},
                     {"flagged", s.flagged}});
  }
  return {{"threshold", report.threshold},
          {"boundaries", report.seams.size()},
          {"flagged", flagged},
          {"inside_pairs", report.inside_pairs},
          {"median_inside",
           {{"latent_mad", finite_or_null(report.latent_median)},
            {"pixel_mad", finite_or_null(report.pixel_median)},
            {"pixel_psnr_db", finite_or_null(report.pixel_median_psnr)}}},
          {"seams", seams},
          {"seconds", report.seconds}};
}

std::string seam_summary(const SeamReport& report) {
  if (report.seams.empty()) return "seams: one clip, no boundary";
  const bool loop = report.seams.back().loop;
  std::string line = fmt::format("seams: {} {}{}", report.seams.size(),
                                 report.seams.size() == 1 ? "boundary" : "boundaries",
                                 loop ? " (with the loop seam)" : "");
  if (report.inside_pairs == 0) {
    return line + ", none flagged: every clip has one frame, so there is no change inside clips to compare with";
  }
  const Seam& worst = *std::max_element(report.seams.begin(), report.seams.end(),
                                        [](const Seam& a, const Seam& b) { return worse_ratio(a) < worse_ratio(b); });
  const auto flagged = std::count_if(report.seams.begin(), report.seams.end(), [](const Seam& s) { return s.flagged; });
  line += fmt::format(", worst {}: {} ({}), {}", seam_name(worst), ratio_phrase(worst.pixel_ratio, "pixels"),
                      psnr_phrase(worst.pixel_psnr), ratio_phrase(worst.latent_ratio, "latents", true));
  if (flagged == 0) return line + "; none flagged";
  return line + fmt::format("; {} flagged (above {}x)", flagged, report.threshold);
}

std::vector<std::string> seam_warnings(const SeamReport& report) {
  std::vector<std::string> out;
  for (const Seam& s : report.seams) {
    if (!s.flagged) continue;
    out.push_back(fmt::format("seam flagged at {}: {} (MAD {:.2f}, {}), {} (MAD {:.4f}); --seam-threshold {}",
                              seam_name(s), ratio_phrase(s.pixel_ratio, "pixels"), s.pixel_mad,
                              psnr_phrase(s.pixel_psnr), ratio_phrase(s.latent_ratio, "latents", true), s.latent_mad,
                              report.threshold));
  }
  return out;
}

}  // namespace vi::pipeline
