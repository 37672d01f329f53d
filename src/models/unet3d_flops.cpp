#include "models/unet3d_flops.h"

#include <algorithm>
#include <array>

#include "core/check.h"

namespace vi::models {

double UNetFlops::total() const {
  double s = 0;
  for (const auto& l : layers) s += l.flops;
  return s;
}

double UNetFlops::of_kind(const std::string& kind) const {
  double s = 0;
  for (const auto& l : layers) s += l.kind == kind ? l.flops : 0;
  return s;
}

double UNetFlops::under(const std::string& prefix) const {
  double s = 0;
  for (const auto& l : layers) s += l.name.compare(0, prefix.size(), prefix) == 0 ? l.flops : 0;
  return s;
}

double conv_flops(int64_t images, int64_t in_channels, int64_t out_channels, int64_t kernel_volume,
                  int64_t output_positions) {
  return 2.0 * static_cast<double>(images) * static_cast<double>(output_positions) * static_cast<double>(out_channels) *
         static_cast<double>(in_channels) * static_cast<double>(kernel_volume);
}

double linear_flops(int64_t rows, int64_t in_features, int64_t out_features) {
  return 2.0 * static_cast<double>(rows) * static_cast<double>(in_features) * static_cast<double>(out_features);
}

double attention_flops(int64_t sequences, int64_t sq, int64_t sk, int64_t head_dim) {
  return 2.0 * 2.0 * static_cast<double>(sequences) * static_cast<double>(sq) * static_cast<double>(sk) *
         static_cast<double>(head_dim);
}

namespace {

// Mirrors the constructors of unet3d_condition.cpp / unet3d_blocks.cpp / unet3d_attention.cpp.
class Counter {
 public:
  Counter(const UNet3DConfig& c, const UNetFlopShape& s) : c_(c), s_(s) {}

  UNetFlops run() {
    const auto& boc = c_.block_out_channels;
    const int64_t levels = static_cast<int64_t>(boc.size()), c0 = boc[0], temb = 4 * c0;
    const int64_t B = s_.batch, F = s_.frames, rows = B * F;
    int64_t h = s_.height, w = s_.width;
    // 1. Time (and fps) embedding: per batch element (fps: one row), before repeat_interleave.
    linear("time_embedding.linear_1", B, c0, temb);
    linear("time_embedding.linear_2", B, temb, temb);
    if (c_.fps_cond) {
      linear("fps_embedding.linear_1", 1, c0, temb);
      linear("fps_embedding.linear_2", 1, temb, temb);
    }
    // 2. conv_in, transformer_in (8 heads of attention_head_dim, hard-coded in diffusers).
    conv("conv_in", "conv2d", rows, c_.in_channels, c0, 9, h * w);
    temporal_transformer("transformer_in", c0, 8, c_.attention_head_dim, h, w);
    // 3. Down; the spatial size of every level for the up path's upsamplers.
    std::vector<std::array<int64_t, 2>> sizes{{h, w}};
    int64_t out_ch = c0;
    for (int64_t i = 0; i < levels; ++i) {
      const std::string p = "down_blocks." + std::to_string(i) + ".";
      const int64_t in = out_ch;
      out_ch = boc[i];
      const bool cross = c_.down_block_types[i] == "CrossAttnDownBlock3D";
      for (int64_t j = 0; j < c_.layers_per_block; ++j) {
        layer(p, j, j == 0 ? in : out_ch, out_ch, cross, h, w);
      }
      if (i != levels - 1) {
        // Ref: Downsample2D: padding 0 pads (0, 1, 0, 1) first; 3x3 conv, stride 2.
        const int64_t pad = c_.downsample_padding, extra = pad == 0 ? 1 : 0;
        h = (h + 2 * pad + extra - 3) / 2 + 1;
        w = (w + 2 * pad + extra - 3) / 2 + 1;
        conv(p + "downsamplers.0.conv", "conv2d", rows, out_ch, out_ch, 9, h * w);
        sizes.push_back({h, w});
      }
    }
    // 4. Mid: resnet, temp conv, then [attention, temp attention, resnet, temp conv].
    {
      const int64_t C = boc[levels - 1];
      resnet("mid_block.resnets.0", C, C, h, w);
      temporal_conv("mid_block.temp_convs.0", C, h, w);
      spatial_transformer("mid_block.attentions.0", C, h, w);
      temporal_transformer("mid_block.temp_attentions.0", C, C / c_.attention_head_dim, c_.attention_head_dim, h, w);
      resnet("mid_block.resnets.1", C, C, h, w);
      temporal_conv("mid_block.temp_convs.1", C, h, w);
    }
    // 5. Up: each layer's resnet takes the running channels plus one skip state.
    sizes.pop_back();  // the deepest level's size is the current one
    out_ch = boc[levels - 1];
    for (int64_t i = 0; i < levels; ++i) {
      const std::string p = "up_blocks." + std::to_string(i) + ".";
      const int64_t prev = out_ch;
      out_ch = boc[levels - 1 - i];
      const int64_t in = boc[levels - 1 - std::min(i + 1, levels - 1)];
      const int64_t n = c_.layers_per_block + 1;
      const bool cross = c_.up_block_types[i] == "CrossAttnUpBlock3D";
      for (int64_t j = 0; j < n; ++j) {
        const int64_t skip = j == n - 1 ? in : out_ch;
        layer(p, j, (j == 0 ? prev : out_ch) + skip, out_ch, cross, h, w);
      }
      if (i != levels - 1) {
        // Upsampled to the skip's size (x2 when the latent divides evenly).
        h = sizes.back()[0];
        w = sizes.back()[1];
        sizes.pop_back();
        conv(p + "upsamplers.0.conv", "conv2d", rows, out_ch, out_ch, 9, h * w);
      }
    }
    // 6. conv_out.
    conv("conv_out", "conv2d", rows, c0, c_.out_channels, 9, h * w);
    return std::move(out_);
  }

 private:
  void add(const std::string& name, const std::string& kind, double flops) { out_.layers.push_back({name, kind, flops}); }
  void conv(const std::string& name, const std::string& kind, int64_t images, int64_t cin, int64_t cout, int64_t kvol,
            int64_t positions) {
    add(name, kind, conv_flops(images, cin, cout, kvol, positions));
  }
  void linear(const std::string& name, int64_t rows, int64_t in, int64_t out) {
    add(name, "linear", linear_flops(rows, in, out));
  }

  // Ref: ResnetBlock2D: conv1, time_emb_proj (on B*F rows of the repeated embedding), conv2, 1x1 shortcut.
  void resnet(const std::string& p, int64_t in, int64_t out, int64_t h, int64_t w) {
    const int64_t rows = s_.batch * s_.frames;
    conv(p + ".conv1", "conv2d", rows, in, out, 9, h * w);
    linear(p + ".time_emb_proj", rows, 4 * c_.block_out_channels[0], out);
    conv(p + ".conv2", "conv2d", rows, out, out, 9, h * w);
    if (in != out) conv(p + ".conv_shortcut", "conv2d", rows, in, out, 1, h * w);
  }

  // Ref: TemporalConvLayer: four Conv3d (3, 1, 1) over F + 2 conv_halo frames (padding 1 keeps the count).
  void temporal_conv(const std::string& p, int64_t C, int64_t h, int64_t w) {
    const int64_t frames = s_.frames + 2 * s_.conv_halo;
    for (int i = 1; i <= 4; ++i) {
      conv(p + ".conv" + std::to_string(i) + "." + (i == 1 ? "2" : "3"), "conv3d", s_.batch, C, C, 3,
           frames * h * w);
    }
  }

  // Ref: BasicTransformerBlock: attn1, attn2 (cross on `context_tokens` text tokens, or a second
  // self-attention when 0), GEGLU feed-forward (mult 4).
  void block(const std::string& p, int64_t sequences, int64_t seq, int64_t keys, int64_t heads, int64_t dim_head,
             int64_t context_tokens) {
    const int64_t inner = heads * dim_head, tokens = sequences * seq;
    for (int a = 1; a <= 2; ++a) {
      const std::string q = p + ".attn" + std::to_string(a);
      const bool cross = a == 2 && context_tokens > 0;
      const int64_t kv_rows = cross ? sequences * context_tokens : tokens;
      const int64_t kv_dim = cross ? c_.cross_attention_dim : inner;
      linear(q + ".to_q", tokens, inner, inner);
      linear(q + ".to_k", kv_rows, kv_dim, inner);
      linear(q + ".to_v", kv_rows, kv_dim, inner);
      add(q + ".attention", "attention", attention_flops(sequences * heads, seq, cross ? context_tokens : keys, dim_head));
      linear(q + ".to_out.0", tokens, inner, inner);
    }
    linear(p + ".ff.net.0.proj", tokens, inner, 8 * inner);
    linear(p + ".ff.net.2", tokens, 4 * inner, inner);
  }

  // Ref: Transformer2DModel (linear projections): per image, h*w tokens, cross-attention on text.
  void spatial_transformer(const std::string& p, int64_t C, int64_t h, int64_t w) {
    const int64_t heads = C / c_.attention_head_dim, inner = heads * c_.attention_head_dim;
    const int64_t images = s_.batch * s_.frames, tokens = images * h * w;
    linear(p + ".proj_in", tokens, C, inner);
    block(p + ".transformer_blocks.0", images, h * w, h * w, heads, c_.attention_head_dim, s_.text_tokens);
    linear(p + ".proj_out", tokens, inner, C);
  }

  // Ref: TransformerTemporalModel: per pixel, F tokens, both attentions over frames.
  void temporal_transformer(const std::string& p, int64_t C, int64_t heads, int64_t dim_head, int64_t h, int64_t w) {
    const int64_t inner = heads * dim_head, sequences = s_.batch * h * w, tokens = sequences * s_.frames;
    const int64_t keys = s_.temporal_keys > 0 ? s_.temporal_keys : s_.frames;
    linear(p + ".proj_in", tokens, C, inner);
    block(p + ".transformer_blocks.0", sequences, s_.frames, keys, heads, dim_head, 0);
    linear(p + ".proj_out", tokens, inner, C);
  }

  // One layer of a down/up block: resnet, temp conv, and in cross-attention blocks the spatial
  // and temporal transformers.
  void layer(const std::string& p, int64_t j, int64_t in, int64_t out, bool cross, int64_t h, int64_t w) {
    const std::string n = std::to_string(j);
    resnet(p + "resnets." + n, in, out, h, w);
    temporal_conv(p + "temp_convs." + n, out, h, w);
    if (cross) {
      spatial_transformer(p + "attentions." + n, out, h, w);
      temporal_transformer(p + "temp_attentions." + n, out, out / c_.attention_head_dim, c_.attention_head_dim, h, w);
    }
  }

  const UNet3DConfig& c_;
  const UNetFlopShape& s_;
  UNetFlops out_;
};

}  // namespace

UNetFlops count_unet_flops(const UNet3DConfig& config, const UNetFlopShape& shape) {
  config.validate("count_unet_flops");
  VI_CHECK(shape.batch >= 1 && shape.frames >= 1 && shape.height >= 1 && shape.width >= 1 && shape.text_tokens >= 1,
           "count_unet_flops: batch {}, frames {}, latent {}x{}, text tokens {} must all be positive", shape.batch,
           shape.frames, shape.height, shape.width, shape.text_tokens);
  VI_CHECK(shape.temporal_keys >= 0 && shape.conv_halo >= 0, "count_unet_flops: temporal_keys {} and conv_halo {} "
           "must be >= 0", shape.temporal_keys, shape.conv_halo);
  return Counter(config, shape).run();
}

}  // namespace vi::models
