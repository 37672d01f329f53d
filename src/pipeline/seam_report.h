// The seam report: how much the video changes across each clip boundary (clip c's last frame
// against clip c+1's first; with --loop also the last clip's last frame against the first
// clip's first, the loop seam) compared with the typical change between adjacent frames inside
// clips, in latent space and in pixels. A boundary is flagged when its change is more than
// --seam-threshold times the median change inside clips, in latents or in pixels.
//
// Both sides ride along work the pipeline does anyway: the latent side is one all-gather after
// denoising (each rank measures its own clips), the pixel side is fed the decoded clips as they
// stream to the writer on rank 0 and keeps only the previous frame (and the first, for the loop
// seam). No second decode.
//
// Units: MAD = mean absolute difference per element (pixels on the 0..255 scale, latents in
// latent units); PSNR in dB with peak 255, +infinity for identical frames. A ratio is boundary
// MAD / median inside MAD: 1 when both are 0 (a still video without a jump), +infinity when
// only the median is 0, NaN when there is no pair inside any clip (every clip one frame: nothing
// to compare with, never flagged). The JSON writes infinities and NaN as null.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/clip_parallel.h"
#include "video_infinity/communicator.h"

namespace vi::pipeline {

// The changes between adjacent frames of one video, in video order.
struct FrameChanges {
  std::vector<double> inside;         // MAD of every adjacent pair inside a clip
  std::vector<double> boundary;       // MAD per boundary: clip c -> c+1, then the loop seam
  std::vector<double> inside_psnr;    // pixels only: PSNR of the same pairs (dB)
  std::vector<double> boundary_psnr;
};

// Boundaries of a video of clips `clips` (C - 1, plus the loop seam with `loop`: C).
int64_t seam_count(int64_t clips, bool loop);

struct PixelChange {
  double mad = 0;   // 0..255
  double psnr = 0;  // dB, peak 255; +infinity when identical
};
// Two uint8 frames of `bytes` bytes each.
PixelChange pixel_change(const uint8_t* a, const uint8_t* b, int64_t bytes);

// Rank 0's pixel side: fed every decoded clip in video order, as it goes to the writer.
class PixelSeamMeter {
 public:
  // `clip_lengths`: each clip's frame count, in video order.
  PixelSeamMeter(std::vector<int64_t> clip_lengths, bool loop);
  // uint8 [F, H, W, 3] on the CPU: the next clip (F must be its length).
  void add_clip(const at::Tensor& frames);
  // Complete once every clip was added (checked).
  const FrameChanges& changes() const;
  double seconds() const { return seconds_; }

 private:
  std::vector<int64_t> lengths_;
  bool loop_;
  size_t clips_added_ = 0;
  std::vector<int64_t> frame_shape_;       // [H, W, 3] of the first clip
  std::vector<uint8_t> first_, previous_;  // the video's first frame, the last frame added
  FrameChanges changes_;
  double seconds_ = 0;
};

// The latent side, collective: `latents` [Cl, 4, F, h, w] are this rank's clips in `layout`'s
// slots (padding after each clip's real frames is ignored). One all-gather of each clip's
// inside MADs and its first and last frame; every rank returns the whole video's changes.
FrameChanges latent_changes(const at::Tensor& latents, const parallel::ClipLayout& layout, bool loop,
                            parallel::Communicator& comm);

struct Seam {
  int64_t from_clip = 0, to_clip = 0;
  int64_t frame = 0;     // the first frame after the boundary (0 for the loop seam)
  bool loop = false;     // the loop seam (last clip -> first)
  double latent_mad = 0, latent_ratio = 0;
  double pixel_mad = 0, pixel_ratio = 0, pixel_psnr = 0;
  bool flagged = false;  // a ratio above the threshold
};

struct SeamReport {
  double threshold = 0;
  int64_t inside_pairs = 0;   // adjacent frame pairs inside clips (the medians' sample)
  double latent_median = 0, pixel_median = 0, pixel_median_psnr = 0;  // NaN without inside pairs
  std::vector<Seam> seams;
  double seconds = 0;         // what measuring cost (both sides, rank 0)
};

// Combines both sides (the same video: `clip_lengths` in video order).
SeamReport make_seam_report(const FrameChanges& latents, const FrameChanges& pixels,
                            const std::vector<int64_t>& clip_lengths, bool loop, double threshold);
// The sidecar's "seam_report".
nlohmann::json seam_report_json(const SeamReport& report);
// One line: the number of boundaries, the worst one (largest ratio) and how many are flagged.
std::string seam_summary(const SeamReport& report);
// One line per flagged boundary.
std::vector<std::string> seam_warnings(const SeamReport& report);

}  // namespace vi::pipeline
