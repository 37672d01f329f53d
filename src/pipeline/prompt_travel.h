// Prompt travel (--prompt-blend N >= 0): every frame gets its own text states, a blend of the
// video's distinct prompts. The UNet's spatial cross-attention runs per frame, so it takes them
// as they are ([B*F, 77, D] instead of [B, 77, D]); the temporal layers see no text.
//
// Each frame first takes one prompt: that of the frame range it lies in (a prompts file's ranges:
// the last range starting at or before the frame, the rule clip_prompts applies to a clip's first
// frame), or with plain -p prompts its clip's (clip c of C takes prompt floor(c / C x P)). Then
// the one-hot indicator is blended along the frame axis with a centred box of width N:
//
//   w[f][p] = |[f - N/2, f + N/2] ∩ X_p| / N
//
// where X_p is the union of the cells [g - 1/2, g + 1/2) of the frames g that take prompt p, the
// first frame's cell reaching to -inf and the last frame's to +inf (the ends are clamped, not
// wrapped, also with --loop). At an isolated boundary (frame s the first of the new prompt) the
// new prompt's weight is clamp((f - s + 1/2) / N + 1/2, 0, 1): a linear ramp over the frames
// s - floor(N/2) .. s + floor(N/2) - 1. Rows sum to 1; a frame farther than N/2 from every
// boundary sees only its own prompt; N = 0 and N = 1 blend nothing (a hard switch).
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "video_infinity/generation_config.h"

namespace vi::parallel {
struct ClipLayout;
}

namespace vi::pipeline {

struct PromptTravel {
  std::vector<std::string> prompts;  // the distinct prompts, in the order the video reaches them
  int64_t frames = 0;
  int64_t blend = 0;                 // N
  std::vector<size_t> frame_prompt;  // [frames]: the prompt each frame takes before blending
  std::vector<double> weights;       // [frames, prompts] row-major: w[f][p]

  double weight(int64_t frame, size_t prompt) const {
    return weights[static_cast<size_t>(frame) * prompts.size() + prompt];
  }
};

// The per-frame prompts and weights of a resolved config, blended over max(config.prompt_blend, 0)
// frames.
PromptTravel prompt_travel(const GenerationConfig& config);

// The weights of the local clips' frame slots, [Cl * F, P] fp32 (clip-major, frame-minor; F =
// layout.frames): a shorter clip's padding frames repeat its last real frame's weights.
at::Tensor slot_weights(const PromptTravel& travel, const parallel::ClipLayout& layout);

// The CFG batch's text states per frame, [2 * Cl * F, S, D] laid out [uncond: clip-major,
// frame-minor | cond: the same]: uncond rows the negative prompt's states `negative` [1, S, D],
// cond rows `weights` [Cl * F, P] times the prompts' states `prompt_states` [P, S, D] (blended in
// fp32, returned in prompt_states' dtype).
at::Tensor frame_text_states(const at::Tensor& weights, const at::Tensor& prompt_states, const at::Tensor& negative);

// The log's lines with prompt travel: `frames 0-99: "a cat"` per run of frames that take one
// prompt and, with N >= 2, `frames 96-103 blend "a cat" -> "a dog"` per boundary (the frames whose
// weights mix at an isolated boundary). Warnings: prompts no frame takes, and runs of frames too
// short for their prompt to reach full weight.
ClipPromptReport prompt_travel_report(const GenerationConfig& config);

// What the log says about prompts: prompt_travel_report with --prompt-blend >= 0, else
// clip_prompt_report.
ClipPromptReport prompt_report(const GenerationConfig& config);

}  // namespace vi::pipeline
