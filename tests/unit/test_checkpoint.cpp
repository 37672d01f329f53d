// Per-clip checkpoint files: what is written is read back exactly, the scheduler's record
// included (opaque to the checkpoint), and files of other settings or formats are refused
// naming the file and what differs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "common/test_util.h"
#include "core/safetensors.h"
#include "pipeline/checkpoint.h"
#include "video_infinity/generation_config.h"

namespace vi::pipeline {
namespace {

ClipCheckpoint sample_clip() {
  at::manual_seed(3);
  ClipCheckpoint c;
  c.clip = 5;
  c.steps_done = 12;
  c.latents = at::randn({1, 4, 3, 2, 2});
  c.generator_state = at::randint(0, 255, {16}, at::kByte);
  c.scheduler.scheduler = "sde-dpmsolver++";
  c.scheduler.counters = {{"step_index", 12}, {"lower_order_nums", 2}, {"model_outputs", 2}};
  c.scheduler.tensors = {{"model_output_1", at::randn({3, 4, 2, 2})}};
  return c;
}

TEST(Checkpoint, ClipFileRoundTripsExactly) {
  const std::string dir = test::make_temp_dir("checkpoint");
  const nlohmann::json fingerprint = {{"seed", 1}, {"steps", 30}};
  CheckpointDir ck(dir, fingerprint);
  const ClipCheckpoint written = sample_clip();
  ck.write(written);
  EXPECT_EQ(ck.complete_steps({5}), std::vector<int64_t>{12});
  EXPECT_TRUE(ck.complete_steps({5, 6}).empty());
  const ClipCheckpoint read = ck.read(12, 5);
  EXPECT_TRUE(read.latents.equal(written.latents));
  EXPECT_TRUE(read.generator_state.equal(written.generator_state));
  EXPECT_EQ(read.scheduler.scheduler, written.scheduler.scheduler);
  EXPECT_EQ(read.scheduler.counters, written.scheduler.counters);
  ASSERT_EQ(read.scheduler.tensors.size(), 1u);
  EXPECT_TRUE(read.scheduler.tensors.at("model_output_1").equal(written.scheduler.tensors.at("model_output_1")));

  // Another run's settings: every difference is named.
  CheckpointDir other(dir, {{"seed", 2}, {"steps", 30}, {"guidance", 9.0}});
  const std::string e = test::error_of([&] { other.read(12, 5); });
  EXPECT_NE(e.find("seed: checkpoint 1, this run 2"), std::string::npos) << e;
  EXPECT_NE(e.find("guidance: checkpoint (unset), this run 9.0"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

TEST(Checkpoint, AnotherFormatIsRefusedNamingBoth) {
  const std::string dir = test::make_temp_dir("checkpoint-format");
  CheckpointDir ck(dir, nlohmann::json::object());
  std::filesystem::create_directories(ck.step_dir(3));
  core::save_safetensors(ck.clip_file(3, 0), {{"latents", at::zeros({1})}},
                         {{"format", "video-infinity checkpoint 1"}, {"settings", "{}"}});
  const std::string e = test::error_of([&] { ck.read(3, 0); });
  EXPECT_NE(e.find("format 'video-infinity checkpoint 1' of another video-infinity version"), std::string::npos) << e;
  EXPECT_NE(e.find(ck.clip_file(3, 0)), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

// Each rank prunes only its own clips' older files (on node-local disks nobody else can), with
// their leftover temporaries; a step directory goes once the last rank's files are gone, and
// the newest step stays whole.
TEST(Checkpoint, EachRankPrunesItsOwnOlderClipFiles) {
  const std::string dir = test::make_temp_dir("checkpoint-prune");
  CheckpointDir ck(dir, nlohmann::json::object());
  for (int64_t step : {2, 4}) {
    for (int64_t clip : {0, 1, 2, 3}) {
      ClipCheckpoint c = sample_clip();
      c.clip = clip;
      c.steps_done = step;
      ck.write(c);
    }
  }
  const std::string stale_tmp = ck.step_dir(2) + "/.clip-00001.safetensors.tmp-123";
  test::write_file(stale_tmp, "partial");

  ck.remove_older_than(4, {0, 1});  // "rank 0" of 2, clips 0 and 1
  EXPECT_FALSE(std::filesystem::exists(ck.clip_file(2, 0)));
  EXPECT_FALSE(std::filesystem::exists(ck.clip_file(2, 1)));
  EXPECT_FALSE(std::filesystem::exists(stale_tmp));
  EXPECT_TRUE(std::filesystem::exists(ck.clip_file(2, 2)));  // rank 1's, until it prunes
  EXPECT_EQ(ck.complete_steps({0, 1, 2, 3}), std::vector<int64_t>{4});
  EXPECT_EQ(ck.complete_steps({2, 3}), (std::vector<int64_t>{2, 4}));

  ck.remove_older_than(4, {2, 3});  // "rank 1": the last files of step 2, then its directory
  EXPECT_FALSE(std::filesystem::exists(ck.step_dir(2)));
  EXPECT_EQ(ck.complete_steps({0, 1, 2, 3}), std::vector<int64_t>{4});
  for (int64_t clip : {0, 1, 2, 3}) EXPECT_TRUE(std::filesystem::exists(ck.clip_file(4, clip))) << clip;

  // A file that is no clip's keeps its directory (nothing but clip files is removed).
  ClipCheckpoint c = sample_clip();
  c.clip = 0;
  c.steps_done = 6;
  ck.write(c);
  test::write_file(ck.step_dir(4) + "/notes.txt", "mine");
  ck.remove_older_than(6, {0, 1, 2, 3});
  EXPECT_TRUE(std::filesystem::exists(ck.step_dir(4) + "/notes.txt"));
  EXPECT_FALSE(std::filesystem::exists(ck.clip_file(4, 3)));
  std::filesystem::remove_all(dir);
}

// --resume without --clips takes the layout of the checkpoints (written here on "2 ranks":
// 2 clips of 8 frames); a contradicting flag or a rank count that does not divide the clips is
// an error saying what to do.
TEST(Checkpoint, ResumeTakesTheClipLayoutOfTheCheckpoints) {
  const std::string dir = test::make_temp_dir("checkpoint-layout");
  CheckpointDir ck(dir, {{"clips", 2}, {"frames", 16}, {"frames_per_clip", 8}, {"seed", 1}});
  ClipCheckpoint c = sample_clip();
  c.clip = 1;
  c.steps_done = 4;
  ck.write(c);
  const auto layout = read_checkpoint_layout(dir);
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->clips, 2);
  EXPECT_EQ(layout->frames, 16);
  EXPECT_EQ(layout->frames_per_clip, 8);
  EXPECT_EQ(layout->file, ck.clip_file(4, 1));

  GenerationConfig base;
  base.prompts = {"x"};
  base.dual_scope.attn_padding = 2;
  base.dual_scope.conv_padding = 2;
  base.checkpoint_dir = dir;
  base.resume = true;
  auto resolved = [&](int world, const std::function<void(GenerationConfig&)>& change) {
    GenerationConfig cfg = base;
    change(cfg);
    vi::resolve_config(cfg, world);
    return cfg;
  };
  for (int world : {1, 2}) {
    const GenerationConfig cfg = resolved(world, [](auto&) {});
    EXPECT_EQ(cfg.clips, 2) << world << " ranks";
    EXPECT_EQ(cfg.frames, 16) << world << " ranks";
    EXPECT_EQ(cfg.frames_per_clip, 8) << world << " ranks";
  }
  // Flags that agree with the checkpoints are fine.
  EXPECT_EQ(resolved(1, [](auto& c) { c.clips = 2; c.frames_per_clip = 8; }).frames, 16);

  auto error = [&](int world, const std::function<void(GenerationConfig&)>& change) {
    return test::error_of([&] { resolved(world, change); });
  };
  std::string e = error(1, [](auto& c) { c.clips = 1; });
  EXPECT_NE(e.find("--resume: the checkpoints in " + dir + " were written with --clips 2 --frames 16; drop --clips 1"),
            std::string::npos) << e;
  EXPECT_NE(e.find("or give --clips 2"), std::string::npos) << e;
  e = error(2, [](auto& c) { c.frames = 24; c.clips = 4; });
  EXPECT_NE(e.find("drop --clips 4 and --frames 24"), std::string::npos) << e;
  e = error(1, [](auto& c) { c.frames_per_clip = 4; });
  EXPECT_NE(e.find("drop --frames-per-clip 4"), std::string::npos) << e;
  e = error(3, [](auto&) {});
  EXPECT_NE(e.find("2 clips cannot be shared by 3 ranks; resume on a rank count that divides 2: 1 or 2 ranks"),
            std::string::npos) << e;

  // Without --resume, or without checkpoints yet, clips are one per rank as always.
  EXPECT_EQ(resolved(3, [](auto& c) { c.resume = false; }).clips, 3);
  const std::string empty = test::make_temp_dir("checkpoint-layout-empty");
  EXPECT_FALSE(read_checkpoint_layout(empty).has_value());
  EXPECT_FALSE(read_checkpoint_layout(empty + "/absent").has_value());
  EXPECT_EQ(resolved(3, [&](auto& c) { c.checkpoint_dir = empty; }).clips, 3);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(empty);
}

}  // namespace
}  // namespace vi::pipeline
