// The settings table drives the flags, the JSON config, the sidecar and the checkpoint
// fingerprint: these properties hold for every entry, so a new entry is checked as it lands.
#include <gtest/gtest.h>

#include <set>

#include "common/test_util.h"
#include "core/check.h"
#include "core/json_config.h"
#include "pipeline/settings.h"
#include "schedulers/registry.h"
#include "video_infinity/generation_config.h"

namespace vi::pipeline {
namespace {

using test::error_of;

// A config far from the defaults in every recorded setting.
GenerationConfig unusual() {
  GenerationConfig c;
  c.model_dir = "m";
  c.unet_dir = "u";
  c.prompts = {"a", "b"};
  c.frame_prompts = {{0, 9, "first"}, {10, -1, "rest"}};
  c.negative_prompt = "blurry";
  c.frames = 40;
  c.frames_per_clip = 20;
  c.clips = 2;
  c.height = 64;
  c.width = 96;
  c.steps = 7;
  c.guidance = 3.5;
  c.fps = 12;
  c.export_fps = 6;
  c.seed = -4;
  c.scheduler = "ddim";
  c.karras = true;
  c.dtype = "bf16";
  c.device = "cpu";
  c.frame_chunk = 3;
  c.vae_chunk = 2;
  c.cfg_serial = true;
  c.channels_last = true;
  c.dual_scope = {false, 3, 5, 0.5, true, false, {700, 1, 2}, {600, 3, 4}, 2, true, true};
  c.output = "o.mp4";
  c.save_frames = "f";
  c.init_latents = "i";
  c.save_latents = "s";
  c.checkpoint_dir = "c";
  c.checkpoint_every = 4;
  c.resume = true;
  c.comm_timeout = 9;
  return c;
}

TEST(SettingsTable, KeysAndFlagsAreUnique) {
  std::set<std::string> keys, flags;
  for (const auto& s : generation_settings()) {
    EXPECT_TRUE(*s.key != '\0' || *s.flags != '\0') << "an entry with neither key nor flag";
    if (*s.key != '\0') EXPECT_TRUE(keys.insert(s.key).second) << s.key;
    if (*s.flags != '\0') EXPECT_TRUE(flags.insert(s.flags).second) << s.flags;
    EXPECT_NE(std::string(s.help), "") << s.name();
  }
}

TEST(SettingsTable, SidecarSettingsReadBackAsTheSameConfig) {
  const GenerationConfig original = unusual();
  const nlohmann::json written = config_to_json(original);
  GenerationConfig read;
  apply_config_json(read, written, "sidecar");
  EXPECT_EQ(config_to_json(read), written);
  // Every recorded entry is in the sidecar, nothing else is.
  for (const auto& s : generation_settings()) {
    const bool recorded = *s.key != '\0' && s.record != Record::kNone;
    EXPECT_EQ(written.contains(s.key), recorded) << s.name();
  }
}

TEST(SettingsTable, FingerprintHoldsExactlyTheResultSettings) {
  const nlohmann::json result = settings_to_json(unusual(), Record::kResult);
  for (const auto& s : generation_settings()) {
    if (*s.key == '\0') continue;
    EXPECT_EQ(result.contains(s.key), s.record == Record::kResult) << s.name();
  }
  // The settings that only say where or how it ran are not in it.
  for (const char* key : {"output", "device", "frame_chunk", "checkpoint_dir", "comm_timeout"}) {
    EXPECT_FALSE(result.contains(key)) << key;
  }
  for (const char* key : {"seed", "steps", "guidance", "prompts", "attn_padding", "dual_scope"}) {
    EXPECT_TRUE(result.contains(key)) << key;
  }
}

TEST(SettingsTable, EveryBrokenRuleIsReportedAtOnce) {
  GenerationConfig c;
  c.steps = 0;
  c.vae_chunk = 0;
  c.dtype = "int8";
  c.fps = std::nan("");
  const std::string e = error_of([&] { check_settings(c); });
  for (const char* needle : {"--steps must be at least 1", "--vae-chunk must be >= 1, got 0",
                             "--dtype: unknown dtype 'int8'", "--fps must be positive, got nan"}) {
    EXPECT_NE(e.find(needle), std::string::npos) << needle << " in: " << e;
  }
  EXPECT_EQ(error_of([] { check_settings(GenerationConfig{}); }), "");
}

TEST(SettingsTable, ChoicesComeFromTheirRegistriesAndAliasesAreCanonical) {
  const Setting& scheduler = setting("scheduler");
  ASSERT_NE(scheduler.rule.choices, nullptr);
  EXPECT_EQ(scheduler.rule.choices->values(), schedulers::scheduler_flags());
  for (const auto& e : schedulers::scheduler_registry()) {
    EXPECT_NE(std::string(scheduler.help).find(e.flag), std::string::npos) << e.flag;
  }
  EXPECT_EQ(canonical_choice(setting("dtype"), "torch.float16"), "fp16");
  EXPECT_EQ(canonical_choice(setting("dtype"), "bf16"), "bf16");
  GenerationConfig c;
  apply_config_json(c, nlohmann::json{{"dtype", "torch.bfloat16"}, {"scheduler", "dpmpp-2m"}}, "x.json");
  EXPECT_EQ(c.dtype, "bf16");
  EXPECT_EQ(c.scheduler, "dpmpp-2m");
  const std::string e = error_of([&] { apply_config_json(c, nlohmann::json{{"scheduler", "euler"}}, "x.json"); });
  EXPECT_NE(e.find("x.json: key 'scheduler': unknown scheduler 'euler' (expected dpmpp-2m-sde"), std::string::npos)
      << e;
}

}  // namespace
}  // namespace vi::pipeline
