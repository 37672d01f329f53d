// Video-Infinity end to end on the tiny reference model, under mpiexec -n 1..4:
// - parity with the reference's goldens (plain diffusers, 1 and 2 ranks with DDIM, 2 ranks with
//   its stochastic sampler replayed from the stored noise): every stored step within 1e-4;
// - the same clips give the same video on any number of ranks (vs a single-process run);
// - 3 ranks work.
// Golden runs with C clips are run wherever the world size divides C (clips decoupled from
// ranks), and skipped on every rank otherwise.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "common/pipeline_run.h"
#include "common/test_util.h"
#include "parallel/clip_parallel.h"
#include "pipeline/text_to_video.h"

using namespace vi;

namespace {

class VideoInfinityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    parallel::init_launch(nullptr, nullptr);
    comm_ = vi::test::world_communicator();
  }

  using Run = test::PipelineRun;

  // Compares every stored step and the final latents of each local clip with the golden file of
  // the rank that ran that clip in the reference.
  void expect_golden(const Run& r, const std::string& dir) {
    for (int64_t j = 0; j < r.layout.local_clips; ++j) {
      const int64_t clip = r.layout.first_clip + j;
      const std::string file = dir + "/rank" + std::to_string(clip) + ".safetensors";
      at::Tensor ref_steps = test::golden(file, "latents_per_step");  // [S, F, 4, h, w]
      ASSERT_EQ(static_cast<int64_t>(r.per_step.size()), ref_steps.size(0));
      double worst = 0;
      for (size_t s = 0; s < r.per_step.size(); ++s) {
        at::Tensor mine = r.per_step[s][j].permute({1, 0, 2, 3});  // [F, 4, h, w]
        worst = std::max(worst, test::rel_error(mine, ref_steps[static_cast<int64_t>(s)]));
      }
      double final_err = test::rel_error(r.final_latents.narrow(0, j, 1), test::golden(file, "final_latents"));
      std::printf("%s clip %lld: worst step rel %.3g, final rel %.3g (tolerance 1e-4)\n", dir.c_str(),
                  static_cast<long long>(clip), worst, final_err);
      EXPECT_LT(worst, 1e-4) << dir << " clip " << clip;
      EXPECT_LT(final_err, 1e-4) << dir << " clip " << clip;
    }
  }

  std::unique_ptr<parallel::Communicator> comm_;
};

TEST_F(VideoInfinityTest, PlainDiffusersOneClip) {
  if (comm_->world_size() != 1) GTEST_SKIP() << "one clip runs on one rank";
  GenerationConfig c = test::golden_generation_config(1, "ddim", 30);
  c.dual_scope.enabled = false;
  Run r = test::run_pipeline(c, *comm_);
  expect_golden(r, test::golden_dir() + "/plain_ddim_ws1");
}

TEST_F(VideoInfinityTest, DualScopeOneClip) {
  if (comm_->world_size() != 1) GTEST_SKIP() << "one clip runs on one rank";
  Run r = test::run_pipeline(test::golden_generation_config(1, "ddim", 30), *comm_);
  expect_golden(r, test::golden_dir() + "/vi_ddim_ws1");
}

TEST_F(VideoInfinityTest, DualScopeTwoClipsDdimWithFrames) {
  if (2 % comm_->world_size() != 0) GTEST_SKIP() << "2 clips need 1 or 2 ranks";
  Run r = test::run_pipeline(test::golden_generation_config(2, "ddim", 30), *comm_, {}, /*decode=*/true);
  expect_golden(r, test::golden_dir() + "/vi_ddim_ws2");
  at::Tensor all = test::golden(test::golden_dir() + "/vi_ddim_ws2/rank0.safetensors", "frames_uint8_all");
  for (int64_t j = 0; j < r.layout.local_clips; ++j) {
    const int64_t clip = r.layout.first_clip + j;
    at::Tensor ref = all.narrow(0, clip * 8, 8).to(at::kInt);
    at::Tensor diff = (r.frames[static_cast<size_t>(j)].to(at::kInt) - ref).abs();
    const double off = diff.gt(0).sum().item<double>() / static_cast<double>(diff.numel());
    std::printf("clip %lld frames: max |diff| %d, %.4f %% of values differ (tolerance 1 on 0.1 %%)\n",
                static_cast<long long>(clip), diff.max().item<int>(), 100 * off);
    EXPECT_LE(diff.max().item<int>(), 1);
    EXPECT_LE(off, 0.001);
  }
  if (comm_->world_size() > 1) {
    std::printf("rank %d: %llu bytes sent in one UNet call\n", comm_->rank(),
                static_cast<unsigned long long>(r.times.bytes_per_unet_call));
    EXPECT_GT(r.times.bytes_per_unet_call, 0u);
  }
}

TEST_F(VideoInfinityTest, ReferenceStochasticSamplerReplayed) {
  if (2 % comm_->world_size() != 0) GTEST_SKIP() << "2 clips need 1 or 2 ranks";
  const std::string dir = test::golden_dir() + "/vi_official_sde_ws2";
  std::vector<at::Tensor> noise;
  for (int r = 0; r < 2; ++r) noise.push_back(test::golden(dir + "/rank" + std::to_string(r) + ".safetensors", "sde_noise_per_step"));
  pipeline::PipelineOptions o;
  o.noise_source = [&](int64_t step, int64_t clip) { return noise[static_cast<size_t>(clip)][step]; };
  Run r = test::run_pipeline(test::golden_generation_config(2, "dpmpp-2m-sde", 10), *comm_, o);
  expect_golden(r, dir);
}

TEST_F(VideoInfinityTest, SameVideoOnAnyNumberOfRanks) {
  // 4 clips on 1, 2 or 4 ranks (12 on 3): each rank's clips equal a single-process run's.
  const int64_t clips = comm_->world_size() == 3 ? 3 : 4;
  GenerationConfig c = test::golden_generation_config(clips, "ddim", 4);
  auto local = parallel::make_local_communicator();
  Run whole = test::run_pipeline(c, *local);
  Run mine = test::run_pipeline(c, *comm_);
  double err = test::rel_error(mine.final_latents, whole.final_latents.narrow(0, mine.layout.first_clip, mine.layout.local_clips));
  std::printf("rank %d: %lld clips vs single process: rel %.3g (tolerance 1e-5)\n", comm_->rank(),
              static_cast<long long>(clips), err);
  EXPECT_LT(err, 1e-5);
}

TEST_F(VideoInfinityTest, UnequalClipsSameVideoOnAnyNumberOfRanks) {
  // A frame count the clips do not divide: 4 clips of 8, 8, 7, 7 frames (3 of 8, 7, 7 on 3
  // ranks), each rank's clips equal a single-process run's of the same layout, with the stochastic
  // sampler (its noise drawn per clip for the clip's own frames).
  const int64_t clips = comm_->world_size() == 3 ? 3 : 4;
  GenerationConfig c = test::golden_generation_config(clips, "dpmpp-2m-sde", 4);
  c.frames = clips * c.frames_per_clip - 2;
  c.frames_per_clip = 0;
  auto local = parallel::make_local_communicator();
  Run whole = test::run_pipeline(c, *local);
  Run mine = test::run_pipeline(c, *comm_);
  ASSERT_FALSE(mine.layout.uniform());
  double err = test::rel_error(mine.final_latents, whole.final_latents.narrow(0, mine.layout.first_clip, mine.layout.local_clips));
  std::printf("rank %d: %lld frames in %lld clips vs single process: rel %.3g (tolerance 1e-5)\n", comm_->rank(),
              static_cast<long long>(c.frames), static_cast<long long>(clips), err);
  EXPECT_LT(err, 1e-5);
  EXPECT_TRUE(mine.final_latents.isfinite().all().item<bool>());
  for (int64_t j = 0; j < mine.layout.local_clips; ++j) {
    const int64_t n = mine.layout.local_frames(j);
    EXPECT_EQ(mine.final_latents[j].narrow(1, n, mine.layout.frames - n).abs().sum().item<double>(), 0.0)
        << "a shorter clip's padding stays zero";
  }
}

TEST_F(VideoInfinityTest, SerialGuidanceBranchesMatchTheBatch) {
  // --cfg-serial: the unconditional and conditional halves as two UNet calls of the local clips.
  const int64_t clips = comm_->world_size() == 3 ? 3 : 4;
  GenerationConfig c = test::golden_generation_config(clips, "ddim", 4);
  Run batched = test::run_pipeline(c, *comm_);
  c.cfg_serial = true;
  Run serial = test::run_pipeline(c, *comm_);
  const double err = test::rel_error(serial.final_latents, batched.final_latents);
  std::printf("rank %d: serial vs batched guidance branches: rel %.3g (tolerance 1e-5)\n", comm_->rank(), err);
  EXPECT_LT(err, 1e-5);
  EXPECT_EQ(serial.times.bytes_per_unet_call, batched.times.bytes_per_unet_call);
}

}  // namespace
