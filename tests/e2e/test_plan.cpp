// --dry-run end to end on a random tiny model: the plan is printed and written as JSON, nothing
// is loaded or written, the same checks refuse bad outputs; and the plan's peak-memory estimate
// holds against the real job's peak RSS, measured here (wait4's ru_maxrss of the child), at
// several geometries with and without --frame-chunk.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/test_util.h"

extern char** environ;

namespace fs = std::filesystem;
using vi::test::run_command;

namespace {

// The target of issue 16: the estimate within 25% of the measured peak.
constexpr double kMaxRelativeError = 0.25;

struct Measured {
  int status = -1;
  double peak_rss_bytes = 0;
};

// Runs `command` under /bin/sh and returns its exit status and the peak RSS of the process tree
// it waited for (ru_maxrss of this one child, not of every child this test ever had).
Measured run_measured(const std::string& command) {
  const std::string quiet = command + " > /dev/null 2>&1";
  const char* argv[] = {"/bin/sh", "-c", quiet.c_str(), nullptr};
  pid_t pid = 0;
  Measured m;
  if (posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0) return m;
  int status = 0;
  struct rusage usage {};
  if (wait4(pid, &status, 0, &usage) != pid) return m;
  m.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  m.peak_rss_bytes = static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux: kilobytes
  return m;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

class PlanTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = vi::test::make_temp_dir("plan");
    model_ = dir_ + "/model";
    auto r = run_command(vi::test::binary_path() + " make-test-model --preset tiny --seed 5 --out " + model_);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // One process (no mpiexec): the measured tree is the binary alone.
  static std::string command(const std::string& args) {
    return "OMP_NUM_THREADS=2 " + vi::test::binary_path() + " --model " + model_ +
           " --prompt 'a red fox' --steps 1 --quiet" + args;
  }

  static std::string dir_, model_;
};
std::string PlanTest::dir_;
std::string PlanTest::model_;

TEST_F(PlanTest, DryRunPrintsThePlanAndWritesNothing) {
  const std::string out = dir_ + "/dry.mp4", plan = dir_ + "/dry.json";
  auto r = run_command(command(" --frames 16 --height 64 --width 64 --dry-run --output " + out + " --plan-json " + plan));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("plan: 16 frames in 1 clip on 1 rank"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("<- peak"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("exchange per step"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".json"));
  auto j = read_json(plan);
  EXPECT_EQ(j["frames"], 16);
  EXPECT_EQ(j["longest_clip"], 16);
  EXPECT_EQ(j["unet_batch"], 2);
  EXPECT_GT(j["peak_bytes"].get<double>(), 0);
  EXPECT_TRUE(j["stages"].contains("denoise"));
  EXPECT_TRUE(j["warnings"].empty()) << j["warnings"];
}

TEST_F(PlanTest, DryRunRunsTheSameChecks) {
  auto r = run_command(command(" --frames 16 --height 64 --width 64 --dry-run --output /nonexistent-dir/x.mp4"));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("/nonexistent-dir"), std::string::npos) << r.output;
  r = run_command(command(" --frames 16 --height 60 --width 64 --dry-run"));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("--height"), std::string::npos) << r.output;
  r = run_command(command(" --frames 16 --height 64 --width 64 --probe"));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("--probe needs --dry-run"), std::string::npos) << r.output;
}

TEST_F(PlanTest, WarnsAboutLongClipsAndWhatWillNotFit) {
  auto r = run_command(command(" --frames 80 --height 64 --width 64 --dry-run --output " + dir_ + "/w.mp4"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("80 frames per clip is 5x the 16 frames"), std::string::npos) << r.output;
  // 64 frames of 8192 x 8192: hundreds of GB of activations on any test machine.
  r = run_command(command(" --frames 64 --height 8192 --width 8192 --dry-run --output " + dir_ + "/w.mp4"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("exceeds the"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--frame-chunk"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--cfg-serial"), std::string::npos) << r.output;
}

TEST_F(PlanTest, ProbeTimesRealSteps) {
  const std::string plan = dir_ + "/probe.json";
  auto r = run_command(command(" --frames 8 --height 64 --width 64 --steps 5 --dry-run --probe --plan-json " + plan +
                               " --output " + dir_ + "/probe.mp4"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("estimated job"), std::string::npos) << r.output;
  auto j = read_json(plan);
  ASSERT_TRUE(j.contains("probe")) << j.dump(2);
  EXPECT_EQ(j["probe"]["step_s"].size(), 2u);
  EXPECT_GT(j["probe"]["estimated_total_s"].get<double>(), 0);
  EXPECT_FALSE(fs::exists(dir_ + "/probe.mp4"));
}

// The estimate against the real job's peak RSS. Geometries where activations are a large part of
// the peak (the tiny model's weights are 1 MB, the baseline ~200 MB): clips of 8 to 64 frames,
// 128x128 to 256x256, with and without --frame-chunk and --cfg-serial.
TEST_F(PlanTest, EstimateMatchesMeasuredPeak) {
  struct Case {
    const char* args;
  };
  const Case cases[] = {
      {" --frames 8 --height 128 --width 128"},
      {" --frames 32 --height 128 --width 128"},
      {" --frames 64 --height 128 --width 128"},
      {" --frames 64 --height 128 --width 128 --frame-chunk 8"},
      {" --frames 16 --height 256 --width 256"},
      {" --frames 16 --height 256 --width 256 --frame-chunk 4 --cfg-serial"},
  };
  for (const auto& c : cases) {
    const std::string plan = dir_ + "/est.json", out = dir_ + "/est.mp4";
    auto dry = run_command(command(std::string(c.args) + " --dry-run --plan-json " + plan + " --output " + out));
    ASSERT_EQ(dry.status, 0) << c.args << "\n" << dry.output;
    const double estimate = read_json(plan)["peak_bytes"].get<double>();
    const Measured m = run_measured(command(std::string(c.args) + " --output " + out));
    ASSERT_EQ(m.status, 0) << c.args;
    const double error = (estimate - m.peak_rss_bytes) / m.peak_rss_bytes;
    std::printf("%-70s estimated %7.1f MB, measured %7.1f MB, error %+5.1f%%\n", c.args, estimate / 1e6,
                m.peak_rss_bytes / 1e6, 100 * error);
    EXPECT_LT(std::abs(error), kMaxRelativeError) << c.args << ": estimated " << estimate << ", measured "
                                                  << m.peak_rss_bytes;
    fs::remove(out);
    fs::remove(out + ".json");
  }
}

}  // namespace
