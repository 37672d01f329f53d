// Progress and peak memory of the video-infinity command on a random tiny model:
//  - --progress json under mpiexec -n 2: stdout is JSON lines only (start, stage, a step event
//    per step with an ETA that ends at 0 once the last clip is written, done with both ranks'
//    peak memory), and the sidecar records the same peaks;
//  - --progress bar into a pipe: carriage-return updates with h:mm:ss fields, one final newline;
//  - auto into a pipe (not a terminal): a log line per step, and the per-rank peak memory table.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <sstream>

#include "common/test_util.h"
#include "video_infinity/communicator.h"

namespace fs = std::filesystem;
using vi::test::run_command;

namespace {

constexpr int kSteps = 4;

class ProgressTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = vi::test::make_temp_dir("progress");
    model_ = dir_ + "/model";
    auto r = run_command(vi::test::binary_path() + " make-test-model --preset tiny --seed 4 --out " + model_);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static int ranks() { return vi::parallel::built_with_mpi() ? 2 : 1; }
  static std::string launcher(int n) { return vi::parallel::built_with_mpi() ? vi::test::mpiexec(n) : std::string(); }
  // 2 clips of 8 frames: seconds on 2 cores.
  static std::string args(const std::string& name) {
    return " --model " + model_ + " --prompt 'a red fox' --height 64 --width 64 --steps " + std::to_string(kSteps) +
           " --frames 16 --clips 2 --attn-padding 2 --attn-top-k 4 --conv-padding 2 --output " + dir_ + "/" + name +
           ".mp4";
  }
  static nlohmann::json sidecar(const std::string& name) {
    return nlohmann::json::parse(vi::test::read_file(dir_ + "/" + name + ".mp4.json"));
  }

  // Peaks of `ranks` ranks as the sidecar and the done event record them: a process that loaded
  // LibTorch and ran a model holds more than 50 MB, and no rank more than the machine has.
  static void expect_plausible_peaks(const nlohmann::json& peaks, int ranks) {
    const double machine = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
    ASSERT_TRUE(peaks.is_array()) << peaks;
    ASSERT_EQ(peaks.size(), static_cast<size_t>(ranks)) << peaks;
    for (int r = 0; r < ranks; ++r) {
      EXPECT_EQ(peaks[r]["rank"], r) << peaks;
      char host[256] = {};
      ::gethostname(host, sizeof(host) - 1);
      EXPECT_EQ(peaks[r]["host"], std::string(host)) << peaks;  // every rank of these runs is here
      EXPECT_GT(peaks[r]["rss_bytes"].get<double>(), 50e6) << peaks;
      EXPECT_LT(peaks[r]["rss_bytes"].get<double>(), machine) << peaks;
      EXPECT_TRUE(peaks[r]["cuda_bytes"].is_null()) << "a CPU run has no CUDA peak: " << peaks;
    }
  }

  static std::string dir_, model_;
};
std::string ProgressTest::dir_;
std::string ProgressTest::model_;

TEST_F(ProgressTest, JsonLinesOnStdoutWithEveryStepAndEachRanksPeakMemory) {
  const std::string out = dir_ + "/json.stdout";
  // stdout to a file, stderr (logs) to the pipe.
  auto r = run_command("(" + launcher(ranks()) + vi::test::binary_path() + args("json") + " --progress json > " + out +
                       ")");
  ASSERT_EQ(r.status, 0) << r.output;
  std::vector<nlohmann::json> events;
  std::istringstream lines(vi::test::read_file(out));
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json e = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(e.is_object() && e.contains("event")) << "not a JSON event on stdout: '" << line << "'";
    events.push_back(std::move(e));
  }
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front()["event"], "start");
  EXPECT_EQ(events.front()["ranks"], ranks());
  EXPECT_EQ(events.front()["steps"], kSteps);
  EXPECT_EQ(events.back()["event"], "done");

  std::vector<int> steps;
  std::vector<double> etas, elapsed;  // of step and clip_written events, in order
  int clips = 0;
  for (const auto& e : events) {
    elapsed.push_back(e["elapsed_s"].get<double>());
    if (e["event"] == "step") {
      steps.push_back(e["step"].get<int>());
      EXPECT_EQ(e["steps"], kSteps);
      EXPECT_GT(e["s_per_step"].get<double>(), 0.0) << e;
      ASSERT_TRUE(e["eta_s"].is_number()) << e;
      etas.push_back(e["eta_s"].get<double>());
    } else if (e["event"] == "clip_written") {
      EXPECT_EQ(e["clip"], ++clips);
      EXPECT_EQ(e["clips"], 2);
      etas.push_back(e["eta_s"].get<double>());
    }
  }
  EXPECT_EQ(steps, (std::vector<int>{1, 2, 3, 4})) << "a step event per step, in order";
  EXPECT_EQ(clips, 2);
  EXPECT_TRUE(std::is_sorted(elapsed.begin(), elapsed.end()));
  ASSERT_EQ(etas.size(), static_cast<size_t>(kSteps + 2));
  // The ETA is the mean step time times (steps left + half a step per clip left), so it falls
  // by about a step per step; only a step far slower than the mean (the 2 cores are shared)
  // could raise it, by a fraction: hence the slack. After the last step it still holds the
  // decoding and encoding of the clips, and it is 0 once the last clip is written.
  for (int i = 1; i < kSteps; ++i) EXPECT_LT(etas[i], 1.5 * etas[i - 1]) << "step " << i + 1;
  EXPECT_LT(etas[kSteps - 1], etas[0]);
  EXPECT_GT(etas[kSteps - 1], 0.0) << "the ETA after the last step leaves out decoding and encoding";
  EXPECT_EQ(etas.back(), 0.0);

  const auto& done = events.back();
  EXPECT_EQ(done["output"], dir_ + "/json.mp4");
  expect_plausible_peaks(done["peak_memory"], ranks());
  const nlohmann::json recorded = sidecar("json")["peak_memory"];
  expect_plausible_peaks(recorded, ranks());
  EXPECT_EQ(recorded, done["peak_memory"]);
  // The summary table is not on stdout in json mode (every line above parsed).
  EXPECT_EQ(r.output.find("| stage | seconds |"), std::string::npos) << r.output;
}

TEST_F(ProgressTest, BarRedrawsOneLineWithCarriageReturnsWhenForced) {
  // One rank, stderr to a pipe: bar is asked for, not detected.
  auto r = run_command(vi::test::binary_path() + args("bar") + " --progress bar");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_GE(std::count(r.output.begin(), r.output.end(), '\r'), kSteps + 2) << r.output;
  const std::string hms = "\\d+:\\d\\d:\\d\\d";
  for (int step = 1; step <= kSteps; ++step) {
    const std::regex drawn("\rdenoise  step " + std::to_string(step) + "/" + std::to_string(kSteps) +
                           "  \\d+\\.\\d\\d s/step  elapsed " + hms + "  ETA " + hms);
    EXPECT_TRUE(std::regex_search(r.output, drawn)) << "step " << step << "\n" << r.output;
  }
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\rdecode  clip 2/2  \\d+\\.\\d\\d s/clip  elapsed " + hms +
                                                     "  ETA 0:00:00")))
      << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\rdone  elapsed " + hms + " *\n"))) << r.output;
  // No per-step log lines next to the bar; the summary's peak memory is one line for one rank.
  EXPECT_EQ(r.output.find("[info] denoise  step"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("peak memory: \\d+\\.\\d MB RSS\n"))) << r.output;
  expect_plausible_peaks(sidecar("bar")["peak_memory"], 1);
}

TEST_F(ProgressTest, LogLinesWhenNotATerminalAndAPeakMemoryRowPerRank) {
  auto r = run_command(launcher(ranks()) + vi::test::binary_path() + args("log"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.find('\r'), std::string::npos) << "no bar into a pipe\n" << r.output;
  const std::string hms = "\\d+:\\d\\d:\\d\\d";
  for (int step = 1; step <= kSteps; ++step) {
    const std::regex line("\\[info\\] denoise  step " + std::to_string(step) + "/" + std::to_string(kSteps) +
                          "  \\d+\\.\\d\\d s/step  elapsed " + hms + "  ETA " + hms + "\n");
    EXPECT_TRUE(std::regex_search(r.output, line)) << "step " << step << "\n" << r.output;
  }
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\\[info\\] decode  clip 2/2  .* ETA 0:00:00\n"))) << r.output;
  if (ranks() == 2) {
    EXPECT_TRUE(std::regex_search(r.output, std::regex("\\| rank \\| peak RSS \\|\n\\|---\\|---\\|\n"
                                                       "\\| 0 \\| \\d+\\.\\d MB \\|\n\\| 1 \\| \\d+\\.\\d MB \\|\n")))
        << r.output;
  }
}

}  // namespace
