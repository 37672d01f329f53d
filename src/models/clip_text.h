// CLIP text encoder (transformers CLIPTextModel), inference only: the text conditioning of the
// UNet. Children are registered under transformers' attribute names, so parameter names equal
// the checkpoint's names without its "text_model." prefix.
// Ref: transformers models/clip/modeling_clip.py (CLIPTextTransformer, CLIPEncoderLayer).
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>

namespace vi::core {
class JsonConfig;
}

namespace vi::models {

enum class ClipActivation { kGelu, kQuickGelu };

const char* clip_activation_name(ClipActivation act);  // the config.json spelling

// The fields of text_encoder/config.json that change the computation.
struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 1024;
  int64_t intermediate_size = 4096;
  int64_t num_hidden_layers = 23;
  int64_t num_attention_heads = 16;
  int64_t max_position_embeddings = 77;
  double layer_norm_eps = 1e-5;
  ClipActivation hidden_act = ClipActivation::kGelu;
  // Only the pooled output uses it: 2 (the legacy value of every SD-era export) means "the
  // position of the largest id", else the first position holding this id.
  int64_t eos_token_id = 2;

  // Reads the keys above; refuses unsupported values naming the key; warns about unknown keys.
  static ClipTextConfig from_json(const core::JsonConfig& json);
  static ClipTextConfig load(const std::string& path);
};

class ClipTextEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ClipTextEmbeddingsImpl(const ClipTextConfig& config);
  at::Tensor forward(const at::Tensor& input_ids);  // [B, S] int64 -> [B, S, D]

  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(ClipTextEmbeddings);

class ClipAttentionImpl : public torch::nn::Module {
 public:
  explicit ClipAttentionImpl(const ClipTextConfig& config);
  // x [B, S, D], additive mask [S, S] (0 / -inf) -> [B, S, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);

  torch::nn::Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(ClipAttention);

class ClipMlpImpl : public torch::nn::Module {
 public:
  explicit ClipMlpImpl(const ClipTextConfig& config);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  ClipActivation act_;
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const ClipTextConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);

  ClipAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr};
  ClipMlp mlp{nullptr};
  torch::nn::LayerNorm layer_norm2{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

class ClipEncoderImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderImpl(const ClipTextConfig& config);
  at::Tensor forward(at::Tensor x, const at::Tensor& mask);

  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(ClipEncoder);

// Checkpoint names are "text_model." + the names of this module's parameters.
class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(const ClipTextConfig& config);

  // input_ids [B, S<=max_position_embeddings] int64 (any device) -> last_hidden_state [B, S, D]
  // on the model's device and dtype. Causal mask only: padding is attended to, as the reference
  // pipeline does (it passes no attention mask).
  at::Tensor forward(const at::Tensor& input_ids);
  // transformers' pooler_output [B, D] from last_hidden_state and the ids (not used by the
  // video pipeline; kept for parity checks).
  at::Tensor pooled(const at::Tensor& last_hidden_state, const at::Tensor& input_ids) const;

  const ClipTextConfig& config() const { return config_; }

  ClipTextEmbeddings embeddings{nullptr};
  ClipEncoder encoder{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};

 private:
  ClipTextConfig config_;
};
TORCH_MODULE(ClipTextModel);

// The checkpoint prefix of every CLIP text encoder tensor.
inline constexpr const char* kClipTextPrefix = "text_model.";

// dir holds config.json and model.safetensors (or a sharded checkpoint). Weights are converted
// to `dtype` and the model moved to `device`; every problem with the checkpoint is reported in
// one error. A stored text_model.embeddings.position_ids buffer is ignored.
ClipTextModel load_clip_text(const std::string& dir, c10::ScalarType dtype, c10::Device device);

}  // namespace vi::models
