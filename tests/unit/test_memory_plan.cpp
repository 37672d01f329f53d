// make_plan as a pure function of the settings, the reference tiny model's configs and weight
// headers, world size, dtype and device: the layout per rank, how each memory option moves the
// estimate, the exchanges, and the warnings. (tests/e2e/test_plan.cpp holds the estimate against
// measured peak RSS.)
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "pipeline/plan.h"
#include "video_infinity/generation_config.h"

using vi::GenerationConfig;
using namespace vi::pipeline;

namespace {

const ModelShapes& tiny() {
  static const ModelShapes m = read_model_shapes(vi::test::tiny_model_dir(), vi::test::tiny_unet_dir());
  return m;
}

GenerationConfig config(int64_t frames, int world, const std::string& extra_clips = "") {
  GenerationConfig c;
  c.model_dir = vi::test::tiny_model_dir();
  c.prompts = {"a fox"};
  c.frames = frames;
  c.height = 128;
  c.width = 128;
  if (!extra_clips.empty()) c.clips = std::stoll(extra_clips);
  vi::resolve_config(c, world);
  return c;
}

double stage(const Plan& p, const std::string& name) {
  for (const auto& s : p.stages) {
    if (s.stage == name) return s.bytes;
  }
  ADD_FAILURE() << "no stage " << name;
  return 0;
}

TEST(MemoryPlan, LayoutPerRank) {
  const Plan p = make_plan(config(64, 2, "4"), tiny(), 2, c10::kFloat, c10::kCPU, 0);
  ASSERT_EQ(p.ranks.size(), 2u);
  EXPECT_EQ(p.ranks[1].first_clip, 2);
  EXPECT_EQ(p.ranks[1].frames, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(p.ranks[1].first_frame, 32);
  EXPECT_EQ(p.longest_clip, 16);
  EXPECT_EQ(p.local_clips, 2);
  EXPECT_EQ(p.unet_batch, 4);
  EXPECT_EQ(p.latent_height, 16);
  EXPECT_GT(p.unet_bytes, 0);
  EXPECT_EQ(p.peak_stage, "denoise");
  EXPECT_TRUE(p.warnings.empty());
}

TEST(MemoryPlan, MemoryOptionsLowerTheEstimate) {
  const GenerationConfig base = config(64, 1);
  const double plain = stage(make_plan(base, tiny(), 1, c10::kFloat, c10::kCPU, 0), "denoise");
  GenerationConfig c = base;
  c.frame_chunk = 8;
  EXPECT_LT(stage(make_plan(c, tiny(), 1, c10::kFloat, c10::kCPU, 0), "denoise"), plain);
  c = base;
  c.cfg_serial = true;
  const Plan serial = make_plan(c, tiny(), 1, c10::kFloat, c10::kCPU, 0);
  EXPECT_EQ(serial.unet_batch, 1);
  EXPECT_LT(stage(serial, "denoise"), plain);
  c = base;
  c.vae_chunk = 1;
  EXPECT_LT(stage(make_plan(c, tiny(), 1, c10::kFloat, c10::kCPU, 0), "decode"),
            stage(make_plan(base, tiny(), 1, c10::kFloat, c10::kCPU, 0), "decode"));
  // bf16 halves the weights and activations, not the baseline.
  const Plan half = make_plan(base, tiny(), 1, c10::kBFloat16, c10::kCPU, 0);
  EXPECT_NEAR(half.unet_bytes * 2, make_plan(base, tiny(), 1, c10::kFloat, c10::kCPU, 0).unet_bytes, 1e3);
  // Longer clips, more memory.
  EXPECT_GT(stage(make_plan(config(128, 1), tiny(), 1, c10::kFloat, c10::kCPU, 0), "denoise"), plain);
}

TEST(MemoryPlan, ExchangesOnlyBetweenRanks) {
  const Plan one = make_plan(config(32, 1, "2"), tiny(), 1, c10::kFloat, c10::kCPU, 0);
  EXPECT_EQ(one.halo_bytes_per_step, 0);
  EXPECT_EQ(one.gather_bytes_per_step, 0);
  const Plan two = make_plan(config(32, 2), tiny(), 2, c10::kFloat, c10::kCPU, 0);
  EXPECT_GT(two.halo_bytes_per_step, 0);
  EXPECT_GT(two.gather_bytes_per_step, 0);
  // A middle rank sends halos both ways.
  const Plan four = make_plan(config(64, 4), tiny(), 4, c10::kFloat, c10::kCPU, 0);
  EXPECT_NEAR(four.halo_bytes_per_step, 2 * two.halo_bytes_per_step, 1);
  GenerationConfig alone = config(32, 2);
  alone.dual_scope.enabled = false;
  EXPECT_EQ(make_plan(alone, tiny(), 2, c10::kFloat, c10::kCPU, 0).halo_bytes_per_step, 0);
}

TEST(MemoryPlan, WarningsNameTheFix) {
  const Plan long_clips = make_plan(config(80, 1), tiny(), 1, c10::kFloat, c10::kCPU, 0);
  ASSERT_EQ(long_clips.warnings.size(), 1u);
  EXPECT_NE(long_clips.warnings[0].find("5x the 16 frames"), std::string::npos) << long_clips.warnings[0];
  const Plan tight = make_plan(config(64, 1), tiny(), 1, c10::kFloat, c10::kCPU, 600e6, "test");
  ASSERT_FALSE(tight.warnings.empty());
  const std::string& w = tight.warnings.back();
  EXPECT_NE(w.find("exceeds the 600.0 MB available (test)"), std::string::npos) << w;
  EXPECT_NE(w.find("--frame-chunk 8 --cfg-serial"), std::string::npos) << w;
  EXPECT_NE(w.find("ranks (clips of"), std::string::npos) << w;
}

}  // namespace
