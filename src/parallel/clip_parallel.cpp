#include "parallel/clip_parallel.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/check.h"
#include "core/safetensors_format.h"

namespace vi::parallel {

ClipLayout ClipLayout::make(int64_t clips, int64_t frames_per_clip, const Communicator& comm, bool ring) {
  VI_CHECK(clips >= 1, "--clips must be positive, got {}", clips);
  return make(std::vector<int64_t>(static_cast<size_t>(clips), frames_per_clip), comm, ring);
}

ClipLayout ClipLayout::make(std::vector<int64_t> lengths, const Communicator& comm, bool ring) {
  const auto clips = static_cast<int64_t>(lengths.size());
  const int64_t n = comm.world_size();
  VI_CHECK(clips >= 1 && clips % n == 0, "--clips {} is not a multiple of the number of ranks ({})", clips, n);
  ClipLayout layout;
  layout.clips = clips;
  layout.local_clips = clips / n;
  layout.first_clip = comm.rank() * layout.local_clips;
  layout.lengths = std::move(lengths);
  layout.ring = ring;
  layout.frames = *std::max_element(layout.lengths.begin(), layout.lengths.end());
  VI_CHECK(layout.shortest() >= 1, "--frames-per-clip must be positive, got a clip of {} frames", layout.shortest());
  return layout;
}

bool ClipLayout::uniform() const { return shortest() == frames; }

int64_t ClipLayout::shortest() const { return *std::min_element(lengths.begin(), lengths.end()); }

namespace {

// Local clip j of x [A, Cl, ...]: [A, 1, ...].
at::Tensor clip_of(const at::Tensor& x, int64_t j) { return x.narrow(1, j, 1); }

}  // namespace

at::Tensor extend_with_halos(const at::Tensor& x, int64_t frame_dim, int64_t pad, const ClipLayout& layout,
                             Communicator& comm) {
  VI_CHECK(x.dim() > frame_dim && frame_dim >= 2, "extend_with_halos: frame dim {} of a {}-d tensor", frame_dim,
           x.dim());
  const int64_t Cl = layout.local_clips, F = x.size(frame_dim);
  VI_CHECK(x.size(1) == Cl, "extend_with_halos: {} clips in the batch, the layout has {}", x.size(1), Cl);
  const bool uniform = layout.uniform();
  VI_CHECK(uniform || F == layout.frames, "extend_with_halos: slots of {} frames, the layout's are {}", F,
           layout.frames);
  const int64_t shortest = uniform ? F : layout.shortest();
  VI_CHECK(pad <= shortest, "a halo of {} frames needs clips of at least {} frames, got {}", pad, pad, shortest);
  if (pad == 0) return x;
  at::Tensor head = x.narrow(frame_dim, 0, pad);  // each clip's first frames
  at::Tensor tail;                                // each clip's last real frames
  if (uniform) {
    tail = x.narrow(frame_dim, F - pad, pad);
  } else {
    std::vector<at::Tensor> tails;
    for (int64_t j = 0; j < Cl; ++j) tails.push_back(clip_of(x, j).narrow(frame_dim, layout.local_frames(j) - pad, pad));
    tail = at::cat(tails, 1);
  }
  at::Tensor left = at::zeros_like(head);
  at::Tensor right = at::zeros_like(tail);
  // Neighbours on this rank.
  if (Cl > 1) {
    left.narrow(1, 1, Cl - 1).copy_(tail.narrow(1, 0, Cl - 1));
    right.narrow(1, 0, Cl - 1).copy_(head.narrow(1, 1, Cl - 1));
  }
  // Neighbours on the ranks beside: our first clip's head goes left, our last clip's tail right
  // (on a ring, rank 0's left neighbour is the last rank; a world of one is its own neighbour).
  if (comm.world_size() > 1 || layout.ring) {
    auto got = comm.exchange_neighbors(head.narrow(1, 0, 1).contiguous(), tail.narrow(1, Cl - 1, 1).contiguous(),
                                       layout.ring ? Topology::kRing : Topology::kLine);
    if (got.from_left.defined()) left.narrow(1, 0, 1).copy_(got.from_left);
    if (got.from_right.defined()) right.narrow(1, Cl - 1, 1).copy_(got.from_right);
  }
  if (uniform) return at::cat({left, x, right}, frame_dim);
  // A shorter clip: left halo | its frames | right halo | its padding.
  std::vector<at::Tensor> clips;
  for (int64_t j = 0; j < Cl; ++j) {
    const at::Tensor xj = clip_of(x, j);
    const int64_t n = layout.local_frames(j);
    clips.push_back(at::cat({clip_of(left, j), xj.narrow(frame_dim, 0, n), clip_of(right, j),
                             xj.narrow(frame_dim, n, F - n)},
                            frame_dim));
  }
  return at::cat(clips, 1);
}

at::Tensor halo_validity(const ClipLayout& layout, int64_t pad, c10::Device device) {
  at::Tensor valid = at::ones({layout.local_clips, layout.frames + 2 * pad}, at::TensorOptions().dtype(at::kBool));
  for (int64_t j = 0; j < layout.local_clips; ++j) {
    const int64_t n = layout.local_frames(j);
    if (!layout.has_left_neighbour(j)) valid[j].narrow(0, 0, pad).fill_(false);
    if (!layout.has_right_neighbour(j)) valid[j].narrow(0, n + pad, pad).fill_(false);
    valid[j].narrow(0, n + 2 * pad, layout.frames - n).fill_(false);
  }
  return valid.to(device);
}

at::Tensor slot_validity(const ClipLayout& layout, int64_t pad, c10::Device device) {
  if (layout.uniform()) return {};
  at::Tensor valid = at::ones({layout.local_clips, layout.frames + 2 * pad}, at::TensorOptions().dtype(at::kBool));
  for (int64_t j = 0; j < layout.local_clips; ++j) {
    const int64_t n = layout.local_frames(j);
    valid[j].narrow(0, n + 2 * pad, layout.frames - n).fill_(false);
  }
  return valid.to(device);
}

std::vector<std::vector<int64_t>> per_clip_indices(const ClipLayout& layout,
                                                   const std::function<std::vector<int64_t>(int64_t)>& indices_for) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t c = 0; c < layout.clips; ++c) out.push_back(indices_for(layout.clip_frames(c)));
  return out;
}

at::Tensor gather_global_frames(const at::Tensor& x, int64_t frame_dim, const std::vector<int64_t>& indices,
                                int64_t keep, const ClipLayout& layout, Communicator& comm) {
  return gather_global_frames(x, frame_dim, std::vector<std::vector<int64_t>>(static_cast<size_t>(layout.clips), indices),
                              keep, layout, comm);
}

at::Tensor gather_global_frames(const at::Tensor& x, int64_t frame_dim, const std::vector<std::vector<int64_t>>& indices,
                                int64_t keep, const ClipLayout& layout, Communicator& comm) {
  VI_CHECK(x.dim() > frame_dim && frame_dim >= 2, "gather_global_frames: frame dim {} of a {}-d tensor", frame_dim,
           x.dim());
  VI_CHECK(x.size(1) == layout.local_clips, "gather_global_frames: {} clips in the batch, the layout has {}", x.size(1),
           layout.local_clips);
  VI_CHECK(static_cast<int64_t>(indices.size()) == layout.clips, "gather_global_frames: indices for {} clips, the layout has {}",
           indices.size(), layout.clips);
  size_t n = 0;  // frames per clip in the all-gather
  bool same = true, equal_counts = true;
  for (const auto& clip : indices) {
    n = std::max(n, clip.size());
    same &= clip == indices[0];
  }
  for (const auto& clip : indices) equal_counts &= clip.size() == n;
  VI_CHECK(n > 0, "gather_global_frames: no clip shares a frame");
  auto index_tensor = [&](const std::vector<int64_t>& v) {
    return at::tensor(v, at::TensorOptions().dtype(at::kLong)).to(x.device());
  };
  at::Tensor picked;  // [A, Cl, .., n, ..]
  if (same) {
    picked = x.index_select(frame_dim, index_tensor(indices[0]));
  } else {
    // Each local clip's own picks, padded to n with repeats of its first pick.
    std::vector<at::Tensor> picks;
    for (int64_t j = 0; j < layout.local_clips; ++j) {
      std::vector<int64_t> mine = indices[static_cast<size_t>(layout.first_clip + j)];
      mine.resize(n, mine.empty() ? 0 : mine.front());
      picks.push_back(clip_of(x, j).index_select(frame_dim, index_tensor(mine)));
    }
    picked = at::cat(picks, 1);
  }
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
  if (!equal_counts) {
    std::vector<int64_t> real;  // the merged positions that are picks, not padding
    for (size_t c = 0; c < indices.size(); ++c) {
      for (size_t i = 0; i < indices[c].size(); ++i) real.push_back(static_cast<int64_t>(c * n + i));
    }
    merged = merged.index_select(fd - 1, index_tensor(real));
  }
  const int64_t g = std::min<int64_t>(keep, merged.size(fd - 1));
  return merged.narrow(fd - 1, 0, g);
}

namespace {

// x [A * Cl, C, F', rest...] as [A, Cl, G, C/G, F', S] float, and its frames' mask.
struct FrameGroups {
  at::Tensor x, mask;
  at::Tensor count;  // [1, Cl, 1] values per (clip, group) that count
};

FrameGroups frame_groups(const at::Tensor& x, int64_t groups, const at::Tensor& valid) {
  const int64_t Cl = valid.size(0), Fp = valid.size(1);
  VI_CHECK(x.dim() >= 3 && x.size(2) == Fp && x.size(0) % Cl == 0 && x.size(1) % groups == 0,
           "masked group norm: x {} does not match {} clips of {} frames in {} groups", core::shape_str(x.sizes().vec()),
           Cl, Fp, groups);
  FrameGroups g;  // mask: [1, Cl, 1, 1, F', 1] bool
  g.x = x.to(at::kFloat).reshape({x.size(0) / Cl, Cl, groups, x.size(1) / groups, Fp, -1});
  g.mask = valid.to(x.device(), at::kBool).view({1, Cl, 1, 1, Fp, 1});
  g.count = valid.to(x.device(), at::kFloat).sum(1).view({1, Cl, 1}) * static_cast<double>(g.x.size(3) * g.x.size(5));
  return g;
}

// Per (group, clip): sum of the unmasked values / count. where(), not a product: whatever the
// padding holds (even inf or NaN) stays out.
at::Tensor masked_mean(const at::Tensor& v, const FrameGroups& g) {
  return at::where(g.mask, v, 0.0).sum({3, 4, 5}) / g.count;  // [A, Cl, G]
}

at::Tensor normalized_output(const FrameGroups& g, const at::Tensor& mean, const at::Tensor& var, const at::Tensor& x,
                             const at::Tensor& weight, const at::Tensor& bias, double eps) {
  auto expand = [](const at::Tensor& t) { return t.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1); };
  at::Tensor y = ((g.x - expand(mean)) / expand(var + eps).sqrt()).reshape(x.sizes());
  std::vector<int64_t> affine(x.dim(), 1);
  affine[1] = -1;
  y = y * weight.to(at::kFloat).view(affine) + bias.to(at::kFloat).view(affine);
  return at::where(g.mask, y.reshape(g.x.sizes()), 0.0).reshape(x.sizes()).to(x.scalar_type());
}

}  // namespace

at::Tensor masked_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                             double eps, const at::Tensor& valid) {
  const FrameGroups g = frame_groups(x, groups, valid);
  const at::Tensor mean = masked_mean(g.x, g);
  const at::Tensor var = masked_mean((g.x - mean.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1)).pow(2), g);
  return normalized_output(g, mean, var, x, weight, bias, eps);
}

at::Tensor synced_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                             double eps, const ClipLayout& layout, Communicator& comm, const at::Tensor& valid) {
  const int64_t Cl = layout.local_clips;
  if (valid.defined()) {
    // As below, each clip's statistics over its own frames only.
    VI_CHECK(valid.size(0) == Cl, "synced_group_norm: a mask for {} clips, the layout has {}", valid.size(0), Cl);
    const FrameGroups g = frame_groups(x, groups, valid);
    at::Tensor mean = masked_mean(g.x, g).sum(1, /*keepdim=*/true);  // [A, 1, G]
    comm.all_reduce_sum(mean);
    mean.div_(static_cast<double>(layout.clips));
    at::Tensor var = masked_mean((g.x - mean.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1)).pow(2), g).sum(1, true);
    comm.all_reduce_sum(var);
    var.div_(static_cast<double>(layout.clips));
    return normalized_output(g, mean, var, x, weight, bias, eps);
  }
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
