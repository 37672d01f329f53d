// The settings of Video-Infinity's temporal layers (torch-free: configs and the CLI use them).
#pragma once

#include <cstdint>

namespace vi::parallel {

// Bias added by timestep: `local` to the 2P+F window columns, `global` to the global columns.
struct Phase {
  double t = 800;
  double local_bias = 0;
  double global_bias = 0;
};

struct DualScopeSettings {
  // false: every clip runs alone (plain diffusers per clip, no exchange between clips; ablation).
  bool enabled = true;
  int64_t attn_padding = 8;     // P: halo frames per side in temporal attention
  int64_t top_k = 16;           // K: global frames kept after the all-gather
  double attn_scale = 1.0;      // multiplies 1/sqrt(head_dim)
  bool token_num_scale = false; // scale each row by ln(n)/ln(16), n = keys the row sees
  bool dynamic_scale = true;    // phase biases on/off
  Phase local_phase{800, 10, 0};   // applied when t <  local_phase.t
  Phase global_phase{800, 0, 10};  // applied when t >= global_phase.t
  int64_t conv_padding = 4;     // Pc: halo frames per side of each temporal conv layer
  bool sync_groupnorm = false;  // temporal GroupNorm statistics averaged over all clips
  bool mask_edge_halos = false; // mask (instead of attend to) the zero halos at the video's ends
  bool loop = false;            // the clips form a ring: the last clip is the first one's left neighbour
};

}  // namespace vi::parallel
