// Generation settings: the reference's config format is accepted as it is, our keys beside it,
// wrong types and impossible settings are refused naming the key or flag.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cmath>

#include <filesystem>
#include <sstream>

#include "common/test_util.h"
#include "core/check.h"
#include "pipeline/settings.h"
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
  // As many prompts as clips: clip c takes prompt c, also where the reference's floats give
  // 1 / 49 * 49 = 0.999...
  GenerationConfig d;
  for (int i = 0; i < 49; ++i) d.prompts.push_back(std::to_string(i));
  d.clips = 49;
  d.frames_per_clip = 8;
  d.dual_scope.attn_padding = 2;
  EXPECT_EQ(vi::clip_prompts(resolved(d, 1)), d.prompts);
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

// Lines logged at warn and above while `f` runs.
std::string warnings_of(const std::function<void()>& f) { return vi::test::log_of(f, spdlog::level::warn); }

GenerationConfig four_clips_of_16() {
  GenerationConfig c;
  c.frames = 64;
  c.clips = 4;
  c.dual_scope.attn_padding = 2;
  return c;
}

TEST(ClipPrompts, FrameCountsAndTheLogLinesCollapseRepeats) {
  GenerationConfig c = four_clips_of_16();
  c.prompts = {"a cat", "a dog"};
  c = resolved(c, 2);
  EXPECT_EQ(vi::clip_frame_counts(c), (std::vector<int64_t>{16, 16, 16, 16}));
  auto report = vi::clip_prompt_report(c);
  EXPECT_EQ(report.lines, (std::vector<std::string>{R"(clips 0-1 (frames 0-31): "a cat")",
                                                    R"(clips 2-3 (frames 32-63): "a dog")"}));
  EXPECT_TRUE(report.warnings.empty());
  c.prompts = {"a", "b", "c", "d"};
  report = vi::clip_prompt_report(c);
  EXPECT_EQ(report.lines, (std::vector<std::string>{R"(clip 0 (frames 0-15): "a")", R"(clip 1 (frames 16-31): "b")",
                                                    R"(clip 2 (frames 32-47): "c")", R"(clip 3 (frames 48-63): "d")"}));
  // Not repeats: the same text at clips 0 and 2 is two lines.
  c.prompts = {"a", "b", "a", "b"};
  EXPECT_EQ(vi::clip_prompt_report(c).lines.size(), 4u);
}

TEST(ClipPrompts, PromptsNoClipTakesAreNamedInAWarning) {
  GenerationConfig c = four_clips_of_16();
  c.clips = 2;
  c.frames = 32;
  c.prompts = {"first", "second", "third"};
  c = resolved(c, 2);
  // floor(c x 3 / 2): clip 0 -> 0, clip 1 -> 1; "third" is dropped.
  EXPECT_EQ(vi::clip_prompts(c), (std::vector<std::string>{"first", "second"}));
  const auto report = vi::clip_prompt_report(c);
  ASSERT_EQ(report.warnings.size(), 1u);
  const std::string& w = report.warnings[0];
  EXPECT_NE(w.find(R"(3 prompts for 2 clips: no clip takes prompt 2 "third")"), std::string::npos) << w;
  EXPECT_EQ(w.find("second"), std::string::npos) << w;
}

TEST(ClipPrompts, FrameRangesNoClipStartsInAreNamedInAWarning) {
  std::string dir = vi::test::make_temp_dir("ranges-unused");
  // Clips start at 0, 16, 32, 48: none in 5-15, so "a bird" is never used.
  vi::test::write_file(dir + "/p.txt", "0-4: a cat\n5-15: a bird\n16-: a dog\n");
  GenerationConfig c = four_clips_of_16();
  c.prompts_file = dir + "/p.txt";
  c = resolved(c, 1);
  EXPECT_EQ(vi::clip_prompts(c), (std::vector<std::string>{"a cat", "a dog", "a dog", "a dog"}));
  const auto report = vi::clip_prompt_report(c);
  EXPECT_EQ(report.lines, (std::vector<std::string>{R"(clip 0 (frames 0-15): "a cat")",
                                                    R"(clips 1-3 (frames 16-63): "a dog")"}));
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_NE(report.warnings[0].find(R"(no clip starts in frame range 5-15: "a bird")"), std::string::npos)
      << report.warnings[0];
  std::filesystem::remove_all(dir);
}

TEST(ClipPrompts, PromptSourcesThatWouldBeDroppedAreErrors) {
  std::string dir = vi::test::make_temp_dir("prompt-sources");
  vi::test::write_file(dir + "/p.txt", "from the file\n");
  GenerationConfig c = four_clips_of_16();
  c.prompts = {"inline"};
  c.prompts_file = dir + "/p.txt";
  std::string e = error_of([&] { resolved(c); });
  EXPECT_NE(e.find("--prompt and --prompts-file " + dir + "/p.txt are both given"), std::string::npos) << e;
  EXPECT_NE(e.find("keep one"), std::string::npos) << e;
  // The file alone: read once, and resolving the result again does not read it twice.
  c.prompts.clear();
  GenerationConfig once = resolved(c);
  EXPECT_EQ(once.prompts, std::vector<std::string>{"from the file"});
  EXPECT_EQ(resolved(once).prompts, std::vector<std::string>{"from the file"});
  // A JSON config with both plain prompts and frame ranges, or ranges out of order.
  GenerationConfig j;
  vi::apply_config_json(j, nlohmann::json::parse(R"({"frames": 32, "clips": 2, "attn_padding": 2, "prompts": ["x"],
      "frame_prompts": [{"first_frame": 0, "prompt": "y"}]})"), "j.json");
  e = error_of([&] { resolved(j); });
  EXPECT_NE(e.find("both prompts and frame_prompts given"), std::string::npos) << e;
  j.prompts.clear();
  j.frame_prompts = {{8, -1, "late"}, {0, 7, "early"}};
  e = error_of([&] { resolved(j); });
  EXPECT_NE(e.find("frame_prompts: the ranges must be in frame order, the first starting at frame 0"),
            std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

// What the command line does: the file, then drop_overridden, then each flag given.
GenerationConfig file_then_flags(const nlohmann::json& file, const nlohmann::json& flags_json, int world) {
  GenerationConfig cfg, flags;
  vi::apply_config_json(cfg, file, "file.json");
  vi::apply_config_json(flags, flags_json, "flags");
  std::set<std::string> given;
  for (const auto& [key, value] : flags_json.items()) given.insert(key);
  vi::drop_overridden(cfg, flags, given);
  for (const auto& key : given) {
    std::visit([&](auto field) { field(cfg) = field(flags); }, vi::pipeline::setting(key).field);
  }
  return resolved(cfg, world);
}

TEST(ConfigOverrides, GeometryFlagsWinOverTheFile) {
  const auto reference =
      nlohmann::json::parse(vi::test::read_file(vi::test::source_dir() + "/configs/reference_example.json"));
  // The reference's num_frames is frames per clip (24); the ranks give the clips.
  struct Case {
    nlohmann::json file, flags;
    int world;
    int64_t frames, per_clip, clips;
  };
  const auto sidecar = nlohmann::json{{"frames", 64}, {"frames_per_clip", 16}, {"clips", 4}, {"attn_padding", 2},
                                      {"prompts", nlohmann::json::array({"x"})}};
  const std::vector<Case> cases = {
      {reference, {{"frames", 16}, {"attn_padding", 2}}, 2, 16, 8, 2},
      {reference, {{"frames_per_clip", 8}, {"attn_padding", 2}}, 2, 16, 8, 2},
      {reference, {{"clips", 4}}, 2, 96, 24, 4},
      {reference, {{"frames", 64}, {"clips", 4}, {"attn_padding", 2}}, 2, 64, 16, 4},
      // A sidecar holds all three: each flag keeps what it does not decide.
      {sidecar, {{"frames", 32}}, 2, 32, 8, 4},
      {sidecar, {{"frames_per_clip", 8}}, 2, 32, 8, 4},
      {sidecar, {{"clips", 8}}, 2, 64, 8, 8},
      {sidecar, {{"clips", 2}, {"frames_per_clip", 10}}, 2, 20, 10, 2},
      {sidecar, {{"frames", 128}, {"frames_per_clip", 32}}, 2, 128, 32, 4},  // agree with the file's 4 clips
      {sidecar, {{"frames", 64}, {"frames_per_clip", 32}}, 2, 64, 32, 2},    // do not: clips from the ranks
      {sidecar, nlohmann::json::object(), 4, 64, 16, 4},
      {sidecar, {{"frames", 24}, {"frames_per_clip", 4}, {"clips", 6}}, 2, 24, 4, 6},
  };
  for (const auto& k : cases) {
    GenerationConfig c;
    const std::string e = error_of([&] { c = file_then_flags(k.file, k.flags, k.world); });
    EXPECT_EQ(e, "") << k.flags.dump();
    EXPECT_EQ(c.frames, k.frames) << k.flags.dump();
    EXPECT_EQ(c.frames_per_clip, k.per_clip) << k.flags.dump();
    EXPECT_EQ(c.clips, k.clips) << k.flags.dump();
  }
}

TEST(ConfigOverrides, PromptFlagsReplaceEveryPromptOfTheFile) {
  std::string dir = vi::test::make_temp_dir("prompt-overrides");
  vi::test::write_file(dir + "/p.txt", "0-15: file one\n16-: file two\n");
  const auto base = nlohmann::json{{"frames", 32}, {"clips", 2}, {"attn_padding", 2}};
  auto with = [&](nlohmann::json j, const char* key, nlohmann::json v) {
    j[key] = std::move(v);
    return j;
  };
  // The file's prompts, replaced by --prompts-file; the file's ranges, replaced by --prompt.
  auto c = file_then_flags(with(base, "prompts", {"old"}), {{"prompts_file", dir + "/p.txt"}}, 1);
  EXPECT_EQ(vi::clip_prompts(c), (std::vector<std::string>{"file one", "file two"}));
  c = file_then_flags(with(base, "frame_prompts", nlohmann::json::array({{{"first_frame", 0}, {"prompt", "old"}}})), {{"prompts", {"new"}}}, 1);
  EXPECT_EQ(vi::clip_prompts(c), (std::vector<std::string>{"new", "new"}));
  c = file_then_flags(with(base, "prompts_file", dir + "/p.txt"), {{"prompts", {"new", "newer"}}}, 1);
  EXPECT_EQ(vi::clip_prompts(c), (std::vector<std::string>{"new", "newer"}));
  std::filesystem::remove_all(dir);
}

TEST(ConfigOverrides, ReferenceLaunchKeysWarnWhatToDoInstead) {
  GenerationConfig c;
  const std::string w = warnings_of(
      [&] { vi::apply_config_file(c, vi::test::source_dir() + "/configs/reference_example.json"); });
  EXPECT_NE(w.find("devices [0,1,2,3]: ignored; launch one rank per GPU with mpirun -np 4 (the node-local rank picks "
                   "the GPU)"),
            std::string::npos)
      << w;
  EXPECT_NE(w.find("master_port 29516: ignored"), std::string::npos) << w;
  // Keys the reference itself never uses stay quiet.
  EXPECT_EQ(w.find("top_k_chunk_size"), std::string::npos) << w;
  EXPECT_EQ(w.find("conv_3d"), std::string::npos) << w;
}

TEST(ConfigOverrides, ASidecarReadsBackAsItsSettings) {
  std::string dir = vi::test::make_temp_dir("sidecar-read");
  vi::test::write_file(dir + "/p.txt", "0-15: one\n16-: two\n");
  GenerationConfig c = four_clips_of_16();
  c.prompts_file = dir + "/p.txt";
  c.seed = 77;
  c.dtype = "auto";
  c = resolved(c, 2);
  // The sidecar's shape: settings, plus the run's record (a top-level dtype that is no --dtype value).
  const nlohmann::json sidecar = {{"settings", vi::config_to_json(c)}, {"seed", 77}, {"dtype", "Float"},
                                  {"resolved_dtype", "fp32"}, {"times_s", {{"total", 1.0}}},
                                  {"model_files", {{"files", nlohmann::json::array()}}}};
  GenerationConfig replay;
  const std::string w = warnings_of([&] { vi::apply_config_json(replay, sidecar, "out.mp4.json"); });
  EXPECT_EQ(w, "");
  EXPECT_EQ(replay.dtype, "auto");
  EXPECT_EQ(replay.seed, 77);
  ASSERT_EQ(replay.frame_prompts.size(), 2u);
  EXPECT_EQ(replay.frame_prompts[1].first_frame, 16);
  replay = resolved(replay, 2);
  EXPECT_EQ(vi::config_to_json(replay), vi::config_to_json(c));
  EXPECT_EQ(vi::clip_prompts(replay), (std::vector<std::string>{"one", "two", "two", "two"}));
  std::filesystem::remove_all(dir);
}

}  // namespace
