#include "models/clip_text.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <iterator>
#include <limits>

#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"
#include "core/state_dict.h"

namespace vi::models {

namespace {

// The text encoder's results were made with torch::nn::Linear's arithmetic (nn.h).
Linear linear(int64_t in_features, int64_t out_features) {
  return Linear(in_features, out_features, /*bias=*/true, LinearArithmetic::kMatmulThenAdd);
}

}  // namespace

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
  token_embedding_ = register_module("token_embedding", Embedding(config.vocab_size, config.hidden_size));
  position_embedding_ =
      register_module("position_embedding", Embedding(config.max_position_embeddings, config.hidden_size));
}

at::Tensor ClipTextEmbeddingsImpl::forward(const at::Tensor& input_ids) const {
  const int64_t seq = input_ids.size(1);
  at::Tensor tokens = token_embedding_->forward(input_ids);             // [B, S, D]
  at::Tensor positions = position_embedding_->weight.slice(0, 0, seq);  // [S, D]
  return tokens + positions.unsqueeze(0);                               // [B, S, D]
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPAttention (eager): softmax((q * d^-1/2) k^T + causal mask) v.

ClipAttentionImpl::ClipAttentionImpl(const ClipTextConfig& config) : heads_(config.num_attention_heads) {
  const int64_t d = config.hidden_size;
  k_proj_ = register_module("k_proj", linear(d, d));
  v_proj_ = register_module("v_proj", linear(d, d));
  q_proj_ = register_module("q_proj", linear(d, d));
  out_proj_ = register_module("out_proj", linear(d, d));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x, const at::Tensor& mask) const {
  const int64_t batch = x.size(0), seq = x.size(1), dim = x.size(2);
  const int64_t head_dim = dim / heads_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  auto split_heads = [&](const at::Tensor& t) {
    return t.view({batch, seq, heads_, head_dim}).transpose(1, 2);  // [B, H, S, hd]
  };
  at::Tensor q = split_heads(q_proj_->forward(x) * scale);
  at::Tensor k = split_heads(k_proj_->forward(x));
  at::Tensor v = split_heads(v_proj_->forward(x));
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) + mask;                // [B, H, S, S]
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(x.scalar_type());   // [B, H, S, S]
  at::Tensor out = at::matmul(probs, v);                                        // [B, H, S, hd]
  out = out.transpose(1, 2).reshape({batch, seq, dim});                         // [B, S, D]
  return out_proj_->forward(out);
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPMLP; activations.py GELUActivation (erf form), QuickGELUActivation.

ClipMlpImpl::ClipMlpImpl(const ClipTextConfig& config) : act_(config.hidden_act) {
  fc1 = register_module("fc1", linear(config.hidden_size, config.intermediate_size));
  fc2 = register_module("fc2", linear(config.intermediate_size, config.hidden_size));
  // torch.nn's initialisation, unlike the rest of the model: the MLP is also run on its own
  // before any weights are loaded (test_clip_text checks its activation against fc1 and fc2).
  fc1->reset_parameters();
  fc2->reset_parameters();
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) const {
  at::Tensor h = fc1->forward(x);  // [B, S, I]
  switch (act_) {
    case ClipActivation::kGelu: h = at::gelu(h); break;
    case ClipActivation::kQuickGelu: h = h * at::sigmoid(h * 1.702); break;
  }
  return fc2->forward(h);  // [B, S, D]
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPEncoderLayer: pre-LayerNorm residual attention, then residual MLP.

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTextConfig& config) {
  self_attn_ = register_module("self_attn", ClipAttention(config));
  layer_norm1_ = register_module("layer_norm1", LayerNorm(config.hidden_size, config.layer_norm_eps));
  mlp_ = register_module("mlp", ClipMlp(config));
  layer_norm2_ = register_module("layer_norm2", LayerNorm(config.hidden_size, config.layer_norm_eps));
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask) const {
  at::Tensor h = x + self_attn_->forward(layer_norm1_->forward(x), mask);  // [B, S, D]
  return h + mlp_->forward(layer_norm2_->forward(h));                       // [B, S, D]
}

ClipEncoderImpl::ClipEncoderImpl(const ClipTextConfig& config) {
  auto layers = torch::nn::ModuleList();
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers_.emplace_back(config);
    layers->push_back(layers_.back());
  }
  register_module("layers", layers);
}

at::Tensor ClipEncoderImpl::forward(const at::Tensor& x, const at::Tensor& mask) const {
  at::Tensor h = x;
  for (const auto& layer : layers_) h = layer->forward(h, mask);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Ref: modeling_clip.py CLIPTextTransformer.

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config) : config_(config) {
  embeddings_ = register_module("embeddings", ClipTextEmbeddings(config));
  encoder_ = register_module("encoder", ClipEncoder(config));
  final_layer_norm_ = register_module("final_layer_norm", LayerNorm(config.hidden_size, config.layer_norm_eps));
}

at::Tensor ClipTextModelImpl::forward(const at::Tensor& input_ids) const {
  VI_CHECK(input_ids.dim() == 2, "CLIP text encoder: input_ids must be [batch, tokens], got {} dims",
           input_ids.dim());
  VI_CHECK(input_ids.scalar_type() == at::kLong, "CLIP text encoder: input_ids must be int64, got {}",
           c10::toString(input_ids.scalar_type()));
  const int64_t seq = input_ids.size(1);
  VI_CHECK(seq >= 1 && seq <= config_.max_position_embeddings,
           "CLIP text encoder: {} tokens per prompt, the model has {} positions", seq,
           config_.max_position_embeddings);
  c10::InferenceMode guard;
  const at::Tensor& weight = final_layer_norm_->weight;  // the model's device and dtype
  at::Tensor ids = input_ids.to(weight.device());
  const int64_t min_id = ids.min().item<int64_t>(), max_id = ids.max().item<int64_t>();
  VI_CHECK(min_id >= 0 && max_id < config_.vocab_size, "CLIP text encoder: token id {} outside the vocabulary [0, {})",
           min_id < 0 ? min_id : max_id, config_.vocab_size);

  // Ref: modeling_attn_mask_utils.py _create_4d_causal_attention_mask (finfo.min above the
  // diagonal; -inf gives the same probabilities: exactly 0).
  at::Tensor mask = at::full({seq, seq}, -std::numeric_limits<double>::infinity(), weight.options()).triu(1);  // [S, S]
  at::Tensor h = embeddings_->forward(ids);  // [B, S, D]
  h = encoder_->forward(h, mask);            // [B, S, D]
  return final_layer_norm_->forward(h);      // [B, S, D]
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
