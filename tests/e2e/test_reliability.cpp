// Reliability of the video-infinity command under mpiexec, on a random tiny model:
//  - a rank SIGKILLed after step k, then --resume: final latents bit-identical to an
//    uninterrupted run (2 and 3 ranks), also when resumed on another rank count (close: the
//    clips are batched differently), refused when the settings differ;
//  - a rank that is SIGKILLed, SIGSTOPped or throws: the whole job ends within 30 s, the failed
//    rank is named, and no output file is left.
// Failures are injected with VI_FAULT=rank=R,step=K,mode=kill|stop|throw.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <ostream>

#include "common/test_util.h"
#include "core/safetensors.h"
#include "video_infinity/communicator.h"

namespace fs = std::filesystem;
using vi::test::run_command;

namespace {

constexpr int kSteps = 6;

class ReliabilityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = vi::test::make_temp_dir("reliability");
    model_ = dir_ + "/model";
    auto r = run_command(vi::test::binary_path() + " make-test-model --preset tiny --seed 5 --out " + model_);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void SetUp() override {
    if (!vi::parallel::built_with_mpi()) GTEST_SKIP() << "built without MPI";
  }

  // 24 frames in 6 clips (a multiple of 1, 2 and 3 ranks), the reference's stochastic sampler
  // (so the noise generators' state matters) with its 2nd-order history.
  static std::string args(const std::string& name) {
    return " --model " + model_ + " --prompt 'a red fox' --prompt 'a grey wolf' --height 64 --width 64 --steps " +
           std::to_string(kSteps) + " --frames 24 --clips 6 --attn-padding 2 --attn-top-k 4 --conv-padding 2 --quiet" +
           " --output " + dir_ + "/" + name + ".mp4 --save-latents " + dir_ + "/" + name + ".safetensors";
  }
  static vi::test::CommandResult launch(int ranks, const std::string& extra, const std::string& fault = "") {
    const std::string env = fault.empty() ? "" : "-x VI_FAULT=" + fault + " ";
    return run_command("timeout 120 " + vi::test::mpiexec(ranks) + env + vi::test::binary_path() + extra);
  }
  static at::Tensor latents(const std::string& name) {
    return vi::core::SafetensorsFile(dir_ + "/" + name + ".safetensors").tensor("latents").clone();
  }
  static nlohmann::json sidecar(const std::string& name) {
    return nlohmann::json::parse(vi::test::read_file(dir_ + "/" + name + ".mp4.json"));
  }
  // Files of run `name` in the test directory (the MP4, its temporary file, the sidecar, ...).
  static std::vector<std::string> outputs_of(const std::string& name) {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.path().filename().string().rfind(name + ".", 0) == 0) found.push_back(e.path().string());
    }
    return found;
  }
  // The uninterrupted run on `ranks` ranks, made once.
  static at::Tensor reference(int ranks) {
    const std::string name = "reference" + std::to_string(ranks);
    if (!fs::exists(dir_ + "/" + name + ".safetensors")) {
      auto r = launch(ranks, args(name));
      EXPECT_EQ(r.status, 0) << r.output;
    }
    return latents(name);
  }

  static std::string dir_, model_;
};
std::string ReliabilityTest::dir_;
std::string ReliabilityTest::model_;

class ResumeTest : public ReliabilityTest, public ::testing::WithParamInterface<int> {};

TEST_P(ResumeTest, KilledAfterStepThenResumedIsBitIdentical) {
  const int ranks = GetParam();
  const std::string name = "resume" + std::to_string(ranks);
  const std::string ckpt = " --checkpoint-dir " + dir_ + "/" + name + "-ckpt --checkpoint-every 2";
  // Rank 1 dies right after step 3 (its checkpoint of step 2 is complete; step 4's never starts).
  auto killed = launch(ranks, args(name) + ckpt, "rank=1,step=3,mode=kill");
  ASSERT_NE(killed.status, 0) << killed.output;
  EXPECT_TRUE(outputs_of(name).empty()) << "the killed run left " << outputs_of(name).front();
  EXPECT_TRUE(fs::is_directory(dir_ + "/" + name + "-ckpt/step-000002")) << killed.output;

  auto resumed = launch(ranks, args(name) + ckpt + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(sidecar(name)["checkpoint"]["resumed_from_step"], 2);
  EXPECT_TRUE(at::equal(latents(name), reference(ranks))) << "resumed latents differ from the uninterrupted run";
  // Only the newest checkpoint (after the last step) is kept.
  std::vector<std::string> kept;
  for (const auto& e : fs::directory_iterator(dir_ + "/" + name + "-ckpt")) kept.push_back(e.path().filename());
  EXPECT_EQ(kept, std::vector<std::string>{"step-000006"});
}

INSTANTIATE_TEST_SUITE_P(Ranks, ResumeTest, ::testing::Values(2, 3));

TEST_F(ReliabilityTest, ResumesOnAnotherRankCount) {
  const std::string ckpt = " --checkpoint-dir " + dir_ + "/other-ckpt --checkpoint-every 2";
  auto killed = launch(2, args("other") + ckpt, "rank=0,step=5,mode=kill");
  ASSERT_NE(killed.status, 0) << killed.output;
  // Checkpointed on 2 ranks after 4 steps, finished on 3: each rank reads the clips it owns now.
  auto resumed = launch(3, args("other") + ckpt + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(sidecar("other")["checkpoint"]["resumed_from_step"], 4);
  const at::Tensor expected = reference(2);
  EXPECT_LT(vi::test::rel_error(latents("other"), expected), 1e-5);
}

TEST_F(ReliabilityTest, ResumeAfterTheLastStepOnlyDecodes) {
  const std::string ckpt = " --checkpoint-dir " + dir_ + "/done-ckpt";
  ASSERT_EQ(launch(2, args("done") + ckpt).status, 0);
  auto again = launch(2, args("done") + ckpt + " --resume --overwrite");  // the first run's video exists
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_EQ(sidecar("done")["checkpoint"]["resumed_from_step"], kSteps);
  EXPECT_TRUE(at::equal(latents("done"), reference(2)));
}

TEST_F(ReliabilityTest, ResumeWithoutCheckpointStartsAfresh) {
  auto r = launch(2, args("fresh") + " --checkpoint-dir " + dir_ + "/fresh-ckpt --resume");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("starting from the first step"), std::string::npos) << r.output;
  EXPECT_TRUE(at::equal(latents("fresh"), reference(2)));
}

TEST_F(ReliabilityTest, ResumeRefusesOtherSettings) {
  const std::string ckpt = " --checkpoint-dir " + dir_ + "/seed-ckpt --checkpoint-every 2";
  ASSERT_NE(launch(2, args("seed") + ckpt, "rank=1,step=3,mode=kill").status, 0);
  auto r = launch(2, args("seed") + ckpt + " --resume --seed 124 --guidance 9");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("was made with other settings"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("seed: checkpoint 123, this run 124"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("guidance: checkpoint 12.0, this run 9.0"), std::string::npos) << r.output;
  EXPECT_TRUE(outputs_of("seed").empty());
}

TEST_F(ReliabilityTest, RemovesPartialFilesOfKilledRuns) {
  // A pid that surely is not running: a child that has exited and been reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const std::string dead = dir_ + "/stale.mp4.partial-" + std::to_string(child);
  const std::string alive = dir_ + "/stale.mp4.partial-" + std::to_string(::getpid());
  vi::test::write_file(dead, "half an mp4");
  vi::test::write_file(alive, "being written");
  auto r = launch(2, args("stale"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(fs::exists(dead)) << r.output;
  EXPECT_TRUE(fs::exists(alive)) << "a running process's temporary file must stay";
  fs::remove(alive);
}

struct Failure {
  int ranks;
  int rank;
  const char* mode;
  const char* needle;  // how the output names the failed rank
  int step = 2;        // fails after this step; kSteps: while rank 0 writes the MP4
};

void PrintTo(const Failure& f, std::ostream* os) {
  *os << f.mode << " on rank " << f.rank << " of " << f.ranks << " after step " << f.step;
}

class RankFailureTest : public ReliabilityTest, public ::testing::WithParamInterface<Failure> {};

TEST_P(RankFailureTest, JobEndsWithin30sNamingTheRankAndLeavesNoOutput) {
  const Failure f = GetParam();
  const std::string name = std::string("fail-") + f.mode + std::to_string(f.ranks) + "-" + std::to_string(f.step);
  const auto start = std::chrono::steady_clock::now();
  auto r = launch(f.ranks, args(name) + " --comm-timeout 5",
                  "rank=" + std::to_string(f.rank) + ",step=" + std::to_string(f.step) + ",mode=" + f.mode);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "the job hung until timeout(1) ended it\n" << r.output;
  // The tiny run takes ~1 s before the failure; the rest is the watchdog (5 s) and the abort.
  EXPECT_LT(seconds, 30.0) << r.output;
  EXPECT_NE(r.output.find(f.needle), std::string::npos) << "expected '" << f.needle << "'\n" << r.output;
  EXPECT_TRUE(outputs_of(name).empty()) << "left " << outputs_of(name).front();
}

INSTANTIATE_TEST_SUITE_P(
    Modes, RankFailureTest,
    ::testing::Values(Failure{2, 1, "kill", "process rank 1 "}, Failure{3, 2, "kill", "process rank 2 "},
                      Failure{2, 1, "stop", "for rank 1 "}, Failure{3, 1, "stop", "for rank 1 "},
                      Failure{2, 0, "stop", "for rank 0 "}, Failure{2, 1, "throw", "[rank 1/2] [error] VI_FAULT"},
                      Failure{3, 0, "throw", "[rank 0/3] [error] VI_FAULT"},
                      // Rank 0 has the MP4 open and waits for rank 1's clips.
                      Failure{2, 1, "stop", "in recv for rank 1 ", kSteps},
                      Failure{2, 1, "kill", "process rank 1 ", kSteps}),
    [](const auto& info) {
      return std::string(info.param.mode) + "_rank" + std::to_string(info.param.rank) + "_of" +
             std::to_string(info.param.ranks) + "_after_step" + std::to_string(info.param.step);
    });

}  // namespace
