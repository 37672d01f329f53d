#include "models/temporal_context.h"

#include <ATen/ATen.h>

#include <cmath>

#include "models/sdpa.h"

namespace vi::models {

void PlainTemporalContext::begin_call(double timestep, int64_t batch) {
  timestep_ = timestep;
  batch_ = batch;
}

at::Tensor PlainTemporalContext::temporal_conv(const at::Tensor& x,
                                               const std::function<at::Tensor(const at::Tensor&)>& convs) {
  return convs(x);
}

at::Tensor PlainTemporalContext::attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return dot_product_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(q.size(-1))));
}

at::Tensor PlainTemporalContext::group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                            const at::Tensor& bias, double eps) {
  return at::group_norm(x, groups, weight, bias, eps);
}

}  // namespace vi::models
