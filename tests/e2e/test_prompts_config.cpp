// Prompts and config files end to end on a random tiny model: an unquoted prompt is refused with
// the quoting that was meant; the log says which prompt each clip takes and warns about prompts
// no clip takes; flags override a --config file (the reference's too); a sidecar replays its run
// to the same latents; the MP4 carries the prompts and the seed as tags; prompt travel logs its
// blends and records --prompt-blend in the sidecar.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <regex>

#ifdef VI_HAVE_FFMPEG
extern "C" {
#include <libavformat/avformat.h>
}
#endif

#include "common/test_util.h"
#include "core/safetensors.h"
#include "video_infinity/communicator.h"
#include "video_infinity/video_writer.h"

namespace fs = std::filesystem;
using vi::test::run_command;

namespace {

// The MP4's container tags, read back with libavformat.
std::map<std::string, std::string> mp4_tags(const std::string& path) {
  std::map<std::string, std::string> tags;
#ifdef VI_HAVE_FFMPEG
  AVFormatContext* format = nullptr;
  if (avformat_open_input(&format, path.c_str(), nullptr, nullptr) != 0) return tags;
  const AVDictionaryEntry* e = nullptr;
  while ((e = av_dict_get(format->metadata, "", e, AV_DICT_IGNORE_SUFFIX)) != nullptr) tags[e->key] = e->value;
  avformat_close_input(&format);
#endif
  return tags;
}

class PromptsConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = vi::test::make_temp_dir("prompts-config");
    model_ = dir_ + "/model";
    auto r = run_command(vi::test::binary_path() + " make-test-model --preset tiny --seed 3 --out " + model_);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static int ranks() { return vi::parallel::built_with_mpi() ? 2 : 1; }
  // The binary on ranks() ranks.
  static std::string bin() {
    return (vi::parallel::built_with_mpi() ? vi::test::mpiexec(ranks()) : std::string()) + vi::test::binary_path();
  }
  // Sizes that run in a second or two; no prompt.
  static std::string small() {
    return " --model " + model_ + " --height 64 --width 64 --steps 2 --attn-padding 2 --attn-top-k 4 --conv-padding 2";
  }
  static nlohmann::json sidecar(const std::string& mp4) {
    return nlohmann::json::parse(vi::test::read_file(mp4 + ".json"));
  }

  static std::string dir_, model_;
};
std::string PromptsConfigTest::dir_;
std::string PromptsConfigTest::model_;

TEST_F(PromptsConfigTest, UnquotedPromptIsRefusedWithTheQuotingMeant) {
  const std::string out = dir_ + "/unquoted.mp4";
  auto r = run_command(vi::test::binary_path() + small() + " --frames 16 -p a cat --output " + out);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("'cat' after --prompt a: --prompt takes one value; put a value with spaces in quotes: "
                          "--prompt \"a cat\""),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(out));
  // --prompt together with --prompts-file: one would be dropped, so neither is taken.
  vi::test::write_file(dir_ + "/one.txt", "a cat\n");
  r = run_command(vi::test::binary_path() + small() + " --frames 16 -p 'a dog' --prompts-file " + dir_ +
                  "/one.txt --output " + out);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("--prompt and --prompts-file " + dir_ + "/one.txt are both given"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(PromptsConfigTest, LogSaysWhichPromptEachClipTakesAndMp4CarriesThem) {
  const std::string out = dir_ + "/clips.mp4";
  // 4 clips of 8 frames, 3 prompts: clip c takes prompt floor(c x 3 / 4) = 0 0 1 2.
  auto r = run_command(bin() + small() + " --frames 32 --clips 4 --seed 9 -p 'a red fox' --prompt 'a grey wolf' "
                       "-p 'a brown bear' --progress none --output " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* line : {R"([info] clips 0-1 (frames 0-15): "a red fox")", R"([info] clip 2 (frames 16-23): "a grey wolf")",
                           R"([info] clip 3 (frames 24-31): "a brown bear")"}) {
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  }
  EXPECT_EQ(r.output.find("[warning]"), std::string::npos) << r.output;
  EXPECT_EQ(sidecar(out)["settings"]["prompts"],
            (std::vector<std::string>{"a red fox", "a grey wolf", "a brown bear"}));
  if (!vi::video::mp4_supported()) GTEST_SKIP() << "built without ffmpeg: no MP4";
  auto tags = mp4_tags(out);
  EXPECT_EQ(tags["description"], "clips 0-1 (frames 0-15): \"a red fox\"\nclip 2 (frames 16-23): \"a grey wolf\"\n"
                                 "clip 3 (frames 24-31): \"a brown bear\"");
  EXPECT_NE(tags["comment"].find("seed 9, 2 steps of dpmpp-2m-sde"), std::string::npos) << tags["comment"];
}

TEST_F(PromptsConfigTest, PromptsNoClipTakesAreAWarning) {
  const std::string out = dir_ + "/dropped.mp4";
  auto r = run_command(bin() + small() + " --frames 16 --clips 2 -p one -p two -p three --quiet --output " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(R"(3 prompts for 2 clips: no clip takes prompt 2 "three")"), std::string::npos) << r.output;
  if (!vi::video::mp4_supported()) return;
  EXPECT_EQ(mp4_tags(out)["description"], "clip 0 (frames 0-7): \"one\"\nclip 1 (frames 8-15): \"two\"");
}

TEST_F(PromptsConfigTest, ReferenceConfigTakesTheFramesFlagAndWarnsAboutDevices) {
  // configs/reference_example.json: num_frames 24 per clip, devices [0,1,2,3]; --frames wins.
  const std::string out = dir_ + "/ref.mp4";
  auto r = run_command(bin() + " --config " + vi::test::source_dir() + "/configs/reference_example.json" + small() +
                       " --dtype fp32 --frames 16 --quiet --output " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("devices [0,1,2,3]: ignored; launch one rank per GPU with mpirun -np 4 (the node-local "
                          "rank picks the GPU)"),
            std::string::npos)
      << r.output;
  const auto s = sidecar(out)["settings"];
  EXPECT_EQ(s["frames"], 16);
  EXPECT_EQ(s["clips"], ranks());
  EXPECT_EQ(s["frames_per_clip"], 16 / ranks());
  EXPECT_EQ(s["steps"], 2);      // a flag
  EXPECT_EQ(s["guidance"], 12);  // the file
  EXPECT_EQ(s["prompts"][0].get<std::string>().rfind("A beagle wearing diving goggles", 0), 0u);
}

TEST_F(PromptsConfigTest, SidecarReplaysTheRunToTheSameLatents) {
  // Frame ranges from a prompts file, the sampler's noise, 2 ranks: all of it from the sidecar.
  vi::test::write_file(dir_ + "/ranges.txt", "0-7: a red fox\n8-: a grey wolf\n");
  const std::string a = dir_ + "/a.mp4", b = dir_ + "/b.mp4";
  auto r = run_command(bin() + small() + " --frames 16 --clips 2 --seed 5 --negative-prompt 'blurry' --prompts-file " +
                       dir_ + "/ranges.txt --save-latents " + a + ".safetensors --progress none --output " + a);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(R"(clip 1 (frames 8-15): "a grey wolf")"), std::string::npos) << r.output;
  const auto first = sidecar(a);

  r = run_command(bin() + " --config " + a + ".json --save-latents " + b + ".safetensors --output " + b);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.find("[warning]"), std::string::npos) << "the sidecar reads without warnings\n" << r.output;
  EXPECT_NE(r.output.find(R"(clip 0 (frames 0-7): "a red fox")"), std::string::npos) << r.output;
  const std::string latents_a = vi::test::read_file(a + ".safetensors");
  EXPECT_GT(latents_a.size(), 1000u);
  EXPECT_TRUE(latents_a == vi::test::read_file(b + ".safetensors")) << "replayed latents differ";
  auto settings = sidecar(b)["settings"];
  settings["output"] = a;
  settings["save_latents"] = a + ".safetensors";
  EXPECT_EQ(settings, first["settings"]);

  // What the sidecar records besides the settings.
  EXPECT_TRUE(std::regex_match(first["date"].get<std::string>(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
      << first["date"];
  EXPECT_NE(first["host"], "");
  const std::string command = first["command_line"];
  EXPECT_EQ(command.rfind(vi::test::binary_path(), 0), 0u) << command;
  EXPECT_NE(command.find(" --negative-prompt blurry --prompts-file " + dir_ + "/ranges.txt "), std::string::npos)
      << command;
  EXPECT_NE(first["versions"]["git"], "");
  EXPECT_EQ(first["resolved_dtype"], "fp32");
  EXPECT_FALSE(first.contains("dtype"));
  EXPECT_EQ(first["settings"]["frame_prompts"][1]["prompt"], "a grey wolf");
  const auto& files = first["model_files"]["files"];
  ASSERT_GE(files.size(), 9u) << first["model_files"].dump(1);
  int unet_weights = 0;
  for (const auto& f : files) {
    if (f["path"] == model_ + "/unet/diffusion_pytorch_model.safetensors") {
      ++unet_weights;
      EXPECT_EQ(f["component"], "unet");
      EXPECT_EQ(f["bytes"], fs::file_size(model_ + "/unet/diffusion_pytorch_model.safetensors"));
      EXPECT_EQ(f["sha256"].get<std::string>().size(), 64u);  // the tiny model's files are all under 64 MiB
    }
  }
  EXPECT_EQ(unet_weights, 1) << files.dump(1);
  if (!vi::video::mp4_supported()) return;
  const auto tags = mp4_tags(b);
  EXPECT_EQ(tags.at("description"), "clip 0 (frames 0-7): \"a red fox\"\nclip 1 (frames 8-15): \"a grey wolf\"");
  EXPECT_NE(tags.at("comment").find("seed 5, 2 steps of dpmpp-2m-sde, guidance 12, negative prompt \"blurry\""),
            std::string::npos)
      << tags.at("comment");
}

TEST_F(PromptsConfigTest, PromptTravelLogsEachBlendAndTheSidecarRecordsIt) {
  // A range starting inside clip 0 of 2, blended over 4 frames: frames 10-13 mix the two prompts.
  vi::test::write_file(dir_ + "/travel.txt", "0-11: a red fox\n12-: a grey wolf\n");
  const std::string out = dir_ + "/travel.mp4";
  auto r = run_command(bin() + small() + " --frames 16 --clips 2 --prompts-file " + dir_ +
                       "/travel.txt --prompt-blend 4 --progress none --output " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string lines[] = {R"([info] frames 0-11: "a red fox")",
                               R"([info] frames 10-13 blend "a red fox" -> "a grey wolf")",
                               R"([info] frames 12-15: "a grey wolf")"};
  size_t at = 0;
  for (const std::string& line : lines) {
    at = r.output.find(line, at);
    EXPECT_NE(at, std::string::npos) << line << " (in this order)\n" << r.output;
  }
  EXPECT_EQ(r.output.find("[warning]"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("clip 0 (frames"), std::string::npos) << "no per-clip lines\n" << r.output;
  EXPECT_EQ(sidecar(out)["settings"]["prompt_blend"], 4);
  if (!vi::video::mp4_supported()) return;
  EXPECT_EQ(mp4_tags(out)["description"], "frames 0-11: \"a red fox\"\nframes 10-13 blend \"a red fox\" -> "
                                          "\"a grey wolf\"\nframes 12-15: \"a grey wolf\"");
}

}  // namespace
