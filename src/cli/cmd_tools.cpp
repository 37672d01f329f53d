// `video-infinity tokenize` and `video-infinity make-test-model`.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "core/check.h"
#include "testing/test_model_text_vae.h"
#include "testing/test_model_unet.h"
#include "pipeline/clip_tokenizer.h"
#include "testing/test_scheduler.h"
#include "testing/test_tokenizer.h"

namespace fs = std::filesystem;

namespace vi::cli {

namespace {

struct TokenizeOptions {
  std::string model;
  std::vector<std::string> prompts;
};

int run_tokenize(const TokenizeOptions& opt) {
  // The tokenizer files: MODEL/tokenizer/ or MODEL itself.
  std::string dir = fs::is_directory(fs::path(opt.model) / "tokenizer") ? (fs::path(opt.model) / "tokenizer").string()
                                                                       : opt.model;
  VI_CHECK(fs::is_directory(dir), "--model: '{}' does not exist", opt.model);
  auto tokenizer = pipeline::ClipTokenizer::load(dir);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : opt.prompts) {
    auto enc = tokenizer.encode(p);
    if (enc.truncated) {
      spdlog::warn("prompt truncated: {} tokens, only the first {} are used: '{}'", enc.untruncated.size(),
                   tokenizer.max_length(), p);
    }
    out.push_back({{"prompt", p}, {"ids", enc.ids}, {"tokens", enc.untruncated.size()}, {"truncated", enc.truncated}});
  }
  std::printf("%s\n", (opt.prompts.size() == 1 ? out[0] : out).dump().c_str());
  return 0;
}

struct MakeModelOptions {
  std::string preset = "tiny";
  uint64_t seed = 0;
  std::string dtype = "fp32";
  std::string out;
};

int run_make_test_model(const MakeModelOptions& opt) {
  const c10::ScalarType dtype = opt.dtype == "fp16" ? c10::kHalf : opt.dtype == "bf16" ? c10::kBFloat16 : c10::kFloat;
  VI_CHECK(!fs::exists(opt.out) || fs::is_empty(opt.out), "--out: '{}' exists and is not empty", opt.out);
  // Written into a temporary directory renamed at the end: no half-made model on failure.
  const fs::path target(opt.out);
  const fs::path tmp = target.string() + ".partial";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    vi::testing::write_test_unet((tmp / "unet").string(), opt.preset, opt.seed, dtype);
    vi::testing::write_test_text_encoder((tmp / "text_encoder").string(), opt.preset, opt.seed + 1, dtype);
    vi::testing::write_test_vae((tmp / "vae").string(), opt.preset, opt.seed + 2, dtype);
    testing::write_test_tokenizer((tmp / "tokenizer").string());
    testing::write_scheduler_config((tmp / "scheduler").string());
    nlohmann::json index = {{"_class_name", "VideoCrafterPipeline"},
                            {"_diffusers_version", "0.29.2"},
                            {"scheduler", {"diffusers", "DDIMScheduler"}},
                            {"text_encoder", {"transformers", "CLIPTextModel"}},
                            {"tokenizer", {"transformers", "CLIPTokenizer"}},
                            {"unet", {"diffusers", "UNet3DConditionModel"}},
                            {"vae", {"diffusers", "AutoencoderKL"}}};
    std::ofstream(tmp / "model_index.json") << index.dump(2) << "\n";
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
  if (fs::exists(target)) fs::remove(target);
  fs::rename(tmp, target);
  std::printf("wrote a random '%s' model (seed %llu, %s) to %s\n", opt.preset.c_str(),
              static_cast<unsigned long long>(opt.seed), opt.dtype.c_str(), opt.out.c_str());
  return 0;
}

}  // namespace

Runner add_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand("tokenize", "Print a prompt's CLIP token ids as JSON (needs only the tokenizer files)");
  cmd->add_option("--model", opt->model, "Model directory (its tokenizer/) or a tokenizer directory")->required();
  cmd->add_option("--prompt", opt->prompts, "Prompt (repeatable)")->required();
  return [cmd, opt](const parallel::LaunchInfo&) { return cmd->parsed() ? run_tokenize(*opt) : -1; };
}

Runner add_make_test_model(CLI::App& app) {
  auto opt = std::make_shared<MakeModelOptions>();
  auto* cmd = app.add_subcommand("make-test-model",
                                 "Write a random-weight model in the exact diffusers layout (tests, benchmarks)");
  cmd->add_option("--preset", opt->preset, "tiny, small or videocrafter2 (the real configuration, 1.41 B UNet)")
      ->check(CLI::IsMember({"tiny", "small", "videocrafter2"}))
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Seed of the random weights")->capture_default_str();
  cmd->add_option("--dtype", opt->dtype, "fp32, fp16 or bf16")->check(CLI::IsMember({"fp32", "fp16", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--out", opt->out, "Directory to create")->required();
  return [cmd, opt](const parallel::LaunchInfo&) { return cmd->parsed() ? run_make_test_model(*opt) : -1; };
}

}  // namespace vi::cli
