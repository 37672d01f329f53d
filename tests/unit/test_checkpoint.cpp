// Per-clip checkpoint files: what is written is read back exactly, the scheduler's record
// included (opaque to the checkpoint), and files of other settings or formats are refused
// naming the file and what differs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/test_util.h"
#include "core/safetensors.h"
#include "pipeline/checkpoint.h"

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

}  // namespace
}  // namespace vi::pipeline
