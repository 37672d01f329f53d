#include "models/unet3d_blocks.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "core/check.h"

namespace vi::models {

namespace {

// The layers shared by every block kind, registered under the diffusers list names.
struct LayerLists {
  torch::nn::ModuleList resnets, temp_convs, attentions, temp_attentions;
};

// Registers a block's lists under the diffusers names (attentions only in cross-attention blocks).
void register_lists(torch::nn::Module& block, const LayerLists& lists, bool with_attentions) {
  block.register_module("resnets", lists.resnets);
  block.register_module("temp_convs", lists.temp_convs);
  if (with_attentions) {
    block.register_module("attentions", lists.attentions);
    block.register_module("temp_attentions", lists.temp_attentions);
  }
}

// Appends one layer's resnet (resnet_in -> channels) and temporal conv.
void add_layer(const Block3DOptions& o, int64_t resnet_in, int64_t channels, double output_scale_factor,
               LayerLists& lists, Layers3D& layers) {
  layers.resnets.emplace_back(resnet_in, channels, o.temb_channels, o.groups, o.eps, output_scale_factor);
  lists.resnets->push_back(layers.resnets.back());
  layers.temp_convs.emplace_back(channels, o.groups);
  lists.temp_convs->push_back(layers.temp_convs.back());
}

// Appends one layer's spatial and temporal transformers: channels / head_dim heads of head_dim.
void add_transformers(const Block3DOptions& o, int64_t channels, LayerLists& lists, Layers3D& layers) {
  const int64_t heads = channels / o.head_dim;
  VI_CHECK(heads >= 1, "{} channels are fewer than attention_head_dim {}", channels, o.head_dim);
  layers.attentions.emplace_back(heads, o.head_dim, channels, o.groups, o.cross_attention_dim);
  lists.attentions->push_back(layers.attentions.back());
  layers.temp_attentions.emplace_back(heads, o.head_dim, channels, o.groups);
  lists.temp_attentions->push_back(layers.temp_attentions.back());
}

// Layer i's spatial transformer (per frame, in chunks), then its temporal one: [B*F, C, h, w].
at::Tensor run_transformers(const at::Tensor& x, const at::Tensor& context, const FrameRun& run,
                            const Layers3D& layers, size_t i) {
  at::Tensor h = map_rows(x.size(0), run.frame_chunk, [&](int64_t b, int64_t n) {
    return layers.attentions[i]->forward(x.narrow(0, b, n), context.narrow(0, b, n));
  });
  return layers.temp_attentions[i]->forward(h, run.num_frames, run.ctx, run.frame_chunk);
}

// Layer i on [B*F, C, h, w]: resnet (per frame, in chunks), temporal conv, then with
// `transformers` (cross-attention blocks) the transformers. `input(begin, len)` yields the
// resnet's input rows (the up blocks concatenate a skip there).
at::Tensor run_layer(const std::function<at::Tensor(int64_t, int64_t)>& input, int64_t rows, const at::Tensor& temb,
                     const at::Tensor& context, const FrameRun& run, const Layers3D& layers, size_t i,
                     bool transformers) {
  at::Tensor h = map_rows(rows, run.frame_chunk, [&](int64_t b, int64_t n) {
    return layers.resnets[i]->forward(input(b, n), temb.narrow(0, b, n));
  });
  h = layers.temp_convs[i]->forward(h, run.num_frames, run.ctx);
  return transformers ? run_transformers(h, context, run, layers, i) : h;
}

}  // namespace

DownBlock3DImpl::DownBlock3DImpl(const Block3DOptions& o) {
  LayerLists lists;
  for (int64_t i = 0; i < o.num_layers; ++i) {
    add_layer(o, i == 0 ? o.in_channels : o.out_channels, o.out_channels, 1.0, lists, layers_);
    if (o.cross_attention) add_transformers(o, o.out_channels, lists, layers_);
  }
  register_lists(*this, lists, o.cross_attention);
  if (o.resample) {
    auto list = torch::nn::ModuleList();
    downsampler_ = Downsample2D(o.out_channels, o.downsample_padding);
    list->push_back(downsampler_);
    register_module("downsamplers", list);
  }
}

std::pair<at::Tensor, std::vector<at::Tensor>> DownBlock3DImpl::forward(const at::Tensor& x, const at::Tensor& temb,
                                                                        const at::Tensor& context,
                                                                        const FrameRun& run) const {
  std::vector<at::Tensor> states;
  at::Tensor h = x;
  const int64_t rows = x.size(0);
  const bool cross = !layers_.attentions.empty();
  for (size_t i = 0; i < layers_.resnets.size(); ++i) {
    h = run_layer([&](int64_t b, int64_t n) { return h.narrow(0, b, n); }, rows, temb, context, run, layers_, i, cross);
    states.push_back(h);
  }
  if (downsampler_) {
    h = map_rows(rows, run.frame_chunk, [&](int64_t b, int64_t n) { return downsampler_->forward(h.narrow(0, b, n)); });
    states.push_back(h);
  }
  return {h, std::move(states)};
}

UNetMidBlock3DCrossAttnImpl::UNetMidBlock3DCrossAttnImpl(const Block3DOptions& o) {
  LayerLists lists;
  const int64_t C = o.in_channels;
  add_layer(o, C, C, o.output_scale_factor, lists, layers_);
  for (int64_t i = 0; i < o.num_layers; ++i) {
    add_transformers(o, C, lists, layers_);
    add_layer(o, C, C, o.output_scale_factor, lists, layers_);
  }
  register_lists(*this, lists, /*with_attentions=*/true);
}

at::Tensor UNetMidBlock3DCrossAttnImpl::forward(const at::Tensor& x, const at::Tensor& temb,
                                                const at::Tensor& context, const FrameRun& run) const {
  const int64_t rows = x.size(0);
  at::Tensor h = x;
  auto rows_of_h = [&](int64_t b, int64_t n) { return h.narrow(0, b, n); };
  h = run_layer(rows_of_h, rows, temb, context, run, layers_, 0, /*transformers=*/false);
  for (size_t i = 0; i < layers_.attentions.size(); ++i) {
    h = run_transformers(h, context, run, layers_, i);
    h = run_layer(rows_of_h, rows, temb, context, run, layers_, i + 1, /*transformers=*/false);
  }
  return h;
}

UpBlock3DImpl::UpBlock3DImpl(const Block3DOptions& o) {
  LayerLists lists;
  for (int64_t i = 0; i < o.num_layers; ++i) {
    const int64_t skip = i == o.num_layers - 1 ? o.in_channels : o.out_channels;
    const int64_t resnet_in = i == 0 ? o.prev_output_channels : o.out_channels;
    add_layer(o, resnet_in + skip, o.out_channels, 1.0, lists, layers_);
    if (o.cross_attention) add_transformers(o, o.out_channels, lists, layers_);
  }
  register_lists(*this, lists, o.cross_attention);
  if (o.resample) {
    auto list = torch::nn::ModuleList();
    upsampler_ = Upsample2D(o.out_channels);
    list->push_back(upsampler_);
    register_module("upsamplers", list);
  }
}

at::Tensor UpBlock3DImpl::forward(const at::Tensor& x, std::vector<at::Tensor> skips, const at::Tensor& temb,
                                  const at::Tensor& context, std::optional<std::array<int64_t, 2>> upsample_size,
                                  const FrameRun& run) const {
  VI_CHECK(skips.size() == layers_.resnets.size(), "up block: {} skip states for {} layers", skips.size(),
           layers_.resnets.size());
  const int64_t rows = x.size(0);
  at::Tensor h = x;
  for (size_t i = 0; i < layers_.resnets.size(); ++i) {
    at::Tensor skip = std::move(skips.back());
    skips.pop_back();
    auto input = [&](int64_t b, int64_t n) { return at::cat({h.narrow(0, b, n), skip.narrow(0, b, n)}, 1); };
    h = run_layer(input, rows, temb, context, run, layers_, i, !layers_.attentions.empty());
  }
  if (upsampler_) {
    h = map_rows(rows, run.frame_chunk,
                 [&](int64_t b, int64_t n) { return upsampler_->forward(h.narrow(0, b, n), upsample_size); });
  }
  return h;
}

}  // namespace vi::models
