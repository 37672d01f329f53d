// Prompt travel (--prompt-blend) end to end on the tiny reference model, under mpiexec -n 1..4:
// - N = 0 with frame ranges on the clip boundaries gives the per-clip prompts' latents (the
//   reference has no multi-prompt goldens; the per-clip path is the one its goldens check), and
//   the single-prompt golden run still matches its golden;
// - N > 0 gives the same video on any number of ranks (vs a single-process run), also through
//   unequal clips, --cfg-serial and --frame-chunk, and differs from N = 0.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "common/pipeline_run.h"
#include "common/test_util.h"
#include "parallel/clip_parallel.h"
#include "pipeline/text_to_video.h"

using namespace vi;

namespace {

const char* const kFox = "A red fox running through a snowy forest, golden hour.";
const char* const kWolf = "A grey wolf howling at the moon on a rocky ridge.";

class PromptTravelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    parallel::init_launch(nullptr, nullptr);
    comm_ = vi::test::world_communicator();
  }

  using Run = test::PipelineRun;

  // The golden run's clips (4 steps of DDIM, 64x64, clips of 8 frames) with frame ranges
  // starting at `starts`: the golden prompt, a fox, a wolf.
  GenerationConfig ranged(int64_t clips, const std::vector<int64_t>& starts, int64_t blend) const {
    GenerationConfig c = test::golden_generation_config(clips, "ddim", 4);
    const std::vector<std::string> texts = {c.prompts.at(0), kFox, kWolf};
    c.prompts.clear();
    for (size_t i = 0; i < starts.size(); ++i) {
      c.frame_prompts.push_back({starts[i], i + 1 < starts.size() ? starts[i + 1] - 1 : -1, texts.at(i)});
    }
    c.prompt_blend = blend;
    return c;
  }

  std::unique_ptr<parallel::Communicator> comm_;
};

TEST_F(PromptTravelTest, HardSwitchOnClipBoundariesEqualsPerClipPrompts) {
  // Ranges starting at frames 0, 8, 16: clips 0, 1 and 2 (and 3) take the three prompts either way.
  const int64_t clips = comm_->world_size() == 3 ? 3 : 4;
  const Run per_clip = test::run_pipeline(ranged(clips, {0, 8, 16}, -1), *comm_);
  const Run per_frame = test::run_pipeline(ranged(clips, {0, 8, 16}, 0), *comm_);
  ASSERT_EQ(per_frame.per_step.size(), per_clip.per_step.size());
  double worst = 0;
  for (size_t s = 0; s < per_clip.per_step.size(); ++s) {
    worst = std::max(worst, test::rel_error(per_frame.per_step[s], per_clip.per_step[s]));
  }
  std::printf("rank %d: --prompt-blend 0 vs per-clip prompts, %lld clips: worst step rel %.3g (tolerance 1e-5)\n",
              comm_->rank(), static_cast<long long>(clips), worst);
  EXPECT_LT(worst, 1e-5);
}

TEST_F(PromptTravelTest, HardSwitchMatchesTheSinglePromptGolden) {
  // The reference's golden run vi_ddim_ws2 (one prompt, 2 clips, 30 DDIM steps) with per-frame
  // text states: every stored step within the goldens' tolerance 1e-4.
  if (2 % comm_->world_size() != 0) GTEST_SKIP() << "2 clips need 1 or 2 ranks";
  GenerationConfig c = test::golden_generation_config(2, "ddim", 30);
  c.prompt_blend = 0;
  const Run r = test::run_pipeline(c, *comm_);
  const std::string dir = test::golden_dir() + "/vi_ddim_ws2";
  for (int64_t j = 0; j < r.layout.local_clips; ++j) {
    const int64_t clip = r.layout.first_clip + j;
    const std::string file = dir + "/rank" + std::to_string(clip) + ".safetensors";
    const at::Tensor ref_steps = test::golden(file, "latents_per_step");  // [S, F, 4, h, w]
    ASSERT_EQ(static_cast<int64_t>(r.per_step.size()), ref_steps.size(0));
    double worst = 0;
    for (size_t s = 0; s < r.per_step.size(); ++s) {
      worst = std::max(worst, test::rel_error(r.per_step[s][j].permute({1, 0, 2, 3}),
                                              ref_steps[static_cast<int64_t>(s)]));
    }
    const double final_err = test::rel_error(r.final_latents.narrow(0, j, 1), test::golden(file, "final_latents"));
    std::printf("--prompt-blend 0, vi_ddim_ws2 clip %lld: worst step rel %.3g, final rel %.3g (tolerance 1e-4)\n",
                static_cast<long long>(clip), worst, final_err);
    EXPECT_LT(worst, 1e-4);
    EXPECT_LT(final_err, 1e-4);
  }
}

TEST_F(PromptTravelTest, BlendSameVideoOnAnyNumberOfRanks) {
  // Ranges starting inside clips (frames 0, 11, 21), blended over 6 frames: frames of every
  // clip but the first mix two prompts. Each rank's clips equal a single-process run's.
  const int64_t clips = comm_->world_size() == 3 ? 3 : 4;
  auto local = parallel::make_local_communicator();
  const Run whole = test::run_pipeline(ranged(clips, {0, 11, 21}, 6), *local);
  const Run mine = test::run_pipeline(ranged(clips, {0, 11, 21}, 6), *comm_);
  const Run hard = test::run_pipeline(ranged(clips, {0, 11, 21}, 0), *comm_);
  const at::Tensor expected = whole.final_latents.narrow(0, mine.layout.first_clip, mine.layout.local_clips);
  const double err = test::rel_error(mine.final_latents, expected);
  const double vs_hard = test::rel_error(mine.final_latents, hard.final_latents);
  std::printf("rank %d: --prompt-blend 6 vs single process: rel %.3g (tolerance 1e-5); vs --prompt-blend 0: rel %.3g\n",
              comm_->rank(), err, vs_hard);
  EXPECT_LT(err, 1e-5);
  EXPECT_TRUE(mine.final_latents.isfinite().all().item<bool>());
  if (mine.layout.first_clip + mine.layout.local_clips > 1) {
    EXPECT_GT(vs_hard, 1e-3) << "the blend changes the clips where prompts change";
  }
}

TEST_F(PromptTravelTest, BlendThroughUnequalClipsSerialGuidanceAndFrameChunks) {
  // Clips of 8, 8, 7, 7 frames (8, 7, 7 on 3 ranks): the padding frames get their clip's last
  // frame's text; the serial guidance branches (Cl * F text rows each) and frame chunks of 3
  // (text rows narrowed with the frames) give the batched result.
  const int64_t clips = comm_->world_size() == 3 ? 3 : 4;
  GenerationConfig c = ranged(clips, {0, 5, 13}, 5);
  c.frames = clips * c.frames_per_clip - 2;
  c.frames_per_clip = 0;
  const Run batched = test::run_pipeline(c, *comm_);
  c.cfg_serial = true;
  c.frame_chunk = 3;
  const Run serial = test::run_pipeline(c, *comm_);
  ASSERT_FALSE(serial.layout.uniform());
  const double err = test::rel_error(serial.final_latents, batched.final_latents);
  std::printf("rank %d: --prompt-blend 5, %lld frames: --cfg-serial --frame-chunk 3 vs batched: rel %.3g "
              "(tolerance 1e-5)\n", comm_->rank(), static_cast<long long>(c.frames), err);
  EXPECT_LT(err, 1e-5);
  EXPECT_TRUE(serial.final_latents.isfinite().all().item<bool>());
  for (int64_t j = 0; j < serial.layout.local_clips; ++j) {
    const int64_t n = serial.layout.local_frames(j);
    EXPECT_EQ(serial.final_latents[j].narrow(1, n, serial.layout.frames - n).abs().sum().item<double>(), 0.0)
        << "a shorter clip's padding stays zero";
  }
}

}  // namespace
