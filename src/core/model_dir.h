// Finding the parts of a model on disk: the diffusers layout (model_index.json, unet/,
// text_encoder/, tokenizer/, vae/, scheduler/), the Hugging Face cache layout
// (models--ORG--NAME/snapshots/REV/), and a separate UNet directory whose config.json and
// weights may sit at its root (adamdad/videocrafterv2_diffusers).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace vi::core {

enum Component : unsigned {
  kUNet = 1u << 0,
  kTextEncoder = 1u << 1,
  kTokenizer = 1u << 2,
  kVae = 1u << 3,
  kScheduler = 1u << 4,
  kAllComponents = 0x1f,
};

struct ModelPaths {
  std::string root;                // the model directory after HF-cache resolution
  std::string unet;                // directory holding the UNet's config.json and weights
  std::string text_encoder;
  std::string tokenizer;
  std::string vae;
  std::string scheduler;
};

// A directory as given, or the snapshot inside it when it is a Hugging Face cache entry
// (models--ORG--NAME: the snapshot named by refs/main, else the only snapshot).
std::string resolve_hf_cache(const std::string& dir);

// Resolves and checks the components in `needed`; a missing one is an error naming the file
// that was expected. `unet_dir` (may be empty) overrides the UNet location: its unet/
// subfolder when present, else its root.
ModelPaths resolve_model(const std::string& model_dir, const std::string& unet_dir = "",
                         unsigned needed = kAllComponents);

// Every file the components of `paths` are read from, as (component, path): configs, weights
// (each shard of a sharded checkpoint), tokenizer files, the scheduler config.
std::vector<std::pair<std::string, std::string>> model_files(const ModelPaths& paths);

}  // namespace vi::core
