// Generation settings: the reference's config format is accepted as it is, our keys beside it,
// wrong types and impossible settings are refused naming the key or flag.
#include <gtest/gtest.h>

#include <cmath>

#include <filesystem>

#include "common/test_util.h"
#include "core/check.h"
#include "video_infinity/generation_config.h"

using vi::GenerationConfig;

namespace {

using vi::test::error_of;

GenerationConfig resolved(GenerationConfig c, int world = 1) {
  vi::resolve_config(c, world);
  return c;
}

TEST(GenerationConfig, ReferenceExampleConfigIsAcceptedAsItIs) {
  GenerationConfig c;
  vi::apply_config_file(c, vi::test::source_dir() + "/configs/reference_example.json");
  EXPECT_EQ(c.dtype, "fp16");
  EXPECT_EQ(c.seed, 123);
  EXPECT_EQ(c.steps, 30);
  EXPECT_DOUBLE_EQ(c.guidance, 12);
  EXPECT_EQ(c.frames_per_clip, 24);
  EXPECT_EQ(c.height, 320);
  EXPECT_EQ(c.width, 512);
  EXPECT_DOUBLE_EQ(c.export_fps, 8);
  EXPECT_EQ(c.dual_scope.attn_padding, 8);
  EXPECT_EQ(c.dual_scope.top_k, 16);
  EXPECT_TRUE(c.dual_scope.dynamic_scale);
  EXPECT_DOUBLE_EQ(c.dual_scope.local_phase.local_bias, 10);
  EXPECT_DOUBLE_EQ(c.dual_scope.global_phase.global_bias, 10);
  EXPECT_EQ(c.dual_scope.conv_padding, 4);  // conv_layer {} keeps the plugin's default
  EXPECT_EQ(c.output, "./exp/video-infinity.mp4");
  ASSERT_EQ(c.prompts.size(), 1u);
  auto r = resolved(c, 4);
  EXPECT_EQ(r.clips, 4);
  EXPECT_EQ(r.frames, 96);
}

TEST(GenerationConfig, OwnKeysAndWrongTypes) {
  GenerationConfig c;
  vi::apply_config_json(c, nlohmann::json::parse(R"({"frames": 64, "clips": 4, "scheduler": "ddim",
      "attn_padding": 2, "prompt": "a cat", "sync_groupnorm": true, "some_future_key": 1})"), "my.json");
  EXPECT_EQ(c.frames, 64);
  EXPECT_EQ(c.scheduler, "ddim");
  EXPECT_TRUE(c.dual_scope.sync_groupnorm);
  EXPECT_EQ(c.prompts, std::vector<std::string>{"a cat"});
  auto e = error_of([&] { vi::apply_config_json(c, nlohmann::json::parse(R"({"steps": "many"})"), "my.json"); });
  EXPECT_NE(e.find("my.json: key 'steps': expected an integer, got string"), std::string::npos) << e;
  e = error_of([&] {
    vi::apply_config_json(c, nlohmann::json::parse(R"({"plugin_configs": {"attn": {"top_k": 1.5}}})"), "ref.json");
  });
  EXPECT_NE(e.find("ref.json: plugin_configs: attn: key 'top_k'"), std::string::npos) << e;
  e = error_of([&] { vi::apply_config_json(c, nlohmann::json::parse(R"({"dtype": "torch.int8"})"), "my.json"); });
  EXPECT_NE(e.find("unknown dtype 'torch.int8'"), std::string::npos) << e;
}

TEST(GenerationConfig, ImpossibleSettingsNameTheFlag) {
  GenerationConfig base;
  base.prompts = {"x"};
  struct Case {
    std::function<void(GenerationConfig&)> change;
    int world;
    const char* needle;
  };
  std::vector<Case> cases = {
      {[](auto& c) { c.frames = 30; c.clips = 4; c.frames_per_clip = 7; }, 1,
       "--frames 30 in 4 clips makes clips of 8 frames at most, but --frames-per-clip is 7"},
      {[](auto& c) { c.frames = 3; c.clips = 4; }, 1, "--frames 3 is fewer than the 4 clips"},
      {[](auto& c) { c.frames = 63; c.clips = 4; c.dual_scope.enabled = false; }, 1,
       "--no-dual-scope runs clips of equal length"},
      {[](auto& c) { c.clips = 3; }, 2, "--clips 3 is not a multiple of the number of ranks (2)"},
      {[](auto& c) { c.frames_per_clip = 6; }, 1, "shorter than the attention halo --attn-padding 8"},
      {[](auto& c) { c.frames = 31; c.clips = 4; }, 1, "clips of 7 frames are shorter than the attention halo"},
      {[](auto& c) { c.frames_per_clip = 8; c.dual_scope.attn_padding = 2; c.dual_scope.conv_padding = 9; }, 1,
       "--conv-padding 9"},
      {[](auto& c) { c.height = 100; }, 1, "--height must be a positive multiple of 8"},
      {[](auto& c) { c.width = -8; }, 1, "--width must be a positive multiple of 8"},
      {[](auto& c) { c.steps = 0; }, 1, "--steps must be at least 1"},
      {[](auto& c) { c.guidance = -1; }, 1, "--guidance must be >= 0"},
      {[](auto& c) { c.scheduler = "euler"; }, 1, "unknown scheduler 'euler'"},
      {[](auto& c) { c.clips = -2; }, 1, "--clips must be positive"},
      {[](auto& c) { c.frames = -5; }, 1, "--frames must be positive"},
      {[](auto& c) { c.prompts.clear(); }, 1, "no prompt given"},
      {[](auto& c) { c.dtype = "int8"; }, 1, "--dtype"},
      {[](auto& c) { c.dual_scope.attn_scale = std::nan(""); }, 1, "--attn-scale must be a positive number"},
      {[](auto& c) { c.dual_scope.local_phase.local_bias = HUGE_VAL; }, 1, "--local-bias / --global-bias must be finite"},
      {[](auto& c) { c.checkpoint_every = 3; }, 1, "--checkpoint-every 3 needs --checkpoint-dir"},
      {[](auto& c) { c.resume = true; }, 1, "--resume needs --checkpoint-dir"},
      {[](auto& c) { c.comm_timeout = -1; }, 1, "--comm-timeout must be >= 0"},
      // Sizes that would overflow frames = clips x frames per clip or allocate without bound
      // (the json_config fuzz target's out-of-memory: 2e8 clips).
      {[](auto& c) { c.clips = 200000000; }, 1, "--clips must be at most 65536, got 200000000"},
      {[](auto& c) { c.clips = 1 << 30; c.frames_per_clip = int64_t{1} << 40; }, 1, "--clips must be at most"},
      {[](auto& c) { c.frames_per_clip = int64_t{1} << 40; }, 1, "--frames-per-clip must be at most 65536"},
      {[](auto& c) { c.frames = int64_t{1} << 40; c.clips = 8; }, 1, "more than the 65536 allowed"},
      {[](auto& c) { c.height = 1 << 20; }, 1, "--height must be a positive multiple of 8 up to 16384"},
  };
  for (const auto& k : cases) {
    GenerationConfig c = base;
    k.change(c);
    std::string e = error_of([&] { vi::resolve_config(c, k.world); });
    EXPECT_NE(e.find(k.needle), std::string::npos) << "expected '" << k.needle << "', got: " << e;
  }
  GenerationConfig ok = base;
  ok.frames = 96;
  ok.clips = 4;
  EXPECT_EQ(resolved(ok, 2).frames_per_clip, 24);
}

TEST(GenerationConfig, AnyFrameCountSplitsIntoClipsDifferingByOneFrame) {
  GenerationConfig c;
  c.prompts = {"x"};
  c.frames = 2300;  // the paper's video on 8 ranks: 287.5 frames per clip
  c = resolved(c, 8);
  EXPECT_EQ(c.clips, 8);
  EXPECT_EQ(c.frames, 2300);
  EXPECT_EQ(c.frames_per_clip, 288);  // the longest clip
  EXPECT_EQ(vi::clip_frame_counts(c), (std::vector<int64_t>{288, 288, 288, 288, 287, 287, 287, 287}));
  EXPECT_EQ(vi::clip_first_frames(c), (std::vector<int64_t>{0, 288, 576, 864, 1152, 1439, 1726, 2013}));
  // The same on 3 ranks, and the sidecar's settings (frames and the longest clip) resolve again.
  GenerationConfig three;
  three.prompts = {"x"};
  three.frames = 2300;
  three = resolved(three, 3);
  EXPECT_EQ(vi::clip_frame_counts(three), (std::vector<int64_t>{767, 767, 766}));
  GenerationConfig again;
  again.prompts = {"x"};
  again.frames = 2300;
  again.frames_per_clip = 767;
  again.clips = 3;
  EXPECT_EQ(vi::clip_frame_counts(resolved(again, 3)), vi::clip_frame_counts(three));
  // Equal clips are unchanged.
  GenerationConfig equal;
  equal.prompts = {"x"};
  equal.frames = 96;
  equal.clips = 4;
  EXPECT_EQ(vi::clip_frame_counts(resolved(equal, 2)), (std::vector<int64_t>(4, 24)));
}

TEST(GenerationConfig, ClipPromptsFollowTheReferenceRule) {
  GenerationConfig c;
  c.prompts = {"a", "b", "c"};
  c.clips = 8;
  c.frames_per_clip = 16;
  // floor(c / 8 * 3): 0 0 0 1 1 1 2 2
  EXPECT_EQ(vi::clip_prompts(resolved(c, 2)), (std::vector<std::string>{"a", "a", "a", "b", "b", "b", "c", "c"}));
}

TEST(GenerationConfig, PromptsFileWithFrameRanges) {
  std::string dir = vi::test::make_temp_dir("prompts");
  vi::test::write_file(dir + "/ranges.txt", "# a story\n0-47: a cat wakes up\n\n48-: the cat runs\r\n");
  GenerationConfig c;
  c.prompts_file = dir + "/ranges.txt";
  c.frames = 96;
  c.clips = 4;  // 24 frames per clip: clips 0,1 -> first prompt, 2,3 -> second
  c = resolved(c, 1);
  EXPECT_EQ(vi::clip_prompts(c), (std::vector<std::string>{"a cat wakes up", "a cat wakes up", "the cat runs", "the cat runs"}));
  vi::test::write_file(dir + "/plain.txt", "first\nsecond\n");
  GenerationConfig p;
  vi::read_prompts_file(p, dir + "/plain.txt");
  EXPECT_EQ(p.prompts, (std::vector<std::string>{"first", "second"}));
  vi::test::write_file(dir + "/mixed.txt", "0-10: a\nplain\n");
  EXPECT_NE(error_of([&] { vi::read_prompts_file(p, dir + "/mixed.txt"); }).find("mixes"), std::string::npos);
  vi::test::write_file(dir + "/empty.txt", "# nothing\n\n");
  EXPECT_NE(error_of([&] { vi::read_prompts_file(p, dir + "/empty.txt"); }).find("no prompts"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(GenerationConfig, PromptsFileLineForms) {
  std::string dir = vi::test::make_temp_dir("prompt-forms");
  // Spaces and tabs around the numbers, the dash and the colon; an open end.
  vi::test::write_file(dir + "/spaced.txt", " 0 -\t7 :  a cat\n8 - : a dog : running\n");
  GenerationConfig c;
  vi::read_prompts_file(c, dir + "/spaced.txt");
  ASSERT_EQ(c.frame_prompts.size(), 2u);
  EXPECT_EQ(c.frame_prompts[0].first_frame, 0);
  EXPECT_EQ(c.frame_prompts[0].last_frame, 7);
  EXPECT_EQ(c.frame_prompts[0].text, "a cat");
  EXPECT_EQ(c.frame_prompts[1].first_frame, 8);
  EXPECT_EQ(c.frame_prompts[1].last_frame, -1);
  EXPECT_EQ(c.frame_prompts[1].text, "a dog : running");
  // Lines that only look like ranges are plain prompts.
  vi::test::write_file(dir + "/plain.txt", "10 cats: sleeping\n-5: x\n3-4 a\n");
  GenerationConfig p;
  vi::read_prompts_file(p, dir + "/plain.txt");
  EXPECT_TRUE(p.frame_prompts.empty());
  EXPECT_EQ(p.prompts, (std::vector<std::string>{"10 cats: sleeping", "-5: x", "3-4 a"}));
  // A megabyte-long line in either form (the regex this replaced overflowed the stack on these).
  const std::string long_text(1 << 20, 'a');
  vi::test::write_file(dir + "/long.txt", "0-: " + long_text + "\n");
  GenerationConfig l;
  vi::read_prompts_file(l, dir + "/long.txt");
  ASSERT_EQ(l.frame_prompts.size(), 1u);
  EXPECT_EQ(l.frame_prompts[0].text, long_text);
  vi::test::write_file(dir + "/long-plain.txt", long_text + "\n");
  vi::read_prompts_file(l, dir + "/long-plain.txt");
  EXPECT_EQ(l.prompts, std::vector<std::string>{long_text});
  // Frame numbers past 12 digits are refused naming the line.
  vi::test::write_file(dir + "/huge.txt", "0-1: a\n1234567890123-: b\n");
  EXPECT_NE(error_of([&] { vi::read_prompts_file(p, dir + "/huge.txt"); }).find("huge.txt:2"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
