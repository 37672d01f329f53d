#include "core/model_dir.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"

namespace fs = std::filesystem;

namespace vi::core {

std::string resolve_hf_cache(const std::string& dir) {
  const fs::path root(dir);
  const fs::path snapshots = root / "snapshots";
  if (!fs::is_directory(snapshots)) return dir;
  // models--ORG--NAME/refs/main holds the revision the snapshot is named after.
  const fs::path ref = root / "refs" / "main";
  if (fs::is_regular_file(ref)) {
    std::ifstream in(ref);
    std::string rev;
    std::getline(in, rev);
    if (!rev.empty() && fs::is_directory(snapshots / rev)) return (snapshots / rev).string();
  }
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(snapshots)) {
    if (e.is_directory()) found.push_back(e.path());
  }
  VI_CHECK(!found.empty(), "{}: Hugging Face cache entry without any snapshot in {}", dir, snapshots.string());
  VI_CHECK(found.size() == 1, "{}: {} snapshots and no refs/main to choose one; pass the snapshot directory itself",
           dir, found.size());
  return found.front().string();
}

namespace {

void require_file(const fs::path& path, const char* what) {
  VI_CHECK(fs::is_regular_file(path), "{}: missing {} file (expected at {})", path.parent_path().string(), what,
           path.string());
}

void require_weights(const fs::path& dir, const char* what) {
  require_file(dir / "config.json", what);
  VI_CHECK(WeightStore::locate(dir.string()).has_value(),
           "{}: missing {} weights (expected {} or {})", dir.string(), what,
           (dir / "diffusion_pytorch_model.safetensors").string(), (dir / "model.safetensors").string());
}

}  // namespace

ModelPaths resolve_model(const std::string& model_dir, const std::string& unet_dir, unsigned needed) {
  VI_CHECK(!model_dir.empty(), "--model: no model directory given");
  VI_CHECK(fs::is_directory(model_dir), "--model: model directory '{}' does not exist", model_dir);
  ModelPaths paths;
  paths.root = resolve_hf_cache(model_dir);
  const fs::path root(paths.root);
  paths.text_encoder = (root / "text_encoder").string();
  paths.tokenizer = (root / "tokenizer").string();
  paths.vae = (root / "vae").string();
  paths.scheduler = (root / "scheduler").string();
  paths.unet = (root / "unet").string();
  if (!unet_dir.empty()) {
    VI_CHECK(fs::is_directory(unet_dir), "--unet: directory '{}' does not exist", unet_dir);
    const fs::path u(resolve_hf_cache(unet_dir));
    paths.unet = fs::is_directory(u / "unet") ? (u / "unet").string() : u.string();
  }

  if (needed & kUNet) require_weights(paths.unet, "UNet");
  if (needed & kTextEncoder) require_weights(paths.text_encoder, "text encoder");
  if (needed & kVae) require_weights(paths.vae, "VAE");
  if (needed & kScheduler) require_file(fs::path(paths.scheduler) / "scheduler_config.json", "scheduler config");
  if (needed & kTokenizer) {
    for (const char* f : {"vocab.json", "merges.txt"}) require_file(fs::path(paths.tokenizer) / f, "tokenizer");
  }
  return paths;
}

std::vector<std::pair<std::string, std::string>> model_files(const ModelPaths& paths) {
  std::vector<std::pair<std::string, std::string>> out;
  auto add_if_present = [&](const char* component, const fs::path& file) {
    if (fs::is_regular_file(file)) out.emplace_back(component, file.string());
  };
  auto add_model = [&](const char* component, const std::string& dir) {
    add_if_present(component, fs::path(dir) / "config.json");
    const auto weights = WeightStore::locate(dir);
    if (!weights) return;
    out.emplace_back(component, *weights);
    if (weights->size() < 11 || weights->compare(weights->size() - 11, 11, ".index.json") != 0) return;
    // A sharded checkpoint: its shards, each once.
    std::set<std::string> shards;
    for (const auto& [name, shard] : JsonConfig::load(*weights).json().value("weight_map", nlohmann::json::object()).items()) {
      if (shard.is_string()) shards.insert(shard.get<std::string>());
    }
    for (const auto& shard : shards) add_if_present(component, fs::path(*weights).parent_path() / shard);
  };
  add_model("unet", paths.unet);
  add_model("text_encoder", paths.text_encoder);
  add_model("vae", paths.vae);
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                        "added_tokens.json"}) {
    add_if_present("tokenizer", fs::path(paths.tokenizer) / f);
  }
  add_if_present("scheduler", fs::path(paths.scheduler) / "scheduler_config.json");
  return out;
}

}  // namespace vi::core
