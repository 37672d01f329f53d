// Prompt travel (--prompt-blend N): the per-frame prompt weights, checked against values worked
// out by hand from the definition (pipeline/prompt_travel.h): N = 0 is the one-hot of the range
// each frame lies in; an isolated boundary gives the ramp clamp((f - s + 1/2) / N + 1/2, 0, 1);
// rows sum to 1; frames farther than N/2 from every boundary see only their own prompt; ranges
// shorter than N and the video's ends; plain -p prompts by the reference's clip rule. Then the
// frame slots of a rank's clips, the blended text states and the log lines.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "pipeline/prompt_travel.h"
#include "parallel/clip_parallel.h"
#include "video_infinity/communicator.h"
#include "video_infinity/generation_config.h"

using vi::FramePrompt;
using vi::GenerationConfig;
using vi::pipeline::PromptTravel;
using vi::pipeline::prompt_travel;

namespace {

// `frames` frames in 4 clips; frame ranges (first frame, text), each to the next one's start.
GenerationConfig ranged(int64_t frames, const std::vector<std::pair<int64_t, std::string>>& ranges, int64_t blend) {
  GenerationConfig c;
  c.frames = frames;
  c.clips = 4;
  c.dual_scope.attn_padding = 2;
  c.dual_scope.conv_padding = 2;
  for (const auto& [first, text] : ranges) c.frame_prompts.push_back(FramePrompt{first, -1, text});
  for (size_t i = 0; i + 1 < ranges.size(); ++i) c.frame_prompts[i].last_frame = ranges[i + 1].first - 1;
  c.prompt_blend = blend;
  vi::resolve_config(c, 1);
  return c;
}

// The weight of prompt `text` at `frame`.
double w(const PromptTravel& t, int64_t frame, const std::string& text) {
  for (size_t p = 0; p < t.prompts.size(); ++p) {
    if (t.prompts[p] == text) return t.weight(frame, p);
  }
  ADD_FAILURE() << "no prompt '" << text << "'";
  return NAN;
}

// Every row in [0, 1] and summing to 1 (to rounding).
void expect_rows_are_distributions(const PromptTravel& t) {
  ASSERT_EQ(t.weights.size(), static_cast<size_t>(t.frames) * t.prompts.size());
  for (int64_t f = 0; f < t.frames; ++f) {
    double sum = 0;
    for (size_t p = 0; p < t.prompts.size(); ++p) {
      const double x = t.weight(f, p);
      EXPECT_GE(x, 0.0) << "frame " << f;
      EXPECT_LE(x, 1.0) << "frame " << f;
      sum += x;
    }
    EXPECT_NEAR(sum, 1.0, 1e-12) << "frame " << f;
  }
}

TEST(PromptTravel, HardSwitchIsTheOneHotOfTheRangeEachFrameLiesIn) {
  // Ranges 0-9, 10-40, 41-63 (not on the clip boundaries 0/16/32/48), with N = 0 and N = 1.
  for (int64_t blend : {0, 1}) {
    const PromptTravel t = prompt_travel(ranged(64, {{0, "a"}, {10, "b"}, {41, "c"}}, blend));
    ASSERT_EQ(t.prompts, (std::vector<std::string>{"a", "b", "c"}));
    ASSERT_EQ(t.frames, 64);
    for (int64_t f = 0; f < 64; ++f) {
      const size_t own = f < 10 ? 0 : f < 41 ? 1 : 2;
      EXPECT_EQ(t.frame_prompt[static_cast<size_t>(f)], own) << "frame " << f;
      for (size_t p = 0; p < 3; ++p) EXPECT_EQ(t.weight(f, p), p == own ? 1.0 : 0.0) << "N " << blend << " frame " << f;
    }
  }
  // A gap between ranges (0-5, then 20-): its frames keep the range before, as clips do; the same
  // text in two ranges is one prompt.
  GenerationConfig c = ranged(64, {{0, "a"}, {20, "b"}, {40, "a"}}, 0);
  c.frame_prompts[0].last_frame = 5;
  const PromptTravel t = prompt_travel(c);
  EXPECT_EQ(t.prompts, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(w(t, 12, "a"), 1.0);
  EXPECT_EQ(w(t, 20, "b"), 1.0);
  EXPECT_EQ(w(t, 40, "a"), 1.0);
}

TEST(PromptTravel, IsolatedBoundaryIsALinearRampOverNFrames) {
  // Boundary at frame 32 (the first "b" frame). N = 8: frames 28-35 mix, (k + 1/2) / 8 of "b".
  PromptTravel t = prompt_travel(ranged(64, {{0, "a"}, {32, "b"}}, 8));
  expect_rows_are_distributions(t);
  const std::vector<double> ramp8 = {0, 0.0625, 0.1875, 0.3125, 0.4375, 0.5625, 0.6875, 0.8125, 0.9375, 1};
  for (size_t i = 0; i < ramp8.size(); ++i) {
    const int64_t f = 27 + static_cast<int64_t>(i);
    EXPECT_DOUBLE_EQ(w(t, f, "b"), ramp8[i]) << "N 8, frame " << f;
    EXPECT_DOUBLE_EQ(w(t, f, "a"), 1 - ramp8[i]) << "N 8, frame " << f;
  }
  // Odd N = 3: frames 31 and 32 mix (1/3, 2/3); 30 is all "a", 33 all "b".
  t = prompt_travel(ranged(64, {{0, "a"}, {32, "b"}}, 3));
  expect_rows_are_distributions(t);
  EXPECT_EQ(w(t, 30, "b"), 0.0);
  EXPECT_NEAR(w(t, 31, "b"), 1.0 / 3, 1e-15);
  EXPECT_NEAR(w(t, 32, "b"), 2.0 / 3, 1e-15);
  EXPECT_EQ(w(t, 33, "b"), 1.0);
  // N = 2: 1/4 and 3/4.
  t = prompt_travel(ranged(64, {{0, "a"}, {32, "b"}}, 2));
  EXPECT_DOUBLE_EQ(w(t, 31, "b"), 0.25);
  EXPECT_DOUBLE_EQ(w(t, 32, "b"), 0.75);
  EXPECT_EQ(w(t, 30, "b"), 0.0);
  EXPECT_EQ(w(t, 33, "b"), 1.0);
  // Every N, every frame: the closed form.
  for (int64_t n : {2, 3, 4, 5, 7, 8, 12, 15}) {
    t = prompt_travel(ranged(64, {{0, "a"}, {32, "b"}}, n));
    expect_rows_are_distributions(t);
    for (int64_t f = 0; f < 64; ++f) {
      const double expected = std::clamp((static_cast<double>(f - 32) + 0.5) / static_cast<double>(n) + 0.5, 0.0, 1.0);
      EXPECT_NEAR(w(t, f, "b"), expected, 1e-15) << "N " << n << " frame " << f;
    }
  }
}

TEST(PromptTravel, FramesFartherThanHalfNFromEveryBoundarySeeOnlyTheirOwnPrompt) {
  // Boundaries at 16, 30, 47 (17 or more frames apart, so isolated for N <= 13): a frame whose
  // centre lies N/2 or more from every boundary (at s - 1/2) has all of its own prompt, any closer
  // frame less.
  const std::vector<int64_t> boundaries = {16, 30, 47};
  for (int64_t n : {2, 3, 5, 8, 9, 13}) {
    const PromptTravel t = prompt_travel(ranged(64, {{0, "a"}, {16, "b"}, {30, "c"}, {47, "d"}}, n));
    expect_rows_are_distributions(t);
    int64_t pure = 0;
    for (int64_t f = 0; f < 64; ++f) {
      double distance = 1e9;
      for (int64_t s : boundaries) distance = std::min(distance, std::abs(static_cast<double>(f) - (s - 0.5)));
      const double own = t.weight(f, t.frame_prompt[static_cast<size_t>(f)]);
      if (distance >= n / 2.0) {
        EXPECT_EQ(own, 1.0) << "N " << n << " frame " << f;
        ++pure;
      } else {
        EXPECT_LT(own, 1.0) << "N " << n << " frame " << f;
        EXPECT_GE(own, 0.5) << "N " << n << " frame " << f << ": the own prompt leads inside its range";
      }
    }
    EXPECT_EQ(pure, 64 - 3 * 2 * (n / 2)) << "N " << n;  // 2 floor(N/2) mixed frames per boundary
  }
}

TEST(PromptTravel, RangeShorterThanNNeverReachesFullWeight) {
  // "b" has frames 10-11 only; N = 8. Frame 10's window [6, 14]: frame 6 and 14 count half.
  // a: 6(1/2) 7 8 9 = 3.5; b: 10 11 = 2; c: 12 13 14(1/2) = 2.5.
  const GenerationConfig c = ranged(32, {{0, "a"}, {10, "b"}, {12, "c"}}, 8);
  const PromptTravel t = prompt_travel(c);
  expect_rows_are_distributions(t);
  EXPECT_DOUBLE_EQ(w(t, 10, "a"), 3.5 / 8);
  EXPECT_DOUBLE_EQ(w(t, 10, "b"), 2.0 / 8);
  EXPECT_DOUBLE_EQ(w(t, 10, "c"), 2.5 / 8);
  EXPECT_DOUBLE_EQ(w(t, 11, "a"), 2.5 / 8);
  EXPECT_DOUBLE_EQ(w(t, 11, "b"), 2.0 / 8);
  EXPECT_DOUBLE_EQ(w(t, 11, "c"), 3.5 / 8);
  // Frame 7: window [3, 11]: a 3(1/2)..9 = 6.5, b 10 11(1/2) = 1.5.
  EXPECT_DOUBLE_EQ(w(t, 7, "b"), 1.5 / 8);
  EXPECT_DOUBLE_EQ(w(t, 7, "c"), 0.0);
  double peak = 0;
  for (int64_t f = 0; f < 32; ++f) peak = std::max(peak, w(t, f, "b"));
  EXPECT_DOUBLE_EQ(peak, 0.25);
  const auto report = vi::pipeline::prompt_travel_report(c);
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_NE(report.warnings[0].find(R"(--prompt-blend 8: frames 10-11 ("b") are too few for the blend: that prompt )"
                                    "peaks at 25 % there"),
            std::string::npos)
      << report.warnings[0];
}

TEST(PromptTravel, VideoEndsAreClampedNotWrapped) {
  // Boundaries 2 frames from each end, N = 8: the ramp's closed form holds at frames 0-1 and
  // 62-63 (the first and last frames' prompts continue beyond the ends); --loop changes nothing.
  GenerationConfig c = ranged(64, {{0, "a"}, {2, "b"}, {62, "c"}}, 8);
  for (bool loop : {false, true}) {
    c.dual_scope.loop = loop;
    const PromptTravel t = prompt_travel(c);
    expect_rows_are_distributions(t);
    EXPECT_DOUBLE_EQ(w(t, 0, "b"), 0.3125) << "loop " << loop;  // (0 - 2 + 1/2) / 8 + 1/2
    EXPECT_DOUBLE_EQ(w(t, 1, "b"), 0.4375);
    EXPECT_DOUBLE_EQ(w(t, 0, "c"), 0.0) << "the blend does not wrap, with --loop neither";
    EXPECT_DOUBLE_EQ(w(t, 62, "c"), 0.5625);
    EXPECT_DOUBLE_EQ(w(t, 63, "c"), 0.6875);
    EXPECT_DOUBLE_EQ(w(t, 63, "a"), 0.0);
  }
  // A blend wider than the video: every frame a mix, still distributions.
  const PromptTravel wide = prompt_travel(ranged(64, {{0, "a"}, {32, "b"}}, 1000));
  expect_rows_are_distributions(wide);
  EXPECT_DOUBLE_EQ(w(wide, 0, "b"), (0 - 32 + 0.5) / 1000.0 + 0.5);
}

TEST(PromptTravel, PlainPromptsTakeTheirClipsPromptByTheReferenceRule) {
  // 4 clips of 8 frames, 3 prompts: clip c takes floor(c x 3 / 4) = a a b c.
  GenerationConfig c;
  c.prompts = {"a", "b", "c"};
  c.frames = 32;
  c.clips = 4;
  c.dual_scope.attn_padding = 2;
  c.prompt_blend = 4;
  vi::resolve_config(c, 2);
  const PromptTravel t = prompt_travel(c);
  ASSERT_EQ(t.prompts, (std::vector<std::string>{"a", "b", "c"}));
  for (int64_t f = 0; f < 32; ++f) {
    EXPECT_EQ(t.frame_prompt[static_cast<size_t>(f)], f < 16 ? 0u : f < 24 ? 1u : 2u) << "frame " << f;
  }
  expect_rows_are_distributions(t);
  EXPECT_DOUBLE_EQ(w(t, 7, "a"), 1.0) << "no boundary at the clip boundary 8: the same prompt";
  EXPECT_DOUBLE_EQ(w(t, 14, "b"), 0.125);
  EXPECT_DOUBLE_EQ(w(t, 15, "b"), 0.375);
  EXPECT_DOUBLE_EQ(w(t, 16, "b"), 0.625);
  EXPECT_DOUBLE_EQ(w(t, 17, "b"), 0.875);
  EXPECT_DOUBLE_EQ(w(t, 23, "c"), 0.375);
}

TEST(PromptTravel, SlotWeightsRepeatAShorterClipsLastFrame) {
  // 4 clips of 9, 9, 8, 8 frames in slots of 9 on one rank: slot rows 35 (clip 3's padding) repeat
  // frame 33; clip 2's padding (row 26) repeats frame 25.
  const PromptTravel t = prompt_travel(ranged(34, {{0, "a"}, {20, "b"}}, 6));
  auto local = vi::parallel::make_local_communicator();
  const auto layout = vi::parallel::ClipLayout::make(std::vector<int64_t>{9, 9, 8, 8}, *local);
  const at::Tensor rows = vi::pipeline::slot_weights(t, layout);
  ASSERT_EQ(rows.sizes().vec(), (std::vector<int64_t>{36, 2}));
  const std::vector<int64_t> frame_of_row = [] {
    std::vector<int64_t> out;
    int64_t first = 0;
    for (int64_t n : {9, 9, 8, 8}) {
      for (int64_t i = 0; i < 9; ++i) out.push_back(first + std::min<int64_t>(i, n - 1));
      first += n;
    }
    return out;
  }();
  for (int64_t r = 0; r < 36; ++r) {
    for (int64_t p = 0; p < 2; ++p) {
      EXPECT_FLOAT_EQ(rows[r][p].item<float>(), static_cast<float>(t.weight(frame_of_row[static_cast<size_t>(r)],
                                                                            static_cast<size_t>(p))))
          << "row " << r;
    }
  }
  EXPECT_FLOAT_EQ(rows[17][1].item<float>(), 1.0f / 12);  // frame 17: (17 - 20 + 1/2) / 6 + 1/2
  EXPECT_FLOAT_EQ(rows[18][1].item<float>(), 0.25f);      // clip 2's first frame, 18
}

TEST(PromptTravel, FrameTextStatesAreTheWeightedSumsAfterTheNegativeRows) {
  at::manual_seed(0);
  const at::Tensor prompts = at::randn({2, 3, 4}), negative = at::randn({1, 3, 4});
  const at::Tensor weights = at::tensor({1.0f, 0.0f, 0.25f, 0.75f, 0.0f, 1.0f}).reshape({3, 2});
  const at::Tensor out = vi::pipeline::frame_text_states(weights, prompts, negative);
  ASSERT_EQ(out.sizes().vec(), (std::vector<int64_t>{6, 3, 4}));
  for (int64_t r = 0; r < 3; ++r) EXPECT_TRUE(at::equal(out[r], negative[0])) << "uncond row " << r;
  EXPECT_TRUE(at::equal(out[3], prompts[0])) << "a one-hot row is its prompt's states exactly";
  EXPECT_TRUE(at::allclose(out[4], 0.25 * prompts[0] + 0.75 * prompts[1], 0, 1e-6));
  EXPECT_TRUE(at::equal(out[5], prompts[1]));
}

TEST(PromptTravel, LogLinesNameEachRangeAndEachBlend) {
  GenerationConfig c = ranged(64, {{0, "a cat"}, {32, "a dog"}}, 8);
  auto report = vi::pipeline::prompt_report(c);
  EXPECT_EQ(report.lines, (std::vector<std::string>{R"(frames 0-31: "a cat")",
                                                    R"(frames 28-35 blend "a cat" -> "a dog")",
                                                    R"(frames 32-63: "a dog")"}));
  EXPECT_TRUE(report.warnings.empty());
  // A hard switch: no blend line. A range hidden by a later one starting at the same frame: a warning.
  c = ranged(64, {{0, "a cat"}, {32, "a bird"}, {32, "a dog"}}, 0);
  c.frame_prompts[1].last_frame = 40;
  report = vi::pipeline::prompt_report(c);
  EXPECT_EQ(report.lines, (std::vector<std::string>{R"(frames 0-31: "a cat")", R"(frames 32-63: "a dog")"}));
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_NE(report.warnings[0].find(R"(no frame takes frame range 32-40: "a bird")"), std::string::npos)
      << report.warnings[0];
  // -1: the per-clip lines.
  c.prompt_blend = -1;
  EXPECT_EQ(vi::pipeline::prompt_report(c).lines, vi::clip_prompt_report(c).lines);
}

}  // namespace
