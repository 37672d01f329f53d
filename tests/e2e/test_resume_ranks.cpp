// --resume on another rank count without repeating the clip layout, under mpiexec on a random
// tiny model: checkpoints written by 2 ranks (2 clips: one per rank, the default) resume on 1
// rank with the job's own flags, giving the uninterrupted run's latents; a --clips that
// contradicts the checkpoints, or a rank count that does not divide their clips, is refused
// before any compute with a message saying what to change.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "common/test_util.h"
#include "core/safetensors.h"
#include "video_infinity/communicator.h"

namespace fs = std::filesystem;
using vi::test::run_command;

namespace {

class ResumeRanksTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = vi::test::make_temp_dir("resume-ranks");
    model_ = dir_ + "/model";
    auto r = run_command(vi::test::binary_path() + " make-test-model --preset tiny --seed 6 --out " + model_);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void SetUp() override {
    if (!vi::parallel::built_with_mpi()) GTEST_SKIP() << "built without MPI";
  }

  // The job script's flags: no --clips (one clip per rank), the stochastic default sampler (so
  // the noise generators' state matters), checkpoints every 2 of 4 steps.
  static std::string args(const std::string& name) {
    return " --model " + model_ + " --prompt 'a red fox' --height 64 --width 64 --steps 4 --frames 16" +
           " --attn-padding 2 --attn-top-k 4 --conv-padding 2 --progress none --checkpoint-dir " + dir_ + "/" + name +
           "-ckpt --checkpoint-every 2 --output " + dir_ + "/" + name + ".mp4 --save-latents " + dir_ + "/" + name +
           ".safetensors";
  }
  static vi::test::CommandResult launch(int ranks, const std::string& extra, const std::string& fault = "") {
    const std::string env = fault.empty() ? "" : "-x VI_FAULT=" + fault + " ";
    return run_command("timeout 120 " + vi::test::mpiexec(ranks) + env + vi::test::binary_path() + extra);
  }
  static at::Tensor latents(const std::string& name) {
    return vi::core::SafetensorsFile(dir_ + "/" + name + ".safetensors").tensor("latents").clone();
  }
  // Checkpoints of 2 ranks after 2 of 4 steps: rank 1 fails after step 3.
  static void interrupted_on_two_ranks(const std::string& name) {
    auto r = launch(2, args(name), "rank=1,step=3,mode=throw");
    ASSERT_NE(r.status, 0) << r.output;
    ASSERT_TRUE(fs::exists(dir_ + "/" + name + "-ckpt/step-000002/clip-00001.safetensors")) << r.output;
  }

  static std::string dir_, model_;
};
std::string ResumeRanksTest::dir_;
std::string ResumeRanksTest::model_;

TEST_F(ResumeRanksTest, TwoRankCheckpointsResumeOnOneRankWithTheJobsOwnFlags) {
  auto uninterrupted = launch(2, args("whole"));
  ASSERT_EQ(uninterrupted.status, 0) << uninterrupted.output;
  interrupted_on_two_ranks("half");

  auto resumed = launch(1, args("half") + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("--resume: clip layout --clips 2 --frames 16 from the checkpoints in " + dir_ +
                                "/half-ckpt (1 rank runs 2 clips)"),
            std::string::npos)
      << resumed.output;
  const auto sidecar = nlohmann::json::parse(vi::test::read_file(dir_ + "/half.mp4.json"));
  EXPECT_EQ(sidecar["ranks"], 1);
  EXPECT_EQ(sidecar["settings"]["clips"], 2);
  EXPECT_EQ(sidecar["checkpoint"]["resumed_from_step"], 2);
  // One rank batches both clips through the UNet where two ranks ran one each: equal up to
  // fp32 summation order (the reliability tests' bound for another rank count).
  const at::Tensor expected = latents("whole"), got = latents("half");
  ASSERT_EQ(got.sizes(), expected.sizes());
  EXPECT_LT(vi::test::rel_error(got, expected), 1e-5);
  EXPECT_GT(expected.abs().max().item<double>(), 0.1) << "latents of a real run";
}

TEST_F(ResumeRanksTest, AContradictingLayoutOrRankCountIsRefusedSayingWhatToChange) {
  interrupted_on_two_ranks("conflict");
  auto clips = launch(1, args("conflict") + " --resume --clips 1");
  EXPECT_NE(clips.status, 0) << clips.output;
  EXPECT_NE(clips.output.find("--resume: the checkpoints in " + dir_ +
                              "/conflict-ckpt were written with --clips 2 --frames 16; drop --clips 1"),
            std::string::npos)
      << clips.output;
  EXPECT_NE(clips.output.find("or give --clips 2"), std::string::npos) << clips.output;

  auto three = launch(3, args("conflict") + " --resume");
  EXPECT_NE(three.status, 0) << three.output;
  EXPECT_NE(three.output.find("2 clips cannot be shared by 3 ranks; resume on a rank count that divides 2: 1 or 2 "
                              "ranks"),
            std::string::npos)
      << three.output;
  // Refused before any output was opened; the checkpoints are left for a corrected resume.
  EXPECT_FALSE(fs::exists(dir_ + "/conflict.mp4"));
  EXPECT_TRUE(fs::exists(dir_ + "/conflict-ckpt/step-000002/clip-00000.safetensors"));
}

// Every rank resolves its own flags (and, with --resume, the checkpoints its host can see): a
// rank whose settings differ from rank 0's is refused before any work, naming the rank and the
// setting, as a usage error on every rank (an MPMD launch gives rank 1 another seed).
TEST_F(ResumeRanksTest, RanksThatResolvedOtherSettingsAreRefusedNamingRankAndSetting) {
  const std::string cmd = "timeout 120 mpiexec --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 ";
  auto r = run_command(cmd + "-n 1 " + vi::test::binary_path() + args("mpmd") + " --seed 1 : -n 1 " +
                       vi::test::binary_path() + args("mpmd") + " --seed 2");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("the ranks resolved different settings"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("): seed 2, rank 0 ("), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(") has 1"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ + "/mpmd.mp4"));
  EXPECT_FALSE(fs::exists(dir_ + "/mpmd-ckpt/step-000002"));
}

}  // namespace
