// The leaf layers every model family is built from (UNet3D, VAE decoder, CLIP text encoder):
// inference-only counterparts of torch.nn's, with the same parameters as public attributes
// (weight, bias), so that parameter names equal the checkpoints'. Unlike torch::nn::Linear & co.
// they do not initialise their parameters: a 1.4 B-parameter UNet is constructed in no time and
// without touching its memory, because every parameter is then overwritten by the loader
// (core::load_state_dict) or by randomize_parameters().
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>

namespace vi::models {

// fn(begin, len) computes rows [begin, begin + len) of a row-wise layer's output (rows = dim 0);
// the chunks are written into one output tensor, so a chunk's intermediates are all that is
// added to the layer's input and output. chunk <= 0 or >= rows: one call.
at::Tensor map_rows(int64_t rows, int64_t chunk, const std::function<at::Tensor(int64_t, int64_t)>& fn);

// An uninitialised parameter, frozen (inference only).
at::Tensor new_parameter(torch::nn::Module& module, const std::string& name, at::IntArrayRef shape);

// LibTorch computes a linear layer on inputs of more than 2 dims in two ways that round
// differently: at::linear, what PyTorch's nn.Linear runs (one addmm over the rows of a contiguous
// input), and torch::nn::Linear's C++ forward (x.matmul(W^T), then += b). Both agree with the
// reference to float rounding; each model keeps the one its results were made with, so that they
// stay bit-identical.
enum class LinearArithmetic { kAtenLinear, kMatmulThenAdd };

// Ref: torch.nn.Linear. y = x W^T + b.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true,
             LinearArithmetic arithmetic = LinearArithmetic::kAtenLinear);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }
  // Ref: torch.nn.Linear.reset_parameters (kaiming-uniform weight, bias uniform in
  // +-1/sqrt(in_features), from the default generator). Only for a layer run before any weights
  // are loaded or randomised; the constructor leaves the parameters uninitialised.
  void reset_parameters();

  at::Tensor weight, bias;  // [out, in], [out] (undefined without bias)

 private:
  LinearArithmetic arithmetic_;
};
TORCH_MODULE(Linear);

// Ref: torch.nn.Conv2d (square kernel, symmetric stride and padding).
class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0);
  at::Tensor forward(const at::Tensor& x) const;  // [N, Cin, h, w] -> [N, Cout, h', w']

  at::Tensor weight, bias;  // [Cout, Cin, k, k], [Cout]

 private:
  int64_t stride_, padding_;
};
TORCH_MODULE(Conv2d);

// Ref: torch.nn.Conv3d.
class Conv3dImpl : public torch::nn::Module {
 public:
  Conv3dImpl(int64_t in_channels, int64_t out_channels, std::array<int64_t, 3> kernel,
             std::array<int64_t, 3> padding);
  at::Tensor forward(const at::Tensor& x) const;  // [B, Cin, F, h, w] -> [B, Cout, F', h', w']

  at::Tensor weight, bias;  // [Cout, Cin, kF, kh, kw], [Cout]

 private:
  std::array<int64_t, 3> padding_;
};
TORCH_MODULE(Conv3d);

// Ref: torch.nn.GroupNorm (affine).
class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t groups, int64_t channels, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t groups() const { return groups_; }
  double eps() const { return eps_; }

  at::Tensor weight, bias;  // [C] each

 private:
  int64_t groups_;
  double eps_;
};
TORCH_MODULE(GroupNorm);

// Ref: torch.nn.LayerNorm over the last dim (elementwise affine).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;

  at::Tensor weight, bias;  // [dim] each

 private:
  double eps_;
};
TORCH_MODULE(LayerNorm);

// Ref: torch.nn.Embedding (no padding_idx, no max_norm).
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t dim);
  at::Tensor forward(const at::Tensor& ids) const;  // int64 [...] -> [..., dim]

  at::Tensor weight;  // [num_embeddings, dim]
};
TORCH_MODULE(Embedding);

// A parameterless placeholder (nn.Dropout at inference, nn.SiLU) that keeps ModuleList indices
// equal to the checkpoint's (conv2.3.weight, to_out.0.weight, ff.net.2.weight).
class PlaceholderImpl : public torch::nn::Module {};
TORCH_MODULE(Placeholder);

}  // namespace vi::models
