// Any text as a --prompts-file: read and mapped to clips, or refused with vi::Error.
#include <cstddef>
#include <cstdint>
#include <sstream>

#include "core/check.h"
#include "video_infinity/generation_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    vi::GenerationConfig config;
    vi::read_prompts(config, in, "fuzz.txt");
    config.frames = 64;
    config.clips = 4;
    config.dual_scope.attn_padding = 2;
    vi::resolve_config(config, 2);
    auto prompts = vi::clip_prompts(config);
    if (prompts.size() != 4) __builtin_trap();
  } catch (const vi::Error&) {
  }
  return 0;
}
