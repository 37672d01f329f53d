#include "pipeline/prompt_travel.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>

#include "core/check.h"
#include "core/safetensors_format.h"
#include "parallel/clip_parallel.h"

namespace vi::pipeline {

namespace {

// A run of consecutive frames [begin, end) that take one prompt.
struct Segment {
  int64_t begin = 0, end = 0;
  size_t prompt = 0;
};

std::vector<Segment> segments_of(const PromptTravel& t) {
  std::vector<Segment> out;
  for (int64_t f = 0; f < t.frames; ++f) {
    const size_t p = t.frame_prompt[static_cast<size_t>(f)];
    if (out.empty() || out.back().prompt != p) out.push_back({f, f, p});
    out.back().end = f + 1;
  }
  return out;
}

std::string frames_str(int64_t first, int64_t last) {
  return first == last ? fmt::format("frame {}", first) : fmt::format("frames {}-{}", first, last);
}

}  // namespace

PromptTravel prompt_travel(const GenerationConfig& cfg) {
  const std::vector<int64_t> counts = clip_frame_counts(cfg);  // checks the config is resolved
  PromptTravel t;
  t.frames = cfg.frames;
  t.blend = std::max<int64_t>(cfg.prompt_blend, 0);
  // 1. Each frame's prompt text, then indices into the distinct texts.
  std::vector<std::string> clip_texts;  // plain prompts: each clip's (frames point into it)
  std::vector<const std::string*> text(static_cast<size_t>(t.frames));
  if (cfg.frame_prompts.empty()) {
    clip_texts = clip_prompts(cfg);
    size_t f = 0;
    for (size_t c = 0; c < counts.size(); ++c) {
      for (int64_t i = 0; i < counts[c]; ++i) text[f++] = &clip_texts[c];
    }
  } else {
    // Ranges are in frame order from frame 0 (resolve_config): the last one starting at or before f.
    size_t r = 0;
    for (int64_t f = 0; f < t.frames; ++f) {
      while (r + 1 < cfg.frame_prompts.size() && cfg.frame_prompts[r + 1].first_frame <= f) ++r;
      text[static_cast<size_t>(f)] = &cfg.frame_prompts[r].text;
    }
  }
  std::map<std::string, size_t> index;
  for (const std::string* s : text) {
    auto [it, added] = index.emplace(*s, t.prompts.size());
    if (added) t.prompts.push_back(*s);
    t.frame_prompt.push_back(it->second);
  }

  // 2. The one-hot indicator through a centred box of width N (see the header).
  const size_t P = t.prompts.size();
  t.weights.assign(static_cast<size_t>(t.frames) * P, 0.0);
  if (t.blend == 0) {
    for (size_t f = 0; f < t.frame_prompt.size(); ++f) t.weights[f * P + t.frame_prompt[f]] = 1;
    return t;
  }
  const std::vector<Segment> segments = segments_of(t);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const double N = static_cast<double>(t.blend), half = N / 2;
  const size_t last = segments.size() - 1;
  // Segment k covers [begin - 1/2, end - 1/2), the first reaching to -inf and the last to +inf.
  auto lower = [&](size_t k) { return k == 0 ? -kInf : static_cast<double>(segments[k].begin) - 0.5; };
  auto upper = [&](size_t k) { return k == last ? kInf : static_cast<double>(segments[k].end) - 0.5; };
  size_t own = 0;  // the segment of frame f
  for (int64_t f = 0; f < t.frames; ++f) {
    if (f >= segments[own].end) ++own;
    const double lo = static_cast<double>(f) - half, hi = static_cast<double>(f) + half;
    size_t k = own;
    while (k > 0 && lower(k) > lo) --k;
    for (; k <= last && lower(k) < hi; ++k) {
      const double overlap = std::min(hi, upper(k)) - std::max(lo, lower(k));
      if (overlap > 0) t.weights[static_cast<size_t>(f) * P + segments[k].prompt] += overlap / N;
    }
  }
  return t;
}

at::Tensor slot_weights(const PromptTravel& t, const parallel::ClipLayout& layout) {
  const int64_t P = static_cast<int64_t>(t.prompts.size()), F = layout.frames;
  int64_t first = 0;  // the first frame of the rank's first clip
  for (int64_t c = 0; c < layout.first_clip; ++c) first += layout.clip_frames(c);
  at::Tensor out = at::empty({layout.local_clips * F, P}, at::kFloat);
  auto rows = out.accessor<float, 2>();
  for (int64_t j = 0; j < layout.local_clips; ++j) {
    const int64_t n = layout.local_frames(j);
    VI_CHECK(first + n <= t.frames, "prompt travel: clip {} ends at frame {}, beyond the {} frames weighted",
             layout.first_clip + j, first + n - 1, t.frames);
    for (int64_t i = 0; i < F; ++i) {
      const int64_t frame = first + std::min(i, n - 1);  // padding: the clip's last real frame
      for (int64_t p = 0; p < P; ++p) rows[j * F + i][p] = static_cast<float>(t.weight(frame, static_cast<size_t>(p)));
    }
    first += n;
  }
  return out;
}

at::Tensor frame_text_states(const at::Tensor& weights, const at::Tensor& prompt_states, const at::Tensor& negative) {
  VI_CHECK(prompt_states.dim() == 3 && weights.dim() == 2 && weights.size(1) == prompt_states.size(0),
           "prompt travel: weights {} for prompt states {}", core::shape_str(weights.sizes().vec()),
           core::shape_str(prompt_states.sizes().vec()));
  const int64_t rows = weights.size(0), P = prompt_states.size(0), S = prompt_states.size(1), D = prompt_states.size(2);
  VI_CHECK(negative.dim() == 3 && negative.size(0) == 1 && negative.size(1) == S && negative.size(2) == D,
           "prompt travel: negative prompt states {}, expected [1, {}, {}]", core::shape_str(negative.sizes().vec()), S,
           D);
  at::Tensor cond = at::matmul(weights.to(prompt_states.device(), at::kFloat),
                               prompt_states.to(at::kFloat).reshape({P, S * D}))  // [rows, S*D]
                        .reshape({rows, S, D})
                        .to(prompt_states.scalar_type());
  return at::cat({negative.to(prompt_states.scalar_type()).expand({rows, S, D}), cond}, 0);  // [2 rows, S, D]
}

ClipPromptReport prompt_travel_report(const GenerationConfig& cfg) {
  const PromptTravel t = prompt_travel(cfg);
  const std::vector<Segment> segments = segments_of(t);
  const int64_t reach = t.blend / 2;  // an isolated boundary at s mixes frames s - reach .. s + reach - 1
  ClipPromptReport report;
  for (size_t k = 0; k < segments.size(); ++k) {
    const Segment& s = segments[k];
    if (k > 0 && reach > 0) {
      report.lines.push_back(fmt::format("{} blend \"{}\" -> \"{}\"",
                                         frames_str(std::max<int64_t>(s.begin - reach, 0),
                                                    std::min(s.begin + reach - 1, t.frames - 1)),
                                         t.prompts[segments[k - 1].prompt], t.prompts[s.prompt]));
    }
    report.lines.push_back(fmt::format("{}: \"{}\"", frames_str(s.begin, s.end - 1), t.prompts[s.prompt]));
  }
  if (cfg.frame_prompts.empty()) {
    report.warnings = clip_prompt_report(cfg).warnings;  // frames take their clip's prompt: the same ones unused
  } else {
    // Only a range that a later one starting at the same frame hides takes no frame.
    std::string unused;
    for (size_t i = 0; i + 1 < cfg.frame_prompts.size(); ++i) {
      const FramePrompt& fp = cfg.frame_prompts[i];
      if (cfg.frame_prompts[i + 1].first_frame != fp.first_frame) continue;
      unused += fmt::format("{}{}-{}: \"{}\"", unused.empty() ? "" : ", ", fp.first_frame,
                            fp.last_frame < 0 ? "" : std::to_string(fp.last_frame), fp.text);
    }
    if (!unused.empty()) {
      report.warnings.push_back(fmt::format(
          "prompts file: no frame takes frame range {} (a later range starts at the same frame)", unused));
    }
  }
  for (const Segment& s : segments) {
    double peak = 0;
    for (int64_t f = s.begin; f < s.end; ++f) peak = std::max(peak, t.weight(f, s.prompt));
    if (peak < 1 - 1e-9) {
      report.warnings.push_back(fmt::format(
          "--prompt-blend {}: {} (\"{}\") are too few for the blend: that prompt peaks at {:.0f} % there", t.blend,
          frames_str(s.begin, s.end - 1), t.prompts[s.prompt], 100 * peak));
    }
  }
  return report;
}

ClipPromptReport prompt_report(const GenerationConfig& cfg) {
  return cfg.prompt_blend >= 0 ? prompt_travel_report(cfg) : clip_prompt_report(cfg);
}

}  // namespace vi::pipeline
