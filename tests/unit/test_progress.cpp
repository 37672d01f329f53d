// The progress reporter: h:mm:ss, the ETA's arithmetic (denoising, then decoding and encoding,
// estimated before the first clip and measured after), the mode each rank gets, and what the
// bar and the JSON lines look like, driven event by event into temporary files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "pipeline/progress.h"

namespace vi::pipeline {
namespace {

TEST(Progress, FormatsHoursMinutesSeconds) {
  EXPECT_EQ(format_hms(0.0), "0:00:00");
  EXPECT_EQ(format_hms(0.4), "0:00:00");
  EXPECT_EQ(format_hms(59.4), "0:00:59");
  EXPECT_EQ(format_hms(59.6), "0:01:00");  // rounded to the nearest second
  EXPECT_EQ(format_hms(754.0), "0:12:34");
  EXPECT_EQ(format_hms(3599.5), "1:00:00");
  EXPECT_EQ(format_hms(100000.0), "27:46:40");  // hours do not wrap
  for (auto unknown : {std::optional<double>(), std::optional<double>(-1.0),
                       std::optional<double>(std::numeric_limits<double>::quiet_NaN()),
                       std::optional<double>(std::numeric_limits<double>::infinity())}) {
    EXPECT_EQ(format_hms(unknown), "-:--:--");
  }
}

TEST(Progress, EtaCoversTheStepsLeftThenDecodingAndEncoding) {
  EtaModel m;
  m.steps = 30;
  m.clips = 4;
  m.local_clips = 2;
  EXPECT_FALSE(m.remaining_seconds().has_value()) << "nothing measured yet";

  // 10 steps of 2 s: 20 steps left at 2 s, and 4 clips at half a step per local clip (0.5 s).
  m.steps_done = m.steps_timed = 10;
  m.step_seconds = 20;
  EXPECT_DOUBLE_EQ(*m.seconds_per_step(), 2.0);
  EXPECT_DOUBLE_EQ(*m.seconds_per_clip(), EtaModel::kDecodeStepShare * 2.0 / 2);
  EXPECT_DOUBLE_EQ(*m.remaining_seconds(), 20 * 2.0 + 4 * 0.5);

  // Resumed at step 10: only the steps this process ran count for the rate.
  m.steps_done = 25;
  m.steps_timed = 15;
  m.step_seconds = 45;
  EXPECT_DOUBLE_EQ(*m.remaining_seconds(), 5 * 3.0 + 4 * 0.75);

  // Denoised; one clip written 3 s after decoding began: the measured rate replaces the estimate.
  m.steps_done = 30;
  m.clips_written = 1;
  m.decode_seconds = 3;
  EXPECT_DOUBLE_EQ(*m.seconds_per_clip(), 3.0);
  EXPECT_DOUBLE_EQ(*m.remaining_seconds(), 3 * 3.0);
  m.clips_written = 3;
  m.decode_seconds = 6;
  EXPECT_DOUBLE_EQ(*m.remaining_seconds(), 1 * 2.0);
  m.clips_written = 4;
  EXPECT_DOUBLE_EQ(*m.remaining_seconds(), 0.0);

  // Resumed after the last step: no step rate, so no estimate until a clip is written.
  EtaModel decode_only;
  decode_only.steps = decode_only.steps_done = 30;
  decode_only.clips = 2;
  EXPECT_FALSE(decode_only.remaining_seconds().has_value());
  decode_only.clips_written = 1;
  decode_only.decode_seconds = 4;
  EXPECT_DOUBLE_EQ(*decode_only.remaining_seconds(), 4.0);
}

TEST(Progress, ModeOfEachRank) {
  EXPECT_EQ(resolve_progress_mode("auto", false, 0, true), ProgressMode::kBar);
  EXPECT_EQ(resolve_progress_mode("auto", false, 0, false), ProgressMode::kLog);
  EXPECT_EQ(resolve_progress_mode("bar", false, 0, false), ProgressMode::kBar);
  EXPECT_EQ(resolve_progress_mode("log", false, 0, true), ProgressMode::kLog);
  EXPECT_EQ(resolve_progress_mode("json", false, 0, true), ProgressMode::kJson);
  EXPECT_EQ(resolve_progress_mode("none", false, 0, true), ProgressMode::kNone);
  EXPECT_EQ(resolve_progress_mode("auto", true, 0, true), ProgressMode::kNone) << "--quiet";
  EXPECT_EQ(resolve_progress_mode("json", true, 0, true), ProgressMode::kJson) << "a script asked for JSON";
  EXPECT_EQ(resolve_progress_mode("json", false, 1, true), ProgressMode::kNone) << "rank 0 reports";
  const std::string e = test::error_of([] { resolve_progress_mode("fancy", false, 0, true); });
  EXPECT_NE(e.find("--progress: unknown mode 'fancy' (expected auto, bar, log, json or none)"), std::string::npos) << e;
}

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  return s;
}

// A job of 3 steps and 2 clips on 2 ranks, events as generate() sends them.
void drive(ProgressReporter& p) {
  p.start({{"ranks", 2}}, 3, 2, 1);
  p.stage("load");
  p.stage("text");
  p.stage("denoise");
  for (int i = 0; i < 3; ++i) p.step(i, 3, 0.25);
  p.decode_begins();
  p.clip_written(0);
  p.clip_written(1);
  p.done({{"output", "x.mp4"}});
}

TEST(Progress, JsonModeWritesOneObjectPerEvent) {
  std::FILE* text = std::tmpfile();
  std::FILE* json = std::tmpfile();
  {
    ProgressReporter p(ProgressMode::kJson, text, json);
    drive(p);
  }
  EXPECT_EQ(contents(text), "");
  std::vector<nlohmann::json> events;
  const std::string lines = contents(json);
  size_t begin = 0;
  for (size_t end; (end = lines.find('\n', begin)) != std::string::npos; begin = end + 1) {
    events.push_back(nlohmann::json::parse(lines.substr(begin, end - begin)));
  }
  EXPECT_EQ(begin, lines.size()) << "every line ends with a newline";
  std::vector<std::string> kinds;
  for (const auto& e : events) kinds.push_back(e["event"].get<std::string>() + (e.contains("stage") ? ":" + e["stage"].get<std::string>() : ""));
  EXPECT_EQ(kinds, (std::vector<std::string>{"start", "stage:load", "stage:text", "stage:denoise", "step", "step", "step",
                                             "stage:decode", "clip_written", "clip_written", "done"}));
  ASSERT_EQ(events.size(), 11u);
  EXPECT_EQ(events[0]["ranks"], 2);
  for (int i = 0; i < 3; ++i) {
    const auto& s = events[4 + i];
    EXPECT_EQ(s["step"], i + 1);
    EXPECT_EQ(s["steps"], 3);
    EXPECT_DOUBLE_EQ(s["s_per_step"].get<double>(), 0.25);
    // Steps left at 0.25 s, then 2 clips at half a step each (1 local clip).
    EXPECT_DOUBLE_EQ(s["eta_s"].get<double>(), (2 - i) * 0.25 + 2 * 0.125);
    EXPECT_GE(s["elapsed_s"].get<double>(), 0.0);
  }
  EXPECT_EQ(events[8]["clip"], 1);
  EXPECT_EQ(events[8]["clips"], 2);
  EXPECT_TRUE(events[8]["eta_s"].is_number());
  EXPECT_EQ(events[9]["eta_s"], 0.0);
  EXPECT_EQ(events[10]["output"], "x.mp4");
  EXPECT_EQ(events[10]["eta_s"], 0.0);
  std::fclose(text);
  std::fclose(json);
}

TEST(Progress, BarRedrawsOneLineWithCarriageReturns) {
  std::FILE* text = std::tmpfile();
  std::FILE* json = std::tmpfile();
  {
    ProgressReporter p(ProgressMode::kBar, text, json);
    drive(p);
  }
  const std::string bar = contents(text);
  EXPECT_EQ(contents(json), "");
  EXPECT_EQ(std::count(bar.begin(), bar.end(), '\n'), 1) << "one line, ended once:\n" << bar;
  EXPECT_EQ(bar.back(), '\n');
  EXPECT_GE(std::count(bar.begin(), bar.end(), '\r'), 10) << bar;
  EXPECT_TRUE(std::regex_search(bar, std::regex("\rdenoise  step 2/3  0\\.25 s/step  elapsed 0:00:0\\d  ETA 0:00:01")))
      << bar;  // 0.25 + 2 x 0.125 = 0.5 s, rounded
  EXPECT_TRUE(std::regex_search(bar, std::regex("\rdecode  clip 1/2  \\d+\\.\\d\\d s/clip  elapsed \\d+:\\d\\d:\\d\\d  ETA \\d+:\\d\\d:\\d\\d")))
      << bar;
  EXPECT_TRUE(std::regex_search(bar, std::regex("\rdone  elapsed 0:00:0\\d *\n$"))) << bar;
  std::fclose(text);
  std::fclose(json);
}

}  // namespace
}  // namespace vi::pipeline
