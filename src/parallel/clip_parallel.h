// Clip parallelism: the video's C clips are spread over N ranks, C/N consecutive clips per rank,
// run as one batch. These primitives give each clip its neighbours' frames (halos) and the
// frames every clip shares (global scope), with the same result whatever N divides C —
// one communicator call each, whatever the number of local clips.
//
// The clips form a line (the video's first clip has no left neighbour, its last no right one) or,
// for a seamless loop (--loop), a ring: the last clip is the first one's left neighbour.
//
// Batch layout: tensors are viewed as [A, Cl, ...] — A independent groups (the CFG branches,
// possibly k and v stacked) of Cl local clips in clip order; one dimension holds the frames.
//
// Clips may differ in length (a frame count that clips do not divide: clip c has
// floor(frames / C) frames, one more for the first frames mod C clips). Every clip then sits in
// a slot of `frames` = the longest clip's length: its own frames first, padding frames after
// them. The primitives treat padding as absent: halos carry each clip's real first and last
// frames and sit right after its real frames; global frames are sampled from real frames only.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "video_infinity/communicator.h"

namespace vi::parallel {

struct ClipLayout {
  int64_t clips = 1;        // C, over the whole video
  int64_t local_clips = 1;  // Cl = C / N on this rank
  int64_t first_clip = 0;   // global index of this rank's first clip
  int64_t frames = 0;       // frames per clip slot: the longest clip's length
  std::vector<int64_t> lengths;  // every clip's own frame count (<= frames), C entries
  bool ring = false;             // the last clip is the first one's left neighbour (a loop)

  // C clips of `frames_per_clip` frames each.
  static ClipLayout make(int64_t clips, int64_t frames_per_clip, const Communicator& comm, bool ring = false);
  // One clip per entry of `lengths`, in video order.
  static ClipLayout make(std::vector<int64_t> lengths, const Communicator& comm, bool ring = false);
  bool has_left_neighbour(int64_t local_clip) const { return ring || first_clip + local_clip > 0; }
  bool has_right_neighbour(int64_t local_clip) const { return ring || first_clip + local_clip + 1 < clips; }
  // Frames of global clip c / of local clip j.
  int64_t clip_frames(int64_t clip) const { return lengths.at(static_cast<size_t>(clip)); }
  int64_t local_frames(int64_t local_clip) const { return clip_frames(first_clip + local_clip); }
  // True when every clip fills its slot (no padding anywhere).
  bool uniform() const;
  int64_t shortest() const;
};

// x: [A, Cl, ...] with the clip's frames in dimension `frame_dim` (>= 2). Returns x with
// `pad` frames prepended from the previous clip's end and appended from the next clip's start
// (zeros at the video's two ends; on a ring the first clip's left halo is the last clip's end and
// the last clip's right halo the first clip's start): [A, Cl, ..., F + 2 pad, ...]. One neighbour
// exchange.
at::Tensor extend_with_halos(const at::Tensor& x, int64_t frame_dim, int64_t pad, const ClipLayout& layout,
                             Communicator& comm);

// Which of the F + 2 pad frames of each local clip are real (false: the zero halo at the
// video's ends, and a shorter clip's padding): bool [Cl, F + 2 pad].
at::Tensor halo_validity(const ClipLayout& layout, int64_t pad, c10::Device device);

// Which of the F + 2 pad frames of each local clip's halo-extended slot hold data, i.e. are not
// the padding of a shorter clip (the zero halos at the video's ends count as data, as in the
// reference): bool [Cl, F + 2 pad]; undefined when the layout is uniform.
at::Tensor slot_validity(const ClipLayout& layout, int64_t pad, c10::Device device);

// The global-scope frame indices of every clip of the video (C entries): indices_for(length).
std::vector<std::vector<int64_t>> per_clip_indices(const ClipLayout& layout,
                                                   const std::function<std::vector<int64_t>(int64_t)>& indices_for);

// Global scope: each clip's frames at `indices` (dimension `frame_dim` of x [A, Cl, ...]),
// gathered from every clip of the video in clip order and cut to the first `keep` frames:
// [A, ..., G, ...] with G = min(keep, C * indices.size()) in place of the frames and no clip
// dimension (every clip sees the same). One all-gather.
at::Tensor gather_global_frames(const at::Tensor& x, int64_t frame_dim, const std::vector<int64_t>& indices,
                                int64_t keep, const ClipLayout& layout, Communicator& comm);
// The same with each clip's own indices (`indices[c]` for global clip c; counts may differ): the
// all-gather carries max count frames per clip, the unused ones are dropped after it.
at::Tensor gather_global_frames(const at::Tensor& x, int64_t frame_dim, const std::vector<std::vector<int64_t>>& indices,
                                int64_t keep, const ClipLayout& layout, Communicator& comm);

// GroupNorm whose statistics are averaged over all clips of the video (ALGORITHM.md §6
// "GroupNorm sync"): x [A * Cl, C, ...]; for each group the mean is the average of the clips'
// means, the variance the average of the clips' variances around that mean. Two all-reduces.
// `valid` (optional, bool [Cl, F'] for x [A * Cl, C, F', ...]): frames left out of the statistics
// (padding); they come out as zeros, so that a convolution after the norm sees zero padding there.
at::Tensor synced_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                             double eps, const ClipLayout& layout, Communicator& comm,
                             const at::Tensor& valid = at::Tensor());

// GroupNorm of x [A * Cl, C, F', ...] per sample over the frames `valid` ([Cl, F'] bool) marks,
// zeros on the others: what at::group_norm gives each clip's own frames alone.
at::Tensor masked_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                             double eps, const at::Tensor& valid);

}  // namespace vi::parallel
