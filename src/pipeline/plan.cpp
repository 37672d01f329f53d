#include "pipeline/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/check.h"
#include "core/json_config.h"
#include "core/memory_stats.h"
#include "core/model_dir.h"
#include "core/safetensors.h"
#include "core/safetensors_format.h"
#include "models/unet3d_flops.h"
#include "parallel/dual_scope.h"

#ifdef VI_TORCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace fs = std::filesystem;

namespace vi::pipeline {

namespace {

// --- weights from the safetensors headers ------------------------------------------------------

// The files of a component's checkpoint (WeightStore::open's choice): one file or the shards of
// an index.
std::vector<std::string> weight_files(const std::string& dir) {
  auto found = core::WeightStore::locate(dir);
  VI_CHECK(found.has_value(), "{}: no weights found (expected diffusion_pytorch_model.safetensors, "
           "model.safetensors or a *.safetensors.index.json)", dir);
  const std::string index_suffix = ".index.json";
  const std::string& file = *found;
  if (file.size() <= index_suffix.size() ||
      file.compare(file.size() - index_suffix.size(), index_suffix.size(), index_suffix) != 0) {
    return {file};
  }
  core::JsonConfig index = core::JsonConfig::load(file);
  std::vector<std::string> shards;
  const auto& map = index.json().at("weight_map");
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string shard = (fs::path(file).parent_path() / it.value().get<std::string>()).string();
    if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
  }
  return shards;
}

// `loaded(name)`: whether the model loads the tensor (the VAE skips its encoder, the text
// encoder its position ids); skipped tensors' pages are never touched, so they cost nothing.
ComponentWeights component_weights(const std::string& dir, const std::function<bool(const std::string&)>& loaded) {
  ComponentWeights w;
  const auto files = weight_files(dir);
  w.path = files.size() == 1 ? files[0] : dir;
  for (const auto& file : files) {
    for (const auto& t : core::read_safetensors_header(file).tensors) {
      if (!loaded(t.name)) continue;
      const double bytes = static_cast<double>(t.end - t.begin);
      w.file_bytes += bytes;
      if (core::dtype_is_floating(t.dtype)) {
        w.floating_params += t.numel();
      } else {
        w.other_bytes += bytes;
      }
    }
  }
  return w;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

std::string unet_config_dir(const std::string& dir) {
  // As load_unet3d: config.json at the root (adamdad/videocrafterv2_diffusers) or under unet/.
  if (!fs::exists(fs::path(dir) / "config.json") && fs::exists(fs::path(dir) / "unet" / "config.json")) {
    return (fs::path(dir) / "unet").string();
  }
  return dir;
}

// --- activations ---------------------------------------------------------------------------------
//
// Elements of one UNet call's tensors, walked in forward order (unet3d_condition.cpp
// UNet3DConditionModelImpl::forward and the blocks it calls): the skip states the up path will
// need are held, and each layer adds its input, its output and its working tensors. The
// coefficients below count the [tokens, width]-sized tensors alive at a layer's busiest moment,
// read from the layer code; they were checked against measured peak RSS (tests/e2e/test_plan.cpp,
// README "Planning a run").

// ResnetBlock2D: GroupNorm + SiLU of the input (x2), conv1, GroupNorm + SiLU, conv2, shortcut.
constexpr double kResnetIn = 2, kResnetOut = 3;
// TemporalConvLayer: four (GroupNorm, SiLU, Conv3d) on the halo-extended frames, plus residual.
constexpr double kTemporalConv = 3;
// BasicTransformerBlock: at the GEGLU feed-forward the projection [T, 8 inner], gelu(gate) and
// the product [T, 4 inner] each, the block's input, its residual and the norm: 19 x [T, inner]
// by counting; 15 matches the measured peaks (the tiny model at 128x128 and 256x256, 16-64
// frames: the peak is transformer_in's block there), the allocator reusing freed blocks.
constexpr double kTransformer = 15;

class UNetWalk {
 public:
  UNetWalk(const models::UNet3DConfig& c, int64_t batch, int64_t frames, int64_t h, int64_t w, int64_t frame_chunk,
           const parallel::DualScopeSettings& ds, int64_t global_frames, int64_t text_tokens)
      : c_(c), B_(batch), F_(frames), h_(h), w_(w), ds_(ds), G_(global_frames), text_tokens_(text_tokens) {
    const double rows = static_cast<double>(B_ * F_);
    r_ = frame_chunk > 0 ? std::min(1.0, static_cast<double>(frame_chunk) / rows) : 1.0;
    chunked_ = r_ < 1.0;
  }

  // Peak elements of one call and the layer where it happens.
  std::pair<double, std::string> run() {
    const auto& boc = c_.block_out_channels;
    const int64_t levels = static_cast<int64_t>(boc.size()), c0 = boc[0];
    const double rows = static_cast<double>(B_ * F_);
    int64_t h = h_, w = w_;
    // Held for the whole call: the per-frame time embedding and text states (repeat_interleave).
    held_ = rows * (4.0 * static_cast<double>(c0) + static_cast<double>(text_tokens_ * c_.cross_attention_dim));
    held_ += 2 * act(c_.in_channels, h, w);  // the input sample and its [B*F, C, h, w] copy
    per_frame_op("conv_in", act(c_.in_channels, h, w), act(c0, h, w));
    temporal_transformer("transformer_in", c0, 8 * c_.attention_head_dim, 8, h, w);
    skip(act(c0, h, w));
    std::vector<std::array<int64_t, 2>> sizes{{h, w}};
    int64_t ch = c0;
    for (int64_t i = 0; i < levels; ++i) {
      const std::string p = "down_blocks." + std::to_string(i);
      const int64_t in = ch;
      ch = boc[i];
      const bool cross = c_.down_block_types[i] == "CrossAttnDownBlock3D";
      for (int64_t j = 0; j < c_.layers_per_block; ++j) {
        layer(p, j == 0 ? in : ch, ch, cross, h, w);
        skip(act(ch, h, w));
      }
      if (i != levels - 1) {
        const int64_t pad = c_.downsample_padding, extra = pad == 0 ? 1 : 0;
        const double before = act(ch, h, w);
        h = (h + 2 * pad + extra - 3) / 2 + 1;
        w = (w + 2 * pad + extra - 3) / 2 + 1;
        per_frame_op(p + ".downsamplers", before, act(ch, h, w));
        skip(act(ch, h, w));
        sizes.push_back({h, w});
      }
    }
    const int64_t C = boc[levels - 1];
    layer("mid_block", C, C, false, h, w);
    spatial_transformer("mid_block.attentions", C, h, w);
    temporal_transformer("mid_block.temp_attentions", C, C, C / c_.attention_head_dim, h, w);
    layer("mid_block", C, C, false, h, w);
    sizes.pop_back();
    ch = boc[levels - 1];
    for (int64_t i = 0; i < levels; ++i) {
      const std::string p = "up_blocks." + std::to_string(i);
      const int64_t prev = ch;
      ch = boc[levels - 1 - i];
      const int64_t in = boc[levels - 1 - std::min(i + 1, levels - 1)];
      const int64_t n = c_.layers_per_block + 1;
      const bool cross = c_.up_block_types[i] == "CrossAttnUpBlock3D";
      for (int64_t j = 0; j < n; ++j) {
        const int64_t skip_ch = j == n - 1 ? in : ch;
        unskip(act(skip_ch, h, w));
        // The skip stays alive through the layer (the up block holds it until the next).
        held_ += act(skip_ch, h, w);
        layer(p, (j == 0 ? prev : ch) + skip_ch, ch, cross, h, w, (j == 0 ? prev : ch));
        held_ -= act(skip_ch, h, w);
      }
      if (i != levels - 1) {
        const double before = act(ch, h, w);
        h = sizes.back()[0];
        w = sizes.back()[1];
        sizes.pop_back();
        // Nearest upsampling, then the conv: input, upsampled and output at the new size.
        per_frame_op(p + ".upsamplers", before + act(ch, h, w), act(ch, h, w));
      }
    }
    per_frame_op("conv_out", act(c0, h, w) * 3, act(c_.out_channels, h, w));
    return {peak_, where_};
  }

 private:
  // [B*F, C, h, w] elements.
  double act(int64_t C, int64_t h, int64_t w) const {
    return static_cast<double>(B_ * F_) * static_cast<double>(C) * static_cast<double>(h * w);
  }
  void at(const std::string& where, double elements) {
    const double total = held_ + skips_ + elements;
    if (total > peak_) {
      peak_ = total;
      where_ = where;
    }
  }
  void skip(double e) { skips_ += e; }
  void unskip(double e) { skips_ -= e; }
  // map_rows: chunk outputs are collected and concatenated (output twice at the end).
  double collected(double out) const { return chunked_ ? 2 * out : out; }
  void per_frame_op(const std::string& where, double in, double out) { at(where, in + r_ * (in + out) + collected(out)); }

  // resnet, temporal conv and, in cross-attention blocks, the two transformers; `x_ch` is the
  // channels of the running state (the up path concatenates a skip held separately).
  void layer(const std::string& p, int64_t in, int64_t out, bool cross, int64_t h, int64_t w, int64_t x_ch = -1) {
    const double x = act(x_ch < 0 ? in : x_ch, h, w);
    const double working = r_ * (kResnetIn * act(in, h, w) + kResnetOut * act(out, h, w));
    at(p + ".resnets", x + working + collected(act(out, h, w)));
    const double ext =
        act(out, h, w) * static_cast<double>(F_ + (ds_.enabled ? 2 * ds_.conv_padding : 0)) / static_cast<double>(F_);
    at(p + ".temp_convs", act(out, h, w) + ext * (1 + kTemporalConv));
    if (cross) {
      spatial_transformer(p + ".attentions", out, h, w);
      temporal_transformer(p + ".temp_attentions", out, out, out / c_.attention_head_dim, h, w);
    }
  }

  void spatial_transformer(const std::string& p, int64_t C, int64_t h, int64_t w) {
    const double x = act(C, h, w);
    // Cross-attention keys and values of the chunk's text states: [n, 77, inner] twice.
    const double kv = 2.0 * static_cast<double>(B_ * F_ * text_tokens_ * C);
    at(p, x + r_ * (kTransformer * x + kv) + collected(x));
  }

  // Per pixel over frames: GroupNorm + token-layout copy, the output buffer, and per pixel chunk
  // the block (attention scores of the dual-scope form: each query block of Fb frames against
  // its Fb + 2P window and the G globals, scores and their softmax).
  void temporal_transformer(const std::string& p, int64_t C, int64_t inner, int64_t heads, int64_t h, int64_t w) {
    const double x = act(C, h, w), tokens = static_cast<double>(B_ * F_ * h * w);
    double keys = static_cast<double>(F_);
    if (ds_.enabled) {
      const int64_t fb = std::min(F_, std::max<int64_t>(2 * ds_.attn_padding, 8));
      keys = static_cast<double>(fb + 2 * ds_.attn_padding + G_);
    }
    const double scores = 2.0 * tokens * static_cast<double>(heads) * keys;
    const double halo = ds_.enabled ? 2.0 * static_cast<double>(2 * ds_.attn_padding) / static_cast<double>(F_) : 0;
    const double block = r_ * ((kTransformer + halo) * tokens * static_cast<double>(inner) + scores);
    at(p, 3 * x + block);
  }

  const models::UNet3DConfig& c_;
  int64_t B_, F_, h_, w_;
  parallel::DualScopeSettings ds_;
  int64_t G_;
  int64_t text_tokens_;
  double r_ = 1;
  bool chunked_ = false;
  double held_ = 0, skips_ = 0, peak_ = 0;
  std::string where_;
};

// The halos and global frames one rank sends per UNet call of `batch` (CFG groups x local clips).
struct Exchange {
  double halo = 0, gather = 0;
  int64_t conv_layers = 0, attention_layers = 0;
};

Exchange exchange_per_call(const models::UNet3DConfig& c, const parallel::DualScopeSettings& ds, int64_t groups,
                           int64_t local_clips, int64_t h, int64_t w, int64_t global_per_clip, int sides,
                           int world_size, double element) {
  Exchange e;
  if (!ds.enabled) return e;
  const auto& boc = c.block_out_channels;
  const int64_t levels = static_cast<int64_t>(boc.size());
  auto conv = [&](int64_t C, int64_t hh, int64_t ww) {
    ++e.conv_layers;
    // Pc frames of [groups, C, h, w] to each neighbour on another rank.
    e.halo += sides * static_cast<double>(groups * C * ds.conv_padding * hh * ww) * element;
  };
  // A temporal transformer's block has two self-attentions over frames (attn1, and attn2 with no
  // text to attend to), both through the context: each exchanges k and v together, P frames of
  // [2 groups, h*w, inner] to each neighbour and the global frames of every local clip to every
  // other rank.
  auto attention = [&](int64_t inner, int64_t hh, int64_t ww) {
    e.attention_layers += 2;
    const double per_frame = static_cast<double>(2 * groups * hh * ww * inner) * element;
    e.halo += 2 * sides * per_frame * static_cast<double>(ds.attn_padding);
    e.gather += 2 * per_frame * static_cast<double>(local_clips * global_per_clip) * (world_size - 1);
  };
  int64_t h_l = h, w_l = w;
  std::vector<std::array<int64_t, 2>> sizes{{h, w}};
  attention(8 * c.attention_head_dim, h_l, w_l);  // transformer_in
  for (int64_t i = 0; i < levels; ++i) {
    const bool cross = c.down_block_types[i] == "CrossAttnDownBlock3D";
    for (int64_t j = 0; j < c.layers_per_block; ++j) {
      conv(boc[i], h_l, w_l);
      if (cross) attention(boc[i], h_l, w_l);
    }
    if (i != levels - 1) {
      const int64_t pad = c.downsample_padding, extra = pad == 0 ? 1 : 0;
      h_l = (h_l + 2 * pad + extra - 3) / 2 + 1;
      w_l = (w_l + 2 * pad + extra - 3) / 2 + 1;
      sizes.push_back({h_l, w_l});
    }
  }
  conv(boc[levels - 1], h_l, w_l);
  attention(boc[levels - 1], h_l, w_l);
  conv(boc[levels - 1], h_l, w_l);
  sizes.pop_back();
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t C = boc[levels - 1 - i];
    const bool cross = c.up_block_types[i] == "CrossAttnUpBlock3D";
    for (int64_t j = 0; j <= c.layers_per_block; ++j) {
      conv(C, h_l, w_l);
      if (cross) attention(C, h_l, w_l);
    }
    if (i != levels - 1) {
      h_l = sizes.back()[0];
      w_l = sizes.back()[1];
      sizes.pop_back();
    }
  }
  return e;
}

double element_size(c10::ScalarType dtype) { return static_cast<double>(c10::elementSize(dtype)); }

}  // namespace

ModelShapes read_model_shapes(const std::string& model_dir, const std::string& unet_dir) {
  const core::ModelPaths paths = core::resolve_model(model_dir, unet_dir);
  ModelShapes m;
  const std::string unet_dir_resolved = unet_config_dir(paths.unet);
  m.unet = models::UNet3DConfig::load(unet_dir_resolved + "/config.json");
  m.text = models::ClipTextConfig::load(paths.text_encoder + "/config.json");
  m.vae = models::AutoencoderKLConfig::load(paths.vae + "/config.json");
  m.unet_weights = component_weights(unet_dir_resolved, [](const std::string&) { return true; });
  m.text_weights = component_weights(paths.text_encoder,
                                     [](const std::string& n) { return n.find("position_ids") == std::string::npos; });
  m.vae_weights = component_weights(paths.vae, [](const std::string& n) {
    return !starts_with(n, "encoder.") && !starts_with(n, "quant_conv.");
  });
  return m;
}

double available_memory(c10::Device device, int ranks_here, std::string* source) {
  if (ranks_here <= 0) {
    ranks_here = 1;
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE"}) {
      const char* v = std::getenv(name);
      if (v != nullptr && std::atoi(v) > 0) {
        ranks_here = std::atoi(v);
        break;
      }
    }
  }
#ifdef VI_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(device.has_index() ? device.index() : c10::cuda::current_device());
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      if (source) *source = fmt::format("total memory of {}", device.str());
      return static_cast<double>(total_bytes);
    }
    return 0;
  }
#endif
  if (device.is_cuda()) return 0;
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  double kb = 0, available = 0, total = 0;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemAvailable:") available = kb * 1024;
    if (key == "MemTotal:") total = kb * 1024;
  }
  const double bytes = available > 0 ? available : total;
  if (bytes <= 0) return 0;
  if (source) {
    *source = fmt::format("{} of this machine{}", available > 0 ? "MemAvailable" : "physical memory",
                          ranks_here > 1 ? fmt::format(" / {} ranks here", ranks_here) : "");
  }
  return bytes / ranks_here;
}

double measured_peak_bytes(c10::Device device) {
#ifdef VI_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    return static_cast<double>(stats.reserved_bytes[0].peak) + kCudaBaselineBytes;
  }
#endif
  return static_cast<double>(core::peak_rss_bytes());
}

Plan make_plan(const GenerationConfig& cfg, const ModelShapes& m, int world_size, c10::ScalarType dtype,
               c10::Device device, double available_bytes, const std::string& available_source) {
  VI_CHECK(world_size >= 1 && cfg.clips >= world_size && cfg.clips % world_size == 0,
           "plan: {} clips on {} ranks (resolve_config first)", cfg.clips, world_size);
  Plan p;
  const double e = element_size(dtype);
  p.world_size = world_size;
  p.device = device.str();
  p.dtype = c10::toString(dtype);
  p.clips = cfg.clips;
  const std::vector<int64_t> counts = clip_frame_counts(cfg);
  VI_CHECK(static_cast<int64_t>(counts.size()) == cfg.clips, "plan: {} clip lengths for {} clips", counts.size(),
           cfg.clips);
  p.local_clips = cfg.clips / world_size;
  int64_t frame = 0;
  for (int r = 0; r < world_size; ++r) {
    RankClips rc;
    rc.rank = r;
    rc.first_clip = r * p.local_clips;
    rc.first_frame = frame;
    for (int64_t j = 0; j < p.local_clips; ++j) {
      rc.frames.push_back(counts[static_cast<size_t>(rc.first_clip + j)]);
      frame += rc.frames.back();
    }
    p.ranks.push_back(std::move(rc));
  }
  p.frames = frame;
  p.longest_clip = *std::max_element(counts.begin(), counts.end());
  p.latent_channels = m.unet.in_channels;
  p.latent_height = cfg.height / 8;
  p.latent_width = cfg.width / 8;
  const int64_t F = p.longest_clip, h = p.latent_height, w = p.latent_width, Cl = p.local_clips;
  const int64_t groups = cfg.cfg_serial ? 1 : 2;
  p.unet_batch = groups * Cl;

  // Weights: floating tensors in the run's dtype.
  auto resident = [&](const ComponentWeights& cw) { return static_cast<double>(cw.floating_params) * e + cw.other_bytes; };
  p.unet_bytes = resident(m.unet_weights);
  p.text_bytes = resident(m.text_weights);
  p.vae_bytes = resident(m.vae_weights);
  const double weights = p.unet_bytes + p.text_bytes + p.vae_bytes;
  p.baseline_bytes = device.is_cuda() ? kCudaBaselineBytes : kCpuBaselineBytes;
  const double base = p.baseline_bytes;

  // 1. Load: text encoder, UNet, VAE in turn; on the CPU each component's file pages stay mapped
  // (and resident) while it is copied into the run's dtype.
  {
    StageEstimate s{"load", 0, 0, ""};
    const double file_unet = device.is_cuda() ? 0 : m.unet_weights.file_bytes;
    const double file_text = device.is_cuda() ? 0 : m.text_weights.file_bytes;
    const double file_vae = device.is_cuda() ? 0 : m.vae_weights.file_bytes;
    const double at_text = p.text_bytes + file_text;
    const double at_unet = p.text_bytes + p.unet_bytes + file_unet;
    const double at_vae = weights + file_vae;
    const double peak = std::max({at_text, at_unet, at_vae});
    s.activations = peak - weights;
    s.bytes = base + peak;
    s.detail = device.is_cuda() ? "weights" : "the UNet's file mapped while it is copied";
    p.stages.push_back(s);
  }
  // 2. Text: [2 Cl, 77, D] through the encoder (attention scores per head, MLP).
  {
    const auto& t = m.text;
    const double rows = static_cast<double>(2 * Cl * t.max_position_embeddings);
    double act = rows * static_cast<double>(8 * t.hidden_size + 2 * t.intermediate_size +
                                            2 * t.num_attention_heads * t.max_position_embeddings) * e;
    if (cfg.prompt_blend >= 0) {
      // Prompt travel: the per-frame states [2 Cl F, 77, D] and their cond half blended in fp32.
      act += static_cast<double>(Cl * F * t.max_position_embeddings * t.hidden_size) * (2 * e + 4);
    }
    p.stages.push_back({"text", base + weights + act, act, "text states"});
  }
  // 3-4. Denoise: one UNet call of the CFG batch (or one branch with --cfg-serial), plus the
  // latents, the CFG output and the sampler's history in fp32.
  int64_t global_per_clip = 0;
  if (cfg.dual_scope.enabled) {
    global_per_clip =
        static_cast<int64_t>(parallel::global_frame_indices(F, cfg.dual_scope.top_k, cfg.clips).size());
  }
  const int64_t G = std::min<int64_t>(cfg.dual_scope.top_k, cfg.clips * global_per_clip);
  {
    UNetWalk walk(m.unet, p.unet_batch, F, h, w, cfg.frame_chunk, cfg.dual_scope, G, m.text.max_position_embeddings);
    auto [elements, where] = walk.run();
    const double latents = static_cast<double>(Cl * p.latent_channels * F * h * w);
    const double fp32 = latents * 4 * 10;  // latents, model input, eps (2 branches), guided, noise, history
    double act = elements * e + fp32;
    // Prompt travel hands the UNet per-frame states, used in place of its repeat (counted in the
    // walk); with --cfg-serial the other branch's rows stay held too.
    if (cfg.prompt_blend >= 0 && cfg.cfg_serial) {
      act += static_cast<double>(Cl * F * m.text.max_position_embeddings * m.unet.cross_attention_dim) * e;
    }
    p.stages.push_back({"denoise", base + weights + act, act, "UNet at " + where});
  }
  // 5. Decode: one clip at a time, --vae-chunk frames per decoder call; the clip's images
  // [F, 3, H, W] (and a contiguous copy) and its uint8 frames.
  {
    const auto& boc = m.vae.block_out_channels;
    const int64_t n = cfg.vae_chunk <= 0 ? F : std::min(cfg.vae_chunk, F);
    const double pixels = static_cast<double>(cfg.height * cfg.width);
    const double top = static_cast<double>(boc.size() > 1 ? boc[1] : boc[0]) + static_cast<double>(boc[0]);
    const double decoder = 3.0 * static_cast<double>(n) * pixels * top * e;
    const double images = static_cast<double>(F) * pixels * 3.0 * (2 * e + 1);
    const double latents = static_cast<double>(Cl * p.latent_channels * F * h * w) * 4;
    const double act = decoder + images + latents;
    p.stages.push_back({"decode", base + weights + act, act,
                        fmt::format("the clip's frames; VAE decoder on {} frames", n)});
  }
  for (const auto& s : p.stages) {
    if (s.bytes > p.peak_bytes) {
      p.peak_bytes = s.bytes;
      p.peak_stage = s.stage;
    }
  }
  p.available_bytes = available_bytes;
  p.available_source = available_source;

  // Exchanges per step: the busiest rank has neighbours on both sides when there are 3 or more
  // (on a ring, with 2 or more: both sides of a ring of two are the other rank).
  const int sides = world_size == 1 ? 0 : world_size == 2 && !cfg.dual_scope.loop ? 1 : 2;
  const Exchange ex = exchange_per_call(m.unet, cfg.dual_scope, 2, Cl, h, w, global_per_clip, sides, world_size, e);
  p.halo_bytes_per_step = ex.halo;
  p.gather_bytes_per_step = ex.gather;
  p.temporal_conv_layers = ex.conv_layers;
  p.temporal_attention_layers = ex.attention_layers;
  {
    models::UNetFlopShape shape;
    shape.batch = 2 * Cl;
    shape.frames = F;
    shape.height = h;
    shape.width = w;
    shape.text_tokens = m.text.max_position_embeddings;
    if (cfg.dual_scope.enabled) {
      shape.temporal_keys = 2 * cfg.dual_scope.attn_padding + 1 + G;
      shape.conv_halo = cfg.dual_scope.conv_padding;
    }
    p.gflop_per_step = models::count_unet_flops(m.unet, shape).total() / 1e9;
  }

  // Warnings.
  if (F > 4 * p.training_frames) {
    p.warnings.push_back(fmt::format(
        "{} frames per clip is {:.0f}x the {} frames the model was trained on: expect drifting or repeating "
        "content; use more clips (--clips, more ranks) for clips of {}-{} frames",
        F, static_cast<double>(F) / static_cast<double>(p.training_frames), p.training_frames, p.training_frames,
        2 * p.training_frames));
  }
  if (available_bytes > 0 && p.peak_bytes > available_bytes) {
    const StageEstimate* peak = nullptr;
    for (const auto& s : p.stages) {
      if (s.stage == p.peak_stage) peak = &s;
    }
    std::vector<std::string> ideas;
    if (p.peak_stage == "denoise") {
      // The same plan under other settings (no available memory given: no warnings, no recursion).
      auto peak_with = [&](const GenerationConfig& alt, int ranks) {
        return make_plan(alt, m, ranks, dtype, device, 0).peak_bytes;
      };
      GenerationConfig lean = cfg;
      if (lean.frame_chunk == 0 || lean.frame_chunk > 8) lean.frame_chunk = 8;
      lean.cfg_serial = true;
      if (lean.frame_chunk != cfg.frame_chunk || lean.cfg_serial != cfg.cfg_serial) {
        ideas.push_back(fmt::format("{}{}{}: {}", lean.frame_chunk != cfg.frame_chunk ? "--frame-chunk 8" : "",
                                    lean.frame_chunk != cfg.frame_chunk && !cfg.cfg_serial ? " " : "",
                                    cfg.cfg_serial ? "" : "--cfg-serial", format_bytes(peak_with(lean, world_size))));
      }
      // More ranks (on other devices or nodes): shorter clips, the same per-rank memory.
      for (int64_t k = 2; k <= 1024 && F / k >= 8; k *= 2) {
        GenerationConfig wide = cfg;
        wide.clips = cfg.clips * k;
        wide.frames_per_clip = (F + k - 1) / k;
        wide.frames = wide.clips * wide.frames_per_clip;
        const double peak = peak_with(wide, world_size * static_cast<int>(k));
        if (peak <= available_bytes || F / (2 * k) < 8) {
          ideas.push_back(fmt::format("{} ranks (clips of {} frames): {}", world_size * k, wide.frames_per_clip,
                                      format_bytes(peak)));
          break;
        }
      }
      if (dtype == c10::kFloat && device.is_cuda()) ideas.push_back("--dtype fp16 or bf16");
    } else if (p.peak_stage == "decode") {
      if (cfg.vae_chunk <= 0 || cfg.vae_chunk > 1) ideas.push_back("a smaller --vae-chunk (e.g. 1)");
      ideas.push_back("more ranks or clips");
    } else {
      ideas.push_back("a machine with more memory, or --dtype bf16 (halves the weights)");
    }
    std::string joined;
    for (size_t i = 0; i < ideas.size(); ++i) joined += (i ? ", " : "") + ideas[i];
    p.warnings.push_back(fmt::format("estimated peak {} per rank ({}) exceeds the {} available ({}): try {}",
                                     format_bytes(p.peak_bytes), peak ? peak->stage : p.peak_stage,
                                     format_bytes(available_bytes), available_source, joined));
  }
  return p;
}

std::string format_bytes(double bytes) {
  if (bytes >= 1e9) return fmt::format("{:.2f} GB", bytes / 1e9);
  if (bytes >= 1e6) return fmt::format("{:.1f} MB", bytes / 1e6);
  if (bytes >= 1e3) return fmt::format("{:.1f} kB", bytes / 1e3);
  return fmt::format("{:.0f} B", bytes);
}

namespace {

std::string clip_list(const RankClips& r) {
  // "clips 0-3 (4 x 24 frames)", or per clip when lengths differ.
  const int64_t last = r.first_clip + static_cast<int64_t>(r.frames.size()) - 1;
  std::string clips = r.frames.size() == 1 ? fmt::format("clip {}", r.first_clip)
                                           : fmt::format("clips {}-{}", r.first_clip, last);
  const bool equal = std::all_of(r.frames.begin(), r.frames.end(), [&](int64_t f) { return f == r.frames[0]; });
  int64_t total = 0;
  for (auto f : r.frames) total += f;
  std::string frames;
  if (equal) {
    frames = fmt::format("{} x {} frames", r.frames.size(), r.frames[0]);
  } else {
    for (size_t i = 0; i < r.frames.size(); ++i) frames += (i ? " + " : "") + std::to_string(r.frames[i]);
    frames += " frames";
  }
  return fmt::format("{} ({}), video frames {}-{}", clips, frames, r.first_frame, r.first_frame + total - 1);
}

}  // namespace

std::string format_plan_brief(const Plan& p) {
  std::string out = fmt::format(
      "plan: {} frames in {} clip{} on {} rank{} (longest clip {} frames, latent {}x{}x{}), {} {}; estimated peak "
      "{} per rank ({}){}",
      p.frames, p.clips, p.clips == 1 ? "" : "s", p.world_size, p.world_size == 1 ? "" : "s", p.longest_clip, p.latent_channels,
      p.latent_height, p.latent_width, p.device, p.dtype, format_bytes(p.peak_bytes), p.peak_stage,
      p.available_bytes > 0 ? fmt::format(" of {} available", format_bytes(p.available_bytes)) : "");
  for (const auto& w : p.warnings) out += "\nwarning: " + w;
  return out;
}

std::string format_plan(const Plan& p) {
  std::ostringstream o;
  o << fmt::format("plan: {} frames in {} clip{} on {} rank{}, {} {}\n", p.frames, p.clips, p.clips == 1 ? "" : "s",
                   p.world_size, p.world_size == 1 ? "" : "s", p.device, p.dtype);
  o << fmt::format("  latent {} x {} x {} per frame; each rank's batch is {} clip{} of {} frames x {} per UNet call\n",
                   p.latent_channels, p.latent_height, p.latent_width, p.local_clips, p.local_clips == 1 ? "" : "s",
                   p.longest_clip, p.unet_batch / std::max<int64_t>(p.local_clips, 1) == 2 ? "2 CFG branches"
                                                                                           : "1 CFG branch");
  const size_t shown = p.ranks.size() <= 8 ? p.ranks.size() : 4;
  for (size_t i = 0; i < shown; ++i) o << fmt::format("  rank {}: {}\n", p.ranks[i].rank, clip_list(p.ranks[i]));
  if (shown < p.ranks.size()) {
    o << fmt::format("  ... {} more ranks; rank {}: {}\n", p.ranks.size() - shown - 1, p.ranks.back().rank,
                     clip_list(p.ranks.back()));
  }
  o << "memory per rank (estimate):\n";
  o << fmt::format("  weights {} (UNet {}, text encoder {}, VAE {}), baseline {}\n",
                   format_bytes(p.unet_bytes + p.text_bytes + p.vae_bytes), format_bytes(p.unet_bytes),
                   format_bytes(p.text_bytes), format_bytes(p.vae_bytes), format_bytes(p.baseline_bytes));
  for (const auto& s : p.stages) {
    o << fmt::format("  {:<8} {:>10}  (+{} {}){}\n", s.stage, format_bytes(s.bytes), format_bytes(s.activations),
                     s.detail, s.stage == p.peak_stage ? "  <- peak" : "");
  }
  if (p.available_bytes > 0) {
    o << fmt::format("  available {} ({})\n", format_bytes(p.available_bytes), p.available_source);
  }
  o << fmt::format("exchange per step (busiest rank sends): {} halos ({} temporal convs, {} temporal attentions) "
                   "+ {} global frames\n",
                   format_bytes(p.halo_bytes_per_step), p.temporal_conv_layers, p.temporal_attention_layers,
                   format_bytes(p.gather_bytes_per_step));
  o << fmt::format("compute per step: {:.1f} GFLOP per rank (UNet, both CFG branches)\n", p.gflop_per_step);
  for (const auto& w : p.warnings) o << "warning: " << w << "\n";
  return o.str();
}

nlohmann::json plan_to_json(const Plan& p) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const auto& r : p.ranks) {
    ranks.push_back({{"rank", r.rank}, {"first_clip", r.first_clip}, {"frames", r.frames}, {"first_frame", r.first_frame}});
  }
  nlohmann::json stages = nlohmann::json::object();
  for (const auto& s : p.stages) {
    stages[s.stage] = {{"peak_bytes", s.bytes}, {"activation_bytes", s.activations}, {"detail", s.detail}};
  }
  return {
      {"world_size", p.world_size},
      {"device", p.device},
      {"dtype", p.dtype},
      {"frames", p.frames},
      {"clips", p.clips},
      {"ranks", ranks},
      {"longest_clip", p.longest_clip},
      {"local_clips", p.local_clips},
      {"unet_batch", p.unet_batch},
      {"latent", {p.latent_channels, p.latent_height, p.latent_width}},
      {"weights_bytes", {{"unet", p.unet_bytes}, {"text_encoder", p.text_bytes}, {"vae", p.vae_bytes}}},
      {"baseline_bytes", p.baseline_bytes},
      {"stages", stages},
      {"peak_stage", p.peak_stage},
      {"peak_bytes", p.peak_bytes},
      {"available_bytes", p.available_bytes},
      {"available_source", p.available_source},
      {"exchange_bytes_per_step", {{"halos", p.halo_bytes_per_step}, {"global_gather", p.gather_bytes_per_step}}},
      {"gflop_per_step", p.gflop_per_step},
      {"warnings", p.warnings},
  };
}

}  // namespace vi::pipeline
