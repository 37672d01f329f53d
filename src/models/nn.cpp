#include "models/nn.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace vi::models {

at::Tensor map_rows(int64_t rows, int64_t chunk, const std::function<at::Tensor(int64_t, int64_t)>& fn) {
  if (chunk <= 0 || chunk >= rows) return fn(0, rows);
  at::Tensor out;
  for (int64_t begin = 0; begin < rows; begin += chunk) {
    const int64_t len = std::min(chunk, rows - begin);
    at::Tensor part = fn(begin, len);  // [len, ...]
    if (!out.defined()) {
      std::vector<int64_t> shape = part.sizes().vec();
      shape[0] = rows;
      // Keeps the chunks' memory format (channels-last activations stay channels-last).
      out = at::empty(shape, part.options().memory_format(part.suggest_memory_format()));
    }
    out.narrow(0, begin, len).copy_(part);
  }
  return out;
}

at::Tensor new_parameter(torch::nn::Module& module, const std::string& name, at::IntArrayRef shape) {
  // at::empty: pages are only touched when the loader or randomize_parameters writes them.
  return module.register_parameter(name, at::empty(shape, at::TensorOptions().dtype(at::kFloat)),
                                   /*requires_grad=*/false);
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool bias, LinearArithmetic arithmetic)
    : arithmetic_(arithmetic) {
  weight = new_parameter(*this, "weight", {out_features, in_features});
  if (bias) this->bias = new_parameter(*this, "bias", {out_features});
}

at::Tensor LinearImpl::forward(const at::Tensor& x) const {
  // 2-d inputs: both forms are addmm (with a bias) or mm.
  if (arithmetic_ == LinearArithmetic::kAtenLinear || x.dim() == 2) return at::linear(x, weight, bias);
  at::Tensor y = x.matmul(weight.t());  // Ref: torch/nn/functional/linear.h linear()
  if (bias.defined()) y += bias;
  return y;
}

void LinearImpl::reset_parameters() {
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(weight.size(1)));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

Conv2dImpl::Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding)
    : stride_(stride), padding_(padding) {
  weight = new_parameter(*this, "weight", {out_channels, in_channels, kernel, kernel});
  bias = new_parameter(*this, "bias", {out_channels});
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) const {
  return at::conv2d(x, weight, bias, {stride_, stride_}, {padding_, padding_});
}

Conv3dImpl::Conv3dImpl(int64_t in_channels, int64_t out_channels, std::array<int64_t, 3> kernel,
                       std::array<int64_t, 3> padding)
    : padding_(padding) {
  weight = new_parameter(*this, "weight", {out_channels, in_channels, kernel[0], kernel[1], kernel[2]});
  bias = new_parameter(*this, "bias", {out_channels});
}

at::Tensor Conv3dImpl::forward(const at::Tensor& x) const {
  return at::conv3d(x, weight, bias, {1, 1, 1}, padding_);
}

GroupNormImpl::GroupNormImpl(int64_t groups, int64_t channels, double eps) : groups_(groups), eps_(eps) {
  weight = new_parameter(*this, "weight", {channels});
  bias = new_parameter(*this, "bias", {channels});
}

at::Tensor GroupNormImpl::forward(const at::Tensor& x) const {
  return at::group_norm(x, groups_, weight, bias, eps_);
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = new_parameter(*this, "weight", {dim});
  bias = new_parameter(*this, "bias", {dim});
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) const {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps_);
}

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t dim) {
  weight = new_parameter(*this, "weight", {num_embeddings, dim});
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

}  // namespace vi::models
