#include "models/clip_text.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <iterator>
#include <limits>

#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"
#include "core/state_dict.h"

namespace vi::models {

const char* clip_activation_name(ClipActivation act) {
  switch (act) {
    case ClipActivation::kGelu: return "gelu";
    case ClipActivation::kQuickGelu: return "quick_gelu";
  }
  return "?";
}

ClipTextConfig ClipTextConfig::from_json(const core::JsonConfig& json) {
  ClipTextConfig c;
  c.vocab_size = json.get<int64_t>("vocab_size");
  c.hidden_size = json.get<int64_t>("hidden_size");
  c.intermediate_size = json.get<int64_t>("intermediate_size");
  c.num_hidden_layers = json.get<int64_t>("num_hidden_layers");
  c.num_attention_heads = json.get<int64_t>("num_attention_heads");
  c.max_position_embeddings = json.get_or<int64_t>("max_position_embeddings", 77);
  c.layer_norm_eps = json.get_or<double>("layer_norm_eps", 1e-5);
  c.eos_token_id = json.get_or<int64_t>("eos_token_id", 2);
  const std::string act = json.get_or<std::string>("hidden_act", "quick_gelu");  // transformers' default
  if (act == "gelu") {
    c.hidden_act = ClipActivation::kGelu;
  } else if (act == "quick_gelu") {
    c.hidden_act = ClipActivation::kQuickGelu;
  } else {
    VI_FAIL("{}: key 'hidden_act': '{}' is not supported (gelu, quick_gelu)", json.origin(), act);
  }
  const char* positive[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "max_position_embeddings"};
  const int64_t values[] = {c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers,
                            c.num_attention_heads, c.max_position_embeddings};
  for (size_t i = 0; i < std::size(values); ++i) {
    VI_CHECK(values[i] > 0, "{}: key '{}': must be positive, got {}", json.origin(), positive[i], values[i]);
  }
  VI_CHECK(c.hidden_size % c.num_attention_heads == 0,
           "{}: key 'hidden_size': {} is not a multiple of num_attention_heads {}", json.origin(), c.hidden_size,
           c.num_attention_heads);
  VI_CHECK(c.layer_norm_eps > 0, "{}: key 'layer_norm_eps': must be positive, got {}", json.origin(),
           c.layer_norm_eps);
  // Training-only, tokenizer-side or descriptive fields: no effect on last_hidden_state.
  json.ignore({"architectures", "attention_dropout", "dropout", "bos_token_id", "pad_token_id",
               "initializer_factor", "initializer_range", "model_type", "projection_dim", "torch_dtype",
               "transformers_version"});
  json.warn_unread();
  return c;
}

ClipTextConfig ClipTextConfig::load(const std::string& path) {
  return from_json(core::JsonConfig::load(path));
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPTextEmbeddings: token embedding + position embedding (positions 0..S-1).

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(const ClipTextConfig& config) {
  token_embedding = register_module(
      "token_embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(config.vocab_size, config.hidden_size)));
  position_embedding = register_module(
      "position_embedding",
      torch::nn::Embedding(torch::nn::EmbeddingOptions(config.max_position_embeddings, config.hidden_size)));
}

at::Tensor ClipTextEmbeddingsImpl::forward(const at::Tensor& input_ids) {
  const int64_t seq = input_ids.size(1);
  at::Tensor tokens = at::embedding(token_embedding->weight, input_ids);        // [B, S, D]
  at::Tensor positions = position_embedding->weight.slice(0, 0, seq);           // [S, D]
  return tokens + positions.unsqueeze(0);                                       // [B, S, D]
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPAttention (eager): softmax((q * d^-1/2) k^T + causal mask) v.

ClipAttentionImpl::ClipAttentionImpl(const ClipTextConfig& config) : heads_(config.num_attention_heads) {
  const int64_t d = config.hidden_size;
  auto linear = [&](const char* name) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(d, d).bias(true)));
  };
  k_proj = linear("k_proj");
  v_proj = linear("v_proj");
  q_proj = linear("q_proj");
  out_proj = linear("out_proj");
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  const int64_t batch = x.size(0), seq = x.size(1), dim = x.size(2);
  const int64_t head_dim = dim / heads_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  auto split_heads = [&](const at::Tensor& t) {
    return t.view({batch, seq, heads_, head_dim}).transpose(1, 2);  // [B, H, S, hd]
  };
  at::Tensor q = split_heads(q_proj(x) * scale);
  at::Tensor k = split_heads(k_proj(x));
  at::Tensor v = split_heads(v_proj(x));
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) + mask;                // [B, H, S, S]
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(x.scalar_type());   // [B, H, S, S]
  at::Tensor out = at::matmul(probs, v);                                        // [B, H, S, hd]
  out = out.transpose(1, 2).reshape({batch, seq, dim});                         // [B, S, D]
  return out_proj(out);
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPMLP; activations.py GELUActivation (erf form), QuickGELUActivation.

ClipMlpImpl::ClipMlpImpl(const ClipTextConfig& config) : act_(config.hidden_act) {
  fc1 = register_module("fc1", torch::nn::Linear(config.hidden_size, config.intermediate_size));
  fc2 = register_module("fc2", torch::nn::Linear(config.intermediate_size, config.hidden_size));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) {
  at::Tensor h = fc1(x);  // [B, S, I]
  switch (act_) {
    case ClipActivation::kGelu: h = at::gelu(h); break;
    case ClipActivation::kQuickGelu: h = h * at::sigmoid(h * 1.702); break;
  }
  return fc2(h);  // [B, S, D]
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPEncoderLayer: pre-LayerNorm residual attention, then residual MLP.

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTextConfig& config) {
  auto norm = [&]() {
    return torch::nn::LayerNorm(
        torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps).elementwise_affine(true));
  };
  self_attn = register_module("self_attn", ClipAttention(config));
  layer_norm1 = register_module("layer_norm1", norm());
  mlp = register_module("mlp", ClipMlp(config));
  layer_norm2 = register_module("layer_norm2", norm());
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  at::Tensor h = x + self_attn(layer_norm1(x), mask);  // [B, S, D]
  return h + mlp(layer_norm2(h));                       // [B, S, D]
}

ClipEncoderImpl::ClipEncoderImpl(const ClipTextConfig& config) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layers->push_back(ClipEncoderLayer(config));
}

at::Tensor ClipEncoderImpl::forward(at::Tensor x, const at::Tensor& mask) {
  for (const auto& layer : *layers) x = layer->as<ClipEncoderLayerImpl>()->forward(x, mask);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPTextTransformer.

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config) : config_(config) {
  embeddings = register_module("embeddings", ClipTextEmbeddings(config));
  encoder = register_module("encoder", ClipEncoder(config));
  final_layer_norm = register_module(
      "final_layer_norm",
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps)));
}

at::Tensor ClipTextModelImpl::forward(const at::Tensor& input_ids) {
  VI_CHECK(input_ids.dim() == 2, "CLIP text encoder: input_ids must be [batch, tokens], got {} dims",
           input_ids.dim());
  VI_CHECK(input_ids.scalar_type() == at::kLong, "CLIP text encoder: input_ids must be int64, got {}",
           c10::toString(input_ids.scalar_type()));
  const int64_t seq = input_ids.size(1);
  VI_CHECK(seq >= 1 && seq <= config_.max_position_embeddings,
           "CLIP text encoder: {} tokens per prompt, the model has {} positions", seq,
           config_.max_position_embeddings);
  c10::InferenceMode guard;
  const at::Tensor& weight = embeddings->token_embedding->weight;
  at::Tensor ids = input_ids.to(weight.device());
  const int64_t min_id = ids.min().item<int64_t>(), max_id = ids.max().item<int64_t>();
  VI_CHECK(min_id >= 0 && max_id < config_.vocab_size, "CLIP text encoder: token id {} outside the vocabulary [0, {})",
           min_id < 0 ? min_id : max_id, config_.vocab_size);

  // Ref: modeling_attn_mask_utils.py _create_4d_causal_attention_mask (finfo.min above the
  // diagonal; -inf gives the same probabilities: exactly 0).
  at::Tensor mask = at::full({seq, seq}, -std::numeric_limits<double>::infinity(), weight.options()).triu(1);  // [S, S]
  at::Tensor h = embeddings(ids);  // [B, S, D]
  h = encoder(h, mask);            // [B, S, D]
  return final_layer_norm(h);      // [B, S, D]
}

at::Tensor ClipTextModelImpl::pooled(const at::Tensor& last_hidden_state, const at::Tensor& input_ids) const {
  c10::InferenceMode guard;
  at::Tensor ids = input_ids.to(last_hidden_state.device());
  at::Tensor index;
  if (config_.eos_token_id == 2) {
    index = ids.argmax(-1);  // [B]  legacy: the eos id is the largest id
  } else {
    index = (ids == config_.eos_token_id).to(at::kInt).argmax(-1);  // [B]  first eos
  }
  const int64_t batch = last_hidden_state.size(0), dim = last_hidden_state.size(2);
  at::Tensor where = index.view({batch, 1, 1}).expand({batch, 1, dim});  // [B, 1, D]
  return last_hidden_state.gather(1, where).squeeze(1);                  // [B, D]
}

ClipTextModel load_clip_text(const std::string& dir, c10::ScalarType dtype, c10::Device device) {
  ClipTextModel model(ClipTextConfig::load(dir + "/config.json"));
  core::LoadOptions options;
  options.prefix = kClipTextPrefix;
  options.ignored_names = {"embeddings.position_ids"};
  options.dtype = dtype;
  options.device = device;
  core::load_state_dict(*model, core::WeightStore::open(dir), options);
  model->eval();
  return model;
}

}  // namespace vi::models
