// --loop under mpiexec -n 1..4, on the tiny reference model: the clips form a ring, so no clip is
// special. Rotating the initial noise and the prompts by k clips rotates the video by k clips;
// without --loop the video's two ends (zero halos) make the first and last clips special and the
// same rotation does not commute.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "common/test_util.h"
#include "pipeline/text_to_video.h"

using namespace vi;

namespace {

class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    parallel::init_launch(nullptr, nullptr);
    comm_ = vi::test::world_communicator();
  }

  // Every clip's final latents [C, 4, F, h, w] (all-gathered) of a run whose clip c starts from
  // noise[(c + shift) mod C] and takes prompt (c + shift) mod C.
  at::Tensor run_shifted(GenerationConfig c, const at::Tensor& noise, int64_t shift) {
    const auto C = static_cast<int64_t>(c.prompts.size());
    std::rotate(c.prompts.begin(), c.prompts.begin() + shift % C, c.prompts.end());
    resolve_config(c, comm_->world_size());
    pipeline::TextToVideoPipeline p(c, *comm_, c10::kCPU, at::kFloat);
    p.load();
    const at::Tensor text = p.encode_text();
    const at::Tensor shifted = at::roll(noise, -shift, 0);
    const at::Tensor mine = shifted.narrow(0, p.layout().first_clip, p.layout().local_clips).contiguous();
    return comm_->all_gather(p.denoise(mine, text));
  }

  std::unique_ptr<parallel::Communicator> comm_;
};

TEST_F(LoopTest, RotatingNoiseAndPromptsByKClipsRotatesTheVideo) {
  // 4 clips of 8 frames (3 on 3 ranks), one prompt each (clip c takes prompt c), DDIM (no noise
  // drawn while sampling), fp32.
  const int64_t clips = comm_->world_size() == 3 ? 3 : 4;
  GenerationConfig c = test::golden_generation_config(clips, "ddim", 2);
  c.prompts = {"a red fox running in snow", "a blue whale under the sea", "a green frog on a leaf",
               "a yellow bird in the sky"};
  c.prompts.resize(static_cast<size_t>(clips));
  at::manual_seed(11);
  const at::Tensor noise = at::randn({clips, 4, c.frames_per_clip, c.height / 8, c.width / 8});  // same on every rank

  c.dual_scope.loop = true;
  const at::Tensor base = run_shifted(c, noise, 0);
  // By one clip: clip 0 moves to the end of the video, and on 2-4 ranks across ranks.
  const at::Tensor rotated = run_shifted(c, noise, 1);
  const double err = test::rel_error(rotated, at::roll(base, -1, 0));
  std::printf("rank %d, --loop, %lld clips rotated by one: rel %.3g from the rotated video (tolerance 1e-5)\n",
              comm_->rank(), static_cast<long long>(clips), err);
  EXPECT_LT(err, 1e-5);
  EXPECT_TRUE(base.isfinite().all().item<bool>());

  // Without --loop the ends are special: the same rotation gives another video (the check above
  // can fail), and the loop changed the result.
  c.dual_scope.loop = false;
  const at::Tensor line = run_shifted(c, noise, 0);
  const double line_err = test::rel_error(run_shifted(c, noise, 1), at::roll(line, -1, 0));
  const double loop_vs_line = test::rel_error(base, line);
  std::printf("rank %d, no --loop: rel %.3g after rotation; --loop vs no --loop: rel %.3g\n", comm_->rank(), line_err,
              loop_vs_line);
  EXPECT_GT(line_err, 1e-3);
  EXPECT_GT(loop_vs_line, 1e-3);
}

TEST_F(LoopTest, NoDualScopeRefusesALoop) {
  GenerationConfig c = test::golden_generation_config(comm_->world_size(), "ddim", 1);
  c.dual_scope.loop = true;
  c.dual_scope.enabled = false;
  EXPECT_NE(test::error_of([&] { resolve_config(c, comm_->world_size()); })
                .find("--loop needs the clips to see each other: it cannot run with --no-dual-scope"),
            std::string::npos);
}

}  // namespace
