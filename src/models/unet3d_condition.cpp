#include "models/unet3d_condition.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <optional>

#include "core/check.h"
#include "core/safetensors.h"
#include "core/state_dict.h"

namespace vi::models {

namespace {

const char* const kDownTypes[] = {"CrossAttnDownBlock3D", "DownBlock3D"};
const char* const kUpTypes[] = {"UpBlock3D", "CrossAttnUpBlock3D"};

bool is_one_of(const std::string& value, const char* const (&options)[2]) {
  return value == options[0] || value == options[1];
}

// A key that may be absent or null but nothing else (diffusers features we do not implement).
void require_null(const core::JsonConfig& json, const std::string& key, const std::string& why) {
  auto value = json.get_optional<nlohmann::json>(key);
  VI_CHECK(!value, "{}: key '{}' = {} is not supported ({})", json.origin(), key, value->dump(), why);
}

void check_dtype_supported(c10::ScalarType dtype) {
  VI_CHECK(dtype == c10::kFloat || dtype == c10::kHalf || dtype == c10::kBFloat16,
           "UNet: dtype {} is not supported (float32, float16, bfloat16)", c10::toString(dtype));
}

}  // namespace

UNet3DConfig UNet3DConfig::from_json(const core::JsonConfig& json) {
  UNet3DConfig c;
  const std::string& origin = json.origin();
  c.in_channels = json.get_or<int64_t>("in_channels", c.in_channels);
  c.out_channels = json.get_or<int64_t>("out_channels", c.out_channels);
  c.down_block_types = json.get_or<std::vector<std::string>>("down_block_types", c.down_block_types);
  c.up_block_types = json.get_or<std::vector<std::string>>("up_block_types", c.up_block_types);
  c.block_out_channels = json.get_or<std::vector<int64_t>>("block_out_channels", c.block_out_channels);
  c.layers_per_block = json.get_or<int64_t>("layers_per_block", c.layers_per_block);
  c.downsample_padding = json.get_or<int64_t>("downsample_padding", c.downsample_padding);
  c.mid_block_scale_factor = json.get_or<double>("mid_block_scale_factor", c.mid_block_scale_factor);
  c.act_fn = json.get_or<std::string>("act_fn", c.act_fn);
  VI_CHECK(!(json.contains("norm_num_groups") && !json.has("norm_num_groups")),
           "{}: key 'norm_num_groups' = null (no output GroupNorm) is not supported", origin);
  c.norm_num_groups = json.get_or<int64_t>("norm_num_groups", c.norm_num_groups);
  c.norm_eps = json.get_or<double>("norm_eps", c.norm_eps);
  c.cross_attention_dim = json.get_or<int64_t>("cross_attention_dim", c.cross_attention_dim);
  VI_CHECK(!(json.has("attention_head_dim") && json.json().at("attention_head_dim").is_array()),
           "{}: key 'attention_head_dim': a per-block list is not supported (transformer_in needs one value)",
           origin);
  c.attention_head_dim = json.get_or<int64_t>("attention_head_dim", c.attention_head_dim);
  // Ref: diffusers UNet3DConditionModel raises NotImplementedError for num_attention_heads.
  require_null(json, "num_attention_heads", "diffusers' UNet3DConditionModel refuses it too; heads come from "
                                            "attention_head_dim");
  require_null(json, "time_cond_proj_dim", "no timestep_cond input");
  json.ignore({"sample_size"});  // documentation only: any latent size is accepted
  const std::string class_name = json.json().value("_class_name", std::string());
  c.fps_cond = json.get_or<bool>("fps_cond", class_name.find("VideoCrafter") != std::string::npos);
  c.validate(origin);
  json.warn_unread();
  return c;
}

UNet3DConfig UNet3DConfig::load(const std::string& path) { return from_json(core::JsonConfig::load(path)); }

void UNet3DConfig::validate(const std::string& origin) const {
  const size_t levels = block_out_channels.size();
  VI_CHECK(in_channels >= 1, "{}: in_channels must be >= 1, got {}", origin, in_channels);
  VI_CHECK(out_channels >= 1, "{}: out_channels must be >= 1, got {}", origin, out_channels);
  VI_CHECK(levels >= 1, "{}: block_out_channels is empty", origin);
  VI_CHECK(down_block_types.size() == levels, "{}: down_block_types has {} entries, block_out_channels {}", origin,
           down_block_types.size(), levels);
  VI_CHECK(up_block_types.size() == levels, "{}: up_block_types has {} entries, block_out_channels {}", origin,
           up_block_types.size(), levels);
  VI_CHECK(layers_per_block >= 1, "{}: layers_per_block must be >= 1, got {}", origin, layers_per_block);
  VI_CHECK(downsample_padding >= 0, "{}: downsample_padding must be >= 0, got {}", origin, downsample_padding);
  VI_CHECK(mid_block_scale_factor != 0.0, "{}: mid_block_scale_factor must not be 0", origin);
  VI_CHECK(act_fn == "silu" || act_fn == "swish", "{}: act_fn '{}' is not supported (only silu / swish)", origin,
           act_fn);
  VI_CHECK(norm_num_groups >= 1, "{}: norm_num_groups must be >= 1, got {}", origin, norm_num_groups);
  VI_CHECK(norm_eps > 0, "{}: norm_eps must be > 0, got {}", origin, norm_eps);
  VI_CHECK(cross_attention_dim >= 1, "{}: cross_attention_dim must be >= 1, got {}", origin, cross_attention_dim);
  VI_CHECK(attention_head_dim >= 1, "{}: attention_head_dim must be >= 1, got {}", origin, attention_head_dim);
  for (size_t i = 0; i < levels; ++i) {
    const int64_t ch = block_out_channels[i];
    VI_CHECK(ch >= 1 && ch % norm_num_groups == 0,
             "{}: block_out_channels[{}] = {} is not a positive multiple of norm_num_groups {}", origin, i, ch,
             norm_num_groups);
    VI_CHECK(is_one_of(down_block_types[i], kDownTypes),
             "{}: down_block_types[{}] = '{}' is not supported (CrossAttnDownBlock3D or DownBlock3D)", origin, i,
             down_block_types[i]);
    VI_CHECK(is_one_of(up_block_types[i], kUpTypes),
             "{}: up_block_types[{}] = '{}' is not supported (UpBlock3D or CrossAttnUpBlock3D)", origin, i,
             up_block_types[i]);
    const bool cross = down_block_types[i] == kDownTypes[0] || up_block_types[levels - 1 - i] == kUpTypes[1];
    VI_CHECK(!cross || ch >= attention_head_dim,
             "{}: block_out_channels[{}] = {} is smaller than attention_head_dim {} (no attention head)", origin, i,
             ch, attention_head_dim);
  }
  VI_CHECK(block_out_channels.back() >= attention_head_dim,
           "{}: block_out_channels[-1] = {} is smaller than attention_head_dim {} (mid block attention)", origin,
           block_out_channels.back(), attention_head_dim);
}

nlohmann::json UNet3DConfig::to_json() const {
  nlohmann::json j;
  j["_class_name"] = fps_cond ? "UNet3DVideoCrafterConditionModel" : "UNet3DConditionModel";
  j["_diffusers_version"] = "0.29.2";
  j["act_fn"] = act_fn;
  j["attention_head_dim"] = attention_head_dim;
  j["block_out_channels"] = block_out_channels;
  j["cross_attention_dim"] = cross_attention_dim;
  j["down_block_types"] = down_block_types;
  j["downsample_padding"] = downsample_padding;
  if (fps_cond) j["fps_cond"] = true;
  j["in_channels"] = in_channels;
  j["layers_per_block"] = layers_per_block;
  j["mid_block_scale_factor"] = mid_block_scale_factor;
  j["norm_eps"] = norm_eps;
  j["norm_num_groups"] = norm_num_groups;
  j["num_attention_heads"] = nullptr;
  j["out_channels"] = out_channels;
  j["sample_size"] = nullptr;
  j["up_block_types"] = up_block_types;
  return j;
}

// Ref: diffusers unet_3d_condition.py UNet3DConditionModel.__init__ (and the reference's
// UNetVideoCrafter for fps_proj / fps_embedding).
UNet3DConditionModelImpl::UNet3DConditionModelImpl(const UNet3DConfig& config) : config_(config) {
  config_.validate();
  const auto& boc = config_.block_out_channels;
  const int64_t levels = static_cast<int64_t>(boc.size()), c0 = boc[0], temb = c0 * 4;
  const int64_t H = config_.attention_head_dim;

  conv_in_ = register_module("conv_in", Conv2d(config_.in_channels, c0, 3, 1, 1));
  time_embedding_ = register_module("time_embedding", TimestepEmbedding(c0, temb));
  // transformer_in: 8 heads of attention_head_dim channels (hard-coded 8 in diffusers).
  transformer_in_ = register_module("transformer_in", TransformerTemporalModel(8, H, c0, config_.norm_num_groups));

  Block3DOptions base;
  base.temb_channels = temb;
  base.groups = config_.norm_num_groups;
  base.eps = config_.norm_eps;
  base.head_dim = H;
  base.cross_attention_dim = config_.cross_attention_dim;
  base.downsample_padding = config_.downsample_padding;

  auto down_list = torch::nn::ModuleList();
  int64_t out_ch = c0;
  for (int64_t i = 0; i < levels; ++i) {
    Block3DOptions o = base;
    o.in_channels = out_ch;
    o.out_channels = out_ch = boc[i];
    o.num_layers = config_.layers_per_block;
    o.cross_attention = config_.down_block_types[i] == "CrossAttnDownBlock3D";
    o.resample = i != levels - 1;
    down_blocks_.emplace_back(o);
    down_list->push_back(down_blocks_.back());
  }
  register_module("down_blocks", down_list);

  auto up_list = torch::nn::ModuleList();
  out_ch = boc[levels - 1];
  for (int64_t i = 0; i < levels; ++i) {
    Block3DOptions o = base;
    o.prev_output_channels = out_ch;
    o.out_channels = out_ch = boc[levels - 1 - i];
    o.in_channels = boc[levels - 1 - std::min(i + 1, levels - 1)];
    o.num_layers = config_.layers_per_block + 1;
    o.cross_attention = config_.up_block_types[i] == "CrossAttnUpBlock3D";
    o.resample = i != levels - 1;
    if (o.resample) ++num_upsamplers_;
    up_blocks_.emplace_back(o);
    up_list->push_back(up_blocks_.back());
  }
  register_module("up_blocks", up_list);

  Block3DOptions mid = base;
  mid.in_channels = mid.out_channels = boc[levels - 1];
  mid.num_layers = 1;
  mid.cross_attention = true;
  mid.output_scale_factor = config_.mid_block_scale_factor;
  mid_block_ = register_module("mid_block", UNetMidBlock3DCrossAttn(mid));

  conv_norm_out_ = register_module("conv_norm_out", GroupNorm(config_.norm_num_groups, c0, config_.norm_eps));
  conv_out_ = register_module("conv_out", Conv2d(c0, config_.out_channels, 3, 1, 1));
  if (config_.fps_cond) fps_embedding_ = register_module("fps_embedding", TimestepEmbedding(c0, temb));
}

int64_t UNet3DConditionModelImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters(/*recurse=*/true)) n += p.numel();
  return n;
}

void UNet3DConditionModelImpl::set_channels_last(bool on) {
  channels_last_ = on;
  const auto format = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& p : parameters(/*recurse=*/true)) {
    if (p.dim() == 4) p.set_data(p.contiguous(format));
  }
}

c10::ScalarType UNet3DConditionModelImpl::dtype() const { return conv_in_->parameters().front().scalar_type(); }
c10::Device UNet3DConditionModelImpl::device() const { return conv_in_->parameters().front().device(); }

at::Tensor UNet3DConditionModelImpl::forward(const at::Tensor& sample, double timestep,
                                             const at::Tensor& encoder_hidden_states, double fps, TemporalContext& ctx,
                                             StageMap* stages) const {
  return forward(sample, at::scalar_tensor(timestep, at::kDouble), encoder_hidden_states, fps, ctx, stages);
}

// Ref: diffusers unet_3d_condition.py UNet3DConditionModel.forward, with the reference's fps
// hook on time_embedding (VideoCrafterPipeline: emb = linear_2(...) + fps_embedding(fps_proj(fps))).
at::Tensor UNet3DConditionModelImpl::forward(const at::Tensor& sample, const at::Tensor& timestep,
                                             const at::Tensor& encoder_hidden_states, double fps, TemporalContext& ctx,
                                             StageMap* stages) const {
  VI_CHECK(sample.dim() == 5 && sample.size(1) == config_.in_channels,
           "UNet: sample must be [B, {}, F, h, w], got {}", config_.in_channels, core::shape_str(sample.sizes().vec()));
  const int64_t B = sample.size(0), C = sample.size(1), F = sample.size(2), H = sample.size(3), W = sample.size(4);
  // Per sample [B, S, D], or per frame [B*F, S, D] (sample-major, frame-minor).
  const bool per_frame = encoder_hidden_states.dim() == 3 && encoder_hidden_states.size(0) == B * F;
  VI_CHECK(encoder_hidden_states.dim() == 3 && (encoder_hidden_states.size(0) == B || per_frame) &&
               encoder_hidden_states.size(2) == config_.cross_attention_dim,
           "UNet: encoder_hidden_states must be [{}, S, {}] or per frame [{}, S, {}], got {}", B,
           config_.cross_attention_dim, B * F, config_.cross_attention_dim,
           core::shape_str(encoder_hidden_states.sizes().vec()));
  at::Tensor t = timestep.reshape({-1});
  VI_CHECK(t.numel() == 1 || t.numel() == B, "UNet: {} timesteps for a batch of {}", t.numel(), B);
  const auto dt = dtype();
  const auto dev = device();
  check_dtype_supported(dt);
  const int64_t c0 = config_.block_out_channels[0], rows = B * F;
  auto stage = [&](const std::string& name, const at::Tensor& x) {
    if (stages != nullptr) (*stages)[name] = x;
  };
  ctx.begin_call(t[0].item<double>(), B);

  // 1. Time (and fps) embedding, repeated per frame; text states repeated per frame (unless given per frame).
  at::Tensor t_emb = timestep_embedding(t.to(dev).expand({B}), c0, true, 0).to(dt);  // [B, c0]
  stage("time_proj", t_emb);
  at::Tensor emb = time_embedding_->forward(t_emb);  // [B, 4*c0]
  if (config_.fps_cond) {
    at::Tensor fps_proj = timestep_embedding(at::full({1}, fps, at::TensorOptions(at::kDouble).device(dev)), c0, true, 0)
                              .to(dt);  // [1, c0]
    at::Tensor fps_emb = fps_embedding_->forward(fps_proj);  // [1, 4*c0]
    stage("fps_proj", fps_proj);
    stage("fps_embedding", fps_emb);
    emb = emb + fps_emb;
  }
  stage("time_embedding", emb);
  emb = emb.repeat_interleave(F, 0);                                                       // [B*F, 4*c0]
  at::Tensor context = encoder_hidden_states.to(dev, dt);
  if (!per_frame) context = context.repeat_interleave(F, 0);                                // [B*F, S, D]

  // 2. Pre-process: frames into the batch, conv_in, transformer_in.
  FrameRun run{ctx, F, frame_chunk_};
  at::Tensor x = sample.to(dev, dt).permute({0, 2, 1, 3, 4}).reshape({rows, C, H, W});  // [B*F, C, h, w]
  if (channels_last_) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  x = map_rows(rows, frame_chunk_, [&](int64_t b, int64_t n) { return conv_in_->forward(x.narrow(0, b, n)); });
  stage("conv_in", x);
  x = transformer_in_->forward(x, F, ctx, frame_chunk_);
  stage("transformer_in", x);

  // 3. Down.
  std::vector<at::Tensor> skips{x};
  for (size_t i = 0; i < down_blocks_.size(); ++i) {
    auto [h, states] = down_blocks_[i]->forward(x, emb, context, run);
    x = h;
    skips.insert(skips.end(), states.begin(), states.end());
    stage("down_blocks." + std::to_string(i), x);
  }

  // 4. Mid.
  x = mid_block_->forward(x, emb, context, run);
  stage("mid_block", x);

  // 5. Up. Sizes not divisible by 2^upsamplers: upsample to the skip's size instead of x2.
  const int64_t factor = int64_t{1} << num_upsamplers_;
  const bool forward_upsample_size = H % factor != 0 || W % factor != 0;
  for (size_t i = 0; i < up_blocks_.size(); ++i) {
    const auto n = static_cast<size_t>(up_blocks_[i]->num_layers());
    VI_CHECK(skips.size() >= n, "UNet: {} skip states left for an up block of {} layers", skips.size(), n);
    std::vector<at::Tensor> res(skips.end() - n, skips.end());
    skips.resize(skips.size() - n);
    std::optional<std::array<int64_t, 2>> upsample_size;
    if (i + 1 < up_blocks_.size() && forward_upsample_size) {
      upsample_size = std::array<int64_t, 2>{skips.back().size(2), skips.back().size(3)};
    }
    x = up_blocks_[i]->forward(x, std::move(res), emb, context, upsample_size, run);
    stage("up_blocks." + std::to_string(i), x);
  }

  // 6. Post-process: GroupNorm, SiLU, conv_out; frames back out of the batch.
  x = map_rows(rows, frame_chunk_, [&](int64_t b, int64_t n) {
    return conv_out_->forward(at::silu(conv_norm_out_->forward(x.narrow(0, b, n))));
  });
  stage("conv_out", x);
  return x.reshape({B, F, config_.out_channels, H, W}).permute({0, 2, 1, 3, 4}).contiguous();  // [B, out, F, h, w]
}

UNet3DConditionModel load_unet3d(const std::string& dir, c10::ScalarType dtype, c10::Device device) {
  namespace fs = std::filesystem;
  // A UNet directory has config.json at its root (adamdad/videocrafterv2_diffusers) or under unet/.
  std::string root = dir;
  if (!fs::exists(fs::path(dir) / "config.json") && fs::exists(fs::path(dir) / "unet" / "config.json")) {
    root = (fs::path(dir) / "unet").string();
  }
  check_dtype_supported(dtype);
  UNet3DConfig config = UNet3DConfig::load((fs::path(root) / "config.json").string());
  UNet3DConditionModel model(config);
  core::LoadOptions options;
  options.dtype = dtype;
  options.device = device;
  core::load_state_dict(*model, core::WeightStore::open(root), options);
  return model;
}

}  // namespace vi::models
