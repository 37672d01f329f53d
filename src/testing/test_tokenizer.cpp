#include "testing/test_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/check.h"
#include "pipeline/clip_tokenizer.h"

namespace fs = std::filesystem;

namespace vi::testing {

namespace {

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  VI_CHECK(out.good(), "{}: cannot write", path);
}

}  // namespace

void write_test_tokenizer(const std::string& dir) {
  fs::create_directories(dir);
  // The 256 byte symbols in code point order (as CLIP's vocabulary lists them), then their
  // "</w>" forms, then one entry per merge, then bos and eos.
  std::vector<char32_t> symbols = pipeline::clip_text::byte_symbols();
  std::sort(symbols.begin(), symbols.end());
  nlohmann::ordered_json vocab;
  int64_t id = 0;
  for (char32_t c : symbols) vocab[pipeline::clip_text::encode_utf8(std::u32string(1, c))] = id++;
  for (char32_t c : symbols) vocab[pipeline::clip_text::encode_utf8(std::u32string(1, c)) + "</w>"] = id++;
  const std::pair<const char*, const char*> merges[] = {
      {"t", "h"},    {"th", "e</w>"}, {"a", "n"},     {"an", "d</w>"}, {"i", "n"},     {"in", "g</w>"},
      {"o", "f</w>"}, {"c", "a"},     {"ca", "t</w>"}, {"d", "o"},     {"do", "g</w>"}, {"e", "r</w>"},
      {"o", "n</w>"}, {"a", "t</w>"}, {"i", "s</w>"}, {"o", "r"},      {"e", "n</w>"}, {"r", "e"}};
  std::string merges_text = "#version: 0.2\n";
  for (const auto& [a, b] : merges) {
    merges_text += std::string(a) + " " + b + "\n";
    const std::string joined = std::string(a) + b;
    if (!vocab.contains(joined)) vocab[joined] = id++;
  }
  vocab["<|startoftext|>"] = id++;
  vocab["<|endoftext|>"] = id++;
  write_text_file((fs::path(dir) / "vocab.json").string(), vocab.dump());
  write_text_file((fs::path(dir) / "merges.txt").string(), merges_text);

  auto added = [](const char* content, bool with_type) {
    nlohmann::ordered_json t;
    if (with_type) t["__type"] = "AddedToken";
    t["content"] = content;
    t["lstrip"] = false;
    t["normalized"] = true;
    t["rstrip"] = false;
    t["single_word"] = false;
    return t;
  };
  // zeroscope_v2_576w's tokenizer_config.json and special_tokens_map.json.
  nlohmann::ordered_json config;
  config["add_prefix_space"] = false;
  config["bos_token"] = added("<|startoftext|>", true);
  config["clean_up_tokenization_spaces"] = true;
  config["do_lower_case"] = true;
  config["eos_token"] = added("<|endoftext|>", true);
  config["errors"] = "replace";
  config["model_max_length"] = 77;
  config["pad_token"] = "<|endoftext|>";
  config["tokenizer_class"] = "CLIPTokenizer";
  config["unk_token"] = added("<|endoftext|>", true);
  write_text_file((fs::path(dir) / "tokenizer_config.json").string(), config.dump(2) + "\n");
  nlohmann::ordered_json map;
  map["bos_token"] = added("<|startoftext|>", false);
  map["eos_token"] = added("<|endoftext|>", false);
  map["pad_token"] = "!";
  map["unk_token"] = added("<|endoftext|>", false);
  write_text_file((fs::path(dir) / "special_tokens_map.json").string(), map.dump(2) + "\n");
}

}  // namespace vi::testing
