// CLIP tokenizer: token ids identical to transformers' slow CLIPTokenizer (no-ftfy path) on the
// reference goldens, Python's text functions on known cases, robustness on random bytes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/test_util.h"
#include "core/check.h"
#include "pipeline/clip_tokenizer.h"
#include "pipeline/unicode_tables.h"
#include "testing/test_tokenizer.h"

namespace vi::pipeline {
namespace {

namespace fs = std::filesystem;

std::string tiny_tokenizer_dir() { return test::tiny_model_dir() + "/tokenizer"; }
std::string public_tokenizer_dir() { return test::reference_dir() + "/clip-tokenizer"; }

// Python's json writes -Infinity/Infinity/NaN (the manifest's lambda_min_clipped): read them as strings.
nlohmann::json read_json(const std::string& path) {
  std::string text = test::read_file(path);
  for (const std::string word : {"-Infinity", "Infinity", "NaN"}) {
    for (size_t at = text.find(": " + word); at != std::string::npos; at = text.find(": " + word, at + 3))
      text.replace(at + 2, word.size(), "\"" + word + "\"");
  }
  return nlohmann::json::parse(text);
}

std::string join(const std::vector<int64_t>& ids) {
  std::string s;
  for (auto id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

std::string join(const std::vector<std::string>& tokens) {
  std::string s;
  for (const auto& t : tokens) s += (s.empty() ? "" : " ") + t;
  return s;
}

std::u32string u32(const std::string& utf8) { return clip_text::decode_utf8(utf8); }

TEST(ClipTokenizer, TinyGoldenIds) {
  const auto tok = ClipTokenizer::load(tiny_tokenizer_dir());
  const auto manifest = read_json(test::golden_dir() + "/manifest.json");
  const auto& part = manifest.at("parts").at("a_tokenizer");
  const auto prompts = part.at("prompts").get<std::vector<std::string>>();
  const at::Tensor golden = test::golden("tokenizer.safetensors", "input_ids");  // [14, 77] int64
  ASSERT_EQ(golden.size(0), static_cast<int64_t>(prompts.size()));
  EXPECT_EQ(tok.bos_id(), part.at("special_ids").at("bos").get<int64_t>());
  EXPECT_EQ(tok.eos_id(), part.at("special_ids").at("eos").get<int64_t>());
  EXPECT_EQ(tok.pad_id(), part.at("special_ids").at("pad").get<int64_t>());
  EXPECT_EQ(tok.max_length(), 77u);
  int mismatched = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto enc = tok.encode(prompts[p]);
    ASSERT_EQ(enc.ids.size(), 77u);
    std::vector<int64_t> expected(golden[p].data_ptr<int64_t>(), golden[p].data_ptr<int64_t>() + 77);
    if (enc.ids != expected) {
      ++mismatched;
      ADD_FAILURE() << "prompt " << p << " '" << prompts[p] << "'\n  ours:   " << join(enc.ids)
                    << "\n  golden: " << join(expected) << "\n  tokens: " << join(tok.tokenize(prompts[p]));
    }
  }
  std::printf("tiny tokenizer: %zu prompts, %d with different ids (tolerance: 0)\n", prompts.size(), mismatched);
}

TEST(ClipTokenizer, TinyGoldenTokenStrings) {
  // The manifest also lists the reference's token strings (bos/eos included) for each prompt.
  const auto tok = ClipTokenizer::load(tiny_tokenizer_dir());
  const auto part = read_json(test::golden_dir() + "/manifest.json").at("parts").at("a_tokenizer");
  const auto prompts = part.at("prompts").get<std::vector<std::string>>();
  const auto& all_tokens = part.at("tokens");
  ASSERT_EQ(all_tokens.size(), prompts.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    auto expected = all_tokens[p].get<std::vector<std::string>>();
    std::vector<std::string> ours = {"<|startoftext|>"};
    for (auto& t : tok.tokenize(prompts[p])) ours.push_back(t);
    ours.push_back("<|endoftext|>");
    // The reference's list may be cut to the 77 kept tokens.
    if (expected.size() < ours.size()) {
      ours.resize(expected.size() - 1);
      ours.push_back("<|endoftext|>");
    }
    EXPECT_EQ(ours, expected) << "prompt " << p << ": " << prompts[p];
  }
}

TEST(ClipTokenizer, PublicGoldenIds) {
  const auto tok = ClipTokenizer::load(public_tokenizer_dir());
  EXPECT_EQ(tok.bos_id(), 49406);
  EXPECT_EQ(tok.eos_id(), 49407);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.vocab_size(), 49408u);
  const auto cases = read_json(public_tokenizer_dir() + "/golden_public.json");
  ASSERT_EQ(cases.size(), 25u);
  int mismatched = 0, truncated = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto enc = tok.encode(text);
    const auto ids = c.at("input_ids").get<std::vector<int64_t>>();
    const auto untruncated = c.at("untruncated_ids").get<std::vector<int64_t>>();
    const bool ok = enc.ids == ids && enc.untruncated == untruncated && enc.truncated == c.at("truncated").get<bool>();
    if (!ok) {
      ++mismatched;
      ADD_FAILURE() << c.at("category").get<std::string>() << " '" << text << "'\n  ours:   " << join(enc.untruncated)
                    << "\n  golden: " << join(untruncated) << "\n  tokens: " << join(tok.tokenize(text));
    }
    truncated += enc.truncated;
  }
  EXPECT_EQ(truncated, 2);
  std::printf("public tokenizer: %zu prompts (%d truncated), %d with different ids (tolerance: 0)\n", cases.size(),
              truncated, mismatched);
}

TEST(ClipTokenizer, PhotoOfACat) {
  const auto tok = ClipTokenizer::load(public_tokenizer_dir());
  const auto enc = tok.encode("a photo of a cat");
  std::vector<int64_t> expected = {49406, 320, 1125, 539, 320, 2368, 49407};
  expected.resize(77, 0);
  EXPECT_EQ(enc.ids, expected);
  EXPECT_FALSE(enc.truncated);
  EXPECT_EQ(enc.untruncated.size(), 7u);
}

TEST(ClipTokenizer, PadTokenAndLiteralSpecialsAreCutOut) {
  const auto tok = ClipTokenizer::load(public_tokenizer_dir());
  // "!" is the pad token (special_tokens_map.json wins), hence an added token: id 0, never merged.
  EXPECT_EQ(tok.encode("! !! !!!").untruncated, (std::vector<int64_t>{49406, 0, 0, 0, 0, 0, 0, 49407}));
  EXPECT_EQ(tok.tokenize("car!"), (std::vector<std::string>{"car</w>", "!"}));
  EXPECT_EQ(tok.encode("<|startoftext|>a<|endoftext|>").untruncated,
            (std::vector<int64_t>{49406, 49406, 320, 49407, 49407}));
  // Truncation keeps bos + 75 tokens + eos.
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "cat ";
  const auto enc = tok.encode(long_text);
  EXPECT_TRUE(enc.truncated);
  EXPECT_EQ(enc.untruncated.size(), 102u);
  EXPECT_EQ(enc.ids.size(), 77u);
  EXPECT_EQ(enc.ids.front(), 49406);
  EXPECT_EQ(enc.ids.back(), 49407);
  EXPECT_EQ(enc.ids[75], 2368);
}

TEST(ClipText, PythonTextFunctions) {
  using clip_text::basic_clean;
  using clip_text::lower;
  using clip_text::nfc;
  EXPECT_EQ(std::string(unicode::unicode_version()), "14.0.0");
  // NFC: composition, canonical reordering, singletons, exclusions, Hangul.
  EXPECT_EQ(nfc(u32("e\xCC\x81")), u32("\xC3\xA9"));                    // e + U+0301 -> é
  EXPECT_EQ(nfc(u32("a\xCC\x81\xCC\xA3")), u32("\xE1\xBA\xA1\xCC\x81"));  // a + acute + dot below -> ạ + acute
  EXPECT_EQ(nfc(u32("\xE2\x84\xAB")), u32("\xC3\x85"));                 // U+212B ANGSTROM SIGN -> Å
  EXPECT_EQ(nfc(u32("\xE0\xA5\x98")), u32("\xE0\xA4\x95\xE0\xA4\xBC"));  // U+0958 (excluded) stays decomposed
  EXPECT_EQ(nfc(std::u32string{0x1100, 0x1161, 0x11A8}), std::u32string{0xAC01});
  EXPECT_EQ(nfc(std::u32string{0xFB01}), std::u32string{0xFB01});        // ligature: compatibility only
  // str.lower(): multi-code-point İ, final sigma, Kelvin sign.
  EXPECT_EQ(lower(u32("\xC4\xB0")), (std::u32string{'i', 0x307}));
  EXPECT_EQ(lower(std::u32string{0x39F, 0x3A3, 0x39F, 0x3A3}), (std::u32string{0x3BF, 0x3C3, 0x3BF, 0x3C2}));
  EXPECT_EQ(lower(std::u32string{0x3A3}), std::u32string{0x3C3});
  EXPECT_EQ(lower(std::u32string{'A', 0x3A3, '.', '\''}), (std::u32string{'a', 0x3C2, '.', '\''}));
  EXPECT_EQ(lower(std::u32string{0x212A}), std::u32string{'k'});
  // Clean-up: controls dropped, whitespace unified, CJK split, lower-case per word.
  EXPECT_EQ(basic_clean(u32("  A\tB\r\nC\xE2\x80\x8B" "D\x01 \xE3\x80\x80\xE6\x97\xA5\xE6\x9C\xAC ")),
            u32("a b cd \xE6\x97\xA5 \xE6\x9C\xAC"));
  // Regex: contractions, ſ folding onto 's', U+0345 matched by no class.
  EXPECT_EQ(clip_text::pre_tokenize(u32("don't 'll x'\xC5\xBF a\xCD\x85" "b 12 ..a")),
            (std::vector<std::u32string>{u32("don"), u32("'t"), u32("'ll"), u32("x"), u32("'\xC5\xBF"), u32("a"), u32("b"),
                                         u32("1"), u32("2"), u32(".."), u32("a")}));
}

TEST(ClipText, Utf8DecodingReplacesInvalidSequences) {
  using clip_text::decode_utf8;
  EXPECT_EQ(decode_utf8("a\xFF" "b"), (std::u32string{'a', 0xFFFD, 'b'}));
  EXPECT_EQ(decode_utf8("\xC0\xAF"), (std::u32string{0xFFFD, 0xFFFD}));          // overlong
  EXPECT_EQ(decode_utf8("\xED\xA0\x80"), (std::u32string{0xFFFD, 0xFFFD, 0xFFFD}));  // surrogate
  EXPECT_EQ(decode_utf8("\xE2\x82"), (std::u32string{0xFFFD}));                  // truncated
  EXPECT_EQ(decode_utf8("\xF0\x9F\x90\x95"), (std::u32string{0x1F415}));
  // Invalid bytes vanish in the clean-up, as U+FFFD does in the reference.
  const auto tok = ClipTokenizer::load(public_tokenizer_dir());
  EXPECT_EQ(tok.encode("a photo\xFF of a\xC3 cat").ids, tok.encode("a photo of a cat").ids);
}

TEST(ClipTokenizer, RandomBytesNeverCrash) {
  const auto tok = ClipTokenizer::load(public_tokenizer_dir());
  std::mt19937 rng(20240611);
  const std::vector<std::string> fragments = {"<|startoftext|>", "<|endoftext|>", "!", "'s", "\xCC\x81", "\xC4\xB0",
                                              "\xCE\xA3", "\xE6\x97\xA5", " ", "\t", "cat", "\xF0\x9F\x90\x95"};
  int truncated = 0;
  size_t total_tokens = 0;
  for (int n = 0; n < 10000; ++n) {
    std::string text;
    const int len = std::uniform_int_distribution<int>(0, 160)(rng);
    const int mode = n % 3;
    while (static_cast<int>(text.size()) < len) {
      if (mode == 0) {  // raw bytes, mostly invalid UTF-8
        text.push_back(static_cast<char>(rng() & 0xFF));
      } else if (mode == 1) {  // valid UTF-8 of random code points, any plane
        char32_t cp = std::uniform_int_distribution<uint32_t>(0, rng() % 4 == 0 ? 0x10FFFF : 0x3000)(rng);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
        text += clip_text::encode_utf8(std::u32string(1, cp));
      } else {  // fragments that exercise the special rules
        text += fragments[rng() % fragments.size()];
      }
    }
    ClipTokenizer::Encoding enc;
    ASSERT_NO_THROW(enc = tok.encode(text)) << "case " << n;
    ASSERT_EQ(enc.ids.size(), 77u) << "case " << n;
    ASSERT_EQ(enc.ids.front(), tok.bos_id()) << "case " << n;
    ASSERT_GE(enc.untruncated.size(), 2u);
    ASSERT_EQ(enc.untruncated.back(), tok.eos_id());
    for (int64_t id : enc.ids) ASSERT_TRUE(id >= 0 && id < static_cast<int64_t>(tok.vocab_size())) << "case " << n;
    truncated += enc.truncated;
    total_tokens += enc.untruncated.size();
  }
  std::printf("10000 random inputs: %d truncated, %zu tokens in all\n", truncated, total_tokens);
  EXPECT_GT(truncated, 0);
}

TEST(ClipTokenizer, MissingOrCorruptFilesNameTheFile) {
  const std::string dir = test::make_temp_dir("tokenizer");
  auto copy_all = [&] {
    for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
      fs::copy_file(tiny_tokenizer_dir() + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
  };
  auto expect_error_naming = [&](const std::string& file) {
    try {
      ClipTokenizer::load(dir);
      ADD_FAILURE() << "no error for " << file;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
  };
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"}) {
    copy_all();
    fs::remove(dir + "/" + f);
    expect_error_naming(f);
  }
  for (const char* f : {"vocab.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    copy_all();
    test::write_file(dir + "/" + f, "{\"broken\": ");
    expect_error_naming(f);
  }
  copy_all();
  test::write_file(dir + "/vocab.json", "{\"a\": \"x\"}");
  expect_error_naming("vocab.json");
  // Without special_tokens_map.json the pad token is tokenizer_config.json's <|endoftext|>.
  copy_all();
  fs::remove(dir + "/special_tokens_map.json");
  EXPECT_EQ(ClipTokenizer::load(dir).pad_id(), 913);
  fs::remove_all(dir);
}

TEST(ClipTokenizer, TestTokenizerLoadsAndTokenises) {
  const std::string dir = test::make_temp_dir("test-tokenizer");
  testing::write_test_tokenizer(dir);
  const auto tok = ClipTokenizer::load(dir);
  EXPECT_EQ(tok.pad_id(), 0);  // "!", the first byte symbol
  EXPECT_EQ(tok.eos_id(), static_cast<int64_t>(tok.vocab_size()) - 1);
  EXPECT_EQ(tok.bos_id(), static_cast<int64_t>(tok.vocab_size()) - 2);
  EXPECT_GT(tok.vocab_size(), 512u);
  EXPECT_EQ(tok.tokenize("The cat and the dog!"),
            (std::vector<std::string>{"the</w>", "cat</w>", "and</w>", "the</w>", "dog</w>", "!"}));
  EXPECT_EQ(tok.tokenize("xyz"), (std::vector<std::string>{"x", "y", "z</w>"}));
  const auto enc = tok.encode("the cat");
  EXPECT_EQ(enc.ids.size(), 77u);
  EXPECT_EQ(enc.ids[0], tok.bos_id());
  EXPECT_EQ(enc.ids[3], tok.eos_id());
  EXPECT_EQ(enc.ids[4], 0);
  EXPECT_NE(enc.ids[1], enc.ids[2]);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vi::pipeline
