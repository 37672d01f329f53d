// CLIP text encoder (transformers CLIPTextModel), inference only: the text conditioning of the
// UNet. Children are registered under transformers' attribute names, so parameter names equal
// the checkpoint's names without its "text_model." prefix.
// Ref: transformers models/clip/modeling_clip.py (CLIPTextTransformer, CLIPEncoderLayer).
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/nn.h"

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

// Ref: modeling_clip.py CLIPTextEmbeddings: token embedding + position embedding (positions 0..S-1).
class ClipTextEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ClipTextEmbeddingsImpl(const ClipTextConfig& config);
  at::Tensor forward(const at::Tensor& input_ids) const;  // [B, S] int64 -> [B, S, D]

 private:
  Embedding token_embedding_{nullptr}, position_embedding_{nullptr};
};
TORCH_MODULE(ClipTextEmbeddings);

// Ref: modeling_clip.py CLIPAttention (eager). Not models/attention.h's Attention: CLIP scales q
// before q k^T and adds the causal mask in an eager softmax, which the fused kernel behind
// Attention would round differently.
class ClipAttentionImpl : public torch::nn::Module {
 public:
  explicit ClipAttentionImpl(const ClipTextConfig& config);
  // x [B, S, D], additive mask [S, S] (0 / -inf) -> [B, S, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) const;

 private:
  Linear k_proj_{nullptr}, v_proj_{nullptr}, q_proj_{nullptr}, out_proj_{nullptr};
  int64_t heads_;
};
TORCH_MODULE(ClipAttention);

// Ref: modeling_clip.py CLIPMLP: fc2(act(fc1(x))).
class ClipMlpImpl : public torch::nn::Module {
 public:
  explicit ClipMlpImpl(const ClipTextConfig& config);
  at::Tensor forward(const at::Tensor& x) const;  // [B, S, D] -> [B, S, D]

  Linear fc1{nullptr}, fc2{nullptr};  // public and initialised: tests run the MLP alone against them

 private:
  ClipActivation act_;
};
TORCH_MODULE(ClipMlp);

// Ref: modeling_clip.py CLIPEncoderLayer: pre-LayerNorm residual attention, then residual MLP.
class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const ClipTextConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) const;  // [B, S, D] -> [B, S, D]

 private:
  ClipAttention self_attn_{nullptr};
  LayerNorm layer_norm1_{nullptr};
  ClipMlp mlp_{nullptr};
  LayerNorm layer_norm2_{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

// Ref: modeling_clip.py CLIPEncoder: the layers in sequence.
class ClipEncoderImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderImpl(const ClipTextConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) const;  // [B, S, D] -> [B, S, D]

 private:
  std::vector<ClipEncoderLayer> layers_;
};
TORCH_MODULE(ClipEncoder);

// Checkpoint names are "text_model." + the names of this module's parameters.
// Ref: modeling_clip.py CLIPTextTransformer (embeddings, encoder.layers, final_layer_norm).
class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(const ClipTextConfig& config);

  // input_ids [B, S<=max_position_embeddings] int64 (any device) -> last_hidden_state [B, S, D]
  // on the model's device and dtype. Causal mask only: padding is attended to, as the reference
  // pipeline does (it passes no attention mask).
  at::Tensor forward(const at::Tensor& input_ids) const;
  // transformers' pooler_output [B, D] from last_hidden_state and the ids (not used by the
  // video pipeline; kept for parity checks).
  at::Tensor pooled(const at::Tensor& last_hidden_state, const at::Tensor& input_ids) const;

  const ClipTextConfig& config() const { return config_; }

 private:
  ClipTextConfig config_;
  ClipTextEmbeddings embeddings_{nullptr};
  ClipEncoder encoder_{nullptr};
  LayerNorm final_layer_norm_{nullptr};
};
TORCH_MODULE(ClipTextModel);

// The checkpoint prefix of every CLIP text encoder tensor.
inline constexpr const char* kClipTextPrefix = "text_model.";

// dir holds config.json and model.safetensors (or a sharded checkpoint). Weights are converted
// to `dtype` and the model moved to `device`; every problem with the checkpoint is reported in
// one error. A stored text_model.embeddings.position_ids buffer is ignored.
ClipTextModel load_clip_text(const std::string& dir, c10::ScalarType dtype, c10::Device device);

}  // namespace vi::models
