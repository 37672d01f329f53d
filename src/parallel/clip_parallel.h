// Clip parallelism: the video's C clips are spread over N ranks, C/N consecutive clips per rank,
// run as one batch. These primitives give each clip its neighbours' frames (halos) and the
// frames every clip shares (global scope), with the same result whatever N divides C —
// one communicator call each, whatever the number of local clips.
//
// Batch layout: tensors are viewed as [A, Cl, ...] — A independent groups (the CFG branches,
// possibly k and v stacked) of Cl local clips in clip order; one dimension holds the frames.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <vector>

#include "video_infinity/communicator.h"

namespace vi::parallel {

struct ClipLayout {
  int64_t clips = 1;        // C, over the whole video
  int64_t local_clips = 1;  // Cl = C / N on this rank
  int64_t first_clip = 0;   // global index of this rank's first clip
  int64_t frames = 0;       // frames per clip

  static ClipLayout make(int64_t clips, int64_t frames_per_clip, const Communicator& comm);
  bool has_left_neighbour(int64_t local_clip) const { return first_clip + local_clip > 0; }
  bool has_right_neighbour(int64_t local_clip) const { return first_clip + local_clip + 1 < clips; }
};

// x: [A, Cl, ...] with the clip's frames in dimension `frame_dim` (>= 2). Returns x with
// `pad` frames prepended from the previous clip's end and appended from the next clip's start
// (zeros at the video's two ends): [A, Cl, ..., F + 2 pad, ...]. One neighbour exchange.
at::Tensor extend_with_halos(const at::Tensor& x, int64_t frame_dim, int64_t pad, const ClipLayout& layout,
                             Communicator& comm);

// Which of the F + 2 pad frames of each local clip are real (false: the zero halo at the
// video's ends): bool [Cl, F + 2 pad].
at::Tensor halo_validity(const ClipLayout& layout, int64_t pad, c10::Device device);

// Global scope: each clip's frames at `indices` (dimension `frame_dim` of x [A, Cl, ...]),
// gathered from every clip of the video in clip order and cut to the first `keep` frames:
// [A, ..., G, ...] with G = min(keep, C * indices.size()) in place of the frames and no clip
// dimension (every clip sees the same). One all-gather.
at::Tensor gather_global_frames(const at::Tensor& x, int64_t frame_dim, const std::vector<int64_t>& indices,
                                int64_t keep, const ClipLayout& layout, Communicator& comm);

// GroupNorm whose statistics are averaged over all clips of the video (ALGORITHM.md §6
// "GroupNorm sync"): x [A * Cl, C, ...]; for each group the mean is the average of the clips'
// means, the variance the average of the clips' variances around that mean. Two all-reduces.
at::Tensor synced_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                             double eps, const ClipLayout& layout, Communicator& comm);

}  // namespace vi::parallel
