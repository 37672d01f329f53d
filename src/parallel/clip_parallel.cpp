#include "parallel/clip_parallel.h"

#include <ATen/ATen.h>

#include "core/check.h"

namespace vi::parallel {

ClipLayout ClipLayout::make(int64_t clips, int64_t frames_per_clip, const Communicator& comm) {
  const int64_t n = comm.world_size();
  VI_CHECK(clips >= 1 && clips % n == 0, "--clips {} is not a multiple of the number of ranks ({})", clips, n);
  VI_CHECK(frames_per_clip >= 1, "--frames-per-clip must be positive, got {}", frames_per_clip);
  ClipLayout layout;
  layout.clips = clips;
  layout.local_clips = clips / n;
  layout.first_clip = comm.rank() * layout.local_clips;
  layout.frames = frames_per_clip;
  return layout;
}

at::Tensor extend_with_halos(const at::Tensor& x, int64_t frame_dim, int64_t pad, const ClipLayout& layout,
                             Communicator& comm) {
  VI_CHECK(x.dim() > frame_dim && frame_dim >= 2, "extend_with_halos: frame dim {} of a {}-d tensor", frame_dim,
           x.dim());
  const int64_t Cl = layout.local_clips, F = x.size(frame_dim);
  VI_CHECK(x.size(1) == Cl, "extend_with_halos: {} clips in the batch, the layout has {}", x.size(1), Cl);
  VI_CHECK(pad <= F, "a halo of {} frames needs clips of at least {} frames, got {}", pad, pad, F);
  if (pad == 0) return x;
  at::Tensor head = x.narrow(frame_dim, 0, pad);       // each clip's first frames
  at::Tensor tail = x.narrow(frame_dim, F - pad, pad);  // each clip's last frames
  at::Tensor left = at::zeros_like(head);
  at::Tensor right = at::zeros_like(tail);
  // Neighbours on this rank.
  if (Cl > 1) {
    left.narrow(1, 1, Cl - 1).copy_(tail.narrow(1, 0, Cl - 1));
    right.narrow(1, 0, Cl - 1).copy_(head.narrow(1, 1, Cl - 1));
  }
  // Neighbours on the ranks beside: our first clip's head goes left, our last clip's tail right.
  if (comm.world_size() > 1) {
    auto got = comm.exchange_neighbors(head.narrow(1, 0, 1).contiguous(), tail.narrow(1, Cl - 1, 1).contiguous());
    if (got.from_left.defined()) left.narrow(1, 0, 1).copy_(got.from_left);
    if (got.from_right.defined()) right.narrow(1, Cl - 1, 1).copy_(got.from_right);
  }
  return at::cat({left, x, right}, frame_dim);
}

at::Tensor halo_validity(const ClipLayout& layout, int64_t pad, c10::Device device) {
  at::Tensor valid = at::ones({layout.local_clips, layout.frames + 2 * pad}, at::TensorOptions().dtype(at::kBool));
  for (int64_t j = 0; j < layout.local_clips; ++j) {
    if (!layout.has_left_neighbour(j)) valid[j].narrow(0, 0, pad).fill_(false);
    if (!layout.has_right_neighbour(j)) valid[j].narrow(0, layout.frames + pad, pad).fill_(false);
  }
  return valid.to(device);
}

at::Tensor gather_global_frames(const at::Tensor& x, int64_t frame_dim, const std::vector<int64_t>& indices,
                                int64_t keep, const ClipLayout& layout, Communicator& comm) {
  VI_CHECK(x.dim() > frame_dim && frame_dim >= 2, "gather_global_frames: frame dim {} of a {}-d tensor", frame_dim,
           x.dim());
  VI_CHECK(x.size(1) == layout.local_clips, "gather_global_frames: {} clips in the batch, the layout has {}", x.size(1),
           layout.local_clips);
  at::Tensor idx = at::tensor(indices, at::TensorOptions().dtype(at::kLong)).to(x.device());
  at::Tensor picked = x.index_select(frame_dim, idx);  // [A, Cl, .., n, ..]
  // Clips first, so that the all-gather concatenates clips in video order.
  at::Tensor by_clip = picked.transpose(0, 1).contiguous();  // [Cl, A, .., n, ..]
  at::Tensor all = comm.world_size() > 1 ? comm.all_gather(by_clip) : by_clip;  // [C, A, .., n, ..]
  // Move the clip dimension next to the frames and merge: frame order clip 0's picks, clip 1's, ...
  const int64_t fd = frame_dim;  // in `all`, dims 1.. are A, .., and the frame dim keeps its index
  at::Tensor moved = all.movedim(0, fd - 1);                 // [A, .., C, n, ..]
  std::vector<int64_t> shape = moved.sizes().vec();
  shape[fd - 1] = shape[fd - 1] * shape[fd];
  shape.erase(shape.begin() + fd);
  at::Tensor merged = moved.reshape(shape);                   // [A, .., C*n, ..]
  const int64_t g = std::min<int64_t>(keep, merged.size(fd - 1));
  return merged.narrow(fd - 1, 0, g);
}

at::Tensor synced_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                             double eps, const ClipLayout& layout, Communicator& comm) {
  const int64_t Cl = layout.local_clips;
  VI_CHECK(x.size(0) % Cl == 0, "synced_group_norm: batch {} is not a multiple of the {} local clips", x.size(0), Cl);
  VI_CHECK(x.size(1) % groups == 0, "synced_group_norm: {} channels in {} groups", x.size(1), groups);
  const int64_t A = x.size(0) / Cl;
  at::Tensor xf = x.to(at::kFloat).reshape({A, Cl, groups, -1});
  at::Tensor mean = xf.mean(-1, /*keepdim=*/true).sum(1, /*keepdim=*/true);  // [A, 1, G, 1]
  comm.all_reduce_sum(mean);
  mean.div_(static_cast<double>(layout.clips));
  at::Tensor var = (xf - mean).pow(2).mean(-1, true).sum(1, true);
  comm.all_reduce_sum(var);
  var.div_(static_cast<double>(layout.clips));
  at::Tensor y = ((xf - mean) / (var + eps).sqrt()).reshape(x.sizes());
  std::vector<int64_t> affine(x.dim(), 1);
  affine[1] = -1;
  return (y * weight.to(at::kFloat).view(affine) + bias.to(at::kFloat).view(affine)).to(x.scalar_type());
}

}  // namespace vi::parallel
