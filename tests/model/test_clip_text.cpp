// CLIP text encoder: parity with the reference tiny model's goldens, config handling, loading
// quirks, and the random-weight writer.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/test_util.h"
#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"
#include "models/clip_text.h"
#include "testing/test_model_text_vae.h"

namespace vi {
namespace {

// The README's bound for unit goldens: reruns with another thread count move them <= ~1e-6.
constexpr double kTolerance = 1e-5;

std::string tiny_text_dir() { return test::tiny_model_dir() + "/text_encoder"; }

double report(const char* what, const at::Tensor& out, const at::Tensor& ref) {
  const double rel = test::rel_error(out, ref);
  std::printf("%-40s rel %.3e  max-abs %.3e  (tolerance rel %.0e)\n", what, rel, test::max_abs_error(out, ref),
              kTolerance);
  return rel;
}

TEST(ClipText, MatchesReferenceLastHiddenStateAndPooled) {
  c10::InferenceMode guard;
  models::ClipTextModel model = models::load_clip_text(tiny_text_dir(), at::kFloat, at::kCPU);
  at::Tensor ids = test::golden("text_encoder.safetensors", "input_ids");  // [14, 77]
  ASSERT_TRUE(at::equal(ids, test::golden("tokenizer.safetensors", "input_ids")));
  at::Tensor ref = test::golden("text_encoder.safetensors", "last_hidden_state");  // [14, 77, 32]
  at::Tensor out = model->forward(ids);
  ASSERT_EQ(out.sizes(), ref.sizes());
  EXPECT_LE(report("last_hidden_state [14, 77, 32]", out, ref), kTolerance);
  at::Tensor pooled_ref = test::golden("text_encoder.safetensors", "pooler_output");
  EXPECT_LE(report("pooler_output [14, 32]", model->pooled(out, ids), pooled_ref), kTolerance);
}

TEST(ClipText, MatchesReferencePromptEmbeds) {
  // encode_prompt(beagle prompt, do_cfg) = text_encoder(ids) for the prompt and for "" (rows 0
  // and 1 of the tokenizer golden), each encoded alone.
  c10::InferenceMode guard;
  models::ClipTextModel model = models::load_clip_text(tiny_text_dir(), at::kFloat, at::kCPU);
  at::Tensor ids = test::golden("tokenizer.safetensors", "input_ids");
  at::Tensor cond = model->forward(ids.slice(0, 0, 1));
  at::Tensor uncond = model->forward(ids.slice(0, 1, 2));
  EXPECT_LE(report("prompt_embeds [1, 77, 32]", cond,
                   test::golden("text_encoder.safetensors", "encode_prompt.prompt_embeds")),
            kTolerance);
  EXPECT_LE(report("negative_prompt_embeds [1, 77, 32]", uncond,
                   test::golden("text_encoder.safetensors", "encode_prompt.negative_prompt_embeds")),
            kTolerance);
}

TEST(ClipText, StoredPositionIdsAreIgnored) {
  // Some exporters keep the non-persistent position_ids buffer; it must not be an error.
  const std::string dir = test::make_temp_dir("clip_position_ids");
  std::filesystem::copy_file(tiny_text_dir() + "/config.json", dir + "/config.json");
  core::WeightStore store = core::WeightStore::open(tiny_text_dir());
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& name : store.names()) tensors.emplace_back(name, store.get(name));
  tensors.emplace_back("text_model.embeddings.position_ids", at::arange(77, at::kLong).unsqueeze(0));
  core::save_safetensors(dir + "/model.safetensors", tensors);
  c10::InferenceMode guard;
  models::ClipTextModel model = models::load_clip_text(dir, at::kFloat, at::kCPU);
  at::Tensor ids = test::golden("tokenizer.safetensors", "input_ids").slice(0, 0, 2);
  at::Tensor ref = test::golden("text_encoder.safetensors", "last_hidden_state").slice(0, 0, 2);
  EXPECT_LE(report("with position_ids stored", model->forward(ids), ref), kTolerance);
  std::filesystem::remove_all(dir);
}

nlohmann::json tiny_config() {
  return nlohmann::json::parse(test::read_file(tiny_text_dir() + "/config.json"));
}

std::string config_error(const nlohmann::json& j) {
  try {
    models::ClipTextConfig::from_json(core::JsonConfig(j, "text_encoder/config.json"));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ClipText, ConfigReadsEveryComputingField) {
  core::JsonConfig json(tiny_config(), "config.json");
  models::ClipTextConfig c = models::ClipTextConfig::from_json(json);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.vocab_size, 914);
  EXPECT_EQ(c.max_position_embeddings, 77);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-5);
  EXPECT_EQ(c.hidden_act, models::ClipActivation::kGelu);
  EXPECT_TRUE(json.unread_keys().empty()) << "the tiny config's keys are all known";

  nlohmann::json extra = tiny_config();
  extra["some_new_field"] = 3;
  core::JsonConfig with_extra(extra, "config.json");
  models::ClipTextConfig::from_json(with_extra);
  ASSERT_EQ(with_extra.unread_keys().size(), 1u);
  EXPECT_EQ(with_extra.unread_keys()[0], "some_new_field");

  nlohmann::json quick = tiny_config();
  quick["hidden_act"] = "quick_gelu";
  EXPECT_EQ(models::ClipTextConfig::from_json(core::JsonConfig(quick, "c")).hidden_act,
            models::ClipActivation::kQuickGelu);
}

TEST(ClipText, ConfigRefusesUnsupportedValuesNamingTheField) {
  nlohmann::json j = tiny_config();
  j["hidden_act"] = "relu";
  EXPECT_NE(config_error(j).find("'hidden_act'"), std::string::npos) << config_error(j);
  j = tiny_config();
  j["num_attention_heads"] = 5;
  EXPECT_NE(config_error(j).find("'hidden_size'"), std::string::npos) << config_error(j);
  j = tiny_config();
  j.erase("num_hidden_layers");
  EXPECT_NE(config_error(j).find("num_hidden_layers"), std::string::npos) << config_error(j);
  j = tiny_config();
  j["hidden_size"] = "32";
  EXPECT_NE(config_error(j).find("hidden_size"), std::string::npos) << config_error(j);
}

TEST(ClipText, QuickGeluActivation) {
  // quick_gelu = x * sigmoid(1.702 x), checked on a one-layer model against the formula.
  models::ClipTextConfig c = vi::testing::clip_text_preset("tiny");
  c.hidden_act = models::ClipActivation::kQuickGelu;
  models::ClipMlp mlp(c);
  c10::InferenceMode guard;
  at::Tensor x = at::randn({2, 5, c.hidden_size});
  at::Tensor h = at::linear(x, mlp->fc1->weight, mlp->fc1->bias);
  at::Tensor ref = at::linear(h * at::sigmoid(1.702 * h), mlp->fc2->weight, mlp->fc2->bias);
  EXPECT_LE(test::rel_error(mlp->forward(x), ref), 1e-6);
}

TEST(ClipText, RefusesBadInput) {
  c10::InferenceMode guard;
  models::ClipTextModel model = models::load_clip_text(tiny_text_dir(), at::kFloat, at::kCPU);
  EXPECT_THROW(model->forward(at::zeros({1, 78}, at::kLong)), Error);        // more than 77 positions
  EXPECT_THROW(model->forward(at::full({1, 77}, 914, at::kLong)), Error);    // outside the vocabulary
  EXPECT_THROW(model->forward(at::zeros({1, 77}, at::kInt)), Error);         // not int64
  // Shorter sequences are fine and, causally, equal the first positions of the long one.
  at::Tensor ids = test::golden("tokenizer.safetensors", "input_ids").slice(0, 0, 1);
  at::Tensor full = model->forward(ids);
  at::Tensor part = model->forward(ids.slice(1, 0, 10));
  EXPECT_LE(test::rel_error(part, full.slice(1, 0, 10)), 1e-6);
}

TEST(ClipText, WrittenTestModelsLoadBackAndRun) {
  for (const char* preset : {"tiny", "small"}) {
    for (at::ScalarType dtype : {at::kFloat, at::kHalf}) {
      const std::string dir = test::make_temp_dir("clip_writer");
      vi::testing::write_test_text_encoder(dir, preset, 7, dtype);
      core::WeightStore store = core::WeightStore::open(dir);
      EXPECT_NE(store.find("text_model.encoder.layers.1.self_attn.q_proj.weight"), nullptr);
      EXPECT_EQ(store.find("text_model.encoder.layers.1.self_attn.q_proj.weight")->dtype,
                core::from_scalar_type(dtype));
      c10::InferenceMode guard;
      models::ClipTextModel model = models::load_clip_text(dir, at::kFloat, at::kCPU);
      const models::ClipTextConfig expected = vi::testing::clip_text_preset(preset);
      EXPECT_EQ(model->config().hidden_size, expected.hidden_size);
      EXPECT_EQ(model->config().vocab_size, expected.vocab_size);
      // Every parameter random: no constant tensor (LayerNorm's ones, zero biases) is left.
      for (const auto& p : model->named_parameters()) {
        EXPECT_GT(p.value().std().item<double>(), 0.0) << p.key();
      }
      at::Tensor ids = at::randint(0, expected.vocab_size, {2, 77}, at::kLong);
      at::Tensor out = model->forward(ids);
      EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{2, 77, expected.hidden_size}));
      EXPECT_TRUE(at::isfinite(out).all().item<bool>());
      const double spread = out.std().item<double>();
      std::printf("%s %s: output std %.3f\n", preset, c10::toString(dtype), spread);
      EXPECT_GT(spread, 0.1);  // final LayerNorm: order one
      // The same seed writes the same weights.
      const std::string again = test::make_temp_dir("clip_writer_again");
      vi::testing::write_test_text_encoder(again, preset, 7, dtype);
      core::WeightStore store2 = core::WeightStore::open(again);
      EXPECT_TRUE(at::equal(store.get("text_model.final_layer_norm.weight"),
                            store2.get("text_model.final_layer_norm.weight")));
      std::filesystem::remove_all(dir);
      std::filesystem::remove_all(again);
    }
  }
  EXPECT_THROW(vi::testing::clip_text_preset("huge"), Error);
}

TEST(ClipText, VideoCrafter2PresetHasTheRealShapes) {
  models::ClipTextConfig c = vi::testing::clip_text_preset("videocrafter2");
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.num_hidden_layers, 23);
  EXPECT_EQ(c.num_attention_heads, 16);
  EXPECT_EQ(c.intermediate_size, 4096);
  EXPECT_EQ(c.vocab_size, 49408);
  EXPECT_EQ(c.hidden_act, models::ClipActivation::kGelu);
  // The config text round-trips through our reader with no unknown keys.
  core::JsonConfig json(nlohmann::json::parse(vi::testing::clip_text_config_json(c)), "config.json");
  models::ClipTextConfig back = models::ClipTextConfig::from_json(json);
  EXPECT_EQ(back.num_hidden_layers, 23);
  EXPECT_TRUE(json.unread_keys().empty());
  // The SD 2.x / zeroscope text encoder (OpenCLIP ViT-H text tower, 23 of 24 layers): 340,387,840.
  const auto start = std::chrono::steady_clock::now();
  models::ClipTextModel model(c);
  int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("videocrafter2 text encoder: %lld parameters (built in %.2f s)\n", static_cast<long long>(count), seconds);
  EXPECT_EQ(count, 340387840);
}

}  // namespace
}  // namespace vi
