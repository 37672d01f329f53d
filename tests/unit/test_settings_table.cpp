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

// Every recorded setting, far from its default, as a sidecar's "settings" holds it.
const nlohmann::json kUnusual = nlohmann::json::parse(R"({
  "model": "m", "unet": "u", "prompts": ["a", "b"], "negative_prompt": "blurry",
  "frame_prompts": [{"first_frame": 0, "last_frame": 9, "prompt": "first"},
                    {"first_frame": 10, "last_frame": -1, "prompt": "rest"}],
  "frames": 40, "frames_per_clip": 20, "clips": 2, "height": 64, "width": 96, "steps": 7, "guidance": 3.5,
  "fps": 12.0, "export_fps": 6.0, "seed": -4, "scheduler": "ddim", "karras": true, "dtype": "bf16",
  "device": "cpu", "frame_chunk": 3, "vae_chunk": 2, "cfg_serial": true, "channels_last": true,
  "dual_scope": false, "attn_padding": 3, "attn_top_k": 5, "conv_padding": 2, "attn_scale": 0.5,
  "token_num_scale": true, "dynamic_scale": false, "sync_groupnorm": true, "mask_edge_halos": true, "loop": true,
  "prompt_blend": 6, "preview_every": 5, "seam_threshold": 2.5,
  "local_phase": {"t": 700.0, "local_bias": 1.0, "global_bias": 2.0},
  "global_phase": {"t": 600.0, "local_bias": 3.0, "global_bias": 4.0},
  "output": "o.mp4", "codec": "mpeg4", "crf": 30, "preset": "fast", "save_frames": "f", "init_latents": "i", "save_latents": "s", "checkpoint_dir": "c",
  "checkpoint_every": 4, "resume": true, "comm_timeout": 9.0
})");

GenerationConfig unusual() {
  GenerationConfig c;
  apply_config_json(c, kUnusual, "unusual.json");
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
  // Read into a config, written out again: the same JSON, so no recorded setting is lost or
  // renamed between the reader and the writer.
  const nlohmann::json written = config_to_json(unusual());
  for (const auto& [key, value] : written.items()) {
    EXPECT_TRUE(kUnusual.contains(key)) << "a new setting: add '" << key << "' to kUnusual with a value other than "
                                        << value.dump();
  }
  EXPECT_EQ(written, kUnusual) << written.dump(1);
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
  const std::string e =
      error_of([&] { apply_config_json(c, nlohmann::json{{"scheduler", "no-such-sampler"}}, "x.json"); });
  EXPECT_NE(e.find("x.json: key 'scheduler': unknown scheduler 'no-such-sampler' (expected dpmpp-2m-sde"),
            std::string::npos)
      << e;
}

}  // namespace
}  // namespace vi::pipeline
