// The seam report's latent side under mpiexec -n 1..4: each rank holds its clips of a latent
// video that every rank builds whole from one seed (noise drifting slowly from frame to frame,
// in clips of unequal length), and the distributed changes must equal a direct computation on
// the whole video, whatever the number of ranks; a jump planted at one clip's first frame is
// flagged at that boundary only.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "pipeline/seam_report.h"

using namespace vi::parallel;
using namespace vi::pipeline;

namespace {

constexpr int64_t kChannels = 4, kh = 6, kw = 8;

class SeamReportMpiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    init_launch(nullptr, nullptr);
    comm_ = vi::test::world_communicator();
  }
  std::unique_ptr<Communicator> comm_;
};

// Clip lengths for `clips` clips of 5 frames, the last one a frame short.
std::vector<int64_t> lengths_of(int64_t clips) {
  std::vector<int64_t> lengths(static_cast<size_t>(clips), 5);
  lengths.back() = 4;
  return lengths;
}

// The whole video [4, frames, h, w]: a random start drifting by small steps (0.05 per frame),
// plus `jump` from frame `jump_at` on. The same on every rank (fixed seed).
at::Tensor drifting_video(int64_t frames, int64_t jump_at, double jump) {
  at::manual_seed(11);
  at::Tensor start = at::randn({kChannels, 1, kh, kw});
  at::Tensor steps = 0.05 * at::randn({kChannels, frames, kh, kw});
  steps.select(1, 0).zero_();
  at::Tensor video = start + steps.cumsum(1);
  if (jump_at < frames) video.narrow(1, jump_at, frames - jump_at).add_(jump);
  return video;
}

// The video in clip slots [C, 4, longest, h, w]; padding frames hold 1000 (must be ignored).
at::Tensor in_slots(const at::Tensor& video, const std::vector<int64_t>& lengths) {
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  at::Tensor slots = at::full({static_cast<int64_t>(lengths.size()), kChannels, longest, kh, kw}, 1000.0);
  int64_t first = 0;
  for (size_t c = 0; c < lengths.size(); ++c) {
    slots[static_cast<int64_t>(c)].narrow(1, 0, lengths[c]).copy_(video.narrow(1, first, lengths[c]));
    first += lengths[c];
  }
  return slots;
}

double mad(const at::Tensor& video, int64_t a, int64_t b) {
  return (video.select(1, a).to(at::kDouble) - video.select(1, b).to(at::kDouble)).abs().mean().item<double>();
}

// Pixels that change alike everywhere (ratio 1 at every boundary): the latent side decides.
FrameChanges flat_pixels(int64_t pairs, int64_t seams) {
  FrameChanges p;
  p.inside.assign(static_cast<size_t>(pairs), 2.0);
  p.inside_psnr.assign(static_cast<size_t>(pairs), 40.0);
  p.boundary.assign(static_cast<size_t>(seams), 2.0);
  p.boundary_psnr.assign(static_cast<size_t>(seams), 40.0);
  return p;
}

}  // namespace

TEST_F(SeamReportMpiTest, DistributedLatentChangesEqualTheWholeVideos) {
  for (int64_t per_rank : {1, 2}) {
    for (bool loop : {false, true}) {
      const int64_t C = per_rank * comm_->world_size();
      const auto lengths = lengths_of(C);
      const int64_t frames = 5 * C - 1;
      at::Tensor video = drifting_video(frames, frames, 0.0);
      at::Tensor slots = in_slots(video, lengths);
      ClipLayout layout = ClipLayout::make(lengths, *comm_);
      FrameChanges got =
          latent_changes(slots.narrow(0, layout.first_clip, layout.local_clips), layout, loop, *comm_);

      // Truth: every adjacent pair of the whole video, split into inside pairs and boundaries.
      std::vector<double> inside, boundary;
      int64_t first = 0;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t L = lengths[static_cast<size_t>(c)];
        for (int64_t f = first; f + 1 < first + L; ++f) inside.push_back(mad(video, f, f + 1));
        if (c + 1 < C) boundary.push_back(mad(video, first + L - 1, first + L));
        first += L;
      }
      if (loop) boundary.push_back(mad(video, frames - 1, 0));
      // fp32 means of 192 values against fp64: 1e-6 relative.
      EXPECT_EQ(got.inside.size(), inside.size()) << "per rank " << per_rank;
      EXPECT_EQ(got.boundary.size(), boundary.size()) << "per rank " << per_rank;
      for (size_t i = 0; i < std::min(got.inside.size(), inside.size()); ++i) {
        EXPECT_NEAR(got.inside[i], inside[i], 1e-6 * inside[i]) << "inside pair " << i << " per rank " << per_rank;
      }
      for (size_t i = 0; i < std::min(got.boundary.size(), boundary.size()); ++i) {
        EXPECT_NEAR(got.boundary[i], boundary[i], 1e-6 * boundary[i]) << "boundary " << i << " loop " << loop;
      }
      // And equal to the single-process computation of the same function.
      auto local = make_local_communicator();
      FrameChanges whole = latent_changes(slots, ClipLayout::make(lengths, *local), loop, *local);
      EXPECT_EQ(got.inside.size(), whole.inside.size());
      for (size_t i = 0; i < std::min(got.inside.size(), whole.inside.size()); ++i) {
        EXPECT_NEAR(got.inside[i], whole.inside[i], 1e-7 * whole.inside[i]) << i;
      }
      EXPECT_EQ(got.boundary, whole.boundary);
    }
  }
}

TEST_F(SeamReportMpiTest, PlantedLatentJumpIsFlaggedAtItsBoundary) {
  const int64_t C = 2 * comm_->world_size();
  const auto lengths = lengths_of(C);
  const int64_t frames = 5 * C - 1, jump_clip = C / 2, jump_at = 5 * jump_clip;
  // The drift moves each value by 0.05 x sqrt(2/pi) = 0.04 a frame on average; the jump by 0.5.
  at::Tensor video = drifting_video(frames, jump_at, 0.5);
  at::Tensor slots = in_slots(video, lengths);
  ClipLayout layout = ClipLayout::make(lengths, *comm_);
  FrameChanges latents = latent_changes(slots.narrow(0, layout.first_clip, layout.local_clips), layout, false, *comm_);
  const int64_t pairs = frames - C;
  SeamReport r = make_seam_report(latents, flat_pixels(pairs, C - 1), lengths, false, 3.0);
  ASSERT_EQ(r.seams.size(), static_cast<size_t>(C - 1));
  EXPECT_NEAR(r.latent_median, 0.05 * std::sqrt(2 / 3.14159265358979), 0.005);
  for (const Seam& s : r.seams) {
    const bool planted = s.to_clip == jump_clip;
    EXPECT_EQ(s.flagged, planted) << "clip " << s.from_clip << "->" << s.to_clip << " ratio " << s.latent_ratio;
    EXPECT_EQ(s.pixel_ratio, 1.0);
    if (planted) {
      EXPECT_EQ(s.frame, jump_at);
      EXPECT_GT(s.latent_ratio, 8.0);
      EXPECT_NEAR(s.latent_mad, mad(video, jump_at - 1, jump_at), 1e-6);
    } else {
      EXPECT_LT(s.latent_ratio, 2.0);
    }
  }
  EXPECT_EQ(seam_warnings(r).size(), 1u);
}
