// Any byte string as a prompt (invalid UTF-8 included): always max_length ids starting with bos,
// ending in eos or padding, never a crash. The vocabulary is the test tokenizer's.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "core/check.h"
#include "pipeline/clip_tokenizer.h"
#include "testing/test_tokenizer.h"

namespace {

const vi::pipeline::ClipTokenizer& tokenizer() {
  static std::unique_ptr<vi::pipeline::ClipTokenizer> t = [] {
    const auto dir = std::filesystem::temp_directory_path() / "vi-fuzz-tokenizer";
    vi::testing::write_test_tokenizer(dir.string());
    return std::make_unique<vi::pipeline::ClipTokenizer>(vi::pipeline::ClipTokenizer::load(dir.string()));
  }();
  return *t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& tok = tokenizer();
  auto enc = tok.encode(std::string(reinterpret_cast<const char*>(data), size));
  if (enc.ids.size() != tok.max_length() || enc.ids.front() != tok.bos_id()) __builtin_trap();
  if (enc.truncated != (enc.untruncated.size() > tok.max_length())) __builtin_trap();
  if (enc.untruncated.back() != tok.eos_id()) __builtin_trap();
  return 0;
}
